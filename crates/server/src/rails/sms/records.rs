//! What the SMS rail keeps beside the ledger, as versioned JSON records in namespace `sms`, and
//! how they turn into the views the protocol engine reads. No record holds a TAN, grid, checksum
//! recipe, pay number or SMS text in clear: envelopes are EUIN + bookkeeping (secrets derive from
//! the master key; imported ones are sealed), accounts are found by a keyed tag of the pay number.

use offpay_ledger::{AccountId, Amount, Currency, Operation, RecordWrite};
use offpay_sms_tan::{
    AccountNumber, AccountView, BindingTag, CurrencyClass, EnvelopeStatus, EnvelopeView, Euin,
    Limits, PayeeLimit, PendingCallback, PhoneNumber, RowCount, RowSet, ScheduledPayment,
    SealedEnvelope, SecurityLevel, Spending,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use offpay_sms_tan::civil_time::{CivilDateTime, UnixSeconds};
use offpay_sms_tan::posting::Reference;

/// Record namespace of this rail.
pub const NAMESPACE: &str = "sms";
/// Format version written in every record.
pub const FORMAT_VERSION: u32 = 1;
/// Longest gateway message id kept as is in a key; longer ids are hashed.
pub const MESSAGE_ID_KEY_BYTES_MAX: usize = 128;
/// Prefix of ledger account ids of SMS accounts: `sms:901020377865`.
pub const LEDGER_PREFIX: &str = "sms:";

const SECONDS_PER_DAY: i64 = 86_400;

/// Key of an envelope.
pub fn envelope_key(euin: &Euin) -> String {
    format!("env:{euin}")
}
/// Key of an account.
pub fn account_key(number: &AccountNumber) -> String {
    format!("acct:{number}")
}
/// Key of the pay-number index entry (the keyed tag, never the number).
pub fn pay_index_key(tag: &[u8; 16]) -> String {
    format!("pay:{}", hex::encode(tag))
}
/// Key of a pending callback.
pub fn pending_key(euin: &Euin, row: u8) -> String {
    format!("pend:{euin}:{row:02}")
}
/// Key of a scheduled payment (ordered by due time).
pub fn scheduled_key(due: UnixSeconds, message_id: &str) -> String {
    format!("sched:{:012}:{}", due.0, short_hash(message_id))
}
/// Key of a processed inbound message (gateway retries find it).
pub fn inbound_key(gateway: &str, message_id: &str) -> String {
    let safe = message_id.len() <= MESSAGE_ID_KEY_BYTES_MAX
        && message_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:@+".contains(&byte));
    if safe {
        format!("in:{gateway}:{message_id}")
    } else {
        format!("in:{gateway}:#{}", hex::encode(Sha256::digest(message_id)))
    }
}
/// Key of an outbound SMS waiting to be sent.
pub fn outbound_key(queued_at_ms: u64, discriminator: &str) -> String {
    format!("out:{queued_at_ms:016}:{}", short_hash(discriminator))
}
/// Key of an SMS handed to the gateway (delivery reports update it).
pub fn sent_key(id: &str) -> String {
    format!("sent:{id}")
}
/// Key of a dispute.
pub fn dispute_key(reference: Reference, message_id: &str) -> String {
    format!("dispute:{reference}:{}", short_hash(message_id))
}
/// Key of a merchant terminal.
pub fn terminal_key(id: &str) -> String {
    format!("term:{id}")
}
/// Key of a web session (by the hash of its cookie).
pub fn session_key(token_hash: &str) -> String {
    format!("sess:{token_hash}")
}
/// Key of the operator's settings.
pub const SETTINGS_KEY: &str = "cfg:settings";
/// Key of the EUIN serial counter.
pub const SERIAL_KEY: &str = "cfg:euin-serial";

/// 16 hex digits of SHA-256: short, stable key parts for free-form ids.
pub fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The ledger account of an SMS account.
pub fn ledger_account(number: &AccountNumber) -> AccountId {
    match AccountId::new(format!("{LEDGER_PREFIX}{number}")) {
        Ok(id) => id,
        Err(_) => unreachable!("sms: and 12 digits is a valid account id"),
    }
}

/// A record write with compare-and-set: `expected` is the version loaded (0: must not exist).
pub fn put(key: String, value: &impl Serialize, expected: Option<u64>) -> Operation {
    Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key,
        value: Some(serde_json::to_vec(value).unwrap_or_default()),
        expected_version: expected,
    })
}

/// A record delete, compare-and-set on `expected` when given.
pub fn delete(key: String, expected: Option<u64>) -> Operation {
    Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key,
        value: None,
        expected_version: expected,
    })
}

/// An envelope as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnvelopeRecord {
    /// Format version.
    pub version: u32,
    /// 11 digits.
    pub euin: String,
    /// 20 or 50.
    pub rows: u8,
    /// Bit k-1 set when row k is used.
    pub used_rows: u64,
    /// Wrong codes since the last accepted message.
    pub consecutive_failures: u8,
    /// `unallocated`, `active`, `locked` or `retired`.
    pub status: String,
    /// The bound account's receive number (active or locked).
    pub account: Option<String>,
    /// The binding tag, hex.
    pub binding: Option<String>,
    /// Sealed secrets of an imported envelope, hex.
    pub sealed: Option<String>,
    /// When printed or imported.
    pub issued_at_ms: u64,
}

impl EnvelopeRecord {
    /// A new unallocated envelope.
    pub fn unallocated(
        euin: &Euin,
        rows: RowCount,
        sealed: Option<&SealedEnvelope>,
        now_ms: u64,
    ) -> EnvelopeRecord {
        EnvelopeRecord {
            version: FORMAT_VERSION,
            euin: euin.to_string(),
            rows: rows.get(),
            used_rows: 0,
            consecutive_failures: 0,
            status: "unallocated".to_owned(),
            account: None,
            binding: None,
            sealed: sealed.map(|sealed| hex::encode(sealed.as_bytes())),
            issued_at_ms: now_ms,
        }
    }

    /// The engine's view; `None` if the record is damaged.
    pub fn view(&self) -> Option<EnvelopeView> {
        let euin = Euin::parse(&self.euin).ok()?;
        let rows = RowCount::from_count(usize::from(self.rows))?;
        let account = || {
            self.account
                .as_deref()
                .and_then(|text| AccountNumber::parse(text).ok())
        };
        let status = match self.status.as_str() {
            "unallocated" => EnvelopeStatus::Unallocated,
            "active" => EnvelopeStatus::Active {
                account: account()?,
            },
            "locked" => EnvelopeStatus::Locked {
                account: account()?,
            },
            "retired" => EnvelopeStatus::Retired,
            _ => return None,
        };
        let binding = match &self.binding {
            Some(text) => {
                let bytes: [u8; 16] = hex::decode(text).ok()?.try_into().ok()?;
                Some(BindingTag(bytes))
            }
            None => None,
        };
        let sealed = match &self.sealed {
            Some(text) => Some(SealedEnvelope::from_bytes(hex::decode(text).ok()?)),
            None => None,
        };
        Some(EnvelopeView {
            euin,
            rows,
            used_rows: RowSet::from_bits(self.used_rows),
            consecutive_failures: self.consecutive_failures,
            status,
            sealed,
            binding,
        })
    }

    /// Writes the engine's new bookkeeping into the record.
    pub fn update(
        &mut self,
        used_rows: RowSet,
        consecutive_failures: u8,
        status: EnvelopeStatus,
        binding: Option<BindingTag>,
    ) {
        self.used_rows = used_rows.bits();
        self.consecutive_failures = consecutive_failures;
        let (status, account) = match status {
            EnvelopeStatus::Unallocated => ("unallocated", None),
            EnvelopeStatus::Active { account } => ("active", Some(account.to_string())),
            EnvelopeStatus::Locked { account } => ("locked", Some(account.to_string())),
            EnvelopeStatus::Retired => ("retired", None),
        };
        self.status = status.to_owned();
        self.account = account;
        self.binding = binding.map(|tag| hex::encode(tag.0));
    }
}

/// Limits as stored (minor units of the account's currency).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LimitsRecord {
    /// Largest single payment.
    pub per_payment_minor: Option<u64>,
    /// Most per day.
    pub per_day_minor: Option<u64>,
    /// Most per week.
    pub per_week_minor: Option<u64>,
    /// Per-payee daily caps: (receive number, minor).
    pub per_payee: Vec<(String, u64)>,
}

/// What was paid in the current day and week (operator's time zone), kept with the account and
/// updated in the same batch as every payment, so limits need no ledger scan.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SpendingRecord {
    /// Day number since 1970-01-01 (local).
    pub day: i64,
    /// Paid that day (fees excluded).
    pub today_minor: u64,
    /// Week number (weeks start on Monday).
    pub week: i64,
    /// Paid that week.
    pub week_minor: u64,
    /// Paid that day to payees that have a per-payee limit: (receive number, minor).
    pub per_payee_today: Vec<(String, u64)>,
}

/// The local day and week numbers at `now`.
pub fn day_and_week(now: UnixSeconds, utc_offset_minutes: i32) -> (i64, i64) {
    let local = i64::try_from(now.0).unwrap_or(i64::MAX / 2) + i64::from(utc_offset_minutes) * 60;
    let day = local.div_euclid(SECONDS_PER_DAY);
    // 1970-01-01 was a Thursday: shifting by 3 makes weeks start on Monday.
    (day, (day + 3).div_euclid(7))
}

impl SpendingRecord {
    /// The counters as of `now` (a new day or week starts from zero).
    pub fn current(&self, now: UnixSeconds, utc_offset_minutes: i32) -> SpendingRecord {
        let (day, week) = day_and_week(now, utc_offset_minutes);
        let mut current = self.clone();
        if current.day != day {
            current.day = day;
            current.today_minor = 0;
            current.per_payee_today.clear();
        }
        if current.week != week {
            current.week = week;
            current.week_minor = 0;
        }
        current
    }
}

/// An SMS account as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountRecord {
    /// Format version.
    pub version: u32,
    /// Public receive number.
    pub receive_number: String,
    /// Keyed tag of the secret pay number (hex); the number itself is not stored.
    pub pay_tag: String,
    /// ISO 4217 code.
    pub currency: String,
    /// False when closed or frozen by the operator.
    pub active: bool,
    /// Phones allowed to send instructions (empty: any).
    pub bound_phones: Vec<String>,
    /// Where notices of money received go.
    pub notify_phone: Option<String>,
    /// The holder's limits.
    pub limits: LimitsRecord,
    /// The holder's dialback threshold (minor), if set.
    pub dialback_threshold_minor: Option<u64>,
    /// Callback for every payment.
    pub always_callback: bool,
    /// Instructions must name the pay number.
    pub require_pay_number: bool,
    /// The envelope in use.
    pub current_envelope: Option<String>,
    /// Today's and this week's payments.
    pub spending: SpendingRecord,
    /// Argon2id hash of the web password (see `web::hash_password`).
    pub web_password: Option<String>,
    /// Wrong web passwords in a row.
    pub web_failures: u8,
    /// When opened.
    pub created_at_ms: u64,
}

fn amount(minor: u64, currency: Currency) -> Option<Amount> {
    Amount::from_minor(minor, currency).ok()
}

impl AccountRecord {
    /// The account's number.
    pub fn number(&self) -> Option<AccountNumber> {
        AccountNumber::parse(&self.receive_number).ok()
    }

    /// The account's currency.
    pub fn currency(&self) -> Option<Currency> {
        Currency::from_code(&self.currency).ok()
    }

    /// The engine's view. `pay_number` is the number the sender typed when the account was found
    /// by it (it matched the tag); otherwise a placeholder, which the engine never compares.
    pub fn view(
        &self,
        pay_number: Option<AccountNumber>,
        class: CurrencyClass,
    ) -> Option<AccountView> {
        let receive_number = self.number()?;
        let currency = self.currency()?;
        let placeholder = AccountNumber::from_digits([0; 12])?;
        let mut view = AccountView::new(
            receive_number,
            pay_number.unwrap_or(placeholder),
            currency,
            class,
        );
        view.active = self.active;
        view.bound_phones = self
            .bound_phones
            .iter()
            .filter_map(|phone| PhoneNumber::parse(phone).ok())
            .collect();
        view.notify_phone = self
            .notify_phone
            .as_deref()
            .and_then(|phone| PhoneNumber::parse(phone).ok());
        view.limits = Limits {
            per_payment: self
                .limits
                .per_payment_minor
                .and_then(|minor| amount(minor, currency)),
            per_day: self
                .limits
                .per_day_minor
                .and_then(|minor| amount(minor, currency)),
            per_week: self
                .limits
                .per_week_minor
                .and_then(|minor| amount(minor, currency)),
            per_payee: self
                .limits
                .per_payee
                .iter()
                .filter_map(|(payee, minor)| {
                    Some(PayeeLimit {
                        payee: AccountNumber::parse(payee).ok()?,
                        per_day: amount(*minor, currency)?,
                    })
                })
                .collect(),
        };
        view.dialback_threshold = self
            .dialback_threshold_minor
            .and_then(|minor| amount(minor, currency));
        view.always_callback = self.always_callback;
        view.require_pay_number = self.require_pay_number;
        Some(view)
    }

    /// Spending as the engine wants it, as of `now`.
    pub fn spending(&self, now: UnixSeconds, utc_offset_minutes: i32) -> Option<Spending> {
        let currency = self.currency()?;
        let current = self.spending.current(now, utc_offset_minutes);
        Some(Spending {
            today: amount(current.today_minor, currency)?,
            this_week: amount(current.week_minor, currency)?,
        })
    }

    /// What this account paid `payee` today (for per-payee limits).
    pub fn paid_today_to(&self, payee: &AccountNumber, now: UnixSeconds, offset: i32) -> u64 {
        let text = payee.to_string();
        self.spending
            .current(now, offset)
            .per_payee_today
            .iter()
            .find(|(number, _)| *number == text)
            .map_or(0, |(_, minor)| *minor)
    }

    /// Counts a payment of `minor` to `payee` in today's and this week's spending.
    pub fn add_spending(
        &mut self,
        payee: &AccountNumber,
        minor: u64,
        now: UnixSeconds,
        offset: i32,
    ) {
        let mut current = self.spending.current(now, offset);
        current.today_minor = current.today_minor.saturating_add(minor);
        current.week_minor = current.week_minor.saturating_add(minor);
        let text = payee.to_string();
        let limited = self
            .limits
            .per_payee
            .iter()
            .any(|(number, _)| *number == text);
        if limited {
            match current
                .per_payee_today
                .iter_mut()
                .find(|(number, _)| *number == text)
            {
                Some((_, paid)) => *paid = paid.saturating_add(minor),
                None => current.per_payee_today.push((text, minor)),
            }
        }
        self.spending = current;
    }

    /// Writes the engine's limits.
    pub fn set_limits(&mut self, limits: &Limits) {
        self.limits = LimitsRecord {
            per_payment_minor: limits.per_payment.map(|amount| amount.minor()),
            per_day_minor: limits.per_day.map(|amount| amount.minor()),
            per_week_minor: limits.per_week.map(|amount| amount.minor()),
            per_payee: limits
                .per_payee
                .iter()
                .map(|limit| (limit.payee.to_string(), limit.per_day.minor()))
                .collect(),
        };
    }
}

/// A pending callback as stored, with where its expiry notice goes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingRecord {
    /// Format version.
    pub version: u32,
    /// 11 digits.
    pub euin: String,
    /// The bank's callback row.
    pub callback_row: u8,
    /// The instruction's row.
    pub instruction_row: u8,
    /// `low`, `middle` or `high`.
    pub requested_level: String,
    /// The original inbound message id.
    pub message_id: String,
    /// Payer receive number.
    pub payer: String,
    /// Payee receive number.
    pub payee: String,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// Its currency.
    pub currency: String,
    /// When the callback was sent (Unix seconds).
    pub created_at: u64,
    /// For a scheduled payment: local due time and Unix seconds.
    pub due: Option<(String, u64)>,
    /// Who gets the expiry notice.
    pub reply_to: String,
}

fn level_name(level: SecurityLevel) -> &'static str {
    match level {
        SecurityLevel::Low => "low",
        SecurityLevel::Middle => "middle",
        SecurityLevel::High => "high",
    }
}

fn level_from(name: &str) -> Option<SecurityLevel> {
    match name {
        "low" => Some(SecurityLevel::Low),
        "middle" => Some(SecurityLevel::Middle),
        "high" => Some(SecurityLevel::High),
        _ => None,
    }
}

fn civil_text(civil: &CivilDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        civil.year, civil.month, civil.day, civil.hour, civil.minute
    )
}

fn civil_from(text: &str) -> Option<CivilDateTime> {
    let (date, time) = text.split_once(' ')?;
    let (year, month, day) = CivilDateTime::parse_date(date).ok()?;
    let (hour, minute) = CivilDateTime::parse_time(time).ok()?;
    CivilDateTime::new(year, month, day, hour, minute)
}

impl PendingRecord {
    /// From the engine's effect.
    pub fn from_callback(pending: &PendingCallback, reply_to: &PhoneNumber) -> PendingRecord {
        PendingRecord {
            version: FORMAT_VERSION,
            euin: pending.euin.to_string(),
            callback_row: pending.callback_row,
            instruction_row: pending.instruction_row,
            requested_level: level_name(pending.requested_level).to_owned(),
            message_id: pending.message_id.clone(),
            payer: pending.payer.to_string(),
            payee: pending.payee.to_string(),
            amount_minor: pending.amount.minor(),
            currency: pending.amount.currency().code().to_owned(),
            created_at: pending.created_at.0,
            due: pending
                .due
                .map(|(civil, unix)| (civil_text(&civil), unix.0)),
            reply_to: reply_to.to_string(),
        }
    }

    /// Back to the engine's type.
    pub fn callback(&self) -> Option<PendingCallback> {
        let currency = Currency::from_code(&self.currency).ok()?;
        let due = match &self.due {
            Some((civil, unix)) => Some((civil_from(civil)?, UnixSeconds(*unix))),
            None => None,
        };
        Some(PendingCallback {
            format_version: offpay_sms_tan::engine::RECORD_FORMAT_VERSION,
            euin: Euin::parse(&self.euin).ok()?,
            callback_row: self.callback_row,
            instruction_row: self.instruction_row,
            requested_level: level_from(&self.requested_level)?,
            message_id: self.message_id.clone(),
            payer: AccountNumber::parse(&self.payer).ok()?,
            payee: AccountNumber::parse(&self.payee).ok()?,
            amount: Amount::from_minor(self.amount_minor, currency).ok()?,
            created_at: UnixSeconds(self.created_at),
            due,
        })
    }
}

/// A scheduled payment as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScheduledRecord {
    /// Format version.
    pub version: u32,
    /// The original inbound message id.
    pub message_id: String,
    /// Payer receive number.
    pub payer: String,
    /// Payee receive number.
    pub payee: String,
    /// Amount in minor units.
    pub amount_minor: u64,
    /// Its currency.
    pub currency: String,
    /// Level (decides the fee).
    pub level: String,
    /// Due, Unix seconds.
    pub due: u64,
    /// Confirmation goes here.
    pub reply_to: String,
    /// Reference given to the payer.
    pub reference: String,
}

impl ScheduledRecord {
    /// From the engine's effect.
    pub fn from_payment(payment: &ScheduledPayment) -> ScheduledRecord {
        ScheduledRecord {
            version: FORMAT_VERSION,
            message_id: payment.message_id.clone(),
            payer: payment.payer.to_string(),
            payee: payment.payee.to_string(),
            amount_minor: payment.amount.minor(),
            currency: payment.amount.currency().code().to_owned(),
            level: level_name(payment.level).to_owned(),
            due: payment.due.0,
            reply_to: payment.reply_to.to_string(),
            reference: payment.reference.to_string(),
        }
    }

    /// Back to the engine's type.
    pub fn payment(&self) -> Option<ScheduledPayment> {
        let currency = Currency::from_code(&self.currency).ok()?;
        Some(ScheduledPayment {
            format_version: offpay_sms_tan::engine::RECORD_FORMAT_VERSION,
            message_id: self.message_id.clone(),
            payer: AccountNumber::parse(&self.payer).ok()?,
            payee: AccountNumber::parse(&self.payee).ok()?,
            amount: Amount::from_minor(self.amount_minor, currency).ok()?,
            level: level_from(&self.level)?,
            due: UnixSeconds(self.due),
            reply_to: PhoneNumber::parse(&self.reply_to).ok()?,
            reference: Reference::parse(&self.reference)?,
        })
    }
}

/// A processed inbound message: what was answered, so a gateway retry gets the same answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InboundRecord {
    /// Format version.
    pub version: u32,
    /// `accepted`, `refused` or `malformed`.
    pub verdict: String,
    /// Replies to the sender (answered inline by the webhook).
    pub replies: Vec<String>,
    /// When processed.
    pub processed_at_ms: u64,
}

/// An SMS waiting for the gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutboundRecord {
    /// Format version.
    pub version: u32,
    /// Recipient.
    pub to: String,
    /// Text (a reply; it may carry the TAN of a row the bank just used, never an unused one).
    pub text: String,
    /// Send attempts so far.
    pub attempts: u32,
    /// Not before (Unix ms).
    pub next_attempt_ms: u64,
    /// When queued.
    pub queued_at_ms: u64,
    /// Last error, for the operator.
    pub last_error: Option<String>,
}

/// An SMS the gateway accepted, updated by delivery reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SentRecord {
    /// Format version.
    pub version: u32,
    /// Recipient.
    pub to: String,
    /// The queue key it came from.
    pub queue_key: String,
    /// `accepted`, `delivered`, `failed`, `buffered`…
    pub status: String,
    /// When accepted by the gateway.
    pub sent_at_ms: u64,
    /// Last delivery report (Unix ms).
    pub report_at_ms: Option<u64>,
    /// The text, kept to resend after a failure report.
    pub text: String,
    /// Attempts so far.
    pub attempts: u32,
}

/// A dispute case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DisputeRecord {
    /// Format version.
    pub version: u32,
    /// The reporting account.
    pub account: String,
    /// The payment's reference.
    pub reference: String,
    /// When reported (Unix seconds).
    pub reported_at: u64,
    /// `open`, `refunded` or `rejected`.
    pub status: String,
    /// The operator's note.
    pub note: Option<String>,
    /// The refund transfer, if refunded.
    pub refund_transfer: Option<String>,
}

/// A merchant terminal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TerminalRecord {
    /// Format version.
    pub version: u32,
    /// Its id.
    pub id: String,
    /// The payee account its payments go to.
    pub payee: String,
    /// SHA-256 of its secret, hex.
    pub secret_hash: String,
    /// False when withdrawn.
    pub active: bool,
    /// When issued.
    pub created_at_ms: u64,
}

/// A web session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Format version.
    pub version: u32,
    /// The account logged in.
    pub account: String,
    /// The form token for POSTs in this session.
    pub csrf: String,
    /// Expiry (Unix ms).
    pub expires_at_ms: u64,
}

/// The EUIN serial counter.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SerialRecord {
    /// Format version.
    pub version: u32,
    /// Next serial to issue.
    pub next: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fit_the_ledger_bounds_and_hash_odd_message_ids() {
        assert_eq!(inbound_key("webhook", "abc-1"), "in:webhook:abc-1");
        let odd = inbound_key("webhook", "a b/c");
        assert!(odd.starts_with("in:webhook:#") && odd.len() < 100, "{odd}");
        let long = "x".repeat(1000);
        assert!(inbound_key("kannel", &long).len() < offpay_ledger::RECORD_KEY_LENGTH_MAX);
    }

    #[test]
    fn spending_rolls_over_at_local_midnight_and_on_mondays() {
        let mut account = AccountRecord {
            version: FORMAT_VERSION,
            receive_number: "111100002222".into(),
            pay_tag: String::new(),
            currency: "KES".into(),
            active: true,
            bound_phones: vec![],
            notify_phone: None,
            limits: LimitsRecord::default(),
            dialback_threshold_minor: None,
            always_callback: false,
            require_pay_number: false,
            current_envelope: None,
            spending: SpendingRecord::default(),
            web_password: None,
            web_failures: 0,
            created_at_ms: 0,
        };
        let payee = AccountNumber::parse("901020377865").unwrap();
        // 2026-11-30 is a Monday; 10:00 UTC.
        let monday = CivilDateTime::new(2026, 11, 30, 10, 0).unwrap().to_unix(0);
        account.add_spending(&payee, 500, monday, 0);
        let spending = account.spending(monday, 0).unwrap();
        assert_eq!(
            (spending.today.minor(), spending.this_week.minor()),
            (500, 500)
        );
        let tuesday = UnixSeconds(monday.0 + 86_400);
        let spending = account.spending(tuesday, 0).unwrap();
        assert_eq!(
            (spending.today.minor(), spending.this_week.minor()),
            (0, 500)
        );
        let next_monday = UnixSeconds(monday.0 + 7 * 86_400);
        assert_eq!(
            account.spending(next_monday, 0).unwrap().this_week.minor(),
            0
        );
        // In UTC+3, 22:00 UTC Monday is already Tuesday.
        let late = UnixSeconds(monday.0 + 12 * 3600);
        assert_eq!(account.spending(late, 180).unwrap().today.minor(), 0);
    }
}
