//! Issue 24: a scripted USSD session against a real `offpay serve` (both backends), as an
//! aggregator would drive it: the main menu, a purse holder's balance and statement, an SMS-TAN
//! holder's balance and statement with the envelope number, the language switch, an unknown
//! number, a wrong choice, a bad envelope number, too many steps, a bad token (403, nothing
//! read), and a caller outside the `[ussd] allow_ips` list (403).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_imports)]
mod purse_common;
mod sms_common;

use serde_json::json;
use sms_common::*;

const PURSE_PHONE: &str = "+254711000004";
const STRANGER: &str = "+254799999999";

/// One step of a session: the aggregator's POST; the status and the body. Each call is its own
/// session (a fresh `sessionId`), as each dial of the service code is.
fn dial(server: &TestServer, token: &str, phone: &str, text: &str) -> (u16, String) {
    static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let session = format!(
        "ATUid_{}",
        SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let response = http()
        .post(format!("{}/ussd/{token}", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("sessionId", &session),
            ("serviceCode", "*384*123#"),
            ("phoneNumber", phone),
            ("text", text),
        ]))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.text().unwrap();
    if status == 200 {
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert!(body.chars().count() <= 182, "{body}");
    }
    (status, body)
}

/// `application/x-www-form-urlencoded`, as the aggregators send it.
fn form(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|byte| {
                if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                    char::from(byte).to_string()
                } else {
                    format!("%{byte:02X}")
                }
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn screen(server: &TestServer, phone: &str, text: &str) -> String {
    let (status, body) = dial(server, &server.gateway_token, phone, text);
    assert_eq!(status, 200, "{body}");
    body
}

fn a_scripted_session_shows_balance_and_statement_for_both_rails(kind: BackendKind) {
    let server = TestServer::start(kind);
    server.seed_world();
    server.post(
        &format!("/api/v1/sms/accounts/{PAYER}"),
        json!({ "bound_phones": [PAYER_PHONE] }),
    );
    // A payment by SMS, so that the statement has a line.
    let envelope = parse_seed();
    let reply = server.sms(PAYER_PHONE, &low_pay(&envelope, PAYEE, &kes("250"), 1));
    assert!(reply.starts_with("PAID "), "{reply}");
    // An agent purse provisioned with the CLI as the operator wrote the number, floated, and
    // synced (the float reaches the purse and the shadow account at the sync).
    let directory = tempfile::tempdir().unwrap();
    let cli = purse_common::Cli::new(directory.path());
    let file = directory.path().join("agent.purse");
    let token_file = server.data_dir.join("admin.token");
    let admin = |args: &[&str]| {
        let mut all = vec![
            "admin",
            "--server",
            &server.base,
            "--token-file",
            token_file.to_str().unwrap(),
            "purse",
        ];
        all.extend_from_slice(args);
        cli.json(&all)
    };
    let provisioned = admin(&[
        "provision",
        "--phone",
        "0711 000 004",
        "--out",
        file.to_str().unwrap(),
        "--agent",
    ]);
    assert_eq!(provisioned["phone"], PURSE_PHONE);
    admin(&["float", "--phone", "0711000004", "--amount", "500"]);
    let synced = cli.purse(&file, &["sync", "--server", &server.base]);
    assert_eq!(synced["balance"], "500.00", "{synced}");
    // The purse confirms the credit at its next sync; then the operator's books have it.
    cli.purse(&file, &["sync", "--server", &server.base]);

    // The first screen, for anyone.
    let main = screen(&server, "0711000004", "");
    assert!(main.starts_with("CON offpay\n1 Purse balance"), "{main}");
    assert!(main.contains("6 Help"), "{main}");

    // Purse holder, calling as the network writes the number (national form here).
    let balance = screen(&server, "0711000004", "1");
    assert!(
        balance.starts_with("END Purse balance KES 500.00, as of your last sync on 20"),
        "{balance}"
    );
    let statement = screen(&server, "0711000004", "2");
    assert!(
        statement.starts_with("END Purse statement:\n") && statement.contains(" in KES 500.00"),
        "{statement}"
    );

    // SMS-TAN holder: the envelope number, then the account's own answer.
    let ask = screen(&server, PAYER_PHONE, "3");
    assert!(ask.starts_with("CON Enter the envelope number"), "{ask}");
    let balance = screen(&server, PAYER_PHONE, &format!("3*{SEED_EUIN}"));
    assert!(
        balance.starts_with("END BALANCE KES 999740.00"),
        "{balance}"
    );
    let statement = screen(&server, PAYER_PHONE, &format!("4*{SEED_EUIN}"));
    assert!(
        statement.starts_with("END STMT") && statement.contains("250.00"),
        "{statement}"
    );

    // The language: chosen, set on the account, and the next answer is in it.
    let languages = screen(&server, PAYER_PHONE, "5");
    assert!(
        languages.starts_with("CON Choose your language"),
        "{languages}"
    );
    let set = screen(&server, PAYER_PHONE, &format!("5*2*{SEED_EUIN}"));
    assert_eq!(set, "END Ujumbe wako sasa utakuwa kwa Kiswahili.");
    let balance = screen(&server, PAYER_PHONE, &format!("3*{SEED_EUIN}"));
    assert!(balance.starts_with("END Salio lako ni KES"), "{balance}");

    // Help says payments are by SMS.
    let help = screen(&server, PAYER_PHONE, "6");
    assert!(help.contains("Payments are by SMS"), "{help}");
    // Books balance: the menu moved nothing.
    assert_eq!(server.get("/api/v1/totals")["balanced"], true);
}

fn unknown_numbers_wrong_choices_and_bad_tokens_end_clearly(kind: BackendKind) {
    let server = TestServer::start(kind);
    server.seed_world();
    server.post(
        &format!("/api/v1/sms/accounts/{PAYER}"),
        json!({ "bound_phones": [PAYER_PHONE] }),
    );
    // A number with no purse, and not bound to the envelope's account.
    let none = screen(&server, STRANGER, "1");
    assert_eq!(
        none,
        "END No purse is registered to this phone. An agent can register one."
    );
    let not_bound = screen(&server, STRANGER, &format!("3*{SEED_EUIN}"));
    assert!(
        not_bound.starts_with("END This phone is not registered for that account."),
        "{not_bound}"
    );
    // Nor can it set the account's language.
    let not_bound = screen(&server, STRANGER, &format!("5*3*{SEED_EUIN}"));
    assert!(
        not_bound.starts_with("END This phone is not registered"),
        "{not_bound}"
    );
    let balance = screen(&server, PAYER_PHONE, &format!("3*{SEED_EUIN}"));
    assert!(
        balance.starts_with("END BALANCE KES"),
        "still English: {balance}"
    );
    // Wrong choices, a bad envelope number, too many steps.
    assert_eq!(
        screen(&server, PAYER_PHONE, "9"),
        "END That choice is not on the menu. Please dial again."
    );
    assert_eq!(
        screen(&server, PAYER_PHONE, "3*123"),
        "END An envelope number has 11 digits. Please dial again."
    );
    assert_eq!(
        screen(&server, PAYER_PHONE, "5*1*1*1"),
        "END Your session has ended. Please dial again."
    );
    // No phone number at all: a clear end.
    assert!(screen(&server, "", "1").starts_with("END No purse is registered"));
    // A wrong token: 403, and nothing of the body is read (not even a malformed one).
    let (status, body) = dial(&server, "not-the-token", PAYER_PHONE, "3");
    assert_eq!(status, 403, "{body}");
    let response = http()
        .post(format!("{}/ussd/not-the-token", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("%%%not a form")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    // Nothing was sent or queued by any of it.
    assert!(server.outbox().is_empty(), "{:?}", server.outbox());
}

/// `[ussd] allow_ips` in `sms.toml`: a caller outside the listed networks gets 403 even with the
/// right token, and nothing is read; listed, it is served.
fn an_allow_list_refuses_callers_outside_it(kind: BackendKind) {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("sms.toml"),
        "[ussd]\nallow_ips = [\"196.201.214.0/24\", \"2001:db8::/32\"]\n",
    )
    .unwrap();
    let server = TestServer::start_in(outside.path(), "127.0.0.1:0", kind);
    let (status, body) = dial(&server, &server.gateway_token, PURSE_PHONE, "");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("allow-list"), "{body}");
    drop(server);

    let inside = tempfile::tempdir().unwrap();
    std::fs::write(
        inside.path().join("sms.toml"),
        "[ussd]\nallow_ips = [\"196.201.214.0/24\", \"127.0.0.0/8\"]\n",
    )
    .unwrap();
    let server = TestServer::start_in(inside.path(), "127.0.0.1:0", kind);
    let (status, body) = dial(&server, &server.gateway_token, PURSE_PHONE, "");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("CON "), "{body}");
}

/// Issue 18, the bank's database administrator: the USSD menu reads the envelope and its account
/// only through their MACs. A phone added by SQL to the account's bound phones binds nothing, and
/// nothing on the account is offered to anyone (the menu says it is on hold), not even to the
/// holder's own phone; an envelope edited by SQL holds it the same way. Each edit is raised once
/// as `record_tampered`, however many sessions meet it, and the holder is not blamed.
fn records_edited_in_the_database_hold_the_menu(kind: BackendKind) {
    let server = TestServer::start(kind);
    server.seed_world();
    server.post(
        &format!("/api/v1/sms/accounts/{PAYER}"),
        json!({ "bound_phones": [PAYER_PHONE] }),
    );
    let held = "END This account is on hold while the bank checks its records.";
    let balance = screen(&server, PAYER_PHONE, &format!("3*{SEED_EUIN}"));
    assert!(balance.starts_with("END BALANCE KES"), "{balance}");
    // The stranger's phone added to the bound phones by SQL.
    let account_key = format!("acct:{PAYER}");
    let (honest, version) = dba_read(&server, kind, &account_key);
    let mut account: serde_json::Value = serde_json::from_slice(&honest).unwrap();
    account["bound_phones"] = json!([PAYER_PHONE, STRANGER]);
    dba_write(
        &server,
        kind,
        &account_key,
        account.to_string().as_bytes(),
        version,
    );
    for phone in [STRANGER, PAYER_PHONE] {
        for text in [format!("3*{SEED_EUIN}"), format!("4*{SEED_EUIN}")] {
            let shown = screen(&server, phone, &text);
            assert!(shown.starts_with(held), "{shown}");
        }
        let shown = screen(&server, phone, &format!("5*2*{SEED_EUIN}"));
        assert!(shown.starts_with(held), "{shown}");
    }
    assert_eq!(flags(&server, "record_tampered"), 1);
    assert_eq!(flags(&server, "account-settings"), 1);
    // The language was not set through the edited record.
    let (stored, version) = dba_read(&server, kind, &account_key);
    assert_eq!(stored, account.to_string().into_bytes());
    // The operator puts the honest record back: the holder's menu works again, the stranger's
    // phone is not bound.
    dba_write(&server, kind, &account_key, &honest, version);
    let balance = screen(&server, PAYER_PHONE, &format!("3*{SEED_EUIN}"));
    assert!(balance.starts_with("END BALANCE KES"), "{balance}");
    let shown = screen(&server, STRANGER, &format!("3*{SEED_EUIN}"));
    assert!(
        shown.starts_with("END This phone is not registered"),
        "{shown}"
    );
    // The envelope edited by SQL (its failure count cleared to a new value): held again, raised
    // once more.
    let envelope_key = format!("env:{SEED_EUIN}");
    let (bytes, version) = dba_read_json(&server, kind, &envelope_key);
    let mut envelope = bytes;
    envelope["consecutive_failures"] = json!(2);
    dba_write(
        &server,
        kind,
        &envelope_key,
        envelope.to_string().as_bytes(),
        version,
    );
    for _ in 0..2 {
        let shown = screen(&server, PAYER_PHONE, &format!("3*{SEED_EUIN}"));
        assert!(shown.starts_with(held), "{shown}");
    }
    assert_eq!(flags(&server, "record_tampered"), 2);
    assert_eq!(flags(&server, "envelope"), 1);
}

fn parse_seed() -> offpay_sms_tan::Envelope {
    offpay_sms_tan::import::parse_envelope(SEED_ENVELOPE).unwrap()
}

offpay_test_support::on_every_backend!(
    a_scripted_session_shows_balance_and_statement_for_both_rails,
    unknown_numbers_wrong_choices_and_bad_tokens_end_clearly,
    an_allow_list_refuses_callers_outside_it,
    records_edited_in_the_database_hold_the_menu,
);
