//! Small benchmark runs on a temporary SQLite file: the report's counts, the checks at the end, and
//! the configuration errors.

#![allow(
    clippy::expect_used,
    reason = "tests: a failed expectation is a failed test"
)]

use offpay_ledger::{
    Account, AccountId, AccountKind, Amount, BATCH_OPERATIONS_MAX, BalanceLimits, Batch, Currency,
    CurrencyTotal, GroupResult, LedgerStore, NewAccount, Operation, Outcome, Record, StoreError,
    Timestamp, Transfer, TransferId, TransferKind, TransferRecord,
};
use offpay_ledger_bench::{
    BenchConfig, BenchError, BenchReport, Distribution, Phase, Progress, render_text, run,
};
use offpay_ledger_sqlite::SqliteStore;

const ACCOUNTS: u64 = 50;
const TRANSFERS: u64 = 1000;
const BATCH: usize = 100;
const BASELINE: u64 = 20;

fn small(run_id: &str) -> BenchConfig {
    BenchConfig {
        accounts: ACCOUNTS,
        transfers: TRANSFERS,
        batch: BATCH,
        baseline_transfers: BASELINE,
        run_id: Some(run_id.to_owned()),
        ..BenchConfig::default()
    }
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&directory.path().join("ledger.sqlite")).expect("open");
    (directory, store)
}

fn run_quietly(
    store: &mut dyn LedgerStore,
    config: &BenchConfig,
) -> Result<BenchReport, BenchError> {
    run(store, config, &mut |_| {})
}

#[test]
fn a_small_run_reports_its_counts_and_verifies_the_ledger() {
    let (_directory, mut store) = open();
    let mut reports: Vec<Progress> = Vec::new();
    let report = run(&mut store, &small("one"), &mut |progress| {
        reports.push(progress)
    })
    .expect("benchmark run");
    assert_eq!(report.backend, "sqlite");
    assert_eq!(report.run_id, "one");
    assert_eq!(report.accounts, ACCOUNTS);
    assert_eq!(report.transfers, TRANSFERS);
    assert_eq!(report.batch_size, BATCH);
    assert_eq!(report.batches, TRANSFERS / BATCH as u64);
    assert_eq!(report.baseline_transfers, BASELINE);
    assert_eq!(report.transfers_verified, ACCOUNTS + TRANSFERS + BASELINE);
    assert!(report.conservation_verified);
    assert!(report.transfers_per_second > 0.0 && report.baseline_transfers_per_second > 0.0);
    assert!(
        report.p50_batch_ms <= report.p99_batch_ms && report.p99_batch_ms <= report.max_batch_ms
    );
    assert_eq!(report.distribution, Distribution::Uniform);
    assert_eq!(report.zipf_theta, None);

    // Every phase starts at zero and ends at its total, in order.
    let phases: Vec<Phase> =
        reports
            .iter()
            .map(|progress| progress.phase)
            .fold(Vec::new(), |mut phases, phase| {
                if phases.last() != Some(&phase) {
                    phases.push(phase);
                }
                phases
            });
    assert_eq!(
        phases,
        [Phase::Setup, Phase::Batched, Phase::Baseline, Phase::Verify]
    );
    for phase in phases {
        let of_phase: Vec<&Progress> = reports.iter().filter(|p| p.phase == phase).collect();
        assert_eq!(of_phase.first().map(|p| p.done), Some(0));
        let last = of_phase.last().expect("a report");
        assert_eq!(last.done, last.total, "{phase} ends at its total");
    }
    assert!(
        reports
            .iter()
            .any(|p| p.phase == Phase::Batched && p.total == TRANSFERS)
    );

    // The ledger holds the run's transfers: the last baseline transfer is there.
    let last = TransferId::new(format!(
        "bench-one-t{}",
        ACCOUNTS + TRANSFERS + BASELINE - 1
    ))
    .expect("id");
    assert!(store.transfer(&last).expect("read").is_some());

    let json = serde_json::to_value(&report).expect("json");
    for field in [
        "transfers_per_second",
        "baseline_transfers_per_second",
        "speedup",
        "backend",
        "batch_size",
        "accounts",
        "transfers",
        "distribution",
        "p50_batch_ms",
        "p99_batch_ms",
        "max_batch_ms",
        "elapsed_seconds",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
    assert_eq!(json["conservation_verified"], true);
    assert_eq!(json["distribution"], "uniform");
    assert!(render_text(&report).contains("speedup"));
}

#[test]
fn a_second_run_on_the_same_database_does_not_collide_and_a_reused_run_id_is_refused() {
    let (_directory, mut store) = open();
    run_quietly(&mut store, &small("first")).expect("first run");
    let second = BenchConfig {
        distribution: Distribution::Zipfian,
        hot_account_percent: 25,
        ..small("second")
    };
    let report = run_quietly(&mut store, &second).expect("second run");
    assert_eq!(report.zipf_theta, Some(0.99));
    assert_eq!(report.hot_account_percent, 25);
    assert_eq!(report.transfers_verified, ACCOUNTS + TRANSFERS + BASELINE);
    let again = run_quietly(&mut store, &small("first"));
    assert!(
        matches!(&again, Err(BenchError::RunIdInUse { run_id }) if run_id == "first"),
        "{again:?}"
    );
}

#[test]
fn the_baseline_is_capped_by_the_transfers() {
    let (_directory, mut store) = open();
    let config = BenchConfig {
        transfers: 10,
        baseline_transfers: 1000,
        ..small("capped")
    };
    let report = run_quietly(&mut store, &config).expect("run");
    assert_eq!(report.baseline_transfers, 10);
    assert_eq!(report.batches, 1);
    assert_eq!(report.transfers_verified, ACCOUNTS + 10 + 10);
}

#[test]
fn a_clock_run_id_is_used_when_none_is_given() {
    let (_directory, mut store) = open();
    let config = BenchConfig {
        run_id: None,
        ..small("unused")
    };
    let report = run_quietly(&mut store, &config).expect("run");
    assert!(!report.run_id.is_empty());
    assert!(
        report
            .run_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric())
    );
}

/// What [`Interfering`] does at its chosen commit.
#[derive(Clone, Copy, Debug)]
enum Interference {
    /// Acknowledges the batch without writing it.
    Lose,
    /// Lets another writer commit a transfer of its own first.
    AnotherWriter,
}

/// A SQLite store that misbehaves once: the checks at the end of a run must notice.
struct Interfering {
    inner: SqliteStore,
    commits: u64,
    at: u64,
    interference: Interference,
}

impl Interfering {
    fn open(directory: &tempfile::TempDir, at: u64, interference: Interference) -> Interfering {
        let inner = SqliteStore::open(&directory.path().join("ledger.sqlite")).expect("open");
        Interfering {
            inner,
            commits: 0,
            at,
            interference,
        }
    }
}

fn acknowledge_without_writing(batches: &[Batch]) -> GroupResult {
    batches
        .iter()
        .map(|batch| {
            Ok(batch
                .operations
                .iter()
                .map(|operation| match operation {
                    Operation::CreateAccount(_) => Outcome::AccountCreated,
                    _ => Outcome::TransferCommitted,
                })
                .collect())
        })
        .collect()
}

fn foreign_batch() -> Batch {
    let account = |id: &str| NewAccount {
        id: AccountId::new(id).expect("id"),
        kind: AccountKind::Suspense,
        currency: Currency::KES,
        limits: BalanceLimits::default(),
    };
    Batch {
        operations: vec![
            Operation::CreateAccount(account("other-a")),
            Operation::CreateAccount(account("other-b")),
            Operation::Transfer(Transfer {
                id: TransferId::new("other-t").expect("id"),
                debit_account: AccountId::new("other-a").expect("id"),
                credit_account: AccountId::new("other-b").expect("id"),
                amount: Amount::from_minor(1, Currency::KES).expect("amount"),
                kind: TransferKind::Posted,
                memo: String::new(),
            }),
        ],
    }
}

impl LedgerStore for Interfering {
    fn backend(&self) -> &'static str {
        "interfering"
    }

    fn commit(&mut self, batches: &[Batch], now: Timestamp) -> Result<GroupResult, StoreError> {
        self.commits += 1;
        if self.commits == self.at {
            match self.interference {
                Interference::Lose => return Ok(acknowledge_without_writing(batches)),
                Interference::AnotherWriter => {
                    let results = self.inner.commit(&[foreign_batch()], now)?;
                    assert!(results.iter().all(Result::is_ok), "{results:?}");
                }
            }
        }
        self.inner.commit(batches, now)
    }

    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        self.inner.account(id)
    }

    fn accounts(
        &mut self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        self.inner.accounts(after, limit)
    }

    fn transfer(&mut self, id: &TransferId) -> Result<Option<TransferRecord>, StoreError> {
        self.inner.transfer(id)
    }

    fn history(
        &mut self,
        account: &AccountId,
        after_sequence: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TransferRecord>, StoreError> {
        self.inner.history(account, after_sequence, limit)
    }

    fn totals(&mut self) -> Result<Vec<CurrencyTotal>, StoreError> {
        self.inner.totals()
    }

    fn record(&mut self, namespace: &str, key: &str) -> Result<Option<Record>, StoreError> {
        self.inner.record(namespace, key)
    }

    fn records(
        &mut self,
        namespace: &str,
        key_prefix: &str,
        after_key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.inner.records(namespace, key_prefix, after_key, limit)
    }

    fn read_transaction(
        &mut self,
        reads: &mut dyn FnMut(&mut dyn LedgerStore) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Interference is in commits only; reads go straight to the store.
        self.inner.read_transaction(reads)
    }
}

/// Commits of a [`small`] run: 1 creates the accounts, 2 funds them, then the batches, then the
/// baseline transfers.
const BATCHED_COMMITS: u64 = TRANSFERS / BATCH as u64;
const LAST_COMMIT: u64 = 2 + BATCHED_COMMITS + BASELINE;

#[test]
fn a_lost_batch_fails_the_run() {
    for (at, what) in [
        (3, "the first batch"),
        (2 + BATCHED_COMMITS + 5, "a baseline transfer"),
        (LAST_COMMIT, "the last transfer"),
    ] {
        let directory = tempfile::tempdir().expect("temporary directory");
        let mut store = Interfering::open(&directory, at, Interference::Lose);
        let outcome = run_quietly(&mut store, &small("lossy"));
        assert!(
            matches!(outcome, Err(BenchError::AccountMismatch { .. })),
            "losing {what} gave {outcome:?}"
        );
    }
}

#[test]
fn another_writer_during_the_run_fails_the_count() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut store = Interfering::open(&directory, 5, Interference::AnotherWriter);
    let outcome = run_quietly(&mut store, &small("shared"));
    let submitted = ACCOUNTS + TRANSFERS + BASELINE;
    assert!(
        matches!(
            outcome,
            Err(BenchError::TransferCountMismatch { submitted: s, stored }) if s == submitted && stored == submitted + 1
        ),
        "{outcome:?}"
    );
}

#[test]
fn bad_configurations_are_refused_with_clear_errors() {
    let (_directory, mut store) = open();
    let cases: [(BenchConfig, &str); 9] = [
        (
            BenchConfig {
                accounts: 0,
                ..small("x")
            },
            "--accounts 0 is out of range",
        ),
        (
            BenchConfig {
                accounts: 1,
                ..small("x")
            },
            "--accounts 1 is out of range: give 2 to",
        ),
        (
            BenchConfig {
                transfers: 0,
                ..small("x")
            },
            "--transfers is out of range",
        ),
        (
            BenchConfig {
                batch: 0,
                ..small("x")
            },
            "--batch 0 is out of range",
        ),
        (
            BenchConfig {
                batch: BATCH_OPERATIONS_MAX + 1,
                ..small("x")
            },
            "--batch 8191 is out of range: give 1 to 8190",
        ),
        (
            BenchConfig {
                baseline_transfers: 0,
                ..small("x")
            },
            "baseline transfers 0",
        ),
        (
            BenchConfig {
                hot_account_percent: 101,
                ..small("x")
            },
            "hot-account percentage 101",
        ),
        (
            BenchConfig {
                run_id: Some("a-b".to_owned()),
                ..small("x")
            },
            "invalid run id",
        ),
        (
            BenchConfig {
                run_id: Some("x".repeat(25)),
                ..small("x")
            },
            "invalid run id: it must have 1 to 24 characters",
        ),
    ];
    for (config, message) in cases {
        let error = run_quietly(&mut store, &config).expect_err("refused");
        assert!(
            error.to_string().contains(message),
            "{config:?}: {error} should say {message:?}"
        );
    }
    // Nothing was written by the refused runs.
    assert!(store.accounts(None, 10).expect("accounts").is_empty());
    let distribution = "pareto".parse::<Distribution>().expect_err("unknown");
    assert!(distribution.to_string().contains("use uniform or zipfian"));
    assert_eq!(
        "zipf".parse::<Distribution>().ok(),
        Some(Distribution::Zipfian)
    );
}
