//! Inbound SMS instructions through the generic webhook (parse, verify, post, queue replies),
//! driving the whole router with `tower::ServiceExt::oneshot` against SQLite in a temporary
//! directory, many requests in flight so that group commit batches them. Each payment comes
//! from its own payer envelope (payers are many; one envelope's rows are one-time), pays one
//! payee whose notice is queued, and answers the payer inline.
//!
//! `cargo bench -p offpay-server --bench sms_webhook`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::BodyExt;
use offpay_ledger::{Amount, Currency};
use offpay_server::config::{Overrides, ServerConfig};
use offpay_server::{Server, router};
use offpay_sms_tan::compose::{grid_text, low_text};
use offpay_sms_tan::{AccountNumber, Envelope, Euin, MasterKey, RowCount, SecurityLevel};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Requests in flight at once.
const IN_FLIGHT: usize = 512;
/// Payers (each with a 50-row envelope: 24 payments each; at most one issue call).
const PAYERS: usize = 10_000;
/// Envelopes issued per API call during setup.
const ISSUE_CHUNK: usize = 5000;
/// Payments one 50-row envelope can make (payer row + bank row, one row kept for REG).
const PAYMENTS_PER_ENVELOPE: usize = 24;
const PAYEE: &str = "901020377865";

struct Payer {
    envelope: Envelope,
    phone: String,
}

struct World {
    _directory: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    app: Router,
    gateway_token: String,
    payers: Vec<Payer>,
    next: AtomicUsize,
    message: AtomicUsize,
}

async fn call(app: &Router, token: &str, method: &str, path: &str, body: Value) -> Value {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {value}");
    value
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
        // The server value (listener, writer join handle) is not needed: the router holds the
        // state and the ledger handle.
        std::mem::forget(server);
        let token = std::fs::read_to_string(config.token_path())
            .unwrap()
            .trim()
            .to_owned();
        (app, token)
    });
    let read = |name: &str| {
        std::fs::read_to_string(directory.path().join(name))
            .unwrap()
            .trim()
            .to_owned()
    };
    let gateway_token = read("sms-gateway.token");
    let master_hex = read("keys/sms-master.key");
    let master_bytes: Vec<u8> = (0..master_hex.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&master_hex[index..index + 2], 16).unwrap())
        .collect();
    let master = MasterKey::from_slice(&master_bytes).unwrap();
    let payers = runtime.block_on(async {
        let mut settings = call(&app, &token, "GET", "/api/v1/sms/settings", json!(null)).await;
        settings["fees"] =
            json!([{ "currency": "KES", "low": "10", "middle": "15", "high": "25" }]);
        call(&app, &token, "PUT", "/api/v1/sms/settings", settings).await;
        call(
            &app,
            &token,
            "POST",
            "/api/v1/accounts",
            json!({ "id": "operator:float", "kind": "operator_float" }),
        )
        .await;
        call(
            &app,
            &token,
            "POST",
            "/api/v1/sms/accounts",
            json!({ "receive_number": PAYEE, "notify_phone": "+254700000002" }),
        )
        .await;
        let mut euins: Vec<String> = Vec::with_capacity(PAYERS);
        while euins.len() < PAYERS {
            let count = (PAYERS - euins.len()).min(ISSUE_CHUNK);
            let issued = call(
                &app,
                &token,
                "POST",
                "/api/v1/sms/envelopes/issue",
                json!({ "count": count, "rows": 50 }),
            )
            .await;
            euins.extend(
                issued["euins"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|euin| euin.as_str().unwrap().to_owned()),
            );
        }
        let mut set = tokio::task::JoinSet::new();
        for (index, euin) in euins.iter().enumerate() {
            let (app, token, euin) = (app.clone(), token.clone(), euin.clone());
            set.spawn(async move {
                let receive = format!("{:012}", 200_000_000_000u64 + index as u64);
                call(
                    &app,
                    &token,
                    "POST",
                    "/api/v1/sms/accounts",
                    json!({ "receive_number": receive }),
                )
                .await;
                call(
                    &app,
                    &token,
                    "POST",
                    "/api/v1/transfers",
                    json!({ "transfers": [{ "id": format!("fund:{receive}"),
                             "debit_account": "operator:float",
                             "credit_account": format!("sms:{receive}"),
                             "amount": "1000000" }] }),
                )
                .await;
                call(
                    &app,
                    &token,
                    "POST",
                    &format!("/api/v1/sms/envelopes/{euin}/bind"),
                    json!({ "account": receive }),
                )
                .await;
            });
            while set.len() >= 64 {
                set.join_next().await.unwrap().unwrap();
            }
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
        euins
            .iter()
            .enumerate()
            .map(|(index, euin)| Payer {
                envelope: Envelope::derive(&master, Euin::parse(euin).unwrap(), RowCount::Fifty),
                phone: format!("+2547{:08}", index),
            })
            .collect()
    });
    World {
        _directory: directory,
        runtime,
        app,
        gateway_token,
        payers,
        next: AtomicUsize::new(0),
        message: AtomicUsize::new(0),
    }
}

fn low_pay(envelope: &Envelope, payee: &AccountNumber, amount: &Amount, row: u8) -> String {
    low_text(envelope, &envelope.euin.to_string(), payee, amount, row).unwrap()
}

fn middle_pay(envelope: &Envelope, payee: &AccountNumber, amount: &Amount, row: u8) -> String {
    let payer = envelope.euin.to_string();
    grid_text(envelope, SecurityLevel::Middle, &payer, payee, amount, row).unwrap()
}

impl World {
    /// The next `count` instructions, each from a payer row not used before.
    fn instructions(&self, count: usize, middle: bool) -> Vec<(String, String, String)> {
        let payee = AccountNumber::parse(PAYEE).unwrap();
        let amount = Amount::parse("12.50", Currency::KES).unwrap();
        (0..count)
            .map(|_| {
                let slot = self.next.fetch_add(1, Ordering::Relaxed);
                assert!(
                    slot < PAYERS * PAYMENTS_PER_ENVELOPE,
                    "the benchmark ran out of envelope rows; raise PAYERS"
                );
                let payer = &self.payers[slot % PAYERS];
                // Payer rows go up from 1; the bank takes rows from 50 down.
                let row = u8::try_from(1 + slot / PAYERS).unwrap();
                let text = if middle {
                    middle_pay(&payer.envelope, &payee, &amount, row)
                } else {
                    low_pay(&payer.envelope, &payee, &amount, row)
                };
                let id = format!("bench-{}", self.message.fetch_add(1, Ordering::Relaxed));
                (id, payer.phone.clone(), text)
            })
            .collect()
    }

    fn run(&self, instructions: Vec<(String, String, String)>) -> Duration {
        let app = self.app.clone();
        let token = self.gateway_token.clone();
        self.runtime.block_on(async move {
            let start = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for (id, from, text) in instructions {
                let (app, token) = (app.clone(), token.clone());
                set.spawn(async move {
                    let request = Request::builder()
                        .method("POST")
                        .uri("/sms/webhook")
                        .header("authorization", format!("Bearer {token}"))
                        .header("content-type", "application/json")
                        .body(Body::from(
                            json!({ "from": from, "text": text, "message_id": id }).to_string(),
                        ))
                        .unwrap();
                    let response = app.oneshot(request).await.unwrap();
                    let bytes = response.into_body().collect().await.unwrap().to_bytes();
                    let answer: Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(answer["verdict"], "accepted", "{answer}");
                });
                while set.len() >= IN_FLIGHT {
                    set.join_next().await.unwrap().unwrap();
                }
            }
            while let Some(done) = set.join_next().await {
                done.unwrap();
            }
            start.elapsed()
        })
    }
}

fn bench(c: &mut Criterion) {
    let world = world();
    let mut group = c.benchmark_group("sms_webhook");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    for (name, middle) in [("low_pay", false), ("middle_pay", true)] {
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iters| {
                let instructions = world.instructions(usize::try_from(iters).unwrap(), middle);
                world.run(instructions)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
