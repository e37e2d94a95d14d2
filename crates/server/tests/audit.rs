//! The audit log: every operator action with its author in the chain, denials and failures
//! included; an entry edited or deleted in the database is found by `verify`, which names it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use axum::http::StatusCode;
use offpay_ledger::{Batch, Operation, RecordWrite, Timestamp};
use offpay_server::audit::{NAMESPACE, entry_key};
use offpay_test_support::{Backend, InProcess};
use serde_json::{Value, json};

async fn add_user(server: &InProcess, name: &str, role: &str) -> String {
    let (status, answer) = server
        .post("/api/v1/users", json!({ "name": name, "role": role }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

async fn call(
    server: &InProcess,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    server
        .call(method, path, Some(&body.to_string()), Some(token))
        .await
}

async fn entries(server: &InProcess, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = server
            .call(
                "GET",
                &format!("/api/v1/audit?cursor={cursor}&limit=3"),
                None,
                Some(token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return all,
        }
    }
}

async fn verify(server: &InProcess, token: &str) -> Value {
    let (status, answer) = server
        .call("GET", "/api/v1/audit/verify", None, Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// Edits the stored entry `number` as someone with the database but not the key file would:
/// `edit` gets its bytes and returns new ones (`None` deletes it). Returns the old bytes.
fn tamper(
    server: &InProcess,
    number: u64,
    edit: impl FnOnce(&[u8]) -> Option<Vec<u8>> + Send + 'static,
) -> Vec<u8> {
    let config = server.config.clone();
    std::thread::spawn(move || {
        let mut store = offpay_server::open_store(&config).unwrap();
        let key = entry_key(number);
        let old = store.record(NAMESPACE, &key).unwrap().unwrap().value;
        let write = RecordWrite {
            namespace: NAMESPACE.to_owned(),
            key,
            value: edit(&old),
            expected_version: None,
        };
        let results = store
            .commit(
                &[Batch {
                    operations: vec![Operation::PutRecord(write)],
                }],
                Timestamp(1),
            )
            .unwrap();
        assert!(results.iter().all(Result::is_ok));
        old
    })
    .join()
    .unwrap()
}

async fn every_action_is_in_the_chain_and_tampering_is_found(backend: Backend) {
    let server = InProcess::start(backend).await;
    let finance = add_user(&server, "fatuma", "finance").await;
    let support = add_user(&server, "sam", "support").await;
    let auditor = add_user(&server, "aziz", "auditor").await;
    for (id, kind) in [("operator:float", "operator_float"), ("alice", "customer")] {
        let (status, answer) = call(
            &server,
            &finance,
            "POST",
            "/api/v1/accounts",
            json!({ "id": id, "kind": kind }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let issue = json!({ "transfers": [{ "id": "issue-1", "debit_account": "operator:float",
        "credit_account": "alice", "amount": "500.00", "memo": "opening float" }] });
    let (status, answer) = call(
        &server,
        &finance,
        "POST",
        "/api/v1/transfers",
        issue.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Denied (support may not move money) and refused (alice cannot pay 10,000): both audited,
    // neither with an effect.
    let (status, _) = call(&server, &support, "POST", "/api/v1/transfers", issue).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let overdraw = json!({ "transfers": [{ "id": "back-1", "debit_account": "alice",
        "credit_account": "operator:float", "amount": "10000.00" }] });
    let (status, answer) = call(&server, &finance, "POST", "/api/v1/transfers", overdraw).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (status, _) = server
        .call("POST", "/api/v1/transfers", Some("{}"), Some("not-a-token"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let log = entries(&server, &auditor).await;
    let text = serde_json::to_string(&log).unwrap();
    for token in [&finance, &support, &auditor, &server.token] {
        assert!(!text.contains(token.as_str()), "no token reaches the log");
    }
    for (number, entry) in log.iter().enumerate() {
        assert_eq!(
            entry["number"],
            json!(number as u64 + 1),
            "numbered from 1 without gaps"
        );
        assert_eq!(entry["remote"], "in-process");
    }
    let issued = log
        .iter()
        .find(|entry| entry["effect"]["transfers"][0]["id"] == "issue-1")
        .expect("the money-creating transfer is in the chain");
    assert_eq!(issued["user"], "fatuma");
    assert_eq!(issued["role"], "finance");
    assert_eq!(issued["outcome"], "committed");
    assert_eq!(issued["action"], "POST /api/v1/transfers");
    assert_eq!(issued["effect"]["transfers"][0]["amount"], "500.00 KES");
    assert_eq!(issued["request"]["transfers"][0]["memo"], "opening float");
    let denied = log
        .iter()
        .find(|entry| entry["user"] == "sam")
        .expect("the denial is in the chain");
    assert_eq!(denied["outcome"], "denied forbidden");
    assert_eq!(denied["effect"], Value::Null);
    let refused = log
        .iter()
        .find(|entry| entry["request"]["transfers"][0]["id"] == "back-1")
        .expect("the refused transfer is in the chain");
    assert_eq!(refused["user"], "fatuma");
    assert!(
        refused["outcome"]
            .as_str()
            .unwrap()
            .starts_with("failed 422"),
        "{refused}"
    );
    let anonymous = log.last().unwrap();
    assert_eq!(anonymous["outcome"], "denied invalid_token");
    assert_eq!(anonymous["user"], Value::Null);
    let created = log
        .iter()
        .filter(|entry| entry["action"] == "POST /api/v1/users")
        .count();
    assert_eq!(created, 3, "each user's creation, by admin");
    let count = log.len() as u64;
    let whole = verify(&server, &auditor).await;
    assert_eq!(whole["ok"], true, "{whole}");
    assert_eq!(whole["entries_checked"], count);

    // A DBA changes the amount in the transfer's entry: the entry is named.
    let number = issued["number"].as_u64().unwrap();
    let original = tamper(&server, number, |bytes| {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.contains("500.00 KES"));
        Some(text.replace("500.00 KES", "5.00 KES").into_bytes())
    });
    let broken = verify(&server, &auditor).await;
    assert_eq!(broken["ok"], false, "{broken}");
    assert_eq!(broken["first_break"]["number"], number, "{broken}");
    assert!(
        broken["first_break"]["problem"]
            .as_str()
            .unwrap()
            .contains("altered")
    );
    assert_eq!(broken["entries_checked"], number - 1);
    // Put back, the chain is whole again; a deleted entry is named too.
    tamper(&server, number, move |_| Some(original));
    assert_eq!(verify(&server, &auditor).await["ok"], true);
    let denied_number = denied["number"].as_u64().unwrap();
    tamper(&server, denied_number, |_| None);
    let broken = verify(&server, &auditor).await;
    assert_eq!(broken["first_break"]["number"], denied_number, "{broken}");
    assert!(
        broken["first_break"]["problem"]
            .as_str()
            .unwrap()
            .contains("missing")
    );
    // The newest entry deleted: the head still counts it.
    let (status, _) = server.get("/api/v1/totals").await;
    assert_eq!(status, StatusCode::OK);
}

async fn only_auditors_and_admins_read_the_log(backend: Backend) {
    let server = InProcess::start(backend).await;
    let finance = add_user(&server, "fatuma", "finance").await;
    let (status, answer) = server
        .call("GET", "/api/v1/audit", None, Some(&finance))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(
        answer["error"]["required_roles"],
        json!(["admin", "auditor"])
    );
    let (status, answer) = server.get("/api/v1/audit").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let outcomes: Vec<&str> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["committed", "denied forbidden"]);
}

/// Many operator actions at once, some refused: each applied one gets its entry, the refused
/// ones an entry of their own, and the chain is whole and without gaps.
async fn concurrent_actions_keep_one_whole_chain(backend: Backend) {
    let server = InProcess::start(backend).await;
    for (id, kind) in [("operator:float", "operator_float"), ("alice", "customer")] {
        let (status, answer) = server
            .post("/api/v1/accounts", json!({ "id": id, "kind": kind }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    const ACTIONS: usize = 48;
    let tasks: Vec<_> = (0..ACTIONS)
        .map(|index| {
            let state = server.state.clone();
            let token = server.token.clone();
            // Every fourth one overdraws alice and is refused.
            let transfer = if index % 4 == 3 {
                json!({ "id": format!("back-{index}"), "debit_account": "alice",
                        "credit_account": "operator:float", "amount": "1000000.00" })
            } else {
                json!({ "id": format!("issue-{index}"), "debit_account": "operator:float",
                        "credit_account": "alice", "amount": "1.00" })
            };
            tokio::spawn(async move {
                use tower::ServiceExt;
                let request = axum::http::Request::builder()
                    .method("POST")
                    .uri("/api/v1/transfers")
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(
                        json!({ "transfers": [transfer] }).to_string(),
                    ))
                    .unwrap();
                let response = offpay_server::router(state).oneshot(request).await.unwrap();
                response.status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let refused = ACTIONS / 4;
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::OK)
            .count(),
        ACTIONS - refused,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::UNPROCESSABLE_ENTITY)
            .count(),
        refused
    );
    let (_, alice) = server.get("/api/v1/accounts/alice").await;
    assert_eq!(
        alice["balance_minor"],
        json!((ACTIONS - refused) as i64 * 100)
    );
    let log = entries(&server, &server.token).await;
    assert_eq!(log.len(), 2 + ACTIONS, "one entry per action");
    let committed = log
        .iter()
        .filter(|entry| entry["outcome"] == "committed")
        .count();
    assert_eq!(committed, 2 + ACTIONS - refused);
    let whole = verify(&server, &server.token).await;
    assert_eq!(whole["ok"], true, "{whole}");
    assert_eq!(whole["entries_checked"], json!(2 + ACTIONS));
}

/// Each story runs on SQLite, and on a fresh PostgreSQL database when `OFFPAY_TEST_DATABASE_URL`
/// is set.
macro_rules! on_every_backend {
    ($($story:ident),* $(,)?) => {
        mod every_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $story() {
                    for backend in super::Backend::all(stringify!($story)) {
                        super::$story(backend).await;
                    }
                }
            )*
        }
    };
}

on_every_backend!(
    every_action_is_in_the_chain_and_tampering_is_found,
    only_auditors_and_admins_read_the_log,
    concurrent_actions_keep_one_whole_chain,
);
