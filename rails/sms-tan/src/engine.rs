//! The operator side of the protocol as a sans-I/O step machine.
//!
//! For each inbound SMS the server calls [`Engine::receive`] and then answers what the returned
//! [`Next`] asks for — the payer, a pending callback, the payee, or a new envelope — by loading
//! it (inside one database transaction) and passing it to the request's `provide`. The final
//! [`Outcome`] lists the [`Effect`]s to write, the [`Posting`]s for the ledger and the
//! [`OutboundSms`] replies to queue; the server applies all of them in that same database
//! transaction. [`Effect::UpdateEnvelope`] carries the used-row set as loaded: write it only if the
//! stored set is still that one (compare-and-set), and re-run the message otherwise, so two SMS
//! racing for one envelope can never both use a row.
//!
//! The engine reads no clock and draws no randomness: time comes in with the message.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;

use offpay_money::{Amount, Currency};
use offpay_text::Language;

use crate::account::{
    AccountView, CurrencyClass, ExchangeRate, FeeSchedule, Limits, PayeeLimit, Spending,
};
use crate::civil_time::{CivilDateTime, UnixSeconds};
use crate::content;
use crate::envelope::{EnvelopeStatus, EnvelopeView, RowSet};
use crate::error::{Misuse, ParseError, Refusal};
use crate::grammar::{
    self, EncryptedEuin, EncryptedPayee, LanguageChoice, LimitChange, Message, Password, PayerRef,
    Payment, PaymentBody, RowTan, SecurityLevel, TypedAmount,
};
use crate::keys::BindingTag;
use crate::keys::MasterKey;
use crate::limits::{
    ACCOUNT_NUMBER_DIGITS, CALLBACK_TIMEOUT_SECONDS, CHANGED_IN_TRANSIT_MATCHES_MIN,
    CHECKSUM_DIGITS, ENCRYPTED_ACCOUNT_DIGITS, GRID_AMOUNT_MAX_HUNDREDTHS, LOCKOUT_FAILURES,
    PAYEE_LIMITS_MAX, PLAIN_PAYEE_DIGITS, ROWS_RESERVED_FOR_REGISTRATION, SCHEDULE_AHEAD_DAYS_MAX,
};
use crate::numbers::{AccountNumber, Euin, PhoneNumber, Tan};
use crate::posting::{LedgerAccount, Posting, PostingKind, Reference, TransferId};
use crate::recipe::AmountDigits;
use crate::redact::{RedactedSms, redact_sms};
use crate::reply::{self, LimitSpan, SettingChange};
use crate::secrets::EnvelopeSecrets;

/// Bank rows a payment needs after the payer's row: the confirmation.
const BANK_ROWS_DIRECT: usize = 1;
/// Rows a callback payment needs after the payer's row: the bank's callback row, the payer's
/// confirming row and the final confirmation.
const BANK_ROWS_CALLBACK: usize = 3;
/// Bank rows a settings change needs: its confirmation.
const BANK_ROWS_SETTING: usize = 1;
const SECONDS_PER_DAY: u64 = 86_400;

/// One inbound SMS as the gateway adapter hands it over.
#[derive(Clone)]
pub struct Inbound {
    /// The gateway's id for this message (stable across gateway retries): transfer ids derive
    /// from it, so a retried SMS can never post twice.
    pub message_id: String,
    /// The sending phone.
    pub from: PhoneNumber,
    /// The text. Not stored by this crate; the server must not store it either (use
    /// [`Outcome::redacted`]).
    pub text: String,
    /// When it arrived.
    pub received_at: UnixSeconds,
}

impl core::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Inbound({}, from {}, {})",
            self.message_id,
            self.from,
            redact_sms(&self.text)
        )
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.text);
    }
}

/// A reply to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundSms {
    /// Recipient.
    pub to: PhoneNumber,
    /// Text, at most 160 GSM-7 characters.
    pub text: String,
}

/// Without an operator setting, a row whose printed recipe does not see the whole amount pays
/// below this many major units (999.99 in a two-decimal currency): three whole digits at most,
/// so what its checksum lets through unseen stays below 1,000 major units a payment.
pub const PRINTED_RECIPE_MAX_DEFAULT_MAJOR: u64 = 1_000;

/// The operator's settings.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// Fees per level, one schedule per currency (none: no fee in that currency).
    pub fees: Vec<FeeSchedule>,
    /// Default dialback threshold per currency (none: callback only when asked for).
    pub dialback_defaults: Vec<Amount>,
    /// The largest payment a row whose printed recipe does not see the whole amount (an imported
    /// envelope's, [`crate::recipe::Recipe::sees_whole_amount`]) may authorise, per currency of
    /// the amount typed; a currency not listed gets [`PRINTED_RECIPE_MAX_DEFAULT_MAJOR`] − 0.01.
    /// Above it such a row is refused ([`Refusal::PrintedRecipeLimit`]), so an amount inflated
    /// unseen by its checksum stays below the cap.
    pub printed_recipe_max: Vec<Amount>,
    /// Exchange rates the operator sets.
    pub rates: Vec<ExchangeRate>,
    /// The operator's time zone for scheduled payments, minutes east of UTC.
    pub utc_offset_minutes: i32,
    /// The language of texts to accounts that chose none, and of replies sent before the
    /// sender's account is known (a message that cannot be read).
    pub default_language: Language,
}

impl EngineConfig {
    fn fee(&self, currency: Currency, level: SecurityLevel) -> Amount {
        self.fees
            .iter()
            .find(|schedule| schedule.currency() == Some(currency))
            .map(|schedule| schedule.fee(level))
            .unwrap_or(Amount::zero(currency))
    }

    /// The cap on what a row with a printed (seed-format) recipe may pay in `currency`.
    pub fn printed_recipe_max(&self, currency: Currency) -> Amount {
        self.printed_recipe_max
            .iter()
            .find(|amount| amount.currency() == currency)
            .copied()
            .unwrap_or_else(|| {
                let minor = PRINTED_RECIPE_MAX_DEFAULT_MAJOR
                    .saturating_mul(currency.minor_per_major())
                    .saturating_sub(1);
                Amount::from_minor(minor, currency).unwrap_or(Amount::zero(currency))
            })
    }

    fn default_threshold(&self, currency: Currency) -> Option<Amount> {
        self.dialback_defaults
            .iter()
            .find(|amount| amount.currency() == currency)
            .copied()
    }

    fn rate(&self, from: Currency, to: Currency) -> Option<&ExchangeRate> {
        self.rates
            .iter()
            .find(|rate| rate.from == from && rate.to == to)
    }
}

/// The payer side, as loaded by the server.
#[derive(Clone, Debug)]
pub struct PayerContext {
    /// The envelope named by the message (or, for a pay number, the account's current envelope).
    pub envelope: EnvelopeView,
    /// The account that envelope is bound to.
    pub account: AccountView,
    /// Available balance (ledger balance less pending holds), in the account's currency.
    pub balance: Amount,
    /// What was paid today and this week.
    pub spending: Spending,
}

/// The payee side, as loaded by the server.
#[derive(Clone, Debug)]
pub struct PayeeContext {
    /// The payee account (found by its receive number).
    pub account: AccountView,
    /// Its current envelope, if any (for a coded notice).
    pub envelope: Option<EnvelopeView>,
    /// What this payer has paid this payee today, in the payer's currency (for per-payee limits).
    pub paid_by_payer_today: Amount,
}

/// A payment waiting for the payer's OK. Persist it keyed by (`euin`, `callback_row`); it holds
/// no secret (the row's TAN is re-derived when the OK arrives).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCallback {
    /// Format version of this record.
    pub format_version: u8,
    /// The payer's envelope.
    pub euin: Euin,
    /// The row the bank sent in the callback.
    pub callback_row: u8,
    /// The row of the original instruction.
    pub instruction_row: u8,
    /// The level the payer asked for (Low payments above the threshold keep their low form).
    pub requested_level: SecurityLevel,
    /// The original inbound message id (transfer ids derive from it).
    pub message_id: String,
    /// The payer's receive number.
    pub payer: AccountNumber,
    /// The payee's receive number.
    pub payee: AccountNumber,
    /// The amount as instructed, in the currency typed.
    pub amount: Amount,
    /// When the callback was sent.
    pub created_at: UnixSeconds,
    /// For a scheduled payment, when to pay.
    pub due: Option<(CivilDateTime, UnixSeconds)>,
    /// The payer's language when the callback was sent (for the expiry notice); `None`: the
    /// operator's default.
    pub language: Option<Language>,
}

/// Current format version of [`PendingCallback`] and [`ScheduledPayment`].
pub const RECORD_FORMAT_VERSION: u8 = 1;

impl PendingCallback {
    /// When the payer's OK stops being accepted.
    pub fn expires_at(&self) -> UnixSeconds {
        UnixSeconds(self.created_at.0.saturating_add(CALLBACK_TIMEOUT_SECONDS))
    }
}

/// A verified payment to execute later; the server's scheduler calls
/// [`Engine::execute_scheduled`] at `due`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledPayment {
    /// Format version of this record.
    pub format_version: u8,
    /// The original inbound message id (transfer ids derive from it).
    pub message_id: String,
    /// The payer's receive number.
    pub payer: AccountNumber,
    /// The payee's receive number.
    pub payee: AccountNumber,
    /// The amount as instructed, in the currency typed.
    pub amount: Amount,
    /// The level used (decides the fee).
    pub level: SecurityLevel,
    /// When to pay.
    pub due: UnixSeconds,
    /// Where to send the confirmation.
    pub reply_to: PhoneNumber,
    /// The reference given to the payer.
    pub reference: Reference,
}

/// What the server must write, in the same database transaction as the postings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Store the envelope's new row set, failure count and status — only if its stored row set is
    /// still `expected_used_rows` (compare-and-set); otherwise discard the outcome and re-run.
    UpdateEnvelope {
        /// Which envelope.
        euin: Euin,
        /// The row set as loaded.
        expected_used_rows: RowSet,
        /// The new row set.
        used_rows: RowSet,
        /// The new consecutive-failure count.
        consecutive_failures: u8,
        /// The new status.
        status: EnvelopeStatus,
        /// The new binding tag.
        binding: Option<BindingTag>,
    },
    /// Store a pending callback.
    CreatePending(PendingCallback),
    /// Delete the pending callback of this envelope and row.
    RemovePending {
        /// Envelope.
        euin: Euin,
        /// Callback row.
        callback_row: u8,
    },
    /// Store a scheduled payment.
    Schedule(ScheduledPayment),
    /// Replace the account's limits.
    SetLimits {
        /// Account (receive number).
        account: AccountNumber,
        /// New limits.
        limits: Limits,
    },
    /// Set the dialback threshold.
    SetDialbackThreshold {
        /// Account.
        account: AccountNumber,
        /// New threshold.
        threshold: Amount,
    },
    /// Callback on every payment, or not.
    SetAlwaysCallback {
        /// Account.
        account: AccountNumber,
        /// On or off.
        on: bool,
    },
    /// Hash and store the web password (hash it at once; never store or log it in clear).
    SetWebPassword {
        /// Account.
        account: AccountNumber,
        /// The password.
        password: Password,
    },
    /// Set the language of the account's texts.
    SetLanguage {
        /// Account.
        account: AccountNumber,
        /// The language chosen.
        language: Language,
    },
    /// Open a dispute case for the operator.
    OpenDispute {
        /// Reporting account.
        account: AccountNumber,
        /// The payment's reference.
        reference: Reference,
        /// When reported.
        reported_at: UnixSeconds,
    },
    /// Raise a replay incident in the fraud queue: a used row named again with its right code
    /// (an interceptor re-sending a message under a new gateway id, or the holder writing a
    /// crossed-out row). Not counted as the holder's failure; accuses no one.
    ReportReplay {
        /// Which envelope.
        euin: Euin,
        /// The used row.
        row: u8,
    },
    /// Send the account's statement ([`crate::reply::statement`]) to `to`.
    SendStatement {
        /// Account.
        account: AccountNumber,
        /// Recipient.
        to: PhoneNumber,
    },
}

/// How the message ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Done (paid, pending callback sent, scheduled, setting changed…).
    Accepted,
    /// Read but refused.
    Refused(Refusal),
    /// Not readable.
    Malformed(ParseError),
}

/// Everything the server does after one message.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How it ended.
    pub verdict: Verdict,
    /// Writes.
    pub effects: Vec<Effect>,
    /// Ledger postings (all posted together, or none).
    pub postings: Vec<Posting>,
    /// Replies to queue.
    pub replies: Vec<OutboundSms>,
    /// What may be logged about the inbound message.
    pub redacted: Option<RedactedSms>,
}

impl Outcome {
    /// An accepted outcome with nothing in it (to carry operator effects such as
    /// [`Engine::bind_at_agent`] through the same apply path).
    pub fn empty() -> Outcome {
        Outcome::new(Verdict::Accepted)
    }

    fn new(verdict: Verdict) -> Outcome {
        Outcome {
            verdict,
            effects: Vec::new(),
            postings: Vec::new(),
            replies: Vec::new(),
            redacted: None,
        }
    }

    fn reply(mut self, to: &PhoneNumber, text: String) -> Outcome {
        self.replies.push(OutboundSms {
            to: to.clone(),
            text,
        });
        self
    }

    /// True if accepted.
    pub fn is_accepted(&self) -> bool {
        self.verdict == Verdict::Accepted
    }
}

/// What the engine needs next.
#[derive(Debug)]
pub enum Next {
    /// Load the payer ([`PayerRequest::payer`]) and call [`PayerRequest::provide`].
    NeedPayer(PayerRequest),
    /// Load the pending callback and call [`PendingRequest::provide`].
    NeedPending(PendingRequest),
    /// Load the payee and call [`PayeeRequest::provide`].
    NeedPayee(PayeeRequest),
    /// Load the new envelope and call [`NewEnvelopeRequest::provide`].
    NeedNewEnvelope(NewEnvelopeRequest),
    /// Finished.
    Done(Outcome),
}

/// The engine: operator settings and the master key.
pub struct Engine {
    config: EngineConfig,
    master: MasterKey,
}

impl core::fmt::Debug for Engine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("master", &self.master)
            .finish()
    }
}

struct Session {
    message_id: String,
    from: PhoneNumber,
    received_at: UnixSeconds,
    redacted: RedactedSms,
}

/// Waiting for the payer.
pub struct PayerRequest {
    session: Session,
    message: Message,
}

impl core::fmt::Debug for PayerRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PayerRequest({:?})", self.session.redacted)
    }
}

/// The envelope's bookkeeping while a message is handled.
struct EnvelopeState {
    loaded: EnvelopeView,
    used: RowSet,
    failures: u8,
    status: EnvelopeStatus,
    binding: Option<BindingTag>,
    /// A used row named again with its right code (a replay), for the fraud queue.
    replayed: Option<u8>,
}

impl EnvelopeState {
    fn new(view: EnvelopeView) -> EnvelopeState {
        EnvelopeState {
            replayed: None,
            used: view.used_rows,
            failures: view.consecutive_failures,
            status: view.status,
            binding: view.binding,
            loaded: view,
        }
    }

    fn free(&self) -> usize {
        self.used.free_count(self.loaded.rows)
    }

    /// Takes the highest free row for a bank reply, keeping the registration reserve.
    fn take_bank_row(&mut self) -> Option<u8> {
        if self.free() <= ROWS_RESERVED_FOR_REGISTRATION {
            return None;
        }
        let row = self.used.highest_free(self.loaded.rows)?;
        self.used.insert(row);
        Some(row)
    }

    fn effect(&self) -> Option<Effect> {
        let changed = self.used != self.loaded.used_rows
            || self.failures != self.loaded.consecutive_failures
            || self.status != self.loaded.status
            || self.binding != self.loaded.binding;
        changed.then(|| Effect::UpdateEnvelope {
            euin: self.loaded.euin,
            expected_used_rows: self.loaded.used_rows,
            used_rows: self.used,
            consecutive_failures: self.failures,
            status: self.status,
            binding: self.binding,
        })
    }
}

/// What a message's code says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CodeCheck {
    /// The code is the row's for this content.
    Verified,
    /// A payment's checksum that misses only in a few positions
    /// ([`CHANGED_IN_TRANSIT_MATCHES_MIN`] agree), everything else right: the content was changed
    /// on its way (or the holder slipped), not guessed.
    Changed,
    /// A wrong code: a guess, or a code rewritten on its way (the two cannot be told apart).
    Wrong,
}

impl CodeCheck {
    /// The verdict on a payment's six-digit checksum agreeing in `agreeing` positions, the rest
    /// of the payment's protected fields being `rest_ok`.
    fn of_checksum(agreeing: usize, rest_ok: bool) -> CodeCheck {
        if agreeing == CHECKSUM_DIGITS && rest_ok {
            CodeCheck::Verified
        } else if rest_ok && agreeing >= CHANGED_IN_TRANSIT_MATCHES_MIN {
            CodeCheck::Changed
        } else {
            CodeCheck::Wrong
        }
    }
}

/// A payer whose row verified.
struct Authenticated {
    session: Session,
    account: AccountView,
    balance: Amount,
    spending: Spending,
    envelope: EnvelopeState,
    secrets: EnvelopeSecrets,
}

/// What a payment is, once decoded.
struct Intent {
    requested_level: SecurityLevel,
    payee: AccountNumber,
    amount: Amount,
    instruction_row: u8,
    due: Option<(CivilDateTime, UnixSeconds)>,
    /// Set when this is the OK to a callback.
    confirmed: Option<PendingCallback>,
    message_id: String,
    reply_to: PhoneNumber,
}

/// Waiting for a pending callback.
pub struct PendingRequest {
    auth: Box<Authenticated>,
    bank: RowTan,
    payer_row: grammar::RowChecksum,
}

impl core::fmt::Debug for PendingRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PendingRequest({}, row {})", self.euin(), self.bank.row)
    }
}

/// Waiting for the payee.
pub struct PayeeRequest {
    auth: Box<Authenticated>,
    intent: Intent,
}

impl core::fmt::Debug for PayeeRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PayeeRequest({})", self.intent.payee)
    }
}

/// Waiting for the envelope to register.
pub struct NewEnvelopeRequest {
    auth: Box<Authenticated>,
    new_envelope: Euin,
}

impl core::fmt::Debug for NewEnvelopeRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NewEnvelopeRequest({})", self.new_envelope)
    }
}

impl PayerRequest {
    /// Who to load: by EUIN, load that envelope and the account it is bound to; by pay number,
    /// load the account and its current (active or locked) envelope.
    pub fn payer(&self) -> PayerRef {
        // Every message but HELP names a payer, and HELP never asks for one.
        match self.message.payer() {
            Some(payer) => payer,
            None => unreachable!("HELP is answered without a payer"),
        }
    }

    /// Continues with the payer, or `None` if nothing answers to the reference.
    pub fn provide(self, engine: &Engine, payer: Option<PayerContext>) -> Next {
        engine.with_payer(self, payer)
    }
}

impl PendingRequest {
    /// The envelope of the pending callback.
    pub fn euin(&self) -> Euin {
        self.auth.envelope.loaded.euin
    }
    /// The callback row the payer quoted.
    pub fn callback_row(&self) -> u8 {
        self.bank.row
    }
    /// Continues with the pending callback stored under (`euin`, `callback_row`), if any.
    pub fn provide(self, engine: &Engine, pending: Option<PendingCallback>) -> Next {
        engine.with_pending(self, pending)
    }
}

impl PayeeRequest {
    /// The payee's receive number to load.
    pub fn payee(&self) -> AccountNumber {
        self.intent.payee
    }
    /// The payer's receive number (to sum what it paid this payee today).
    pub fn payer(&self) -> AccountNumber {
        self.auth.account.receive_number
    }
    /// Continues with the payee, or `None` if no account has that receive number.
    pub fn provide(self, engine: &Engine, payee: Option<PayeeContext>) -> Next {
        engine.with_payee(self, payee)
    }
}

impl NewEnvelopeRequest {
    /// The envelope to load.
    pub fn euin(&self) -> Euin {
        self.new_envelope
    }
    /// Continues with that envelope, or `None` if unknown.
    pub fn provide(self, engine: &Engine, envelope: Option<EnvelopeView>) -> Next {
        engine.with_new_envelope(self, envelope)
    }
}

fn hundredths_amount(hundredths: u64, currency: Currency) -> Option<Amount> {
    let exponent = currency.exponent();
    let minor = if exponent >= 2 {
        hundredths.checked_mul(10u64.pow(u32::from(exponent - 2)))?
    } else {
        let scale = 10u64.pow(u32::from(2 - exponent));
        if !hundredths.is_multiple_of(scale) {
            return None;
        }
        hundredths / scale
    };
    Amount::from_minor(minor, currency).ok()
}

fn typed_text(amount: &Amount, account_currency: Currency) -> String {
    let typed = TypedAmount::from_amount(amount);
    if amount.currency() == account_currency {
        format!("{typed}")
    } else {
        format!("{typed} {}", amount.currency())
    }
}

impl Engine {
    /// An engine with the operator's settings and master key.
    pub fn new(config: EngineConfig, master: MasterKey) -> Result<Engine, Misuse> {
        let rates_valid = config
            .rates
            .iter()
            .all(|rate| rate.numerator > 0 && rate.denominator > 0 && rate.from != rate.to);
        let fees_valid = config
            .fees
            .iter()
            .all(|schedule| schedule.currency().is_some());
        if !rates_valid || !fees_valid {
            return Err(Misuse::BadConfig);
        }
        Ok(Engine { config, master })
    }

    /// The master key (for printing and sealing).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// True if the envelope's status names an account and its binding tag matches.
    fn binding_valid(&self, view: &EnvelopeView) -> bool {
        let account = match view.status {
            EnvelopeStatus::Active { account } | EnvelopeStatus::Locked { account } => account,
            EnvelopeStatus::Unallocated | EnvelopeStatus::Retired => return false,
        };
        let expected = self.master.binding_tag(&view.euin, &account);
        view.binding.is_some_and(|tag| tag.matches(&expected))
    }

    /// Binds a first envelope to an account at an agent (after the agent checked the holder's
    /// identity). Later envelopes are bound by the holder's REG message.
    pub fn bind_at_agent(
        &self,
        view: &EnvelopeView,
        account: AccountNumber,
    ) -> Result<Effect, Refusal> {
        if view.status != EnvelopeStatus::Unallocated {
            return Err(Refusal::EnvelopeNotRegistrable);
        }
        Ok(Effect::UpdateEnvelope {
            euin: view.euin,
            expected_used_rows: view.used_rows,
            used_rows: view.used_rows,
            consecutive_failures: 0,
            status: EnvelopeStatus::Active { account },
            binding: Some(self.master.binding_tag(&view.euin, &account)),
        })
    }

    /// Unlocks a locked envelope (the operator's decision, after checking the holder).
    pub fn unlock(&self, view: &EnvelopeView) -> Result<Effect, Refusal> {
        let EnvelopeStatus::Locked { account } = view.status else {
            return Err(Refusal::BadSetting);
        };
        if !self.binding_valid(view) {
            return Err(Refusal::NotAuthenticated);
        }
        Ok(Effect::UpdateEnvelope {
            euin: view.euin,
            expected_used_rows: view.used_rows,
            used_rows: view.used_rows,
            consecutive_failures: 0,
            status: EnvelopeStatus::Active { account },
            binding: view.binding,
        })
    }

    /// Starts on one inbound SMS.
    pub fn receive(&self, inbound: Inbound) -> Next {
        let parsed = grammar::parse(&inbound.text);
        let redacted = crate::redact::redact_parsed(&inbound.text, parsed.as_ref().ok());
        let session = Session {
            message_id: inbound.message_id.clone(),
            from: inbound.from.clone(),
            received_at: inbound.received_at,
            redacted,
        };
        match parsed {
            Err(error) => {
                let text = reply::malformed(self.config.default_language, &error, &inbound.text);
                Next::Done(self.done(
                    &session,
                    Outcome::new(Verdict::Malformed(error)).reply(&session.from, text),
                ))
            }
            Ok(Message::Help) => Next::Done(
                self.done(
                    &session,
                    Outcome::new(Verdict::Accepted)
                        .reply(&session.from, reply::help(self.config.default_language)),
                ),
            ),
            Ok(message) => Next::NeedPayer(PayerRequest { session, message }),
        }
    }

    fn done(&self, session: &Session, mut outcome: Outcome) -> Outcome {
        outcome.redacted = Some(session.redacted);
        outcome
    }

    /// Sets the language of texts to accounts that chose none.
    pub fn set_default_language(&mut self, language: Language) {
        self.config.default_language = language;
    }

    /// The language of texts to accounts that chose none.
    pub fn default_language(&self) -> Language {
        self.config.default_language
    }

    /// The language texts to `account` are written in.
    pub fn language_of(&self, account: &AccountView) -> Language {
        account.language.unwrap_or(self.config.default_language)
    }

    fn refuse_plain(&self, lang: Language, session: &Session, refusal: Refusal) -> Next {
        let text = reply::refused(lang, &refusal, None, false);
        Next::Done(self.done(
            session,
            Outcome::new(Verdict::Refused(refusal)).reply(&session.from, text),
        ))
    }

    /// Refusal after the row was identified: burns `row` (its secret may have travelled), counts a
    /// failure if `counts`, and locks at [`LOCKOUT_FAILURES`].
    fn refuse_with_row(
        &self,
        lang: Language,
        session: &Session,
        envelope: &mut EnvelopeState,
        refusal: Refusal,
        row: Option<u8>,
        counts: bool,
    ) -> Outcome {
        let mut burned = None;
        if let Some(row) = row
            && (1..=envelope.loaded.rows.get()).contains(&row)
            && !envelope.used.contains(row)
        {
            envelope.used.insert(row);
            burned = Some(row);
        }
        let mut locked_now = false;
        if counts {
            envelope.failures = envelope.failures.saturating_add(1);
            if envelope.failures >= LOCKOUT_FAILURES
                && let EnvelopeStatus::Active { account } = envelope.status
            {
                envelope.status = EnvelopeStatus::Locked { account };
                locked_now = true;
            }
        }
        let text = reply::refused(lang, &refusal, burned, locked_now);
        let mut outcome = Outcome::new(Verdict::Refused(refusal)).reply(&session.from, text);
        outcome.effects.extend(envelope.effect());
        if let Some(row) = envelope.replayed {
            outcome.effects.push(Effect::ReportReplay {
                euin: envelope.loaded.euin,
                row,
            });
        }
        self.done(session, outcome)
    }

    fn with_payer(&self, request: PayerRequest, payer: Option<PayerContext>) -> Next {
        let PayerRequest { session, message } = request;
        let Some(payer) = payer else {
            return self.refuse_plain(
                self.config.default_language,
                &session,
                Refusal::NotAuthenticated,
            );
        };
        let lang = self.language_of(&payer.account);
        let bound_account = match payer.envelope.status {
            EnvelopeStatus::Active { account } => account,
            EnvelopeStatus::Locked { .. } => {
                return self.refuse_plain(lang, &session, Refusal::EnvelopeLocked);
            }
            EnvelopeStatus::Unallocated | EnvelopeStatus::Retired => {
                return self.refuse_plain(lang, &session, Refusal::EnvelopeNotActive);
            }
        };
        if !self.binding_valid(&payer.envelope) {
            return self.refuse_plain(lang, &session, Refusal::NotAuthenticated);
        }
        assert_eq!(
            bound_account,
            payer.account.receive_number,
            "the server must load the account the envelope is bound to ({:?})",
            Misuse::WrongAccount
        );
        match message.payer() {
            Some(PayerRef::Envelope(euin)) => assert_eq!(
                euin,
                payer.envelope.euin,
                "the server must load the envelope named ({:?})",
                Misuse::WrongEnvelope
            ),
            Some(PayerRef::PayNumber(number)) => {
                // Constant-time: the pay number is a secret.
                let equal: bool = subtle::ConstantTimeEq::ct_eq(
                    &number.digits()[..],
                    &payer.account.pay_number.digits()[..],
                )
                .into();
                if !equal {
                    return self.refuse_plain(lang, &session, Refusal::NotAuthenticated);
                }
            }
            None => {}
        }
        if !payer.account.active {
            return self.refuse_plain(lang, &session, Refusal::AccountNotActive);
        }
        if !payer.account.phone_allowed(&session.from) {
            return self.refuse_plain(lang, &session, Refusal::PhoneNotBound);
        }
        if payer.account.require_pay_number
            && matches!(message.payer(), Some(PayerRef::Envelope(_)))
        {
            return self.refuse_plain(lang, &session, Refusal::PayNumberRequired);
        }
        if payer.balance.currency() != payer.account.currency
            || payer.spending.today.currency() != payer.account.currency
            || payer.spending.this_week.currency() != payer.account.currency
            || payer.account.check_consistent().is_err()
        {
            panic!(
                "payer context in another currency than the account ({:?})",
                Misuse::CurrencyMismatch
            );
        }
        let secrets = match EnvelopeSecrets::for_view(&self.master, &payer.envelope) {
            Ok(secrets) => secrets,
            // A sealed envelope that does not open is the operator's problem, not the sender's:
            // refuse without counting a failure.
            Err(_) => return self.refuse_plain(lang, &session, Refusal::NotAuthenticated),
        };
        if let Message::Payment(payment) | Message::Scheduled { payment, .. } = &message {
            let currency = payment.currency.unwrap_or(payer.account.currency);
            let readable = match &payment.body {
                PaymentBody::Plain { amount, .. } => amount.to_amount(currency).is_ok(),
                PaymentBody::Grid { .. } => true,
            };
            if !readable {
                // More decimals than the currency has: a typing matter, answered like any
                // unreadable part; no row is used and no failure counted.
                let error = ParseError::Unreadable(crate::error::Field::Amount);
                let text = reply::too_many_decimals(lang, currency);
                return Next::Done(self.done(
                    &session,
                    Outcome::new(Verdict::Malformed(error)).reply(&session.from, text),
                ));
            }
        }
        let mut auth = Box::new(Authenticated {
            session,
            account: payer.account,
            balance: payer.balance,
            spending: payer.spending,
            envelope: EnvelopeState::new(payer.envelope),
            secrets,
        });
        match self.authenticate(&mut auth, &message) {
            Ok(()) => {}
            Err((refusal, row, counts)) => {
                let outcome = self.refuse_with_row(
                    self.language_of(&auth.account),
                    &auth.session,
                    &mut auth.envelope,
                    refusal,
                    row,
                    counts,
                );
                return Next::Done(outcome);
            }
        }
        // An OK is verified only against its pending payment: the failure count is reset there.
        if !matches!(message, Message::Confirm { .. }) {
            auth.envelope.failures = 0;
        }
        self.dispatch(auth, message)
    }

    /// Checks the row (range, unused) and its secret; on success the row is used.
    ///
    /// Only a code checked against an unused row's secret counts towards the lockout: that is
    /// the only guess that could pay. A row beyond the envelope or already used is refused
    /// without counting (an interceptor's replay under a new gateway id, or a holder writing a
    /// crossed-out row, must not lock a holder's envelope); a used row whose code verifies is a
    /// replay, reported to the fraud queue. A code that misses only where a change of the
    /// content moves it ([`CodeCheck::Changed`]) is refused as changed on its way, uncounted.
    #[allow(clippy::type_complexity)]
    fn authenticate(
        &self,
        auth: &mut Authenticated,
        message: &Message,
    ) -> Result<(), (Refusal, Option<u8>, bool)> {
        let row_number = match message {
            Message::Payment(payment) | Message::Scheduled { payment, .. } => payment.body.row(),
            Message::Confirm { payer_row, .. } => payer_row.row,
            Message::Register { auth, .. }
            | Message::Limit { auth, .. }
            | Message::Dialback { auth, .. }
            | Message::ForceHigh { auth, .. }
            | Message::SetPassword { auth, .. }
            | Message::SetLanguage { auth, .. }
            | Message::Dispute { auth, .. } => auth.row,
            Message::Balance { auth: row_tan, .. } | Message::Statement { auth: row_tan, .. } => {
                match row_tan {
                    Some(row_tan) => row_tan.row,
                    None if auth.account.phone_bound(&auth.session.from) => return Ok(()),
                    None => return Err((Refusal::NotAuthenticated, None, false)),
                }
            }
            Message::Help => return Ok(()),
        };
        // Reverted (simulator), rows that cannot pay count as before.
        let unpayable_rows_count = crate::reverts::reverted(crate::reverts::USED_ROW_NOT_COUNTED);
        if row_number > auth.envelope.loaded.rows.get() {
            return Err((
                Refusal::RowOutOfRange { row: row_number },
                None,
                unpayable_rows_count,
            ));
        }
        if auth.envelope.used.contains(row_number) {
            // A used row can neither pay nor change anything, so no code on it is a guess worth
            // counting. The reply is the same whether or not the code verifies (no oracle); the
            // fraud queue hears of a verifying one: a replay, counted against the channel.
            let replayed = !unpayable_rows_count
                && !matches!(message, Message::Confirm { .. })
                && auth.secrets.row(row_number).is_some_and(|row| {
                    matches!(self.check_code(auth, message, row), Ok(CodeCheck::Verified))
                });
            if replayed {
                auth.envelope.replayed = Some(row_number);
            }
            return Err((
                Refusal::RowUsed { row: row_number },
                None,
                unpayable_rows_count,
            ));
        }
        // The last free row registers the next envelope and nothing else.
        if !matches!(message, Message::Register { .. })
            && auth.envelope.free() <= ROWS_RESERVED_FOR_REGISTRATION
        {
            return Err((Refusal::LastRowReserved, None, false));
        }
        let Some(row) = auth.secrets.row(row_number) else {
            return Err((
                Refusal::RowOutOfRange { row: row_number },
                None,
                unpayable_rows_count,
            ));
        };
        match self.check_code(auth, message, row) {
            Ok(CodeCheck::Verified) => {}
            // A payment changed on its way: the row is burned and the fraud queue hears of it,
            // but it is not the holder's failure (a guess lands here 1.27 times in 1000).
            Ok(CodeCheck::Changed) => {
                return Err((Refusal::ContentMismatch, Some(row_number), false));
            }
            Ok(CodeCheck::Wrong) => {
                let refusal = match message {
                    Message::Payment(Payment { level, .. })
                    | Message::Scheduled {
                        payment: Payment { level, .. },
                        ..
                    } if *level != SecurityLevel::Low => Refusal::CodesDoNotMatch,
                    Message::Register { .. }
                    | Message::Limit { .. }
                    | Message::Dialback { .. }
                    | Message::ForceHigh { .. }
                    | Message::SetPassword { .. }
                    | Message::SetLanguage { .. }
                    | Message::Dispute { .. } => Refusal::ContentMismatch,
                    _ => Refusal::NotAuthenticated,
                };
                // A settings message whose SUM does not match its content may have been changed
                // on its way: the row is burned and the fraud queue hears of it, but it is not
                // counted as the holder's failure, so an interceptor cannot lock the envelope by
                // rewriting messages (guessing is bounded by the rows it burns, one per attempt).
                let counts = refusal != Refusal::ContentMismatch;
                return Err((refusal, Some(row_number), counts));
            }
            Err((refusal, counts)) => return Err((refusal, Some(row_number), counts)),
        }
        auth.envelope.used.insert(row_number);
        Ok(())
    }

    /// Checks a message's code against `row`'s secret (whether or not the row is used).
    /// `Err`: a refusal of what the message says (the row is burned; `true` if it counts).
    fn check_code(
        &self,
        auth: &Authenticated,
        message: &Message,
        row: &crate::envelope::Row,
    ) -> Result<CodeCheck, (Refusal, bool)> {
        let verified = match message {
            Message::Payment(payment) | Message::Scheduled { payment, .. } => {
                return self
                    .verify_payment_body(auth, payment, row)
                    .map_err(|refusal| (refusal, false));
            }
            // The OK's checksum covers the pending payment, so it is checked once that is loaded
            // (`with_pending`); here only that the two rows differ.
            Message::Confirm {
                payer_row, bank, ..
            } => bank.row != payer_row.row,
            // Settings and registration: the row's SUM over the message's content (protocol v3),
            // so a change to any part of it in transit is refused.
            Message::Register {
                new_envelope,
                auth: sum,
                ..
            } => match self.decode_euin(auth, row, new_envelope) {
                Some(euin) => {
                    match content::signed_content(message, auth.account.currency, Some(&euin)) {
                        Ok((subject, digits)) => {
                            row.recipe()
                                .verify_digits(&subject, &digits, sum.checksum.digits())
                        }
                        Err(_) => false,
                    }
                }
                None => false,
            },
            Message::Limit { auth: sum, .. }
            | Message::Dialback { auth: sum, .. }
            | Message::ForceHigh { auth: sum, .. }
            | Message::SetPassword { auth: sum, .. }
            | Message::SetLanguage { auth: sum, .. }
            | Message::Dispute { auth: sum, .. } => {
                match content::signed_content(message, auth.account.currency, None) {
                    Ok((subject, digits)) => {
                        row.recipe()
                            .verify_digits(&subject, &digits, sum.checksum.digits())
                    }
                    // An amount the account's currency cannot hold: a typing matter.
                    Err(content::ContentError::BadAmount) => {
                        return Err((Refusal::BadSetting, false));
                    }
                    Err(content::ContentError::NotASetting) => false,
                }
            }
            Message::Balance { auth: row_tan, .. } | Message::Statement { auth: row_tan, .. } => {
                row_tan
                    .as_ref()
                    .is_some_and(|row_tan| row.tan().matches(&row_tan.tan))
            }
            Message::Help => true,
        };
        let verified = verified
            || (crate::reverts::reverted(crate::reverts::SETTINGS_CONTENT_SUM)
                && matches!(
                    message,
                    Message::Limit { .. }
                        | Message::Dialback { .. }
                        | Message::ForceHigh { .. }
                        | Message::SetPassword { .. }
                        | Message::Dispute { .. }
                ));
        Ok(if verified {
            CodeCheck::Verified
        } else {
            CodeCheck::Wrong
        })
    }

    /// Verifies a payment's protected fields against its row. `Err`: a refusal that does not
    /// count as a wrong code (the amount cannot be read).
    fn verify_payment_body(
        &self,
        auth: &Authenticated,
        payment: &Payment,
        row: &crate::envelope::Row,
    ) -> Result<CodeCheck, Refusal> {
        let currency = payment.currency.unwrap_or(auth.account.currency);
        match &payment.body {
            PaymentBody::Plain {
                payee,
                amount,
                checksum,
                ..
            } => {
                let amount = amount
                    .to_amount(currency)
                    .map_err(|_| Refusal::CurrencyNotAccepted)?;
                let agreeing = row
                    .recipe()
                    .agreeing_positions(payee, &amount, checksum.digits());
                self.printed_recipe_cap(row, &amount, CodeCheck::of_checksum(agreeing, true))
            }
            PaymentBody::Grid {
                payee,
                amount_plus_offset,
                magnitude_code,
                checksum,
                ..
            } => {
                let decoded = self.decode_grid(auth, row, payee, *amount_plus_offset, currency);
                // A coded payee that no longer decodes cannot be told from a guess at the grid.
                let Some((payee, amount)) = decoded else {
                    return Ok(CodeCheck::Wrong);
                };
                // The row's checksum over the decoded payment covers every digit of the amount.
                let agreeing = row
                    .recipe()
                    .agreeing_positions(&payee, &amount, checksum.digits());
                let class = AmountDigits::of(&amount).whole_length();
                let grid = auth.secrets.grid(row.grid_number());
                let magnitude_ok =
                    grid.is_some_and(|grid| grid.magnitude_matches(class, *magnitude_code));
                self.printed_recipe_cap(
                    row,
                    &amount,
                    CodeCheck::of_checksum(agreeing, magnitude_ok),
                )
            }
        }
    }

    /// A verified payment on a row whose printed recipe does not see the whole amount (imported
    /// envelopes) is refused above the operator's cap for the amount's currency: its checksum
    /// would not tell an amount inflated within the size class on its way. Checked only once the
    /// code verified (a wrong code stays a wrong code; the refusal says nothing about the row).
    fn printed_recipe_cap(
        &self,
        row: &crate::envelope::Row,
        amount: &Amount,
        check: CodeCheck,
    ) -> Result<CodeCheck, Refusal> {
        if check == CodeCheck::Verified
            && !row.recipe().sees_whole_amount()
            && amount.minor() > self.config.printed_recipe_max(amount.currency()).minor()
        {
            return Err(Refusal::PrintedRecipeLimit);
        }
        Ok(check)
    }

    /// Decodes the grid-coded new envelope number of a `REG` with `row`'s grid; `None` when a
    /// code is not in the grid or the number is not an envelope number.
    fn decode_euin(
        &self,
        auth: &Authenticated,
        row: &crate::envelope::Row,
        coded: &EncryptedEuin,
    ) -> Option<Euin> {
        let grid = auth.secrets.grid(row.grid_number())?;
        let mut text = String::with_capacity(crate::limits::EUIN_DIGITS);
        text.push(char::from(b'0' + coded.plain.min(9)));
        let mut all_found = true;
        for position in 1..=ENCRYPTED_ACCOUNT_DIGITS {
            match grid.decode(position, coded.codes[position - 1]) {
                Some(digit) => text.push(char::from(b'0' + digit)),
                None => all_found = false,
            }
        }
        if !all_found {
            return None;
        }
        Euin::parse(&text).ok()
    }

    /// Decodes payee and amount of a grid instruction with `row`.
    fn decode_grid(
        &self,
        auth: &Authenticated,
        row: &crate::envelope::Row,
        payee: &EncryptedPayee,
        amount_plus_offset: u64,
        currency: Currency,
    ) -> Option<(AccountNumber, Amount)> {
        let grid = auth.secrets.grid(row.grid_number())?;
        let mut digits = [0u8; ACCOUNT_NUMBER_DIGITS];
        digits[..PLAIN_PAYEE_DIGITS].copy_from_slice(&payee.plain);
        let mut all_found = true;
        for position in 1..=ENCRYPTED_ACCOUNT_DIGITS {
            match grid.decode(position, payee.codes[position - 1]) {
                Some(digit) => digits[PLAIN_PAYEE_DIGITS + position - 1] = digit,
                None => all_found = false,
            }
        }
        let hundredths = amount_plus_offset.checked_sub(row.amount_offset_hundredths())?;
        if !all_found || hundredths > GRID_AMOUNT_MAX_HUNDREDTHS {
            return None;
        }
        Some((
            AccountNumber::from_digits(digits)?,
            hundredths_amount(hundredths, currency)?,
        ))
    }

    fn dispatch(&self, mut auth: Box<Authenticated>, message: Message) -> Next {
        let from = auth.session.from.clone();
        match message {
            Message::Payment(payment) => self.start_payment(auth, payment, None),
            Message::Scheduled { due, payment } => {
                let due_unix = due.to_unix(self.config.utc_offset_minutes);
                let now = auth.session.received_at.0;
                if due_unix.0 <= now || due_unix.0 > now + SCHEDULE_AHEAD_DAYS_MAX * SECONDS_PER_DAY
                {
                    return Next::Done(self.finish_refused(auth, Refusal::BadScheduleTime));
                }
                self.start_payment(auth, payment, Some((due, due_unix)))
            }
            Message::Confirm {
                bank, payer_row, ..
            } => Next::NeedPending(PendingRequest {
                auth,
                bank,
                payer_row,
            }),
            Message::Register {
                new_envelope,
                auth: sum,
                ..
            } => {
                let decoded = auth
                    .secrets
                    .row(sum.row)
                    .and_then(|row| self.decode_euin(&auth, row, &new_envelope));
                match decoded {
                    Some(new_envelope) => {
                        Next::NeedNewEnvelope(NewEnvelopeRequest { auth, new_envelope })
                    }
                    // Verified in `authenticate`, so it decodes.
                    None => Next::Done(self.finish_refused(auth, Refusal::NotAuthenticated)),
                }
            }
            Message::Balance { .. } => {
                let text = reply::balance(self.language_of(&auth.account), &auth.balance);
                Next::Done(self.finish(auth, Outcome::new(Verdict::Accepted).reply(&from, text)))
            }
            Message::Statement { .. } => {
                let mut outcome = Outcome::new(Verdict::Accepted);
                outcome.effects.push(Effect::SendStatement {
                    account: auth.account.receive_number,
                    to: from,
                });
                Next::Done(self.finish(auth, outcome))
            }
            Message::Limit { change, .. } => {
                let currency = auth.account.currency;
                let to_amount = |typed: Option<TypedAmount>| -> Result<Option<Amount>, Refusal> {
                    typed
                        .map(|typed| typed.to_amount(currency).map_err(|_| Refusal::BadSetting))
                        .transpose()
                };
                let mut limits = auth.account.limits.clone();
                let described = match change {
                    LimitChange::Daily(typed) => match to_amount(typed) {
                        Ok(amount) => {
                            limits.per_day = amount;
                            SettingChange::Limit(LimitSpan::Day, amount)
                        }
                        Err(refusal) => return Next::Done(self.finish_refused(auth, refusal)),
                    },
                    LimitChange::Weekly(typed) => match to_amount(typed) {
                        Ok(amount) => {
                            limits.per_week = amount;
                            SettingChange::Limit(LimitSpan::Week, amount)
                        }
                        Err(refusal) => return Next::Done(self.finish_refused(auth, refusal)),
                    },
                    LimitChange::PerPayment(typed) => match to_amount(typed) {
                        Ok(amount) => {
                            limits.per_payment = amount;
                            SettingChange::Limit(LimitSpan::Payment, amount)
                        }
                        Err(refusal) => return Next::Done(self.finish_refused(auth, refusal)),
                    },
                    LimitChange::Payee(payee, typed) => {
                        if payee == auth.account.receive_number {
                            return Next::Done(self.finish_refused(auth, Refusal::BadSetting));
                        }
                        let amount = match to_amount(typed) {
                            Ok(amount) => amount,
                            Err(refusal) => return Next::Done(self.finish_refused(auth, refusal)),
                        };
                        limits.per_payee.retain(|limit| limit.payee != payee);
                        if let Some(per_day) = amount {
                            if limits.per_payee.len() >= PAYEE_LIMITS_MAX {
                                return Next::Done(self.finish_refused(auth, Refusal::BadSetting));
                            }
                            limits.per_payee.push(PayeeLimit { payee, per_day });
                        }
                        SettingChange::PayeeLimit(payee, amount)
                    }
                };
                let effect = Effect::SetLimits {
                    account: auth.account.receive_number,
                    limits,
                };
                Next::Done(self.setting_changed(auth, effect, described))
            }
            Message::Dialback { threshold, .. } => {
                let currency = auth.account.currency;
                match threshold.to_amount(currency) {
                    Ok(threshold) => {
                        let effect = Effect::SetDialbackThreshold {
                            account: auth.account.receive_number,
                            threshold,
                        };
                        Next::Done(self.setting_changed(
                            auth,
                            effect,
                            SettingChange::CallbackFrom(threshold),
                        ))
                    }
                    Err(_) => Next::Done(self.finish_refused(auth, Refusal::BadSetting)),
                }
            }
            Message::ForceHigh { on, .. } => {
                let effect = Effect::SetAlwaysCallback {
                    account: auth.account.receive_number,
                    on,
                };
                Next::Done(self.setting_changed(auth, effect, SettingChange::CallbackAlways(on)))
            }
            Message::SetPassword { password, .. } => {
                let effect = Effect::SetWebPassword {
                    account: auth.account.receive_number,
                    password,
                };
                Next::Done(self.setting_changed(auth, effect, SettingChange::WebPassword))
            }
            Message::SetLanguage { language, .. } => {
                let language = match language {
                    LanguageChoice::English => Language::En,
                    LanguageChoice::Swahili => Language::Sw,
                    LanguageChoice::French => Language::Fr,
                };
                let effect = Effect::SetLanguage {
                    account: auth.account.receive_number,
                    language,
                };
                // The confirmation already speaks the language chosen.
                auth.account.language = Some(language);
                Next::Done(self.setting_changed(auth, effect, SettingChange::Language(language)))
            }
            Message::Dispute { reference, .. } => {
                let effect = Effect::OpenDispute {
                    account: auth.account.receive_number,
                    reference,
                    reported_at: auth.session.received_at,
                };
                match self.bank_proof(&mut auth, BANK_ROWS_SETTING) {
                    Some(proof) => {
                        let text = reply::dispute_filed(
                            self.language_of(&auth.account),
                            reference,
                            &proof,
                        );
                        let mut outcome = Outcome::new(Verdict::Accepted).reply(&from, text);
                        outcome.effects.push(effect);
                        Next::Done(self.finish(auth, outcome))
                    }
                    None => Next::Done(self.finish_refused(auth, Refusal::RowsExhausted)),
                }
            }
            Message::Help => {
                let text = reply::help(self.language_of(&auth.account));
                Next::Done(self.finish(auth, Outcome::new(Verdict::Accepted).reply(&from, text)))
            }
        }
    }

    /// Takes a bank row for a proof, if the envelope can spare `needed` rows beyond the reserve.
    fn bank_proof(&self, auth: &mut Authenticated, needed: usize) -> Option<String> {
        if auth.envelope.free() < needed + ROWS_RESERVED_FOR_REGISTRATION {
            return None;
        }
        let row_number = auth.envelope.take_bank_row()?;
        let row = auth.secrets.row(row_number)?;
        Some(reply::proof(row_number, &row.tan().reveal()))
    }

    fn setting_changed(
        &self,
        mut auth: Box<Authenticated>,
        effect: Effect,
        what: SettingChange,
    ) -> Outcome {
        let from = auth.session.from.clone();
        match self.bank_proof(&mut auth, BANK_ROWS_SETTING) {
            Some(proof) => {
                let mut outcome = Outcome::new(Verdict::Accepted).reply(
                    &from,
                    reply::setting_changed(self.language_of(&auth.account), &what, &proof),
                );
                outcome.effects.push(effect);
                self.finish(auth, outcome)
            }
            None => self.finish_refused(auth, Refusal::RowsExhausted),
        }
    }

    fn finish(&self, auth: Box<Authenticated>, mut outcome: Outcome) -> Outcome {
        outcome.effects.extend(auth.envelope.effect());
        outcome.redacted = Some(auth.session.redacted);
        outcome
    }

    /// A refusal after the row verified: the row stays used, no failure counted.
    fn finish_refused(&self, auth: Box<Authenticated>, refusal: Refusal) -> Outcome {
        let row = auth
            .envelope
            .used
            .iter()
            .find(|row| !auth.envelope.loaded.used_rows.contains(*row));
        let text = reply::refused(self.language_of(&auth.account), &refusal, row, false);
        let from = auth.session.from.clone();
        self.finish(
            auth,
            Outcome::new(Verdict::Refused(refusal)).reply(&from, text),
        )
    }

    fn start_payment(
        &self,
        auth: Box<Authenticated>,
        payment: Payment,
        due: Option<(CivilDateTime, UnixSeconds)>,
    ) -> Next {
        let currency = payment.currency.unwrap_or(auth.account.currency);
        let row_number = payment.body.row();
        let (payee, amount) = match &payment.body {
            PaymentBody::Plain { payee, amount, .. } => match amount.to_amount(currency) {
                Ok(amount) => (*payee, amount),
                Err(_) => {
                    return Next::Done(self.finish_refused(auth, Refusal::CurrencyNotAccepted));
                }
            },
            PaymentBody::Grid {
                payee,
                amount_plus_offset,
                ..
            } => {
                let Some(row) = auth.secrets.row(row_number) else {
                    return Next::Done(self.finish_refused(auth, Refusal::CodesDoNotMatch));
                };
                match self.decode_grid(&auth, row, payee, *amount_plus_offset, currency) {
                    Some(decoded) => decoded,
                    None => return Next::Done(self.finish_refused(auth, Refusal::CodesDoNotMatch)),
                }
            }
        };
        if amount.is_zero() {
            return Next::Done(self.finish_refused(auth, Refusal::ZeroAmount));
        }
        if payee == auth.account.receive_number {
            return Next::Done(self.finish_refused(auth, Refusal::SamePayerAndPayee));
        }
        if auth.envelope.free() < BANK_ROWS_DIRECT + ROWS_RESERVED_FOR_REGISTRATION {
            return Next::Done(self.finish_refused(auth, Refusal::RowsExhausted));
        }
        let reply_to = auth.session.from.clone();
        let message_id = auth.session.message_id.clone();
        Next::NeedPayee(PayeeRequest {
            auth,
            intent: Intent {
                requested_level: payment.level,
                payee,
                amount,
                instruction_row: row_number,
                due,
                confirmed: None,
                message_id,
                reply_to,
            },
        })
    }

    /// A refusal of an OK after its row was used: counts a failure (the OK is verified only here)
    /// and locks at [`LOCKOUT_FAILURES`].
    fn refuse_counted(&self, mut auth: Box<Authenticated>, refusal: Refusal) -> Outcome {
        auth.envelope.failures = auth.envelope.failures.saturating_add(1);
        let mut locked_now = false;
        if auth.envelope.failures >= LOCKOUT_FAILURES
            && let EnvelopeStatus::Active { account } = auth.envelope.status
        {
            auth.envelope.status = EnvelopeStatus::Locked { account };
            locked_now = true;
        }
        let row = auth
            .envelope
            .used
            .iter()
            .find(|row| !auth.envelope.loaded.used_rows.contains(*row));
        let text = reply::refused(self.language_of(&auth.account), &refusal, row, locked_now);
        let from = auth.session.from.clone();
        self.finish(
            auth,
            Outcome::new(Verdict::Refused(refusal)).reply(&from, text),
        )
    }

    fn with_pending(&self, request: PendingRequest, pending: Option<PendingCallback>) -> Next {
        let PendingRequest {
            auth,
            bank,
            payer_row,
        } = request;
        let Some(pending) = pending else {
            return Next::Done(self.refuse_counted(auth, Refusal::NoPendingCallback));
        };
        assert!(
            pending.euin == auth.envelope.loaded.euin && pending.callback_row == bank.row,
            "the server must load the pending callback asked for ({:?})",
            Misuse::WrongPending
        );
        let remove = Effect::RemovePending {
            euin: pending.euin,
            callback_row: pending.callback_row,
        };
        if auth.session.received_at > pending.expires_at() {
            let mut outcome = self.finish_refused(auth, Refusal::CallbackExpired);
            outcome.effects.push(remove);
            return Next::Done(outcome);
        }
        let bank_tan_ok = auth
            .secrets
            .row(bank.row)
            .is_some_and(|row| row.tan().matches(&bank.tan));
        if !bank_tan_ok {
            // The bank row's TAN is wrong: the sender did not read the callback. Count it and
            // keep the pending callback until it expires.
            return Next::Done(self.refuse_counted(auth, Refusal::NoPendingCallback));
        }
        // Protocol v2: the payer's row checksum must cover the payee and amount of the pending
        // payment. A gateway that inflated the instruction and rewrote the echo fails here.
        let confirms = auth.secrets.row(payer_row.row).is_some_and(|row| {
            row.recipe()
                .verify(&pending.payee, &pending.amount, payer_row.checksum.digits())
        });
        if !confirms {
            let mut outcome = self.refuse_counted(auth, Refusal::ConfirmationMismatch);
            outcome.effects.push(remove);
            return Next::Done(outcome);
        }
        let mut auth = auth;
        auth.envelope.failures = 0;
        Next::NeedPayee(PayeeRequest {
            intent: Intent {
                requested_level: pending.requested_level,
                payee: pending.payee,
                amount: pending.amount,
                instruction_row: pending.instruction_row,
                due: pending.due,
                message_id: pending.message_id.clone(),
                reply_to: auth.session.from.clone(),
                confirmed: Some(pending),
            },
            auth,
        })
    }

    fn with_payee(&self, request: PayeeRequest, payee: Option<PayeeContext>) -> Next {
        let PayeeRequest { auth, intent } = request;
        let mut outcome_prefix = Vec::new();
        if let Some(pending) = &intent.confirmed {
            outcome_prefix.push(Effect::RemovePending {
                euin: pending.euin,
                callback_row: pending.callback_row,
            });
        }
        let mut auth = auth;
        let result = self.settle(&mut auth, &intent, payee);
        let mut outcome = match result {
            Ok(outcome) => self.finish(auth, outcome),
            Err(refusal) => self.finish_refused(auth, refusal),
        };
        outcome.effects.extend(outcome_prefix);
        Next::Done(outcome)
    }

    /// Everything after the payee is known: currency, limits, fee, balance, then callback,
    /// schedule or postings.
    fn settle(
        &self,
        auth: &mut Authenticated,
        intent: &Intent,
        payee: Option<PayeeContext>,
    ) -> Result<Outcome, Refusal> {
        let payee = payee
            .filter(|payee| payee.account.active)
            .ok_or(Refusal::UnknownPayee)?;
        assert_eq!(
            payee.account.receive_number,
            intent.payee,
            "the server must load the payee asked for ({:?})",
            Misuse::WrongAccount
        );
        let legs = self.legs(&auth.account, &payee.account, &intent.amount)?;
        let callback_due = intent.confirmed.is_none()
            && (intent.requested_level == SecurityLevel::High
                || auth.account.always_callback
                || auth
                    .account
                    .dialback_threshold
                    .or_else(|| self.config.default_threshold(auth.account.currency))
                    .is_some_and(|threshold| legs.debit.minor() >= threshold.minor()));
        let level = if callback_due || intent.confirmed.is_some() {
            SecurityLevel::High
        } else {
            intent.requested_level
        };
        if intent.requested_level != SecurityLevel::Low
            && crate::compose::hundredths(&intent.amount)
                .is_none_or(|h| h > GRID_AMOUNT_MAX_HUNDREDTHS)
        {
            return Err(Refusal::AmountTooLargeForGrid);
        }
        auth.account.limits.check(
            &legs.debit,
            &auth.spending,
            &payee.account.receive_number,
            &payee.paid_by_payer_today,
        )?;
        let fee = self.config.fee(auth.account.currency, level);
        let total = legs
            .debit
            .checked_add(fee)
            .map_err(|_| Refusal::InsufficientFunds)?;
        let scheduled = intent.due.is_some();
        if !scheduled && total.minor() > auth.balance.minor() {
            return Err(Refusal::InsufficientFunds);
        }
        let euin = auth.envelope.loaded.euin;
        if callback_due {
            if auth.envelope.free() < BANK_ROWS_CALLBACK + ROWS_RESERVED_FOR_REGISTRATION {
                return Err(Refusal::RowsExhausted);
            }
            let bank_row = auth
                .envelope
                .take_bank_row()
                .ok_or(Refusal::RowsExhausted)?;
            let bank_secret = auth.secrets.row(bank_row).ok_or(Refusal::RowsExhausted)?;
            let bank_tan = bank_secret.tan().reveal();
            // Protocol v2: the bank row's checksum over the payment as decoded, so the payer can
            // tell whether the bank read what they sent even if the echo's text was rewritten.
            let bank_checksum = bank_secret.recipe().checksum(&intent.payee, &intent.amount);
            let instruction = self.render_instruction(auth, intent)?;
            let text = reply::callback(
                self.language_of(&auth.account),
                &instruction,
                &euin.to_string(),
                bank_row,
                &bank_tan,
                &bank_checksum,
            );
            let mut outcome = Outcome::new(Verdict::Accepted).reply(&intent.reply_to, text);
            outcome.effects.push(Effect::CreatePending(PendingCallback {
                format_version: RECORD_FORMAT_VERSION,
                euin,
                callback_row: bank_row,
                instruction_row: intent.instruction_row,
                requested_level: intent.requested_level,
                message_id: intent.message_id.clone(),
                payer: auth.account.receive_number,
                payee: intent.payee,
                amount: intent.amount,
                created_at: auth.session.received_at,
                due: intent.due,
                language: auth.account.language,
            }));
            return Ok(outcome);
        }
        let main_id = TransferId::derive(
            &intent.message_id,
            &auth.account.receive_number,
            &intent.payee,
            &legs.debit,
            &fee,
            if legs.cross {
                PostingKind::ExchangeOut
            } else {
                PostingKind::Payment
            },
        );
        let reference = Reference::of(&main_id);
        if let Some((civil, due)) = intent.due {
            let proof = self.confirmation_proof(auth, intent, level)?;
            let text = reply::scheduled(
                self.language_of(&auth.account),
                &civil,
                &intent.payee,
                &intent.amount,
                reference,
                &proof.short,
            );
            let mut outcome = Outcome::new(Verdict::Accepted).reply(&intent.reply_to, text);
            outcome.effects.push(Effect::Schedule(ScheduledPayment {
                format_version: RECORD_FORMAT_VERSION,
                message_id: intent.message_id.clone(),
                payer: auth.account.receive_number,
                payee: intent.payee,
                amount: intent.amount,
                level,
                due,
                reply_to: intent.reply_to.clone(),
                reference,
            }));
            return Ok(outcome);
        }
        let postings = self.postings(auth, intent, &legs, fee)?;
        let proof = self.confirmation_proof(auth, intent, level)?;
        let payer_text = match proof.low_checksum {
            Some((row, checksum)) => reply::paid_low(
                self.language_of(&auth.account),
                &euin,
                &intent.payee,
                &typed_text(&intent.amount, auth.account.currency),
                row,
                &checksum,
                reference,
                &fee,
            ),
            None if proof.short.is_empty() => reply::paid_plain(
                self.language_of(&auth.account),
                &intent.payee,
                &intent.amount,
                reference,
            ),
            None => reply::paid_grid(
                self.language_of(&auth.account),
                &proof.instruction,
                &proof.short,
                reference,
            ),
        };
        let mut outcome = Outcome::new(Verdict::Accepted).reply(&intent.reply_to, payer_text);
        outcome.postings = postings;
        self.notify_payee(&mut outcome, &auth.account, payee, &legs.credit, reference);
        Ok(outcome)
    }

    fn legs(
        &self,
        payer: &AccountView,
        payee: &AccountView,
        amount: &Amount,
    ) -> Result<Legs, Refusal> {
        let (payer_currency, payee_currency) = (payer.currency, payee.currency);
        if payer_currency == payee_currency {
            if amount.currency() != payer_currency {
                return Err(Refusal::CurrencyNotAccepted);
            }
            return Ok(Legs {
                debit: *amount,
                credit: *amount,
                cross: false,
            });
        }
        if payer.currency_class != CurrencyClass::Hard {
            return Err(Refusal::SoftCurrencyConversion);
        }
        let rate = self
            .config
            .rate(payer_currency, payee_currency)
            .ok_or(Refusal::CurrencyNotAccepted)?;
        let (debit, credit) = if amount.currency() == payer_currency {
            (
                *amount,
                rate.convert_down(amount)
                    .map_err(|_| Refusal::CurrencyNotAccepted)?,
            )
        } else if amount.currency() == payee_currency {
            (
                rate.cost_up(amount)
                    .map_err(|_| Refusal::CurrencyNotAccepted)?,
                *amount,
            )
        } else {
            return Err(Refusal::CurrencyNotAccepted);
        };
        if credit.is_zero() {
            return Err(Refusal::ZeroAmount);
        }
        Ok(Legs {
            debit,
            credit,
            cross: true,
        })
    }

    fn postings(
        &self,
        auth: &Authenticated,
        intent: &Intent,
        legs: &Legs,
        fee: Amount,
    ) -> Result<Vec<Posting>, Refusal> {
        let payer = auth.account.receive_number;
        let id = |kind| {
            TransferId::derive(
                &intent.message_id,
                &payer,
                &intent.payee,
                &legs.debit,
                &fee,
                kind,
            )
        };
        let main_kind = if legs.cross {
            PostingKind::ExchangeOut
        } else {
            PostingKind::Payment
        };
        let reference = Reference::of(&id(main_kind));
        let mut postings = Vec::with_capacity(3);
        if legs.cross {
            postings.push(Posting {
                transfer_id: id(PostingKind::ExchangeOut),
                debit: LedgerAccount::Customer(payer),
                credit: LedgerAccount::ExchangeFloat(legs.debit.currency()),
                amount: legs.debit,
                kind: PostingKind::ExchangeOut,
                reference,
            });
            postings.push(Posting {
                transfer_id: id(PostingKind::ExchangeIn),
                debit: LedgerAccount::ExchangeFloat(legs.credit.currency()),
                credit: LedgerAccount::Customer(intent.payee),
                amount: legs.credit,
                kind: PostingKind::ExchangeIn,
                reference,
            });
        } else {
            postings.push(Posting {
                transfer_id: id(PostingKind::Payment),
                debit: LedgerAccount::Customer(payer),
                credit: LedgerAccount::Customer(intent.payee),
                amount: legs.debit,
                kind: PostingKind::Payment,
                reference,
            });
        }
        if !fee.is_zero() {
            postings.push(Posting {
                transfer_id: id(PostingKind::Fee),
                debit: LedgerAccount::Customer(payer),
                credit: LedgerAccount::Fees(fee.currency()),
                amount: fee,
                kind: PostingKind::Fee,
                reference,
            });
        }
        Ok(postings)
    }

    /// The instruction as the bank read it, in canonical form (payer shown by EUIN: a pay number
    /// is never echoed), re-encoded from the instruction row so no text is ever stored.
    fn render_instruction(&self, auth: &Authenticated, intent: &Intent) -> Result<String, Refusal> {
        let euin = auth.envelope.loaded.euin;
        let row = auth
            .secrets
            .row(intent.instruction_row)
            .ok_or(Refusal::CodesDoNotMatch)?;
        let typed = typed_text(&intent.amount, auth.account.currency);
        let mut out = String::new();
        match intent.requested_level {
            SecurityLevel::Low => {
                let checksum = row.recipe().checksum(&intent.payee, &intent.amount);
                let digits: String = checksum
                    .iter()
                    .map(|digit| char::from(b'0' + digit))
                    .collect();
                let _ = write!(
                    out,
                    "PAY {euin} {} {typed} {} {digits}",
                    intent.payee, intent.instruction_row
                );
            }
            level => {
                let grid = auth
                    .secrets
                    .grid(row.grid_number())
                    .ok_or(Refusal::CodesDoNotMatch)?;
                let hundredths = crate::compose::hundredths(&intent.amount)
                    .ok_or(Refusal::AmountTooLargeForGrid)?;
                let class = AmountDigits::of(&intent.amount).whole_length();
                if class > crate::limits::MAGNITUDE_CLASSES {
                    return Err(Refusal::AmountTooLargeForGrid);
                }
                let _ = write!(
                    out,
                    "{} {euin} {} ",
                    level.keyword(),
                    intent.instruction_row
                );
                for digit in &intent.payee.digits()[..PLAIN_PAYEE_DIGITS] {
                    let _ = write!(out, "{digit}");
                }
                for (index, digit) in intent.payee.digits()[PLAIN_PAYEE_DIGITS..]
                    .iter()
                    .enumerate()
                {
                    let _ = write!(out, "{:03}", grid.code(*digit, index + 1));
                }
                let coded =
                    TypedAmount::from_hundredths(hundredths + row.amount_offset_hundredths())
                        .map(|typed| format!("{typed}"))
                        .unwrap_or_default();
                let currency = if intent.amount.currency() == auth.account.currency {
                    String::new()
                } else {
                    format!(" {}", intent.amount.currency())
                };
                let sum: String = row
                    .recipe()
                    .checksum(&intent.payee, &intent.amount)
                    .iter()
                    .map(|digit| char::from(b'0' + digit))
                    .collect();
                let _ = write!(
                    out,
                    " {coded}{currency} {:03} {sum}",
                    grid.magnitude_code(class.max(1)),
                );
            }
        }
        Ok(out)
    }

    /// Takes the confirmation row and builds the proof: for Low, that row's checksum over the
    /// payment (the seed's form); otherwise the instruction copy plus the row and its TAN. With no
    /// row to spare, an empty proof (the reply then says to register a new envelope).
    fn confirmation_proof(
        &self,
        auth: &mut Authenticated,
        intent: &Intent,
        level: SecurityLevel,
    ) -> Result<Proof, Refusal> {
        let instruction = self.render_instruction(auth, intent)?;
        let Some(row_number) = auth.envelope.take_bank_row() else {
            return Ok(Proof {
                instruction,
                short: String::new(),
                low_checksum: None,
            });
        };
        let row = auth.secrets.row(row_number).ok_or(Refusal::RowsExhausted)?;
        let low_checksum = (intent.requested_level == SecurityLevel::Low
            && level != SecurityLevel::High
            && intent.due.is_none())
        .then(|| {
            (
                row_number,
                row.recipe().checksum(&intent.payee, &intent.amount),
            )
        });
        let short = if intent.requested_level == SecurityLevel::Low {
            let checksum = row.recipe().checksum(&intent.payee, &intent.amount);
            let digits: String = checksum
                .iter()
                .map(|digit| char::from(b'0' + digit))
                .collect();
            format!("BANK ROW {row_number} CHECK {digits}")
        } else {
            reply::proof(row_number, &row.tan().reveal())
        };
        Ok(Proof {
            instruction,
            short,
            low_checksum,
        })
    }

    fn notify_payee(
        &self,
        outcome: &mut Outcome,
        payer: &AccountView,
        payee: PayeeContext,
        credit: &Amount,
        reference: Reference,
    ) {
        let Some(phone) = payee.account.notify_phone.clone() else {
            return;
        };
        let coded = payee.envelope.and_then(|view| {
            if !matches!(view.status, EnvelopeStatus::Active { .. }) || !self.binding_valid(&view) {
                return None;
            }
            let secrets = EnvelopeSecrets::for_view(&self.master, &view).ok()?;
            let mut state = EnvelopeState::new(view);
            if state.free() < 1 + ROWS_RESERVED_FOR_REGISTRATION {
                return Some(Err(()));
            }
            let row_number = state.take_bank_row()?;
            let row = secrets.row(row_number)?;
            let hundredths = crate::compose::hundredths(credit)?;
            let amount_coded =
                TypedAmount::from_hundredths(hundredths + row.amount_offset_hundredths())?;
            let modulus = 10u64.pow(ACCOUNT_NUMBER_DIGITS as u32);
            let payer_coded =
                (payer.receive_number.value() + u64::from(row.account_offset())) % modulus;
            let text = reply::received_coded(
                self.language_of(&payee.account),
                &format!("{amount_coded}"),
                &format!("{payer_coded:012}"),
                row_number,
                &row.tan().reveal(),
                reference,
            );
            Some(Ok((text, state.effect())))
        });
        match coded {
            Some(Ok((text, effect))) => {
                outcome.replies.push(OutboundSms { to: phone, text });
                outcome.effects.extend(effect);
            }
            Some(Err(())) => outcome.replies.push(OutboundSms {
                to: phone,
                text: reply::received_plain(
                    self.language_of(&payee.account),
                    credit,
                    &payer.receive_number,
                    reference,
                    true,
                ),
            }),
            None => outcome.replies.push(OutboundSms {
                to: phone,
                text: reply::received_plain(
                    self.language_of(&payee.account),
                    credit,
                    &payer.receive_number,
                    reference,
                    false,
                ),
            }),
        }
    }

    fn with_new_envelope(
        &self,
        request: NewEnvelopeRequest,
        envelope: Option<EnvelopeView>,
    ) -> Next {
        let NewEnvelopeRequest {
            mut auth,
            new_envelope,
        } = request;
        let Some(view) = envelope.filter(|view| {
            view.euin == new_envelope
                && view.status == EnvelopeStatus::Unallocated
                && view.euin != auth.envelope.loaded.euin
        }) else {
            return Next::Done(self.finish_refused(auth, Refusal::EnvelopeNotRegistrable));
        };
        let account = auth.account.receive_number;
        let secrets = match EnvelopeSecrets::for_view(&self.master, &view) {
            Ok(secrets) => secrets,
            Err(_) => {
                return Next::Done(self.finish_refused(auth, Refusal::EnvelopeNotRegistrable));
            }
        };
        let mut new_state = EnvelopeState::new(view);
        new_state.status = EnvelopeStatus::Active { account };
        new_state.binding = Some(self.master.binding_tag(&new_envelope, &account));
        new_state.failures = 0;
        let proof = new_state
            .take_bank_row()
            .and_then(|row_number| Some((row_number, secrets.row(row_number)?)))
            .map(|(row_number, row)| reply::proof(row_number, &row.tan().reveal()))
            .unwrap_or_default();
        let old = auth.envelope.loaded.euin;
        auth.envelope.status = EnvelopeStatus::Retired;
        auth.envelope.binding = None;
        let from = auth.session.from.clone();
        let mut outcome = Outcome::new(Verdict::Accepted).reply(
            &from,
            reply::registered(self.language_of(&auth.account), &new_envelope, &old, &proof),
        );
        outcome.effects.extend(new_state.effect());
        Next::Done(self.finish(auth, outcome))
    }

    /// Runs a scheduled payment at or after its due time. `payer` is the payer's current state
    /// (its current envelope gives the confirmation row); `payee` the payee's.
    pub fn execute_scheduled(
        &self,
        payment: &ScheduledPayment,
        payer: Option<PayerContext>,
        payee: Option<PayeeContext>,
        now: UnixSeconds,
    ) -> Outcome {
        let lang = payer
            .as_ref()
            .map_or(self.config.default_language, |payer| {
                self.language_of(&payer.account)
            });
        let refuse = |refusal: Refusal| {
            let text = reply::refused(lang, &refusal, None, false);
            Outcome::new(Verdict::Refused(refusal)).reply(&payment.reply_to, text)
        };
        assert!(
            now >= payment.due,
            "run scheduled payments at or after their due time"
        );
        let Some(payer) = payer else {
            return refuse(Refusal::AccountNotActive);
        };
        if !payer.account.active || payer.account.receive_number != payment.payer {
            return refuse(Refusal::AccountNotActive);
        }
        let secrets = EnvelopeSecrets::for_view(&self.master, &payer.envelope);
        let usable_envelope = matches!(payer.envelope.status, EnvelopeStatus::Active { .. })
            && self.binding_valid(&payer.envelope);
        let Ok(secrets) = secrets else {
            return refuse(Refusal::AccountNotActive);
        };
        let mut auth = Authenticated {
            session: Session {
                message_id: payment.message_id.clone(),
                from: payment.reply_to.clone(),
                received_at: now,
                redacted: RedactedSms {
                    kind: Some(grammar::MessageKind::Scheduled(payment.level)),
                    envelope: None,
                    readable: true,
                    length: 0,
                },
            },
            account: payer.account,
            balance: payer.balance,
            spending: payer.spending,
            envelope: EnvelopeState::new(payer.envelope),
            secrets,
        };
        if !usable_envelope {
            // Keep the envelope untouched: no proof row is taken from a locked or retired one.
            auth.envelope.used = RowSet::from_bits(u64::MAX);
        }
        let intent = Intent {
            requested_level: SecurityLevel::Middle,
            payee: payment.payee,
            amount: payment.amount,
            instruction_row: 1,
            due: None,
            confirmed: None,
            message_id: payment.message_id.clone(),
            reply_to: payment.reply_to.clone(),
        };
        let payee = payee.filter(|payee| payee.account.active);
        let Some(payee) = payee else {
            return refuse(Refusal::UnknownPayee);
        };
        let result = self.pay_authenticated(
            &mut auth,
            &intent,
            payee,
            payment.level,
            PaidWording::Scheduled,
            payment.reference,
        );
        let mut outcome = match result {
            Ok(outcome) => outcome,
            Err(refusal) => refuse(refusal),
        };
        if usable_envelope {
            outcome.effects.extend(auth.envelope.effect());
        }
        outcome
    }

    /// Pays an instruction whose row already verified: currency legs, limits, fee, balance,
    /// postings, a confirmation with a fresh row when one can be spared, and the payee notice.
    fn pay_authenticated(
        &self,
        auth: &mut Authenticated,
        intent: &Intent,
        payee: PayeeContext,
        level: SecurityLevel,
        wording: PaidWording,
        fallback_reference: Reference,
    ) -> Result<Outcome, Refusal> {
        let legs = self.legs(&auth.account, &payee.account, &intent.amount)?;
        auth.account.limits.check(
            &legs.debit,
            &auth.spending,
            &payee.account.receive_number,
            &payee.paid_by_payer_today,
        )?;
        let fee = self.config.fee(auth.account.currency, level);
        let total = legs
            .debit
            .checked_add(fee)
            .map_err(|_| Refusal::InsufficientFunds)?;
        if total.minor() > auth.balance.minor() {
            return Err(Refusal::InsufficientFunds);
        }
        let postings = self.postings(auth, intent, &legs, fee)?;
        let reference = postings
            .first()
            .map(|posting| posting.reference)
            .unwrap_or(fallback_reference);
        let proof = match wording {
            PaidWording::Terminal {
                confirm_to_phone: false,
            } => String::new(),
            _ => match auth.envelope.take_bank_row() {
                Some(row_number) => auth
                    .secrets
                    .row(row_number)
                    .map(|row| reply::proof(row_number, &row.tan().reveal()))
                    .unwrap_or_default(),
                None => String::new(),
            },
        };
        let lang = self.language_of(&auth.account);
        let how = match wording {
            PaidWording::Scheduled => offpay_text::sms::PAID_SCHEDULED,
            PaidWording::Terminal { .. } => offpay_text::sms::PAID_AT_TERMINAL,
        };
        let text = if proof.is_empty() {
            reply::paid_plain(
                self.language_of(&auth.account),
                &intent.payee,
                &intent.amount,
                reference,
            )
        } else {
            reply::fit(offpay_text::text(
                lang,
                how,
                &[
                    ("amount", &intent.amount),
                    ("payee", &intent.payee),
                    ("reference", &reference),
                    ("proof", &proof),
                ],
            ))
        };
        let mut outcome = Outcome::new(Verdict::Accepted).reply(&intent.reply_to, text);
        outcome.postings = postings;
        let payer_view = auth.account.clone();
        self.notify_payee(&mut outcome, &payer_view, payee, &legs.credit, reference);
        Ok(outcome)
    }

    /// A payment at a merchant terminal: the terminal (authenticated by the server) supplies the
    /// payee and amount, the payer keys in envelope, row and TAN. The row is checked exactly as in
    /// an SMS (used once, failures counted, lockout); the payment rules are the SMS ones. An
    /// amount that needs a callback (dialback threshold, `HIGH ON`) is refused: only the SMS path
    /// can call back. With `payer_phone`, the payer also gets a confirmation with a fresh row.
    /// The replies of the outcome go to the payer's phone (when given) and the payee's.
    pub fn pay_at_terminal(
        &self,
        payment: &TerminalPayment,
        payer: PayerContext,
        payee: Option<PayeeContext>,
        now: UnixSeconds,
    ) -> Outcome {
        let lang = self.language_of(&payer.account);
        let reply_to = payment
            .payer_phone
            .clone()
            .unwrap_or_else(placeholder_phone);
        let session = Session {
            message_id: payment.request_id.clone(),
            from: reply_to.clone(),
            received_at: now,
            redacted: RedactedSms {
                kind: None,
                envelope: Some(payer.envelope.euin),
                readable: true,
                length: 0,
            },
        };
        let status_refusal = match payer.envelope.status {
            EnvelopeStatus::Locked { .. } => Some(Refusal::EnvelopeLocked),
            EnvelopeStatus::Unallocated | EnvelopeStatus::Retired => {
                Some(Refusal::EnvelopeNotActive)
            }
            EnvelopeStatus::Active { .. } if !self.binding_valid(&payer.envelope) => {
                Some(Refusal::NotAuthenticated)
            }
            EnvelopeStatus::Active { .. } if !payer.account.active => {
                Some(Refusal::AccountNotActive)
            }
            EnvelopeStatus::Active { .. } => None,
        };
        if let Some(refusal) = status_refusal {
            return self.done(&session, Outcome::new(Verdict::Refused(refusal)));
        }
        let Ok(secrets) = EnvelopeSecrets::for_view(&self.master, &payer.envelope) else {
            return self.done(
                &session,
                Outcome::new(Verdict::Refused(Refusal::NotAuthenticated)),
            );
        };
        let mut envelope = EnvelopeState::new(payer.envelope);
        let row = payment.row;
        let refusal = if row == 0 || row > envelope.loaded.rows.get() {
            Some(Refusal::RowOutOfRange { row })
        } else if envelope.used.contains(row) {
            Some(Refusal::RowUsed { row })
        } else if envelope.free() <= ROWS_RESERVED_FOR_REGISTRATION {
            Some(Refusal::LastRowReserved)
        } else if !secrets
            .row(row)
            .is_some_and(|secret| secret.tan().matches(&payment.tan))
        {
            Some(Refusal::NotAuthenticated)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            let burn = matches!(refusal, Refusal::NotAuthenticated).then_some(row);
            let counts = !matches!(refusal, Refusal::LastRowReserved);
            let mut outcome =
                self.refuse_with_row(lang, &session, &mut envelope, refusal, burn, counts);
            if payment.payer_phone.is_none() {
                outcome.replies.clear();
            }
            return outcome;
        }
        envelope.used.insert(row);
        envelope.failures = 0;
        let mut auth = Authenticated {
            session,
            account: payer.account,
            balance: payer.balance,
            spending: payer.spending,
            envelope,
            secrets,
        };
        let finish = |auth: Authenticated, result: Result<Outcome, Refusal>| {
            let mut outcome = match result {
                Ok(outcome) => outcome,
                Err(refusal) => {
                    let mut outcome = Outcome::new(Verdict::Refused(refusal.clone()));
                    if payment.payer_phone.is_some() {
                        outcome =
                            outcome.reply(&reply_to, reply::refused(lang, &refusal, None, false));
                    }
                    outcome
                }
            };
            outcome.effects.extend(auth.envelope.effect());
            outcome.redacted = Some(auth.session.redacted);
            outcome
        };
        let Some(payee) = payee.filter(|payee| payee.account.active) else {
            return finish(auth, Err(Refusal::UnknownPayee));
        };
        if payee.account.receive_number == auth.account.receive_number {
            return finish(auth, Err(Refusal::SamePayerAndPayee));
        }
        if payment.amount.is_zero() {
            return finish(auth, Err(Refusal::ZeroAmount));
        }
        let threshold = auth
            .account
            .dialback_threshold
            .or_else(|| self.config.default_threshold(auth.account.currency));
        let over_threshold = match self.legs(&auth.account, &payee.account, &payment.amount) {
            Ok(legs) => threshold.is_some_and(|threshold| legs.debit.minor() >= threshold.minor()),
            Err(refusal) => return finish(auth, Err(refusal)),
        };
        if auth.account.always_callback || over_threshold {
            return finish(auth, Err(Refusal::CallbackRequired));
        }
        let intent = Intent {
            requested_level: SecurityLevel::Middle,
            payee: payee.account.receive_number,
            amount: payment.amount,
            instruction_row: row,
            due: None,
            confirmed: None,
            message_id: payment.request_id.clone(),
            reply_to: reply_to.clone(),
        };
        let result = self.pay_authenticated(
            &mut auth,
            &intent,
            payee,
            SecurityLevel::Middle,
            PaidWording::Terminal {
                confirm_to_phone: payment.payer_phone.is_some(),
            },
            Reference::of(&TransferId([0; 16])),
        );
        let mut outcome = finish(auth, result);
        if payment.payer_phone.is_none() {
            outcome.replies.retain(|reply| reply.to != reply_to);
        }
        outcome
    }

    /// A pending callback the payer never confirmed: remove it and tell the payer. The server's
    /// sweeper calls this for every pending callback past [`PendingCallback::expires_at`].
    pub fn expire_pending(
        &self,
        pending: &PendingCallback,
        reply_to: &PhoneNumber,
        now: UnixSeconds,
    ) -> Option<Outcome> {
        if now <= pending.expires_at() {
            return None;
        }
        let mut outcome = Outcome::new(Verdict::Refused(Refusal::CallbackExpired)).reply(
            reply_to,
            reply::refused(
                pending.language.unwrap_or(self.config.default_language),
                &Refusal::CallbackExpired,
                None,
                false,
            ),
        );
        outcome.effects.push(Effect::RemovePending {
            euin: pending.euin,
            callback_row: pending.callback_row,
        });
        Some(outcome)
    }

    /// The web login's second factor: an unused row and its TAN, checked exactly as in an SMS
    /// (row used on success, failure counted otherwise). `Verdict::Accepted` means log in.
    pub fn check_row_tan(
        &self,
        payer: PayerContext,
        row: u8,
        tan: &Tan,
        now: UnixSeconds,
    ) -> Outcome {
        let lang = self.language_of(&payer.account);
        let session = Session {
            message_id: String::new(),
            from: payer.account.notify_phone.clone().unwrap_or_else(|| {
                PhoneNumber::parse("0").unwrap_or_else(|_| unreachable!("0 is a phone number"))
            }),
            received_at: now,
            redacted: RedactedSms {
                kind: None,
                envelope: Some(payer.envelope.euin),
                readable: true,
                length: 0,
            },
        };
        if !matches!(payer.envelope.status, EnvelopeStatus::Active { .. })
            || !payer.account.active
            || !self.binding_valid(&payer.envelope)
        {
            return self.done(
                &session,
                Outcome::new(Verdict::Refused(Refusal::EnvelopeNotActive)),
            );
        }
        let Ok(secrets) = EnvelopeSecrets::for_view(&self.master, &payer.envelope) else {
            return self.done(
                &session,
                Outcome::new(Verdict::Refused(Refusal::NotAuthenticated)),
            );
        };
        let mut envelope = EnvelopeState::new(payer.envelope);
        let refusal = if row == 0 || row > envelope.loaded.rows.get() {
            Some(Refusal::RowOutOfRange { row })
        } else if envelope.used.contains(row) {
            Some(Refusal::RowUsed { row })
        } else if envelope.free() <= ROWS_RESERVED_FOR_REGISTRATION {
            Some(Refusal::LastRowReserved)
        } else if !secrets
            .row(row)
            .is_some_and(|secret| secret.tan().matches(tan))
        {
            Some(Refusal::NotAuthenticated)
        } else {
            None
        };
        let mut outcome = match refusal {
            Some(refusal) => {
                let burn = matches!(refusal, Refusal::NotAuthenticated).then_some(row);
                let counts = !matches!(refusal, Refusal::LastRowReserved);
                let mut outcome =
                    self.refuse_with_row(lang, &session, &mut envelope, refusal, burn, counts);
                outcome.replies.clear();
                outcome
            }
            None => {
                envelope.used.insert(row);
                envelope.failures = 0;
                let mut outcome = Outcome::new(Verdict::Accepted);
                outcome.effects.extend(envelope.effect());
                outcome
            }
        };
        outcome.redacted = Some(session.redacted);
        outcome
    }
}

/// How a payment paid outside an SMS instruction is worded in its confirmation.
#[derive(Clone, Copy)]
enum PaidWording {
    Scheduled,
    Terminal { confirm_to_phone: bool },
}

/// A payment keyed in at a merchant terminal ([`Engine::pay_at_terminal`]).
#[derive(Clone)]
pub struct TerminalPayment {
    /// The terminal's request id, unique per terminal (transfer ids derive from it, so a retried
    /// request posts once). The server prefixes it with the terminal's id.
    pub request_id: String,
    /// The row the payer keyed in.
    pub row: u8,
    /// Its TAN.
    pub tan: Tan,
    /// The amount the terminal asks for (in the payer's or the payee's currency).
    pub amount: Amount,
    /// The payer's phone for a confirmation, if the payer gave it.
    pub payer_phone: Option<PhoneNumber>,
}

impl core::fmt::Debug for TerminalPayment {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "TerminalPayment({}, row {}, {})",
            self.request_id, self.row, self.amount
        )
    }
}

fn placeholder_phone() -> PhoneNumber {
    PhoneNumber::parse("0").unwrap_or_else(|_| unreachable!("0 is a phone number"))
}

struct Legs {
    debit: Amount,
    credit: Amount,
    cross: bool,
}

struct Proof {
    instruction: String,
    short: String,
    low_checksum: Option<(u8, [u8; 6])>,
}

/// Drives one inbound SMS to its outcome with synchronous loaders — for tests, the simulator and
/// servers whose storage is synchronous. Each closure is called at most once.
pub fn run_to_outcome(
    engine: &Engine,
    inbound: Inbound,
    mut load_payer: impl FnMut(PayerRef) -> Option<PayerContext>,
    mut load_pending: impl FnMut(Euin, u8) -> Option<PendingCallback>,
    mut load_payee: impl FnMut(AccountNumber, AccountNumber) -> Option<PayeeContext>,
    mut load_envelope: impl FnMut(Euin) -> Option<EnvelopeView>,
) -> Outcome {
    let mut next = engine.receive(inbound);
    // Each step kind happens at most once per message; the bound catches a loop bug.
    for _ in 0..8 {
        next = match next {
            Next::Done(outcome) => return outcome,
            Next::NeedPayer(request) => {
                let payer = load_payer(request.payer());
                request.provide(engine, payer)
            }
            Next::NeedPending(request) => {
                let pending = load_pending(request.euin(), request.callback_row());
                request.provide(engine, pending)
            }
            Next::NeedPayee(request) => {
                let payee = load_payee(request.payee(), request.payer());
                request.provide(engine, payee)
            }
            Next::NeedNewEnvelope(request) => {
                let envelope = load_envelope(request.euin());
                request.provide(engine, envelope)
            }
        };
    }
    unreachable!("an SMS takes at most four steps")
}
