//! What one sync costs the money office as the book grows: 1,000, 10,000 and 100,000 wallets,
//! every one with a long history.
//!
//! The store is an `offpay_ledger::MemoryStore`, so this measures the office's own work — the
//! load plan's reads, the rules (signature checks included), the effects and the commit — not a
//! database's. Two wallets with a long history (400 sales both ways, synced every ten) pay each
//! other in the simulator: their settled transfers are pruned by the real reconciliation. Every
//! other wallet is issued, charged several times, and given what pruning leaves of a history of
//! [`FILLER_HISTORY`] purchases and as many sales ([`MoneyOffice::assume_pruned_history`]: the
//! digest, no records; signing and reconciling 100,000 × 600 real transfers would take hours).
//! The whole book reaches the store through the migration from the previous release's format.
//!
//! - `office_sync/decide/N`: load what the upload of the seller's last sales names, and decide.
//! - `office_sync/commit/N`: the same, and commit the effects (the touched records are put back
//!   before each iteration, outside the timing; the posting is then a repeat, which the ledger
//!   takes idempotently).
//! - `office_sync/previous_release_book/N`: for contrast, encoding the whole book, which the
//!   previous release did (and wrote out in chunks) on every sync.
//! - `office_sync/sqlite_decide/N` and `office_sync/sqlite_commit/N`: the same two on SQLite in a
//!   temporary directory (the commit is durable: WAL, `synchronous=FULL`, one fsync).
//!
//! Run: `cargo bench -p offpay-wallet --features operator --bench office_sync`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // Benchmarks stop at the first surprise.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{NetConfig, Sim, amount};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use offpay_ledger::{
    AccountKind, BalanceLimits, Batch, Currency, LedgerStore, MemoryStore, NewAccount, Operation,
    RecordWrite, Timestamp,
};
use offpay_wallet::operator::{self, NAMESPACE, Office, Plan, local};
use offpay_wallet::{MoneyOffice, OfficeKeys, SeededEntropy, WalletKeys};

const SEED: u64 = 71;
/// Sales between the two busy wallets before the measured sync.
const HISTORY_SALES: usize = 400;
/// Sales the measured upload carries.
const PENDING_SALES: usize = 5;
/// Vouchers each other wallet has had.
const CHARGES_PER_WALLET: u64 = 3;
/// Settled and pruned purchases (and as many sales) of every other wallet.
const FILLER_HISTORY: u64 = 300;
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// The two busy wallets' office, and the seller's upload after its last sales.
struct Scenario {
    office: MoneyOffice,
    keys: OfficeKeys,
    wallets: [offpay_wallet::WalletId; 2],
    upload: Arc<Vec<u8>>,
    now: u64,
}

fn scenario() -> Scenario {
    let mut sim = Sim::new(2, SEED, NetConfig::default());
    for sale in 0..HISTORY_SALES {
        let (seller, buyer) = if sale % 2 == 0 { (0, 1) } else { (1, 0) };
        sim.start_sale(seller, buyer, 100).expect("sale starts");
        sim.quiesce();
        if sale % 10 == 9 {
            sim.sync(0);
            sim.sync(1);
        }
    }
    sim.sync(0);
    sim.sync(1);
    for _ in 0..PENDING_SALES {
        sim.start_sale(0, 1, 100).expect("sale starts");
        sim.quiesce();
    }
    let now = sim.now;
    let (_, upload) = sim.devices[0]
        .wallet
        .as_mut()
        .expect("up")
        .begin_sync(now, &mut sim.entropy)
        .expect("sync");
    Scenario {
        office: sim.office.memory().clone(),
        // The simulator draws the office key first from its seed.
        keys: OfficeKeys::generate(&mut SeededEntropy::from_seed(SEED)),
        wallets: [sim.ids[0], sim.ids[1]],
        upload: Arc::new(upload.encode()),
        now,
    }
}

/// Issues and charges wallets until the office has `wallets`.
fn grow(office: &mut MoneyOffice, wallets: usize, now: u64, entropy: &mut SeededEntropy) {
    let device = WalletKeys::generate(entropy);
    while office.wallet_count() < wallets {
        let credential = office
            .issue_wallet(
                device.signing_public(),
                device.encryption_public(),
                common::limits(),
                now,
                entropy,
            )
            .expect("issue");
        for _ in 0..CHARGES_PER_WALLET {
            office
                .charge(credential.wallet_id, amount(1_000))
                .expect("charge");
        }
        office
            .assume_pruned_history(&credential.wallet_id, FILLER_HISTORY, FILLER_HISTORY, 100)
            .expect("history");
    }
}

fn commit(store: &mut dyn LedgerStore, operations: Vec<Operation>) {
    let results = store
        .commit(&[Batch { operations }], Timestamp(1))
        .expect("commit");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// Fills `store` with `office`'s book as records, reached through the migration, and the busy
/// wallets' ledger accounts; returns how long the migration took.
fn fill(
    store: &mut dyn LedgerStore,
    office: &MoneyOffice,
    busy: &[offpay_wallet::WalletId; 2],
) -> Duration {
    let book = office.encode_book();
    let chunks: Vec<&[u8]> = book.chunks(operator::BOOK_CHUNK_BYTES).collect();
    let mut operations: Vec<Operation> = chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| put(operator::chunk_key(index), Some(chunk.to_vec())))
        .collect();
    let mut manifest = vec![operator::BOOK_MANIFEST_VERSION];
    manifest.extend_from_slice(&(chunks.len() as u32).to_be_bytes());
    manifest.extend_from_slice(&(book.len() as u64).to_be_bytes());
    operations.push(put(operator::BOOK_KEY.into(), Some(manifest)));
    for wallet in busy {
        operations.push(Operation::CreateAccount(NewAccount {
            id: operator::wallet_account(wallet).expect("id"),
            kind: AccountKind::Customer,
            currency: Currency::KES,
            limits: BalanceLimits {
                balance_min: None,
                balance_max: None,
            },
        }));
    }
    commit(store, operations);
    let started = Instant::now();
    assert!(local::migrate(store, Timestamp(2)).expect("migrates"));
    started.elapsed()
}

fn put(key: String, value: Option<Vec<u8>>) -> Operation {
    Operation::PutRecord(RecordWrite {
        namespace: NAMESPACE.into(),
        key,
        value,
        expected_version: None,
    })
}

fn office_sync(c: &mut Criterion) {
    let mut scenario = scenario();
    let office = Office::new(scenario.keys.clone(), common::VALIDITY_MS);
    let plan = Plan::sync(scenario.upload.clone());
    let now = Timestamp(scenario.now);
    let mut entropy = SeededEntropy::from_seed(SEED + 1);
    let mut group = c.benchmark_group("office_sync");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(4));
    for wallets in SIZES {
        grow(&mut scenario.office, wallets, scenario.now, &mut entropy);
        let mut store = MemoryStore::new();
        let migration = fill(&mut store, &scenario.office, &scenario.wallets);
        let keys = operator::load(&mut store, &plan)
            .expect("load")
            .record_keys();
        let busy = scenario
            .office
            .wallet_summary(&scenario.wallets[0])
            .expect("busy wallet")
            .settled;
        println!(
            "office_sync: {wallets} wallets, {} records; the busy seller has {} purchases and {} sales settled and pruned, every other wallet {FILLER_HISTORY} of each; the migration took {migration:.2?}; a sync reads {} records",
            store_records(&mut store),
            busy.purchases,
            busy.sales,
            keys.len(),
        );
        let bench = Bench {
            office: &office,
            plan: &plan,
            upload: &scenario.upload,
            now,
            wallets,
        };
        bench.run(&mut group, "", &mut store);
        let directory = tempfile::tempdir().expect("a directory");
        let mut sqlite =
            offpay_ledger_sqlite::SqliteStore::open(&directory.path().join("ledger.db"))
                .expect("SQLite opens");
        let migration = fill(&mut sqlite, &scenario.office, &scenario.wallets);
        println!("office_sync: the migration into SQLite took {migration:.2?}");
        bench.run(&mut group, "sqlite_", &mut sqlite);
        group.bench_with_input(
            BenchmarkId::new("previous_release_book", wallets),
            &wallets,
            |b, _| b.iter(|| black_box(scenario.office.encode_book().len())),
        );
    }
    group.finish();
}

/// One sync, measured on one store.
struct Bench<'a> {
    office: &'a Office,
    plan: &'a Plan,
    upload: &'a [u8],
    now: Timestamp,
    wallets: usize,
}

impl Bench<'_> {
    fn run(
        &self,
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        prefix: &str,
        store: &mut dyn LedgerStore,
    ) {
        let Bench {
            office,
            plan,
            upload,
            now,
            wallets,
        } = *self;
        let keys = operator::load(store, plan).expect("load").record_keys();
        group.bench_with_input(
            BenchmarkId::new(format!("{prefix}decide"), wallets),
            &wallets,
            |b, _| {
                b.iter(|| {
                    let working = operator::load(store, plan).expect("load");
                    black_box(office.sync(working, upload, now).expect("decides"))
                });
            },
        );
        // What the sync changes, to put back before each timed commit.
        let pristine: Vec<(String, Option<Vec<u8>>)> = keys
            .iter()
            .map(|key| {
                let value = store.record(NAMESPACE, key).expect("read").map(|r| r.value);
                (key.clone(), value)
            })
            .collect();
        group.bench_with_input(
            BenchmarkId::new(format!("{prefix}commit"), wallets),
            &wallets,
            |b, _| {
                b.iter_custom(|iterations| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iterations {
                        let restore = pristine
                            .iter()
                            .map(|(key, value)| put(key.clone(), value.clone()))
                            .collect();
                        commit(store, restore);
                        let started = Instant::now();
                        let reconciliation = local::run(store, plan, now, |working| {
                            office.sync(working, upload, now)
                        })
                        .expect("syncs");
                        spent += started.elapsed();
                        black_box(reconciliation);
                    }
                    spent
                });
            },
        );
    }
}

fn store_records(store: &mut MemoryStore) -> usize {
    let mut count = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store
            .records(
                NAMESPACE,
                "",
                after.as_deref(),
                offpay_ledger::RECORD_PAGE_MAX,
            )
            .expect("records");
        let Some(last) = page.last() else {
            return count;
        };
        after = Some(last.key.clone());
        count += page.len();
    }
}

criterion_group!(benches, office_sync);
criterion_main!(benches);
