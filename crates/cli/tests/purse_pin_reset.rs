//! PIN reset in place, end to end through the `offpay` binary and a real server: the holder
//! forgot the PIN and blocked the device's tries; the operator (`offpay admin purse pin-reset`)
//! issues a one-time code; the holder types it and a new PIN (`offpay purse pin-reset`,
//! `--pin-stdin`); the same purse, with its balance, opens with the new PIN only. A wrong code, a
//! code for another purse and a used code reset nothing, and the code is nowhere in the server's
//! files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod purse_common;

use std::path::Path;

use purse_common::{BackendKind, Cli, PIN, Server};

const ALICE: &str = "+254700000001";
const BOB: &str = "+254700000002";
const NEW_PIN: &str = "908172";

/// `offpay purse --file F pin-reset --pin-stdin --json` with `code` and then `new_pin` on stdin.
fn pin_reset(cli: &Cli, file: &Path, code: &str, new_pin: &str) -> std::process::Output {
    cli.run_with_pin(
        &[
            "purse",
            "--file",
            file.to_str().unwrap(),
            "pin-reset",
            "--json",
        ],
        Some(code),
        Some(&format!("{new_pin}\n")),
    )
}

fn balance_with(cli: &Cli, file: &Path, pin: &str) -> std::process::Output {
    cli.run_with_pin(
        &[
            "purse",
            "--file",
            file.to_str().unwrap(),
            "balance",
            "--json",
        ],
        Some(pin),
        None,
    )
}

/// What a command said: its JSON error on standard output, or standard error.
fn said(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every file under `directory` (logs, the SQLite database), read as bytes.
fn contains_anywhere(directory: &Path, needle: &str) -> bool {
    let mut stack = vec![directory.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap().flatten() {
                stack.push(entry.path());
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
        {
            return true;
        }
    }
    false
}

fn a_forgotten_pin_is_reset_in_place_with_the_operators_code(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let data = directory.path().join("data");
    let cli = Cli::new(directory.path());
    let alice = directory.path().join("alice.purse");
    let bob = directory.path().join("bob.purse");
    let server = Server::start(&data, Some("acme-ke"), &backend);
    cli.provision(&server, ALICE, &alice, false);
    cli.provision(&server, BOB, &bob, false);
    cli.admin(&server, &["float", "--phone", ALICE, "--amount", "500"]);
    cli.sync(&alice, &server);

    // Forgotten: five wrong PINs block the device's tries; even the right PIN is refused now.
    for guess in ["0000", "0001", "0002", "0003", "0004"] {
        assert!(!balance_with(&cli, &alice, guess).status.success());
    }
    let refused = balance_with(&cli, &alice, PIN);
    assert!(!refused.status.success());
    assert!(said(&refused).contains("blocked"), "{}", said(&refused));

    // A thief's guess and Bob's code reset nothing (each is counted on the device).
    let guessed = pin_reset(&cli, &alice, "1111 2222 3333", NEW_PIN);
    assert!(!guessed.status.success());
    assert!(
        said(&guessed).contains("reset code is wrong"),
        "{}",
        said(&guessed)
    );
    let bobs = cli.admin(&server, &["pin-reset", "--phone", BOB]);
    let bobs = bobs["reset_code"].as_str().unwrap().to_owned();
    assert!(!pin_reset(&cli, &alice, &bobs, NEW_PIN).status.success());

    // The holder, identified at the agent, gets Alice's code and types it with a new PIN.
    let issued = cli.admin(&server, &["pin-reset", "--phone", ALICE]);
    let code = issued["reset_code"].as_str().unwrap().to_owned();
    assert_eq!(code.chars().filter(char::is_ascii_digit).count(), 12);
    let reset = pin_reset(&cli, &alice, &code, NEW_PIN);
    assert!(reset.status.success(), "{}", said(&reset));
    let answer: serde_json::Value = serde_json::from_slice(&reset.stdout).unwrap();
    assert_eq!(answer["pin_reset"], true);

    // The same purse, its balance intact, opens with the new PIN only.
    let opened = balance_with(&cli, &alice, NEW_PIN);
    assert!(opened.status.success(), "{}", said(&opened));
    let status: serde_json::Value = serde_json::from_slice(&opened.stdout).unwrap();
    assert_eq!(status["balance"], "500.00");
    assert!(!balance_with(&cli, &alice, PIN).status.success());

    // The code works once.
    let again = pin_reset(&cli, &alice, &code, "1357");
    assert!(!again.status.success());
    assert!(balance_with(&cli, &alice, NEW_PIN).status.success());

    // The operator kept a count, never the code (nor does any log show it).
    let shadow = server.shadow(ALICE);
    assert_eq!(shadow["pin_resets_issued"], 1, "{shadow}");
    let digits: String = code.chars().filter(char::is_ascii_digit).collect();
    server.stop();
    assert!(
        !contains_anywhere(&data, &digits),
        "the code is in the data directory"
    );
    assert!(
        !contains_anywhere(&data, &code),
        "the code is in the data directory"
    );
}

/// The same from the purse menu, in Kiswahili: `*` at the PIN prompt, then the reset code and
/// the new PIN; the menu opens with it. A wrong code opens nothing.
fn the_menu_resets_a_forgotten_pin(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let alice = directory.path().join("alice.purse");
    let server = Server::start(&directory.path().join("data"), None, &backend);
    cli.provision(&server, ALICE, &alice, false);
    cli.admin(&server, &["float", "--phone", ALICE, "--amount", "80"]);
    cli.sync(&alice, &server);
    let menu = |input: &str| {
        cli.run_with_pin(
            &[
                "purse",
                "--file",
                alice.to_str().unwrap(),
                "--lang",
                "sw",
                "menu",
            ],
            Some("*"),
            Some(input),
        )
    };
    let wrong = menu(&format!("0000 0000 0000\n{NEW_PIN}\n0\n"));
    assert!(!wrong.status.success(), "{}", said(&wrong));
    let code = cli.admin(&server, &["pin-reset", "--phone", ALICE])["reset_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let reset = menu(&format!("{code}\n{NEW_PIN}\n0\n"));
    let screen = String::from_utf8_lossy(&reset.stdout).into_owned();
    assert!(reset.status.success(), "{}", said(&reset));
    assert!(screen.contains("Msimbo wa upya:"), "{screen}");
    assert!(screen.contains("PIN imewekwa upya"), "{screen}");
    assert!(
        screen.contains("KES 80.00"),
        "the menu opened the purse: {screen}"
    );
    assert!(balance_with(&cli, &alice, NEW_PIN).status.success());
    assert!(!balance_with(&cli, &alice, PIN).status.success());
}

/// On a terminal the menu reads the PIN with echo off: typed into a real pseudo-terminal (util-linux
/// `script`), the PIN never appears on the screen, and the menu still opens with it. The input
/// is typed after the prompt is up (a terminal echoes what arrives while echo is on).
fn the_menu_never_shows_the_pin_on_a_terminal(kind: BackendKind) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!(
            "skipped the_menu_never_shows_the_pin_on_a_terminal: util-linux script not installed"
        );
        return;
    }
    let backend = kind.fresh();
    let directory = tempfile::tempdir().unwrap();
    let cli = Cli::new(directory.path());
    let alice = directory.path().join("alice.purse");
    let server = Server::start(&directory.path().join("data"), None, &backend);
    cli.provision(&server, ALICE, &alice, false);
    cli.admin(&server, &["float", "--phone", ALICE, "--amount", "80"]);
    cli.sync(&alice, &server);
    let command = format!(
        "'{}' purse --file '{}' menu",
        env!("CARGO_BIN_EXE_offpay"),
        alice.display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("OFFPAY_DEVICE_SECRET", &cli.device_secret)
        .env_remove("OFFPAY_OPERATOR")
        .env_remove("OFFPAY_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let mut stdin = child.stdin.take().expect("stdin");
    for line in [PIN, "0"] {
        std::thread::sleep(std::time::Duration::from_millis(1_500));
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1_000));
    drop(stdin);
    let output = child.wait_with_output().expect("script output");
    let screen = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(screen.contains("Purse PIN:"), "{screen}");
    assert!(
        screen.contains("KES 80.00"),
        "the menu opened the purse with the PIN: {screen}"
    );
    assert!(
        !screen.contains(PIN),
        "the PIN was shown on the terminal: {screen}"
    );
}

offpay_test_support::on_every_backend!(
    a_forgotten_pin_is_reset_in_place_with_the_operators_code,
    the_menu_resets_a_forgotten_pin,
    the_menu_never_shows_the_pin_on_a_terminal,
);
