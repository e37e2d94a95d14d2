//! Rail 2 end to end through the generic webhook of a real `offpay serve` process: every security
//! level, the seed's attacks, row reuse, envelope exhaustion and registration, limits, phone
//! binding, gateway retries, scheduled payments, the merchant terminal, `offpay sms send`, and
//! bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Amounts in minor units are written `whole_cents` (`1500_00` is KES 1500.00).
#![allow(clippy::inconsistent_digit_grouping)]

mod sms_common;

use std::time::{Duration, Instant};

use serde_json::json;
use sms_common::*;

fn each_security_level_pays_through_the_webhook(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    // Low: the seed's own SMS, as typed; the confirmation is the seed's: row 20 gives 338421.
    let reply = server.sms(
        PAYER_PHONE,
        "263 999 12345 * 901020377865 * 200000.00* 1 * 9 2 7 9 2 7",
    );
    assert!(
        reply.starts_with("PAID 26399912345*901020377865*200000.00*20*338421 REF "),
        "{reply}"
    );
    assert_eq!(server.balance(PAYEE), 200_000_00);
    // Middle: payee grid-coded, amount + column 2, size code, TAN; confirmed with a bank row.
    let reply = server.sms(
        PAYER_PHONE,
        &grid_pay(&envelope, "PAYG", PAYEE, &kes("1500"), 2),
    );
    assert!(reply.starts_with("PAID PAYG 26399912345 2 "), "{reply}");
    let (row, bank_tan) = bank_row(&reply);
    assert_eq!((row, bank_tan), (19, tan(&envelope, 19)));
    assert_eq!(server.balance(PAYEE), 201_500_00);
    // High: the callback echoes the instruction with a bank row, its TAN and SUM; the OK carries
    // the payer's next row's checksum over the payee and amount (protocol v2).
    let echo = server.sms(
        PAYER_PHONE,
        &grid_pay(&envelope, "PAYC", PAYEE, &kes("300"), 3),
    );
    assert!(echo.starts_with("CHECK PAYC 26399912345 3 "), "{echo}");
    let (callback_row, callback_tan) = bank_row(&echo);
    assert_eq!(callback_row, 18);
    assert!(echo.contains(&format!("SUM {}", sum(&envelope, 18, PAYEE, &kes("300")))));
    assert_eq!(
        server.balance(PAYEE),
        201_500_00,
        "nothing paid before the OK"
    );
    let ok = format!(
        "OK {SEED_EUIN} {callback_row} {callback_tan} 4 {}",
        sum(&envelope, 4, PAYEE, &kes("300"))
    );
    let reply = server.sms(PAYER_PHONE, &ok);
    assert!(reply.starts_with("PAID "), "{reply}");
    assert_eq!(server.balance(PAYEE), 201_800_00);
    // Fees 10 + 15 + 25.
    assert_eq!(
        server.balance(PAYER),
        1_000_000_00 - 201_800_00 - 10_00 - 15_00 - 25_00
    );
    // The payee's notices went to the durable queue.
    let notices: Vec<_> = server
        .outbox()
        .into_iter()
        .filter(|(to, _)| to == PAYEE_PHONE)
        .collect();
    assert_eq!(notices.len(), 3, "{notices:?}");
    assert!(
        notices[0]
            .1
            .starts_with("RECEIVED KES 200000.00 FROM 111100002222")
    );
    // Books balance.
    assert_eq!(server.get("/api/v1/totals")["balanced"], true);
}

fn the_seed_attacks_row_reuse_and_gateway_retries_fail(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    // Payee substitution at the low level: the seed's SMS with another payee whose second digit
    // from the right differs (row 1's recipe covers A2 and A7; an account differing only in
    // digits the recipe skips is the residual the protocol document states).
    let thief = "901020377875";
    server.post("/api/v1/sms/accounts", json!({ "receive_number": thief }));
    let reply = server.sms(
        PAYER_PHONE,
        "PAY 26399912345 901020377875 200000.00 1 927927",
    );
    assert!(reply.starts_with("Not accepted"), "{reply}");
    assert_eq!(server.balance(thief), 0);
    // Amount inflation at the middle level: the interceptor adds to the coded amount.
    // It does not know the amount or the size code of a larger class, so it adds blindly to the
    // coded amount and keeps the size code: KES 2000 becomes KES 200000.
    let honest = grid_pay(&envelope, "PAYG", PAYEE, &kes("2000"), 2);
    let coded = honest.split(' ').rev().nth(2).unwrap().to_owned();
    let (whole, cents) = coded.split_once('.').unwrap();
    let plus = whole.parse::<u64>().unwrap() * 100 + cents.parse::<u64>().unwrap() + 198_000_00;
    let inflated = honest.replace(&coded, &format!("{}.{:02}", plus / 100, plus % 100));
    let reply = server.sms(PAYER_PHONE, &inflated);
    assert!(reply.contains("do not match"), "{reply}");
    assert_eq!(server.balance(PAYEE), 0);
    // Row 2 was used up by the refused attempt: the honest SMS on row 2 is refused too.
    let reply = server.sms(PAYER_PHONE, &honest);
    assert!(reply.starts_with("Row 2 was used before"), "{reply}");
    // A good payment, then its replay under a new gateway id from another phone: the row is
    // used. The holder's own resend from their phone gets the first answer again (issue 18).
    let good = grid_pay(&envelope, "PAYG", PAYEE, &kes("2000"), 3);
    let first = server.sms_with_id("gw-7", PAYER_PHONE, &good);
    assert_eq!(first["verdict"], "accepted", "{first}");
    let replay = server.sms("+254799999999", &good);
    assert!(replay.starts_with("Row 3 was used before"), "{replay}");
    let resend = server.sms_with_id("gw-8", PAYER_PHONE, &good);
    assert_eq!(resend["duplicate"], true, "{resend}");
    assert_eq!(resend["replies"], first["replies"]);
    // A gateway retry (same message id) gets the same reply and pays nothing again.
    let retry = server.sms_with_id("gw-7", PAYER_PHONE, &good);
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["replies"], first["replies"]);
    assert_eq!(server.balance(PAYEE), 2000_00);
    // Concurrent retries of one new message: exactly one payment.
    let again = grid_pay(&envelope, "PAYG", PAYEE, &kes("100"), 4);
    let answers: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| server.sms_with_id("gw-race", PAYER_PHONE, &again)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    assert_eq!(
        answers
            .iter()
            .filter(|answer| answer["duplicate"] == false)
            .count(),
        1
    );
    assert_eq!(server.balance(PAYEE), 2100_00);
    assert_eq!(server.get("/api/v1/totals")["balanced"], true);
}

fn wrong_codes_lock_the_envelope_and_the_operator_unlocks_it(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    for row in 5..10u8 {
        let wrong = (tan(&envelope, row).parse::<u16>().unwrap() + 1) % 1000;
        server.sms(PAYER_PHONE, &format!("BAL {SEED_EUIN} {row} {wrong:03}"));
    }
    assert_eq!(server.envelope(SEED_EUIN)["status"], "locked");
    let reply = server.sms(
        PAYER_PHONE,
        &format!("BAL {SEED_EUIN} 10 {}", tan(&envelope, 10)),
    );
    assert!(reply.contains("locked"), "{reply}");
    let flags = server.get("/api/v1/fraud?rail=sms");
    assert!(flags.to_string().contains("envelope_locked"), "{flags}");
    server.post(
        &format!("/api/v1/sms/envelopes/{SEED_EUIN}/unlock"),
        json!({}),
    );
    let reply = server.sms(
        PAYER_PHONE,
        &format!("BAL {SEED_EUIN} 11 {}", tan(&envelope, 11)),
    );
    assert!(reply.starts_with("BALANCE KES 1000000.00"), "{reply}");
}

fn rows_run_out_and_a_new_envelope_is_registered_with_the_last_one(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    // Each BAL with a row uses it; the bank keeps the last row for registration and needs one
    // more for a payment's confirmation.
    for row in 1..=18u8 {
        let reply = server.sms(
            PAYER_PHONE,
            &format!("BAL {SEED_EUIN} {row} {}", tan(&envelope, row)),
        );
        assert!(reply.starts_with("BALANCE"), "row {row}: {reply}");
    }
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("5"), 19));
    assert!(reply.contains("too few rows left"), "{reply}");
    assert_eq!(server.balance(PAYEE), 0);
    let next = server.issue_envelope();
    let reg = register(&envelope, &next.euin, 20);
    let reply = server.sms(PAYER_PHONE, &reg);
    assert!(reply.contains("is now registered"), "{reply}");
    assert_eq!(server.envelope(SEED_EUIN)["status"], "retired");
    assert_eq!(server.envelope(&next.euin.to_string())["status"], "active");
    let reply = server.sms(PAYER_PHONE, &low_pay(&next, PAYEE, &kes("5"), 1));
    assert!(reply.starts_with("PAID "), "{reply}");
    assert_eq!(server.balance(PAYEE), 5_00);
    // The old envelope is void (a new message: the same BAL again would get its first answer).
    let reply = server.sms(
        PAYER_PHONE,
        &format!("STMT {SEED_EUIN} 17 {}", tan(&envelope, 17)),
    );
    assert!(reply.contains("not in use"), "{reply}");
}

fn limits_and_phone_binding_are_enforced(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let reply = server.sms(
        PAYER_PHONE,
        &signed(&envelope, &format!("LIMIT {SEED_EUIN} EACH 1000 1 000000")),
    );
    assert!(
        reply.starts_with("DONE: limit per payment KES 1000.00"),
        "{reply}"
    );
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("1000.01"), 2));
    assert!(
        reply.contains("above your limit for one payment"),
        "{reply}"
    );
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("1000"), 3));
    assert!(reply.starts_with("PAID "), "{reply}");
    // The operator sets a daily limit; the second payment would pass it.
    server.post(
        &format!("/api/v1/sms/accounts/{PAYER}"),
        json!({ "per_day": "1500" }),
    );
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("600"), 4));
    assert!(reply.contains("daily limit"), "{reply}");
    assert_eq!(server.balance(PAYEE), 1000_00);
    // Phone binding: only the bound phone may instruct; a stranger neither pays nor uses rows.
    server.post(
        &format!("/api/v1/sms/accounts/{PAYER}"),
        json!({ "bound_phones": [PAYER_PHONE] }),
    );
    let before = server.envelope(SEED_EUIN)["used_rows"].clone();
    let reply = server.sms("+254799999999", &low_pay(&envelope, PAYEE, &kes("5"), 5));
    assert!(reply.contains("only from its registered phones"), "{reply}");
    assert_eq!(server.envelope(SEED_EUIN)["used_rows"], before);
    // From the bound phone, balance needs no row.
    let reply = server.sms(PAYER_PHONE, &format!("BAL {SEED_EUIN}"));
    assert!(reply.starts_with("BALANCE KES"), "{reply}");
}

fn every_malformed_sms_gets_a_short_plain_reply_and_changes_nothing(kind: BackendKind) {
    let server = TestServer::start(kind);
    server.seed_world();
    let texts = [
        "",
        "hello",
        "PAY",
        "PAY 26399912345 901020377865",
        "PAY 26399912345 901020377865 200000.00 1",
        "PAY 26399912345 901020377865 20o000 1 927927",
        "PAY 26399912345 901020377865 200000.00 99 927927",
        "PAYG 26399912345 1 90 447",
        "OK 26399912345 20",
        "LATER 2026-02-30 09:00 PAY 26399912345 901020377865 5 1 927927",
        "LIMIT 26399912345 MONTH 500 1 123",
        "PASSWORD 26399912345 1 123 short",
        "DISPUTE 26399912345 1234 1 123",
        "PAY 26399912345 901020377865 5.123 1 927927",
    ];
    for text in texts {
        let answer = server.sms_with_id(&format!("bad-{text}"), PAYER_PHONE, text);
        assert_eq!(answer["verdict"], "malformed", "{text}: {answer}");
        let reply = answer["replies"][0].as_str().unwrap();
        assert!(reply.len() <= 160 && reply.len() > 15, "{text}: {reply}");
        assert!(!reply.contains(PAYER), "{reply}");
    }
    let envelope = server.envelope(SEED_EUIN);
    assert_eq!(envelope["used_rows"], json!([]));
    assert_eq!(envelope["consecutive_failures"], 0);
    assert_eq!(server.balance(PAYER), 1_000_000_00);
    // Unauthenticated gateway calls are refused.
    let response = http()
        .post(format!("{}/sms/webhook", server.base))
        .json(&json!({ "from": PAYER_PHONE, "text": "HELP", "message_id": "x" }))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

fn a_scheduled_payment_is_paid_by_the_scheduler_at_its_time(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    // The next whole minute (UTC, the default operator time zone), at least 5 s ahead.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let due = (now + 5).div_ceil(60) * 60;
    let civil = offpay_sms_tan::civil_time::CivilDateTime::from_unix(
        offpay_sms_tan::civil_time::UnixSeconds(due),
        0,
    )
    .unwrap();
    let text = format!(
        "LATER {:04}-{:02}-{:02} {:02}:{:02} {}",
        civil.year,
        civil.month,
        civil.day,
        civil.hour,
        civil.minute,
        low_pay(&envelope, PAYEE, &kes("750"), 1)
    );
    let reply = server.sms(PAYER_PHONE, &text);
    assert!(reply.starts_with("SCHEDULED KES 750.00"), "{reply}");
    assert_eq!(server.balance(PAYEE), 0);
    assert_eq!(
        server.get("/api/v1/sms/scheduled")["scheduled"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let deadline = Instant::now() + Duration::from_secs(due.saturating_sub(now) + 30);
    while server.balance(PAYEE) == 0 {
        assert!(
            Instant::now() < deadline,
            "the scheduled payment did not run"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(server.balance(PAYEE), 750_00);
    assert!(
        server.get("/api/v1/sms/scheduled")["scheduled"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let confirmations: Vec<_> = server
        .outbox()
        .into_iter()
        .filter(|(to, text)| to == PAYER_PHONE && text.contains("as scheduled"))
        .collect();
    assert_eq!(confirmations.len(), 1, "{confirmations:?}");
}

fn a_merchant_terminal_takes_envelope_row_and_tan(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let terminal = server.post("/api/v1/sms/terminals", json!({ "payee": PAYEE }));
    let token = terminal["token"].as_str().unwrap().to_owned();
    let pay = |request_id: &str, row: u8, tan_text: &str| {
        let response = http()
            .post(format!("{}/sms/terminal/payments", server.base))
            .bearer_auth(&token)
            .json(
                &json!({ "request_id": request_id, "payer": "263 999 12345", "row": row,
                           "tan": tan_text, "amount": "42.50", "payer_phone": PAYER_PHONE }),
            )
            .send()
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<serde_json::Value>().unwrap(),
        )
    };
    let (status, answer) = pay("r1", 1, &tan(&envelope, 1));
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("PAID KES 42.50")
    );
    // A retried request pays once; a reused row is refused; a wrong TAN is refused.
    let (_, retry) = pay("r1", 1, &tan(&envelope, 1));
    assert_eq!(retry["duplicate"], true);
    let (status, reused) = pay("r2", 1, &tan(&envelope, 1));
    assert_eq!(status, 422);
    assert!(reused["message"].as_str().unwrap().contains("used before"));
    let wrong = (tan(&envelope, 2).parse::<u16>().unwrap() + 1) % 1000;
    let (status, _) = pay("r3", 2, &format!("{wrong:03}"));
    assert_eq!(status, 422);
    assert_eq!(server.balance(PAYEE), 42_50);
    // A wrong terminal token is refused.
    let response = http()
        .post(format!("{}/sms/terminal/payments", server.base))
        .bearer_auth("tdeadbeef.00")
        .json(&json!({ "request_id": "x", "payer": SEED_EUIN, "row": 3, "tan": "000", "amount": "1" }))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

fn offpay_sms_send_prints_the_reply_and_statement_and_disputes_work(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let send = |text: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_offpay"))
            .args([
                "sms",
                "send",
                "--server",
                &server.base,
                "--from",
                PAYER_PHONE,
                "--token-file",
            ])
            .arg(server.data_dir.join("sms-gateway.token"))
            .arg(text)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let paid = send(&low_pay(&envelope, PAYEE, &kes("120"), 1));
    assert!(paid.starts_with("PAID "), "{paid}");
    let reference = paid.split("REF ").nth(1).unwrap()[..8].to_owned();
    let statement = send(&format!("STMT {SEED_EUIN} 2 {}", tan(&envelope, 2)));
    assert!(statement.contains(&reference), "{statement}");
    assert!(statement.contains("BALANCE KES 999870.00"), "{statement}");
    // The payer reports the payment; the operator decides; only then is anything moved back.
    let reply = send(&signed(
        &envelope,
        &format!("DISPUTE {SEED_EUIN} {reference} 3 000000"),
    ));
    assert!(reply.contains("The operator decides"), "{reply}");
    assert_eq!(server.balance(PAYEE), 120_00);
    let disputes = server.get("/api/v1/sms/disputes");
    let key = disputes["disputes"][0]["key"].as_str().unwrap().to_owned();
    let decided = server.post(
        &format!("/api/v1/sms/disputes/{key}/decide"),
        json!({ "decision": "refund", "note": "paid the wrong shop" }),
    );
    assert_eq!(decided["status"], "refunded");
    assert_eq!(server.balance(PAYEE), 0);
    assert_eq!(server.get("/api/v1/totals")["balanced"], true);
}

fn admin_envelope_print_issues_unallocated_envelopes_and_writes_a_pdf(kind: BackendKind) {
    let server = TestServer::start(kind);
    let out = server.data_dir.join("envelopes.pdf");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_offpay"))
        .args(["admin", "--server", &server.base, "--token-file"])
        .arg(server.data_dir.join("admin.token"))
        .args([
            "--json", "envelope", "print", "--count", "3", "--rows", "20", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["count"], 3);
    let pdf = std::fs::read(&out).unwrap();
    assert!(
        pdf.starts_with(b"%PDF-") && pdf.len() > 3 * 2000,
        "{} bytes",
        pdf.len()
    );
    let first = answer["first"].as_str().unwrap();
    let envelope = server.envelope(first);
    assert_eq!(envelope["status"], "unallocated");
    assert_eq!(envelope["rows"], 20);
    // What the server shows of an envelope is bookkeeping only, never a secret.
    let mut keys: Vec<&str> = envelope
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "account",
            "consecutive_failures",
            "euin",
            "free_rows",
            "imported",
            "rows",
            "status",
            "used_rows"
        ]
    );
}

offpay_test_support::on_every_backend!(
    each_security_level_pays_through_the_webhook,
    the_seed_attacks_row_reuse_and_gateway_retries_fail,
    wrong_codes_lock_the_envelope_and_the_operator_unlocks_it,
    rows_run_out_and_a_new_envelope_is_registered_with_the_last_one,
    limits_and_phone_binding_are_enforced,
    every_malformed_sms_gets_a_short_plain_reply_and_changes_nothing,
    a_scheduled_payment_is_paid_by_the_scheduler_at_its_time,
    a_merchant_terminal_takes_envelope_row_and_tan,
    offpay_sms_send_prints_the_reply_and_statement_and_disputes_work,
    admin_envelope_print_issues_unallocated_envelopes_and_writes_a_pdf,
);
