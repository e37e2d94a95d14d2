//! Criterion benchmarks of the ledger: the pure engine per transfer, and SQLite group commits of
//! batches of 1, 100 and 8190 transfers on a temporary file (durable: one fsync per commit).

#![allow(
    clippy::expect_used,
    reason = "a benchmark whose set-up fails has nothing to measure"
)]

use std::collections::HashMap;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use offpay_ledger::engine::{GroupCommit, SequenceNumbers, Snapshot};
use offpay_ledger::{
    Account, AccountId, AccountKind, Amount, BATCH_OPERATIONS_MAX, BalanceLimits, Batch, Currency,
    LedgerStore, NewAccount, Operation, Timestamp, Transfer, TransferId, TransferKind,
};
use offpay_ledger_bench::random::Random;
use offpay_ledger_sqlite::SqliteStore;

/// Accounts the transfers choose from, as in the benchmark.
const ACCOUNTS: u64 = 10_000;
/// Batch sizes of the SQLite group-commit benchmark.
const SQLITE_BATCH_SIZES: [usize; 3] = [1, 100, BATCH_OPERATIONS_MAX];
/// Criterion's smallest sample count: each benchmark stays short.
const SAMPLES: usize = 10;
const WARM_UP: Duration = Duration::from_millis(500);
const MEASUREMENT: Duration = Duration::from_secs(3);
const NOW: Timestamp = Timestamp(1_700_000_000_000);

fn account_id(index: u64) -> AccountId {
    AccountId::new(format!("bench-c{index}")).expect("account id")
}

/// Customers with no lower limit, so that random transfers never fail for lack of funds.
fn new_accounts() -> Vec<NewAccount> {
    (0..ACCOUNTS)
        .map(|index| NewAccount {
            id: account_id(index),
            kind: AccountKind::Customer,
            currency: Currency::KES,
            limits: BalanceLimits::default(),
        })
        .collect()
}

/// `count` uniform random transfers, numbered from `*next_id`.
fn transfers(random: &mut Random, next_id: &mut u64, count: usize) -> Batch {
    Batch::transfers((0..count).map(|_| {
        let debit = random.below(ACCOUNTS);
        let credit = (debit + 1 + random.below(ACCOUNTS - 1)) % ACCOUNTS;
        *next_id += 1;
        Transfer {
            id: TransferId::new(format!("bench-t{next_id}")).expect("transfer id"),
            debit_account: account_id(debit),
            credit_account: account_id(credit),
            amount: Amount::from_minor(1 + random.below(10_000), Currency::KES).expect("amount"),
            kind: TransferKind::Posted,
            memo: String::new(),
        }
    }))
}

fn engine(criterion: &mut Criterion) {
    let accounts: HashMap<AccountId, Account> = new_accounts()
        .iter()
        .map(|definition| (definition.id.clone(), Account::open(definition, NOW)))
        .collect();
    let mut random = Random::new(1);
    let mut next_id = 0;
    let batch = transfers(&mut random, &mut next_id, BATCH_OPERATIONS_MAX);
    let mut group = criterion.benchmark_group("engine");
    group
        .sample_size(SAMPLES)
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT)
        .throughput(Throughput::Elements(BATCH_OPERATIONS_MAX as u64));
    group.bench_function("group_commit_8190_transfers", |bencher| {
        bencher.iter_batched(
            || Snapshot {
                accounts: accounts.clone().into_iter().collect(),
                ..Snapshot::default()
            },
            |snapshot| {
                let mut commit = GroupCommit::new(snapshot, SequenceNumbers::From(1), NOW);
                commit.apply(&batch).expect("batch accepted");
                commit.finish()
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn sqlite(criterion: &mut Criterion) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut store = SqliteStore::open(&directory.path().join("ledger.sqlite")).expect("open");
    for chunk in new_accounts().chunks(BATCH_OPERATIONS_MAX) {
        let batch = Batch {
            operations: chunk
                .iter()
                .cloned()
                .map(Operation::CreateAccount)
                .collect(),
        };
        let results = store.commit(&[batch], NOW).expect("commit accounts");
        assert!(results.iter().all(Result::is_ok), "accounts refused");
    }
    let mut random = Random::new(2);
    let mut next_id = 0;
    let mut group = criterion.benchmark_group("sqlite_group_commit");
    group
        .sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT);
    for size in SQLITE_BATCH_SIZES {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("batch_{size}"), |bencher| {
            bencher.iter_batched(
                || transfers(&mut random, &mut next_id, size),
                |batch| {
                    let results = store.commit(&[batch], NOW).expect("commit");
                    assert!(results.iter().all(Result::is_ok), "batch refused");
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, engine, sqlite);
criterion_main!(benches);
