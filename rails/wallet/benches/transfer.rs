//! Benchmarks of the pure parts: one transfer end to end in memory (crypto included), the cost
//! of sealing and opening one datagram, one fsync'd log append, and — counted, not timed — the
//! datagrams and round trips a transfer takes at 0%, 10% and 30% loss.
//!
//! Run: `cargo bench -p offpay-wallet --bench transfer`.

#![allow(clippy::expect_used)] // Tests stop at the first surprise.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::{NetConfig, Sim};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use offpay_wallet::{FileStorage, LogStorage};

fn net(loss: f64) -> NetConfig {
    NetConfig {
        loss,
        duplicate: 0.0,
        latency_ms_max: 5,
    }
}

/// Datagrams and round trips per transfer, averaged over many seeded transfers. A round trip is
/// a datagram from the seller (look-up, commit-request, commit or abort), each of which the buyer
/// answers; retransmissions count.
fn count_traffic(loss: f64, transfers: u64) -> (f64, f64, f64) {
    let mut datagrams = 0;
    let mut round_trips = 0;
    let mut posted = 0;
    for seed in 0..transfers {
        let mut sim = Sim::new(2, 1_000 + seed, net(loss));
        let before = sim.stats;
        let transfer_id = sim.start_sale(0, 1, 1_000).expect("sale starts");
        sim.quiesce();
        datagrams += sim.stats.datagrams - before.datagrams;
        round_trips += sim.stats.seller_datagrams - before.seller_datagrams;
        if sim.wallet(0).outcome(&transfer_id) == Some(offpay_wallet::Outcome::Posted) {
            posted += 1;
        }
    }
    let n = transfers as f64;
    (
        datagrams as f64 / n,
        round_trips as f64 / n,
        posted as f64 / n,
    )
}

fn traffic(c: &mut Criterion) {
    for loss in [0.0, 0.1, 0.3] {
        let (datagrams, round_trips, posted) = count_traffic(loss, 300);
        println!(
            "traffic at {:>2.0}% loss: {datagrams:.2} datagrams and {round_trips:.2} round trips per transfer, {:.1}% posted",
            loss * 100.0,
            posted * 100.0
        );
    }
    let mut group = c.benchmark_group("transfer");
    for loss in [0.0, 0.1, 0.3] {
        let mut seed = 0;
        group.bench_function(
            format!("end_to_end_in_memory_loss_{:.0}pct", loss * 100.0),
            |b| {
                b.iter_batched(
                    || {
                        seed += 1;
                        Sim::new(2, seed, net(loss))
                    },
                    |mut sim| {
                        let transfer_id = sim.start_sale(0, 1, 1_000).expect("sale starts");
                        sim.quiesce();
                        black_box(sim.wallet(0).outcome(&transfer_id))
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    group.finish();
}

fn datagram(c: &mut Criterion) {
    let mut sim = Sim::new(2, 7, net(0.0));
    sim.start_sale(0, 1, 1_000).expect("sale starts");
    sim.quiesce();
    // A commit-request as sent, replayed to a fresh copy of the buyer each time: open + verify.
    let keys = sim.devices[1].keys.clone();
    let log = sim.devices[1].storage.bytes().to_vec();
    let (wallet, _, _) = offpay_wallet::Wallet::open(keys, &log, sim.now, false).expect("open");
    let commit = sim
        .sent
        .iter()
        .filter(|(from, to, _)| *from == 0 && *to == 1)
        .nth(1)
        .map(|(_, _, b)| b.clone())
        .expect("commit-request sent");
    c.bench_function("datagram_open_and_verify", |b| {
        b.iter_batched(
            || wallet_clone(&sim, &wallet),
            |mut w| {
                let now = sim.now;
                let mut entropy = offpay_wallet::SeededEntropy::from_seed(1);
                black_box(w.handle_datagram(&commit, now, &mut entropy).is_ok())
            },
            BatchSize::SmallInput,
        )
    });
}

fn wallet_clone(sim: &Sim, _wallet: &offpay_wallet::Wallet) -> offpay_wallet::Wallet {
    let keys = sim.devices[1].keys.clone();
    let log = sim.devices[1].storage.bytes().to_vec();
    offpay_wallet::Wallet::open(keys, &log, sim.now, false)
        .expect("open")
        .0
}

fn fsync(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut storage = FileStorage::open(&dir.path().join("bench.log")).expect("open");
    let frame = vec![0x5a; 420];
    c.bench_function("log_append_fsync_420_bytes", |b| {
        b.iter(|| storage.append(black_box(&frame)).expect("append"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = traffic, datagram, fsync
}
criterion_main!(benches);
