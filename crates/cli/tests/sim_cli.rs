//! `offpay sim` end to end: a seed range runs and summarises, the same seeds give the same trace
//! hashes in another process, one seed prints its events, a bad argument is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn offpay(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_offpay"))
        .args(args)
        .output()
        .expect("offpay runs")
}

#[test]
fn seeds_run_summarise_and_replay_byte_for_byte() {
    let first = offpay(&["sim", "--seeds", "3", "--start", "40", "--json"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(summary["seeds"], 3);
    assert_eq!(summary["rails"], "all");
    assert!(summary["invariants"].as_u64().unwrap() > 1000, "{summary}");
    assert!(summary["attacks"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["faults"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["failures"], serde_json::json!([]));
    let again = offpay(&["sim", "--seeds", "3", "--start", "40", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["traces"], again["traces"]);
    assert_eq!(summary["traces"].as_object().unwrap().len(), 3);

    let words = offpay(&["sim", "--seeds", "2", "--rails", "purse,wallet"]);
    let text = String::from_utf8_lossy(&words.stdout);
    assert!(words.status.success(), "{text}");
    assert!(text.contains("Simulated 2 seeds from seed 0"), "{text}");
    assert!(text.contains("rails: purse,wallet"), "{text}");
    assert!(text.contains("invariants checked:"), "{text}");
}

#[test]
fn one_seed_prints_its_events_and_a_bad_rail_is_refused() {
    let one = offpay(&["sim", "--seed", "5", "--steps", "10", "--rails", "sms"]);
    let text = String::from_utf8_lossy(&one.stdout);
    assert!(one.status.success(), "{text}");
    assert!(
        text.contains("seed 5:") && text.contains("sms gw-"),
        "{text}"
    );
    let bad = offpay(&["sim", "--rails", "cash"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown rail \"cash\""));
}
