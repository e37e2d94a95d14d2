//! `offpay keynote` is wired to the KeyNote tool with the reference's arguments and exit codes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]

use std::path::PathBuf;
use std::process::Command;

fn regress_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/keynote/openbsd-regress")
}

#[test]
fn the_reference_regression_query_is_true_through_the_binary() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_offpay"));
    command.current_dir(regress_dir()).args([
        "keynote",
        "verify",
        "-e",
        "test-env",
        "-r",
        "false,maybe,probably,true",
    ]);
    for key in ["auth1", "auth2", "auth3", "auth4"] {
        command.args(["-k", key]);
    }
    for index in 1..=7 {
        command.args(["-l", &format!("test-assertion{index}")]);
    }
    let output = command.output().expect("run offpay keynote");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "Query result = true");
}

#[test]
fn a_missing_file_is_an_error_with_a_nonzero_exit() {
    let output = Command::new(env!("CARGO_BIN_EXE_offpay"))
        .current_dir(regress_dir())
        .args([
            "keynote",
            "verify",
            "-e",
            "no-such-env",
            "-r",
            "false,true",
            "-l",
            "test-assertion1",
        ])
        .output()
        .expect("run offpay keynote");
    assert!(!output.status.success());
    assert!(!output.stderr.is_empty());
}
