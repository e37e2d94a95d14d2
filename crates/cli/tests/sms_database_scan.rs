//! Issue 18: after a day of SMS traffic through a real `offpay serve` (payments at each level, a
//! callback and its OK, a scheduled payment run by the scheduler, settings, a dispute, a new
//! envelope registered, balance and statement, a web login), the whole database — every byte of
//! the SQLite file and its WAL, or every row of every table on PostgreSQL — holds no TAN, no
//! instruction or reply text, no checksum and no grid value. What an insider with the database
//! alone learns about the envelopes is nothing. Every GET route of the operator API, read with
//! every role after the same day, answers none of it either.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sms_common;

use std::time::{Duration, Instant};

use offpay_sms_tan::Envelope;
use sms_common::*;

/// Everything secret that passed through the server, to look for in the database.
#[derive(Default)]
struct Secrets {
    /// Whole texts (instructions and replies) and their secret parts.
    strings: Vec<String>,
    /// Digit strings that must not stand alone (between non-digits) anywhere.
    digits: Vec<String>,
}

impl Secrets {
    fn text(&mut self, text: &str) {
        self.strings.push(text.to_owned());
    }

    /// An instruction or reply: the whole text, its secret words (coded payee, amount plus
    /// column 2, checksums, SUMs) and every "TAN n".
    fn message(&mut self, text: &str) {
        self.text(text);
        let words: Vec<&str> = text.split([' ', '*']).filter(|w| !w.is_empty()).collect();
        for (index, word) in words.iter().enumerate() {
            let digits_only = word.bytes().all(|b| b.is_ascii_digit());
            // Coded payees/envelopes (31-32 digits), checksums and SUMs (6 digits).
            if digits_only && (word.len() == 6 || word.len() >= 30) {
                self.digits.push((*word).to_owned());
            }
            // Amount plus column 2: a 12-14 digit number with two decimals.
            if word.contains('.') && word.len() >= 14 {
                self.strings.push((*word).to_owned());
            }
            if *word == "TAN"
                && let Some(tan) = words.get(index + 1)
            {
                self.strings.push(format!("TAN {tan}"));
            }
        }
    }

    /// Every row secret of an envelope that is long enough to look for: the amount offsets
    /// (column 2) written both ways, and the codes of each grid column written together.
    fn envelope(&mut self, envelope: &Envelope) {
        for row in 1..=envelope.rows.len() as u8 {
            let row = envelope.row(row).unwrap();
            let offset = row.amount_offset_hundredths();
            self.strings
                .push(format!("{}.{:02}", offset / 100, offset % 100));
            self.digits.push(format!("{offset}"));
            self.strings.push(row.recipe().printed());
        }
        for grid in 1..=4 {
            let grid = envelope.grid(grid).unwrap();
            for position in 1..=10 {
                let column: String = (0..10)
                    .map(|digit| format!("{:03}", grid.code(digit, position)))
                    .collect();
                self.digits.push(column);
            }
            let sizes: String = (1..=9)
                .map(|class| format!("{:03}", grid.magnitude_code(class)))
                .collect();
            self.digits.push(sizes);
        }
    }
}

fn remove_all(haystack: &mut Vec<u8>, needle: &[u8]) {
    while let Some(at) = haystack.windows(needle.len()).position(|w| w == needle) {
        haystack.drain(at..at + needle.len());
    }
}

fn standalone(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, window)| *window == needle)
        .any(|(at, _)| {
            let before = at.checked_sub(1).map(|i| haystack[i]);
            let after = haystack.get(at + needle.len()).copied();
            !before.is_some_and(|b| b.is_ascii_digit())
                && !after.is_some_and(|b| b.is_ascii_digit())
        })
}

/// The whole database as bytes: the SQLite file and its WAL, or every row of every table of the
/// PostgreSQL database as text with its byte columns decoded.
fn database_bytes(server: &TestServer, kind: BackendKind) -> Vec<u8> {
    match kind {
        BackendKind::Sqlite => {
            let mut bytes = Vec::new();
            for name in [
                "offpay.sqlite",
                "offpay.sqlite-wal",
                "offpay.sqlite-journal",
            ] {
                if let Ok(file) = std::fs::read(server.data_dir.join(name)) {
                    bytes.extend_from_slice(&file);
                }
            }
            assert!(bytes.len() > 4096, "read the SQLite database");
            bytes
        }
        BackendKind::Postgres => {
            let url = server.database_url().unwrap().to_owned();
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let tables: Vec<String> = client
                .query(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            assert!(tables.iter().any(|table| table == "records"), "{tables:?}");
            let mut bytes = Vec::new();
            for table in tables {
                for row in client
                    .query(&format!("SELECT t::text FROM \"{table}\" t"), &[])
                    .unwrap()
                {
                    let text: String = row.get(0);
                    bytes.extend_from_slice(&expand_hex(&text));
                    bytes.push(b'\n');
                }
            }
            bytes
        }
    }
}

/// A row as PostgreSQL writes it, with each `\x…` byte string also decoded.
fn expand_hex(text: &str) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    for piece in text.split("\\\\x").skip(1).chain(text.split("\\x").skip(1)) {
        let hex: String = piece.chars().take_while(char::is_ascii_hexdigit).collect();
        if hex.len() >= 2 {
            out.push(b'\n');
            out.extend(hex_decode(&hex[..hex.len() - hex.len() % 2]));
        }
    }
    out
}

/// Reads every GET route of the operator API (from its OpenAPI document, path parameters
/// filled with the day's account, envelope and phone) with a user of every role, and finds no
/// secret of `secrets` in any answer, whatever its status.
fn api_answers_hold_no_secret(server: &TestServer, secrets: &Secrets, euin: &str) {
    let document = server.get("/api/v1/openapi.json");
    let mut paths: Vec<String> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for (template, operations) in document["paths"].as_object().unwrap() {
        if operations.get("get").is_none() || !template.starts_with("/api/v1/") {
            continue;
        }
        let filled = template
            .replace("{number}", PAYER)
            .replace("{euin}", euin)
            .replace("{phone}", &PAYER_PHONE.replace('+', "%2B"))
            .replace("{account}", &format!("sms:{PAYER}"))
            .replace("{id}", &format!("sms:{PAYER}"));
        if filled.contains('{') {
            skipped.push(template.clone());
            continue;
        }
        paths.push(filled);
    }
    for extra in [
        "/api/v1/sms/outbox?limit=1000",
        "/api/v1/sms/sent?limit=1000",
        "/api/v1/sms/dead-letters?limit=1000",
        "/api/v1/sms/scheduled?limit=1000",
        "/api/v1/fraud?rail=sms",
        "/api/v1/audit?limit=1000",
    ] {
        paths.push(extra.to_owned());
    }
    for sms_route in [
        "/api/v1/sms/outbox",
        "/api/v1/sms/sent",
        "/api/v1/sms/settings",
        "/api/v1/sms/status",
        "/api/v1/sms/scheduled",
        "/api/v1/sms/disputes",
        "/api/v1/sms/dead-letters",
        "/api/v1/sms/accounts",
        "/api/v1/sms/envelopes",
    ] {
        assert!(
            paths.iter().any(|path| path.starts_with(sms_route)),
            "{sms_route} not read; skipped {skipped:?}"
        );
    }
    let mut tokens = vec![("admin".to_owned(), server.token.clone())];
    for role in ["finance", "support", "auditor", "provisioning"] {
        let answer = server.post(
            "/api/v1/users",
            serde_json::json!({ "name": format!("scan-{role}"), "role": role }),
        );
        tokens.push((
            role.to_owned(),
            answer["token"].as_str().unwrap().to_owned(),
        ));
    }
    let http = http();
    let mut found = Vec::new();
    let mut read = 0usize;
    let mut shown_outbox = 0usize;
    for (role, token) in &tokens {
        for path in &paths {
            let response = http
                .get(format!("{}{path}", server.base))
                .bearer_auth(token)
                .send()
                .unwrap();
            let status = response.status().as_u16();
            let body = response.bytes().unwrap().to_vec();
            read += 1;
            if path.starts_with("/api/v1/sms/outbox") && status == 200 {
                let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
                shown_outbox += answer["outbox"].as_array().unwrap().len();
            }
            for secret in &secrets.strings {
                if secret.len() >= 6 && body.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    found.push(format!("{role} {path} ({status}): {secret}"));
                }
            }
            for secret in &secrets.digits {
                if standalone(&body, secret.as_bytes()) {
                    found.push(format!("{role} {path} ({status}): {secret}"));
                }
            }
            for phrase in ["TAN ", "\"tan\"", "MyPass2026", "PAYG ", "PAYC ", "PAID "] {
                if body.windows(phrase.len()).any(|w| w == phrase.as_bytes()) {
                    found.push(format!("{role} {path} ({status}): {phrase}"));
                }
            }
            // The SMS lists carry no text field at all (the audit log's redacted one and the
            // OpenAPI document's schemas name it).
            let text_field = b"\"text\"";
            if path.starts_with("/api/v1/sms/")
                && body.windows(text_field.len()).any(|w| w == text_field)
            {
                found.push(format!("{role} {path} ({status}): a text field"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{} secrets in operator API answers: {found:#?}",
        found.len()
    );
    // The scan read something: every role, every route, and the queue was not empty.
    assert!(read >= 5 * 25, "read {read} answers");
    assert!(
        shown_outbox > 0,
        "the outbox listed the queued texts' metadata"
    );
    eprintln!(
        "read {read} answers ({} routes x {} roles); skipped templates {skipped:?}",
        paths.len(),
        tokens.len()
    );
}

fn a_day_of_traffic_leaves_no_tan_text_or_grid_value_in_the_database(kind: BackendKind) {
    let server = TestServer::start(kind);
    let envelope = server.seed_world();
    let mut secrets = Secrets::default();
    secrets.envelope(&envelope);
    let send = |secrets: &mut Secrets, text: &str| -> String {
        secrets.message(text);
        let reply = server.sms(PAYER_PHONE, text);
        secrets.message(&reply);
        reply
    };
    // Payments at each level.
    let reply = send(&mut secrets, &low_pay(&envelope, PAYEE, &kes("120"), 1));
    assert!(reply.starts_with("PAID "), "{reply}");
    let reply = send(
        &mut secrets,
        &grid_pay(&envelope, "PAYG", PAYEE, &kes("1500"), 2),
    );
    assert!(reply.starts_with("PAID PAYG"), "{reply}");
    let echo = send(
        &mut secrets,
        &grid_pay(&envelope, "PAYC", PAYEE, &kes("300"), 3),
    );
    let (callback_row, callback_tan) = bank_row(&echo);
    let ok = format!(
        "OK {SEED_EUIN} {callback_row} {callback_tan} 4 {}",
        sum(&envelope, 4, PAYEE, &kes("300"))
    );
    let reply = send(&mut secrets, &ok);
    assert!(reply.starts_with("PAID "), "{reply}");
    // A new envelope registered with row 5; the day goes on with it.
    let next = server.issue_envelope();
    secrets.envelope(&next);
    let reply = send(&mut secrets, &register(&envelope, &next.euin, 5));
    assert!(reply.contains("is now registered"), "{reply}");
    let envelope = next;
    let euin = envelope.euin.to_string();
    // Settings, balance, statement, a dispute.
    let reply = send(
        &mut secrets,
        &signed(&envelope, &format!("LIMIT {euin} DAY 90000 1 000000")),
    );
    assert!(reply.starts_with("DONE"), "{reply}");
    let reply = send(
        &mut secrets,
        &signed(&envelope, &format!("PASSWORD {euin} 2 000000 MyPass2026")),
    );
    assert!(reply.starts_with("DONE"), "{reply}");
    let reply = send(&mut secrets, &format!("BAL {euin} 3 {}", tan(&envelope, 3)));
    assert!(reply.starts_with("BALANCE"), "{reply}");
    let statement = send(
        &mut secrets,
        &format!("STMT {euin} 4 {}", tan(&envelope, 4)),
    );
    let reference = statement
        .split("REF ")
        .nth(1)
        .map(|rest| rest[..8].to_owned());
    let paid = send(&mut secrets, &low_pay(&envelope, PAYEE, &kes("42"), 5));
    let reference = reference.unwrap_or_else(|| paid.split("REF ").nth(1).unwrap()[..8].to_owned());
    let reply = send(
        &mut secrets,
        &signed(&envelope, &format!("DISPUTE {euin} {reference} 6 000000")),
    );
    assert!(reply.contains("operator"), "{reply}");
    // A web login with the password and row 7.
    let http = http();
    let page = http
        .get(format!("{}/sms/web/login", server.base))
        .send()
        .unwrap();
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| {
            value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("; ");
    let body = page.text().unwrap();
    let csrf = body.split("name=\"csrf\" value=\"").nth(1).unwrap()[..64.min(
        body.split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .find('"')
            .unwrap(),
    )]
        .to_owned();
    let login_tan = tan(&envelope, 7);
    secrets.text(&format!("\"tan\":\"{login_tan}\""));
    let answer = http
        .post(format!("{}/sms/web/login", server.base))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&account={PAYER}&password=MyPass2026&row=7&tan={login_tan}"
        ))
        .send()
        .unwrap();
    assert!(
        answer.status().is_redirection() || answer.status().is_success(),
        "{}",
        answer.status()
    );
    // A scheduled payment, run by the scheduler at its time.
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
    let later = format!(
        "LATER {:04}-{:02}-{:02} {:02}:{:02} {}",
        civil.year,
        civil.month,
        civil.day,
        civil.hour,
        civil.minute,
        low_pay(&envelope, PAYEE, &kes("75"), 8)
    );
    let reply = send(&mut secrets, &later);
    assert!(reply.starts_with("SCHEDULED"), "{reply}");
    let before = server.balance(PAYEE);
    let deadline = Instant::now() + Duration::from_secs(due.saturating_sub(now) + 30);
    while server.balance(PAYEE) == before {
        assert!(
            Instant::now() < deadline,
            "the scheduled payment did not run"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Every operator route's answer, read with every role, holds none of it either — not even
    // the texts still queued (the outbox and sent lists show recipient, length and status).
    api_answers_hold_no_secret(&server, &secrets, &envelope.euin.to_string());
    // What is still queued for the gateway (no gateway runs in this test) must be sent, so it is
    // in the database until delivered — by design, and only that: payee notices (no envelope,
    // no TAN) and the scheduled payment's confirmation. Delivered texts keep only a keyed hash
    // (`outbox` unit tests; the Kannel story delivers them).
    let queued: Vec<String> = server.outbox().into_iter().map(|(_, text)| text).collect();
    for text in &queued {
        assert!(
            text.starts_with("RECEIVED ") || text.contains("as scheduled"),
            "{text}"
        );
    }
    secrets
        .strings
        .retain(|secret| !queued.iter().any(|text| text.contains(secret.as_str())));
    let mut database = database_bytes(&server, kind);
    for text in &queued {
        remove_all(&mut database, text.as_bytes());
    }
    let mut found = Vec::new();
    for secret in &secrets.strings {
        if secret.len() >= 6
            && database
                .windows(secret.len())
                .any(|w| w == secret.as_bytes())
        {
            found.push(secret.clone());
        }
    }
    for secret in &secrets.digits {
        if standalone(&database, secret.as_bytes()) {
            found.push(secret.clone());
        }
    }
    for phrase in ["TAN ", "\"tan\"", "MyPass2026", "PAYG ", "PAYC ", "PAID "] {
        if database
            .windows(phrase.len())
            .any(|w| w == phrase.as_bytes())
        {
            found.push(phrase.to_owned());
        }
    }
    assert!(
        found.is_empty(),
        "{} secrets found in the {kind:?} database ({} bytes): {found:?}",
        found.len(),
        database.len()
    );
    assert!(secrets.strings.len() + secrets.digits.len() > 200);
}

offpay_test_support::on_every_backend!(
    a_day_of_traffic_leaves_no_tan_text_or_grid_value_in_the_database
);
