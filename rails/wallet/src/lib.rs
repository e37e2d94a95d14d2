//! Rail 3 of offpay: a device wallet that pays another wallet over a lossy local link (Wi-Fi
//! direct, Bluetooth, UDP) with an atomic two-party commit, and the money office that issues,
//! charges and reconciles wallets.
//!
//! Everything here is sans-I/O: the [`Wallet`] and the money office never touch a socket, a disk
//! or a clock. The caller feeds in datagrams, timer ticks and user choices with the current time
//! and a source of randomness, and performs the returned [`Action`]s in order: append a frame to
//! the log (forced to stable storage) before sending what follows it. See
//! `docs/protocols/device-wallet.md` for the protocol, its byte layouts and its security analysis.
//!
//! Features: `std` (file storage, OS entropy); `office`, the money office's rules (`office`,
//! alloc only, on by default); `operator`, what the server runs (`operator`: the office's book
//! as typed ledger records, load plans, decisions returning effects). A device build
//! (`--no-default-features`) carries neither.
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(not(test), forbid(clippy::unwrap_used))]

extern crate alloc;

mod codec;
pub mod credential;
#[cfg(feature = "std")]
pub mod driver;
pub mod error;
pub mod file;
pub mod ids;
pub mod keys;
#[cfg(feature = "std")]
pub mod netem;
#[cfg(feature = "office")]
pub mod office;
#[cfg(feature = "operator")]
pub mod operator;
pub mod protocol;
pub mod record;
pub mod reverts;
pub mod sealed;
pub mod storage;
pub mod sync;
pub mod terms;
pub mod wallet;
pub mod wire;

pub use credential::{Credential, Limits};
#[cfg(feature = "operator")]
pub use error::BookError;
pub use error::{Error, Malformed, Misuse, PeerError, StorageError};
pub use ids::{Millis, PostingId, TransferId, WalletId};
#[cfg(feature = "std")]
pub use keys::OsEntropy;
pub use keys::{Entropy, OfficeKeys, SeededEntropy, WalletKeys};
#[cfg(feature = "office")]
pub use office::{
    Case, CaseDecision, CaseReason, Flag, MoneyOffice, Posting, PostingAccount, PostingKind,
    Reconciliation, ReissueQuote, SETTLED_ABOVE_MAX, SettledDigest, WalletSummary,
};
pub use protocol::{Event, Role};
pub use sealed::LogKey;
#[cfg(feature = "std")]
pub use storage::{FileStorage, SealedFileStorage};
pub use storage::{LogStorage, MemoryStorage};
pub use sync::{ChargeVoucher, LogUpload, Resolution, SyncReply};
pub use wallet::{
    Action, Defect, LOG_UNSYNCED_RECORDS_MAX, Received, RecoveryReport, TRANSFERS_ACTIVE_MAX,
    TransferStatus, Wallet, apply_actions,
};
pub use wire::{AbortReason, Outcome};
