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

/// Regression for the simulator's finding on seed 4: an honest purse paid within its validity,
/// stayed offline while the scheme key was rotated twice, and was flagged
/// `payment_with_retired_key` and blocked at its late sync. The operator now dates a payment by
/// the answer its payer applied (the keys and validity it held), so an honest party is never
/// flagged for it; a flag on an honest party is a violation (`no_flag_on_an_honest_party`).
#[test]
fn purse_seed_4_an_honest_late_sync_is_not_flagged_for_a_retired_key() {
    let options = Options {
        rails: Rails {
            purse: true,
            ..NONE
        },
        keep_events: true,
        ..Options::default()
    };
    let report = run_seed(4, &options);
    assert!(report.violation.is_none(), "{}", show(&report, &options));
    assert!(
        !report
            .findings
            .iter()
            .any(|finding| finding.contains("retired_key")),
        "{:?}",
        report.findings
    );
    assert!(
        report
            .events
            .iter()
            .any(|event| event.contains("clock-back pair waits")),
        "seed 4 no longer lets rotations pass while purses stay offline"
    );
}

/// Runs `seed` on the purse rail alone: it must hold every invariant, its database insider must
/// have made `edit` (the attack is still tried), the operator must have refused it and raised
/// `record_tampered`, and the finding `finding` (the edit taking effect unflagged) must not
/// show.
fn purse_insider_seed_is_caught(seed: u64, edit: &str, finding: &str) {
    let options = Options {
        rails: Rails {
            purse: true,
            ..NONE
        },
        keep_events: true,
        ..Options::default()
    };
    let report = run_seed(seed, &options);
    assert!(report.violation.is_none(), "{}", show(&report, &options));
    let insider: Vec<&String> = report
        .events
        .iter()
        .filter(|event| event.contains("insider") || event.contains("FINDING"))
        .collect();
    assert!(
        report
            .events
            .iter()
            .any(|event| event.contains(&format!("purse insider {edit} on"))),
        "seed {seed} no longer has its insider make {edit}: {insider:#?}"
    );
    assert!(
        report
            .events
            .iter()
            .any(|event| event.contains("took effect false") && event.contains("record_tampered")),
        "seed {seed}: the insider's {edit} was not refused and flagged: {insider:#?}"
    );
    assert!(
        !report.findings.iter().any(|seen| seen == finding),
        "seed {seed} shows {finding}: {insider:#?}"
    );
}

/// Seed 13 (docs/SIMULATOR.md, fixed): a database insider appended an operator credit with no
/// float behind it to its accomplice's shadow account; the purse collected it, the operator
/// posted it from suspense, and the accomplice spent it, unflagged. The book's records are now
/// sealed: the edited shadow fails its seal, the sync is refused and `record_tampered` raised.
#[test]
fn purse_seed_13_an_insiders_forged_operator_credit_is_refused_and_flagged() {
    purse_insider_seed_is_caught(13, "ForgedCredit", "purse_insider_forged_credit_unflagged");
}

/// Seed 1 (fixed): the insider raised its accomplice's offline limits in its shadow record.
#[test]
fn purse_seed_1_an_insider_raising_limits_is_refused_and_flagged() {
    purse_insider_seed_is_caught(1, "RaisedLimits", "purse_insider_limits_unflagged");
}

/// Seed 6 (fixed): the insider cleared the operator's block on its accomplice in its shadow
/// account and the book header's blocked list.
#[test]
fn purse_seed_6_an_insider_clearing_a_block_is_refused_and_flagged() {
    purse_insider_seed_is_caught(6, "Unblock", "purse_insider_unblock_unflagged");
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
