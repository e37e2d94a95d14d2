//! The operator console at `/console`: a small front end (HTML, CSS and JavaScript modules in
//! `crates/server/console/`, embedded in the binary; no build step, nothing from the internet)
//! and the three routes it needs of its own — log in, log out, and "who am I". Everything the
//! console does after login is an ordinary `/api/v1` call: the auth middleware
//! ([`crate::auth::authorize`]) takes the session cookie as a second way to name the same
//! operator user, with the same route table, roles and audit log, plus a CSRF token on requests
//! that change something and the user's token again to decide an approval.
//!
//! Every console answer carries a strict Content-Security-Policy ([`CONTENT_SECURITY_POLICY`]:
//! no inline script or style, nothing from another origin), `nosniff`, no referrer and no framing.

pub mod session;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use offpay_ledger::Timestamp;
use offpay_operator::{Effects, Loaded};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use self::session::{Checked, ConsoleSession, LoginFailures};
use crate::AppState;
use crate::auth::{Denial, Role, authenticate, check_user_name, console_cookie, token_hash};
use crate::error::ApiError;
use crate::routes::RouteTable;

/// The policy on every console answer: scripts, styles and connections to this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Longest login request body.
pub const LOGIN_BYTES_MAX: usize = 4 << 10;
/// Attempts to record a failed login when another process counts one at the same moment.
const FAILURE_WRITE_ATTEMPTS_MAX: usize = 4;

/// One embedded file of the front end.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The front end, served under `/console/NAME` (`index.html` also at `/console/`).
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../console/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../console/style.css"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../console/api.js"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../console/app.js"),
    },
    Asset {
        name: "format.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../console/format.js"),
    },
    Asset {
        name: "pages.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../console/pages.js"),
    },
    Asset {
        name: "chart.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../console/chart.js"),
    },
];

/// The names of the embedded files (for tests that read them).
pub fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|asset| asset.name).collect()
}

/// The console's routes; `table` is the operator route table (the session answer lists what
/// the user's role may call, so the pages hide what the server would refuse).
pub fn routes(table: Arc<RouteTable>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(redirect_to_console))
        .route("/console/", get(index))
        .route("/console/login", post(login))
        .route("/console/logout", post(logout))
        .route("/console/session", get(current_session))
        .route("/console/{name}", get(asset))
        .layer(Extension(table))
}

/// The security headers of every console answer, and `Cache-Control: no-store`.
pub fn secure_headers(headers: &mut HeaderMap) {
    policy_headers(headers);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn policy_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn secured(mut response: Response) -> Response {
    secure_headers(response.headers_mut());
    response
}

async fn redirect_to_console() -> Response {
    let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/console/"));
    secured(response)
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

/// An embedded file with its content type. The files have no version in their names, so a
/// browser must revalidate each time (`no-cache`) and gets `304` while the file is the same.
fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return secured(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_route",
                format!("nothing at /console/{name}"),
            )
            .into_response(),
        );
    };
    let etag = format!(
        "\"{}\"",
        &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(asset.bytes))[..32]
    );
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, Body::from(asset.bytes)).into_response()
    };
    let headers = response.headers_mut();
    policy_headers(headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// Body of `POST /console/login` (JSON or a form).
#[derive(Deserialize)]
pub struct LoginRequest {
    user: String,
    token: String,
}

impl Drop for LoginRequest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The cookie that carries session `id` (empty and expired to clear it).
fn session_cookie(state: &AppState, headers: &HeaderMap, id: &str, max_age_s: u64) -> HeaderValue {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("https"));
    let secure = if state.config.tls.is_some() || forwarded_https {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}",
        session::COOKIE
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A login from another site (a form posted cross-origin) is refused: it would log the
/// operator's browser into someone else's session.
fn cross_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|site| site == "cross-site")
    {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    match headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
    {
        None => false,
        Some("null") => true,
        Some(origin) => Some(origin.split("://").nth(1).unwrap_or(origin)) != host,
    }
}

fn login_context(
    state: &AppState,
    remote: &str,
    user: Option<String>,
    role: Option<Role>,
    path: &str,
) -> crate::audit::OperatorContext {
    let mut bytes = [0u8; 8];
    let request_id = match state.entropy.fill(&mut bytes) {
        Ok(()) => hex::encode(bytes),
        Err(_) => "-".to_owned(),
    };
    crate::audit::OperatorContext::new(crate::audit::ContextParts {
        chain: state.audit.clone(),
        request: user
            .as_ref()
            .map_or(Value::Null, |user| json!({ "user": user })),
        user,
        role,
        remote: format!("{remote} via console"),
        request_id,
        action: format!("POST {path}"),
        path: path.to_owned(),
        idempotency_key: None,
        approval: None,
        credential: None,
    })
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

/// Reads the failures under `key`.
async fn failures(state: &AppState, key: String) -> Result<Loaded<LoginFailures>, ApiError> {
    Ok(state
        .ledger
        .read(move |store| Loaded::read(store, &key).map_err(crate::ledger::record_store_error))
        .await?)
}

/// Counts a failed login against `key` (conditional on the version read, retried when another
/// process counted one meanwhile).
async fn count_failure(state: &AppState, key: &str, now: Timestamp) -> Result<(), ApiError> {
    for _ in 0..FAILURE_WRITE_ATTEMPTS_MAX {
        let loaded = failures(state, key.to_owned()).await?;
        let next = loaded.value.clone().unwrap_or_default().with_failure(now);
        let write = loaded
            .write(&next)
            .map_err(|error| internal(error.to_string()))?;
        let results = state
            .ledger
            .commit(
                vec![offpay_ledger::Batch {
                    operations: vec![write],
                }],
                now,
            )
            .await?;
        if results.iter().all(Result::is_ok) {
            return Ok(());
        }
    }
    Err(ApiError::busy(
        "the login failure count kept changing; retry later",
    ))
}

async fn parse_login(request: Request) -> Result<(LoginRequest, bool), ApiError> {
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, LOGIN_BYTES_MAX)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                format!("a login holds at most {LOGIN_BYTES_MAX} bytes"),
            )
        })?;
    let request = Request::from_parts(parts, Body::from(bytes));
    if form {
        let axum::Form(login) = axum::Form::<LoginRequest>::from_request(request, &())
            .await
            .map_err(|_| {
                ApiError::bad_request("malformed_request", "a login form has user and token")
            })?;
        Ok((login, true))
    } else {
        let Json(login) = Json::<LoginRequest>::from_request(request, &())
            .await
            .map_err(|_| {
                ApiError::bad_request(
                    "malformed_request",
                    "a login is JSON {\"user\": NAME, \"token\": TOKEN} (or a form with user and token)",
                )
            })?;
        Ok((login, false))
    }
}

/// `POST /console/login` with `{"user", "token"}` (JSON or a form): checks the token as the
/// bearer path does and opens a session (cookie `offpay_console`). At most [`session::FAILURES_MAX`]
/// failures a minute per user name and per client address, then `429` with `Retry-After`.
/// Every success and failure is in the audit log.
pub async fn login(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let remote = crate::auth::remote_address(&request);
    let headers = request.headers().clone();
    secured(
        match login_inner(&state, &remote, &headers, request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        },
    )
}

async fn login_inner(
    state: &Arc<AppState>,
    remote: &str,
    headers: &HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    if cross_site(headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_login",
            "a console login must come from the console's own page",
        ));
    }
    let (login, form) = parse_login(request).await?;
    let now = state.now();
    let named = check_user_name(&login.user)
        .ok()
        .map(|()| login.user.clone());
    let user_key = session::user_failures_key(&login.user);
    let address_key = session::address_failures_key(remote);
    let limited = [
        failures(state, user_key.clone()).await?,
        failures(state, address_key.clone()).await?,
    ]
    .iter()
    .filter_map(|loaded| loaded.value.as_ref()?.retry_at_ms(now))
    .max();
    if let Some(retry_at_ms) = limited {
        let context = login_context(state, remote, named, None, "/console/login");
        crate::audit::record_soon(
            &state.ledger,
            context,
            now,
            "denied too_many_login_failures".into(),
        )
        .await;
        let seconds = retry_at_ms.saturating_sub(now.0).div_ceil(1000).max(1);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_login_failures",
            format!(
                "too many failed logins for this user or from this address; try again in {seconds} seconds"
            ),
        )
        .with_retry_after(u32::try_from(seconds).unwrap_or(u32::MAX)));
    }
    let hash = token_hash(&login.token);
    let name_key = named.as_deref().map(crate::auth::user_key);
    let (checked, user_exists) = state
        .ledger
        .read(move |store| {
            let exists = match &name_key {
                Some(key) => store.record(crate::auth::NAMESPACE, key)?.is_some(),
                None => false,
            };
            let checked =
                authenticate(store, &hash, now).map_err(crate::ledger::record_store_error)?;
            Ok((checked, exists))
        })
        .await?;
    let caller = match checked {
        Ok(caller) if caller.user == login.user => caller,
        other => {
            // Names that are no user's are counted by address only: a flood of made-up names
            // must not leave a record per name.
            if user_exists {
                count_failure(state, &user_key, now).await?;
            }
            count_failure(state, &address_key, now).await?;
            let why = match other {
                Err(Denial::TokenRevoked { user }) | Err(Denial::TokenExpired { user })
                    if user == login.user =>
                {
                    "denied login_failed (token revoked or expired)"
                }
                _ => "denied login_failed",
            };
            let context = login_context(state, remote, named, None, "/console/login");
            crate::audit::record_soon(&state.ledger, context, now, why.into()).await;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "login_failed",
                "the user name or token is wrong (or the token was revoked or has expired)",
            ));
        }
    };
    let id = crate::keyfile::random(state.entropy.as_ref(), session::SESSION_ID_BYTES)
        .map_err(|error| internal(format!("no randomness for a session: {error}")))?;
    let id = Zeroizing::new(hex::encode(&*id));
    let record = ConsoleSession {
        version: <ConsoleSession as offpay_operator::StoredRecord>::FORMAT_VERSION,
        user: caller.user.clone(),
        token_sha256: token_hash(&login.token),
        created_at_ms: now.0,
        last_seen_ms: now.0,
    };
    let new_session = Loaded::<ConsoleSession> {
        key: session::session_key(&id),
        version: 0,
        value: None,
    };
    let mut effects = Effects::new();
    effects.write(
        new_session
            .write(&record)
            .map_err(|error| internal(error.to_string()))?,
    );
    let cleared = failures(state, user_key.clone()).await?;
    if cleared.value.is_some() {
        effects.write(cleared.delete());
    }
    let sweep = state
        .ledger
        .read(move |store| session::sweep(store, now).map_err(crate::ledger::record_store_error))
        .await?;
    effects.write_all(sweep.into_iter().filter(|write| {
        !matches!(write, offpay_ledger::Operation::PutRecord(record) if record.key == user_key)
    }));
    let context = login_context(
        state,
        remote,
        Some(caller.user.clone()),
        Some(caller.role),
        "/console/login",
    );
    match context
        .scope(crate::runner::commit(&state.ledger, effects, now))
        .await
    {
        Ok(offpay_operator::Attempt::Done(_)) => {}
        Ok(offpay_operator::Attempt::Conflict) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "busy",
                "sessions changed meanwhile; log in again",
            ));
        }
        Err(error) => return Err(crate::runner::api_error(error)),
    }
    let cookie = session_cookie(state, headers, &id, session::ABSOLUTE_MS / 1000);
    let mut response = if form {
        let mut response = StatusCode::SEE_OTHER.into_response();
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/console/"));
        response
    } else {
        Json(json!({
            "user": caller.user,
            "role": caller.role,
            "csrf_token": session::csrf_token(&id),
            "expires_at_ms": record.expires_at_ms(),
            "idle_minutes": session::IDLE_MS / 60_000,
            "absolute_hours": session::ABSOLUTE_MS / 3_600_000,
        }))
        .into_response()
    };
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `POST /console/logout` (with the session's `X-CSRF-Token`): deletes the session and clears
/// the cookie. Without a live session it only clears the cookie.
pub async fn logout(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let remote = crate::auth::remote_address(&request);
    let headers = request.headers().clone();
    let result = logout_inner(&state, &remote, &headers).await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    if response.status().is_success() {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, session_cookie(&state, &headers, "", 0));
    }
    secured(response)
}

async fn logout_inner(
    state: &Arc<AppState>,
    remote: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Some(id) = console_cookie(headers) else {
        return Ok(Json(json!({ "logged_out": false })).into_response());
    };
    let now = state.now();
    let checked = check(state, &id, now).await?;
    let checked = match checked {
        Ok(checked) => checked,
        Err(_) => return Ok(Json(json!({ "logged_out": false })).into_response()),
    };
    let given = headers
        .get(session::CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !session::csrf_matches(&id, given) {
        return Err(Denial::CsrfMissing {
            caller: checked.caller,
        }
        .error());
    }
    let mut effects = Effects::new();
    effects.write(checked.session.delete());
    let context = login_context(
        state,
        remote,
        Some(checked.caller.user.clone()),
        Some(checked.caller.role),
        "/console/logout",
    );
    match context
        .scope(crate::runner::commit(&state.ledger, effects, now))
        .await
    {
        // A conflict: a request of the session moved its last-seen time; it is gone anyway
        // once deleted, so try once more.
        Ok(offpay_operator::Attempt::Conflict) => {
            let again = check(state, &id, now).await?;
            if let Ok(again) = again {
                let mut effects = Effects::new();
                effects.write(again.session.delete());
                crate::runner::commit(&state.ledger, effects, now)
                    .await
                    .map_err(crate::runner::api_error)?;
            }
        }
        Ok(offpay_operator::Attempt::Done(_)) => {}
        Err(error) => return Err(crate::runner::api_error(error)),
    }
    Ok(Json(json!({ "logged_out": true, "user": checked.caller.user })).into_response())
}

async fn check(
    state: &AppState,
    id: &str,
    now: Timestamp,
) -> Result<Result<Checked, Denial>, ApiError> {
    let lookup = Zeroizing::new(id.to_owned());
    Ok(state
        .ledger
        .read(move |store| {
            session::authenticate(store, &lookup, now).map_err(crate::ledger::record_store_error)
        })
        .await?)
}

/// `GET /console/session`: who the session is, its CSRF token (for a page loaded again), when it
/// ends, and the routes the user's role may call (`[{method, path}]`, paths under `/api/v1`).
pub async fn current_session(
    State(state): State<Arc<AppState>>,
    Extension(table): Extension<Arc<RouteTable>>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let Some(id) = console_cookie(&headers) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "not_logged_in",
                "no console session; log in",
            ));
        };
        let now = state.now();
        let checked = match check(&state, &id, now).await? {
            Ok(checked) => checked,
            Err(denial) => return Err(denial.error()),
        };
        if let Some(write) = session::touch(&checked.session, now) {
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
        let role = checked.caller.role;
        let allowed: Vec<Value> = table
            .specs()
            .iter()
            .filter(|spec| spec.allows(role))
            .map(|spec| json!({ "method": spec.method.as_str(), "path": spec.path }))
            .collect();
        let expires_at_ms = checked
            .session
            .value
            .as_ref()
            .map(|record| {
                ConsoleSession {
                    last_seen_ms: now.0,
                    ..record.clone()
                }
                .expires_at_ms()
            })
            .unwrap_or(now.0);
        Ok(Json(json!({
            "user": checked.caller.user,
            "role": role,
            "csrf_token": session::csrf_token(&id),
            "expires_at_ms": expires_at_ms,
            "reauth_routes": crate::auth::REAUTH_ROUTES,
            "allowed": allowed,
        })))
    }
    .await;
    secured(match answer {
        Ok(json) => json.into_response(),
        Err(error) => error.into_response(),
    })
}
