//! CSC deposit throughput: microchecks verified (Ed25519 in batches on two threads, each shared
//! credential parsed and verified once per thread), checked by KeyNote and turned into postings — and, in the last
//! group, also committed to a SQLite ledger as the server does (one atomic batch per microcheck,
//! one group commit per deposit). RSA-SHA1 (1024-bit payer key) for comparison.
// Benchmarks set up fixed, known-good inputs; a panic there is a broken benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use offpay_keynote::{PrivateKey, cli};
use offpay_ledger::{
    AccountId, AccountKind, BalanceLimits, Batch, LedgerStore, NewAccount, Operation, RecordWrite,
    Timestamp, Transfer, TransferId, TransferKind,
};
use offpay_microcheck::credential::{self, Classes, PayerTemplate};
use offpay_microcheck::csc::{
    self, ClearingState, Debit, DepositItem, FraudRules, ItemOutcome, Location, MerchantAccount,
    PayerAccount,
};
use offpay_microcheck::{MerchantPolicy, Offer, UnixSeconds};
use offpay_money::{Amount, Currency};

/// Microchecks per deposit.
const DEPOSIT: usize = 1000;
/// Distinct payers in a deposit.
const PAYERS: usize = 20;
const START: UnixSeconds = UnixSeconds(1_767_225_600);
/// Days the payers' credentials are valid: more than the deposits (one a day) a run makes.
const VALID_DAYS: u64 = 20_000;

struct Fixture {
    pa: PrivateKey,
    payers: Vec<(PrivateKey, String)>,
}

fn rsa_key() -> PrivateKey {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/keynote/tests/fixtures/rsa1024.key");
    let text = cli::parse_key_file(&std::fs::read(path).unwrap()).unwrap();
    PrivateKey::parse(&text).unwrap()
}

fn fixture(rsa: bool) -> Fixture {
    let pa = PrivateKey::ed25519_from_seed(&[1; 32]);
    let payers = (0..if rsa { 1 } else { PAYERS })
        .map(|n| {
            let key = if rsa {
                rsa_key()
            } else {
                let mut seed = [7u8; 32];
                seed[0] = n as u8;
                PrivateKey::ed25519_from_seed(&seed)
            };
            let template = PayerTemplate {
                serial: format!("s{n}"),
                tier: "bench".into(),
                app_domain: "vend".into(),
                currency: Currency::KES,
                amount_max: Amount::parse("5.00", Currency::KES).unwrap(),
                not_before: START.minus(86_400),
                not_after: START.plus(VALID_DAYS * 86_400),
                per_merchant_day_max: 100,
                classes: Classes::Any,
            };
            let credential = credential::issue_payer(&pa, &key.principal(), &template).unwrap();
            (key, String::from_utf8(credential.text().to_vec()).unwrap())
        })
        .collect();
    Fixture { pa, payers }
}

/// A deposit of fresh microchecks, a machine's sales from day `32 × round` on, with nonces as a
/// machine draws them (the time of the sale, then random bits).
fn deposit(fixture: &Fixture, round: u64) -> Vec<DepositItem> {
    (0..DEPOSIT)
        .map(|i| {
            let (key, credential) = &fixture.payers[i % fixture.payers.len()];
            // At most 50 purchases per payer a day, well inside the credential's 100: with one
            // payer (the RSA fixture) a deposit spans 20 days; each deposit starts a new month.
            let day = round * 32 + ((i / fixture.payers.len()) / 50) as u64;
            let time = START.plus(day * 86_400 + (i % 1000) as u64 * 60);
            let nonce = offpay_microcheck::offer::machine_nonce(time, &rand::random());
            let offer = Offer {
                merchant: "vm-1".into(),
                currency: "KES".into(),
                product: "Pocari Sweat".into(),
                product_class: "drink".into(),
                date: time.date(),
                timestamp: time.stamp(),
                amount: "0.83".into(),
                app_domain: "vend".into(),
                nonce,
            };
            let terms = offer.terms().unwrap();
            let check = offpay_microcheck::microcheck::write(key, &terms).unwrap();
            DepositItem {
                offer,
                microcheck: String::from_utf8(check.text().to_vec()).unwrap(),
                credentials: vec![credential.clone()],
            }
        })
        .collect()
}

fn state(fixture: &Fixture) -> ClearingState {
    let mut state = ClearingState::default();
    for (n, (key, _)) in fixture.payers.iter().enumerate() {
        state.payers.insert(
            offpay_microcheck::auth::fingerprint(&key.principal()),
            PayerAccount {
                name: format!("p{n}"),
                available_minor: i64::MAX / 2,
                retired_at: None,
                blocked_at: None,
                held_online: Vec::new(),
            },
        );
    }
    state
}

fn merchant(fixture: &Fixture) -> MerchantAccount {
    MerchantAccount {
        policy: MerchantPolicy::new("vm-1", "vend", &fixture.pa.principal(), None).unwrap(),
        location: Location::default(),
        last_deposit_at: None,
    }
}

const RULES: FraudRules = FraudRules {
    machine_day_purchases_max: u32::MAX,
    travel_speed_kmh_max: 1000,
};

/// Threads the CSC verifies with (this machine has 2 cores).
const THREADS: usize = 2;

fn clear(fixture: &Fixture, items: &[DepositItem]) -> (Vec<ItemOutcome>, ClearingState) {
    let prepared = csc::prepare(items, THREADS).unwrap();
    let mut state = state(fixture);
    let outcomes = csc::clear(
        &merchant(fixture),
        RULES,
        prepared,
        &mut state,
        START.plus(VALID_DAYS * 86_400),
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ItemOutcome::Cleared(_))),
        "every microcheck clears"
    );
    (outcomes, state)
}

fn csc_clear(c: &mut Criterion) {
    let mut group = c.benchmark_group("csc_clear");
    group.throughput(Throughput::Elements(DEPOSIT as u64));
    group.sample_size(10);
    for (label, rsa) in [("ed25519_batch", false), ("rsa1024_sha1", true)] {
        let fixture = fixture(rsa);
        let mut round = 0u64;
        group.bench_function(label, |b| {
            b.iter_batched(
                || {
                    round += 1;
                    deposit(&fixture, round)
                },
                |items| black_box(clear(&fixture, &items)),
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

/// One batch for the whole deposit, as the server posts it: each microcheck's transfer and
/// records, then the counters and recent purchases once.
fn ledger_batches(outcomes: &[ItemOutcome], state: &ClearingState) -> Vec<Batch> {
    let merchant = AccountId::new("mc:merchant:vm-1").unwrap();
    let cleared: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            ItemOutcome::Cleared(clearance) => Some(clearance.as_ref()),
            ItemOutcome::Refused { .. } => None,
        })
        .collect();
    let put = |change: &csc::RecordChange| {
        Operation::PutRecord(RecordWrite {
            namespace: "microcheck".into(),
            key: change.key.clone(),
            value: Some(change.value.clone()),
            expected_version: change.create_only.then_some(0),
        })
    };
    let mut operations = Vec::new();
    for clearance in &cleared {
        let Debit::Payer(name) = &clearance.debit else {
            panic!("no bounces in the bench")
        };
        operations.push(Operation::Transfer(Transfer {
            id: TransferId::new(clearance.transfer_id.clone()).unwrap(),
            debit_account: AccountId::new(format!("mc:payer:{name}")).unwrap(),
            credit_account: merchant.clone(),
            amount: clearance.amount,
            kind: TransferKind::Posted,
            memo: clearance.memo.clone(),
        }));
        operations.extend(clearance.records.iter().map(put));
    }
    operations.extend(
        csc::state_records(state, "vm-1", cleared.iter().copied())
            .iter()
            .map(put),
    );
    vec![Batch { operations }]
}

fn csc_deposit_sqlite(c: &mut Criterion) {
    let mut group = c.benchmark_group("csc_deposit_sqlite");
    group.throughput(Throughput::Elements(DEPOSIT as u64));
    group.sample_size(10);
    let fixture = fixture(false);
    let directory = tempfile::tempdir().unwrap();
    let mut store =
        offpay_ledger_sqlite::SqliteStore::open(&directory.path().join("bench.sqlite")).unwrap();
    let mut accounts = vec![Operation::CreateAccount(NewAccount {
        id: AccountId::new("mc:merchant:vm-1").unwrap(),
        kind: AccountKind::Merchant,
        currency: Currency::KES,
        limits: BalanceLimits::default(),
    })];
    for n in 0..PAYERS {
        accounts.push(Operation::CreateAccount(NewAccount {
            id: AccountId::new(format!("mc:payer:p{n}")).unwrap(),
            kind: AccountKind::Customer,
            currency: Currency::KES,
            limits: BalanceLimits::default(),
        }));
    }
    store
        .commit(
            &[Batch {
                operations: accounts,
            }],
            Timestamp(0),
        )
        .unwrap();
    let mut round = 0u64;
    group.bench_function("ed25519_batch", |b| {
        b.iter_batched(
            || {
                round += 1;
                deposit(&fixture, round)
            },
            |items| {
                let (outcomes, state) = clear(&fixture, &items);
                let results = store
                    .commit(&ledger_batches(&outcomes, &state), Timestamp(1))
                    .unwrap();
                assert!(results.iter().all(Result::is_ok));
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, csc_clear, csc_deposit_sqlite);
criterion_main!(benches);
