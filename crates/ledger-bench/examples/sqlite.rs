//! Runs the ledger benchmark on a SQLite file until `offpay bench ledger` exists:
//! `cargo run --release -p offpay-ledger-bench --example sqlite -- [--json] [--accounts N]
//! [--transfers N] [--batch N] [--baseline N] [--distribution uniform|zipfian] [--hot PERCENT]
//! [--seed N] [--database FILE]`. Without `--database`, a temporary file is used.

use std::path::PathBuf;
use std::process::ExitCode;

use offpay_ledger_bench::{BenchConfig, Progress, render_text, run};
use offpay_ledger_sqlite::SqliteStore;

fn parse<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value
        .parse()
        .map_err(|error| format!("{flag} {value}: {error}"))
}

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> Result<(), String> {
    let mut config = BenchConfig::default();
    let mut json = false;
    let mut database: Option<PathBuf> = None;
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        match flag.as_str() {
            "--json" => json = true,
            "--accounts" => config.accounts = parse(&flag, arguments.next())?,
            "--transfers" => config.transfers = parse(&flag, arguments.next())?,
            "--batch" => config.batch = parse(&flag, arguments.next())?,
            "--baseline" => config.baseline_transfers = parse(&flag, arguments.next())?,
            "--distribution" => config.distribution = parse(&flag, arguments.next())?,
            "--hot" => config.hot_account_percent = parse(&flag, arguments.next())?,
            "--seed" => config.seed = parse(&flag, arguments.next())?,
            "--database" => database = Some(parse(&flag, arguments.next())?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let directory = tempfile::tempdir().map_err(|error| error.to_string())?;
    let path = database.unwrap_or_else(|| directory.path().join("ledger.sqlite"));
    let mut store = SqliteStore::open(&path).map_err(|error| error.to_string())?;
    let mut last_phase = None;
    let mut phase_started = scheduler_times();
    let mut progress = |progress: Progress| {
        if last_phase != Some(progress.phase) {
            report_phase_end(last_phase, &mut phase_started);
            eprintln!("{} ({} to do)", progress.phase, progress.total);
            last_phase = Some(progress.phase);
        }
    };
    let report = run(&mut store, &config, &mut progress).map_err(|error| error.to_string())?;
    report_phase_end(last_phase, &mut phase_started);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|error| error.to_string())?
        );
    } else {
        print!("{}", render_text(&report));
    }
    Ok(())
}

/// Nanoseconds this thread has run on a CPU and waited for one (Linux's
/// `/proc/thread-self/schedstat`), to tell a slow phase from a busy machine.
fn scheduler_times() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    Some((fields.next()?.ok()?, fields.next()?.ok()?))
}

fn report_phase_end(phase: Option<offpay_ledger_bench::Phase>, started: &mut Option<(u64, u64)>) {
    let now = scheduler_times();
    if let (Some(phase), Some((running, waiting)), Some((running_now, waiting_now))) =
        (phase, *started, now)
    {
        eprintln!(
            "  {phase}: {:.2} s on a CPU, {:.2} s waiting for one",
            (running_now - running) as f64 / 1e9,
            (waiting_now - waiting) as f64 / 1e9
        );
    }
    *started = now;
}
