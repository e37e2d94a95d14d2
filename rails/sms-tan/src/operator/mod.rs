//! The operator's half of SMS-TAN as pure code over the ledger's storage contract: what it keeps
//! ([`records`]: typed, versioned records and their keys), what a message needs read ([`load`],
//! [`inbound`]), the spending windows its limits count ([`spending`]), and the decisions that
//! turn what was read plus the time into effects for the server's runner to commit — inbound SMS
//! ([`inbound`], [`apply`]), scheduled payments and expiries ([`scheduler`]), the operator's API
//! ([`settings`], [`admin`]), merchant terminals ([`terminal`]), web login ([`web`]) and the
//! outbound queue's retry policy ([`outbox`]); and the one-time sealing of records an earlier
//! release wrote without a MAC ([`upgrade`]).
//!
//! Nothing here reads a clock, draws randomness or does I/O: `now` and an
//! [`offpay_operator::Entropy`] come in, [`offpay_operator::Effects`] go out, and every record
//! write is conditional on the version read, so a decision made on stale records is refused whole
//! at commit and made again.

pub mod admin;
pub mod apply;
pub mod inbound;
pub mod load;
pub mod outbox;
pub mod records;
pub mod scheduler;
pub mod settings;
pub mod spending;
pub mod terminal;
pub mod upgrade;
pub mod web;

#[cfg(test)]
mod tamper_tests;
#[cfg(test)]
mod testing;

use offpay_ledger::{Currency, Timestamp};
use offpay_operator::phone::{Country, normalise};
use offpay_operator::{EntropyError, RecordError};

use crate::account::CurrencyClass;
use crate::civil_time::UnixSeconds;
use crate::engine::Engine;
use crate::keys::MasterKey;
use crate::numbers::PhoneNumber;

pub use settings::Settings;

/// Why an operator request was not carried out. Split by cause: the caller's request
/// ([`OperatorError::Invalid`], [`OperatorError::NotFound`], [`OperatorError::Conflict`],
/// [`OperatorError::Unprocessable`]), the stored data ([`OperatorError::Record`]), the machine
/// ([`OperatorError::Entropy`]) or a broken invariant ([`OperatorError::Internal`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// The request is malformed or out of bounds.
    #[error("{message}")]
    Invalid {
        /// Stable machine-readable code, e.g. `invalid_amount`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// Something the request names does not exist.
    #[error("no {what} with id {id}")]
    NotFound {
        /// What kind of thing (`sms_account`, `envelope`, …).
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The request contradicts what is stored (the envelope is bound already, …).
    #[error("{message}")]
    Conflict {
        /// Stable machine-readable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// The request is well formed but cannot be carried out (no such payment to refund, …).
    #[error("{message}")]
    Unprocessable {
        /// Stable machine-readable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// A stored record could not be read or written.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The entropy source failed; no secret could be made.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
    /// A broken invariant of the operator's data or of this crate.
    #[error("internal: {0}")]
    Internal(String),
}

impl OperatorError {
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> OperatorError {
        OperatorError::Invalid {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> OperatorError {
        OperatorError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> OperatorError {
        OperatorError::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

/// The operator's half, configured: the verification engine (settings and master key), the
/// settings it was built from, the server's currency (the one operator account ids leave bare)
/// and the country whose national phone numbers people write.
#[derive(Debug)]
pub struct Operator {
    engine: Engine,
    settings: Settings,
    server_currency: Currency,
    default_country: Country,
}

impl Operator {
    /// The engine for `settings` with `master`; refuses settings the engine cannot run on.
    pub fn new(
        master: MasterKey,
        settings: Settings,
        server_currency: Currency,
        default_country: Country,
    ) -> Result<Operator, OperatorError> {
        let engine = Engine::new(settings.engine_config(), master)
            .map_err(|misuse| OperatorError::invalid("invalid_settings", format!("{misuse:?}")))?;
        Ok(Operator {
            engine,
            settings,
            server_currency,
            default_country,
        })
    }

    /// The country national phone numbers (`0711000003`) are read in.
    pub fn default_country(&self) -> Country {
        self.default_country
    }

    /// Texts to accounts that chose no language, and replies before an account is known, in
    /// `language` (the server's `--default-language`).
    pub fn with_default_language(mut self, language: offpay_text::Language) -> Operator {
        self.engine.set_default_language(language);
        self
    }

    /// The language of texts to accounts that chose none.
    pub fn default_language(&self) -> offpay_text::Language {
        self.engine.default_language()
    }

    /// The verification engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The master key (tags, sealing, printing).
    pub fn master(&self) -> &MasterKey {
        self.engine.master()
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The server's currency.
    pub fn server_currency(&self) -> Currency {
        self.server_currency
    }

    /// Whether payments may convert out of `currency`.
    pub fn class_of(&self, currency: Currency) -> CurrencyClass {
        self.settings.class_of(currency)
    }

    /// The operator's time zone, minutes east of UTC.
    pub fn utc_offset_minutes(&self) -> i32 {
        self.settings.utc_offset_minutes
    }
}

/// A phone number from the operator's API (`field` names where it came from) in E.164, read in
/// `country` when written in national form; the error says what is wrong with it.
pub fn phone_number(
    text: &str,
    country: Country,
    field: &str,
) -> Result<PhoneNumber, OperatorError> {
    let e164 = normalise(text, country).map_err(|error| {
        OperatorError::invalid("invalid_phone", format!("{field}: {text:?} {error}"))
    })?;
    PhoneNumber::parse(e164.as_str())
        .map_err(|_| OperatorError::Internal(format!("{e164} is E.164 but not a phone number")))
}

/// Whole seconds of a ledger timestamp (the engine counts in seconds).
pub fn seconds(now: Timestamp) -> UnixSeconds {
    UnixSeconds(now.0 / 1000)
}
