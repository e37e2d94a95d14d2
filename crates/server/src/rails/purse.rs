//! Rail 1, the short-code purse: provisioning, float, sync, reconciliation and the fraud queue.
//!
//! The protocol is pure logic in `offpay-purse`; this module stores its operator book and wires
//! it to HTTP and the ledger.
//!
//! **Keys.** The operator's master key lives in `DATA_DIR/purse/master.key` (32 random bytes,
//! mode 0600, created at first start, never logged, never in the database); the operator id in
//! `DATA_DIR/purse/operator.id` (created from `OFFPAY_PURSE_OPERATOR`, default `offpay`). Every
//! per-purse, scheme and pairwise key is derived from the master key when needed.
//!
//! **Storage.** The book is kept in ledger records of namespace [`NAMESPACE`], one per piece, so
//! that an operation reads and writes only what it touches (a sync costs O(its entries and
//! counterparties), never O(all purses)):
//!
//! | key | value |
//! |---|---|
//! | `book` | shared state: operator, currency, scheme epochs, id counters, blocked phones |
//! | `shadow/<purse id>` | one purse's shadow account |
//! | `phone/<E.164>` | the purse id of a phone |
//! | `debits/<payee>/<payer>` | debits the payer reported that the payee has not |
//! | `credits/<payer>/<payee>` | credits the payee reported that the payer has not |
//! | `pair/<low id>-<high id>` | pairwise-key version of a pair |
//!
//! An operation loads its pieces, builds a partial [`OperatorBook`], runs, and commits the
//! changed records (each with the version it was read at), the postings and the fraud flags in
//! one batch: the book and the ledger never disagree. Operations that touch the same phones are
//! serialised by in-process lock stripes held from load to commit (so two purses reporting the
//! two sides of one payment at the same moment are matched); the record versions turn a
//! conflicting writer in another process into a retry instead of a lost update.
//!
//! Ledger accounts: `purse:<E.164>` per purse (kind `customer`, or `agent_float` for agents), with
//! no balance floor, because the shadow follows what the purse reports and a cloned purse spent
//! twice must be able to go negative (the loss is then visible on its account); the operator's
//! float and suspense accounts of [`crate::rails`].

use offpay_operator::Entropy;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use offpay_ledger::{
    AccountId, AccountKind, Amount, BATCH_OPERATIONS_MAX, BalanceLimits, Batch, BatchRefusal,
    Currency, LedgerStore, NewAccount, Operation, RECORD_PAGE_MAX, Record, RecordWrite, Refusal,
    StoreError, Transfer, TransferId, TransferKind,
};
use offpay_purse::crypto::{MASTER_KEY_BYTES, MasterKey};
use offpay_purse::operator::{CreditKey, DebitKey, OpenCredit, OpenDebit};
use offpay_purse::{
    BookHeader, BookParts, Cause, EntryKind, Flag, LedgerAccount, OfflineLimits, OperatorBook,
    OperatorId, OperatorSecrets, Phone, Posting, PurseError, PurseId, PurseKind, ShadowAccount,
    sync_counterparties,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::fraud::FraudFlag;
use crate::ledger::{Ledger, LedgerError};
use crate::rails::{OPERATOR_FLOAT, SUSPENSE, operator_account_id, operator_accounts};
use crate::{AppState, StartError};

/// Record namespace of the operator book.
pub const NAMESPACE: &str = "purse";
/// Directory under the data directory holding this rail's key files.
pub const KEY_DIRECTORY: &str = "purse";
/// The master key file's name.
pub const MASTER_KEY_FILE: &str = "master.key";
/// The operator id file's name.
pub const OPERATOR_FILE: &str = "operator.id";
/// Environment variable naming the operator id when the operator file is first created.
pub const OPERATOR_ENVIRONMENT: &str = "OFFPAY_PURSE_OPERATOR";
/// Operator id used when neither the file nor the environment names one.
pub const OPERATOR_DEFAULT: &str = "offpay";
/// Largest sync upload accepted (an upload of `UPLOAD_ENTRIES_MAX` entries is about 420 KB).
pub const UPLOAD_BYTES_MAX: usize = 1 << 20;
/// Lock stripes serialising operations that touch the same phones.
pub const LOCK_STRIPES: usize = 256;
/// Attempts of one operation when another writer changed a record it read.
pub const ATTEMPTS_MAX: usize = 8;
/// Pages read when scanning one purse's open payments (each of `RECORD_PAGE_MAX` records).
pub const SCAN_PAGES_MAX: usize = 1024;
/// Longest memo on an operator credit, in bytes.
pub const FLOAT_MEMO_BYTES_MAX: usize = offpay_purse::params::MEMO_BYTES_MAX;
/// Milliseconds per second (ledger timestamps are milliseconds, purse timestamps seconds).
const MILLISECONDS_PER_SECOND: u64 = 1000;
/// Media type of the binary sync messages.
pub const SYNC_MEDIA_TYPE: &str = "application/octet-stream";
/// Rail name in the fraud queue.
pub const RAIL: &str = "purse";

const KEY_BOOK: &str = "book";

const _: () = assert!(LOCK_STRIPES > 0 && ATTEMPTS_MAX > 0 && SCAN_PAGES_MAX > 0);
const _: () = assert!(UPLOAD_BYTES_MAX > offpay_purse::params::UPLOAD_ENTRIES_MAX * 48);

/// This rail's server-side state: the operator's secrets and the lock stripes.
pub struct PurseRail {
    secrets: OperatorSecrets,
    currency: Currency,
    server_currency: Currency,
    locks: Vec<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for PurseRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurseRail")
            .field("operator", &self.secrets.operator())
            .field("currency", &self.currency)
            .field("master_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn start_error(context: String) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Io { context, source }
}

/// Writes `bytes` to a new file readable only by its owner (refuses to overwrite).
fn create_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn load_or_create_master_key(path: &Path, entropy: &dyn Entropy) -> Result<MasterKey, StartError> {
    let context = format!("purse master key {}", path.display());
    match std::fs::read(path) {
        Ok(bytes) => {
            let bytes: [u8; MASTER_KEY_BYTES] =
                bytes.try_into().map_err(|bytes: Vec<u8>| StartError::Io {
                    context: context.clone(),
                    source: std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!("{} bytes, not {MASTER_KEY_BYTES}", bytes.len()),
                    ),
                })?;
            Ok(MasterKey::from_bytes(bytes))
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {
            let mut bytes = [0u8; MASTER_KEY_BYTES];
            entropy
                .fill(&mut bytes)
                .map_err(|error| std::io::Error::other(error.to_string()))
                .map_err(start_error(context.clone()))?;
            create_private_file(path, &bytes).map_err(start_error(context))?;
            tracing::info!(path = %path.display(), "created the purse master key");
            Ok(MasterKey::from_bytes(bytes))
        }
        Err(error) => Err(StartError::Io {
            context,
            source: error,
        }),
    }
}

fn load_or_create_operator(path: &Path) -> Result<OperatorId, StartError> {
    let context = format!("purse operator id {}", path.display());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            let text =
                std::env::var(OPERATOR_ENVIRONMENT).unwrap_or_else(|_| OPERATOR_DEFAULT.to_owned());
            create_private_file(path, format!("{}\n", text.trim()).as_bytes())
                .map_err(start_error(context.clone()))?;
            text
        }
        Err(error) => {
            return Err(StartError::Io {
                context,
                source: error,
            });
        }
    };
    OperatorId::new(text.trim()).map_err(|error| StartError::Io {
        context,
        source: std::io::Error::new(ErrorKind::InvalidData, error.to_string()),
    })
}

impl PurseRail {
    /// Loads or creates this rail's keys under the data directory.
    pub fn start(config: &ServerConfig, entropy: &dyn Entropy) -> Result<PurseRail, StartError> {
        let directory = config.data_dir.join(KEY_DIRECTORY);
        std::fs::create_dir_all(&directory).map_err(start_error(format!(
            "cannot create {}",
            directory.display()
        )))?;
        let operator = load_or_create_operator(&directory.join(OPERATOR_FILE))?;
        let master = load_or_create_master_key(&directory.join(MASTER_KEY_FILE), entropy)?;
        tracing::info!(operator = %operator, "purse rail ready");
        Ok(PurseRail::new(
            OperatorSecrets::new(operator, master),
            config.currency,
        ))
    }

    /// A rail with given secrets, for purses in `currency` (the server's currency).
    pub fn new(secrets: OperatorSecrets, currency: Currency) -> PurseRail {
        PurseRail {
            secrets,
            currency,
            server_currency: currency,
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// The operator id purses of this server carry.
    pub fn operator(&self) -> OperatorId {
        self.secrets.operator()
    }

    async fn lock(&self, phones: &BTreeSet<Phone>) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let stripes: BTreeSet<usize> = phones
            .iter()
            .map(|phone| (phone.number() % LOCK_STRIPES as u64) as usize)
            .collect();
        let mut guards = Vec::with_capacity(stripes.len());
        // Always in ascending stripe order, so two operations never wait for each other.
        for stripe in stripes {
            guards.push(self.locks[stripe].lock().await);
        }
        guards
    }

    fn account_id(&self, name: &str) -> Result<AccountId, RailError> {
        operator_account_id(name, self.currency, self.server_currency)
            .ok_or(RailError::Internal("operator account id"))
    }
}

/// The ledger account of the purse with this phone.
pub fn purse_account_id(phone: Phone) -> Result<AccountId, RailError> {
    AccountId::new(format!("purse:{phone}")).map_err(|_| RailError::Internal("purse account id"))
}

/// Why an operation of this rail failed. Nothing of a failed operation was committed, except
/// that an upload too large for one ledger batch may have committed its (idempotent) leading
/// postings before a later batch was refused; retrying the upload completes it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RailError {
    /// The protocol refused the message or request.
    #[error(transparent)]
    Purse(#[from] PurseError),
    /// The ledger is unavailable.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The store failed to read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger refused a batch.
    #[error(transparent)]
    Refused(#[from] BatchRefusal),
    /// A stored record does not parse.
    #[error("stored purse record {key} is corrupt: {message}")]
    Corrupt {
        /// Record key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Other writers kept changing the records this operation read.
    #[error("the purse records kept changing under this operation; try again")]
    Contention,
    /// A broken invariant of this module.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<RailError> for ApiError {
    fn from(error: RailError) -> ApiError {
        match error {
            RailError::Purse(error) => purse_api_error(&error),
            RailError::Ledger(error) => ApiError::from(error),
            RailError::Refused(refusal) => ApiError::refused(&refusal),
            RailError::Contention => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "contention",
                error.to_string(),
            ),
            RailError::Store(_) | RailError::Corrupt { .. } | RailError::Internal(_) => {
                tracing::error!(%error, "purse rail failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "purse_internal",
                    error.to_string(),
                )
            }
        }
    }
}

fn purse_api_error(error: &PurseError) -> ApiError {
    let (status, code) = match error {
        PurseError::AuthenticationFailed => (StatusCode::UNAUTHORIZED, "sync_unauthenticated"),
        PurseError::SyncReplayed { .. } => (StatusCode::CONFLICT, "sync_replayed"),
        PurseError::WrongOperator { .. } => (StatusCode::FORBIDDEN, "wrong_operator"),
        PurseError::Malformed(_) | PurseError::UnsupportedVersion { .. } => {
            (StatusCode::BAD_REQUEST, "malformed_message")
        }
        PurseError::UnknownPurse(_) => (StatusCode::NOT_FOUND, "unknown_purse"),
        PurseError::UnknownPhone(_) => (StatusCode::NOT_FOUND, "unknown_phone"),
        PurseError::PhoneTaken(_) => (StatusCode::CONFLICT, "phone_taken"),
        _ => match error.cause() {
            Cause::Input => (StatusCode::BAD_REQUEST, "invalid_input"),
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
        },
    };
    let message = match error {
        PurseError::AuthenticationFailed => {
            "the sync message failed authentication (wrong key, altered or truncated); nothing changed".to_owned()
        }
        PurseError::SyncReplayed { .. } => format!("{error}; nothing changed"),
        _ => error.to_string(),
    };
    ApiError::new(status, code, message)
}

// ---------------------------------------------------------------------------------------------
// Records: loading the pieces of the book an operation needs, and writing back what changed.

/// Which records an operation needs.
#[derive(Clone, Debug, Default)]
struct LoadPlan {
    /// The purse the operation is about, by id (sync) ...
    purse: Option<PurseId>,
    /// ... or by phone (admin operations).
    phone: Option<Phone>,
    /// Scan the purse's open debits (as payee) and open credits (as payer).
    scan_own: bool,
    /// Payees of the purse's debits: the open debits it may add to.
    payees: BTreeSet<Phone>,
    /// Payers of its credits and its pairwise peers: their shadows, the open credits it may add
    /// to, and the pair's key version.
    counterparties: BTreeSet<Phone>,
    /// Extra keys to read even if absent (new records of a provisioning).
    extra: Vec<String>,
}

/// Records as read: key → (version, value). Version 0 and `None`: read and absent.
#[derive(Debug, Default)]
struct RecordSet {
    records: BTreeMap<String, (u64, Option<Vec<u8>>)>,
}

fn shadow_key(purse_id: PurseId) -> String {
    format!("shadow/{}", purse_id.0)
}
fn phone_key(phone: Phone) -> String {
    format!("phone/{phone}")
}
fn debits_key(payee: u64, payer: u64) -> String {
    format!("debits/+{payee}/+{payer}")
}
fn credits_key(payer: u64, payee: u64) -> String {
    format!("credits/+{payer}/+{payee}")
}
fn pair_key(low: PurseId, high: PurseId) -> String {
    format!("pair/{}-{}", low.0, high.0)
}

impl RecordSet {
    fn read(&mut self, store: &mut dyn LedgerStore, key: &str) -> Result<(), StoreError> {
        if self.records.contains_key(key) {
            return Ok(());
        }
        let entry = match store.record(NAMESPACE, key)? {
            Some(Record { value, version, .. }) => (version, Some(value)),
            None => (0, None),
        };
        self.records.insert(key.to_owned(), entry);
        Ok(())
    }

    fn scan(&mut self, store: &mut dyn LedgerStore, prefix: &str) -> Result<(), StoreError> {
        let mut after: Option<String> = None;
        for _ in 0..SCAN_PAGES_MAX {
            let page = store.records(NAMESPACE, prefix, after.as_deref(), RECORD_PAGE_MAX)?;
            let full = page.len() == RECORD_PAGE_MAX;
            after = page.last().map(|record| record.key.clone());
            for record in page {
                self.records
                    .insert(record.key, (record.version, Some(record.value)));
            }
            if !full {
                return Ok(());
            }
        }
        Err(StoreError::Corrupt(format!(
            "more than {} purse records under {prefix}",
            SCAN_PAGES_MAX * RECORD_PAGE_MAX
        )))
    }

    fn value(&self, key: &str) -> Option<&[u8]> {
        self.records
            .get(key)
            .and_then(|(_, value)| value.as_deref())
    }

    fn shadow_phone(&self, purse_id: PurseId) -> Option<Phone> {
        let bytes = self.value(&shadow_key(purse_id))?;
        serde_json::from_slice::<ShadowAccount>(bytes)
            .ok()
            .map(|shadow| shadow.phone)
    }

    fn phone_purse(&self, phone: Phone) -> Option<PurseId> {
        let bytes = self.value(&phone_key(phone))?;
        serde_json::from_slice::<u64>(bytes).ok().map(PurseId)
    }
}

/// Runs `plan` against the store (on the ledger thread).
fn load(store: &mut dyn LedgerStore, plan: &LoadPlan) -> Result<RecordSet, StoreError> {
    let mut set = RecordSet::default();
    set.read(store, KEY_BOOK)?;
    for key in &plan.extra {
        set.read(store, key)?;
    }
    let mut own: Option<(PurseId, Phone)> = None;
    if let Some(phone) = plan.phone {
        set.read(store, &phone_key(phone))?;
        if let Some(purse_id) = set.phone_purse(phone) {
            set.read(store, &shadow_key(purse_id))?;
            own = Some((purse_id, phone));
        }
    }
    if let Some(purse_id) = plan.purse {
        set.read(store, &shadow_key(purse_id))?;
        if let Some(phone) = set.shadow_phone(purse_id) {
            set.read(store, &phone_key(phone))?;
            own = Some((purse_id, phone));
        }
    }
    let Some((purse_id, phone)) = own else {
        return Ok(set);
    };
    if plan.scan_own {
        set.scan(store, &format!("debits/{phone}/"))?;
        set.scan(store, &format!("credits/{phone}/"))?;
    }
    // Records under the purse's own prefixes came with the scans; a sync only adds records
    // under its counterparties' prefixes.
    for payee in &plan.payees {
        if *payee != phone {
            set.read(store, &debits_key(payee.number(), phone.number()))?;
        }
    }
    for counterparty in &plan.counterparties {
        if *counterparty == phone {
            continue;
        }
        set.read(store, &phone_key(*counterparty))?;
        if let Some(peer) = set.phone_purse(*counterparty) {
            set.read(store, &shadow_key(peer))?;
            let (low, high) = if purse_id <= peer {
                (purse_id, peer)
            } else {
                (peer, purse_id)
            };
            set.read(store, &pair_key(low, high))?;
        }
        set.read(store, &credits_key(counterparty.number(), phone.number()))?;
        if !plan.scan_own {
            set.read(store, &debits_key(phone.number(), counterparty.number()))?;
            set.read(store, &credits_key(phone.number(), counterparty.number()))?;
        }
    }
    Ok(set)
}

fn corrupt(key: &str, error: impl std::fmt::Display) -> RailError {
    RailError::Corrupt {
        key: key.to_owned(),
        message: error.to_string(),
    }
}

/// The header stored, or a fresh one for a new book.
fn header_of(set: &RecordSet, rail: &PurseRail) -> Result<BookHeader, RailError> {
    match set.value(KEY_BOOK) {
        Some(bytes) => {
            let header: BookHeader =
                serde_json::from_slice(bytes).map_err(|error| corrupt(KEY_BOOK, error))?;
            if header.operator != rail.secrets.operator() {
                return Err(PurseError::WrongOperator {
                    expected: header.operator,
                    found: rail.secrets.operator(),
                }
                .into());
            }
            Ok(header)
        }
        None => Ok(OperatorBook::new(rail.secrets.operator(), rail.currency).header()),
    }
}

fn parts_of(set: &RecordSet, rail: &PurseRail) -> Result<BookParts, RailError> {
    let mut parts = BookParts {
        header: header_of(set, rail)?,
        shadows: Vec::new(),
        open_debits: Vec::new(),
        open_credits: Vec::new(),
        pairwise_versions: Vec::new(),
    };
    for (key, (_, value)) in &set.records {
        let Some(bytes) = value else { continue };
        if key.starts_with("shadow/") {
            parts
                .shadows
                .push(serde_json::from_slice(bytes).map_err(|error| corrupt(key, error))?);
        } else if key.starts_with("debits/") {
            let debits: Vec<(DebitKey, OpenDebit)> =
                serde_json::from_slice(bytes).map_err(|error| corrupt(key, error))?;
            parts.open_debits.extend(debits);
        } else if key.starts_with("credits/") {
            let credits: Vec<(CreditKey, OpenCredit)> =
                serde_json::from_slice(bytes).map_err(|error| corrupt(key, error))?;
            parts.open_credits.extend(credits);
        } else if let Some(pair) = key.strip_prefix("pair/") {
            let version: u16 =
                serde_json::from_slice(bytes).map_err(|error| corrupt(key, error))?;
            let (low, high) = pair
                .split_once('-')
                .and_then(|(low, high)| Some((low.parse().ok()?, high.parse().ok()?)))
                .ok_or_else(|| corrupt(key, "key is not pair/<low>-<high>"))?;
            parts
                .pairwise_versions
                .push(((PurseId(low), PurseId(high)), version));
        }
    }
    Ok(parts)
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>, RailError> {
    serde_json::to_vec(value).map_err(|_| RailError::Internal("record serialisation"))
}

/// The records `parts` consist of.
fn records_of(parts: &BookParts) -> Result<BTreeMap<String, Vec<u8>>, RailError> {
    let mut out = BTreeMap::new();
    out.insert(KEY_BOOK.to_owned(), to_json(&parts.header)?);
    for shadow in &parts.shadows {
        out.insert(shadow_key(shadow.purse_id), to_json(shadow)?);
        out.insert(phone_key(shadow.phone), to_json(&shadow.purse_id.0)?);
    }
    let mut debits: BTreeMap<String, Vec<&(DebitKey, OpenDebit)>> = BTreeMap::new();
    for debit in &parts.open_debits {
        debits
            .entry(debits_key(debit.0.0, debit.0.1))
            .or_default()
            .push(debit);
    }
    for (key, list) in debits {
        out.insert(key, to_json(&list)?);
    }
    let mut credits: BTreeMap<String, Vec<&(CreditKey, OpenCredit)>> = BTreeMap::new();
    for credit in &parts.open_credits {
        credits
            .entry(credits_key(credit.0.0, credit.0.1))
            .or_default()
            .push(credit);
    }
    for (key, list) in credits {
        out.insert(key, to_json(&list)?);
    }
    for ((low, high), version) in &parts.pairwise_versions {
        out.insert(pair_key(*low, *high), to_json(version)?);
    }
    Ok(out)
}

/// Writes for every record that changed, each conditional on the version it was read at.
fn changed_records(loaded: &RecordSet, parts: &BookParts) -> Result<Vec<Operation>, RailError> {
    let new = records_of(parts)?;
    let mut writes = Vec::new();
    for (key, value) in &new {
        let Some((version, old)) = loaded.records.get(key) else {
            if key.starts_with("phone/") {
                continue; // phones of shadows read by id; they never change
            }
            return Err(RailError::Internal(
                "an operation changed a purse record it did not read",
            ));
        };
        if old.as_deref() == Some(value.as_slice()) {
            continue;
        }
        writes.push(Operation::PutRecord(RecordWrite {
            namespace: NAMESPACE.to_owned(),
            key: key.clone(),
            value: Some(value.clone()),
            expected_version: Some(*version),
        }));
    }
    for (key, (version, old)) in &loaded.records {
        if old.is_some() && !new.contains_key(key) {
            writes.push(Operation::PutRecord(RecordWrite {
                namespace: NAMESPACE.to_owned(),
                key: key.clone(),
                value: None,
                expected_version: Some(*version),
            }));
        }
    }
    Ok(writes)
}

// ---------------------------------------------------------------------------------------------
// Committing: postings, flags and records in one batch (or a few, when an upload is huge).

fn ledger_timestamp_seconds(now: offpay_ledger::Timestamp) -> offpay_purse::Timestamp {
    offpay_purse::Timestamp(now.0 / MILLISECONDS_PER_SECOND)
}

struct Commit {
    /// Account creations (first).
    accounts: Vec<Operation>,
    /// Transfers.
    transfers: Vec<Operation>,
    /// Fraud flags (idempotent by key).
    flags: Vec<Operation>,
    /// Conditional record writes (last, together).
    records: Vec<Operation>,
}

/// Splits a commit into batches of at most `BATCH_OPERATIONS_MAX` operations. The last batch is
/// filled from the end, so the record writes (at most a few per counterparty) commit together
/// with the operations just before them; the leading batches hold only account creations,
/// idempotent postings and idempotent flags.
fn batches_of(commit: Commit) -> Vec<Batch> {
    let Commit {
        accounts,
        transfers,
        flags,
        records,
    } = commit;
    let mut all: Vec<Operation> =
        Vec::with_capacity(accounts.len() + transfers.len() + flags.len() + records.len());
    all.extend(accounts);
    all.extend(transfers);
    all.extend(flags);
    all.extend(records);
    let last_start = all.len().saturating_sub(BATCH_OPERATIONS_MAX);
    let last = all.split_off(last_start);
    let mut batches: Vec<Batch> = all
        .chunks(BATCH_OPERATIONS_MAX)
        .map(|chunk| Batch {
            operations: chunk.to_vec(),
        })
        .collect();
    batches.push(Batch { operations: last });
    batches
}

enum Committed {
    Done,
    Conflict,
}

async fn commit(
    ledger: &Ledger,
    commit: Commit,
    now: offpay_ledger::Timestamp,
) -> Result<Committed, RailError> {
    let results = ledger.commit(batches_of(commit), now).await?;
    for result in results {
        match result {
            Ok(_) => {}
            Err(BatchRefusal {
                reason: Refusal::RecordVersionMismatch { .. },
                ..
            }) => return Ok(Committed::Conflict),
            Err(refusal) => return Err(RailError::Refused(refusal)),
        }
    }
    Ok(Committed::Done)
}

impl PurseRail {
    fn ledger_account(
        &self,
        account: LedgerAccount,
        book: &OperatorBook,
    ) -> Result<AccountId, RailError> {
        match account {
            LedgerAccount::Purse(purse_id) => {
                let shadow = book
                    .shadow(purse_id)
                    .ok_or(RailError::Internal("posting names a purse not loaded"))?;
                purse_account_id(shadow.phone)
            }
            LedgerAccount::Suspense => self.account_id(SUSPENSE),
            LedgerAccount::OperatorFloat => self.account_id(OPERATOR_FLOAT),
        }
    }

    fn transfer(&self, posting: &Posting, book: &OperatorBook) -> Result<Operation, RailError> {
        Ok(Operation::Transfer(Transfer {
            id: TransferId::new(posting.transfer_id.clone())
                .map_err(|_| RailError::Internal("posting transfer id"))?,
            debit_account: self.ledger_account(posting.from, book)?,
            credit_account: self.ledger_account(posting.to, book)?,
            amount: posting.amount,
            kind: TransferKind::Posted,
            memo: posting.memo.clone(),
        }))
    }
}

fn flag_operation(flag: &Flag, now: offpay_ledger::Timestamp) -> Operation {
    let evidence = serde_json::to_value(flag).unwrap_or(Value::Null);
    let discriminator = format!(
        "{}:{:016x}",
        flag.sync_sequence,
        fnv1a(evidence.to_string().as_bytes())
    );
    FraudFlag::new(
        RAIL,
        flag.kind.name(),
        &flag.phone.to_string(),
        flag.to_string(),
        evidence,
        now,
    )
    .operation(&discriminator)
}

/// FNV-1a, to name a flag by its evidence (not a security function).
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

// ---------------------------------------------------------------------------------------------
// Operations, callable without HTTP.

/// What a sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReply {
    /// The authenticated answer for the purse.
    pub answer: Vec<u8>,
    /// Ledger postings made (or found already made).
    pub postings: usize,
    /// Payments matched.
    pub matched: usize,
    /// Fraud flags raised.
    pub flags: usize,
}

/// A provisioned purse.
#[derive(Clone)]
pub struct Provisioned {
    /// Its id.
    pub purse_id: PurseId,
    /// Its phone.
    pub phone: Phone,
    /// Customer or agent.
    pub kind: PurseKind,
    /// The provisioning record (contains keys).
    pub provisioning: Vec<u8>,
}

impl std::fmt::Debug for Provisioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioned")
            .field("purse_id", &self.purse_id)
            .field("phone", &self.phone)
            .field("kind", &self.kind)
            .field("provisioning", &"<redacted>")
            .finish()
    }
}

impl PurseRail {
    async fn load(&self, ledger: &Ledger, plan: LoadPlan) -> Result<RecordSet, RailError> {
        Ok(ledger.read(move |store| load(store, &plan)).await?)
    }

    /// Authenticates an upload, reconciles it, posts it and returns the answer: the sync
    /// endpoint without HTTP. An upload that fails authentication, is malformed, belongs to
    /// another operator or is a replay changes nothing.
    pub async fn sync(
        &self,
        ledger: &Ledger,
        bytes: &[u8],
        now: offpay_ledger::Timestamp,
    ) -> Result<SyncReply, RailError> {
        let upload = self.secrets.open_upload(bytes)?;
        let purse_id = upload.purse_id;
        let phone_plan = LoadPlan {
            purse: Some(purse_id),
            ..LoadPlan::default()
        };
        let phone = self
            .load(ledger, phone_plan)
            .await?
            .shadow_phone(purse_id)
            .ok_or(PurseError::UnknownPurse(purse_id))?;
        let locked_phones = sync_counterparties(&upload);
        let mut payees = BTreeSet::new();
        let mut counterparties: BTreeSet<Phone> =
            upload.pairwise_requests.iter().copied().collect();
        for entry in &upload.entries {
            match entry.kind {
                EntryKind::Debit { payee, .. } => {
                    payees.insert(payee);
                }
                EntryKind::Credit { payer, .. } | EntryKind::PaymentCredit { payer, .. } => {
                    counterparties.insert(payer);
                }
                EntryKind::OperatorCredit { .. } => {}
            }
        }
        let mut locked = locked_phones;
        locked.insert(phone);
        let _guards = self.lock(&locked).await;
        let purse_now = ledger_timestamp_seconds(now);
        for _ in 0..ATTEMPTS_MAX {
            let plan = LoadPlan {
                purse: Some(purse_id),
                scan_own: true,
                payees: payees.clone(),
                counterparties: counterparties.clone(),
                ..LoadPlan::default()
            };
            let loaded = self.load(ledger, plan).await?;
            let mut book = OperatorBook::from_parts(parts_of(&loaded, self)?)?;
            let outcome = book.handle_upload(&self.secrets, bytes, purse_now)?;
            let transfers = outcome
                .postings
                .iter()
                .map(|posting| self.transfer(posting, &book))
                .collect::<Result<Vec<_>, _>>()?;
            let flags: Vec<Operation> = outcome
                .flags
                .iter()
                .map(|flag| flag_operation(flag, now))
                .collect();
            for flag in &outcome.flags {
                tracing::warn!(rail = RAIL, kind = flag.kind.name(), phone = %flag.phone, "fraud flag raised");
            }
            let records = changed_records(&loaded, &book.into_parts())?;
            let reply = SyncReply {
                answer: outcome.answer,
                postings: transfers.len(),
                matched: outcome.matched.len(),
                flags: flags.len(),
            };
            let done = commit(
                ledger,
                Commit {
                    accounts: Vec::new(),
                    transfers,
                    flags,
                    records,
                },
                now,
            )
            .await?;
            if let Committed::Done = done {
                tracing::info!(purse = %purse_id, sequence = outcome.sequence, postings = reply.postings, matched = reply.matched, flags = reply.flags, "purse synced");
                return Ok(reply);
            }
        }
        Err(RailError::Contention)
    }

    /// Provisions a purse for `phone`: assigns its id, creates its ledger account and shadow,
    /// and returns the provisioning record (keys: hand it only to the operator's admin tool).
    pub async fn provision(
        &self,
        ledger: &Ledger,
        phone: Phone,
        kind: PurseKind,
        now: offpay_ledger::Timestamp,
    ) -> Result<Provisioned, RailError> {
        let _guards = self.lock(&BTreeSet::from([phone])).await;
        for _ in 0..ATTEMPTS_MAX {
            let header_only = self.load(ledger, LoadPlan::default()).await?;
            let next_id = PurseId(header_of(&header_only, self)?.next_purse_id);
            let plan = LoadPlan {
                phone: Some(phone),
                extra: vec![shadow_key(next_id)],
                ..LoadPlan::default()
            };
            let loaded = self.load(ledger, plan).await?;
            let mut book = OperatorBook::from_parts(parts_of(&loaded, self)?)?;
            if book.header().next_purse_id != next_id.0 {
                continue; // another provisioning took the id meanwhile
            }
            let provisioning =
                book.provision(&self.secrets, phone, kind, ledger_timestamp_seconds(now))?;
            let mut accounts = operator_accounts(self.currency, self.server_currency);
            accounts.push(Operation::CreateAccount(NewAccount {
                id: purse_account_id(phone)?,
                kind: match kind {
                    PurseKind::Agent => AccountKind::AgentFloat,
                    _ => AccountKind::Customer,
                },
                currency: self.currency,
                limits: BalanceLimits {
                    balance_min: None,
                    balance_max: None,
                },
            }));
            // The phone and shadow records were read absent: they are written on condition
            // that they still are.
            let records = changed_records(&loaded, &book.into_parts())?;
            let done = commit(
                ledger,
                Commit {
                    accounts,
                    transfers: Vec::new(),
                    flags: Vec::new(),
                    records,
                },
                now,
            )
            .await?;
            if let Committed::Done = done {
                tracing::info!(purse = %provisioning.purse_id, phone = %phone, "purse provisioned");
                return Ok(Provisioned {
                    purse_id: provisioning.purse_id,
                    phone,
                    kind,
                    provisioning: provisioning.encode(),
                });
            }
        }
        Err(RailError::Contention)
    }

    /// Loads the book pieces of one purse (by phone), runs `change` on the partial book, and
    /// commits what changed with the postings `change` returns.
    async fn change_purse<T>(
        &self,
        ledger: &Ledger,
        phone: Phone,
        now: offpay_ledger::Timestamp,
        change: impl Fn(&mut OperatorBook, PurseId) -> Result<(T, Vec<Posting>), PurseError>,
    ) -> Result<T, RailError> {
        let _guards = self.lock(&BTreeSet::from([phone])).await;
        for _ in 0..ATTEMPTS_MAX {
            let plan = LoadPlan {
                phone: Some(phone),
                ..LoadPlan::default()
            };
            let loaded = self.load(ledger, plan).await?;
            let mut book = OperatorBook::from_parts(parts_of(&loaded, self)?)?;
            let purse_id = book
                .purse_by_phone(phone)
                .ok_or(PurseError::UnknownPhone(phone))?;
            let (value, postings) = change(&mut book, purse_id)?;
            let transfers = postings
                .iter()
                .map(|posting| self.transfer(posting, &book))
                .collect::<Result<Vec<_>, _>>()?;
            let accounts = if transfers.is_empty() {
                Vec::new()
            } else {
                operator_accounts(self.currency, self.server_currency)
            };
            let records = changed_records(&loaded, &book.into_parts())?;
            if let Committed::Done = commit(
                ledger,
                Commit {
                    accounts,
                    transfers,
                    flags: Vec::new(),
                    records,
                },
                now,
            )
            .await?
            {
                return Ok(value);
            }
        }
        Err(RailError::Contention)
    }

    /// Queues an operator credit (float top-up) for the purse's next sync and posts
    /// `operator float → suspense`. Returns the credit's transfer id.
    pub async fn float(
        &self,
        ledger: &Ledger,
        phone: Phone,
        amount: Amount,
        memo: &str,
        now: offpay_ledger::Timestamp,
    ) -> Result<String, RailError> {
        self.change_purse(ledger, phone, now, |book, purse_id| {
            let posting = book.queue_operator_credit(purse_id, amount, memo)?;
            Ok((posting.transfer_id.clone(), vec![posting]))
        })
        .await
    }

    /// Sets a purse's offline limits (delivered at its next sync).
    pub async fn set_limits(
        &self,
        ledger: &Ledger,
        phone: Phone,
        limits: OfflineLimits,
        validity_seconds: u64,
        now: offpay_ledger::Timestamp,
    ) -> Result<(), RailError> {
        self.change_purse(ledger, phone, now, |book, purse_id| {
            book.set_limits(purse_id, limits, validity_seconds)?;
            Ok(((), Vec::new()))
        })
        .await
    }

    /// Blocks or unblocks a purse (every purse learns it at its next sync).
    pub async fn set_blocked(
        &self,
        ledger: &Ledger,
        phone: Phone,
        blocked: bool,
        now: offpay_ledger::Timestamp,
    ) -> Result<(), RailError> {
        self.change_purse(ledger, phone, now, |book, purse_id| {
            book.set_blocked(purse_id, blocked)?;
            Ok(((), Vec::new()))
        })
        .await
    }

    /// Unblocks the purse's PIN at its next sync.
    pub async fn unblock_pin(
        &self,
        ledger: &Ledger,
        phone: Phone,
        now: offpay_ledger::Timestamp,
    ) -> Result<(), RailError> {
        self.change_purse(ledger, phone, now, |book, purse_id| {
            book.unblock_pin(purse_id)?;
            Ok(((), Vec::new()))
        })
        .await
    }

    /// Rotates the scheme key (two-phase); returns (generation epoch, newest epoch).
    pub async fn rotate_scheme_key(
        &self,
        ledger: &Ledger,
        now: offpay_ledger::Timestamp,
    ) -> Result<(u32, u32), RailError> {
        for _ in 0..ATTEMPTS_MAX {
            let loaded = self.load(ledger, LoadPlan::default()).await?;
            let mut book = OperatorBook::from_parts(parts_of(&loaded, self)?)?;
            let newest = book.rotate_scheme_key();
            let generation = book.generation_epoch();
            let records = changed_records(&loaded, &book.into_parts())?;
            if let Committed::Done = commit(
                ledger,
                Commit {
                    accounts: Vec::new(),
                    transfers: Vec::new(),
                    flags: Vec::new(),
                    records,
                },
                now,
            )
            .await?
            {
                tracing::info!(generation, newest, "purse scheme key rotated");
                return Ok((generation, newest));
            }
        }
        Err(RailError::Contention)
    }

    /// The shadow account of the purse with this phone.
    pub async fn shadow(&self, ledger: &Ledger, phone: Phone) -> Result<ShadowAccount, RailError> {
        let plan = LoadPlan {
            phone: Some(phone),
            ..LoadPlan::default()
        };
        let loaded = self.load(ledger, plan).await?;
        let book = OperatorBook::from_parts(parts_of(&loaded, self)?)?;
        Ok(book.shadow_by_phone(phone)?.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP.

/// Routes devices and gateways call (authenticated by the rail's own MACs or signatures).
pub fn device_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/purse/v1/sync", post(sync_endpoint))
        .route("/purse/v1/sms", post(sms_endpoint))
        .layer(DefaultBodyLimit::max(UPLOAD_BYTES_MAX))
}

/// Operator routes (mounted under `/api/v1`, behind the operator token).
pub fn operator_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/purse/purses", post(provision_endpoint))
        .route("/purse/purses/{phone}", get(shadow_endpoint))
        .route("/purse/purses/{phone}/float", post(float_endpoint))
        .route("/purse/purses/{phone}/limits", post(limits_endpoint))
        .route("/purse/purses/{phone}/block", post(block_endpoint))
        .route(
            "/purse/purses/{phone}/unblock-pin",
            post(unblock_pin_endpoint),
        )
        .route("/purse/scheme-key/rotate", post(rotate_endpoint))
}

/// Background work (schedulers, retries); called once the server state exists. The purse rail
/// has none: everything happens when a purse syncs or the operator asks.
pub fn spawn_background(state: &Arc<AppState>) {
    let _ = state;
}

fn parse_phone(text: &str) -> Result<Phone, ApiError> {
    Phone::parse(text).map_err(|_| {
        ApiError::bad_request(
            "invalid_phone",
            format!("{text:?} is not an E.164 phone number such as +254700000001"),
        )
    })
}

async fn sync_endpoint(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match state
        .rails
        .purse
        .sync(&state.ledger, &body, state.now())
        .await
    {
        Ok(reply) => (
            [
                (header::CONTENT_TYPE, SYNC_MEDIA_TYPE.to_owned()),
                (
                    header::HeaderName::from_static("x-purse-postings"),
                    reply.postings.to_string(),
                ),
                (
                    header::HeaderName::from_static("x-purse-flags"),
                    reply.flags.to_string(),
                ),
            ],
            reply.answer,
        )
            .into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct SmsRequest {
    /// The upload's SMS parts, `OP1 <id> <k>/<n> <chunk>`, in any order.
    parts: Vec<String>,
    /// Message id for the answer's parts.
    #[serde(default)]
    answer_id: u16,
}

async fn sms_endpoint(
    State(state): State<Arc<AppState>>,
    body: crate::api::ApiJson<SmsRequest>,
) -> Result<Json<Value>, ApiError> {
    let request = body.0;
    let upload =
        offpay_purse::sync::unpack_sms(&request.parts).map_err(|error| purse_api_error(&error))?;
    let reply = state
        .rails
        .purse
        .sync(&state.ledger, &upload, state.now())
        .await?;
    let parts = offpay_purse::sync::pack_sms(&reply.answer, request.answer_id)
        .map_err(|error| purse_api_error(&error))?;
    Ok(Json(json!({ "parts": parts })))
}

#[derive(Debug, Deserialize)]
struct ProvisionRequest {
    phone: String,
    #[serde(default)]
    kind: Option<String>,
}

async fn provision_endpoint(
    State(state): State<Arc<AppState>>,
    body: crate::api::ApiJson<ProvisionRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = body.0;
    let phone = parse_phone(&request.phone)?;
    let kind = match request.kind.as_deref() {
        None | Some("customer") => PurseKind::Customer,
        Some("agent") => PurseKind::Agent,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_kind",
                format!("kind {other:?}: say customer or agent"),
            ));
        }
    };
    let provisioned = state
        .rails
        .purse
        .provision(&state.ledger, phone, kind, state.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "purse_id": provisioned.purse_id.0,
            "phone": provisioned.phone.to_string(),
            "kind": kind_name(kind),
            "operator": state.rails.purse.operator().as_str(),
            "account": format!("purse:{phone}"),
            "provisioning": hex::encode(&provisioned.provisioning),
        })),
    ))
}

fn kind_name(kind: PurseKind) -> &'static str {
    match kind {
        PurseKind::Agent => "agent",
        _ => "customer",
    }
}

fn decimal(minor: i64, currency: Currency) -> String {
    offpay_ledger::Decimal::new(i128::from(minor), currency).to_string()
}

fn limits_json(limits: &OfflineLimits) -> Value {
    json!({
        "max_balance": limits.max_balance.decimal().to_string(),
        "max_single_payment": limits.max_single_payment.decimal().to_string(),
        "max_spent_since_sync": limits.max_spent_since_sync.decimal().to_string(),
        "small_payment_limit": limits.small_payment_limit.decimal().to_string(),
        "valid_until": limits.valid_until.0,
    })
}

async fn shadow_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let phone = parse_phone(&phone)?;
    let shadow = state.rails.purse.shadow(&state.ledger, phone).await?;
    let currency = shadow.limits.max_balance.currency();
    let account = purse_account_id(phone)?;
    let ledger_balance = state
        .ledger
        .read(move |store| store.account(&account))
        .await?
        .map(|account| decimal(account.balance(), currency));
    let credits: Vec<Value> = shadow
        .queued_credits
        .iter()
        .map(|credit| {
            json!({
                "credit_id": credit.credit_id,
                "amount": decimal(i64::try_from(credit.amount_minor).unwrap_or(i64::MAX), currency),
                "memo": credit.memo,
            })
        })
        .collect();
    Ok(Json(json!({
        "purse_id": shadow.purse_id.0,
        "phone": shadow.phone.to_string(),
        "kind": kind_name(shadow.kind),
        "currency": currency.code(),
        "balance": decimal(shadow.balance_minor, currency),
        "balance_minor": shadow.balance_minor,
        "reported_balance": decimal(i64::try_from(shadow.reported_balance_minor).unwrap_or(i64::MAX), currency),
        "ledger_account": format!("purse:{phone}"),
        "ledger_balance": ledger_balance,
        "blocked": shadow.blocked,
        "pin_unblock_requested": shadow.pin_unblock_requested,
        "last_sync_sequence": shadow.last_sequence,
        "received_through": shadow.received_through,
        "confirmed_through": shadow.confirmed_through,
        "last_sync_at": shadow.last_sync_at.0,
        "limits": limits_json(&shadow.limits),
        "validity_seconds": shadow.validity_seconds,
        "queued_credits": credits,
    })))
}

#[derive(Debug, Deserialize)]
struct FloatRequest {
    amount: String,
    #[serde(default)]
    memo: Option<String>,
}

fn parse_amount(text: &str, currency: Currency, field: &str) -> Result<Amount, ApiError> {
    Amount::parse(text, currency).map_err(|error| {
        ApiError::bad_request("invalid_amount", format!("{field} {text:?}: {error}"))
    })
}

async fn float_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
    body: crate::api::ApiJson<FloatRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = body.0;
    let phone = parse_phone(&phone)?;
    let rail = &state.rails.purse;
    let amount = parse_amount(&request.amount, rail.currency, "amount")?;
    let memo = request.memo.unwrap_or_else(|| "float top-up".to_owned());
    if memo.len() > FLOAT_MEMO_BYTES_MAX {
        return Err(ApiError::bad_request(
            "memo_too_long",
            format!("the memo is longer than {FLOAT_MEMO_BYTES_MAX} bytes"),
        ));
    }
    let transfer = rail
        .float(&state.ledger, phone, amount, &memo, state.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "phone": phone.to_string(),
            "amount": amount.decimal().to_string(),
            "currency": amount.currency().code(),
            "transfer": transfer,
            "status": "queued: the purse receives it at its next sync",
        })),
    ))
}

#[derive(Debug, Deserialize)]
struct LimitsRequest {
    max_balance: String,
    max_single_payment: String,
    max_spent_since_sync: String,
    small_payment_limit: String,
    validity_days: u64,
}

/// Longest validity an operator may grant (a purse that never syncs is a risk).
pub const VALIDITY_DAYS_MAX: u64 = 365;

async fn limits_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
    body: crate::api::ApiJson<LimitsRequest>,
) -> Result<Json<Value>, ApiError> {
    let request = body.0;
    let phone = parse_phone(&phone)?;
    let rail = &state.rails.purse;
    let currency = rail.currency;
    if request.validity_days == 0 || request.validity_days > VALIDITY_DAYS_MAX {
        return Err(ApiError::bad_request(
            "invalid_validity",
            format!("validity_days must be 1 to {VALIDITY_DAYS_MAX}"),
        ));
    }
    let limits = OfflineLimits {
        max_balance: parse_amount(&request.max_balance, currency, "max_balance")?,
        max_single_payment: parse_amount(
            &request.max_single_payment,
            currency,
            "max_single_payment",
        )?,
        max_spent_since_sync: parse_amount(
            &request.max_spent_since_sync,
            currency,
            "max_spent_since_sync",
        )?,
        small_payment_limit: parse_amount(
            &request.small_payment_limit,
            currency,
            "small_payment_limit",
        )?,
        valid_until: offpay_purse::Timestamp(0),
    };
    let validity_seconds = request.validity_days * offpay_purse::params::SECONDS_PER_DAY;
    rail.set_limits(&state.ledger, phone, limits, validity_seconds, state.now())
        .await?;
    Ok(Json(json!({
        "phone": phone.to_string(),
        "limits": limits_json(&limits),
        "validity_days": request.validity_days,
        "status": "delivered at the purse's next sync",
    })))
}

#[derive(Debug, Deserialize)]
struct BlockRequest {
    blocked: bool,
}

async fn block_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
    body: crate::api::ApiJson<BlockRequest>,
) -> Result<Json<Value>, ApiError> {
    let phone = parse_phone(&phone)?;
    state
        .rails
        .purse
        .set_blocked(&state.ledger, phone, body.0.blocked, state.now())
        .await?;
    Ok(Json(
        json!({ "phone": phone.to_string(), "blocked": body.0.blocked }),
    ))
}

async fn unblock_pin_endpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(phone): UrlPath<String>,
) -> Result<Json<Value>, ApiError> {
    let phone = parse_phone(&phone)?;
    state
        .rails
        .purse
        .unblock_pin(&state.ledger, phone, state.now())
        .await?;
    Ok(Json(json!({
        "phone": phone.to_string(),
        "status": "the PIN is unblocked at the purse's next sync",
    })))
}

async fn rotate_endpoint(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let (generation, newest) = state
        .rails
        .purse
        .rotate_scheme_key(&state.ledger, state.now())
        .await?;
    Ok(Json(json!({
        "generation_epoch": generation,
        "scheme_epoch": newest,
    })))
}

/// Where the rail keeps its key files under `data_dir`.
pub fn key_directory(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_DIRECTORY)
}
