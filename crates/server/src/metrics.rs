//! Prometheus metrics in the text exposition format (version 0.0.4), served at `/metrics`.
//!
//! Each series is fed where its work happens: HTTP requests by the router's middleware (every
//! route, every status, the route's template as its label, never the raw path), the ledger's
//! figures by its writer thread (every group commit, whichever rail queued it), fraud flags as
//! the writer commits them, syncs and deposits by the rail code every such request goes through.
//! Gauges that describe stored state (the SMS outbox) are read from the ledger at scrape time.
//!
//! Label sets are bounded: a family keeps at most [`SERIES_PER_FAMILY_MAX`] series and counts
//! anything beyond under `other`, so no input can grow the exposition without limit.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most series one labelled family keeps; further label sets are counted under `other`.
pub const SERIES_PER_FAMILY_MAX: usize = 512;

/// Upper bounds (seconds) of the latency buckets: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the group-size buckets (batches in one group commit).
pub const GROUP_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Nanoseconds in a second: latencies are summed in nanoseconds and shown in seconds.
const NANOSECONDS_PER_SECOND: f64 = 1e9;

/// A histogram with fixed buckets. Observations are integers in `unit` (nanoseconds for
/// latencies, counts for sizes); the exposition shows them multiplied by `scale`.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    scale: f64,
    /// Per bucket (not cumulative), the last one for `+Inf`.
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// A histogram of latencies observed in nanoseconds, shown in seconds.
    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_BUCKETS_SECONDS, 1.0 / NANOSECONDS_PER_SECOND)
    }

    /// A histogram of group sizes (counts).
    pub fn group_size() -> Histogram {
        Histogram::new(GROUP_SIZE_BUCKETS, 1.0)
    }

    fn new(bounds: &'static [f64], scale: f64) -> Histogram {
        Histogram {
            bounds,
            scale,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation of `value` units.
    pub fn observe(&self, value: u64) {
        let shown = value as f64 * self.scale;
        let index = self
            .bounds
            .iter()
            .position(|bound| shown <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a duration.
    pub fn observe_duration(&self, duration: std::time::Duration) {
        self.observe(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, text: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0u64;
        let separator = if labels.is_empty() { "" } else { "," };
        for (index, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let bound = match self.bounds.get(index) {
                Some(bound) => format_number(*bound),
                None => "+Inf".to_owned(),
            };
            let _ = writeln!(
                text,
                "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum.load(Ordering::Relaxed) as f64 * self.scale;
        let _ = writeln!(text, "{name}_sum{braces} {}", format_number(sum));
        let _ = writeln!(
            text,
            "{name}_count{braces} {}",
            self.count.load(Ordering::Relaxed)
        );
    }
}

fn format_number(value: f64) -> String {
    // Rust prints an f64 with the shortest text that reads back the same, which Prometheus
    // parses; integers keep a plain form ("1", not "1.0", is fine either way).
    format!("{value}")
}

/// A label value as the exposition format wants it: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// `name="value",...` with the values escaped.
fn label_text(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Counters keyed by a label set.
#[derive(Debug, Default)]
pub struct CounterFamily {
    series: Mutex<BTreeMap<String, u64>>,
}

impl CounterFamily {
    /// Adds `amount` to the series with `labels`.
    pub fn add(&self, labels: &[(&str, &str)], amount: u64) {
        let key = label_text(labels);
        if let Ok(mut series) = self.series.lock() {
            let key = if series.len() >= SERIES_PER_FAMILY_MAX && !series.contains_key(&key) {
                label_text(
                    &labels
                        .iter()
                        .map(|(name, _)| (*name, "other"))
                        .collect::<Vec<_>>(),
                )
            } else {
                key
            };
            *series.entry(key).or_insert(0) += amount;
        }
    }

    /// The value of the series with `labels` (0 when it has none).
    pub fn get(&self, labels: &[(&str, &str)]) -> u64 {
        let key = label_text(labels);
        self.series
            .lock()
            .map(|series| series.get(&key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn render(&self, text: &mut String, name: &str, help: &str) {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
        if let Ok(series) = self.series.lock() {
            for (labels, value) in series.iter() {
                let _ = writeln!(text, "{name}{{{labels}}} {value}");
            }
        }
    }
}

/// Histograms keyed by a label set.
#[derive(Debug)]
pub struct HistogramFamily {
    make: fn() -> Histogram,
    series: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
}

impl HistogramFamily {
    /// A family of latency histograms.
    pub fn latency() -> HistogramFamily {
        HistogramFamily {
            make: Histogram::latency,
            series: Mutex::default(),
        }
    }

    /// The histogram with `labels`.
    pub fn with(&self, labels: &[(&str, &str)]) -> std::sync::Arc<Histogram> {
        let key = label_text(labels);
        let Ok(mut series) = self.series.lock() else {
            return std::sync::Arc::new((self.make)());
        };
        let key = if series.len() >= SERIES_PER_FAMILY_MAX && !series.contains_key(&key) {
            label_text(
                &labels
                    .iter()
                    .map(|(name, _)| (*name, "other"))
                    .collect::<Vec<_>>(),
            )
        } else {
            key
        };
        series
            .entry(key)
            .or_insert_with(|| std::sync::Arc::new((self.make)()))
            .clone()
    }

    fn render(&self, text: &mut String, name: &str, help: &str) {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} histogram");
        if let Ok(series) = self.series.lock() {
            for (labels, histogram) in series.iter() {
                histogram.render(text, name, labels);
            }
        }
    }
}

/// What the ledger's writer thread measures, per group commit.
#[derive(Debug)]
pub struct LedgerMetrics {
    /// Batches per group commit.
    pub group_batches: Histogram,
    /// Time one group commit took in the store (decide, write, flush).
    pub commit_seconds: Histogram,
    /// Group commits by outcome (`committed`, `failed`).
    pub groups: CounterFamily,
    /// Batches by outcome (`committed`, `refused`, `failed`).
    pub batches: CounterFamily,
    /// Transfers newly applied (not those answered as existing).
    pub transfers_committed: AtomicU64,
    /// Fraud flags committed, by rail and kind (new flags only, not their later updates).
    pub fraud_flags: CounterFamily,
    /// Group commits decided on rows the store already knew, in one round trip (PostgreSQL;
    /// see `offpay-ledger-postgres`'s `known.rs`). Copied from the store after each group.
    pub known_groups: AtomicU64,
    /// Writes of such groups that met rows changed meanwhile, and were decided again.
    pub known_stale: AtomicU64,
}

impl Default for LedgerMetrics {
    fn default() -> LedgerMetrics {
        LedgerMetrics {
            group_batches: Histogram::group_size(),
            commit_seconds: Histogram::latency(),
            groups: CounterFamily::default(),
            batches: CounterFamily::default(),
            transfers_committed: AtomicU64::new(0),
            fraud_flags: CounterFamily::default(),
            known_groups: AtomicU64::new(0),
            known_stale: AtomicU64::new(0),
        }
    }
}

/// Process-wide metrics the router and the rails feed.
#[derive(Debug)]
pub struct Metrics {
    /// HTTP requests answered, by route template, method and status.
    pub http_requests: CounterFamily,
    /// Time to answer, by route template.
    pub http_latency: HistogramFamily,
    /// Requests refused for a missing or wrong token.
    pub http_unauthorized: AtomicU64,
    /// Device syncs by rail and outcome (`ok`, `refused`, `failed`).
    pub syncs: CounterFamily,
    /// Deposits by rail and outcome.
    pub deposits: CounterFamily,
    /// Microcheck deposits decided and queued while earlier ones committed.
    pub microcheck_deposits_pipelined: AtomicU64,
    /// Microcheck deposits posted with the CSC lock held until they committed.
    pub microcheck_deposits_locked: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            http_requests: CounterFamily::default(),
            http_latency: HistogramFamily::latency(),
            http_unauthorized: AtomicU64::new(0),
            syncs: CounterFamily::default(),
            deposits: CounterFamily::default(),
            microcheck_deposits_pipelined: AtomicU64::new(0),
            microcheck_deposits_locked: AtomicU64::new(0),
        }
    }
}

/// The outcome label of a rail request: `ok`, `refused` (the client's fault: 4xx) or `failed`.
pub fn outcome_of(status: axum::http::StatusCode) -> &'static str {
    if status.is_success() {
        "ok"
    } else if status.is_client_error() {
        "refused"
    } else {
        "failed"
    }
}

/// Figures read at scrape time, outside [`Metrics`].
#[derive(Debug, Default)]
pub struct Gauges {
    /// The backend's name.
    pub backend: &'static str,
    /// Requests waiting for the ledger writer.
    pub writer_queue_depth: u64,
    /// Whether the writer thread is running.
    pub writer_alive: bool,
    /// Outbound SMS waiting to be sent (`None` when the ledger could not be read).
    pub sms_outbox: Option<u64>,
    /// Outbound SMS given up on.
    pub sms_dead_letters: Option<u64>,
    /// The SMS rail's own counters: inbound, duplicates, reruns, sent, send failures.
    pub sms_counters: [(&'static str, &'static str, u64); 5],
}

impl Metrics {
    /// Adds `amount` to `counter`.
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Counts a device sync of `rail` that answered `status`.
    pub fn sync(&self, rail: &str, status: axum::http::StatusCode) {
        self.syncs
            .add(&[("rail", rail), ("outcome", outcome_of(status))], 1);
    }

    /// The exposition text.
    pub fn render(&self, ledger: &LedgerMetrics, gauges: &Gauges) -> String {
        let mut text = String::new();
        self.http_requests.render(
            &mut text,
            "offpay_http_requests_total",
            "HTTP requests answered, by route template, method and status.",
        );
        self.http_latency.render(
            &mut text,
            "offpay_http_request_duration_seconds",
            "Time from receiving a request to its response head, by route template.",
        );
        counter(
            &mut text,
            "offpay_http_unauthorized_total",
            "Requests refused for a missing or wrong token.",
            self.http_unauthorized.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            text,
            "# HELP offpay_ledger_group_batches Batches per ledger group commit.\n# TYPE offpay_ledger_group_batches histogram"
        );
        ledger
            .group_batches
            .render(&mut text, "offpay_ledger_group_batches", "");
        let _ = writeln!(
            text,
            "# HELP offpay_ledger_commit_duration_seconds Time one group commit took in the store.\n# TYPE offpay_ledger_commit_duration_seconds histogram"
        );
        ledger
            .commit_seconds
            .render(&mut text, "offpay_ledger_commit_duration_seconds", "");
        ledger.groups.render(
            &mut text,
            "offpay_ledger_groups_total",
            "Group commits by outcome.",
        );
        ledger.batches.render(
            &mut text,
            "offpay_ledger_batches_total",
            "Ledger batches by outcome (committed, refused by the rules, failed with the store).",
        );
        counter(
            &mut text,
            "offpay_ledger_transfers_committed_total",
            "Transfers newly committed.",
            ledger.transfers_committed.load(Ordering::Relaxed),
        );
        counter(
            &mut text,
            "offpay_ledger_known_groups_total",
            "Group commits decided on rows the store already knew, in one round trip (PostgreSQL).",
            ledger.known_groups.load(Ordering::Relaxed),
        );
        counter(
            &mut text,
            "offpay_ledger_known_stale_total",
            "Of those, writes that met rows changed meanwhile (by another process or by hand): rolled back and decided again on loaded rows.",
            ledger.known_stale.load(Ordering::Relaxed),
        );
        gauge(
            &mut text,
            "offpay_ledger_writer_queue_depth",
            "Requests waiting for the ledger writer thread.",
            gauges.writer_queue_depth,
        );
        gauge(
            &mut text,
            "offpay_ledger_writer_up",
            "1 while the ledger writer thread runs.",
            u64::from(gauges.writer_alive),
        );
        ledger.fraud_flags.render(
            &mut text,
            "offpay_fraud_flags_total",
            "Fraud flags raised, by rail and kind.",
        );
        self.syncs.render(
            &mut text,
            "offpay_syncs_total",
            "Device syncs by rail and outcome.",
        );
        self.deposits.render(
            &mut text,
            "offpay_deposits_total",
            "Deposits by rail and outcome.",
        );
        counter(
            &mut text,
            "offpay_microcheck_deposits_pipelined_total",
            "Microcheck deposits decided and queued while earlier ones committed.",
            self.microcheck_deposits_pipelined.load(Ordering::Relaxed),
        );
        counter(
            &mut text,
            "offpay_microcheck_deposits_locked_total",
            "Microcheck deposits posted with the CSC lock held until they committed (a snapshot too old, a batch the ledger refused, nothing cleared, or more than one batch).",
            self.microcheck_deposits_locked.load(Ordering::Relaxed),
        );
        if let Some(depth) = gauges.sms_outbox {
            gauge(
                &mut text,
                "offpay_sms_outbox_depth",
                "Outbound SMS waiting to be sent.",
                depth,
            );
        }
        if let Some(dead) = gauges.sms_dead_letters {
            gauge(
                &mut text,
                "offpay_sms_dead_letters",
                "Outbound SMS given up on after every attempt, kept for the operator.",
                dead,
            );
        }
        for (name, help, value) in gauges.sms_counters {
            counter(&mut text, name, help, value);
        }
        let _ = writeln!(
            text,
            "# HELP offpay_info Build and backend.\n# TYPE offpay_info gauge\noffpay_info{{version=\"{}\",backend=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            escape_label(gauges.backend)
        );
        text
    }
}

fn counter(text: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        text,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(text: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        text,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_cumulatively_and_sums_in_its_unit() {
        let histogram = Histogram::latency();
        histogram.observe_duration(std::time::Duration::from_micros(300));
        histogram.observe_duration(std::time::Duration::from_millis(3));
        histogram.observe_duration(std::time::Duration::from_secs(60));
        let mut text = String::new();
        histogram.render(&mut text, "x", "route=\"/a\"");
        assert!(
            text.contains("x_bucket{route=\"/a\",le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_bucket{route=\"/a\",le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_bucket{route=\"/a\",le=\"10\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_bucket{route=\"/a\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        let sum: f64 = text
            .lines()
            .find_map(|line| line.strip_prefix("x_sum{route=\"/a\"} "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 60.0033).abs() < 1e-9, "{text}");
        assert!(text.contains("x_count{route=\"/a\"} 3\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped_and_families_are_bounded() {
        let family = CounterFamily::default();
        family.add(&[("kind", "a\"b\\c\nd")], 2);
        let mut text = String::new();
        family.render(&mut text, "f_total", "help");
        assert!(
            text.contains("f_total{kind=\"a\\\"b\\\\c\\nd\"} 2\n"),
            "{text}"
        );
        for index in 0..SERIES_PER_FAMILY_MAX + 10 {
            family.add(&[("kind", &index.to_string())], 1);
        }
        assert_eq!(family.get(&[("kind", "other")]), 11);
        assert!(family.series.lock().unwrap().len() <= SERIES_PER_FAMILY_MAX + 1);
    }
}
