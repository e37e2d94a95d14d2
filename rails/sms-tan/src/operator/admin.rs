//! The operator's API rules: SMS accounts (open, change), envelopes (issue, print, import, bind
//! at an agent, unlock), disputes (refund or reject), merchant terminals and settings. Each is a
//! load of the records it names and a decision over them; the server maps HTTP to these.

use offpay_ledger::{
    AccountKind, Amount, BalanceLimits, Currency, LedgerStore, NewAccount, Operation, Transfer,
    TransferId, TransferKind,
};
use offpay_operator::{Decision, Effects, Entropy, Loaded, RecordError};
use serde::Deserialize;

use crate::engine::{Effect, Outcome};
use crate::envelope::{Envelope, EnvelopeStatus, RowCount};
use crate::import::parse_envelope;
use crate::keys::MasterKey;
use crate::limits::{BOUND_PHONES_MAX, PDF_ENVELOPES_MAX};
use crate::numbers::{AccountNumber, Euin, PhoneNumber};
use crate::operator::apply::{ApplyInput, apply, create, put};
use crate::operator::load::{RecordSet, Tampered};
use crate::operator::records::{
    self, AccountRecord, DISPUTE_PREFIX, DisputeRecord, DisputeStatus, EnvelopeRecord,
    PayIndexRecord, ReplacementRecord, SERIAL_KEY, SETTINGS_KEY, SerialRecord, TerminalRecord,
    reference_of, short_hash,
};
use crate::operator::settings::{SealedSettings, Settings};
use crate::operator::terminal::new_terminal;
use crate::operator::{Operator, OperatorError, phone_number};
use offpay_operator::phone::Country;

/// Most envelopes one issue call creates (one record each plus the serial counter, in one batch).
pub const ISSUE_COUNT_MAX: usize = 8000;
const _: () = assert!(ISSUE_COUNT_MAX < offpay_ledger::BATCH_OPERATIONS_MAX);
/// History pages searched for a disputed payment's reference.
pub const DISPUTE_SEARCH_PAGES: usize = 5;
/// Attempts to draw a pay number different from the receive number.
const NUMBER_ATTEMPTS_MAX: usize = 16;
/// Smallest generated account number: 12 digits, no leading zero (nobody drops it).
const GENERATED_NUMBER_MIN: u64 = 100_000_000_000;
/// How many 12-digit numbers have no leading zero.
const GENERATED_NUMBER_RANGE: u64 = 900_000_000_000;

fn parse_account(text: &str) -> Result<AccountNumber, OperatorError> {
    AccountNumber::parse(text).map_err(|_| {
        OperatorError::invalid(
            "invalid_account_number",
            format!("{text:?} is not 12 digits"),
        )
    })
}

/// Parses an envelope number from the API.
pub fn parse_euin(text: &str) -> Result<Euin, OperatorError> {
    Euin::parse(text).map_err(|_| {
        OperatorError::invalid(
            "invalid_euin",
            format!("{text:?} is not an 11-digit envelope number"),
        )
    })
}

/// Parses an account number from the API.
pub fn account_number(text: &str) -> Result<AccountNumber, OperatorError> {
    parse_account(text)
}

/// The bound phones in E.164; two spellings of one phone are bound once.
fn bound_phones(phones: &[String], country: Country) -> Result<Vec<PhoneNumber>, OperatorError> {
    if phones.len() > BOUND_PHONES_MAX {
        return Err(OperatorError::invalid(
            "too_many_phones",
            format!("at most {BOUND_PHONES_MAX} bound phones"),
        ));
    }
    let mut bound: Vec<PhoneNumber> = Vec::with_capacity(phones.len());
    for text in phones {
        let phone = phone_number(text, country, "bound_phones")?;
        if !bound.contains(&phone) {
            bound.push(phone);
        }
    }
    Ok(bound)
}

/// A random account number: 12 digits, not starting with 0.
pub fn random_account_number(entropy: &dyn Entropy) -> Result<AccountNumber, OperatorError> {
    let bytes: [u8; 8] = {
        let mut bytes = [0u8; 8];
        entropy.fill(&mut bytes)?;
        bytes
    };
    let value = GENERATED_NUMBER_MIN + u64::from_le_bytes(bytes) % GENERATED_NUMBER_RANGE;
    AccountNumber::from_value(value)
        .ok_or_else(|| OperatorError::Internal("account number out of range".into()))
}

// --- accounts ----------------------------------------------------------------------------------

/// Body of `POST /api/v1/sms/accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// The public receive number; generated when absent.
    pub receive_number: Option<String>,
    /// Currency (default: the server's).
    pub currency: Option<String>,
    /// Where notices of money received go.
    pub notify_phone: Option<String>,
    /// Phones allowed to send instructions.
    #[serde(default)]
    pub bound_phones: Vec<String>,
    /// Instructions must name the pay number.
    #[serde(default)]
    pub require_pay_number: bool,
}

/// A checked request for a new account.
#[derive(Debug, Clone)]
pub struct AccountPlan {
    receive_number: Option<AccountNumber>,
    currency: Currency,
    notify_phone: Option<PhoneNumber>,
    bound_phones: Vec<PhoneNumber>,
    require_pay_number: bool,
}

impl CreateAccount {
    /// Checks the request; accounts are in the server's currency unless it names another, and
    /// phones in national form are read in `country`.
    pub fn plan(
        &self,
        server_currency: Currency,
        country: Country,
    ) -> Result<AccountPlan, OperatorError> {
        let currency = match &self.currency {
            Some(code) => Currency::from_code(code).map_err(|error| {
                OperatorError::invalid("invalid_currency", format!("{code:?}: {error}"))
            })?,
            None => server_currency,
        };
        let bound_phones = bound_phones(&self.bound_phones, country)?;
        let notify_phone = self
            .notify_phone
            .as_deref()
            .map(|text| phone_number(text, country, "notify_phone"))
            .transpose()?;
        let receive_number = self
            .receive_number
            .as_deref()
            .map(parse_account)
            .transpose()?;
        Ok(AccountPlan {
            receive_number,
            currency,
            notify_phone,
            bound_phones,
            require_pay_number: self.require_pay_number,
        })
    }
}

impl AccountPlan {
    /// Reads the account the request names, if it names one (it must not exist yet).
    pub fn load(
        &self,
        store: &mut dyn LedgerStore,
    ) -> Result<Option<Loaded<AccountRecord>>, RecordError> {
        self.receive_number
            .map(|number| Loaded::read(store, &records::account_key(&number)))
            .transpose()
    }
}

/// A new account and its pay number (shown once, never stored in clear).
#[derive(Debug)]
pub struct CreatedAccount {
    /// The account as stored.
    pub record: AccountRecord,
    /// The secret pay number.
    pub pay_number: AccountNumber,
}

/// Opens an account: its ledger account (never below zero), its record and the index from its
/// pay number's tag, each created only if absent — so two numbers drawn twice, or an account
/// opened meanwhile, make the commit fail and the decision is made again.
pub fn decide_new_account(
    existing: Option<Loaded<AccountRecord>>,
    plan: &AccountPlan,
    operator: &Operator,
    entropy: &dyn Entropy,
    now_ms: u64,
) -> Result<Decision<CreatedAccount>, OperatorError> {
    if let Some(number) = plan.receive_number
        && existing.is_some_and(|loaded| loaded.value.is_some())
    {
        return Err(OperatorError::conflict(
            "account_exists",
            format!("an SMS account {number} exists"),
        ));
    }
    for _ in 0..NUMBER_ATTEMPTS_MAX {
        let receive = match plan.receive_number {
            Some(number) => number,
            None => random_account_number(entropy)?,
        };
        let pay = random_account_number(entropy)?;
        if pay == receive {
            continue;
        }
        let tag = operator.master().pay_number_tag(&pay);
        let mut record = AccountRecord::new(receive, tag, plan.currency, now_ms);
        record.bound_phones = plan.bound_phones.clone();
        record.notify_phone = plan.notify_phone.clone();
        record.require_pay_number = plan.require_pay_number;
        record.seal_settings(operator.master(), &records::account_key(&receive));
        record.seal_spending(operator.master(), &records::account_key(&receive));
        let mut effects = Effects::new();
        effects.create_account(NewAccount {
            id: records::ledger_account(&receive),
            kind: AccountKind::Customer,
            currency: plan.currency,
            limits: BalanceLimits {
                balance_min: Some(0),
                balance_max: None,
            },
        });
        effects.write(create(records::account_key(&receive), &record)?);
        effects.write(create(
            records::pay_index_key(&tag),
            &PayIndexRecord(receive),
        )?);
        return Ok(Decision::commit(
            effects,
            CreatedAccount {
                record,
                pay_number: pay,
            },
        ));
    }
    Err(OperatorError::Internal(
        "could not allocate free account numbers".into(),
    ))
}

/// Body of `PATCH /api/v1/sms/accounts/{number}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountChanges {
    /// Open or frozen.
    pub active: Option<bool>,
    /// Phones allowed to send instructions.
    pub bound_phones: Option<Vec<String>>,
    /// Where notices go (empty: none).
    pub notify_phone: Option<String>,
    /// Instructions must name the pay number.
    pub require_pay_number: Option<bool>,
    /// Decimal or `"none"`.
    pub per_payment: Option<String>,
    /// Decimal or `"none"`.
    pub per_day: Option<String>,
    /// Decimal or `"none"`.
    pub per_week: Option<String>,
    /// Decimal or `"none"` (the operator default).
    pub dialback_threshold: Option<String>,
    /// Callback on every payment.
    pub always_callback: Option<bool>,
}

fn limit(text: &str, currency: Currency) -> Result<Option<Amount>, OperatorError> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    Amount::parse(text, currency)
        .map(Some)
        .map_err(|error| OperatorError::invalid("invalid_amount", format!("{text:?}: {error}")))
}

/// The operator sets an account's language (`None`: back to the operator's default). The
/// language is part of the sealed settings, so it is resealed as it is written.
pub fn decide_language(
    loaded: Loaded<AccountRecord>,
    number: &AccountNumber,
    language: Option<offpay_text::Language>,
    master: &MasterKey,
) -> Result<Decision<AccountRecord>, OperatorError> {
    let Some(mut record) = loaded.value.clone() else {
        return Err(OperatorError::not_found("sms_account", number));
    };
    record.language = language;
    record.seal_settings(master, &loaded.key);
    let mut effects = Effects::new();
    effects.write(loaded.write(&record)?);
    Ok(Decision::commit(effects, record))
}

/// Changes an account as the operator asks, written only if unchanged since read; phones in
/// national form are read in `country`.
pub fn decide_account_changes(
    loaded: Loaded<AccountRecord>,
    number: &AccountNumber,
    changes: &AccountChanges,
    master: &MasterKey,
    country: Country,
) -> Result<Decision<AccountRecord>, OperatorError> {
    let Some(mut record) = loaded.value.clone() else {
        return Err(OperatorError::not_found("sms_account", number));
    };
    let currency = record.currency;
    if let Some(active) = changes.active {
        record.active = active;
    }
    if let Some(phones) = &changes.bound_phones {
        record.bound_phones = bound_phones(phones, country)?;
    }
    if let Some(phone) = &changes.notify_phone {
        record.notify_phone = if phone.is_empty() {
            None
        } else {
            Some(phone_number(phone, country, "notify_phone")?)
        };
    }
    if let Some(required) = changes.require_pay_number {
        record.require_pay_number = required;
    }
    if let Some(text) = &changes.per_payment {
        record.limits.per_payment = limit(text, currency)?;
    }
    if let Some(text) = &changes.per_day {
        record.limits.per_day = limit(text, currency)?;
    }
    if let Some(text) = &changes.per_week {
        record.limits.per_week = limit(text, currency)?;
    }
    if let Some(text) = &changes.dialback_threshold {
        record.dialback_threshold = limit(text, currency)?;
    }
    if let Some(on) = changes.always_callback {
        record.always_callback = on;
    }
    // The operator's API is authenticated; what it sets is sealed as it is written.
    record.seal_settings(master, &loaded.key);
    let mut effects = Effects::new();
    effects.write(loaded.write(&record)?);
    Ok(Decision::commit(effects, record))
}

// --- envelopes ---------------------------------------------------------------------------------

/// Body of `POST /api/v1/sms/envelopes/issue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueEnvelopes {
    /// How many.
    pub count: usize,
    /// 20 or 50.
    pub rows: usize,
}

impl IssueEnvelopes {
    /// The row count, if the request is within bounds.
    pub fn check(&self) -> Result<RowCount, OperatorError> {
        if self.count == 0 || self.count > ISSUE_COUNT_MAX {
            return Err(OperatorError::invalid(
                "invalid_count",
                format!("count must be 1 to {ISSUE_COUNT_MAX} per call"),
            ));
        }
        RowCount::from_count(self.rows)
            .ok_or_else(|| OperatorError::invalid("invalid_rows", "rows must be 20 or 50"))
    }

    /// Reads the serial counter.
    pub fn load(store: &mut dyn LedgerStore) -> Result<Loaded<SerialRecord>, RecordError> {
        Loaded::read(store, SERIAL_KEY)
    }

    /// Issues the next `count` envelopes of `prefix` (unallocated) and moves the serial counter,
    /// only if it is still where it was read.
    pub fn decide(
        &self,
        serial: Loaded<SerialRecord>,
        prefix: u16,
        master: &MasterKey,
        now_ms: u64,
    ) -> Result<Decision<(Vec<Euin>, RowCount)>, OperatorError> {
        let rows = self.check()?;
        let first = serial.value.map_or(0, |record| record.next).max(1);
        let count = u32::try_from(self.count)
            .map_err(|_| OperatorError::Internal("count out of range".into()))?;
        let mut effects = Effects::new();
        let mut euins = Vec::with_capacity(self.count);
        for offset in 0..count {
            let euin = first
                .checked_add(offset)
                .and_then(|serial| Euin::issued(prefix, serial).ok())
                .ok_or_else(|| {
                    OperatorError::invalid(
                        "serials_exhausted",
                        "no more envelope numbers with this prefix",
                    )
                })?;
            let key = records::envelope_key(&euin);
            let record =
                EnvelopeRecord::unallocated(&euin, rows, None, now_ms).sealed(master, &key);
            effects.write(create(key, &record)?);
            euins.push(euin);
        }
        effects.write(serial.write(&SerialRecord {
            version: records::FORMAT_VERSION,
            next: first.saturating_add(count),
        })?);
        Ok(Decision::commit(effects, (euins, rows)))
    }
}

/// The envelopes to print, checked: 1 to [`PDF_ENVELOPES_MAX`] numbers that read.
pub fn print_request(euins: &[String]) -> Result<Vec<Euin>, OperatorError> {
    if euins.is_empty() || euins.len() > PDF_ENVELOPES_MAX {
        return Err(OperatorError::invalid(
            "invalid_count",
            format!("print 1 to {PDF_ENVELOPES_MAX} envelopes per PDF"),
        ));
    }
    euins.iter().map(|text| parse_euin(text)).collect()
}

/// Reads the envelopes to print.
pub fn load_print(
    store: &mut dyn LedgerStore,
    euins: &[Euin],
) -> Result<Vec<Option<EnvelopeRecord>>, RecordError> {
    euins
        .iter()
        .map(|euin| {
            Loaded::<EnvelopeRecord>::read(store, &records::envelope_key(euin))
                .map(|loaded| loaded.value)
        })
        .collect()
}

/// The row count of one print run: every envelope exists, was derived here (an imported one was
/// printed elsewhere) and has the same row count.
pub fn print_rows(
    euins: &[Euin],
    stored: &[Option<EnvelopeRecord>],
) -> Result<RowCount, OperatorError> {
    let mut rows = None;
    for (euin, found) in euins.iter().zip(stored) {
        let Some(record) = found else {
            return Err(OperatorError::not_found("envelope", euin));
        };
        if record.imported() {
            return Err(OperatorError::invalid(
                "imported_envelope",
                format!("envelope {euin} was imported (printed elsewhere); it is not derived here"),
            ));
        }
        if rows.is_some_and(|count| count != record.view.rows) {
            return Err(OperatorError::invalid(
                "mixed_rows",
                "print envelopes of one row count per PDF",
            ));
        }
        rows = Some(record.view.rows);
    }
    rows.ok_or_else(|| OperatorError::invalid("invalid_count", "no envelope to print"))
}

/// An envelope file to import, read: the envelope and its row count.
pub fn import_request(text: &str) -> Result<(Envelope, RowCount), OperatorError> {
    let envelope = parse_envelope(text)
        .map_err(|error| OperatorError::invalid("invalid_envelope_file", error.to_string()))?;
    let rows = envelope
        .row_count()
        .ok_or_else(|| OperatorError::invalid("invalid_envelope_file", "20 or 50 rows"))?;
    Ok((envelope, rows))
}

/// Imports an envelope printed elsewhere: stored sealed under the master key, unallocated, only if
/// no envelope has its number.
pub fn decide_import(
    existing: Loaded<EnvelopeRecord>,
    envelope: &Envelope,
    rows: RowCount,
    operator: &Operator,
    now_ms: u64,
) -> Result<Decision<EnvelopeRecord>, OperatorError> {
    if existing.value.is_some() {
        return Err(OperatorError::conflict(
            "envelope_exists",
            format!("envelope {} exists already", envelope.euin),
        ));
    }
    let sealed = operator.master().seal(envelope);
    let record = EnvelopeRecord::unallocated(&envelope.euin, rows, Some(sealed), now_ms)
        .sealed(operator.master(), &existing.key);
    let mut effects = Effects::new();
    effects.write(existing.write(&record)?);
    Ok(Decision::commit(effects, record))
}

/// What binding an envelope reads: the envelope, the account, and the account's current envelope.
#[derive(Debug)]
pub struct BindLoad {
    envelope: Loaded<EnvelopeRecord>,
    account: Loaded<AccountRecord>,
    current: Option<Loaded<EnvelopeRecord>>,
}

/// Reads what binding `euin` to `account` needs.
pub fn load_bind(
    store: &mut dyn LedgerStore,
    euin: &Euin,
    account: &AccountNumber,
) -> Result<BindLoad, RecordError> {
    let envelope = Loaded::read(store, &records::envelope_key(euin))?;
    let account = Loaded::<AccountRecord>::read(store, &records::account_key(account))?;
    let current = match account
        .value
        .as_ref()
        .and_then(|record| record.current_envelope)
    {
        Some(current) => Some(Loaded::read(store, &records::envelope_key(&current))?),
        None => None,
    };
    Ok(BindLoad {
        envelope,
        account,
        current,
    })
}

impl BindLoad {
    /// The envelopes read (the one named and the account's current one) that fail their MAC:
    /// changed in the database, so no agent's or operator's step may act on them
    /// ([`refuse_tampered`]).
    pub fn tampered(&self, master: &MasterKey) -> Vec<Tampered> {
        [Some(&self.envelope), self.current.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|loaded| tampered_envelope(loaded, master))
            .collect()
    }
}

/// The envelope as read, as a finding, when it is stored and fails its MAC (changed outside the
/// operator's code); `None` for an authentic or absent one.
pub fn tampered_envelope(loaded: &Loaded<EnvelopeRecord>, master: &MasterKey) -> Option<Tampered> {
    let record = loaded.value.as_ref()?;
    if record.authentic(master, &loaded.key) {
        return None;
    }
    // What the record claims, in full (its MAC too): the flag's discriminator, so the same edit
    // met by any number of steps is one flag and a further edit of it is another.
    let stored = offpay_operator::StoredRecord::encode(record, &loaded.key)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    Some(Tampered {
        kind: EnvelopeRecord::MAC_KIND,
        key: loaded.key.clone(),
        evidence: serde_json::json!({
            "euin": record.view.euin.to_string(),
            "status": records::status_name(&record.view.status),
            "used_rows": record.view.used_rows.bits(),
            "consecutive_failures": record.view.consecutive_failures,
            "state": short_hash(&stored),
        }),
    })
}

/// The stored account as read, as a finding, when its settings (bound phones, limits, current
/// envelope, …) or its spending window fail their MAC; `None` for an authentic or absent one.
pub fn tampered_account(loaded: &Loaded<AccountRecord>, master: &MasterKey) -> Option<Tampered> {
    let record = loaded.value.as_ref()?;
    let kind = if !record.settings_authentic(master, &loaded.key) {
        AccountRecord::MAC_KIND
    } else if !record.spending_authentic(master, &loaded.key) {
        AccountRecord::SPENDING_MAC_KIND
    } else {
        return None;
    };
    let stored = offpay_operator::StoredRecord::encode(record, &loaded.key)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    Some(Tampered {
        kind,
        key: loaded.key.clone(),
        evidence: serde_json::json!({
            "account": record.receive_number.to_string(),
            "bound_phones": record.bound_phones.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "state": short_hash(&stored),
        }),
    })
}

/// The `record_tampered` flags of `tampered`, each keyed by its record and what the record held
/// (its `state`): the same edit met again is the same flag, a further edit a new one.
pub fn tampered_flags(tampered: &[Tampered], now: offpay_ledger::Timestamp) -> Effects {
    let mut effects = Effects::new();
    for finding in tampered {
        effects.flag(
            &finding.flag(now),
            &short_hash(&format!("{}:{}", finding.key, finding.evidence["state"])),
        );
    }
    effects
}

/// An agent's or operator's step (bind, replace, unlock) on envelopes read as `tampered`: when
/// any was changed in the database the step is not decided at all — it would seal the edit as
/// the operator's — and what commits is the `record_tampered` flags alone (one per record
/// state, on the record, not on the holder), with the refusal as the answer (409
/// `record_tampered`). Otherwise `decide` runs and its answer is `Ok`.
pub fn refuse_tampered<T>(
    tampered: &[Tampered],
    now: offpay_ledger::Timestamp,
    decide: impl FnOnce() -> Result<Decision<T>, OperatorError>,
) -> Result<Decision<Result<T, OperatorError>>, OperatorError> {
    if tampered.is_empty() {
        return Ok(match decide()? {
            Decision::Commit { effects, reply } => Decision::commit(effects, Ok(reply)),
            Decision::Reload => Decision::Reload,
        });
    }
    let effects = tampered_flags(tampered, now);
    let keys: Vec<&str> = tampered
        .iter()
        .map(|finding| finding.key.as_str())
        .collect();
    Ok(Decision::commit(
        effects,
        Err(OperatorError::conflict(
            "record_tampered",
            format!(
                "stored envelope record {} does not match its MAC: written or changed outside the \
                 operator's code; refused, nothing changed, raised in the fraud queue",
                keys.join(", ")
            ),
        )),
    ))
}

fn operator_effect(
    effect: Effect,
    records: &RecordSet,
    what: &str,
    now: offpay_ledger::Timestamp,
    operator: &Operator,
) -> Result<Option<(Effects, Option<EnvelopeRecord>)>, OperatorError> {
    let mut outcome = Outcome::empty();
    outcome.effects.push(effect);
    let applied = apply(ApplyInput {
        outcome: &outcome,
        records,
        inline_to: None,
        dedupe_key: None,
        message_id: what,
        extra: Vec::new(),
        password_hashes: &[],
        statements: &[],
        now,
        operator,
        operator_ready: &[],
    })?;
    Ok(applied.map(|applied| {
        let envelope = applied
            .summary
            .written
            .envelopes
            .into_iter()
            .next()
            .and_then(|loaded| loaded.value);
        (applied.effects, envelope)
    }))
}

/// Binds a first envelope to an account at an agent (after the agent checked the holder's
/// identity). An account whose current envelope is still in use registers the next one by SMS.
pub fn decide_bind(
    load: BindLoad,
    euin: &Euin,
    account: &AccountNumber,
    operator: &Operator,
    now: offpay_ledger::Timestamp,
) -> Result<Decision<EnvelopeRecord>, OperatorError> {
    let BindLoad {
        envelope,
        account: account_record,
        current,
    } = load;
    let Some(record) = envelope.value.clone() else {
        return Err(OperatorError::not_found("envelope", euin));
    };
    let Some(holder) = account_record.value.as_ref() else {
        return Err(OperatorError::not_found("sms_account", account));
    };
    if let Some(current_euin) = holder.current_envelope {
        let in_use = match current.as_ref().and_then(|loaded| loaded.value.as_ref()) {
            Some(current) => matches!(
                current.view.status,
                EnvelopeStatus::Active { .. } | EnvelopeStatus::Locked { .. }
            ),
            None => return Err(OperatorError::not_found("envelope", current_euin)),
        };
        if in_use {
            return Err(OperatorError::conflict(
                "has_envelope",
                format!(
                    "account {account} already uses envelope {current_euin}; its holder registers the next one by SMS (REG)"
                ),
            ));
        }
    }
    let effect = operator
        .engine()
        .bind_at_agent(&record.view, *account)
        .map_err(|_| {
            OperatorError::conflict(
                "envelope_not_registrable",
                format!("envelope {euin} is already bound, locked or retired"),
            )
        })?;
    let mut records = RecordSet::default();
    records.envelopes.insert(envelope.key.clone(), envelope);
    records
        .accounts
        .insert(account_record.key.clone(), account_record);
    Ok(
        match operator_effect(effect, &records, "bind", now, operator)? {
            Some((effects, written)) => Decision::commit(effects, written.unwrap_or(record)),
            None => Decision::Reload,
        },
    )
}

/// Body of `POST /api/v1/sms/envelopes/{euin}/replace`: the holder's current envelope (lost,
/// stolen, locked or used up) is retired and `euin` bound in its place, after the agent checked
/// the holder's identity.
#[derive(Clone, Deserialize)]
pub struct ReplaceEnvelope {
    /// The account.
    pub account: String,
    /// Who checked the holder's identity (agent or operator id).
    pub checked_by: String,
    /// The kind of document shown.
    pub document_kind: String,
    /// The document's number (only a keyed hash is kept).
    pub document_number: String,
    /// Why the envelope is replaced.
    pub reason: String,
}

impl std::fmt::Debug for ReplaceEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplaceEnvelope")
            .field("account", &self.account)
            .field("checked_by", &self.checked_by)
            .field("document_kind", &self.document_kind)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

/// Retires the account's current envelope and binds `euin` (unallocated) in its place, with the
/// identity step recorded (the answer: the new envelope and the retired one's number): the way out for a holder whose envelope is lost, stolen, locked or
/// used up (no row left to send `REG`). Refused without an identity step.
pub fn decide_replace(
    load: BindLoad,
    euin: &Euin,
    account: &AccountNumber,
    request: &ReplaceEnvelope,
    operator: &Operator,
    now: offpay_ledger::Timestamp,
) -> Result<Decision<(EnvelopeRecord, Euin)>, OperatorError> {
    let field = |value: &str, name: &'static str| {
        let value = value.trim();
        if value.is_empty() || value.len() > 64 {
            Err(OperatorError::invalid(
                "identity_step_missing",
                format!(
                    "{name} is required (1 to 64 characters): an agent checks the holder's identity before an envelope is replaced"
                ),
            ))
        } else {
            Ok(value.to_owned())
        }
    };
    let checked_by = field(&request.checked_by, "checked_by")?;
    let document_kind = field(&request.document_kind, "document_kind")?;
    let document_number = field(&request.document_number, "document_number")?;
    let reason = field(&request.reason, "reason")?;
    let BindLoad {
        envelope,
        account: account_record,
        current,
    } = load;
    let Some(record) = envelope.value.clone() else {
        return Err(OperatorError::not_found("envelope", euin));
    };
    if account_record.value.is_none() {
        return Err(OperatorError::not_found("sms_account", account));
    }
    let Some(current) = current.filter(|current| current.value.is_some()) else {
        return Err(OperatorError::conflict(
            "no_envelope",
            format!("account {account} has no envelope to replace; bind one instead"),
        ));
    };
    let Some(old) = current.value.clone() else {
        return Err(OperatorError::not_found("envelope", "current"));
    };
    let bind = operator
        .engine()
        .bind_at_agent(&record.view, *account)
        .map_err(|_| {
            OperatorError::conflict(
                "envelope_not_registrable",
                format!("envelope {euin} is already bound, locked or retired"),
            )
        })?;
    let retire = Effect::UpdateEnvelope {
        euin: old.view.euin,
        expected_used_rows: old.view.used_rows,
        used_rows: old.view.used_rows,
        consecutive_failures: old.view.consecutive_failures,
        status: EnvelopeStatus::Retired,
        binding: None,
    };
    let mut outcome = Outcome::empty();
    outcome.effects.push(retire);
    outcome.effects.push(bind);
    let mut records = RecordSet::default();
    records.envelopes.insert(envelope.key.clone(), envelope);
    records.envelopes.insert(current.key.clone(), current);
    records
        .accounts
        .insert(account_record.key.clone(), account_record);
    let step = ReplacementRecord {
        version: records::FORMAT_VERSION,
        account: account.to_string(),
        retired: old.view.euin.to_string(),
        replacement: euin.to_string(),
        checked_by,
        document_kind,
        document_tag: operator.master().text_tag(&document_number),
        reason,
        at_ms: now.0,
    };
    let applied = apply(ApplyInput {
        outcome: &outcome,
        records: &records,
        inline_to: None,
        dedupe_key: None,
        message_id: "replace",
        extra: vec![put(records::replacement_key(&old.view.euin), &step)?],
        password_hashes: &[],
        statements: &[],
        now,
        operator,
        operator_ready: &[],
    })?;
    Ok(match applied {
        Some(applied) => {
            let written = applied
                .summary
                .written
                .envelopes
                .iter()
                .find(|loaded| loaded.key == records::envelope_key(euin))
                .and_then(|loaded| loaded.value.clone())
                .unwrap_or(record);
            Decision::commit(applied.effects, (written, old.view.euin))
        }
        None => Decision::Reload,
    })
}

/// Unlocks a locked envelope (the operator's decision, after checking the holder).
pub fn decide_unlock(
    envelope: Loaded<EnvelopeRecord>,
    euin: &Euin,
    operator: &Operator,
    now: offpay_ledger::Timestamp,
) -> Result<Decision<EnvelopeRecord>, OperatorError> {
    let Some(record) = envelope.value.clone() else {
        return Err(OperatorError::not_found("envelope", euin));
    };
    let effect = operator.engine().unlock(&record.view).map_err(|_| {
        OperatorError::conflict(
            "not_locked",
            format!("envelope {euin} is not locked (or its binding does not verify)"),
        )
    })?;
    let mut records = RecordSet::default();
    records.envelopes.insert(envelope.key.clone(), envelope);
    Ok(
        match operator_effect(effect, &records, "unlock", now, operator)? {
            Some((effects, written)) => Decision::commit(effects, written.unwrap_or(record)),
            None => Decision::Reload,
        },
    )
}

// --- disputes ----------------------------------------------------------------------------------

/// Body of `POST /api/v1/sms/disputes/{key}/decide`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisputeRuling {
    /// `refund` (the payee pays the amount back, if its balance allows) or `reject`.
    pub decision: String,
    /// The operator's note.
    pub note: Option<String>,
}

impl DisputeRuling {
    fn refund(&self) -> bool {
        self.decision == "refund"
    }
}

/// What deciding a dispute reads: the dispute, and for a refund the payment it names.
#[derive(Debug)]
pub struct DisputeLoad {
    dispute: Loaded<DisputeRecord>,
    paid: Option<Transfer>,
}

/// Reads the dispute under `key` and, for a refund, searches the payer's newest history
/// ([`DISPUTE_SEARCH_PAGES`] pages) for the same-currency SMS payment with its reference.
pub fn load_dispute(
    store: &mut dyn LedgerStore,
    key: &str,
    ruling: &DisputeRuling,
) -> Result<DisputeLoad, OperatorError> {
    if !key.starts_with(DISPUTE_PREFIX) {
        return Err(OperatorError::not_found("dispute", key));
    }
    let dispute = Loaded::<DisputeRecord>::read(store, key)?;
    let mut paid = None;
    if let Some(record) = &dispute.value
        && record.status == DisputeStatus::Open
        && ruling.refund()
    {
        let payer = records::ledger_account(&record.account);
        let mut before = None;
        for _ in 0..DISPUTE_SEARCH_PAGES {
            let page = store
                .history(&payer, before, offpay_ledger::HISTORY_PAGE_MAX)
                .map_err(RecordError::from)?;
            let found = page.iter().find(|entry| {
                entry.transfer.debit_account == payer
                    && entry.transfer.memo.starts_with("sms payment")
                    && reference_of(entry.transfer.id.as_str()) == record.reference
            });
            if let Some(entry) = found {
                paid = Some(entry.transfer.clone());
                break;
            }
            match page.last() {
                Some(last) if page.len() == offpay_ledger::HISTORY_PAGE_MAX => {
                    before = Some(last.sequence);
                }
                _ => break,
            }
        }
    }
    Ok(DisputeLoad { dispute, paid })
}

/// The operator decides a dispute. Nothing is reversed by the payer's SMS alone: a refund is an
/// explicit operator decision, posted as a new transfer from the payee (which must hold the
/// money — the ledger refuses otherwise), so a payee is protected from a payer who pays and then
/// "cancels". Across currencies the operator settles the difference by hand.
pub fn decide_dispute(
    load: DisputeLoad,
    key: &str,
    ruling: &DisputeRuling,
) -> Result<Decision<DisputeRecord>, OperatorError> {
    let DisputeLoad { dispute, paid } = load;
    let Some(mut record) = dispute.value.clone() else {
        return Err(OperatorError::not_found("dispute", key));
    };
    if record.status != DisputeStatus::Open {
        return Err(OperatorError::conflict(
            "decided",
            format!("this dispute was decided: {}", record.status.word()),
        ));
    }
    let mut effects = Effects::new();
    match ruling.decision.as_str() {
        "reject" => record.status = DisputeStatus::Rejected,
        "refund" => {
            let Some(paid) = paid else {
                return Err(OperatorError::Unprocessable {
                    code: "unknown_reference",
                    message: format!(
                        "account {} made no same-currency SMS payment with reference {} (cross-currency payments are refunded by hand)",
                        record.account, record.reference
                    ),
                });
            };
            let id = TransferId::new(format!("sms-refund:{}", short_hash(key)))
                .map_err(|_| OperatorError::Internal("refund id".into()))?;
            effects.post(Transfer {
                id: id.clone(),
                debit_account: paid.credit_account,
                credit_account: records::ledger_account(&record.account),
                amount: paid.amount,
                kind: TransferKind::Posted,
                memo: format!("sms dispute refund REF {}", record.reference),
            });
            record.status = DisputeStatus::Refunded;
            record.refund_transfer = Some(id.to_string());
        }
        other => {
            return Err(OperatorError::invalid(
                "invalid_decision",
                format!("decision {other:?} is not refund or reject"),
            ));
        }
    }
    record.note = ruling.note.clone();
    effects.write(dispute.write(&record)?);
    Ok(Decision::commit(effects, record))
}

// --- terminals and settings --------------------------------------------------------------------

/// Issues a terminal for `payee` (which must have an account): its record, created only if its
/// random id is free, and the token shown once.
pub fn decide_new_terminal(
    payee: Loaded<AccountRecord>,
    number: &AccountNumber,
    entropy: &dyn Entropy,
    now: offpay_ledger::Timestamp,
) -> Result<Decision<(TerminalRecord, String)>, OperatorError> {
    if payee.value.is_none() {
        return Err(OperatorError::not_found("sms_account", number));
    }
    let (record, token) = new_terminal(entropy, *number, now)?;
    let mut effects = Effects::new();
    effects.write(create(records::terminal_key(&record.id), &record)?);
    Ok(Decision::commit(effects, (record, token)))
}

/// The write that stores `settings` (they were validated by building an [`Operator`] on them),
/// sealed under `master` ([`SealedSettings`]).
pub fn store_settings(settings: &Settings, master: &MasterKey) -> Result<Operation, OperatorError> {
    Ok(put(
        SETTINGS_KEY.to_owned(),
        &SealedSettings::seal(settings.clone(), master),
    )?)
}

#[cfg(test)]
mod tests {
    use offpay_ledger::Timestamp;
    use offpay_operator::Loaded;

    use super::*;
    use crate::operator::records::{Answered, PayIndexRecord};
    use crate::operator::testing::*;

    /// Issue 18, envelope lifecycle: a holder whose envelope is lost (or locked, or used up) gets
    /// a new one at an agent: without an identity step nothing happens; with it the old envelope
    /// is retired (its rows pay nothing more), the new one is bound, and the step is recorded
    /// with a keyed hash of the document number, never the number.
    #[test]
    fn a_lost_envelope_is_retired_and_replaced_with_an_identity_step() {
        let mut world = World::new();
        let new = Euin::issued(263, 77).unwrap();
        world.print(&new);
        let (operator, now) = (world.operator.clone(), world.now);
        let account = number(PAYER);
        let mut request = ReplaceEnvelope {
            account: PAYER.into(),
            checked_by: "agent-17".into(),
            document_kind: "national id".into(),
            document_number: String::new(),
            reason: "lost".into(),
        };
        let load = load_bind(&mut world.store, &new, &account).unwrap();
        assert!(matches!(
            decide_replace(load, &new, &account, &request, &operator, now),
            Err(OperatorError::Invalid {
                code: "identity_step_missing",
                ..
            })
        ));
        request.document_number = "A1234567".into();
        let (record, retired) = run(
            &mut world.store,
            now,
            |store| load_bind(store, &new, &account).unwrap(),
            |load| decide_replace(load, &new, &account, &request, &operator, now),
        )
        .unwrap();
        assert_eq!(retired.to_string(), PAYER_EUIN);
        assert_eq!(record.view.status, EnvelopeStatus::Active { account });
        let old = world.envelope_record(PAYER_EUIN).value.unwrap();
        assert_eq!(old.view.status, EnvelopeStatus::Retired);
        assert_eq!(world.account(PAYER).current_envelope, Some(new));
        // The lost envelope's rows pay nothing; the new envelope pays.
        let text = world.low(PAYEE, "100", 1);
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Refused
        );
        let replacement = Envelope::derive(operator.master(), new, RowCount::Twenty);
        let text = crate::compose::low_text(
            &replacement,
            &new.to_string(),
            &number(PAYEE),
            &kes("100"),
            1,
        )
        .unwrap();
        assert_eq!(
            world.sms(PAYER_PHONE, &text).summary.verdict,
            Answered::Accepted
        );
        let step = Loaded::<ReplacementRecord>::read(
            &mut world.store,
            &records::replacement_key(&Euin::parse(PAYER_EUIN).unwrap()),
        )
        .unwrap()
        .value
        .unwrap();
        assert_eq!(step.checked_by, "agent-17");
        assert_eq!(step.document_tag, operator.master().text_tag("A1234567"));
        let stored = format!("{step:?}");
        assert!(!stored.contains("A1234567"));
    }

    #[test]
    fn an_account_is_opened_once_and_found_by_its_pay_numbers_tag() {
        let mut world = World::new();
        let request = CreateAccount {
            receive_number: Some(PAYER.into()),
            currency: None,
            notify_phone: None,
            bound_phones: Vec::new(),
            require_pay_number: false,
        };
        let plan = request.plan(Currency::KES, kenya()).unwrap();
        let existing = plan.load(&mut world.store).unwrap();
        assert!(matches!(
            decide_new_account(existing, &plan, &world.operator, &world.entropy, 0),
            Err(OperatorError::Conflict {
                code: "account_exists",
                ..
            })
        ));
        let generated = CreateAccount {
            receive_number: None,
            ..request
        }
        .plan(Currency::KES, kenya())
        .unwrap();
        let (operator, entropy) = (world.operator.clone(), &world.entropy);
        let created = run(
            &mut world.store,
            world.now,
            |store| generated.load(store).unwrap(),
            |existing| decide_new_account(existing, &generated, &operator, entropy, 0),
        )
        .unwrap();
        let number = created.record.receive_number.to_string();
        assert_eq!(number.len(), 12);
        assert!(!number.starts_with('0'));
        let tag = world.operator.master().pay_number_tag(&created.pay_number);
        let index = Loaded::<PayIndexRecord>::read(&mut world.store, &records::pay_index_key(&tag))
            .unwrap();
        assert_eq!(
            index.value,
            Some(PayIndexRecord(created.record.receive_number))
        );
        assert!(
            CreateAccount {
                receive_number: None,
                currency: None,
                notify_phone: None,
                bound_phones: vec!["+254700000001".into(); BOUND_PHONES_MAX + 1],
                require_pay_number: false,
            }
            .plan(Currency::KES, kenya())
            .is_err()
        );
    }

    /// Issue 24: the operator's phones are kept in E.164 (two spellings of one phone are bound
    /// once); a binding an earlier release stored as typed (`0700000001`) does not match the
    /// sender, who arrives in E.164: it fails closed, and setting it again through the API heals it.
    #[test]
    fn bound_phones_are_e164_and_an_earlier_national_binding_fails_closed() {
        let mut world = World::new();
        let key = records::account_key(&number(PAYER));
        let changes: AccountChanges =
            serde_json::from_str(r#"{"bound_phones":["0700 000 001","+254700000001"]}"#).unwrap();
        let loaded = Loaded::<AccountRecord>::read(&mut world.store, &key).unwrap();
        let Decision::Commit { effects, reply } = decide_account_changes(
            loaded,
            &number(PAYER),
            &changes,
            world.operator.master(),
            kenya(),
        )
        .unwrap() else {
            panic!("a change commits")
        };
        assert_eq!(reply.bound_phones, vec![phone(PAYER_PHONE)]);
        assert!(commit(&mut world.store, effects, world.now));
        let balance = format!("BAL {PAYER_EUIN}");
        assert_eq!(
            world.sms(PAYER_PHONE, &balance).summary.verdict,
            Answered::Accepted
        );
        // As an earlier release stored it: the national form, sealed.
        let loaded = Loaded::<AccountRecord>::read(&mut world.store, &key).unwrap();
        let mut record = loaded.value.clone().unwrap();
        record.bound_phones = vec![phone("0700000001")];
        record.seal_settings(world.operator.master(), &key);
        let mut effects = Effects::new();
        effects.write(loaded.write(&record).unwrap());
        assert!(commit(&mut world.store, effects, world.now));
        assert_eq!(
            world.sms(PAYER_PHONE, &balance).summary.verdict,
            Answered::Refused
        );
        assert_eq!(
            world
                .sms(PAYER_PHONE, &world.low(PAYEE, "5", 1))
                .summary
                .verdict,
            Answered::Refused
        );
    }

    #[test]
    fn account_changes_are_checked_and_written_only_over_what_was_read() {
        let mut world = World::new();
        let key = records::account_key(&number(PAYER));
        let read =
            |world: &mut World| Loaded::<AccountRecord>::read(&mut world.store, &key).unwrap();
        let changes: AccountChanges = serde_json::from_str(
            r#"{"per_day":"300","dialback_threshold":"none","bound_phones":["+254700000001"]}"#,
        )
        .unwrap();
        let stale = read(&mut world);
        let Decision::Commit { effects, reply } = decide_account_changes(
            read(&mut world),
            &number(PAYER),
            &changes,
            world.operator.master(),
            kenya(),
        )
        .unwrap() else {
            panic!("a change commits")
        };
        assert_eq!(reply.limits.per_day, Some(kes("300")));
        assert!(commit(&mut world.store, effects, world.now));
        let Decision::Commit { effects, .. } = decide_account_changes(
            stale,
            &number(PAYER),
            &changes,
            world.operator.master(),
            kenya(),
        )
        .unwrap() else {
            panic!("a change commits")
        };
        assert!(!commit(&mut world.store, effects, world.now));
        let bad: AccountChanges = serde_json::from_str(r#"{"per_week":"1.234"}"#).unwrap();
        assert!(matches!(
            decide_account_changes(
                read(&mut world),
                &number(PAYER),
                &bad,
                world.operator.master(),
                kenya(),
            ),
            Err(OperatorError::Invalid {
                code: "invalid_amount",
                ..
            })
        ));
        let unknown = Loaded {
            key: "acct:999999999999".into(),
            version: 0,
            value: None,
        };
        assert!(matches!(
            decide_account_changes(
                unknown,
                &number("999999999999"),
                &bad,
                world.operator.master(),
                kenya(),
            ),
            Err(OperatorError::NotFound { .. })
        ));
    }

    #[test]
    fn envelopes_are_issued_in_serial_order_and_printed_one_row_count_per_run() {
        let mut world = World::new();
        let issue = |world: &mut World, count, rows| {
            let request = IssueEnvelopes { count, rows };
            run(
                &mut world.store,
                world.now,
                |store| IssueEnvelopes::load(store).unwrap(),
                |serial| request.decide(serial, 263, world.operator.master(), 0),
            )
            .unwrap()
            .0
        };
        let first = issue(&mut world, 2, 20);
        let second = issue(&mut world, 1, 50);
        assert_eq!(first[0], Euin::issued(263, 1).unwrap());
        assert_eq!(second[0], Euin::issued(263, 3).unwrap());
        assert!(IssueEnvelopes { count: 0, rows: 20 }.check().is_err());
        assert!(IssueEnvelopes { count: 1, rows: 21 }.check().is_err());
        let mut all = first.clone();
        all.extend(&second);
        let stored = load_print(&mut world.store, &all).unwrap();
        assert!(matches!(
            print_rows(&all, &stored),
            Err(OperatorError::Invalid {
                code: "mixed_rows",
                ..
            })
        ));
        let stored = load_print(&mut world.store, &first).unwrap();
        assert_eq!(print_rows(&first, &stored).unwrap(), RowCount::Twenty);
        let unknown = [Euin::issued(263, 99).unwrap()];
        let stored = load_print(&mut world.store, &unknown).unwrap();
        assert!(matches!(
            print_rows(&unknown, &stored),
            Err(OperatorError::NotFound { .. })
        ));
        assert!(print_request(&[]).is_err());
    }

    #[test]
    fn an_imported_envelope_is_sealed_once_and_never_printed_here() {
        let mut world = World::new();
        let text = crate::import::format_envelope(&Envelope::derive(
            &crate::keys::MasterKey::from_bytes([1; 32]),
            Euin::issued(263, 500).unwrap(),
            RowCount::Twenty,
        ));
        let (envelope, rows) = import_request(&text).unwrap();
        let key = records::envelope_key(&envelope.euin);
        let operator = world.operator.clone();
        let record = run(
            &mut world.store,
            world.now,
            |store| Loaded::<EnvelopeRecord>::read(store, &key).unwrap(),
            |existing| decide_import(existing, &envelope, rows, &operator, 0),
        )
        .unwrap();
        assert!(record.imported());
        let opened = operator
            .master()
            .unseal(&envelope.euin, record.view.sealed.as_ref().unwrap())
            .unwrap();
        assert_eq!(crate::import::format_envelope(&opened), text);
        let existing = Loaded::<EnvelopeRecord>::read(&mut world.store, &key).unwrap();
        assert!(matches!(
            decide_import(existing, &envelope, rows, &operator, 0),
            Err(OperatorError::Conflict {
                code: "envelope_exists",
                ..
            })
        ));
        let euins = [envelope.euin];
        let stored = load_print(&mut world.store, &euins).unwrap();
        assert!(print_rows(&euins, &stored).is_err());
        assert!(import_request("format = 1\n").is_err());
    }

    #[test]
    fn an_account_using_an_envelope_gets_the_next_by_sms_and_only_locked_ones_unlock() {
        let mut world = World::new();
        let next = Euin::parse("26399912346").unwrap();
        world.print(&next);
        let load = load_bind(&mut world.store, &next, &number(PAYER)).unwrap();
        assert!(matches!(
            decide_bind(load, &next, &number(PAYER), &world.operator, world.now),
            Err(OperatorError::Conflict {
                code: "has_envelope",
                ..
            })
        ));
        let payer_euin = Euin::parse(PAYER_EUIN).unwrap();
        let load = load_bind(&mut world.store, &payer_euin, &number(PAYEE)).unwrap();
        assert!(matches!(
            decide_bind(
                load,
                &payer_euin,
                &number(PAYEE),
                &world.operator,
                world.now
            ),
            Err(OperatorError::Conflict {
                code: "envelope_not_registrable",
                ..
            })
        ));
        let loaded = world.envelope_record(PAYER_EUIN);
        assert!(matches!(
            decide_unlock(loaded, &payer_euin, &world.operator, world.now),
            Err(OperatorError::Conflict {
                code: "not_locked",
                ..
            })
        ));
        // The payee, with no envelope yet, gets one bound at an agent.
        world.bind(&next, PAYEE);
        let payee = world.account(PAYEE);
        assert_eq!(payee.current_envelope, Some(next));
    }

    #[test]
    fn a_dispute_is_refunded_by_the_payee_once_or_rejected() {
        let mut world = World::new();
        let pay = world.low(PAYEE, "100", 1);
        let paid = world.sms(PAYER_PHONE, &pay);
        let reference = reference_in(&paid.replies[0]);
        let report = signed(
            &world,
            &format!("DISPUTE {PAYER_EUIN} {reference} 2 000000"),
        );
        assert_eq!(
            world.sms(PAYER_PHONE, &report).summary.verdict,
            Answered::Accepted
        );
        let disputes = world
            .store
            .records(records::NAMESPACE, DISPUTE_PREFIX, None, 10)
            .unwrap();
        assert_eq!(disputes.len(), 1);
        let key = disputes[0].key.clone();
        let refund = DisputeRuling {
            decision: "refund".into(),
            note: Some("agreed".into()),
        };
        let decided = run(
            &mut world.store,
            world.now,
            |store| load_dispute(store, &key, &refund).unwrap(),
            |load| decide_dispute(load, &key, &refund),
        )
        .unwrap();
        assert_eq!(decided.status, DisputeStatus::Refunded);
        assert_eq!(world.balance(PAYEE), 0);
        assert_eq!(world.balance(PAYER), 1_000_000 - 1_000);
        let load = load_dispute(&mut world.store, &key, &refund).unwrap();
        assert!(matches!(
            decide_dispute(load, &key, &refund),
            Err(OperatorError::Conflict {
                code: "decided",
                ..
            })
        ));
        assert!(matches!(
            load_dispute(&mut world.store, "acct:1", &refund),
            Err(OperatorError::NotFound { .. })
        ));
        // A reference no payment has cannot be refunded; the dispute can be rejected.
        let wrong = signed(&world, &format!("DISPUTE {PAYER_EUIN} 00000001 3 000000"));
        world.sms(PAYER_PHONE, &wrong);
        let key = records::dispute_key(
            crate::posting::Reference::parse("00000001").unwrap(),
            "gw-3",
        );
        let load = load_dispute(&mut world.store, &key, &refund).unwrap();
        assert!(matches!(
            decide_dispute(load, &key, &refund),
            Err(OperatorError::Unprocessable { .. })
        ));
        let reject = DisputeRuling {
            decision: "reject".into(),
            note: None,
        };
        let decided = run(
            &mut world.store,
            Timestamp(world.now.0 + 1),
            |store| load_dispute(store, &key, &reject).unwrap(),
            |load| decide_dispute(load, &key, &reject),
        )
        .unwrap();
        assert_eq!(decided.status, DisputeStatus::Rejected);
    }
}
