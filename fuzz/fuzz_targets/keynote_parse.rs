//! Any bytes: parsing never panics; whatever parses prints to text that parses to the same
//! fields; a query over it never panics and stays within the value set.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use offpay_keynote::{Assertion, ComplianceValues, Session, SignatureCache, Trust};

fuzz_target!(|data: &[u8]| {
    let Ok(assertion) = Assertion::parse(data) else {
        return;
    };
    let printed = assertion.to_string();
    let again = Assertion::parse(printed.as_bytes()).expect("printed assertion must parse");
    assert_eq!(assertion.conditions(), again.conditions());
    assert_eq!(assertion.licensees(), again.licensees());
    assert_eq!(assertion.authorizer(), again.authorizer());
    assert_eq!(assertion.local_constants(), again.local_constants());
    let _ = assertion.verify_signature();

    let mut session = Session::new();
    session
        .add_assertion(Arc::new(assertion), Trust::Trusted)
        .unwrap();
    session.add_action_authorizer(b"A").unwrap();
    session.set_attribute(b"x", b"12.5").unwrap();
    let values = ComplianceValues::new(["false", "maybe", "true"]).unwrap();
    let result = session.query(&values, &mut SignatureCache::new()).unwrap();
    assert!(result.value <= 2);
});
