//! Rail 4, microchecks: the Provisioning Agent (PA) and the Clearing and Settlement Center (CSC).
//!
//! The PA key and the age key (which signs adulthood credentials) live in files under the data
//! directory (mode 0600), never in the database and never in logs. Payers and merchants are
//! registered by the operator; devices then authenticate every request with a signed statement
//! by their registered key (`offpay_microcheck::auth`). Deposits are cleared by the pure rules of
//! `offpay_microcheck::csc`. A bad microcheck is refused with its reason and the good ones post:
//! the CSC decides each one, then posts all it accepted in one ledger batch (payer debits,
//! merchant credits, charge records, fraud flags, and the counters once), and should
//! the ledger refuse that batch, it posts again without the microcheck the refusal names (see
//! `Poster`).

use offpay_operator::Entropy;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use offpay_keynote::{Encoding, Principal, PrivateKey};
use offpay_ledger::{
    AccountId, AccountKind, Amount, BATCH_OPERATIONS_MAX, BalanceLimits, Batch, BatchRefusal,
    Currency, LedgerStore, NewAccount, Operation, Outcome, RecordWrite, Refusal as LedgerRefusal,
    StoreError, Transfer, TransferId, TransferKind,
};
use offpay_microcheck::auth::{fingerprint, verify_statement, verify_statement_parts};
use offpay_microcheck::credential::{self, DelegationTemplate, TransactionTemplate};
use offpay_microcheck::csc::{
    self, Clearance, ClearingState, CountRecord, Debit, DepositBody, DepositItem, FraudRules,
    ItemOutcome, Location, MerchantAccount, PayerAccount, StateRecord,
};
use offpay_microcheck::limits::{CLOCK_SKEW_SECONDS_MAX, DEPOSIT_ITEMS_MAX, STATEMENT_PAGE_MAX};
use offpay_microcheck::offer::{Offer, valid_label, valid_merchant_id};
use offpay_microcheck::strategy::{Standing, Strategy};
use offpay_microcheck::{MerchantPolicy, Refusal, UnixSeconds};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::api::ApiJson;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::fraud::FraudFlag;
use crate::ledger::GroupNumber;
use crate::metrics::Metrics;
use crate::{AppState, StartError};

/// Record namespace of this rail.
pub const NAMESPACE: &str = "microcheck";
/// File (in the data directory) holding the PA's private key.
pub const PA_KEY_FILE: &str = "microcheck-pa.key";
/// File holding the age key, which signs adulthood credentials.
pub const AGE_KEY_FILE: &str = "microcheck-age.key";
/// Largest deposit request body.
pub const DEPOSIT_BODY_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Format version of payer and merchant records.
pub const RECORD_VERSION: u32 = 1;

mod pipeline;

use pipeline::{BatchFate, Csc, Locked, Snapshot, Versions};

/// This rail's server-side state: the PA and age keys, and the CSC's lock and overlay.
pub struct MicrocheckRail {
    pa: PrivateKey,
    age: PrivateKey,
    csc: Csc,
    serial: AtomicU64,
}

impl std::fmt::Debug for MicrocheckRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicrocheckRail")
            .field("pa", &fingerprint(&self.pa.principal()))
            .field("age", &fingerprint(&self.age.principal()))
            .finish_non_exhaustive()
    }
}

fn load_or_create_key(path: &Path, entropy: &dyn Entropy) -> Result<PrivateKey, StartError> {
    let context = || format!("microcheck key {}", path.display());
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::parse(text.trim().as_bytes()).map_err(|error| StartError::Io {
            context: context(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, error.to_string()),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = zeroize_seed();
            entropy.fill(&mut seed.0).map_err(|error| StartError::Io {
                context: context(),
                source: std::io::Error::other(error.to_string()),
            })?;
            let key = PrivateKey::ed25519_from_seed(&seed.0);
            let text = key
                .to_identifier(Encoding::Base64)
                .map_err(|error| StartError::Io {
                    context: context(),
                    source: std::io::Error::other(error.to_string()),
                })?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(|source| StartError::Io {
                context: context(),
                source,
            })?;
            use std::io::Write as _;
            file.write_all(text.as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.sync_all())
                .map_err(|source| StartError::Io {
                    context: context(),
                    source,
                })?;
            Ok(key)
        }
        Err(source) => Err(StartError::Io {
            context: context(),
            source,
        }),
    }
}

/// A seed wiped on drop.
struct Seed([u8; 32]);
impl Drop for Seed {
    fn drop(&mut self) {
        self.0 = [0; 32];
        std::hint::black_box(&self.0);
    }
}
fn zeroize_seed() -> Seed {
    Seed([0; 32])
}

impl MicrocheckRail {
    /// Loads or creates this rail's keys under the data directory.
    pub fn start(
        config: &ServerConfig,
        entropy: &dyn Entropy,
    ) -> Result<MicrocheckRail, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::Io {
            context: format!("data directory {}", config.data_dir.display()),
            source,
        })?;
        let pa = load_or_create_key(&config.data_dir.join(PA_KEY_FILE), entropy)?;
        let age = load_or_create_key(&config.data_dir.join(AGE_KEY_FILE), entropy)?;
        tracing::info!(
            pa = %fingerprint(&pa.principal()),
            age = %fingerprint(&age.principal()),
            "microcheck provisioning agent keys ready"
        );
        Ok(MicrocheckRail {
            pa,
            age,
            csc: Csc::default(),
            serial: AtomicU64::new(0),
        })
    }

    fn pa_identifier(&self) -> String {
        String::from_utf8_lossy(&self.pa.principal().to_identifier(Encoding::Base64)).into_owned()
    }

    fn age_identifier(&self) -> String {
        String::from_utf8_lossy(&self.age.principal().to_identifier(Encoding::Base64)).into_owned()
    }

    fn next_serial(&self, now: UnixSeconds) -> String {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        format!("c{}-{n}", now.0)
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
pub fn operator_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/microcheck/strategy",
            get(get_strategy).put(put_strategy).post(put_strategy),
        )
        .route("/microcheck/payers", post(register_payer))
        .route("/microcheck/payers/{name}", get(get_payer))
        .route("/microcheck/payers/{name}/dispute", post(dispute))
        .route(
            "/microcheck/payers/{name}/statement",
            get(operator_statement),
        )
        .route("/microcheck/merchants", post(register_merchant))
        .route("/microcheck/sub-pa", post(delegate_sub_pa))
}

/// Background work: none (clearing runs when merchants deposit).
pub fn spawn_background(state: &Arc<AppState>) {
    let _ = state;
}

// ---------------------------------------------------------------------------------------------
// Records.

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PayerRecord {
    v: u32,
    name: String,
    key: String,
    adult: bool,
    classes: Option<Vec<String>>,
    disputes: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct MerchantRecord {
    v: u32,
    id: String,
    key: String,
    app_domain: String,
    location: Location,
}

fn now_seconds(state: &AppState) -> UnixSeconds {
    UnixSeconds(state.now().0 / 1000)
}

fn put(key: String, value: &impl Serialize, expected_version: Option<u64>) -> Operation {
    put_bytes(
        key,
        serde_json::to_vec(value).unwrap_or_default(),
        expected_version,
    )
}

fn put_bytes(key: String, value: Vec<u8>, expected_version: Option<u64>) -> Operation {
    Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key,
        value: Some(value),
        expected_version,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(
    store: &mut dyn LedgerStore,
    key: &str,
) -> Result<Option<T>, StoreError> {
    Ok(store
        .record(NAMESPACE, key)?
        .and_then(|record| serde_json::from_slice(&record.value).ok()))
}

fn payer_account(name: &str) -> Result<AccountId, ApiError> {
    AccountId::new(format!("mc:payer:{name}"))
        .map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))
}

fn merchant_account(id: &str) -> Result<AccountId, ApiError> {
    AccountId::new(format!("mc:merchant:{id}"))
        .map_err(|e| ApiError::bad_request("invalid_merchant", e.to_string()))
}

fn usage(error: offpay_microcheck::Error) -> ApiError {
    ApiError::bad_request("invalid", error.to_string())
}

fn refused(status: StatusCode, refusal: &Refusal) -> ApiError {
    ApiError::new(status, refusal.code(), refusal.to_string())
}

async fn strategy(state: &AppState) -> Result<Strategy, ApiError> {
    let currency = state.config.currency;
    let stored: Option<Strategy> = state
        .ledger
        .read(|store| read_json(store, "strategy"))
        .await?;
    Ok(stored.unwrap_or_else(|| Strategy::default_for(currency)))
}

async fn commit_one(
    state: &AppState,
    operations: Vec<Operation>,
) -> Result<Vec<Outcome>, ApiError> {
    let mut results = state
        .ledger
        .commit(vec![Batch { operations }], state.now())
        .await?;
    match results.pop() {
        Some(Ok(outcomes)) => Ok(outcomes),
        Some(Err(refusal)) => Err(ApiError::refused(&refusal)),
        None => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the ledger returned no result",
        )),
    }
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
    strategy.validate().map_err(usage)?;
    commit_one(&state, vec![put("strategy".into(), &strategy, None)]).await?;
    tracing::info!(app_domain = %strategy.app_domain, tiers = strategy.tiers.len(), "microcheck strategy set");
    Ok(Json(json!({ "strategy": strategy })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterPayer {
    name: String,
    key: String,
    #[serde(default)]
    adult: bool,
    classes: Option<Vec<String>>,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_merchant_id(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_name",
            format!("{name:?}: 1 to 32 letters, digits, _ . -"),
        ))
    }
}

fn parse_key(text: &str) -> Result<Principal, ApiError> {
    let principal = Principal::parse(text.trim().as_bytes())
        .map_err(|e| ApiError::bad_request("invalid_key", e.to_string()))?;
    if principal.algorithm().is_none() {
        return Err(ApiError::bad_request(
            "invalid_key",
            "give a public key such as ed25519-base64:...",
        ));
    }
    Ok(principal)
}

async fn register_payer(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<RegisterPayer>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_name(&request.name)?;
    let key = parse_key(&request.key)?;
    if let Some(classes) = &request.classes
        && (classes.is_empty() || !classes.iter().all(|c| valid_label(c)))
    {
        return Err(ApiError::bad_request(
            "invalid_classes",
            "product classes are lower-case labels",
        ));
    }
    let strategy = strategy(&state).await?;
    let currency = strategy.currency().map_err(usage)?;
    let identifier = String::from_utf8_lossy(&key.to_identifier(Encoding::Base64)).into_owned();
    let existing: Option<PayerRecord> = {
        let key = format!("payer:{}", request.name);
        state
            .ledger
            .read(move |store| read_json(store, &key))
            .await?
    };
    let disputes = existing.as_ref().map_or(0, |p| p.disputes);
    let record = PayerRecord {
        v: RECORD_VERSION,
        name: request.name.clone(),
        key: identifier,
        adult: request.adult,
        classes: request.classes.clone(),
        disputes,
    };
    let account = payer_account(&request.name)?;
    let mut operations = crate::rails::operator_accounts(currency, state.config.currency);
    operations.push(Operation::CreateAccount(NewAccount {
        id: account.clone(),
        kind: AccountKind::Customer,
        currency,
        limits: BalanceLimits {
            balance_min: Some(0),
            balance_max: None,
        },
    }));
    operations.push(put(format!("payer:{}", request.name), &record, None));
    // A new key for an existing payer (a lost device): the old key stops clearing.
    if let Some(old) = existing
        .as_ref()
        .and_then(|p| Principal::parse(p.key.as_bytes()).ok())
        && old != key
    {
        operations.push(Operation::PutRecord(RecordWrite {
            namespace: NAMESPACE.to_owned(),
            key: format!("payerkey:{}", fingerprint(&old)),
            value: None,
            expected_version: None,
        }));
    }
    operations.push(put(
        format!("payerkey:{}", fingerprint(&key)),
        &json!({ "name": request.name }),
        None,
    ));
    {
        // Which key clears as which payer is read by deposits before they take the CSC lock:
        // those that read it before this commit read it again.
        let csc = &state.rails.microcheck.csc;
        let locked = csc.lock().await;
        commit_one(&state, operations).await?;
        csc.changed(&locked);
    }
    tracing::info!(payer = %request.name, key = %fingerprint(&key), "microcheck payer registered");
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "payer": record.name, "account": account.to_string(), "key_fingerprint": fingerprint(&key),
                     "adult": record.adult, "classes": record.classes }),
        ),
    ))
}

async fn standing(state: &AppState, name: &str) -> Result<(PayerRecord, Standing), ApiError> {
    let (payer_key, bounces_key) = (format!("payer:{name}"), format!("bounces:{name}"));
    let (payer, bounces): (Option<PayerRecord>, Option<Value>) = state
        .ledger
        .read(move |store| {
            Ok((
                read_json(store, &payer_key)?,
                read_json(store, &bounces_key)?,
            ))
        })
        .await?;
    let payer = payer.ok_or_else(|| ApiError::not_found("payer", name))?;
    let bounces = bounces
        .and_then(|v| v["count"].as_u64())
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    let standing = Standing {
        disputes: payer.disputes,
        bounces,
        classes: payer.classes.clone(),
    };
    Ok((payer, standing))
}

async fn get_payer(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    check_name(&name)?;
    let (payer, standing) = standing(&state, &name).await?;
    let account = payer_account(&name)?;
    let balance = state
        .ledger
        .read(move |store| store.account(&account))
        .await?;
    Ok(Json(json!({
        "payer": payer.name, "key_fingerprint": Principal::parse(payer.key.as_bytes()).map(|k| fingerprint(&k)).unwrap_or_default(),
        "adult": payer.adult, "classes": payer.classes, "disputes": standing.disputes, "bounces": standing.bounces,
        "balance": balance.map(|a| offpay_ledger::Decimal::new(i128::from(a.balance()), a.currency).to_string()),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisputeRequest {
    nonce: Option<String>,
}

async fn dispute(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    ApiJson(request): ApiJson<DisputeRequest>,
) -> Result<Json<Value>, ApiError> {
    check_name(&name)?;
    // Under the CSC lock, so that two disputes of one payer never lose each other's count
    // (clearing never writes the payer record).
    let _guard = state.rails.microcheck.csc.lock().await;
    let (mut payer, _) = standing(&state, &name).await?;
    payer.disputes = payer.disputes.saturating_add(1);
    commit_one(&state, vec![put(format!("payer:{name}"), &payer, None)]).await?;
    tracing::info!(payer = %name, disputes = payer.disputes, "microcheck dispute recorded");
    Ok(Json(
        json!({ "payer": name, "disputes": payer.disputes, "nonce": request.nonce }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterMerchant {
    id: String,
    key: String,
    app_domain: Option<String>,
    /// Decimal degrees, e.g. "-1.2921".
    latitude: Option<String>,
    longitude: Option<String>,
}

fn parse_degrees(text: Option<&str>, limit: i64, what: &str) -> Result<i64, ApiError> {
    let Some(text) = text else { return Ok(0) };
    let bad = || ApiError::bad_request("invalid_location", format!("{what} {text:?}"));
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || fraction.len() > 6
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
        || whole.len() > 3
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let fraction: i64 = format!("{fraction:0<6}").parse().map_err(|_| bad())?;
    let micro = whole * 1_000_000 + fraction;
    if micro > limit * 1_000_000 {
        return Err(bad());
    }
    Ok(if negative { -micro } else { micro })
}

async fn register_merchant(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<RegisterMerchant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_name(&request.id)?;
    let key = parse_key(&request.key)?;
    let strategy = strategy(&state).await?;
    let app_domain = request
        .app_domain
        .clone()
        .unwrap_or_else(|| strategy.app_domain.clone());
    if !valid_label(&app_domain) {
        return Err(ApiError::bad_request(
            "invalid_app_domain",
            "a lower-case label",
        ));
    }
    let location = Location {
        latitude_micro: parse_degrees(request.latitude.as_deref(), 90, "latitude")?,
        longitude_micro: parse_degrees(request.longitude.as_deref(), 180, "longitude")?,
    };
    let currency = strategy.currency().map_err(usage)?;
    let record = MerchantRecord {
        v: RECORD_VERSION,
        id: request.id.clone(),
        key: String::from_utf8_lossy(&key.to_identifier(Encoding::Base64)).into_owned(),
        app_domain: app_domain.clone(),
        location,
    };
    let account = merchant_account(&request.id)?;
    let mut operations = crate::rails::operator_accounts(currency, state.config.currency);
    operations.push(Operation::CreateAccount(NewAccount {
        id: account.clone(),
        kind: AccountKind::Merchant,
        currency,
        limits: BalanceLimits {
            balance_min: Some(0),
            balance_max: None,
        },
    }));
    operations.push(put(format!("merchant:{}", request.id), &record, None));
    commit_one(&state, operations).await?;
    tracing::info!(merchant = %request.id, %app_domain, "microcheck merchant registered");
    let answer = merchant_answer(&state, &record, &strategy)?;
    Ok((StatusCode::CREATED, Json(answer)))
}

fn merchant_answer(
    state: &AppState,
    record: &MerchantRecord,
    strategy: &Strategy,
) -> Result<Value, ApiError> {
    let rail = &state.rails.microcheck;
    let now = now_seconds(state);
    let key = parse_key(&record.key)?;
    let credential = credential::issue_merchant(
        &rail.pa,
        &key,
        &record.id,
        &record.app_domain,
        now.minus(CLOCK_SKEW_SECONDS_MAX),
        now.plus(strategy.merchant_validity_seconds),
    )
    .map_err(usage)?;
    Ok(json!({
        "merchant": record.id, "account": format!("mc:merchant:{}", record.id),
        "app_domain": record.app_domain, "currency": strategy.currency,
        "pa_key": rail.pa_identifier(), "age_key": rail.age_identifier(),
        "merchant_credential": String::from_utf8_lossy(credential.text()),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubPaRequest {
    key: String,
    amount_max: String,
    validity_seconds: u64,
}

async fn delegate_sub_pa(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SubPaRequest>,
) -> Result<Json<Value>, ApiError> {
    let key = parse_key(&request.key)?;
    let strategy = strategy(&state).await?;
    let currency = strategy.currency().map_err(usage)?;
    let amount_max = Amount::parse(&request.amount_max, currency)
        .map_err(|e| ApiError::bad_request("invalid_amount", e.to_string()))?;
    if request.validity_seconds > offpay_microcheck::limits::MERCHANT_VALIDITY_SECONDS_MAX {
        return Err(ApiError::bad_request("invalid_validity", "too long"));
    }
    let now = now_seconds(&state);
    let rail = &state.rails.microcheck;
    let delegation = credential::issue_delegation(
        &rail.pa,
        &key,
        &DelegationTemplate {
            serial: rail.next_serial(now),
            app_domain: strategy.app_domain.clone(),
            currency,
            amount_max,
            not_before: now.minus(CLOCK_SKEW_SECONDS_MAX),
            not_after: now.plus(request.validity_seconds),
        },
    )
    .map_err(usage)?;
    tracing::info!(sub_pa = %fingerprint(&key), "microcheck sub-PA delegation issued");
    Ok(Json(
        json!({ "delegation": String::from_utf8_lossy(delegation.text()), "pa_key": rail.pa_identifier() }),
    ))
}

// ---------------------------------------------------------------------------------------------
// Device API.

async fn pa_info(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let strategy = strategy(&state).await?;
    let rail = &state.rails.microcheck;
    Ok(Json(json!({
        "pa_key": rail.pa_identifier(), "age_key": rail.age_identifier(),
        "app_domain": strategy.app_domain, "currency": strategy.currency,
    })))
}

/// A device request: who, when, and a statement signing `purpose\nwho\ntime\n` + body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedRequest {
    /// Payer name or merchant id.
    who: String,
    /// Unix seconds at the device.
    time: u64,
    /// Statement by the device key.
    signature: String,
    /// Purpose-specific body, as sent: the signature covers these bytes.
    #[serde(default = "null_body")]
    body: Box<RawValue>,
}

fn null_body() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable!("valid JSON"))
}

impl SignedRequest {
    /// The body as a JSON value.
    fn body_value(&self) -> Result<Value, ApiError> {
        serde_json::from_str(self.body.get())
            .map_err(|e| ApiError::bad_request("malformed", format!("request body: {e}")))
    }
}

/// The bytes a device signs for a request.
pub fn request_payload(purpose: &str, who: &str, time: u64, body: &Value) -> Vec<u8> {
    let mut out = format!("{purpose}\n{who}\n{time}\n").into_bytes();
    out.extend_from_slice(&serde_json::to_vec(body).unwrap_or_default());
    out
}

fn authenticate(
    request: &SignedRequest,
    purpose: &str,
    registered_key: &str,
    now: UnixSeconds,
) -> Result<(), ApiError> {
    if now.0.abs_diff(request.time) > CLOCK_SKEW_SECONDS_MAX {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "stale_request",
            format!(
                "the request time is {} s from the server's clock (at most {CLOCK_SKEW_SECONDS_MAX})",
                now.0.abs_diff(request.time)
            ),
        ));
    }
    // The statement signs the body as sent (what `offpay vend` does: compact JSON); a client
    // that signed the compact form but sent the body laid out otherwise is checked against the
    // compact form of what it sent.
    // Hashed in two parts: a deposit's body is over a megabyte, and copying it after the
    // header lines only to hash it cost a copy and a fresh allocation per request.
    let header = format!("{purpose}\n{}\n{}\n", request.who, request.time);
    let body = request.body.get().as_bytes();
    let signer =
        match verify_statement_parts(&request.signature, purpose, &[header.as_bytes(), body]) {
            Ok(signer) => signer,
            Err(refusal) => {
                let compact =
                    request_payload(purpose, &request.who, request.time, &request.body_value()?);
                if compact.strip_prefix(header.as_bytes()) == Some(body) {
                    return Err(refused(StatusCode::UNAUTHORIZED, &refusal));
                }
                verify_statement(&request.signature, purpose, &compact)
                    .map_err(|r| refused(StatusCode::UNAUTHORIZED, &r))?
            }
        };
    let registered = Principal::parse(registered_key.as_bytes())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    if signer != registered {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_key",
            format!(
                "the request is not signed by {}'s registered key",
                request.who
            ),
        ));
    }
    Ok(())
}

async fn authenticated_payer(
    state: &AppState,
    request: &SignedRequest,
    purpose: &str,
) -> Result<(PayerRecord, Standing), ApiError> {
    check_name(&request.who)?;
    let (payer, standing) = standing(state, &request.who).await?;
    authenticate(request, purpose, &payer.key, now_seconds(state))?;
    Ok((payer, standing))
}

async fn payer_refresh(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SignedRequest>,
) -> Result<Json<Value>, ApiError> {
    let (payer, standing) = authenticated_payer(&state, &request, "refresh").await?;
    let strategy = strategy(&state).await?;
    let rail = &state.rails.microcheck;
    let now = now_seconds(&state);
    let key = parse_key(&payer.key)?;
    let templates = strategy
        .payer_templates(&standing, now, &rail.next_serial(now))
        .map_err(usage)?;
    let mut credentials = Vec::new();
    for template in &templates {
        let issued = credential::issue_payer(&rail.pa, &key, template).map_err(usage)?;
        credentials.push(String::from_utf8_lossy(issued.text()).into_owned());
    }
    if payer.adult && !templates.is_empty() {
        let adult = credential::issue_adulthood(
            &rail.age,
            &key,
            &strategy.app_domain,
            now.minus(CLOCK_SKEW_SECONDS_MAX),
            now.plus(strategy.adulthood_validity_seconds),
        )
        .map_err(usage)?;
        credentials.push(String::from_utf8_lossy(adult.text()).into_owned());
    }
    tracing::info!(payer = %payer.name, issued = credentials.len(), strikes = standing.strikes(), "microcheck credentials issued");
    let tiers: Vec<Value> = templates
        .iter()
        .map(|t| json!({ "tier": t.tier, "amount_max": t.amount_max.decimal().to_string(),
                         "not_after": t.not_after.stamp(), "per_merchant_day_max": t.per_merchant_day_max }))
        .collect();
    Ok(Json(json!({
        "payer": payer.name, "credentials": credentials, "tiers": tiers,
        "strikes": standing.strikes(), "pa_key": rail.pa_identifier(), "age_key": rail.age_identifier(),
        "app_domain": strategy.app_domain, "currency": strategy.currency,
    })))
}

async fn payer_transaction(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SignedRequest>,
) -> Result<Json<Value>, ApiError> {
    let (payer, standing) = authenticated_payer(&state, &request, "transaction").await?;
    let offer: Offer = serde_json::from_value(request.body_value()?["offer"].take())
        .map_err(|e| ApiError::bad_request("malformed", format!("offer: {e}")))?;
    let terms = offer
        .terms()
        .map_err(|r| refused(StatusCode::BAD_REQUEST, &r))?;
    let strategy = strategy(&state).await?;
    if offer.app_domain != strategy.app_domain {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_domain",
            format!("this PA issues for {:?}", strategy.app_domain),
        ));
    }
    strategy
        .transaction_allowed(&standing, terms.amount)
        .map_err(|why| ApiError::new(StatusCode::FORBIDDEN, "transaction_refused", why))?;
    let rail = &state.rails.microcheck;
    let now = now_seconds(&state);
    let issued = credential::issue_transaction(
        &rail.pa,
        &parse_key(&payer.key)?,
        &TransactionTemplate {
            serial: rail.next_serial(now),
            app_domain: strategy.app_domain.clone(),
            currency: terms.amount.currency(),
            amount: terms.amount,
            merchant: offer.merchant.clone(),
            nonce: offer.nonce.clone(),
            not_before: now.minus(CLOCK_SKEW_SECONDS_MAX),
            not_after: now.plus(strategy.transaction_validity_seconds),
        },
    )
    .map_err(usage)?;
    tracing::info!(payer = %payer.name, merchant = %offer.merchant, amount = %terms.amount, "microcheck transaction credential issued");
    Ok(Json(
        json!({ "credential": String::from_utf8_lossy(issued.text()) }),
    ))
}

async fn charges(
    state: &AppState,
    name: &str,
    after: Option<String>,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let prefix = format!("charge:{name}:");
    let limit = STATEMENT_PAGE_MAX;
    let records = state
        .ledger
        .read(move |store| store.records(NAMESPACE, &prefix, after.as_deref(), limit))
        .await?;
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| r.key.clone()))
        .flatten();
    let charges = records
        .iter()
        .filter_map(|r| csc::ChargeRecord::from_stored(&r.key, &r.value))
        .filter_map(|charge| serde_json::to_value(charge).ok())
        .collect();
    Ok((charges, next))
}

async fn payer_statement(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SignedRequest>,
) -> Result<Json<Value>, ApiError> {
    let (payer, _) = authenticated_payer(&state, &request, "statement").await?;
    let after = request.body_value()?["after"].as_str().map(str::to_owned);
    let (charges, next) = charges(&state, &payer.name, after).await?;
    Ok(Json(
        json!({ "payer": payer.name, "charges": charges, "next_after": next }),
    ))
}

async fn operator_statement(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    check_name(&name)?;
    let (charges, next) = charges(&state, &name, None).await?;
    Ok(Json(
        json!({ "payer": name, "charges": charges, "next_after": next }),
    ))
}

async fn merchant_record(state: &AppState, id: &str) -> Result<MerchantRecord, ApiError> {
    check_name(id)?;
    let key = format!("merchant:{id}");
    let record: Option<MerchantRecord> = state
        .ledger
        .read(move |store| read_json(store, &key))
        .await?;
    record.ok_or_else(|| ApiError::not_found("merchant", id))
}

async fn merchant_refresh(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SignedRequest>,
) -> Result<Json<Value>, ApiError> {
    let record = merchant_record(&state, &request.who).await?;
    authenticate(
        &request,
        "merchant-refresh",
        &record.key,
        now_seconds(&state),
    )?;
    let strategy = strategy(&state).await?;
    Ok(Json(merchant_answer(&state, &record, &strategy)?))
}

// ---------------------------------------------------------------------------------------------
// Clearing.

fn payer_fingerprint_key(fingerprint: &str) -> String {
    format!("payerkey:{fingerprint}")
}

async fn deposit(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<SignedRequest>,
) -> Result<Json<DepositReport>, ApiError> {
    let record = merchant_record(&state, &request.who).await?;
    authenticate(&request, "deposit", &record.key, now_seconds(&state))?;
    let body: DepositBody = serde_json::from_str(request.body.get())
        .map_err(|e| ApiError::bad_request("malformed", format!("deposit: {e}")))?;
    if body.items.len() > DEPOSIT_ITEMS_MAX {
        return Err(ApiError::bad_request(
            "deposit_too_large",
            format!("at most {DEPOSIT_ITEMS_MAX} microchecks per deposit"),
        ));
    }
    let items = body
        .unpack()
        .map_err(|r| refused(StatusCode::BAD_REQUEST, &r))?;
    let report = clear_deposit(&state, &record, &items, now_seconds(&state)).await?;
    Ok(Json(report))
}

/// Clears and posts a deposit of `record`'s microchecks received at `now`, and answers with
/// the fate of each. Signatures and the KeyNote compliance checks run before the CSC lock is
/// taken, against a snapshot of the clearing state, so deposits from several machines do that
/// work at once. Under the lock the snapshot is brought up to date ([`pipeline`]), the deposit
/// is decided and its batch queued in the ledger; the lock is let go before the batch is
/// durable, so the next deposit decides while this one commits. Should the ledger refuse the
/// batch, the deposit is decided again against the state read back from the ledger, with the
/// lock held until it has posted ([`Poster::post`]).
async fn clear_deposit(
    state: &AppState,
    record: &MerchantRecord,
    items: &[DepositItem],
    now: UnixSeconds,
) -> Result<DepositReport, ApiError> {
    let strategy = strategy(state).await?;
    let currency = strategy.currency().map_err(usage)?;
    let rail = &state.rails.microcheck;
    let policy = MerchantPolicy::new(
        &record.id,
        &record.app_domain,
        &rail.pa.principal(),
        Some(&rail.age.principal()),
    )
    .map_err(usage)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let prepared = tokio::task::block_in_place(|| csc::prepare(items, threads))
        .map_err(|r| refused(StatusCode::BAD_REQUEST, &r))?;
    let keys = Arc::new(csc::keys(&prepared));
    // Noted before the snapshot is asked for ([`pipeline`]): it holds everything these
    // groups wrote, and it comes from the ledger's reader, not waiting for a commit.
    let (groups_done, epoch) = (state.ledger.groups_done(), rail.csc.epoch());
    let loaded = load(state, &record.id, &keys, Read::Committed).await?;
    // The compliance checks run before the lock, against the snapshot; deciding under the lock
    // reuses each answer only if the item's purchase number is still the same.
    let checks = tokio::task::block_in_place(|| csc::check(&policy, &prepared, &loaded.state, now));
    let snapshot = Snapshot {
        state: loaded.state,
        last_deposit: loaded.last_deposit,
        versions: loaded.versions,
        groups_done,
        epoch,
    };
    let rules = FraudRules {
        machine_day_purchases_max: strategy.machine_day_purchases_max,
        travel_speed_kmh_max: strategy.travel_speed_kmh_max,
    };
    let merchant_at = |last_deposit_at| MerchantAccount {
        policy: policy.clone(),
        location: record.location,
        last_deposit_at,
    };
    let decide = |merchant: &MerchantAccount, state: &ClearingState| {
        let mut cleared_state = state.clone();
        let outcomes = tokio::task::block_in_place(|| {
            csc::clear_checked(merchant, rules, &prepared, &checks, &mut cleared_state, now)
        });
        (outcomes, cleared_state)
    };
    let mut overlay = rail.csc.lock().await;
    if let Some(current) = rail.csc.current(&overlay, snapshot, &record.id) {
        let merchant = merchant_at(current.last_deposit);
        let (outcomes, cleared_state) = decide(&merchant, &current.state);
        let mut poster = Poster::new(state, &merchant, currency, now, current.versions);
        if let Some(in_flight) = poster
            .queue(&outcomes, &cleared_state, record, &mut overlay)
            .await?
        {
            drop(overlay);
            if let Some(posted) = in_flight.settle(record).await? {
                Metrics::add(&state.metrics.microcheck_deposits_pipelined, 1);
                return Ok(report(record, &outcomes, &posted));
            }
            overlay = rail.csc.lock().await;
        }
    }
    // Read back under the lock: queued behind every batch in flight, so it sees how each fared.
    let loaded = load(state, &record.id, &keys, Read::AfterQueued).await?;
    let merchant = merchant_at(loaded.last_deposit);
    let (outcomes, cleared_state) = decide(&merchant, &loaded.state);
    let mut poster = Poster::new(state, &merchant, currency, now, loaded.versions);
    let posted = poster
        .post(
            &outcomes,
            &loaded.state,
            &cleared_state,
            record,
            &mut overlay,
        )
        .await?;
    drop(overlay);
    Metrics::add(&state.metrics.microcheck_deposits_locked, 1);
    Ok(report(record, &outcomes, &posted))
}

/// The answer to a deposit whose cleared microchecks met `posted`.
fn report(record: &MerchantRecord, outcomes: &[ItemOutcome], posted: &Posted) -> DepositReport {
    let mut report = DepositReport {
        merchant: record.id.clone(),
        posted: 0,
        refused: 0,
        results: Vec::with_capacity(outcomes.len()),
    };
    for outcome in outcomes {
        let answer = match outcome {
            ItemOutcome::Cleared(clearance) => {
                let refused = |code: &str, reason: String| ItemAnswer {
                    index: clearance.index,
                    nonce: Some(clearance.nonce.clone()),
                    status: "refused",
                    code: Some(code.to_owned()),
                    reason: Some(reason),
                    ..ItemAnswer::default()
                };
                match posted.get(&clearance.index) {
                    Some(Fate::Posted) => ItemAnswer {
                        index: clearance.index,
                        nonce: Some(clearance.nonce.clone()),
                        status: "posted",
                        transfer_id: Some(clearance.transfer_id.clone()),
                        amount: Some(clearance.amount.decimal().to_string()),
                        bounced: Some(clearance.bounced()),
                        flags: Some(clearance.findings.iter().map(|f| f.kind).collect()),
                        ..ItemAnswer::default()
                    },
                    Some(Fate::Spent(refusal)) => refused(&refusal.code(), refusal.to_string()),
                    Some(Fate::Ledger(other)) => refused("ledger_refused", other.to_string()),
                    None => refused("internal", "no ledger result".to_owned()),
                }
            }
            ItemOutcome::Refused {
                index,
                nonce,
                refusal,
                findings,
            } => ItemAnswer {
                index: *index,
                nonce: nonce.clone(),
                status: "refused",
                code: Some(refusal.code()),
                reason: Some(refusal.to_string()),
                flags: Some(findings.iter().map(|f| f.kind).collect()),
                ..ItemAnswer::default()
            },
        };
        if answer.status == "posted" {
            report.posted += 1;
        } else {
            report.refused += 1;
        }
        report.results.push(answer);
    }
    tracing::info!(merchant = %record.id, posted = report.posted, refused = report.refused, "microcheck deposit cleared");
    report
}

/// The answer to a deposit.
#[derive(Debug, Serialize)]
struct DepositReport {
    merchant: String,
    posted: usize,
    refused: usize,
    /// One per microcheck, in deposit order.
    results: Vec<ItemAnswer>,
}

/// The fate of one deposited microcheck: `posted` (with its transfer, amount, whether it
/// bounced, and fraud flags) or `refused` (with a code, the reason, and flags).
#[derive(Debug, Default, Serialize)]
struct ItemAnswer {
    index: usize,
    nonce: Option<String>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bounced: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<Vec<&'static str>>,
}

/// The clearing state a deposit reads, with the version of each clearing record in it.
struct Loaded {
    state: ClearingState,
    last_deposit: Option<UnixSeconds>,
    versions: Versions,
}

/// Which commits a read of the clearing state must see.
#[derive(Clone, Copy, Debug)]
enum Read {
    /// Those finished before it (on the ledger's reader: it does not wait for a commit).
    Committed,
    /// Also those queued before it ([`crate::ledger::Ledger::read_after_queued`]).
    AfterQueued,
}

/// Reads the clearing state of `merchant`'s deposit with `keys` from the ledger.
async fn load(
    state: &AppState,
    merchant: &str,
    keys: &Arc<csc::Keys>,
    read: Read,
) -> Result<Loaded, ApiError> {
    let (merchant, keys) = (merchant.to_owned(), Arc::clone(keys));
    let job = move |store: &mut dyn LedgerStore| load_state(store, &merchant, &keys);
    Ok(match read {
        Read::Committed => state.ledger.read(job).await?,
        Read::AfterQueued => state.ledger.read_after_queued(job).await?,
    })
}

/// A clearing record: its value (when it parses) and its version (0: absent).
fn read_versioned<T: for<'de> Deserialize<'de>>(
    store: &mut dyn LedgerStore,
    key: String,
    versions: &mut Versions,
) -> Result<Option<T>, StoreError> {
    let Some(record) = store.record(NAMESPACE, &key)? else {
        return Ok(None);
    };
    versions.insert(key, record.version);
    Ok(serde_json::from_slice(&record.value).ok())
}

fn count_of(entry: Option<CountRecord>) -> Option<u32> {
    entry.map(|entry| entry.count)
}

fn load_state(
    store: &mut dyn LedgerStore,
    merchant: &str,
    keys: &csc::Keys,
) -> Result<Loaded, StoreError> {
    let mut state = ClearingState::default();
    let mut versions = Versions::new();
    let mut names: Vec<String> = Vec::new();
    for fingerprint in &keys.payers {
        let Some(entry) = read_json::<Value>(store, &payer_fingerprint_key(fingerprint))? else {
            continue;
        };
        let Some(name) = entry["name"].as_str() else {
            continue;
        };
        let Ok(account) = AccountId::new(format!("mc:payer:{name}")) else {
            continue;
        };
        let available = store.account(&account)?.map_or(0, |a| a.available());
        state.payers.insert(
            fingerprint.clone(),
            PayerAccount {
                name: name.to_owned(),
                available_minor: available,
            },
        );
        names.push(name.to_owned());
    }
    names.sort_unstable();
    names.dedup();
    for name in &names {
        for date in &keys.dates {
            let key = csc::payer_merchant_day_key(name, merchant, date);
            if let Some(count) = count_of(read_versioned(store, key, &mut versions)?) {
                state
                    .payer_merchant_day
                    .insert((name.clone(), merchant.to_owned(), date.clone()), count);
            }
        }
        if let Some(recent) = read_versioned(store, csc::recent_key(name), &mut versions)? {
            state.recent.insert(name.clone(), recent);
        }
        if let Some(count) = count_of(read_versioned(
            store,
            csc::bounces_key(name),
            &mut versions,
        )?) {
            state.bounces.insert(name.clone(), count);
        }
    }
    for date in &keys.dates {
        let key = csc::merchant_day_key(merchant, date);
        if let Some(count) = count_of(read_versioned(store, key, &mut versions)?) {
            state
                .merchant_day
                .insert((merchant.to_owned(), date.clone()), count);
        }
    }
    let last_deposit = read_json::<Value>(store, &format!("lastdeposit:{merchant}"))?
        .and_then(|v| v["at"].as_u64())
        .map(UnixSeconds);
    Ok(Loaded {
        state,
        last_deposit,
        versions,
    })
}

fn flag_operation(finding: &csc::Finding, now: UnixSeconds) -> Operation {
    FraudFlag::new(
        "microcheck",
        finding.kind,
        &finding.subject,
        finding.summary.clone(),
        finding.evidence.clone(),
        offpay_ledger::Timestamp(now.0.saturating_mul(1000)),
    )
    .operation(&finding.discriminator)
}

/// Posts what a deposit cleared. Usually in one ledger batch: every cleared microcheck's
/// charge record, transfer and flags, then the counters and recent purchases they
/// change, written once ([`csc::state_records`]). Flags of refused microchecks and the
/// merchant's last-deposit time go in a second batch of the same group commit.
///
/// Spent nonces are not read before clearing: each microcheck's charge record is create-only,
/// so the ledger refuses a batch holding a microcheck deposited before, and a transfer id (from
/// merchant and nonce) reused with other terms. On the first, and only then, the charge records
/// of the batch are read, and every microcheck already deposited is refused
/// (`already_deposited`); on the second the microcheck is refused as `replayed_nonce`.
///
/// The ledger can refuse the batch for other reasons too: the CSC decided on balances read
/// before, and the operator API may have moved money since. The refusal names the operation
/// that failed; its microcheck is refused with the ledger's reason. After any refusal the
/// others are posted again in one batch, with counters rebuilt from the state before the deposit
/// plus exactly the microchecks in it (`ClearingState::apply`), until a batch posts. A refusal
/// no microcheck explains posts the rest one at a time.
///
/// Clearing records are written with the version they were read at (`expected_version`), and
/// every batch that posts joins the CSC's overlay ([`pipeline`]).
struct Poster<'a> {
    state: &'a AppState,
    merchant: &'a MerchantAccount,
    currency: Currency,
    now: UnixSeconds,
    /// Clearing records' versions as they stand before the next batch.
    versions: Versions,
}

/// A deposit's batch queued in the ledger, the CSC lock let go.
struct InFlight {
    queued: crate::ledger::Queued,
    fate: BatchFate,
    /// Deposit indexes of the microchecks in the batch.
    indexes: Vec<usize>,
}

impl InFlight {
    /// Waits for the batch: the fate of each microcheck if it posted, `None` if the ledger
    /// refused it (nothing of it was written; decide the deposit again).
    async fn settle(self, record: &MerchantRecord) -> Result<Option<Posted>, ApiError> {
        let results = match self.queued.durable().await {
            Ok(results) => results,
            Err(error) => {
                self.fate.failed();
                return Err(error.into());
            }
        };
        let mut results = results.into_iter();
        let main = results.next();
        if let Some(Err(refusal)) = results.next() {
            log_side_refusal(record, &refusal);
        }
        match main {
            Some(Ok(_)) => Ok(Some(
                self.indexes
                    .into_iter()
                    .map(|index| (index, Fate::Posted))
                    .collect(),
            )),
            Some(Err(refusal)) => {
                self.fate.failed();
                tracing::info!(merchant = %record.id, error = %refusal.reason, "microcheck deposit: the ledger refused the batch decided while others committed; deciding it again");
                Ok(None)
            }
            None => {
                self.fate.failed();
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the ledger returned no result",
                ))
            }
        }
    }
}

/// The cleared microchecks among `outcomes`.
fn cleared(outcomes: &[ItemOutcome]) -> Vec<&Clearance> {
    outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            ItemOutcome::Cleared(clearance) => Some(clearance.as_ref()),
            ItemOutcome::Refused { .. } => None,
        })
        .collect()
}

/// What became of a cleared microcheck.
#[derive(Debug)]
enum Fate {
    /// Posted.
    Posted,
    /// Refused by the ledger.
    Ledger(LedgerRefusal),
    /// Its nonce was spent: refused by the CSC's rule once the ledger pointed at it.
    Spent(Refusal),
}

/// The fate of each cleared microcheck, by deposit index.
type Posted = HashMap<usize, Fate>;

impl Fate {
    /// A ledger refusal of `clearance`'s operations. A charge record that exists already means
    /// the microcheck was deposited before, and a transfer id taken with other terms means its
    /// nonce was: both are the CSC's spent-nonce refusals, whichever path found them.
    fn refused(reason: LedgerRefusal, clearance: &Clearance) -> Fate {
        let nonce = clearance.nonce.clone();
        match reason {
            LedgerRefusal::RecordVersionMismatch { .. } => {
                Fate::Spent(Refusal::AlreadyDeposited { nonce })
            }
            LedgerRefusal::TransferConflict { .. } => Fate::Spent(Refusal::ReplayedNonce { nonce }),
            other => Fate::Ledger(other),
        }
    }
}

/// Logs a refusal of the batch holding refused microchecks' flags and the last-deposit time.
fn log_side_refusal(record: &MerchantRecord, refusal: &BatchRefusal) {
    tracing::error!(merchant = %record.id, error = %refusal.reason, "microcheck deposit: flags and last-deposit record refused");
}

impl<'a> Poster<'a> {
    fn new(
        state: &'a AppState,
        merchant: &'a MerchantAccount,
        currency: Currency,
        now: UnixSeconds,
        versions: Versions,
    ) -> Poster<'a> {
        Poster {
            state,
            merchant,
            currency,
            now,
            versions,
        }
    }

    /// The batch beside the cleared microchecks: flags of refused ones, and the time of this
    /// deposit as the merchant's last.
    fn side(&self, outcomes: &[ItemOutcome], record: &MerchantRecord) -> Batch {
        let mut side: Vec<Operation> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                ItemOutcome::Refused { findings, .. } => Some(findings),
                ItemOutcome::Cleared(_) => None,
            })
            .flatten()
            .map(|finding| flag_operation(finding, self.now))
            .collect();
        side.push(put(
            format!("lastdeposit:{}", record.id),
            &json!({ "at": self.now.0 }),
            None,
        ));
        Batch { operations: side }
    }

    /// The versions of `written` once a batch writing them commits.
    fn versions_after(&self, written: &[(StateRecord, String)]) -> Versions {
        let mut versions = self.versions.clone();
        for (_, key) in written {
            *versions.entry(key.clone()).or_default() += 1;
        }
        versions
    }

    /// Queues the deposit's batches (when its cleared microchecks fit in one) and adds them to
    /// the overlay, without waiting for them to commit. `None`: nothing queued (nothing cleared,
    /// or a deposit too large for one batch); post it with [`Poster::post`].
    async fn queue(
        &mut self,
        outcomes: &[ItemOutcome],
        cleared_state: &ClearingState,
        record: &MerchantRecord,
        overlay: &mut Locked<'_>,
    ) -> Result<Option<InFlight>, ApiError> {
        let cleared = cleared(outcomes);
        if cleared.is_empty() || chunks(&cleared).len() != 1 {
            return Ok(None);
        }
        let (batch, _, written) = self.batch(&cleared, cleared_state)?;
        let side = self.side(outcomes, record);
        let queued = self
            .state
            .ledger
            .submit(vec![batch, side], self.state.now())
            .await?;
        let after = self.versions_after(&written);
        let fate = self.state.rails.microcheck.csc.add(
            overlay,
            queued.group(),
            &record.id,
            &written,
            &after,
            cleared_state,
            &cleared,
            self.now,
        );
        Ok(Some(InFlight {
            queued,
            fate,
            indexes: cleared.iter().map(|c| c.index).collect(),
        }))
    }

    /// A batch of `cleared` writing `written` with their values in `state` committed: the
    /// versions move on, and the overlay learns of it.
    fn posted(
        &mut self,
        cleared: &[&Clearance],
        state: &ClearingState,
        written: &[(StateRecord, String)],
        overlay: &mut Locked<'_>,
    ) {
        self.versions = self.versions_after(written);
        // Committed already: its group has finished by now.
        let group = GroupNumber::finished_by(self.state.ledger.groups_done());
        self.state.rails.microcheck.csc.add(
            overlay,
            group,
            &self.merchant.policy.merchant,
            written,
            &self.versions,
            state,
            cleared,
            self.now,
        );
    }

    /// Posts the deposit, waiting for each batch to commit (the CSC lock held throughout).
    async fn post(
        &mut self,
        outcomes: &[ItemOutcome],
        initial: &ClearingState,
        cleared_state: &ClearingState,
        record: &MerchantRecord,
        overlay: &mut Locked<'_>,
    ) -> Result<Posted, ApiError> {
        let cleared = cleared(outcomes);
        let mut side = Some(self.side(outcomes, record));
        let chunks = chunks(&cleared);
        let mut posted = Posted::new();
        if chunks.len() == 1 {
            // The usual case: `clear` already brought the state up to date with exactly these.
            self.post_chunk(
                &cleared,
                initial,
                cleared_state,
                side.take(),
                record,
                &mut posted,
                overlay,
            )
            .await?;
            return Ok(posted);
        }
        let mut base = initial.clone();
        for chunk in chunks {
            let mut state = base.clone();
            for clearance in chunk {
                state.apply(self.merchant, clearance);
            }
            self.post_chunk(
                chunk,
                &base,
                &state,
                side.take(),
                record,
                &mut posted,
                overlay,
            )
            .await?;
            for clearance in chunk {
                if matches!(posted.get(&clearance.index), Some(Fate::Posted)) {
                    base.apply(self.merchant, clearance);
                }
            }
        }
        if let Some(side) = side {
            self.commit_side(side, record).await?;
        }
        Ok(posted)
    }

    async fn commit_side(&self, side: Batch, record: &MerchantRecord) -> Result<(), ApiError> {
        if let Err(refusal) = self.commit_one(side).await? {
            log_side_refusal(record, &refusal);
        }
        Ok(())
    }

    /// Posts one batch's worth of cleared microchecks on top of `base` (the state with
    /// everything posted before them); `state` is `base` with all of `chunk` applied. `side`,
    /// when given, commits in the same group as the first attempt.
    #[allow(clippy::too_many_arguments)]
    async fn post_chunk(
        &mut self,
        chunk: &[&Clearance],
        base: &ClearingState,
        state: &ClearingState,
        side: Option<Batch>,
        record: &MerchantRecord,
        posted: &mut Posted,
        overlay: &mut Locked<'_>,
    ) -> Result<(), ApiError> {
        let mut cleared: Vec<&Clearance> = chunk.to_vec();
        let (batch, owners, written) = self.batch(&cleared, state)?;
        let mut batches = vec![batch];
        batches.extend(side);
        let results = self.state.ledger.commit(batches, self.state.now()).await?;
        if let Some(Err(refusal)) = results.get(1) {
            log_side_refusal(record, refusal);
        }
        let mut refusal = match results.into_iter().next() {
            Some(Ok(_)) => {
                posted.extend(cleared.iter().map(|c| (c.index, Fate::Posted)));
                self.posted(&cleared, state, &written, overlay);
                return Ok(());
            }
            Some(Err(refusal)) => refusal,
            None => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the ledger returned no result",
                ));
            }
        };
        let mut owners = owners;
        loop {
            let spent = match (
                &refusal.reason,
                owners.get(refusal.index).copied().flatten(),
            ) {
                (LedgerRefusal::RecordVersionMismatch { .. }, Some(_)) => {
                    self.spent_nonces(&cleared).await?
                }
                _ => HashMap::new(),
            };
            if spent.is_empty() {
                tracing::warn!(merchant = %record.id, error = %refusal.reason, "microcheck deposit: the ledger refused a batch; posting again without the microcheck it names");
                match owners.get(refusal.index).copied().flatten() {
                    Some(position) => {
                        let clearance = cleared[position];
                        posted.insert(clearance.index, Fate::refused(refusal.reason, clearance));
                        cleared.remove(position);
                    }
                    None => return self.post_each(&cleared, base, posted, overlay).await,
                }
            } else {
                tracing::info!(merchant = %record.id, spent = spent.len(), "microcheck deposit: refusing microchecks whose nonce was deposited before");
                let mut position = 0;
                cleared.retain(|clearance| {
                    let keep = match spent.get(&position) {
                        Some(refusal) => {
                            posted.insert(clearance.index, Fate::Spent(refusal.clone()));
                            false
                        }
                        None => true,
                    };
                    position += 1;
                    keep
                });
            }
            if cleared.is_empty() {
                return Ok(());
            }
            let mut state = base.clone();
            for clearance in &cleared {
                state.apply(self.merchant, clearance);
            }
            let (batch, next_owners, written) = self.batch(&cleared, &state)?;
            match self.commit_one(batch).await? {
                Ok(()) => {
                    posted.extend(cleared.iter().map(|c| (c.index, Fate::Posted)));
                    self.posted(&cleared, &state, &written, overlay);
                    return Ok(());
                }
                Err(next) => {
                    refusal = next;
                    owners = next_owners;
                }
            }
        }
    }

    /// Posts `cleared` one microcheck per batch, each with the counters as they stand after it.
    async fn post_each(
        &mut self,
        cleared: &[&Clearance],
        base: &ClearingState,
        posted: &mut Posted,
        overlay: &mut Locked<'_>,
    ) -> Result<(), ApiError> {
        let mut state = base.clone();
        for clearance in cleared {
            let mut next = state.clone();
            next.apply(self.merchant, clearance);
            let one = std::slice::from_ref(clearance);
            let (batch, _, written) = self.batch(one, &next)?;
            match self.commit_one(batch).await? {
                Ok(()) => {
                    posted.insert(clearance.index, Fate::Posted);
                    self.posted(one, &next, &written, overlay);
                    state = next;
                }
                Err(refusal) => {
                    posted.insert(clearance.index, Fate::refused(refusal.reason, clearance));
                }
            }
        }
        Ok(())
    }

    /// Reads the charge records of `cleared` and returns, by position, the refusal of each
    /// microcheck deposited before.
    async fn spent_nonces(
        &self,
        cleared: &[&Clearance],
    ) -> Result<HashMap<usize, Refusal>, ApiError> {
        let merchant = self.merchant.policy.merchant.clone();
        let keys: Vec<(String, String)> = cleared
            .iter()
            .map(|c| {
                let key = csc::charge_key(c.payer(), &c.timestamp, &merchant, &c.nonce);
                (key, c.microcheck_sha256.clone())
            })
            .collect();
        let spent = self
            .state
            .ledger
            .read(move |store| {
                let mut spent = Vec::new();
                for (position, (key, hash)) in keys.iter().enumerate() {
                    if let Some(record) = store.record(NAMESPACE, key)? {
                        let same = csc::ChargeRecord::from_stored(key, &record.value)
                            .is_some_and(|charge| charge.microcheck_sha256 == *hash);
                        spent.push((position, same));
                    }
                }
                Ok(spent)
            })
            .await?;
        Ok(spent
            .into_iter()
            .map(|(position, same)| {
                let nonce = cleared[position].nonce.clone();
                let refusal = if same {
                    Refusal::AlreadyDeposited { nonce }
                } else {
                    Refusal::ReplayedNonce { nonce }
                };
                (position, refusal)
            })
            .collect())
    }

    async fn commit_one(&self, batch: Batch) -> Result<Result<(), BatchRefusal>, ApiError> {
        let mut results = self
            .state
            .ledger
            .commit(vec![batch], self.state.now())
            .await?;
        match results.pop() {
            Some(result) => Ok(result.map(|_| ())),
            None => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the ledger returned no result",
            )),
        }
    }

    /// One batch posting `cleared` with the shared records as they stand in `state` (which
    /// must include them), each written at the version it has now; for each operation the
    /// position in `cleared` of the microcheck it belongs to; and the shared records written.
    #[allow(clippy::type_complexity)]
    fn batch(
        &self,
        cleared: &[&Clearance],
        state: &ClearingState,
    ) -> Result<(Batch, Vec<Option<usize>>, Vec<(StateRecord, String)>), ApiError> {
        let merchant_id = &self.merchant.policy.merchant;
        let merchant_account_id = merchant_account(merchant_id)?;
        let server_currency = self.state.config.currency;
        let mut operations = Vec::with_capacity(cleared.len() * 4 + 8);
        let mut owners = Vec::with_capacity(operations.capacity());
        let mut suspense = None;
        if cleared.iter().any(|c| c.bounced()) {
            operations.extend(crate::rails::operator_accounts(
                self.currency,
                server_currency,
            ));
            owners.resize(operations.len(), None);
            suspense = Some(
                crate::rails::operator_account_id(
                    crate::rails::SUSPENSE,
                    self.currency,
                    server_currency,
                )
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "no suspense account id",
                    )
                })?,
            );
        }
        for (position, clearance) in cleared.iter().enumerate() {
            let debit_account = match (&clearance.debit, &suspense) {
                (Debit::Bounced(_), Some(suspense)) => suspense.clone(),
                _ => payer_account(clearance.payer())?,
            };
            let id = TransferId::new(clearance.transfer_id.clone()).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
            // The charge record first: a second deposit of a microcheck meets it before the
            // transfer (whose debit may differ, if the microcheck bounced the first time).
            for change in &clearance.records {
                operations.push(put_change(change));
            }
            operations.push(Operation::Transfer(Transfer {
                id,
                debit_account,
                credit_account: merchant_account_id.clone(),
                amount: clearance.amount,
                kind: TransferKind::Posted,
                memo: clearance.memo.clone(),
            }));
            for finding in &clearance.findings {
                operations.push(flag_operation(finding, self.now));
            }
            owners.resize(operations.len(), Some(position));
        }
        let written: Vec<(StateRecord, String)> = StateRecord::changed_by(cleared.iter().copied())
            .into_iter()
            .map(|record| {
                let key = record.key(merchant_id);
                (record, key)
            })
            .collect();
        for (record, key) in &written {
            operations.push(put_bytes(
                key.clone(),
                record.value(state, merchant_id),
                Some(self.versions.get(key).copied().unwrap_or(0)),
            ));
        }
        owners.resize(operations.len(), None);
        Ok((Batch { operations }, owners, written))
    }
}

/// Most ledger operations a cleared microcheck can bring into a batch, besides its findings: its
/// charge record and transfer, and at most four shared records (its payer's day counter, recent
/// purchases and bounce count, its date's machine counter).
const OPERATIONS_PER_MICROCHECK_MAX: usize = 6;
/// Room kept in each batch for the operator accounts a bounce brings.
const BATCH_RESERVE: usize = 8;

/// Splits `cleared` into runs that each fit in one ledger batch.
fn chunks<'a, 'b>(cleared: &'b [&'a Clearance]) -> Vec<&'b [&'a Clearance]> {
    let mut chunks = Vec::new();
    let (mut start, mut operations) = (0, BATCH_RESERVE);
    for (position, clearance) in cleared.iter().enumerate() {
        let needed = OPERATIONS_PER_MICROCHECK_MAX + clearance.findings.len();
        if operations + needed > BATCH_OPERATIONS_MAX && position > start {
            chunks.push(&cleared[start..position]);
            (start, operations) = (position, BATCH_RESERVE);
        }
        operations += needed;
    }
    if start < cleared.len() {
        chunks.push(&cleared[start..]);
    }
    chunks
}

fn put_change(change: &csc::RecordChange) -> Operation {
    put_bytes(
        change.key.clone(),
        change.value.clone(),
        change.create_only.then_some(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clearance(index: usize, findings: usize) -> Clearance {
        Clearance {
            index,
            nonce: format!("{index:032x}"),
            transfer_id: csc::transfer_id("vm-1", &format!("{index:032x}")),
            debit: Debit::Payer("alice".into()),
            merchant: "vm-1".into(),
            amount: Amount::from_minor(83, Currency::KES).unwrap_or_else(|_| unreachable!()),
            memo: String::new(),
            payer_fingerprint: String::new(),
            date: "20261122".into(),
            timestamp: "20261122000000".into(),
            time: UnixSeconds(0),
            microcheck_sha256: String::new(),
            credential_serial: None,
            records: Vec::new(),
            findings: (0..findings)
                .map(|_| csc::Finding {
                    kind: "machine_day_volume",
                    subject: "vm-1".into(),
                    summary: String::new(),
                    evidence: Value::Null,
                    discriminator: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_large_deposit_is_posted_in_batches_the_ledger_takes() {
        for (count, findings) in [(1, 0), (1000, 0), (4096, 0), (4096, 3)] {
            let all: Vec<Clearance> = (0..count).map(|i| clearance(i, findings)).collect();
            let cleared: Vec<&Clearance> = all.iter().collect();
            let parts = chunks(&cleared);
            let mut next = 0;
            for part in &parts {
                assert!(!part.is_empty());
                assert_eq!(part[0].index, next, "in order, nothing skipped");
                next += part.len();
                let operations = BATCH_RESERVE
                    + part
                        .iter()
                        .map(|c| OPERATIONS_PER_MICROCHECK_MAX + c.findings.len())
                        .sum::<usize>();
                assert!(operations <= BATCH_OPERATIONS_MAX, "{operations}");
            }
            assert_eq!(next, count);
            if count <= 1000 && findings == 0 {
                assert_eq!(parts.len(), 1, "a usual deposit is one batch");
            }
        }
        assert!(chunks(&[]).is_empty());
    }
}
