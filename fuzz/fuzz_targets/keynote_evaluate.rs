//! Conditions and Licensees text from the fuzzer, attribute values from the fuzzer: evaluation
//! never panics, and adding an assertion never lowers the result (RFC 2704 monotonicity).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use offpay_keynote::{Assertion, ComplianceValues, Session, SignatureCache, Trust};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == 0);
    let conditions = parts.next().unwrap_or_default();
    let licensees = parts.next().unwrap_or_default();
    let x = parts.next().unwrap_or_default();
    let y = parts.next().unwrap_or_default();
    let mut text = b"Authorizer: \"POLICY\"\nLicensees: ".to_vec();
    text.extend(licensees.iter().filter(|&&b| b != b'\n'));
    text.extend_from_slice(b"\nConditions: ");
    text.extend_from_slice(conditions);
    text.push(b'\n');
    let Ok(policy) = Assertion::parse(&text) else {
        return;
    };
    let second =
        Assertion::parse(b"Authorizer: \"B\"\nLicensees: \"A\"\nConditions: x == y;\n").unwrap();
    let values = ComplianceValues::new(["false", "maybe", "true"]).unwrap();
    let query = |with_second: bool| {
        let mut session = Session::new();
        session
            .add_assertion(Arc::new(policy.clone()), Trust::Trusted)
            .unwrap();
        if with_second {
            session
                .add_assertion(Arc::new(second.clone()), Trust::Trusted)
                .unwrap();
        }
        session.add_action_authorizer(b"A").unwrap();
        let _ = session.set_attribute(b"x", x);
        let _ = session.set_attribute(b"y", y);
        session
            .query(&values, &mut SignatureCache::new())
            .unwrap()
            .value
    };
    let alone = query(false);
    let both = query(true);
    assert!(alone <= 2 && both <= 2);
    assert!(both >= alone, "adding an assertion lowered trust");
});
