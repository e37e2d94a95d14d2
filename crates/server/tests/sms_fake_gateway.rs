//! The fake SMS gateway in place of a real one: a payment's payee notice reaches it through the
//! durable outbox and the outbound worker, after a refused attempt is retried; a permanent
//! refusal becomes a dead letter. In-process, on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use offpay_ledger::{Amount, Currency};
use offpay_server::rails::sms::gateway::SendOutcome;
use offpay_server::rails::sms::gateway::fake::FakeGateway;
use offpay_sms_tan::AccountNumber;
use offpay_sms_tan::operator::outbox::SendFailure;
use offpay_test_support::{BackendKind, InProcess};
use serde_json::json;

const SEED_ENVELOPE: &str =
    include_str!("../../../rails/sms-tan/tests/vectors/seed-002-worked-example.envelope");
const PAYER: &str = "111100002222";
const PAYEE: &str = "901020377865";
const PAYER_PHONE: &str = "+254700000001";
const PAYEE_PHONE: &str = "+254700000002";
/// Upper bound on the wait for the worker (its first retry comes after at most 1 s).
const WAIT_MAX: Duration = Duration::from_secs(30);

async fn wait_until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT_MAX, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the worker got there in time");
}

async fn notices_go_through_the_fake_gateway(kind: BackendKind) {
    let server = InProcess::start(kind.fresh()).await;
    let fake = Arc::new(FakeGateway::new());
    fake.script([SendOutcome::Failed(SendFailure::RetryLater {
        reason: "the fake is down".into(),
        retry_after_ms: None,
    })]);
    server
        .state
        .rails
        .sms
        .replace_outbound_for_tests(fake.clone());
    for (path, body) in [
        (
            "/api/v1/sms/accounts",
            json!({ "receive_number": PAYER, "notify_phone": PAYER_PHONE }),
        ),
        (
            "/api/v1/sms/accounts",
            json!({ "receive_number": PAYEE, "notify_phone": PAYEE_PHONE }),
        ),
        (
            "/api/v1/accounts",
            json!({ "id": "operator:float", "kind": "operator_float" }),
        ),
        (
            "/api/v1/transfers",
            json!({ "transfers": [{ "id": "cash-in", "debit_account": "operator:float",
                     "credit_account": format!("sms:{PAYER}"), "amount": "5000" }] }),
        ),
        (
            "/api/v1/sms/envelopes/import",
            json!({ "text": SEED_ENVELOPE }),
        ),
        (
            "/api/v1/sms/envelopes/26399912345/bind",
            json!({ "account": PAYER }),
        ),
    ] {
        let (status, answer) = server.post(path, body).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
    }
    let envelope = offpay_sms_tan::import::parse_envelope(SEED_ENVELOPE).unwrap();
    let text = offpay_sms_tan::compose::low_text(
        &envelope,
        "26399912345",
        &AccountNumber::parse(PAYEE).unwrap(),
        &Amount::parse("120", Currency::KES).unwrap(),
        1,
    )
    .unwrap();
    let gateway_token =
        std::fs::read_to_string(server.data_dir().join("sms-gateway.token")).unwrap();
    let body = json!({ "from": PAYER_PHONE, "text": text, "message_id": "m-1" }).to_string();
    let (status, answer) = server
        .call(
            "POST",
            "/sms/webhook",
            Some(&body),
            Some(gateway_token.trim()),
        )
        .await;
    assert!(status.is_success(), "{status} {answer}");
    assert!(answer["replies"][0].as_str().unwrap().starts_with("PAID "));
    // Refused once, then handed over: two attempts, one accepted.
    wait_until(|| {
        fake.sent()
            .iter()
            .any(|sent| sent.to == PAYEE_PHONE && matches!(sent.outcome, SendOutcome::Sent { .. }))
    })
    .await;
    let sent = fake.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(matches!(sent[0].outcome, SendOutcome::Failed(_)));
    assert_eq!(sent[0].text, sent[1].text);
    assert!(
        sent[1]
            .text
            .starts_with("RECEIVED KES 120.00 FROM 111100002222"),
        "{}",
        sent[1].text
    );
    // A permanent refusal is not retried: it waits under `dead:` for the operator.
    fake.script([SendOutcome::Failed(SendFailure::Permanent {
        reason: "the number is blacklisted".into(),
    })]);
    let text = offpay_sms_tan::compose::low_text(
        &envelope,
        "26399912345",
        &AccountNumber::parse(PAYEE).unwrap(),
        &Amount::parse("5", Currency::KES).unwrap(),
        2,
    )
    .unwrap();
    let body = json!({ "from": PAYER_PHONE, "text": text, "message_id": "m-2" }).to_string();
    let (status, _) = server
        .call(
            "POST",
            "/sms/webhook",
            Some(&body),
            Some(gateway_token.trim()),
        )
        .await;
    assert!(status.is_success());
    wait_until(|| fake.sent().len() == 3).await;
    tokio::time::timeout(WAIT_MAX, async {
        loop {
            let (_, outbox) = server.get("/api/v1/sms/outbox").await;
            if outbox["outbox"] == json!([]) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the refused SMS leaves the queue at once (not kept for a retry)");
    assert_eq!(fake.sent().len(), 3);
    let (_, status) = server.get("/api/v1/sms/status").await;
    assert_eq!(status["gateway"], "fake");
    assert_eq!(status["send_failures"], 2);
}

#[tokio::test]
async fn notices_go_through_the_fake_gateway_on_every_backend() {
    for kind in BackendKind::all("notices_go_through_the_fake_gateway") {
        notices_go_through_the_fake_gateway(kind).await;
    }
}
