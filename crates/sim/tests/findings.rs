//! Open findings: holes the simulator found in a rail that are reported to the rail's owner and
//! not fixed yet (docs/SIMULATOR.md, "What it found"). Each test replays a seed that shows the
//! finding and fails while the hole is open; run them with `-- --ignored`. The summary of a run
//! counts a finding without failing the seed, so that a run goes on to find other things.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use offpay_sim::{Options, Rails, run_seed};

const PURSE: Rails = Rails {
    purse: true,
    sms: false,
    wallet: false,
    microcheck: false,
};

/// Runs `seed` on the purse rail alone and fails if it shows `finding`.
fn purse_seed_shows_no(seed: u64, finding: &str) {
    let options = Options {
        rails: PURSE,
        keep_events: true,
        ..Options::default()
    };
    let report = run_seed(seed, &options);
    assert!(report.violation.is_none(), "{:?}", report.violation);
    let events: Vec<&String> = report
        .events
        .iter()
        .filter(|event| event.contains("FINDING") || event.contains("insider"))
        .collect();
    assert!(
        !report.findings.iter().any(|seen| seen == finding),
        "seed {seed} shows {finding}:\n{events:#?}"
    );
}

/// A database insider adds an operator credit to its accomplice's shadow account (no float, no
/// posting): the purse collects it at its next sync, the operator posts it from suspense, and
/// the accomplice spends it. Nothing flags it; the loss sits on the operator's suspense account.
#[test]
#[ignore = "finding: an operator credit a database insider queued is delivered and spent unflagged"]
fn an_insider_forged_operator_credit_is_flagged() {
    purse_seed_shows_no(13, "purse_insider_forged_credit_unflagged");
}

/// A database insider raises its accomplice's offline limits in its shadow account: the
/// operator delivers them at the next sync, unflagged.
#[test]
#[ignore = "finding: offline limits a database insider raised in a shadow record are delivered unflagged"]
fn an_insider_raising_limits_is_flagged() {
    purse_seed_shows_no(1, "purse_insider_limits_unflagged");
}

/// A database insider clears the block the operator put on its accomplice (shadow account and
/// book header): the purse is unblocked at its next sync, unflagged.
#[test]
#[ignore = "finding: a block a database insider cleared in the purse book is undone unflagged"]
fn an_insider_clearing_a_block_is_flagged() {
    purse_seed_shows_no(6, "purse_insider_unblock_unflagged");
}
