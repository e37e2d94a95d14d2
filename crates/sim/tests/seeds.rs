//! The simulator's own checks: a seed replays byte for byte, and a fixed budget of seeds holds
//! every invariant (the CI budget).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use offpay_sim::{Options, Rails, run_seed};

fn show(report: &offpay_sim::SeedReport) -> String {
    format!(
        "seed {} failed at step {:?}: {:?}\nreplay: {}\n{}",
        report.seed,
        report.violation.as_ref().map(|violation| violation.step),
        report.violation,
        offpay_sim::replay_command(report.seed, report.steps),
        report.events.join("\n")
    )
}

#[test]
fn purse_only_smoke() {
    let options = Options {
        rails: Rails {
            purse: true,
            sms: false,
            wallet: false,
            microcheck: false,
        },
        keep_events: true,
        ..Options::default()
    };
    for seed in 0..20 {
        let report = run_seed(seed, &options);
        assert!(report.violation.is_none(), "{}", show(&report));
        println!("seed {seed}: {:?}", report.counters);
    }
}

#[test]
#[ignore]
fn timing() {
    let options = Options {
        rails: Rails {
            purse: true,
            sms: false,
            wallet: false,
            microcheck: false,
        },
        ..Options::default()
    };
    for seed in 0..20 {
        let start = std::time::Instant::now();
        let report = run_seed(seed, &options);
        println!("seed {seed}: {:?} {:?}", start.elapsed(), report.counters);
    }
}
