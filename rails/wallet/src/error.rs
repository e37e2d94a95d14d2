//! One error type for the crate, split by who is at fault: the peer, the bytes, the caller, or the
//! storage. A datagram that is dropped comes back to the caller as one of these, to be logged.

use core::fmt;

/// Everything that can go wrong in this crate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Another party (a wallet, or a wallet uploading its log) sent something well-formed that the
    /// protocol does not allow: bad signature, replay, message for someone else, and so on.
    Peer(PeerError),
    /// Bytes that do not parse as what they claim to be.
    Malformed(Malformed),
    /// The caller used the API in a way it does not allow (not enough money, unknown transfer id…).
    Misuse(Misuse),
    /// The log storage failed, or holds something that is not a valid log.
    Storage(StorageError),
    /// The money office's book in the ledger could not be read or written (operator half only).
    #[cfg(feature = "operator")]
    Book(BookError),
}

/// The money office's book, kept as ledger records, failed: the operator's fault or the
/// database's, never the wallet's.
#[cfg(feature = "operator")]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BookError {
    /// A stored record does not decode, or was written by a newer release.
    Corrupt {
        /// The record's key.
        key: alloc::string::String,
        /// What is wrong.
        message: alloc::string::String,
    },
    /// The ledger store failed (nothing was decided).
    Store(alloc::string::String),
    /// The ledger refused the office's batch for a reason other than a stale read.
    Refused(alloc::string::String),
    /// The office's rules read a record that the operation's load plan did not load: a bug in
    /// the plan. Nothing is committed.
    OutsidePlan {
        /// The record's key.
        key: alloc::string::String,
    },
    /// Loading kept finding records to load beyond [`crate::operator::LOAD_ROUNDS_MAX`] rounds.
    PlanTooDeep,
    /// The data directory holds the whole book of an earlier release: migrate it first.
    LegacyBook,
    /// The whole book of an earlier release does not read back.
    LegacyCorrupt(alloc::string::String),
    /// The entropy source failed; no wallet id can be drawn.
    Entropy,
    /// Records kept changing under the operation (only in single-threaded use, a bug).
    Contention,
}

/// The peer misbehaved (or an attacker tried something).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerError {
    /// A signature did not verify (message, agreement, commit, log head, credential).
    BadSignature,
    /// The credential was not issued by our money office.
    CredentialNotIssuedByOffice,
    /// The credential has expired.
    CredentialExpired,
    /// The money office has blocked this wallet.
    WalletBlocked,
    /// The datagram is addressed to another wallet.
    Misdirected,
    /// The sealed payload did not decrypt (tampered, or sealed for another key).
    DecryptionFailed,
    /// A message whose sequence number is not newer than one already accepted.
    Replay,
    /// A message for a transfer this wallet does not know.
    UnknownTransfer,
    /// A message that the transfer's current state does not expect, from a party that is not in it.
    NotAParty,
    /// The message is valid but not expected in the transfer's current state.
    UnexpectedMessage,
    /// The peer uses another currency.
    CurrencyMismatch,
    /// The amount breaks a limit of the credential (payment, balance or offline spend).
    LimitExceeded,
    /// The peer reported an outcome that contradicts the recorded one.
    ConflictingOutcome,
    /// An uploaded log does not continue the chain the money office already holds.
    ChainMismatch,
    /// An uploaded log skips records the money office has not seen.
    ChainGap,
    /// A charge voucher arrived out of order.
    VoucherOutOfOrder,
    /// A record or reply contradicts what the other side knows (wrong wallet, wrong hash…).
    Inconsistent,
}

/// Bytes that do not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// Ended before a field was complete.
    Truncated,
    /// Bytes left over after the last field.
    TrailingBytes,
    /// Longer than the named maximum for this kind of input.
    TooLong,
    /// A format version this build does not know.
    UnknownVersion(u8),
    /// A kind or tag byte this build does not know.
    UnknownKind(u8),
    /// A field holds a value outside its range (amount, currency, count, key).
    InvalidField,
    /// A frame's checksum does not match its contents.
    BadChecksum,
}

/// The caller asked for something the wallet or the money office cannot do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misuse {
    /// Not enough available value for this payment.
    InsufficientFunds,
    /// The amount breaks a limit of the wallet's credential.
    LimitExceeded,
    /// The wallet's own credential has expired: sync first.
    CredentialExpired,
    /// The amount is in another currency than the wallet's.
    CurrencyMismatch,
    /// The amount is zero.
    ZeroAmount,
    /// No transfer with this id, or not in a state where this call makes sense.
    UnknownTransfer,
    /// This buyer did not answer the look-up.
    UnknownCandidate,
    /// Too many transfers in flight (see [`crate::TRANSFERS_ACTIVE_MAX`]).
    TooManyTransfers,
    /// Too many records since the last sync (see [`crate::LOG_UNSYNCED_RECORDS_MAX`]): sync first.
    SyncRequired,
    /// The wallet was restored from a backup and must sync before it pays.
    RestoredWalletMustSync,
    /// The message sequence space of this run is used up: reopen the wallet.
    SequenceExhausted,
    /// Wrong passphrase, or the encrypted file was altered.
    WrongPassphraseOrCorrupt,
    /// Key-derivation parameters outside the allowed range.
    KdfParametersOutOfRange,
    /// The money office does not know this wallet.
    UnknownWallet,
    /// The wallet is blocked at the money office.
    WalletBlocked,
    /// The wallet is not blocked (required for reissue).
    WalletNotBlocked,
    /// The credential has not expired yet (required for reissue).
    CredentialNotExpired,
    /// The value of this wallet was already reissued.
    AlreadyReissued,
    /// The wallet has no containment case.
    NoCase,
    /// The wallet's containment case was already decided.
    CaseDecided,
    /// The seller was blocked too recently to void what it left prepared.
    ResolutionWindowOpen,
    /// A previous storage failure left the wallet in an unknown state: reopen it from storage.
    Poisoned,
}

/// The log storage failed or holds an invalid log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageError {
    /// An I/O error, with its description (never holds secrets).
    Io(alloc::string::String),
    /// A record with a valid checksum that breaks the hash chain, or a damaged record followed by
    /// more data than one torn append could leave: the log was altered, not torn.
    Corrupt {
        /// Byte offset of the first bad frame.
        offset: u64,
    },
    /// The log is empty: the wallet was never created in this storage.
    Empty,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Peer(e) => write!(f, "peer misbehaved: {e}"),
            Error::Malformed(e) => write!(f, "malformed input: {e}"),
            Error::Misuse(e) => write!(f, "not allowed: {e}"),
            Error::Storage(e) => write!(f, "storage: {e}"),
            #[cfg(feature = "operator")]
            Error::Book(e) => write!(f, "money office book: {e}"),
        }
    }
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerError::BadSignature => "signature does not verify",
            PeerError::CredentialNotIssuedByOffice => "credential not issued by our money office",
            PeerError::CredentialExpired => "credential expired",
            PeerError::WalletBlocked => "wallet blocked by the money office",
            PeerError::Misdirected => "message addressed to another wallet",
            PeerError::DecryptionFailed => "message does not decrypt",
            PeerError::Replay => "message replayed or stale",
            PeerError::UnknownTransfer => "message for an unknown transfer",
            PeerError::NotAParty => "sender is not a party to this transfer",
            PeerError::UnexpectedMessage => "message not expected in this state",
            PeerError::CurrencyMismatch => "peer uses another currency",
            PeerError::LimitExceeded => "amount breaks a credential limit",
            PeerError::ConflictingOutcome => "peer reports an outcome that contradicts the log",
            PeerError::ChainMismatch => "log does not continue the known chain",
            PeerError::ChainGap => "log skips records",
            PeerError::VoucherOutOfOrder => "charge voucher out of order",
            PeerError::Inconsistent => "input contradicts what is known",
        })
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Truncated => f.write_str("truncated"),
            Malformed::TrailingBytes => f.write_str("trailing bytes"),
            Malformed::TooLong => f.write_str("too long"),
            Malformed::UnknownVersion(v) => write!(f, "unknown format version {v}"),
            Malformed::UnknownKind(k) => write!(f, "unknown kind {k}"),
            Malformed::InvalidField => f.write_str("field out of range"),
            Malformed::BadChecksum => f.write_str("checksum mismatch"),
        }
    }
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Misuse::InsufficientFunds => "not enough value in the wallet",
            Misuse::LimitExceeded => "amount breaks a limit of the wallet's credential",
            Misuse::CredentialExpired => "the wallet's credential expired: sync first",
            Misuse::CurrencyMismatch => "amount in another currency than the wallet's",
            Misuse::ZeroAmount => "amount is zero",
            Misuse::UnknownTransfer => "no such transfer in this state",
            Misuse::UnknownCandidate => "this buyer did not answer the look-up",
            Misuse::TooManyTransfers => "too many transfers in flight",
            Misuse::SyncRequired => "too many records since the last sync: sync first",
            Misuse::RestoredWalletMustSync => "restored wallet must sync before paying",
            Misuse::SequenceExhausted => "message sequence numbers used up: reopen the wallet",
            Misuse::WrongPassphraseOrCorrupt => "wrong passphrase or altered file",
            Misuse::KdfParametersOutOfRange => "key-derivation parameters out of range",
            Misuse::UnknownWallet => "unknown wallet",
            Misuse::WalletBlocked => "wallet is blocked",
            Misuse::WalletNotBlocked => "wallet is not blocked",
            Misuse::CredentialNotExpired => "credential has not expired yet",
            Misuse::AlreadyReissued => "value already reissued",
            Misuse::NoCase => "the wallet has no open case",
            Misuse::CaseDecided => "the wallet's case was already decided",
            Misuse::ResolutionWindowOpen => {
                "the seller was blocked less than a day ago and its credential is still valid"
            }
            Misuse::Poisoned => "a storage failure left the wallet unknown: reopen it",
        })
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io(text) => write!(f, "I/O error: {text}"),
            StorageError::Corrupt { offset } => write!(f, "log corrupt at byte {offset}"),
            StorageError::Empty => f.write_str("log is empty"),
        }
    }
}

#[cfg(feature = "operator")]
impl fmt::Display for BookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BookError::Corrupt { key, message } => write!(f, "record {key} is corrupt: {message}"),
            BookError::Store(message) => write!(f, "ledger store failed: {message}"),
            BookError::Refused(message) => write!(f, "ledger refused the batch: {message}"),
            BookError::OutsidePlan { key } => {
                write!(
                    f,
                    "the rules read record {key}, which the load plan left out"
                )
            }
            BookError::PlanTooDeep => f.write_str("the load plan did not settle"),
            BookError::LegacyBook => f.write_str("the book of an earlier release awaits migration"),
            BookError::LegacyCorrupt(message) => {
                write!(f, "the book of an earlier release is unreadable: {message}")
            }
            BookError::Entropy => f.write_str("the random number generator failed"),
            BookError::Contention => f.write_str("records kept changing under the operation"),
        }
    }
}

#[cfg(feature = "operator")]
impl From<BookError> for Error {
    fn from(e: BookError) -> Self {
        Error::Book(e)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

impl From<PeerError> for Error {
    fn from(e: PeerError) -> Self {
        Error::Peer(e)
    }
}
impl From<Malformed> for Error {
    fn from(e: Malformed) -> Self {
        Error::Malformed(e)
    }
}
impl From<Misuse> for Error {
    fn from(e: Misuse) -> Self {
        Error::Misuse(e)
    }
}
impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}
