//! A real `offpay serve` on a PostgreSQL cluster of the test's own (never the shared test
//! server) while the database goes away and comes back:
//!
//! - the database crashes under load (`pg_ctl stop -m immediate`): requests get the retryable
//!   error promptly (no hang, no panic), the server carries on once the database is back, and
//!   nothing acknowledged is lost; after a restart with no load, the first requests succeed;
//! - the node the server's session is on stops taking writes while a new session could (what a
//!   demoted primary looks like): the store replaces its session instead of failing forever;
//! - a COMMIT whose wait for the synchronous standby is cancelled is not acknowledged;
//! - `offpay serve` says clearly, and exits, when the database is unreachable or refuses the
//!   login.
//!
//! Skipped, saying so, without the PostgreSQL server programs (`/usr/lib/postgresql/15/bin`).
//! The failover of a primary to its synchronous standby is `failover.rs`, run by
//! `scripts/failover-test.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod outage_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use offpay_test_support::cluster::free_port;
use offpay_test_support::{Backend, ServerProcess, TempCluster};
use outage_common::{
    Answer, Endpoint, Load, LoadSettings, Summary, assert_alive_without_panic, create_accounts,
    first_acknowledgement_sent_after, verify,
};
use serde_json::json;

/// Client threads posting batches.
const CLIENTS: usize = 3;
/// Acknowledged batches before the database goes away, and again after it is back.
const ACKNOWLEDGED_BEFORE: usize = 20;
const ACKNOWLEDGED_AFTER: usize = 20;
/// Retryable errors to see while the database is down (every client meets a few).
const ERRORS_DURING_OUTAGE: usize = 3 * CLIENTS;
/// How long any error answer may take: the database's host refuses at once here, so this is
/// far above what the store needs, and far below a hang.
const ERROR_ANSWER_MAX: Duration = Duration::from_secs(15);
/// Upper bound on any wait in these tests.
const WAIT_MAX: Duration = Duration::from_secs(60);
/// How long `offpay serve` may take to give up on a database it cannot use.
const START_FAILURE_MAX: Duration = Duration::from_secs(30);

const SETTINGS: LoadSettings = LoadSettings {
    clients: CLIENTS,
    request_timeout: Duration::from_secs(30),
    retry_pause: Duration::from_millis(50),
};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_offpay"))
}

/// A started cluster with an `offpay` database, or `None` after saying why the test is skipped.
fn cluster_or_skip(test: &str) -> Option<TempCluster> {
    match TempCluster::create() {
        Ok(cluster) => {
            cluster.start();
            cluster.execute("postgres", "CREATE DATABASE offpay");
            Some(cluster)
        }
        Err(reason) => {
            eprintln!("skipped {test}: {reason}");
            None
        }
    }
}

#[test]
fn a_database_crash_under_load_costs_retries_and_loses_nothing_acknowledged() {
    let Some(cluster) = cluster_or_skip("the database crash test") else {
        return;
    };
    // A first host that refuses: a multi-host URL goes on to the next host that takes writes.
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/offpay?target_session_attrs=read-write",
        free_port(),
        cluster.port
    );
    let data = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(
        binary(),
        data.path(),
        &Backend::PostgresUrl(url.clone()),
        &[],
        &[],
    );
    create_accounts(&server);
    let load = Load::start(&[Endpoint::of(&server)], SETTINGS);
    load.wait_until("acknowledgements before the crash", WAIT_MAX, |attempts| {
        attempts
            .iter()
            .filter(|attempt| attempt.acknowledged())
            .count()
            >= ACKNOWLEDGED_BEFORE
    });

    cluster.stop_immediately();
    let stopped = Instant::now();
    load.wait_until("retryable errors during the outage", WAIT_MAX, |attempts| {
        attempts
            .iter()
            .filter(|attempt| attempt.sent >= stopped && attempt.retryable())
            .count()
            >= ERRORS_DURING_OUTAGE
    });
    let outage_attempts = load.attempts();
    cluster.start();
    let restarted = Instant::now();
    load.wait_until("acknowledgements after the restart", WAIT_MAX, |attempts| {
        attempts
            .iter()
            .filter(|attempt| attempt.acknowledged() && attempt.sent >= restarted)
            .count()
            >= ACKNOWLEDGED_AFTER
    });
    let attempts = load.stop();

    // While the database was down nothing sent was acknowledged, and every answer was the
    // retryable error, promptly.
    for attempt in outage_attempts
        .iter()
        .filter(|attempt| attempt.sent >= stopped)
    {
        assert!(
            matches!(attempt.answer, Answer::Retryable { .. }),
            "sent while the database was down: {attempt:?}"
        );
    }
    let summary = Summary::of(&attempts);
    assert!(summary.unexpected.is_empty(), "{:?}", summary.unexpected);
    assert_eq!(summary.no_answer, 0, "every request is answered");
    assert!(
        summary.slowest_error < ERROR_ANSWER_MAX,
        "an error took {:?}",
        summary.slowest_error
    );
    let message = attempts
        .iter()
        .find_map(|attempt| match &attempt.answer {
            Answer::Retryable { message } => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    assert!(message.contains("same ids"), "{message}");

    assert_alive_without_panic(&mut server);
    let verified = verify(&url, &attempts, &[&server]);

    // A restart while nobody asks anything costs the first requests after it nothing: the
    // writer's and the reader's sessions, found dead, are replaced within the same call.
    cluster.stop_immediately();
    cluster.start();
    let quiet = json!({ "transfers": [{ "id": "after-a-quiet-restart", "debit_account": "float",
                                         "credit_account": "alice", "amount": "0.01" }] });
    let (status, body) = server.post("/api/v1/transfers", &quiet);
    assert_eq!(
        status, 200,
        "the first commit after a quiet restart: {body}"
    );
    let (status, body) = server.get("/api/v1/transfers/after-a-quiet-restart");
    assert_eq!(status, 200, "the first read after a quiet restart: {body}");
    let recovered = first_acknowledgement_sent_after(&attempts, restarted)
        .map(|attempt| attempt.answered.duration_since(restarted));
    eprintln!(
        "database crash: {summary}; {} batches in the ledger ({} of them unacknowledged), {} \
         transfers; first acknowledgement {recovered:?} after the database was back",
        verified.batches_present, verified.unacknowledged_present, verified.transfers
    );
}

#[test]
fn a_session_on_a_node_that_stopped_taking_writes_is_replaced() {
    let Some(cluster) = cluster_or_skip("the read-only node test") else {
        return;
    };
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/offpay?target_session_attrs=read-write",
        cluster.port
    );
    let data = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(
        binary(),
        data.path(),
        &Backend::PostgresUrl(url.clone()),
        &[],
        &[],
    );
    create_accounts(&server);
    let transfer = |id: &str| {
        json!({ "transfers": [{ "id": id, "debit_account": "float", "credit_account": "alice",
                                "amount": "0.01" }] })
    };
    let (status, body) = server.post("/api/v1/transfers", &transfer("before"));
    assert_eq!(status, 200, "{body}");

    // The sessions open now turn read-only, as those on a demoted primary would; a new session
    // may write, as one on the promoted standby may (the database's setting outranks the
    // server's for sessions that start after it).
    cluster.execute(
        "postgres",
        "ALTER DATABASE offpay SET default_transaction_read_only = off",
    );
    cluster.execute(
        "postgres",
        "ALTER SYSTEM SET default_transaction_read_only = on",
    );
    cluster.execute("postgres", "SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));

    let (status, body) = server.post("/api/v1/transfers", &transfer("after"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "ledger_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "{body}"
    );
    // The retry, same id, goes to a new session that may write.
    let (status, body) = server.post("/api/v1/transfers", &transfer("after"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][0]["outcome"], "transfer_committed",
        "{body}"
    );
    let (status, alice) = server.get("/api/v1/accounts/alice");
    assert_eq!(status, 200, "{alice}");
    assert_eq!(alice["balance_minor"], 2, "{alice}");
    server.assert_balanced();
    assert_alive_without_panic(&mut server);
}

#[test]
fn a_commit_whose_wait_for_the_standby_was_cancelled_is_not_acknowledged() {
    let Some(cluster) = cluster_or_skip("the cancelled synchronous commit test") else {
        return;
    };
    let url = format!("postgres://postgres@127.0.0.1:{}/offpay", cluster.port);
    let data = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(
        binary(),
        data.path(),
        &Backend::PostgresUrl(url.clone()),
        &[],
        &[],
    );
    create_accounts(&server);
    // A synchronous standby that never answers: every COMMIT waits for it.
    cluster.execute(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = 'absent_standby'",
    );
    cluster.execute("postgres", "SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    let transfer = json!({ "transfers": [{ "id": "waiting", "debit_account": "float",
                                           "credit_account": "alice", "amount": "0.01" }] });
    let (status, body) = std::thread::scope(|scope| {
        let posting = scope.spawn(|| server.post("/api/v1/transfers", &transfer));
        // The writer's session waits for the standby; cancelling the wait (as a statement
        // timeout or an operator would) makes PostgreSQL answer the COMMIT with a warning.
        let started = Instant::now();
        let waiting = loop {
            let rows = cluster.query(
                "postgres",
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
            );
            if let Some(pid) = rows.first().and_then(|row| row[0].clone()) {
                break pid;
            }
            assert!(
                started.elapsed() < WAIT_MAX,
                "no COMMIT waits for the standby"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        cluster.query("postgres", &format!("SELECT pg_cancel_backend({waiting})"));
        posting.join().unwrap()
    });
    assert_eq!(status, 503, "not acknowledged: {body}");
    assert_eq!(body["error"]["code"], "ledger_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("warning"),
        "{body}"
    );

    // The standby requirement lifted, the retry (same id) finds the transfer committed on this
    // node by the cancelled COMMIT, and says so.
    cluster.execute("postgres", "ALTER SYSTEM RESET synchronous_standby_names");
    cluster.execute("postgres", "SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = server.post("/api/v1/transfers", &transfer);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["outcome"], "transfer_exists", "{body}");
    server.assert_balanced();
    assert_alive_without_panic(&mut server);
}

/// Runs `offpay serve` on `url`, expects it to exit with a failure within
/// [`START_FAILURE_MAX`], and returns what it wrote to stderr.
fn serve_fails(url: &str) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(["--database-url", url])
        .env("OFFPAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > START_FAILURE_MAX {
            let _ = child.kill();
            panic!(
                "offpay serve on {url} neither started nor gave up within {START_FAILURE_MAX:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        status.code(),
        Some(6),
        "unavailable, in the CLI's exit-code scheme: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn serve_says_why_it_cannot_use_the_database() {
    let port = free_port();
    let stderr = serve_fails(&format!("postgres://offpay@127.0.0.1:{port}/offpay"));
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("refused"),
        "{stderr}"
    );

    let Some(cluster) = cluster_or_skip("the refused-login half of the start-failure test") else {
        return;
    };
    let stderr = serve_fails(&format!(
        "postgres://nobody_here:s3cret-pw@127.0.0.1:{}/offpay",
        cluster.port
    ));
    assert!(
        stderr.contains("role \"nobody_here\" does not exist"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    let stderr = serve_fails(&format!(
        "postgres://postgres@127.0.0.1:{}/no_such_database",
        cluster.port
    ));
    assert!(
        stderr.contains("database \"no_such_database\" does not exist"),
        "{stderr}"
    );
}
