//! Rail 4, microchecks: the routes of the Provisioning Agent (PA) and the Clearing and
//! Settlement Center (CSC), the mapping of HTTP to the rail's inputs and of its errors to HTTP,
//! and the runner of its decisions. Every rule is the rail's (`offpay_microcheck::operator`,
//! `offpay_microcheck::csc`).
//!
//! The PA key and the age key (which signs adulthood credentials) live in files under the data
//! directory (mode 0600), never in the database and never in logs. Payers and merchants are
//! registered by the operator; devices then authenticate every request with a signed statement
//! by their registered key. Deposits are cleared by the CSC (`deposit`), deciding each while
//! the one before commits (`pipeline`).

use std::path::Path;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use offpay_keynote::{Encoding, PrivateKey};
use offpay_ledger::{LedgerStore, Outcome};
use offpay_microcheck::UnixSeconds;
use offpay_microcheck::auth::fingerprint;
use offpay_microcheck::csc::{CountRecord, DepositBody};
use offpay_microcheck::limits::DEPOSIT_ITEMS_MAX;
use offpay_microcheck::operator::auth::SignedRequest;
use offpay_microcheck::operator::clearing::{self, DepositReport};
use offpay_microcheck::operator::pa::{
    self, DelegateSubPa, Dispute, Pa, RegisterMerchant, RegisterPayer,
};
use offpay_microcheck::operator::records::{
    self, MerchantRecord, PayerRecord, STRATEGY_KEY, StrategyRecord,
};
use offpay_microcheck::operator::{Fault, OperatorError};
use offpay_microcheck::request::purpose;
use offpay_microcheck::strategy::{Standing, Strategy};
use offpay_operator::{Attempt, Decision, Effects, Entropy, Loaded, RecordError};
use serde_json::{Value, json};

use crate::api::ApiJson;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::keyfile;
use crate::ledger::LedgerError;
use crate::routes::{ADMIN, EVERYONE, FINANCE, OperatorRoutes, PROVISIONING, READ, SUPPORT};
use crate::runner::{self, RunError};
use crate::{AppState, StartError};

mod deposit;
mod pipeline;

pub use offpay_microcheck::operator::records::NAMESPACE;

/// File (in the data directory) holding the PA's private key.
pub const PA_KEY_FILE: &str = "microcheck-pa.key";
/// File holding the age key, which signs adulthood credentials.
pub const AGE_KEY_FILE: &str = "microcheck-age.key";
/// Largest deposit request body.
pub const DEPOSIT_BODY_BYTES_MAX: usize = 32 * 1024 * 1024;

/// This rail's server-side state: the PA (with the age key) and the CSC's lock and overlay.
#[derive(Debug)]
pub struct MicrocheckRail {
    pa: Pa,
    csc: pipeline::Csc,
}

fn load_or_create_key(path: &Path, entropy: &dyn Entropy) -> Result<PrivateKey, StartError> {
    let (contents, _) = keyfile::read_or_create(path, || {
        let seed = keyfile::random(entropy, 32)?;
        let seed: &[u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| keyfile::invalid("seed length"))?;
        let key = PrivateKey::ed25519_from_seed(seed);
        let text = key
            .to_identifier(Encoding::Base64)
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        let mut line = zeroize::Zeroizing::new(Vec::with_capacity(text.len() + 1));
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n');
        Ok(line)
    })
    .map_err(keyfile::start_error("microcheck key", path))?;
    std::str::from_utf8(&contents)
        .map_err(|_| keyfile::invalid("not text"))
        .and_then(|text| {
            PrivateKey::parse(text.trim().as_bytes())
                .map_err(|error| keyfile::invalid(error.to_string()))
        })
        .and_then(|key| {
            // The server signs online, where a timing side channel can be measured: only
            // Ed25519 (the `rsa` crate's private-key operations are not constant time,
            // RUSTSEC-2023-0071; DSA needs a fresh secret nonce per signature).
            if key.algorithm() == offpay_keynote::KeyAlgorithm::Ed25519 {
                Ok(key)
            } else {
                let algorithm = match key.algorithm() {
                    offpay_keynote::KeyAlgorithm::Rsa => "an RSA",
                    offpay_keynote::KeyAlgorithm::Dsa => "a DSA",
                    _ => "another kind of",
                };
                Err(keyfile::invalid(format!(
                    "{algorithm} key; the server signs only with Ed25519 keys (move the file \
                     away to have a new one made)"
                )))
            }
        })
        .map_err(keyfile::start_error("microcheck key", path))
}

impl MicrocheckRail {
    /// Loads or creates this rail's keys under the data directory.
    pub fn start(
        config: &ServerConfig,
        entropy: &dyn Entropy,
    ) -> Result<MicrocheckRail, StartError> {
        crate::keyfile::create_private_dir_all(&config.data_dir).map_err(|source| {
            StartError::Io {
                context: format!("data directory {}", config.data_dir.display()),
                source,
            }
        })?;
        let pa = load_or_create_key(&config.data_dir.join(PA_KEY_FILE), entropy)?;
        let age = load_or_create_key(&config.data_dir.join(AGE_KEY_FILE), entropy)?;
        let pa = Pa::new(pa, age);
        tracing::info!(pa = %fingerprint(&pa.principal()), age = %fingerprint(&pa.age_principal()), "microcheck provisioning agent keys ready");
        Ok(MicrocheckRail {
            pa,
            csc: pipeline::Csc::default(),
        })
    }
}

/// Routes devices call, authenticated by signed statements.
pub fn device_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/microcheck/v1/pa", get(pa_info))
        .route("/microcheck/v1/payer/refresh", post(payer_refresh))
        .route("/microcheck/v1/payer/transaction", post(payer_transaction))
        .route("/microcheck/v1/payer/statement", post(payer_statement))
        .route("/microcheck/v1/merchant/refresh", post(merchant_refresh))
        .route(
            "/microcheck/v1/deposit",
            post(deposit).layer(DefaultBodyLimit::max(DEPOSIT_BODY_BYTES_MAX)),
        )
}

/// Operator routes (mounted under `/api/v1`, behind the operator token).
pub fn operator_routes() -> OperatorRoutes {
    OperatorRoutes::new()
        .get("/microcheck/strategy", READ, get_strategy)
        .put("/microcheck/strategy", ADMIN, put_strategy)
        .post("/microcheck/strategy", ADMIN, put_strategy)
        .post("/microcheck/payers", PROVISIONING, register_payer)
        .get("/microcheck/payers/{name}", EVERYONE, get_payer)
        .post("/microcheck/payers/{name}/dispute", FINANCE, dispute)
        .moves_money()
        .get(
            "/microcheck/payers/{name}/statement",
            READ,
            operator_statement,
        )
        .post("/microcheck/merchants", PROVISIONING, register_merchant)
        .post("/microcheck/sub-pa", ADMIN, delegate_sub_pa)
        .post("/microcheck/payers/{name}/block", SUPPORT, block_payer)
        .post("/microcheck/payers/{name}/unblock", SUPPORT, unblock_payer)
}

/// Background work: none (clearing runs when merchants deposit).
pub fn spawn_background(state: &Arc<AppState>) {
    let _ = state;
}

// ---------------------------------------------------------------------------------------------
// Mapping the rail's errors to HTTP, and running its decisions.

/// The HTTP answer to a rail error.
fn api(error: OperatorError) -> ApiError {
    if let OperatorError::Record(error) = error {
        return record_error(error);
    }
    let status = match error.fault() {
        Fault::Request => StatusCode::BAD_REQUEST,
        Fault::Unauthenticated => StatusCode::UNAUTHORIZED,
        Fault::Forbidden => StatusCode::FORBIDDEN,
        Fault::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%error, "microcheck operator error");
    }
    ApiError::new(status, error.code(), error.to_string())
}

/// The HTTP answer to a record that could not be read or written: the store's failure as the
/// ledger's, a corrupt record (named) as an internal error.
fn record_error(error: RecordError) -> ApiError {
    match error {
        RecordError::Store(error) => LedgerError::Store(error).into(),
        other => {
            tracing::error!(error = %other, "microcheck record");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                other.to_string(),
            )
        }
    }
}

fn internal(message: &str) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

/// Runs a rail load on the ledger's reader.
async fn read<T: Send + 'static>(
    state: &AppState,
    job: impl FnOnce(&mut dyn LedgerStore) -> Result<T, RecordError> + Send + 'static,
) -> Result<T, ApiError> {
    state
        .ledger
        .read(move |store| Ok(job(store)))
        .await?
        .map_err(record_error)
}

/// An error while running a decision: what to answer.
struct Failure(ApiError);

impl From<RunError> for Failure {
    fn from(error: RunError) -> Failure {
        Failure(match error {
            RunError::Ledger(error) => error.into(),
            RunError::Refused(refusal) => ApiError::refused(&refusal),
            other => ApiError::new(StatusCode::CONFLICT, "contention", other.to_string()),
        })
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        Failure(error)
    }
}

/// Runs the rail's `decide` on the record under `key` ([`runner::run`]).
async fn decide_on<R, T>(
    state: &AppState,
    key: String,
    mut decide: impl FnMut(&Loaded<R>) -> Result<(Effects, T), OperatorError>,
) -> Result<T, ApiError>
where
    R: offpay_operator::StoredRecord + Send + 'static,
{
    let load = || {
        let key = key.clone();
        async move {
            read(state, move |store| Loaded::<R>::read(store, &key))
                .await
                .map_err(Failure)
        }
    };
    runner::run(&state.ledger, state.now(), load, |loaded| {
        let (effects, reply) = decide(&loaded).map_err(|e| Failure(api(e)))?;
        Ok(Decision::commit(effects, reply))
    })
    .await
    .map_err(|Failure(error)| error)
}

/// Commits effects that read nothing (writes of the operator's own settings, idempotent
/// creations).
async fn commit(state: &AppState, effects: Effects) -> Result<Vec<Outcome>, ApiError> {
    match runner::commit(&state.ledger, effects, state.now()).await {
        Ok(Attempt::Done(outcomes)) => Ok(outcomes),
        Ok(Attempt::Conflict) => Err(Failure::from(RunError::Contention).0),
        Err(error) => Err(Failure::from(error).0),
    }
}

fn now_seconds(state: &AppState) -> UnixSeconds {
    UnixSeconds(state.now().0 / 1000)
}

/// The strategy in force (a stored one that does not decode is an error naming its key).
async fn strategy(state: &AppState) -> Result<Strategy, ApiError> {
    let stored = read(state, |store| {
        Loaded::<StrategyRecord>::read(store, STRATEGY_KEY).map(|loaded| loaded.value)
    })
    .await?;
    Ok(pa::strategy_in_force(
        stored.as_ref(),
        state.config.currency,
    ))
}

fn operator_accounts(
    state: &AppState,
    strategy: &Strategy,
) -> Result<Vec<offpay_ledger::Operation>, ApiError> {
    let currency = strategy
        .currency()
        .map_err(|e| api(OperatorError::usage(e)))?;
    Ok(crate::rails::operator_accounts(
        currency,
        state.config.currency,
    ))
}

/// A payer's record and standing.
async fn standing(state: &AppState, name: &str) -> Result<(PayerRecord, Standing), ApiError> {
    let (payer_key, bounces_key) = (
        records::payer_key(name),
        offpay_microcheck::csc::bounces_key(name),
    );
    let (payer, bounces) = read(state, move |store| {
        Ok((
            Loaded::<PayerRecord>::read(store, &payer_key)?.value,
            Loaded::<CountRecord>::read(store, &bounces_key)?.value,
        ))
    })
    .await?;
    let payer = payer.ok_or_else(|| ApiError::not_found("payer", name))?;
    let standing = pa::standing(&payer, bounces.as_ref());
    Ok((payer, standing))
}

async fn merchant_record(state: &AppState, id: &str) -> Result<MerchantRecord, ApiError> {
    pa::check_name(id).map_err(api)?;
    let key = records::merchant_key(id);
    let record = read(state, move |store| {
        Loaded::<MerchantRecord>::read(store, &key).map(|loaded| loaded.value)
    })
    .await?;
    record.ok_or_else(|| ApiError::not_found("merchant", id))
}

// ---------------------------------------------------------------------------------------------
// Operator API.

async fn get_strategy(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "strategy": strategy(&state).await? })))
}

async fn put_strategy(
    State(state): State<Arc<AppState>>,
    ApiJson(strategy): ApiJson<Strategy>,
) -> Result<Json<Value>, ApiError> {
    let mut effects = Effects::new();
    effects.write(pa::set_strategy(&strategy).map_err(api)?);
    commit(&state, effects).await?;
    tracing::info!(app_domain = %strategy.app_domain, tiers = strategy.tiers.len(), "microcheck strategy set");
    Ok(Json(json!({ "strategy": strategy })))
}

async fn register_payer(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<RegisterPayer>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    pa::check_name(&request.name).map_err(api)?;
    let strategy = strategy(&state).await?;
    let accounts = operator_accounts(&state, &strategy)?;
    // Which key clears as which payer is read by deposits before they take the CSC lock: those
    // that read it before this commit read it again.
    let csc = &state.rails.microcheck.csc;
    let now = now_seconds(&state);
    let locked = csc.lock().await;
    let answer = decide_on(&state, records::payer_key(&request.name), |existing| {
        pa::register_payer(&request, existing, &strategy, accounts.clone(), now)
    })
    .await?;
    csc.changed(&locked);
    drop(locked);
    tracing::info!(payer = %request.name, key = %answer["key_fingerprint"], "microcheck payer registered");
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn get_payer(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    pa::check_name(&name).map_err(api)?;
    let (payer, standing) = standing(&state, &name).await?;
    let account = records::payer_account(&name)
        .map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))?;
    let balance = state
        .ledger
        .read(move |store| store.account(&account))
        .await?;
    let balance = balance.map(|account| (account.balance(), account.currency));
    Ok(Json(pa::payer_view(&payer, &standing, balance)))
}

async fn dispute(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    ApiJson(request): ApiJson<Dispute>,
) -> Result<Json<Value>, ApiError> {
    pa::check_name(&name).map_err(api)?;
    let answer = decide_on(&state, records::payer_key(&name), |payer| {
        pa::dispute(payer, &request)
    })
    .await?;
    tracing::info!(payer = %name, disputes = %answer["disputes"], "microcheck dispute recorded");
    Ok(Json(answer))
}

/// The body of a block or unblock: `{}` or `{"reason": "…"}` (an empty body is `{}`).
fn block_request(body: &[u8]) -> Result<pa::BlockRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(pa::BlockRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("malformed", e.to_string()))
}

/// `POST /api/v1/microcheck/payers/{name}/block`: customer care blocks a payer (a lost or
/// stolen device, a fraud case); the rule is the rail's ([`pa::set_blocked`]).
async fn block_payer(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    set_blocked(&state, name, true, &body).await
}

/// `POST /api/v1/microcheck/payers/{name}/unblock`.
async fn unblock_payer(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    set_blocked(&state, name, false, &body).await
}

async fn set_blocked(
    state: &AppState,
    name: String,
    blocked: bool,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    pa::check_name(&name).map_err(api)?;
    let request = block_request(body)?;
    let now = now_seconds(state);
    let record = decide_on(state, records::payer_key(&name), |payer| {
        pa::set_blocked(payer, blocked, &request, now)
    })
    .await?;
    tracing::info!(payer = %name, blocked = record.blocked.is_some(), "microcheck payer block set");
    Ok(Json(json!({
        "payer": record.name,
        "blocked": record.blocked.is_some(),
        "blocked_at": record.blocked.as_ref().map(|b| pa::rfc3339_seconds(b.at)),
        "reason": record.blocked.as_ref().and_then(|b| b.reason.clone()),
    })))
}

async fn register_merchant(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<RegisterMerchant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let strategy = strategy(&state).await?;
    pa::check_name(&request.id).map_err(api)?;
    let accounts = operator_accounts(&state, &strategy)?;
    let (effects, record) = pa::register_merchant(&request, &strategy, accounts).map_err(api)?;
    commit(&state, effects).await?;
    tracing::info!(merchant = %record.id, app_domain = %record.app_domain, "microcheck merchant registered");
    let answer = state
        .rails
        .microcheck
        .pa
        .merchant_answer(&record, &strategy, now_seconds(&state))
        .map_err(api)?;
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn delegate_sub_pa(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<DelegateSubPa>,
) -> Result<Json<Value>, ApiError> {
    let strategy = strategy(&state).await?;
    let answer = state
        .rails
        .microcheck
        .pa
        .delegate(&request, &strategy, now_seconds(&state))
        .map_err(api)?;
    let sub_pa = pa::parse_key(&request.key).map(|key| fingerprint(&key));
    tracing::info!(sub_pa = %sub_pa.unwrap_or_default(), "microcheck sub-PA delegation issued");
    Ok(Json(answer))
}

async fn operator_statement(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    pa::check_name(&name).map_err(api)?;
    statement(&state, name, None).await
}

async fn statement(
    state: &AppState,
    name: String,
    after: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let payer = name.clone();
    let (charges, next) = read(state, move |store| {
        clearing::load_statement(store, &payer, after.as_deref())
    })
    .await?;
    Ok(Json(
        json!({ "payer": name, "charges": charges, "next_after": next }),
    ))
}

// ---------------------------------------------------------------------------------------------
// Device API.

async fn pa_info(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let strategy = strategy(&state).await?;
    Ok(Json(state.rails.microcheck.pa.info(&strategy)))
}

async fn authenticated_payer(
    state: &AppState,
    request: &SignedRequest,
    purpose: &str,
) -> Result<(PayerRecord, Standing), ApiError> {
    pa::check_name(&request.who).map_err(api)?;
    let (payer, standing) = standing(state, &request.who).await?;
    let registered = payer.principal().map_err(record_error)?;
    request
        .authenticate(purpose, &registered, now_seconds(state))
        .map_err(api)?;
    Ok((payer, standing))
}

async fn authenticated_merchant(
    state: &AppState,
    request: &SignedRequest,
    purpose: &str,
) -> Result<MerchantRecord, ApiError> {
    let record = merchant_record(state, &request.who).await?;
    let registered = record.principal().map_err(record_error)?;
    request
        .authenticate(purpose, &registered, now_seconds(state))
        .map_err(api)?;
    Ok(record)
}

async fn payer_refresh(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SignedRequest>,
) -> Result<Json<Value>, ApiError> {
    let result = payer_refresh_answer(&state, &request).await;
    state.metrics.sync("microcheck_payer", status_of(&result));
    result
}

/// The HTTP status a handler's result answers with, for the metrics.
fn status_of<T>(result: &Result<T, ApiError>) -> StatusCode {
    result
        .as_ref()
        .map_or_else(|error| error.status, |_| StatusCode::OK)
}

async fn payer_refresh_answer(
    state: &Arc<AppState>,
    request: &SignedRequest,
) -> Result<Json<Value>, ApiError> {
    let (state, request) = (state.clone(), request);
    let (payer, standing) = authenticated_payer(&state, request, purpose::REFRESH).await?;
    let strategy = strategy(&state).await?;
    let answer = state
        .rails
        .microcheck
        .pa
        .refresh(&payer, &standing, &strategy, now_seconds(&state))
        .map_err(api)?;
    tracing::info!(payer = %payer.name, issued = %answer["credentials"].as_array().map_or(0, Vec::len), strikes = standing.strikes(), "microcheck credentials issued");
    Ok(Json(answer))
}

async fn payer_transaction(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SignedRequest>,
) -> Result<Json<Value>, ApiError> {
    let (payer, _) = authenticated_payer(&state, &request, purpose::TRANSACTION).await?;
    let body = request.body_value().map_err(api)?;
    let strategy = strategy(&state).await?;
    let now = now_seconds(&state);
    let name = payer.name.clone();
    // The hold this writes is something the CSC's overlay does not track, and the balance it
    // counts on must include the deposits the CSC has queued: decide under the CSC lock, read
    // after what is queued, and move the epoch once it is written, so that no deposit clears an
    // offline microcheck with money this credential holds (and none decided before misses it).
    let csc = &state.rails.microcheck.csc;
    let locked = csc.lock().await;
    let load = || {
        let name = name.clone();
        let state = &state;
        async move {
            let loaded = state
                .ledger
                .read_after_queued({
                    let name = name.clone();
                    move |store| Ok(pa::load_transaction(store, &name))
                })
                .await
                .map_err(|e| Failure(e.into()))?
                .map_err(|e| Failure(record_error(e)))?;
            loaded.ok_or_else(|| Failure(ApiError::not_found("payer", &name)))
        }
    };
    let decided = runner::run(&state.ledger, state.now(), load, |loaded| {
        let (effects, answer, offer) = state
            .rails
            .microcheck
            .pa
            .transaction(&loaded, &strategy, &body, now)
            .map_err(|e| Failure(api(e)))?;
        Ok(Decision::commit(effects, (answer, offer)))
    })
    .await;
    csc.changed(&locked);
    drop(locked);
    let (answer, offer) = decided.map_err(|Failure(error)| error)?;
    tracing::info!(payer = %name, merchant = %offer.merchant, amount = %offer.amount, currency = %offer.currency, "microcheck transaction credential issued");
    Ok(Json(answer))
}

async fn payer_statement(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SignedRequest>,
) -> Result<Json<Value>, ApiError> {
    let (payer, _) = authenticated_payer(&state, &request, purpose::STATEMENT).await?;
    let after = request.body_value().map_err(api)?["after"]
        .as_str()
        .map(str::to_owned);
    statement(&state, payer.name, after).await
}

async fn merchant_refresh(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SignedRequest>,
) -> Result<Json<Value>, ApiError> {
    let result = merchant_refresh_answer(&state, &request).await;
    state
        .metrics
        .sync("microcheck_merchant", status_of(&result));
    result
}

async fn merchant_refresh_answer(
    state: &Arc<AppState>,
    request: &SignedRequest,
) -> Result<Json<Value>, ApiError> {
    let (state, request) = (state.clone(), request);
    let record = authenticated_merchant(&state, request, purpose::MERCHANT_REFRESH).await?;
    let strategy = strategy(&state).await?;
    let answer = state
        .rails
        .microcheck
        .pa
        .merchant_answer(&record, &strategy, now_seconds(&state))
        .map_err(api)?;
    Ok(Json(answer))
}

async fn deposit(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SignedRequest>,
) -> Result<Json<DepositReport>, ApiError> {
    let result = deposit_answer(&state, &request).await;
    let status = status_of(&result);
    state.metrics.deposits.add(
        &[
            ("rail", "microcheck"),
            ("outcome", crate::metrics::outcome_of(status)),
        ],
        1,
    );
    result
}

async fn deposit_answer(
    state: &Arc<AppState>,
    request: &SignedRequest,
) -> Result<Json<DepositReport>, ApiError> {
    let (state, request) = (state.clone(), request);
    let record = authenticated_merchant(&state, request, purpose::DEPOSIT).await?;
    let body: DepositBody = serde_json::from_str(request.body.get())
        .map_err(|e| ApiError::bad_request("malformed", format!("deposit: {e}")))?;
    if body.items.len() > DEPOSIT_ITEMS_MAX {
        return Err(ApiError::bad_request(
            "deposit_too_large",
            format!("at most {DEPOSIT_ITEMS_MAX} microchecks per deposit"),
        ));
    }
    let items = body.unpack().map_err(|r| api(OperatorError::Refused(r)))?;
    let strategy = strategy(&state).await?;
    let report =
        deposit::clear_deposit(&state, &record, &strategy, &items, now_seconds(&state)).await?;
    Ok(Json(report))
}
