//! `offpay admin users`, `approvals` and `audit` against a real server: a user added with its
//! token printed once, a float above the approval amount held and approved by a second user,
//! and `audit verify` exiting non-zero and naming the entry a DBA edited.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use offpay_test_support::{Backend, ServerProcess};
use serde_json::Value;

struct Cli {
    server: String,
}

impl Cli {
    fn run(&self, token_file: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_offpay"))
            .args(["admin", "--server", &self.server, "--token-file"])
            .arg(token_file)
            .args(args)
            .env_remove("OFFPAY_SERVER")
            .env_remove("OFFPAY_TOKEN_FILE")
            .output()
            .expect("run offpay admin")
    }

    fn ok(&self, token_file: &Path, args: &[&str]) -> String {
        let output = self.run(token_file, args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "offpay admin {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn json(&self, token_file: &Path, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(self.ok(token_file, &all).trim()).expect("JSON")
    }
}

/// Adds a user with the CLI and keeps its token in a file of its own (0600).
fn add_user(cli: &Cli, admin: &Path, directory: &Path, name: &str, role: &str) -> PathBuf {
    let text = cli.ok(admin, &["users", "add", name, "--role", role]);
    let token = text
        .lines()
        .find_map(|line| line.strip_prefix("token: "))
        .expect("the token is printed once")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64, "{text}");
    let path = directory.join(format!("{name}.token"));
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

#[test]
fn users_approvals_and_the_audit_chain_through_the_cli() {
    let backend = Backend::Sqlite;
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let server = ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_offpay")),
        &data_dir,
        &backend,
        &[("OFFPAY_APPROVAL_ABOVE", "1000")],
        &[],
    );
    let cli = Cli {
        server: server.base.clone(),
    };
    let admin = data_dir.join("admin.token");
    let fatuma = add_user(&cli, &admin, directory.path(), "fatuma", "finance");
    let faith = add_user(&cli, &admin, directory.path(), "faith", "finance");
    let listed = cli.json(&admin, &["users", "list"]);
    let names: Vec<&str> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "faith", "fatuma"]);
    assert!(
        !listed
            .to_string()
            .contains(&std::fs::read_to_string(&fatuma).unwrap().trim().to_owned())
    );

    cli.ok(
        &fatuma,
        &[
            "account",
            "create",
            "operator:float",
            "--kind",
            "operator_float",
        ],
    );
    cli.ok(&fatuma, &["account", "create", "alice"]);
    // Above the approval amount: held, exit 1, the id named.
    let held = cli.run(
        &fatuma,
        &[
            "--json",
            "transfer",
            "--id",
            "big-1",
            "--from",
            "operator:float",
            "--to",
            "alice",
            "--amount",
            "2500",
        ],
    );
    assert!(!held.status.success());
    let answer: Value = serde_json::from_slice(&held.stdout).unwrap();
    assert_eq!(answer["error"]["code"], "approval_required", "{answer}");
    let id = answer["error"]["approval"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The requester cannot approve it; the second user can.
    let own = cli.run(&fatuma, &["approvals", "approve", &id]);
    assert!(!own.status.success());
    assert!(String::from_utf8_lossy(&own.stderr).contains("another finance or admin user"));
    let pending = cli.json(&faith, &["approvals", "list"]);
    assert_eq!(pending["items"][0]["id"], id.as_str());
    let approved = cli.ok(&faith, &["approvals", "approve", &id]);
    assert!(approved.contains("approved and executed"), "{approved}");
    let balance = cli.json(&faith, &["balance", "alice"]);
    assert_eq!(balance["balance_minor"], 250_000);

    // A revoked user is refused at once.
    cli.ok(&admin, &["users", "revoke", "faith"]);
    let refused = cli.run(&faith, &["totals"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("revoked"));

    // The chain is whole; a DBA edits the approved transfer's entry; verify names it.
    let whole = cli.ok(&admin, &["audit", "verify"]);
    assert!(whole.starts_with("audit chain whole"), "{whole}");
    let export = cli.ok(&admin, &["audit", "export", "--json"]);
    let entries: Vec<Value> = export
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let executed = entries
        .iter()
        .find(|entry| entry["effect"]["transfers"][0]["id"] == "big-1")
        .expect("the approved transfer is in the chain");
    assert_eq!(executed["user"], "fatuma");
    assert_eq!(executed["approval"]["approved_by"], "faith");
    let number = executed["number"].as_u64().unwrap();
    let database = rusqlite::Connection::open(data_dir.join("offpay.sqlite")).unwrap();
    let changed = database
        .execute(
            "UPDATE records SET value = CAST(REPLACE(CAST(value AS TEXT), '2500.00 KES', '25.00 KES') AS BLOB) \
             WHERE namespace = 'audit' AND key = ?1",
            [format!("entry/{number:020}")],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let broken = cli.run(&admin, &["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(1));
    let text = String::from_utf8_lossy(&broken.stdout);
    assert!(
        text.contains(&format!("BROKEN at entry {number}")),
        "{text}"
    );
}
