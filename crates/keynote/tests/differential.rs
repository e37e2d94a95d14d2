//! The differential corpus (`fixtures/differential.txt`): each case's result here is the one the
//! corpus records for offpay, and every case where the reference differs says so.
// A panic is how a test reports failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use offpay_keynote::{Assertion, ComplianceValues, Session, SignatureCache, Trust};

const VALUES: [&str; 4] = ["false", "maybe", "probably", "true"];

/// What offpay answers for one case: a compliance value's name, `syntax-error` or `refused`.
fn answer(kind: &str, text: &str, authorizers: &[&str]) -> String {
    let assertion = match kind {
        "cond" => Some(format!(
            "Authorizer: \"POLICY\"\nLicensees: \"A\"\nConditions: {text}\n"
        )),
        "lic" => Some(format!("Authorizer: \"POLICY\"\nLicensees: {text}\n")),
        "auth" => None,
        other => panic!("unknown kind {other}"),
    };
    let mut session = Session::new();
    if let Some(assertion) = assertion {
        match Assertion::parse(assertion.as_bytes()) {
            Ok(parsed) => {
                session
                    .add_assertion(Arc::new(parsed), Trust::Trusted)
                    .unwrap();
            }
            Err(_) => return "syntax-error".into(),
        }
    }
    for authorizer in authorizers {
        if session
            .add_action_authorizer(authorizer.as_bytes())
            .is_err()
        {
            return "refused".into();
        }
    }
    let values = ComplianceValues::new(VALUES).unwrap();
    let result = session.query(&values, &mut SignatureCache::new()).unwrap();
    VALUES[usize::from(result.value)].to_owned()
}

#[test]
fn the_differential_corpus_gives_the_recorded_results() {
    let corpus = include_str!("fixtures/differential.txt");
    let mut cases = 0;
    for line in corpus.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(" | ").collect();
        let [kind, text, authorizers, reference, offpay, note] = fields.as_slice() else {
            panic!("six fields: {line}")
        };
        let authorizers: Vec<&str> = authorizers.split(',').collect();
        assert_eq!(answer(kind, text, &authorizers), *offpay, "{line}");
        // A case where we differ from the reference must say so, and only such a case.
        assert_eq!(note.starts_with("differs"), reference != offpay, "{line}");
        cases += 1;
    }
    assert!(cases >= 20, "{cases}");
}
