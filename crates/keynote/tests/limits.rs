//! Every bound in `limits` holds, and hostile input fails cleanly instead of exhausting memory,
//! time or stack.
// A panic is how a test reports failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use offpay_keynote::limits::{
    ACTION_AUTHORIZERS_MAX, ASSERTION_BYTES_MAX, ATTRIBUTE_BYTES_MAX, COMPLIANCE_VALUES_MAX,
    EVALUATION_WORK_MAX, NESTING_DEPTH_MAX, QUERY_SIGNATURE_WORK_MAX, QUERY_WORK_MAX,
    SESSION_ASSERTIONS_MAX,
};
use offpay_keynote::{
    Assertion, ComplianceValues, Error, Failure, Rule, Session, SignatureCache, Trust,
};

fn policy(conditions: &str) -> String {
    format!("Authorizer: \"POLICY\"\nLicensees: \"A\"\nConditions: {conditions}\n")
}

fn value_of(text: &str, attributes: &[(&str, Vec<u8>)]) -> (u8, Option<Failure>) {
    let assertion = Assertion::parse(text.as_bytes()).unwrap();
    let mut session = Session::new();
    session
        .add_assertion(Arc::new(assertion), Trust::Trusted)
        .unwrap();
    session.add_action_authorizer(b"A").unwrap();
    for (name, value) in attributes {
        session.set_attribute(name.as_bytes(), value).unwrap();
    }
    let values = ComplianceValues::new(["false", "true"]).unwrap();
    let result = session.query(&values, &mut SignatureCache::new()).unwrap();
    (result.value, result.assertions[0].failure.clone())
}

fn nesting_error(text: &str) -> bool {
    matches!(Assertion::parse(text.as_bytes()), Err(Error::Syntax(e)) if e.rule == Rule::Nesting)
}

#[test]
fn assertion_size_is_bounded() {
    let filler = "x".repeat(ASSERTION_BYTES_MAX);
    let text = format!("Authorizer: \"POLICY\"\nComment: {filler}\n");
    assert!(matches!(
        Assertion::parse(text.as_bytes()),
        Err(Error::Limit { .. })
    ));
}

#[test]
fn nesting_depth_is_bounded_exactly() {
    let parens = |n: usize| policy(&format!("{}true{};", "(".repeat(n), ")".repeat(n)));
    assert!(Assertion::parse(parens(NESTING_DEPTH_MAX).as_bytes()).is_ok());
    assert!(nesting_error(&parens(NESTING_DEPTH_MAX + 1)));
    let nots = |n: usize| policy(&format!("{}true;", "!".repeat(n)));
    assert!(Assertion::parse(nots(NESTING_DEPTH_MAX).as_bytes()).is_ok());
    assert!(nesting_error(&nots(NESTING_DEPTH_MAX + 1)));
    let derefs = |n: usize| policy(&format!("{}x == \"\";", "$".repeat(n)));
    assert!(nesting_error(&derefs(NESTING_DEPTH_MAX + 1)));
    let blocks = |n: usize| policy(&format!("{}true;{}", "true -> {".repeat(n), "};".repeat(n)));
    assert!(Assertion::parse(blocks(NESTING_DEPTH_MAX).as_bytes()).is_ok());
    assert!(nesting_error(&blocks(NESTING_DEPTH_MAX + 1)));
    let licensees = |n: usize| {
        format!(
            "Authorizer: \"POLICY\"\nLicensees: {}\"A\"{}\n",
            "(".repeat(n),
            ")".repeat(n)
        )
    };
    assert!(nesting_error(&licensees(NESTING_DEPTH_MAX + 1)));
    // A deep hostile input fails fast, without touching the stack limit.
    assert!(nesting_error(&policy(&format!(
        "{}true;",
        "(".repeat(20_000)
    ))));
}

#[test]
fn long_flat_chains_do_not_recurse() {
    let terms = 5000;
    let and_chain = vec!["true"; terms].join(" && ");
    assert_eq!(value_of(&policy(&format!("{and_chain};")), &[]).0, 1);
    let concat = vec!["\"a\""; terms].join(" . ");
    let expected = "a".repeat(terms);
    let text = policy(&format!("{concat} == \"{expected}\";"));
    assert!(text.len() < ASSERTION_BYTES_MAX);
    assert_eq!(value_of(&text, &[]).0, 1);
    let sum = vec!["1"; terms].join(" + ");
    assert_eq!(value_of(&policy(&format!("{sum} == {terms};")), &[]).0, 1);
    let alternatives = vec!["\"A\""; terms].join(" || ");
    let text = format!("Authorizer: \"POLICY\"\nLicensees: {alternatives}\n");
    assert_eq!(value_of(&text, &[]).0, 1);
}

#[test]
fn work_budget_stops_costly_conditions() {
    let big = vec![b'a'; ATTRIBUTE_BYTES_MAX];
    let test = "x ~= \"(a|b)*c\"";
    let many = vec![test; 50].join(" || ");
    let started = Instant::now();
    let (value, failure) = value_of(&policy(&format!("{many};")), &[("x", big)]);
    assert_eq!(value, 0);
    assert_eq!(failure, Some(Failure::WorkBudget));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn strings_cannot_grow_without_bound() {
    let big = vec![b'a'; ATTRIBUTE_BYTES_MAX];
    let doubling = ["x"; 8].join(" . ");
    let (value, failure) = value_of(
        &policy(&format!("{doubling} == \"\" -> \"false\"; true;")),
        &[("x", big)],
    );
    // The concatenation is a runtime error in its clause; the next clause still counts.
    assert_eq!((value, failure), (1, None));
}

#[test]
fn regular_expressions_are_bounded() {
    let huge = format!("\"{}\"", "a{255}".repeat(40));
    assert_eq!(value_of(&policy(&format!("x ~= {huge};")), &[]).0, 0);
    let groups = format!("\"{}\"", "(".repeat(100) + &")".repeat(100));
    assert_eq!(value_of(&policy(&format!("x ~= {groups};")), &[]).0, 0);
}

#[test]
fn session_and_query_bounds() {
    let assertion = Arc::new(Assertion::parse(b"Authorizer: \"K\"\n").unwrap());
    let mut session = Session::new();
    for _ in 0..SESSION_ASSERTIONS_MAX {
        session
            .add_assertion(assertion.clone(), Trust::Untrusted)
            .unwrap();
    }
    assert!(matches!(
        session.add_assertion(assertion, Trust::Untrusted),
        Err(Error::Limit { .. })
    ));
    for i in 0..ACTION_AUTHORIZERS_MAX {
        session
            .add_action_authorizer(format!("k{i}").as_bytes())
            .unwrap();
    }
    assert!(matches!(
        session.add_action_authorizer(b"one-too-many"),
        Err(Error::Limit { .. })
    ));
    let names: Vec<String> = (0..=COMPLIANCE_VALUES_MAX)
        .map(|i| format!("v{i}"))
        .collect();
    assert!(matches!(
        ComplianceValues::new(&names),
        Err(Error::Limit { .. })
    ));
    assert!(ComplianceValues::new(&names[..COMPLIANCE_VALUES_MAX]).is_ok());
    assert!(matches!(
        ComplianceValues::new(Vec::<String>::new()),
        Err(Error::Usage(_))
    ));
    let mut session = Session::new();
    assert!(matches!(
        session.set_attribute(b"x", &vec![b'a'; ATTRIBUTE_BYTES_MAX + 1]),
        Err(Error::Limit { .. })
    ));
    assert!(matches!(
        session.set_attribute(b"_VALUES", b"x"),
        Err(Error::Usage(_))
    ));
    let values = ComplianceValues::new(["false", "true"]).unwrap();
    assert!(matches!(
        session.query(&values, &mut SignatureCache::new()),
        Err(Error::Usage(_))
    ));
}

/// A query of `count` trusted POLICY assertions with `conditions` each, for authorizer `A`:
/// its value and each assertion's failure.
fn query_many(count: usize, conditions: &str, x: &[u8]) -> (u8, Vec<Option<Failure>>) {
    let mut session = Session::new();
    for i in 0..count {
        let text = format!(
            "Comment: {i}\nAuthorizer: \"POLICY\"\nLicensees: \"A\"\nConditions: {conditions}\n"
        );
        let assertion = Assertion::parse(text.as_bytes()).unwrap();
        session
            .add_assertion(Arc::new(assertion), Trust::Trusted)
            .unwrap();
    }
    session.add_action_authorizer(b"A").unwrap();
    session.set_attribute(b"x", x).unwrap();
    let values = ComplianceValues::new(["false", "true"]).unwrap();
    let result = session.query(&values, &mut SignatureCache::new()).unwrap();
    (
        result.value,
        result.assertions.into_iter().map(|a| a.failure).collect(),
    )
}

#[test]
fn a_query_has_one_work_budget_for_all_its_assertions() {
    // Issue 20: a thousand assertions each just under the per-assertion budget took seconds.
    // Find how many costly tests one assertion affords (just under EVALUATION_WORK_MAX) ...
    let big = vec![b'a'; ATTRIBUTE_BYTES_MAX];
    let costly = |k: usize| format!("{} || true;", vec!["x ~= \"(a|b)*c\""; k].join(" || "));
    let (mut low, mut high) = (1usize, 64usize);
    assert_eq!(
        query_many(1, &costly(high), &big).1[0],
        Some(Failure::WorkBudget)
    );
    while high - low > 1 {
        let middle = (low + high) / 2;
        if query_many(1, &costly(middle), &big).1[0].is_none() {
            low = middle;
        } else {
            high = middle;
        }
    }
    let (value, failures) = query_many(1, &costly(low), &big);
    assert_eq!((value, failures[0].clone()), (1, None));
    // ... so each costs more than half of it (`low` ≥ 2), and eleven cost more than the query's
    // four assertions' worth: the first ones count, the rest find the query's budget spent.
    assert!(low >= 2, "{low}");
    const { assert!(QUERY_WORK_MAX < 11 * EVALUATION_WORK_MAX / 2) };
    let (value, failures) = query_many(11, &costly(low), &big);
    assert_eq!(
        value, 1,
        "the assertions evaluated within the budget still count"
    );
    assert!(failures[0].is_none());
    assert!(
        failures.contains(&Some(Failure::QueryWorkBudget)),
        "{failures:?}"
    );
    assert!(
        !failures.contains(&Some(Failure::WorkBudget)),
        "{failures:?}"
    );
}

/// An RSA key of `bits` bits as KeyNote writes it (`rsa-hex:` DER `SEQUENCE { n, e }`); `n` is
/// not a product of primes, which costs nothing here: its signatures are never good.
fn rsa_identifier(bits: usize, seed: u8) -> String {
    let mut n = vec![0u8];
    n.extend((0..bits / 8).map(|i| seed.wrapping_add(i as u8) | 0x81));
    let mut integers = vec![0x02, 0x82];
    integers.extend_from_slice(&u16::try_from(n.len()).unwrap().to_be_bytes());
    integers.extend_from_slice(&n);
    integers.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
    let mut der = vec![0x30, 0x82];
    der.extend_from_slice(&u16::try_from(integers.len()).unwrap().to_be_bytes());
    der.extend_from_slice(&integers);
    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
    format!("rsa-hex:{hex}")
}

/// POLICY trusts `key`; `count` untrusted assertions by `key` with `conditions` and a signature
/// that does not verify: their failures.
fn untrusted_by(key: &str, count: usize, conditions: &str) -> Vec<Option<Failure>> {
    let mut session = Session::new();
    let policy = format!("Authorizer: \"POLICY\"\nLicensees: \"{key}\"\n");
    session
        .add_assertion(
            Arc::new(Assertion::parse(policy.as_bytes()).unwrap()),
            Trust::Trusted,
        )
        .unwrap();
    for i in 0..count {
        let text = format!(
            "Comment: {i}\nAuthorizer: \"{key}\"\nLicensees: \"A\"\nConditions: {conditions}\nSignature: \"sig-rsa-sha1-hex:00{i:04x}\"\n"
        );
        session
            .add_assertion(
                Arc::new(Assertion::parse(text.as_bytes()).unwrap()),
                Trust::Untrusted,
            )
            .unwrap();
    }
    session.add_action_authorizer(b"A").unwrap();
    let values = ComplianceValues::new(["false", "true"]).unwrap();
    let result = session.query(&values, &mut SignatureCache::new()).unwrap();
    assert_eq!(result.value, 0);
    result
        .assertions
        .into_iter()
        .skip(1)
        .map(|a| a.failure)
        .collect()
}

#[test]
fn a_query_bounds_its_signature_work() {
    // 4096-bit RSA: 16 units each, so 256 verifications per query; the rest are not attempted.
    let key = rsa_identifier(4096, 1);
    let units = offpay_keynote::signature_work_units(
        &offpay_keynote::Principal::parse(key.as_bytes()).unwrap(),
    );
    assert_eq!(units, 16);
    let failures = untrusted_by(&key, 300, "true;");
    let verified = failures
        .iter()
        .filter(|f| matches!(f, Some(Failure::Signature(_))))
        .count();
    let skipped = failures
        .iter()
        .filter(|f| **f == Some(Failure::SignatureBudget))
        .count();
    assert_eq!(
        verified,
        usize::try_from(QUERY_SIGNATURE_WORK_MAX / units).unwrap()
    );
    assert_eq!(skipped, 300 - verified);
}

#[test]
fn untrusted_signatures_are_checked_only_when_their_conditions_hold() {
    // Conditions that give `_MIN_TRUST` make the assertion worthless whatever its signature,
    // so no verification is spent on it: no signature failures, no budget spent.
    let key = rsa_identifier(4096, 2);
    let failures = untrusted_by(&key, 300, "app == \"other\";");
    assert!(failures.iter().all(Option::is_none), "{failures:?}");
}

#[test]
fn verify_reports_a_spent_budget_as_such_not_as_a_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let many = vec!["x ~= \"(a|b)*c\""; 64].join(" || ");
    let policy_file = dir.path().join("policy");
    std::fs::write(&policy_file, policy(&format!("{many};"))).unwrap();
    let big = "a".repeat(ATTRIBUTE_BYTES_MAX - 16);
    let env_file = dir.path().join("env");
    std::fs::write(&env_file, format!("x = \"{big}\"\n")).unwrap();
    let key_file = dir.path().join("authorizer");
    std::fs::write(&key_file, "\"A\"\n").unwrap();
    let args: Vec<String> = [
        "verify",
        "-e",
        env_file.to_str().unwrap(),
        "-r",
        "false,true",
        "-k",
        key_file.to_str().unwrap(),
        "-l",
        policy_file.to_str().unwrap(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = offpay_keynote::cli::run(&args, &mut out, &mut err);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert!(out.starts_with("Query result = false"), "{out}");
    assert!(
        out.contains("Failed assertion 0 due to running out of its work budget."),
        "{out}"
    );
    assert!(!out.contains("syntax"), "{out}");
}
