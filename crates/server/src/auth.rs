//! Operator users, their roles and tokens, and the middleware that lets a request through only
//! when its token names a current user whose role the route's row in the table allows.
//!
//! Users are ledger records (namespace [`NAMESPACE`]): `user/NAME` holds the role, the SHA-256
//! of the current token, the expiry and the revocation; `token/SHA256` points a token's hash at
//! its user. Every request reads both in one read transaction and nothing is cached, so a
//! rotation or a revocation holds at once in every server process on the database. A token is
//! 32 random bytes (hex), so its SHA-256 is a safe at-rest form; the stored hash is compared in
//! constant time. The clear token is shown once, when it is made, and stored nowhere.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use offpay_ledger::{LedgerStore, Operation, RecordWrite, StoreError, Timestamp};
use offpay_operator::record::{check_version, decode_json, encode_json};
use offpay_operator::{Loaded, RecordError, StoredRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::AppState;
use crate::api::ApiJson;
use crate::error::ApiError;
use crate::routes::{RouteSpec, RouteTable};

/// The ledger record namespace of operator users and their token index.
pub const NAMESPACE: &str = "operator-users";
/// The user created on first start, whose token is `DATA_DIR/admin.token`.
pub const BOOTSTRAP_USER: &str = "admin";
/// Most operator users (the list is read whole).
pub const USERS_MAX: usize = 1_000;
/// Longest user name, in bytes.
pub const USER_NAME_BYTES_MAX: usize = 64;
/// Longest token lifetime that may be asked for, in days.
pub const TOKEN_DAYS_MAX: u64 = 3_650;
/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

const _: () = assert!(USERS_MAX <= offpay_ledger::RECORD_PAGE_MAX);

/// What an operator user may do. Every route states the roles that may call it
/// ([`crate::routes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Users and keys, and everything else (the bootstrap user).
    Admin,
    /// Floats, charges, settlements, manual transfers, disputes.
    Finance,
    /// Reads, blocks, unlocks and PIN resets.
    Support,
    /// Reads and the audit log; changes nothing.
    Auditor,
    /// The agents' back office: provisions purses, issues wallets and envelopes, registers
    /// payers and merchants.
    Provisioning,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Finance,
        Role::Support,
        Role::Auditor,
        Role::Provisioning,
    ];

    /// The name used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Finance => "finance",
            Role::Support => "support",
            Role::Auditor => "auditor",
            Role::Provisioning => "provisioning",
        }
    }

    /// The role called `text`.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// An operator user (record `user/NAME`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorUser {
    /// Format version.
    pub version: u32,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// SHA-256 (hex) of the current token.
    pub token_sha256: String,
    /// When the user was created.
    pub created_at_ms: u64,
    /// When the current token was made.
    pub token_issued_at_ms: u64,
    /// When the current token stops working, if ever.
    pub expires_at_ms: Option<u64>,
    /// When the user was revoked.
    pub revoked_at_ms: Option<u64>,
}

impl StoredRecord for OperatorUser {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = 1;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let user: OperatorUser = decode_json(key, bytes)?;
        check_version::<OperatorUser>(key, user.version)?;
        Ok(user)
    }
}

/// A token's hash pointing at its user (record `token/SHA256`). Kept after a rotation, so an old
/// token is told apart from one that never existed (`token_revoked`, not `invalid_token`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIndex {
    /// Format version.
    pub version: u32,
    /// The user.
    pub user: String,
}

impl StoredRecord for TokenIndex {
    const NAMESPACE: &'static str = NAMESPACE;
    const FORMAT_VERSION: u32 = 1;
    fn encode(&self, key: &str) -> Result<Vec<u8>, RecordError> {
        encode_json(self, key)
    }
    fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordError> {
        let index: TokenIndex = decode_json(key, bytes)?;
        check_version::<TokenIndex>(key, index.version)?;
        Ok(index)
    }
}

/// The key of user `name`.
pub fn user_key(name: &str) -> String {
    format!("user/{name}")
}

fn token_key(hash: &str) -> String {
    format!("token/{hash}")
}

/// A user name: 1 to [`USER_NAME_BYTES_MAX`] of `a-z 0-9 . _ -`.
pub fn check_user_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= USER_NAME_BYTES_MAX
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte)
        });
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_user_name",
            format!(
                "user name {name:?}: 1 to {USER_NAME_BYTES_MAX} characters of a-z, 0-9, '.', '_' and '-'"
            ),
        ))
    }
}

/// Who a request is from, once its token is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user: String,
    /// The user's role.
    pub role: Role,
}

/// Why a request was turned away before its handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// A token no user has ever had.
    InvalidToken,
    /// The user was revoked, or the token was replaced by a rotation.
    TokenRevoked {
        /// Whose it was.
        user: String,
    },
    /// The token's expiry has passed.
    TokenExpired {
        /// Whose it is.
        user: String,
    },
    /// The user's role may not call the route.
    Forbidden {
        /// The caller.
        caller: Caller,
        /// The roles that may.
        required: &'static [Role],
    },
    /// The route is not in the table (a route registered around it): nobody may call it.
    Unlisted,
    /// A console cookie that names no session (logged out, swept, or never made).
    SessionInvalid,
    /// The console session was idle too long or reached its absolute lifetime.
    SessionExpired {
        /// Whose it was.
        user: String,
    },
    /// A state-changing console request without its session's `X-CSRF-Token`.
    CsrfMissing {
        /// The caller.
        caller: Caller,
    },
    /// An approval from the console without the user's token in `X-Reauth-Token`.
    ReauthRequired {
        /// The caller.
        caller: Caller,
    },
}

impl Denial {
    /// The user, when the token named one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Denial::TokenRevoked { user }
            | Denial::TokenExpired { user }
            | Denial::SessionExpired { user } => Some(user),
            Denial::Forbidden { caller, .. }
            | Denial::CsrfMissing { caller }
            | Denial::ReauthRequired { caller } => Some(&caller.user),
            _ => None,
        }
    }

    /// The error code.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::MissingToken => "missing_token",
            Denial::InvalidToken => "invalid_token",
            Denial::TokenRevoked { .. } => "token_revoked",
            Denial::TokenExpired { .. } => "token_expired",
            Denial::Forbidden { .. } => "forbidden",
            Denial::Unlisted => "route_without_role",
            Denial::SessionInvalid => "session_invalid",
            Denial::SessionExpired { .. } => "session_expired",
            Denial::CsrfMissing { .. } => "csrf_token_invalid",
            Denial::ReauthRequired { .. } => "reauthentication_required",
        }
    }

    /// The caller's role, when the credential was good and the refusal is about the request.
    pub fn role(&self) -> Option<Role> {
        match self {
            Denial::Forbidden { caller, .. }
            | Denial::CsrfMissing { caller }
            | Denial::ReauthRequired { caller } => Some(caller.role),
            _ => None,
        }
    }

    /// The answer.
    pub fn error(&self) -> ApiError {
        match self {
            Denial::MissingToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                self.code(),
                "send an operator token as 'Authorization: Bearer <token>' (the first one is in DATA_DIR/admin.token)",
            ),
            Denial::InvalidToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                self.code(),
                "the operator token is wrong",
            ),
            Denial::TokenRevoked { user } => ApiError::new(
                StatusCode::UNAUTHORIZED,
                self.code(),
                format!("this token of user {user} was revoked or replaced by a newer one"),
            ),
            Denial::TokenExpired { user } => ApiError::new(
                StatusCode::UNAUTHORIZED,
                self.code(),
                format!("this token of user {user} has expired; ask an admin to rotate it"),
            ),
            Denial::Forbidden { caller, required } => {
                let names: Vec<&str> = required.iter().map(|role| role.as_str()).collect();
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    self.code(),
                    format!(
                        "this needs the role {}; user {} has the role {}",
                        names.join(" or "),
                        caller.user,
                        caller.role
                    ),
                )
                .with_details(json!({ "required_roles": names, "role": caller.role }))
            }
            Denial::Unlisted => ApiError::new(
                StatusCode::FORBIDDEN,
                self.code(),
                "this route states no role, so nobody may call it",
            ),
            Denial::SessionInvalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                self.code(),
                "this console session does not exist (logged out or ended); log in again",
            ),
            Denial::SessionExpired { user } => ApiError::new(
                StatusCode::UNAUTHORIZED,
                self.code(),
                format!(
                    "the console session of user {user} has ended (30 minutes idle or 8 hours since login); log in again"
                ),
            ),
            Denial::CsrfMissing { .. } => ApiError::new(
                StatusCode::FORBIDDEN,
                self.code(),
                "a console request that changes something must carry its session's X-CSRF-Token header",
            ),
            Denial::ReauthRequired { .. } => ApiError::new(
                StatusCode::FORBIDDEN,
                self.code(),
                "approving or refusing from the console needs your token again (X-Reauth-Token)",
            ),
        }
    }
}

/// Checks the token whose SHA-256 is `hash`, in one read: the user it belongs to, or why not.
pub fn authenticate(
    store: &mut dyn LedgerStore,
    hash: &str,
    now: Timestamp,
) -> Result<Result<Caller, Denial>, RecordError> {
    Ok(authenticate_credential(store, hash, now)?.map(|credential| credential.caller))
}

/// [`authenticate`], with what the check rested on: the user record's version and the token's
/// expiry, for [`CallerCache`].
pub fn authenticate_credential(
    store: &mut dyn LedgerStore,
    hash: &str,
    now: Timestamp,
) -> Result<Result<Credential, Denial>, RecordError> {
    let index: Loaded<TokenIndex> = Loaded::read(store, &token_key(hash))?;
    let Some(index) = index.value else {
        return Ok(Err(Denial::InvalidToken));
    };
    let user: Loaded<OperatorUser> = Loaded::read(store, &user_key(&index.user))?;
    let loaded_version = user.version;
    let Some(user) = user.value else {
        return Ok(Err(Denial::InvalidToken));
    };
    let current: bool = user.token_sha256.as_bytes().ct_eq(hash.as_bytes()).into();
    if !current || user.revoked_at_ms.is_some() {
        return Ok(Err(Denial::TokenRevoked { user: user.name }));
    }
    if user.expires_at_ms.is_some_and(|expiry| now.0 >= expiry) {
        return Ok(Err(Denial::TokenExpired { user: user.name }));
    }
    Ok(Ok(Credential {
        user_version: loaded_version,
        expires_at_ms: user.expires_at_ms,
        caller: Caller {
            user: user.name,
            role: user.role,
        },
    }))
}

/// What a token check found: the caller, and what the finding rests on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// Who called.
    pub caller: Caller,
    /// The version of the user record the check read: while the record is at it, the token,
    /// role and expiry the check saw are the user's.
    pub user_version: u64,
    /// When the token stops being valid.
    pub expires_at_ms: Option<u64>,
}

impl Credential {
    /// The check a commit made on this credential carries ([`CredentialCheck`]).
    fn check(&self, token_sha256: &str, cache: &Arc<CallerCache>) -> CredentialCheck {
        CredentialCheck {
            user_key: user_key(&self.caller.user),
            user_version: self.user_version,
            token_sha256: Zeroizing::new(token_sha256.to_owned()),
            cache: Arc::clone(cache),
        }
    }
}

/// Most tokens a [`CallerCache`] holds; it is emptied when full.
pub const CALLER_CACHE_MAX: usize = 4_096;

/// The callers whose token a full check found valid, by the token's SHA-256, so that a request
/// that changes something need not read the token's index and user first.
///
/// Nothing is decided on an entry alone. A request let in on an entry carries a
/// [`CredentialCheck`]: every batch it commits checks, in the same database transaction, that the
/// user record is still at the version the entry was made from (a rotated, revoked, expired or
/// re-roled user has a newer one), or nothing of the batch is applied; and a request that commits
/// nothing has its token checked in full before its answer is given. An entry never let in a
/// change another process made to the user: the database decides, not the cache. Reads (`GET`)
/// always check the token in full.
#[derive(Default)]
pub struct CallerCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, Credential>>,
}

impl fmt::Debug for CallerCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys: they are token hashes.
        f.debug_struct("CallerCache")
            .field("entries", &self.len())
            .finish()
    }
}

impl CallerCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Credential>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether it holds no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The credential a full check found for the token hashed `hash`, unless it has expired by
    /// `now`.
    fn get(&self, hash: &str, now: Timestamp) -> Option<Credential> {
        self.entries()
            .get(hash)
            .filter(|credential| credential.expires_at_ms.is_none_or(|expiry| now.0 < expiry))
            .cloned()
    }

    fn put(&self, hash: &str, credential: Credential) {
        let mut entries = self.entries();
        if entries.len() >= CALLER_CACHE_MAX && !entries.contains_key(hash) {
            entries.clear();
        }
        entries.insert(hash.to_owned(), credential);
    }

    /// Drops the token hashed `hash` (its user record moved on).
    pub fn forget(&self, hash: &str) {
        self.entries().remove(hash);
    }
}

/// What a request let in on a [`CallerCache`] entry commits with: every batch it commits first
/// checks ([`offpay_ledger::Operation::CheckRecord`]) that the user record is at the version the
/// entry rests on.
#[derive(Clone)]
pub struct CredentialCheck {
    user_key: String,
    user_version: u64,
    token_sha256: Zeroizing<String>,
    cache: Arc<CallerCache>,
}

impl fmt::Debug for CredentialCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialCheck")
            .field("user_key", &self.user_key)
            .field("user_version", &self.user_version)
            .finish_non_exhaustive()
    }
}

impl CredentialCheck {
    /// The operation that leads each batch.
    pub fn operation(&self) -> Operation {
        Operation::CheckRecord(offpay_ledger::RecordCheck {
            namespace: NAMESPACE.to_owned(),
            key: self.user_key.clone(),
            version: self.user_version,
        })
    }

    /// The check failed: the entry it came from is dropped.
    pub fn failed(&self) {
        self.cache.forget(self.token_sha256.as_str());
    }
}

/// Every user, by name.
pub fn list_users(store: &mut dyn LedgerStore) -> Result<Vec<OperatorUser>, RecordError> {
    let records = store.records(NAMESPACE, "user/", None, USERS_MAX)?;
    records
        .iter()
        .map(|record| OperatorUser::decode(&record.key, &record.value))
        .collect()
}

/// The writes that store `user` (conditional on `version`, 0 = new) and index its token.
fn user_writes(user: &OperatorUser, version: u64) -> Result<Vec<Operation>, RecordError> {
    let key = user_key(&user.name);
    let index_key = token_key(&user.token_sha256);
    Ok(vec![
        Operation::PutRecord(RecordWrite {
            namespace: NAMESPACE.to_owned(),
            key: key.clone(),
            value: Some(user.encode(&key)?),
            expected_version: Some(version),
        }),
        Operation::PutRecord(RecordWrite {
            namespace: NAMESPACE.to_owned(),
            value: Some(
                TokenIndex {
                    version: TokenIndex::FORMAT_VERSION,
                    user: user.name.clone(),
                }
                .encode(&index_key)?,
            ),
            key: index_key,
            expected_version: Some(0),
        }),
    ])
}

/// On a ledger with no users, creates [`BOOTSTRAP_USER`] (role admin) whose token is `token`
/// (the contents of `DATA_DIR/admin.token`). Returns whether it did. Another process doing the
/// same at the same moment makes this one's conditional write lose, harmlessly.
pub async fn bootstrap(
    ledger: &crate::ledger::Ledger,
    token: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let any = ledger
        .read(|store| Ok(!store.records(NAMESPACE, "user/", None, 1)?.is_empty()))
        .await
        .map_err(|error| StoreError::Database(error.to_string()))?;
    if any {
        // Another process (or an earlier start) made the users: this data directory's token
        // is worth something only if it is a user's.
        let key = token_key(&token_hash(token));
        let known = ledger
            .read(move |store| Ok(store.record(NAMESPACE, &key)?.is_some()))
            .await
            .map_err(|error| StoreError::Database(error.to_string()))?;
        if !known {
            tracing::warn!(
                "the token in this data directory's admin.token is no operator user's (the users \
                 were made by another server process or replaced since): copy admin.token from \
                 the data directory whose server made user admin, or give each person a token of \
                 their own (offpay admin users add)"
            );
        }
        return Ok(false);
    }
    let user = OperatorUser {
        version: OperatorUser::FORMAT_VERSION,
        name: BOOTSTRAP_USER.to_owned(),
        role: Role::Admin,
        token_sha256: token_hash(token),
        created_at_ms: now.0,
        token_issued_at_ms: now.0,
        expires_at_ms: None,
        revoked_at_ms: None,
    };
    let operations =
        user_writes(&user, 0).map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let results = ledger
        .commit(vec![offpay_ledger::Batch { operations }], now)
        .await
        .map_err(|error| StoreError::Database(error.to_string()))?;
    Ok(results.iter().all(Result::is_ok))
}

/// What the auth middleware needs: the state and the route table.
#[derive(Clone, Debug)]
pub struct Guard {
    /// The server state.
    pub state: Arc<AppState>,
    /// Who may call what.
    pub table: Arc<RouteTable>,
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| Zeroizing::new(token.trim().to_owned()))
}

/// The peer address of a connection, plain or TLS (`ConnectInfo` of the served router).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for RemoteAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> RemoteAddr {
        RemoteAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, crate::tls::TlsListener>> for RemoteAddr {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> RemoteAddr {
        RemoteAddr(*stream.remote_addr())
    }
}

/// Where a request came from (the peer address; `in-process` for a router driven directly).
pub fn remote_address(request: &Request) -> String {
    request
        .extensions()
        .get::<ConnectInfo<RemoteAddr>>()
        .map(|info| info.0.0.to_string())
        .unwrap_or_else(|| "in-process".to_owned())
}

/// The route row of a request.
fn route_of<'t>(table: &'t RouteTable, request: &Request) -> Option<&'t RouteSpec> {
    let matched = request.extensions().get::<MatchedPath>()?;
    table.find(request.method(), matched.as_str())
}

/// The console session id of a request (its `offpay_console` cookie), if any.
pub fn console_cookie(headers: &HeaderMap) -> Option<Zeroizing<String>> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == crate::console::session::COOKIE)
        .map(|(_, value)| Zeroizing::new(value.trim().to_owned()))
        .filter(|value| !value.is_empty())
}

/// Whether a request identifies itself by a console session (a cookie and no bearer token).
pub fn via_console(headers: &HeaderMap) -> bool {
    bearer(headers).is_none() && console_cookie(headers).is_some()
}

/// The routes a console session may call only with the user's token again
/// ([`crate::console::session::REAUTH_HEADER`]): deciding a four-eyes approval.
pub const REAUTH_ROUTES: &[&str] = &["/approvals/{id}/approve", "/approvals/{id}/refuse"];

/// Who is calling, or why they may not: the token checked against the ledger, then the role
/// against the route's row. A request with no bearer token may instead carry a console session
/// cookie (`check_console`): the same user, roles and table.
pub async fn check(
    state: &AppState,
    spec: Option<&RouteSpec>,
    headers: &HeaderMap,
) -> Result<Result<Caller, Denial>, ApiError> {
    let Some(token) = bearer(headers) else {
        return match console_cookie(headers) {
            Some(id) => check_console(state, spec, headers, &id).await,
            None => Ok(Err(Denial::MissingToken)),
        };
    };
    check_token(state, spec, token_hash(&token)).await
}

/// [`check`] for the bearer token whose SHA-256 is `hash`: read in full, and kept in the
/// [`CallerCache`] when valid (dropped from it when not).
async fn check_token(
    state: &AppState,
    spec: Option<&RouteSpec>,
    hash: String,
) -> Result<Result<Caller, Denial>, ApiError> {
    let now = state.now();
    // No common snapshot needed: the index only names the user, whose record decides (its
    // token hash compared again), so a rotation between the two reads is refused, not let in.
    let lookup = hash.clone();
    let credential = state
        .ledger
        .read_each(move |store| {
            authenticate_credential(store, &lookup, now).map_err(crate::ledger::record_store_error)
        })
        .await?;
    let credential = match credential {
        Ok(credential) => credential,
        Err(denial) => {
            state.callers.forget(&hash);
            return Ok(Err(denial));
        }
    };
    let caller = credential.caller.clone();
    state.callers.put(&hash, credential);
    let Some(spec) = spec else {
        return Ok(Err(Denial::Unlisted));
    };
    if !spec.allows(caller.role) {
        return Ok(Err(Denial::Forbidden {
            caller,
            required: spec.roles,
        }));
    }
    Ok(Ok(caller))
}

/// A bearer token's request let in on a [`CallerCache`] entry, with the check its commits must
/// carry; `None` when there is no entry (or it has expired, or its role may not call the route):
/// the token is then checked in full ([`check`]).
fn check_cached(
    state: &AppState,
    spec: Option<&RouteSpec>,
    headers: &HeaderMap,
) -> Option<(Caller, CredentialCheck, String)> {
    let token = bearer(headers)?;
    let spec = spec?;
    let hash = token_hash(&token);
    let credential = state.callers.get(&hash, state.now())?;
    if !spec.allows(credential.caller.role) {
        return None;
    }
    let check = credential.check(&hash, &state.callers);
    Some((credential.caller, check, hash))
}

/// A console session's request: the session checked (and its last-seen time moved on), then
/// for a request that changes state its CSRF token, then the role against the route's row
/// exactly as for a bearer token, then for an approval the user's token again.
async fn check_console(
    state: &AppState,
    spec: Option<&RouteSpec>,
    headers: &HeaderMap,
    id: &str,
) -> Result<Result<Caller, Denial>, ApiError> {
    use crate::console::session;
    let now = state.now();
    let lookup = Zeroizing::new(id.to_owned());
    let checked = state
        .ledger
        .read(move |store| {
            session::authenticate(store, &lookup, now).map_err(crate::ledger::record_store_error)
        })
        .await?;
    let checked = match checked {
        Ok(checked) => checked,
        Err(denial) => return Ok(Err(denial)),
    };
    if let Some(write) = session::touch(&checked.session, now) {
        // Best effort: another request of the session may have moved it on first.
        let _ = state
            .ledger
            .commit(
                vec![offpay_ledger::Batch {
                    operations: vec![write],
                }],
                now,
            )
            .await;
    }
    let caller = checked.caller;
    let Some(spec) = spec else {
        return Ok(Err(Denial::Unlisted));
    };
    if spec.changes_state() {
        let given = headers
            .get(session::CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !session::csrf_matches(id, given) {
            return Ok(Err(Denial::CsrfMissing { caller }));
        }
    }
    if !spec.allows(caller.role) {
        return Ok(Err(Denial::Forbidden {
            caller,
            required: spec.roles,
        }));
    }
    if spec.method == axum::http::Method::POST && REAUTH_ROUTES.contains(&spec.path) {
        let again = headers
            .get(session::REAUTH_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(token_hash)
            .unwrap_or_default();
        let matches: bool = again
            .as_bytes()
            .ct_eq(checked.token_sha256.as_bytes())
            .into();
        if !matches {
            return Ok(Err(Denial::ReauthRequired { caller }));
        }
    }
    Ok(Ok(caller))
}

/// Largest request body the middleware reads to summarise it for the audit log (the wallet
/// relay's upload is the largest route body).
pub const REQUEST_BYTES_MAX: usize = 17 << 20;
/// Largest error answer read back for the audit log's outcome.
const ERROR_BYTES_MAX: usize = 64 << 10;

const _: () = assert!(REQUEST_BYTES_MAX > 2 * crate::rails::wallet::SYNC_UPLOAD_BYTES_MAX + 1024);

/// The request's id: the `X-Request-Id` header when a proxy set one, else fresh.
fn request_id(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(id) = headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 64)
    {
        return id.to_owned();
    }
    let mut bytes = [0u8; 8];
    match state.entropy.fill(&mut bytes) {
        Ok(()) => hex::encode(bytes),
        Err(_) => "-".to_owned(),
    }
}

/// The `Idempotency-Key` header. A value that is not ASCII text is kept (lossily decoded) so
/// that the key check refuses it: ignoring it would drop the retry protection the client asked for.
pub fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
}

/// `committed`-less outcome of an answer, for its own audit entry: `answered 200` or
/// `failed 422 insufficient_funds`. Reads an error answer's body and puts it back.
async fn outcome_of(response: Response) -> (String, Response) {
    let status = response.status();
    if status.is_success() {
        return (format!("answered {}", status.as_u16()), response);
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, ERROR_BYTES_MAX)
        .await
        .unwrap_or_default();
    let code = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|value| {
            value
                .pointer("/error/code")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let outcome = format!("failed {} {code}", status.as_u16())
        .trim_end()
        .to_owned();
    (
        outcome,
        Response::from_parts(parts, axum::body::Body::from(bytes)),
    )
}

/// The middleware around every operator route: the caller's token and role, then the handler
/// inside the request's audit context ([`crate::audit::OperatorContext`]). A denial is answered
/// and audited; a request that changes state but commits nothing gets an entry of its own.
pub async fn authorize(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if !via_console(request.headers()) {
        return authorize_request(guard, request, next, false).await;
    }
    let mut response = authorize_request(guard, request, next, true).await;
    crate::console::secure_headers(response.headers_mut());
    response
}

async fn authorize_request(guard: Guard, request: Request, next: Next, console: bool) -> Response {
    let state = &guard.state;
    let spec = route_of(&guard.table, &request).cloned();
    let remote = remote_address(&request);
    // The audit entry says that the request came through the console.
    let remote = if console {
        format!("{remote} via console")
    } else {
        remote
    };
    let pattern = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_default();
    // The path as called (the nested router strips `/api/v1` from the request's own URI).
    let uri = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().clone(), |original| original.0.clone());
    let (parts, body) = request.into_parts();
    let changes_state = parts.method != axum::http::Method::GET;
    let (body, bytes, summary) = if changes_state {
        match axum::body::to_bytes(body, REQUEST_BYTES_MAX).await {
            Ok(bytes) => {
                let summary = crate::audit::summarise(&bytes);
                (axum::body::Body::from(bytes.clone()), bytes, summary)
            }
            Err(_) => {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request_too_large",
                    format!("a request body holds at most {REQUEST_BYTES_MAX} bytes"),
                )
                .into_response();
            }
        }
    } else {
        (body, axum::body::Bytes::new(), Value::Null)
    };
    // A request an approver released is dispatched by the server itself, marked with the
    // approval (an extension no client can set): it runs as its requester's.
    let approved = parts
        .extensions
        .get::<crate::approvals::ApprovedExecution>()
        .cloned();
    // A request that changes something may be let in on a cached credential: whatever it
    // commits checks the user record in the same transaction, and if it commits nothing its
    // token is checked in full before it is answered (below).
    let cached = match &approved {
        None if changes_state => check_cached(state, spec.as_ref(), &parts.headers),
        _ => None,
    };
    let checked = match (&approved, &cached) {
        (Some(execution), _) => Ok(execution.requester().ok_or(Denial::InvalidToken)),
        (None, Some((caller, _, _))) => Ok(Ok(caller.clone())),
        (None, None) => check(state, spec.as_ref(), &parts.headers).await,
    };
    let (mut credential, recheck) = match cached {
        Some((_, check, hash)) => (Some(check), Some(hash)),
        None => (None, None),
    };
    let context =
        |user: Option<String>, role: Option<Role>, credential: Option<CredentialCheck>| {
            crate::audit::OperatorContext::new(crate::audit::ContextParts {
                chain: state.audit.clone(),
                user,
                role,
                remote: remote.clone(),
                request_id: request_id(state, &parts.headers),
                action: format!("{} {pattern}", parts.method),
                path: uri.path().to_owned(),
                request: summary.clone(),
                idempotency_key: idempotency_key(&parts.headers),
                approval: approved
                    .as_ref()
                    .map(crate::approvals::ApprovedExecution::summary),
                credential,
            })
        };
    match checked {
        Err(error) => error.into_response(),
        Ok(Err(denial)) => {
            crate::metrics::Metrics::add(&state.metrics.http_unauthorized, 1);
            tracing::warn!(
                code = denial.code(),
                user = denial.user().unwrap_or("-"),
                route = %uri.path(),
                remote = %remote,
                "operator request denied"
            );
            let role = denial.role();
            let audit = context(denial.user().map(str::to_owned), role, None);
            let outcome = format!("denied {}", denial.code());
            crate::audit::record_soon(&state.ledger, audit, state.now(), outcome).await;
            denial.error().into_response()
        }
        Ok(Ok(caller)) => {
            let audit = context(
                Some(caller.user.clone()),
                Some(caller.role),
                credential.take(),
            );
            let moves_money = spec.as_ref().is_some_and(|spec| spec.moves_money);
            let key = audit
                .idempotency_key()
                .map(str::to_owned)
                .filter(|_| changes_state);
            let path = uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |path| path.as_str().to_owned());
            let request_sha256 =
                crate::idempotency::request_hash(parts.method.as_str(), &path, &bytes);
            if let Some(execution) = &approved {
                match execution.closing_write(state.now().0) {
                    Ok(Some(write)) => audit.add_until_committed(write),
                    Ok(None) => {}
                    Err(error) => {
                        return ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            error.to_string(),
                        )
                        .into_response();
                    }
                }
            }
            // Four eyes: a request creating more value than one person may is held.
            let held = match (spec.as_ref().and_then(|spec| spec.creates_value), &approved) {
                (Some(value), None) if changes_state => {
                    match serde_json::from_slice::<Value>(&bytes) {
                        Ok(json) => match value(state, &json) {
                            Ok(Some(amount))
                                if crate::approvals::decimal_above(
                                    amount,
                                    state.config.approval_above,
                                ) =>
                            {
                                Ok(Some(amount))
                            }
                            Ok(_) => Ok(None),
                            Err(message) => Err(ApiError::bad_request(
                                "invalid_amount",
                                format!("the value this request creates cannot be read: {message}"),
                            )),
                        },
                        // Not JSON: the handler answers it precisely.
                        Err(_) => Ok(None),
                    }
                }
                _ => Ok(None),
            };
            let method = parts.method.as_str().to_owned();
            let mut request = Request::from_parts(parts, body);
            request.extensions_mut().insert(caller.clone());
            let action = async {
                match held {
                    Err(error) => error.into_response(),
                    Ok(Some(amount)) => crate::approvals::hold(
                        state,
                        &caller,
                        &method,
                        &path,
                        &pattern,
                        &bytes,
                        amount,
                        key.clone(),
                    )
                    .await
                    .unwrap_or_else(IntoResponse::into_response),
                    Ok(None) => next.run(request).await,
                }
            };
            let (response, replayed) = match &key {
                None => {
                    // Manual transfers carry their own ids, which make a retry post once.
                    if moves_money && !uri.path().ends_with("/transfers") {
                        tracing::warn!(
                            user = %caller.user,
                            route = %path,
                            "a money-moving request without an Idempotency-Key: a retry of it may apply it twice"
                        );
                    }
                    (audit.clone().scope(action).await, false)
                }
                Some(key) => {
                    match idempotent(
                        state,
                        &audit,
                        &caller,
                        key,
                        request_sha256,
                        moves_money,
                        action,
                    )
                    .await
                    {
                        Ok(answer) => answer,
                        Err(error) => (error.into_response(), false),
                    }
                }
            };
            let committed = !audit.committed_entries().is_empty();
            // Let in on a cached credential and nothing committed (so nothing checked the user
            // record): the token is checked in full now, and a caller it no longer lets in gets
            // the denial, not the handler's answer.
            if let Some(hash) = recheck.filter(|_| !committed) {
                match check_token(state, spec.as_ref(), hash).await {
                    Err(error) => return error.into_response(),
                    Ok(Err(denial)) => {
                        crate::metrics::Metrics::add(&state.metrics.http_unauthorized, 1);
                        tracing::warn!(
                            code = denial.code(),
                            user = denial.user().unwrap_or("-"),
                            route = %uri.path(),
                            remote = %remote,
                            "operator request denied"
                        );
                        let outcome = format!("denied {}", denial.code());
                        crate::audit::record_soon(&state.ledger, audit, state.now(), outcome).await;
                        return denial.error().into_response();
                    }
                    Ok(Ok(_)) => {}
                }
            }
            if !changes_state || committed {
                return response;
            }
            let (mut outcome, response) = outcome_of(response).await;
            if replayed {
                outcome = outcome.replacen("answered", "replayed", 1);
            }
            crate::audit::record_soon(&state.ledger, audit, state.now(), outcome).await;
            response
        }
    }
}

/// Runs a request that carries an `Idempotency-Key`: the stored answer when the same request
/// was applied, `idempotency_key_reused` when another was, otherwise the handler with the
/// record added to its first commit, then (money-moving routes) its answer stored for replays.
/// Also says whether the answer is a replay.
async fn idempotent(
    state: &AppState,
    audit: &crate::audit::OperatorContext,
    caller: &Caller,
    key: &str,
    request_sha256: String,
    moves_money: bool,
    action: impl std::future::Future<Output = Response>,
) -> Result<(Response, bool), ApiError> {
    use crate::idempotency::{self, Prior};
    idempotency::check_key(key)?;
    let (user, lookup) = (caller.user.clone(), key.to_owned());
    let loaded = state
        .ledger
        .read(move |store| idempotency::load(store, &user, &lookup))
        .await?;
    match idempotency::prior(&loaded, &request_sha256) {
        Prior::Reused => return Err(idempotency::reused()),
        Prior::Replay(Some(answer)) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            let mut response = (status, Json(answer.body)).into_response();
            response.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            return Ok((response, true));
        }
        Prior::Replay(None) => {
            let mut response = Json(json!({
                "already_applied": true,
                "message": "this request was applied before with this Idempotency-Key; its answer was not kept (look it up in the audit log by the key)",
            }))
            .into_response();
            response.headers_mut().insert(
                "idempotent-replayed",
                axum::http::HeaderValue::from_static("true"),
            );
            return Ok((response, true));
        }
        Prior::New => {}
    }
    let created_at_ms = state.now().0;
    let create = idempotency::create(&caller.user, key, request_sha256.clone(), created_at_ms)
        .map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            )
        })?;
    audit.add_to_first_commit(create);
    let response = audit.clone().scope(action).await;
    if audit.committed_entries().is_empty() || !moves_money {
        return Ok((response, false));
    }
    // Keep the answer for a retry whose first answer was lost. Best effort: the record that
    // makes the retry harmless is already committed with the effect.
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, idempotency::ANSWER_BYTES_MAX).await;
    let Ok(bytes) = bytes else {
        return Ok((
            (
                parts.status,
                Json(json!({ "applied": true, "message": "the answer was too large to return" })),
            )
                .into_response(),
            false,
        ));
    };
    if let Ok(body) = serde_json::from_slice::<Value>(&bytes) {
        let record = idempotency::IdempotencyRecord {
            version: idempotency::IdempotencyRecord::FORMAT_VERSION,
            user: caller.user.clone(),
            request_sha256,
            created_at_ms,
            answer: Some(idempotency::StoredAnswer {
                status: parts.status.as_u16(),
                body,
            }),
        };
        // Version 1: the record as this request's commit created it.
        let created = Loaded::<idempotency::IdempotencyRecord> {
            key: idempotency::record_key(&caller.user, key),
            version: 1,
            value: None,
        };
        let stored = match created.write(&record) {
            Ok(write) => state
                .ledger
                .commit(
                    vec![offpay_ledger::Batch {
                        operations: vec![write],
                    }],
                    state.now(),
                )
                .await
                .map(|results| results.iter().all(Result::is_ok)),
            Err(_) => Ok(false),
        };
        if !matches!(stored, Ok(true)) {
            tracing::warn!(
                "the answer of an idempotent request was not stored; a retry will be told it was applied"
            );
        }
    }
    Ok((
        Response::from_parts(parts, axum::body::Body::from(bytes)),
        false,
    ))
}

// ---------------------------------------------------------------------------------------------
// The users routes.

/// A user as the API shows it (never the token or its hash).
#[derive(Debug, Serialize)]
pub struct UserView {
    name: String,
    role: Role,
    created_at_ms: u64,
    token_issued_at_ms: u64,
    expires_at_ms: Option<u64>,
    revoked_at_ms: Option<u64>,
    state: &'static str,
}

fn view(user: &OperatorUser, now: Timestamp) -> UserView {
    let state = if user.revoked_at_ms.is_some() {
        "revoked"
    } else if user.expires_at_ms.is_some_and(|expiry| now.0 >= expiry) {
        "expired"
    } else {
        "active"
    };
    UserView {
        name: user.name.clone(),
        role: user.role,
        created_at_ms: user.created_at_ms,
        token_issued_at_ms: user.token_issued_at_ms,
        expires_at_ms: user.expires_at_ms,
        revoked_at_ms: user.revoked_at_ms,
        state,
    }
}

/// `GET /api/v1/users`.
pub async fn list_endpoint(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let users = read_users(&state).await?;
    let now = state.now();
    let views: Vec<UserView> = users.iter().map(|user| view(user, now)).collect();
    Ok(Json(json!({ "users": views })))
}

async fn read_users(state: &AppState) -> Result<Vec<OperatorUser>, ApiError> {
    Ok(state
        .ledger
        .read(|store| list_users(store).map_err(crate::ledger::record_store_error))
        .await?)
}

/// Body of `POST /api/v1/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddUserRequest {
    name: String,
    role: String,
    /// The token stops working after this many days; never when absent.
    expires_in_days: Option<u64>,
}

/// Body of `POST /api/v1/users/{name}/rotate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    expires_in_days: Option<u64>,
}

fn expiry(now: Timestamp, days: Option<u64>) -> Result<Option<u64>, ApiError> {
    match days {
        None => Ok(None),
        Some(days) if (1..=TOKEN_DAYS_MAX).contains(&days) => {
            Ok(Some(now.0.saturating_add(days * DAY_MS)))
        }
        Some(days) => Err(ApiError::bad_request(
            "invalid_expiry",
            format!("expires_in_days {days}: between 1 and {TOKEN_DAYS_MAX}"),
        )),
    }
}

fn new_token(state: &AppState) -> Result<Zeroizing<String>, ApiError> {
    let bytes = crate::keyfile::random(state.entropy.as_ref(), crate::token::TOKEN_BYTES).map_err(
        |error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "entropy_unavailable",
                error.to_string(),
            )
        },
    )?;
    Ok(Zeroizing::new(hex::encode(&*bytes)))
}

async fn load_user(state: &AppState, name: &str) -> Result<Loaded<OperatorUser>, ApiError> {
    let key = user_key(name);
    Ok(state
        .ledger
        .read(move |store| Loaded::read(store, &key).map_err(crate::ledger::record_store_error))
        .await?)
}

async fn commit_user(state: &AppState, user: &OperatorUser, version: u64) -> Result<(), ApiError> {
    let operations = user_writes(user, version).map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            error.to_string(),
        )
    })?;
    let mut effects = offpay_operator::Effects::new();
    effects.write_all(operations);
    match crate::runner::commit(&state.ledger, effects, state.now()).await {
        Ok(offpay_operator::Attempt::Done(_)) => Ok(()),
        Ok(offpay_operator::Attempt::Conflict) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "user_changed",
            format!("user {} changed meanwhile; look and try again", user.name),
        )),
        Err(error) => Err(crate::runner::api_error(error)),
    }
}

fn token_answer(status: StatusCode, user: &OperatorUser, token: &str, now: Timestamp) -> Response {
    (
        status,
        Json(json!({
            "user": view(user, now),
            "token": token,
            "note": "the token is shown this once; it is stored only as a hash",
        })),
    )
        .into_response()
}

/// `POST /api/v1/users`: a new user and its token (shown once).
pub async fn add_endpoint(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<AddUserRequest>,
) -> Result<Response, ApiError> {
    check_user_name(&request.name)?;
    let role = Role::parse(&request.role).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
        ApiError::bad_request(
            "invalid_role",
            format!("role {:?} is not one of {}", request.role, names.join(", ")),
        )
    })?;
    let now = state.now();
    let expires_at_ms = expiry(now, request.expires_in_days)?;
    let existing = load_user(&state, &request.name).await?;
    if existing.value.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "user_exists",
            format!("user {} exists; rotate its token instead", request.name),
        ));
    }
    if read_users(&state).await?.len() >= USERS_MAX {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_users",
            format!("at most {USERS_MAX} operator users"),
        ));
    }
    let token = new_token(&state)?;
    let user = OperatorUser {
        version: OperatorUser::FORMAT_VERSION,
        name: request.name,
        role,
        token_sha256: token_hash(&token),
        created_at_ms: now.0,
        token_issued_at_ms: now.0,
        expires_at_ms,
        revoked_at_ms: None,
    };
    commit_user(&state, &user, 0).await?;
    Ok(token_answer(StatusCode::CREATED, &user, &token, now))
}

/// `POST /api/v1/users/{name}/rotate`: a new token; the old one stops working at once.
pub async fn rotate_endpoint(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request: RotateRequest = if body.is_empty() {
        RotateRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| ApiError::bad_request("malformed_request", error.to_string()))?
    };
    let now = state.now();
    let expires_at_ms = expiry(now, request.expires_in_days)?;
    let loaded = load_user(&state, &name).await?;
    let Some(mut user) = loaded.value.clone() else {
        return Err(ApiError::not_found("user", &name));
    };
    let token = new_token(&state)?;
    user.token_sha256 = token_hash(&token);
    user.token_issued_at_ms = now.0;
    user.expires_at_ms = expires_at_ms;
    user.revoked_at_ms = None;
    commit_user(&state, &user, loaded.version).await?;
    Ok(token_answer(StatusCode::OK, &user, &token, now))
}

/// `POST /api/v1/users/{name}/revoke`: the user's token stops working at once. The last admin
/// who is not revoked cannot be revoked (nobody could manage users after).
pub async fn revoke_endpoint(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let loaded = load_user(&state, &name).await?;
    let Some(mut user) = loaded.value.clone() else {
        return Err(ApiError::not_found("user", &name));
    };
    if user.revoked_at_ms.is_some() {
        return Ok(Json(json!({ "user": view(&user, now), "changed": false })));
    }
    if user.role == Role::Admin {
        let admins = read_users(&state)
            .await?
            .iter()
            .filter(|other| other.role == Role::Admin && other.revoked_at_ms.is_none())
            .count();
        if admins <= 1 {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "last_admin",
                format!("{name} is the last admin; add another admin before revoking it"),
            ));
        }
    }
    user.revoked_at_ms = Some(now.0);
    let key = user_key(&user.name);
    let operation = Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.to_owned(),
        value: Some(user.encode(&key).map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            )
        })?),
        key,
        expected_version: Some(loaded.version),
    });
    let mut effects = offpay_operator::Effects::new();
    effects.write(operation);
    match crate::runner::commit(&state.ledger, effects, now).await {
        Ok(offpay_operator::Attempt::Done(_)) => {}
        Ok(offpay_operator::Attempt::Conflict) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "user_changed",
                format!("user {name} changed meanwhile; look and try again"),
            ));
        }
        Err(error) => return Err(crate::runner::api_error(error)),
    }
    Ok(Json(json!({ "user": view(&user, now), "changed": true })))
}

/// The users routes.
pub fn operator_routes() -> crate::routes::OperatorRoutes {
    use crate::routes::ADMIN;
    crate::routes::OperatorRoutes::new()
        .get("/users", ADMIN, list_endpoint)
        .post("/users", ADMIN, add_endpoint)
        .post("/users/{name}/rotate", ADMIN, rotate_endpoint)
        .post("/users/{name}/revoke", ADMIN, revoke_endpoint)
}

#[cfg(test)]
mod tests {
    use offpay_ledger::{Batch, MemoryStore};

    use super::*;

    fn store_with(user: &OperatorUser) -> MemoryStore {
        let mut store = MemoryStore::new();
        let results = store
            .commit(
                &[Batch {
                    operations: user_writes(user, 0).unwrap(),
                }],
                Timestamp(1),
            )
            .unwrap();
        assert!(results.iter().all(Result::is_ok));
        store
    }

    fn user(token: &str) -> OperatorUser {
        OperatorUser {
            version: 1,
            name: "fin".into(),
            role: Role::Finance,
            token_sha256: token_hash(token),
            created_at_ms: 1,
            token_issued_at_ms: 1,
            expires_at_ms: Some(100),
            revoked_at_ms: None,
        }
    }

    #[test]
    fn a_token_names_its_user_until_it_expires() {
        let mut store = store_with(&user("aa"));
        let caller = authenticate(&mut store, &token_hash("aa"), Timestamp(99)).unwrap();
        assert_eq!(
            caller,
            Ok(Caller {
                user: "fin".into(),
                role: Role::Finance
            })
        );
        let expired = authenticate(&mut store, &token_hash("aa"), Timestamp(100)).unwrap();
        assert_eq!(expired, Err(Denial::TokenExpired { user: "fin".into() }));
        let unknown = authenticate(&mut store, &token_hash("bb"), Timestamp(1)).unwrap();
        assert_eq!(unknown, Err(Denial::InvalidToken));
    }

    #[test]
    fn a_rotated_token_is_revoked_and_the_new_one_works() {
        let mut store = store_with(&user("aa"));
        let mut rotated = user("bb");
        rotated.expires_at_ms = None;
        let operations = user_writes(&rotated, 1).unwrap();
        let results = store.commit(&[Batch { operations }], Timestamp(2)).unwrap();
        assert!(results.iter().all(Result::is_ok));
        let old = authenticate(&mut store, &token_hash("aa"), Timestamp(3)).unwrap();
        assert_eq!(old, Err(Denial::TokenRevoked { user: "fin".into() }));
        let new = authenticate(&mut store, &token_hash("bb"), Timestamp(3)).unwrap();
        assert!(new.is_ok());
    }

    #[test]
    fn the_routes_that_need_the_token_again_are_in_the_table() {
        let routes = crate::operator_routes();
        for path in REAUTH_ROUTES {
            let spec = routes
                .table()
                .find(&axum::http::Method::POST, path)
                .unwrap_or_else(|| {
                    panic!("POST {path} is not a route: re-authentication would never apply")
                });
            assert!(spec.changes_state());
        }
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
