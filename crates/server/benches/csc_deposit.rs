//! Microcheck deposits at the Clearing and Settlement Center, end to end through the server's
//! router against SQLite in a temporary directory: a vending machine posts a signed deposit of
//! 1,000 microchecks (its day's sales to 20 payers, each payer's credential once); the server
//! checks the machine's signature, parses the deposit, verifies every microcheck (Ed25519 in
//! batches on both cores), re-runs the KeyNote compliance check, refuses spent nonces, decides
//! the postings and fraud findings, commits payer debits, merchant credits and records durably
//! (one group commit with its fsync) and answers with the fate of each microcheck. Writing the
//! microchecks and signing the request are not measured.
//!
//! Two groups: one machine depositing at a time, and four machines each sending deposits back to
//! back (while one deposit holds the CSC lock to decide and post, the others verify), which is
//! how a CSC serving many machines is loaded.
//!
//! The bench allocates with mimalloc, as the `offpay` binary does. After each group it prints
//! the on-CPU time of the measured windows per 1,000 microchecks: with the throughput, it tells
//! how busy the cores were, and how fast the machine was running.
//!
//! `cargo bench -p offpay-server --bench csc_deposit`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::BodyExt;
use offpay_keynote::{Encoding, PrivateKey};
use offpay_microcheck::auth::sign_statement;
use offpay_microcheck::csc::{DepositBody, DepositItem};
use offpay_microcheck::request::request_payload;
use offpay_microcheck::{Offer, UnixSeconds};
use offpay_server::config::{Overrides, ServerConfig};
use offpay_server::{Server, router};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The allocator of the `offpay` binary, which runs the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Microchecks per deposit.
const DEPOSIT: usize = 1000;
/// Payers buying at each machine (50 purchases each a day, inside the strategy's 100).
const PAYERS: usize = 20;
/// Machines depositing at once in the concurrent group.
const CONCURRENT: usize = 4;
/// Deposits each of them sends, one after the other, per measured iteration: enough that the
/// start and end of an iteration, when fewer than four machines are sending, weigh little.
const DEPOSITS_EACH: usize = 6;

struct Payer {
    key: PrivateKey,
    credential: String,
}

struct World {
    _directory: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    app: Router,
    token: String,
    payers: Vec<Payer>,
    machines: AtomicUsize,
    /// When the credentials were issued: microchecks are dated after it.
    issued_at: UnixSeconds,
}

fn now() -> UnixSeconds {
    UnixSeconds(offpay_operator::Clock::now(&offpay_operator::SystemClock).0 / 1000)
}

async fn call(app: &Router, token: Option<&str>, path: &str, body: &Value) -> Value {
    let mut request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {value}");
    value
}

/// A request body signed by a device key, as `offpay microcheck` sends it.
fn signed(key: &PrivateKey, purpose: &str, who: &str, body: Value) -> Value {
    let time = now().0;
    let payload = request_payload(purpose, who, time, &body);
    let signature = sign_statement(key, purpose, &payload).unwrap();
    json!({ "who": who, "time": time, "signature": signature, "body": body })
}

fn identifier(key: &PrivateKey) -> String {
    String::from_utf8(key.principal().to_identifier(Encoding::Base64)).unwrap()
}

fn world() -> World {
    let directory = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = ServerConfig::resolve(
        Overrides {
            data_dir: Some(directory.path().to_owned()),
            listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        },
        &|_| None,
    )
    .unwrap();
    let (app, token) = runtime.block_on(async {
        let server = Server::start(config.clone()).await.unwrap();
        let app = router(server.state());
        // The router holds the state and the ledger handle; the listener is not needed.
        std::mem::forget(server);
        let token = std::fs::read_to_string(config.token_path())
            .unwrap()
            .trim()
            .to_owned();
        (app, token)
    });
    let issued_at = now();
    let payers = runtime.block_on(async {
        let strategy = json!({
            "version": 1, "app_domain": "vend", "currency": "KES",
            "tiers": [{ "name": "bench", "amount_max": "5.00", "validity_seconds": 7 * 86_400,
                        "per_merchant_day_max": 100 }],
            "merchant_validity_seconds": 90 * 86_400, "adulthood_validity_seconds": 30 * 86_400,
            "transaction_amount_max": "0", "transaction_validity_seconds": 900,
            "machine_day_purchases_max": 1_000_000, "travel_speed_kmh_max": 300,
        });
        call(&app, Some(&token), "/api/v1/microcheck/strategy", &strategy).await;
        let mut payers = Vec::new();
        for n in 0..PAYERS {
            let mut seed = [3u8; 32];
            seed[0] = n as u8;
            let key = PrivateKey::ed25519_from_seed(&seed);
            let name = format!("payer-{n}");
            call(
                &app,
                Some(&token),
                "/api/v1/microcheck/payers",
                &json!({ "name": name, "key": identifier(&key) }),
            )
            .await;
            call(
                &app,
                Some(&token),
                "/api/v1/transfers",
                &json!({ "transfers": [{ "id": format!("fund:{name}"),
                         "debit_account": "operator:float",
                         "credit_account": format!("mc:payer:{name}"),
                         "amount": "100000000" }] }),
            )
            .await;
            let answer = call(
                &app,
                None,
                "/microcheck/v1/payer/refresh",
                &signed(&key, "refresh", &name, json!({})),
            )
            .await;
            let credential = answer["credentials"][0].as_str().unwrap().to_owned();
            payers.push(Payer { key, credential });
        }
        payers
    });
    World {
        _directory: directory,
        runtime,
        app,
        token,
        payers,
        machines: AtomicUsize::new(0),
        issued_at,
    }
}

/// A new machine, registered, with a signed deposit of its sales ready to send (the request
/// body's bytes).
fn machine_with_deposit(world: &World) -> String {
    let number = world.machines.fetch_add(1, Ordering::Relaxed);
    let id = format!("vm-{number}");
    let mut seed = [5u8; 32];
    seed[..8].copy_from_slice(&(number as u64).to_be_bytes());
    let key = PrivateKey::ed25519_from_seed(&seed);
    world.runtime.block_on(call(
        &world.app,
        Some(&world.token),
        "/api/v1/microcheck/merchants",
        &json!({ "id": id, "key": identifier(&key) }),
    ));
    let items: Vec<DepositItem> = (0..DEPOSIT)
        .map(|i| {
            let payer = &world.payers[i % PAYERS];
            let time = world.issued_at.plus((i % 60) as u64);
            let nonce = offpay_microcheck::offer::machine_nonce(time, &rand::random());
            let offer = Offer {
                merchant: id.clone(),
                currency: "KES".into(),
                product: "Pocari Sweat".into(),
                product_class: "drink".into(),
                date: time.date(),
                timestamp: time.stamp(),
                amount: "0.83".into(),
                app_domain: "vend".into(),
                nonce,
            };
            let check =
                offpay_microcheck::microcheck::write(&payer.key, &offer.terms().unwrap()).unwrap();
            DepositItem {
                offer,
                microcheck: String::from_utf8(check.text().to_vec()).unwrap(),
                credentials: vec![payer.credential.clone()],
            }
        })
        .collect();
    let body = serde_json::to_value(DepositBody::pack(&items)).unwrap();
    signed(&key, "deposit", &id, body).to_string()
}

/// What the bench reads of the answer.
#[derive(serde::Deserialize)]
struct Answer {
    posted: usize,
}

/// CPU time the process has used, all threads (Linux: `/proc/self/stat`, in clock ticks of
/// 10 ms; the measured windows add up to seconds). `None` elsewhere.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// On-CPU time of the measured windows: wall time depends on how busy both cores are kept, CPU
/// time on how much work a microcheck takes, and the two together tell a slow phase of the
/// machine from a change that does more work.
#[derive(Default)]
struct CpuUse {
    spent: Duration,
    microchecks: u64,
}

impl CpuUse {
    fn add(&mut self, before: Option<Duration>, microchecks: usize) {
        if let (Some(before), Some(after)) = (before, process_cpu()) {
            self.spent += after.saturating_sub(before);
            self.microchecks += microchecks as u64;
        }
    }

    fn report(&self, name: &str) {
        if self.microchecks > 0 {
            let per_thousand = self.spent.as_secs_f64() * 1e6 / self.microchecks as f64;
            eprintln!(
                "csc_deposit/{name}: {per_thousand:.1} ms on-CPU per 1,000 microchecks \
                 ({} microchecks measured, warm-up included)",
                self.microchecks
            );
        }
    }
}

/// Sends a deposit and checks that all of it posted.
async fn deposit(app: &Router, request: String) {
    let request = Request::builder()
        .method("POST")
        .uri("/microcheck/v1/deposit")
        .header("content-type", "application/json")
        .body(Body::from(request))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "deposit: {status}");
    let answer: Answer = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer.posted, DEPOSIT, "every microcheck posts");
}

fn csc_deposit(c: &mut Criterion) {
    let world = world();
    let mut group = c.benchmark_group("csc_deposit");
    group.sample_size(10);
    group.throughput(Throughput::Elements(DEPOSIT as u64));
    let mut cpu = CpuUse::default();
    group.bench_function("one_machine", |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                let request = machine_with_deposit(&world);
                let (start, before) = (Instant::now(), process_cpu());
                world.runtime.block_on(deposit(&world.app, request));
                spent += start.elapsed();
                cpu.add(before, DEPOSIT);
            }
            spent
        });
    });
    cpu.report("one_machine");
    let mut cpu = CpuUse::default();
    group.throughput(Throughput::Elements(
        (DEPOSIT * CONCURRENT * DEPOSITS_EACH) as u64,
    ));
    group.bench_function(format!("{CONCURRENT}_machines_continuously"), |b| {
        b.iter_custom(|iterations| {
            let mut spent = Duration::ZERO;
            for _ in 0..iterations {
                let machines: Vec<Vec<String>> = (0..CONCURRENT)
                    .map(|_| {
                        (0..DEPOSITS_EACH)
                            .map(|_| machine_with_deposit(&world))
                            .collect()
                    })
                    .collect();
                let (start, before) = (Instant::now(), process_cpu());
                world.runtime.block_on(async {
                    let mut set = tokio::task::JoinSet::new();
                    for requests in machines {
                        let app = world.app.clone();
                        set.spawn(async move {
                            for request in requests {
                                deposit(&app, request).await;
                            }
                        });
                    }
                    while let Some(done) = set.join_next().await {
                        done.unwrap();
                    }
                });
                spent += start.elapsed();
                cpu.add(before, DEPOSIT * CONCURRENT * DEPOSITS_EACH);
            }
            spent
        });
    });
    cpu.report(&format!("{CONCURRENT}_machines_continuously"));
    group.finish();
}

criterion_group!(benches, csc_deposit);
criterion_main!(benches);
