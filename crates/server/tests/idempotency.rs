//! Idempotency keys: a float sent twice with the same key (its first answer lost) posts once,
//! the ledger balance says so; the same key with another body is refused and changes nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use offpay_test_support::{Backend, InProcess};
use serde_json::{Value, json};
use tower::ServiceExt;

const PHONE: &str = "+254700000001";

/// `POST path` as the admin with an `Idempotency-Key`; the status, whether the answer says it
/// is a replay, and the body.
async fn post_keyed(
    server: &InProcess,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> (StatusCode, bool, Value) {
    let mut request = Request::builder()
        .method("POST")
        .uri(path)
        .header("authorization", format!("Bearer {}", server.token))
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let request = request.body(Body::from(body.to_string())).unwrap();
    let response = offpay_server::router(server.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, replayed, serde_json::from_slice(&bytes).unwrap())
}

async fn float_balance_minor(server: &InProcess) -> i64 {
    let (status, answer) = server.get("/api/v1/accounts/operator:float").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["balance_minor"].as_i64().unwrap()
}

async fn a_float_retried_with_its_key_posts_once(backend: Backend) {
    let server = InProcess::start(backend).await;
    let (status, answer) = server
        .post("/api/v1/purse/purses", json!({ "phone": PHONE }))
        .await;
    assert!(status.is_success(), "{answer}");
    let path = format!("/api/v1/purse/purses/{PHONE}/float");
    let float = json!({ "amount": "300.00", "memo": "top-up" });
    let (status, replayed, first) = post_keyed(&server, &path, Some("float-7f3a-1"), &float).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(!replayed);
    let after_one = float_balance_minor(&server).await;
    assert_eq!(after_one, -30_000, "the operator's float paid 300.00 out");
    // The client never saw the first answer and sends the same request again.
    let (status, replayed, again) = post_keyed(&server, &path, Some("float-7f3a-1"), &float).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(float_balance_minor(&server).await, after_one, "posted once");
    assert!(replayed, "the answer is the stored one");
    assert_eq!(again, first, "the same answer, the same transfer");
    // The same key for another amount: refused, nothing changes.
    let other = json!({ "amount": "400.00", "memo": "top-up" });
    let (status, _, refused) = post_keyed(&server, &path, Some("float-7f3a-1"), &other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_key_reused");
    assert_eq!(float_balance_minor(&server).await, after_one);
    // A bad key is refused before anything happens.
    let (status, _, bad) = post_keyed(&server, &path, Some("two words"), &float).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_idempotency_key");
    // A new key is a new float.
    let (status, _, _) = post_keyed(&server, &path, Some("float-7f3a-2"), &float).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(float_balance_minor(&server).await, 2 * after_one);
    // Each attempt is in the audit log: one committed with the key, the replay, the refusals.
    let (status, log) = server.get("/api/v1/audit?limit=100").await;
    assert_eq!(status, StatusCode::OK);
    let outcomes: Vec<(String, Value)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "POST /api/v1/purse/purses/{phone}/float")
        .map(|entry| {
            (
                entry["outcome"].as_str().unwrap().to_owned(),
                entry["idempotency_key"].clone(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("committed".to_owned(), json!("float-7f3a-1")),
            ("replayed 201".to_owned(), json!("float-7f3a-1")),
            (
                "failed 422 idempotency_key_reused".to_owned(),
                json!("float-7f3a-1")
            ),
            (
                "failed 400 invalid_idempotency_key".to_owned(),
                json!("two words")
            ),
            ("committed".to_owned(), json!("float-7f3a-2")),
        ]
    );
}

async fn a_transfer_batch_retried_with_its_key_is_applied_once(backend: Backend) {
    let server = InProcess::start(backend).await;
    for (id, kind) in [("operator:float", "operator_float"), ("alice", "customer")] {
        let (status, answer) = server
            .post("/api/v1/accounts", json!({ "id": id, "kind": kind }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let batch = json!({ "transfers": [{ "id": "t-1", "debit_account": "operator:float",
        "credit_account": "alice", "amount": "25.00" }] });
    let (status, _, first) =
        post_keyed(&server, "/api/v1/transfers", Some("batch-1"), &batch).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["results"][0]["outcome"], "transfer_committed");
    let (status, replayed, again) =
        post_keyed(&server, "/api/v1/transfers", Some("batch-1"), &batch).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(replayed);
    assert_eq!(again, first, "the first answer, not 'transfer_exists'");
    assert_eq!(float_balance_minor(&server).await, -2_500);
}

/// A key that is not text (bytes beyond ASCII, which HTTP allows in a header) is refused like
/// any other bad key, not silently ignored: ignoring it took away the retry protection the
/// client asked for. Found by the schema-driven check (scripts/schemathesis.sh).
async fn a_key_that_is_not_ascii_is_refused(backend: Backend) {
    let server = InProcess::start(backend).await;
    let (status, answer) = server
        .post("/api/v1/purse/purses", json!({ "phone": PHONE }))
        .await;
    assert!(status.is_success(), "{answer}");
    let (_, before) = server.get("/api/v1/transfers").await;
    let path = format!("/api/v1/purse/purses/{PHONE}/float");
    let float = json!({ "amount": "300.00" });
    for key in [&b"caf\xc3\xa9-1"[..], b"\xff", b"  \x80  "] {
        let request = Request::builder()
            .method("POST")
            .uri(&path)
            .header("authorization", format!("Bearer {}", server.token))
            .header("content-type", "application/json")
            .header(
                "idempotency-key",
                axum::http::HeaderValue::from_bytes(key).unwrap(),
            )
            .body(Body::from(float.to_string()))
            .unwrap();
        let response = offpay_server::router(server.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key:?}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_idempotency_key");
    }
    let (_, after) = server.get("/api/v1/transfers").await;
    assert_eq!(before, after, "nothing was posted");
}

offpay_test_support::on_every_backend_async!(
    a_float_retried_with_its_key_posts_once,
    a_transfer_batch_retried_with_its_key_is_applied_once,
    a_key_that_is_not_ascii_is_refused,
);
