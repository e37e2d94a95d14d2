//! Driving the protocol engine against the ledger: load what each step asks for (recording the
//! version of every record read), then write the outcome — envelope bookkeeping, account data,
//! pending callbacks, scheduled payments, postings, the inbound message's dedupe record and the
//! queued replies — as ONE ledger batch, so it all commits or none of it does. Every record
//! write is a compare-and-set on the version read; a conflict (two SMS racing for one envelope,
//! a gateway retry racing its original) re-runs the message from the start.

use offpay_operator::{Clock, Entropy};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use offpay_ledger::{
    Amount, Batch, BatchRefusal, Currency, LedgerStore, Operation, Refusal as LedgerRefusal,
    StoreError, Transfer, TransferId as LedgerTransferId, TransferKind,
};
use offpay_sms_tan::civil_time::{CivilDateTime, UnixSeconds};
use offpay_sms_tan::engine::Next;
use offpay_sms_tan::posting::{LedgerAccount, PostingKind, Reference};
use offpay_sms_tan::reply::{self, StatementEntry};
use offpay_sms_tan::{
    AccountNumber, CurrencyClass, Effect, Engine, EnvelopeStatus, Euin, Inbound, Outcome,
    PayeeContext, PayerContext, PayerRef, PhoneNumber, Refusal, Verdict,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::records::{
    self, AccountRecord, DisputeRecord, EnvelopeRecord, InboundRecord, NAMESPACE, OutboundRecord,
    PendingRecord, ScheduledRecord,
};
use super::{Settings, SmsRail};
use crate::AppState;
use crate::error::ApiError;
use crate::fraud::FraudFlag;
use crate::metrics::Metrics;
use crate::rails::{FEES, OPERATOR_FLOAT, operator_account_id, operator_accounts};

/// Times one message is re-run after a compare-and-set conflict before the gateway is told to
/// retry later.
pub const RERUN_MAX: usize = 8;
/// Steps of the engine per message (payer, pending, payee, new envelope); the bound catches a
/// loop bug.
const ENGINE_STEPS_MAX: usize = 8;

/// Records read while handling one message, with the version each was at.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Envelopes by key.
    pub envelopes: HashMap<String, (EnvelopeRecord, u64)>,
    /// Accounts by key.
    pub accounts: HashMap<String, (AccountRecord, u64)>,
    /// Pending callbacks by key.
    pub pending: HashMap<String, (PendingRecord, u64)>,
    /// Where envelope and account records may be found without a database read.
    pub cache: Option<Arc<RecordCache>>,
}

impl Loaded {
    /// Loads through the rail's record cache.
    pub fn with_cache(rail: &SmsRail) -> Loaded {
        Loaded {
            cache: Some(rail.cache.clone()),
            ..Loaded::default()
        }
    }
}

/// Most envelope and account records kept in memory.
pub const CACHE_ENTRIES_MAX: usize = 200_000;
/// How long a cached record is trusted. Every write of an envelope or account is a
/// compare-and-set on its version, so a stale entry can at worst make a message re-run; the TTL
/// bounds how long another server process's changes to a record this one only reads (a payee
/// frozen by the operator elsewhere) can go unseen.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
enum Cached {
    Envelope(EnvelopeRecord),
    Account(AccountRecord),
}

/// Envelope and account records with their versions, kept after every commit of this process so
/// that the common path reads only the payer's balance from the database.
#[derive(Debug)]
pub struct RecordCache {
    entries: Mutex<HashMap<String, (Cached, u64, offpay_ledger::Timestamp)>>,
    clock: Arc<dyn Clock>,
}

impl RecordCache {
    /// An empty cache whose entries age by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> RecordCache {
        RecordCache {
            entries: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn lookup(&self, key: &str) -> Option<(Cached, u64)> {
        let entries = self.entries.lock().ok()?;
        let (value, version, stored_at) = entries.get(key)?;
        let age_ms = self.clock.now().0.saturating_sub(stored_at.0);
        (u128::from(age_ms) < CACHE_TTL.as_millis()).then(|| (value.clone(), *version))
    }

    fn insert(&self, key: String, value: Cached, version: u64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_ENTRIES_MAX {
                entries.clear();
            }
            entries.insert(key, (value, version, self.clock.now()));
        }
    }

    fn envelope(&self, key: &str) -> Option<(EnvelopeRecord, u64)> {
        match self.lookup(key)? {
            (Cached::Envelope(record), version) => Some((record, version)),
            _ => None,
        }
    }

    fn account(&self, key: &str) -> Option<(AccountRecord, u64)> {
        match self.lookup(key)? {
            (Cached::Account(record), version) => Some((record, version)),
            _ => None,
        }
    }

    /// Forgets `keys`.
    pub fn forget(&self, keys: &[String]) {
        if let Ok(mut entries) = self.entries.lock() {
            for key in keys {
                entries.remove(key);
            }
        }
    }

    /// Keeps what a batch wrote (when `committed`) or forgets it (when refused or failed).
    pub fn after_commit(&self, operations: &[Operation], committed: bool) {
        for operation in operations {
            let Operation::PutRecord(write) = operation else {
                continue;
            };
            let cached_kind = write.key.starts_with("env:") || write.key.starts_with("acct:");
            if write.namespace != NAMESPACE || !cached_kind {
                continue;
            }
            let value = match (&write.value, write.expected_version, committed) {
                (Some(bytes), Some(expected), true) => if write.key.starts_with("env:") {
                    serde_json::from_slice(bytes).ok().map(Cached::Envelope)
                } else {
                    serde_json::from_slice(bytes).ok().map(Cached::Account)
                }
                .map(|value| (value, expected + 1)),
                _ => None,
            };
            match value {
                Some((value, version)) => self.insert(write.key.clone(), value, version),
                None => {
                    if let Ok(mut entries) = self.entries.lock() {
                        entries.remove(&write.key);
                    }
                }
            }
        }
    }
}

/// Reads and decodes one record of this rail: `(value, version)`.
pub fn get<T: DeserializeOwned>(
    store: &mut dyn LedgerStore,
    key: &str,
) -> Result<Option<(T, u64)>, StoreError> {
    match store.record(NAMESPACE, key)? {
        Some(record) => match serde_json::from_slice(&record.value) {
            Ok(value) => Ok(Some((value, record.version))),
            Err(error) => Err(StoreError::Corrupt(format!("sms record {key}: {error}"))),
        },
        None => Ok(None),
    }
}

/// The available balance of an SMS account, in its currency (never negative).
pub fn available(
    store: &mut dyn LedgerStore,
    number: &AccountNumber,
    currency: Currency,
) -> Result<Amount, StoreError> {
    let minor = store
        .account(&records::ledger_account(number))?
        .map_or(0, |account| account.available().max(0));
    Ok(
        Amount::from_minor(u64::try_from(minor).unwrap_or(0), currency)
            .unwrap_or(Amount::zero(currency)),
    )
}

fn class_of(settings: &Settings, currency: Currency) -> CurrencyClass {
    if settings
        .hard_currencies
        .iter()
        .any(|code| code == currency.code())
    {
        CurrencyClass::Hard
    } else {
        CurrencyClass::Soft
    }
}

/// Loads an account record into `loaded`.
fn load_account(
    store: &mut dyn LedgerStore,
    loaded: &mut Loaded,
    number: &AccountNumber,
) -> Result<Option<AccountRecord>, StoreError> {
    let key = records::account_key(number);
    if let Some((record, _)) = loaded.accounts.get(&key) {
        return Ok(Some(record.clone()));
    }
    let cached = loaded.cache.as_ref().and_then(|cache| cache.account(&key));
    let found = match cached {
        Some(entry) => Some(entry),
        None => {
            let found = get::<AccountRecord>(store, &key)?;
            if let (Some(cache), Some((record, version))) = (&loaded.cache, &found) {
                cache.insert(key.clone(), Cached::Account(record.clone()), *version);
            }
            found
        }
    };
    let Some((record, version)) = found else {
        return Ok(None);
    };
    loaded.accounts.insert(key, (record.clone(), version));
    Ok(Some(record))
}

fn load_envelope(
    store: &mut dyn LedgerStore,
    loaded: &mut Loaded,
    euin: &Euin,
) -> Result<Option<EnvelopeRecord>, StoreError> {
    let key = records::envelope_key(euin);
    if let Some((record, _)) = loaded.envelopes.get(&key) {
        return Ok(Some(record.clone()));
    }
    let cached = loaded.cache.as_ref().and_then(|cache| cache.envelope(&key));
    let found = match cached {
        Some(entry) => Some(entry),
        None => {
            let found = get::<EnvelopeRecord>(store, &key)?;
            if let (Some(cache), Some((record, version))) = (&loaded.cache, &found) {
                cache.insert(key.clone(), Cached::Envelope(record.clone()), *version);
            }
            found
        }
    };
    let Some((record, version)) = found else {
        return Ok(None);
    };
    loaded.envelopes.insert(key, (record.clone(), version));
    Ok(Some(record))
}

/// What a payer reference resolves to (the pay number's tag is computed by the caller, which
/// holds the master key).
#[derive(Debug, Clone)]
pub enum PayerLookup {
    /// By envelope.
    Envelope(Euin),
    /// By pay number: the number typed and its tag.
    PayNumber(AccountNumber, [u8; 16]),
    /// By receive number (scheduler, web login, terminal).
    Account(AccountNumber),
}

impl PayerLookup {
    /// From the engine's request.
    pub fn of(reference: PayerRef, engine: &Engine) -> PayerLookup {
        match reference {
            PayerRef::Envelope(euin) => PayerLookup::Envelope(euin),
            PayerRef::PayNumber(number) => {
                PayerLookup::PayNumber(number, engine.master().pay_number_tag(&number))
            }
        }
    }
}

/// Loads the payer context the engine asks for.
pub fn load_payer(
    store: &mut dyn LedgerStore,
    loaded: &mut Loaded,
    lookup: &PayerLookup,
    settings: &Settings,
    now: UnixSeconds,
) -> Result<Option<PayerContext>, StoreError> {
    let (envelope, account, pay_number) = match lookup {
        PayerLookup::Envelope(euin) => {
            let Some(envelope) = load_envelope(store, loaded, euin)? else {
                return Ok(None);
            };
            let Some(view) = envelope.view() else {
                return Ok(None);
            };
            let bound = match view.status {
                EnvelopeStatus::Active { account } | EnvelopeStatus::Locked { account } => account,
                EnvelopeStatus::Unallocated | EnvelopeStatus::Retired => {
                    // The engine answers "not in use" itself; it needs some account to read.
                    let currency = settings.server_currency;
                    let Some(placeholder) = AccountNumber::from_digits([0; 12]) else {
                        return Ok(None);
                    };
                    let account = offpay_sms_tan::AccountView::new(
                        placeholder,
                        placeholder,
                        currency,
                        CurrencyClass::Soft,
                    );
                    return Ok(Some(PayerContext {
                        envelope: view,
                        account,
                        balance: Amount::zero(currency),
                        spending: offpay_sms_tan::Spending::none(currency),
                    }));
                }
            };
            let Some(account) = load_account(store, loaded, &bound)? else {
                return Ok(None);
            };
            (view, account, None)
        }
        PayerLookup::PayNumber(number, tag) => {
            let Some((receive, _)) = get::<String>(store, &records::pay_index_key(tag))? else {
                return Ok(None);
            };
            let Ok(receive) = AccountNumber::parse(&receive) else {
                return Ok(None);
            };
            let Some(account) = load_account(store, loaded, &receive)? else {
                return Ok(None);
            };
            let Some(view) = current_envelope(store, loaded, &account)? else {
                return Ok(None);
            };
            (view, account, Some(*number))
        }
        PayerLookup::Account(number) => {
            let Some(account) = load_account(store, loaded, number)? else {
                return Ok(None);
            };
            let Some(view) = current_envelope(store, loaded, &account)? else {
                return Ok(None);
            };
            (view, account, None)
        }
    };
    let Some(currency) = account.currency() else {
        return Ok(None);
    };
    let Some(view) = account.view(pay_number, class_of(settings, currency)) else {
        return Ok(None);
    };
    let Some(spending) = account.spending(now, settings.utc_offset_minutes) else {
        return Ok(None);
    };
    let balance = available(store, &view.receive_number, currency)?;
    Ok(Some(PayerContext {
        envelope,
        account: view,
        balance,
        spending,
    }))
}

fn current_envelope(
    store: &mut dyn LedgerStore,
    loaded: &mut Loaded,
    account: &AccountRecord,
) -> Result<Option<offpay_sms_tan::EnvelopeView>, StoreError> {
    let Some(euin) = account
        .current_envelope
        .as_deref()
        .and_then(|text| Euin::parse(text).ok())
    else {
        return Ok(None);
    };
    Ok(load_envelope(store, loaded, &euin)?.and_then(|record| record.view()))
}

/// Loads the payee context.
pub fn load_payee(
    store: &mut dyn LedgerStore,
    loaded: &mut Loaded,
    payee: &AccountNumber,
    payer: &AccountNumber,
    settings: &Settings,
    now: UnixSeconds,
) -> Result<Option<PayeeContext>, StoreError> {
    let Some(account) = load_account(store, loaded, payee)? else {
        return Ok(None);
    };
    let Some(currency) = account.currency() else {
        return Ok(None);
    };
    let Some(view) = account.view(None, class_of(settings, currency)) else {
        return Ok(None);
    };
    let envelope = current_envelope(store, loaded, &account)?
        .filter(|view| matches!(view.status, EnvelopeStatus::Active { .. }));
    let payer_record = load_account(store, loaded, payer)?;
    let payer_currency = payer_record
        .as_ref()
        .and_then(AccountRecord::currency)
        .unwrap_or(currency);
    let paid = payer_record.map_or(0, |record| {
        record.paid_today_to(payee, now, settings.utc_offset_minutes)
    });
    Ok(Some(PayeeContext {
        account: view,
        envelope,
        paid_by_payer_today: Amount::from_minor(paid, payer_currency)
            .unwrap_or(Amount::zero(payer_currency)),
    }))
}

/// Where replies go: inline to the sender (webhook answers), or the durable queue.
#[derive(Debug, Clone)]
pub struct ReplyRouting {
    /// Replies to this phone are answered inline (not queued).
    pub inline_to: Option<PhoneNumber>,
}

/// The dedupe record to write with the outcome.
#[derive(Debug, Clone)]
pub struct Dedupe {
    /// Its key.
    pub key: String,
}

/// What applying an outcome produced.
#[derive(Debug)]
pub struct Applied {
    /// Replies answered inline.
    pub inline: Vec<String>,
    /// The verdict in words.
    pub verdict: &'static str,
    /// Replies queued.
    pub queued: usize,
}

/// Why an outcome could not be applied.
#[derive(Debug)]
pub enum ApplyError {
    /// Something changed since it was loaded: re-run the message.
    Conflict,
    /// The inbound message was processed meanwhile (a racing gateway retry).
    Duplicate,
    /// A real failure.
    Failed(ApiError),
}

impl From<crate::ledger::LedgerError> for ApplyError {
    fn from(error: crate::ledger::LedgerError) -> ApplyError {
        ApplyError::Failed(error.into())
    }
}

fn verdict_name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Accepted => "accepted",
        Verdict::Refused(_) => "refused",
        Verdict::Malformed(_) => "malformed",
    }
}

fn ledger_id(account: &LedgerAccount, server: Currency) -> Option<offpay_ledger::AccountId> {
    match account {
        LedgerAccount::Customer(number) => Some(records::ledger_account(number)),
        LedgerAccount::Fees(currency) => operator_account_id(FEES, *currency, server),
        LedgerAccount::ExchangeFloat(currency) => {
            operator_account_id(OPERATOR_FLOAT, *currency, server)
        }
    }
}

/// The ledger id of a posting (`sms:` + the engine's 16-byte id in hex).
pub fn transfer_id(id: &offpay_sms_tan::TransferId) -> Option<LedgerTransferId> {
    LedgerTransferId::new(format!("sms:{}", id.hex())).ok()
}

fn kind_word(kind: PostingKind) -> &'static str {
    match kind {
        PostingKind::Payment => "payment",
        PostingKind::Fee => "fee",
        PostingKind::ExchangeOut => "exchange out",
        PostingKind::ExchangeIn => "exchange in",
    }
}

/// Entries for a statement SMS: the newest transfers of the account.
pub fn statement_entries(
    store: &mut dyn LedgerStore,
    number: &AccountNumber,
    currency: Currency,
    utc_offset_minutes: i32,
    limit: usize,
) -> Result<(Vec<StatementEntry>, Amount), StoreError> {
    let id = records::ledger_account(number);
    let history = store.history(&id, None, limit)?;
    let mut entries = Vec::with_capacity(history.len());
    for record in history {
        let transfer = &record.transfer;
        let minor = i128::from(transfer.amount.minor());
        let signed = if transfer.debit_account == id {
            -minor
        } else {
            minor
        };
        let Some(date) = CivilDateTime::from_unix(
            UnixSeconds(record.committed_at.0 / 1000),
            utc_offset_minutes,
        ) else {
            continue;
        };
        entries.push(StatementEntry {
            date,
            minor: signed,
            currency: transfer.amount.currency(),
            reference: reference_of(transfer.id.as_str()),
        });
    }
    let balance = store
        .account(&id)?
        .map_or(0, |account| account.balance().max(0));
    let balance = Amount::from_minor(u64::try_from(balance).unwrap_or(0), currency)
        .unwrap_or(Amount::zero(currency));
    Ok((entries, balance))
}

/// The 8-digit reference of a ledger transfer id: the engine's for SMS transfers, else 0.
pub fn reference_of(id: &str) -> Reference {
    let engine_id = id
        .strip_prefix("sms:")
        .and_then(|hex_text| hex::decode(hex_text).ok())
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok());
    match engine_id {
        Some(bytes) => Reference::of(&offpay_sms_tan::TransferId(bytes)),
        None => Reference::parse("00000000").unwrap_or_else(|| unreachable!("8 zeros parse")),
    }
}

/// Everything needed to turn one outcome into a batch.
#[derive(Debug)]
pub struct ApplyInput<'a> {
    /// The outcome.
    pub outcome: &'a Outcome,
    /// Records as loaded.
    pub loaded: &'a Loaded,
    /// Reply routing.
    pub routing: &'a ReplyRouting,
    /// The inbound message's dedupe record, if any.
    pub dedupe: Option<&'a Dedupe>,
    /// The message id (fraud flag discriminator, queue keys).
    pub message_id: &'a str,
    /// Extra operations (a scheduled payment's deletion…).
    pub extra: Vec<Operation>,
    /// Password hashes computed for `SetWebPassword` effects, by account.
    pub password_hashes: &'a BTreeMap<String, String>,
    /// Statement replies computed for `SendStatement` effects.
    pub statements: &'a [(PhoneNumber, Vec<String>)],
    /// Now.
    pub now: UnixSeconds,
    /// Now in ms (queue order).
    pub now_ms: u64,
    /// The operator's settings.
    pub settings: &'a Settings,
    /// Currencies whose operator accounts exist already (no need to create them again).
    pub operator_ready: &'a [Currency],
}

/// The account record to change, copied from what was loaded on first use.
fn account_mut<'a>(
    accounts: &'a mut HashMap<String, (AccountRecord, u64)>,
    loaded: &Loaded,
    number: &AccountNumber,
) -> Option<&'a mut AccountRecord> {
    let key = records::account_key(number);
    if !accounts.contains_key(&key) {
        let entry = loaded.accounts.get(&key)?.clone();
        accounts.insert(key.clone(), entry);
    }
    accounts.get_mut(&key).map(|(record, _)| record)
}

/// Builds the batch for an outcome; `Conflict` when an effect contradicts what was loaded.
pub fn build_batch(input: ApplyInput<'_>) -> Result<Built, ApplyError> {
    let ApplyInput {
        outcome,
        loaded,
        routing,
        dedupe,
        message_id,
        extra,
        password_hashes,
        statements,
        now,
        now_ms,
        settings,
        operator_ready,
    } = input;
    let mut operations: Vec<Operation> = Vec::new();
    let mut envelopes: HashMap<String, (EnvelopeRecord, u64)> = HashMap::new();
    let mut accounts: HashMap<String, (AccountRecord, u64)> = HashMap::new();
    let mut flags: Vec<Operation> = Vec::new();
    let mut written: Vec<(String, Cached, u64)> = Vec::new();
    for effect in &outcome.effects {
        match effect {
            Effect::UpdateEnvelope {
                euin,
                expected_used_rows,
                used_rows,
                consecutive_failures,
                status,
                binding,
            } => {
                let key = records::envelope_key(euin);
                let entry = match envelopes.get_mut(&key) {
                    Some(entry) => entry,
                    None => {
                        let Some(entry) = loaded.envelopes.get(&key).cloned() else {
                            return Err(ApplyError::Conflict);
                        };
                        envelopes.entry(key.clone()).or_insert(entry)
                    }
                };
                if entry.0.used_rows != expected_used_rows.bits() {
                    return Err(ApplyError::Conflict);
                }
                let was_locked = entry.0.status == "locked";
                entry
                    .0
                    .update(*used_rows, *consecutive_failures, *status, *binding);
                if let EnvelopeStatus::Locked { account } = status
                    && !was_locked
                {
                    flags.push(
                        FraudFlag::new(
                            "sms",
                            "envelope_locked",
                            &euin.to_string(),
                            format!(
                                "envelope {euin} of account {account} locked after repeated wrong codes"
                            ),
                            json!({ "euin": euin.to_string(), "account": account.to_string(),
                                    "failures": consecutive_failures }),
                            offpay_ledger::Timestamp(now_ms),
                        )
                        .operation(&records::short_hash(message_id)),
                    );
                }
                if let EnvelopeStatus::Active { account } = status {
                    let loaded_status = loaded
                        .envelopes
                        .get(&key)
                        .map(|(record, _)| record.status.clone());
                    if loaded_status.as_deref() == Some("unallocated") {
                        let Some(record) = account_mut(&mut accounts, loaded, account) else {
                            return Err(ApplyError::Conflict);
                        };
                        record.current_envelope = Some(euin.to_string());
                    }
                }
            }
            Effect::CreatePending(pending) => {
                let reply_to = routing
                    .inline_to
                    .clone()
                    .or_else(|| outcome.replies.first().map(|reply| reply.to.clone()));
                let Some(reply_to) = reply_to else {
                    return Err(ApplyError::Failed(ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "a callback without a recipient",
                    )));
                };
                operations.push(records::put(
                    records::pending_key(&pending.euin, pending.callback_row),
                    &PendingRecord::from_callback(pending, &reply_to),
                    Some(0),
                ));
            }
            Effect::RemovePending { euin, callback_row } => {
                let key = records::pending_key(euin, *callback_row);
                let expected = loaded.pending.get(&key).map(|(_, version)| *version);
                operations.push(records::delete(key, expected));
            }
            Effect::Schedule(payment) => {
                operations.push(records::put(
                    records::scheduled_key(payment.due, &payment.message_id),
                    &ScheduledRecord::from_payment(payment),
                    Some(0),
                ));
            }
            Effect::SetLimits { account, limits } => {
                let Some(record) = account_mut(&mut accounts, loaded, account) else {
                    return Err(ApplyError::Conflict);
                };
                record.set_limits(limits);
            }
            Effect::SetDialbackThreshold { account, threshold } => {
                let Some(record) = account_mut(&mut accounts, loaded, account) else {
                    return Err(ApplyError::Conflict);
                };
                record.dialback_threshold_minor = Some(threshold.minor());
            }
            Effect::SetAlwaysCallback { account, on } => {
                let Some(record) = account_mut(&mut accounts, loaded, account) else {
                    return Err(ApplyError::Conflict);
                };
                record.always_callback = *on;
            }
            Effect::SetWebPassword { account, .. } => {
                let Some(hash) = password_hashes.get(&account.to_string()).cloned() else {
                    return Err(ApplyError::Conflict);
                };
                let Some(record) = account_mut(&mut accounts, loaded, account) else {
                    return Err(ApplyError::Conflict);
                };
                record.web_password = Some(hash);
                record.web_failures = 0;
            }
            Effect::OpenDispute {
                account,
                reference,
                reported_at,
            } => {
                operations.push(records::put(
                    records::dispute_key(*reference, message_id),
                    &DisputeRecord {
                        version: records::FORMAT_VERSION,
                        account: account.to_string(),
                        reference: reference.to_string(),
                        reported_at: reported_at.0,
                        status: "open".to_owned(),
                        note: None,
                        refund_transfer: None,
                    },
                    Some(0),
                ));
            }
            // Statement replies were read before the batch was built.
            Effect::SendStatement { .. } => {}
            other => {
                return Err(ApplyError::Failed(ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("unknown effect {other:?}"),
                )));
            }
        }
    }
    if matches!(
        outcome.verdict,
        Verdict::Refused(Refusal::ConfirmationMismatch)
    ) {
        let subject = outcome
            .redacted
            .and_then(|redacted| redacted.envelope)
            .map_or_else(|| "unknown".to_owned(), |euin| euin.to_string());
        flags.push(
            FraudFlag::new(
                "sms",
                "callback_mismatch",
                &subject,
                "an OK's checksum did not match the pending payment: typing mistake or an instruction changed on the way",
                json!({ "envelope": subject }),
                offpay_ledger::Timestamp(now_ms),
            )
            .operation(&records::short_hash(message_id)),
        );
    }
    // Postings: operator accounts first (idempotent), then the transfers.
    let mut transfers = Vec::with_capacity(outcome.postings.len());
    let mut operator_currencies: Vec<Currency> = Vec::new();
    for posting in &outcome.postings {
        for side in [&posting.debit, &posting.credit] {
            if let LedgerAccount::Fees(currency) | LedgerAccount::ExchangeFloat(currency) = side
                && !operator_currencies.contains(currency)
            {
                operator_currencies.push(*currency);
            }
        }
        let (Some(id), Some(debit), Some(credit)) = (
            transfer_id(&posting.transfer_id),
            ledger_id(&posting.debit, settings.server_currency),
            ledger_id(&posting.credit, settings.server_currency),
        ) else {
            return Err(ApplyError::Failed(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "a posting with an invalid account or id",
            )));
        };
        transfers.push(Operation::Transfer(Transfer {
            id,
            debit_account: debit,
            credit_account: credit,
            amount: posting.amount,
            kind: TransferKind::Posted,
            memo: format!("sms {} REF {}", kind_word(posting.kind), posting.reference),
        }));
    }
    for currency in operator_currencies {
        if !operator_ready.contains(&currency) {
            operations.extend(operator_accounts(currency, settings.server_currency));
        }
    }
    operations.extend(transfers);
    // Spending counters of the payer.
    let main = outcome.postings.iter().find(|posting| {
        matches!(
            posting.kind,
            PostingKind::Payment | PostingKind::ExchangeOut
        )
    });
    if let Some(main) = main
        && let LedgerAccount::Customer(payer) = main.debit
    {
        let credit = outcome.postings.iter().find_map(|posting| match posting {
            posting if matches!(posting.kind, PostingKind::Payment | PostingKind::ExchangeIn) => {
                match posting.credit {
                    LedgerAccount::Customer(payee) => Some((payee, posting.amount)),
                    _ => None,
                }
            }
            _ => None,
        });
        if let Some((payee, credit_amount)) = credit {
            let offset = settings.utc_offset_minutes;
            let Some(record) = account_mut(&mut accounts, loaded, &payer) else {
                return Err(ApplyError::Conflict);
            };
            record.add_spending(&payee, main.amount.minor(), now, offset);
            // The payment is found again for a dispute by its reference in the payer's ledger
            // history (the memo carries it), so no extra record is written per payment.
            let _ = credit_amount;
        }
    }
    for (key, (record, version)) in envelopes {
        operations.push(records::put(key.clone(), &record, Some(version)));
        written.push((key, Cached::Envelope(record), version + 1));
    }
    for (key, (record, version)) in accounts {
        operations.push(records::put(key.clone(), &record, Some(version)));
        written.push((key, Cached::Account(record), version + 1));
    }
    // Replies: inline to the sender, the rest into the durable queue.
    let mut inline = Vec::new();
    let mut queued = 0usize;
    let mut queue =
        |to: &PhoneNumber, text: &str, index: usize, operations: &mut Vec<Operation>| {
            let discriminator = format!("{message_id}/{index}");
            operations.push(records::put(
                records::outbound_key(now_ms, &discriminator),
                &OutboundRecord {
                    version: records::FORMAT_VERSION,
                    to: to.to_string(),
                    text: text.to_owned(),
                    attempts: 0,
                    next_attempt_ms: now_ms,
                    queued_at_ms: now_ms,
                    last_error: None,
                },
                None,
            ));
            queued += 1;
        };
    let statement_replies = statements
        .iter()
        .flat_map(|(to, texts)| texts.iter().map(move |text| (to, text.as_str())));
    let replies = outcome
        .replies
        .iter()
        .map(|reply| (&reply.to, reply.text.as_str()))
        .chain(statement_replies);
    for (index, (to, text)) in replies.enumerate() {
        if routing.inline_to.as_ref() == Some(to) {
            inline.push(text.to_owned());
        } else {
            queue(to, text, index, &mut operations);
        }
    }
    if let Some(dedupe) = dedupe {
        operations.push(records::put(
            dedupe.key.clone(),
            &InboundRecord {
                version: records::FORMAT_VERSION,
                verdict: verdict_name(&outcome.verdict).to_owned(),
                replies: inline.clone(),
                processed_at_ms: now_ms,
            },
            Some(0),
        ));
    }
    operations.extend(flags);
    operations.extend(extra);
    Ok(Built {
        batch: Batch { operations },
        inline,
        queued,
        written,
    })
}

/// A batch built from an outcome.
#[derive(Debug)]
pub struct Built {
    /// The batch.
    pub batch: Batch,
    /// Replies answered inline.
    pub inline: Vec<String>,
    /// Replies queued.
    pub queued: usize,
    /// Envelope and account records it writes, with their versions after the commit (for the
    /// cache).
    written: Vec<(String, Cached, u64)>,
}

/// Commits a batch built by [`build_batch`], mapping refusals to re-runs.
pub async fn commit(
    state: &Arc<AppState>,
    batch: Batch,
    dedupe: Option<&Dedupe>,
) -> Result<(), ApplyError> {
    if batch.operations.is_empty() {
        return Ok(());
    }
    let cache = state.rails.sms.cache.clone();
    let keys: Vec<String> = batch
        .operations
        .iter()
        .filter_map(|operation| match operation {
            Operation::PutRecord(write) => Some(write.key.clone()),
            _ => None,
        })
        .collect();
    let result = state.ledger.commit(vec![batch], state.now()).await;
    let committed = matches!(&result, Ok(results) if matches!(results.first(), Some(Ok(_))));
    if !committed {
        // The caller caches what a committed batch wrote; anything it read may be stale now.
        cache.forget(&keys);
    }
    let mut results = result?;
    match results.pop() {
        Some(Ok(outcomes)) => {
            Metrics::add(&state.metrics.batches_committed, 1);
            let committed = outcomes
                .iter()
                .filter(|outcome| **outcome == offpay_ledger::Outcome::TransferCommitted)
                .count();
            Metrics::add(&state.metrics.transfers_committed, committed as u64);
            Ok(())
        }
        Some(Err(BatchRefusal { reason, index })) => {
            Metrics::add(&state.metrics.batches_refused, 1);
            match reason {
                LedgerRefusal::RecordVersionMismatch { key, .. }
                    if dedupe.is_some_and(|dedupe| dedupe.key == key) =>
                {
                    Err(ApplyError::Duplicate)
                }
                LedgerRefusal::RecordVersionMismatch { .. }
                | LedgerRefusal::InsufficientFunds { .. } => Err(ApplyError::Conflict),
                other => {
                    tracing::error!(refusal = %other, index, "the ledger refused an SMS batch");
                    Err(ApplyError::Failed(ApiError::refused(&BatchRefusal {
                        index,
                        reason: other,
                    })))
                }
            }
        }
        None => Err(ApplyError::Failed(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the ledger returned no result",
        ))),
    }
}

/// Hashes the passwords of `SetWebPassword` effects (off the async threads).
pub async fn hash_passwords(
    outcome: &Outcome,
    entropy: &Arc<dyn Entropy>,
) -> Result<BTreeMap<String, String>, ApplyError> {
    let mut hashes = BTreeMap::new();
    for effect in &outcome.effects {
        if let Effect::SetWebPassword { account, password } = effect {
            let password = password.clone();
            let entropy = entropy.clone();
            let hash = tokio::task::spawn_blocking(move || {
                super::web::hash_password(entropy.as_ref(), password.expose())
            })
            .await
            .map_err(|_| ApplyError::Conflict)?
            .map_err(ApplyError::Failed)?;
            hashes.insert(account.to_string(), hash);
        }
    }
    Ok(hashes)
}

/// Reads the statements `SendStatement` effects ask for.
pub async fn read_statements(
    state: &Arc<AppState>,
    outcome: &Outcome,
    settings: &Settings,
) -> Result<Vec<(PhoneNumber, Vec<String>)>, ApplyError> {
    let mut statements = Vec::new();
    for effect in &outcome.effects {
        if let Effect::SendStatement { account, to } = effect {
            let number = *account;
            let offset = settings.utc_offset_minutes;
            let currency = settings.server_currency;
            let (entries, balance) = state
                .ledger
                .read(move |store| {
                    let currency = get::<AccountRecord>(store, &records::account_key(&number))?
                        .and_then(|(record, _)| record.currency())
                        .unwrap_or(currency);
                    statement_entries(
                        store,
                        &number,
                        currency,
                        offset,
                        offpay_sms_tan::limits::STATEMENT_ENTRIES_MAX,
                    )
                })
                .await?;
            statements.push((to.clone(), reply::statement(&entries, &balance)));
        }
    }
    Ok(statements)
}

#[allow(clippy::too_many_arguments)]
/// Applies an outcome computed outside an inbound SMS (scheduler, sweeper, web, terminal, agent).
pub async fn apply_outcome(
    state: &Arc<AppState>,
    rail: &SmsRail,
    outcome: &Outcome,
    loaded: &Loaded,
    routing: &ReplyRouting,
    dedupe: Option<&Dedupe>,
    message_id: &str,
    extra: Vec<Operation>,
) -> Result<Applied, ApplyError> {
    let settings = rail.settings();
    let operator_ready = rail.operator_ready();
    let hashes = hash_passwords(outcome, &state.entropy).await?;
    let statements = read_statements(state, outcome, &settings).await?;
    let now_ms = state.now().0;
    let built = build_batch(ApplyInput {
        outcome,
        loaded,
        routing,
        dedupe,
        message_id,
        extra,
        password_hashes: &hashes,
        statements: &statements,
        now: UnixSeconds(now_ms / 1000),
        now_ms,
        settings: &settings,
        operator_ready: &operator_ready,
    })?;
    let Built {
        batch,
        inline,
        queued,
        written,
    } = built;
    commit(state, batch, dedupe).await?;
    for (key, record, version) in written {
        rail.cache.insert(key, record, version);
    }
    for posting in &outcome.postings {
        for side in [&posting.debit, &posting.credit] {
            if let LedgerAccount::Fees(currency) | LedgerAccount::ExchangeFloat(currency) = side {
                rail.mark_operator_ready(*currency);
            }
        }
    }
    if queued > 0 {
        rail.wake_outbound();
    }
    if let Some(redacted) = outcome.redacted {
        tracing::debug!(sms = %redacted, verdict = verdict_name(&outcome.verdict), "sms handled");
    }
    Ok(Applied {
        inline,
        verdict: verdict_name(&outcome.verdict),
        queued,
    })
}

/// The answer to one inbound SMS.
#[derive(Debug)]
pub struct InboundAnswer {
    /// Replies to the sender (for the webhook's response body).
    pub replies: Vec<String>,
    /// True when this message id was processed before (nothing changed now).
    pub duplicate: bool,
    /// `accepted`, `refused` or `malformed`.
    pub verdict: String,
    /// Replies queued for the gateway.
    pub queued: usize,
}

/// Handles one inbound SMS end to end: dedupe, engine steps with loads, one atomic batch.
pub async fn handle_inbound(
    state: &Arc<AppState>,
    gateway: &str,
    message_id: &str,
    from: PhoneNumber,
    text: &str,
    inline_replies: bool,
) -> Result<InboundAnswer, ApiError> {
    let rail = &state.rails.sms;
    rail.ensure_settings(state).await?;
    let dedupe = Dedupe {
        key: records::inbound_key(gateway, message_id),
    };
    let routing = ReplyRouting {
        inline_to: inline_replies.then(|| from.clone()),
    };
    let mut seen_before = false;
    for _ in 0..RERUN_MAX {
        let engine = rail.engine();
        let settings = rail.settings();
        let received_at = UnixSeconds(state.now().0 / 1000);
        let mut next = engine.receive(Inbound {
            message_id: message_id.to_owned(),
            from: from.clone(),
            text: text.to_owned(),
            received_at,
        });
        // First read: the dedupe record, and the payer when the engine asks for one.
        let lookup = match &next {
            Next::NeedPayer(request) => Some(PayerLookup::of(request.payer(), &engine)),
            _ => None,
        };
        // A gateway retry is found by the dedupe record's compare-and-set at commit (it must not
        // exist yet), so the common path does not read it first; `seen_before` is set after a
        // refusal for that reason, and then the stored answer is read and returned.
        if seen_before {
            let dedupe_key = dedupe.key.clone();
            let seen = state
                .ledger
                .read(move |store| get::<InboundRecord>(store, &dedupe_key))
                .await?;
            if let Some((record, _)) = seen {
                Metrics::add(&rail.metrics.duplicates, 1);
                return Ok(InboundAnswer {
                    replies: record.replies,
                    duplicate: true,
                    verdict: record.verdict,
                    queued: 0,
                });
            }
        }
        let first_settings = settings.clone();
        let mut first_loaded = Loaded::with_cache(rail);
        let (payer, mut loaded) = match lookup {
            Some(lookup) => {
                state
                    .ledger
                    .read(move |store| {
                        let payer = load_payer(
                            store,
                            &mut first_loaded,
                            &lookup,
                            &first_settings,
                            received_at,
                        )?;
                        Ok((payer, first_loaded))
                    })
                    .await?
            }
            None => (None, first_loaded),
        };
        let mut payer = Some(payer);
        let mut outcome = None;
        for _ in 0..ENGINE_STEPS_MAX {
            next = match next {
                Next::Done(done) => {
                    outcome = Some(done);
                    break;
                }
                Next::NeedPayer(request) => {
                    let context = payer.take().flatten();
                    request.provide(&engine, context)
                }
                Next::NeedPending(request) => {
                    let key = records::pending_key(&request.euin(), request.callback_row());
                    let (found, returned) = state
                        .ledger
                        .read(move |store| {
                            let found = get::<PendingRecord>(store, &key)?;
                            Ok((found, key))
                        })
                        .await?;
                    let pending = found.and_then(|(record, version)| {
                        let callback = record.callback();
                        loaded.pending.insert(returned, (record, version));
                        callback
                    });
                    request.provide(&engine, pending)
                }
                Next::NeedPayee(request) => {
                    let (payee, payer_number) = (request.payee(), request.payer());
                    let step_settings = settings.clone();
                    let mut step_loaded = std::mem::take(&mut loaded);
                    let (context, returned) = state
                        .ledger
                        .read(move |store| {
                            let context = load_payee(
                                store,
                                &mut step_loaded,
                                &payee,
                                &payer_number,
                                &step_settings,
                                received_at,
                            )?;
                            Ok((context, step_loaded))
                        })
                        .await?;
                    loaded = returned;
                    request.provide(&engine, context)
                }
                Next::NeedNewEnvelope(request) => {
                    let euin = request.euin();
                    let mut step_loaded = std::mem::take(&mut loaded);
                    let (view, returned) = state
                        .ledger
                        .read(move |store| {
                            let view = load_envelope(store, &mut step_loaded, &euin)?
                                .and_then(|record| record.view());
                            Ok((view, step_loaded))
                        })
                        .await?;
                    loaded = returned;
                    request.provide(&engine, view)
                }
            };
        }
        let Some(outcome) = outcome else {
            return Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the SMS engine did not finish",
            ));
        };
        match apply_outcome(
            state,
            rail,
            &outcome,
            &loaded,
            &routing,
            Some(&dedupe),
            message_id,
            Vec::new(),
        )
        .await
        {
            Ok(applied) => {
                Metrics::add(&rail.metrics.inbound, 1);
                return Ok(InboundAnswer {
                    replies: applied.inline,
                    duplicate: false,
                    verdict: applied.verdict.to_owned(),
                    queued: applied.queued,
                });
            }
            Err(ApplyError::Duplicate) => {
                seen_before = true;
                continue;
            }
            Err(ApplyError::Conflict) => {
                Metrics::add(&rail.metrics.reruns, 1);
                continue;
            }
            Err(ApplyError::Failed(error)) => return Err(error),
        }
    }
    Err(ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the envelope is busy with other messages; retry later",
    ))
}
