//! `offpay sim`: the adversarial whole-system simulator (`offpay-sim`). Runs seeds, prints
//! progress and a summary (operations, faults injected, attacks tried, invariants checked), and
//! for every failing seed the command that replays it. The wall clock here only bounds how long
//! the command runs (`--minutes`); nothing in a run depends on it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use offpay_sim::{Counters, Options, Rails, STEPS_DEFAULT, STEPS_MAX, SeedReport, run_seed};

/// Seeds run when neither `--seed` nor `--seeds` is given.
const SEEDS_DEFAULT: u64 = 100;
/// Most seeds one command runs.
const SEEDS_MAX: u64 = 100_000_000;
/// Failing seeds listed in a summary.
const FAILURES_SHOWN_MAX: usize = 20;
/// Seeds whose trace hashes the JSON summary lists.
const TRACES_SHOWN_MAX: usize = 100;
/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Run the deterministic simulator: the four rails, their devices, honest users, adversaries
/// and faults, from seeds.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Run this one seed (to replay a failure) and print its events
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// How many seeds to run, from --start
    #[arg(long)]
    seeds: Option<u64>,
    /// The first seed
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Stop starting new seeds after this many minutes
    #[arg(long)]
    minutes: Option<u64>,
    /// Steps per seed
    #[arg(long, default_value_t = STEPS_DEFAULT)]
    steps: u32,
    /// The rails in each run: a comma-separated list of purse, sms, wallet, microcheck, or all
    #[arg(long, default_value = "all")]
    rails: String,
    /// Print each seed's events (the newest of them) even when it holds
    #[arg(long)]
    events: bool,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Default)]
struct Summary {
    seeds: u64,
    steps: u64,
    counters: Counters,
    failures: Vec<SeedReport>,
    findings: BTreeMap<String, u64>,
    residuals: BTreeMap<String, u64>,
    /// The first seeds' trace hashes (the same seed gives the same hash).
    traces: BTreeMap<u64, String>,
}

impl Summary {
    fn add(&mut self, report: SeedReport) {
        self.seeds += 1;
        self.steps += u64::from(report.steps);
        self.counters.add(&report.counters);
        for finding in &report.findings {
            *self.findings.entry(finding.clone()).or_default() += 1;
        }
        for residual in &report.residuals {
            *self.residuals.entry(residual.clone()).or_default() += 1;
        }
        if self.traces.len() < TRACES_SHOWN_MAX {
            self.traces.insert(report.seed, report.trace_hex());
        }
        if report.violation.is_some() {
            self.failures.push(report);
        }
    }
}

/// Runs `offpay sim`.
pub fn run(args: SimArgs) -> ExitCode {
    let rails = match Rails::parse(&args.rails) {
        Ok(rails) => rails,
        Err(message) => {
            eprintln!("offpay sim: {message}");
            return ExitCode::from(2);
        }
    };
    if args.steps == 0 || args.steps > STEPS_MAX {
        eprintln!("offpay sim: --steps must be 1 to {STEPS_MAX}");
        return ExitCode::from(2);
    }
    let options = Options {
        steps: args.steps,
        rails,
        keep_events: true,
        ..Options::default()
    };
    let (start, count) = match (args.seed, args.seeds) {
        (Some(seed), _) => (seed, 1),
        (None, Some(count)) => (args.start, count.min(SEEDS_MAX)),
        (None, None) => (args.start, SEEDS_DEFAULT),
    };
    let deadline = args
        .minutes
        .map(|minutes| Instant::now() + Duration::from_secs(minutes.saturating_mul(60)));
    let began = Instant::now();
    let mut last_progress = Instant::now();
    let mut summary = Summary::default();
    for seed in start..start.saturating_add(count) {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            break;
        }
        let report = run_seed(seed, &options);
        if args.seed.is_some() || args.events {
            println!("seed {seed}:");
            for line in &report.events {
                println!("  {line}");
            }
        }
        if let Some(violation) = &report.violation {
            eprintln!(
                "seed {seed} FAILED at step {}: {}: {}\n  replay: {}",
                violation.step,
                violation.invariant,
                violation.detail,
                offpay_sim::replay_command(seed, &options)
            );
        }
        summary.add(report);
        if !args.json && last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            eprintln!(
                "{} seeds run, {} failed, {:.0}s",
                summary.seeds,
                summary.failures.len(),
                began.elapsed().as_secs_f64()
            );
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    if args.json {
        print_json(&summary, &options, start, seconds);
    } else {
        print_words(&summary, &options, start, seconds);
    }
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_words(summary: &Summary, options: &Options, start: u64, seconds: f64) {
    let counters = &summary.counters;
    println!(
        "Simulated {} seeds from seed {start} ({} steps each, rails: {}) in {seconds:.1} seconds.",
        summary.seeds,
        options.steps,
        options.rails.names()
    );
    println!("  operations:         {}", counters.operations);
    println!("  faults injected:    {}", counters.faults);
    println!("  attacks tried:      {}", counters.attacks);
    println!("  invariants checked: {}", counters.invariants);
    for (name, seeds) in &summary.residuals {
        println!("  documented residual seen in {seeds} seeds: {name}");
    }
    for (name, seeds) in &summary.findings {
        println!("  open finding seen in {seeds} seeds: {name} (docs/SIMULATOR.md)");
    }
    if summary.failures.is_empty() {
        println!("Every invariant held.");
        return;
    }
    println!("{} seeds failed:", summary.failures.len());
    for report in summary.failures.iter().take(FAILURES_SHOWN_MAX) {
        if let Some(violation) = &report.violation {
            println!(
                "  seed {}: {} at step {}; replay: {}",
                report.seed,
                violation.invariant,
                violation.step,
                offpay_sim::replay_command(report.seed, options)
            );
        }
    }
}

fn print_json(summary: &Summary, options: &Options, start: u64, seconds: f64) {
    let failures: Vec<serde_json::Value> = summary
        .failures
        .iter()
        .filter_map(|report| {
            let violation = report.violation.as_ref()?;
            Some(serde_json::json!({
                "seed": report.seed,
                "step": violation.step,
                "invariant": violation.invariant,
                "detail": violation.detail,
                "replay": offpay_sim::replay_command(report.seed, options),
                "trace_sha256": report.trace_hex(),
            }))
        })
        .collect();
    let counters = &summary.counters;
    let value = serde_json::json!({
        "start": start,
        "seeds": summary.seeds,
        "steps_per_seed": options.steps,
        "rails": options.rails.names(),
        "seconds": seconds,
        "operations": counters.operations,
        "faults": counters.faults,
        "attacks": counters.attacks,
        "invariants": counters.invariants,
        "findings": summary.findings,
        "residuals": summary.residuals,
        "failures": failures,
        "traces": summary.traces,
    });
    println!("{value:#}");
}
