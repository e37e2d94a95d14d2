//! Issue 18's four attacks, end to end through the webhook of a real `offpay serve`: a rewritten
//! `REG` or settings message (attack 1), a database administrator's INSERT or UPDATE (attack 2),
//! amount inflation at each level (attack 3). Attack 4 (stored texts) is `sms_database_scan`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::inconsistent_digit_grouping)]

mod sms_common;

use std::time::{Duration, Instant};

use serde_json::Value;
use sms_common::*;

fn rewritten_settings_and_reg_are_refused_through_the_webhook(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    // HIGH ON rewritten to OFF on its way.
    let genuine = signed(&envelope, &format!("HIGH {SEED_EUIN} ON 1 000000"));
    let reply = server.sms(PAYER_PHONE, &genuine.replace(" ON ", " OFF "));
    assert!(reply.contains("changed on its way"), "{reply}");
    // DAY 500 rewritten to NONE.
    let genuine = signed(&envelope, &format!("LIMIT {SEED_EUIN} DAY 500 2 000000"));
    let reply = server.sms(PAYER_PHONE, &genuine.replace(" 500 ", " NONE "));
    assert!(reply.contains("changed on its way"), "{reply}");
    // The holder moves to a derived envelope (row 3 of the seed's), whose next REG an
    // interceptor rewrites to name his own blank envelope, recoded with the row's grid (he knows
    // its codes: the strongest interceptor).
    let current = server.issue_envelope();
    let reply = server.sms(PAYER_PHONE, &register(&envelope, &current.euin, 3));
    assert!(reply.contains("is now registered"), "{reply}");
    let envelope = current;
    let victims = server.issue_envelope();
    let thiefs = server.issue_envelope();
    let genuine = register(&envelope, &victims.euin, 3);
    let recoded = register(&envelope, &thiefs.euin, 3);
    let forged = format!(
        "{} {}",
        recoded.rsplit_once(' ').unwrap().0,
        genuine.rsplit(' ').next().unwrap()
    );
    let reply = server.sms(PAYER_PHONE, &forged);
    assert!(reply.contains("changed on its way"), "{reply}");
    assert_eq!(
        server.envelope(&thiefs.euin.to_string())["status"],
        "unallocated"
    );
    let theft = server.sms("+254799999999", &low_pay(&thiefs, PAYEE, &kes("5000"), 1));
    assert!(theft.contains("not in use"), "{theft}");
    assert_eq!(flags(&server, "content_mismatch"), 3);
    // Flagged as attempts in transit, not counted as the holder's failures.
    assert_eq!(
        server.envelope(&envelope.euin.to_string())["consecutive_failures"],
        0
    );
    // The holder's own messages, untouched, go through.
    let reply = server.sms(
        PAYER_PHONE,
        &signed(&envelope, &format!("HIGH {} ON 4 000000", envelope.euin)),
    );
    assert!(reply.starts_with("DONE"), "{reply}");
    let reply = server.sms(PAYER_PHONE, &register(&envelope, &victims.euin, 5));
    assert!(reply.contains("is now registered"), "{reply}");
    assert_eq!(server.balance(PAYEE), 0);
}

fn inflation_is_refused_at_every_level_through_the_webhook(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    // Low: 100 read and changed to 700 (the seed envelope's recipes are the seed's: row 1's
    // covers S1).
    let genuine = low_pay(&envelope, PAYEE, &kes("100"), 1);
    let reply = server.sms(PAYER_PHONE, &genuine.replace(" 100.00 ", " 700.00 "));
    assert!(reply.starts_with("Not accepted"), "{reply}");
    // Middle and high on a derived envelope: 60,000 becomes 90,000 (same size class).
    let next = server.issue_envelope();
    let reply = server.sms(PAYER_PHONE, &register(&envelope, &next.euin, 2));
    assert!(reply.contains("is now registered"), "{reply}");
    for (keyword, row) in [("PAYG", 1u8), ("PAYC", 2)] {
        let genuine = grid_pay(&next, keyword, PAYEE, &kes("60000"), row);
        let mut parts: Vec<String> = genuine.split(' ').map(str::to_owned).collect();
        let coded = parts.len() - 3;
        let (whole, cents) = parts[coded].split_once('.').unwrap();
        parts[coded] = format!("{}.{cents}", whole.parse::<u64>().unwrap() + 30_000);
        let reply = server.sms(PAYER_PHONE, &parts.join(" "));
        // The SUM misses where the change moved it: refused as changed on its way (not the
        // holder's failure), or as codes that do not match.
        assert!(reply.starts_with("Not accepted"), "{keyword}: {reply}");
    }
    assert_eq!(server.balance(PAYEE), 0);
    assert!(
        server.get("/api/v1/sms/scheduled")["scheduled"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

fn a_dba_insert_or_update_moves_nothing_through_a_real_server(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    // INSERT: a scheduled payment due in two seconds, every field right, no MAC.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = format!("sched:{:012}:00000000000000aa", now + 2);
    let value = serde_json::json!({
        "version": 1, "message_id": "dba", "payer": PAYER, "payee": PAYEE,
        "amount_minor": 500_000_00u64, "currency": "KES", "level": "low", "due": now + 2,
        "reply_to": PAYER_PHONE, "reference": "12345678"
    });
    let changed = dba(
        &server,
        kind,
        "INSERT INTO records (namespace, key, value, version) VALUES ('sms', ?1, ?2, 1)",
        "INSERT INTO records (namespace, key, value, version) VALUES ('sms', $1, $2, 1)",
        &key,
        value.to_string().as_bytes(),
    );
    assert_eq!(changed, 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while flags(&server, "record_tampered") == 0 {
        assert!(
            Instant::now() < deadline,
            "the scheduler never looked at it"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(server.balance(PAYEE), 0);
    assert!(
        server.get("/api/v1/sms/scheduled")["scheduled"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // UPDATE: a pending callback payment raised from 300 to 30,000 before the honest OK.
    let echo = server.sms(
        PAYER_PHONE,
        &grid_pay(&envelope, "PAYC", PAYEE, &kes("300"), 1),
    );
    let (callback_row, callback_tan) = bank_row(&echo);
    let pending_key = format!("pend:{SEED_EUIN}:{callback_row:02}");
    let stored: Value = {
        let text = match kind {
            BackendKind::Sqlite => {
                let connection =
                    rusqlite::Connection::open(server.data_dir.join("offpay.sqlite")).unwrap();
                let bytes: Vec<u8> = connection
                    .query_row(
                        "SELECT value FROM records WHERE namespace = 'sms' AND key = ?1",
                        [&pending_key],
                        |row| row.get(0),
                    )
                    .unwrap();
                bytes
            }
            BackendKind::Postgres => {
                let mut client =
                    postgres::Client::connect(server.database_url().unwrap(), postgres::NoTls)
                        .unwrap();
                client
                    .query_one(
                        "SELECT value FROM records WHERE namespace = 'sms' AND key = $1",
                        &[&pending_key],
                    )
                    .unwrap()
                    .get(0)
            }
        };
        serde_json::from_slice(&text).unwrap()
    };
    let mut raised = stored.clone();
    raised["amount_minor"] = Value::from(30_000_00u64);
    let changed = dba(
        &server,
        kind,
        "UPDATE records SET value = ?2 WHERE namespace = 'sms' AND key = ?1",
        "UPDATE records SET value = $2 WHERE namespace = 'sms' AND key = $1",
        &pending_key,
        raised.to_string().as_bytes(),
    );
    assert_eq!(changed, 1);
    let ok = format!(
        "OK {SEED_EUIN} {callback_row} {callback_tan} 2 {}",
        sum(&envelope, 2, PAYEE, &kes("300"))
    );
    let reply = server.sms(PAYER_PHONE, &ok);
    assert!(!reply.starts_with("PAID"), "{reply}");
    assert_eq!(server.balance(PAYEE), 0);
    assert_eq!(flags(&server, "record_tampered"), 2);
}

/// Issue 18, the spending window: a DBA who resets an account's day and week totals with a real
/// SQL UPDATE (bumping the version, so every process reads his row) does not let the holder pay
/// past the daily limit: the window fails its MAC, the account pays nothing, `record_tampered`.
fn a_dba_reset_spending_window_lets_nothing_past_the_daily_limit(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let answer = server.post(
        &format!("/api/v1/sms/accounts/{PAYER}"),
        serde_json::json!({ "per_day": "150" }),
    );
    assert!(answer.is_object(), "{answer}");
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("100"), 1));
    assert!(reply.starts_with("PAID "), "{reply}");
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("100"), 2));
    assert!(!reply.starts_with("PAID"), "the daily limit holds: {reply}");
    assert_eq!(server.balance(PAYEE), 100_00);
    // The DBA: today's and this week's totals back to zero.
    let key = format!("acct:{PAYER}");
    let (mut account, version) = dba_read_json(&server, kind, &key);
    assert_eq!(account["spending"]["today_minor"], 100_00, "{account}");
    account["spending"]["today_minor"] = Value::from(0);
    account["spending"]["week_minor"] = Value::from(0);
    account["spending"]["per_payee_today"] = Value::Array(Vec::new());
    let changed = match kind {
        BackendKind::Sqlite => {
            let connection =
                rusqlite::Connection::open(server.data_dir.join("offpay.sqlite")).unwrap();
            connection.busy_timeout(Duration::from_secs(10)).unwrap();
            connection
                .execute(
                    "UPDATE records SET value = ?2, version = ?3 \
                     WHERE namespace = 'sms' AND key = ?1",
                    rusqlite::params![key, account.to_string().as_bytes(), version + 1],
                )
                .unwrap() as u64
        }
        BackendKind::Postgres => {
            let mut client =
                postgres::Client::connect(server.database_url().unwrap(), postgres::NoTls).unwrap();
            client
                .execute(
                    "UPDATE records SET value = $2, version = $3 \
                     WHERE namespace = 'sms' AND key = $1",
                    &[&key, &account.to_string().as_bytes(), &(version + 1)],
                )
                .unwrap()
        }
    };
    assert_eq!(changed, 1);
    // Past the server's record cache (5 s), so the server reads the DBA's row, not its own.
    std::thread::sleep(Duration::from_secs(6));
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("100"), 3));
    assert!(!reply.starts_with("PAID"), "{reply}");
    assert_eq!(server.balance(PAYEE), 100_00, "nothing more moved");
    assert_eq!(flags(&server, "record_tampered"), 1);
}

/// Issue 18, gap 1, through the webhook of a real server: with the default cap (no
/// `printed_recipe_max` for KES), a row of the imported seed envelope pays KES 900.00 but not an
/// amount its printed checksum cannot tell from a smaller one above the cap (1,000.00 → 9,000.00
/// on row 4, which sees LS and S3 only), at the low and the middle level; a derived envelope's
/// row pays KES 9,000.00.
fn imported_rows_pay_only_up_to_the_cap_through_the_webhook(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let mut settings = server.get("/api/v1/sms/settings");
    settings["printed_recipe_max"] = Value::Array(Vec::new());
    server.post("/api/v1/sms/settings", settings);
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("900"), 1));
    assert!(reply.starts_with("PAID "), "{reply}");
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("9000"), 4));
    assert!(reply.contains("printed checksums"), "{reply}");
    let reply = server.sms(
        PAYER_PHONE,
        &grid_pay(&envelope, "PAYG", PAYEE, &kes("9000"), 5),
    );
    assert!(reply.contains("printed checksums"), "{reply}");
    assert_eq!(server.balance(PAYEE), 900_00);
    // The holder moves to a derived envelope (registered with row 6), which pays 9,000.00.
    let next = server.issue_envelope();
    let reply = server.sms(PAYER_PHONE, &register(&envelope, &next.euin, 6));
    assert!(reply.contains("is now registered"), "{reply}");
    let reply = server.sms(PAYER_PHONE, &low_pay(&next, PAYEE, &kes("9000"), 1));
    assert!(reply.starts_with("PAID "), "{reply}");
    assert_eq!(server.balance(PAYEE), 9_900_00);
}

/// Issue 18, envelope lifecycle: a lost envelope is retired and replaced at an agent, through
/// the operator API, only with an identity step.
fn a_lost_envelope_is_replaced_at_an_agent_with_an_identity_step(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let next = server.issue_envelope();
    let path = format!("/api/v1/sms/envelopes/{}/replace", next.euin);
    let mut body = serde_json::json!({
        "account": PAYER, "checked_by": "agent-17", "document_kind": "national id",
        "document_number": "", "reason": "lost"
    });
    let (status, answer) = server.api(reqwest::Method::POST, &path, Some(body.clone()));
    assert_eq!(status, 400, "{answer}");
    assert_eq!(server.envelope(SEED_EUIN)["status"], "active");
    body["document_number"] = Value::from("A1234567");
    let answer = server.post(&path, body);
    assert_eq!(answer["status"], "active", "{answer}");
    assert_eq!(server.envelope(SEED_EUIN)["status"], "retired");
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("5"), 1));
    assert!(reply.contains("not in use"), "{reply}");
    let reply = server.sms(PAYER_PHONE, &low_pay(&next, PAYEE, &kes("5"), 1));
    assert!(reply.starts_with("PAID "), "{reply}");
    assert_eq!(server.balance(PAYEE), 5_00);
}

offpay_test_support::on_every_backend!(
    rewritten_settings_and_reg_are_refused_through_the_webhook,
    inflation_is_refused_at_every_level_through_the_webhook,
    a_dba_insert_or_update_moves_nothing_through_a_real_server,
    a_lost_envelope_is_replaced_at_an_agent_with_an_identity_step,
    a_dba_reset_spending_window_lets_nothing_past_the_daily_limit,
    imported_rows_pay_only_up_to_the_cap_through_the_webhook,
);
