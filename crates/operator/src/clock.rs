//! Time as an input. Rules never read the wall clock: they are handed `now`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use offpay_ledger::Timestamp;

/// Where the operator's time comes from (milliseconds since the Unix epoch, UTC).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The time now.
    fn now(&self) -> Timestamp;

    /// The time now in whole seconds.
    fn now_seconds(&self) -> u64 {
        self.now().0 / 1000
    }
}

/// The machine's wall clock. The server constructs it once, at start-up.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis())
            .unwrap_or(0);
        Timestamp(u64::try_from(millis).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to: tests and the simulator.
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicU64,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            millis: AtomicU64::new(start.0),
        }
    }

    /// Sets the time (it may go backwards: device clocks do).
    pub fn set(&self, to: Timestamp) {
        self.millis.store(to.0, Ordering::SeqCst);
    }

    /// Moves the time forward by `millis`.
    pub fn advance_ms(&self, millis: u64) {
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.millis.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp(1_700_000_000_000));
        assert_eq!(clock.now(), Timestamp(1_700_000_000_000));
        assert_eq!(clock.now_seconds(), 1_700_000_000);
        clock.advance_ms(1_500);
        assert_eq!(clock.now(), Timestamp(1_700_000_001_500));
        clock.set(Timestamp(5));
        assert_eq!(clock.now(), Timestamp(5));
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now().0 > 1_577_836_800_000);
    }
}
