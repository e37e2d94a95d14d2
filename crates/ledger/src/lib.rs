//! offpay's double-entry ledger: accounts and transfers with client-chosen ids, pending → posted |
//! voided, atomic batches committed in groups, and the storage contract with its conformance suite.
//!
//! The rules live in [`engine`] as pure code; backends (`offpay-ledger-sqlite`,
//! `offpay-ledger-postgres`, and [`MemoryStore`] here) only load and write rows, through
//! [`store::run_group`].
//!
//! The conformance suite (`conformance`, with its `ledger_conformance_tests!` macro) is compiled
//! only with the `conformance` feature, which backends enable in their dev-dependencies.

pub mod columns;
// The module holds the `#[macro_export]` `ledger_conformance_tests!`: without the feature the
// macro is not compiled either.
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod engine;
pub mod ids;
pub mod memory;
pub mod model;
pub mod store;

pub use ids::{AccountId, IdError, TransferId};
pub use memory::MemoryStore;
pub use model::*;
pub use offpay_money::{Amount, Currency, Decimal, MoneyError};
pub use store::{
    GroupResult, GroupTransaction, KnownGroups, LedgerStore, SchemaVersions, StoreError, run_group,
    verify_conservation,
};
