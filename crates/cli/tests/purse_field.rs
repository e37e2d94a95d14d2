//! Field readiness of the purse, end to end through the `offpay` binary and a real server:
//! - trust classes: a purse is provisioned software (the default) or hardware, each with its own
//!   limits; the operator cannot give a software purse more than its class allows (a clear error,
//!   nothing changed), and the operator's view shows the class and its ceiling;
//! - the SMS statement speaks the holder's language (set by the operator at the holder's
//!   request), with dates, counterparties and amounts with their currency, in English, Kiswahili
//!   and French.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod purse_common;
mod sms_common;

use std::path::Path;

use purse_common::{BackendKind, Cli};
use serde_json::{Value, json};
use sms_common::TestServer;

const AGENT: &str = "+254700000009";
const ALICE: &str = "+254700000001";
const BOB: &str = "+254700000002";

/// `offpay admin --server S --token-file T purse ARGS --json` (a provisioning gets the PIN on
/// standard input).
fn admin(cli: &Cli, server: &TestServer, args: &[&str]) -> std::process::Output {
    let token = server.data_dir.join("admin.token");
    let mut all = vec![
        "admin",
        "--server",
        &server.base,
        "--token-file",
        token.to_str().unwrap(),
        "purse",
    ];
    all.extend_from_slice(args);
    all.push("--json");
    cli.run(&all)
}

fn admin_ok(cli: &Cli, server: &TestServer, args: &[&str]) -> Value {
    let output = admin(cli, server, args);
    assert!(
        output.status.success(),
        "admin {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn provision(cli: &Cli, server: &TestServer, phone: &str, file: &Path, agent: bool) -> Value {
    let mut args = vec![
        "provision",
        "--phone",
        phone,
        "--out",
        file.to_str().unwrap(),
    ];
    if agent {
        args.push("--agent");
    }
    admin_ok(cli, server, &args)
}

fn shadow(server: &TestServer, phone: &str) -> Value {
    server.get(&format!(
        "/api/v1/purse/purses/{}",
        phone.replace('+', "%2B")
    ))
}

fn limits<'a>(phone: &'a str, single: &'a str) -> Vec<&'a str> {
    vec![
        "limits",
        "--phone",
        phone,
        "--max-balance",
        "60000",
        "--max-single-payment",
        single,
        "--max-spent-since-sync",
        "40000",
        "--small-payment-limit",
        "2500",
    ]
}

fn trust_classes_have_their_own_limits(kind: BackendKind) {
    let server = TestServer::start(kind);
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let alice = directory.path().join("alice.purse");
    let provisioned = provision(&cli, &server, ALICE, &alice, false);
    assert_eq!(provisioned["trust_class"], "software", "{provisioned}");
    let software = shadow(&server, ALICE);
    assert_eq!(software["trust_class"], "software", "{software}");
    assert_eq!(software["class_ceiling"]["max_single_payment"], "20000.00");

    // A hardware purse is provisioned by the operator's SIM line over the API, not as a file.
    let hardware = server.post(
        "/api/v1/purse/purses",
        json!({ "phone": BOB, "class": "hardware" }),
    );
    assert_eq!(hardware["trust_class"], "hardware", "{hardware}");
    let hardware = shadow(&server, BOB);
    assert_eq!(hardware["class_ceiling"]["max_single_payment"], "50000.00");
    assert_eq!(hardware["limits"]["max_balance"], "200000.00", "{hardware}");
    let (status, refused) = server.api(
        reqwest::Method::POST,
        "/api/v1/purse/purses",
        Some(json!({ "phone": "+254700000003", "class": "tamper-proof" })),
    );
    assert_eq!(status, 400, "{refused}");

    // Above the software class: refused with the reason, and nothing changed.
    let above = admin(&cli, &server, &limits(ALICE, "25000"));
    assert!(!above.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&above.stdout),
        String::from_utf8_lossy(&above.stderr)
    );
    assert!(
        said.contains("a software purse may have a maximum single payment of at most KES 20000.00"),
        "{said}"
    );
    assert_eq!(shadow(&server, ALICE)["limits"], software["limits"]);
    // Within it: taken. The hardware purse takes the higher single payment.
    admin_ok(&cli, &server, &limits(ALICE, "15000"));
    assert_eq!(
        shadow(&server, ALICE)["limits"]["max_single_payment"],
        "15000.00"
    );
    admin_ok(&cli, &server, &limits(BOB, "25000"));
    assert_eq!(
        shadow(&server, BOB)["limits"]["max_single_payment"],
        "25000.00"
    );
}

/// The texts the operator queued for `phone` since `before` of them.
fn new_texts(server: &TestServer, phone: &str, before: usize) -> Vec<String> {
    let texts: Vec<String> = server
        .outbox()
        .into_iter()
        .filter(|(to, _)| to == phone)
        .map(|(_, text)| text)
        .collect();
    texts[before.min(texts.len())..].to_vec()
}

fn statement_by_sms(cli: &Cli, server: &TestServer, file: &Path, phone: &str) -> String {
    let before = new_texts(server, phone, 0).len();
    let request = cli.purse(file, &["statement-sms"]);
    let text = request["text"].as_str().unwrap();
    server.sms(phone, text);
    let texts = new_texts(server, phone, before);
    assert!(!texts.is_empty(), "no statement for {phone}");
    texts.join("\n")
}

fn the_sms_statement_speaks_the_holders_language(kind: BackendKind) {
    let server = TestServer::start(kind);
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let (agent, alice) = (
        directory.path().join("agent.purse"),
        directory.path().join("alice.purse"),
    );
    provision(&cli, &server, AGENT, &agent, true);
    provision(&cli, &server, ALICE, &alice, false);
    admin_ok(
        &cli,
        &server,
        &["float", "--phone", AGENT, "--amount", "5000"],
    );
    cli.purse(&agent, &["sync", "--server", &server.base]);
    let request = cli.purse(&alice, &["request", "--from", AGENT, "--amount", "450"]);
    let code1 = request["code1"].as_str().unwrap().to_owned();
    let paid = cli.purse(
        &agent,
        &["pay", "--to", ALICE, "--amount", "450", "--code", &code1],
    );
    cli.purse(
        &alice,
        &["accept", "--code", paid["code2"].as_str().unwrap()],
    );
    for file in [&agent, &alice] {
        cli.purse(file, &["sync", "--server", &server.base]);
    }

    // No setting: the operator's default (English).
    let english = statement_by_sms(&cli, &server, &alice, ALICE);
    assert!(
        english.starts_with("PURSE BALANCE KES 450.00\n"),
        "{english}"
    );
    assert!(
        english.contains(&format!(" FROM {AGENT} KES 450.00")),
        "{english}"
    );
    let agents = statement_by_sms(&cli, &server, &agent, AGENT);
    assert!(
        agents.contains(&format!(" TO {ALICE} KES 450.00")),
        "{agents}"
    );
    assert!(agents.contains(" FROM operator KES 5000.00"), "{agents}");

    // The holder asks the agent for Kiswahili, then French.
    let set = admin_ok(
        &cli,
        &server,
        &["language", "--phone", ALICE, "--lang", "sw"],
    );
    assert_eq!(set["speaks"], "sw");
    assert_eq!(shadow(&server, ALICE)["language"], "sw");
    let swahili = statement_by_sms(&cli, &server, &alice, ALICE);
    assert!(
        swahili.starts_with("SALIO LA POCHI KES 450.00\n"),
        "{swahili}"
    );
    assert!(
        swahili.contains(&format!(" KUTOKA {AGENT} KES 450.00")),
        "{swahili}"
    );
    admin_ok(
        &cli,
        &server,
        &["language", "--phone", AGENT, "--lang", "fr"],
    );
    let french = statement_by_sms(&cli, &server, &agent, AGENT);
    assert!(
        french.starts_with("SOLDE PORTE-MONNAIE KES 4550.00\n"),
        "{french}"
    );
    assert!(
        french.contains(&format!(" VERS {ALICE} KES 450.00")),
        "{french}"
    );
    assert!(french.contains(" DE opérateur KES 5000.00"), "{french}");
    // Every line has a date.
    for line in french.lines().skip(1) {
        assert!(
            line.len() > 10 && line.as_bytes()[4] == b'-' && line.as_bytes()[7] == b'-',
            "{line}"
        );
    }
    // Back to the default; a language we do not have is refused.
    admin_ok(
        &cli,
        &server,
        &["language", "--phone", ALICE, "--lang", "default"],
    );
    assert!(statement_by_sms(&cli, &server, &alice, ALICE).starts_with("PURSE BALANCE"));
    assert!(
        !admin(
            &cli,
            &server,
            &["language", "--phone", ALICE, "--lang", "de"]
        )
        .status
        .success()
    );
}

offpay_test_support::on_every_backend!(
    trust_classes_have_their_own_limits,
    the_sms_statement_speaks_the_holders_language,
);
