//! The human-readable summary, in the manner of pgbench's.

use std::fmt::Write as _;

use crate::BenchReport;

/// A short summary table of `report` for a terminal, ending with a newline.
pub fn render_text(report: &BenchReport) -> String {
    let mut text = String::new();
    let distribution = match report.zipf_theta {
        Some(theta) => format!("{} (θ {theta})", report.distribution),
        None => report.distribution.to_string(),
    };
    let hot = if report.hot_account_percent == 0 {
        "none".to_owned()
    } else {
        format!("{} % of transfers", report.hot_account_percent)
    };
    let lines: [(&str, String); 12] = [
        ("backend", report.backend.clone()),
        ("run", format!("{} (seed {})", report.run_id, report.seed)),
        ("accounts", grouped(report.accounts)),
        ("distribution", distribution),
        ("hot account", hot),
        (
            "batched",
            format!(
                "{} transfers in {} batches of {} ({:.2} s)",
                grouped(report.transfers),
                grouped(report.batches),
                grouped(report.batch_size as u64),
                report.batched_seconds
            ),
        ),
        (
            "  rate",
            format!(
                "{} transfers/s",
                grouped(report.transfers_per_second as u64)
            ),
        ),
        (
            "  batch latency",
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                report.p50_batch_ms, report.p99_batch_ms, report.max_batch_ms
            ),
        ),
        (
            "baseline",
            format!(
                "{} transfers, one per database transaction ({:.2} s)",
                grouped(report.baseline_transfers),
                report.baseline_seconds
            ),
        ),
        (
            "  rate",
            format!(
                "{} transfers/s",
                grouped(report.baseline_transfers_per_second as u64)
            ),
        ),
        ("speedup", format!("{:.0}×", report.speedup)),
        (
            "verified",
            format!(
                "balances sum to zero; {} transfers stored as submitted ({:.1} s total)",
                grouped(report.transfers_verified),
                report.elapsed_seconds
            ),
        ),
    ];
    let width = lines
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0);
    for (label, value) in lines {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{label:<width$}  {value}");
    }
    text
}

/// `1234567` → `1,234,567`.
fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Distribution;

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn renders_rates_latencies_and_speedup() {
        let report = BenchReport {
            backend: "sqlite".to_owned(),
            run_id: "abc".to_owned(),
            seed: 42,
            accounts: 10_000,
            distribution: Distribution::Zipfian,
            zipf_theta: Some(0.99),
            hot_account_percent: 0,
            transfers: 500_000,
            batch_size: 8190,
            batches: 62,
            transfers_per_second: 123_456.7,
            p50_batch_ms: 60.04,
            p99_batch_ms: 80.26,
            max_batch_ms: 81.0,
            baseline_transfers: 2000,
            baseline_transfers_per_second: 275.2,
            speedup: 448.6,
            transfers_verified: 512_001,
            conservation_verified: true,
            setup_seconds: 0.5,
            batched_seconds: 4.05,
            baseline_seconds: 7.27,
            verify_seconds: 1.0,
            elapsed_seconds: 12.8,
        };
        let text = render_text(&report);
        for expected in [
            "backend          sqlite",
            "zipfian (θ 0.99)",
            "500,000 transfers in 62 batches of 8,190",
            "123,456 transfers/s",
            "p50 60.0 ms, p99 80.3 ms, max 81.0 ms",
            "275 transfers/s",
            "speedup          449×",
            "512,001 transfers stored",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
    }
}
