//! Model checking of the real code. The crate's own seller and buyer state machines, their logs
//! (`MemoryStorage`, recovered through `Wallet::recover` after every crash) and the money office
//! are driven by the simulator in `tests/common`:
//!
//! - **exhaustively for one transfer**: every single datagram fault — loss, duplication, late
//!   delivery that lets later datagrams overtake it — combined with every crash point of either
//!   side (before or after each action, or a torn write), with a short and a long restart;
//! - **randomly for several concurrent transfers**: loss, duplication, reordering and random
//!   crashes on many seeds.
//!
//! After each run every wallet restarts and syncs until the office has resolved everything, and
//! `Sim::check` demands: every chosen sale posted on both sides or voided on both (a prepared
//! buyer ended only as the seller decided), no value held, the wallets and the office's view each
//! adding up to what was charged, no flag raised against an honest wallet.
//!
//! Negative variants: the same search with a defect injected into the real wallets
//! (`Defect::BuyerVoidsOnItsOwn`, `Defect::SellerCommitsBeforeForcing`) must find a run that
//! breaks atomicity.
//!
//! This replaces a hand-written `stateright` model of the protocol, which had drifted from the
//! code (it let the seller complete where the real one does not, and left out the seller's void
//! after agreement, the office's resolution, amounts and concurrent transfers).

#![allow(clippy::expect_used)] // Tests stop at the first surprise.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{CrashPoint, DatagramFault, NetConfig, Sim};
use offpay_wallet::Defect;

const AMOUNT_MINOR: u64 = 1_234;
/// How late a delayed datagram arrives: after every retransmission that follows it.
const LATE_MS: u64 = 3_000;

/// One transfer under `fault` and `crash`; settles and checks. `Err` carries what broke.
fn one_transfer(
    fault: DatagramFault,
    crash: CrashPoint,
    restart_delay_ms: u64,
    defect: Option<Defect>,
) -> Result<(u64, u64), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut sim = Sim::new(0, 7, NetConfig::default());
        sim.defect = defect;
        sim.add_device(common::CHARGE_MINOR);
        sim.add_device(common::CHARGE_MINOR);
        sim.restart_delay_ms = (restart_delay_ms, restart_delay_ms);
        sim.fault = fault;
        sim.step = 0;
        sim.crash = crash;
        sim.crash_enabled = true;
        sim.start_sale(0, 1, AMOUNT_MINOR).expect("sale starts");
        sim.quiesce();
        let counts = (sim.step, sim.stats.datagrams);
        sim.settle();
        sim.check();
        counts
    }));
    outcome.map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panic".to_owned())
    })
}

/// Every (datagram fault, crash point, restart delay) of one transfer; the first failure, if any.
fn search(defect: Option<Defect>) -> (usize, Option<String>) {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = search_quietly(defect);
    std::panic::set_hook(quiet);
    result
}

fn search_quietly(defect: Option<Defect>) -> (usize, Option<String>) {
    let (steps, datagrams) = match one_transfer(DatagramFault::None, CrashPoint::None, 0, defect) {
        Ok(counts) => counts,
        Err(error) => return (1, Some(error)),
    };
    assert!(steps >= 12, "a transfer takes at least a dozen actions");
    assert!(datagrams >= 6, "a transfer takes at least six datagrams");
    let mut faults = vec![DatagramFault::None];
    for k in 1..=datagrams {
        faults.extend([
            DatagramFault::Drop(k),
            DatagramFault::Duplicate(k),
            DatagramFault::Delay(k, LATE_MS),
        ]);
    }
    let mut crashes = vec![CrashPoint::None];
    for k in 1..=steps {
        crashes.extend([
            CrashPoint::Before(k),
            CrashPoint::After(k),
            CrashPoint::Torn(k),
        ]);
    }
    let mut runs = 0;
    for restart_delay_ms in [500, 120_000] {
        for fault in &faults {
            for crash in &crashes {
                runs += 1;
                if let Err(error) = one_transfer(*fault, *crash, restart_delay_ms, defect) {
                    return (
                        runs,
                        Some(format!(
                            "{fault:?} with {crash:?}, restart after {restart_delay_ms} ms: {error}"
                        )),
                    );
                }
            }
        }
    }
    (runs, None)
}

#[test]
fn one_transfer_stays_atomic_under_every_datagram_fault_and_crash_point() {
    let (runs, failure) = search(None);
    assert_eq!(failure, None);
    assert!(runs > 1_000, "explored {runs} runs");
    println!("explored {runs} runs of one transfer");
}

#[test]
fn a_buyer_that_voids_on_its_own_is_caught() {
    let (runs, failure) = search(Some(Defect::BuyerVoidsOnItsOwn));
    let failure = failure.expect("the defect must be found");
    assert!(
        failure.contains("at the seller but"),
        "caught as broken atomicity: {failure}"
    );
    println!("caught after {runs} runs: {failure}");
}

#[test]
fn a_seller_that_commits_before_forcing_its_record_is_caught() {
    let (runs, failure) = search(Some(Defect::SellerCommitsBeforeForcing));
    let failure = failure.expect("the defect must be found");
    assert!(
        failure.contains("at the seller but"),
        "caught as broken atomicity: {failure}"
    );
    println!("caught after {runs} runs: {failure}");
}

#[test]
fn several_concurrent_transfers_stay_atomic_under_random_faults_and_crashes() {
    for seed in 0..12u64 {
        let mut sim = Sim::new(
            4,
            900 + seed,
            NetConfig {
                loss: 0.2,
                duplicate: 0.1,
                latency_ms_max: 400,
            },
        );
        sim.random_crash = 0.02;
        sim.crash_enabled = true;
        sim.restart_delay_ms = (200, 60_000);
        // Every wallet sells to the next while buying from the previous, all at once.
        for seller in 0..4 {
            sim.start_sale(seller, (seller + 1) % 4, 100 + seed * 10 + seller as u64);
        }
        sim.quiesce();
        sim.settle();
        let (posted, voided) = sim.check();
        assert_eq!(
            posted + voided,
            sim.sales.iter().filter(|s| s.chosen).count()
        );
    }
}
