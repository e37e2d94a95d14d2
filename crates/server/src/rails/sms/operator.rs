//! The operator's API for this rail (under `/api/v1/sms`, behind the operator token): settings
//! (fees, rates, dialback defaults, time zone), SMS accounts, envelopes (issue, print, import,
//! bind at an agent, unlock), disputes, merchant terminals, the outbox; and the scheduler that
//! runs scheduled payments, expires callbacks and web sessions.

use offpay_operator::Entropy;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use offpay_ledger::{
    AccountKind, Amount, BalanceLimits, Batch, Currency, NewAccount, Operation, Transfer,
    TransferId, TransferKind,
};
use offpay_sms_tan::civil_time::UnixSeconds;
use offpay_sms_tan::import::parse_envelope;
use offpay_sms_tan::limits::{BOUND_PHONES_MAX, PDF_ENVELOPES_MAX};
use offpay_sms_tan::{
    AccountNumber, Euin, Outcome, PdfOptions, PhoneNumber, RowCount, render_envelopes_pdf,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::process::{self, ApplyError, Loaded, PayerLookup, ReplyRouting, get as get_record};
use super::records::{
    self, AccountRecord, DisputeRecord, EnvelopeRecord, PendingRecord, ScheduledRecord,
    SerialRecord, SessionRecord, TerminalRecord,
};
use super::{Settings, SmsRail};
use crate::AppState;
use crate::api::ApiJson;
use crate::error::ApiError;

/// Most envelopes one issue call creates (one record each plus the serial counter, in one batch).
pub const ISSUE_COUNT_MAX: usize = 8000;
const _: () = assert!(ISSUE_COUNT_MAX < offpay_ledger::BATCH_OPERATIONS_MAX);
/// Most records one listing returns.
pub const LIST_LIMIT_MAX: usize = 1000;
/// How often the scheduler looks for due payments and expired callbacks.
pub const SCHEDULER_INTERVAL: Duration = Duration::from_secs(1);
/// Scheduled payments, callbacks or sessions handled per scheduler pass and kind.
pub const SCHEDULER_PAGE: usize = 100;
/// History pages searched for a disputed payment's reference.
pub const DISPUTE_SEARCH_PAGES: usize = 5;
/// Attempts to allocate account numbers that are not taken.
const NUMBER_ATTEMPTS_MAX: usize = 16;

/// Routes under `/api/v1`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/sms/settings",
            get(get_settings).put(put_settings).post(put_settings),
        )
        .route("/sms/status", get(status))
        .route("/sms/accounts", post(create_account))
        .route(
            "/sms/accounts/{number}",
            get(get_account).patch(update_account).post(update_account),
        )
        .route("/sms/envelopes/issue", post(issue_envelopes))
        .route("/sms/envelopes/print", post(print_envelopes))
        .route("/sms/envelopes/import", post(import_envelope))
        .route("/sms/envelopes/{euin}", get(get_envelope))
        .route("/sms/envelopes/{euin}/bind", post(bind_envelope))
        .route("/sms/envelopes/{euin}/unlock", post(unlock_envelope))
        .route("/sms/disputes", get(list_disputes))
        .route("/sms/disputes/{key}/decide", post(decide_dispute))
        .route("/sms/terminals", post(create_terminal))
        .route("/sms/outbox", get(outbox))
        .route("/sms/scheduled", get(list_scheduled))
        .route("/sms/sent", get(list_sent))
        .route("/sms/simulate", post(simulate))
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

fn parse_account(text: &str) -> Result<AccountNumber, ApiError> {
    AccountNumber::parse(text).map_err(|_| {
        ApiError::bad_request(
            "invalid_account_number",
            format!("{text:?} is not 12 digits"),
        )
    })
}

fn parse_euin(text: &str) -> Result<Euin, ApiError> {
    Euin::parse(text).map_err(|_| {
        ApiError::bad_request(
            "invalid_euin",
            format!("{text:?} is not an 11-digit envelope number"),
        )
    })
}

fn parse_phone(text: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(text).map_err(|_| {
        ApiError::bad_request("invalid_phone", format!("{text:?} is not a phone number"))
    })
}

async fn commit_one(state: &Arc<AppState>, operations: Vec<Operation>) -> Result<(), ApiError> {
    let written = operations.clone();
    let result = state
        .ledger
        .commit(vec![Batch { operations }], state.now())
        .await;
    let committed = matches!(&result, Ok(results) if matches!(results.first(), Some(Ok(_))));
    state.rails.sms.cache.after_commit(&written, committed);
    let results = result?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err(refusal)) => Err(ApiError::refused(&refusal)),
        None => Err(internal("the ledger returned no result")),
    }
}

async fn get_settings(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    state.rails.sms.ensure_settings(&state).await?;
    Ok(Json(json!(*state.rails.sms.settings())))
}

async fn put_settings(
    State(state): State<Arc<AppState>>,
    ApiJson(mut settings): ApiJson<Settings>,
) -> Result<Json<Value>, ApiError> {
    settings.version = records::FORMAT_VERSION;
    settings.server_currency = state.config.currency;
    // Validates (fees, rates, currencies, offset) before anything is stored.
    settings.engine_config()?;
    commit_one(
        &state,
        vec![records::put(
            records::SETTINGS_KEY.to_owned(),
            &settings,
            None,
        )],
    )
    .await?;
    state
        .rails
        .sms
        .install(settings.clone(), state.config.currency)?;
    Ok(Json(json!(settings)))
}

async fn status(State(state): State<Arc<AppState>>) -> Json<Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let rail = &state.rails.sms;
    Json(json!({
        "master_key_fingerprint": hex::encode(rail.fingerprint()),
        "kannel": rail.kannel.is_some(),
        "inbound": rail.metrics.inbound.load(Relaxed),
        "duplicates": rail.metrics.duplicates.load(Relaxed),
        "reruns": rail.metrics.reruns.load(Relaxed),
        "sent": rail.metrics.sent.load(Relaxed),
        "send_failures": rail.metrics.send_failures.load(Relaxed),
    }))
}

/// Body of `POST /api/v1/sms/accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// The public receive number; generated when absent.
    receive_number: Option<String>,
    /// Currency (default: the server's).
    currency: Option<String>,
    /// Where notices of money received go.
    notify_phone: Option<String>,
    /// Phones allowed to send instructions.
    #[serde(default)]
    bound_phones: Vec<String>,
    /// Instructions must name the pay number.
    #[serde(default)]
    require_pay_number: bool,
}

fn random_account_number(entropy: &dyn Entropy) -> Result<AccountNumber, ApiError> {
    let mut bytes = [0u8; 8];
    entropy
        .fill(&mut bytes)
        .map_err(|_| internal("no randomness"))?;
    // 12 digits, not starting with 0 (so nobody drops a leading zero).
    let value = 100_000_000_000 + u64::from_le_bytes(bytes) % 900_000_000_000;
    AccountNumber::from_value(value).ok_or_else(|| internal("account number out of range"))
}

fn account_json(record: &AccountRecord, balance: Option<String>) -> Value {
    json!({
        "receive_number": record.receive_number,
        "ledger_account": format!("{}{}", records::LEDGER_PREFIX, record.receive_number),
        "currency": record.currency,
        "active": record.active,
        "bound_phones": record.bound_phones,
        "notify_phone": record.notify_phone,
        "require_pay_number": record.require_pay_number,
        "current_envelope": record.current_envelope,
        "limits": record.limits,
        "dialback_threshold_minor": record.dialback_threshold_minor,
        "always_callback": record.always_callback,
        "web_password_set": record.web_password.is_some(),
        "balance": balance,
    })
}

async fn create_account(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<CreateAccount>,
) -> Result<Response, ApiError> {
    let rail = &state.rails.sms;
    let currency = match &request.currency {
        Some(code) => Currency::from_code(code).map_err(|error| {
            ApiError::bad_request("invalid_currency", format!("{code:?}: {error}"))
        })?,
        None => state.config.currency,
    };
    if request.bound_phones.len() > BOUND_PHONES_MAX {
        return Err(ApiError::bad_request(
            "too_many_phones",
            format!("at most {BOUND_PHONES_MAX} bound phones"),
        ));
    }
    let mut bound_phones = Vec::new();
    for phone in &request.bound_phones {
        bound_phones.push(parse_phone(phone)?.to_string());
    }
    let notify_phone = match &request.notify_phone {
        Some(phone) => Some(parse_phone(phone)?.to_string()),
        None => None,
    };
    for _ in 0..NUMBER_ATTEMPTS_MAX {
        let receive = match &request.receive_number {
            Some(text) => parse_account(text)?,
            None => random_account_number(state.entropy.as_ref())?,
        };
        let pay = random_account_number(state.entropy.as_ref())?;
        if pay == receive {
            continue;
        }
        let tag = rail.engine().master().pay_number_tag(&pay);
        let record = AccountRecord {
            version: records::FORMAT_VERSION,
            receive_number: receive.to_string(),
            pay_tag: hex::encode(tag),
            currency: currency.code().to_owned(),
            active: true,
            bound_phones: bound_phones.clone(),
            notify_phone: notify_phone.clone(),
            limits: records::LimitsRecord::default(),
            dialback_threshold_minor: None,
            always_callback: false,
            require_pay_number: request.require_pay_number,
            current_envelope: None,
            spending: records::SpendingRecord::default(),
            web_password: None,
            web_failures: 0,
            created_at_ms: state.now().0,
        };
        let operations = vec![
            Operation::CreateAccount(NewAccount {
                id: records::ledger_account(&receive),
                kind: AccountKind::Customer,
                currency,
                limits: BalanceLimits {
                    balance_min: Some(0),
                    balance_max: None,
                },
            }),
            records::put(records::account_key(&receive), &record, Some(0)),
            records::put(records::pay_index_key(&tag), &receive.to_string(), Some(0)),
        ];
        match commit_one(&state, operations).await {
            Ok(()) => {
                let mut body = account_json(&record, None);
                // The pay number is shown once, here, and never stored in clear.
                body["pay_number"] = json!(pay.to_string());
                return Ok((StatusCode::CREATED, Json(body)).into_response());
            }
            Err(error) if error.code == "record_version_mismatch" => {
                if request.receive_number.is_some() {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "account_exists",
                        format!("an SMS account {receive} exists"),
                    ));
                }
            }
            Err(error) => return Err(error),
        }
    }
    Err(internal("could not allocate free account numbers"))
}

async fn load_account_record(
    state: &Arc<AppState>,
    number: AccountNumber,
) -> Result<(AccountRecord, u64, String), ApiError> {
    let currency_default = state.config.currency;
    let found = state
        .ledger
        .read(move |store| {
            let record = get_record::<AccountRecord>(store, &records::account_key(&number))?;
            let balance = match &record {
                Some((record, _)) => {
                    let currency = record.currency().unwrap_or(currency_default);
                    let minor = store
                        .account(&records::ledger_account(&number))?
                        .map_or(0, |account| account.balance());
                    offpay_ledger::Decimal::new(i128::from(minor), currency).to_string()
                }
                None => String::new(),
            };
            Ok(record.map(|(record, version)| (record, version, balance)))
        })
        .await?;
    found.ok_or_else(|| ApiError::not_found("sms_account", &number.to_string()))
}

async fn get_account(
    State(state): State<Arc<AppState>>,
    Path(number): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let number = parse_account(&number)?;
    let (record, _, balance) = load_account_record(&state, number).await?;
    Ok(Json(account_json(&record, Some(balance))))
}

/// Body of `PATCH /api/v1/sms/accounts/{number}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    active: Option<bool>,
    bound_phones: Option<Vec<String>>,
    notify_phone: Option<String>,
    require_pay_number: Option<bool>,
    /// Decimal or `"none"`.
    per_payment: Option<String>,
    /// Decimal or `"none"`.
    per_day: Option<String>,
    /// Decimal or `"none"`.
    per_week: Option<String>,
    /// Decimal or `"none"` (the operator default).
    dialback_threshold: Option<String>,
    always_callback: Option<bool>,
}

fn limit_minor(text: &str, currency: Currency) -> Result<Option<u64>, ApiError> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    Amount::parse(text, currency)
        .map(|amount| Some(amount.minor()))
        .map_err(|error| ApiError::bad_request("invalid_amount", format!("{text:?}: {error}")))
}

async fn update_account(
    State(state): State<Arc<AppState>>,
    Path(number): Path<String>,
    ApiJson(request): ApiJson<UpdateAccount>,
) -> Result<Json<Value>, ApiError> {
    let number = parse_account(&number)?;
    let (mut record, version, _) = load_account_record(&state, number).await?;
    let currency = record
        .currency()
        .ok_or_else(|| internal("stored account has a bad currency"))?;
    if let Some(active) = request.active {
        record.active = active;
    }
    if let Some(phones) = &request.bound_phones {
        if phones.len() > BOUND_PHONES_MAX {
            return Err(ApiError::bad_request(
                "too_many_phones",
                format!("at most {BOUND_PHONES_MAX} bound phones"),
            ));
        }
        record.bound_phones = phones
            .iter()
            .map(|phone| parse_phone(phone).map(|phone| phone.to_string()))
            .collect::<Result<_, _>>()?;
    }
    if let Some(phone) = &request.notify_phone {
        record.notify_phone = if phone.is_empty() {
            None
        } else {
            Some(parse_phone(phone)?.to_string())
        };
    }
    if let Some(required) = request.require_pay_number {
        record.require_pay_number = required;
    }
    if let Some(text) = &request.per_payment {
        record.limits.per_payment_minor = limit_minor(text, currency)?;
    }
    if let Some(text) = &request.per_day {
        record.limits.per_day_minor = limit_minor(text, currency)?;
    }
    if let Some(text) = &request.per_week {
        record.limits.per_week_minor = limit_minor(text, currency)?;
    }
    if let Some(text) = &request.dialback_threshold {
        record.dialback_threshold_minor = limit_minor(text, currency)?;
    }
    if let Some(on) = request.always_callback {
        record.always_callback = on;
    }
    commit_one(
        &state,
        vec![records::put(
            records::account_key(&number),
            &record,
            Some(version),
        )],
    )
    .await?;
    Ok(Json(account_json(&record, None)))
}

/// Body of `POST /api/v1/sms/envelopes/issue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueEnvelopes {
    count: usize,
    /// 20 or 50.
    rows: usize,
}

async fn issue_envelopes(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<IssueEnvelopes>,
) -> Result<Response, ApiError> {
    let rail = &state.rails.sms;
    rail.ensure_settings(&state).await?;
    if request.count == 0 || request.count > ISSUE_COUNT_MAX {
        return Err(ApiError::bad_request(
            "invalid_count",
            format!("count must be 1 to {ISSUE_COUNT_MAX} per call"),
        ));
    }
    let rows = RowCount::from_count(request.rows)
        .ok_or_else(|| ApiError::bad_request("invalid_rows", "rows must be 20 or 50"))?;
    let prefix = rail.settings().euin_prefix;
    let (serial, version) = state
        .ledger
        .read(|store| get_record::<SerialRecord>(store, records::SERIAL_KEY))
        .await?
        .map_or((SerialRecord::default(), 0), |(record, version)| {
            (record, version)
        });
    let first = serial.next.max(1);
    let count = u32::try_from(request.count).map_err(|_| internal("count"))?;
    let now_ms = state.now().0;
    let mut euins = Vec::with_capacity(request.count);
    let mut operations = Vec::with_capacity(request.count + 1);
    for offset in 0..count {
        let euin = Euin::issued(prefix, first + offset).map_err(|_| {
            ApiError::bad_request(
                "serials_exhausted",
                "no more envelope numbers with this prefix",
            )
        })?;
        operations.push(records::put(
            records::envelope_key(&euin),
            &EnvelopeRecord::unallocated(&euin, rows, None, now_ms),
            Some(0),
        ));
        euins.push(euin.to_string());
    }
    operations.push(records::put(
        records::SERIAL_KEY.to_owned(),
        &SerialRecord {
            version: records::FORMAT_VERSION,
            next: first + count,
        },
        Some(version),
    ));
    commit_one(&state, operations).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "euins": euins, "rows": rows.get() })),
    )
        .into_response())
}

/// Body of `POST /api/v1/sms/envelopes/print`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrintEnvelopes {
    euins: Vec<String>,
    /// `"hex"`: answer JSON `{"pdf_hex": ...}` (for JSON clients) instead of `application/pdf`.
    encoding: Option<String>,
}

async fn print_envelopes(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<PrintEnvelopes>,
) -> Result<Response, ApiError> {
    let rail = &state.rails.sms;
    rail.ensure_settings(&state).await?;
    if request.euins.is_empty() || request.euins.len() > PDF_ENVELOPES_MAX {
        return Err(ApiError::bad_request(
            "invalid_count",
            format!("print 1 to {PDF_ENVELOPES_MAX} envelopes per PDF"),
        ));
    }
    let euins: Vec<Euin> = request
        .euins
        .iter()
        .map(|text| parse_euin(text))
        .collect::<Result<_, _>>()?;
    let lookup = euins.clone();
    let stored = state
        .ledger
        .read(move |store| {
            let mut rows = Vec::with_capacity(lookup.len());
            for euin in &lookup {
                rows.push(
                    get_record::<EnvelopeRecord>(store, &records::envelope_key(euin))?
                        .map(|(record, _)| (record.rows, record.sealed.is_some())),
                );
            }
            Ok(rows)
        })
        .await?;
    let mut row_count = None;
    for (euin, found) in euins.iter().zip(&stored) {
        let Some((rows, sealed)) = found else {
            return Err(ApiError::not_found("envelope", &euin.to_string()));
        };
        if *sealed {
            return Err(ApiError::bad_request(
                "imported_envelope",
                format!("envelope {euin} was imported (printed elsewhere); it is not derived here"),
            ));
        }
        if row_count.is_some_and(|count| count != *rows) {
            return Err(ApiError::bad_request(
                "mixed_rows",
                "print envelopes of one row count per PDF",
            ));
        }
        row_count = Some(*rows);
    }
    let rows = row_count
        .and_then(|count| RowCount::from_count(usize::from(count)))
        .ok_or_else(|| internal("stored row count"))?;
    let settings = rail.settings();
    let options = PdfOptions {
        operator_name: settings.operator_name.clone(),
        sms_number: settings.sms_number.clone(),
    };
    let engine = rail.engine();
    let pdf = tokio::task::spawn_blocking(move || {
        render_envelopes_pdf(engine.master(), &euins, rows, &options, &mut |_, _| {})
    })
    .await
    .map_err(|_| internal("rendering the PDF failed"))?;
    if request.encoding.as_deref() == Some("hex") {
        return Ok(
            Json(json!({ "pdf_hex": hex::encode(&pdf), "bytes": pdf.len() })).into_response(),
        );
    }
    Ok(([(header::CONTENT_TYPE, "application/pdf")], pdf).into_response())
}

/// Body of `POST /api/v1/sms/envelopes/import`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportEnvelope {
    /// The envelope file's text (`import::parse_envelope` format).
    text: String,
}

async fn import_envelope(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<ImportEnvelope>,
) -> Result<Response, ApiError> {
    let envelope = parse_envelope(&request.text)
        .map_err(|error| ApiError::bad_request("invalid_envelope_file", error.to_string()))?;
    let rows = envelope
        .row_count()
        .ok_or_else(|| ApiError::bad_request("invalid_envelope_file", "20 or 50 rows"))?;
    let sealed = state.rails.sms.engine().master().seal(&envelope);
    let record = EnvelopeRecord::unallocated(&envelope.euin, rows, Some(&sealed), state.now().0);
    match commit_one(
        &state,
        vec![records::put(records::envelope_key(&envelope.euin), &record, Some(0))],
    )
    .await
    {
        Ok(()) => Ok((
            StatusCode::CREATED,
            Json(json!({ "euin": envelope.euin.to_string(), "rows": rows.get(), "status": "unallocated", "sealed": true })),
        )
            .into_response()),
        Err(error) if error.code == "record_version_mismatch" => Err(ApiError::new(
            StatusCode::CONFLICT,
            "envelope_exists",
            format!("envelope {} exists already", envelope.euin),
        )),
        Err(error) => Err(error),
    }
}

fn envelope_json(record: &EnvelopeRecord) -> Value {
    let free = record
        .view()
        .map(|view| view.free_rows())
        .unwrap_or_default();
    json!({
        "euin": record.euin,
        "rows": record.rows,
        "free_rows": free,
        "used_rows": (1..=record.rows).filter(|row| record.used_rows & (1u64 << (row - 1)) != 0).collect::<Vec<u8>>(),
        "consecutive_failures": record.consecutive_failures,
        "status": record.status,
        "account": record.account,
        "imported": record.sealed.is_some(),
    })
}

async fn load_envelope_record(
    state: &Arc<AppState>,
    euin: Euin,
) -> Result<(EnvelopeRecord, u64), ApiError> {
    state
        .ledger
        .read(move |store| get_record::<EnvelopeRecord>(store, &records::envelope_key(&euin)))
        .await?
        .ok_or_else(|| ApiError::not_found("envelope", &euin.to_string()))
}

async fn get_envelope(
    State(state): State<Arc<AppState>>,
    Path(euin): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let euin = parse_euin(&euin)?;
    let (record, _) = load_envelope_record(&state, euin).await?;
    Ok(Json(envelope_json(&record)))
}

/// Body of `POST /api/v1/sms/envelopes/{euin}/bind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindEnvelope {
    /// The account's receive number.
    account: String,
}

async fn apply_operator_effect(
    state: &Arc<AppState>,
    effect: offpay_sms_tan::Effect,
    envelope: (EnvelopeRecord, u64),
    account: Option<(AccountRecord, u64)>,
    what: &str,
) -> Result<(), ApiError> {
    let mut loaded = Loaded::default();
    loaded
        .envelopes
        .insert(format!("env:{}", envelope.0.euin), envelope);
    if let Some(account) = account {
        loaded
            .accounts
            .insert(format!("acct:{}", account.0.receive_number), account);
    }
    let mut outcome = Outcome::empty();
    outcome.effects.push(effect);
    match process::apply_outcome(
        state,
        &state.rails.sms,
        &outcome,
        &loaded,
        &ReplyRouting { inline_to: None },
        None,
        what,
        Vec::new(),
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(ApplyError::Conflict | ApplyError::Duplicate) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "changed",
            "the envelope or account changed meanwhile; try again",
        )),
        Err(ApplyError::Failed(error)) => Err(error),
    }
}

async fn bind_envelope(
    State(state): State<Arc<AppState>>,
    Path(euin): Path<String>,
    ApiJson(request): ApiJson<BindEnvelope>,
) -> Result<Json<Value>, ApiError> {
    let euin = parse_euin(&euin)?;
    let account = parse_account(&request.account)?;
    let envelope = load_envelope_record(&state, euin).await?;
    let (record, version, _) = load_account_record(&state, account).await?;
    if let Some(current) = &record.current_envelope {
        let current_euin = parse_euin(current)?;
        let (current_record, _) = load_envelope_record(&state, current_euin).await?;
        if matches!(current_record.status.as_str(), "active" | "locked") {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "has_envelope",
                format!(
                    "account {account} already uses envelope {current}; its holder registers the next one by SMS (REG)"
                ),
            ));
        }
    }
    let view = envelope
        .0
        .view()
        .ok_or_else(|| internal("stored envelope is damaged"))?;
    let effect = state
        .rails
        .sms
        .engine()
        .bind_at_agent(&view, account)
        .map_err(|_| {
            ApiError::new(
                StatusCode::CONFLICT,
                "envelope_not_registrable",
                format!("envelope {euin} is already bound, locked or retired"),
            )
        })?;
    apply_operator_effect(&state, effect, envelope, Some((record, version)), "bind").await?;
    let (record, _) = load_envelope_record(&state, euin).await?;
    Ok(Json(envelope_json(&record)))
}

async fn unlock_envelope(
    State(state): State<Arc<AppState>>,
    Path(euin): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let euin = parse_euin(&euin)?;
    let envelope = load_envelope_record(&state, euin).await?;
    let view = envelope
        .0
        .view()
        .ok_or_else(|| internal("stored envelope is damaged"))?;
    let effect = state.rails.sms.engine().unlock(&view).map_err(|_| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_locked",
            format!("envelope {euin} is not locked (or its binding does not verify)"),
        )
    })?;
    apply_operator_effect(&state, effect, envelope, None, "unlock").await?;
    let (record, _) = load_envelope_record(&state, euin).await?;
    Ok(Json(envelope_json(&record)))
}

/// Query of listings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(
    state: &Arc<AppState>,
    prefix: &'static str,
    query: ListQuery,
) -> Result<Vec<(String, Value)>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, LIST_LIMIT_MAX);
    let page = state
        .ledger
        .read(move |store| store.records(records::NAMESPACE, prefix, query.after.as_deref(), limit))
        .await?;
    Ok(page
        .into_iter()
        .filter_map(|record| {
            let value: Value = serde_json::from_slice(&record.value).ok()?;
            Some((record.key, value))
        })
        .collect())
}

/// A page of the records under `prefix`, each with its key, as `{field: [...]}`.
async fn keyed_list(
    state: &Arc<AppState>,
    prefix: &'static str,
    query: ListQuery,
    field: &str,
) -> Result<Json<Value>, ApiError> {
    let items: Vec<Value> = list(state, prefix, query)
        .await?
        .into_iter()
        .map(|(key, mut value)| {
            value["key"] = json!(key);
            value
        })
        .collect();
    Ok(Json(json!({ field: items })))
}

async fn list_disputes(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    keyed_list(&state, "dispute:", query, "disputes").await
}

async fn outbox(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    keyed_list(&state, "out:", query, "outbox").await
}

async fn list_sent(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    keyed_list(&state, "sent:", query, "sent").await
}

async fn list_scheduled(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    keyed_list(&state, "sched:", query, "scheduled").await
}

/// Body of `POST /api/v1/sms/simulate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Simulate {
    from: String,
    text: String,
    message_id: String,
}

/// Handles an SMS as if it came from a gateway (gateway name `operator`): for the operator's
/// own checks and the demo. Replies to the sender are answered inline, the rest queued.
async fn simulate(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<Simulate>,
) -> Result<Json<Value>, ApiError> {
    if request.message_id.is_empty()
        || request.message_id.len() > super::gateway::MESSAGE_ID_BYTES_MAX
    {
        return Err(ApiError::bad_request(
            "invalid_message_id",
            "message_id: 1 to 200 bytes",
        ));
    }
    let from = parse_phone(&request.from)?;
    let answer = process::handle_inbound(
        &state,
        "operator",
        &request.message_id,
        from,
        &request.text,
        true,
    )
    .await?;
    Ok(Json(json!({
        "replies": answer.replies,
        "duplicate": answer.duplicate,
        "verdict": answer.verdict,
        "queued": answer.queued,
    })))
}

/// Body of `POST /api/v1/sms/disputes/{key}/decide`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decide {
    /// `refund` (the payee pays the amount back, if its balance allows) or `reject`.
    decision: String,
    note: Option<String>,
}

/// The operator decides a dispute. Nothing is reversed by the payer's SMS alone: a refund is an
/// explicit operator decision, posted as a new transfer from the payee (which must hold the
/// money — the ledger refuses otherwise), so a payee is protected from a payer who pays and then
/// "cancels".
async fn decide_dispute(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    ApiJson(request): ApiJson<Decide>,
) -> Result<Json<Value>, ApiError> {
    if !key.starts_with("dispute:") {
        return Err(ApiError::not_found("dispute", &key));
    }
    let lookup = key.clone();
    let (mut dispute, version) = state
        .ledger
        .read(move |store| get_record::<DisputeRecord>(store, &lookup))
        .await?
        .ok_or_else(|| ApiError::not_found("dispute", &key))?;
    if dispute.status != "open" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "decided",
            format!("this dispute was decided: {}", dispute.status),
        ));
    }
    let mut operations = Vec::new();
    match request.decision.as_str() {
        "reject" => dispute.status = "rejected".to_owned(),
        "refund" => {
            let payer = parse_account(&dispute.account)?;
            let reference = offpay_sms_tan::posting::Reference::parse(&dispute.reference)
                .ok_or_else(|| internal("stored reference"))?;
            let ledger_payer = records::ledger_account(&payer);
            let found = state
                .ledger
                .read(move |store| {
                    // Newest first, a bounded number of pages of the payer's history.
                    let mut before = None;
                    for _ in 0..DISPUTE_SEARCH_PAGES {
                        let page = store.history(
                            &ledger_payer,
                            before,
                            offpay_ledger::HISTORY_PAGE_MAX,
                        )?;
                        let found = page.iter().find(|record| {
                            record.transfer.debit_account == ledger_payer
                                && record.transfer.memo.starts_with("sms payment")
                                && process::reference_of(record.transfer.id.as_str()) == reference
                        });
                        if let Some(record) = found {
                            return Ok(Some(record.transfer.clone()));
                        }
                        match page.last() {
                            Some(last) if page.len() == offpay_ledger::HISTORY_PAGE_MAX => {
                                before = Some(last.sequence);
                            }
                            _ => break,
                        }
                    }
                    Ok(None)
                })
                .await?;
            let Some(paid) = found else {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_reference",
                    format!(
                        "account {payer} made no same-currency SMS payment with reference {reference} (cross-currency payments are refunded by hand)"
                    ),
                ));
            };
            let payee = paid.credit_account.clone();
            let amount = paid.amount;
            let id = TransferId::new(format!("sms-refund:{}", records::short_hash(&key)))
                .map_err(|_| internal("refund id"))?;
            // Paid back in the payee's currency to the payer; across currencies the operator
            // settles the difference by hand.
            operations.push(Operation::Transfer(Transfer {
                id: id.clone(),
                debit_account: payee,
                credit_account: records::ledger_account(&payer),
                amount,
                kind: TransferKind::Posted,
                memo: format!("sms dispute refund REF {reference}"),
            }));
            dispute.status = "refunded".to_owned();
            dispute.refund_transfer = Some(id.to_string());
        }
        other => {
            return Err(ApiError::bad_request(
                "invalid_decision",
                format!("decision {other:?} is not refund or reject"),
            ));
        }
    }
    dispute.note = request.note;
    operations.push(records::put(key.clone(), &dispute, Some(version)));
    commit_one(&state, operations).await?;
    let mut body = json!(dispute);
    body["key"] = json!(key);
    Ok(Json(body))
}

/// Body of `POST /api/v1/sms/terminals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTerminal {
    /// The merchant's receive number: payments at this terminal go there.
    payee: String,
}

async fn create_terminal(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<CreateTerminal>,
) -> Result<Response, ApiError> {
    let payee = parse_account(&request.payee)?;
    load_account_record(&state, payee).await?;
    let mut random = [0u8; 40];
    state
        .entropy
        .fill(&mut random)
        .map_err(|_| internal("no randomness"))?;
    let id = format!("t{}", hex::encode(&random[..8]));
    let secret = hex::encode(&random[8..]);
    random.fill(0);
    let record = TerminalRecord {
        version: records::FORMAT_VERSION,
        id: id.clone(),
        payee: payee.to_string(),
        secret_hash: super::web::sha256_hex(&secret),
        active: true,
        created_at_ms: state.now().0,
    };
    commit_one(
        &state,
        vec![records::put(records::terminal_key(&id), &record, Some(0))],
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "terminal_id": id,
            "payee": payee.to_string(),
            // Shown once; the server keeps only its hash.
            "token": format!("{id}.{secret}"),
        })),
    )
        .into_response())
}

/// Runs due scheduled payments, expires callbacks and sessions, once per
/// [`SCHEDULER_INTERVAL`]. Holds only a weak reference between passes.
pub async fn scheduler(state: Weak<AppState>) {
    loop {
        {
            let Some(state) = state.upgrade() else { return };
            if let Err(error) = scheduler_pass(&state).await {
                tracing::warn!(error = %error.message, "sms scheduler pass failed");
            }
        }
        tokio::time::sleep(SCHEDULER_INTERVAL).await;
    }
}

async fn scheduler_pass(state: &Arc<AppState>) -> Result<(), ApiError> {
    let rail: &SmsRail = &state.rails.sms;
    rail.ensure_settings(state).await?;
    let now = UnixSeconds(state.now().0 / 1000);
    let due = state
        .ledger
        .read(|store| store.records(records::NAMESPACE, "sched:", None, SCHEDULER_PAGE))
        .await?;
    for record in due {
        let Ok(scheduled) = serde_json::from_slice::<ScheduledRecord>(&record.value) else {
            continue;
        };
        if scheduled.due > now.0 {
            // Keys are ordered by due time: nothing later is due either.
            break;
        }
        let Some(payment) = scheduled.payment() else {
            continue;
        };
        let settings = rail.settings();
        let (payer, payee) = (payment.payer, payment.payee);
        let (payer_context, payee_context, loaded) = state
            .ledger
            .read(move |store| {
                let mut loaded = Loaded::default();
                let payer_context = process::load_payer(
                    store,
                    &mut loaded,
                    &PayerLookup::Account(payer),
                    &settings,
                    now,
                )?;
                let payee_context =
                    process::load_payee(store, &mut loaded, &payee, &payer, &settings, now)?;
                Ok((payer_context, payee_context, loaded))
            })
            .await?;
        let outcome = rail
            .engine()
            .execute_scheduled(&payment, payer_context, payee_context, now);
        let extra = vec![records::delete(record.key.clone(), Some(record.version))];
        match process::apply_outcome(
            state,
            rail,
            &outcome,
            &loaded,
            &ReplyRouting { inline_to: None },
            None,
            &payment.message_id,
            extra,
        )
        .await
        {
            Ok(applied) => tracing::info!(verdict = applied.verdict, "scheduled sms payment run"),
            Err(ApplyError::Conflict | ApplyError::Duplicate) => {}
            Err(ApplyError::Failed(error)) => return Err(error),
        }
    }
    let pending = state
        .ledger
        .read(|store| store.records(records::NAMESPACE, "pend:", None, SCHEDULER_PAGE))
        .await?;
    for record in pending {
        let Ok(stored) = serde_json::from_slice::<PendingRecord>(&record.value) else {
            continue;
        };
        let (Some(callback), Ok(reply_to)) =
            (stored.callback(), PhoneNumber::parse(&stored.reply_to))
        else {
            continue;
        };
        let Some(outcome) = rail.engine().expire_pending(&callback, &reply_to, now) else {
            continue;
        };
        let mut loaded = Loaded::default();
        loaded
            .pending
            .insert(record.key.clone(), (stored, record.version));
        match process::apply_outcome(
            state,
            rail,
            &outcome,
            &loaded,
            &ReplyRouting { inline_to: None },
            None,
            &format!("expire:{}", record.key),
            Vec::new(),
        )
        .await
        {
            Ok(_) | Err(ApplyError::Conflict | ApplyError::Duplicate) => {}
            Err(ApplyError::Failed(error)) => return Err(error),
        }
    }
    let sessions = state
        .ledger
        .read(|store| store.records(records::NAMESPACE, "sess:", None, SCHEDULER_PAGE))
        .await?;
    let now_ms = state.now().0;
    let expired: Vec<Operation> = sessions
        .into_iter()
        .filter(|record| {
            serde_json::from_slice::<SessionRecord>(&record.value)
                .map_or(true, |session| session.expires_at_ms <= now_ms)
        })
        .map(|record| records::delete(record.key, Some(record.version)))
        .collect();
    if !expired.is_empty() {
        let _ = state
            .ledger
            .commit(
                vec![Batch {
                    operations: expired,
                }],
                state.now(),
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use offpay_sms_tan::EnvelopeStatus;

    #[test]
    fn generated_account_numbers_have_twelve_digits_without_a_leading_zero() {
        for _ in 0..100 {
            let number = random_account_number(&offpay_operator::SeededEntropy::from_seed(1))
                .unwrap()
                .to_string();
            assert_eq!(number.len(), 12);
            assert!(!number.starts_with('0'));
        }
    }

    #[test]
    fn envelope_status_names_round_trip() {
        let euin = Euin::issued(263, 7).unwrap();
        let mut record = EnvelopeRecord::unallocated(&euin, RowCount::Twenty, None, 0);
        let account = AccountNumber::parse("901020377865").unwrap();
        let mut view = record.view().unwrap();
        view.status = EnvelopeStatus::Locked { account };
        record.update(view.used_rows, 5, view.status, None);
        assert_eq!(
            record.view().unwrap().status,
            EnvelopeStatus::Locked { account }
        );
        assert_eq!(envelope_json(&record)["status"], "locked");
    }
}
