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

use offpay_ledger::{LedgerStore, Operation, RecordWrite, StoreError};
use offpay_operator::record::{check_version, decode_json, encode_json};
use offpay_operator::{Loaded, RecordError, StoredRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The ledger record namespace of idempotency records.
pub const NAMESPACE: &str = "idempotency";
/// Longest key, in bytes (printable ASCII).
pub const KEY_BYTES_MAX: usize = 128;
/// Largest answer body stored for a replay; a larger answer is replayed as "already applied".
pub const ANSWER_BYTES_MAX: usize = 64 << 10;

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
