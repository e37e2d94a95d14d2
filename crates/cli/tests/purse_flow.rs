//! Issue 3's full flow on real server processes: provision an agent, Alice and Bob; float the
//! agent; the agent syncs and pays Alice offline; the server stops; Alice pays Bob offline; the
//! server restarts; everyone syncs; the shadow balances and the ledger agree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod purse_common;

use purse_common::{BackendKind, Cli, Server};

const AGENT: &str = "+254700000009";
const ALICE: &str = "+254700000001";
const BOB: &str = "+254700000002";

fn agent_alice_bob_offline_payments_reconcile_across_a_server_restart(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let cli = Cli::new(directory.path());
    let agent = directory.path().join("agent.purse");
    let alice = directory.path().join("alice.purse");
    let bob = directory.path().join("bob.purse");

    let server = Server::start(&data, Some("acme-ke"), &backend);
    let provisioned = cli.provision(&server, AGENT, &agent, true);
    assert_eq!(provisioned["kind"], "agent");
    assert_eq!(provisioned["operator"], "acme-ke");
    cli.provision(&server, ALICE, &alice, false);
    cli.provision(&server, BOB, &bob, false);

    let float = cli.admin(&server, &["float", "--phone", AGENT, "--amount", "100000"]);
    assert_eq!(float["amount"], "100000.00");
    let synced = cli.sync(&agent, &server);
    assert_eq!(synced["credits_applied"], 1);
    assert_eq!(synced["balance"], "100000.00");

    // Offline: the agent pays Alice 1000 (cash-in).
    cli.pay((&agent, AGENT), (&alice, ALICE), "1000");
    server.stop();

    // The server is down: Alice pays Bob 450 all the same.
    cli.pay((&alice, ALICE), (&bob, BOB), "450");
    assert_eq!(cli.purse(&alice, &["balance"])["balance"], "550.00");

    let server = Server::start(&data, None, &backend);
    for file in [&agent, &alice, &bob] {
        cli.sync(file, &server);
    }
    // A second round acknowledges the operator credit entry and changes no balance.
    for file in [&agent, &alice, &bob] {
        cli.sync(file, &server);
    }
    let balance = |phone: &str| {
        cli.admin(&server, &["balance", "--phone", phone])["balance"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(balance(AGENT), "99000.00");
    assert_eq!(balance(ALICE), "550.00");
    assert_eq!(balance(BOB), "450.00");
    for phone in [AGENT, ALICE, BOB] {
        let shadow = server.shadow(phone);
        assert_eq!(shadow["balance"], shadow["ledger_balance"], "{shadow}");
        assert_eq!(shadow["balance"], shadow["reported_balance"], "{shadow}");
    }
    server.assert_balanced();
    let (_, suspense) = server.get("/api/v1/accounts/operator:suspense");
    assert_eq!(
        suspense["balance"], "0.00",
        "every payment matched: {suspense}"
    );
    let (_, float) = server.get("/api/v1/accounts/operator:float");
    assert_eq!(float["balance"], "-100000.00");
    assert!(
        server.purse_flags().is_empty(),
        "{:?}",
        server.purse_flags()
    );

    // The purses agree with the operator.
    assert_eq!(cli.purse(&agent, &["balance"])["balance"], "99000.00");
    assert_eq!(cli.purse(&bob, &["balance"])["balance"], "450.00");
    let log = cli.purse(&alice, &["log"]);
    let kinds: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["debit", "credit"], "newest first: {log}");
}

fn a_sync_by_sms_texts_works_like_one_http_body(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let server = Server::start(&directory.path().join("data"), None, &backend);
    let agent = directory.path().join("agent.purse");
    cli.provision(&server, AGENT, &agent, true);
    cli.admin(&server, &["float", "--phone", AGENT, "--amount", "2500.50"]);
    let synced = cli.purse(&agent, &["sync", "--server", &server.base, "--sms"]);
    assert_eq!(synced["balance"], "2500.50");
    cli.purse(&agent, &["sync", "--server", &server.base, "--sms"]);
    assert_eq!(server.shadow(AGENT)["balance"], "2500.50");
    server.assert_balanced();
}

offpay_test_support::on_every_backend!(
    agent_alice_bob_offline_payments_reconcile_across_a_server_restart,
    a_sync_by_sms_texts_works_like_one_http_body,
);
