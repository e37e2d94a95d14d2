//! Crashes at every step of one transfer, exhaustively, and random crashes across many transfers
//! on a lossy, duplicating, reordering link. Afterwards every transfer is posted on both sides or
//! voided on both, and the value in the wallets and in the money office's view is unchanged.

#![allow(clippy::expect_used)] // Tests stop at the first surprise.

mod common;

use common::{CrashPoint, NetConfig, Sim};

/// Runs one transfer with a crash at `point`, the crashed device coming back after
/// `restart_delay_ms`; settles, checks, and returns how many actions the run performed and how
/// many crashes happened.
fn one_transfer(point: CrashPoint, restart_delay_ms: u64) -> (u64, u64) {
    let mut sim = Sim::new(2, 7, NetConfig::default());
    sim.restart_delay_ms = (restart_delay_ms, restart_delay_ms);
    sim.step = 0;
    sim.crash = point;
    sim.crash_enabled = true;
    sim.start_sale(0, 1, 1_234).expect("sale starts");
    sim.quiesce();
    let steps = sim.step;
    let crashes = sim.stats.crashes;
    sim.settle();
    sim.check();
    (steps, crashes)
}

#[test]
fn a_crash_at_every_step_of_either_side_keeps_the_transfer_atomic() {
    let (steps, crashes) = one_transfer(CrashPoint::None, 0);
    assert_eq!(crashes, 0);
    assert!(
        steps >= 12,
        "a transfer takes at least a dozen actions, saw {steps}"
    );
    let mut runs = 0;
    // Short restarts resume the transfer; long ones outlast the peer's retries.
    for restart_delay_ms in [500, 120_000] {
        for k in 1..=steps {
            for point in [
                CrashPoint::Before(k),
                CrashPoint::After(k),
                CrashPoint::Torn(k),
            ] {
                let (_, crashes) = one_transfer(point, restart_delay_ms);
                assert_eq!(crashes, 1, "{point:?} should crash exactly once");
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 6 * steps);
}

#[test]
fn a_torn_last_record_is_cut_off_on_restart() {
    use offpay_wallet::{MemoryStorage, Wallet, record::parse_log};
    let mut sim = Sim::new(2, 8, NetConfig::default());
    sim.start_sale(0, 1, 500).expect("sale starts");
    sim.quiesce();
    let mut storage: MemoryStorage = sim.devices[1].storage.clone();
    let clean = parse_log(storage.bytes()).expect("parses");
    assert_eq!(clean.torn_bytes, 0);
    // A power cut in the middle of the next append.
    let frame = storage.bytes()[..40].to_vec();
    storage.tear(&frame);
    let torn = parse_log(storage.bytes()).expect("a torn tail is not corruption");
    assert_eq!(torn.torn_bytes, 20);
    assert_eq!(torn.records.len(), clean.records.len());
    let (wallet, _actions, report) =
        Wallet::recover(sim.devices[1].keys.clone(), &mut storage, sim.now).expect("recovers");
    assert_eq!(report.torn_bytes, 20);
    assert_eq!(storage.bytes().len() as u64, torn.valid_bytes);
    assert_eq!(wallet.balance(), sim.wallet(1).balance());
}

#[test]
fn a_damaged_record_in_the_middle_of_the_log_is_refused() {
    use offpay_wallet::{Error, StorageError, record::parse_log};
    let mut sim = Sim::new(2, 9, NetConfig::default());
    for _ in 0..30 {
        sim.start_sale(0, 1, 10).expect("sale starts");
        sim.quiesce();
    }
    let mut bytes = sim.devices[1].storage.bytes().to_vec();
    bytes[100] ^= 0x40;
    assert!(matches!(
        parse_log(&bytes),
        Err(StorageError::Corrupt { .. })
    ));
    let result = offpay_wallet::Wallet::open(sim.devices[1].keys.clone(), &bytes, sim.now, false);
    assert!(matches!(
        result,
        Err(Error::Storage(StorageError::Corrupt { .. }))
    ));
}

fn many_transfers(seed: u64, loss: f64, transfers: usize) -> (usize, usize) {
    let net = NetConfig {
        loss,
        duplicate: 0.1,
        latency_ms_max: 300,
    };
    let mut sim = Sim::new(5, seed, net);
    sim.crash_enabled = true;
    sim.random_crash = 0.01;
    sim.restart_delay_ms = (100, 90_000);
    for _ in 0..transfers {
        use rand::RngExt;
        let seller = sim.rng.random_range(0..5);
        let buyer = (seller + sim.rng.random_range(1..5)) % 5;
        let minor = sim.rng.random_range(1..20_000);
        let _ = sim.start_sale(seller, buyer, minor);
        let gap = sim.rng.random_range(0..3_000);
        let until = sim.now + gap;
        sim.run_until(until);
    }
    sim.settle();
    let (posted, voided) = sim.check();
    assert!(
        sim.stats.crashes > 0,
        "the run should have crashed something"
    );
    (posted, voided)
}

#[test]
fn many_transfers_with_random_loss_duplication_reordering_and_crashes() {
    let mut total_posted = 0;
    for (seed, loss) in [
        (11, 0.0),
        (12, 0.1),
        (13, 0.3),
        (14, 0.5),
        (15, 0.2),
        (16, 0.4),
    ] {
        let (posted, voided) = many_transfers(seed, loss, 60);
        assert!(posted + voided > 0);
        total_posted += posted;
    }
    assert!(
        total_posted > 100,
        "most transfers should post, got {total_posted}"
    );
}
