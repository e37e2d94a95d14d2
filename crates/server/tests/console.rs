//! The operator console's server side: login and its cookie, the security headers, CSRF, session
//! expiry on a manual clock, logout, a revoked or rotated user's session, the login rate limit,
//! re-authentication to decide an approval, and that every call the console's JavaScript makes
//! is a route of the operator table that answers a cookie session exactly as it answers the
//! same user's bearer token.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use offpay_ledger::Timestamp;
use offpay_operator::{ManualClock, SeededEntropy};
use offpay_server::config::{Overrides, ServerConfig};
use offpay_server::console::CONTENT_SECURITY_POLICY;
use offpay_server::console::session::{ABSOLUTE_MS, FAILURE_WINDOW_MS, FAILURES_MAX, IDLE_MS};
use offpay_server::{AppState, Inputs, Server, router};
use offpay_test_support::Backend;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The console's API module: the one place its JavaScript names server routes.
const API_JS: &str = include_str!("../console/api.js");
/// The other modules (they must not talk to the server themselves).
const OTHER_JS: [(&str, &str); 4] = [
    ("app.js", include_str!("../console/app.js")),
    ("pages.js", include_str!("../console/pages.js")),
    ("format.js", include_str!("../console/format.js")),
    ("chart.js", include_str!("../console/chart.js")),
];
const START_MS: u64 = 1_800_000_000_000;

struct Node {
    state: Arc<AppState>,
    clock: Arc<ManualClock>,
    admin: String,
    _directory: tempfile::TempDir,
    _backend: Backend,
}

/// How a test request proves who it is.
#[derive(Clone, Debug, Default)]
struct Auth {
    bearer: Option<String>,
    cookie: Option<String>,
    csrf: Option<String>,
    reauth: Option<String>,
}

impl Auth {
    fn bearer(token: &str) -> Auth {
        Auth {
            bearer: Some(token.to_owned()),
            ..Auth::default()
        }
    }
}

/// A logged-in console session as a browser holds it.
#[derive(Clone, Debug)]
struct Session {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

impl Session {
    /// The cookie and the CSRF token, as the console's JavaScript sends them.
    fn auth(&self) -> Auth {
        Auth {
            cookie: Some(self.cookie.clone()),
            csrf: Some(self.csrf.clone()),
            ..Auth::default()
        }
    }

    /// The cookie alone (a forged cross-site request carries it, not the token).
    fn cookie_only(&self) -> Auth {
        Auth {
            cookie: Some(self.cookie.clone()),
            ..Auth::default()
        }
    }
}

async fn start(backend: Backend) -> Node {
    let directory = tempfile::tempdir().unwrap();
    let config = ServerConfig::resolve(
        Overrides {
            data_dir: Some(directory.path().to_owned()),
            listen: Some("127.0.0.1:0".into()),
            database_url: backend.database_url().map(str::to_owned),
            approval_above: Some("1000.00".into()),
            ..Overrides::default()
        },
        &|_| None,
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(START_MS)));
    let inputs = Inputs {
        clock: clock.clone(),
        entropy: Arc::new(SeededEntropy::from_seed(23)),
    };
    let server = Server::start_with(config.clone(), inputs)
        .await
        .expect("the server starts");
    let admin = std::fs::read_to_string(config.token_path())
        .unwrap()
        .trim()
        .to_owned();
    Node {
        state: server.state(),
        clock,
        admin,
        _directory: directory,
        _backend: backend,
    }
}

impl Node {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        auth: &Auth,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = &auth.bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(cookie) = &auth.cookie {
            request = request.header("cookie", format!("other=1; offpay_console={cookie}"));
        }
        if let Some(csrf) = &auth.csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(token) = &auth.reauth {
            request = request.header("x-reauth-token", token);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, headers, value)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        auth: &Auth,
    ) -> (StatusCode, Value) {
        let (status, _, value) = self.send(method, path, body, auth).await;
        (status, value)
    }

    async fn add_user(&self, name: &str, role: &str) -> String {
        let (status, answer) = self
            .call(
                "POST",
                "/api/v1/users",
                Some(json!({ "name": name, "role": role })),
                &Auth::bearer(&self.admin),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["token"].as_str().unwrap().to_owned()
    }

    async fn try_login(&self, user: &str, token: &str) -> (StatusCode, HeaderMap, Value) {
        self.send(
            "POST",
            "/console/login",
            Some(json!({ "user": user, "token": token })),
            &Auth::default(),
        )
        .await
    }

    async fn login(&self, user: &str, token: &str) -> Session {
        let (status, headers, answer) = self.try_login(user, token).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let set_cookie = headers
            .get("set-cookie")
            .expect("a session cookie")
            .to_str()
            .unwrap()
            .to_owned();
        let cookie = set_cookie
            .strip_prefix("offpay_console=")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        Session {
            cookie,
            csrf: answer["csrf_token"].as_str().unwrap().to_owned(),
            set_cookie,
        }
    }

    fn advance(&self, ms: u64) {
        let now = self.state.now();
        self.clock.set(Timestamp(now.0 + ms));
    }

    async fn audit(&self) -> Vec<Value> {
        let (status, answer) = self
            .call(
                "GET",
                "/api/v1/audit?limit=500",
                None,
                &Auth::bearer(&self.admin),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["entries"]
            .as_array()
            .or_else(|| answer["items"].as_array())
            .cloned()
            .unwrap_or_default()
    }
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

async fn login_sets_a_strict_session_cookie_and_every_answer_a_strict_policy(backend: Backend) {
    let node = start(backend).await;
    let session = node.login("admin", &node.admin).await;
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(session.set_cookie.contains(flag), "{}", session.set_cookie);
    }
    assert!(
        !session.set_cookie.contains("Secure"),
        "plain HTTP: a Secure cookie would never come back: {}",
        session.set_cookie
    );
    assert_eq!(session.cookie.len(), 64, "32 random bytes in hex");
    assert!(
        !session.set_cookie.contains(&node.admin),
        "the token is never the cookie"
    );

    // The page and its modules: right types, the policy, no caching without revalidation.
    for (path, content_type) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/api.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
    ] {
        let (status, headers, _) = node.send("GET", path, None, &Auth::default()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(
            headers["content-security-policy"], CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        let etag = headers["etag"].to_str().unwrap().to_owned();
        let request = Request::builder()
            .uri(path)
            .header("if-none-match", &etag)
            .body(Body::empty())
            .unwrap();
        let response = router(node.state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    let (status, headers, _) = node.send("GET", "/console", None, &Auth::default()).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers["location"], "/console/");
    // No inline script or style anywhere in the page (the policy would block it).
    let (_, _, page) = node.send("GET", "/console/", None, &Auth::default()).await;
    let page = page.as_str().unwrap().to_owned();
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "{page}"
    );
    assert!(!page.contains("<style"), "{page}");

    // The session answers who it is; the API answers it with the same headers and no-store.
    let (status, headers, who) = node
        .send("GET", "/console/session", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!(who["user"], "admin");
    assert_eq!(who["role"], "admin");
    assert_eq!(who["csrf_token"], session.csrf.as_str());
    assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
    let (status, headers, totals) = node
        .send("GET", "/api/v1/totals", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::OK, "{totals}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let (_, bearer_headers, _) = node
        .send("GET", "/api/v1/totals", None, &Auth::bearer(&node.admin))
        .await;
    assert!(
        bearer_headers.get("content-security-policy").is_none(),
        "bearer answers are unchanged"
    );

    // The login is in the audit log, marked as the console's; so is a console API call.
    let (status, _) = node
        .call(
            "POST",
            "/api/v1/users",
            Some(json!({ "name": "cora", "role": "auditor" })),
            &session.auth(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let entries = node.audit().await;
    let login = entries
        .iter()
        .find(|entry| entry["action"] == "POST /console/login")
        .unwrap_or_else(|| panic!("no login entry: {entries:?}"));
    assert_eq!(login["user"], "admin");
    assert!(
        login["remote"].as_str().unwrap().ends_with("via console"),
        "{login}"
    );
    assert!(
        !login.to_string().contains(&node.admin),
        "the token is not in the log"
    );
    let added = entries
        .iter()
        .find(|entry| entry["action"] == "POST /api/v1/users")
        .unwrap();
    assert_eq!(added["user"], "admin");
    assert!(added["remote"].as_str().unwrap().ends_with("via console"));
    let (status, verified) = node
        .call(
            "GET",
            "/api/v1/audit/verify",
            None,
            &Auth::bearer(&node.admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    assert_eq!(verified["ok"], true, "{verified}");
}

async fn a_change_without_the_sessions_csrf_token_is_refused_and_changes_nothing(backend: Backend) {
    let node = start(backend).await;
    let session = node.login("admin", &node.admin).await;
    let body = json!({ "name": "mallory", "role": "admin" });
    // A forged request carries the cookie but cannot know the token.
    let (status, answer) = node
        .call(
            "POST",
            "/api/v1/users",
            Some(body.clone()),
            &session.cookie_only(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(code(&answer), "csrf_token_invalid");
    let wrong = Auth {
        csrf: Some("0".repeat(64)),
        ..session.cookie_only()
    };
    let (status, answer) = node
        .call("POST", "/api/v1/users", Some(body.clone()), &wrong)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(code(&answer), "csrf_token_invalid");
    // The cookie's own value is not the token either.
    let cookie_as_token = Auth {
        csrf: Some(session.cookie.clone()),
        ..session.cookie_only()
    };
    let (status, _) = node
        .call(
            "POST",
            "/api/v1/users",
            Some(body.clone()),
            &cookie_as_token,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, users) = node
        .call("GET", "/api/v1/users", None, &session.cookie_only())
        .await;
    assert!(
        !users.to_string().contains("mallory"),
        "nothing changed: {users}"
    );
    let entries = node.audit().await;
    assert!(
        entries
            .iter()
            .any(|entry| entry["outcome"] == "denied csrf_token_invalid"),
        "the refusal is audited"
    );
    // Logging out needs the token too.
    let (status, answer) = node
        .call("POST", "/console/logout", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    // With it: done. A bearer call needs none.
    let (status, answer) = node
        .call("POST", "/api/v1/users", Some(body), &session.auth())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = node
        .call(
            "POST",
            "/api/v1/users",
            Some(json!({ "name": "bob", "role": "support" })),
            &Auth::bearer(&node.admin),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    // A login posted from another site is refused.
    let request = Request::builder()
        .method("POST")
        .uri("/console/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .header("host", "127.0.0.1:8080")
        .body(Body::from(format!("user=admin&token={}", node.admin)))
        .unwrap();
    let response = router(node.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("set-cookie").is_none());
    // The same form from the console's own page logs in.
    let request = Request::builder()
        .method("POST")
        .uri("/console/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://127.0.0.1:8080")
        .header("host", "127.0.0.1:8080")
        .body(Body::from(format!("user=admin&token={}", node.admin)))
        .unwrap();
    let response = router(node.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(response.headers().get("set-cookie").is_some());
}

async fn a_session_ends_after_30_idle_minutes_or_8_hours_and_at_logout(backend: Backend) {
    let node = start(backend).await;
    let minute = 60_000;
    // Idle: used at 29 minutes, it lives; 30 minutes after that last use, it is over.
    let session = node.login("admin", &node.admin).await;
    node.advance(IDLE_MS - minute);
    let (status, answer) = node
        .call("GET", "/api/v1/totals", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    node.advance(IDLE_MS - minute);
    let (status, answer) = node
        .call("GET", "/api/v1/totals", None, &session.cookie_only())
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a use moved the idle limit: {answer}"
    );
    node.advance(IDLE_MS);
    let (status, answer) = node
        .call("GET", "/api/v1/totals", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(code(&answer), "session_expired");
    let (status, _) = node
        .call("GET", "/console/session", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Absolute: busy every 20 minutes, still over 8 hours after login.
    let session = node.login("admin", &node.admin).await;
    let mut used = 0;
    while used + 20 * minute < ABSOLUTE_MS {
        node.advance(20 * minute);
        used += 20 * minute;
        let (status, answer) = node
            .call("GET", "/api/v1/totals", None, &session.cookie_only())
            .await;
        assert_eq!(status, StatusCode::OK, "at {used} ms: {answer}");
    }
    node.advance(ABSOLUTE_MS - used);
    let (status, answer) = node
        .call("GET", "/api/v1/totals", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(code(&answer), "session_expired");

    // Logout: the session is gone from the ledger, the cookie is cleared.
    let session = node.login("admin", &node.admin).await;
    let (status, headers, answer) = node
        .send("POST", "/console/logout", None, &session.auth())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["logged_out"], true);
    let cleared = headers["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("offpay_console=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let (status, answer) = node
        .call("GET", "/api/v1/totals", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(code(&answer), "session_invalid");
    let entries = node.audit().await;
    assert!(
        entries
            .iter()
            .any(|entry| entry["action"] == "POST /console/logout")
    );
}

async fn a_revoked_or_rotated_users_session_is_refused_at_once(backend: Backend) {
    let node = start(backend).await;
    let sam = node.add_user("sam", "support").await;
    let session = node.login("sam", &sam).await;
    let (status, _) = node
        .call("GET", "/api/v1/fraud", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = node
        .call(
            "POST",
            "/api/v1/users/sam/rotate",
            None,
            &Auth::bearer(&node.admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let new_token = answer["token"].as_str().unwrap().to_owned();
    let (status, answer) = node
        .call("GET", "/api/v1/fraud", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(code(&answer), "token_revoked");
    // The old token cannot log in again; the new one can, until the user is revoked.
    let (status, _, _) = node.try_login("sam", &sam).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let session = node.login("sam", &new_token).await;
    let (status, _) = node
        .call(
            "POST",
            "/api/v1/users/sam/revoke",
            None,
            &Auth::bearer(&node.admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = node
        .call("GET", "/api/v1/fraud", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(code(&answer), "token_revoked");
    let (status, _) = node
        .call("GET", "/console/session", None, &session.cookie_only())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Another user's token under this name does not log in as this name.
    let (status, _, _) = node.try_login("sam", &node.admin).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn failed_logins_are_limited_per_user_and_per_address_and_audited(backend: Backend) {
    let node = start(backend).await;
    let fin = node.add_user("fin", "finance").await;
    for attempt in 0..FAILURES_MAX {
        let (status, headers, answer) = node.try_login("fin", &"f".repeat(64)).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}: {answer}"
        );
        assert_eq!(code(&answer), "login_failed");
        assert!(headers.get("set-cookie").is_none());
        node.advance(1_000);
    }
    // Limited now, even with the right token.
    let (status, headers, answer) = node.try_login("fin", &fin).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(code(&answer), "too_many_login_failures");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1..=FAILURE_WINDOW_MS / 1000).contains(&retry),
        "retry after {retry} s"
    );
    // The same address is limited for another name too.
    let (status, _, _) = node.try_login("admin", &node.admin).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Once the window has passed, the right token logs in.
    node.advance(FAILURE_WINDOW_MS);
    let session = node.login("fin", &fin).await;
    assert_eq!(session.cookie.len(), 64);
    let entries = node.audit().await;
    let failed = entries
        .iter()
        .filter(|entry| {
            entry["action"] == "POST /console/login"
                && entry["outcome"]
                    .as_str()
                    .unwrap()
                    .starts_with("denied login_failed")
        })
        .count();
    assert_eq!(failed, FAILURES_MAX, "every failure is audited");
    assert!(
        entries
            .iter()
            .any(|entry| entry["outcome"] == "denied too_many_login_failures")
    );
    assert!(
        entries
            .iter()
            .any(|entry| entry["action"] == "POST /console/login"
                && entry["user"] == "fin"
                && !entry["outcome"].as_str().unwrap().starts_with("denied")),
        "the success is audited"
    );
}

async fn deciding_an_approval_from_the_console_needs_the_token_again(backend: Backend) {
    let node = start(backend).await;
    let fatuma = node.add_user("fatuma", "finance").await;
    let faith = node.add_user("faith", "finance").await;
    let requester = Auth::bearer(&fatuma);
    for (id, kind) in [("operator:float", "operator_float"), ("alice", "customer")] {
        let (status, answer) = node
            .call(
                "POST",
                "/api/v1/accounts",
                Some(json!({ "id": id, "kind": kind })),
                &requester,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let held = |id: &str| {
        json!({ "transfers": [{ "id": id, "debit_account": "operator:float",
            "credit_account": "alice", "amount": "1500.00" }] })
    };
    let (status, answer) = node
        .call("POST", "/api/v1/transfers", Some(held("t1")), &requester)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let approval = answer["approval"]["id"].as_str().unwrap().to_owned();
    let approve = format!("/api/v1/approvals/{approval}/approve");
    let session = node.login("faith", &faith).await;
    // The session and its CSRF token are not enough.
    let (status, answer) = node
        .call("POST", &approve, Some(json!({})), &session.auth())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(code(&answer), "reauthentication_required");
    // Another user's token is not this user's.
    let (status, answer) = node
        .call(
            "POST",
            &approve,
            Some(json!({})),
            &Auth {
                reauth: Some(fatuma.clone()),
                ..session.auth()
            },
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = node
        .call(
            "GET",
            "/api/v1/accounts/alice",
            None,
            &Auth::bearer(&node.admin),
        )
        .await;
    assert_eq!(answer["balance_minor"], 0, "nothing applied: {status}");
    // With the token again: executed, recorded as the console's.
    let (status, answer) = node
        .call(
            "POST",
            &approve,
            Some(json!({})),
            &Auth {
                reauth: Some(faith.clone()),
                ..session.auth()
            },
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["executed"], true, "{answer}");
    assert_eq!(answer["approval"]["by"], "faith");
    let (_, answer) = node
        .call(
            "GET",
            "/api/v1/accounts/alice",
            None,
            &Auth::bearer(&node.admin),
        )
        .await;
    assert_eq!(answer["balance_minor"], 150_000);
    // Refusing needs it too.
    let (status, answer) = node
        .call("POST", "/api/v1/transfers", Some(held("t2")), &requester)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let refuse = format!(
        "/api/v1/approvals/{}/refuse",
        answer["approval"]["id"].as_str().unwrap()
    );
    let (status, answer) = node
        .call(
            "POST",
            &refuse,
            Some(json!({ "reason": "no" })),
            &session.auth(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(code(&answer), "reauthentication_required");
    let (status, answer) = node
        .call(
            "POST",
            &refuse,
            Some(json!({ "reason": "no" })),
            &Auth {
                reauth: Some(faith.clone()),
                ..session.auth()
            },
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // A bearer call carries the token already.
    let (status, answer) = node
        .call("POST", "/api/v1/transfers", Some(held("t3")), &requester)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let approve = format!(
        "/api/v1/approvals/{}/approve",
        answer["approval"]["id"].as_str().unwrap()
    );
    let (status, answer) = node
        .call("POST", &approve, Some(json!({})), &Auth::bearer(&faith))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let entries = node.audit().await;
    assert!(entries.iter().any(|entry| entry["user"] == "faith"
        && entry["action"] == "POST /api/v1/approvals/{id}/approve"
        && entry["remote"].as_str().unwrap().ends_with("via console")));
}

/// The `{ method: "X", path: "/..." }` entries of the console's API module.
fn console_calls() -> Vec<(String, String)> {
    let mut calls = Vec::new();
    for line in API_JS.lines() {
        let Some(rest) = line.split("method: \"").nth(1) else {
            continue;
        };
        let method = rest.split('"').next().unwrap().to_owned();
        let path = rest
            .split("path: \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("a call without a path: {line}"))
            .to_owned();
        calls.push((method, path));
    }
    calls
}

/// The path with each `{parameter}` filled in.
fn filled(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "x-1"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn every_console_call_is_an_api_route_with_the_same_role_checks_as_the_cli(backend: Backend) {
    let calls = console_calls();
    assert!(
        calls.len() > 20,
        "the API module lists the calls: {calls:?}"
    );
    // Only api.js talks to the server.
    for (name, source) in OTHER_JS {
        for forbidden in [
            "fetch(",
            "XMLHttpRequest",
            "/api/v1",
            "sendBeacon",
            "WebSocket",
        ] {
            assert!(
                !source.contains(forbidden),
                "{name} contains {forbidden:?}: every server call goes through api.js"
            );
        }
    }
    assert_eq!(API_JS.matches("fetch(").count(), 1, "one place sends");
    let table = offpay_server::operator_routes();
    let table = table.table();
    let mut distinct = BTreeSet::new();
    for (method, path) in &calls {
        distinct.insert((method.clone(), path.clone()));
        if let Some(console) = path.strip_prefix("/console/") {
            assert!(
                ["login", "logout", "session"].contains(&console),
                "{method} {path}: the console's own routes are login, logout and session"
            );
            continue;
        }
        let api = path
            .strip_prefix("/api/v1")
            .unwrap_or_else(|| panic!("{method} {path} is not under /api/v1"));
        let method = axum::http::Method::from_bytes(method.as_bytes()).unwrap();
        assert!(
            table.find(&method, api).is_some(),
            "{method} {path}: the console calls a route that is not in the operator table"
        );
    }
    assert_eq!(distinct.len(), calls.len(), "each call listed once");

    // A cookie session is refused exactly where the same user's bearer token is.
    let node = start(backend).await;
    let mut tokens = vec![("admin".to_owned(), node.admin.clone())];
    for role in ["finance", "support", "auditor", "provisioning"] {
        let name = format!("{role}-user");
        tokens.push((name.clone(), node.add_user(&name, role).await));
    }
    let mut compared = 0;
    for (user, token) in &tokens {
        let session = node.login(user, token).await;
        let role = offpay_server::auth::Role::parse(user.trim_end_matches("-user")).unwrap();
        for (method, path) in &calls {
            let Some(api) = path.strip_prefix("/api/v1") else {
                continue;
            };
            let spec = table
                .find(
                    &axum::http::Method::from_bytes(method.as_bytes()).unwrap(),
                    api,
                )
                .unwrap();
            if spec.allows(role) {
                continue;
            }
            let url = filled(path);
            let body = (method != "GET").then(|| json!({}));
            let (bearer_status, bearer) = node
                .call(method, &url, body.clone(), &Auth::bearer(token))
                .await;
            let cookie_auth = Auth {
                reauth: Some(token.clone()),
                ..session.auth()
            };
            let (cookie_status, cookie) = node.call(method, &url, body, &cookie_auth).await;
            assert_eq!(
                bearer_status,
                StatusCode::FORBIDDEN,
                "{method} {path} as {user}"
            );
            assert_eq!(
                (cookie_status, &cookie),
                (bearer_status, &bearer),
                "{method} {path} as {user}: the console gets the CLI's answer"
            );
            assert_eq!(code(&cookie), "forbidden");
            compared += 1;
        }
        // And what the session says the role may call is the table's.
        let (_, who) = node
            .call("GET", "/console/session", None, &session.cookie_only())
            .await;
        let allowed = who["allowed"].as_array().unwrap();
        let expected = table
            .specs()
            .iter()
            .filter(|spec| spec.allows(role))
            .count();
        assert_eq!(allowed.len(), expected, "{user}");
    }
    assert!(compared > 20, "compared {compared} refusals");
}

offpay_test_support::on_every_backend_async!(
    login_sets_a_strict_session_cookie_and_every_answer_a_strict_policy,
    a_change_without_the_sessions_csrf_token_is_refused_and_changes_nothing,
    a_session_ends_after_30_idle_minutes_or_8_hours_and_at_logout,
    a_revoked_or_rotated_users_session_is_refused_at_once,
    failed_logins_are_limited_per_user_and_per_address_and_audited,
    deciding_an_approval_from_the_console_needs_the_token_again,
    every_console_call_is_an_api_route_with_the_same_role_checks_as_the_cli,
);
