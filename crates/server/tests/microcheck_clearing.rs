//! How the CSC posts a deposit, through the router against SQLite: one ledger batch for the
//! deposit with its counters written once; spent nonces found only when the ledger refuses;
//! a ledger refusal that names one microcheck refuses it alone and posts the rest with counters
//! that count exactly what posted; deposits decided while earlier ones commit count and charge
//! exactly as if decided one after the other.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use offpay_keynote::{Encoding, PrivateKey};
use offpay_ledger::{AccountId, BalanceLimits, Batch, Operation};
use offpay_microcheck::auth::sign_statement;
use offpay_microcheck::csc::{DepositBody, DepositItem};
use offpay_microcheck::request::request_payload;
use offpay_microcheck::{Offer, UnixSeconds};
use offpay_server::config::{Overrides, ServerConfig};
use offpay_server::rails::microcheck::NAMESPACE;
use offpay_server::{AppState, Server, router};
use offpay_test_support::Backend;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Harness {
    _directory: tempfile::TempDir,
    /// The ledger's database (dropped after the server's directory).
    _backend: Backend,
    state: Arc<AppState>,
    token: String,
    payer: PrivateKey,
    credential: String,
    merchant: PrivateKey,
    issued_at: UnixSeconds,
}

fn now() -> UnixSeconds {
    UnixSeconds(offpay_operator::Clock::now(&offpay_operator::SystemClock).0 / 1000)
}

fn identifier(key: &PrivateKey) -> String {
    String::from_utf8(key.principal().to_identifier(Encoding::Base64)).unwrap()
}

fn signed(key: &PrivateKey, purpose: &str, who: &str, body: Value) -> Value {
    let time = now().0;
    let payload = request_payload(purpose, who, time, &body);
    let signature = sign_statement(key, purpose, &payload).unwrap();
    json!({ "who": who, "time": time, "signature": signature, "body": body })
}

impl Harness {
    async fn start(backend: Backend) -> Harness {
        let directory = tempfile::tempdir().unwrap();
        let config = ServerConfig::resolve(
            Overrides {
                data_dir: Some(directory.path().to_owned()),
                listen: Some("127.0.0.1:0".into()),
                database_url: backend.database_url().map(str::to_owned),
                ..Overrides::default()
            },
            &|_| None,
        )
        .unwrap();
        let server = Server::start(config.clone()).await.unwrap();
        let token = std::fs::read_to_string(config.token_path())
            .unwrap()
            .trim()
            .to_owned();
        let mut harness = Harness {
            _directory: directory,
            _backend: backend,
            state: server.state(),
            token,
            payer: PrivateKey::ed25519_from_seed(&[41; 32]),
            credential: String::new(),
            merchant: PrivateKey::ed25519_from_seed(&[42; 32]),
            issued_at: now(),
        };
        let strategy = json!({
            "version": 1, "app_domain": "vend", "currency": "KES",
            "tiers": [{ "name": "test", "amount_max": "5.00", "validity_seconds": 86_400,
                        "per_merchant_day_max": 50 }],
            "merchant_validity_seconds": 86_400, "adulthood_validity_seconds": 86_400,
            "transaction_amount_max": "0", "transaction_validity_seconds": 900,
            "machine_day_purchases_max": 1000, "travel_speed_kmh_max": 300,
        });
        harness
            .operator("/api/v1/microcheck/strategy", strategy)
            .await;
        let payer_key = identifier(&harness.payer);
        harness
            .operator(
                "/api/v1/microcheck/payers",
                json!({ "name": "alice", "key": payer_key }),
            )
            .await;
        harness
            .operator(
                "/api/v1/transfers",
                json!({ "transfers": [{ "id": "fund:alice", "debit_account": "operator:float",
                         "credit_account": "mc:payer:alice", "amount": "20.00" }] }),
            )
            .await;
        let merchant_key = identifier(&harness.merchant);
        harness
            .operator(
                "/api/v1/microcheck/merchants",
                json!({ "id": "vm-1", "key": merchant_key }),
            )
            .await;
        let (status, answer) = harness
            .call(
                "/microcheck/v1/payer/refresh",
                None,
                signed(&harness.payer, "refresh", "alice", json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        harness.credential = answer["credentials"][0].as_str().unwrap().to_owned();
        harness
    }

    async fn call(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = router(self.state.clone())
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn operator(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(path, Some(&self.token), body).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    /// A microcheck by alice at vm-1, `seconds` after her credential was issued.
    fn item(&self, nonce: u8, product: &str, seconds: u64) -> DepositItem {
        self.item_at("vm-1", u32::from(nonce), product, seconds)
    }

    /// A microcheck by alice at `merchant`.
    fn item_at(&self, merchant: &str, nonce: u32, product: &str, seconds: u64) -> DepositItem {
        let time = self.issued_at.plus(seconds);
        let offer = Offer {
            merchant: merchant.into(),
            currency: "KES".into(),
            product: product.into(),
            product_class: "drink".into(),
            date: time.date(),
            timestamp: time.stamp(),
            amount: "0.83".into(),
            app_domain: "vend".into(),
            nonce: format!("{nonce:032x}"),
        };
        let check =
            offpay_microcheck::microcheck::write(&self.payer, &offer.terms().unwrap()).unwrap();
        DepositItem {
            offer,
            microcheck: String::from_utf8(check.text().to_vec()).unwrap(),
            credentials: vec![self.credential.clone()],
        }
    }

    /// Registers a second machine, vm-2, with the key of seed 43.
    async fn register_vm2(&self) -> PrivateKey {
        let key = PrivateKey::ed25519_from_seed(&[43; 32]);
        self.operator(
            "/api/v1/microcheck/merchants",
            json!({ "id": "vm-2", "key": identifier(&key) }),
        )
        .await;
        key
    }

    /// Deposits `items` as vm-1; the code of each result (`posted` when it posted).
    async fn deposit(&self, items: &[DepositItem]) -> Vec<String> {
        self.deposit_as(&self.merchant, "vm-1", items)
            .await
            .iter()
            .map(|r| r["code"].as_str().unwrap_or("posted").to_owned())
            .collect()
    }

    /// Deposits `items` as machine `id` with `key`; the result of each.
    async fn deposit_as(&self, key: &PrivateKey, id: &str, items: &[DepositItem]) -> Vec<Value> {
        let body = serde_json::to_value(DepositBody::pack(items)).unwrap();
        let (status, answer) = self
            .call(
                "/microcheck/v1/deposit",
                None,
                signed(key, "deposit", id, body),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["results"].as_array().unwrap().clone()
    }

    async fn record(&self, key: String) -> Option<Value> {
        self.state
            .ledger
            .read(move |store| store.record(NAMESPACE, &key))
            .await
            .unwrap()
            .map(|record| serde_json::from_slice(&record.value).unwrap())
    }

    /// A payer's recent purchases, read as the CSC reads them (a typed, versioned record).
    async fn recent(&self, payer: &str) -> Option<usize> {
        let key = offpay_microcheck::csc::recent_key(payer);
        self.state
            .ledger
            .read(move |store| store.record(NAMESPACE, &key).map(|record| (key, record)))
            .await
            .unwrap()
            .1
            .map(|record| {
                <offpay_microcheck::csc::RecentRecord as offpay_operator::StoredRecord>::decode(
                    "recent",
                    &record.value,
                )
                .unwrap()
                .purchases
                .len()
            })
    }

    async fn count(&self, key: String) -> u64 {
        self.record(key)
            .await
            .map_or(0, |value| value["count"].as_u64().unwrap())
    }

    /// The day counters and recent purchases as the CSC will read them next.
    async fn counters(&self) -> (u64, u64, usize) {
        let date = self.issued_at.date();
        let payer_day = self.count(format!("pmday:alice:vm-1:{date}")).await;
        let machine_day = self.count(format!("mday:vm-1:{date}")).await;
        let recent = self.recent("alice").await.unwrap_or(0);
        (payer_day, machine_day, recent)
    }

    /// Sets the most vm-1's account may hold (`None`: no cap), as the operator would.
    async fn cap_merchant(&self, balance_max: Option<i64>) {
        self.state
            .ledger
            .commit(
                vec![Batch {
                    operations: vec![Operation::SetLimits {
                        account: AccountId::new("mc:merchant:vm-1").unwrap(),
                        limits: BalanceLimits {
                            balance_min: Some(0),
                            balance_max,
                        },
                    }],
                }],
                offpay_operator::Clock::now(&offpay_operator::SystemClock),
            )
            .await
            .unwrap()
            .pop()
            .unwrap()
            .unwrap();
    }

    /// Deposits decided while others committed, and deposits posted with the CSC lock held
    /// until they committed.
    fn paths(&self) -> (u64, u64) {
        let metrics = &self.state.metrics;
        (
            metrics
                .microcheck_deposits_pipelined
                .load(Ordering::Relaxed),
            metrics.microcheck_deposits_locked.load(Ordering::Relaxed),
        )
    }

    async fn balance(&self, account: &str) -> i64 {
        let account = AccountId::new(account).unwrap();
        self.state
            .ledger
            .read(move |store| store.account(&account))
            .await
            .unwrap()
            .unwrap()
            .balance()
    }
}

async fn a_deposit_posts_whole_with_its_counters_written_once(backend: Backend) {
    let harness = Harness::start(backend).await;
    let items: Vec<DepositItem> = (1..=3).map(|n| harness.item(n, "soda", 60)).collect();
    assert_eq!(harness.deposit(&items).await, ["posted"; 3]);
    assert_eq!(harness.counters().await, (3, 3, 3));
    assert_eq!(
        harness.paths(),
        (1, 0),
        "decided without waiting for a commit"
    );
    assert_eq!(harness.balance("mc:merchant:vm-1").await, 249);
    assert_eq!(harness.balance("mc:payer:alice").await, 2000 - 249);
    // Each microcheck's charge record (its proof of deposit) holds the hash of the microcheck.
    let offer = &items[0].offer;
    let charge = harness
        .record(offpay_microcheck::csc::charge_key(
            "alice",
            &offer.timestamp,
            "vm-1",
            &offer.nonce,
        ))
        .await
        .unwrap();
    assert_eq!(
        charge["microcheck_sha256"],
        offpay_microcheck::csc::microcheck_hash(&items[0].microcheck)
    );
    // Stored in minor units with its currency (charge format 3), not as decimal text.
    assert_eq!(charge["amount"], json!({ "currency": "KES", "minor": 83 }));
}

async fn spent_nonces_are_refused_and_the_rest_post(backend: Backend) {
    let harness = Harness::start(backend).await;
    let first = [harness.item(1, "soda", 60), harness.item(2, "soda", 61)];
    assert_eq!(harness.deposit(&first).await, ["posted"; 2]);
    // The machine sends the first one again, a fresh one, and a different microcheck that
    // reuses the second one's nonce on the same day.
    let again = [
        first[0].clone(),
        harness.item(3, "soda", 62),
        harness.item(2, "water", 63),
    ];
    assert_eq!(
        harness.deposit(&again).await,
        ["already_deposited", "posted", "replayed_nonce"]
    );
    assert_eq!(
        harness.counters().await,
        (3, 3, 3),
        "only what posted counts"
    );
    assert_eq!(harness.balance("mc:merchant:vm-1").await, 3 * 83);
    // A whole deposit sent twice: every microcheck refused, nothing moves.
    assert_eq!(harness.deposit(&again[..2]).await, ["already_deposited"; 2]);
    assert_eq!(harness.balance("mc:merchant:vm-1").await, 3 * 83);
    assert_eq!(harness.counters().await, (3, 3, 3));
    // The ledger refused the batches holding spent nonces; those deposits were decided again.
    assert_eq!(harness.paths(), (1, 2));
}

async fn a_ledger_refusal_refuses_one_microcheck_and_counts_exactly_the_rest(backend: Backend) {
    let harness = Harness::start(backend).await;
    // The operator caps the machine's account at 1.00: only one 0.83 sale fits.
    harness.cap_merchant(Some(100)).await;
    let items: Vec<DepositItem> = (1..=3).map(|n| harness.item(n, "soda", 60)).collect();
    let codes = harness.deposit(&items).await;
    assert_eq!(codes, ["posted", "ledger_refused", "ledger_refused"]);
    assert_eq!(harness.balance("mc:merchant:vm-1").await, 83);
    assert_eq!(harness.balance("mc:payer:alice").await, 2000 - 83);
    assert_eq!(
        harness.counters().await,
        (1, 1, 1),
        "counters count what posted"
    );
    // Once the cap is lifted the refused ones deposit: their nonces were never spent.
    harness.cap_merchant(None).await;
    assert_eq!(
        harness.deposit(&items).await,
        ["already_deposited", "posted", "posted"]
    );
    assert_eq!(harness.counters().await, (3, 3, 3));
}

/// Eight deposits at once, four from each of two machines, all of one payer whose balance runs
/// out among them: each deposit is decided while others commit, yet the payer pays for exactly
/// as many microchecks as her balance covers, the rest bounce, and every counter counts each
/// microcheck once — as if the deposits had been decided one after the other.
async fn deposits_decided_while_others_commit_count_and_charge_exactly(backend: Backend) {
    let harness = Arc::new(Harness::start(backend).await);
    harness.register_vm2().await;
    const DEPOSITS_EACH: u32 = 4;
    const ITEMS: u32 = 5;
    let mut tasks = tokio::task::JoinSet::new();
    for deposit in 0..DEPOSITS_EACH {
        // vm-1's key is the harness's (seed 42), vm-2's the one registered above (seed 43).
        for (machine, seed) in [("vm-1", 42), ("vm-2", 43)] {
            let items: Vec<DepositItem> = (0..ITEMS)
                .map(|n| {
                    let nonce = (u32::from(machine == "vm-2") << 16) | (deposit * ITEMS + n);
                    harness.item_at(machine, nonce, "soda", 60 + u64::from(n))
                })
                .collect();
            let harness = Arc::clone(&harness);
            tasks.spawn(async move {
                let key = PrivateKey::ed25519_from_seed(&[seed; 32]);
                harness.deposit_as(&key, machine, &items).await
            });
        }
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        results.extend(done.unwrap());
    }
    let total = 2 * DEPOSITS_EACH * ITEMS;
    assert_eq!(results.len(), total as usize);
    assert!(
        results.iter().all(|r| r["status"] == "posted"),
        "{results:?}"
    );
    // 20.00 covers 24 sales of 0.83; the other 16 are paid from suspense.
    let bounced = results.iter().filter(|r| r["bounced"] == true).count();
    assert_eq!(bounced, 16);
    assert_eq!(harness.balance("mc:payer:alice").await, 2000 - 24 * 83);
    assert_eq!(harness.count("bounces:alice".into()).await, 16);
    assert_eq!(
        harness.balance("mc:merchant:vm-1").await + harness.balance("mc:merchant:vm-2").await,
        i64::from(total) * 83
    );
    let date = harness.issued_at.date();
    for machine in ["vm-1", "vm-2"] {
        let each = u64::from(DEPOSITS_EACH * ITEMS);
        assert_eq!(
            harness.count(format!("pmday:alice:{machine}:{date}")).await,
            each
        );
        assert_eq!(harness.count(format!("mday:{machine}:{date}")).await, each);
    }
    let recent = harness.recent("alice").await.unwrap();
    assert_eq!(recent, offpay_microcheck::limits::PAYER_RECENT_MAX);
    let (pipelined, locked) = harness.paths();
    assert_eq!(pipelined + locked, u64::from(2 * DEPOSITS_EACH));
}

/// Deposits one after the other from two machines sharing a payer: each reads the clearing
/// state while nothing is in flight, so each decision stands and none is made again, and the
/// record versions the CSC expects are those the ledger holds.
async fn deposits_one_after_the_other_are_never_decided_again(backend: Backend) {
    let harness = Harness::start(backend).await;
    let vm2 = harness.register_vm2().await;
    for round in 0..3u32 {
        for (machine, key) in [("vm-1", &harness.merchant), ("vm-2", &vm2)] {
            let nonce = (u32::from(machine == "vm-2") << 16) | round;
            let items = [harness.item_at(machine, nonce, "soda", 60)];
            let results = harness.deposit_as(key, machine, &items).await;
            assert_eq!(results[0]["status"], "posted", "{results:?}");
        }
    }
    assert_eq!(harness.paths(), (6, 0));
    assert_eq!(harness.counters().await, (3, 3, 6));
    assert_eq!(harness.balance("mc:payer:alice").await, 2000 - 6 * 83);
}

async fn a_deposit_is_signed_over_its_body_and_bounded_in_size(backend: Backend) {
    let harness = Harness::start(backend).await;
    let items = [harness.item(1, "soda", 60)];
    let body = serde_json::to_value(DepositBody::pack(&items)).unwrap();
    // Signed over the compact body but sent laid out otherwise: checked against the compact
    // form of what arrived, and accepted.
    let request = signed(&harness.merchant, "deposit", "vm-1", body.clone());
    let pretty = serde_json::to_string_pretty(&request).unwrap();
    let response = router(harness.state.clone())
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/microcheck/v1/deposit")
                .header("content-type", "application/json")
                .body(Body::from(pretty))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A body changed after signing: refused, nothing posts.
    let mut altered = signed(&harness.merchant, "deposit", "vm-1", body);
    altered["body"]["items"][0]["offer"]["amount"] = json!("0.01");
    let (status, answer) = harness.call("/microcheck/v1/deposit", None, altered).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(harness.balance("mc:merchant:vm-1").await, 83);
    // One microcheck more than a deposit may hold: refused before anything is parsed.
    let limit = offpay_microcheck::limits::DEPOSIT_ITEMS_MAX;
    let packed = DepositBody::pack(&items);
    let large = DepositBody {
        credentials: packed.credentials.clone(),
        items: vec![packed.items[0].clone(); limit + 1],
    };
    let (status, answer) = harness
        .call(
            "/microcheck/v1/deposit",
            None,
            signed(
                &harness.merchant,
                "deposit",
                "vm-1",
                serde_json::to_value(large).unwrap(),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "deposit_too_large", "{answer}");
}

async fn offline_microchecks_deposited_first_cannot_spend_what_an_online_credential_holds(
    backend: Backend,
) {
    let harness = Harness::start(backend).await;
    let strategy = json!({
        "version": 1, "app_domain": "vend", "currency": "KES",
        "tiers": [{ "name": "test", "amount_max": "5.00", "validity_seconds": 86_400,
                    "per_merchant_day_max": 50 }],
        "merchant_validity_seconds": 86_400, "adulthood_validity_seconds": 86_400,
        "transaction_amount_max": "20.00", "transaction_validity_seconds": 900,
        "machine_day_purchases_max": 1000, "travel_speed_kmh_max": 300,
    });
    harness
        .operator("/api/v1/microcheck/strategy", strategy)
        .await;
    // Three drinks offline (0.83 each, not yet deposited), then 18.00 online: the PA sees
    // 20.00 and holds 18.00 of it.
    let offline: Vec<DepositItem> = (1..=3).map(|n| harness.item(n, "soda", 60)).collect();
    let mut online = harness.item(9, "crate of soda", 120);
    online.offer.amount = "18.00".into();
    let (status, answer) = harness
        .call(
            "/microcheck/v1/payer/transaction",
            None,
            signed(
                &harness.payer,
                "transaction",
                "alice",
                json!({ "offer": online.offer }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let check =
        offpay_microcheck::microcheck::write(&harness.payer, &online.offer.terms().unwrap())
            .unwrap();
    online.microcheck = String::from_utf8(check.text().to_vec()).unwrap();
    online.credentials = vec![answer["credential"].as_str().unwrap().to_owned()];
    // The drinks reach the CSC first, in the same deposit: two fit in the 2.00 the hold
    // leaves, the third bounces to the PA's guarantee; the online microcheck is paid by alice.
    let mut items = offline;
    items.push(online);
    let results = harness.deposit_as(&harness.merchant, "vm-1", &items).await;
    let bounced: Vec<bool> = results.iter().map(|r| r["bounced"] == true).collect();
    assert_eq!(bounced, [false, false, true, false], "{results:?}");
    assert_eq!(
        harness.balance("mc:payer:alice").await,
        2000 - 2 * 83 - 1800
    );
    assert_eq!(harness.balance("mc:merchant:vm-1").await, 3 * 83 + 1800);
}

// Deposits are decided while others commit: two runtime workers.
offpay_test_support::on_every_backend_async!(
    multi_thread;
    a_deposit_posts_whole_with_its_counters_written_once,
    spent_nonces_are_refused_and_the_rest_post,
    a_ledger_refusal_refuses_one_microcheck_and_counts_exactly_the_rest,
    deposits_decided_while_others_commit_count_and_charge_exactly,
    deposits_one_after_the_other_are_never_decided_again,
    a_deposit_is_signed_over_its_body_and_bounded_in_size,
    offline_microchecks_deposited_first_cannot_spend_what_an_online_credential_holds,
);
