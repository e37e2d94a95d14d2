//! Issue 18, the bank's database administrator, end to end through the webhook of a real
//! `offpay serve` on each backend, with real SQL: an envelope record edited (a paid row marked
//! unused, to replay the paid message) or put back to an earlier authentic copy moves nothing and
//! is raised as `record_tampered`; the holder is not blamed.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::inconsistent_digit_grouping)]

mod sms_common;

use serde_json::Value;
use sms_common::*;

/// A phone the payer never used: the accomplice who re-sends an intercepted message (the payer
/// binds no phone, so it is taken from any).
const OTHER_PHONE: &str = "+254799999999";

/// The replay an unsealed envelope allowed: a paid row marked unused by hand, the paid message
/// sent again from another phone. Refused, flagged, the holder's failure count untouched.
fn a_paid_row_marked_unused_by_sql_replays_nothing(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let paid = low_pay(&envelope, PAYEE, &kes("100"), 1);
    let reply = server.sms(PAYER_PHONE, &paid);
    assert!(reply.starts_with("PAID "), "{reply}");
    let key = format!("env:{SEED_EUIN}");
    let (bytes, version) = dba_read(&server, kind, &key);
    let mut record: Value = serde_json::from_slice(&bytes).unwrap();
    let used = record["used_rows"].as_u64().unwrap();
    assert_eq!(used & 1, 1, "row 1 is used");
    // Row 1 marked unused (the bank's confirmation row stays as it is).
    record["used_rows"] = Value::from(used & !1);
    dba_write(&server, kind, &key, record.to_string().as_bytes(), version);
    let reply = server.sms(OTHER_PHONE, &paid);
    assert!(!reply.starts_with("PAID"), "{reply}");
    assert_eq!(server.balance(PAYEE), 100_00, "the replay paid nothing");
    assert_eq!(flags(&server, "record_tampered"), 1);
    // Refused for the envelope's MAC (the rows cross-check would have caught it too).
    assert_eq!(flags(&server, "envelope"), 1);
    let stored = server.envelope(SEED_EUIN);
    assert_eq!(stored["consecutive_failures"], 0, "{stored}");
    assert_eq!(stored["status"], "active", "{stored}");
}

/// Rollback: the authentic envelope record saved after the first payment is written back after
/// the second, and the second payment's text is sent again from another phone. The account's
/// own record of the rows used disagrees: refused and flagged.
fn an_envelope_put_back_by_sql_to_an_earlier_copy_is_caught(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("100"), 1));
    assert!(reply.starts_with("PAID "), "{reply}");
    let key = format!("env:{SEED_EUIN}");
    let (saved, _) = dba_read(&server, kind, &key);
    let second = low_pay(&envelope, PAYEE, &kes("200"), 2);
    let reply = server.sms(PAYER_PHONE, &second);
    assert!(reply.starts_with("PAID "), "{reply}");
    let (_, version) = dba_read(&server, kind, &key);
    dba_write(&server, kind, &key, &saved, version);
    let reply = server.sms(OTHER_PHONE, &second);
    assert!(!reply.starts_with("PAID"), "{reply}");
    assert_eq!(server.balance(PAYEE), 300_00, "the replay paid nothing");
    assert_eq!(flags(&server, "record_tampered"), 1);
    assert_eq!(flags(&server, "envelope-rows-rollback"), 1);
    assert_eq!(server.envelope(SEED_EUIN)["consecutive_failures"], 0);
}

/// A lost envelope made to pay again: the holder moved to a new envelope by REG (the old one
/// retired), then the DBA wrote the old envelope's earlier, active record back, and the thief
/// who holds the old envelope pays with one of its rows. The account, sealed, names the new
/// envelope: refused and flagged, and the holder's new envelope still pays.
fn a_retired_envelope_put_back_by_sql_pays_nothing(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("100"), 1));
    assert!(reply.starts_with("PAID "), "{reply}");
    let key = format!("env:{SEED_EUIN}");
    let (saved, _) = dba_read(&server, kind, &key);
    let next = server.issue_envelope();
    let reply = server.sms(PAYER_PHONE, &register(&envelope, &next.euin, 3));
    assert!(reply.contains("is now registered"), "{reply}");
    let (taken, _) = bank_row(&reply);
    assert_eq!(server.envelope(SEED_EUIN)["status"], "retired");
    let (_, version) = dba_read(&server, kind, &key);
    dba_write(&server, kind, &key, &saved, version);
    let reply = server.sms(OTHER_PHONE, &low_pay(&envelope, PAYEE, &kes("200"), 2));
    assert!(!reply.starts_with("PAID"), "{reply}");
    assert_eq!(
        server.balance(PAYEE),
        100_00,
        "the old envelope paid nothing"
    );
    assert_eq!(flags(&server, "record_tampered"), 1);
    assert_eq!(flags(&server, "envelope-not-current"), 1);
    let row = if taken == 1 { 2 } else { 1 };
    let reply = server.sms(PAYER_PHONE, &low_pay(&next, PAYEE, &kes("50"), row));
    assert!(reply.starts_with("PAID "), "{reply}");
    assert_eq!(server.balance(PAYEE), 150_00);
}

/// An agent's or operator's step on an envelope edited by SQL (a failure count written in):
/// the replacement and the unlock are refused 409 `record_tampered`, nothing is written over the
/// DBA's record, and the edit is raised once however many steps meet it; the holder is not blamed.
fn an_agent_step_on_an_envelope_edited_by_sql_is_refused_and_raised_once(kind: BackendKind) {
    let server = TestServer::start(kind);
    server.seed_world();
    let next = server.issue_envelope();
    let key = format!("env:{SEED_EUIN}");
    let (mut record, version) = dba_read_json(&server, kind, &key);
    record["consecutive_failures"] = Value::from(2);
    let edited = record.to_string().into_bytes();
    dba_write(&server, kind, &key, &edited, version);
    let replace = serde_json::json!({
        "account": PAYER, "checked_by": "agent-17", "document_kind": "national id",
        "document_number": "A1234567", "reason": "lost"
    });
    for _ in 0..2 {
        let (status, answer) = server.api(
            reqwest::Method::POST,
            &format!("/api/v1/sms/envelopes/{}/replace", next.euin),
            Some(replace.clone()),
        );
        assert_eq!(status, 409, "{answer}");
        assert_eq!(answer["error"]["code"], "record_tampered", "{answer}");
        let (status, answer) = server.api(
            reqwest::Method::POST,
            &format!("/api/v1/sms/envelopes/{SEED_EUIN}/unlock"),
            None,
        );
        assert_eq!(status, 409, "{answer}");
        assert_eq!(answer["error"]["code"], "record_tampered", "{answer}");
    }
    assert_eq!(flags(&server, "record_tampered"), 1);
    assert_eq!(flags(&server, "envelope"), 1);
    assert_eq!(dba_read(&server, kind, &key).0, edited);
    assert_eq!(
        server.envelope(&next.euin.to_string())["status"],
        "unallocated"
    );
}

offpay_test_support::on_every_backend!(
    a_paid_row_marked_unused_by_sql_replays_nothing,
    an_envelope_put_back_by_sql_to_an_earlier_copy_is_caught,
    a_retired_envelope_put_back_by_sql_pays_nothing,
    an_agent_step_on_an_envelope_edited_by_sql_is_refused_and_raised_once,
);
