//! Losing the database machine: `offpay serve` processes on a PostgreSQL primary and its
//! synchronous standby (a multi-host URL with `target_session_attrs=read-write`), under load,
//! when the primary's machine is lost (every process of it SIGKILLed) and the HA manager
//! promotes the standby. Checks that the servers carry on against the promoted standby, that the
//! requests meanwhile get the retryable error, that no acknowledged transfer is lost and no batch
//! half-applied, and that the ledger balances; prints the time to recover.
//!
//! The cluster is not set up here: `scripts/failover-test.sh` creates a pg_auto_failover monitor,
//! primary and standby on loopback ports, and runs this test with
//!
//! - `OFFPAY_FAILOVER_TEST=1` (without it the test says it is skipped),
//! - `OFFPAY_FAILOVER_DATABASE_URL`: the multi-host URL,
//! - `OFFPAY_FAILOVER_KILL`: a shell command that kills the current primary's machine,
//! - optionally `OFFPAY_FAILOVER_SERVERS` (default 2), `OFFPAY_FAILOVER_LOAD_SECONDS` (load kept
//!   up after the recovery, default 10) and `OFFPAY_FAILOVER_REPORT` (a file for the figures,
//!   as JSON).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod outage_common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use offpay_test_support::{Backend, ServerProcess};
use outage_common::{
    Answer, Endpoint, Load, LoadSettings, Summary, assert_alive_without_panic, create_accounts,
    first_acknowledgement_sent_after, verify,
};
use serde_json::json;

/// Client threads posting batches.
const CLIENTS: usize = 4;
/// Acknowledged batches before the primary is killed.
const ACKNOWLEDGED_BEFORE_KILL: usize = 50;
/// Upper bound on the failover: from the kill to the first acknowledgement after it.
const RECOVERY_MAX: Duration = Duration::from_secs(120);
/// Upper bound on any other wait.
const WAIT_MAX: Duration = Duration::from_secs(60);
/// A client's wait for one answer: above the HA manager's write pause during a promotion
/// (pg_auto_failover holds commits on the promoted node until the old primary's demote timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The port of the node a new read-write session lands on.
fn primary_port(url: &str) -> i32 {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .query_one("SELECT inet_server_port()", &[])
            .unwrap()
            .get(0)
    })
    .join()
    .unwrap()
}

/// Copies a data directory's key files and token (not its lock) to another data directory.
fn copy_keys(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_keys(&entry.path(), &target);
        } else if entry.file_name() != "offpay.lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn losing_the_primary_under_load_loses_no_acknowledged_transfer() {
    if variable("OFFPAY_FAILOVER_TEST").as_deref() != Some("1") {
        eprintln!(
            "skipped the failover test: it needs a primary and a standby; run scripts/failover-test.sh"
        );
        return;
    }
    let url = variable("OFFPAY_FAILOVER_DATABASE_URL").expect("OFFPAY_FAILOVER_DATABASE_URL");
    let kill = variable("OFFPAY_FAILOVER_KILL").expect("OFFPAY_FAILOVER_KILL");
    let server_count: usize = variable("OFFPAY_FAILOVER_SERVERS").map_or(2, |n| n.parse().unwrap());
    let load_seconds: u64 =
        variable("OFFPAY_FAILOVER_LOAD_SECONDS").map_or(10, |n| n.parse().unwrap());

    let directories: Vec<tempfile::TempDir> = (0..server_count)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let backend = Backend::PostgresUrl(url.clone());
    // One key set for the whole app tier, as an operator deploys it: the first process makes
    // the keys and the operator token (its user `admin`), the others start from copies.
    let mut servers: Vec<ServerProcess> = Vec::with_capacity(server_count);
    for (index, directory) in directories.iter().enumerate() {
        if index > 0 {
            copy_keys(directories[0].path(), directory.path());
        }
        servers.push(ServerProcess::start(
            Path::new(env!("CARGO_BIN_EXE_offpay")),
            directory.path(),
            &backend,
            &[],
            &[],
        ));
    }
    create_accounts(&servers[0]);
    let port_before = primary_port(&url);
    let endpoints: Vec<Endpoint> = servers.iter().map(Endpoint::of).collect();
    let load = Load::start(
        &endpoints,
        LoadSettings {
            clients: CLIENTS,
            request_timeout: REQUEST_TIMEOUT,
            retry_pause: Duration::from_millis(100),
        },
    );
    load.wait_until("acknowledgements before the kill", WAIT_MAX, |attempts| {
        attempts
            .iter()
            .filter(|attempt| attempt.acknowledged())
            .count()
            >= ACKNOWLEDGED_BEFORE_KILL
    });

    let killing = Instant::now();
    let status = Command::new("sh").args(["-c", &kill]).status().unwrap();
    assert!(status.success(), "{kill}: {status}");
    let killed = Instant::now();
    eprintln!(
        "primary on port {port_before} killed in {:?}",
        killed - killing
    );
    load.wait_until(
        "the first acknowledgement after the kill",
        RECOVERY_MAX,
        |attempts| first_acknowledgement_sent_after(attempts, killed).is_some(),
    );
    let recovered_at = first_acknowledgement_sent_after(&load.attempts(), killed)
        .map(|attempt| attempt.answered)
        .unwrap();
    std::thread::sleep(Duration::from_secs(load_seconds));
    let attempts = load.stop();
    let port_after = primary_port(&url);

    let summary = Summary::of(&attempts);
    assert!(summary.unexpected.is_empty(), "{:?}", summary.unexpected);
    for server in &mut servers {
        assert_alive_without_panic(server);
    }
    let references: Vec<&ServerProcess> = servers.iter().collect();
    let verified = verify(&url, &attempts, &references);
    assert_ne!(port_before, port_after, "the primary moved");

    let after_kill = |attempt: &&outage_common::Attempt| attempt.answered >= killing;
    let retryable_after_kill = attempts
        .iter()
        .filter(after_kill)
        .filter(|attempt| attempt.retryable())
        .count();
    let no_answer_after_kill = attempts
        .iter()
        .filter(after_kill)
        .filter(|attempt| matches!(attempt.answer, Answer::Unanswered { .. }))
        .count();
    let time_to_recover = recovered_at - killed;
    let acknowledged_after = attempts
        .iter()
        .filter(|attempt| attempt.acknowledged() && attempt.sent >= killed)
        .count();
    let report = json!({
        "servers": server_count,
        "clients": CLIENTS,
        "transfers_per_batch": outage_common::BATCH_TRANSFERS,
        "primary_port_before": port_before,
        "primary_port_after": port_after,
        "batches_sent": summary.attempted.len(),
        "batches_acknowledged": summary.acknowledged.len(),
        "batches_acknowledged_after_kill": acknowledged_after,
        "acknowledged_batches_lost": 0,
        "half_applied_batches": 0,
        "batches_in_ledger": verified.batches_present,
        "unacknowledged_batches_in_ledger": verified.unacknowledged_present,
        "transfers_in_ledger": verified.transfers,
        "batches_committed_by_an_attempt_answered_with_an_error": summary.committed_by_an_errored_attempt.len(),
        "retryable_errors": summary.retryable,
        "retryable_errors_after_kill": retryable_after_kill,
        "requests_without_answer": summary.no_answer,
        "requests_without_answer_after_kill": no_answer_after_kill,
        "slowest_error_ms": summary.slowest_error.as_millis() as u64,
        "slowest_acknowledgement_ms": summary.slowest_acknowledgement.as_millis() as u64,
        "kill_command_ms": (killed - killing).as_millis() as u64,
        "time_to_recover_ms": time_to_recover.as_millis() as u64,
        "balanced": true,
    });
    eprintln!("failover: {summary}");
    eprintln!(
        "failover: primary {port_before} -> {port_after}; time to recover (kill to first \
         acknowledged commit sent after it) {time_to_recover:?}; {retryable_after_kill} retryable \
         errors after the kill; no acknowledged batch lost, none half-applied; ledger balanced"
    );
    let report = serde_json::to_string_pretty(&report).unwrap();
    println!("{report}");
    if let Some(path) = variable("OFFPAY_FAILOVER_REPORT") {
        std::fs::write(path, report).unwrap();
    }
}
