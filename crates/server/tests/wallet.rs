//! The money office through the server's routes: issue, charge, sync and show on each backend;
//! two servers on one database, neither deciding on what it read earlier; and a data directory
//! of the previous release (the whole book in chunked records) migrated on first use.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use offpay_ledger::{Batch, LedgerStore, Operation, RecordWrite, Timestamp};
use offpay_operator::{ManualClock, SeededEntropy};
use offpay_server::config::{Overrides, ServerConfig};
use offpay_server::{AppState, Inputs, Server, router};
use offpay_test_support::Backend;
use offpay_wallet::operator::{BOOK_KEY, BOOK_MANIFEST_VERSION, NAMESPACE, chunk_key};
use offpay_wallet::{
    Credential, Limits, MemoryStorage, MoneyOffice, OfficeKeys, SyncReply, Wallet, WalletKeys,
    apply_actions,
};
use serde_json::{Value, json};
use tower::ServiceExt;

const START_MS: u64 = 1_750_000_000_000;

struct Node {
    state: Arc<AppState>,
    token: String,
}

async fn start(directory: &Path, backend: &Backend, clock: Arc<ManualClock>, seed: u64) -> Node {
    let database_url = backend.database_url().map(str::to_owned);
    start_on(directory, database_url, clock, seed).await
}

/// A second server beside the one on `first`: a data directory of its own (one server per data
/// directory, which it locks) holding copies of the first's key files, on the same database.
async fn start_beside(
    first: &Path,
    second: &Path,
    backend: &Backend,
    clock: Arc<ManualClock>,
    seed: u64,
) -> Node {
    std::fs::create_dir_all(second).unwrap();
    let mut pending = vec![first.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let target = second.join(path.strip_prefix(first).unwrap());
            if path.is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                pending.push(path);
            } else if !name.starts_with("offpay.sqlite") && name != "offpay.lock" {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    let database_url = backend.database_url().map_or_else(
        || format!("sqlite://{}", first.join("offpay.sqlite").display()),
        str::to_owned,
    );
    start_on(second, Some(database_url), clock, seed).await
}

async fn start_on(
    directory: &Path,
    database_url: Option<String>,
    clock: Arc<ManualClock>,
    seed: u64,
) -> Node {
    let config = ServerConfig::resolve(
        Overrides {
            data_dir: Some(directory.to_owned()),
            listen: Some("127.0.0.1:0".into()),
            database_url,
            ..Overrides::default()
        },
        &|_| None,
    )
    .unwrap();
    let server = Server::start_with(
        config.clone(),
        Inputs {
            clock,
            entropy: Arc::new(SeededEntropy::from_seed(seed)),
        },
    )
    .await
    .expect("the server starts");
    let token = std::fs::read_to_string(config.token_path())
        .unwrap()
        .trim()
        .to_owned();
    Node {
        state: server.state(),
        token,
    }
}

impl Node {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token));
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    async fn issue(&self, keys: &WalletKeys) -> Credential {
        let issued = self
            .ok(
                "POST",
                "/api/v1/wallets",
                Some(json!({
                    "signing_key": hex::encode(keys.signing_public()),
                    "encryption_key": hex::encode(keys.encryption_public()),
                })),
            )
            .await;
        Credential::decode(&hex::decode(issued["credential"].as_str().unwrap()).unwrap()).unwrap()
    }

    async fn charge(&self, wallet: &Device, amount: &str) -> Value {
        self.ok(
            "POST",
            &format!("/api/v1/wallets/{}/charge", wallet.wallet.id()),
            Some(json!({ "amount": amount })),
        )
        .await
    }

    async fn show(&self, wallet: &Device) -> Value {
        self.ok(
            "GET",
            &format!("/api/v1/wallets/{}", wallet.wallet.id()),
            None,
        )
        .await
    }

    fn office_public(&self) -> [u8; 32] {
        self.state.rails.wallet.office_public()
    }
}

/// A phone: its wallet and its log.
struct Device {
    wallet: Wallet,
    storage: MemoryStorage,
}

impl Device {
    fn create(keys: WalletKeys, credential: Credential, office_public: [u8; 32]) -> Device {
        let (wallet, actions) = Wallet::create(keys, credential, office_public, START_MS).unwrap();
        let mut device = Device {
            wallet,
            storage: MemoryStorage::new(),
        };
        device.perform(actions);
        device
    }

    fn perform(&mut self, actions: Vec<offpay_wallet::Action>) {
        apply_actions(actions, &mut self.storage, &mut |_, _| {}, &mut |_| {}).unwrap();
    }

    /// Syncs through `node`'s relay route.
    async fn sync(&mut self, node: &Node) {
        let mut entropy = offpay_wallet::SeededEntropy::from_seed(7);
        let (actions, upload) = self.wallet.begin_sync(START_MS, &mut entropy).unwrap();
        self.perform(actions);
        let answer = node
            .ok(
                "POST",
                "/api/v1/wallet-sync",
                Some(json!({ "upload": hex::encode(upload.encode()) })),
            )
            .await;
        let reply =
            SyncReply::decode(&hex::decode(answer["reply"].as_str().unwrap()).unwrap()).unwrap();
        let actions = self.wallet.finish_sync(&reply).unwrap();
        self.perform(actions);
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp(START_MS)))
}

#[tokio::test]
async fn a_wallet_is_issued_charged_and_synced_and_two_servers_on_one_database_agree() {
    for backend in Backend::all("wallet office") {
        let directory = tempfile::tempdir().unwrap();
        let (first_dir, second_dir) = (directory.path().join("a"), directory.path().join("b"));
        let first = start(&first_dir, &backend, clock(), 1).await;
        // A second server on the same database with the same keys (same office key).
        let second = start_beside(&first_dir, &second_dir, &backend, clock(), 2).await;
        assert_eq!(first.office_public(), second.office_public());

        let mut entropy = offpay_wallet::SeededEntropy::from_seed(3);
        let keys = WalletKeys::generate(&mut entropy);
        let credential = first.issue(&keys).await;
        let mut device = Device::create(keys, credential, first.office_public());
        first.charge(&device, "10").await;
        // The second server charges too: it reads the wallet's record as the first left it.
        second.charge(&device, "5").await;
        assert_eq!(first.show(&device).await["charges"], 2);
        device.sync(&first).await;
        assert_eq!(device.wallet.balance().minor(), 1_500);
        first.charge(&device, "1").await;
        // What the second server shows and syncs is what the first committed.
        let shown = second.show(&device).await;
        assert_eq!(shown["charges"], 3, "{shown}");
        // The wallet applied the first two vouchers after its upload: the office learns that
        // from its next one.
        assert_eq!(shown["charges_applied"], 0, "{shown}");
        assert_eq!(shown["account"]["balance_minor"], 1_600, "{shown}");
        device.sync(&second).await;
        assert_eq!(device.wallet.balance().minor(), 1_600);
        device.sync(&first).await;
        let shown = first.show(&device).await;
        assert_eq!(shown["charges_applied"], 3, "{shown}");
        assert_eq!(shown["shadow_minor"], "1600", "{shown}");
        // No transfer yet: nothing settled to prune, in words with the currency.
        assert_eq!(
            shown["settled"],
            json!({ "purchases": 0, "sales": 0, "paid": "0.00", "received": "0.00",
                    "currency": "KES", "payment_numbers_settled_through": 0,
                    "payment_numbers_settled_above": [] }),
            "{shown}"
        );

        // Errors keep their HTTP mapping.
        let (status, body) = first
            .call(
                "POST",
                "/api/v1/wallets/00/charge",
                Some(json!({"amount": "1"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let unknown = "00".repeat(16);
        let (status, body) = first
            .call("GET", &format!("/api/v1/wallets/{unknown}"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = first
            .call(
                "POST",
                &format!("/api/v1/wallets/{unknown}/block"),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "unknown_wallet");
        let (status, body) = first
            .call(
                "POST",
                "/api/v1/wallet-sync",
                Some(json!({ "upload": "00" })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "malformed_upload");

        // A containment case: none for an honest wallet; a decision must be one of two words.
        let wallet = device.wallet.id().to_string();
        assert!(first.show(&device).await["case"].is_null());
        let (status, body) = first
            .call(
                "POST",
                &format!("/api/v1/wallets/{wallet}/case"),
                Some(json!({ "decision": "confirm" })),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "no_case");
        let (status, body) = first
            .call(
                "POST",
                &format!("/api/v1/wallets/{wallet}/case"),
                Some(json!({ "decision": "forgive" })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_decision");
    }
}

/// Writes `book` as the previous release's server did: chunks `office-book:NNNNN`, then the
/// manifest `office-book` (format version, chunk count u32, length u64). Test data only.
fn write_previous_release_book(store: &mut dyn LedgerStore, book: &[u8]) {
    let chunks: Vec<&[u8]> = book
        .chunks(offpay_ledger::RECORD_VALUE_LENGTH_MAX)
        .collect();
    let put = |key: String, value: Vec<u8>, expected_version| {
        Operation::PutRecord(RecordWrite {
            namespace: NAMESPACE.into(),
            key,
            value: Some(value),
            expected_version,
        })
    };
    let mut operations: Vec<Operation> = chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| put(chunk_key(index), chunk.to_vec(), None))
        .collect();
    let mut manifest = vec![BOOK_MANIFEST_VERSION];
    manifest.extend_from_slice(&(chunks.len() as u32).to_be_bytes());
    manifest.extend_from_slice(&(book.len() as u64).to_be_bytes());
    operations.push(put(BOOK_KEY.into(), manifest, Some(0)));
    let results = store
        .commit(&[Batch { operations }], Timestamp(START_MS))
        .unwrap();
    assert!(results.iter().all(Result::is_ok));
}

#[tokio::test]
async fn a_data_directory_of_the_previous_release_is_migrated_on_first_use() {
    for backend in Backend::all("wallet book migration") {
        let directory = tempfile::tempdir().unwrap();
        // The previous release's office: its key file, and its book with one charged wallet.
        let mut entropy = offpay_wallet::SeededEntropy::from_seed(11);
        let office_keys = OfficeKeys::generate(&mut entropy);
        std::fs::write(
            directory.path().join("wallet-office.key"),
            format!("{}\n", hex::encode(*office_keys.to_secret())),
        )
        .unwrap();
        let mut office = MoneyOffice::new(office_keys.clone(), 7 * 24 * 3_600_000);
        let keys = WalletKeys::generate(&mut entropy);
        let currency = offpay_ledger::Currency::KES;
        let amount = |minor| offpay_ledger::Amount::from_minor(minor, currency).unwrap();
        let credential = office
            .issue_wallet(
                keys.signing_public(),
                keys.encryption_public(),
                Limits {
                    balance_max: amount(100_000),
                    payment_max: amount(50_000),
                    offline_spend_max: amount(100_000),
                },
                START_MS,
                &mut entropy,
            )
            .unwrap();
        office.charge(credential.wallet_id, amount(2_500)).unwrap();
        {
            let config = ServerConfig::resolve(
                Overrides {
                    data_dir: Some(directory.path().to_owned()),
                    database_url: backend.database_url().map(str::to_owned),
                    ..Overrides::default()
                },
                &|_| None,
            )
            .unwrap();
            let book = office.encode_book();
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let mut store = offpay_server::open_store(&config).unwrap();
                        write_previous_release_book(store.as_mut(), &book);
                    })
                    .join()
                    .unwrap();
            });
        }
        let node = start(directory.path(), &backend, clock(), 12).await;
        assert_eq!(node.office_public(), office_keys.public());
        let mut device = Device::create(keys, credential, node.office_public());
        // The first operation migrates; the wallet is known, with its voucher.
        let shown = node.show(&device).await;
        assert_eq!(shown["charges"], 1, "{shown}");
        assert_eq!(shown["shadow_minor"], "2500", "{shown}");
        device.sync(&node).await;
        assert_eq!(device.wallet.balance().minor(), 2_500);
        let old = node
            .state
            .ledger
            .read(|store| store.record(NAMESPACE, BOOK_KEY))
            .await
            .unwrap();
        assert!(old.is_none(), "the old book is gone");
        device.sync(&node).await;
        let shown = node.show(&device).await;
        assert_eq!(shown["charges_applied"], 1, "{shown}");
    }
}
