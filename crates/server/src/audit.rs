//! The audit log: every operator action — who, what, when, from where, and its effect — as an
//! append-only chain of ledger records (namespace [`NAMESPACE`]), written **in the same batch as
//! the action's effect**: an effect without its entry, or an entry without its effect, cannot be
//! committed.
//!
//! Entry `n` stores the hash of entry `n-1`; its own hash is HMAC-SHA256 under the chain key
//! (`DATA_DIR/keys/audit-chain.key`, 0600, never in the database) of the previous hash and the
//! entry's canonical bytes. The head record (`head`) holds the number and hash of the newest
//! entry, and every append is conditional on the head's version and takes the tip record its
//! predecessor left ([`tip_key`]), so concurrent actions — in this process or another — take their
//! turns, and an entry planned after one that was never written cannot commit. Someone who can
//! edit the database but cannot read the key file cannot alter, remove or insert an entry without
//! [`verify`] reporting it; someone who has both can rewrite the chain.
//!
//! How an action's entry reaches its batch: the auth middleware runs the handler inside an
//! [`OperatorContext`] (a task-local); [`crate::runner::commit_with`], the one place effects are
//! committed, asks [`current`] and, when there is a context, commits through [`commit_audited`].
//! A request that changes state but commits nothing (refused, failed, or an idempotent repeat),
//! and every denial, gets an entry of its own.

use std::path::Path;
use std::sync::{Arc, Mutex as StdMutex};

use hmac::{Hmac, KeyInit, Mac};
use offpay_ledger::{LedgerStore, Operation, Outcome, RecordWrite, Refusal, StoreError, Timestamp};
use offpay_operator::record::{check_version, decode_json, encode_json};
use offpay_operator::{Attempt, Effects, Loaded, RecordError, StoredRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::auth::Role;
use crate::ledger::{Ledger, LedgerError};
use crate::runner::{ATTEMPTS_MAX, RunError};

/// The ledger record namespace of the audit log.
pub const NAMESPACE: &str = "audit";
/// The key of the head record.
pub const HEAD_KEY: &str = "head";
/// The chain key file, under the data directory.
pub const CHAIN_KEY_FILE: &str = "keys/audit-chain.key";
/// Chain key length in bytes.
pub const CHAIN_KEY_BYTES: usize = 32;
/// The hash before the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Longest request summary kept in an entry, in bytes of JSON; a longer one is cut.
pub const SUMMARY_BYTES_MAX: usize = 4_096;
/// Most transfers, accounts and records named in one entry's effect (the rest are counted).
pub const EFFECT_ITEMS_MAX: usize = 64;
/// Most entries one export page holds.
pub const EXPORT_PAGE_MAX: usize = 1_000;
/// Request body fields never kept in an entry (their values are replaced by `<redacted>`; a
/// field also matches as a suffix, `new_pin`, `gateway_token`): secrets, and free text that may
/// carry them — an SMS instruction's `text` holds a TAN, an imported envelope's `text` its whole
/// grid (`crates/cli/tests/sms_database_scan.rs` scans the database for them).
pub const SECRET_FIELDS: [&str; 10] = [
    "token",
    "pin",
    "puk",
    "tan",
    "secret",
    "password",
    "key",
    "private_key",
    "upload",
    "text",
];

const _: () = assert!(EXPORT_PAGE_MAX <= offpay_ledger::RECORD_PAGE_MAX);
const _: () = assert!(GENESIS_HASH.len() == CHAIN_KEY_BYTES * 2);

/// The newest entry's number and hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// Format version.
    pub version: u32,
    /// Entries so far (the newest entry's number).
    pub number: u64,
    /// The newest entry's hash ([`GENESIS_HASH`] before the first).
    pub hash: String,
}

impl StoredRecord for AuditHead {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = 1;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let head: AuditHead = decode_json(key, bytes)?;
        check_version::<AuditHead>(key, head.version)?;
        Ok(head)
    }
}

/// One operator action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Format version.
    pub version: u32,
    /// Position in the chain, from 1.
    pub number: u64,
    /// When (the server's clock).
    pub at_ms: u64,
    /// Who: the user, when the token named one.
    pub user: Option<String>,
    /// The user's role.
    pub role: Option<Role>,
    /// From where: the peer address.
    pub remote: String,
    /// The request's id.
    pub request_id: String,
    /// What: method and route, e.g. `POST /api/v1/purse/purses/{phone}/float`.
    pub action: String,
    /// The path as called.
    pub path: String,
    /// The request body, secrets redacted, cut at [`SUMMARY_BYTES_MAX`].
    pub request: Value,
    /// `committed`, `answered 200`, `failed 422 insufficient_funds`, `denied forbidden`, ...
    pub outcome: String,
    /// What it committed: transfers, accounts created, records written.
    pub effect: Value,
    /// The `Idempotency-Key`, when one was sent.
    pub idempotency_key: Option<String>,
    /// For an approved request: the approval and who approved it.
    pub approval: Option<Value>,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// HMAC-SHA256(chain key, prev_hash || canonical bytes of this entry without its hash).
    pub hash: String,
}

impl StoredRecord for AuditEntry {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = 1;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let entry: AuditEntry = decode_json(key, bytes)?;
        check_version::<AuditEntry>(key, entry.version)?;
        Ok(entry)
    }
}

/// The key of entry `number` (zero-padded, so keys sort in chain order).
pub fn entry_key(number: u64) -> String {
    format!("entry/{number:020}")
}

/// The chain key and the turn-taking of this process's appends.
pub struct AuditChain {
    key: Zeroizing<Vec<u8>>,
    /// Held by the one task appending for this process (a combining round or a lone entry).
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Actions waiting for the next combining round.
    waiting: StdMutex<Vec<Submission>>,
    /// Permits for entries without an effect being written.
    standalone: Arc<tokio::sync::Semaphore>,
    /// This process's rounds between being planned and being durable ([`Pipeline`]).
    pipeline: StdMutex<Pipeline>,
    /// One permit per round that may be in flight ([`PIPELINE_ROUNDS_MAX`]).
    slots: Arc<tokio::sync::Semaphore>,
    /// Woken whenever the last round in flight has finished.
    drained: tokio::sync::Notify,
}

/// The rounds of one process between being planned and being durable. Round N+1 is planned on
/// the head round N will write (`planned`) and queued for the ledger writer while N is being
/// written, so the writer's group commit can take both. Every entry stays conditional on the one
/// before it (the head's version, and the tip it takes, [`Head`]): if N fails or is refused,
/// N+1's first entry is refused in turn and its actions are decided again (`Conflict`); nothing
/// commits after an entry that was not written.
#[derive(Debug, Default)]
struct Pipeline {
    /// The head as it will be once every round in flight has committed; `None` when it must be
    /// read from the store (at start, after any failure, after the chain lock was given back).
    planned: Option<Head>,
    /// Counts invalidations of `planned`: a round planned before one only sets `planned` if no
    /// failure came in between.
    epoch: u64,
    /// Rounds submitted (or being planned) and not yet finished.
    in_flight: usize,
    /// [`CHAIN_LOCK`], held while rounds are in flight (PostgreSQL: other processes wait).
    lock: Option<crate::ledger::SharedLock>,
    /// Rounds begun under the current hold of `lock`.
    lock_rounds: usize,
    /// A round of this process met a record another writer had changed (another process
    /// appending, most likely): from then on its rounds take [`CHAIN_LOCK`]. A process that
    /// never meets one (a server alone on its database) appends without the lock's two round
    /// trips.
    contended: bool,
}

/// One action's effects waiting to be committed with its entry.
struct Submission {
    context: OperatorContext,
    effects: Effects,
    now: Timestamp,
    stale: fn(&Refusal) -> bool,
    reply: tokio::sync::oneshot::Sender<Result<Attempt<Vec<Outcome>>, RunError>>,
}

/// Entries without an effect (denials, failures) being written at once; past this a new one is
/// dropped with an error in the log rather than queued without bound.
pub const STANDALONE_PENDING_MAX: usize = 1_024;
/// How long an answer waits for its own entry without an effect to be written; after this it
/// goes out and the entry is written when the ledger takes it (a database waiting for a standby,
/// say), so a refusal never hangs on the log.
pub const STANDALONE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Most actions one combining round commits together (the rest wait for the next round).
pub const COMBINED_ACTIONS_MAX: usize = 256;

/// The lock the server processes on one database take to append to the chain
/// ([`Ledger::lock_shared`]): once a process has met another writer's change (its first lost
/// round), taken when its pipeline of rounds starts, held while rounds are in flight, given back when it
/// drains or after [`CHAIN_LOCK_ROUNDS_MAX`] rounds. Without it
/// two processes appending at once both read the same head; one loses its round, and under steady
/// load a process could lose every attempt of an action (the failover test saw a 503 `busy` on a
/// two-process tier).
pub const CHAIN_LOCK: &str = "offpay-audit-chain";

/// Longest a process waits for [`CHAIN_LOCK`] before it appends without it (a process holding
/// it has stalled: the conditional head write still keeps the chain whole).
pub const CHAIN_LOCK_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Most rounds of one process in flight at once: planned on the head the round before will
/// write and queued for the ledger writer while that one is being written. Two already keep the
/// writer busy; a few more let rounds that queue during one group commit share the next. A round
/// that fails costs the rounds queued after it another attempt, so the depth stays small.
pub const PIPELINE_ROUNDS_MAX: usize = 4;

/// Most rounds a process begins under one hold of [`CHAIN_LOCK`]: then it lets its pipeline
/// drain and gives the lock back, so another process waiting for it gets its turn (PostgreSQL
/// grants a released advisory lock to the sessions already waiting before a new request). A
/// count rather than a time: no clock in the rule, and a round is a few milliseconds, so the
/// others wait far less than [`CHAIN_LOCK_WAIT_MAX`].
pub const CHAIN_LOCK_ROUNDS_MAX: usize = 32;

const _: () = assert!(COMBINED_ACTIONS_MAX > 0);
const _: () = assert!(PIPELINE_ROUNDS_MAX > 0 && CHAIN_LOCK_ROUNDS_MAX > 0);

/// Writes an entry adds to its action's batch: the tip of the entry before it taken, the entry,
/// its own tip, the head.
pub const ENTRY_WRITES: usize = 4;

// With the request's idempotency record and the approval it closes, within what a request may add.
const _: () = assert!(ENTRY_WRITES + 2 <= crate::api::OPERATOR_WRITES_MAX);

impl std::fmt::Debug for AuditChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditChain(<key redacted>)")
    }
}

impl AuditChain {
    /// A chain with this key (tests).
    pub fn with_key(key: &[u8]) -> AuditChain {
        AuditChain {
            key: Zeroizing::new(key.to_vec()),
            turn: Arc::new(tokio::sync::Mutex::new(())),
            waiting: StdMutex::new(Vec::new()),
            standalone: Arc::new(tokio::sync::Semaphore::new(STANDALONE_PENDING_MAX)),
            pipeline: StdMutex::new(Pipeline::default()),
            slots: Arc::new(tokio::sync::Semaphore::new(PIPELINE_ROUNDS_MAX)),
            drained: tokio::sync::Notify::new(),
        }
    }

    /// Reads the chain key from `DATA_DIR/keys/audit-chain.key`, or creates it (0600, in a 0700
    /// directory) on first start.
    pub fn load_or_create(
        data_dir: &Path,
        entropy: &dyn offpay_operator::Entropy,
    ) -> std::io::Result<AuditChain> {
        let path = data_dir.join(CHAIN_KEY_FILE);
        if let Some(directory) = path.parent() {
            create_private_dir(directory)?;
        }
        let (contents, _) = crate::keyfile::read_or_create(&path, || {
            crate::keyfile::random_hex_line(entropy, CHAIN_KEY_BYTES)
        })?;
        let text = crate::keyfile::hex_text(
            &contents,
            CHAIN_KEY_BYTES,
            &format!("{} is not an audit chain key", path.display()),
        )?;
        let key = hex::decode(text.as_bytes())
            .map_err(|_| crate::keyfile::invalid("the audit chain key is not hex"))?;
        Ok(AuditChain::with_key(&key))
    }

    /// The hash of `entry` after `prev_hash`.
    pub fn hash(&self, entry: &AuditEntry) -> Result<String, RecordError> {
        let mut unsigned = entry.clone();
        unsigned.hash = String::new();
        let bytes = serde_json::to_vec(&unsigned).map_err(|error| RecordError::Encode {
            namespace: NAMESPACE,
            key: entry_key(entry.number),
            message: error.to_string(),
        })?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).map_err(|_| {
            RecordError::Encode {
                namespace: NAMESPACE,
                key: entry_key(entry.number),
                message: "the chain key does not key HMAC".into(),
            }
        })?;
        mac.update(entry.prev_hash.as_bytes());
        mac.update(&bytes);
        Ok(hex::encode(mac.finalize().into_bytes()))
    }
}

fn create_private_dir(directory: &Path) -> std::io::Result<()> {
    if directory.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(directory)
}

/// A body summary for the log: JSON with secret fields redacted, cut when long.
pub fn summarise(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    let mut value = match serde_json::from_slice::<Value>(body) {
        Ok(value) => value,
        Err(_) => return json!({ "bytes": body.len(), "json": false }),
    };
    redact(&mut value);
    let text = value.to_string();
    if text.len() > SUMMARY_BYTES_MAX {
        let mut end = SUMMARY_BYTES_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        return json!({ "cut": &text[..end], "bytes": text.len() });
    }
    value
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (name, inner) in map.iter_mut() {
                let lower = name.to_ascii_lowercase();
                if SECRET_FIELDS
                    .iter()
                    .any(|secret| lower == *secret || lower.ends_with(&format!("_{secret}")))
                {
                    *inner = Value::String("<redacted>".into());
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// What a set of operations does, for an entry: transfers with their amounts, accounts created,
/// limits set, records written (by namespace), at most [`EFFECT_ITEMS_MAX`] of each named.
pub fn effect_of<'o>(operations: impl Iterator<Item = &'o Operation>) -> Value {
    let mut transfers = Vec::new();
    let mut accounts = Vec::new();
    let mut limits = Vec::new();
    let mut records: std::collections::BTreeMap<String, u64> = Default::default();
    let mut counted = (0usize, 0usize);
    for operation in operations {
        match operation {
            Operation::Transfer(transfer) => {
                counted.0 += 1;
                if transfers.len() < EFFECT_ITEMS_MAX {
                    transfers.push(json!({
                        "id": transfer.id.to_string(),
                        "debit": transfer.debit_account.to_string(),
                        "credit": transfer.credit_account.to_string(),
                        "amount": format!("{} {}", transfer.amount.decimal(), transfer.amount.currency().code()),
                        "amount_minor": transfer.amount.minor(),
                    }));
                }
            }
            Operation::CreateAccount(account) => {
                counted.1 += 1;
                if accounts.len() < EFFECT_ITEMS_MAX {
                    accounts.push(account.id.to_string());
                }
            }
            Operation::SetLimits { account, .. } => {
                if limits.len() < EFFECT_ITEMS_MAX {
                    limits.push(account.to_string());
                }
            }
            Operation::PutRecord(write) => {
                *records.entry(write.namespace.clone()).or_default() += 1;
            }
            // A check writes nothing: not an effect.
            Operation::CheckRecord(_) => {}
        }
    }
    json!({
        "transfers": transfers,
        "transfer_count": counted.0,
        "accounts_created": accounts,
        "account_count": counted.1,
        "limits_set": limits,
        "records_written": records,
    })
}

/// One request's audit context: who and what, shared by every commit the request makes.
#[derive(Clone, Debug)]
pub struct OperatorContext {
    inner: Arc<ContextInner>,
}

#[derive(Debug)]
struct ContextInner {
    chain: Arc<AuditChain>,
    user: Option<String>,
    role: Option<Role>,
    remote: String,
    request_id: String,
    action: String,
    path: String,
    request: Value,
    idempotency_key: Option<String>,
    approval: Option<Value>,
    credential: Option<crate::auth::CredentialCheck>,
    /// Writes to add to the request's first commit (the idempotency record) and to every
    /// commit (the approval it closes), and what was committed so far.
    progress: StdMutex<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    /// Operations added to the first commit of the request, then cleared.
    first_commit: Vec<Operation>,
    /// Operations added to every commit until one succeeds, then cleared.
    until_committed: Vec<Operation>,
    /// Entry numbers committed with an effect.
    entries: Vec<u64>,
}

/// What a new context is made of.
#[derive(Debug)]
pub struct ContextParts {
    /// The chain.
    pub chain: Arc<AuditChain>,
    /// The user, when the token named one.
    pub user: Option<String>,
    /// The user's role, when the token was valid.
    pub role: Option<Role>,
    /// The peer address.
    pub remote: String,
    /// The request id.
    pub request_id: String,
    /// `METHOD /api/v1/route/{pattern}`.
    pub action: String,
    /// The path as called.
    pub path: String,
    /// The body summary ([`summarise`]).
    pub request: Value,
    /// The `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// The approval this request executes.
    pub approval: Option<Value>,
    /// When the caller was let in on a cached credential: the check every batch the request
    /// commits must pass ([`crate::auth::CallerCache`]).
    pub credential: Option<crate::auth::CredentialCheck>,
}

tokio::task_local! {
    static CONTEXT: OperatorContext;
}

/// The context of the request being handled on this task, if any.
pub fn current() -> Option<OperatorContext> {
    CONTEXT.try_with(Clone::clone).ok()
}

impl OperatorContext {
    /// A context.
    pub fn new(parts: ContextParts) -> OperatorContext {
        OperatorContext {
            inner: Arc::new(ContextInner {
                chain: parts.chain,
                user: parts.user,
                role: parts.role,
                remote: parts.remote,
                request_id: parts.request_id,
                action: parts.action,
                path: parts.path,
                request: parts.request,
                idempotency_key: parts.idempotency_key,
                approval: parts.approval,
                credential: parts.credential,
                progress: StdMutex::new(Progress::default()),
            }),
        }
    }

    /// Runs `future` with this context as the task's.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CONTEXT.scope(self, future).await
    }

    /// The user, when known.
    pub fn user(&self) -> Option<&str> {
        self.inner.user.as_deref()
    }

    /// The `Idempotency-Key`.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.inner.idempotency_key.as_deref()
    }

    /// Adds `operation` to the request's first commit.
    pub fn add_to_first_commit(&self, operation: Operation) {
        if let Ok(mut progress) = self.inner.progress.lock() {
            progress.first_commit.push(operation);
        }
    }

    /// Adds `operation` to every commit of the request until one succeeds.
    pub fn add_until_committed(&self, operation: Operation) {
        if let Ok(mut progress) = self.inner.progress.lock() {
            progress.until_committed.push(operation);
        }
    }

    /// Whether the caller was let in on a cached credential ([`crate::auth::CallerCache`]).
    pub fn on_cached_credential(&self) -> bool {
        self.inner.credential.is_some()
    }

    /// The entries committed with an effect so far.
    pub fn committed_entries(&self) -> Vec<u64> {
        self.inner
            .progress
            .lock()
            .map(|progress| progress.entries.clone())
            .unwrap_or_default()
    }

    fn pending_extras(&self) -> Vec<Operation> {
        self.inner
            .progress
            .lock()
            .map(|progress| {
                let mut extras = progress.first_commit.clone();
                extras.extend(progress.until_committed.iter().cloned());
                extras
            })
            .unwrap_or_default()
    }

    fn committed(&self, number: u64) {
        if let Ok(mut progress) = self.inner.progress.lock() {
            progress.first_commit.clear();
            progress.until_committed.clear();
            progress.entries.push(number);
        }
    }

    fn entry(
        &self,
        number: u64,
        prev_hash: String,
        now: Timestamp,
        outcome: String,
        effect: Value,
    ) -> AuditEntry {
        let inner = &self.inner;
        AuditEntry {
            version: AuditEntry::FORMAT_VERSION,
            number,
            at_ms: now.0,
            user: inner.user.clone(),
            role: inner.role,
            remote: inner.remote.clone(),
            request_id: inner.request_id.clone(),
            action: inner.action.clone(),
            path: inner.path.clone(),
            request: inner.request.clone(),
            outcome,
            effect,
            idempotency_key: inner.idempotency_key.clone(),
            approval: inner.approval.clone(),
            prev_hash,
            hash: String::new(),
        }
    }
}

fn corrupt(error: RecordError) -> RunError {
    RunError::Ledger(LedgerError::Store(crate::ledger::record_store_error(error)))
}

/// The key of the tip record the entry with hash `hash` left: the entry after it takes it.
pub fn tip_key(hash: &str) -> String {
    format!("tip/{hash}")
}

/// A head to append after: read from the store, or planned (the head a round in flight will
/// write).
///
/// The head's version alone cannot guard an entry planned after an entry not yet written (the
/// next action of a round, or a round planned on the head the round before will write): should
/// that entry be refused and another process append meanwhile, the head reaches the planned
/// version with other contents, and the entry would commit after one that does not exist (a
/// fork; seen with two processes and the chain lock off, even before rounds were pipelined). So
/// every entry also creates a tip record named by its own hash ([`tip_key`]), and the entry after
/// a planned head deletes that record on the condition that it exists: a hash names one entry
/// only, and its tip is taken once, so such an entry commits only after the very entry it was
/// planned on. After a head read from the store the head's version is the version of the
/// contents read and guards the entry alone; its tip (if any: a chain written before tips has
/// none) is deleted without a condition. Within a group the tips of all but the last entry are
/// created and deleted again before anything is written, so one tip stands: the newest entry's.
#[derive(Clone, Debug)]
struct Head {
    loaded: Loaded<AuditHead>,
    /// Planned, not read: the entry after it must take its tip.
    planned: bool,
}

/// Reads the chain's head: from the reader connection when none of this process's rounds is in
/// flight, else on the writer after them (`after_queued`), so that it sees what they wrote.
async fn read_head(ledger: &Ledger, after_queued: bool) -> Result<Head, RunError> {
    let read = |store: &mut dyn LedgerStore| Ok(Loaded::<AuditHead>::read(store, HEAD_KEY));
    let loaded = if after_queued {
        ledger.read_after_queued(read).await?
    } else {
        ledger.read(read).await?
    };
    Ok(Head {
        loaded: loaded.map_err(corrupt)?,
        planned: false,
    })
}

/// The writes that append an entry (with `outcome` and `effect`) after `head`, and the head as
/// it will be once they commit.
fn append_writes(
    context: &OperatorContext,
    head: &Head,
    now: Timestamp,
    outcome: String,
    effect: Value,
) -> Result<(u64, Vec<Operation>, Head), RecordError> {
    let planned = head.planned;
    let head = &head.loaded;
    let (number, prev_hash) = match &head.value {
        Some(head) => (head.number + 1, head.hash.clone()),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let mut writes = Vec::with_capacity(ENTRY_WRITES);
    if head.value.is_some() {
        writes.push(Operation::PutRecord(RecordWrite {
            namespace: NAMESPACE.to_owned(),
            key: tip_key(&prev_hash),
            value: None,
            expected_version: planned.then_some(1),
        }));
    }
    let mut entry = context.entry(number, prev_hash, now, outcome, effect);
    entry.hash = context.inner.chain.hash(&entry)?;
    let key = entry_key(number);
    writes.push(Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        value: Some(entry.encode(&key)?),
        key,
        expected_version: Some(0),
    }));
    writes.push(Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        key: tip_key(&entry.hash),
        value: Some(number.to_string().into_bytes()),
        expected_version: Some(0),
    }));
    let next = AuditHead {
        version: AuditHead::FORMAT_VERSION,
        number,
        hash: entry.hash,
    };
    writes.push(head.write(&next)?);
    let next = Head {
        loaded: Loaded {
            key: head.key.clone(),
            version: head.version + 1,
            value: Some(next),
        },
        planned: true,
    };
    Ok((number, writes, next))
}

/// Commits `effects` with the context's entry (and its pending extra writes) in the same batch:
/// the body of [`crate::runner::commit_with`] when a request context is present.
///
/// The chain orders every action, but actions of one process still share group commits: each
/// action joins a queue, and whichever waiting task takes the process's turn starts a round that
/// commits everyone queued (up to [`COMBINED_ACTIONS_MAX`]) as one ledger request, each action its
/// own batch, their entries numbered in order and each head write conditional on the one before
/// it in the same group. An action the ledger refuses leaves the head where it was, so the actions
/// after it in that round meet a stale head and are decided again (`Conflict`), as after a write
/// from another process.
///
/// Rounds are pipelined: the turn is given back once a round is queued for the
/// writer, not once it is durable, and the next round starts from the head the queued one will
/// write, up to [`PIPELINE_ROUNDS_MAX`] rounds in flight. A round that fails or has an action
/// refused makes the rounds queued after it meet a stale head as well; the planned head is then
/// dropped and read again from the store, after the rounds still in flight.
pub async fn commit_audited(
    ledger: &Ledger,
    context: &OperatorContext,
    effects: Effects,
    now: Timestamp,
    stale: fn(&Refusal) -> bool,
) -> Result<Attempt<Vec<Outcome>>, RunError> {
    let chain = context.inner.chain.clone();
    let (reply, mut answer) = tokio::sync::oneshot::channel();
    chain.waiting().push(Submission {
        context: context.clone(),
        effects,
        now,
        stale,
        reply,
    });
    loop {
        let turn = tokio::select! {
            biased;
            result = &mut answer => return result.unwrap_or(Err(RunError::Contention)),
            turn = chain.turn.clone().lock_owned() => turn,
        };
        if chain.waiting().is_empty() {
            // This action is in a round queued already: its answer comes when that is durable.
            drop(turn);
            return answer.await.unwrap_or(Err(RunError::Contention));
        }
        // The round runs on a task of its own, holding the turn until it is queued: a request
        // whose caller goes away does not take the other actions' answers (or the turn) with it.
        let ledger = ledger.clone();
        let round_chain = chain.clone();
        tokio::spawn(async move { run_round(&ledger, &round_chain, turn).await });
    }
}

impl AuditChain {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Submission>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pipeline(&self) -> std::sync::MutexGuard<'_, Pipeline> {
        self.pipeline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The actions of the next combining round: those waiting, in order, up to
    /// [`COMBINED_ACTIONS_MAX`] and about a ledger group's worth of operations.
    fn next_round(&self) -> Vec<Submission> {
        let mut waiting = self.waiting();
        let mut operations = 0usize;
        let mut count = 0usize;
        for submission in waiting.iter() {
            let size = submission.effects.operations().count() + crate::api::OPERATOR_WRITES_MAX;
            if count > 0
                && (count == COMBINED_ACTIONS_MAX
                    || operations + size > crate::ledger::GROUP_OPERATIONS_MAX)
            {
                break;
            }
            operations += size;
            count += 1;
        }
        waiting.drain(..count).collect()
    }
}

/// A round's place in this process's pipeline, from [`begin_round`] (under the turn) until it
/// has finished. Dropped without [`Slot::finish`] (an error, a panic, a refusal) it counts as
/// failed: the planned head is dropped and read again from the store.
struct Slot {
    chain: Arc<AuditChain>,
    /// [`Pipeline::epoch`] when the round began.
    epoch: u64,
    ok: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Slot {
    /// The round is queued and will leave the head at `next` if it commits whole: the rounds
    /// after it start from there, unless a round failed since this one began.
    fn queued(&self, next: Head) {
        let mut pipeline = self.chain.pipeline();
        if pipeline.epoch == self.epoch {
            pipeline.planned = Some(next);
        }
    }

    /// The round has finished; `whole` when every batch of it committed.
    fn finish(mut self, whole: bool) {
        self.ok = whole;
    }

    /// The round met a record another writer had changed: this process's rounds take the chain
    /// lock from now on.
    fn contended(&self) {
        self.chain.pipeline().contended = true;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut pipeline = self.chain.pipeline();
        if !self.ok {
            pipeline.planned = None;
            pipeline.epoch += 1;
        }
        pipeline.in_flight = pipeline.in_flight.saturating_sub(1);
        if pipeline.in_flight == 0 {
            // The pipeline has drained: the chain lock goes back (dropping it gives it back),
            // and with it the planned head, which another process may now move.
            if pipeline.lock.take().is_some() {
                pipeline.planned = None;
                pipeline.epoch += 1;
            }
            drop(pipeline);
            self.chain.drained.notify_waiters();
        }
    }
}

/// Starts a round (or a lone entry's append), called holding the turn: waits for a pipeline slot,
/// takes [`CHAIN_LOCK`] if this process does not hold it, and gives the head to append after —
/// the one the rounds in flight will write, or the store's.
async fn begin_round(chain: &Arc<AuditChain>, ledger: &Ledger) -> Result<(Slot, Head), RunError> {
    let shares = ledger.shares_locks();
    // After CHAIN_LOCK_ROUNDS_MAX rounds under one hold, no new round until the pipeline has
    // drained, which gives the lock back to whoever waits for it (the lock is only held while
    // a round is in flight: it is taken and the round counted in one step, and the last round
    // to finish gives it back).
    loop {
        let drained = chain.drained.notified();
        {
            let pipeline = chain.pipeline();
            if !shares
                || pipeline.lock.is_none()
                || pipeline.lock_rounds < CHAIN_LOCK_ROUNDS_MAX
                || pipeline.in_flight == 0
            {
                break;
            }
        }
        drained.await;
    }
    let permit = chain
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| RunError::Contention)?;
    let wants_lock = {
        let pipeline = chain.pipeline();
        shares && pipeline.lock.is_none() && pipeline.contended
    };
    let taken = if wants_lock {
        Some(ledger.lock_shared(CHAIN_LOCK, CHAIN_LOCK_WAIT_MAX).await)
    } else {
        None
    };
    let (slot, planned, after_queued) = {
        let mut pipeline = chain.pipeline();
        if let Some(lock) = taken {
            // Another process may have appended while this one did not hold the lock (or may
            // append now, if the wait ran out): the head is read again.
            pipeline.planned = None;
            pipeline.epoch += 1;
            pipeline.lock_rounds = 0;
            if lock.held() {
                pipeline.lock = Some(lock);
            }
        }
        // (A lock held at the check above and given back by a drain since leaves `planned`
        // empty: this round reads the head and goes without the lock; the next takes it.)
        pipeline.lock_rounds = pipeline.lock_rounds.saturating_add(1);
        pipeline.in_flight += 1;
        let slot = Slot {
            chain: chain.clone(),
            epoch: pipeline.epoch,
            ok: false,
            _permit: permit,
        };
        (slot, pipeline.planned.clone(), pipeline.in_flight > 1)
    };
    let head = match planned {
        Some(head) => head,
        None => read_head(ledger, after_queued).await?,
    };
    Ok((slot, head))
}

/// Answers every action of `round` with a retryable store error carrying `message`.
fn fail_all(round: impl IntoIterator<Item = Submission>, message: &str) {
    for submission in round {
        let _ = submission
            .reply
            .send(Err(RunError::Ledger(LedgerError::Store(
                StoreError::Database(message.to_owned()),
            ))));
    }
}

/// Runs one combining round: begins it, plans it on the head it was given, queues it for the
/// ledger writer, gives back the turn (the next round may start), then waits until it is durable
/// and answers each of its actions.
async fn run_round(
    ledger: &Ledger,
    chain: &Arc<AuditChain>,
    turn: tokio::sync::OwnedMutexGuard<()>,
) {
    let begun = begin_round(chain, ledger).await;
    // Taken only now: actions that arrived while this round waited for a slot or the lock join it.
    let round = chain.next_round();
    let (slot, head) = match begun {
        Ok(begun) => begun,
        Err(error) => {
            fail_all(round, &error.to_string());
            return;
        }
    };
    if round.is_empty() {
        slot.finish(true);
        return;
    }
    // Each action's batches, its entry number, and where its batches sit in the request.
    let mut batches = Vec::new();
    let mut planned = Vec::new();
    let mut previous = head;
    let now = round
        .iter()
        .map(|submission| submission.now)
        .max()
        .unwrap_or(Timestamp(0));
    for mut submission in round {
        let mut effects = std::mem::take(&mut submission.effects);
        effects.write_all(submission.context.pending_extras());
        let effect = effect_of(effects.operations());
        match append_writes(
            &submission.context,
            &previous,
            submission.now,
            "committed".into(),
            effect,
        ) {
            Ok((number, writes, next)) => {
                effects.write_all(writes);
                let lead = submission
                    .context
                    .inner
                    .credential
                    .as_ref()
                    .map(crate::auth::CredentialCheck::operation);
                let own = effects.into_batches_led_by(lead);
                let span = batches.len()..batches.len() + own.len();
                batches.extend(own);
                planned.push((submission, number, span));
                previous = next;
            }
            Err(error) => {
                let _ = submission.reply.send(Err(corrupt(error)));
            }
        }
    }
    if batches.is_empty() {
        // Every action failed to encode (each answered): the head stays where it was.
        slot.finish(true);
        return;
    }
    let queued = match ledger.submit(batches, now).await {
        Ok(queued) => queued,
        Err(error) => {
            fail_all(
                planned.into_iter().map(|(submission, _, _)| submission),
                &error.to_string(),
            );
            return;
        }
    };
    slot.queued(previous);
    drop(turn);
    let results = match queued.durable().await {
        Ok(results) => results,
        Err(error) => {
            let message = error.to_string();
            let retryable = matches!(
                error,
                LedgerError::Stopped | LedgerError::Store(StoreError::Database(_))
            );
            for (submission, _, _) in planned {
                let error = if retryable {
                    LedgerError::Store(StoreError::Database(message.clone()))
                } else {
                    LedgerError::Store(StoreError::Corrupt(message.clone()))
                };
                let _ = submission.reply.send(Err(RunError::Ledger(error)));
            }
            return;
        }
    };
    let mut whole = true;
    let mut contended = false;
    let mut results = results.into_iter().map(Some).collect::<Vec<_>>();
    for (submission, number, span) in planned {
        let mut outcomes = Vec::new();
        let mut answer = None;
        let checked = usize::from(submission.context.inner.credential.is_some());
        for index in span {
            match results.get_mut(index).and_then(Option::take) {
                // The credential check's outcome is the round's, not the action's.
                Some(Ok(batch)) => outcomes.extend(batch.into_iter().skip(checked)),
                // Each batch of an action let in on a cached credential opens with its check:
                // the user record moved on (a new token, a revocation, a new role), so nothing
                // was applied and the entry is dropped.
                Some(Err(offpay_ledger::BatchRefusal { index: 0, .. }))
                    if submission.context.inner.credential.is_some() =>
                {
                    if let Some(check) = &submission.context.inner.credential {
                        check.failed();
                    }
                    answer = Some(Err(RunError::CredentialsChanged));
                    break;
                }
                Some(Err(offpay_ledger::BatchRefusal {
                    reason: Refusal::RecordVersionMismatch { .. },
                    ..
                })) => {
                    contended = true;
                    answer = Some(Ok(Attempt::Conflict));
                    break;
                }
                Some(Err(refusal)) if (submission.stale)(&refusal.reason) => {
                    answer = Some(Ok(Attempt::Conflict));
                    break;
                }
                Some(Err(refusal)) => {
                    answer = Some(Err(RunError::Refused(refusal)));
                    break;
                }
                None => {
                    answer = Some(Err(RunError::Contention));
                    break;
                }
            }
        }
        whole &= answer.is_none();
        let answer = answer.unwrap_or_else(|| {
            submission.context.committed(number);
            Ok(Attempt::Done(outcomes))
        });
        let _ = submission.reply.send(answer);
    }
    if contended {
        slot.contended();
    }
    slot.finish(whole);
}

/// Writes an entry with no effect ([`record`]) on a task of its own, waiting for it at most
/// [`STANDALONE_WAIT_MAX`]: the answer it belongs to is not held up by a ledger that cannot take
/// writes, and the entry still reaches the chain when the ledger can.
pub async fn record_soon(
    ledger: &Ledger,
    context: OperatorContext,
    now: Timestamp,
    outcome: String,
) {
    let Ok(permit) = context.inner.chain.standalone.clone().try_acquire_owned() else {
        tracing::error!(
            %outcome,
            "too many audit entries waiting to be written; this one is dropped"
        );
        return;
    };
    let ledger = ledger.clone();
    let task = tokio::spawn(async move {
        if let Err(error) = record(&ledger, &context, now, outcome).await {
            tracing::error!(%error, "an operator request could not be written to the audit log");
        }
        drop(permit);
    });
    if tokio::time::timeout(STANDALONE_WAIT_MAX, task)
        .await
        .is_err()
    {
        tracing::warn!("the ledger is slow to take an audit entry; it is written when it can be");
    }
}

/// Appends an entry with no effect (a denial, a failure, a request that committed nothing),
/// holding the turn until it is durable (such entries are few; the rounds in flight before it
/// go on).
pub async fn record(
    ledger: &Ledger,
    context: &OperatorContext,
    now: Timestamp,
    outcome: String,
) -> Result<u64, RunError> {
    let chain = context.inner.chain.clone();
    let _turn = chain.turn.lock().await;
    for _ in 0..ATTEMPTS_MAX {
        let (slot, head) = begin_round(&chain, ledger).await?;
        let (number, writes, next) =
            append_writes(context, &head, now, outcome.clone(), Value::Null).map_err(corrupt)?;
        let queued = ledger
            .submit(vec![offpay_ledger::Batch { operations: writes }], now)
            .await?;
        slot.queued(next);
        let results = queued.durable().await?;
        match results.into_iter().next() {
            Some(Ok(_)) => {
                slot.finish(true);
                return Ok(number);
            }
            Some(Err(offpay_ledger::BatchRefusal {
                reason: Refusal::RecordVersionMismatch { .. },
                ..
            })) => {
                slot.contended();
                continue;
            }
            Some(Err(refusal)) => return Err(RunError::Refused(refusal)),
            None => return Err(RunError::Contention),
        }
    }
    Err(RunError::Contention)
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Entries that check out, from the first.
    pub entries_checked: u64,
    /// The head's count.
    pub head_number: u64,
    /// The first entry that does not check out, and why; `None` when the chain is whole.
    pub first_break: Option<Break>,
}

/// Where the chain breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The entry's number.
    pub number: u64,
    /// What is wrong with it.
    pub problem: String,
}

/// Walks the chain in `store` from the first entry: each must be present, decode, follow the
/// previous one and carry the hash the key gives it; the head must name the last.
pub fn verify(store: &mut dyn LedgerStore, chain: &AuditChain) -> Result<Verification, StoreError> {
    let head = match store.record(NAMESPACE, HEAD_KEY)? {
        None => None,
        Some(record) => match AuditHead::decode(HEAD_KEY, &record.value) {
            Ok(head) => Some(head),
            Err(error) => {
                return Ok(Verification {
                    entries_checked: 0,
                    head_number: 0,
                    first_break: Some(Break {
                        number: 0,
                        problem: format!("the head does not decode: {error}"),
                    }),
                });
            }
        },
    };
    let head_number = head.as_ref().map_or(0, |head| head.number);
    let mut expected = 1u64;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut after: Option<String> = None;
    let broken = |number: u64, problem: String, checked: u64| Verification {
        entries_checked: checked,
        head_number,
        first_break: Some(Break { number, problem }),
    };
    loop {
        let page = store.records(NAMESPACE, "entry/", after.as_deref(), EXPORT_PAGE_MAX)?;
        for record in &page {
            let checked = expected - 1;
            let entry = match AuditEntry::decode(&record.key, &record.value) {
                Ok(entry) => entry,
                Err(error) => {
                    let number = record
                        .key
                        .strip_prefix("entry/")
                        .and_then(|digits| digits.parse().ok())
                        .unwrap_or(expected);
                    return Ok(broken(
                        number.min(expected),
                        format!("does not decode: {error}"),
                        checked,
                    ));
                }
            };
            if record.key != entry_key(entry.number) {
                return Ok(broken(
                    expected,
                    format!(
                        "is stored under {} but says it is entry {}",
                        record.key, entry.number
                    ),
                    checked,
                ));
            }
            if entry.number != expected {
                return Ok(broken(expected, "is missing (deleted)".into(), checked));
            }
            if entry.prev_hash != prev_hash {
                return Ok(broken(
                    expected,
                    "does not follow the entry before it".into(),
                    checked,
                ));
            }
            let hash = chain
                .hash(&entry)
                .map_err(|error| StoreError::Corrupt(error.to_string()))?;
            let same: bool =
                subtle::ConstantTimeEq::ct_eq(hash.as_bytes(), entry.hash.as_bytes()).into();
            if !same {
                return Ok(broken(
                    expected,
                    "was altered (its hash does not match its contents)".into(),
                    checked,
                ));
            }
            prev_hash = entry.hash;
            expected += 1;
        }
        if page.len() < EXPORT_PAGE_MAX {
            break;
        }
        after = page.last().map(|record| record.key.clone());
    }
    let checked = expected - 1;
    if head_number > checked {
        return Ok(broken(
            expected,
            format!("is missing (deleted); the head counts {head_number} entries"),
            checked,
        ));
    }
    if head_number < checked {
        return Ok(broken(
            head_number + 1,
            format!("is beyond the head, which counts {head_number} entries"),
            checked,
        ));
    }
    if head.is_some_and(|head| head.hash != prev_hash) {
        return Ok(broken(
            checked,
            "is not the entry the head names".into(),
            checked,
        ));
    }
    Ok(Verification {
        entries_checked: checked,
        head_number,
        first_break: None,
    })
}

/// Entries after number `after`, at most `limit`.
pub fn export(
    store: &mut dyn LedgerStore,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let start = (after > 0).then(|| entry_key(after));
    let records = store.records(
        NAMESPACE,
        "entry/",
        start.as_deref(),
        limit.clamp(1, EXPORT_PAGE_MAX),
    )?;
    records
        .iter()
        .map(|record| {
            AuditEntry::decode(&record.key, &record.value)
                .map_err(crate::ledger::record_store_error)
        })
        .collect()
}

/// `GET /api/v1/audit?from=&to=&user=&limit=&cursor=`: entries in chain order, in the list
/// style of [`crate::lists`]; `from` (inclusive) and `to` (exclusive) are RFC 3339 times, `user`
/// an operator user's name. Each entry keeps `at_ms` (it is hashed into the chain) and adds `at`.
pub async fn export_endpoint(
    axum::extract::State(state): axum::extract::State<Arc<crate::AppState>>,
    query: Result<
        axum::extract::Query<std::collections::BTreeMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<axum::Json<Value>, crate::error::ApiError> {
    use crate::lists::{Params, parse_rfc3339, record_error, rfc3339, scan_records};
    let params = Params::parse(query, &["from", "to", "user"])?;
    let from = params
        .get("from")
        .map(|text| parse_rfc3339(text, "from"))
        .transpose()?;
    let to = params
        .get("to")
        .map(|text| parse_rfc3339(text, "to"))
        .transpose()?;
    let user = params.get("user").map(str::to_owned);
    let after = params.after_under("entry/")?;
    let limit = params.limit;
    let page = state
        .ledger
        .read(move |store| {
            scan_records(store, NAMESPACE, "entry/", after, limit, |_, record| {
                let entry = AuditEntry::decode(&record.key, &record.value).map_err(record_error)?;
                let keep = from.is_none_or(|from| entry.at_ms >= from)
                    && to.is_none_or(|to| entry.at_ms < to)
                    && user
                        .as_deref()
                        .is_none_or(|user| entry.user.as_deref() == Some(user));
                if !keep {
                    return Ok(None);
                }
                let mut item = serde_json::to_value(&entry).unwrap_or_default();
                item["at"] = json!(rfc3339(entry.at_ms));
                Ok(Some(item))
            })
        })
        .await?;
    Ok(page.json())
}

/// `GET /api/v1/audit/verify`: walks the whole chain; `ok` false with `first_break` naming the
/// first entry that does not check out.
pub async fn verify_endpoint(
    axum::extract::State(state): axum::extract::State<Arc<crate::AppState>>,
) -> Result<axum::Json<Value>, crate::error::ApiError> {
    let chain = state.audit.clone();
    let verification = state
        .ledger
        .read(move |store| verify(store, &chain))
        .await?;
    Ok(axum::Json(json!({
        "ok": verification.first_break.is_none(),
        "entries_checked": verification.entries_checked,
        "head_number": verification.head_number,
        "first_break": verification.first_break,
    })))
}

/// The audit routes (auditor and admin).
pub fn operator_routes() -> crate::routes::OperatorRoutes {
    use crate::routes::AUDIT;
    crate::routes::OperatorRoutes::new()
        .get("/audit", AUDIT, export_endpoint)
        .get("/audit/verify", AUDIT, verify_endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_a_request_are_redacted() {
        let summary =
            summarise(br#"{"name":"a","pin":"1234","nested":{"new_pin":"9"},"upload":"ff"}"#);
        let text = summary.to_string();
        assert!(!text.contains("1234") && !text.contains("\"9\"") && !text.contains("ff"));
        assert_eq!(summary["name"], "a");
    }

    #[test]
    fn a_long_summary_is_cut() {
        let body = serde_json::to_vec(&json!({ "memo": "x".repeat(SUMMARY_BYTES_MAX * 2) }))
            .unwrap_or_default();
        let summary = summarise(&body);
        assert!(
            summary["cut"]
                .as_str()
                .is_some_and(|cut| cut.len() <= SUMMARY_BYTES_MAX)
        );
    }
}
