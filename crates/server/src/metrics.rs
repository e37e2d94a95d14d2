//! Counters in the Prometheus text exposition format, served at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP requests answered.
    pub http_requests: AtomicU64,
    /// Requests refused for a missing or wrong token.
    pub http_unauthorized: AtomicU64,
    /// Batches committed.
    pub batches_committed: AtomicU64,
    /// Batches refused.
    pub batches_refused: AtomicU64,
    /// Transfers newly committed.
    pub transfers_committed: AtomicU64,
    /// Microcheck deposits decided and queued while earlier ones committed.
    pub microcheck_deposits_pipelined: AtomicU64,
    /// Microcheck deposits posted with the CSC lock held until they committed.
    pub microcheck_deposits_locked: AtomicU64,
}

impl Metrics {
    /// Adds `amount` to `counter`.
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, backend: &str) -> String {
        let mut text = String::new();
        let counters = [
            (
                "offpay_http_requests_total",
                "HTTP requests answered.",
                &self.http_requests,
            ),
            (
                "offpay_http_unauthorized_total",
                "Requests refused for a missing or wrong token.",
                &self.http_unauthorized,
            ),
            (
                "offpay_ledger_batches_committed_total",
                "Ledger batches committed.",
                &self.batches_committed,
            ),
            (
                "offpay_ledger_batches_refused_total",
                "Ledger batches refused.",
                &self.batches_refused,
            ),
            (
                "offpay_ledger_transfers_committed_total",
                "Transfers newly committed.",
                &self.transfers_committed,
            ),
            (
                "offpay_microcheck_deposits_pipelined_total",
                "Microcheck deposits decided and queued while earlier ones committed.",
                &self.microcheck_deposits_pipelined,
            ),
            (
                "offpay_microcheck_deposits_locked_total",
                "Microcheck deposits posted with the CSC lock held until they committed (a snapshot too old, a batch the ledger refused, nothing cleared, or more than one batch).",
                &self.microcheck_deposits_locked,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            text,
            "# HELP offpay_info Build and backend.\n# TYPE offpay_info gauge\noffpay_info{{version=\"{}\",backend=\"{backend}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        text
    }
}
