//! The operator's API for this rail (under `/api/v1/sms`, behind the operator token): settings,
//! SMS accounts, envelopes (issue, print, import, bind at an agent, unlock), disputes, merchant
//! terminals, the outbox; and the scheduler's loop. Each route maps HTTP onto a load and a
//! decision of the rail (`offpay_sms_tan::operator::admin` and `::scheduler`) run by the runner.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use offpay_ledger::{LedgerStore, Timestamp};
use offpay_operator::{Decision, Effects, Loaded, RecordError};
use offpay_sms_tan::operator::admin::{
    self, AccountChanges, CreateAccount, DisputeRuling, IssueEnvelopes, account_number, parse_euin,
};
use offpay_sms_tan::operator::inbound::InboundSms;
use offpay_sms_tan::operator::records::{
    self, AccountRecord, DISPUTE_PREFIX, EnvelopeRecord, NAMESPACE, OUTBOUND_PREFIX,
    PENDING_PREFIX, PendingRecord, SCHEDULED_PREFIX, SENT_PREFIX, SESSION_PREFIX, status_name,
};
use offpay_sms_tan::operator::scheduler::{self, SCHEDULER_PAGE};
use offpay_sms_tan::operator::settings::SettingsForm;
use offpay_sms_tan::operator::upgrade::{
    self, SealPhase, SealRun, SealStage, SealTally, StartPlan,
};
use offpay_sms_tan::{PdfOptions, PhoneNumber, render_envelopes_pdf_in};
use serde::Deserialize;
use serde_json::{Value, json};

use super::inbound::handle_inbound;
use super::{SmsFailure, balance_changed};
use crate::AppState;
use crate::api::ApiJson;
use crate::error::ApiError;
use crate::routes::{
    ADMIN, EVERYONE, FINANCE, OperatorRoutes, PROVISIONING, READ, SUPPORT, SUPPORT_OR_FINANCE,
};
use crate::runner;

/// Most records one listing returns.
pub const LIST_LIMIT_MAX: usize = 1000;
/// Records one listing returns unless asked for another number.
pub const LIST_LIMIT_DEFAULT: usize = 100;
/// How often the scheduler looks for due payments and expired callbacks.
pub const SCHEDULER_INTERVAL: Duration = Duration::from_secs(1);

/// Routes under `/api/v1`.
pub fn routes() -> OperatorRoutes {
    OperatorRoutes::new()
        .get("/sms/settings", READ, get_settings)
        .put("/sms/settings", ADMIN, put_settings)
        .post("/sms/settings", ADMIN, put_settings)
        .get("/sms/status", READ, status)
        .post("/sms/accounts", PROVISIONING, create_account)
        .get("/sms/accounts/{number}", EVERYONE, get_account)
        .patch("/sms/accounts/{number}", SUPPORT_OR_FINANCE, update_account)
        .post("/sms/accounts/{number}", SUPPORT_OR_FINANCE, update_account)
        .post("/sms/envelopes/issue", PROVISIONING, issue_envelopes)
        .post("/sms/envelopes/print", PROVISIONING, print_envelopes)
        .post("/sms/envelopes/import", PROVISIONING, import_envelope)
        .get("/sms/envelopes/{euin}", EVERYONE, get_envelope)
        .post("/sms/envelopes/{euin}/bind", PROVISIONING, bind_envelope)
        .post("/sms/envelopes/{euin}/unlock", SUPPORT, unlock_envelope)
        .post("/sms/envelopes/{euin}/replace", SUPPORT, replace_envelope)
        .get("/sms/disputes", READ, list_disputes)
        .post("/sms/disputes/{key}/decide", FINANCE, decide_dispute)
        .moves_money()
        .post("/sms/terminals", PROVISIONING, create_terminal)
        .get("/sms/outbox", READ, outbox)
        .get("/sms/scheduled", READ, list_scheduled)
        .get("/sms/sent", READ, list_sent)
        // Moves money, but its answer (the reply SMS) may hold a TAN, so no answer is kept for
        // replays of it: it is not marked as moving money.
        .post("/sms/simulate", ADMIN, simulate)
        // Seals records without a MAC, trusting the database as it is: the admin's call.
        .post("/sms/records/seal", ADMIN, seal_records)
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

/// Reads with `read` in one read transaction.
async fn read<T, F>(state: &AppState, read: F) -> Result<T, SmsFailure>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn LedgerStore) -> Result<T, SmsFailure> + Send + 'static,
{
    state.ledger.read(move |store| Ok(read(store))).await?
}

/// Runs a load (one read transaction each time) and a decision of the rail to a commit.
async fn run<L, T, Load, Decide>(
    state: &Arc<AppState>,
    now: Timestamp,
    load: Load,
    decide: Decide,
) -> Result<T, ApiError>
where
    L: Send + 'static,
    Load: Fn(&mut dyn LedgerStore) -> Result<L, SmsFailure> + Clone + Send + 'static,
    Decide: FnMut(L) -> Result<Decision<T>, SmsFailure>,
{
    let answer = runner::run_with(
        &state.ledger,
        now,
        || loaded(state, load.clone()),
        decide,
        balance_changed,
    )
    .await?;
    Ok(answer)
}

fn loaded<L, Load>(
    state: &Arc<AppState>,
    load: Load,
) -> impl Future<Output = Result<L, SmsFailure>> + use<L, Load>
where
    L: Send + 'static,
    Load: FnOnce(&mut dyn LedgerStore) -> Result<L, SmsFailure> + Send + 'static,
{
    let state = state.clone();
    async move { read(&state, load).await }
}

async fn get_settings(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    state.rails.sms.ensure_settings(&state).await?;
    Ok(Json(json!(state.rails.sms.operator().settings().form())))
}

async fn put_settings(
    State(state): State<Arc<AppState>>,
    ApiJson(form): ApiJson<SettingsForm>,
) -> Result<Json<Value>, ApiError> {
    let rail = &state.rails.sms;
    let settings = form.settings().map_err(SmsFailure::from)?;
    // Validated whole (the engine is built on them) before anything is stored.
    let operator = rail
        .operator_for(settings.clone(), &state.config)
        .map_err(SmsFailure::from)?;
    let write = admin::store_settings(&settings, operator.master()).map_err(SmsFailure::from)?;
    run(
        &state,
        state.now(),
        |_| Ok(()),
        move |()| {
            let mut effects = Effects::new();
            effects.write(write.clone());
            Ok(Decision::commit(effects, ()))
        },
    )
    .await?;
    rail.install(operator);
    Ok(Json(json!(settings.form())))
}

async fn status(State(state): State<Arc<AppState>>) -> Json<Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let rail = &state.rails.sms;
    Json(json!({
        "master_key_fingerprint": hex::encode(rail.fingerprint()),
        "kannel": rail.outbound_gateway().is_some_and(|gateway| gateway.name() == "kannel"),
        "gateway": rail.outbound_gateway().map(|gateway| gateway.name()),
        "inbound": rail.metrics.inbound.load(Relaxed),
        "duplicates": rail.metrics.duplicates.load(Relaxed),
        "reruns": rail.metrics.reruns.load(Relaxed),
        "sent": rail.metrics.sent.load(Relaxed),
        "send_failures": rail.metrics.send_failures.load(Relaxed),
    }))
}

fn account_json(record: &AccountRecord, balance: Option<String>) -> Value {
    json!({
        "receive_number": record.receive_number.to_string(),
        "ledger_account": records::ledger_account(&record.receive_number).as_str(),
        "currency": record.currency.code(),
        "active": record.active,
        "bound_phones": record.bound_phones.iter().map(PhoneNumber::as_str).collect::<Vec<_>>(),
        "notify_phone": record.notify_phone.as_ref().map(PhoneNumber::as_str),
        "require_pay_number": record.require_pay_number,
        "current_envelope": record.current_envelope.map(|euin| euin.to_string()),
        "limits": record.limits_wire(),
        "dialback_threshold_minor": record.dialback_threshold.map(|amount| amount.minor()),
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
    let plan = request
        .plan(state.config.currency, state.config.default_country)
        .map_err(SmsFailure::from)?;
    let operator = rail.operator();
    let now = state.now();
    let load_plan = plan.clone();
    let created = run(
        &state,
        now,
        move |store| Ok(load_plan.load(store)?),
        |existing| {
            admin::decide_new_account(existing, &plan, &operator, state.entropy.as_ref(), now.0)
                .map_err(SmsFailure::from)
        },
    )
    .await?;
    rail.cache
        .forget([records::account_key(&created.record.receive_number).as_str()]);
    let mut body = account_json(&created.record, None);
    // The pay number is shown once, here, and never stored in clear.
    body["pay_number"] = json!(created.pay_number.to_string());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn load_account(
    state: &Arc<AppState>,
    number: offpay_sms_tan::AccountNumber,
) -> Result<(AccountRecord, String), ApiError> {
    let found = read(state, move |store| {
        let loaded = Loaded::<AccountRecord>::read(store, &records::account_key(&number))?;
        let Some(record) = loaded.value else {
            return Ok(None);
        };
        let minor = store
            .account(&records::ledger_account(&number))
            .map_err(RecordError::from)?
            .map_or(0, |account| account.balance());
        let balance = offpay_ledger::Decimal::new(i128::from(minor), record.currency).to_string();
        Ok(Some((record, balance)))
    })
    .await?;
    found.ok_or_else(|| ApiError::not_found("sms_account", &number.to_string()))
}

async fn get_account(
    State(state): State<Arc<AppState>>,
    Path(number): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let number = account_number(&number).map_err(SmsFailure::from)?;
    let (record, balance) = load_account(&state, number).await?;
    Ok(Json(account_json(&record, Some(balance))))
}

async fn update_account(
    State(state): State<Arc<AppState>>,
    Path(number): Path<String>,
    ApiJson(changes): ApiJson<AccountChanges>,
) -> Result<Json<Value>, ApiError> {
    let number = account_number(&number).map_err(SmsFailure::from)?;
    let key = records::account_key(&number);
    let load_key = key.clone();
    let operator = state.rails.sms.operator();
    let record = run(
        &state,
        state.now(),
        move |store| Ok(Loaded::<AccountRecord>::read(store, &load_key)?),
        |loaded| {
            admin::decide_account_changes(
                loaded,
                &number,
                &changes,
                operator.master(),
                state.config.default_country,
            )
            .map_err(SmsFailure::from)
        },
    )
    .await?;
    state.rails.sms.cache.forget([key.as_str()]);
    Ok(Json(account_json(&record, None)))
}

async fn issue_envelopes(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<IssueEnvelopes>,
) -> Result<Response, ApiError> {
    let rail = &state.rails.sms;
    rail.ensure_settings(&state).await?;
    request.check().map_err(SmsFailure::from)?;
    let operator = rail.operator();
    let prefix = operator.settings().euin_prefix;
    let now = state.now();
    let (euins, rows) = run(
        &state,
        now,
        |store| Ok(IssueEnvelopes::load(store)?),
        |serial| {
            request
                .decide(serial, prefix, operator.master(), now.0)
                .map_err(SmsFailure::from)
        },
    )
    .await?;
    let euins: Vec<String> = euins.iter().map(ToString::to_string).collect();
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
    /// The language of the printed instructions (`en`, `sw`, `fr` or the language's name);
    /// absent: the operator's default language.
    language: Option<String>,
}

async fn print_envelopes(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<PrintEnvelopes>,
) -> Result<Response, ApiError> {
    let rail = &state.rails.sms;
    rail.ensure_settings(&state).await?;
    let language = match request.language.as_deref() {
        None => rail.operator().default_language(),
        Some(text) => text.parse::<offpay_text::Language>().map_err(|error| {
            ApiError::bad_request("invalid_language", format!("{text:?}: {error}"))
        })?,
    };
    let euins = admin::print_request(&request.euins).map_err(SmsFailure::from)?;
    let lookup = euins.clone();
    let stored = read(&state, move |store| Ok(admin::load_print(store, &lookup)?)).await?;
    let rows = admin::print_rows(&euins, &stored).map_err(SmsFailure::from)?;
    let operator = rail.operator();
    let options = PdfOptions {
        operator_name: operator.settings().operator_name.clone(),
        sms_number: operator.settings().sms_number.clone(),
    };
    let pdf = tokio::task::spawn_blocking(move || {
        render_envelopes_pdf_in(
            language,
            operator.master(),
            &euins,
            rows,
            &options,
            &mut |_, _| {},
        )
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
    let (envelope, rows) = admin::import_request(&request.text).map_err(SmsFailure::from)?;
    let operator = state.rails.sms.operator();
    let now = state.now();
    let key = records::envelope_key(&envelope.euin);
    let record = run(
        &state,
        now,
        move |store| Ok(Loaded::<EnvelopeRecord>::read(store, &key)?),
        |existing| {
            admin::decide_import(existing, &envelope, rows, &operator, now.0)
                .map_err(SmsFailure::from)
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "euin": record.view.euin.to_string(), "rows": rows.get(), "status": "unallocated", "sealed": true })),
    )
        .into_response())
}

fn envelope_json(record: &EnvelopeRecord) -> Value {
    let view = &record.view;
    let account = match view.status {
        offpay_sms_tan::EnvelopeStatus::Active { account }
        | offpay_sms_tan::EnvelopeStatus::Locked { account } => Some(account.to_string()),
        _ => None,
    };
    json!({
        "euin": view.euin.to_string(),
        "rows": view.rows.get(),
        "free_rows": view.free_rows(),
        "used_rows": view.used_rows.iter().collect::<Vec<u8>>(),
        "consecutive_failures": view.consecutive_failures,
        "status": status_name(&view.status),
        "account": account,
        "imported": record.imported(),
    })
}

async fn get_envelope(
    State(state): State<Arc<AppState>>,
    Path(euin): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let euin = parse_euin(&euin).map_err(SmsFailure::from)?;
    let loaded = read(&state, move |store| {
        Ok(Loaded::<EnvelopeRecord>::read(
            store,
            &records::envelope_key(&euin),
        )?)
    })
    .await?;
    let record = loaded
        .value
        .ok_or_else(|| ApiError::not_found("envelope", &euin.to_string()))?;
    Ok(Json(envelope_json(&record)))
}

/// Body of `POST /api/v1/sms/envelopes/{euin}/bind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindEnvelope {
    /// The account's receive number.
    account: String,
}

async fn bind_envelope(
    State(state): State<Arc<AppState>>,
    Path(euin): Path<String>,
    ApiJson(request): ApiJson<BindEnvelope>,
) -> Result<Json<Value>, ApiError> {
    let euin = parse_euin(&euin).map_err(SmsFailure::from)?;
    let account = account_number(&request.account).map_err(SmsFailure::from)?;
    let operator = state.rails.sms.operator();
    let now = state.now();
    let record = run(
        &state,
        now,
        move |store| Ok(admin::load_bind(store, &euin, &account)?),
        |load| {
            let tampered = load.tampered(operator.master());
            admin::refuse_tampered(&tampered, now, || {
                admin::decide_bind(load, &euin, &account, &operator, now)
            })
            .map_err(SmsFailure::from)
        },
    )
    .await?
    .map_err(SmsFailure::from)?;
    state.rails.sms.cache.forget([
        records::envelope_key(&euin).as_str(),
        records::account_key(&account).as_str(),
    ]);
    Ok(Json(envelope_json(&record)))
}

async fn replace_envelope(
    State(state): State<Arc<AppState>>,
    Path(euin): Path<String>,
    ApiJson(request): ApiJson<admin::ReplaceEnvelope>,
) -> Result<Json<Value>, ApiError> {
    let euin = parse_euin(&euin).map_err(SmsFailure::from)?;
    let account = account_number(&request.account).map_err(SmsFailure::from)?;
    let operator = state.rails.sms.operator();
    let now = state.now();
    let (record, retired) = run(
        &state,
        now,
        move |store| Ok(admin::load_bind(store, &euin, &account)?),
        |load| {
            let tampered = load.tampered(operator.master());
            admin::refuse_tampered(&tampered, now, || {
                admin::decide_replace(load, &euin, &account, &request, &operator, now)
            })
            .map_err(SmsFailure::from)
        },
    )
    .await?
    .map_err(SmsFailure::from)?;
    state.rails.sms.cache.forget([
        records::envelope_key(&euin).as_str(),
        records::envelope_key(&retired).as_str(),
        records::account_key(&account).as_str(),
    ]);
    Ok(Json(envelope_json(&record)))
}

async fn unlock_envelope(
    State(state): State<Arc<AppState>>,
    Path(euin): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let euin = parse_euin(&euin).map_err(SmsFailure::from)?;
    let operator = state.rails.sms.operator();
    let now = state.now();
    let key = records::envelope_key(&euin);
    let load_key = key.clone();
    let record = run(
        &state,
        now,
        move |store| Ok(Loaded::<EnvelopeRecord>::read(store, &load_key)?),
        |loaded| {
            let tampered: Vec<_> = admin::tampered_envelope(&loaded, operator.master())
                .into_iter()
                .collect();
            admin::refuse_tampered(&tampered, now, || {
                admin::decide_unlock(loaded, &euin, &operator, now)
            })
            .map_err(SmsFailure::from)
        },
    )
    .await?
    .map_err(SmsFailure::from)?;
    state.rails.sms.cache.forget([key.as_str()]);
    Ok(Json(envelope_json(&record)))
}

/// Query of listings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// The list query, or why it does not parse.
type ListQueryResult = Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>;

/// A page of the stored records under `prefix`, each with its key, as `{field: [...]}`.
async fn keyed_list(
    state: &Arc<AppState>,
    prefix: &'static str,
    query: ListQueryResult,
    field: &str,
) -> Result<Json<Value>, ApiError> {
    // A query that does not parse is a 400 in the API's error format (not axum's plain text).
    let Query(query) = query
        .map_err(|rejection| ApiError::bad_request("malformed_query", rejection.body_text()))?;
    let limit = query
        .limit
        .unwrap_or(LIST_LIMIT_DEFAULT)
        .clamp(1, LIST_LIMIT_MAX);
    let page = state
        .ledger
        .read(move |store| store.records(NAMESPACE, prefix, query.after.as_deref(), limit))
        .await?;
    let items: Vec<Value> = page
        .into_iter()
        .filter_map(|record| match serde_json::from_slice::<Value>(&record.value) {
            Ok(mut value) => {
                value["key"] = json!(record.key);
                Some(value)
            }
            Err(error) => {
                tracing::error!(key = %record.key, %error, "an SMS record is not JSON; not listed");
                None
            }
        })
        .collect();
    Ok(Json(json!({ field: items })))
}

async fn list_disputes(
    State(state): State<Arc<AppState>>,
    query: ListQueryResult,
) -> Result<Json<Value>, ApiError> {
    keyed_list(&state, DISPUTE_PREFIX, query, "disputes").await
}

/// An SMS waiting in the outbox or handed to the gateway, as the operator API shows it to every
/// role: recipient, length, status, attempts and times — never its text, which may hold a used
/// bank row's TAN or the payer's grid codes (echoed instructions). What the text was is not
/// needed to run the queue (the rail resends it itself); dead letters keep none.
fn without_text(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        let text = object.remove("text");
        let chars = text
            .as_ref()
            .and_then(Value::as_str)
            .map_or(0, |text| text.chars().count());
        object.remove("text_hash");
        object.insert("text_chars".into(), json!(chars));
        object.insert("text_kept".into(), json!(chars > 0));
    }
    value
}

/// [`keyed_list`] of SMS texts, each shown [`without_text`].
async fn keyed_list_without_texts(
    state: &Arc<AppState>,
    prefix: &'static str,
    query: ListQueryResult,
    field: &str,
) -> Result<Json<Value>, ApiError> {
    let Json(mut answer) = keyed_list(state, prefix, query, field).await?;
    if let Some(items) = answer.get_mut(field).and_then(Value::as_array_mut) {
        for item in items.iter_mut() {
            *item = without_text(item.take());
        }
    }
    Ok(Json(answer))
}

async fn outbox(
    State(state): State<Arc<AppState>>,
    query: ListQueryResult,
) -> Result<Json<Value>, ApiError> {
    keyed_list_without_texts(&state, OUTBOUND_PREFIX, query, "outbox").await
}

async fn list_sent(
    State(state): State<Arc<AppState>>,
    query: ListQueryResult,
) -> Result<Json<Value>, ApiError> {
    keyed_list_without_texts(&state, SENT_PREFIX, query, "sent").await
}

async fn list_scheduled(
    State(state): State<Arc<AppState>>,
    query: ListQueryResult,
) -> Result<Json<Value>, ApiError> {
    keyed_list(&state, SCHEDULED_PREFIX, query, "scheduled").await
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
    let from = PhoneNumber::parse(&request.from).map_err(|_| {
        ApiError::bad_request(
            "invalid_phone",
            format!("{:?} is not a phone number", request.from),
        )
    })?;
    let answer = handle_inbound(
        &state,
        InboundSms {
            gateway: "operator".into(),
            message_id: request.message_id,
            from,
            text: request.text,
            answer_inline: true,
        },
    )
    .await?;
    Ok(Json(json!({
        "replies": answer.replies,
        "duplicate": answer.duplicate,
        "verdict": answer.summary.verdict.word(),
        "queued": answer.summary.queued,
    })))
}

async fn decide_dispute(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    ApiJson(ruling): ApiJson<DisputeRuling>,
) -> Result<Json<Value>, ApiError> {
    let ruling = Arc::new(ruling);
    let (load_key, load_ruling) = (key.clone(), ruling.clone());
    let dispute = run(
        &state,
        state.now(),
        move |store| Ok(admin::load_dispute(store, &load_key, &load_ruling)?),
        |load| admin::decide_dispute(load, &key, &ruling).map_err(SmsFailure::from),
    )
    .await?;
    let mut body = json!(dispute.wire());
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
    let payee = account_number(&request.payee).map_err(SmsFailure::from)?;
    let now = state.now();
    let (record, token) = run(
        &state,
        now,
        move |store| {
            Ok(Loaded::<AccountRecord>::read(
                store,
                &records::account_key(&payee),
            )?)
        },
        |loaded| {
            admin::decide_new_terminal(loaded, &payee, state.entropy.as_ref(), now)
                .map_err(SmsFailure::from)
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "terminal_id": record.id,
            "payee": payee.to_string(),
            // Shown once; the server keeps only its hash.
            "token": token,
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

async fn page(
    state: &AppState,
    prefix: &'static str,
) -> Result<Vec<offpay_ledger::Record>, ApiError> {
    Ok(state
        .ledger
        .read(move |store| store.records(NAMESPACE, prefix, None, SCHEDULER_PAGE))
        .await?)
}

fn log_corrupt(errors: Vec<RecordError>) {
    for error in errors {
        tracing::error!(%error, "an SMS record does not decode; left for the operator");
    }
}

async fn scheduler_pass(state: &Arc<AppState>) -> Result<(), ApiError> {
    let rail = &state.rails.sms;
    rail.ensure_settings(state).await?;
    let operator = rail.operator();
    let now = state.now();
    let (due, errors) = scheduler::due_payments(&page(state, SCHEDULED_PREFIX).await?, now);
    log_corrupt(errors);
    for key in due {
        let load_operator = operator.clone();
        let ready = rail.operator_ready();
        let run_key = key.clone();
        let ran = run(
            state,
            now,
            move |store| {
                Ok(scheduler::load_scheduled(
                    store,
                    &run_key,
                    &load_operator,
                    now,
                )?)
            },
            |load| {
                scheduler::decide_scheduled(load, now, &operator, &ready).map_err(SmsFailure::from)
            },
        )
        .await;
        match ran {
            Ok(Some(summary)) => {
                tracing::info!(
                    verdict = summary.verdict.word(),
                    "scheduled sms payment run"
                );
                rail.committed(&summary);
            }
            Ok(None) => {}
            // The others are not held up; this one is tried again on the next pass.
            Err(error) => tracing::warn!(%key, error = %error.message, "scheduled sms payment"),
        }
    }
    let (expired, errors) = scheduler::expired_callbacks(&page(state, PENDING_PREFIX).await?, now);
    log_corrupt(errors);
    for key in expired {
        let run_key = key.clone();
        let ran = run(
            state,
            now,
            move |store| Ok(Loaded::<PendingRecord>::read(store, &run_key)?),
            |pending| scheduler::decide_expiry(pending, now, &operator).map_err(SmsFailure::from),
        )
        .await;
        match ran {
            Ok(Some(summary)) => rail.committed(&summary),
            Ok(None) => {}
            Err(error) => tracing::warn!(%key, error = %error.message, "expiring an sms callback"),
        }
    }
    let (effects, errors) = scheduler::session_sweep(&page(state, SESSION_PREFIX).await?, now);
    log_corrupt(errors);
    if !effects.is_empty() {
        // A session changed meanwhile is looked at again on the next pass.
        runner::commit(&state.ledger, effects, now)
            .await
            .map_err(SmsFailure::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use offpay_sms_tan::operator::records::EnvelopeRecord;
    use offpay_sms_tan::{AccountNumber, EnvelopeStatus, Euin, RowCount};

    #[test]
    fn envelopes_are_shown_with_their_status_and_used_rows() {
        let euin = Euin::issued(263, 7).unwrap();
        let mut record = EnvelopeRecord::unallocated(&euin, RowCount::Twenty, None, 0);
        let account = AccountNumber::parse("901020377865").unwrap();
        let mut used = record.view.used_rows;
        used.insert(3);
        record.update(used, 5, EnvelopeStatus::Locked { account }, None);
        let shown = envelope_json(&record);
        assert_eq!(shown["status"], "locked");
        assert_eq!(shown["account"], "901020377865");
        assert_eq!(shown["used_rows"], json!([3]));
        assert_eq!(shown["free_rows"], 19);
    }
}

// --- records an earlier release wrote without a MAC ----------------------------------------------

/// Body of `POST /api/v1/sms/records/seal`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealRequest {
    /// Must be true: the operator has checked the database and trusts it as it is.
    force: bool,
}

async fn seal_records(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SealRequest>,
) -> Result<Json<Value>, ApiError> {
    if !request.force {
        return Err(ApiError::bad_request(
            "force_required",
            "sealing seals every account, pending callback, scheduled payment and spending window \
             that has no MAC, \
             trusting the database as it is now; check it first, then send {\"force\": true}",
        ));
    }
    let tally = seal_phase(&state, SealPhase::Records, SealRun::Forced).await?;
    let windows = seal_phase(&state, SealPhase::SpendingWindows, SealRun::Forced).await?;
    let envelopes = seal_phase(&state, SealPhase::Envelopes, SealRun::Forced).await?;
    let settings = seal_phase(&state, SealPhase::Settings, SealRun::Forced).await?;
    tracing::warn!(
        accounts = tally.accounts,
        pending = tally.pending,
        scheduled = tally.scheduled,
        windows = windows.windows,
        envelopes = envelopes.envelopes,
        settings = settings.settings,
        mismatched =
            tally.mismatched + windows.mismatched + envelopes.mismatched + settings.mismatched,
        "an operator forced the sealing of SMS-TAN records without a MAC"
    );
    // The records' tally, and each later phase's beside it.
    let mut answer = json!(tally);
    answer["spending_windows"] = json!(windows);
    answer["envelopes"] = json!(envelopes);
    answer["settings"] = json!(settings);
    // Sealed settings take effect at once.
    state.rails.sms.forget_settings();
    Ok(Json(answer))
}

/// Seals the records of one phase that have no MAC.
async fn seal_phase(
    state: &Arc<AppState>,
    phase: SealPhase,
    run_by: SealRun,
) -> Result<SealTally, ApiError> {
    let operator = state.rails.sms.operator();
    let now = state.now();
    let mark = |stage: SealStage, tally: SealTally| {
        let operator = operator.clone();
        async move {
            run(
                state,
                now,
                move |store| Ok(upgrade::load_phase_marker(store, phase)?),
                |marker| {
                    upgrade::decide_phase_marker(
                        &marker,
                        phase,
                        run_by,
                        stage,
                        &tally,
                        operator.master(),
                        now,
                    )
                    .map_err(SmsFailure::from)
                },
            )
            .await
        }
    };
    mark(SealStage::Sealing, SealTally::default()).await?;
    let mut total = SealTally::default();
    for prefix in phase.prefixes().iter().copied() {
        let mut after: Option<String> = None;
        loop {
            let page_after = after.clone();
            let page = read(state, move |store| {
                Ok(upgrade::load_phase_page(
                    store,
                    phase,
                    prefix,
                    page_after.as_deref(),
                )?)
            })
            .await?;
            let (last_key, full) = (page.last_key.clone(), page.full);
            let page_after = after.clone();
            let sealed = run(
                state,
                now,
                move |store| {
                    Ok(upgrade::load_phase_page(
                        store,
                        phase,
                        prefix,
                        page_after.as_deref(),
                    )?)
                },
                |page| upgrade::decide_page(&page, operator.master()).map_err(SmsFailure::from),
            )
            .await?;
            state
                .rails
                .sms
                .cache
                .forget(sealed.sealed_keys.iter().map(String::as_str));
            total.add(&sealed);
            if !full {
                break;
            }
            after = last_key;
        }
    }
    mark(SealStage::Done, total.clone()).await?;
    Ok(total)
}

/// At start, before the scheduler or any message runs: records an earlier release wrote without
/// a MAC are sealed once, when the rail's rule (`upgrade::start_phase_plan`) says the database
/// is an earlier release's; otherwise the start says why it sealed nothing. Each phase (records,
/// then spending windows) is decided on its own marker.
pub async fn seal_at_start(state: &Arc<AppState>) -> Result<(), ApiError> {
    for phase in SealPhase::ALL {
        seal_phase_at_start(state, phase).await?;
    }
    Ok(())
}

async fn seal_phase_at_start(state: &Arc<AppState>, phase: SealPhase) -> Result<(), ApiError> {
    let operator = state.rails.sms.operator();
    let marker = read(state, move |store| {
        Ok(upgrade::load_phase_marker(store, phase)?)
    })
    .await?;
    if let Some(found) = &marker.value
        && found.stage == SealStage::Done
        && found.authentic_for(operator.master(), phase)
    {
        return Ok(());
    }
    let mut survey = SealTally::default();
    for prefix in phase.prefixes().iter().copied() {
        let mut after: Option<String> = None;
        loop {
            let page_after = after.clone();
            let page = read(state, move |store| {
                Ok(upgrade::load_phase_page(
                    store,
                    phase,
                    prefix,
                    page_after.as_deref(),
                )?)
            })
            .await?;
            survey.add(&upgrade::survey(&page, operator.master()));
            if !page.full {
                break;
            }
            after = page.last_key;
        }
    }
    let now = state.now();
    match upgrade::start_phase_plan(
        phase,
        marker.value.as_ref(),
        &survey,
        operator.master(),
        now,
    ) {
        StartPlan::Done => {}
        StartPlan::MarkOnly => {
            run(
                state,
                now,
                move |store| Ok(upgrade::load_phase_marker(store, phase)?),
                |marker| {
                    upgrade::decide_phase_marker(
                        &marker,
                        phase,
                        SealRun::Start,
                        SealStage::Done,
                        &SealTally::default(),
                        operator.master(),
                        now,
                    )
                    .map_err(SmsFailure::from)
                },
            )
            .await?;
        }
        StartPlan::Seal => {
            let tally = seal_phase(state, phase, SealRun::Start).await?;
            tracing::warn!(
                ?phase,
                accounts = tally.accounts,
                pending = tally.pending,
                scheduled = tally.scheduled,
                windows = tally.windows,
                mismatched = tally.mismatched,
                "sealed the SMS-TAN records an earlier release wrote without a MAC (trusting the \
                 database as it is now); records whose MAC is wrong stay refused"
            );
        }
        StartPlan::Refuse { reason } => {
            tracing::error!(
                ?phase,
                %reason,
                "SMS-TAN records without a MAC were not sealed; after checking the database, \
                 `offpay admin envelope seal-records --force` seals them"
            );
        }
    }
    Ok(())
}
