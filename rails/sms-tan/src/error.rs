//! One error enum for the crate, split by who is at fault: the SMS was malformed ([`ParseError`]),
//! the instruction was well formed but refused ([`Refusal`]), an envelope file was wrong
//! ([`ImportError`]), a sealed envelope did not open ([`SealError`]), or the caller misused the
//! API ([`Misuse`]).

use core::fmt;

use offpay_money::MoneyError;

/// Everything that can go wrong in this crate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The SMS text could not be read (the sender's fault; reply with [`crate::reply::malformed`]).
    Malformed(ParseError),
    /// The instruction was read but refused (the sender's fault or an attack).
    Refused(Refusal),
    /// An envelope file could not be imported (the operator's file is wrong).
    Import(ImportError),
    /// A sealed envelope could not be opened (wrong master key or tampered database).
    Sealed(SealError),
    /// The caller passed something inconsistent (a bug in the server, not the sender's fault).
    Misuse(Misuse),
    /// Amount arithmetic failed.
    Money(MoneyError),
}

impl From<ParseError> for Error {
    fn from(error: ParseError) -> Self {
        Error::Malformed(error)
    }
}
impl From<Refusal> for Error {
    fn from(error: Refusal) -> Self {
        Error::Refused(error)
    }
}
impl From<ImportError> for Error {
    fn from(error: ImportError) -> Self {
        Error::Import(error)
    }
}
impl From<SealError> for Error {
    fn from(error: SealError) -> Self {
        Error::Sealed(error)
    }
}
impl From<Misuse> for Error {
    fn from(error: Misuse) -> Self {
        Error::Misuse(error)
    }
}
impl From<MoneyError> for Error {
    fn from(error: MoneyError) -> Self {
        Error::Money(error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(error) => write!(f, "malformed SMS: {error:?}"),
            Error::Refused(error) => write!(f, "instruction refused: {error:?}"),
            Error::Import(error) => write!(f, "envelope import: {error}"),
            Error::Sealed(error) => write!(f, "sealed envelope: {error:?}"),
            Error::Misuse(error) => write!(f, "API misuse: {error:?}"),
            Error::Money(error) => write!(f, "amount: {error}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Which part of the SMS should have been there, for "could not read the …" replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// The envelope number or pay number that names the payer.
    Payer,
    /// A new envelope's number (registration).
    NewEnvelope,
    /// The payee's account number.
    Payee,
    /// The grid-encrypted payee (middle/high level).
    EncryptedPayee,
    /// The amount.
    Amount,
    /// The amount plus TanCol2 (middle/high level).
    EncryptedAmount,
    /// A currency code.
    Currency,
    /// A row number.
    Row,
    /// A TAN.
    Tan,
    /// The 6-digit checksum.
    Checksum,
    /// The magnitude code.
    MagnitudeCode,
    /// A payment reference.
    Reference,
    /// DAY, WEEK, EACH or TO (limits).
    LimitKind,
    /// ON or OFF.
    Switch,
    /// A password.
    Password,
    /// A date.
    Date,
    /// A time of day.
    Time,
    /// The payment inside a LATER message.
    ScheduledPayment,
    /// A language (EN, SW or FR).
    Language,
}

impl Field {
    /// Plain words for replies.
    pub fn words(self) -> &'static str {
        match self {
            Field::Payer => "envelope number (11 digits) or pay number (12 digits)",
            Field::NewEnvelope => "new envelope number (11 digits)",
            Field::Payee => "payee account number (12 digits)",
            Field::EncryptedPayee => "coded payee (2 digits then 10 grid codes)",
            Field::Amount => "amount (like 1500 or 1500.50)",
            Field::EncryptedAmount => "amount plus column 2",
            Field::Currency => "currency (like KES)",
            Field::Row => "row number (1 to 50)",
            Field::Tan => "TAN (3 digits)",
            Field::Checksum => "checksum (6 digits)",
            Field::MagnitudeCode => "amount size code (3 digits)",
            Field::Reference => "payment reference (8 digits)",
            Field::LimitKind => "limit kind DAY, WEEK, EACH or TO",
            Field::Switch => "ON or OFF",
            Field::Password => "password (8 to 32 letters or digits)",
            Field::Date => "date (YYYY-MM-DD)",
            Field::Time => "time (HH:MM)",
            Field::ScheduledPayment => "payment (PAY, PAYG or PAYC ...)",
            Field::Language => "language (EN, SW or FR)",
        }
    }
}

/// Why an SMS text could not be read. Each has a short reply in plain words ([`crate::reply`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Nothing but spaces.
    Empty,
    /// Longer than [`crate::limits::INBOUND_TEXT_BYTES_MAX`] or more tokens than allowed.
    TooLong,
    /// A character we cannot read (not a letter, digit or separator).
    BadCharacter(char),
    /// The first word is not a message keyword.
    UnknownKeyword,
    /// The message stopped before this part.
    Missing(Field),
    /// This part could not be read.
    Unreadable(Field),
    /// Numbers left over after the last part.
    TooManyParts,
    /// The parts can be read in more than one way; separators are needed.
    Ambiguous,
    /// An EUIN that is not 11 digits.
    BadEuin,
    /// An account number that is not 12 digits.
    BadAccountNumber,
    /// A TAN that is not 3 digits.
    BadTan,
    /// A phone number we cannot read.
    BadPhoneNumber,
    /// A date or time that does not exist.
    BadDateTime,
}

/// Why a well-formed instruction was refused. Replies never say more than the payer may know.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No envelope or account answers to the payer reference, or the code was wrong: one reply
    /// for both, so that nobody can probe which envelopes exist.
    NotAuthenticated,
    /// The row was used before (replay or mistake).
    RowUsed {
        /// The row named.
        row: u8,
    },
    /// The row number is beyond this envelope's rows.
    RowOutOfRange {
        /// The row named.
        row: u8,
    },
    /// The envelope is locked after [`crate::limits::LOCKOUT_FAILURES`] wrong codes.
    EnvelopeLocked,
    /// The envelope is not registered to an account (or retired).
    EnvelopeNotActive,
    /// Too few rows remain; a new envelope must be registered.
    RowsExhausted,
    /// The sending phone is not one the account bound.
    PhoneNotBound,
    /// The account only pays with its pay number, not the envelope number.
    PayNumberRequired,
    /// A middle/high payee code or amount code did not decode (wrong grid, typo, tampering).
    CodesDoNotMatch,
    /// The row named is the envelope's last free one, kept for `REG`: nothing else may use it
    /// (no row is used, no failure counted).
    LastRowReserved,
    /// A settings or registration message's SUM does not match its content (protocol v3), or a
    /// payment's checksum or SUM misses in only one or two positions: a typing mistake, or the
    /// message was changed on its way. The row is burned and the fraud queue hears of it; not
    /// counted towards the lockout; nothing changed.
    ContentMismatch,
    /// The payee account does not exist or cannot receive.
    UnknownPayee,
    /// Paying oneself.
    SamePayerAndPayee,
    /// Amount zero.
    ZeroAmount,
    /// Above the amount a grid instruction can carry.
    AmountTooLargeForGrid,
    /// The amount is above the per-payment limit.
    PerPaymentLimit,
    /// The payment would pass today's limit.
    DailyLimit,
    /// The payment would pass this week's limit.
    WeeklyLimit,
    /// The payment would pass the limit set for this payee.
    PayeeLimit,
    /// Balance too low for amount plus fee.
    InsufficientFunds,
    /// The currency is neither the payer's nor the payee's, or no rate is set.
    CurrencyNotAccepted,
    /// Soft-currency accounts may not pay into another currency.
    SoftCurrencyConversion,
    /// No pending callback for this row, or it expired.
    NoPendingCallback,
    /// The pending callback expired.
    CallbackExpired,
    /// The new envelope cannot be registered (unknown, already in use, or locked).
    EnvelopeNotRegistrable,
    /// A scheduled time in the past or too far ahead.
    BadScheduleTime,
    /// A limit or threshold change that makes no sense (e.g. per-payee limit on oneself).
    BadSetting,
    /// The account is closed or frozen by the operator.
    AccountNotActive,
    /// No payment with this reference on this account.
    UnknownReference,
    /// The payer's OK carries a checksum over another payee or amount than the pending payment:
    /// a typing mistake, or an instruction changed on the way (protocol v2). The payment is
    /// cancelled.
    ConfirmationMismatch,
    /// The row's printed recipe (an imported envelope's) does not see the whole amount, and the
    /// amount is above the operator's cap for such rows: an amount inflated on its way would pass
    /// its checksum. Nothing paid; a derived envelope (from an agent) pays more.
    PrintedRecipeLimit,
    /// At a merchant terminal: the amount needs a callback (dialback threshold or the holder's
    /// `HIGH ON`), which only the SMS path can give.
    CallbackRequired,
}

/// An envelope import file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportError {
    /// A line we cannot read, with its number (from 1) and what was expected.
    Line {
        /// Line number, from 1.
        line: usize,
        /// What was wrong.
        problem: &'static str,
    },
    /// Something missing at the end of the file.
    Missing(&'static str),
    /// The file names a format version this code does not know.
    UnsupportedVersion,
    /// Two digits of one grid column share a code, so decoding would be ambiguous.
    DuplicateGridCode {
        /// Grid 1–4.
        grid: u8,
        /// Column 1–10 (0 for the magnitude column).
        column: u8,
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Line { line, problem } => write!(f, "line {line}: {problem}"),
            ImportError::Missing(what) => write!(f, "missing {what}"),
            ImportError::UnsupportedVersion => f.write_str("unsupported format version"),
            ImportError::DuplicateGridCode { grid, column } => {
                write!(f, "grid {grid} column {column} repeats a code")
            }
        }
    }
}

/// A sealed envelope did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// Unknown format version byte.
    UnsupportedVersion,
    /// Authentication failed: wrong master key, wrong EUIN, or the bytes were changed.
    Inauthentic,
    /// The opened bytes are not a valid envelope.
    Corrupt,
}

/// The caller (server) passed something inconsistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misuse {
    /// The envelope view given is not the one the step asked for.
    WrongEnvelope,
    /// The account given is not the one the envelope is bound to, or not the one asked for.
    WrongAccount,
    /// The pending callback given is not for this envelope and row.
    WrongPending,
    /// An EUIN prefix or serial out of range.
    EuinOutOfRange,
    /// A master key of the wrong length.
    BadMasterKey,
    /// Operator configuration is inconsistent (e.g. a zero exchange rate denominator).
    BadConfig,
    /// A balance or spending figure in another currency than the account.
    CurrencyMismatch,
}
