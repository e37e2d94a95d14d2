//! A faulty link for tests and benchmarks: drops, duplicates, reorders and delays datagrams at
//! given rates, from one seed. [`FaultyLink`] decides (no I/O, time passed in);
//! [`run_proxy`] is the thin UDP loop behind `offpay wallet netem`.
//!
//! The proxy stands between two wallets: it listens on one address and forwards to another. A
//! datagram from the forward address goes back to whoever last sent from elsewhere, so one proxy
//! carries both directions of a conversation between two wallets.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::ids::Millis;
use crate::wire::DATAGRAM_BYTES_MAX;

/// Rates are in parts per million.
pub const PARTS_PER_MILLION: u32 = 1_000_000;
/// Most datagrams held in flight; more are dropped (a full queue on a real link).
pub const QUEUE_DATAGRAMS_MAX: usize = 4096;
/// Longest delay accepted.
pub const DELAY_MS_MAX: u64 = 10_000;
/// Extra hold of a reordered datagram beyond the base delay, so later ones overtake it.
pub const REORDER_HOLD_MS: u64 = 15;
/// Longest the proxy sleeps before looking at its stop flag.
pub const PROXY_WAIT_MAX: Duration = Duration::from_millis(50);

/// What the link does to datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Chance a datagram is lost.
    pub loss_ppm: u32,
    /// Chance a delivered datagram is delivered twice.
    pub duplicate_ppm: u32,
    /// Chance a delivered datagram is held back so that later ones overtake it.
    pub reorder_ppm: u32,
    /// Base one-way delay.
    pub delay_ms: u64,
}

impl Faults {
    /// Converts a probability given as a decimal such as `0.3` or `30%` into parts per million.
    pub fn parse_rate(text: &str) -> Result<u32, String> {
        let (number, scale) = match text.strip_suffix('%') {
            Some(percent) => (percent, 10_000u64),
            None => (text, 1_000_000u64),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || fraction.len() > 6
        {
            return Err(format!("{text:?} is not a rate such as 0.3 or 30%"));
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| format!("{text:?} is too large"))?
        };
        let mut fraction_ppm: u64 = 0;
        let mut digit_scale = scale / 10;
        for digit in fraction.bytes() {
            fraction_ppm += u64::from(digit - b'0') * digit_scale;
            digit_scale /= 10;
        }
        let ppm = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(fraction_ppm))
            .filter(|ppm| *ppm <= u64::from(PARTS_PER_MILLION))
            .ok_or_else(|| format!("{text:?} is more than 1 (100%)"))?;
        Ok(ppm as u32)
    }

    fn check(&self) -> Result<(), String> {
        if self.delay_ms > DELAY_MS_MAX {
            return Err(format!("a delay above {DELAY_MS_MAX} ms"));
        }
        for rate in [self.loss_ppm, self.duplicate_ppm, self.reorder_ppm] {
            if rate > PARTS_PER_MILLION {
                return Err("a rate above 100%".into());
            }
        }
        Ok(())
    }
}

/// What the link did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams submitted.
    pub submitted: u64,
    /// Datagrams delivered (duplicates count).
    pub delivered: u64,
    /// Datagrams lost on purpose.
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Datagrams held back to be overtaken.
    pub reordered: u64,
    /// Datagrams dropped because the queue was full.
    pub overflowed: u64,
}

/// A datagram in flight: when it falls due, the order it was queued in, where it goes, the bytes.
type InFlight = Reverse<(Millis, u64, SocketAddr, Vec<u8>)>;

/// A seeded, time-driven faulty link carrying datagrams to addresses.
#[derive(Debug)]
pub struct FaultyLink {
    faults: Faults,
    rng: u64,
    order: u64,
    queue: BinaryHeap<InFlight>,
    stats: LinkStats,
}

impl FaultyLink {
    /// A link with these faults, deterministic for a given seed.
    pub fn new(faults: Faults, seed: u64) -> Result<FaultyLink, String> {
        faults.check()?;
        Ok(FaultyLink {
            faults,
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
            order: 0,
            queue: BinaryHeap::new(),
            stats: LinkStats::default(),
        })
    }

    /// SplitMix64: small, seedable, good enough to pick faults.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && (self.next() % u64::from(PARTS_PER_MILLION)) < u64::from(ppm)
    }

    fn enqueue(&mut self, at: Millis, to: SocketAddr, datagram: Vec<u8>) {
        if self.queue.len() >= QUEUE_DATAGRAMS_MAX {
            self.stats.overflowed += 1;
            return;
        }
        self.order += 1;
        self.queue.push(Reverse((at, self.order, to, datagram)));
    }

    fn delay(&mut self) -> u64 {
        let mut delay = self.faults.delay_ms;
        if self.chance(self.faults.reorder_ppm) {
            self.stats.reordered += 1;
            delay += REORDER_HOLD_MS.max(2 * self.faults.delay_ms);
        }
        delay
    }

    /// Submits a datagram for `to` at `now`: it is lost, or queued (maybe twice).
    pub fn submit(&mut self, now: Millis, to: SocketAddr, datagram: Vec<u8>) {
        self.stats.submitted += 1;
        if self.chance(self.faults.loss_ppm) {
            self.stats.dropped += 1;
            return;
        }
        if self.chance(self.faults.duplicate_ppm) {
            self.stats.duplicated += 1;
            let delay = self.delay();
            self.enqueue(now + delay, to, datagram.clone());
        }
        let delay = self.delay();
        self.enqueue(now + delay, to, datagram);
    }

    /// When the next datagram falls due.
    pub fn next_due(&self) -> Option<Millis> {
        self.queue.peek().map(|Reverse((at, ..))| *at)
    }

    /// Takes every datagram due at `now`, in delivery order.
    pub fn due(&mut self, now: Millis) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while self.next_due().is_some_and(|at| at <= now) {
            if let Some(Reverse((_, _, to, datagram))) = self.queue.pop() {
                self.stats.delivered += 1;
                out.push((to, datagram));
            }
        }
        out
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }
}

/// Runs the proxy on `socket` until `stop` is set: datagrams from anyone but `forward` go to
/// `forward`; datagrams from `forward` go back to the last other sender. Returns the counters.
pub fn run_proxy(
    socket: &UdpSocket,
    forward: SocketAddr,
    mut link: FaultyLink,
    stop: &AtomicBool,
) -> io::Result<LinkStats> {
    let mut client: Option<SocketAddr> = None;
    let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX + 1];
    while !stop.load(Ordering::Relaxed) {
        let now = crate::driver::now_ms();
        for (to, datagram) in link.due(now) {
            // Best effort, like the link it imitates.
            let _ = socket.send_to(&datagram, to);
        }
        let wait = match link.next_due() {
            Some(at) => Duration::from_millis(at.saturating_sub(crate::driver::now_ms())),
            None => PROXY_WAIT_MAX,
        }
        .clamp(crate::driver::WAIT_MIN, PROXY_WAIT_MAX);
        socket.set_read_timeout(Some(wait))?;
        let (length, from) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(_) => continue,
        };
        let to = if from == forward {
            match client {
                Some(client) => client,
                None => continue,
            }
        } else {
            client = Some(from);
            forward
        };
        link.submit(crate::driver::now_ms(), to, buffer[..length].to_vec());
    }
    Ok(link.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn parses_rates_as_parts_per_million() {
        assert_eq!(Faults::parse_rate("0.3"), Ok(300_000));
        assert_eq!(Faults::parse_rate("30%"), Ok(300_000));
        assert_eq!(Faults::parse_rate("1"), Ok(1_000_000));
        assert_eq!(Faults::parse_rate("0"), Ok(0));
        assert_eq!(Faults::parse_rate(".05"), Ok(50_000));
        assert!(Faults::parse_rate("1.5").is_err());
        assert!(Faults::parse_rate("-0.1").is_err());
        assert!(Faults::parse_rate("abc").is_err());
    }

    #[test]
    fn a_clean_link_delivers_everything_in_order_after_the_delay() {
        let faults = Faults {
            delay_ms: 5,
            ..Faults::default()
        };
        let mut link = FaultyLink::new(faults, 1).unwrap();
        for n in 0..10u8 {
            link.submit(100, address(1), vec![n]);
        }
        assert!(link.due(104).is_empty());
        let delivered: Vec<u8> = link.due(105).into_iter().map(|(_, d)| d[0]).collect();
        assert_eq!(delivered, (0..10).collect::<Vec<u8>>());
    }

    #[test]
    fn faults_happen_at_about_their_rates_and_replay_from_the_seed() {
        let faults = Faults {
            loss_ppm: 300_000,
            duplicate_ppm: 100_000,
            reorder_ppm: 100_000,
            delay_ms: 1,
        };
        let run = |seed| {
            let mut link = FaultyLink::new(faults, seed).unwrap();
            let mut delivered = Vec::new();
            for n in 0..10_000u32 {
                link.submit(u64::from(n), address(1), n.to_be_bytes().to_vec());
                delivered.extend(link.due(u64::from(n)));
            }
            delivered.extend(link.due(u64::MAX));
            (link.stats(), delivered)
        };
        let (stats, delivered) = run(7);
        assert!((2_700..3_300).contains(&stats.dropped), "{stats:?}");
        assert!((500..900).contains(&stats.duplicated), "{stats:?}");
        assert!(stats.reordered > 500, "{stats:?}");
        assert_eq!(stats.overflowed, 0);
        assert_eq!(
            stats.delivered,
            stats.submitted - stats.dropped + stats.duplicated
        );
        let out_of_order = delivered
            .windows(2)
            .filter(|pair| pair[0].1 > pair[1].1)
            .count();
        assert!(out_of_order > 100, "reordering shows in delivery order");
        assert_eq!(run(7), (stats, delivered), "same seed, same faults");
    }
}
