//! The operator API end to end through the router: happy paths, and every kind of bad input
//! getting a precise error with nothing applied.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use axum::http::StatusCode;
use offpay_test_support::{Backend, InProcess};
use serde_json::{Value, json};

struct Harness(InProcess);

async fn start(backend: Backend) -> Harness {
    let harness = InProcess::start(backend).await;
    Harness(harness)
}

impl Harness {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        self.0.call(method, path, body, token).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(
            "POST",
            path,
            Some(&body.to_string()),
            Some(&self.0.token.clone()),
        )
        .await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call("GET", path, None, Some(&self.0.token.clone()))
            .await
    }

    async fn balance(&self, account: &str) -> i64 {
        let (status, body) = self.get(&format!("/api/v1/accounts/{account}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["balance_minor"].as_i64().unwrap()
    }

    async fn setup(&self) {
        for (id, kind) in [
            ("float", "operator_float"),
            ("alice", "customer"),
            ("bob", "customer"),
        ] {
            let (status, body) = self
                .post("/api/v1/accounts", json!({ "id": id, "kind": kind }))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let (status, body) = self
            .post(
                "/api/v1/accounts",
                json!({ "id": "ugx", "kind": "customer", "currency": "UGX" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = self
            .post(
                "/api/v1/transfers",
                json!({ "transfers": [{ "id": "fund", "debit_account": "float", "credit_account": "alice", "amount": "1000" }] }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

fn one(id: &str, debit: &str, credit: &str, amount: &str) -> Value {
    json!({ "id": id, "debit_account": debit, "credit_account": credit, "amount": amount })
}

async fn health_answers_without_a_token(harness: Harness) {
    let (status, body) = harness.call("GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["backend"], harness.0.backend().name());
    let (status, body) = harness.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_str()
            .unwrap()
            .contains("offpay_ledger_transfers_committed_total")
    );
}

async fn operator_routes_need_the_right_token(harness: Harness) {
    let (status, body) = harness.call("GET", "/api/v1/totals", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "missing_token");
    let (status, body) = harness
        .call("GET", "/api/v1/totals", None, Some("0123"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_token");
    let (status, body) = harness
        .call(
            "POST",
            "/api/v1/accounts",
            Some(r#"{"id":"x","kind":"customer"}"#),
            Some("wrong"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = harness.get("/api/v1/accounts/x").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the refused create must not have created the account"
    );
}

async fn accounts_transfers_balances_and_history(harness: Harness) {
    harness.setup().await;
    let (status, body) = harness
        .post(
            "/api/v1/transfers",
            json!({ "transfers": [one("t1", "alice", "bob", "450.00")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["outcome"], "transfer_committed");
    assert_eq!(harness.balance("alice").await, 55_000);
    assert_eq!(harness.balance("bob").await, 45_000);
    let (status, body) = harness.get("/api/v1/accounts/alice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["balance"], "550.00");
    let (status, body) = harness.get("/api/v1/accounts/alice/history").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["direction"], "debit");
    assert_eq!(entries[0]["counterparty"], "bob");
    assert_eq!(entries[0]["amount"], "450.00");
    assert_eq!(entries[1]["id"], "fund");
    let (status, body) = harness.get("/api/v1/accounts/alice/history?limit=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cursor = body["next_before"].as_u64().unwrap();
    let (_, body) = harness
        .get(&format!("/api/v1/accounts/alice/history?before={cursor}"))
        .await;
    assert_eq!(body["entries"][0]["id"], "fund");
    assert_eq!(body["next_before"], Value::Null);
    let (status, body) = harness.get("/api/v1/transfers/t1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["amount"], "450.00");
    let (status, body) = harness.get("/api/v1/totals").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["balanced"], true);
    // Creating the same account again is harmless.
    let (status, _) = harness
        .post(
            "/api/v1/accounts",
            json!({ "id": "bob", "kind": "customer" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn pending_transfers_post_and_void_through_the_api(harness: Harness) {
    harness.setup().await;
    let mut pending = one("p", "alice", "bob", "700");
    pending["kind"] = json!("pending");
    let (status, body) = harness
        .post("/api/v1/transfers", json!({ "transfers": [pending] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = harness.get("/api/v1/accounts/alice").await;
    assert_eq!(body["available"], "300.00");
    let mut void = one("p-void", "alice", "bob", "700");
    void["kind"] = json!("void_pending");
    void["pending_id"] = json!("p");
    let (status, body) = harness
        .post("/api/v1/transfers", json!({ "transfers": [void] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(harness.balance("bob").await, 0);
    let mut missing = one("p-post", "alice", "bob", "700");
    missing["kind"] = json!("post_pending");
    let (status, body) = harness
        .post("/api/v1/transfers", json!({ "transfers": [missing] }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "missing_pending_id");
}

/// Every bad input: precise status, code and message; the balances are untouched afterwards.
async fn bad_input_gets_a_precise_error_and_changes_nothing(harness: Harness) {
    harness.setup().await;
    let good = one("good", "alice", "bob", "1");
    let cases: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        (
            "unknown account",
            json!([good, one("x", "alice", "carol", "1")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_account",
            "carol",
        ),
        (
            "currency mismatch",
            json!([good, one("x", "alice", "ugx", "1")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "currency_mismatch",
            "ugx",
        ),
        (
            "too many decimals",
            json!([good, one("x", "alice", "bob", "1.001")]),
            StatusCode::BAD_REQUEST,
            "invalid_amount",
            "too many decimals",
        ),
        (
            "over the maximum",
            json!([good, one("x", "alice", "bob", "10000000000000.01")]),
            StatusCode::BAD_REQUEST,
            "invalid_amount",
            "maximum",
        ),
        (
            "negative amount",
            json!([good, one("x", "alice", "bob", "-5")]),
            StatusCode::BAD_REQUEST,
            "invalid_amount",
            "position 1",
        ),
        (
            "insufficient funds",
            json!([good, one("x", "alice", "bob", "5000")]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "insufficient_funds",
            "alice",
        ),
        (
            "bad id",
            json!([good, one("has space", "alice", "bob", "1")]),
            StatusCode::BAD_REQUEST,
            "invalid_transfer_id",
            "has space",
        ),
        (
            "unknown kind",
            json!([good, { "id": "k", "debit_account": "alice", "credit_account": "bob", "amount": "1", "kind": "maybe" }]),
            StatusCode::BAD_REQUEST,
            "invalid_kind",
            "maybe",
        ),
        (
            "empty batch",
            json!([]),
            StatusCode::BAD_REQUEST,
            "empty_batch",
            "no transfers",
        ),
    ];
    for (name, transfers, status, code, mention) in cases {
        let (got_status, body) = harness
            .post("/api/v1/transfers", json!({ "transfers": transfers }))
            .await;
        assert_eq!(got_status, status, "{name}: {body}");
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(mention),
            "{name}: message {message:?} should mention {mention:?}"
        );
        assert_eq!(
            harness.balance("alice").await,
            100_000,
            "{name}: alice's balance changed"
        );
        assert_eq!(
            harness.balance("bob").await,
            0,
            "{name}: bob's balance changed"
        );
    }
    // Duplicate id with another body: 409, naming the id.
    let (status, _) = harness
        .post(
            "/api/v1/transfers",
            json!({ "transfers": [one("dup", "alice", "bob", "10")] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = harness
        .post(
            "/api/v1/transfers",
            json!({ "transfers": [one("dup", "alice", "bob", "20")] }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "transfer_conflict");
    assert!(body["error"]["message"].as_str().unwrap().contains("dup"));
    assert_eq!(harness.balance("bob").await, 1_000);
    // Malformed JSON and unknown fields.
    let (status, body) = harness
        .call(
            "POST",
            "/api/v1/transfers",
            Some("{\"transfers\": [}"),
            Some(&harness.0.token.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "malformed_request");
    let (status, body) = harness
        .post("/api/v1/transfers", json!({ "transfers": [{ "id": "u", "debit_account": "alice", "credit_account": "bob", "amount": "1", "colour": "red" }] }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{body}"
    );
    // Account creation errors.
    let (status, body) = harness
        .post(
            "/api/v1/accounts",
            json!({ "id": "bob", "kind": "merchant" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = harness
        .post("/api/v1/accounts", json!({ "id": "z", "kind": "wizard" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("customer")
    );
    let (status, body) = harness
        .post(
            "/api/v1/accounts",
            json!({ "id": "z", "kind": "customer", "currency": "XXQ" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_currency");
    let (status, body) = harness.get("/api/v1/accounts/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "unknown_account");
    let (_, totals) = harness.get("/api/v1/totals").await;
    assert_eq!(totals["balanced"], true);
}

/// Each story runs on SQLite, and on a fresh PostgreSQL database when `OFFPAY_TEST_DATABASE_URL`
/// is set.
macro_rules! on_every_backend {
    ($($story:ident),* $(,)?) => {
        mod every_backend {
            $(
                #[tokio::test]
                async fn $story() {
                    for backend in super::Backend::all(stringify!($story)) {
                        super::$story(super::start(backend).await).await;
                    }
                }
            )*
        }
    };
}

on_every_backend!(
    health_answers_without_a_token,
    operator_routes_need_the_right_token,
    accounts_transfers_balances_and_history,
    pending_transfers_post_and_void_through_the_api,
    bad_input_gets_a_precise_error_and_changes_nothing,
);

/// An operator who mistypes the database URL gets a clear error at start-up, never a panic.
#[tokio::test]
async fn an_unreachable_or_refusing_database_is_a_clear_start_error() {
    for (url, expected) in [
        ("postgres://postgres@127.0.0.1:1/offpay", "database error"),
        ("mysql://127.0.0.1/offpay", "neither sqlite"),
    ] {
        let directory = tempfile::tempdir().unwrap();
        let config = offpay_server::config::ServerConfig::resolve(
            offpay_server::config::Overrides {
                data_dir: Some(directory.path().to_owned()),
                listen: Some("127.0.0.1:0".into()),
                database_url: Some(url.into()),
                ..Default::default()
            },
            &|_| None,
        )
        .unwrap();
        let error = offpay_server::Server::start(config).await.unwrap_err();
        assert!(error.to_string().contains(expected), "{url}: {error}");
    }
    if let Some(url) = offpay_test_support::database::postgres_url() {
        // A login the server refuses.
        let refused = url.replacen("postgres://postgres@", "postgres://no_such_role_here@", 1);
        if refused != url {
            let directory = tempfile::tempdir().unwrap();
            let config = offpay_server::config::ServerConfig::resolve(
                offpay_server::config::Overrides {
                    data_dir: Some(directory.path().to_owned()),
                    listen: Some("127.0.0.1:0".into()),
                    database_url: Some(refused),
                    ..Default::default()
                },
                &|_| None,
            )
            .unwrap();
            let error = offpay_server::Server::start(config).await.unwrap_err();
            assert!(error.to_string().contains("database error"), "{error}");
        }
    }
}
