//! Rail 3, the device wallet's money office: routes, and the mapping of HTTP to the office's
//! operations and of its errors to HTTP. The rules, the records, the load plans and the mapping
//! to ledger postings and fraud flags are `offpay_wallet::operator`'s; each operation runs
//! through [`runner::run`]: load what its plan names, decide, commit the effects with the changed
//! records conditional on the versions read. Nothing of the office is kept in memory between
//! requests, so several servers can share one database.
//!
//! The office's signing key lives in `DATA_DIR/wallet-office.key` (mode 0600, never logged).

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use offpay_ledger::{AccountId, Amount, Currency, Timestamp};
use offpay_operator::{Attempt, Decision, Effects, Entropy};
use offpay_wallet::operator::{
    self, ChargeRequest, IssueRequest, Office, Plan, WalletView, Working,
};
use offpay_wallet::{
    BookError, Case, CaseDecision, Credential, Error, Limits, Misuse, OfficeKeys, SettledDigest,
    SyncReply, TransferId, WalletId,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::api::ApiJson;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::keyfile;
use crate::ledger::LedgerError;
use crate::routes::{EVERYONE, FINANCE, OperatorRoutes, PROVISIONING, SUPPORT};
use crate::runner::{self, LockStripes, RunError};
use crate::{AppState, StartError};

/// The office's key file inside the data directory.
pub const KEY_FILE_NAME: &str = "wallet-office.key";
/// Largest sync upload accepted (a full unsynced log with room to spare).
pub const SYNC_UPLOAD_BYTES_MAX: usize = 8 << 20;
/// Lock stripes: operations on one wallet wait for each other in this process instead of
/// colliding at commit.
pub const LOCK_STRIPES: usize = 256;

/// This rail's server-side state: the office (its key) and the lock stripes.
pub struct WalletRail {
    office: Office,
    stripes: LockStripes,
    /// One migration of an earlier release's book at a time in this process.
    migrating: Mutex<()>,
}

impl std::fmt::Debug for WalletRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletRail")
            .field("office_public", &hex::encode(self.office.public()))
            .field("office_secret", &"<redacted>")
            .finish()
    }
}

impl WalletRail {
    /// Loads or creates the money office key under the data directory.
    pub fn start(config: &ServerConfig, entropy: &dyn Entropy) -> Result<WalletRail, StartError> {
        let path = config.data_dir.join(KEY_FILE_NAME);
        let keys = load_or_create_key(&path, entropy).map_err(|source| StartError::Io {
            context: format!("money office key {}", path.display()),
            source,
        })?;
        Ok(WalletRail {
            office: Office::new(keys, operator::CREDENTIAL_VALIDITY_MS),
            stripes: LockStripes::new(LOCK_STRIPES),
            migrating: Mutex::new(()),
        })
    }

    /// The office's public key, which every wallet holds.
    pub fn office_public(&self) -> [u8; 32] {
        self.office.public()
    }
}

fn load_or_create_key(path: &Path, entropy: &dyn Entropy) -> std::io::Result<OfficeKeys> {
    let (contents, _) = keyfile::read_or_create(path, || keyfile::random_hex_line(entropy, 32))?;
    let text = keyfile::hex_text(&contents, 32, "not a money office key file")?;
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.as_str(), &mut *secret)
        .map_err(|_| keyfile::invalid("not a money office key file (expected 64 hex digits)"))?;
    Ok(OfficeKeys::from_secret(&secret))
}

// ------------------------------------------------------------------ running the office

/// Why an office operation failed, before it becomes an HTTP answer.
#[derive(Debug)]
enum Failure {
    Run(RunError),
    Office(Error),
}

impl From<RunError> for Failure {
    fn from(error: RunError) -> Failure {
        Failure::Run(error)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Office(error)
    }
}

impl From<LedgerError> for Failure {
    fn from(error: LedgerError) -> Failure {
        Failure::Run(RunError::Ledger(error))
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> ApiError {
        match failure {
            Failure::Office(error) => office_error(error),
            Failure::Run(RunError::Ledger(error)) => error.into(),
            Failure::Run(RunError::Refused(refusal)) => ApiError::refused(&refusal),
            Failure::Run(error) => busy(error),
        }
    }
}

fn busy(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "wallet_book_busy", error.to_string())
}

async fn load(state: &AppState, plan: Plan) -> Result<Working, Failure> {
    Ok(state
        .ledger
        .read(move |store| Ok(operator::load(store, &plan)))
        .await??)
}

/// Runs one operation: lock the stripes of what `plan` names, then load, decide and commit
/// through the runner; a book of an earlier release is migrated first.
async fn run_office<T>(
    state: &Arc<AppState>,
    plan: Plan,
    mut decide: impl FnMut(&Office, Working, Timestamp) -> Result<Decision<T>, Error>,
) -> Result<T, ApiError> {
    let rail = &state.rails.wallet;
    let _stripes = rail.stripes.lock(plan.stripe_keys()).await;
    let mut migrated = false;
    loop {
        let now = state.now();
        let result = runner::run(
            &state.ledger,
            now,
            || load(state, plan.clone()),
            |working| {
                let decision = decide(&rail.office, working, now)?;
                Ok::<_, Failure>(decision)
            },
        )
        .await;
        match result {
            Ok(reply) => return Ok(reply),
            Err(Failure::Office(Error::Book(BookError::LegacyBook))) if !migrated => {
                migrate(state, now).await?;
                migrated = true;
            }
            Err(failure) => return Err(failure.into()),
        }
    }
}

/// Moves an earlier release's whole book into per-record storage, in a task of its own: a large
/// book takes a while, and a request given up meanwhile must not cut the migration short (it
/// would start over from the old book next time).
async fn migrate(state: &Arc<AppState>, now: Timestamp) -> Result<(), ApiError> {
    let task_state = Arc::clone(state);
    tokio::spawn(async move { migrate_steps(&task_state, now).await })
        .await
        .map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the migration of the money office book stopped: {error}"),
            )
        })?
}

/// The migration's steps, in order; a step refused as stale (another server migrating too)
/// starts it over from the old book.
async fn migrate_steps(state: &AppState, now: Timestamp) -> Result<(), ApiError> {
    let _one = state.rails.wallet.migrating.lock().await;
    for _ in 0..runner::ATTEMPTS_MAX {
        let legacy = state
            .ledger
            .read(|store| Ok(operator::load_legacy(store)))
            .await
            .map_err(Failure::from)?
            .map_err(Failure::from)?;
        let Some(legacy) = legacy else {
            return Ok(());
        };
        let steps = operator::migration(&legacy).map_err(Failure::from)?;
        let mut done = true;
        for step in steps {
            match runner::commit(&state.ledger, step, now)
                .await
                .map_err(Failure::from)?
            {
                Attempt::Done(_) => {}
                Attempt::Conflict => {
                    done = false;
                    break;
                }
            }
        }
        if done {
            tracing::info!(
                bytes = legacy.bytes().len(),
                "the money office book of an earlier release was split into records"
            );
            return Ok(());
        }
    }
    Err(busy("another server kept migrating the money office book"))
}

/// What the office knows of `wallet` (`None`: not one of its wallets).
async fn view(state: &Arc<AppState>, wallet: WalletId) -> Result<Option<WalletView>, ApiError> {
    run_office(state, Plan::show(wallet), |office, working, _| {
        Ok(Decision::commit(
            Effects::new(),
            office.show(working, wallet)?,
        ))
    })
    .await
}

fn office_error(error: Error) -> ApiError {
    let (status, code) = match &error {
        Error::Misuse(Misuse::UnknownWallet) => (StatusCode::NOT_FOUND, "unknown_wallet"),
        Error::Misuse(Misuse::UnknownTransfer) => (StatusCode::NOT_FOUND, "unknown_transfer"),
        Error::Misuse(Misuse::WalletBlocked) => (StatusCode::CONFLICT, "wallet_blocked"),
        Error::Misuse(Misuse::WalletNotBlocked) => (StatusCode::CONFLICT, "wallet_not_blocked"),
        Error::Misuse(Misuse::NoCase) => (StatusCode::NOT_FOUND, "no_case"),
        Error::Misuse(Misuse::CaseDecided) => (StatusCode::CONFLICT, "case_decided"),
        Error::Misuse(Misuse::CredentialNotExpired) => {
            (StatusCode::CONFLICT, "credential_not_expired")
        }
        Error::Misuse(Misuse::ResolutionWindowOpen) => {
            (StatusCode::CONFLICT, "resolution_window_open")
        }
        Error::Misuse(Misuse::AlreadyReissued) => (StatusCode::CONFLICT, "already_reissued"),
        Error::Misuse(Misuse::LimitExceeded) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "wallet_limit_exceeded")
        }
        Error::Misuse(_) => (StatusCode::UNPROCESSABLE_ENTITY, "wallet_refused"),
        Error::Peer(_) => (StatusCode::FORBIDDEN, "sync_not_verified"),
        Error::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_upload"),
        Error::Book(BookError::Store(_)) => (StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable"),
        Error::Book(BookError::Contention) => (StatusCode::CONFLICT, "wallet_book_busy"),
        Error::Book(BookError::Refused(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
        Error::Book(_) => {
            tracing::error!(%error, "money office book");
            (StatusCode::INTERNAL_SERVER_ERROR, "wallet_book_unreadable")
        }
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "wallet_refused"),
    };
    ApiError::new(status, code, error.to_string())
}

fn parse_id<const N: usize>(text: &str, code: &str, what: &str) -> Result<[u8; N], ApiError> {
    let mut bytes = [0u8; N];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| {
        ApiError::bad_request(code, format!("{what} {text:?} is not {} hex digits", 2 * N))
    })?;
    Ok(bytes)
}

pub(crate) fn parse_wallet_id(text: &str) -> Result<WalletId, ApiError> {
    parse_id(text, "invalid_wallet_id", "wallet id").map(WalletId)
}

fn parse_key(text: &str, field: &str) -> Result<[u8; 32], ApiError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| {
        ApiError::bad_request("invalid_key", format!("{field} is not 64 hex digits"))
    })?;
    Ok(bytes)
}

fn parse_amount(text: &str, currency: Currency, field: &str) -> Result<Amount, ApiError> {
    Amount::parse(text, currency).map_err(|error| {
        ApiError::bad_request("invalid_amount", format!("{field} {text:?}: {error}"))
    })
}

fn ledger_id(id: Result<AccountId, Error>) -> Result<AccountId, ApiError> {
    id.map_err(office_error)
}

// ------------------------------------------------------------------ device routes

/// Routes devices call: the office's public key, and sync (authenticated by the wallet's
/// signature over its upload and the office's over the credential inside it).
pub fn device_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/wallet/v1/office", get(office_info))
        .route(
            "/wallet/v1/sync",
            post(sync).layer(DefaultBodyLimit::max(SYNC_UPLOAD_BYTES_MAX)),
        )
}

async fn office_info(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "office_public": hex::encode(state.rails.wallet.office_public()),
        "credential_validity_ms": operator::CREDENTIAL_VALIDITY_MS,
    }))
}

/// `POST /wallet/v1/sync`: the body is a signed log upload; the answer, the signed reply. An
/// upload that fails any check is refused with the reason and changes nothing.
async fn sync(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let reply = reconcile(&state, body.to_vec()).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        reply.encode(),
    )
        .into_response())
}

/// A wallet's sync, from the device route or relayed by an operator's tool: counted here, where
/// both pass.
async fn reconcile(state: &Arc<AppState>, upload: Vec<u8>) -> Result<SyncReply, ApiError> {
    let reply = reconcile_upload(state, upload).await;
    let status = reply
        .as_ref()
        .map_or_else(|error| error.status, |_| StatusCode::OK);
    state.metrics.sync("wallet", status);
    reply
}

async fn reconcile_upload(state: &Arc<AppState>, upload: Vec<u8>) -> Result<SyncReply, ApiError> {
    let upload = Arc::new(upload);
    let reconciliation = run_office(state, Plan::sync(upload.clone()), |office, working, now| {
        office.sync(working, &upload, now)
    })
    .await
    .inspect_err(
        |error| tracing::warn!(code = %error.code, message = %error.message, "wallet sync refused"),
    )?;
    for flag in &reconciliation.flags {
        tracing::warn!(flag = %operator::describe_flag(flag), "wallet fraud flag");
    }
    let reply = reconciliation.reply;
    tracing::info!(
        wallet = %reply.wallet_id,
        through_seq = reply.through_seq,
        resolutions = reply.resolutions.len(),
        vouchers = reply.vouchers.len(),
        "wallet synced"
    );
    Ok(reply)
}

// ------------------------------------------------------------------ operator routes

/// Operator routes (mounted under `/api/v1`, behind the operator token).
pub fn operator_routes() -> OperatorRoutes {
    OperatorRoutes::new()
        .post("/wallets", PROVISIONING, issue)
        .get("/wallets", EVERYONE, list)
        .get("/wallets/{id}", EVERYONE, show)
        .post("/wallets/{id}/charge", FINANCE, charge)
        .creates_value(charge_value)
        .post("/wallets/{id}/block", SUPPORT, block)
        .post("/wallets/{id}/case", FINANCE, decide_case)
        .moves_money()
        .post("/wallets/{id}/reissue", FINANCE, reissue)
        .moves_money()
        .post("/wallets/{id}/release", FINANCE, release)
        .moves_money()
        .post("/wallet-transfers/{id}/void", FINANCE, void_abandoned)
        .moves_money()
        .route(
            Method::POST,
            "/wallet-sync",
            PROVISIONING,
            post(relay_sync).layer(DefaultBodyLimit::max(2 * SYNC_UPLOAD_BYTES_MAX + 1024)),
        )
}

/// Body of `POST /api/v1/wallet-sync`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    /// The wallet's signed upload, hex.
    upload: String,
}

/// `POST /api/v1/wallet-sync`: a sync relayed by an operator's tool (an agent's terminal, the
/// demo) as JSON; the upload is checked exactly as on the device route.
async fn relay_sync(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<RelayRequest>,
) -> Result<Json<Value>, ApiError> {
    let upload = hex::decode(&request.upload)
        .map_err(|_| ApiError::bad_request("malformed_upload", "upload is not hex"))?;
    let reply = reconcile(&state, upload).await?;
    Ok(Json(json!({
        "wallet_id": reply.wallet_id.to_string(),
        "reply": hex::encode(reply.encode()),
    })))
}

/// Body of `POST /api/v1/wallets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequestBody {
    signing_key: String,
    encryption_key: String,
    currency: Option<String>,
    balance_max: Option<String>,
    payment_max: Option<String>,
    offline_spend_max: Option<String>,
}

fn credential_json(credential: &Credential) -> Value {
    json!({
        "wallet_id": credential.wallet_id.to_string(),
        "currency": credential.currency.code(),
        "balance_max": credential.limits.balance_max.decimal().to_string(),
        "payment_max": credential.limits.payment_max.decimal().to_string(),
        "offline_spend_max": credential.limits.offline_spend_max.decimal().to_string(),
        "issued_at_ms": credential.issued_at_ms,
        "expires_at_ms": credential.expires_at_ms,
    })
}

/// `POST /api/v1/wallets`: issues a credential for the device's public keys and opens the
/// wallet's ledger account.
async fn issue(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<IssueRequestBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let signing_key = parse_key(&body.signing_key, "signing_key")?;
    let encryption_key = parse_key(&body.encryption_key, "encryption_key")?;
    let currency = match &body.currency {
        None => state.config.currency,
        Some(code) => Currency::from_code(code).map_err(|error| {
            ApiError::bad_request("invalid_currency", format!("currency {code:?}: {error}"))
        })?,
    };
    let defaults = operator::default_limits(currency).map_err(office_error)?;
    let limit = |value: &Option<String>, default: Amount, field: &str| match value {
        Some(text) => parse_amount(text, currency, field),
        None => Ok(default),
    };
    let request = IssueRequest {
        signing_key,
        encryption_key,
        limits: Limits {
            balance_max: limit(&body.balance_max, defaults.balance_max, "balance_max")?,
            payment_max: limit(&body.payment_max, defaults.payment_max, "payment_max")?,
            offline_spend_max: limit(
                &body.offline_spend_max,
                defaults.offline_spend_max,
                "offline_spend_max",
            )?,
        },
        operator_accounts: crate::rails::operator_accounts(currency, state.config.currency),
    };
    let entropy = state.entropy.clone();
    let credential = run_office(&state, Plan::issue(), |office, working, now| {
        office.issue(working, &request, now, entropy.as_ref())
    })
    .await?;
    tracing::info!(wallet = %credential.wallet_id, "wallet issued");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "wallet_id": credential.wallet_id.to_string(),
            "account": ledger_id(operator::wallet_account(&credential.wallet_id))?.to_string(),
            "credential": hex::encode(credential.encode()),
            "office_public": hex::encode(state.rails.wallet.office_public()),
            "limits": credential_json(&credential),
        })),
    ))
}

/// Body of `POST /api/v1/wallets/{id}/charge`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequestBody {
    amount: String,
    /// The account that pays for the charge [default: the operator float].
    from: Option<String>,
}

/// The value a charge creates (for four eyes): its amount when the operator's float pays for
/// it, read in the server's currency (a wallet in another currency is compared by the same
/// decimal number).
fn charge_value(state: &AppState, body: &Value) -> Result<Option<Amount>, String> {
    let from_float = match body["from"].as_str() {
        None => true,
        Some(account) => account.starts_with(crate::rails::OPERATOR_FLOAT),
    };
    if !from_float {
        return Ok(None);
    }
    let text = body["amount"].as_str().ok_or("no amount")?;
    Amount::parse(text, state.config.currency)
        .map(Some)
        .map_err(|error| error.to_string())
}

/// `POST /api/v1/wallets/{id}/charge`: moves value from the funding account to the wallet's
/// account and issues the voucher the wallet picks up at its next sync.
async fn charge(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    ApiJson(body): ApiJson<ChargeRequestBody>,
) -> Result<Json<Value>, ApiError> {
    let wallet = parse_wallet_id(&id)?;
    let currency = view(&state, wallet)
        .await?
        .ok_or_else(|| ApiError::not_found("wallet", &id))?
        .summary
        .credential
        .currency;
    let amount = parse_amount(&body.amount, currency, "amount")?;
    let funding = match &body.from {
        Some(account) => AccountId::new(account.as_str()).map_err(|error| {
            ApiError::bad_request(
                "invalid_account_id",
                format!("account {account:?}: {error}"),
            )
        })?,
        None => crate::rails::operator_account_id(
            crate::rails::OPERATOR_FLOAT,
            currency,
            state.config.currency,
        )
        .ok_or_else(|| ApiError::bad_request("invalid_account_id", "operator float id"))?,
    };
    let request = ChargeRequest {
        wallet,
        amount,
        funding: funding.clone(),
        operator_accounts: crate::rails::operator_accounts(currency, state.config.currency),
    };
    let (voucher, posting) = run_office(&state, Plan::charge(wallet), |office, working, _| {
        office.charge(working, &request)
    })
    .await?;
    tracing::info!(wallet = %wallet, charge_seq = voucher.charge_seq, "wallet charged");
    Ok(Json(json!({
        "wallet_id": wallet.to_string(),
        "amount": amount.decimal().to_string(),
        "currency": currency.code(),
        "charge_seq": voucher.charge_seq,
        "transfer_id": operator::posting_transfer_id(&posting).map_err(office_error)?.to_string(),
        "from": funding.to_string(),
        "voucher": hex::encode(voucher.encode()),
    })))
}

/// `GET /api/v1/wallets/{id}`: the office's view, the ledger account, and for a blocked wallet
/// the reissue quote.
async fn show(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let wallet = parse_wallet_id(&id)?;
    let WalletView {
        summary,
        reissue_quote,
    } = view(&state, wallet)
        .await?
        .ok_or_else(|| ApiError::not_found("wallet", &id))?;
    let account_id = ledger_id(operator::wallet_account(&wallet))?;
    let account = state
        .ledger
        .read(move |store| store.account(&account_id))
        .await?;
    let quote = reissue_quote.map(|quote| {
        json!({
            "shadow": quote.shadow.decimal().to_string(),
            "held": quote.held.decimal().to_string(),
            "unseen_spend_max": quote.unseen_spend_max.decimal().to_string(),
            "reissue": quote.reissue.decimal().to_string(),
            "available_at_ms": quote.available_at_ms,
        })
    });
    Ok(Json(json!({
        "wallet_id": wallet.to_string(),
        "credential": credential_json(&summary.credential),
        "shadow_minor": summary.shadow_minor.to_string(),
        "blocked_at_ms": summary.blocked_at_ms,
        "head_seq": summary.head_seq,
        "charges": summary.charges,
        "charges_applied": summary.charges_applied,
        "open_transfers": summary.open_transfers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "reissued": summary.reissued,
        "remainder_released": summary.remainder_released,
        "case": summary.case.as_ref().map(case_json),
        "settled": settled_json(&summary.settled, summary.credential.currency),
        "account": account.as_ref().map(crate::api::AccountView::from),
        "reissue_quote": quote,
    })))
}

/// One wallet as lists, search and the customer view show it; `None` when the office has no such
/// wallet.
pub(crate) async fn wallet_item(
    state: &Arc<AppState>,
    wallet: WalletId,
) -> Result<Option<Value>, ApiError> {
    let Some(WalletView { summary, .. }) = view(state, wallet).await? else {
        return Ok(None);
    };
    let account_id = ledger_id(operator::wallet_account(&wallet))?;
    let ledger_account = account_id.to_string();
    let account = state
        .ledger
        .read(move |store| store.account(&account_id))
        .await?;
    let currency = summary.credential.currency;
    let wallet_state = if summary.reissued {
        "reissued"
    } else if summary.blocked_at_ms.is_some() {
        "blocked"
    } else {
        "active"
    };
    Ok(Some(json!({
        "wallet_id": wallet.to_string(),
        "state": wallet_state,
        "currency": currency.code(),
        "balance": account.as_ref().map(|account| {
            offpay_ledger::Decimal::new(i128::from(account.balance()), currency).to_string()
        }),
        "balance_minor": account.as_ref().map(offpay_ledger::Account::balance),
        "ledger_account": ledger_account,
        "case": summary.case.as_ref().map(case_json),
        "expires_at": crate::lists::rfc3339(summary.credential.expires_at_ms),
        "api": format!("/api/v1/wallets/{wallet}"),
    })))
}

/// `GET /api/v1/wallets?state=active|blocked|reissued`: the office's wallets in id order.
async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<
        axum::extract::Query<std::collections::BTreeMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<Value>, ApiError> {
    use crate::lists::{Params, scan_records};
    const WALLET_PREFIX: &str = "wallet:";
    let params = Params::parse(query, &["state"])?;
    let wanted = match params.get("state") {
        None => None,
        Some(text @ ("active" | "blocked" | "reissued")) => Some(text.to_owned()),
        Some(text) => {
            return Err(ApiError::bad_request(
                "invalid_state",
                format!("state {text:?} is not active, blocked or reissued"),
            ));
        }
    };
    let after = params.after_under(WALLET_PREFIX)?;
    let limit = params.limit;
    let ids = state
        .ledger
        .read(move |store| {
            scan_records(
                store,
                offpay_wallet::operator::NAMESPACE,
                WALLET_PREFIX,
                after,
                limit,
                |_, record| {
                    Ok(record
                        .key
                        .strip_prefix(WALLET_PREFIX)
                        .and_then(|id| parse_wallet_id(id).ok()))
                },
            )
        })
        .await?;
    let mut items = Vec::new();
    for id in ids.items {
        if let Some(item) = wallet_item(&state, id).await?
            && wanted
                .as_deref()
                .is_none_or(|wanted| item["state"] == wanted)
        {
            items.push(item);
        }
    }
    Ok(crate::lists::Page {
        items,
        next: ids.next,
    }
    .json())
}

/// `POST /api/v1/wallets/{id}/block`: a lost or stolen phone.
async fn block(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let wallet = parse_wallet_id(&id)?;
    run_office(&state, Plan::block(wallet), |office, working, now| {
        office.block(working, wallet, now)
    })
    .await?;
    tracing::info!(wallet = %wallet, "wallet blocked");
    Ok(Json(
        json!({ "wallet_id": wallet.to_string(), "blocked": true }),
    ))
}

/// A containment case for people and machines.
/// What the office keeps of a wallet's settled transfers once it pruned their records.
fn settled_json(settled: &SettledDigest, currency: Currency) -> Value {
    let decimal = |minor: u64| {
        Amount::from_minor(minor.min(Amount::MAX_MINOR), currency)
            .map(|amount| amount.decimal().to_string())
            .unwrap_or_default()
    };
    json!({
        "purchases": settled.purchases,
        "sales": settled.sales,
        "paid": decimal(settled.paid_minor),
        "received": decimal(settled.received_minor),
        "currency": currency.code(),
        "payment_numbers_settled_through": settled.spend_floor,
        "payment_numbers_settled_above": settled.spend_above.iter().collect::<Vec<_>>(),
    })
}

fn case_json(case: &Case) -> Value {
    json!({
        "reason": case.reason.name(),
        "summary": format!("blocked by the money office: the wallet {}", case.reason.describe()),
        "opened_at_ms": case.opened_at_ms,
        "transfer_id": case.transfer_id.map(|id| id.to_string()),
        "decision": case.decision.map(|(decision, _)| decision.name()),
        "decided_at_ms": case.decision.map(|(_, at)| at),
    })
}

/// Body of `POST /api/v1/wallets/{id}/case`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    /// `confirm` (the holder cheated: blocked for good) or `dismiss` (lift the block).
    decision: String,
}

/// `POST /api/v1/wallets/{id}/case`: the operator decides the case the office opened when it
/// blocked the wallet on evidence of a cheat (the evidence is in the fraud queue).
async fn decide_case(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    ApiJson(request): ApiJson<CaseRequest>,
) -> Result<Json<Value>, ApiError> {
    let wallet = parse_wallet_id(&id)?;
    let decision = match request.decision.as_str() {
        "confirm" => CaseDecision::Confirmed,
        "dismiss" => CaseDecision::Dismissed,
        other => {
            return Err(ApiError::bad_request(
                "invalid_decision",
                format!("decision {other:?} is neither \"confirm\" nor \"dismiss\""),
            ));
        }
    };
    let case = run_office(&state, Plan::block(wallet), |office, working, now| {
        office.decide_case(working, wallet, decision, now)
    })
    .await?;
    tracing::info!(wallet = %wallet, decision = decision.name(), "wallet case decided");
    Ok(Json(json!({
        "wallet_id": wallet.to_string(),
        "blocked": decision == CaseDecision::Confirmed,
        "case": case_json(&case),
    })))
}

/// Body of reissue and release.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReissueRequest {
    /// The owner's new wallet.
    to: String,
}

/// `POST /api/v1/wallets/{id}/reissue`: moves a blocked, expired wallet's value, less what it
/// may still have spent offline, to the owner's new wallet.
async fn reissue(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    ApiJson(request): ApiJson<ReissueRequest>,
) -> Result<Json<Value>, ApiError> {
    let lost = parse_wallet_id(&id)?;
    let to = parse_wallet_id(&request.to)?;
    let (quote, posting, _voucher) =
        run_office(&state, Plan::reissue(lost, to), |office, working, now| {
            office.reissue(working, lost, to, now)
        })
        .await?;
    Ok(Json(json!({
        "lost": lost.to_string(),
        "to": to.to_string(),
        "reissued": quote.reissue.decimal().to_string(),
        "held_back": quote.held.decimal().to_string(),
        "unseen_spend_max": quote.unseen_spend_max.decimal().to_string(),
        "transfer_id": operator::posting_transfer_id(&posting).map_err(office_error)?.to_string(),
    })))
}

/// `POST /api/v1/wallets/{id}/release`: releases what a reissue held back, a credential
/// lifetime after the lost wallet's credential expired.
async fn release(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    ApiJson(request): ApiJson<ReissueRequest>,
) -> Result<Json<Value>, ApiError> {
    let lost = parse_wallet_id(&id)?;
    let to = parse_wallet_id(&request.to)?;
    let (amount, posting, _voucher) =
        run_office(&state, Plan::reissue(lost, to), |office, working, now| {
            office.release(working, lost, to, now)
        })
        .await?;
    Ok(Json(json!({
        "lost": lost.to_string(),
        "to": to.to_string(),
        "released": amount.decimal().to_string(),
        "transfer_id": operator::posting_transfer_id(&posting).map_err(office_error)?.to_string(),
    })))
}

/// `POST /api/v1/wallet-transfers/{id}/void`: voids a transfer whose buyer is prepared and whose
/// seller is blocked and expired (it will never sync).
async fn void_abandoned(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let transfer = TransferId(parse_id(&id, "invalid_transfer_id", "transfer id")?);
    run_office(&state, Plan::void(transfer), |office, working, now| {
        office.void_abandoned(working, transfer, now)
    })
    .await?;
    Ok(Json(
        json!({ "transfer_id": transfer.to_string(), "outcome": "voided" }),
    ))
}

/// Background work: none; the office acts when wallets sync or the operator asks.
pub fn spawn_background(state: &Arc<AppState>) {
    let _ = state;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_private_and_read_back() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join(KEY_FILE_NAME);
        let entropy = offpay_operator::SeededEntropy::from_seed(3);
        let created = load_or_create_key(&path, &entropy).unwrap();
        let again = load_or_create_key(&path, &entropy).unwrap();
        assert_eq!(created.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{created:?}").contains(&hex::encode(*created.to_secret())));
    }
}
