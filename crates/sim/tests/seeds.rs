//! The simulator's own checks: a seed replays byte for byte, and a fixed budget of seeds holds
//! every invariant (the CI budget).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use offpay_sim::{Options, Rails, SeedReport, run_seed};

fn show(report: &SeedReport, options: &Options) -> String {
    format!(
        "seed {} failed at step {:?}: {:?}\nreplay: {}\n{}",
        report.seed,
        report.violation.as_ref().map(|violation| violation.step),
        report.violation,
        offpay_sim::replay_command(report.seed, options),
        report.events.join("\n")
    )
}

const NONE: Rails = Rails {
    purse: false,
    sms: false,
    wallet: false,
    microcheck: false,
};

fn smoke(rails: Rails, seeds: u64) {
    let options = Options {
        rails,
        keep_events: true,
        ..Options::default()
    };
    for seed in 0..seeds {
        let report = run_seed(seed, &options);
        assert!(report.violation.is_none(), "{}", show(&report, &options));
    }
}

#[test]
fn purse_alone_holds_every_invariant() {
    smoke(
        Rails {
            purse: true,
            ..NONE
        },
        20,
    );
}

#[test]
fn sms_alone_holds_every_invariant() {
    smoke(Rails { sms: true, ..NONE }, 20);
}

#[test]
#[ignore]
fn timing() {
    let wanted =
        std::env::var("SIM_RAILS").unwrap_or_else(|_| "purse,sms,wallet,microcheck".into());
    let options = Options {
        rails: Rails {
            purse: wanted.contains("purse"),
            sms: wanted.contains("sms"),
            wallet: wanted.contains("wallet"),
            microcheck: wanted.contains("microcheck"),
        },
        ..Options::default()
    };
    for seed in 0..20 {
        let start = std::time::Instant::now();
        let report = run_seed(seed, &options);
        println!(
            "seed {seed}: {:?} {:?} {:?}",
            start.elapsed(),
            report.counters,
            report.violation
        );
    }
}

/// Prints the events of `SIM_SEED` (rails from `SIM_RAILS`, e.g. `sms,wallet`).
#[test]
#[ignore]
fn events() {
    let seed: u64 = std::env::var("SIM_SEED")
        .unwrap_or_default()
        .parse()
        .unwrap_or(0);
    let wanted =
        std::env::var("SIM_RAILS").unwrap_or_else(|_| "purse,sms,wallet,microcheck".into());
    let rails = Rails {
        purse: wanted.contains("purse"),
        sms: wanted.contains("sms"),
        wallet: wanted.contains("wallet"),
        microcheck: wanted.contains("microcheck"),
    };
    let options = Options {
        rails,
        keep_events: true,
        ..Options::default()
    };
    let report = run_seed(seed, &options);
    println!(
        "{}\n{:?}\n{:?}",
        report.events.join("\n"),
        report.counters,
        report.violation
    );
}

#[test]
fn wallet_alone_holds_every_invariant() {
    smoke(
        Rails {
            wallet: true,
            ..NONE
        },
        20,
    );
}

#[test]
fn microcheck_alone_holds_every_invariant() {
    smoke(
        Rails {
            microcheck: true,
            ..NONE
        },
        20,
    );
}

#[test]
fn all_four_rails_hold_every_invariant() {
    smoke(Rails::ALL, 10);
}
