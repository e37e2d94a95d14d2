//! `offpay bench ledger`: the ledger load generator (batched durable posting against the naive
//! one-transfer-per-database-transaction baseline on the same engine); `offpay bench server`
//! (in `bench_server`): one transfer per HTTP request against running servers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use offpay_ledger_bench::{BenchConfig, Distribution, Phase, Progress};

/// Benchmarks.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Load-test the ledger: batched group commit against one transfer per database transaction.
    Ledger(LedgerArgs),
    /// Load-test running servers: one transfer per HTTP request from concurrent clients.
    Server(crate::bench_server::ServerBenchArgs),
}

#[derive(Debug, Args)]
struct LedgerArgs {
    /// sqlite://PATH or postgres://... [default: a fresh SQLite file in --dir, removed afterwards]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Where the default SQLite file goes (a real disk, so that fsync costs what it costs)
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Customer accounts
    #[arg(long, default_value_t = BenchConfig::default().accounts)]
    accounts: u64,
    /// Transfers posted in batches
    #[arg(long, default_value_t = BenchConfig::default().transfers)]
    transfers: u64,
    /// Transfers per batch
    #[arg(long, default_value_t = BenchConfig::default().batch)]
    batch: usize,
    /// Most transfers posted one per database transaction for the baseline
    #[arg(long, default_value_t = BenchConfig::default().baseline_transfers)]
    baseline_transfers: u64,
    /// Account choice: uniform or zipfian (θ 0.99)
    #[arg(long, default_value = "uniform")]
    distribution: String,
    /// Percentage of transfers that touch one hot account
    #[arg(long, default_value_t = 0)]
    hot_account_percent: u8,
    /// Seed of every random choice
    #[arg(long, default_value_t = BenchConfig::default().seed)]
    seed: u64,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(args: BenchArgs) -> ExitCode {
    match args.command {
        BenchCommand::Ledger(args) => run_ledger(args),
        BenchCommand::Server(args) => crate::bench_server::run(args),
    }
}

fn run_ledger(args: LedgerArgs) -> ExitCode {
    let distribution = match args.distribution.parse::<Distribution>() {
        Ok(distribution) => distribution,
        Err(error) => {
            eprintln!("offpay bench ledger: {error}");
            return ExitCode::from(2);
        }
    };
    let config = BenchConfig {
        accounts: args.accounts,
        transfers: args.transfers,
        batch: args.batch,
        baseline_transfers: args.baseline_transfers,
        distribution,
        hot_account_percent: args.hot_account_percent,
        seed: args.seed,
        ..BenchConfig::default()
    };
    if let Err(error) = config.validate() {
        eprintln!("offpay bench ledger: {error}");
        return ExitCode::from(2);
    }
    let (_scratch, url) = match args.database_url {
        Some(url) => (None, url),
        None => match tempfile::Builder::new()
            .prefix("offpay-bench-")
            .tempdir_in(&args.dir)
        {
            Ok(directory) => {
                let url = format!(
                    "sqlite://{}",
                    directory.path().join("bench.sqlite").display()
                );
                (Some(directory), url)
            }
            Err(error) => {
                eprintln!(
                    "offpay bench ledger: cannot create a scratch directory in {}: {error}",
                    args.dir.display()
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let mut store = match offpay_server::open_store_url(&url) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("offpay bench ledger: {error}");
            return ExitCode::FAILURE;
        }
    };
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    let mut last_phase: Option<Phase> = None;
    let mut progress = |update: Progress| {
        let Some(bar) = &bar else { return };
        if last_phase != Some(update.phase) {
            bar.reset();
            bar.set_length(update.total);
            bar.set_prefix(update.phase.as_str());
            last_phase = Some(update.phase);
        }
        bar.set_position(update.done);
    };
    let result = offpay_ledger_bench::run(store.as_mut(), &config, &mut progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("offpay bench ledger: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", offpay_ledger_bench::render_text(&report));
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("offpay bench ledger: {error}");
            ExitCode::FAILURE
        }
    }
}
