//! Operator records over time: a fraud flag raised again does not undo an analyst's decision
//! (and new evidence is not lost); a pending approval expires on the server's clock; idempotency
//! records and closed approvals are pruned after their retention, audited, and a request sent
//! again after its key was pruned moves no money twice.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use offpay_ledger::Timestamp;
use offpay_operator::{Attempt, Clock, Effects, FraudFlag, ManualClock, SeededEntropy};
use offpay_server::config::{DEFAULT_APPROVAL_TTL_MS, DEFAULT_IDEMPOTENCY_RETENTION_MS};
use offpay_server::{Inputs, router};
use offpay_test_support::{Backend, InProcess};
use serde_json::{Value, json};
use tower::ServiceExt;

/// 2023-11-14T22:13:20Z.
const START_MS: u64 = 1_700_000_000_000;
const HOUR_MS: u64 = 3_600_000;

async fn start(backend: Backend) -> (InProcess, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp(START_MS)));
    let inputs = Inputs {
        clock: clock.clone(),
        entropy: Arc::new(SeededEntropy::from_seed(41)),
    };
    (InProcess::start_with(backend, inputs).await, clock)
}

/// Calls the router as `token`, with an `Idempotency-Key` when given; answers the status, the
/// body and whether the answer was a replay.
async fn call(
    server: &InProcess,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (StatusCode, Value, bool) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = router(server.state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        replayed,
    )
}

async fn add_user(server: &InProcess, name: &str, role: &str) -> String {
    let (status, answer) = server
        .post("/api/v1/users", json!({ "name": name, "role": role }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

async fn balance_minor(server: &InProcess, account: &str) -> i64 {
    let (status, answer) = server.get(&format!("/api/v1/accounts/{account}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["balance_minor"].as_i64().unwrap()
}

async fn accounts(server: &InProcess, token: &str) {
    for (id, kind) in [("operator:float", "operator_float"), ("alice", "customer")] {
        let (status, answer, _) = call(
            server,
            token,
            "POST",
            "/api/v1/accounts",
            Some(json!({ "id": id, "kind": kind })),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
}

fn issue(id: &str, amount: &str) -> Value {
    json!({ "transfers": [{ "id": id, "debit_account": "operator:float",
        "credit_account": "alice", "amount": amount }] })
}

/// Raises `flag` the way every rail does: through the runner, with its discriminator.
async fn raise(server: &InProcess, flag: &FraudFlag, now: Timestamp) {
    let mut effects = Effects::new();
    effects.flag(flag, "seq-7");
    let done = offpay_server::runner::commit(&server.state.ledger, effects, now)
        .await
        .unwrap();
    assert!(matches!(done, Attempt::Done(_)));
}

fn forked(evidence: Value, at: Timestamp) -> FraudFlag {
    FraudFlag::new(
        "wallet",
        "forked_log",
        "00ff00ff",
        "the uploaded log was rolled back",
        evidence,
        at,
    )
}

async fn a_raised_flag_does_not_undo_a_decision_and_new_evidence_reopens(backend: Backend) {
    let (server, clock) = start(backend).await;
    let flag = forked(json!({ "head": 4 }), clock.now());
    raise(&server, &flag, clock.now()).await;
    let id = flag.key("seq-7");
    let (status, answer) = server
        .post(
            &format!("/api/v1/fraud/{id}/clear"),
            json!({ "note": "the customer restored a backup; known" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["state"], "cleared");

    // The device uploads again (a retry): the same finding, raised later.
    clock.advance_ms(HOUR_MS);
    let retry = forked(json!({ "head": 4 }), clock.now());
    raise(&server, &retry, clock.now()).await;
    let (_, case) = server.get("/api/v1/fraud?subject=00ff00ff").await;
    let items = case["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{case}");
    assert_eq!(
        items[0]["state"], "cleared",
        "a retried upload must not reopen a cleared case: {case}"
    );
    assert_eq!(
        items[0]["decisions"][0]["note"],
        "the customer restored a backup; known"
    );
    let (_, open) = server.get("/api/v1/fraud?state=open").await;
    assert_eq!(open["items"], json!([]), "nothing waits for an analyst");

    // New evidence under the same case: open again, the decision kept in its history.
    clock.advance_ms(HOUR_MS);
    let newer = forked(json!({ "head": 9 }), clock.now());
    raise(&server, &newer, clock.now()).await;
    let (_, open) = server.get("/api/v1/fraud?state=open").await;
    let items = open["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "the new evidence waits for an analyst: {open}"
    );
    let case = &items[0];
    assert_eq!(case["id"], id.as_str());
    assert_eq!(case["evidence"], json!({ "head": 9 }));
    assert_eq!(case["decisions"], json!([]));
    assert_eq!(case["earlier"][0]["state"], "cleared");
    assert_eq!(case["earlier"][0]["evidence"], json!({ "head": 4 }));
    assert_eq!(case["earlier"][0]["decisions"][0]["by"], "admin");
    // The reopened case can be decided again.
    let (status, answer) = server
        .post(
            &format!("/api/v1/fraud/{id}/escalate"),
            json!({ "note": "rolled back twice" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["state"], "escalated");
}

/// The microcheck deposit path commits flags inside batches whose refusals it maps to
/// operations by index: there the raised flags are settled in place.
async fn flags_settled_in_place_keep_a_decision_and_the_batch_shape(backend: Backend) {
    let (server, clock) = start(backend).await;
    let ledger = &server.state.ledger;
    let flag = forked(json!({ "nonce": 2 }), clock.now());
    let batch = || offpay_ledger::Batch {
        operations: vec![flag.operation("n2"), flag.operation("n2")],
    };
    let mut batches = vec![batch()];
    offpay_server::fraud::settle_in_place(ledger, &mut batches)
        .await
        .unwrap();
    assert_eq!(batches[0].operations.len(), 2, "the shape is kept");
    let results = ledger.commit(batches, clock.now()).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    let id = flag.key("n2");
    let (status, answer) = server
        .post(
            &format!("/api/v1/fraud/{id}/clear"),
            json!({ "note": "test machine" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // The machine deposits the same microcheck again: the same finding.
    clock.advance_ms(HOUR_MS);
    let mut batches = vec![batch()];
    offpay_server::fraud::settle_in_place(ledger, &mut batches)
        .await
        .unwrap();
    let results = ledger.commit(batches, clock.now()).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    let (_, case) = server.get("/api/v1/fraud?state=cleared").await;
    assert_eq!(case["items"][0]["id"], id.as_str(), "still cleared: {case}");
    // New evidence: reopened, the decision kept.
    let newer = forked(json!({ "nonce": 2, "place": "elsewhere" }), clock.now());
    let mut batches = vec![offpay_ledger::Batch {
        operations: vec![newer.operation("n2")],
    }];
    offpay_server::fraud::settle_in_place(ledger, &mut batches)
        .await
        .unwrap();
    ledger.commit(batches, clock.now()).await.unwrap();
    let (_, open) = server.get("/api/v1/fraud?state=open").await;
    assert_eq!(open["items"][0]["earlier"][0]["state"], "cleared", "{open}");
    assert_eq!(open["items"][0]["evidence"]["place"], "elsewhere");
}

async fn a_pending_approval_expires_on_the_servers_clock(backend: Backend) {
    let (server, clock) = start(backend).await;
    let fatuma = add_user(&server, "fatuma", "finance").await;
    let faith = add_user(&server, "faith", "finance").await;
    accounts(&server, &fatuma).await;
    let (status, held, _) = call(
        &server,
        &fatuma,
        "POST",
        "/api/v1/transfers",
        Some(issue("big", "150000.00")),
        Some("big-1"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let id = held["approval"]["id"].as_str().unwrap().to_owned();
    assert_eq!(held["approval"]["state"], "pending");
    assert_eq!(
        held["approval"]["expires_at_ms"],
        START_MS + DEFAULT_APPROVAL_TTL_MS
    );
    // A moment before the TTL it is still pending; at the TTL it is expired.
    clock.advance_ms(DEFAULT_APPROVAL_TTL_MS - 1);
    let (_, pending) = server.get("/api/v1/approvals?state=pending").await;
    assert_eq!(pending["items"][0]["id"], id.as_str(), "{pending}");
    clock.advance_ms(1);
    let (_, pending) = server.get("/api/v1/approvals?state=pending").await;
    assert_eq!(pending["items"], json!([]));
    let (status, expired) = server.get("/api/v1/approvals?state=expired").await;
    assert_eq!(status, StatusCode::OK, "{expired}");
    assert_eq!(expired["items"][0]["id"], id.as_str(), "{expired}");
    assert_eq!(expired["items"][0]["state"], "expired");
    // Approving it now is refused, clearly, and nothing moves.
    let approve = format!("/api/v1/approvals/{id}/approve");
    let (status, answer, _) = call(&server, &faith, "POST", &approve, Some(json!({})), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "approval_expired");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{answer}"
    );
    assert_eq!(balance_minor(&server, "alice").await, 0);
    let (_, all) = server.get("/api/v1/approvals?state=all").await;
    assert_eq!(all["items"][0]["state"], "expired");
    let (status, answer) = server.get("/api/v1/approvals?state=stale").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

async fn records_past_their_retention_are_pruned_and_nothing_moves_twice(backend: Backend) {
    let (server, clock) = start(backend).await;
    let fatuma = add_user(&server, "fatuma", "finance").await;
    let faith = add_user(&server, "faith", "finance").await;
    accounts(&server, &fatuma).await;
    // A transfer with a key; its retry inside the window answers the first answer.
    let small = issue("t-small", "100.00");
    let (status, first, replayed) = call(
        &server,
        &fatuma,
        "POST",
        "/api/v1/transfers",
        Some(small.clone()),
        Some("k-small"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(!replayed);
    // An approved approval and a refused one.
    let (_, held, _) = call(
        &server,
        &fatuma,
        "POST",
        "/api/v1/transfers",
        Some(issue("t-big", "150000.00")),
        Some("k-big"),
    )
    .await;
    let approved_id = held["approval"]["id"].as_str().unwrap().to_owned();
    let (status, answer, _) = call(
        &server,
        &faith,
        "POST",
        &format!("/api/v1/approvals/{approved_id}/approve"),
        Some(json!({})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["executed"], true, "{answer}");
    assert_eq!(balance_minor(&server, "alice").await, 15_010_000);

    clock.advance_ms(DEFAULT_IDEMPOTENCY_RETENTION_MS - HOUR_MS);
    let (status, again, replayed) = call(
        &server,
        &fatuma,
        "POST",
        "/api/v1/transfers",
        Some(small.clone()),
        Some("k-small"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(replayed, "inside the window the first answer is replayed");
    assert_eq!(again, first);
    // A pass inside the window removes nothing.
    let pruned = offpay_server::idempotency::prune(&server.state)
        .await
        .unwrap();
    assert_eq!(pruned.idempotency, 0, "{pruned:?}");
    assert_eq!(pruned.approvals, 0, "{pruned:?}");

    // Past the retention: the keys go (the approval is kept: its retention is longer).
    clock.advance_ms(2 * HOUR_MS);
    let pruned = offpay_server::idempotency::prune(&server.state)
        .await
        .unwrap();
    assert!(pruned.idempotency >= 3, "{pruned:?}");
    assert_eq!(pruned.approvals, 0, "{pruned:?}");
    assert_eq!(pruned.left, 0, "{pruned:?}");
    let remaining = server
        .state
        .ledger
        .read(|store| store.records("idempotency", "", None, 100))
        .await
        .unwrap();
    assert!(
        remaining.is_empty(),
        "every key past the window is gone: {remaining:?}"
    );
    // The same request sent again with the pruned key is a new request, but the ledger knows
    // the transfer by its id: nothing is posted twice.
    let (status, answer, replayed) = call(
        &server,
        &fatuma,
        "POST",
        "/api/v1/transfers",
        Some(small),
        Some("k-small"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(!replayed);
    assert_eq!(
        answer["results"][0]["outcome"], "transfer_exists",
        "{answer}"
    );
    assert_eq!(balance_minor(&server, "alice").await, 15_010_000);

    // Past the approval retention, the closed approval goes too; the audit log still says what
    // it did.
    clock.advance_ms(90 * 24 * HOUR_MS);
    // One asked for just now waits: a pending approval is never pruned.
    let (status, held, _) = call(
        &server,
        &fatuma,
        "POST",
        "/api/v1/transfers",
        Some(issue("t-later", "150000.00")),
        Some("k-later"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let pending_id = held["approval"]["id"].as_str().unwrap().to_owned();
    clock.advance_ms(HOUR_MS);
    let pruned = offpay_server::idempotency::prune(&server.state)
        .await
        .unwrap();
    assert_eq!(pruned.approvals, 1, "{pruned:?}");
    let (_, all) = server.get("/api/v1/approvals?state=all").await;
    let left = all["items"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{all}");
    assert_eq!(left[0]["id"], pending_id.as_str());
    assert_eq!(left[0]["state"], "pending");
    let (status, log) = server.get("/api/v1/audit?limit=500").await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let entries = log["items"].as_array().unwrap();
    let executed = entries
        .iter()
        .find(|entry| entry["effect"]["transfers"][0]["id"] == "t-big")
        .expect("the approved transfer stays in the chain");
    assert_eq!(executed["approval"]["id"], approved_id.as_str());
    assert_eq!(executed["approval"]["approved_by"], "faith");
    let prunes = entries
        .iter()
        .filter(|entry| entry["action"] == "SYSTEM prune")
        .collect::<Vec<_>>();
    assert!(
        prunes.iter().any(
            |entry| entry["request"]["approval_ids"][0] == approved_id.as_str()
                && entry["effect"]["records_written"]["approvals"] == 1
        ),
        "{prunes:?}"
    );
    assert!(
        prunes
            .iter()
            .any(|entry| entry["effect"]["records_written"]["idempotency"].as_u64() >= Some(3)),
        "{prunes:?}"
    );
    let (_, verified) = server.get("/api/v1/audit/verify").await;
    assert_eq!(verified["ok"], true, "{verified}");
}

offpay_test_support::on_every_backend_async!(
    a_raised_flag_does_not_undo_a_decision_and_new_evidence_reopens,
    flags_settled_in_place_keep_a_decision_and_the_batch_shape,
    a_pending_approval_expires_on_the_servers_clock,
    records_past_their_retention_are_pruned_and_nothing_moves_twice,
);
