//! The reference implementation's regression query (../shared/keynote/openbsd-regress).
// A panic is how a test reports failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use offpay_keynote::cli;
use offpay_keynote::{
    Assertion, ComplianceValues, Session, SignatureCache, Trust, split_assertions,
};

fn regress_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/keynote/openbsd-regress")
}

fn file(name: &str) -> String {
    regress_dir().join(name).to_string_lossy().into_owned()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cli::run(&args, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn reference_query_is_true() {
    let (a1, a2, a3, a4) = (file("auth1"), file("auth2"), file("auth3"), file("auth4"));
    let env = file("test-env");
    let assertions: Vec<String> = (1..=7)
        .map(|i| file(&format!("test-assertion{i}")))
        .collect();
    let mut args = vec![
        "verify",
        "-e",
        &env,
        "-r",
        "false,maybe,probably,true",
        "-k",
        &a1,
        "-k",
        &a2,
        "-k",
        &a3,
        "-k",
        &a4,
    ];
    for a in &assertions {
        args.push("-l");
        args.push(a);
    }
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.lines().next(), Some("Query result = true"), "{out}");
    // test-assertion7 has a blank line before its last clause, which therefore forms a second,
    // malformed assertion: it is reported, and the others still count.
    assert!(
        err.contains("Error for assertion 1 in file <") && err.contains("test-assertion7"),
        "{err}"
    );
    assert!(err.contains("line 24, column 2"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

fn load(name: &str) -> Assertion {
    let bytes = std::fs::read(regress_dir().join(name)).unwrap();
    let chunks = split_assertions(&bytes);
    Assertion::parse_at(chunks[0].text, chunks[0].line_base).unwrap()
}

fn key(name: &str) -> Vec<u8> {
    let bytes = std::fs::read(regress_dir().join(name)).unwrap();
    cli::parse_key_file(&bytes).unwrap()
}

fn regress_session(only: Option<usize>) -> Session {
    let mut session = Session::new();
    let env = std::fs::read(regress_dir().join("test-env")).unwrap();
    cli::parse_environment_file(&env, session.environment_mut()).unwrap();
    for name in ["auth1", "auth2", "auth3", "auth4"] {
        session.add_action_authorizer(&key(name)).unwrap();
    }
    for i in 1..=7 {
        if only.is_none_or(|o| o == i) {
            let assertion = load(&format!("test-assertion{i}"));
            session
                .add_assertion(Arc::new(assertion), Trust::Trusted)
                .unwrap();
        }
    }
    session
}

#[test]
fn each_assertion_contributes_the_documented_value() {
    let values = ComplianceValues::new(["false", "maybe", "probably", "true"]).unwrap();
    let session = regress_session(None);
    let result = session.query(&values, &mut SignatureCache::new()).unwrap();
    assert_eq!(values.name(result.value), b"true");
    let expected = ["true", "false", "true", "false", "false", "false", "true"];
    for (outcome, want) in result.assertions.iter().zip(expected) {
        let got = outcome.value.map(|v| values.name(v).to_vec());
        assert_eq!(
            got.as_deref(),
            Some(want.as_bytes()),
            "test-assertion{}",
            outcome.id.0 + 1
        );
        assert_eq!(outcome.failure, None);
    }
}

#[test]
fn each_assertion_alone_gives_false() {
    let values = ComplianceValues::new(["false", "maybe", "probably", "true"]).unwrap();
    for i in 1..=7 {
        let session = regress_session(Some(i));
        let result = session.query(&values, &mut SignatureCache::new()).unwrap();
        assert_eq!(values.name(result.value), b"false", "test-assertion{i}");
    }
}

#[test]
fn the_dsa_keys_decode_and_compare_decoded() {
    // auth4 is an action authorizer given as a dsa-hex key split over lines.
    let principal = offpay_keynote::Principal::parse(&key("auth4")).unwrap();
    assert_eq!(
        principal.algorithm(),
        Some(offpay_keynote::KeyAlgorithm::Dsa)
    );
    let base64 = principal.to_identifier(offpay_keynote::Encoding::Base64);
    assert_eq!(
        offpay_keynote::Principal::parse(&base64).unwrap(),
        principal
    );
    // test-assertion1's TWOKEY local constant is a dsa-hex key too.
    let a1 = load("test-assertion1");
    let (_, twokey) = &a1.local_constants()[1];
    assert!(
        offpay_keynote::Principal::parse(twokey)
            .unwrap()
            .algorithm()
            .is_some()
    );
}
