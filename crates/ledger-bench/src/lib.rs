//! The ledger load generator behind `offpay bench ledger`: in one run it measures batched durable
//! posting and the naive baseline (one transfer per database transaction) on any [`LedgerStore`].
//!
//! Like `tigerbeetle benchmark` and `pgbench`, [`run`] creates its own accounts, posts seeded
//! random transfers between them, and reports rates and batch latencies. It then checks the
//! ledger: balances still sum to zero, and every account holds exactly the sums and the number of
//! transfers the generator posted. A failed check is an error, never a line in the report.
//!
//! # What a run does
//! 1. **Set-up** (not measured): creates an operator float and `accounts` customers, all with ids
//!    under `bench-{run_id}-`, and funds every customer from the float with enough to pay every
//!    transfer of the run at the largest amount. Customers keep the ledger's default floor of
//!    zero, so the balance check runs on every debit and can never fail.
//! 2. **Batched**: `transfers` transfers between customers, in batches of `batch`, each batch one
//!    call to [`LedgerStore::commit`] (one durable group commit). Rate over the phase's wall
//!    time, generation included; latency per batch over the commit alone.
//! 3. **Baseline**: `min(transfers, baseline_transfers)` transfers, one per `commit`: the same
//!    engine and store, one database transaction (and one fsync) per transfer.
//! 4. **Verify**: [`verify_conservation`]; every account of the run is read back and must hold
//!    exactly the posted sums the generator expects; and the run's first and last transfers must
//!    be stored exactly `submitted - 1` sequence numbers apart, so the number of transfers stored
//!    equals the number submitted. This assumes the benchmark is the only writer while it runs
//!    and that no transfer is refused: then every backend hands out consecutive numbers.
//!
//! Each run has a fresh run id, so a second run on the same database creates new accounts and
//! transfer ids and never collides with the first.

mod generator;
pub mod random;
mod report;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use offpay_ledger::{
    AccountId, Amount, BATCH_OPERATIONS_MAX, Batch, BatchRefusal, Currency, LedgerStore, Outcome,
    StoreError, Timestamp, TransferId, verify_conservation,
};
use serde::Serialize;

pub use generator::{HOT_ACCOUNT_INDEX, TRANSFER_AMOUNT_MINOR_MAX};
pub use report::render_text;

/// Default number of customer accounts (the figure).
pub const ACCOUNTS_DEFAULT: u64 = 10_000;
/// Fewest customer accounts: a transfer needs two different ones.
pub const ACCOUNTS_MIN: u64 = 2;
/// Most customer accounts.
pub const ACCOUNTS_MAX: u64 = 1_000_000;
/// Default number of batched transfers: 62 batches of 8190, enough for a meaningful p99. On
/// SQLite here that is about 10 s of CPU (5 s at the 100,000/s target); with the 2,000-transfer
/// baseline (about 7 s of fsyncs) a default run takes 20 to 30 s.
pub const TRANSFERS_DEFAULT: u64 = 500_000;
/// Most batched transfers in one run.
pub const TRANSFERS_MAX: u64 = 100_000_000;
/// Default batch size: the largest batch the ledger takes.
pub const BATCH_DEFAULT: usize = BATCH_OPERATIONS_MAX;
/// Default cap on baseline transfers: at ~3.6 ms per fsync, about seven seconds.
pub const BASELINE_TRANSFERS_DEFAULT: u64 = 2_000;
/// Most baseline transfers.
pub const BASELINE_TRANSFERS_MAX: u64 = 1_000_000;
/// Zipf exponent θ of [`Distribution::Zipfian`], as in YCSB.
pub const ZIPF_THETA: f64 = 0.99;
/// Default seed: runs repeat unless asked otherwise.
pub const SEED_DEFAULT: u64 = 42;
/// Longest run id.
pub const RUN_ID_LENGTH_MAX: usize = 24;
/// Most progress reports per phase, so a callback that redraws a bar stays cheap on long runs.
const PROGRESS_REPORTS_MAX: u64 = 1000;

// Ids are `bench-{run_id}-t{number}` and `bench-{run_id}-c{index}`: they must fit the ledger's id
// length with the largest numbers.
const _: () = assert!(
    "bench-".len() + RUN_ID_LENGTH_MAX + "-t".len() + 20 <= offpay_ledger::ids::ID_LENGTH_MAX
);
// Every customer is funded with (all transfers of the run) × (largest amount); that must be a
// valid amount, and the float's debits (one funding per customer) must fit a 64-bit sum.
const FUNDING_MINOR_MAX: u64 = (TRANSFERS_MAX + BASELINE_TRANSFERS_MAX) * TRANSFER_AMOUNT_MINOR_MAX;
const _: () = assert!(FUNDING_MINOR_MAX <= Amount::MAX_MINOR);
const _: () = assert!(
    (FUNDING_MINOR_MAX as u128) * (ACCOUNTS_MAX as u128) <= i64::MAX as u128,
    "the float's debits must fit an i64 balance"
);
// Customer indexes are kept as u32 in the Zipfian rank table.
const _: () = assert!(ACCOUNTS_MAX <= u32::MAX as u64);
const _: () = assert!(BATCH_DEFAULT <= BATCH_OPERATIONS_MAX);

/// How transfers pick their accounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Distribution {
    /// Every customer equally likely.
    #[default]
    Uniform,
    /// Zipfian with θ = [`ZIPF_THETA`]: the most popular customer is picked about 10 % of the
    /// time among 10,000. Popularity ranks are shuffled over the accounts (seeded).
    Zipfian,
}

impl Distribution {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipfian => "zipfian",
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Distribution {
    type Err = BenchError;

    /// Parses `uniform`, `zipfian` (or `zipf`).
    fn from_str(text: &str) -> Result<Distribution, BenchError> {
        match text {
            "uniform" => Ok(Distribution::Uniform),
            "zipfian" | "zipf" => Ok(Distribution::Zipfian),
            other => Err(BenchError::DistributionUnknown {
                name: other.to_owned(),
            }),
        }
    }
}

/// What to run. [`BenchConfig::default`] is the benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchConfig {
    /// Customer accounts, [`ACCOUNTS_MIN`]..=[`ACCOUNTS_MAX`] (default [`ACCOUNTS_DEFAULT`]).
    pub accounts: u64,
    /// Batched transfers, 1..=[`TRANSFERS_MAX`] (default [`TRANSFERS_DEFAULT`]).
    pub transfers: u64,
    /// Transfers per batch, 1..=[`BATCH_OPERATIONS_MAX`] (default [`BATCH_DEFAULT`]).
    pub batch: usize,
    /// Cap on baseline transfers, 1..=[`BASELINE_TRANSFERS_MAX`]; the baseline posts
    /// `min(transfers, baseline_transfers)` (default [`BASELINE_TRANSFERS_DEFAULT`]).
    pub baseline_transfers: u64,
    /// Account choice (default uniform).
    pub distribution: Distribution,
    /// Percentage of transfers (0..=100) that debit or credit the hot account (customer
    /// [`HOT_ACCOUNT_INDEX`]); the other side follows `distribution`. Default 0.
    pub hot_account_percent: u8,
    /// Seed of every random choice (default [`SEED_DEFAULT`]).
    pub seed: u64,
    /// Currency of the run's accounts (default KES).
    pub currency: Currency,
    /// Names the run's accounts and transfers: ASCII letters and digits, at most
    /// [`RUN_ID_LENGTH_MAX`]. `None`: derived from the clock (milliseconds, base 36).
    pub run_id: Option<String>,
}

impl Default for BenchConfig {
    fn default() -> BenchConfig {
        BenchConfig {
            accounts: ACCOUNTS_DEFAULT,
            transfers: TRANSFERS_DEFAULT,
            batch: BATCH_DEFAULT,
            baseline_transfers: BASELINE_TRANSFERS_DEFAULT,
            distribution: Distribution::Uniform,
            hot_account_percent: 0,
            seed: SEED_DEFAULT,
            currency: Currency::KES,
            run_id: None,
        }
    }
}

impl BenchConfig {
    /// Checks every bound; [`run`] calls it first.
    pub fn validate(&self) -> Result<(), BenchError> {
        if !(ACCOUNTS_MIN..=ACCOUNTS_MAX).contains(&self.accounts) {
            return Err(BenchError::AccountsOutOfRange {
                accounts: self.accounts,
            });
        }
        if !(1..=TRANSFERS_MAX).contains(&self.transfers) {
            return Err(BenchError::TransfersOutOfRange {
                reason: format!("{} transfers; give 1 to {TRANSFERS_MAX}", self.transfers),
            });
        }
        if !(1..=BATCH_OPERATIONS_MAX).contains(&self.batch) {
            return Err(BenchError::BatchOutOfRange { batch: self.batch });
        }
        if !(1..=BASELINE_TRANSFERS_MAX).contains(&self.baseline_transfers) {
            return Err(BenchError::BaselineTransfersOutOfRange {
                baseline_transfers: self.baseline_transfers,
            });
        }
        if self.hot_account_percent > 100 {
            return Err(BenchError::HotAccountPercentOutOfRange {
                percent: self.hot_account_percent,
            });
        }
        if let Some(run_id) = &self.run_id {
            validate_run_id(run_id)?;
        }
        Ok(())
    }

    /// Transfers the baseline posts.
    pub fn baseline_count(&self) -> u64 {
        self.transfers.min(self.baseline_transfers)
    }
}

fn validate_run_id(run_id: &str) -> Result<(), BenchError> {
    if run_id.is_empty() || run_id.len() > RUN_ID_LENGTH_MAX {
        return Err(BenchError::RunIdInvalid {
            reason: format!("it must have 1 to {RUN_ID_LENGTH_MAX} characters"),
        });
    }
    if !run_id.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
        return Err(BenchError::RunIdInvalid {
            reason: "only ASCII letters and digits are allowed".to_owned(),
        });
    }
    Ok(())
}

/// A run id from the clock: milliseconds since the epoch in base 36 (8 characters until 2059).
fn run_id_from_clock() -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut value = now().0;
    let mut digits = Vec::new();
    while value > 0 || digits.is_empty() {
        digits.push(DIGITS[(value % 36) as usize]);
        value /= 36;
    }
    digits
        .iter()
        .rev()
        .map(|digit| char::from(*digit))
        .collect()
}

fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    Timestamp(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// A stage of a run, for progress bars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Creating and funding accounts (`done`/`total` count operations).
    Setup,
    /// Posting in batches (transfers).
    Batched,
    /// Posting one transfer per database transaction (transfers).
    Baseline,
    /// Reading accounts back and checking them (accounts).
    Verify,
}

impl Phase {
    /// A short label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Batched => "batched",
            Phase::Baseline => "baseline",
            Phase::Verify => "verify",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// How far a phase has come. Every phase reports `done = 0` first and `done = total` last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Which phase.
    pub phase: Phase,
    /// Units done.
    pub done: u64,
    /// Units in the phase.
    pub total: u64,
}

/// What a run measured. Serialised as the `--json` output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    /// [`LedgerStore::backend`]: `"sqlite"` or `"postgres"`.
    pub backend: String,
    /// The run's id (its accounts and transfers are named `bench-{run_id}-…`).
    pub run_id: String,
    /// Seed of the random choices.
    pub seed: u64,
    /// Customer accounts.
    pub accounts: u64,
    /// Account choice.
    pub distribution: Distribution,
    /// θ when the distribution is Zipfian.
    pub zipf_theta: Option<f64>,
    /// Percentage of transfers touching the hot account.
    pub hot_account_percent: u8,
    /// Batched transfers posted.
    pub transfers: u64,
    /// Transfers per batch (the last batch may be smaller).
    pub batch_size: usize,
    /// Batches committed.
    pub batches: u64,
    /// Batched rate: transfers over the batched phase's wall time.
    pub transfers_per_second: f64,
    /// Median commit latency of a batch, in milliseconds.
    pub p50_batch_ms: f64,
    /// 99th percentile commit latency of a batch (nearest rank), in milliseconds.
    pub p99_batch_ms: f64,
    /// Slowest batch commit, in milliseconds.
    pub max_batch_ms: f64,
    /// Baseline transfers posted, one per database transaction.
    pub baseline_transfers: u64,
    /// Baseline rate.
    pub baseline_transfers_per_second: f64,
    /// `transfers_per_second / baseline_transfers_per_second`.
    pub speedup: f64,
    /// Every transfer the run stored and verified: funding, batched and baseline.
    pub transfers_verified: u64,
    /// Always true: a run whose checks fail returns an error instead of a report.
    pub conservation_verified: bool,
    /// Set-up time (creating and funding accounts), in seconds.
    pub setup_seconds: f64,
    /// Batched phase wall time, in seconds.
    pub batched_seconds: f64,
    /// Baseline phase wall time, in seconds.
    pub baseline_seconds: f64,
    /// Verification time, in seconds.
    pub verify_seconds: f64,
    /// The whole run, in seconds.
    pub elapsed_seconds: f64,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The configuration is out of bounds (the caller's mistake).
    #[error("--accounts {accounts} is out of range: give {ACCOUNTS_MIN} to {ACCOUNTS_MAX}")]
    AccountsOutOfRange {
        /// Given.
        accounts: u64,
    },
    /// The number of transfers is out of bounds.
    #[error("--transfers is out of range: {reason}")]
    TransfersOutOfRange {
        /// What is wrong.
        reason: String,
    },
    /// The batch size is zero or larger than the ledger takes.
    #[error(
        "--batch {batch} is out of range: give 1 to {BATCH_OPERATIONS_MAX} (the ledger's largest batch)"
    )]
    BatchOutOfRange {
        /// Given.
        batch: usize,
    },
    /// The baseline cap is out of bounds.
    #[error(
        "baseline transfers {baseline_transfers} is out of range: give 1 to {BASELINE_TRANSFERS_MAX}"
    )]
    BaselineTransfersOutOfRange {
        /// Given.
        baseline_transfers: u64,
    },
    /// The hot-account percentage is over 100.
    #[error("hot-account percentage {percent} is over 100")]
    HotAccountPercentOutOfRange {
        /// Given.
        percent: u8,
    },
    /// Not a distribution name.
    #[error("unknown distribution {name:?}: use uniform or zipfian")]
    DistributionUnknown {
        /// Given.
        name: String,
    },
    /// The run id cannot name accounts and transfers.
    #[error("invalid run id: {reason}")]
    RunIdInvalid {
        /// What is wrong.
        reason: String,
    },
    /// Accounts of this run id already exist in the database.
    #[error("run id {run_id} was already used on this database: choose another")]
    RunIdInUse {
        /// The id.
        run_id: String,
    },
    /// The store failed.
    #[error("ledger store failed: {0}")]
    Store(#[from] StoreError),
    /// The ledger refused a batch the generator built to be valid: a bug in one or the other.
    #[error("the ledger refused a {phase} batch: {refusal}")]
    Refused {
        /// Where.
        phase: Phase,
        /// Why.
        refusal: BatchRefusal,
    },
    /// An operation had an outcome other than "created" or "committed" (an id already existed).
    #[error("operation {} of a {phase} batch had outcome {outcome:?}", index + 1)]
    UnexpectedOutcome {
        /// Where.
        phase: Phase,
        /// Zero-based index in the batch.
        index: usize,
        /// What happened.
        outcome: Outcome,
    },
    /// The store answered a different number of results than batches committed.
    #[error("the store returned {results} results for {batches} batches")]
    ResultCountMismatch {
        /// Batches committed.
        batches: usize,
        /// Results returned.
        results: usize,
    },
    /// Balances do not sum to zero after the run.
    #[error(
        "money conservation broken in {currency}: posted sum {posted_sum}, pending sum {pending_sum}"
    )]
    ConservationBroken {
        /// Currency code.
        currency: String,
        /// Sum of posted balances.
        posted_sum: i128,
        /// Sum of pending balances.
        pending_sum: i128,
    },
    /// An account of the run is missing or does not hold what was posted to it.
    #[error("account {account} does not match what was posted: {detail}")]
    AccountMismatch {
        /// The account.
        account: AccountId,
        /// Expected and found.
        detail: String,
    },
    /// A transfer of the run is not in the ledger.
    #[error("transfer {transfer} was acknowledged but is not stored")]
    TransferMissing {
        /// Its id.
        transfer: TransferId,
    },
    /// The ledger holds a different number of transfers between the run's first and last than
    /// were submitted (another writer on the same database during the run also causes this).
    #[error(
        "{submitted} transfers were submitted but {stored} are stored between the run's first and last (was another writer using the database?)"
    )]
    TransferCountMismatch {
        /// Submitted (funding, batched and baseline).
        submitted: u64,
        /// Sequence numbers from the run's first transfer to its last.
        stored: u64,
    },
}

/// Runs the benchmark on an opened store. `progress` is called as each phase advances (at most
/// about a thousand times per phase).
pub fn run(
    store: &mut dyn LedgerStore,
    config: &BenchConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<BenchReport, BenchError> {
    config.validate()?;
    let run_started = Instant::now();
    let run_id = config.run_id.clone().unwrap_or_else(run_id_from_clock);
    validate_run_id(&run_id)?;
    let baseline_count = config.baseline_count();
    let mut generator =
        generator::Generator::new(config, &run_id, config.transfers + baseline_count)?;
    if store.account(generator.float())?.is_some() {
        return Err(BenchError::RunIdInUse { run_id });
    }

    let setup_started = Instant::now();
    setup(store, &mut generator, config, progress)?;
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    let batched_started = Instant::now();
    let latencies = post_batched(store, &mut generator, config, progress)?;
    let batched_seconds = batched_started.elapsed().as_secs_f64();

    let baseline_started = Instant::now();
    post_baseline(store, &mut generator, baseline_count, progress)?;
    let baseline_seconds = baseline_started.elapsed().as_secs_f64();

    let verify_started = Instant::now();
    let transfers_verified = verify(store, &generator, config, progress)?;
    let verify_seconds = verify_started.elapsed().as_secs_f64();

    let transfers_per_second = rate(config.transfers, batched_seconds);
    let baseline_transfers_per_second = rate(baseline_count, baseline_seconds);
    Ok(BenchReport {
        backend: store.backend().to_owned(),
        run_id,
        seed: config.seed,
        accounts: config.accounts,
        distribution: config.distribution,
        zipf_theta: (config.distribution == Distribution::Zipfian).then_some(ZIPF_THETA),
        hot_account_percent: config.hot_account_percent,
        transfers: config.transfers,
        batch_size: config.batch,
        batches: latencies.len() as u64,
        transfers_per_second,
        p50_batch_ms: percentile_ms(&latencies, 50),
        p99_batch_ms: percentile_ms(&latencies, 99),
        max_batch_ms: latencies.last().map_or(0.0, milliseconds),
        baseline_transfers: baseline_count,
        baseline_transfers_per_second,
        speedup: transfers_per_second / baseline_transfers_per_second,
        transfers_verified,
        conservation_verified: true,
        setup_seconds,
        batched_seconds,
        baseline_seconds,
        verify_seconds,
        elapsed_seconds: run_started.elapsed().as_secs_f64(),
    })
}

fn rate(transfers: u64, seconds: f64) -> f64 {
    transfers as f64 / seconds.max(f64::MIN_POSITIVE)
}

fn milliseconds(duration: &Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
fn percentile_ms(sorted: &[Duration], percent: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    milliseconds(&sorted[rank - 1])
}

/// Reports progress every `total / PROGRESS_REPORTS_MAX` units, and at the end.
struct Reporter<'a> {
    phase: Phase,
    total: u64,
    step: u64,
    next: u64,
    progress: &'a mut dyn FnMut(Progress),
}

impl<'a> Reporter<'a> {
    fn start(phase: Phase, total: u64, progress: &'a mut dyn FnMut(Progress)) -> Reporter<'a> {
        progress(Progress {
            phase,
            done: 0,
            total,
        });
        let step = (total / PROGRESS_REPORTS_MAX).max(1);
        Reporter {
            phase,
            total,
            step,
            next: step,
            progress,
        }
    }

    fn advance(&mut self, done: u64) {
        if done >= self.next || done == self.total {
            (self.progress)(Progress {
                phase: self.phase,
                done,
                total: self.total,
            });
            self.next = done + self.step;
        }
    }
}

/// Commits one batch as its own group and checks that every operation did what it should.
fn commit_one(store: &mut dyn LedgerStore, batch: &Batch, phase: Phase) -> Result<(), BenchError> {
    let results = store.commit(std::slice::from_ref(batch), now())?;
    let [result] = results.as_slice() else {
        return Err(BenchError::ResultCountMismatch {
            batches: 1,
            results: results.len(),
        });
    };
    let outcomes = result.as_ref().map_err(|refusal| BenchError::Refused {
        phase,
        refusal: refusal.clone(),
    })?;
    if let Some((index, outcome)) = outcomes.iter().enumerate().find(|(_, outcome)| {
        !matches!(
            outcome,
            Outcome::AccountCreated | Outcome::TransferCommitted
        )
    }) {
        return Err(BenchError::UnexpectedOutcome {
            phase,
            index,
            outcome: outcome.clone(),
        });
    }
    Ok(())
}

fn setup(
    store: &mut dyn LedgerStore,
    generator: &mut generator::Generator,
    config: &BenchConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), BenchError> {
    let total = 2 * config.accounts + 1;
    let mut reporter = Reporter::start(Phase::Setup, total, progress);
    let mut done = 0;
    for batch in generator.account_batches(BATCH_OPERATIONS_MAX) {
        commit_one(store, &batch, Phase::Setup)?;
        done += batch.operations.len() as u64;
        reporter.advance(done);
    }
    for batch in generator.funding_batches(BATCH_OPERATIONS_MAX)? {
        commit_one(store, &batch, Phase::Setup)?;
        done += batch.operations.len() as u64;
        reporter.advance(done);
    }
    Ok(())
}

/// Posts the batched phase; returns each batch's commit latency, sorted.
fn post_batched(
    store: &mut dyn LedgerStore,
    generator: &mut generator::Generator,
    config: &BenchConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Duration>, BenchError> {
    let mut reporter = Reporter::start(Phase::Batched, config.transfers, progress);
    let mut latencies = Vec::with_capacity(config.transfers.div_ceil(config.batch as u64) as usize);
    let mut done = 0;
    while done < config.transfers {
        let count = (config.transfers - done).min(config.batch as u64);
        let batch = generator.transfer_batch(count as usize)?;
        let started = Instant::now();
        commit_one(store, &batch, Phase::Batched)?;
        latencies.push(started.elapsed());
        done += count;
        reporter.advance(done);
    }
    latencies.sort_unstable();
    Ok(latencies)
}

fn post_baseline(
    store: &mut dyn LedgerStore,
    generator: &mut generator::Generator,
    count: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), BenchError> {
    let mut reporter = Reporter::start(Phase::Baseline, count, progress);
    for done in 1..=count {
        let batch = generator.transfer_batch(1)?;
        commit_one(store, &batch, Phase::Baseline)?;
        reporter.advance(done);
    }
    Ok(())
}

/// Checks conservation, every account of the run, and the number of the run's transfers stored;
/// returns that number.
fn verify(
    store: &mut dyn LedgerStore,
    generator: &generator::Generator,
    config: &BenchConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, BenchError> {
    verify_conservation(store).map_err(|error| match error {
        StoreError::ConservationBroken {
            currency,
            posted_sum,
            pending_sum,
        } => BenchError::ConservationBroken {
            currency,
            posted_sum,
            pending_sum,
        },
        other => BenchError::Store(other),
    })?;
    let total = config.accounts + 1;
    let mut reporter = Reporter::start(Phase::Verify, total, progress);
    // Every transfer of the run has a random positive amount and touches two accounts of the run,
    // so a transfer lost or applied twice changes at least two accounts' sums.
    for (done, (id, expected)) in (1..).zip(generator.expected()) {
        let account = store
            .account(id)?
            .ok_or_else(|| BenchError::AccountMismatch {
                account: id.clone(),
                detail: "it is missing".to_owned(),
            })?;
        let found = (
            account.debits_posted,
            account.credits_posted,
            account.debits_pending,
            account.credits_pending,
        );
        let wanted = (expected.debits_posted, expected.credits_posted, 0, 0);
        if found != wanted {
            return Err(BenchError::AccountMismatch {
                account: id.clone(),
                detail: format!(
                    "expected (debits posted, credits posted, debits pending, credits pending) {wanted:?}, found {found:?}"
                ),
            });
        }
        reporter.advance(done);
    }
    // With the benchmark as the only writer and no transfer refused, every backend hands out
    // consecutive numbers (SQLite from its counter, PostgreSQL from its sequence, one per
    // transfer), so the run's transfers occupy exactly the sequences from its first to its last.
    let submitted = generator.transfers_generated();
    let first = stored_transfer(store, generator, 0)?;
    let last = stored_transfer(store, generator, submitted - 1)?;
    let stored = last.saturating_sub(first) + 1;
    if stored != submitted {
        return Err(BenchError::TransferCountMismatch { submitted, stored });
    }
    Ok(stored)
}

/// The sequence number of the run's transfer `number`, which must be stored.
fn stored_transfer(
    store: &mut dyn LedgerStore,
    generator: &generator::Generator,
    number: u64,
) -> Result<u64, BenchError> {
    let id = generator.transfer_id(number)?;
    store
        .transfer(&id)?
        .map(|record| record.sequence)
        .ok_or(BenchError::TransferMissing { transfer: id })
}
