//! Operator users and roles: every route in the table, walked with every role, with no token, a
//! wrong one, a revoked one and an expired one. A route reached by a role it does not list, or
//! refused to a role it lists, fails the walk.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use offpay_ledger::Timestamp;
use offpay_operator::{ManualClock, SeededEntropy};
use offpay_server::Inputs;
use offpay_server::auth::Role;
use offpay_test_support::{Backend, InProcess};
use serde_json::{Value, json};

/// The codes the auth middleware answers with; a handler's own 401/403 uses other codes.
const DENIALS: [&str; 6] = [
    "missing_token",
    "invalid_token",
    "token_revoked",
    "token_expired",
    "forbidden",
    "route_without_role",
];

const DAY_MS: u64 = 86_400_000;

struct Walk {
    server: InProcess,
    clock: Arc<ManualClock>,
    tokens: BTreeMap<Role, String>,
    revoked: String,
    expired: String,
    rotated_away: String,
}

async fn add_user(server: &InProcess, name: &str, role: &str, days: Option<u64>) -> String {
    let mut body = json!({ "name": name, "role": role });
    if let Some(days) = days {
        body["expires_in_days"] = json!(days);
    }
    let (status, answer) = server.post("/api/v1/users", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

async fn start(backend: Backend) -> Walk {
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    let inputs = Inputs {
        clock: clock.clone(),
        entropy: Arc::new(SeededEntropy::from_seed(22)),
    };
    let server = InProcess::start_with(backend, inputs).await;
    let mut tokens = BTreeMap::new();
    tokens.insert(Role::Admin, server.token.clone());
    for role in Role::ALL {
        if role != Role::Admin {
            let token = add_user(&server, &format!("{role}-user"), role.as_str(), None).await;
            tokens.insert(role, token);
        }
    }
    let revoked = add_user(&server, "gone", "finance", None).await;
    let (status, answer) = server.post("/api/v1/users/gone/revoke", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let expired = add_user(&server, "temporary", "finance", Some(1)).await;
    let rotated_away = add_user(&server, "rotating", "support", None).await;
    let (status, answer) = server
        .post("/api/v1/users/rotating/rotate", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_ne!(answer["token"].as_str().unwrap(), rotated_away);
    clock.advance_ms(2 * DAY_MS);
    Walk {
        server,
        clock,
        tokens,
        revoked,
        expired,
        rotated_away,
    }
}

/// A concrete path for a route pattern: each `{parameter}` becomes `x`.
fn concrete(pattern: &str) -> String {
    let mut path = String::from("/api/v1");
    for segment in pattern.split('/').skip(1) {
        path.push('/');
        if segment.starts_with('{') {
            path.push('x');
        } else {
            path.push_str(segment);
        }
    }
    path
}

fn denial_code(body: &Value) -> Option<&str> {
    body.pointer("/error/code")
        .and_then(Value::as_str)
        .filter(|code| DENIALS.contains(code))
}

async fn every_route_refuses_every_role_it_does_not_list(backend: Backend) {
    let walk = start(backend).await;
    let table = offpay_server::operator_routes();
    let specs = table.table().specs().to_vec();
    assert!(specs.len() > 40, "the table holds every operator route");
    let mut reached = 0;
    let mut refused = 0;
    for spec in &specs {
        assert!(
            !spec.roles.is_empty(),
            "{} {} states no role",
            spec.method,
            spec.path
        );
        let path = concrete(spec.path);
        let method = spec.method.as_str();
        let body = (spec.method != axum::http::Method::GET).then_some("{}");
        let what = format!("{method} {path}");
        for (token, code) in [
            (None, "missing_token"),
            (Some("0123456789abcdef"), "invalid_token"),
            (Some(walk.revoked.as_str()), "token_revoked"),
            (Some(walk.rotated_away.as_str()), "token_revoked"),
            (Some(walk.expired.as_str()), "token_expired"),
        ] {
            let (status, answer) = walk.server.call(method, &path, body, token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
            assert_eq!(answer["error"]["code"], code, "{what}: {answer}");
        }
        for role in Role::ALL {
            let token = &walk.tokens[&role];
            let (status, answer) = walk.server.call(method, &path, body, Some(token)).await;
            if spec.allows(role) {
                assert_eq!(
                    denial_code(&answer),
                    None,
                    "{what} lists {role} but turned it away: {status} {answer}"
                );
                assert_ne!(
                    answer.pointer("/error/code").and_then(Value::as_str),
                    Some("no_such_route"),
                    "{what} is in the table but not in the router"
                );
                reached += 1;
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{what} does not list {role} but let it through: {answer}"
                );
                assert_eq!(answer["error"]["code"], "forbidden", "{what}: {answer}");
                let required: Vec<&str> = spec.roles.iter().map(|role| role.as_str()).collect();
                assert_eq!(answer["error"]["required_roles"], json!(required), "{what}");
                refused += 1;
            }
        }
    }
    assert!(
        reached > 0 && refused > 0,
        "{reached} reached, {refused} refused"
    );
    let _ = &walk.clock;
}

async fn users_are_managed_by_admins_and_take_effect_at_once(backend: Backend) {
    let walk = start(backend).await;
    let finance = walk.tokens[&Role::Finance].clone();
    let (status, answer) = walk
        .server
        .call("GET", "/api/v1/totals", None, Some(&finance))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = walk.server.get("/api/v1/users").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let text = answer.to_string();
    assert!(!text.contains(&finance), "the list never shows a token");
    assert!(!text.contains("token_sha256"), "nor its hash");
    let states: BTreeMap<String, String> = answer["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| {
            (
                user["name"].as_str().unwrap().to_owned(),
                user["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(states["admin"], "active");
    assert_eq!(states["gone"], "revoked");
    assert_eq!(states["temporary"], "expired");
    // Revoked now, refused on the next request: nothing is cached.
    let (status, answer) = walk
        .server
        .post("/api/v1/users/finance-user/revoke", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = walk
        .server
        .call("GET", "/api/v1/totals", None, Some(&finance))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"]["code"], "token_revoked");
    // A rotation brings the user back with a new token.
    let (status, answer) = walk
        .server
        .post("/api/v1/users/finance-user/rotate", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let fresh = answer["token"].as_str().unwrap().to_owned();
    let (status, _) = walk
        .server
        .call("GET", "/api/v1/totals", None, Some(&fresh))
        .await;
    assert_eq!(status, StatusCode::OK);
    // Bad input: a duplicate, an unknown role, a bad name; the last admin stays.
    for (body, code) in [
        (
            json!({ "name": "finance-user", "role": "finance" }),
            "user_exists",
        ),
        (json!({ "name": "eve", "role": "root" }), "invalid_role"),
        (
            json!({ "name": "Eve Smith", "role": "support" }),
            "invalid_user_name",
        ),
        (
            json!({ "name": "eve", "role": "support", "expires_in_days": 0 }),
            "invalid_expiry",
        ),
    ] {
        let (status, answer) = walk.server.post("/api/v1/users", body).await;
        assert!(status.is_client_error(), "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }
    let (status, answer) = walk
        .server
        .post("/api/v1/users/admin/revoke", json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "last_admin");
    // The bootstrap token (admin.token) still works.
    let (status, _) = walk.server.get("/api/v1/totals").await;
    assert_eq!(status, StatusCode::OK);
}

/// A manual transfer by `token`: its status and answer.
async fn transfer(server: &InProcess, token: &str, id: &str) -> (StatusCode, Value) {
    let body = json!({ "transfers": [{
        "id": id, "debit_account": "cache-float", "credit_account": "cache-till", "amount": "1.00",
    }]})
    .to_string();
    server
        .call("POST", "/api/v1/transfers", Some(&body), Some(token))
        .await
}

/// Whether the transfer `id` was applied.
async fn applied(server: &InProcess, id: &str) -> bool {
    let (status, _) = server.get(&format!("/api/v1/transfers/{id}")).await;
    status == StatusCode::OK
}

/// A request that changes something is let in on the token its process saw valid before
/// (`CallerCache`), without reading the token again. The cache is never told of a change made
/// since (here: by the same process, which is what another process's change looks like), so each
/// change below must be caught by the check every commit carries, or by the full check of a
/// request that committed nothing.
async fn a_cached_caller_is_checked_again_by_what_it_commits(backend: Backend) {
    let walk = start(backend).await;
    let server = &walk.server;
    for (id, kind) in [
        ("cache-float", "operator_float"),
        ("cache-till", "operator_float"),
    ] {
        let (status, answer) = server
            .post("/api/v1/accounts", json!({ "id": id, "kind": kind }))
            .await;
        assert!(status.is_success(), "{answer}");
    }
    let paying = add_user(server, "paying", "finance", None).await;
    let demoted = add_user(server, "demoted", "finance", None).await;
    // Two requests each: the first checks the token in full and keeps it, the second is let in
    // on what was kept.
    for (token, prefix) in [(&paying, "p"), (&demoted, "d")] {
        for round in 0..2 {
            let id = format!("{prefix}-{round}");
            let (status, answer) = transfer(server, token, &id).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert!(applied(server, &id).await);
        }
    }
    assert!(server.state.callers.len() >= 2, "both tokens are kept");
    // Revoked: a transfer on the kept token is refused as revoked, and applies nothing.
    let (status, answer) = server.post("/api/v1/users/paying/revoke", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = transfer(server, &paying, "p-after-revoke").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "token_revoked", "{answer}");
    assert!(!applied(server, "p-after-revoke").await);
    // A request that commits nothing (its body is refused) gets the denial, not its answer.
    let (status, answer) = server
        .call(
            "POST",
            "/api/v1/transfers",
            Some(r#"{"transfers":[]}"#),
            Some(&paying),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "token_revoked", "{answer}");
    // Rotated: the old token is refused the same way, the new one pays.
    let (status, answer) = server.post("/api/v1/users/demoted/rotate", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let fresh = answer["token"].as_str().unwrap().to_owned();
    let (status, answer) = transfer(server, &demoted, "d-old-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "token_revoked", "{answer}");
    assert!(!applied(server, "d-old-token").await);
    let (status, answer) = transfer(server, &fresh, "d-new-token").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Expired while kept: checked in full, refused.
    let short = add_user(server, "short", "finance", Some(1)).await;
    let (status, answer) = transfer(server, &short, "s-0").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    walk.clock.advance_ms(DAY_MS);
    let (status, answer) = transfer(server, &short, "s-expired").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "token_expired", "{answer}");
    assert!(!applied(server, "s-expired").await);
    // The ledger still balances, and the audit log shows the refusals.
    let (status, answer) = server.get("/api/v1/totals").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = server.get("/api/v1/audit/verify").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ok"], true, "{answer}");
}

offpay_test_support::on_every_backend_async!(
    every_route_refuses_every_role_it_does_not_list,
    users_are_managed_by_admins_and_take_effect_at_once,
    a_cached_caller_is_checked_again_by_what_it_commits,
);
