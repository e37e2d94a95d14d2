//! Four eyes on e-money: creating more value than `approval_above` waits for a second user;
//! the requester cannot approve it, a support user cannot, a second finance user can — once;
//! a refused request is never applied; each step is in the audit chain.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use offpay_server::config::{Overrides, ServerConfig};
use offpay_server::{AppState, Inputs, Server, router};
use offpay_test_support::Backend;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Node {
    state: Arc<AppState>,
    admin: String,
    _directory: tempfile::TempDir,
    _backend: Backend,
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
    let server = Server::start_with(config.clone(), Inputs::real())
        .await
        .expect("the server starts");
    let admin = std::fs::read_to_string(config.token_path())
        .unwrap()
        .trim()
        .to_owned();
    Node {
        state: server.state(),
        admin,
        _directory: directory,
        _backend: backend,
    }
}

impl Node {
    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn add_user(&self, name: &str, role: &str) -> String {
        let (status, answer) = self
            .call(
                &self.admin,
                "POST",
                "/api/v1/users",
                Some(json!({ "name": name, "role": role })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["token"].as_str().unwrap().to_owned()
    }

    async fn balance_minor(&self, account: &str) -> i64 {
        let (status, answer) = self
            .call(
                &self.admin,
                "GET",
                &format!("/api/v1/accounts/{account}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["balance_minor"].as_i64().unwrap()
    }
}

fn issue(id: &str, amount: &str) -> Value {
    json!({ "transfers": [{ "id": id, "debit_account": "operator:float",
        "credit_account": "alice", "amount": amount }] })
}

async fn value_above_the_limit_needs_a_second_user(backend: Backend) {
    let node = start(backend).await;
    let fatuma = node.add_user("fatuma", "finance").await;
    let faith = node.add_user("faith", "finance").await;
    let sam = node.add_user("sam", "support").await;
    for (id, kind) in [("operator:float", "operator_float"), ("alice", "customer")] {
        let (status, answer) = node
            .call(
                &fatuma,
                "POST",
                "/api/v1/accounts",
                Some(json!({ "id": id, "kind": kind })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    // At the limit: applied at once. Above it: held.
    let (status, answer) = node
        .call(
            &fatuma,
            "POST",
            "/api/v1/transfers",
            Some(issue("small", "1000.00")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, held) = node
        .call(
            &fatuma,
            "POST",
            "/api/v1/transfers",
            Some(issue("large", "1500.00")),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let id = held["approval"]["id"].as_str().unwrap().to_owned();
    assert_eq!(held["approval"]["value"], "1500.00 KES");
    assert_eq!(
        node.balance_minor("alice").await,
        100_000,
        "nothing applied yet"
    );
    let (status, list) = node.call(&faith, "GET", "/api/v1/approvals", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let pending = list["items"].as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["id"], id.as_str());
    assert_eq!(pending[0]["requester"], "fatuma");
    assert_eq!(pending[0]["state"], "pending");
    // The requester may not approve; a support user may not either.
    let approve = format!("/api/v1/approvals/{id}/approve");
    let (status, answer) = node.call(&fatuma, "POST", &approve, Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"]["code"], "approval_by_requester");
    let (status, answer) = node.call(&sam, "POST", &approve, Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"]["code"], "forbidden");
    assert_eq!(node.balance_minor("alice").await, 100_000);
    // A second finance user approves: executed once.
    let (status, answer) = node.call(&faith, "POST", &approve, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["executed"], true, "{answer}");
    assert_eq!(
        answer["result"]["results"][0]["outcome"],
        "transfer_committed"
    );
    assert_eq!(answer["approval"]["state"], "approved");
    assert_eq!(answer["approval"]["by"], "faith");
    assert_eq!(node.balance_minor("alice").await, 250_000);
    let (status, answer) = node.call(&faith, "POST", &approve, Some(json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "approval_closed");
    assert_eq!(
        node.balance_minor("alice").await,
        250_000,
        "approved once, applied once"
    );
    // Refused: never applied.
    let (status, held) = node
        .call(
            &fatuma,
            "POST",
            "/api/v1/transfers",
            Some(issue("refused", "2000.00")),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let refused_id = held["approval"]["id"].as_str().unwrap().to_owned();
    let (status, answer) = node
        .call(
            &faith,
            "POST",
            &format!("/api/v1/approvals/{refused_id}/refuse"),
            Some(json!({ "reason": "no such deposit" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["approval"]["state"], "refused");
    let (status, _) = node
        .call(
            &node.admin,
            "POST",
            &format!("/api/v1/approvals/{refused_id}/approve"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(node.balance_minor("alice").await, 250_000);
    let (_, list) = node.call(&faith, "GET", "/api/v1/approvals", None).await;
    assert_eq!(list["items"], json!([]), "nothing pending");
    // A purse float above the limit is held too.
    let (status, answer) = node
        .call(
            &node.admin,
            "POST",
            "/api/v1/purse/purses",
            Some(json!({ "phone": "+254700000001" })),
        )
        .await;
    assert!(status.is_success(), "{answer}");
    let (status, answer) = node
        .call(
            &fatuma,
            "POST",
            "/api/v1/purse/purses/+254700000001/float",
            Some(json!({ "amount": "5000" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // The chain: the executed transfer by its author with its approver; the attempt by the
    // requester; the refusal.
    let (status, log) = node
        .call(&node.admin, "GET", "/api/v1/audit?limit=500", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let entries = log["items"].as_array().unwrap();
    let executed = entries
        .iter()
        .find(|entry| entry["effect"]["transfers"][0]["id"] == "large")
        .expect("the approved transfer is in the chain");
    assert_eq!(executed["user"], "fatuma");
    assert_eq!(executed["approval"]["approved_by"], "faith");
    assert_eq!(executed["approval"]["id"], id.as_str());
    assert_eq!(executed["outcome"], "committed");
    assert_eq!(
        executed["effect"]["records_written"]["approvals"], 1,
        "the approval closed in the same batch as the transfer"
    );
    assert!(
        entries.iter().any(|entry| entry["user"] == "fatuma"
            && entry["outcome"] == "failed 403 approval_by_requester")
    );
    assert!(entries.iter().any(|entry| entry["user"] == "faith"
        && entry["action"] == "POST /api/v1/approvals/{id}/refuse"
        && entry["outcome"] == "committed"));
    let (_, verified) = node
        .call(&node.admin, "GET", "/api/v1/audit/verify", None)
        .await;
    assert_eq!(verified["ok"], true, "{verified}");
}

offpay_test_support::on_every_backend_async!(value_above_the_limit_needs_a_second_user);
