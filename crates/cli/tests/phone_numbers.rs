//! Issue 24: phone numbers as people write them, through a real `offpay serve` (default country
//! Kenya, from its currency). A message sent from `0711000003` reaches the account bound to
//! `+254711000003`; every spelling of a bound phone is that phone and no other number is; a purse
//! provisioned as `0711…` is found as `+254711…`; a bad number is refused with what is wrong and
//! changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sms_common;

use serde_json::json;
use sms_common::*;

/// The payer's own phone, as the aggregator reports it (E.164).
const BOUND: &str = "+254711000003";

fn a_message_from_a_national_number_reaches_the_account_bound_to_its_e164(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    // The operator binds the phone as the customer said it; it is kept in E.164.
    let account = server.post(
        &format!("/api/v1/sms/accounts/{PAYER}"),
        json!({ "bound_phones": ["0711 000 003", "+254711000003"] }),
    );
    assert_eq!(account["bound_phones"], json!([BOUND]), "{account}");
    // The message arrives with the sender in national form and pays.
    let reply = server.sms("0711000003", &low_pay(&envelope, PAYEE, &kes("100"), 1));
    assert!(reply.starts_with("PAID "), "{reply}");
    assert_eq!(server.balance(PAYEE), 10_000, "KES 100.00");
    // Every other spelling of the bound phone is the bound phone.
    for spelled in [
        "254711000003",
        "+254 711 000 003",
        "00254711000003",
        "000254711000003",
    ] {
        let reply = server.sms(spelled, &format!("BAL {SEED_EUIN}"));
        assert!(reply.starts_with("BALANCE KES"), "{spelled}: {reply}");
    }
    // The payer's reply and notices go to the one spelling.
    assert!(
        server.outbox().iter().all(|(to, _)| to.starts_with('+')),
        "{:?}",
        server.outbox()
    );
}

/// Security: phone binding is not walked around by spelling another number like the bound one.
/// Tanzania's `+255 711 000 003` and a Kenyan neighbour share the bound phone's national digits
/// or all but one; neither is the bound phone, however written, and neither uses a row.
fn another_number_spelled_like_the_bound_one_is_refused(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    server.post(
        &format!("/api/v1/sms/accounts/{PAYER}"),
        json!({ "bound_phones": [BOUND] }),
    );
    let before = server.envelope(SEED_EUIN)["used_rows"].clone();
    for stranger in [
        "+255711000003",
        "00255711000003",
        "0711000004",
        "+254 711 000 030",
    ] {
        let reply = server.sms(stranger, &low_pay(&envelope, PAYEE, &kes("5"), 2));
        assert!(
            reply.contains("only from its registered phones"),
            "{stranger}: {reply}"
        );
    }
    assert_eq!(server.envelope(SEED_EUIN)["used_rows"], before);
    assert_eq!(server.balance(PAYEE), 0);
    // Tanzania's country code without a prefix is no Kenyan number: refused as such, not read
    // as the bound phone.
    let (status, _) = {
        let response = http()
            .post(format!("{}/sms/webhook", server.base))
            .bearer_auth(&server.gateway_token)
            .json(&json!({ "from": "255711000003", "text": "HELP", "message_id": "tz" }))
            .send()
            .unwrap();
        (response.status().as_u16(), ())
    };
    assert_eq!(status, 400);
}

fn bad_numbers_are_refused_with_the_reason_and_change_nothing(kind: BackendKind) {
    let server = TestServer::start(kind);
    server.seed_world();
    let path = format!("/api/v1/sms/accounts/{PAYER}");
    let before = server.get(&path);
    for (number, reason) in [
        ("07110", "is too short for a number in KE"),
        ("+999711000003", "no country code in use"),
        ("+2547110000031234", "too long"),
        ("0711000003 ext 2", "is not part of a phone number"),
    ] {
        let (status, body) = server.api(
            reqwest::Method::POST,
            &path,
            Some(json!({ "bound_phones": [BOUND, number] })),
        );
        assert_eq!(status, 400, "{number}: {body}");
        assert_eq!(body["error"]["code"], "invalid_phone", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(number) && message.contains(reason),
            "{number}: {message}"
        );
    }
    assert_eq!(server.get(&path), before);
    // A gateway reporting a sender that is no phone number: refused before anything is read.
    let response = http()
        .post(format!("{}/sms/webhook", server.base))
        .bearer_auth(&server.gateway_token)
        .json(&json!({ "from": "+999711000003", "text": "HELP", "message_id": "bad-from" }))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "invalid_from", "{body}");
    assert!(server.outbox().is_empty());
}

fn a_purse_provisioned_as_a_national_number_is_found_as_its_e164(kind: BackendKind) {
    let server = TestServer::start(kind);
    let provisioned = server.post(
        "/api/v1/purse/purses",
        json!({ "phone": "0711 000 004", "kind": "customer" }),
    );
    assert_eq!(provisioned["phone"], "+254711000004", "{provisioned}");
    assert_eq!(provisioned["account"], "purse:+254711000004");
    for spelled in [
        "+254711000004",
        "0711000004",
        "254711000004",
        "%2B254%20711%20000%20004",
    ] {
        let shadow = server.get(&format!("/api/v1/purse/purses/{spelled}"));
        assert_eq!(shadow["phone"], "+254711000004", "{spelled}: {shadow}");
    }
    // The same phone spelled otherwise gets no second purse (a second purse of one phone would
    // be a clone the book could not tell apart).
    let (status, body) = server.api(
        reqwest::Method::POST,
        "/api/v1/purse/purses",
        Some(json!({ "phone": "+254 711 000 004" })),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "phone_taken");
    // A number that is no phone is refused with the reason.
    let (status, body) = server.api(
        reqwest::Method::POST,
        "/api/v1/purse/purses",
        Some(json!({ "phone": "07110" })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is too short for a number in KE"),
        "{body}"
    );
    // Tanzania's number with the same national digits is another purse.
    let (status, body) = server.api(
        reqwest::Method::GET,
        "/api/v1/purse/purses/+255711000004",
        None,
    );
    assert_eq!(status, 404, "{body}");
}

offpay_test_support::on_every_backend!(
    a_message_from_a_national_number_reaches_the_account_bound_to_its_e164,
    another_number_spelled_like_the_bound_one_is_refused,
    bad_numbers_are_refused_with_the_reason_and_change_nothing,
    a_purse_provisioned_as_a_national_number_is_found_as_its_e164,
);
