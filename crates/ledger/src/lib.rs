//! offpay's double-entry ledger: accounts and transfers with client-chosen ids, pending → posted |
//! voided, atomic batches committed in groups, and the storage contract with its conformance suite.
//!
//! The rules live in [`engine`] as pure code; backends (`offpay-ledger-sqlite`,
//! `offpay-ledger-postgres`) only load and write rows, through [`store::run_group`].

pub mod columns;
pub mod conformance;
pub mod engine;
pub mod ids;
pub mod model;
pub mod store;

pub use ids::{AccountId, IdError, TransferId};
pub use model::*;
pub use offpay_money::{Amount, Currency, Decimal, MoneyError};
pub use store::{
    GroupResult, GroupTransaction, LedgerStore, StoreError, run_group, verify_conservation,
};
