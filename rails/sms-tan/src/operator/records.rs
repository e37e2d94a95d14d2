//! What the operator keeps beside the ledger, in record namespace `sms`: one Rust type per
//! record with its format version, its key, and the JSON it is stored as. No record holds a TAN,
//! grid, checksum recipe, pay number or SMS text in clear: envelopes are EUIN + bookkeeping
//! (secrets derive from the master key; imported ones are sealed), accounts are found by a keyed
//! tag of the pay number.
//!
//! The JSON shapes are those the first release wrote (format version 1); each type decodes them
//! into typed fields (amounts as [`Amount`], numbers as [`AccountNumber`], …), and a stored value
//! that does not decode is an error naming its key, never a default.

use offpay_ledger::{AccountId, Amount, Currency, Record, TransferId as LedgerTransferId};
use offpay_operator::record::{check_version, corrupt, decode_json};
use offpay_operator::{RecordError, StoredRecord};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::account::{Limits, PayeeLimit};
use crate::civil_time::{CivilDateTime, UnixSeconds};
use crate::engine::{PendingCallback, RECORD_FORMAT_VERSION, ScheduledPayment};
use crate::envelope::{EnvelopeStatus, EnvelopeView, RowCount, RowSet};
use crate::grammar::SecurityLevel;
use crate::keys::{BindingTag, MasterKey, SealedEnvelope};
use crate::numbers::{AccountNumber, Euin, PhoneNumber};
use crate::operator::spending::SpendingWindow;
use crate::posting::{Reference, TransferId};

/// Record namespace of this rail.
pub const NAMESPACE: &str = "sms";
/// Format version of the records whose shape has not changed since the first release.
pub const FORMAT_VERSION: u32 = 1;
/// Format version of account records: 2 added the holder's language. A record without a
/// language is still written at version 1 (byte for byte as before); version 1 records read
/// as "the operator's default language".
pub const ACCOUNT_FORMAT_VERSION: u32 = 2;
/// Format version of pending-callback records: 2 added the payer's language (written only when
/// set, as for accounts).
pub const PENDING_FORMAT_VERSION: u32 = 2;
/// Longest gateway message id kept as is in a key; longer ids are hashed.
pub const MESSAGE_ID_KEY_BYTES_MAX: usize = 128;
/// Prefix of ledger account ids of SMS accounts: `sms:901020377865`.
pub const LEDGER_PREFIX: &str = "sms:";
/// Prefix of the ledger ids of the engine's transfers: `sms:` + 32 hex digits.
pub const TRANSFER_PREFIX: &str = "sms:";
/// Bytes of SHA-256 kept in [`short_hash`].
const SHORT_HASH_BYTES: usize = 8;

/// Key prefix of accounts.
pub const ACCOUNT_PREFIX: &str = "acct:";
/// Key prefix of pending callbacks.
pub const PENDING_PREFIX: &str = "pend:";
/// Key prefix of scheduled payments (ordered by due time).
pub const SCHEDULED_PREFIX: &str = "sched:";
/// Key prefix of the outbound queue (ordered by queueing time).
pub const OUTBOUND_PREFIX: &str = "out:";
/// Key prefix of SMS the gateway accepted.
pub const SENT_PREFIX: &str = "sent:";
/// Key prefix of outbound SMS given up on, kept for the operator.
pub const DEAD_PREFIX: &str = "dead:";
/// Key prefix of disputes.
pub const DISPUTE_PREFIX: &str = "dispute:";
/// Key prefix of web sessions.
pub const SESSION_PREFIX: &str = "sess:";
/// Key of the operator's settings.
pub const SETTINGS_KEY: &str = "cfg:settings";
/// Key of the EUIN serial counter.
pub const SERIAL_KEY: &str = "cfg:euin-serial";

/// Key prefix of envelopes.
pub const ENVELOPE_PREFIX: &str = "env:";

/// Key of an envelope.
pub fn envelope_key(euin: &Euin) -> String {
    format!("{ENVELOPE_PREFIX}{euin}")
}
/// Key of an account.
pub fn account_key(number: &AccountNumber) -> String {
    format!("{ACCOUNT_PREFIX}{number}")
}
/// Key of the pay-number index entry (the keyed tag, never the number).
pub fn pay_index_key(tag: &[u8; 16]) -> String {
    format!("pay:{}", hex::encode(tag))
}
/// Key of a pending callback.
pub fn pending_key(euin: &Euin, row: u8) -> String {
    format!("{PENDING_PREFIX}{euin}:{row:02}")
}
/// Key of a scheduled payment (ordered by due time).
pub fn scheduled_key(due: UnixSeconds, message_id: &str) -> String {
    format!("{SCHEDULED_PREFIX}{:012}:{}", due.0, short_hash(message_id))
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
/// Key prefix of resend records (a keyed hash of sender and message).
pub const RESEND_PREFIX: &str = "txt:";

/// Key of the resend record with keyed hash `tag` ([`crate::operator::inbound::InboundSms::resend_key`]).
pub fn resend_key(tag: &str) -> String {
    format!("{RESEND_PREFIX}{tag}")
}

/// Key of an outbound SMS waiting to be sent.
pub fn outbound_key(queued_at_ms: u64, discriminator: &str) -> String {
    format!(
        "{OUTBOUND_PREFIX}{queued_at_ms:016}:{}",
        short_hash(discriminator)
    )
}
/// Key of an outbound SMS given up on (the queue key it had, kept for the operator).
pub fn dead_key(queue_key: &str) -> String {
    format!("{DEAD_PREFIX}{queue_key}")
}
/// Key of an SMS handed to the gateway (delivery reports update it).
pub fn sent_key(id: &str) -> String {
    format!("{SENT_PREFIX}{id}")
}
/// Key of a dispute.
pub fn dispute_key(reference: Reference, message_id: &str) -> String {
    format!("{DISPUTE_PREFIX}{reference}:{}", short_hash(message_id))
}
/// Key of a merchant terminal.
pub fn terminal_key(id: &str) -> String {
    format!("term:{id}")
}
/// Key of a web session (by the hash of its cookie).
pub fn session_key(token_hash: &str) -> String {
    format!("{SESSION_PREFIX}{token_hash}")
}

/// 16 hex digits of SHA-256: short, stable key parts for free-form ids.
pub fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..SHORT_HASH_BYTES])
}

/// Hex SHA-256 (for tokens kept only as hashes).
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The ledger account of an SMS account.
pub fn ledger_account(number: &AccountNumber) -> AccountId {
    match AccountId::new(format!("{LEDGER_PREFIX}{number}")) {
        Ok(id) => id,
        Err(_) => unreachable!("sms: and 12 digits is a valid account id"),
    }
}

/// The ledger id of one of the engine's postings (`sms:` + its 16-byte id in hex).
pub fn ledger_transfer_id(id: &TransferId) -> LedgerTransferId {
    match LedgerTransferId::new(format!("{TRANSFER_PREFIX}{}", id.hex())) {
        Ok(id) => id,
        Err(_) => unreachable!("sms: and 32 hex digits is a valid transfer id"),
    }
}

/// The 8-digit reference of a ledger transfer id: the engine's for SMS transfers, else 0.
pub fn reference_of(id: &str) -> Reference {
    let engine_id = id
        .strip_prefix(TRANSFER_PREFIX)
        .and_then(|hex_text| hex::decode(hex_text).ok())
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok());
    match engine_id {
        Some(bytes) => Reference::of(&TransferId(bytes)),
        None => Reference::parse("00000000").unwrap_or_else(|| unreachable!("8 zeros parse")),
    }
}

/// Decodes a stored record read by a listing (a page of [`offpay_ledger::LedgerStore::records`]).
pub fn decode_record<R: StoredRecord>(record: &Record) -> Result<R, RecordError> {
    R::decode(&record.key, &record.value)
}

fn encode_wire<R: StoredRecord>(wire: &impl Serialize, key: &str) -> Result<Vec<u8>, RecordError> {
    serde_json::to_vec(wire).map_err(|error| RecordError::Encode {
        namespace: R::NAMESPACE,
        key: key.to_owned(),
        message: error.to_string(),
    })
}

fn decode_wire<R: StoredRecord, W: DeserializeOwned>(
    key: &str,
    bytes: &[u8],
) -> Result<W, RecordError> {
    serde_json::from_slice(bytes).map_err(|error| corrupt::<R>(key, error))
}

/// Turns a field that does not convert into the error naming the record's key.
fn field<R: StoredRecord, T, E>(
    key: &str,
    what: &str,
    value: Result<T, E>,
) -> Result<T, RecordError> {
    value.map_err(|_| corrupt::<R>(key, format!("{what} does not decode")))
}

fn some<R: StoredRecord, T>(key: &str, what: &str, value: Option<T>) -> Result<T, RecordError> {
    value.ok_or_else(|| corrupt::<R>(key, format!("{what} does not decode")))
}

fn amount<R: StoredRecord>(
    key: &str,
    what: &str,
    minor: u64,
    currency: Currency,
) -> Result<Amount, RecordError> {
    field::<R, _, _>(key, what, Amount::from_minor(minor, currency))
}

fn hex_array<R: StoredRecord, const N: usize>(
    key: &str,
    what: &str,
    text: &str,
) -> Result<[u8; N], RecordError> {
    let bytes = field::<R, _, _>(key, what, hex::decode(text))?;
    field::<R, _, _>(key, what, <[u8; N]>::try_from(bytes))
}

macro_rules! json_record {
    ($type:ty, $version:expr) => {
        impl StoredRecord for $type {
            const NAMESPACE: &'static str = NAMESPACE;
            const FORMAT_VERSION: u32 = $version;
            fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
                encode_wire::<Self>(&self.wire(), key)
            }
            fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
                let wire = decode_wire::<Self, _>(key, bytes)?;
                Self::from_wire(key, wire)
            }
        }
    };
}

// --- envelopes ---------------------------------------------------------------------------------

/// An envelope as stored: the engine's view of it and when it was printed or imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeRecord {
    /// EUIN, rows, used rows, failures, status, binding, sealed secrets.
    pub view: EnvelopeView,
    /// When printed or imported (Unix ms).
    pub issued_at_ms: u64,
    /// MAC of everything above under a key derived from the master key
    /// ([`EnvelopeRecord::seal`]): used rows a database administrator marked unused (to replay a
    /// paid message), a failure count or lock he reset (to let a thief keep guessing), a retired
    /// envelope he made active again do not match, and the envelope pays nothing. All zeros: none
    /// (a record written before envelopes carried one).
    pub mac: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct EnvelopeWire {
    version: u32,
    euin: String,
    rows: u8,
    used_rows: u64,
    consecutive_failures: u8,
    status: String,
    account: Option<String>,
    binding: Option<String>,
    sealed: Option<String>,
    issued_at_ms: u64,
    /// MAC of the rest (absent in records written before envelopes carried one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    mac: String,
}

/// The stored name of an envelope status.
pub fn status_name(status: &EnvelopeStatus) -> &'static str {
    match status {
        EnvelopeStatus::Unallocated => "unallocated",
        EnvelopeStatus::Active { .. } => "active",
        EnvelopeStatus::Locked { .. } => "locked",
        EnvelopeStatus::Retired => "retired",
    }
}

impl EnvelopeRecord {
    /// A new unallocated envelope.
    pub fn unallocated(
        euin: &Euin,
        rows: RowCount,
        sealed: Option<SealedEnvelope>,
        now_ms: u64,
    ) -> EnvelopeRecord {
        let mut view = EnvelopeView::unallocated(*euin, rows);
        view.sealed = sealed;
        EnvelopeRecord {
            view,
            issued_at_ms: now_ms,
            mac: [0; 32],
        }
    }

    /// Record kind in its MAC.
    pub const MAC_KIND: &'static str = "envelope";

    fn mac_content(&self) -> Vec<u8> {
        let mut wire = self.wire();
        wire.mac = String::new();
        mac_content(&wire)
    }

    /// Writes the MAC of the record as it is now, stored under `key`: every write of an envelope
    /// by the operator's code calls it last.
    pub fn seal(&mut self, master: &MasterKey, key: &str) {
        self.mac = master.record_mac(Self::MAC_KIND, key, &self.mac_content());
    }

    /// The record sealed for `key` ([`EnvelopeRecord::seal`]).
    pub fn sealed(mut self, master: &MasterKey, key: &str) -> EnvelopeRecord {
        self.seal(master, key);
        self
    }

    /// Whether the record is the one the operator's code wrote under `key`.
    pub fn authentic(&self, master: &MasterKey, key: &str) -> bool {
        master.record_mac_matches(Self::MAC_KIND, key, &self.mac_content(), &self.mac)
    }

    /// True for an envelope imported (printed elsewhere) rather than derived here.
    pub fn imported(&self) -> bool {
        self.view.sealed.is_some()
    }

    /// Writes the engine's new bookkeeping into the record.
    pub fn update(
        &mut self,
        used_rows: RowSet,
        consecutive_failures: u8,
        status: EnvelopeStatus,
        binding: Option<BindingTag>,
    ) {
        self.view.used_rows = used_rows;
        self.view.consecutive_failures = consecutive_failures;
        self.view.status = status;
        self.view.binding = binding;
    }

    fn wire(&self) -> EnvelopeWire {
        let view = &self.view;
        let account = match view.status {
            EnvelopeStatus::Active { account } | EnvelopeStatus::Locked { account } => {
                Some(account.to_string())
            }
            EnvelopeStatus::Unallocated | EnvelopeStatus::Retired => None,
        };
        EnvelopeWire {
            version: FORMAT_VERSION,
            euin: view.euin.to_string(),
            rows: view.rows.get(),
            used_rows: view.used_rows.bits(),
            consecutive_failures: view.consecutive_failures,
            status: status_name(&view.status).to_owned(),
            account,
            binding: view.binding.map(|tag| hex::encode(tag.0)),
            sealed: view
                .sealed
                .as_ref()
                .map(|sealed| hex::encode(sealed.as_bytes())),
            issued_at_ms: self.issued_at_ms,
            mac: if self.mac == [0; 32] {
                String::new()
            } else {
                hex::encode(self.mac)
            },
        }
    }

    fn from_wire(key: &str, wire: EnvelopeWire) -> Result<EnvelopeRecord, RecordError> {
        check_version::<Self>(key, wire.version)?;
        let euin = field::<Self, _, _>(key, "euin", Euin::parse(&wire.euin))?;
        let rows = some::<Self, _>(key, "rows", RowCount::from_count(usize::from(wire.rows)))?;
        let account = || {
            let text = some::<Self, _>(key, "account", wire.account.as_deref())?;
            field::<Self, _, _>(key, "account", AccountNumber::parse(text))
        };
        let status = match wire.status.as_str() {
            "unallocated" => EnvelopeStatus::Unallocated,
            "active" => EnvelopeStatus::Active {
                account: account()?,
            },
            "locked" => EnvelopeStatus::Locked {
                account: account()?,
            },
            "retired" => EnvelopeStatus::Retired,
            _ => return Err(corrupt::<Self>(key, "status does not decode")),
        };
        let binding = match &wire.binding {
            Some(text) => Some(BindingTag(hex_array::<Self, 16>(key, "binding", text)?)),
            None => None,
        };
        let sealed = match &wire.sealed {
            Some(text) => Some(SealedEnvelope::from_bytes(field::<Self, _, _>(
                key,
                "sealed",
                hex::decode(text),
            )?)),
            None => None,
        };
        Ok(EnvelopeRecord {
            view: EnvelopeView {
                euin,
                rows,
                used_rows: RowSet::from_bits(wire.used_rows),
                consecutive_failures: wire.consecutive_failures,
                status,
                sealed,
                binding,
            },
            issued_at_ms: wire.issued_at_ms,
            // A missing or malformed MAC reads as one that does not match.
            mac: hex_array::<Self, 32>(key, "mac", &wire.mac).unwrap_or([0; 32]),
        })
    }
}

json_record!(EnvelopeRecord, FORMAT_VERSION);

// --- accounts ----------------------------------------------------------------------------------

/// An SMS account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRecord {
    /// Public receive number.
    pub receive_number: AccountNumber,
    /// Keyed tag of the secret pay number; the number itself is not stored.
    pub pay_tag: [u8; 16],
    /// The account's currency.
    pub currency: Currency,
    /// False when closed or frozen by the operator.
    pub active: bool,
    /// Phones allowed to send instructions (empty: any).
    pub bound_phones: Vec<PhoneNumber>,
    /// Where notices of money received go.
    pub notify_phone: Option<PhoneNumber>,
    /// The holder's limits (in the account's currency).
    pub limits: Limits,
    /// The holder's dialback threshold, if set.
    pub dialback_threshold: Option<Amount>,
    /// Callback for every payment.
    pub always_callback: bool,
    /// Instructions must name the pay number.
    pub require_pay_number: bool,
    /// The envelope in use.
    pub current_envelope: Option<Euin>,
    /// The language of the holder's texts (`None`: the operator's default). Format version 2.
    pub language: Option<offpay_text::Language>,
    /// Today's and this week's payments, kept with the account and updated in the same batch as
    /// every payment, so limits need no ledger scan.
    pub spending: SpendingWindow,
    /// Argon2id hash of the web password ([`crate::operator::web::hash_password`]).
    pub web_password: Option<String>,
    /// Wrong web passwords in a row.
    pub web_failures: u8,
    /// When opened (Unix ms).
    pub created_at_ms: u64,
    /// MAC of the settings (everything above but the spending window and the web login state)
    /// under a key derived from the master key ([`AccountRecord::seal_settings`]): settings a
    /// database administrator changed do not match, and the account pays nothing.
    pub settings_mac: [u8; 32],
    /// MAC of the spending window under a key derived from the master key
    /// ([`AccountRecord::seal_spending`]): a window a database administrator lowered (to let the
    /// holder pay past a daily or weekly limit) does not match, and the account pays nothing.
    /// All zeros: none (a record written before the window carried one).
    pub spending_mac: [u8; 32],
    /// The current envelope's used rows as of the last decision that used one of its rows, kept
    /// under the spending window's MAC: an envelope record rolled back to an earlier authentic
    /// copy (rows un-used) or an account rolled back (spending un-counted) disagrees with the
    /// other, and the account pays nothing ([`AccountRecord::rows_disagree`]). `None` in records
    /// written before it was kept, until the next row is used.
    pub envelope_rows: Option<(Euin, RowSet)>,
}

/// Limits as stored: minor units of the account's currency, per-payee caps as
/// `[receive number, minor]` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsWire {
    /// Largest single payment.
    pub per_payment_minor: Option<u64>,
    /// Most per day.
    pub per_day_minor: Option<u64>,
    /// Most per week.
    pub per_week_minor: Option<u64>,
    /// Per-payee daily caps: (receive number, minor).
    pub per_payee: Vec<(String, u64)>,
}

impl LimitsWire {
    /// The stored form of `limits`.
    pub fn of(limits: &Limits) -> LimitsWire {
        LimitsWire {
            per_payment_minor: limits.per_payment.map(|amount| amount.minor()),
            per_day_minor: limits.per_day.map(|amount| amount.minor()),
            per_week_minor: limits.per_week.map(|amount| amount.minor()),
            per_payee: limits
                .per_payee
                .iter()
                .map(|limit| (limit.payee.to_string(), limit.per_day.minor()))
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct SpendingWire {
    day: i64,
    today_minor: u64,
    week: i64,
    week_minor: u64,
    per_payee_today: Vec<(String, u64)>,
}

#[derive(Serialize, Deserialize)]
struct AccountWire {
    version: u32,
    receive_number: String,
    pay_tag: String,
    currency: String,
    active: bool,
    bound_phones: Vec<String>,
    notify_phone: Option<String>,
    limits: LimitsWire,
    dialback_threshold_minor: Option<u64>,
    always_callback: bool,
    require_pay_number: bool,
    current_envelope: Option<String>,
    spending: SpendingWire,
    web_password: Option<String>,
    web_failures: u8,
    created_at_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    settings_mac: String,
    /// MAC of the spending window (absent in records written before it carried one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    spending_mac: String,
    /// The current envelope's EUIN and used rows (absent in records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    envelope_rows: Option<(String, u64)>,
    /// Version 2: the holder's language code (`en`, `sw`, `fr`); absent: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    language: Option<String>,
}

/// What an account's settings MAC covers.
#[derive(Serialize)]
struct AccountSettingsWire<'a> {
    receive_number: &'a str,
    pay_tag: &'a str,
    currency: &'a str,
    active: bool,
    bound_phones: &'a [String],
    notify_phone: &'a Option<String>,
    limits: &'a LimitsWire,
    dialback_threshold_minor: Option<u64>,
    always_callback: bool,
    require_pay_number: bool,
    current_envelope: &'a Option<String>,
    // Absent when unset, so the MACs of records written before languages still match.
    #[serde(skip_serializing_if = "Option::is_none")]
    language: &'a Option<String>,
}

/// What an account's spending-window MAC covers: the account and its window.
#[derive(Serialize)]
struct AccountSpendingWire<'a> {
    receive_number: &'a str,
    currency: &'a str,
    spending: &'a SpendingWire,
    // Absent when unset, so the MACs of windows sealed before it was kept still match.
    #[serde(skip_serializing_if = "Option::is_none")]
    envelope_rows: &'a Option<(String, u64)>,
}

impl AccountRecord {
    /// Record kind in its MAC.
    pub const MAC_KIND: &'static str = "account-settings";
    /// Record kind in its spending window's MAC.
    pub const SPENDING_MAC_KIND: &'static str = "account-spending";

    fn spending_content(&self) -> Vec<u8> {
        let wire = self.wire();
        mac_content(&AccountSpendingWire {
            receive_number: &wire.receive_number,
            currency: &wire.currency,
            spending: &wire.spending,
            envelope_rows: &wire.envelope_rows,
        })
    }

    /// Whether the used rows this account recorded for `envelope` disagree with the envelope's
    /// own: one of the two records was put back to an earlier copy. Nothing to compare when the
    /// account recorded no rows yet or recorded another envelope's.
    pub fn rows_disagree(&self, envelope: &EnvelopeView) -> bool {
        matches!(self.envelope_rows, Some((euin, rows)) if euin == envelope.euin && rows != envelope.used_rows)
    }

    /// Writes the MAC of the current spending window for the record stored under `key`: every
    /// decision that moves the window calls it before writing.
    pub fn seal_spending(&mut self, master: &MasterKey, key: &str) {
        self.spending_mac =
            master.record_mac(Self::SPENDING_MAC_KIND, key, &self.spending_content());
    }

    /// Whether the spending window is the one the operator's code wrote under `key`.
    pub fn spending_authentic(&self, master: &MasterKey, key: &str) -> bool {
        master.record_mac_matches(
            Self::SPENDING_MAC_KIND,
            key,
            &self.spending_content(),
            &self.spending_mac,
        )
    }

    fn settings_content(&self) -> Vec<u8> {
        let wire = self.wire();
        mac_content(&AccountSettingsWire {
            receive_number: &wire.receive_number,
            pay_tag: &wire.pay_tag,
            currency: &wire.currency,
            active: wire.active,
            bound_phones: &wire.bound_phones,
            notify_phone: &wire.notify_phone,
            limits: &wire.limits,
            dialback_threshold_minor: wire.dialback_threshold_minor,
            always_callback: wire.always_callback,
            require_pay_number: wire.require_pay_number,
            current_envelope: &wire.current_envelope,
            language: &wire.language,
        })
    }

    /// Writes the MAC of the current settings for the record stored under `key`: every decision
    /// that changes settings calls it before writing.
    pub fn seal_settings(&mut self, master: &MasterKey, key: &str) {
        self.settings_mac = master.record_mac(Self::MAC_KIND, key, &self.settings_content());
    }

    /// Whether the settings are the ones the operator's code wrote under `key`.
    pub fn settings_authentic(&self, master: &MasterKey, key: &str) -> bool {
        master.record_mac_matches(
            Self::MAC_KIND,
            key,
            &self.settings_content(),
            &self.settings_mac,
        )
    }

    /// A new active account with no limits and nothing paid yet.
    pub fn new(
        receive_number: AccountNumber,
        pay_tag: [u8; 16],
        currency: Currency,
        now_ms: u64,
    ) -> AccountRecord {
        AccountRecord {
            receive_number,
            pay_tag,
            currency,
            active: true,
            bound_phones: Vec::new(),
            notify_phone: None,
            limits: Limits::default(),
            dialback_threshold: None,
            always_callback: false,
            require_pay_number: false,
            current_envelope: None,
            language: None,
            spending: SpendingWindow::empty(currency),
            web_password: None,
            web_failures: 0,
            created_at_ms: now_ms,
            settings_mac: [0; 32],
            spending_mac: [0; 32],
            envelope_rows: None,
        }
    }

    /// The engine's view. `pay_number` is the number the sender typed when the account was found
    /// by it (it matched the tag); otherwise a placeholder, which the engine never compares.
    pub fn view(
        &self,
        pay_number: Option<AccountNumber>,
        class: crate::account::CurrencyClass,
    ) -> crate::account::AccountView {
        let placeholder =
            AccountNumber::from_digits([0; 12]).unwrap_or_else(|| unreachable!("12 zeros"));
        let mut view = crate::account::AccountView::new(
            self.receive_number,
            pay_number.unwrap_or(placeholder),
            self.currency,
            class,
        );
        view.active = self.active;
        view.bound_phones = self.bound_phones.clone();
        view.notify_phone = self.notify_phone.clone();
        view.limits = self.limits.clone();
        view.dialback_threshold = self.dialback_threshold;
        view.always_callback = self.always_callback;
        view.require_pay_number = self.require_pay_number;
        view.language = self.language;
        view
    }

    /// The stored form of the limits (also what the operator API shows).
    pub fn limits_wire(&self) -> LimitsWire {
        LimitsWire::of(&self.limits)
    }

    fn wire(&self) -> AccountWire {
        let spending = &self.spending;
        AccountWire {
            version: if self.language.is_some() {
                ACCOUNT_FORMAT_VERSION
            } else {
                FORMAT_VERSION
            },
            receive_number: self.receive_number.to_string(),
            pay_tag: hex::encode(self.pay_tag),
            currency: self.currency.code().to_owned(),
            active: self.active,
            bound_phones: self.bound_phones.iter().map(ToString::to_string).collect(),
            notify_phone: self.notify_phone.as_ref().map(ToString::to_string),
            limits: self.limits_wire(),
            dialback_threshold_minor: self.dialback_threshold.map(|amount| amount.minor()),
            always_callback: self.always_callback,
            require_pay_number: self.require_pay_number,
            current_envelope: self.current_envelope.map(|euin| euin.to_string()),
            spending: SpendingWire {
                day: spending.day,
                today_minor: spending.today.minor(),
                week: spending.week,
                week_minor: spending.this_week.minor(),
                per_payee_today: spending
                    .per_payee_today
                    .iter()
                    .map(|(payee, paid)| (payee.to_string(), paid.minor()))
                    .collect(),
            },
            web_password: self.web_password.clone(),
            web_failures: self.web_failures,
            created_at_ms: self.created_at_ms,
            settings_mac: if self.settings_mac == [0; 32] {
                String::new()
            } else {
                hex::encode(self.settings_mac)
            },
            spending_mac: if self.spending_mac == [0; 32] {
                String::new()
            } else {
                hex::encode(self.spending_mac)
            },
            language: self.language.map(|language| language.code().to_owned()),
            envelope_rows: self
                .envelope_rows
                .map(|(euin, rows)| (euin.to_string(), rows.bits())),
        }
    }

    fn from_wire(key: &str, wire: AccountWire) -> Result<AccountRecord, RecordError> {
        check_version::<Self>(key, wire.version)?;
        let number =
            |what: &str, text: &str| field::<Self, _, _>(key, what, AccountNumber::parse(text));
        let phone = |text: &str| field::<Self, _, _>(key, "phone", PhoneNumber::parse(text));
        let currency = field::<Self, _, _>(key, "currency", Currency::from_code(&wire.currency))?;
        let money = |what: &str, minor: u64| amount::<Self>(key, what, minor, currency);
        let optional =
            |what: &str, minor: Option<u64>| minor.map(|minor| money(what, minor)).transpose();
        let limits = Limits {
            per_payment: optional("limits", wire.limits.per_payment_minor)?,
            per_day: optional("limits", wire.limits.per_day_minor)?,
            per_week: optional("limits", wire.limits.per_week_minor)?,
            per_payee: wire
                .limits
                .per_payee
                .iter()
                .map(|(payee, minor)| {
                    Ok(PayeeLimit {
                        payee: number("limits", payee)?,
                        per_day: money("limits", *minor)?,
                    })
                })
                .collect::<Result<_, RecordError>>()?,
        };
        let spending = SpendingWindow {
            day: wire.spending.day,
            today: money("spending", wire.spending.today_minor)?,
            week: wire.spending.week,
            this_week: money("spending", wire.spending.week_minor)?,
            per_payee_today: wire
                .spending
                .per_payee_today
                .iter()
                .map(|(payee, minor)| Ok((number("spending", payee)?, money("spending", *minor)?)))
                .collect::<Result<_, RecordError>>()?,
        };
        Ok(AccountRecord {
            receive_number: number("receive_number", &wire.receive_number)?,
            pay_tag: hex_array::<Self, 16>(key, "pay_tag", &wire.pay_tag)?,
            currency,
            active: wire.active,
            bound_phones: wire
                .bound_phones
                .iter()
                .map(|text| phone(text))
                .collect::<Result<_, _>>()?,
            notify_phone: wire.notify_phone.as_deref().map(phone).transpose()?,
            limits,
            dialback_threshold: optional(
                "dialback_threshold_minor",
                wire.dialback_threshold_minor,
            )?,
            always_callback: wire.always_callback,
            require_pay_number: wire.require_pay_number,
            current_envelope: wire
                .current_envelope
                .as_deref()
                .map(|text| field::<Self, _, _>(key, "current_envelope", Euin::parse(text)))
                .transpose()?,
            language: wire
                .language
                .as_deref()
                .map(|code| {
                    field::<Self, _, _>(key, "language", code.parse::<offpay_text::Language>())
                })
                .transpose()?,
            spending,
            web_password: wire.web_password,
            web_failures: wire.web_failures,
            created_at_ms: wire.created_at_ms,
            // A missing or malformed MAC reads as one that does not match.
            settings_mac: hex_array::<Self, 32>(key, "settings_mac", &wire.settings_mac)
                .unwrap_or([0; 32]),
            spending_mac: hex_array::<Self, 32>(key, "spending_mac", &wire.spending_mac)
                .unwrap_or([0; 32]),
            envelope_rows: wire
                .envelope_rows
                .as_ref()
                .map(|(euin, rows)| {
                    Ok::<_, RecordError>((
                        field::<Self, _, _>(key, "envelope_rows", Euin::parse(euin))?,
                        RowSet::from_bits(*rows),
                    ))
                })
                .transpose()?,
        })
    }
}

json_record!(AccountRecord, ACCOUNT_FORMAT_VERSION);

/// The pay-number index entry: the receive number of the account whose pay number has the tag in
/// the key. Stored as a bare JSON string (format version 1, implicit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayIndexRecord(pub AccountNumber);

impl PayIndexRecord {
    fn wire(&self) -> String {
        self.0.to_string()
    }

    fn from_wire(key: &str, wire: String) -> Result<PayIndexRecord, RecordError> {
        Ok(PayIndexRecord(field::<Self, _, _>(
            key,
            "account",
            AccountNumber::parse(&wire),
        )?))
    }
}

json_record!(PayIndexRecord, FORMAT_VERSION);

// --- pending callbacks and scheduled payments --------------------------------------------------

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

/// A pending callback as stored, with where its expiry notice goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRecord {
    /// The payment waiting for the payer's OK.
    pub callback: PendingCallback,
    /// Who gets the expiry notice.
    pub reply_to: PhoneNumber,
    /// MAC under a key derived from the master key ([`MasterKey::record_mac`]) over the record's
    /// key and content: a record a database administrator wrote or changed does not match.
    pub mac: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct PendingWire {
    version: u32,
    euin: String,
    callback_row: u8,
    instruction_row: u8,
    requested_level: String,
    message_id: String,
    payer: String,
    payee: String,
    amount_minor: u64,
    currency: String,
    created_at: u64,
    due: Option<(String, u64)>,
    reply_to: String,
    #[serde(default)]
    mac: String,
    /// Version 2: the payer's language code; absent: the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    language: Option<String>,
}

/// What a record's MAC covers: its JSON with the MAC left empty.
fn mac_content<W: Serialize>(wire: &W) -> Vec<u8> {
    // Serialising plain strings and numbers to JSON cannot fail.
    serde_json::to_vec(wire).unwrap_or_default()
}

impl PendingRecord {
    /// Record kind in its MAC.
    pub const MAC_KIND: &'static str = "pending";

    /// A pending record stored under `key`, with its MAC.
    pub fn sealed(
        callback: PendingCallback,
        reply_to: PhoneNumber,
        master: &MasterKey,
        key: &str,
    ) -> PendingRecord {
        let mut record = PendingRecord {
            callback,
            reply_to,
            mac: [0; 32],
        };
        record.mac = master.record_mac(Self::MAC_KIND, key, &record.mac_content());
        record
    }

    fn mac_content(&self) -> Vec<u8> {
        let mut wire = self.wire();
        wire.mac = String::new();
        mac_content(&wire)
    }

    /// Whether the record is the one the operator wrote under `key`.
    pub fn authentic(&self, master: &MasterKey, key: &str) -> bool {
        crate::reverts::reverted(crate::reverts::RECORD_MAC)
            || master.record_mac_matches(Self::MAC_KIND, key, &self.mac_content(), &self.mac)
    }

    fn wire(&self) -> PendingWire {
        let pending = &self.callback;
        PendingWire {
            version: if pending.language.is_some() {
                PENDING_FORMAT_VERSION
            } else {
                FORMAT_VERSION
            },
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
            reply_to: self.reply_to.to_string(),
            mac: hex::encode(self.mac),
            language: pending.language.map(|language| language.code().to_owned()),
        }
    }

    fn from_wire(key: &str, wire: PendingWire) -> Result<PendingRecord, RecordError> {
        check_version::<Self>(key, wire.version)?;
        let currency = field::<Self, _, _>(key, "currency", Currency::from_code(&wire.currency))?;
        let due = match &wire.due {
            Some((civil, unix)) => Some((
                some::<Self, _>(key, "due", civil_from(civil))?,
                UnixSeconds(*unix),
            )),
            None => None,
        };
        Ok(PendingRecord {
            callback: PendingCallback {
                format_version: RECORD_FORMAT_VERSION,
                euin: field::<Self, _, _>(key, "euin", Euin::parse(&wire.euin))?,
                callback_row: wire.callback_row,
                instruction_row: wire.instruction_row,
                requested_level: some::<Self, _>(
                    key,
                    "requested_level",
                    level_from(&wire.requested_level),
                )?,
                message_id: wire.message_id,
                payer: field::<Self, _, _>(key, "payer", AccountNumber::parse(&wire.payer))?,
                payee: field::<Self, _, _>(key, "payee", AccountNumber::parse(&wire.payee))?,
                amount: amount::<Self>(key, "amount", wire.amount_minor, currency)?,
                created_at: UnixSeconds(wire.created_at),
                due,
                language: wire
                    .language
                    .as_deref()
                    .map(|code| {
                        field::<Self, _, _>(key, "language", code.parse::<offpay_text::Language>())
                    })
                    .transpose()?,
            },
            reply_to: field::<Self, _, _>(key, "reply_to", PhoneNumber::parse(&wire.reply_to))?,
            // A missing or malformed MAC reads as one that does not match.
            mac: hex_array::<Self, 32>(key, "mac", &wire.mac).unwrap_or([0; 32]),
        })
    }
}

json_record!(PendingRecord, PENDING_FORMAT_VERSION);

/// A scheduled payment as stored, with its MAC under a key derived from the master key
/// ([`MasterKey::record_mac`]) over its key and content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledRecord(pub ScheduledPayment, pub [u8; 32]);

#[derive(Serialize, Deserialize)]
struct ScheduledWire {
    version: u32,
    message_id: String,
    payer: String,
    payee: String,
    amount_minor: u64,
    currency: String,
    level: String,
    due: u64,
    reply_to: String,
    reference: String,
    #[serde(default)]
    mac: String,
}

impl ScheduledRecord {
    /// Record kind in its MAC.
    pub const MAC_KIND: &'static str = "scheduled";

    /// A scheduled payment stored under `key`, with its MAC.
    pub fn sealed(payment: ScheduledPayment, master: &MasterKey, key: &str) -> ScheduledRecord {
        let mut record = ScheduledRecord(payment, [0; 32]);
        record.1 = master.record_mac(Self::MAC_KIND, key, &record.mac_content());
        record
    }

    fn mac_content(&self) -> Vec<u8> {
        let mut wire = self.wire();
        wire.mac = String::new();
        mac_content(&wire)
    }

    /// Whether the record is the one the operator wrote under `key`.
    pub fn authentic(&self, master: &MasterKey, key: &str) -> bool {
        crate::reverts::reverted(crate::reverts::RECORD_MAC)
            || master.record_mac_matches(Self::MAC_KIND, key, &self.mac_content(), &self.1)
    }

    fn wire(&self) -> ScheduledWire {
        let payment = &self.0;
        ScheduledWire {
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
            mac: hex::encode(self.1),
        }
    }

    fn from_wire(key: &str, wire: ScheduledWire) -> Result<ScheduledRecord, RecordError> {
        check_version::<Self>(key, wire.version)?;
        let currency = field::<Self, _, _>(key, "currency", Currency::from_code(&wire.currency))?;
        Ok(ScheduledRecord(
            ScheduledPayment {
                format_version: RECORD_FORMAT_VERSION,
                message_id: wire.message_id,
                payer: field::<Self, _, _>(key, "payer", AccountNumber::parse(&wire.payer))?,
                payee: field::<Self, _, _>(key, "payee", AccountNumber::parse(&wire.payee))?,
                amount: amount::<Self>(key, "amount", wire.amount_minor, currency)?,
                level: some::<Self, _>(key, "level", level_from(&wire.level))?,
                due: UnixSeconds(wire.due),
                reply_to: field::<Self, _, _>(key, "reply_to", PhoneNumber::parse(&wire.reply_to))?,
                reference: some::<Self, _>(key, "reference", Reference::parse(&wire.reference))?,
            },
            // A missing or malformed MAC reads as one that does not match.
            hex_array::<Self, 32>(key, "mac", &wire.mac).unwrap_or([0; 32]),
        ))
    }
}

json_record!(ScheduledRecord, FORMAT_VERSION);

// --- inbound messages and the outbound queue ---------------------------------------------------

/// How a processed message ended, as stored and answered to gateways and terminals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answered {
    /// Done.
    Accepted,
    /// Read but refused.
    Refused,
    /// Not readable.
    Malformed,
}

impl Answered {
    /// The word stored and answered.
    pub fn word(self) -> &'static str {
        match self {
            Answered::Accepted => "accepted",
            Answered::Refused => "refused",
            Answered::Malformed => "malformed",
        }
    }
}

/// A processed inbound message: what was answered, so a gateway retry gets the same answer. The
/// replies carry bank rows' TANs and the instruction's echo, so they are kept sealed under a key
/// derived from the master key ([`MasterKey::seal_text`]), never in clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRecord {
    /// Format version.
    pub version: u32,
    /// How it ended.
    pub verdict: Answered,
    /// Replies in clear: only records of the first release have them; new ones leave this empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<String>,
    /// The replies to the sender (answered inline by the webhook), sealed, hex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sealed_replies: String,
    /// When processed (Unix ms).
    pub processed_at_ms: u64,
}

impl InboundRecord {
    /// The record stored under `key` for a message answered with `replies`.
    pub fn sealed(
        master: &MasterKey,
        key: &str,
        verdict: Answered,
        replies: &[String],
        processed_at_ms: u64,
    ) -> InboundRecord {
        // Serialising a list of strings cannot fail.
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(replies).unwrap_or_default());
        InboundRecord {
            version: FORMAT_VERSION,
            verdict,
            replies: Vec::new(),
            sealed_replies: hex::encode(master.seal_text(key.as_bytes(), &plain)),
            processed_at_ms,
        }
    }

    /// The replies, opened with the master key (`key` is the record's key); none when they do
    /// not open (a record moved or changed in the database).
    pub fn open_replies(&self, master: &MasterKey, key: &str) -> Vec<String> {
        if self.sealed_replies.is_empty() {
            return self.replies.clone();
        }
        hex::decode(&self.sealed_replies)
            .ok()
            .and_then(|sealed| master.unseal_text(key.as_bytes(), &sealed).ok())
            .and_then(|plain| {
                let plain = zeroize::Zeroizing::new(plain);
                serde_json::from_slice(&plain).ok()
            })
            .unwrap_or_default()
    }
}

impl StoredRecord for InboundRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = FORMAT_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_wire::<Self>(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: InboundRecord = decode_json(key, bytes)?;
        check_version::<Self>(key, record.version)?;
        Ok(record)
    }
}

/// Key of the record of an envelope replaced at an agent.
pub fn replacement_key(old: &Euin) -> String {
    format!("repl:{old}")
}

/// An envelope retired and replaced at an agent: who checked the holder's identity, on what
/// document (a keyed hash of its number, never the number), when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacementRecord {
    /// Format version.
    pub version: u32,
    /// The account.
    pub account: String,
    /// The envelope retired.
    pub retired: String,
    /// The envelope bound in its place.
    pub replacement: String,
    /// The agent or operator who checked the holder's identity.
    pub checked_by: String,
    /// The kind of document shown (`national id`, `passport`, …).
    pub document_kind: String,
    /// Keyed hash of the document's number ([`MasterKey::text_tag`]).
    pub document_tag: String,
    /// Why (`lost`, `stolen`, `used up`, …).
    pub reason: String,
    /// When (Unix ms).
    pub at_ms: u64,
}

impl StoredRecord for ReplacementRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = FORMAT_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_wire::<Self>(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: ReplacementRecord = decode_json(key, bytes)?;
        check_version::<Self>(key, record.version)?;
        Ok(record)
    }
}

/// An SMS waiting for the gateway (under `out:`), or given up on (under `dead:`). Its `Debug`
/// leaves the text out: a reply may carry a used row's TAN.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundRecord {
    /// Recipient.
    pub to: PhoneNumber,
    /// Text (a reply; it may carry the TAN of a row the bank just used, never an unused one).
    pub text: String,
    /// Send attempts so far.
    pub attempts: u32,
    /// Not before (Unix ms).
    pub next_attempt_ms: u64,
    /// When queued (Unix ms).
    pub queued_at_ms: u64,
    /// Last error, for the operator.
    pub last_error: Option<String>,
    /// The keyed hash of the text ([`MasterKey::text_tag`]) once the text is dropped (a message
    /// given up on keeps only this); empty while the text is kept.
    pub text_hash: String,
}

impl std::fmt::Debug for OutboundRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundRecord")
            .field("to", &self.to)
            .field("text_chars", &self.text.chars().count())
            .field("attempts", &self.attempts)
            .field("next_attempt_ms", &self.next_attempt_ms)
            .field("queued_at_ms", &self.queued_at_ms)
            .field("last_error", &self.last_error)
            .field("text_dropped", &!self.text_hash.is_empty())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct OutboundWire {
    version: u32,
    to: String,
    text: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    text_hash: String,
    attempts: u32,
    next_attempt_ms: u64,
    queued_at_ms: u64,
    last_error: Option<String>,
}

impl OutboundRecord {
    fn wire(&self) -> OutboundWire {
        OutboundWire {
            version: FORMAT_VERSION,
            to: self.to.to_string(),
            text: self.text.clone(),
            attempts: self.attempts,
            next_attempt_ms: self.next_attempt_ms,
            queued_at_ms: self.queued_at_ms,
            last_error: self.last_error.clone(),
            text_hash: self.text_hash.clone(),
        }
    }

    fn from_wire(key: &str, wire: OutboundWire) -> Result<OutboundRecord, RecordError> {
        check_version::<Self>(key, wire.version)?;
        Ok(OutboundRecord {
            to: field::<Self, _, _>(key, "to", PhoneNumber::parse(&wire.to))?,
            text: wire.text,
            attempts: wire.attempts,
            next_attempt_ms: wire.next_attempt_ms,
            queued_at_ms: wire.queued_at_ms,
            last_error: wire.last_error,
            text_hash: wire.text_hash,
        })
    }
}

json_record!(OutboundRecord, FORMAT_VERSION);

/// What a gateway's delivery reports said last about an SMS it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Accepted by the gateway, no report yet.
    Accepted,
    /// Delivered to the phone (final).
    Delivered,
    /// Failed.
    Failed,
    /// Buffered by the SMSC.
    Buffered,
    /// Accepted by the SMSC.
    SmscAccepted,
    /// Rejected by the SMSC.
    SmscRejected,
    /// A report this release does not know.
    Unknown,
}

/// An SMS the gateway accepted, updated by delivery reports. Its `Debug` leaves the text out.
#[derive(Clone, PartialEq, Eq)]
pub struct SentRecord {
    /// Recipient.
    pub to: PhoneNumber,
    /// The queue key it came from.
    pub queue_key: String,
    /// The last report.
    pub status: Delivery,
    /// When accepted by the gateway (Unix ms).
    pub sent_at_ms: u64,
    /// Last delivery report (Unix ms).
    pub report_at_ms: Option<u64>,
    /// The text, kept to resend after a failure report until the phone has it; empty after.
    pub text: String,
    /// The keyed hash of the text once it is dropped ([`MasterKey::text_tag`]).
    pub text_hash: String,
    /// Attempts so far.
    pub attempts: u32,
}

impl std::fmt::Debug for SentRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentRecord")
            .field("to", &self.to)
            .field("queue_key", &self.queue_key)
            .field("status", &self.status)
            .field("sent_at_ms", &self.sent_at_ms)
            .field("report_at_ms", &self.report_at_ms)
            .field("text_chars", &self.text.chars().count())
            .field("text_dropped", &!self.text_hash.is_empty())
            .field("attempts", &self.attempts)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct SentWire {
    version: u32,
    to: String,
    queue_key: String,
    status: Delivery,
    sent_at_ms: u64,
    report_at_ms: Option<u64>,
    text: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    text_hash: String,
    attempts: u32,
}

impl SentRecord {
    fn wire(&self) -> SentWire {
        SentWire {
            version: FORMAT_VERSION,
            to: self.to.to_string(),
            queue_key: self.queue_key.clone(),
            status: self.status,
            sent_at_ms: self.sent_at_ms,
            report_at_ms: self.report_at_ms,
            text: self.text.clone(),
            text_hash: self.text_hash.clone(),
            attempts: self.attempts,
        }
    }

    fn from_wire(key: &str, wire: SentWire) -> Result<SentRecord, RecordError> {
        check_version::<Self>(key, wire.version)?;
        Ok(SentRecord {
            to: field::<Self, _, _>(key, "to", PhoneNumber::parse(&wire.to))?,
            queue_key: wire.queue_key,
            status: wire.status,
            sent_at_ms: wire.sent_at_ms,
            report_at_ms: wire.report_at_ms,
            text: wire.text,
            text_hash: wire.text_hash,
            attempts: wire.attempts,
        })
    }
}

json_record!(SentRecord, FORMAT_VERSION);

// --- disputes, terminals, sessions, the serial counter -----------------------------------------

/// Where a dispute stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisputeStatus {
    /// Waiting for the operator.
    Open,
    /// The payee paid the amount back.
    Refunded,
    /// The operator rejected it.
    Rejected,
}

impl DisputeStatus {
    /// The word stored and shown.
    pub fn word(self) -> &'static str {
        match self {
            DisputeStatus::Open => "open",
            DisputeStatus::Refunded => "refunded",
            DisputeStatus::Rejected => "rejected",
        }
    }
}

/// A dispute case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisputeRecord {
    /// The reporting account.
    pub account: AccountNumber,
    /// The payment's reference.
    pub reference: Reference,
    /// When reported.
    pub reported_at: UnixSeconds,
    /// Where it stands.
    pub status: DisputeStatus,
    /// The operator's note.
    pub note: Option<String>,
    /// The refund transfer, if refunded.
    pub refund_transfer: Option<String>,
}

/// A dispute as stored and as the operator API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DisputeWire {
    /// Format version.
    pub version: u32,
    /// The reporting account.
    pub account: String,
    /// The payment's reference.
    pub reference: String,
    /// When reported (Unix seconds).
    pub reported_at: u64,
    /// `open`, `refunded` or `rejected`.
    pub status: DisputeStatus,
    /// The operator's note.
    pub note: Option<String>,
    /// The refund transfer, if refunded.
    pub refund_transfer: Option<String>,
}

impl DisputeRecord {
    /// The stored (and shown) form.
    pub fn wire(&self) -> DisputeWire {
        DisputeWire {
            version: FORMAT_VERSION,
            account: self.account.to_string(),
            reference: self.reference.to_string(),
            reported_at: self.reported_at.0,
            status: self.status,
            note: self.note.clone(),
            refund_transfer: self.refund_transfer.clone(),
        }
    }

    fn from_wire(key: &str, wire: DisputeWire) -> Result<DisputeRecord, RecordError> {
        check_version::<Self>(key, wire.version)?;
        Ok(DisputeRecord {
            account: field::<Self, _, _>(key, "account", AccountNumber::parse(&wire.account))?,
            reference: some::<Self, _>(key, "reference", Reference::parse(&wire.reference))?,
            reported_at: UnixSeconds(wire.reported_at),
            status: wire.status,
            note: wire.note,
            refund_transfer: wire.refund_transfer,
        })
    }
}

json_record!(DisputeRecord, FORMAT_VERSION);

/// A merchant terminal.
#[derive(Clone, PartialEq, Eq)]
pub struct TerminalRecord {
    /// Its id.
    pub id: String,
    /// The payee account its payments go to.
    pub payee: AccountNumber,
    /// SHA-256 of its secret.
    pub secret_hash: [u8; 32],
    /// False when withdrawn.
    pub active: bool,
    /// When issued (Unix ms).
    pub created_at_ms: u64,
}

impl std::fmt::Debug for TerminalRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalRecord")
            .field("id", &self.id)
            .field("payee", &self.payee)
            .field("active", &self.active)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct TerminalWire {
    version: u32,
    id: String,
    payee: String,
    secret_hash: String,
    active: bool,
    created_at_ms: u64,
}

impl TerminalRecord {
    fn wire(&self) -> TerminalWire {
        TerminalWire {
            version: FORMAT_VERSION,
            id: self.id.clone(),
            payee: self.payee.to_string(),
            secret_hash: hex::encode(self.secret_hash),
            active: self.active,
            created_at_ms: self.created_at_ms,
        }
    }

    fn from_wire(key: &str, wire: TerminalWire) -> Result<TerminalRecord, RecordError> {
        check_version::<Self>(key, wire.version)?;
        Ok(TerminalRecord {
            id: wire.id,
            payee: field::<Self, _, _>(key, "payee", AccountNumber::parse(&wire.payee))?,
            secret_hash: hex_array::<Self, 32>(key, "secret_hash", &wire.secret_hash)?,
            active: wire.active,
            created_at_ms: wire.created_at_ms,
        })
    }
}

json_record!(TerminalRecord, FORMAT_VERSION);

/// A web session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The account logged in.
    pub account: AccountNumber,
    /// The form token for POSTs in this session.
    pub csrf: String,
    /// Expiry (Unix ms).
    pub expires_at_ms: u64,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("account", &self.account)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct SessionWire {
    version: u32,
    account: String,
    csrf: String,
    expires_at_ms: u64,
}

impl SessionRecord {
    fn wire(&self) -> SessionWire {
        SessionWire {
            version: FORMAT_VERSION,
            account: self.account.to_string(),
            csrf: self.csrf.clone(),
            expires_at_ms: self.expires_at_ms,
        }
    }

    fn from_wire(key: &str, wire: SessionWire) -> Result<SessionRecord, RecordError> {
        check_version::<Self>(key, wire.version)?;
        Ok(SessionRecord {
            account: field::<Self, _, _>(key, "account", AccountNumber::parse(&wire.account))?,
            csrf: wire.csrf,
            expires_at_ms: wire.expires_at_ms,
        })
    }
}

json_record!(SessionRecord, FORMAT_VERSION);

/// The EUIN serial counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialRecord {
    /// Format version.
    pub version: u32,
    /// Next serial to issue.
    pub next: u32,
}

impl StoredRecord for SerialRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = FORMAT_VERSION;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_wire::<Self>(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: SerialRecord = decode_json(key, bytes)?;
        check_version::<Self>(key, record.version)?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use offpay_ledger::{Batch, LedgerStore, MemoryStore, Operation, RecordWrite, Timestamp};
    use offpay_operator::Loaded;

    use super::*;

    #[test]
    fn keys_fit_the_ledger_bounds_and_hash_odd_message_ids() {
        assert_eq!(inbound_key("webhook", "abc-1"), "in:webhook:abc-1");
        let odd = inbound_key("webhook", "a b/c");
        assert!(odd.starts_with("in:webhook:#") && odd.len() < 100, "{odd}");
        let long = "x".repeat(1000);
        assert!(inbound_key("kannel", &long).len() < offpay_ledger::RECORD_KEY_LENGTH_MAX);
        assert_eq!(
            pending_key(&Euin::parse("26399912345").unwrap(), 7),
            "pend:26399912345:07"
        );
        assert_eq!(dead_key("out:1"), "dead:out:1");
    }

    fn store_raw(store: &mut MemoryStore, key: &str, json: &str) {
        let results = store
            .commit(
                &[Batch {
                    operations: vec![Operation::PutRecord(RecordWrite {
                        namespace: NAMESPACE.into(),
                        key: key.into(),
                        value: Some(json.as_bytes().to_vec()),
                        expected_version: None,
                    })],
                }],
                Timestamp(1),
            )
            .unwrap();
        assert!(results.iter().all(Result::is_ok));
    }

    /// Records exactly as the first release wrote them decode, and encode back to the same JSON.
    #[test]
    fn records_written_by_the_first_release_still_decode() {
        let mut store = MemoryStore::new();
        let envelope = r#"{"version":1,"euin":"26399912345","rows":20,"used_rows":3,"consecutive_failures":1,"status":"active","account":"111100002222","binding":"000102030405060708090a0b0c0d0e0f","sealed":null,"issued_at_ms":5}"#;
        let account = r#"{"version":1,"receive_number":"111100002222","pay_tag":"0f0e0d0c0b0a09080706050403020100","currency":"KES","active":true,"bound_phones":["+254700000001"],"notify_phone":"+254700000001","limits":{"per_payment_minor":100000,"per_day_minor":null,"per_week_minor":null,"per_payee":[["901020377865",5000]]},"dialback_threshold_minor":50000,"always_callback":false,"require_pay_number":false,"current_envelope":"26399912345","spending":{"day":20000,"today_minor":1250,"week":2857,"week_minor":1250,"per_payee_today":[["901020377865",1250]]},"web_password":null,"web_failures":0,"created_at_ms":7}"#;
        let pending = r#"{"version":1,"euin":"26399912345","callback_row":20,"instruction_row":1,"requested_level":"high","message_id":"gw-1","payer":"111100002222","payee":"901020377865","amount_minor":10000,"currency":"KES","created_at":1790000000,"due":["2026-12-01 09:30",1796117400],"reply_to":"+254700000001"}"#;
        let scheduled = r#"{"version":1,"message_id":"gw-2","payer":"111100002222","payee":"901020377865","amount_minor":2500,"currency":"KES","level":"middle","due":1796117400,"reply_to":"+254700000001","reference":"01234567"}"#;
        let dispute = r#"{"version":1,"account":"111100002222","reference":"01234567","reported_at":1790000000,"status":"open","note":null,"refund_transfer":null}"#;
        let outbound = r#"{"version":1,"to":"+254700000002","text":"PAID","attempts":2,"next_attempt_ms":9,"queued_at_ms":8,"last_error":"sendsms unreachable"}"#;
        let sent = r#"{"version":1,"to":"+254700000002","queue_key":"out:1","status":"smsc_accepted","sent_at_ms":3,"report_at_ms":4,"text":"PAID","attempts":1}"#;
        let session = r#"{"version":1,"account":"111100002222","csrf":"ab","expires_at_ms":99}"#;
        let terminal = r#"{"version":1,"id":"t01","payee":"901020377865","secret_hash":"0000000000000000000000000000000000000000000000000000000000000001","active":true,"created_at_ms":1}"#;
        let inbound = r#"{"version":1,"verdict":"refused","replies":["No."],"processed_at_ms":1}"#;
        for (key, json) in [
            ("env:26399912345", envelope),
            ("acct:111100002222", account),
            ("pend:26399912345:20", pending),
            ("sched:1", scheduled),
            ("dispute:1", dispute),
            ("out:1", outbound),
            ("sent:1", sent),
            ("sess:1", session),
            ("term:t01", terminal),
            ("in:webhook:1", inbound),
            ("pay:00", r#""111100002222""#),
        ] {
            store_raw(&mut store, key, json);
        }
        fn round_trip<R: StoredRecord + PartialEq + std::fmt::Debug>(
            store: &mut MemoryStore,
            key: &str,
            json: &str,
        ) -> R {
            let loaded = Loaded::<R>::read(store, key).unwrap();
            let value = loaded.value.unwrap();
            let mut again: serde_json::Value =
                serde_json::from_slice(&value.encode(key).unwrap()).unwrap();
            // First-release records had no MAC: they decode with none that matches (and are
            // refused where a MAC is required).
            if let Some(object) = again.as_object_mut() {
                object.remove("mac");
            }
            assert_eq!(
                again,
                serde_json::from_str::<serde_json::Value>(json).unwrap()
            );
            value
        }
        let envelope: EnvelopeRecord = round_trip(&mut store, "env:26399912345", envelope);
        let account_number = AccountNumber::parse("111100002222").unwrap();
        assert_eq!(
            envelope.view.status,
            EnvelopeStatus::Active {
                account: account_number
            }
        );
        let account: AccountRecord = round_trip(&mut store, "acct:111100002222", account);
        assert_eq!(
            account.limits.per_payee[0].per_day,
            Amount::parse("50", Currency::KES).unwrap()
        );
        assert_eq!(account.spending.today.minor(), 1250);
        let pending: PendingRecord = round_trip(&mut store, "pend:26399912345:20", pending);
        assert_eq!(pending.callback.amount.minor(), 10_000);
        let scheduled: ScheduledRecord = round_trip(&mut store, "sched:1", scheduled);
        assert_eq!(scheduled.0.level, SecurityLevel::Middle);
        let dispute: DisputeRecord = round_trip(&mut store, "dispute:1", dispute);
        assert_eq!(dispute.status, DisputeStatus::Open);
        let _: OutboundRecord = round_trip(&mut store, "out:1", outbound);
        let sent: SentRecord = round_trip(&mut store, "sent:1", sent);
        assert_eq!(sent.status, Delivery::SmscAccepted);
        let _: SessionRecord = round_trip(&mut store, "sess:1", session);
        let _: TerminalRecord = round_trip(&mut store, "term:t01", terminal);
        let _: InboundRecord = round_trip(&mut store, "in:webhook:1", inbound);
        let index: PayIndexRecord = round_trip(&mut store, "pay:00", r#""111100002222""#);
        assert_eq!(index.0, account_number);
    }

    #[test]
    fn a_record_that_does_not_decode_names_its_key_and_field() {
        let mut store = MemoryStore::new();
        store_raw(
            &mut store,
            "acct:111100002222",
            r#"{"version":1,"receive_number":"111100002222","pay_tag":"00","currency":"KES","active":true,"bound_phones":[],"notify_phone":null,"limits":{"per_payment_minor":null,"per_day_minor":null,"per_week_minor":null,"per_payee":[]},"dialback_threshold_minor":null,"always_callback":false,"require_pay_number":false,"current_envelope":null,"spending":{"day":0,"today_minor":0,"week":0,"week_minor":0,"per_payee_today":[]},"web_password":null,"web_failures":0,"created_at_ms":7}"#,
        );
        let error = Loaded::<AccountRecord>::read(&mut store, "acct:111100002222").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("sms/acct:111100002222") && text.contains("pay_tag"),
            "{text}"
        );
        store_raw(
            &mut store,
            "env:26399912345",
            r#"{"version":2,"euin":"26399912345","rows":20,"used_rows":0,"consecutive_failures":0,"status":"unallocated","account":null,"binding":null,"sealed":null,"issued_at_ms":5}"#,
        );
        assert!(matches!(
            Loaded::<EnvelopeRecord>::read(&mut store, "env:26399912345"),
            Err(RecordError::TooNew { found: 2, .. })
        ));
    }

    #[test]
    fn references_come_back_from_ledger_transfer_ids() {
        let id = TransferId([7; 16]);
        let ledger = ledger_transfer_id(&id);
        assert_eq!(reference_of(ledger.as_str()), Reference::of(&id));
        assert_eq!(reference_of("demo:cash-in").value(), 0);
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn outbound_and_sent_records_keep_their_text_out_of_debug() {
        let text = "PAID 100.00 KES row 7 TAN 4821".to_owned();
        let to = PhoneNumber::parse("+254700000001").unwrap_or_else(|error| panic!("{error:?}"));
        let outbound = OutboundRecord {
            to: to.clone(),
            text: text.clone(),
            attempts: 0,
            next_attempt_ms: 0,
            queued_at_ms: 0,
            last_error: None,
            text_hash: String::new(),
        };
        let sent = SentRecord {
            to,
            queue_key: "out:1".to_owned(),
            status: Delivery::Accepted,
            sent_at_ms: 0,
            report_at_ms: None,
            text,
            text_hash: String::new(),
            attempts: 1,
        };
        for shown in [format!("{outbound:?}"), format!("{sent:?}")] {
            assert!(
                !shown.contains("4821") && !shown.contains("PAID"),
                "{shown}"
            );
        }
    }
}

#[cfg(test)]
mod language_tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_slice(&[7; 32]).unwrap_or_else(|_| panic!("32 bytes"))
    }

    fn account() -> AccountRecord {
        let number = AccountNumber::parse("901020377865").unwrap_or_else(|_| panic!("number"));
        AccountRecord::new(number, [1; 16], Currency::KES, 0)
    }

    #[test]
    fn an_account_without_a_language_is_written_as_before_and_one_with_it_at_version_2() {
        let key = account_key(&account().receive_number);
        let mut record = account();
        record.seal_settings(&master(), &key);
        let plain = String::from_utf8(record.encode(&key).unwrap()).unwrap();
        assert!(
            plain.contains("\"version\":1") && !plain.contains("language"),
            "{plain}"
        );
        assert_eq!(
            AccountRecord::decode(&key, plain.as_bytes()).unwrap(),
            record
        );
        record.language = Some(offpay_text::Language::Sw);
        record.seal_settings(&master(), &key);
        let with = String::from_utf8(record.encode(&key).unwrap()).unwrap();
        assert!(
            with.contains("\"version\":2") && with.contains("\"language\":\"sw\""),
            "{with}"
        );
        let read = AccountRecord::decode(&key, with.as_bytes()).unwrap();
        assert_eq!(read.language, Some(offpay_text::Language::Sw));
        assert!(read.settings_authentic(&master(), &key));
    }

    #[test]
    fn a_language_changed_in_the_database_breaks_the_settings_mac() {
        let key = account_key(&account().receive_number);
        let mut record = account();
        record.language = Some(offpay_text::Language::Sw);
        record.seal_settings(&master(), &key);
        let stored = String::from_utf8(record.encode(&key).unwrap()).unwrap();
        let tampered = stored.replace("\"language\":\"sw\"", "\"language\":\"fr\"");
        let read = AccountRecord::decode(&key, tampered.as_bytes()).unwrap();
        assert_eq!(read.language, Some(offpay_text::Language::Fr));
        assert!(!read.settings_authentic(&master(), &key));
    }
}
