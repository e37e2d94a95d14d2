//! Rail 1 of offpay: the DigiTally short-code offline purse. Two people with basic phones pay each
//! other with no network by copying two 8-digit codes; the operator reconciles when they sync.
//!
//! This crate is the whole protocol as pure logic, `no_std` (with `alloc`), so the same code can
//! run in a secure element, a phone or a server; the operator's half is behind the `operator`
//! feature, so a device build carries none of it:
//! - [`codes`]: Code 1 and Code 2, their MAC inputs, digit split and checks;
//! - [`Purse`]: the secure element's state machine (`handle(command, now, random)`);
//! - [`sync`]: the upload and answer messages, their codec and SMS packing;
//! - `operator` (feature `operator`): provisioning, upload verification, reconciliation and
//!   answers, over an `OperatorBook` of shadow accounts;
//! - `book` (feature `operator`): that book kept in ledger records, the load plans, and the
//!   operator's decisions as effects (postings, conditional record writes, fraud flags) the
//!   server's runner commits;
//! - [`apdu`]: the command interface between phone UI and purse, as a Java Card applet would have;
//! - `se` (feature `std`): the software secure element, a sealed purse file behind that interface.
//!
//! The protocol document is `docs/protocols/short-code-purse.md`.
#![no_std]
#![cfg_attr(not(test), forbid(clippy::unwrap_used))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod apdu;
#[cfg(feature = "operator")]
pub mod book;
pub mod codes;
pub mod crypto;
mod entries;
mod error;
#[cfg(feature = "operator")]
pub mod operator;
pub mod params;
pub mod pin_reset;
mod provisioning;
mod purse;
pub mod reverts;
#[cfg(feature = "std")]
pub mod se;
#[cfg(feature = "operator")]
pub mod seal;
#[cfg(feature = "operator")]
pub mod sms_book;
pub mod sync;
mod ticket;
pub mod trust;
mod types;
mod wire;

pub use error::{Cause, Limit, PurseError, StorageProblem};
pub use offpay_money::{Amount, Currency};
#[cfg(feature = "operator")]
pub use operator::{
    BalanceMove, BookHeader, BookParts, Flag, FlagKind, LedgerAccount, MatchedPayment,
    OperatorBook, OperatorSecrets, Posting, Reconciliation, ShadowAccount, SyncOutcome,
    sync_counterparties,
};
pub use provisioning::Provisioning;
pub use purse::{
    Command, EntryKind, KeyRef, LastPayment, LogEntry, OfflineLimits, Outcome, PeerTicket,
    PendingRequest, Purse, PurseIdentity, SyncReport,
};
pub use ticket::TicketCode;
pub use trust::TrustClass;
#[cfg(feature = "std")]
pub use types::SystemRandom;
pub use types::{
    Code, OperatorId, Phone, Pin, PurseId, PurseKind, RandomSource, SeededRandom, Timestamp,
};
