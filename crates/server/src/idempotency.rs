//! Idempotency keys on operator calls: a state-changing request with an `Idempotency-Key`
//! header is applied once per (user, key). The record `(user, key) → request hash` commits **in
//! the same batch as the request's effect** (through the audit context, see
//! [`crate::audit::OperatorContext::add_to_first_commit`]), so a retry after a crash, a lost
//! answer or a timeout finds it: the same request gets the stored answer (or, when the answer
//! was never stored, "already applied"), a different request with the same key gets
//! `422 idempotency_key_reused` and changes nothing.
//!
//! A request without a key is applied as before (a money-moving one is logged as a warning): the
//! CLI always sends one; other clients are told in the guide to.
//!
//! # Retention
//!
//! A key is remembered for `idempotency_retention` ([`crate::config::Retention`], default 7 days,
//! at least one day and at least the approval TTL): far longer than any client retries a lost
//! answer. Then the background pass [`prune`] removes its record, with closed approvals older than
//! `approval_retention`, in bounded batches, each an audited system action (`SYSTEM prune`). A
//! request sent again after its key was pruned is a new request, which is why nothing that moves
//! money relies on the key alone: transfers are idempotent by their transfer id in the ledger
//! itself, so a manual transfer replayed after pruning posts nothing twice.

use std::sync::{Arc, Weak};
use std::time::Duration;

use offpay_ledger::{LedgerStore, Operation, Record, RecordWrite, StoreError};
use offpay_operator::record::{check_version, decode_json, encode_json};
use offpay_operator::{Loaded, RecordError, StoredRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The ledger record namespace of idempotency records.
pub const NAMESPACE: &str = "idempotency";
/// Longest key, in bytes (printable ASCII).
pub const KEY_BYTES_MAX: usize = 128;
/// Largest answer body stored for a replay; a larger answer is replayed as "already applied".
pub const ANSWER_BYTES_MAX: usize = 64 << 10;

/// Most records one pruning batch removes (one ledger batch, one audit entry).
pub const PRUNE_BATCH_MAX: usize = 500;
/// Most batches one pruning pass commits; the rest waits for the next pass.
pub const PRUNE_BATCHES_PER_PASS: usize = 20;
/// How often the background pruning pass runs.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3_600);
/// Approval ids named in one pruning audit entry.
const PRUNED_IDS_NAMED_MAX: usize = 100;

/// What [`prune`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Idempotency records removed.
    pub idempotency: u64,
    /// Closed approvals removed.
    pub approvals: u64,
    /// Records found due but not removed in this pass (batch bound, or changed meanwhile).
    pub left: u64,
}

/// Which records of `namespace` under `prefix` are due for removal at `now_ms`, from `after`:
/// at most [`PRUNE_BATCH_MAX`] (key, version), and where the walk stopped (`None`: at the end).
fn due_records(
    store: &mut dyn LedgerStore,
    namespace: &'static str,
    prefix: &'static str,
    mut after: Option<String>,
    due: &dyn Fn(&Record) -> bool,
) -> Result<(Vec<Record>, Option<String>), StoreError> {
    let mut found = Vec::new();
    loop {
        let page = store.records(
            namespace,
            prefix,
            after.as_deref(),
            offpay_ledger::RECORD_PAGE_MAX,
        )?;
        let full = page.len() == offpay_ledger::RECORD_PAGE_MAX;
        for record in page {
            after = Some(record.key.clone());
            if due(&record) {
                found.push(record);
                if found.len() == PRUNE_BATCH_MAX {
                    return Ok((found, after));
                }
            }
        }
        if !full {
            return Ok((found, None));
        }
    }
}

/// Whether an idempotency record is older than the retention at `now_ms`. A record this release
/// cannot read is kept.
fn idempotency_due(record: &Record, now_ms: u64, retention_ms: u64) -> bool {
    IdempotencyRecord::decode(&record.key, &record.value)
        .is_ok_and(|stored| stored.created_at_ms.saturating_add(retention_ms) <= now_ms)
}

/// Whether an approval closed (approved, refused or expired) longer ago than the retention.
fn approval_due(record: &Record, now_ms: u64, ttl_ms: u64, retention_ms: u64) -> bool {
    crate::approvals::Approval::decode(&record.key, &record.value).is_ok_and(|approval| {
        approval
            .closed_at(now_ms, ttl_ms)
            .is_some_and(|closed| closed.saturating_add(retention_ms) <= now_ms)
    })
}

/// Removes `records` (each conditional on the version read: one changed meanwhile makes the
/// batch refused, and the next pass sees it again) as one audited system action.
async fn remove(
    state: &crate::AppState,
    records: Vec<Record>,
    request: Value,
) -> Result<bool, crate::runner::RunError> {
    let now = state.now();
    let mut effects = offpay_operator::Effects::new();
    effects.write_all(records.into_iter().map(|record| {
        Operation::PutRecord(RecordWrite {
            namespace: record.namespace,
            key: record.key,
            value: None,
            expected_version: Some(record.version),
        })
    }));
    let context = crate::audit::OperatorContext::new(crate::audit::ContextParts {
        chain: state.audit.clone(),
        user: None,
        role: None,
        remote: "server".to_owned(),
        request_id: format!("prune-{}", now.0),
        action: "SYSTEM prune".to_owned(),
        path: String::new(),
        request,
        idempotency_key: None,
        approval: None,
        credential: None,
    });
    let outcome = context
        .scope(crate::runner::commit(&state.ledger, effects, now))
        .await?;
    Ok(matches!(outcome, offpay_operator::Attempt::Done(_)))
}

/// One pruning pass at the server's clock: idempotency records older than the idempotency
/// retention, then approvals closed longer ago than the approval retention, at most
/// [`PRUNE_BATCH_MAX`] a batch and [`PRUNE_BATCHES_PER_PASS`] batches.
pub async fn prune(state: &crate::AppState) -> Result<Pruned, crate::runner::RunError> {
    let retention = state.config.retention;
    let now_ms = state.now().0;
    let mut pruned = Pruned::default();
    let mut batches = 0;
    for namespace in [NAMESPACE, crate::approvals::NAMESPACE] {
        let mut after: Option<String> = None;
        loop {
            if batches == PRUNE_BATCHES_PER_PASS {
                pruned.left += 1;
                return Ok(pruned);
            }
            let from = after.clone();
            let (due, next) = state
                .ledger
                .read(move |store| {
                    if namespace == NAMESPACE {
                        due_records(store, NAMESPACE, "", from, &|record| {
                            idempotency_due(record, now_ms, retention.idempotency_ms)
                        })
                    } else {
                        due_records(store, namespace, "approval/", from, &|record| {
                            approval_due(
                                record,
                                now_ms,
                                retention.approval_ttl_ms,
                                retention.closed_approvals_ms,
                            )
                        })
                    }
                })
                .await?;
            let count = due.len() as u64;
            if count > 0 {
                let request = if namespace == NAMESPACE {
                    json!({
                        "idempotency_records": count,
                        "older_than_ms": retention.idempotency_ms,
                    })
                } else {
                    let ids = due
                        .iter()
                        .filter_map(|record| record.key.strip_prefix("approval/"))
                        .take(PRUNED_IDS_NAMED_MAX)
                        .collect::<Vec<_>>();
                    json!({
                        "approvals": count,
                        "approval_ids": ids,
                        "closed_before_ms": now_ms.saturating_sub(retention.closed_approvals_ms),
                    })
                };
                batches += 1;
                if remove(state, due, request).await? {
                    if namespace == NAMESPACE {
                        pruned.idempotency += count;
                    } else {
                        pruned.approvals += count;
                    }
                } else {
                    pruned.left += count;
                }
            }
            match next {
                Some(key) => after = Some(key),
                None => break,
            }
        }
    }
    Ok(pruned)
}

/// Runs [`prune`] every [`PRUNE_EVERY`] while the server lives (the first pass soon after the
/// start).
pub fn spawn_pruning(state: &Arc<crate::AppState>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(pruning(Arc::downgrade(state)));
}

async fn pruning(state: Weak<crate::AppState>) {
    let mut ticks = tokio::time::interval(PRUNE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        match prune(&state).await {
            Ok(pruned) if pruned != Pruned::default() => tracing::info!(
                idempotency_records = pruned.idempotency,
                approvals = pruned.approvals,
                left_for_next_pass = pruned.left,
                "pruned operator records past their retention"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "pruning operator records failed; trying again at the next pass")
            }
        }
    }
}

/// What a (user, key) was used for, and the answer it got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Format version.
    pub version: u32,
    /// The user.
    pub user: String,
    /// SHA-256 of the method, path and body.
    pub request_sha256: String,
    /// When it was first applied.
    pub created_at_ms: u64,
    /// The answer, once stored (money-moving routes only: other answers may hold secrets).
    pub answer: Option<StoredAnswer>,
}

/// An answer kept for replays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl StoredRecord for IdempotencyRecord {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = 1;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let record: IdempotencyRecord = decode_json(key, bytes)?;
        check_version::<IdempotencyRecord>(key, record.version)?;
        Ok(record)
    }
}

/// The record key of (user, key): the key itself is hashed, so any printable key fits.
pub fn record_key(user: &str, key: &str) -> String {
    format!("{user}/{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// SHA-256 of a request: method, path with query, body.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update(b" ");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hex::encode(hash.finalize())
}

/// Checks a key's form: 1 to [`KEY_BYTES_MAX`] printable ASCII characters.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    if !key.is_empty()
        && key.len() <= KEY_BYTES_MAX
        && key.bytes().all(|byte| byte.is_ascii_graphic())
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("an Idempotency-Key is 1 to {KEY_BYTES_MAX} printable ASCII characters"),
        ))
    }
}

/// The record of (user, key), as loaded.
pub fn load(
    store: &mut dyn LedgerStore,
    user: &str,
    key: &str,
) -> Result<Loaded<IdempotencyRecord>, StoreError> {
    Loaded::read(store, &record_key(user, key)).map_err(crate::ledger::record_store_error)
}

/// The write that creates the record (only if absent: a concurrent twin's commit is refused).
pub fn create(
    user: &str,
    key: &str,
    request_sha256: String,
    created_at_ms: u64,
) -> Result<Operation, RecordError> {
    let record_key = record_key(user, key);
    let record = IdempotencyRecord {
        version: IdempotencyRecord::FORMAT_VERSION,
        user: user.to_owned(),
        request_sha256,
        created_at_ms,
        answer: None,
    };
    Ok(Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        value: Some(record.encode(&record_key)?),
        key: record_key,
        expected_version: Some(0),
    }))
}

/// What a request with a key meets.
#[derive(Debug)]
pub enum Prior {
    /// The key is new: apply the request.
    New,
    /// The same request was applied: answer this.
    Replay(Option<StoredAnswer>),
    /// The key was used for another request.
    Reused,
}

/// What `record` says about a request whose hash is `request_sha256`.
pub fn prior(record: &Loaded<IdempotencyRecord>, request_sha256: &str) -> Prior {
    match &record.value {
        None => Prior::New,
        Some(stored) if stored.request_sha256 == request_sha256 => {
            Prior::Replay(stored.answer.clone())
        }
        Some(_) => Prior::Reused,
    }
}

/// The error for a key used for another request.
pub fn reused() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used for a different request; nothing was applied (use a new key for a new request)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_request_replays_and_another_is_refused() {
        let hash = request_hash("POST", "/api/v1/transfers", b"{}");
        let loaded = Loaded {
            key: record_key("fin", "k"),
            version: 1,
            value: Some(IdempotencyRecord {
                version: 1,
                user: "fin".into(),
                request_sha256: hash.clone(),
                created_at_ms: 1,
                answer: None,
            }),
        };
        assert!(matches!(prior(&loaded, &hash), Prior::Replay(None)));
        let other = request_hash("POST", "/api/v1/transfers", b"{\"a\":1}");
        assert!(matches!(prior(&loaded, &other), Prior::Reused));
        assert_ne!(
            record_key("fin", "k"),
            record_key("sam", "k"),
            "keys are per user"
        );
        assert!(check_key("").is_err() && check_key("a b").is_err() && check_key("abc-1").is_ok());
    }
}
