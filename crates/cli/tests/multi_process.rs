//! Several server processes on one PostgreSQL database (the app tier an operator scales and
//! restarts first): clients spread across three `offpay serve` processes; a retry that lands on
//! another process posts once; the same purse upload sent to all three at once is reconciled
//! once; an SMS gateway's retry of one message, landing on another process at the same moment,
//! pays once and is answered with the same reply; every process sees money conserved.
//! PostgreSQL only (SQLite is one process's file).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod purse_common;
mod sms_common;

use std::path::Path;
use std::sync::Arc;

use offpay_purse::Timestamp;
use offpay_purse::apdu::PurseCard;
use offpay_purse::se::{self, DeviceSecret, SoftwareSecureElement};
use offpay_test_support::database;
use offpay_test_support::process::http;
use purse_common::{BackendKind, Cli, Server};
use serde_json::{Value, json};

const PROCESSES: usize = 3;
const BATCHES: usize = 60;
const TRANSFERS_PER_BATCH: usize = 5;
const ALICE: &str = "+254700000001";
const BOB: &str = "+254700000002";

/// Copies the first process's key files (purse master key and operator id, SMS and wallet
/// keys, the operator token) to another data directory, as an operator deploys one key set to
/// every process of its app tier.
fn copy_keys(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_keys(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn post_json(base: &str, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = http()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

fn batch(number: usize) -> Value {
    let transfers: Vec<Value> = (0..TRANSFERS_PER_BATCH)
        .map(|index| {
            json!({ "id": format!("mp{number}-{index}"), "debit_account": "float",
                    "credit_account": "shop", "amount": "0.01" })
        })
        .collect();
    json!({ "transfers": transfers })
}

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

#[test]
fn three_processes_on_one_database_post_once_and_conserve_money() {
    if database::postgres_url().is_none() {
        eprintln!("skipped three processes on one database: OFFPAY_TEST_DATABASE_URL is not set");
        return;
    }
    let backend = BackendKind::Postgres.fresh();
    let directory = tempfile::tempdir().unwrap();
    let first_dir = directory.path().join("p0");
    let first = Server::start(&first_dir, None, &backend);
    let mut servers = vec![first];
    for index in 1..PROCESSES {
        let data = directory.path().join(format!("p{index}"));
        copy_keys(&first_dir, &data);
        servers.push(Server::start(&data, None, &backend));
    }
    let servers = Arc::new(servers);
    let (base, token) = (servers[0].base.clone(), servers[0].token.clone());
    for (id, kind) in [("float", "operator_float"), ("shop", "customer")] {
        let (status, body) = post_json(
            &base,
            &token,
            "/api/v1/accounts",
            &json!({ "id": id, "kind": kind }),
        );
        assert_eq!(status, 201, "{body}");
    }

    // Each batch goes to one process and, at the same moment, its "retry" to the next one.
    let threads: Vec<_> = (0..PROCESSES)
        .map(|client| {
            let servers = servers.clone();
            std::thread::spawn(move || {
                for number in (client..BATCHES).step_by(PROCESSES) {
                    let body = batch(number);
                    let pair: Vec<_> = [number % PROCESSES, (number + 1) % PROCESSES]
                        .into_iter()
                        .map(|target| {
                            let (base, token) =
                                (servers[target].base.clone(), servers[target].token.clone());
                            let body = body.clone();
                            std::thread::spawn(move || {
                                post_json(&base, &token, "/api/v1/transfers", &body)
                            })
                        })
                        .collect();
                    for request in pair {
                        let (status, answer) = request.join().unwrap();
                        assert_eq!(status, 200, "batch {number}: {answer}");
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for server in servers.iter() {
        let (status, shop) = server.get("/api/v1/accounts/shop");
        assert_eq!(status, 200);
        assert_eq!(
            shop["balance_minor"].as_i64(),
            Some((BATCHES * TRANSFERS_PER_BATCH) as i64),
            "{shop}"
        );
        server.assert_balanced();
    }
    // Each process's store tried deciding groups on the rows it had last seen (one round trip
    // instead of two); with all three moving the same two accounts, some of those writes met
    // rows another process had changed, and were decided again on loaded rows — the balances
    // above show that none overwrote another's transfer.
    let tried: f64 = servers
        .iter()
        .map(|server| {
            let text = http()
                .get(format!("{}/metrics", server.base))
                .send()
                .unwrap()
                .text()
                .unwrap();
            [
                "offpay_ledger_known_groups_total ",
                "offpay_ledger_known_stale_total ",
            ]
            .iter()
            .map(|name| metric(&text, name))
            .sum::<f64>()
        })
        .sum();
    assert!(tried > 0.0, "no process tried a group on known rows");

    // The purse rail: provisioned on one process, floated on another, synced on a third.
    let cli = Cli::new(directory.path());
    let alice = directory.path().join("alice.purse");
    let bob = directory.path().join("bob.purse");
    cli.provision(&servers[0], ALICE, &alice, true);
    cli.provision(&servers[1], BOB, &bob, false);
    cli.admin(&servers[2], &["float", "--phone", ALICE, "--amount", "500"]);
    cli.sync(&alice, &servers[1]);
    cli.pay((&alice, ALICE), (&bob, BOB), "120");

    // Alice's next upload reaches all three processes at once: it is reconciled once.
    let (operator, _) = se::peek_file(&alice).unwrap();
    let secret = DeviceSecret::load_or_create(&cli.device_secret).unwrap();
    let pin = offpay_purse::Pin::parse(purse_common::PIN).unwrap();
    let element = SoftwareSecureElement::open(&alice, secret, operator, &pin).unwrap();
    let mut card = PurseCard::new(element, now()).unwrap();
    let upload = card.start_sync(now()).unwrap();
    let senders: Vec<_> = (0..PROCESSES)
        .map(|index| {
            let base = servers[index].base.clone();
            let upload = upload.clone();
            std::thread::spawn(move || {
                let response = http()
                    .post(format!("{base}/purse/v1/sync"))
                    .header("content-type", "application/octet-stream")
                    .body(upload)
                    .send()
                    .unwrap();
                response.status().as_u16()
            })
        })
        .collect();
    let statuses: Vec<u16> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|status| *status == 200 || *status == 409),
        "{statuses:?}"
    );
    cli.sync(&bob, &servers[0]);
    for server in servers.iter() {
        assert_eq!(server.shadow(ALICE)["balance"], "380.00");
        assert_eq!(server.shadow(BOB)["balance"], "120.00");
        server.assert_balanced();
    }
}

/// The value of the unlabelled sample `name` (with its trailing space) in a metrics exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name}in\n{text}"))
}

/// One SMS through a process's generic webhook, with the gateway's message id.
fn sms(server: &Server, message_id: &str, from: &str, text: &str) -> Value {
    let gateway_token = std::fs::read_to_string(server.data_dir.join("sms-gateway.token")).unwrap();
    let response = http()
        .post(format!("{}/sms/webhook", server.base))
        .bearer_auth(gateway_token.trim())
        .json(&json!({ "from": from, "text": text, "message_id": message_id }))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn an_sms_gateway_retry_landing_on_another_process_pays_once_and_is_answered_alike() {
    use sms_common::{PAYEE, PAYEE_PHONE, PAYER, PAYER_PHONE, SEED_ENVELOPE, SEED_EUIN};
    if database::postgres_url().is_none() {
        eprintln!("skipped SMS retries across processes: OFFPAY_TEST_DATABASE_URL is not set");
        return;
    }
    const ROUNDS: usize = 4;
    let backend = BackendKind::Postgres.fresh();
    let directory = tempfile::tempdir().unwrap();
    let first_dir = directory.path().join("p0");
    let first = Server::start(&first_dir, None, &backend);
    let mut servers = vec![first];
    for index in 1..PROCESSES {
        let data = directory.path().join(format!("p{index}"));
        copy_keys(&first_dir, &data);
        servers.push(Server::start(&data, None, &backend));
    }
    let servers = Arc::new(servers);
    let (base, token) = (servers[0].base.clone(), servers[0].token.clone());
    let admin = |path: &str, body: Value| {
        let (status, answer) = post_json(&base, &token, path, &body);
        assert!(status < 300, "POST {path}: {status} {answer}");
    };
    admin(
        "/api/v1/sms/accounts",
        json!({ "receive_number": PAYER, "notify_phone": PAYER_PHONE }),
    );
    admin(
        "/api/v1/sms/accounts",
        json!({ "receive_number": PAYEE, "notify_phone": PAYEE_PHONE }),
    );
    admin(
        "/api/v1/accounts",
        json!({ "id": "operator:float", "kind": "operator_float" }),
    );
    admin(
        "/api/v1/transfers",
        json!({ "transfers": [{ "id": "cash-in", "debit_account": "operator:float",
                 "credit_account": format!("sms:{PAYER}"), "amount": "10000" }] }),
    );
    admin(
        "/api/v1/sms/envelopes/import",
        json!({ "text": SEED_ENVELOPE }),
    );
    admin(
        &format!("/api/v1/sms/envelopes/{SEED_EUIN}/bind"),
        json!({ "account": PAYER }),
    );
    let envelope = offpay_sms_tan::import::parse_envelope(SEED_ENVELOPE).unwrap();

    for round in 0..ROUNDS {
        let row = u8::try_from(round + 1).unwrap();
        let text = sms_common::low_pay(&envelope, PAYEE, &sms_common::kes("100"), row);
        let message_id = format!("gw-mp-{round}");
        // The gateway's first delivery and its retry reach two processes at the same moment.
        let answers: Vec<Value> = [round % PROCESSES, (round + 1) % PROCESSES]
            .into_iter()
            .map(|target| {
                let (servers, text, message_id) =
                    (servers.clone(), text.clone(), message_id.clone());
                std::thread::spawn(move || sms(&servers[target], &message_id, PAYER_PHONE, &text))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect();
        let fresh: Vec<&Value> = answers
            .iter()
            .filter(|answer| answer["duplicate"] == false)
            .collect();
        assert_eq!(
            fresh.len(),
            1,
            "round {round}: one delivery is new: {answers:?}"
        );
        assert_eq!(
            fresh[0]["verdict"], "accepted",
            "round {round}: {answers:?}"
        );
        assert_eq!(
            answers[0]["replies"], answers[1]["replies"],
            "round {round}: the retry is answered with the same reply"
        );
    }
    for server in servers.iter() {
        let (status, payee) = server.get(&format!("/api/v1/accounts/sms:{PAYEE}"));
        assert_eq!(status, 200);
        assert_eq!(
            payee["balance_minor"].as_i64(),
            Some(10_000 * ROUNDS as i64),
            "every payment once, as each process sees it: {payee}"
        );
        server.assert_balanced();
    }
    let (status, outbox) = servers[2].get("/api/v1/sms/outbox?limit=1000");
    assert_eq!(status, 200, "{outbox}");
    let notices = outbox["outbox"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|sms| sms["to"] == PAYEE_PHONE)
        .count();
    assert_eq!(notices, ROUNDS, "one payee notice per payment: {outbox}");
}
