//! Two wallets paying each other over real UDP sockets on loopback, each with its log in a file
//! forced to disk (fsync) before every promise: transfers per second with p50/p99 latency, and
//! the datagrams and round trips one transfer takes at 0%, 10% and 30% loss through the seeded
//! faulty link (the same proxy as `offpay wallet netem`).
//!
//! Run: `cargo bench -p offpay-wallet --bench udp` (prints a table; `WALLET_BENCH_TRANSFERS=N`
//! changes the number of transfers per row).

#![allow(clippy::expect_used, clippy::unwrap_used)] // A benchmark stops at the first surprise.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use offpay_money::{Amount, Currency};
use offpay_wallet::driver::{DriverStats, UdpWallet, now_ms};
use offpay_wallet::netem::{Faults, FaultyLink, LinkStats, run_proxy};
use offpay_wallet::{
    Event, FileStorage, Limits, MoneyOffice, OfficeKeys, OsEntropy, SeededEntropy, Wallet,
    WalletKeys,
};

/// Transfers per row unless `WALLET_BENCH_TRANSFERS` says otherwise (the log takes about 1000
/// between syncs).
const TRANSFERS_DEFAULT: usize = 200;
/// A transfer that takes longer than this is counted as stuck (the bench reports it).
const TRANSFER_WAIT_MAX: Duration = Duration::from_secs(30);
/// Socket wait per poll.
const POLL_WAIT: Duration = Duration::from_millis(20);
/// Quiet time after the last transfer before the counters are read (late acknowledgements).
const SETTLE: Duration = Duration::from_millis(1500);

struct Row {
    transfers: usize,
    posted: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    seller: DriverStats,
    buyer: DriverStats,
    link: Option<LinkStats>,
}

fn wallets(directory: &std::path::Path) -> (UdpWallet<FileStorage>, UdpWallet<FileStorage>) {
    let currency = Currency::from_code("KES").unwrap();
    let amount = |major: u64| Amount::from_minor(major * 100, currency).unwrap();
    let mut entropy = SeededEntropy::from_seed(42);
    let mut office = MoneyOffice::new(OfficeKeys::generate(&mut entropy), 24 * 3_600_000);
    let limits = Limits {
        balance_max: amount(10_000_000),
        payment_max: amount(1_000),
        offline_spend_max: amount(10_000_000),
    };
    let mut made = Vec::new();
    for name in ["seller", "buyer"] {
        let keys = WalletKeys::generate(&mut entropy);
        let credential = office
            .issue_wallet(
                keys.signing_public(),
                keys.encryption_public(),
                limits,
                now_ms(),
                &mut entropy,
            )
            .unwrap();
        let (wallet, actions) =
            Wallet::create(keys, credential, office.public(), now_ms()).unwrap();
        let storage = FileStorage::open(&directory.join(format!("{name}.log"))).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut driver = UdpWallet::new(wallet, storage, socket, Vec::new(), Box::new(OsEntropy));
        driver.perform(actions).unwrap();
        made.push(driver);
    }
    let mut buyer = made.pop().unwrap();
    let seller = made.pop().unwrap();
    let (voucher, _) = office
        .charge(buyer.wallet().id(), amount(1_000_000))
        .unwrap();
    buyer
        .call(|wallet, _, _| Ok(((), wallet.apply_charge(&voucher)?)))
        .unwrap();
    (seller, buyer)
}

fn run_row(transfers: usize, loss_ppm: Option<u32>, seed: u64) -> Row {
    let directory = tempfile::tempdir().unwrap();
    let (seller, mut buyer) = wallets(directory.path());
    let buyer_address = buyer.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));

    // The link: straight to the buyer, or through the faulty proxy.
    let (target, proxy): (SocketAddr, Option<thread::JoinHandle<LinkStats>>) = match loss_ppm {
        None => (buyer_address, None),
        Some(loss_ppm) => {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let address = socket.local_addr().unwrap();
            let faults = Faults {
                loss_ppm,
                ..Faults::default()
            };
            let link = FaultyLink::new(faults, seed).unwrap();
            let stop = stop.clone();
            let handle =
                thread::spawn(move || run_proxy(&socket, buyer_address, link, &stop).unwrap());
            (address, Some(handle))
        }
    };
    let (wallet, storage) = seller.into_parts();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seller = UdpWallet::new(wallet, storage, socket, vec![target], Box::new(OsEntropy));

    let buyer_stop = stop.clone();
    let buyer_thread = thread::spawn(move || {
        buyer.set_buyer_mode(true);
        while !buyer_stop.load(Ordering::Relaxed) {
            for event in buyer.poll(POLL_WAIT).unwrap().events {
                if let Event::PriceOffered { transfer_id, .. } = event {
                    buyer
                        .call(|wallet, now, entropy| {
                            Ok(((), wallet.approve(transfer_id, now, entropy)?))
                        })
                        .unwrap();
                }
            }
        }
        buyer.stats()
    });

    let currency = seller.wallet().credential().currency;
    let price = Amount::from_minor(150, currency).unwrap();
    let mut latencies = Vec::with_capacity(transfers);
    let mut posted = 0;
    let started = Instant::now();
    for _ in 0..transfers {
        let begun = Instant::now();
        let (transfer_id, mut events) = seller
            .call(|wallet, now, entropy| wallet.start_sale(price, now, entropy))
            .unwrap();
        let mut chosen = false;
        let mut outcome = None;
        while outcome.is_none() && begun.elapsed() < TRANSFER_WAIT_MAX {
            for event in std::mem::take(&mut events) {
                match event {
                    Event::BuyerAnswered { buyer, .. } if !chosen => {
                        chosen = true;
                        let (_, more) = seller
                            .call(|wallet, now, entropy| {
                                Ok(((), wallet.choose_buyer(transfer_id, buyer, now, entropy)?))
                            })
                            .unwrap();
                        events.extend(more);
                    }
                    Event::Posted { .. } => outcome = Some(true),
                    Event::Voided { .. } => outcome = Some(false),
                    _ => {}
                }
            }
            if outcome.is_none() {
                if !chosen && seller.wallet().next_timeout().is_none() {
                    // Every look-up was lost: give the sale up and count it as not posted.
                    let _ = seller.call(|wallet, _, _| {
                        wallet.cancel_sale(transfer_id)?;
                        Ok(((), Vec::new()))
                    });
                    outcome = Some(false);
                } else {
                    events.extend(seller.poll(POLL_WAIT).unwrap().events);
                }
            }
        }
        if outcome == Some(true) {
            posted += 1;
            latencies.push(begun.elapsed());
        }
    }
    let elapsed = started.elapsed();
    // Let the last acknowledgements arrive before the counters are read.
    let settle = Instant::now();
    while settle.elapsed() < SETTLE {
        seller.poll(POLL_WAIT).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let buyer_stats = buyer_thread.join().unwrap();
    let link = proxy.map(|handle| handle.join().unwrap());
    latencies.sort();
    Row {
        transfers,
        posted,
        elapsed,
        latencies,
        seller: seller.stats(),
        buyer: buyer_stats,
        link,
    }
}

fn percentile(sorted: &[Duration], per_cent: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * per_cent / 100).min(sorted.len() - 1)]
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let transfers = std::env::var("WALLET_BENCH_TRANSFERS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(if quick { 5 } else { TRANSFERS_DEFAULT });
    println!(
        "two wallets, UDP on loopback, log fsync'd before every promise; {transfers} sequential transfers per row"
    );
    println!(
        "{:<22} {:>9} {:>12} {:>10} {:>10} {:>16} {:>14} {:>13}",
        "link",
        "posted",
        "transfers/s",
        "p50 ms",
        "p99 ms",
        "datagrams/xfer",
        "round trips",
        "fsyncs/xfer"
    );
    let rows: [(&str, Option<u32>); 4] = [
        ("direct", None),
        ("proxy, 0% loss", Some(0)),
        ("proxy, 10% loss", Some(100_000)),
        ("proxy, 30% loss", Some(300_000)),
    ];
    for (seed, (name, loss)) in rows.into_iter().enumerate() {
        let row = run_row(transfers, loss, seed as u64 + 1);
        let per = |count: u64| count as f64 / row.transfers as f64;
        println!(
            "{:<22} {:>5}/{:<3} {:>12.1} {:>10.2} {:>10.2} {:>16.2} {:>14.2} {:>13.2}",
            name,
            row.posted,
            row.transfers,
            row.posted as f64 / row.elapsed.as_secs_f64(),
            percentile(&row.latencies, 50).as_secs_f64() * 1e3,
            percentile(&row.latencies, 99).as_secs_f64() * 1e3,
            per(row.seller.datagrams_sent + row.buyer.datagrams_sent),
            per(row.seller.datagrams_sent),
            per(row.seller.log_appends + row.buyer.log_appends),
        );
        if let Some(link) = row.link {
            println!(
                "{:<22} link: {} submitted, {} dropped, {} delivered",
                "", link.submitted, link.dropped, link.delivered
            );
        }
    }
    println!(
        "datagrams/xfer counts both wallets' sends (retransmissions included); a round trip is a seller datagram (look-up, commit-request, commit) the buyer answers"
    );
}
