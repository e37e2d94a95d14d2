//! `offpay backup` and `offpay restore` of a server on PostgreSQL, on real processes: a backup
//! taken while the server serves (pg_dump, one snapshot) verifies — readable without a scratch
//! database, balanced when loaded into one — restores into a fresh database and data directory,
//! and serves the same books; a restore is refused into a database a server is using, into one
//! that holds tables (unless --force), and from a tampered archive, which loads nothing.
//! Runs when `OFFPAY_TEST_DATABASE_URL` is set; says so plainly when it is skipped.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use offpay_test_support::database::postgres_url;
use offpay_test_support::{Backend, BackendKind, ServerProcess};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_offpay"))
}

/// Runs `offpay ARGS`; (exit code, stdout, stderr).
fn offpay(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .args(args)
        .env_remove("OFFPAY_LOG_FORMAT")
        .env_remove("OFFPAY_DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run offpay");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn transfer(server: &ServerProcess, id: &str, from: &str, to: &str, amount: &str) {
    let (status, body) = server.post(
        "/api/v1/transfers",
        &json!({ "transfers": [{ "id": id, "debit_account": from, "credit_account": to, "amount": amount }] }),
    );
    assert_eq!(status, 200, "{body}");
}

fn balances(server: &ServerProcess, accounts: &[&str]) -> Vec<Value> {
    accounts
        .iter()
        .map(|account| {
            let (status, body) = server.get(&format!("/api/v1/accounts/{account}"));
            assert_eq!(status, 200, "{body}");
            json!([body["balance_minor"], body["created_at_ms"]])
        })
        .collect()
}

#[test]
fn a_postgres_backup_verifies_restores_into_a_fresh_database_and_serves_the_same_books() {
    if postgres_url().is_none() {
        eprintln!("skipped the PostgreSQL backup story: OFFPAY_TEST_DATABASE_URL is not set");
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let path = |name: &str| scratch.path().join(name);
    let text = |path: &PathBuf| path.to_str().unwrap().to_owned();
    let source = BackendKind::Postgres.fresh();
    let source_url = source.database_url().unwrap().to_owned();
    let data = path("data");
    let server = ServerProcess::start(binary(), &data, &source, &[], &[]);
    for (id, kind) in [
        ("float", "operator_float"),
        ("alice", "customer"),
        ("bob", "customer"),
    ] {
        let (status, body) = server.post("/api/v1/accounts", &json!({ "id": id, "kind": kind }));
        assert_eq!(status, 201, "{body}");
    }
    for number in 0..10 {
        transfer(&server, &format!("t{number}"), "float", "alice", "10.00");
    }
    transfer(&server, "pay", "alice", "bob", "55.50");
    let accounts = ["float", "alice", "bob"];
    let before = balances(&server, &accounts);

    let identity = path("backup.key");
    let (code, out, err) = offpay(&["backup", "keygen", "--out", &text(&identity)]);
    assert_eq!(code, 0, "{out}{err}");
    let archive = path("offpay.backup");
    let (code, out, err) = offpay(&[
        "backup",
        "--data-dir",
        &text(&data),
        "--database-url",
        &source_url,
        "--recipient",
        &format!("{}.pub", text(&identity)),
        "--out",
        &text(&archive),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["database"]["backend"], "postgresql", "{report}");
    assert_eq!(report["database"]["method"], "pg_dump", "{report}");
    let files = report["files"].as_array().unwrap();
    assert!(files.iter().any(|f| f == "admin.token"), "{report}");
    // The server goes on; what it does after the backup is not in it.
    transfer(&server, "after", "float", "bob", "1.00");

    // Without a scratch database: the dump is readable and holds the ledger's tables.
    let (code, out, err) = offpay(&[
        "backup",
        "verify",
        &text(&archive),
        "--identity",
        &text(&identity),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("balances not checked"), "{out}");
    // With one: loaded and balanced.
    let checked = BackendKind::Postgres.fresh();
    let (code, out, err) = offpay(&[
        "backup",
        "verify",
        &text(&archive),
        "--identity",
        &text(&identity),
        "--scratch-database-url",
        checked.database_url().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let verified: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verified["ledger"]["balanced"], true, "{verified}");

    // Into the database the server is using: refused, whatever --force says.
    let restored = path("restored");
    let (code, _, err) = offpay(&[
        "restore",
        &text(&archive),
        "--identity",
        &text(&identity),
        "--data-dir",
        &text(&restored),
        "--database-url",
        &source_url,
        "--force",
    ]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("stop the servers"), "{err}");
    // A PostgreSQL archive needs the database to load into.
    let (code, _, err) = offpay(&[
        "restore",
        &text(&archive),
        "--identity",
        &text(&identity),
        "--data-dir",
        &text(&restored),
    ]);
    assert_eq!(code, 2, "{err}");
    // Into the scratch database, which holds the ledger now: refused without --force.
    let (code, _, err) = offpay(&[
        "restore",
        &text(&archive),
        "--identity",
        &text(&identity),
        "--data-dir",
        &text(&restored),
        "--database-url",
        checked.database_url().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("--force"), "{err}");

    // A tampered archive loads nothing.
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let tampered = path("tampered.backup");
    std::fs::write(&tampered, &bytes).unwrap();
    let target = BackendKind::Postgres.fresh();
    let target_url = target.database_url().unwrap().to_owned();
    let (code, _, err) = offpay(&[
        "restore",
        &text(&tampered),
        "--identity",
        &text(&identity),
        "--data-dir",
        &text(&restored),
        "--database-url",
        &target_url,
    ]);
    assert_eq!(code, 5, "{err}");
    let usage = offpay_ledger_postgres::database_use(&target_url).unwrap();
    assert_eq!(usage.tables, 0, "nothing was loaded");

    // The real restore: a fresh database and data directory, then a server on them.
    let (code, out, err) = offpay(&[
        "restore",
        &text(&archive),
        "--identity",
        &text(&identity),
        "--data-dir",
        &text(&restored),
        "--database-url",
        &target_url,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !restored.join("ledger.pgdump").exists(),
        "the dump is not left in the data directory"
    );
    assert!(!restored.join("offpay.sqlite").exists());
    let copy = ServerProcess::start(
        binary(),
        &restored,
        &Backend::PostgresUrl(target_url.clone()),
        &[],
        &[],
    );
    assert_eq!(copy.token, server.token, "the operator token came back");
    assert_eq!(balances(&copy, &accounts), before);
    let (status, original) = server.get("/api/v1/transfers/pay");
    assert_eq!(status, 200);
    let (status, again) = copy.get("/api/v1/transfers/pay");
    assert_eq!(status, 200);
    assert_eq!(again, original);
    assert_eq!(
        copy.get("/api/v1/transfers/after").0,
        404,
        "made after the backup"
    );
    copy.assert_balanced();
    copy.kill();
    server.kill();
    drop(target);
    drop(checked);
    drop(source);
}
