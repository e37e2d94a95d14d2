//! Two server processes on one PostgreSQL database append to one audit chain at once: each holds
//! the chain lock while its pipelined rounds are in flight and gives it back when they drain or
//! after `CHAIN_LOCK_ROUNDS_MAX` rounds, so neither starves the other (neither gives up waiting
//! for the lock): every concurrent operator write is answered 200 (no `503 busy`), and the chain
//! is whole. Two `Server`s in this test's
//! process stand for the two processes: each has its own ledger connections (writer, reader,
//! lock) and its own chain state. PostgreSQL only (SQLite is one process's file).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use offpay_server::config::ServerConfig;
use offpay_server::{AppState, Inputs, Server, router};
use offpay_test_support::InProcess;
use offpay_test_support::database::{self, BackendKind};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Requests each process is sent at once, in each of `WAVES` waves.
const REQUESTS: usize = 48;
const WAVES: usize = 3;

async fn call(
    state: &Arc<AppState>,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

/// Copies the first process's data directory (keys, the audit chain key, the operator token) to
/// another, as an operator deploys one key set to every process of its app tier.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_append_to_one_chain_under_concurrent_operator_writes() {
    if database::postgres_url().is_none() {
        eprintln!("skipped two processes on one database: OFFPAY_TEST_DATABASE_URL is not set");
        return;
    }
    let first = InProcess::start(BackendKind::Postgres.fresh()).await;
    let directory = tempfile::tempdir().unwrap();
    copy_dir(first.data_dir(), directory.path());
    let config = ServerConfig {
        data_dir: directory.path().to_owned(),
        ..first.config.clone()
    };
    let second = Server::start_with(config, Inputs::real()).await.unwrap();
    let states = [first.state.clone(), second.state()];
    let token = first.token.clone();
    for (id, kind) in [("float", "operator_float"), ("shop", "customer")] {
        let (status, answer) = first
            .post("/api/v1/accounts", json!({ "id": id, "kind": kind }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }

    for wave in 0..WAVES {
        let tasks: Vec<_> = (0..REQUESTS * states.len())
            .map(|index| {
                let state = states[index % states.len()].clone();
                let token = token.clone();
                let body = json!({ "transfers": [{ "id": format!("w{wave}-{index}"),
                    "debit_account": "float", "credit_account": "shop", "amount": "0.01" }] });
                tokio::spawn(async move {
                    call(&state, &token, "POST", "/api/v1/transfers", Some(body)).await
                })
            })
            .collect();
        for task in tasks {
            let (status, answer) = task.await.unwrap();
            assert_eq!(status, StatusCode::OK, "wave {wave}: {answer}");
        }
    }

    // Neither process held the chain lock so long that the other gave up waiting for it (each
    // gives it back when its pipeline drains, or after CHAIN_LOCK_ROUNDS_MAX rounds).
    for state in &states {
        assert_eq!(state.ledger.shared_locks_missed(), 0);
    }
    let writes = WAVES * REQUESTS * states.len();
    for state in &states {
        let (status, shop) = call(state, &token, "GET", "/api/v1/accounts/shop", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(shop["balance_minor"], json!(writes), "{shop}");
        let (status, whole) = call(state, &token, "GET", "/api/v1/audit/verify", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(whole["ok"], true, "{whole}");
        assert_eq!(whole["entries_checked"], json!(2 + writes), "{whole}");
    }
}
