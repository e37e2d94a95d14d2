//! A quick throughput measurement, not a pass/fail test: posts 100,000 transfers in batches of
//! 8190 over 10,000 accounts, one batch per group commit, and prints transfers per second.
//!
//! `OFFPAY_TEST_DATABASE_URL=postgres://... cargo test --release -p offpay-ledger-postgres
//!  --test throughput -- --ignored --nocapture`

mod common;

use std::time::{Duration, Instant};

use offpay_ledger::{
    AccountId, AccountKind, BATCH_OPERATIONS_MAX, BalanceLimits, Batch, Currency, LedgerStore,
    NewAccount, Operation, Timestamp, Transfer, TransferId, TransferKind, verify_conservation,
};

const ACCOUNTS: u64 = 10_000;
const TRANSFERS: u64 = 100_000;
const NOW: Timestamp = Timestamp(1_700_000_000_000);

#[test]
#[ignore = "measurement: run with --ignored --nocapture against a database"]
fn posts_100k_transfers_in_full_batches() {
    if common::skip() {
        eprintln!("skipped: {} is not set", common::DATABASE_URL_VARIABLE);
        return;
    }
    let (_guard, mut store) = common::fresh_store();
    let account_id = |index: u64| {
        AccountId::new(format!("bench:{index:05}")).unwrap_or_else(|error| panic!("{error}"))
    };
    let accounts: Vec<Operation> = (0..ACCOUNTS)
        .map(|index| {
            Operation::CreateAccount(NewAccount {
                id: account_id(index),
                kind: AccountKind::Suspense,
                currency: Currency::KES,
                limits: BalanceLimits::default(),
            })
        })
        .collect();
    for chunk in accounts.chunks(BATCH_OPERATIONS_MAX) {
        let results = store
            .commit(
                &[Batch {
                    operations: chunk.to_vec(),
                }],
                NOW,
            )
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(results.iter().all(Result::is_ok));
    }

    let mut seed: u64 = 0x0ff9_a7be_7c4d;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let transfers: Vec<Transfer> = (0..TRANSFERS)
        .map(|number| {
            let debit = next(ACCOUNTS);
            let credit = (debit + 1 + next(ACCOUNTS - 1)) % ACCOUNTS;
            Transfer {
                id: TransferId::new(format!("bench-{number}"))
                    .unwrap_or_else(|error| panic!("{error}")),
                debit_account: account_id(debit),
                credit_account: account_id(credit),
                amount: Currency::KES
                    .minor(1 + next(100_000))
                    .unwrap_or_else(|error| panic!("{error}")),
                kind: TransferKind::Posted,
                memo: String::new(),
            }
        })
        .collect();
    let batches: Vec<Batch> = transfers
        .chunks(BATCH_OPERATIONS_MAX)
        .map(|chunk| Batch::transfers(chunk.iter().cloned()))
        .collect();

    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for batch in &batches {
        let commit_started = Instant::now();
        let results = store
            .commit(std::slice::from_ref(batch), NOW)
            .unwrap_or_else(|error| panic!("{error}"));
        slowest = slowest.max(commit_started.elapsed());
        assert!(results.iter().all(Result::is_ok), "a batch was refused");
    }
    let elapsed = started.elapsed();
    let rate = TRANSFERS as f64 / elapsed.as_secs_f64();
    println!(
        "postgres: {TRANSFERS} transfers in {} commits of up to {BATCH_OPERATIONS_MAX} over {ACCOUNTS} accounts: {:.3} s, {rate:.0} transfers/s, slowest commit {} ms",
        batches.len(),
        elapsed.as_secs_f64(),
        slowest.as_millis()
    );
    verify_conservation(&mut store).unwrap_or_else(|error| panic!("{error}"));
}
