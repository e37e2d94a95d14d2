//! Rail 3, the device wallet's money office: issue, charge, reconciliation, lost wallets.
//!
//! The office's logic is [`offpay_wallet::MoneyOffice`] (pure). This module keeps its signing key
//! in `DATA_DIR/wallet-office.key` (mode 0600, never logged), keeps its book as ledger records
//! (namespace `wallet`), and maps what it decides to ledger transfers: every change is computed on
//! a copy of the office, then the postings, the fraud flags and the new book commit in one atomic
//! batch; only then does the copy replace the office in memory. A concurrent writer (another
//! server on the same PostgreSQL database) is caught by the book's record version and the change
//! is recomputed on a fresh copy.
//!
//! Ledger accounts: `wallet:<id>` (a customer account per wallet) shadows the wallet's value as
//! the office sees it; charges come from `operator:float` unless the operator names another
//! funding account. A wallet account has no floor: it goes below zero only when a rolled-back
//! wallet overspent, and that comes with an `overspent` flag in the fraud queue.

use offpay_operator::Entropy;
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use offpay_ledger::{
    AccountId, AccountKind, Amount, BalanceLimits, Batch, Currency, NewAccount, Operation, Outcome,
    RecordWrite, Refusal, Timestamp, Transfer, TransferKind,
};
use offpay_wallet::{
    Credential, Flag, Limits, MoneyOffice, OfficeKeys, OsEntropy, Posting, PostingAccount,
    PostingKind, SyncReply, TransferId, WalletId,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::api::ApiJson;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::fraud::FraudFlag;
use crate::metrics::Metrics;
use crate::{AppState, StartError};

/// Record namespace of this rail.
pub const NAMESPACE: &str = "wallet";
/// Record key of the office book's manifest; its chunks follow as `office-book:00000`, ….
pub const BOOK_KEY: &str = "office-book";
/// Format version of the manifest.
pub const BOOK_MANIFEST_VERSION: u8 = 1;
/// Bytes of the book per record.
pub const BOOK_CHUNK_BYTES: usize = offpay_ledger::RECORD_VALUE_LENGTH_MAX;
/// Most chunks (the book's size limit is this many records' worth).
pub const BOOK_CHUNKS_MAX: usize = 4096;
/// The office's key file inside the data directory.
pub const KEY_FILE_NAME: &str = "wallet-office.key";
/// How long an issued or renewed credential is valid: a wallet must sync at least this often.
pub const CREDENTIAL_VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Largest sync upload accepted (a full unsynced log with room to spare).
pub const SYNC_UPLOAD_BYTES_MAX: usize = 8 << 20;
/// Times a change is recomputed when another writer moved the book underneath it.
pub const COMMIT_ATTEMPTS_MAX: usize = 3;
/// Prefix of the ledger account that shadows a wallet.
pub const ACCOUNT_PREFIX: &str = "wallet:";
/// Default limits of a new wallet, in major units of its currency.
pub const DEFAULT_BALANCE_MAX: &str = "1000";
/// Default largest single payment.
pub const DEFAULT_PAYMENT_MAX: &str = "500";
/// Default most paid out between two syncs.
pub const DEFAULT_OFFLINE_SPEND_MAX: &str = "1000";

const _: () = assert!(BOOK_CHUNKS_MAX + 8 < offpay_ledger::BATCH_OPERATIONS_MAX);

/// The office as last committed, with the version of its manifest record.
struct LoadedBook {
    office: MoneyOffice,
    version: u64,
    chunks: usize,
}

/// This rail's server-side state: the office key and the office, loaded on first use.
pub struct WalletRail {
    keys: OfficeKeys,
    office: Mutex<Option<LoadedBook>>,
}

impl std::fmt::Debug for WalletRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletRail")
            .field("office_public", &hex::encode(self.keys.public()))
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
            keys,
            office: Mutex::new(None),
        })
    }

    /// The office's public key, which every wallet holds.
    pub fn office_public(&self) -> [u8; 32] {
        self.keys.public()
    }
}

fn load_or_create_key(path: &Path, entropy: &dyn Entropy) -> std::io::Result<OfficeKeys> {
    use std::io::Write;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut secret = zeroize_array(&text)?;
            let keys = OfficeKeys::from_secret(&secret);
            secret.fill(0);
            Ok(keys)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            entropy
                .fill(&mut secret)
                .map_err(|error| std::io::Error::other(error.to_string()))?;
            let keys = OfficeKeys::from_secret(&secret);
            secret.fill(0);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path)?;
            let secret = keys.to_secret();
            let mut text = hex::encode(*secret);
            text.push('\n');
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            Ok(keys)
        }
        Err(error) => Err(error),
    }
}

fn zeroize_array(text: &str) -> std::io::Result<[u8; 32]> {
    let mut secret = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut secret).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a money office key file (expected 64 hex digits)",
        )
    })?;
    Ok(secret)
}

// ------------------------------------------------------------------ the book as records

fn chunk_key(index: usize) -> String {
    format!("{BOOK_KEY}:{index:05}")
}

fn encode_manifest(chunks: usize, length: usize) -> Vec<u8> {
    let mut bytes = vec![BOOK_MANIFEST_VERSION];
    bytes.extend_from_slice(&(chunks as u32).to_be_bytes());
    bytes.extend_from_slice(&(length as u64).to_be_bytes());
    bytes
}

fn decode_manifest(bytes: &[u8]) -> Option<(usize, usize)> {
    if bytes.len() != 13 || bytes[0] != BOOK_MANIFEST_VERSION {
        return None;
    }
    let chunks = u32::from_be_bytes(bytes[1..5].try_into().ok()?) as usize;
    let length = u64::from_be_bytes(bytes[5..13].try_into().ok()?) as usize;
    (chunks <= BOOK_CHUNKS_MAX && length <= chunks * BOOK_CHUNK_BYTES).then_some((chunks, length))
}

fn book_error(message: impl Into<String>) -> ApiError {
    let message = message.into();
    tracing::error!(%message, "money office book");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "wallet_book_unreadable",
        message,
    )
}

async fn load_book(state: &AppState) -> Result<LoadedBook, ApiError> {
    let stored = state
        .ledger
        .read(|store| {
            let Some(manifest) = store.record(NAMESPACE, BOOK_KEY)? else {
                return Ok(None);
            };
            let mut chunks = Vec::new();
            if let Some((count, _)) = decode_manifest(&manifest.value) {
                for index in 0..count {
                    chunks.push(store.record(NAMESPACE, &chunk_key(index))?);
                }
            }
            Ok(Some((manifest, chunks)))
        })
        .await?;
    let keys = state.rails.wallet.keys.clone();
    let Some((manifest, chunks)) = stored else {
        return Ok(LoadedBook {
            office: MoneyOffice::new(keys, CREDENTIAL_VALIDITY_MS),
            version: 0,
            chunks: 0,
        });
    };
    let (count, length) = decode_manifest(&manifest.value)
        .ok_or_else(|| book_error("the office book manifest is malformed"))?;
    let mut bytes = Vec::with_capacity(length);
    for chunk in chunks {
        let chunk = chunk.ok_or_else(|| book_error("a chunk of the office book is missing"))?;
        bytes.extend_from_slice(&chunk.value);
    }
    if bytes.len() != length {
        return Err(book_error("the office book has the wrong length"));
    }
    let office = MoneyOffice::decode_book(keys, &bytes)
        .map_err(|error| book_error(format!("the office book does not decode: {error}")))?;
    Ok(LoadedBook {
        office,
        version: manifest.version,
        chunks: count,
    })
}

fn book_writes(book: &[u8], loaded: &LoadedBook) -> Result<(Vec<Operation>, usize), ApiError> {
    let chunks: Vec<&[u8]> = book.chunks(BOOK_CHUNK_BYTES).collect();
    if chunks.len() > BOOK_CHUNKS_MAX {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "wallet_book_full",
            format!(
                "the money office book would exceed {BOOK_CHUNKS_MAX} records of {BOOK_CHUNK_BYTES} bytes"
            ),
        ));
    }
    let mut operations: Vec<Operation> = chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| {
            Operation::PutRecord(RecordWrite {
                namespace: NAMESPACE.to_owned(),
                key: chunk_key(index),
                value: Some(chunk.to_vec()),
                expected_version: None,
            })
        })
        .collect();
    for stale in chunks.len()..loaded.chunks {
        operations.push(Operation::PutRecord(RecordWrite {
            namespace: NAMESPACE.to_owned(),
            key: chunk_key(stale),
            value: None,
            expected_version: None,
        }));
    }
    // The manifest goes last and carries the optimistic check for the whole book.
    operations.push(Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key: BOOK_KEY.to_owned(),
        value: Some(encode_manifest(chunks.len(), book.len())),
        expected_version: Some(loaded.version),
    }));
    Ok((operations, chunks.len()))
}

/// Computes a change on a copy of the office (`change` gets it and the time, and returns its
/// result and the ledger operations it needs), commits those operations with the new book in
/// one batch, and keeps the copy only if the batch committed.
async fn change_office<T>(
    state: &AppState,
    change: impl Fn(&mut MoneyOffice, u64) -> Result<(T, Vec<Operation>), ApiError>,
) -> Result<T, ApiError> {
    let mut guard = state.rails.wallet.office.lock().await;
    for _ in 0..COMMIT_ATTEMPTS_MAX {
        let loaded = match guard.take() {
            Some(loaded) => loaded,
            None => load_book(state).await?,
        };
        let mut office = loaded.office.clone();
        let now = state.now();
        let (value, mut operations) = match change(&mut office, now.0) {
            Ok(changed) => changed,
            Err(error) => {
                *guard = Some(loaded);
                return Err(error);
            }
        };
        let (writes, chunks) = match book_writes(&office.encode_book(), &loaded) {
            Ok(writes) => writes,
            Err(error) => {
                *guard = Some(loaded);
                return Err(error);
            }
        };
        operations.extend(writes);
        let committed = state
            .ledger
            .commit(vec![Batch { operations }], now)
            .await
            .map_err(ApiError::from);
        let result = match committed {
            Ok(mut results) => results.pop(),
            Err(error) => {
                *guard = Some(loaded);
                return Err(error);
            }
        };
        match result {
            Some(Ok(outcomes)) => {
                Metrics::add(&state.metrics.batches_committed, 1);
                let posted = outcomes
                    .iter()
                    .filter(|outcome| **outcome == Outcome::TransferCommitted)
                    .count();
                Metrics::add(&state.metrics.transfers_committed, posted as u64);
                let version = match outcomes.last() {
                    Some(Outcome::RecordWritten { version }) => *version,
                    _ => loaded.version + 1,
                };
                *guard = Some(LoadedBook {
                    office,
                    version,
                    chunks,
                });
                return Ok(value);
            }
            Some(Err(refusal)) => {
                Metrics::add(&state.metrics.batches_refused, 1);
                if matches!(&refusal.reason, Refusal::RecordVersionMismatch { key, .. } if key == BOOK_KEY)
                {
                    tracing::warn!("the money office book changed underneath; reloading it");
                    continue;
                }
                *guard = Some(loaded);
                return Err(ApiError::refused(&refusal));
            }
            None => {
                *guard = Some(loaded);
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the ledger returned no result",
                ));
            }
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "wallet_book_busy",
        "another writer kept changing the money office book; try again",
    ))
}

/// Reads the office (loading it on first use).
async fn read_office<T>(
    state: &AppState,
    read: impl FnOnce(&MoneyOffice) -> T,
) -> Result<T, ApiError> {
    let mut guard = state.rails.wallet.office.lock().await;
    if guard.is_none() {
        *guard = Some(load_book(state).await?);
    }
    match guard.as_ref() {
        Some(loaded) => Ok(read(&loaded.office)),
        None => Err(book_error("the office book is not loaded")),
    }
}

// ------------------------------------------------------------------ mapping to the ledger

/// The ledger account that shadows `wallet`.
pub fn wallet_account(wallet: &WalletId) -> Result<AccountId, ApiError> {
    AccountId::new(format!("{ACCOUNT_PREFIX}{wallet}"))
        .map_err(|error| book_error(format!("wallet account id: {error}")))
}

fn wallet_account_definition(wallet: &WalletId, currency: Currency) -> Result<Operation, ApiError> {
    Ok(Operation::CreateAccount(NewAccount {
        id: wallet_account(wallet)?,
        kind: AccountKind::Customer,
        currency,
        limits: BalanceLimits {
            balance_min: None,
            balance_max: None,
        },
    }))
}

fn posting_operation(
    posting: &Posting,
    funding: Option<&AccountId>,
) -> Result<Operation, ApiError> {
    let account = |side: PostingAccount| -> Result<AccountId, ApiError> {
        match side {
            PostingAccount::Wallet(wallet) => wallet_account(&wallet),
            PostingAccount::Funding => funding
                .cloned()
                .ok_or_else(|| book_error("a posting from a funding account that was not named")),
        }
    };
    let memo = match posting.kind {
        PostingKind::Charge => "wallet charge",
        PostingKind::Transfer => "wallet transfer",
        PostingKind::Reissue => "wallet reissue",
    };
    Ok(Operation::Transfer(Transfer {
        id: offpay_ledger::TransferId::new(format!("wallet:{}", posting.id))
            .map_err(|error| book_error(format!("posting id: {error}")))?,
        debit_account: account(posting.from)?,
        credit_account: account(posting.to)?,
        amount: posting.amount,
        kind: TransferKind::Posted,
        memo: memo.to_owned(),
    }))
}

fn flag_operation(flag: &Flag, now: Timestamp) -> Option<Operation> {
    let terms_json = |terms: &offpay_wallet::terms::Terms| {
        json!({
            "transfer_id": terms.transfer_id.to_string(),
            "seller": terms.seller.to_string(),
            "buyer": terms.buyer.to_string(),
            "amount": terms.amount.decimal().to_string(),
            "currency": terms.amount.currency().code(),
        })
    };
    let (kind, subject, summary, evidence, discriminator) = match flag {
        Flag::DoubleSpend {
            wallet,
            first,
            second,
        } => (
            "double_spend",
            wallet.to_string(),
            format!(
                "wallet signed two payments with payment number {}: it was rolled back and spent twice",
                second.agreement.buyer_spend_seq
            ),
            json!({
                "payment_number": second.agreement.buyer_spend_seq,
                "first": terms_json(&first.terms),
                "second": terms_json(&second.terms),
            }),
            format!(
                "{}:{}",
                second.agreement.buyer_spend_seq, second.terms.transfer_id
            ),
        ),
        Flag::ForkedLog {
            wallet,
            known_head_seq,
            known_head_hash,
            uploaded_head_seq,
            uploaded_head_hash,
        } => (
            "forked_log",
            wallet.to_string(),
            format!(
                "the uploaded log (head {uploaded_head_seq}) does not contain the head {known_head_seq} reconciled before: the wallet was rolled back"
            ),
            json!({
                "known_head_seq": known_head_seq,
                "known_head_hash": hex::encode(known_head_hash),
                "uploaded_head_seq": uploaded_head_seq,
                "uploaded_head_hash": hex::encode(uploaded_head_hash),
            }),
            format!(
                "{uploaded_head_seq}:{}",
                hex::encode(&uploaded_head_hash[..8])
            ),
        ),
        Flag::Overspent {
            wallet,
            shadow_minor,
        } => (
            "overspent",
            wallet.to_string(),
            format!("the office's view of the wallet is {shadow_minor} minor units, below zero"),
            json!({ "shadow_minor": shadow_minor.to_string() }),
            shadow_minor.to_string(),
        ),
        Flag::ConflictingOutcome { transfer_id } => (
            "conflicting_outcome",
            transfer_id.to_string(),
            "the two sides of a transfer logged different outcomes".to_owned(),
            json!({ "transfer_id": transfer_id.to_string() }),
            transfer_id.to_string(),
        ),
        Flag::BlockedWalletTransacted {
            wallet,
            transfer_id,
        } => (
            "blocked_wallet_paid",
            wallet.to_string(),
            "a blocked wallet took part in a transfer".to_owned(),
            json!({ "transfer_id": transfer_id.to_string() }),
            transfer_id.to_string(),
        ),
        other => (
            "other",
            "unknown".to_owned(),
            format!("{other:?}"),
            Value::Null,
            format!("{}", now.0),
        ),
    };
    Some(
        FraudFlag::new(NAMESPACE, kind, &subject, summary, evidence, now).operation(&discriminator),
    )
}

fn office_error(error: offpay_wallet::Error) -> ApiError {
    use offpay_wallet::{Error, Misuse};
    let (status, code) = match &error {
        Error::Misuse(Misuse::UnknownWallet) => (StatusCode::NOT_FOUND, "unknown_wallet"),
        Error::Misuse(Misuse::UnknownTransfer) => (StatusCode::NOT_FOUND, "unknown_transfer"),
        Error::Misuse(Misuse::WalletBlocked) => (StatusCode::CONFLICT, "wallet_blocked"),
        Error::Misuse(Misuse::WalletNotBlocked) => (StatusCode::CONFLICT, "wallet_not_blocked"),
        Error::Misuse(Misuse::CredentialNotExpired) => {
            (StatusCode::CONFLICT, "credential_not_expired")
        }
        Error::Misuse(Misuse::AlreadyReissued) => (StatusCode::CONFLICT, "already_reissued"),
        Error::Misuse(Misuse::LimitExceeded) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "wallet_limit_exceeded")
        }
        Error::Misuse(_) => (StatusCode::UNPROCESSABLE_ENTITY, "wallet_refused"),
        Error::Peer(_) => (StatusCode::FORBIDDEN, "sync_not_verified"),
        Error::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_upload"),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "wallet_refused"),
    };
    ApiError::new(status, code, error.to_string())
}

fn parse_wallet_id(text: &str) -> Result<WalletId, ApiError> {
    let mut bytes = [0u8; 16];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| {
        ApiError::bad_request(
            "invalid_wallet_id",
            format!("wallet id {text:?} is not 32 hex digits"),
        )
    })?;
    Ok(WalletId(bytes))
}

fn parse_transfer_id(text: &str) -> Result<TransferId, ApiError> {
    let mut bytes = [0u8; 16];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| {
        ApiError::bad_request(
            "invalid_transfer_id",
            format!("transfer id {text:?} is not 32 hex digits"),
        )
    })?;
    Ok(TransferId(bytes))
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
        "credential_validity_ms": CREDENTIAL_VALIDITY_MS,
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

async fn reconcile(state: &AppState, upload: Vec<u8>) -> Result<SyncReply, ApiError> {
    let reply: SyncReply = change_office(state, |office, now_ms| {
        let reconciliation = office.reconcile(&upload, now_ms).map_err(|error| {
            tracing::warn!(%error, "wallet sync refused");
            office_error(error)
        })?;
        let now = Timestamp(now_ms);
        let mut operations = Vec::new();
        for posting in &reconciliation.postings {
            operations.push(posting_operation(posting, None)?);
        }
        for flag in &reconciliation.flags {
            tracing::warn!(?flag, "wallet fraud flag");
            operations.extend(flag_operation(flag, now));
        }
        Ok((reconciliation.reply, operations))
    })
    .await?;
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
pub fn operator_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/wallets", post(issue))
        .route("/wallets/{id}", get(show))
        .route("/wallets/{id}/charge", post(charge))
        .route("/wallets/{id}/block", post(block))
        .route("/wallets/{id}/reissue", post(reissue))
        .route("/wallets/{id}/release", post(release))
        .route("/wallet-transfers/{id}/void", post(void_abandoned))
        .route(
            "/wallet-sync",
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
pub struct IssueRequest {
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
    ApiJson(request): ApiJson<IssueRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let signing_key = parse_key(&request.signing_key, "signing_key")?;
    let encryption_key = parse_key(&request.encryption_key, "encryption_key")?;
    let currency = match &request.currency {
        None => state.config.currency,
        Some(code) => Currency::from_code(code).map_err(|error| {
            ApiError::bad_request("invalid_currency", format!("currency {code:?}: {error}"))
        })?,
    };
    let limit = |value: &Option<String>, default: &str, field: &str| {
        parse_amount(value.as_deref().unwrap_or(default), currency, field)
    };
    let limits = Limits {
        balance_max: limit(&request.balance_max, DEFAULT_BALANCE_MAX, "balance_max")?,
        payment_max: limit(&request.payment_max, DEFAULT_PAYMENT_MAX, "payment_max")?,
        offline_spend_max: limit(
            &request.offline_spend_max,
            DEFAULT_OFFLINE_SPEND_MAX,
            "offline_spend_max",
        )?,
    };
    let credential = change_office(&state, |office, now| {
        let credential = office
            .issue_wallet(signing_key, encryption_key, limits, now, &mut OsEntropy)
            .map_err(office_error)?;
        let mut operations = crate::rails::operator_accounts(currency, state.config.currency);
        operations.push(wallet_account_definition(&credential.wallet_id, currency)?);
        Ok((credential, operations))
    })
    .await?;
    tracing::info!(wallet = %credential.wallet_id, "wallet issued");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "wallet_id": credential.wallet_id.to_string(),
            "account": wallet_account(&credential.wallet_id)?.to_string(),
            "credential": hex::encode(credential.encode()),
            "office_public": hex::encode(state.rails.wallet.office_public()),
            "limits": credential_json(&credential),
        })),
    ))
}

/// Body of `POST /api/v1/wallets/{id}/charge`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    amount: String,
    /// The account that pays for the charge [default: the operator float].
    from: Option<String>,
}

/// `POST /api/v1/wallets/{id}/charge`: moves value from the funding account to the wallet's
/// account and issues the voucher the wallet picks up at its next sync.
async fn charge(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    ApiJson(request): ApiJson<ChargeRequest>,
) -> Result<Json<Value>, ApiError> {
    let wallet_id = parse_wallet_id(&id)?;
    let currency = read_office(&state, |office| {
        office
            .wallet_summary(&wallet_id)
            .map(|summary| summary.credential.currency)
    })
    .await?
    .ok_or_else(|| ApiError::not_found("wallet", &id))?;
    let amount = parse_amount(&request.amount, currency, "amount")?;
    let funding = match &request.from {
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
        .ok_or_else(|| book_error("operator float id"))?,
    };
    let (voucher, posting) = change_office(&state, |office, _now| {
        let (voucher, posting) = office.charge(wallet_id, amount).map_err(office_error)?;
        let mut operations = crate::rails::operator_accounts(currency, state.config.currency);
        operations.push(posting_operation(&posting, Some(&funding))?);
        Ok(((voucher, posting), operations))
    })
    .await?;
    tracing::info!(wallet = %wallet_id, charge_seq = voucher.charge_seq, "wallet charged");
    Ok(Json(json!({
        "wallet_id": wallet_id.to_string(),
        "amount": amount.decimal().to_string(),
        "currency": currency.code(),
        "charge_seq": voucher.charge_seq,
        "transfer_id": format!("wallet:{}", posting.id),
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
    let wallet_id = parse_wallet_id(&id)?;
    let (summary, quote) = read_office(&state, |office| {
        let summary = office.wallet_summary(&wallet_id);
        let quote = office.reissue_quote(&wallet_id).ok();
        (summary, quote)
    })
    .await?;
    let summary = summary.ok_or_else(|| ApiError::not_found("wallet", &id))?;
    let account_id = wallet_account(&wallet_id)?;
    let account = state
        .ledger
        .read(move |store| store.account(&account_id))
        .await?;
    let quote = quote
        .filter(|_| summary.blocked_at_ms.is_some())
        .map(|quote| {
            json!({
                "shadow": quote.shadow.decimal().to_string(),
                "held": quote.held.decimal().to_string(),
                "unseen_spend_max": quote.unseen_spend_max.decimal().to_string(),
                "reissue": quote.reissue.decimal().to_string(),
                "available_at_ms": quote.available_at_ms,
            })
        });
    Ok(Json(json!({
        "wallet_id": wallet_id.to_string(),
        "credential": credential_json(&summary.credential),
        "shadow_minor": summary.shadow_minor.to_string(),
        "blocked_at_ms": summary.blocked_at_ms,
        "head_seq": summary.head_seq,
        "charges": summary.charges,
        "charges_applied": summary.charges_applied,
        "open_transfers": summary.open_transfers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "reissued": summary.reissued,
        "remainder_released": summary.remainder_released,
        "account": account.as_ref().map(crate::api::AccountView::from),
        "reissue_quote": quote,
    })))
}

/// `POST /api/v1/wallets/{id}/block`: a lost or stolen phone.
async fn block(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let wallet_id = parse_wallet_id(&id)?;
    change_office(&state, |office, now| {
        office.block(wallet_id, now).map_err(office_error)?;
        Ok(((), Vec::new()))
    })
    .await?;
    tracing::info!(wallet = %wallet_id, "wallet blocked");
    Ok(Json(
        json!({ "wallet_id": wallet_id.to_string(), "blocked": true }),
    ))
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
    let new_wallet = parse_wallet_id(&request.to)?;
    let (quote, posting) = change_office(&state, |office, now| {
        let (quote, posting, _voucher) = office
            .reissue(lost, new_wallet, now)
            .map_err(office_error)?;
        let operations = if posting.amount.is_zero() {
            Vec::new()
        } else {
            vec![posting_operation(&posting, None)?]
        };
        Ok(((quote, posting), operations))
    })
    .await?;
    Ok(Json(json!({
        "lost": lost.to_string(),
        "to": new_wallet.to_string(),
        "reissued": quote.reissue.decimal().to_string(),
        "held_back": quote.held.decimal().to_string(),
        "unseen_spend_max": quote.unseen_spend_max.decimal().to_string(),
        "transfer_id": format!("wallet:{}", posting.id),
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
    let new_wallet = parse_wallet_id(&request.to)?;
    let (amount, posting) = change_office(&state, |office, now| {
        let (amount, posting, _voucher) = office
            .release_remainder(lost, new_wallet, now)
            .map_err(office_error)?;
        Ok(((amount, posting), vec![posting_operation(&posting, None)?]))
    })
    .await?;
    Ok(Json(json!({
        "lost": lost.to_string(),
        "to": new_wallet.to_string(),
        "released": amount.decimal().to_string(),
        "transfer_id": format!("wallet:{}", posting.id),
    })))
}

/// `POST /api/v1/wallet-transfers/{id}/void`: voids a transfer whose buyer is prepared and whose
/// seller is blocked and expired (it will never sync).
async fn void_abandoned(
    State(state): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let transfer_id = parse_transfer_id(&id)?;
    change_office(&state, |office, now| {
        office
            .resolve_abandoned(transfer_id, now)
            .map_err(office_error)?;
        Ok(((), Vec::new()))
    })
    .await?;
    Ok(Json(
        json!({ "transfer_id": transfer_id.to_string(), "outcome": "voided" }),
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
    fn manifests_round_trip_and_refuse_nonsense() {
        let bytes = encode_manifest(3, 2 * BOOK_CHUNK_BYTES + 5);
        assert_eq!(decode_manifest(&bytes), Some((3, 2 * BOOK_CHUNK_BYTES + 5)));
        assert_eq!(
            decode_manifest(&encode_manifest(1, BOOK_CHUNK_BYTES + 1)),
            None
        );
        assert_eq!(decode_manifest(&bytes[..12]), None);
        let mut other_version = bytes.clone();
        other_version[0] = 9;
        assert_eq!(decode_manifest(&other_version), None);
    }

    #[test]
    fn the_key_file_is_private_and_read_back() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join(KEY_FILE_NAME);
        let created = load_or_create_key(&path, &offpay_operator::OsEntropy).unwrap();
        let again = load_or_create_key(&path, &offpay_operator::OsEntropy).unwrap();
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
