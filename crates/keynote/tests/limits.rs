//! Every bound in `limits` holds, and hostile input fails cleanly instead of exhausting memory,
//! time or stack.
// A panic is how a test reports failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use offpay_keynote::limits::{
    ACTION_AUTHORIZERS_MAX, ASSERTION_BYTES_MAX, ATTRIBUTE_BYTES_MAX, COMPLIANCE_VALUES_MAX,
    NESTING_DEPTH_MAX, SESSION_ASSERTIONS_MAX,
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
