//! Property tests: printing then parsing gives the same tree; nothing panics on any input.
// A panic is how a test reports failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use proptest::prelude::*;

use offpay_keynote::ast::{
    ArithOp, Clause, ClauseValue, CmpOp, FloatExpr, IntExpr, LicenseeExpr, StrExpr, Test,
    program_to_string,
};
use offpay_keynote::{Assertion, ComplianceValues, Session, SignatureCache, Trust};

fn name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,5}".prop_filter("keywords", |n| n != "true" && n != "false")
}

fn str_expr() -> impl Strategy<Value = StrExpr> {
    let leaf = prop_oneof![
        proptest::collection::vec(1u8..=255, 0..6).prop_map(StrExpr::Literal),
        name().prop_map(StrExpr::Attribute),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| StrExpr::Deref(Box::new(e))),
            proptest::collection::vec(inner, 2..4).prop_map(StrExpr::Concat),
        ]
    })
}

fn ops(level: u8, float: bool) -> Vec<ArithOp> {
    match level {
        1 => vec![ArithOp::Add, ArithOp::Sub],
        2 if float => vec![ArithOp::Mul, ArithOp::Div],
        2 => vec![ArithOp::Mul, ArithOp::Div, ArithOp::Mod],
        _ => vec![ArithOp::Pow],
    }
}

fn int_expr() -> impl Strategy<Value = IntExpr> {
    let leaf = prop_oneof![
        (0i32..100_000).prop_map(IntExpr::Literal),
        str_expr().prop_map(|s| IntExpr::FromString(Box::new(s))),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| IntExpr::Negate(Box::new(e))),
            (
                1u8..=3,
                inner.clone(),
                proptest::collection::vec((any::<prop::sample::Index>(), inner), 1..3)
            )
                .prop_map(|(level, head, rest)| {
                    let choices = ops(level, false);
                    IntExpr::Chain(
                        Box::new(head),
                        rest.into_iter()
                            .map(|(i, e)| (*i.get(&choices), e))
                            .collect(),
                    )
                }),
        ]
    })
}

fn float_expr() -> impl Strategy<Value = FloatExpr> {
    let leaf = prop_oneof![
        prop::sample::select(vec![0.0, 0.1, 0.5, 1.0, 2.25, 10.75, 1234.5])
            .prop_map(FloatExpr::Literal),
        str_expr().prop_map(|s| FloatExpr::FromString(Box::new(s))),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| FloatExpr::Negate(Box::new(e))),
            (
                1u8..=3,
                inner.clone(),
                proptest::collection::vec((any::<prop::sample::Index>(), inner), 1..3)
            )
                .prop_map(|(level, head, rest)| {
                    let choices = ops(level, true);
                    FloatExpr::Chain(
                        Box::new(head),
                        rest.into_iter()
                            .map(|(i, e)| (*i.get(&choices), e))
                            .collect(),
                    )
                }),
        ]
    })
}

fn cmp() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Gt,
        CmpOp::Le,
        CmpOp::Ge,
    ])
}

fn test_expr() -> impl Strategy<Value = Test> {
    let leaf = prop_oneof![
        Just(Test::True),
        Just(Test::False),
        (int_expr(), cmp(), int_expr()).prop_map(|(a, o, b)| Test::Int(a, o, b)),
        (
            float_expr(),
            prop::sample::select(vec![CmpOp::Lt, CmpOp::Gt, CmpOp::Le, CmpOp::Ge]),
            float_expr()
        )
            .prop_map(|(a, o, b)| Test::Float(a, o, b)),
        (str_expr(), cmp(), str_expr()).prop_map(|(a, o, b)| Test::Str(a, o, b)),
        (
            str_expr(),
            prop::sample::select(vec!["^(a|b)*$", "(x", "[[:digit:]]+", "a{2,3}", ""])
        )
            .prop_map(|(s, p)| Test::Regex(s, StrExpr::Literal(p.as_bytes().to_vec()))),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| Test::Not(Box::new(t))),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Test::And),
            proptest::collection::vec(inner, 2..4).prop_map(Test::Or),
        ]
    })
}

fn clauses() -> impl Strategy<Value = Vec<Clause>> {
    let value = prop_oneof![
        Just(ClauseValue::MaxTrust),
        str_expr().prop_map(ClauseValue::Value),
        prop::sample::select(vec!["false", "maybe", "true"])
            .prop_map(|v| ClauseValue::Value(StrExpr::Literal(v.as_bytes().to_vec()))),
    ];
    let clause = (test_expr(), value).prop_map(|(test, value)| Clause { test, value });
    proptest::collection::vec(clause, 0..4).prop_recursive(2, 8, 3, |inner| {
        proptest::collection::vec(
            (test_expr(), inner).prop_map(|(test, block)| Clause {
                test,
                value: ClauseValue::Block(block),
            }),
            1..3,
        )
    })
}

fn licensees() -> impl Strategy<Value = LicenseeExpr> {
    let principal = prop::sample::select(vec!["A", "B", "C", "POLICY"])
        .prop_map(|p| StrExpr::Literal(p.as_bytes().to_vec()));
    let leaf = prop_oneof![
        principal.clone().prop_map(LicenseeExpr::Principal),
        (1u32..3, proptest::collection::vec(principal, 3..5))
            .prop_map(|(k, list)| LicenseeExpr::Threshold(k, list)),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(LicenseeExpr::And),
            proptest::collection::vec(inner, 2..4).prop_map(LicenseeExpr::Or),
        ]
    })
}

fn query(assertion: Assertion, attributes: &[(Vec<u8>, Vec<u8>)]) {
    let mut session = Session::new();
    session
        .add_assertion(Arc::new(assertion), Trust::Trusted)
        .unwrap();
    session.add_action_authorizer(b"A").unwrap();
    for (name, value) in attributes {
        let _ = session.set_attribute(name, value);
    }
    let values = ComplianceValues::new(["false", "maybe", "true"]).unwrap();
    let result = session.query(&values, &mut SignatureCache::new()).unwrap();
    assert!(result.value <= 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn conditions_print_then_parse_round_trips(program in clauses()) {
        let text = format!("Authorizer: \"POLICY\"\nConditions:\n{}", program_to_string(&program));
        let parsed = Assertion::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(parsed.conditions().unwrap(), program.as_slice());
    }

    #[test]
    fn licensees_print_then_parse_round_trips(expr in licensees()) {
        let text = format!("Authorizer: \"POLICY\"\nLicensees: {expr}\n");
        let parsed = Assertion::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(parsed.licensees(), Some(Some(&expr)));
    }

    #[test]
    fn whole_assertions_print_then_parse_round_trips(
        program in clauses(),
        expr in licensees(),
        constant in proptest::collection::vec(1u8..=255, 0..8),
    ) {
        let text = format!(
            "KeyNote-Version: 2\nLocal-Constants: C = {}\nAuthorizer: \"POLICY\"\nLicensees: {expr}\nConditions:\n{}",
            StrExpr::Literal(constant),
            program_to_string(&program)
        );
        let first = Assertion::parse(text.as_bytes()).unwrap();
        let second = Assertion::parse(first.to_string().as_bytes()).unwrap();
        prop_assert_eq!(first.conditions(), second.conditions());
        prop_assert_eq!(first.licensees(), second.licensees());
        prop_assert_eq!(first.local_constants(), second.local_constants());
        prop_assert_eq!(first.authorizer(), second.authorizer());
    }

    #[test]
    fn evaluation_never_panics(
        program in clauses(),
        expr in licensees(),
        attributes in proptest::collection::vec((name(), proptest::collection::vec(1u8..=255, 0..12)), 0..6),
    ) {
        let text = format!("Authorizer: \"POLICY\"\nLicensees: {expr}\nConditions:\n{}", program_to_string(&program));
        let assertion = Assertion::parse(text.as_bytes()).unwrap();
        let attributes: Vec<(Vec<u8>, Vec<u8>)> =
            attributes.into_iter().map(|(n, v)| (n.into_bytes(), v)).collect();
        query(assertion, &attributes);
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(assertion) = Assertion::parse(&bytes) {
            query(assertion, &[]);
        }
    }

    #[test]
    fn parsing_keynote_like_text_never_panics(
        lines in proptest::collection::vec(
            prop::sample::select(vec![
                "Authorizer: \"POLICY\"", "Licensees: \"A\" || 2-of(\"A\", B, $c)", "Conditions: ",
                "  a == \"b\" -> {", "  };", " @x + 1 ^ 2 > -3;", " x ~= \"(a|b\" -> \"true\";",
                "# comment", "Local-Constants: B = \"A\"", "\t$(\"x\" . y) == \"\\101\";",
                "Signature: \"sig-rsa-sha1-hex:00\"", "Comment: ((((", " &f >= 1.5 && !true;", "",
            ]),
            0..12,
        )
    ) {
        let text = lines.join("\n");
        if let Ok(assertion) = Assertion::parse(text.as_bytes()) {
            let _ = assertion.verify_signature();
            query(assertion, &[(b"x".to_vec(), b"12".to_vec())]);
        }
    }
}
