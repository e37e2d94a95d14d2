//! Console sessions and the login rate limit, as ledger records (namespace [`NAMESPACE`]), so
//! that every server process on one database sees the same sessions and counts the same failures.
//!
//! A session id is 32 random bytes (hex) sent only in the `offpay_console` cookie; the ledger keeps
//! `session/SHA256(id)`, so a reader of the database cannot use a session. The session's CSRF
//! token is derived from the id (SHA-256 under its own label), so it needs no storage and cannot
//! be computed from the stored hash. A session names its user and the hash of the token the user
//! logged in with: a rotation or a revocation of the user ends every session at once, because
//! each request reads the user record again ([`authenticate`]).

use offpay_ledger::{LedgerStore, Operation, Timestamp};
use offpay_operator::record::{check_version, decode_json, encode_json};
use offpay_operator::{Loaded, RecordError, StoredRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{Caller, Denial, OperatorUser, user_key};

/// The ledger record namespace of console sessions and login failures.
pub const NAMESPACE: &str = "console-sessions";
/// The session cookie.
pub const COOKIE: &str = "offpay_console";
/// The header a state-changing cookie request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The header an approval from the console carries the user's token in again.
pub const REAUTH_HEADER: &str = "x-reauth-token";
/// Random bytes in a session id.
pub const SESSION_ID_BYTES: usize = 32;
/// A session ends this long after its last request.
pub const IDLE_MS: u64 = 30 * 60 * 1000;
/// A session ends this long after its login, however busy.
pub const ABSOLUTE_MS: u64 = 8 * 60 * 60 * 1000;
/// A request writes the session's last-seen time only when the stored one is older than this
/// (one write a minute per busy session, not one per request); idle expiry is as exact.
pub const TOUCH_INTERVAL_MS: u64 = 60 * 1000;
/// Failed logins allowed per user name and per client address within [`FAILURE_WINDOW_MS`].
pub const FAILURES_MAX: usize = 5;
/// The window of the login rate limit.
pub const FAILURE_WINDOW_MS: u64 = 60 * 1000;
/// Session records a login looks at to delete expired ones (a bounded sweep per login).
pub const SWEEP_MAX: usize = 64;

const _: () = assert!(TOUCH_INTERVAL_MS < IDLE_MS && IDLE_MS < ABSOLUTE_MS);
const _: () = assert!(FAILURES_MAX > 0 && SWEEP_MAX <= offpay_ledger::RECORD_PAGE_MAX);

/// A console session (record `session/SHA256(id)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSession {
    /// Format version.
    pub version: u32,
    /// The operator user.
    pub user: String,
    /// SHA-256 (hex) of the token the user logged in with: the session ends when it is no
    /// longer the user's current token.
    pub token_sha256: String,
    /// When the user logged in.
    pub created_at_ms: u64,
    /// The last request (to within [`TOUCH_INTERVAL_MS`]).
    pub last_seen_ms: u64,
}

impl StoredRecord for ConsoleSession {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = 1;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let session: ConsoleSession = decode_json(key, bytes)?;
        check_version::<ConsoleSession>(key, session.version)?;
        Ok(session)
    }
}

impl ConsoleSession {
    /// When the session ends if no request comes before.
    pub fn expires_at_ms(&self) -> u64 {
        self.last_seen_ms
            .saturating_add(IDLE_MS)
            .min(self.created_at_ms.saturating_add(ABSOLUTE_MS))
    }

    /// Whether it has ended at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        now.0 >= self.expires_at_ms()
    }
}

/// Recent failed logins of one user name or one client address (record
/// `failures/user/SHA256(name)` or `failures/address/ADDRESS`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFailures {
    /// Format version.
    pub version: u32,
    /// When the most recent failures happened, oldest first; at most [`FAILURES_MAX`].
    pub at_ms: Vec<u64>,
}

impl StoredRecord for LoginFailures {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = 1;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let failures: LoginFailures = decode_json(key, bytes)?;
        check_version::<LoginFailures>(key, failures.version)?;
        if failures.at_ms.len() > FAILURES_MAX {
            return Err(RecordError::Corrupt {
                namespace: NAMESPACE,
                key: key.to_owned(),
                message: format!("more than {FAILURES_MAX} failures kept"),
            });
        }
        Ok(failures)
    }
}

impl LoginFailures {
    /// When the next attempt is allowed, if the limit is reached at `now`.
    pub fn retry_at_ms(&self, now: Timestamp) -> Option<u64> {
        let recent: Vec<u64> = self
            .at_ms
            .iter()
            .copied()
            .filter(|at| now.0 < at.saturating_add(FAILURE_WINDOW_MS))
            .collect();
        if recent.len() < FAILURES_MAX {
            return None;
        }
        recent
            .first()
            .map(|oldest| oldest.saturating_add(FAILURE_WINDOW_MS))
    }

    /// With one more failure at `now`, keeping the newest [`FAILURES_MAX`].
    pub fn with_failure(&self, now: Timestamp) -> LoginFailures {
        let mut at_ms = self.at_ms.clone();
        at_ms.push(now.0);
        let excess = at_ms.len().saturating_sub(FAILURES_MAX);
        at_ms.drain(..excess);
        LoginFailures {
            version: LoginFailures::FORMAT_VERSION,
            at_ms,
        }
    }
}

/// SHA-256 of `text`, hex.
fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// The record key of the session whose id is `id`.
pub fn session_key(id: &str) -> String {
    format!("session/{}", sha256_hex(&[id.trim().as_bytes()]))
}

/// The CSRF token of the session whose id is `id`.
pub fn csrf_token(id: &str) -> String {
    sha256_hex(&[b"offpay console csrf token\0", id.trim().as_bytes()])
}

/// Whether `given` is the CSRF token of session `id` (constant time).
pub fn csrf_matches(id: &str, given: &str) -> bool {
    let expected = csrf_token(id);
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// The record key of the failures of user name `name`.
pub fn user_failures_key(name: &str) -> String {
    format!("failures/user/{}", sha256_hex(&[name.as_bytes()]))
}

/// The record key of the failures of client address `address` (the IP, without the port).
pub fn address_failures_key(address: &str) -> String {
    format!("failures/address/{}", client_ip(address))
}

/// The IP of a peer address `IP:PORT` or `[IPv6]:PORT` (the port changes per connection).
pub fn client_ip(address: &str) -> String {
    match address.parse::<std::net::SocketAddr>() {
        Ok(socket) => socket.ip().to_string(),
        Err(_) => address.to_owned(),
    }
}

/// What a session check found: the caller and the session as read.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The user behind the session.
    pub caller: Caller,
    /// The session record as read.
    pub session: Loaded<ConsoleSession>,
    /// The user's current token hash (for re-authentication).
    pub token_sha256: String,
}

/// Checks the session whose id is `id` at `now`, in one read: the user behind it, or why not.
/// The user record is read again, so a revoked, rotated or expired user's session is refused.
pub fn authenticate(
    store: &mut dyn LedgerStore,
    id: &str,
    now: Timestamp,
) -> Result<Result<Checked, Denial>, RecordError> {
    let session: Loaded<ConsoleSession> = Loaded::read(store, &session_key(id))?;
    let Some(record) = session.value.clone() else {
        return Ok(Err(Denial::SessionInvalid));
    };
    if record.expired(now) {
        return Ok(Err(Denial::SessionExpired { user: record.user }));
    }
    let user: Loaded<OperatorUser> = Loaded::read(store, &user_key(&record.user))?;
    let Some(user) = user.value else {
        return Ok(Err(Denial::SessionInvalid));
    };
    let current: bool = user
        .token_sha256
        .as_bytes()
        .ct_eq(record.token_sha256.as_bytes())
        .into();
    if !current || user.revoked_at_ms.is_some() {
        return Ok(Err(Denial::TokenRevoked { user: user.name }));
    }
    if user.expires_at_ms.is_some_and(|expiry| now.0 >= expiry) {
        return Ok(Err(Denial::TokenExpired { user: user.name }));
    }
    Ok(Ok(Checked {
        caller: Caller {
            user: user.name,
            role: user.role,
        },
        session,
        token_sha256: user.token_sha256,
    }))
}

/// The write that moves the session's last-seen time to `now`, when the stored one is older
/// than [`TOUCH_INTERVAL_MS`].
pub fn touch(session: &Loaded<ConsoleSession>, now: Timestamp) -> Option<Operation> {
    let record = session.value.as_ref()?;
    if now.0 < record.last_seen_ms.saturating_add(TOUCH_INTERVAL_MS) {
        return None;
    }
    let mut touched = record.clone();
    touched.last_seen_ms = now.0;
    session.write(&touched).ok()
}

/// The writes that delete expired sessions among the first [`SWEEP_MAX`] stored, and failure
/// counts whose newest failure has left the window among the first [`SWEEP_MAX`].
pub fn sweep(store: &mut dyn LedgerStore, now: Timestamp) -> Result<Vec<Operation>, RecordError> {
    let mut writes = Vec::new();
    for record in store.records(NAMESPACE, "failures/", None, SWEEP_MAX)? {
        let failures = LoginFailures::decode(&record.key, &record.value)?;
        let stale = failures
            .at_ms
            .last()
            .is_none_or(|newest| now.0 >= newest.saturating_add(FAILURE_WINDOW_MS));
        if stale {
            writes.push(
                Loaded::<LoginFailures> {
                    key: record.key,
                    version: record.version,
                    value: Some(failures),
                }
                .delete(),
            );
        }
    }
    let records = store.records(NAMESPACE, "session/", None, SWEEP_MAX)?;
    for record in records {
        let session = ConsoleSession::decode(&record.key, &record.value)?;
        if session.expired(now) {
            writes.push(
                Loaded::<ConsoleSession> {
                    key: record.key,
                    version: record.version,
                    value: Some(session),
                }
                .delete(),
            );
        }
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_when_idle_or_after_its_absolute_lifetime() {
        let session = ConsoleSession {
            version: 1,
            user: "ann".into(),
            token_sha256: "00".into(),
            created_at_ms: 1_000,
            last_seen_ms: 1_000,
        };
        assert!(!session.expired(Timestamp(1_000 + IDLE_MS - 1)));
        assert!(session.expired(Timestamp(1_000 + IDLE_MS)));
        let busy = ConsoleSession {
            last_seen_ms: 1_000 + ABSOLUTE_MS - 10,
            ..session
        };
        assert!(busy.expired(Timestamp(1_000 + ABSOLUTE_MS)));
    }

    #[test]
    fn five_failures_in_a_minute_wait_until_the_oldest_leaves_the_window() {
        let mut failures = LoginFailures::default();
        for second in 0..FAILURES_MAX as u64 {
            assert_eq!(failures.retry_at_ms(Timestamp(second * 1_000)), None);
            failures = failures.with_failure(Timestamp(second * 1_000));
        }
        assert_eq!(
            failures.retry_at_ms(Timestamp(10_000)),
            Some(FAILURE_WINDOW_MS)
        );
        assert_eq!(failures.retry_at_ms(Timestamp(FAILURE_WINDOW_MS)), None);
        let more = failures.with_failure(Timestamp(70_000));
        assert_eq!(more.at_ms.len(), FAILURES_MAX);
    }

    #[test]
    fn the_csrf_token_is_the_sessions_and_not_its_stored_hash() {
        let id = "ab".repeat(32);
        assert!(csrf_matches(&id, &csrf_token(&id)));
        assert!(!csrf_matches(&id, &csrf_token(&"cd".repeat(32))));
        assert!(!csrf_matches(&id, ""));
        assert_ne!(session_key(&id), format!("session/{}", csrf_token(&id)));
        assert_eq!(client_ip("127.0.0.1:5555"), "127.0.0.1");
        assert_eq!(client_ip("[::1]:80"), "::1");
    }
}
