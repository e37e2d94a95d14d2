//! The crate's one error type, split by cause (see [`PurseError::cause`]).

use core::fmt;

use offpay_money::{Amount, Currency, MoneyError};

use crate::types::{OperatorId, Phone, PurseId};

/// Who or what an error is due to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cause {
    /// Something a person typed is malformed (a code, a phone number, an amount, a PIN). Nothing
    /// changed.
    Input,
    /// A code, PIN or ticket was well-formed but wrong. A wrong PIN or Code 2 *does* change state:
    /// it counts against the retry counter or failure budget.
    Verification,
    /// The purse refuses by its rules (balance, limits, validity, blocked, log full). Nothing
    /// changed.
    Refused,
    /// A sync message, provisioning record or purse state failed to decode or authenticate, or was
    /// replayed. Nothing changed.
    Message,
    /// The caller misused the API (e.g. asked for a purse the operator book does not hold).
    Caller,
    /// Reading or writing the purse file failed, or the file was refused.
    Storage,
}

/// Which offline limit a payment would break.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Limit {
    /// The payee's balance would exceed its maximum.
    MaxBalance,
    /// The amount exceeds the maximum single payment.
    MaxSinglePayment,
    /// The payer would exceed what it may spend between two syncs.
    MaxSpentSinceSync,
    /// The payee would receive more from one payer between two syncs than it accepts (this
    /// bounds what a restored or cloned payer can take from one payee before the payee syncs).
    ReceivedFromOnePayer,
}

/// Why a purse file could not be used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StorageProblem {
    /// The file does not exist.
    NotFound,
    /// The file exists already (refusing to overwrite a purse at provisioning).
    AlreadyExists,
    /// An I/O error other than the above.
    Io,
    /// The file failed authentication: it was modified, truncated, or sealed with another device
    /// secret.
    Tampered,
}

/// Everything that can go wrong in the purse protocol, the operator side and the secure element.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum PurseError {
    // --- Input: malformed, nothing changed ---
    /// A code had the wrong number of digits.
    CodeLength {
        /// Digits required.
        expected: usize,
        /// Digits found.
        found: usize,
    },
    /// A code contained something other than digits and spaces.
    CodeCharacter {
        /// 1-based position in what was typed.
        position: usize,
        /// The character.
        character: char,
    },
    /// Not an E.164 phone number such as `+254700000001`.
    PhoneNumber,
    /// A PIN must be 4 to 6 digits.
    PinFormat,
    /// The amount could not be read (too many decimals, letters, too large...).
    Amount(MoneyError),
    /// The amount is in another currency than the purse.
    CurrencyMismatch {
        /// The purse's currency.
        purse: Currency,
        /// The amount's currency.
        given: Currency,
    },
    /// A payment of zero.
    ZeroAmount,
    /// Paying or requesting from one's own number.
    SelfPayment,

    // --- Verification: well-formed but wrong ---
    /// Code 1 does not match the amount and phone numbers entered (or was mistyped, or was made
    /// under a key epoch this purse does not hold: sync, then try again). No budget is consumed.
    RequestCodeMismatch,
    /// Code 2 is wrong. This counts against the failure budgets.
    ResponseCodeMismatch {
        /// Tries left for this request (0: the request was voided).
        request_tries_left: u8,
        /// Tries left until the next sync.
        period_tries_left: u16,
    },
    /// The Code 2 failure budget of this sync period is spent: sync before receiving again.
    FailureBudgetExhausted,
    /// Too many wrong Code 2 entries for this payer since the last sync: the purse neither asks
    /// this payer nor takes its codes until it syncs (other payers are not affected).
    PayerFailureBudgetExhausted(Phone),
    /// Wrong PIN. Counts against the retry counter.
    WrongPin {
        /// Tries left before the PIN blocks.
        tries_left: u8,
    },
    /// The PIN is blocked after too many wrong tries; the operator unblocks it at a sync.
    PinBlocked,
    /// A ticket code did not verify.
    TicketMismatch,
    /// The operator asked for limits above what the purse's trust class allows.
    AboveClassLimit {
        /// The purse's class.
        class: crate::trust::TrustClass,
        /// Which limit.
        limit: Limit,
        /// The most that class allows.
        maximum: Amount,
    },
    /// A PIN reset code that is wrong, already used, for another purse, or older than one this
    /// device already used. Counts against the reset tries.
    WrongResetCode {
        /// Wrong reset codes left before resets are refused.
        tries_left: u8,
    },
    /// Too many wrong reset codes: the purse takes none; report the phone lost (the operator
    /// moves the balance to a new purse).
    PinResetBlocked,

    // --- Refused by the purse's rules: nothing changed ---
    /// Not enough money in the purse.
    InsufficientBalance {
        /// The balance.
        balance: Amount,
        /// The amount asked for.
        amount: Amount,
    },
    /// An offline limit would be broken.
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// Its value.
        maximum: Amount,
    },
    /// The purse's offline validity ended: sync before paying.
    ValidityExpired,
    /// The unacknowledged log is full: sync before paying or receiving.
    LogFull,
    /// The operator blocked this purse.
    PurseBlocked,
    /// The operator blocked the other party's purse.
    CounterpartyBlocked(Phone),
    /// A payment above the small-payment limit needs a pairwise key with this peer.
    PairwiseKeyRequired(Phone),
    /// The purse holds no scheme key (it has never synced).
    NoSchemeKey,
    /// No request is pending.
    NoPendingRequest,
    /// Several requests are pending: say which one (by the first four digits of its Code 1).
    AmbiguousPendingRequest {
        /// How many are pending.
        pending: usize,
    },
    /// No pending request has this nonce.
    UnknownRequest,
    /// This Code 2 was already accepted; nothing more to do.
    AlreadyAccepted,
    /// There is no Code 2 to show again.
    NothingToShow,
    /// Too many requests for pairwise keys are queued already.
    TooManyPairwiseRequests,
    /// Could not draw a fresh nonce (the seen-nonce memory is saturated for this counterparty).
    NonceSpaceExhausted,
    /// A scheme-key rotation asked for before every purse that may still pay has had to sync
    /// since the previous one: it would retire a key honest purses still hold.
    RotationTooSoon {
        /// When the previous rotation was made.
        last: crate::types::Timestamp,
        /// The first moment the next one is safe (the previous one plus the longest validity).
        earliest: crate::types::Timestamp,
    },

    // --- Messages: malformed, unauthentic or replayed; nothing changed ---
    /// A structure is truncated, has trailing bytes or an impossible field.
    Malformed(&'static str),
    /// An unknown format version.
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// A MAC did not verify.
    AuthenticationFailed,
    /// An upload whose sync sequence number was already used, with nothing new in it.
    SyncReplayed {
        /// The sequence number received.
        sequence: u32,
        /// The last sequence number accepted.
        last_accepted: u32,
    },
    /// An answer that does not answer this purse's outstanding upload.
    StaleAnswer,
    /// A message meant for another purse.
    WrongPurse {
        /// This purse.
        expected: PurseId,
        /// The purse named in the message.
        found: PurseId,
    },
    /// A purse file or message from another operator.
    WrongOperator {
        /// The operator this side belongs to.
        expected: OperatorId,
        /// The operator named in the file or message.
        found: OperatorId,
    },

    // --- Caller ---
    /// The operator book has no purse with this id.
    UnknownPurse(PurseId),
    /// The operator book has no purse with this phone number.
    UnknownPhone(Phone),
    /// A purse with this phone number is provisioned already.
    PhoneTaken(Phone),
    /// An APDU named an instruction this purse does not implement.
    UnsupportedInstruction(u8),

    // --- Storage ---
    /// The purse file could not be used.
    Storage(StorageProblem),
}

impl PurseError {
    /// Who or what the error is due to.
    pub fn cause(&self) -> Cause {
        use PurseError::*;
        match self {
            CodeLength { .. }
            | CodeCharacter { .. }
            | PhoneNumber
            | PinFormat
            | Amount(_)
            | CurrencyMismatch { .. }
            | ZeroAmount
            | SelfPayment => Cause::Input,
            RequestCodeMismatch
            | ResponseCodeMismatch { .. }
            | FailureBudgetExhausted
            | PayerFailureBudgetExhausted(_)
            | WrongPin { .. }
            | PinBlocked
            | TicketMismatch
            | WrongResetCode { .. }
            | PinResetBlocked => Cause::Verification,
            InsufficientBalance { .. }
            | LimitExceeded { .. }
            | AboveClassLimit { .. }
            | ValidityExpired
            | LogFull
            | PurseBlocked
            | CounterpartyBlocked(_)
            | PairwiseKeyRequired(_)
            | NoSchemeKey
            | NoPendingRequest
            | AmbiguousPendingRequest { .. }
            | UnknownRequest
            | AlreadyAccepted
            | NothingToShow
            | TooManyPairwiseRequests
            | NonceSpaceExhausted
            | RotationTooSoon { .. } => Cause::Refused,
            Malformed(_)
            | UnsupportedVersion { .. }
            | AuthenticationFailed
            | SyncReplayed { .. }
            | StaleAnswer
            | WrongPurse { .. }
            | WrongOperator { .. } => Cause::Message,
            UnknownPurse(_) | UnknownPhone(_) | PhoneTaken(_) | UnsupportedInstruction(_) => {
                Cause::Caller
            }
            Storage(_) => Cause::Storage,
        }
    }
}

impl From<MoneyError> for PurseError {
    fn from(error: MoneyError) -> Self {
        PurseError::Amount(error)
    }
}

impl fmt::Display for PurseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PurseError::*;
        match self {
            CodeLength { expected, found } => {
                write!(f, "a code has {expected} digits; {found} were entered")
            }
            CodeCharacter {
                position,
                character,
            } => write!(
                f,
                "codes are digits only; {character:?} at position {position} is not a digit"
            ),
            PhoneNumber => f.write_str("not a phone number: write it like +254700000001"),
            PinFormat => f.write_str("a PIN is 4 to 6 digits"),
            Amount(error) => write!(f, "amount not accepted: {error}"),
            CurrencyMismatch { purse, given } => {
                write!(f, "this purse holds {purse}, not {given}")
            }
            ZeroAmount => f.write_str("the amount must be more than zero"),
            SelfPayment => f.write_str("you cannot pay yourself"),
            RequestCodeMismatch => f.write_str(
                "Code 1 does not match this amount and number: check both, or sync and retry",
            ),
            ResponseCodeMismatch {
                request_tries_left: 0,
                ..
            } => f.write_str("wrong Code 2; too many tries, the request was cancelled"),
            ResponseCodeMismatch {
                request_tries_left, ..
            } => write!(f, "wrong Code 2; {request_tries_left} tries left"),
            FailureBudgetExhausted => {
                f.write_str("too many wrong codes: sync with the operator before receiving")
            }
            PayerFailureBudgetExhausted(payer) => write!(
                f,
                "too many wrong codes for payments from {payer}: sync before taking their codes again"
            ),
            WrongPin { tries_left: 0 } => f.write_str("wrong PIN; the PIN is now blocked"),
            WrongPin { tries_left } => write!(f, "wrong PIN; {tries_left} tries left"),
            PinBlocked => f.write_str(
                "PIN blocked: ask the operator for a PIN reset code (or to unblock it at a sync)",
            ),
            TicketMismatch => f.write_str("the key code is wrong: check it and the phone number"),
            AboveClassLimit {
                class,
                limit,
                maximum,
            } => {
                let what = match limit {
                    Limit::MaxBalance => "a maximum balance",
                    Limit::MaxSinglePayment => "a maximum single payment",
                    Limit::MaxSpentSinceSync => "a maximum spent between syncs",
                    Limit::ReceivedFromOnePayer => "a receive cap",
                };
                write!(f, "a {class} purse may have {what} of at most {maximum}")
            }
            WrongResetCode { tries_left } => write!(
                f,
                "the reset code is wrong or already used; {tries_left} tries left"
            ),
            PinResetBlocked => f.write_str(
                "too many wrong reset codes: report the phone to the operator for a new purse",
            ),
            InsufficientBalance { balance, amount } => {
                write!(f, "not enough money: balance {balance}, payment {amount}")
            }
            LimitExceeded { limit, maximum } => {
                let what = match limit {
                    Limit::MaxBalance => "the balance would exceed the maximum of",
                    Limit::MaxSinglePayment => "a single payment is at most",
                    Limit::MaxSpentSinceSync => "before the next sync you may spend at most",
                    Limit::ReceivedFromOnePayer => {
                        "before the next sync you may receive from one payer at most"
                    }
                };
                write!(f, "over the limit: {what} {maximum}")
            }
            ValidityExpired => f.write_str("the purse must sync with the operator before paying"),
            LogFull => f.write_str("the purse log is full: sync with the operator"),
            PurseBlocked => f.write_str("this purse is blocked by the operator"),
            CounterpartyBlocked(phone) => {
                write!(f, "the purse of {phone} is blocked by the operator")
            }
            PairwiseKeyRequired(phone) => write!(
                f,
                "this amount needs a key shared with {phone}: sync, or type the key code"
            ),
            NoSchemeKey => f.write_str("the purse has no payment key yet: sync first"),
            NoPendingRequest => f.write_str("no payment request is waiting"),
            AmbiguousPendingRequest { pending } => write!(
                f,
                "{pending} requests are waiting: give the first four digits of the Code 1"
            ),
            UnknownRequest => f.write_str("no waiting request starts with those four digits"),
            AlreadyAccepted => f.write_str("this Code 2 was already accepted"),
            NothingToShow => f.write_str("there is no Code 2 to show again"),
            TooManyPairwiseRequests => f.write_str("too many key requests waiting: sync first"),
            NonceSpaceExhausted => {
                f.write_str("every request number of this key was used: sync to get the next key")
            }
            RotationTooSoon { last, earliest } => write!(
                f,
                "the scheme key was rotated at {last}; rotating again before {earliest} (the longest purse validity later) would retire a key that purses which have not synced since still hold, and flag them; wait, or force it only for a compromised key"
            ),
            Malformed(what) => write!(f, "malformed message: {what}"),
            UnsupportedVersion { found } => write!(f, "unsupported format version {found}"),
            AuthenticationFailed => f.write_str("message authentication failed"),
            SyncReplayed {
                sequence,
                last_accepted,
            } => write!(
                f,
                "sync {sequence} was replayed (last accepted: {last_accepted})"
            ),
            StaleAnswer => f.write_str("this answer does not belong to the purse's last sync"),
            WrongPurse { expected, found } => {
                write!(f, "message for purse {found}, this is purse {expected}")
            }
            WrongOperator { expected, found } => write!(
                f,
                "this purse belongs to operator {found:?}, not {expected:?}"
            ),
            UnknownPurse(id) => write!(f, "no purse {id}"),
            UnknownPhone(phone) => write!(f, "no purse for {phone}"),
            PhoneTaken(phone) => write!(f, "a purse for {phone} exists already"),
            UnsupportedInstruction(ins) => write!(f, "unsupported instruction {ins:#04x}"),
            Storage(StorageProblem::NotFound) => f.write_str("purse file not found"),
            Storage(StorageProblem::AlreadyExists) => f.write_str("purse file exists already"),
            Storage(StorageProblem::Io) => f.write_str("purse file could not be read or written"),
            Storage(StorageProblem::Tampered) => f.write_str(
                "purse file refused: it was modified, damaged, or sealed on another device",
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PurseError {}
