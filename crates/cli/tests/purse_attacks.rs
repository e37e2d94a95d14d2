//! Attacks and bad input against a real server process: a cloned purse file spent twice is
//! caught at reconciliation; a forged and a replayed sync get clear HTTP errors and change
//! nothing; a purse file of another operator is refused; guessed Code 2s run into the failure
//! budget and raise a flag; mistyped codes, amounts and phone numbers get clear messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod purse_common;

use std::path::Path;

use offpay_purse::Timestamp;
use offpay_purse::apdu::PurseCard;
use offpay_purse::se::{self, DeviceSecret, SoftwareSecureElement};
use purse_common::{BackendKind, Cli, Server};

const ALICE: &str = "+254700000001";
const BOB: &str = "+254700000002";
const CAROL: &str = "+254700000003";

fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

/// A sync upload made by the purse in `file` (the purse counts it as sent).
fn upload_of(cli: &Cli, file: &Path) -> Vec<u8> {
    let (operator, _) = se::peek_file(file).unwrap();
    let secret = DeviceSecret::load_or_create(&cli.device_secret).unwrap();
    let pin = offpay_purse::Pin::parse(purse_common::PIN).unwrap();
    let element = SoftwareSecureElement::open(file, secret, operator, &pin).unwrap();
    let mut card = PurseCard::new(element, now()).unwrap();
    card.start_sync(now()).unwrap()
}

fn a_cloned_purse_spent_twice_is_caught_at_reconciliation(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let server = Server::start(&directory.path().join("data"), None, &backend);
    let alice = directory.path().join("alice.purse");
    let bob = directory.path().join("bob.purse");
    let carol = directory.path().join("carol.purse");
    cli.provision(&server, ALICE, &alice, false);
    cli.provision(&server, BOB, &bob, false);
    cli.provision(&server, CAROL, &carol, false);
    cli.admin(&server, &["float", "--phone", ALICE, "--amount", "1000"]);
    cli.sync(&alice, &server);

    // Alice copies her purse file and spends the same 800 twice.
    let clone = directory.path().join("alice-clone.purse");
    std::fs::copy(&alice, &clone).unwrap();
    cli.pay((&alice, ALICE), (&bob, BOB), "800");
    cli.pay((&clone, ALICE), (&carol, CAROL), "800");
    cli.sync(&alice, &server);
    cli.sync(&bob, &server);
    cli.sync(&carol, &server);
    let answer = cli.sync(&clone, &server);
    assert_eq!(
        answer["blocked"], true,
        "the clone learns it is blocked: {answer}"
    );

    let flags = server.purse_flags();
    let kinds: Vec<&str> = flags
        .iter()
        .filter(|flag| flag["subject"] == ALICE)
        .map(|flag| flag["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"duplicate_counter"), "{flags:?}");
    assert!(kinds.contains(&"stale_sequence"), "{flags:?}");
    let duplicate = flags
        .iter()
        .find(|flag| flag["kind"] == "duplicate_counter")
        .unwrap();
    assert!(
        duplicate["summary"]
            .as_str()
            .unwrap()
            .contains("cloned purse"),
        "{duplicate}"
    );
    // The loss sits on Alice's account, and the ledger still sums to zero.
    let shadow = server.shadow(ALICE);
    assert_eq!(shadow["balance"], "-600.00", "{shadow}");
    assert_eq!(shadow["blocked"], true);
    assert_eq!(server.shadow(BOB)["balance"], "800.00");
    assert_eq!(server.shadow(CAROL)["balance"], "800.00");
    server.assert_balanced();

    // Bob hears of the block at his next sync and refuses to be paid by Alice.
    cli.sync(&bob, &server);
    let refused = cli.fails(&[
        "purse",
        "--file",
        bob.to_str().unwrap(),
        "request",
        "--from",
        ALICE,
        "--amount",
        "10",
    ]);
    assert!(refused.contains("blocked"), "{refused}");
}

fn forged_and_replayed_syncs_get_clear_errors_and_change_nothing(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let server = Server::start(&directory.path().join("data"), None, &backend);
    let alice = directory.path().join("alice.purse");
    cli.provision(&server, ALICE, &alice, false);
    cli.admin(&server, &["float", "--phone", ALICE, "--amount", "300"]);
    cli.sync(&alice, &server);
    cli.sync(&alice, &server);
    let before = server.shadow(ALICE);
    assert_eq!(before["balance"], "300.00");

    let upload = upload_of(&cli, &alice);
    let mut forged = upload.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let (status, body) = server.post_bytes("/purse/v1/sync", forged);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "sync_unauthenticated");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing changed")
    );
    assert_eq!(server.shadow(ALICE), before);

    let (status, _) = server.post_bytes("/purse/v1/sync", upload.clone());
    assert_eq!(status, 200);
    let after_first = server.shadow(ALICE);
    let (status, body) = server.post_bytes("/purse/v1/sync", upload);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "sync_replayed");
    assert_eq!(server.shadow(ALICE), after_first);

    let (status, body) = server.post_bytes("/purse/v1/sync", b"not a purse upload".to_vec());
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "malformed_message");
    server.assert_balanced();
}

fn a_purse_file_of_another_operator_is_refused(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let ours = Server::start(&directory.path().join("ours"), Some("acme-ke"), &backend);
    let their_backend = kind.fresh();
    let theirs = Server::start(
        &directory.path().join("theirs"),
        Some("other-tz"),
        &their_backend,
    );
    let foreign = directory.path().join("foreign.purse");
    cli.provision(&theirs, ALICE, &foreign, false);
    let file = foreign.to_str().unwrap();

    let refused = cli.fails(&["purse", "--file", file, "sync", "--server", &ours.base]);
    assert!(refused.contains("operator"), "{refused}");
    assert!(refused.contains("wrong_operator"), "{refused}");
    let refused = cli.fails(&["purse", "--file", file, "--operator", "acme-ke", "balance"]);
    assert!(
        refused.contains("belongs to operator other-tz, not acme-ke"),
        "{refused}"
    );

    let (status, body) = ours.get(&format!(
        "/api/v1/purse/purses/{}",
        ALICE.replace('+', "%2B")
    ));
    assert_eq!(status, 404, "nothing was created at our server: {body}");
    ours.assert_balanced();
}

fn guessed_codes_run_into_the_failure_budget_and_are_flagged(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let server = Server::start(&directory.path().join("data"), None, &backend);
    let bob = directory.path().join("bob.purse");
    cli.provision(&server, BOB, &bob, false);
    let file = bob.to_str().unwrap();
    let guess = |code: &str| cli.fails(&["purse", "--file", file, "accept", "--code", code]);

    // Bob invents a payment from a customer and guesses Code 2: three tries per request...
    cli.purse(&bob, &["request", "--from", ALICE, "--amount", "100"]);
    let first = guess("1111 1111");
    assert!(
        first.contains("2 tries left for this request, 4 until the next sync"),
        "{first}"
    );
    assert!(guess("2222 2222").contains("1 tries left"));
    let voided = guess("3333 3333");
    assert!(voided.contains("0 tries left"), "{voided}");
    assert!(
        cli.purse(&bob, &["pending"])["pending"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // ... five per payer per sync period (so one payer cannot lock a merchant out) ...
    let asked = cli.purse(&bob, &["request", "--from", ALICE, "--amount", "101"]);
    guess("4444 4444");
    let fifth = guess("5555 5555");
    assert!(fifth.contains("0 until the next sync"), "{fifth}");
    let refused = cli.fails(&[
        "purse", "--file", file, "request", "--from", ALICE, "--amount", "5",
    ]);
    assert!(
        refused.contains(&format!("too many wrong codes for payments from {ALICE}")),
        "{refused}"
    );
    let first_four = &asked["code1"].as_str().unwrap()[..4];
    cli.purse(&bob, &["cancel", "--request", first_four]);
    // ... and thirty per sync period over all payers: made-up payers, three guesses each.
    let mut guesses = 5;
    let mut payer = 0;
    let exhausted = 'period: loop {
        payer += 1;
        let number = format!("+2547990000{payer:02}");
        let asked = cli.run(&[
            "purse", "--file", file, "request", "--from", &number, "--amount", "100",
        ]);
        if !asked.status.success() {
            break String::from_utf8_lossy(&asked.stderr).into_owned();
        }
        for attempt in 0..3 {
            let answer = guess(&format!("{attempt}{payer:02}00000"));
            if !answer.contains("wrong Code 2") {
                break 'period answer;
            }
            guesses += 1;
            assert!(guesses <= 30, "the period budget did not hold");
        }
    };
    assert_eq!(guesses, 30);
    assert!(exhausted.contains("sync with the operator"), "{exhausted}");
    assert_eq!(cli.purse(&bob, &["balance"])["balance"], "0.00");

    cli.sync(&bob, &server);
    let flags = server.purse_flags();
    assert!(
        flags
            .iter()
            .any(|flag| flag["kind"] == "failed_code_entries" && flag["subject"] == BOB),
        "{flags:?}"
    );
    // Wrong codes naming Alice are flagged on Alice's number, worded as attempted.
    let attempted = flags
        .iter()
        .find(|flag| flag["kind"] == "wrong_codes_attempted" && flag["subject"] == ALICE)
        .unwrap_or_else(|| panic!("{flags:?}"));
    assert!(
        attempted["summary"].as_str().unwrap().contains("attempted"),
        "{attempted}"
    );
    // After the sync Bob may ask Alice again.
    cli.purse(&bob, &["request", "--from", ALICE, "--amount", "5"]);
}

/// Attack 2 through the binary and a real server: Alice copies her purse file, pays Bob,
/// restores the copy and pays Carol. The operator flags and blocks Alice (not Bob or Carol) once
/// she has synced past Bob's report, and Dave refuses her after his next sync.
fn a_restored_purse_file_is_charged_to_its_holder(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let server = Server::start(&directory.path().join("data"), None, &backend);
    let [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"]
        .map(|name| directory.path().join(format!("{name}.purse")));
    const DAVE: &str = "+254700000004";
    for (phone, file) in [(ALICE, &alice), (BOB, &bob), (CAROL, &carol), (DAVE, &dave)] {
        cli.provision(&server, phone, file, false);
    }
    cli.admin(&server, &["float", "--phone", ALICE, "--amount", "1000"]);
    cli.sync(&alice, &server);

    let copy = std::fs::read(&alice).unwrap();
    cli.pay((&alice, ALICE), (&bob, BOB), "700");
    std::fs::write(&alice, &copy).unwrap();
    cli.pay((&alice, ALICE), (&carol, CAROL), "700");
    cli.sync(&bob, &server);
    cli.sync(&carol, &server);
    cli.sync(&alice, &server);
    let answer = cli.sync(&alice, &server);
    assert_eq!(answer["blocked"], true, "{answer}");

    let flags = server.purse_flags();
    let missing = flags
        .iter()
        .find(|flag| flag["kind"] == "payment_missing_from_payer_log")
        .unwrap_or_else(|| panic!("{flags:?}"));
    assert_eq!(missing["subject"], ALICE, "{missing}");
    assert!(
        missing["summary"]
            .as_str()
            .unwrap()
            .contains("restored or cloned"),
        "{missing}"
    );
    for payee in [BOB, CAROL] {
        assert!(
            flags.iter().all(|flag| flag["subject"] != payee),
            "an honest payee was flagged: {flags:?}"
        );
    }
    assert_eq!(server.shadow(BOB)["balance"], "700.00");
    assert_eq!(server.shadow(CAROL)["balance"], "700.00");
    assert_eq!(server.shadow(ALICE)["blocked"], true);
    server.assert_balanced();
    cli.sync(&dave, &server);
    let refused = cli.fails(&[
        "purse",
        "--file",
        dave.to_str().unwrap(),
        "request",
        "--from",
        ALICE,
        "--amount",
        "10",
    ]);
    assert!(refused.contains("blocked"), "{refused}");
}

/// Attacks 3 and 6 through the binary: the purse file opens only with the PIN; wrong PINs are
/// counted on the device, so restoring the purse file does not give them back.
fn wrong_pins_survive_restoring_the_purse_file(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let server = Server::start(&directory.path().join("data"), None, &backend);
    let alice = directory.path().join("alice.purse");
    cli.provision(&server, ALICE, &alice, false);
    let file = alice.to_str().unwrap();
    let copy = std::fs::read(&alice).unwrap();
    let try_pin = |pin: &str| {
        let output = cli.run_with_pin(&["purse", "--file", file, "balance"], Some(pin), None);
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(try_pin("0000").contains("4 tries left"));
    std::fs::write(&alice, &copy).unwrap();
    assert!(try_pin("0001").contains("3 tries left"));
    std::fs::write(&alice, &copy).unwrap();
    assert!(try_pin("0002").contains("2 tries left"));
    assert!(try_pin("0003").contains("1 tries left"));
    let blocked = try_pin("0004");
    assert!(blocked.contains("blocked"), "{blocked}");
    std::fs::write(&alice, &copy).unwrap();
    let output = cli.run(&["purse", "--file", file, "balance"]);
    assert!(
        !output.status.success(),
        "the right PIN after the limit is refused too"
    );
}

fn bad_input_gets_clear_messages_and_changes_nothing(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let server = Server::start(&directory.path().join("data"), None, &backend);
    let alice = directory.path().join("alice.purse");
    let bob = directory.path().join("bob.purse");
    cli.provision(&server, ALICE, &alice, false);
    cli.provision(&server, BOB, &bob, false);
    cli.admin(&server, &["float", "--phone", ALICE, "--amount", "500"]);
    cli.sync(&alice, &server);
    let a = alice.to_str().unwrap();
    let request = cli.purse(&bob, &["request", "--from", ALICE, "--amount", "450"]);
    let code1 = request["code1"].as_str().unwrap();
    let pay = |code: &str, amount: &str, to: &str| {
        cli.fails(&[
            "purse", "--file", a, "pay", "--to", to, "--amount", amount, "--code", code,
        ])
    };
    assert!(pay("1234567", "450", BOB).contains("8 digits; you typed 7"));
    assert!(pay("123456789", "450", BOB).contains("you typed 9"));
    assert!(pay("1234 5a78", "450", BOB).contains("character 7"));
    assert!(pay(code1, "450.505", BOB).contains("amount \"450.505\""));
    assert!(pay(code1, "45O", BOB).contains("amount"));
    assert!(pay(code1, "450", "12345").contains("international form"));
    // A national number is read with the purse's own country code.
    let national = cli.purse(
        &bob,
        &["request", "--from", "0700 000 001", "--amount", "5"],
    );
    assert_eq!(national["payer"], ALICE, "{national}");
    // A mistyped Code 1 or amount is caught before the PIN is used.
    assert!(pay(code1, "451", BOB).contains("Code 1 does not match"));
    let wrong_pin = cli.run_with_pin(
        &[
            "purse", "--file", a, "pay", "--to", BOB, "--amount", "450", "--code", code1,
        ],
        Some("12"),
        None,
    );
    assert!(!wrong_pin.status.success());
    let wrong_pin = String::from_utf8_lossy(&wrong_pin.stderr);
    assert!(wrong_pin.contains("PIN"), "{wrong_pin}");
    // No PIN at all, and none from a terminal: a clear refusal (and never an argument).
    let no_pin = cli.run_with_pin(&["purse", "--file", a, "balance"], None, None);
    assert!(!no_pin.status.success());
    assert!(
        String::from_utf8_lossy(&no_pin.stderr).contains("--pin-stdin"),
        "{}",
        String::from_utf8_lossy(&no_pin.stderr)
    );
    let status = cli.purse(&alice, &["balance"]);
    assert_eq!(status["balance"], "500.00");
    assert_eq!(status["pin_tries_left"], 3);

    // Unknown phone at the operator; a foreign or missing file on the phone.
    let token = server.data_dir.join("admin.token");
    let unknown = cli.fails(&[
        "admin",
        "--server",
        &server.base,
        "--token-file",
        token.to_str().unwrap(),
        "purse",
        "balance",
        "--phone",
        "+254799999999",
    ]);
    assert!(unknown.contains("+254799999999"), "{unknown}");
    let missing = cli.fails(&["purse", "--file", "/nonexistent/x.purse", "balance"]);
    assert!(missing.contains("no purse file"), "{missing}");
    let taken = cli.fails(&[
        "admin",
        "--server",
        &server.base,
        "--token-file",
        token.to_str().unwrap(),
        "purse",
        "provision",
        "--phone",
        ALICE,
        "--out",
        directory.path().join("again.purse").to_str().unwrap(),
    ]);
    assert!(
        taken.contains("provisioned already") || taken.contains("taken") || taken.contains(ALICE),
        "{taken}"
    );
    server.assert_balanced();
}

fn the_menu_reads_like_a_sim_toolkit(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let server = Server::start(&directory.path().join("data"), None, &backend);
    let alice = directory.path().join("alice.purse");
    let bob = directory.path().join("bob.purse");
    cli.provision(&server, ALICE, &alice, false);
    cli.provision(&server, BOB, &bob, false);
    cli.admin(&server, &["float", "--phone", ALICE, "--amount", "500"]);

    // Alice syncs from the menu, then Bob asks her for 120 from his menu.
    let output = cli.run_with_input(
        &[
            "purse",
            "--file",
            alice.to_str().unwrap(),
            "menu",
            "--server",
            &server.base,
        ],
        Some("7\n0\n"),
    );
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(
        screen.contains("1 Receive money") && screen.contains("Bal KES 500.00"),
        "{screen}"
    );
    let output = cli.run_with_input(
        &["purse", "--file", bob.to_str().unwrap(), "menu"],
        Some(&format!("1\n{ALICE}\n120\n0\n")),
    );
    let screen = String::from_utf8_lossy(&output.stdout);
    let code1 = screen
        .lines()
        .skip_while(|line| *line != "Code 1:")
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(
        code1.len(),
        9,
        "codes are shown as two groups of four: {screen}"
    );
    assert!(
        screen.lines().all(|line| line.chars().count() <= 24),
        "short lines: {screen}"
    );
    // Alice saved Bob (typed as a national number): paying him she types only key 1, the
    // amount, Code 1 and the PIN.
    let saved = cli.purse(
        &alice,
        &["add-contact", "--name", "Bob", "--phone", "0700000002"],
    );
    assert_eq!(saved["contacts"][0]["phone"], BOB, "{saved}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let contacts = directory.path().join("alice.purse.contacts");
        let mode = std::fs::metadata(contacts).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let output = cli.run_with_input(
        &["purse", "--file", alice.to_str().unwrap(), "menu"],
        Some(&format!("2\n1\n120\n{code1}\n1234\n4\n0\n")),
    );
    let screen = String::from_utf8_lossy(&output.stdout);
    let code2 = screen
        .lines()
        .skip_while(|line| *line != "Code 2:")
        .nth(1)
        .unwrap()
        .to_owned();
    let output = cli.run_with_input(
        &["purse", "--file", bob.to_str().unwrap(), "menu"],
        Some(&format!("3\n{code2}\n9\n0\n")),
    );
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(
        screen.contains("Received") && screen.contains("KES 120.00"),
        "{screen}"
    );
    assert!(screen.contains("No option \"9\""), "{screen}");
    // The mini statement: date, amount with its currency, counterparty.
    let output = cli.run_with_input(
        &["purse", "--file", bob.to_str().unwrap(), "menu"],
        Some("5\n0\n"),
    );
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(screen.contains("+KES 120.00"), "{screen}");
    assert!(screen.contains(&format!(" from {ALICE}")), "{screen}");
    assert!(
        screen
            .lines()
            .any(|line| line.len() > 5 && line.as_bytes()[2] == b'/' && line.contains("KES")),
        "a date on the statement line: {screen}"
    );
    assert!(!screen.contains("1234"), "the PIN is never shown: {screen}");
    // Issue 24: the same menu in Kiswahili and in French (`--lang`, or OFFPAY_LANG).
    for (language, words) in [
        (
            "sw",
            [
                "POCHI YA OFFPAY",
                "1 Pokea pesa",
                "Salio KES 120.00",
                "Taarifa fupi",
                &format!("kutoka {ALICE}") as &str,
            ],
        ),
        (
            "fr",
            [
                "PORTE-MONNAIE",
                "1 Recevoir",
                "Solde KES 120.00",
                "Mini-relevé",
                &format!("de {ALICE}") as &str,
            ],
        ),
    ] {
        let output = cli.run_with_input(
            &[
                "purse",
                "--file",
                bob.to_str().unwrap(),
                "--lang",
                language,
                "menu",
            ],
            Some("5\n0\n"),
        );
        let screen = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{screen}");
        for word in words {
            assert!(screen.contains(word), "{language}: {word} in {screen}");
        }
        assert!(!screen.contains("Receive money"), "{language}: {screen}");
    }
}

/// A lost phone through the binary: the operator blocks the purse and moves its balance to the
/// person's new purse, holding back what the lost purse could still spend offline.
fn a_lost_phone_moves_its_balance_to_a_new_purse(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let server = Server::start(&directory.path().join("data"), None, &backend);
    const NEW: &str = "+254700000021";
    let old = directory.path().join("old.purse");
    let new = directory.path().join("new.purse");
    cli.provision(&server, ALICE, &old, false);
    cli.provision(&server, NEW, &new, false);
    cli.admin(&server, &["float", "--phone", ALICE, "--amount", "1000"]);
    cli.admin(
        &server,
        &[
            "limits",
            "--phone",
            ALICE,
            "--max-balance",
            "70000",
            "--max-single-payment",
            "20000",
            "--max-spent-since-sync",
            "300",
            "--small-payment-limit",
            "2500",
            "--validity-days",
            "30",
        ],
    );
    cli.sync(&old, &server);
    cli.sync(&old, &server);
    let moved = cli.admin(&server, &["move", "--phone", ALICE, "--to", NEW]);
    assert_eq!(moved["moved"], "700.00", "{moved}");
    assert_eq!(moved["held_back"], "300.00", "{moved}");
    assert_eq!(moved["currency"], "KES");
    cli.sync(&new, &server);
    cli.sync(&new, &server);
    assert_eq!(cli.purse(&new, &["balance"])["balance"], "700.00");
    assert_eq!(server.shadow(ALICE)["blocked"], true);
    assert_eq!(cli.sync(&old, &server)["blocked"], true);
    server.assert_balanced();
}

/// The ticket code for a pairwise key is shown by the purse that asked and typed by the peer,
/// who never syncs: a payment above the small-payment limit then goes through.
fn a_ticket_code_carries_the_pairwise_key_without_a_sync(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let server = Server::start(&directory.path().join("data"), None, &backend);
    let alice = directory.path().join("alice.purse");
    let bob = directory.path().join("bob.purse");
    cli.provision(&server, ALICE, &alice, false);
    cli.provision(&server, BOB, &bob, false);
    cli.admin(&server, &["float", "--phone", ALICE, "--amount", "5000"]);
    cli.sync(&alice, &server);
    cli.purse(&alice, &["ask-key", "--peer", BOB]);
    cli.sync(&alice, &server);
    let tickets = cli.purse(&alice, &["tickets"]);
    let ticket = tickets["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ticket| ticket["peer"] == BOB)
        .unwrap_or_else(|| panic!("{tickets}"));
    let code = ticket["code"].as_str().unwrap();
    assert_eq!(code.len(), 48);
    let text = cli.run(&["purse", "--file", alice.to_str().unwrap(), "tickets"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&format!("Read this to {BOB}")),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    // Bob types it (with spaces, as read out) and never syncs.
    let shown = ticket["shown"].as_str().unwrap();
    cli.purse(&bob, &["enter-ticket", "--peer", ALICE, "--code", shown]);
    cli.pay((&alice, ALICE), (&bob, BOB), "3000");
    assert_eq!(cli.purse(&bob, &["balance"])["balance"], "3000.00");
}

/// Agent settlement through the binary: the operator takes value back from the agent's purse at
/// its sync and records paying the agent; both show in the ledger, which stays balanced.
fn an_agent_settles_collected_value_with_the_operator(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let server = Server::start(&directory.path().join("data"), None, &backend);
    const AGENT: &str = "+254700000009";
    let agent = directory.path().join("agent.purse");
    cli.provision(&server, AGENT, &agent, true);
    cli.admin(&server, &["float", "--phone", AGENT, "--amount", "10000"]);
    cli.sync(&agent, &server);
    cli.sync(&agent, &server);
    let queued = cli.admin(&server, &["settle", "--phone", AGENT, "--amount", "4000"]);
    assert_eq!(queued["amount"], "4000.00", "{queued}");
    cli.sync(&agent, &server);
    assert_eq!(cli.purse(&agent, &["balance"])["balance"], "6000.00");
    cli.sync(&agent, &server);
    let shadow = server.shadow(AGENT);
    assert_eq!(shadow["balance"], "6000.00", "{shadow}");
    assert_eq!(shadow["settlement_owed"], "4000.00", "{shadow}");
    let token = server.data_dir.join("admin.token");
    let overpaid = cli.fails(&[
        "admin",
        "--server",
        &server.base,
        "--token-file",
        token.to_str().unwrap(),
        "purse",
        "settlement-paid",
        "--phone",
        AGENT,
        "--amount",
        "4000.01",
        "--reference",
        "bank-1",
    ]);
    assert!(overpaid.contains("4000"), "{overpaid}");
    cli.admin(
        &server,
        &[
            "settlement-paid",
            "--phone",
            AGENT,
            "--amount",
            "4000",
            "--reference",
            "bank-1",
        ],
    );
    assert_eq!(server.shadow(AGENT)["settlement_owed"], "0.00");
    // The holder's statement from the operator's records, in words with the currency.
    let statement = cli.admin(&server, &["statement", "--phone", AGENT]);
    assert_eq!(statement["balance"], "6000.00", "{statement}");
    let lines = statement["lines"].as_array().unwrap();
    assert!(
        lines.iter().any(|line| line["amount"] == "-4000.00"
            && line["currency"] == "KES"
            && line["what"].as_str().unwrap().contains("settlement")),
        "{statement}"
    );
    server.assert_balanced();
}

offpay_test_support::on_every_backend!(
    an_agent_settles_collected_value_with_the_operator,
    a_ticket_code_carries_the_pairwise_key_without_a_sync,
    a_lost_phone_moves_its_balance_to_a_new_purse,
    a_cloned_purse_spent_twice_is_caught_at_reconciliation,
    forged_and_replayed_syncs_get_clear_errors_and_change_nothing,
    a_purse_file_of_another_operator_is_refused,
    guessed_codes_run_into_the_failure_budget_and_are_flagged,
    a_restored_purse_file_is_charged_to_its_holder,
    wrong_pins_survive_restoring_the_purse_file,
    bad_input_gets_clear_messages_and_changes_nothing,
    the_menu_reads_like_a_sim_toolkit,
);
