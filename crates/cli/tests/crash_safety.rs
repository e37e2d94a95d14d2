//! Crash safety on a real server process: SIGKILL it in the middle of a stream of batches, restart
//! it on the same data directory, and check that every acknowledged transfer is there and that no
//! batch is half-applied.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use offpay_test_support::{Backend, BackendKind, ServerProcess};
use serde_json::{Value, json};

/// Transfers per batch in the stream.
const BATCH_TRANSFERS: usize = 40;
/// Client threads posting concurrently (so the server is group-committing when killed).
const CLIENTS: usize = 3;
/// Acknowledged batches to wait for before the kill.
const ACKNOWLEDGED_BEFORE_KILL: usize = 30;
/// Upper bound on how long anything in this test waits.
const WAIT_MAX: Duration = Duration::from_secs(60);

struct RunningServer {
    process: ServerProcess,
    endpoint: Endpoint,
}

/// Where to reach a server, shared with client threads.
#[derive(Clone)]
struct Endpoint {
    base: String,
    token: String,
}

fn start_server(data_dir: &Path, backend: &Backend) -> RunningServer {
    let process = ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_offpay")),
        data_dir,
        backend,
        &[],
        &[],
    );
    let endpoint = Endpoint {
        base: process.base.clone(),
        token: process.token.clone(),
    };
    RunningServer { process, endpoint }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn post(
    http: &reqwest::blocking::Client,
    server: &Endpoint,
    path: &str,
    body: &Value,
) -> Result<Value, String> {
    let response = http
        .post(format!("{}{path}", server.base))
        .bearer_auth(&server.token)
        .json(body)
        .send()
        .map_err(|error| error.to_string())?;
    let status = response.status();
    let body: Value = response.json().map_err(|error| error.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

fn get(http: &reqwest::blocking::Client, server: &Endpoint, path: &str) -> (u16, Value) {
    let response = http
        .get(format!("{}{path}", server.base))
        .bearer_auth(&server.token)
        .send()
        .expect("get");
    let status = response.status().as_u16();
    (status, response.json().expect("json"))
}

fn batch(number: usize) -> Value {
    let transfers: Vec<Value> = (0..BATCH_TRANSFERS)
        .map(|index| {
            json!({ "id": format!("b{number}-{index}"), "debit_account": "float", "credit_account": "alice",
                    "amount": "0.01", "memo": format!("batch {number}") })
        })
        .collect();
    json!({ "transfers": transfers })
}

fn sigkill_mid_stream_loses_no_acknowledged_transfer_and_applies_no_half_batch(kind: BackendKind) {
    let backend = kind.fresh();
    let directory = tempfile::tempdir().expect("temp dir");
    let server = start_server(directory.path(), &backend);
    let http = client();
    for (id, kind) in [("float", "operator_float"), ("alice", "customer")] {
        post(
            &http,
            &server.endpoint,
            "/api/v1/accounts",
            &json!({ "id": id, "kind": kind }),
        )
        .expect("create account");
    }

    let acknowledged = Arc::new(Mutex::new(Vec::<usize>::new()));
    let attempted = Arc::new(Mutex::new(Vec::<usize>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (acknowledged, attempted, stop, next, server) = (
                acknowledged.clone(),
                attempted.clone(),
                stop.clone(),
                next.clone(),
                server.endpoint.clone(),
            );
            std::thread::spawn(move || {
                let http = client();
                let started = Instant::now();
                while !stop.load(Ordering::SeqCst) && started.elapsed() < WAIT_MAX {
                    let number = next.fetch_add(1, Ordering::SeqCst);
                    attempted.lock().expect("lock").push(number);
                    match post(&http, &server, "/api/v1/transfers", &batch(number)) {
                        Ok(_) => acknowledged.lock().expect("lock").push(number),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();

    let started = Instant::now();
    while acknowledged.lock().expect("lock").len() < ACKNOWLEDGED_BEFORE_KILL {
        assert!(
            started.elapsed() < WAIT_MAX,
            "the server acknowledged too few batches"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGKILL (Child::kill on Unix) while the clients are still sending: no shutdown code runs.
    server.process.kill();
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("client thread");
    }

    let acknowledged = acknowledged.lock().expect("lock").clone();
    let attempted = attempted.lock().expect("lock").clone();
    assert!(acknowledged.len() >= ACKNOWLEDGED_BEFORE_KILL);
    eprintln!(
        "killed with {} batches acknowledged and {} in flight",
        acknowledged.len(),
        attempted.len() - acknowledged.len()
    );

    let restarted = start_server(directory.path(), &backend);
    let http = client();
    let mut present_batches = 0i64;
    for number in &attempted {
        let present = (0..BATCH_TRANSFERS)
            .filter(|index| {
                get(
                    &http,
                    &restarted.endpoint,
                    &format!("/api/v1/transfers/b{number}-{index}"),
                )
                .0 == 200
            })
            .count();
        if acknowledged.contains(number) {
            assert_eq!(
                present, BATCH_TRANSFERS,
                "acknowledged batch {number} lost transfers"
            );
        } else {
            assert!(
                present == 0 || present == BATCH_TRANSFERS,
                "batch {number} half-applied: {present} of {BATCH_TRANSFERS}"
            );
        }
        if present == BATCH_TRANSFERS {
            present_batches += 1;
        }
    }
    let (_, alice) = get(&http, &restarted.endpoint, "/api/v1/accounts/alice");
    assert_eq!(
        alice["balance_minor"].as_i64(),
        Some(present_batches * BATCH_TRANSFERS as i64)
    );
    let (_, totals) = get(&http, &restarted.endpoint, "/api/v1/totals");
    assert_eq!(totals["balanced"], true, "{totals}");
    restarted.process.kill();
}

offpay_test_support::on_every_backend!(
    sigkill_mid_stream_loses_no_acknowledged_transfer_and_applies_no_half_batch,
);
