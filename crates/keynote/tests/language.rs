//! The assertion grammar, every Conditions operator, and the compliance-value rules of
//! RFC 2704 §5.
// A panic is how a test reports failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use offpay_keynote::{
    Assertion, ComplianceValues, Error, QueryResult, Rule, Session, SignatureCache, Trust,
};

const VALUES: [&str; 4] = ["false", "maybe", "probably", "true"];

fn query_with(
    assertions: &[String],
    attributes: &[(&str, &str)],
    authorizers: &[&str],
) -> (String, QueryResult) {
    let values = ComplianceValues::new(VALUES).unwrap();
    let mut session = Session::new();
    for text in assertions {
        let assertion =
            Assertion::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\nin:\n{text}"));
        session
            .add_assertion(Arc::new(assertion), Trust::Trusted)
            .unwrap();
    }
    for (name, value) in attributes {
        session
            .set_attribute(name.as_bytes(), value.as_bytes())
            .unwrap();
    }
    for authorizer in authorizers {
        session
            .add_action_authorizer(authorizer.as_bytes())
            .unwrap();
    }
    let result = session.query(&values, &mut SignatureCache::new()).unwrap();
    (
        String::from_utf8(values.name(result.value).to_vec()).unwrap(),
        result,
    )
}

/// The value of a POLICY assertion whose licensee is the action authorizer, so the result is
/// exactly the Conditions value.
fn conditions(program: &str, attributes: &[(&str, &str)]) -> String {
    let text = format!("Authorizer: \"POLICY\"\nLicensees: \"A\"\nConditions: {program}\n");
    query_with(&[text], attributes, &["A"]).0
}

fn holds(test: &str) -> bool {
    holds_with(test, &[])
}

fn holds_with(test: &str, attributes: &[(&str, &str)]) -> bool {
    match conditions(&format!("{test};"), attributes).as_str() {
        "true" => true,
        "false" => false,
        other => panic!("unexpected {other}"),
    }
}

fn syntax_error(text: &str) -> offpay_keynote::SyntaxError {
    match Assertion::parse(text.as_bytes()) {
        Err(Error::Syntax(e)) => e,
        other => panic!("expected a syntax error for {text:?}, got {other:?}"),
    }
}

#[test]
fn integer_operators_and_precedence() {
    assert!(holds("1 + 2 * 3 == 7"));
    assert!(holds("(1 + 2) * 3 == 9"));
    assert!(holds("10 - 4 - 3 == 3"));
    assert!(holds("2 ^ 3 ^ 2 == 64"), "`^` is left-associative");
    assert!(holds("2 * 3 ^ 2 == 18"));
    assert!(holds("-2 ^ 2 == 4"), "unary minus binds tighter than `^`");
    assert!(holds("7 / 2 == 3 && -7 / 2 == -3"));
    assert!(holds("7 % 3 == 1 && -7 % 3 == -1"));
    assert!(holds("2 ^ -1 == 0"));
    assert!(holds("1 < 2 && 2 > 1 && 1 <= 1 && 1 >= 1 && 1 != 2"));
    assert!(holds("--3 == 3"));
}

#[test]
fn runtime_errors_make_only_their_clause_false() {
    assert!(!holds("1 / 0 == 0"));
    assert!(!holds("1 % 0 == 0"));
    assert!(!holds("2147483647 + 1 > 0"), "overflow is a runtime error");
    assert!(
        !holds("!(1 / 0 == 0)"),
        "an error anywhere fails the whole test"
    );
    assert!(
        holds("false && 1 / 0 == 0 || true"),
        "short-circuit skips the error"
    );
    assert!(holds("true || 1 / 0 == 0"));
    assert_eq!(
        conditions("1 / 0 == 1 -> \"true\"; true -> \"maybe\";", &[]),
        "maybe"
    );
    assert_eq!(conditions("&x / 0.0 < 1.0;", &[("x", "1")]), "false");
    assert_eq!(
        conditions("x ~= \"(\" -> \"true\"; true -> \"maybe\";", &[]),
        "maybe"
    );
}

#[test]
fn floats() {
    assert!(holds("1.5 + 2.25 >= 3.75"));
    assert!(holds_with("&x > 0.5 && &x < 0.6", &[("x", "0.55")]));
    assert!(holds_with("&amount <= 1.51", &[("amount", "0.55")]));
    assert!(holds_with("&amount * 2.0 > 1.0", &[("amount", "0.55")]));
    assert!(
        holds_with("&bad < 0.1", &[("bad", "1e5")]),
        "not a number: 0"
    );
    assert!(holds("2.0 ^ 3.0 > 7.9 && -1.0 < 0.0"));
}

#[test]
fn strings_concatenation_and_dereference() {
    let env = [("foo", "bar"), ("bar", "xyz"), ("xyz", "qua")];
    assert!(holds_with("foo == \"bar\" && $(\"foo\") == \"bar\"", &env));
    assert!(holds_with("$foo == \"xyz\" && $$foo == \"qua\"", &env));
    assert!(
        holds_with("$foo . bar == ($foo) . bar", &env),
        "$ binds tighter than ."
    );
    assert!(holds_with("$ \"fo\" . \"o\" == \"o\"", &env));
    assert!(holds_with("\"fa\" . \"lse\" == \"false\"", &env));
    assert!(holds_with("missing == \"\" && $missing == \"\"", &env));
    assert!(holds(
        "\"abc\" < \"abd\" && \"b\" > \"abc\" && \"a\" <= \"a\" && \"\" >= \"\""
    ));
    assert!(holds("\"A\" != \"a\""), "case-sensitive");
    assert!(holds(
        "\"tab\\there\" == \"tab\\011here\" && \"q\\\"\" == \"q\\042\""
    ));
    assert!(holds_with(
        "@foo == 0 && @n == 3 && @(n . \"1\") == 3",
        &[("foo", "bar"), ("n", "3.9")]
    ));
}

#[test]
fn regular_expressions_set_temporaries() {
    let env = [("who", "alice@deli.example")];
    assert!(holds_with(
        "who ~= \"^([a-z]+)@([a-z.]+)$\" && _0 == \"2\" && _1 == \"alice\" && _2 == \"deli.example\"",
        &env
    ));
    assert!(
        holds_with("who ~= \"^x\" || _1 == \"\"", &env),
        "a failed match sets nothing"
    );
    // Temporaries last for the clause only.
    assert_eq!(
        conditions(
            "who ~= \"^(a)\" -> \"maybe\"; _1 == \"a\" -> \"true\";",
            &env
        ),
        "maybe"
    );
    // ... but reach into a nested block's first clause, as in the reference.
    assert_eq!(
        conditions("who ~= \"^(a)\" -> { _1 == \"a\" -> \"true\"; };", &env),
        "true"
    );
    assert!(holds_with("who ~= \"deli\"", &env), "unanchored search");
    assert!(holds_with("@_0 == 0 || who ~= \"l+\" && _0 == \"0\"", &env));
}

#[test]
fn clause_values_and_blocks() {
    assert_eq!(
        conditions("true;", &[]),
        "true",
        "no value means _MAX_TRUST"
    );
    assert_eq!(
        conditions("true -> \"unknown\";", &[]),
        "false",
        "unknown values are _MIN_TRUST"
    );
    assert_eq!(
        conditions("", &[]),
        "false",
        "an empty program is _MIN_TRUST"
    );
    assert_eq!(
        conditions(
            "true -> \"maybe\"; true -> \"probably\"; false -> \"true\";",
            &[]
        ),
        "probably",
        "the highest successful clause wins"
    );
    assert_eq!(conditions("true -> _MAX_TRUST;", &[]), "true");
    assert_eq!(conditions("true -> _MIN_TRUST;", &[]), "false");
    assert_eq!(
        conditions(
            "a == \"b\" -> { true -> \"true\"; }; true -> \"maybe\";",
            &[("a", "c")]
        ),
        "maybe",
        "a block counts only when its test holds"
    );
    assert_eq!(
        conditions(
            "a == \"b\" -> { b == \"c\" -> \"maybe\"; true -> { true -> \"probably\"; }; };",
            &[("a", "b")]
        ),
        "probably"
    );
    assert!(holds("_VALUES == \"false,maybe,probably,true\""));
    assert!(holds("_MIN_TRUST == \"false\" && _MAX_TRUST == \"true\""));
}

#[test]
fn action_authorizers_attribute_lists_newest_first() {
    let text = "Authorizer: \"POLICY\"\nLicensees: \"A\"\n\
                Conditions: _ACTION_AUTHORIZERS == \"B,A\";\n"
        .to_string();
    assert_eq!(query_with(&[text], &[], &["A", "B"]).0, "true");
}

#[test]
fn fields_comments_and_layout() {
    let text = "# leading comment\n\
                KEYNOTE-VERSION: \"2\"\n\
                comment: anything at all, \"even\" unbalanced \" quotes\n\
                \t  and continuation lines\n\
                local-constants: K = \"A\" # trailing comment\n\
                # a comment line inside a field\n\
                \x20  L = \"x\\\n          y\"\n\
                AUTHORIZER: \"POLICY\"\n\
                LiCeNsEeS: K\n\
                cOnDiTiOnS: L == \"xy\" && \"#notacomment\" == \"#\" . \"notacomment\";\n";
    assert_eq!(query_with(&[text.to_string()], &[], &["A"]).0, "true");
}

#[test]
fn local_constants_override_attributes() {
    let text = "Authorizer: \"POLICY\"\nLocal-Constants: who = \"A\" app = \"deli\"\n\
                Licensees: who\nConditions: app_domain == app && $\"who\" == \"A\";\n";
    let env = [("app_domain", "deli"), ("who", "not-A")];
    assert_eq!(query_with(&[text.to_string()], &env, &["A"]).0, "true");
}

#[test]
fn licensee_expressions() {
    let policy = |licensees: &str| {
        format!("Authorizer: \"POLICY\"\nLicensees: {licensees}\nConditions: true;\n")
    };
    let level = |name: &str, value: &str| {
        format!("Authorizer: \"{name}\"\nLicensees: \"A\"\nConditions: true -> \"{value}\";\n")
    };
    let others = [
        level("M", "maybe"),
        level("P", "probably"),
        level("T", "true"),
    ];
    let run = |licensees: &str| {
        let mut all = vec![policy(licensees)];
        all.extend(others.iter().cloned());
        query_with(&all, &[], &["A"]).0
    };
    assert_eq!(run("\"M\" || \"P\""), "probably");
    assert_eq!(run("\"M\" && \"P\""), "maybe");
    assert_eq!(
        run("\"T\" || \"M\" && \"nobody\""),
        "true",
        "&& binds tighter"
    );
    assert_eq!(run("(\"T\" || \"M\") && \"nobody\""), "false");
    assert_eq!(run("2-of(\"M\", \"P\", \"T\")"), "probably");
    assert_eq!(run("3-of(\"M\", \"P\", \"T\")"), "maybe");
    assert_eq!(
        run("2-of(\"T\", \"T\", \"M\")"),
        "true",
        "multiplicity counts"
    );
    assert_eq!(run("(\"T\")"), "true");
    assert_eq!(run("(\"T\") . \"\""), "true");
    assert_eq!(
        run("\"nobody\""),
        "false",
        "an unknown principal is _MIN_TRUST"
    );
    // Missing Licensees: _MAX_TRUST; empty: _MIN_TRUST.
    let missing = "Authorizer: \"POLICY\"\nConditions: true -> \"maybe\";\n".to_string();
    assert_eq!(query_with(&[missing], &[], &["A"]).0, "maybe");
    let empty = "Authorizer: \"POLICY\"\nLicensees:\nConditions: true;\n".to_string();
    assert_eq!(query_with(&[empty], &[], &["A"]).0, "false");
    // A licensee taken from the action.
    let dynamic = "Authorizer: \"POLICY\"\nLicensees: $\"payee\"\n".to_string();
    assert_eq!(query_with(&[dynamic], &[("payee", "A")], &["A"]).0, "true");
}

#[test]
fn compliance_values_follow_rfc_2704_section_5() {
    // §5.3.4: no Conditions field at all means _MAX_TRUST.
    let no_conditions = "Authorizer: \"POLICY\"\nLicensees: \"A\"\n".to_string();
    assert_eq!(query_with(&[no_conditions], &[], &["A"]).0, "true");
    // §5.3.3: an assertion is the minimum of its conditions and licensees.
    let chain = [
        "Authorizer: \"POLICY\"\nLicensees: \"K\"\nConditions: true -> \"probably\";\n".to_string(),
        "Authorizer: \"K\"\nLicensees: \"A\"\nConditions: true -> \"maybe\";\n".to_string(),
    ];
    let (value, result) = query_with(&chain, &[], &["A"]);
    assert_eq!(value, "maybe");
    assert_eq!(result.assertions[0].value, Some(1));
    // §5.3.1: a principal is the maximum over the assertions it issued.
    let mut two = chain.to_vec();
    two.push("Authorizer: \"K\"\nLicensees: \"A\"\nConditions: true;\n".to_string());
    assert_eq!(query_with(&two, &[], &["A"]).0, "probably");
    // §5.3.2: a principal listed as an action authorizer has _MAX_TRUST.
    assert_eq!(query_with(&chain, &[], &["K"]).0, "probably");
}

#[test]
fn policy_is_never_an_action_authorizer() {
    // Issue 20: as an action authorizer, POLICY had `_MAX_TRUST` with no POLICY assertion at
    // all. It is the root every query starts from, never the one requesting the action.
    let mut session = Session::new();
    let error = session.add_action_authorizer(b"POLICY").unwrap_err();
    assert!(matches!(error, Error::Usage(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("POLICY cannot be an action authorizer")
    );
    let refused =
        session.add_action_authorizer_principal(b"POLICY", offpay_keynote::Principal::policy());
    assert!(refused.is_err());
    // With another authorizer, an empty session still says false.
    session.add_action_authorizer(b"A").unwrap();
    let values = ComplianceValues::new(VALUES).unwrap();
    let result = session.query(&values, &mut SignatureCache::new()).unwrap();
    assert_eq!(result.value, 0);
}

#[test]
fn keywords_are_read_in_any_case_like_the_reference() {
    // The reference's lexer is built with `lex -i`: `TRUE`, `False`, `2-OF(` are keywords.
    assert_eq!(conditions("TRUE;", &[]), "true");
    assert_eq!(conditions("True -> \"maybe\";", &[]), "maybe");
    assert_eq!(conditions("FALSE;", &[]), "false");
    assert_eq!(conditions("!fAlSe;", &[]), "true");
    let threshold = ["Authorizer: \"POLICY\"\nLicensees: 2-OF(\"A\", \"B\", \"C\")\n".to_string()];
    assert_eq!(query_with(&threshold, &[], &["A", "C"]).0, "true");
    assert_eq!(query_with(&threshold, &[], &["A"]).0, "false");
    let threshold = ["Authorizer: \"POLICY\"\nLicensees: 1-Of(\"A\")\n".to_string()];
    assert_eq!(query_with(&threshold, &[], &["A"]).0, "true");
    // Attribute names keep their case: `TRUE_VALUE` is an attribute, `True` is not.
    assert_eq!(
        conditions("TRUE_VALUE == \"x\";", &[("TRUE_VALUE", "x")]),
        "true"
    );
    assert_eq!(
        conditions("true_value == \"x\";", &[("TRUE_VALUE", "x")]),
        "false"
    );
}

#[test]
fn cycles_contribute_nothing() {
    let cycle = [
        "Authorizer: \"POLICY\"\nLicensees: \"X\"\n".to_string(),
        "Authorizer: \"X\"\nLicensees: \"Y\"\n".to_string(),
        "Authorizer: \"Y\"\nLicensees: \"X\"\n".to_string(),
    ];
    assert_eq!(query_with(&cycle, &[], &["A"]).0, "false");
    let mut with_exit = cycle.to_vec();
    with_exit.push("Authorizer: \"Y\"\nLicensees: \"A\"\nConditions: true -> \"maybe\";\n".into());
    assert_eq!(query_with(&with_exit, &[], &["A"]).0, "maybe");
    // A self-loop alone.
    let selfloop = [
        "Authorizer: \"POLICY\"\nLicensees: \"S\"\n".to_string(),
        "Authorizer: \"S\"\nLicensees: \"S\" || \"A\"\nConditions: true -> \"maybe\";\n".into(),
    ];
    assert_eq!(query_with(&selfloop, &[], &["A"]).0, "maybe");
}

#[test]
fn syntax_errors_name_line_column_and_rule() {
    let e = syntax_error("Authorizer: \"POLICY\"\nConditions: a == \"b\"\n");
    assert_eq!((e.line, e.column, e.rule), (2, 21, Rule::Conditions));
    assert!(e.message.contains("`;`"), "{}", e.message);

    let e = syntax_error("Authorizer: \"x\"\nConditions: 1 + \"a\" == 2;\n");
    assert_eq!((e.line, e.rule), (2, Rule::Types));

    let e = syntax_error("Authorizer: \"x\"\nLicenses: \"a\"\n");
    assert_eq!((e.line, e.column, e.rule), (2, 1, Rule::Layout));

    let e = syntax_error("Authorizer: \"x\"\nAuthorizer: \"y\"\n");
    assert_eq!((e.line, e.rule), (2, Rule::Layout));

    let e = syntax_error("Licensees: \"a\"\n");
    assert_eq!(e.rule, Rule::Layout);
    assert!(e.message.contains("Authorizer"));

    let e = syntax_error("Authorizer: \"x\"\nKeyNote-Version: 2\n");
    assert_eq!((e.line, e.rule), (2, Rule::Layout));

    let e = syntax_error("KeyNote-Version: 3\nAuthorizer: \"x\"\n");
    assert_eq!((e.line, e.column, e.rule), (1, 18, Rule::Version));

    let e = syntax_error("Authorizer: \"x\nConditions: true;\n");
    assert_eq!((e.line, e.column, e.rule), (1, 13, Rule::StringLiteral));
    assert!(e.message.contains("not closed"), "{}", e.message);

    let e = syntax_error("Authorizer: \"x\"\nLocal-Constants: A = \"1\" A = \"2\"\n");
    assert_eq!((e.line, e.column, e.rule), (2, 26, Rule::LocalConstants));

    let e = syntax_error("Authorizer: \"x\"\nLocal-Constants: _A = \"1\"\n");
    assert_eq!(e.rule, Rule::LocalConstants);

    let e = syntax_error("Authorizer: \"x\"\nLicensees: 3-of(\"a\", \"b\")\n");
    assert_eq!((e.line, e.column, e.rule), (2, 12, Rule::Licensees));

    let e = syntax_error("Authorizer: \"dsa-hex:zz\"\n");
    assert_eq!((e.line, e.rule), (1, Rule::Key));

    let e = syntax_error("Authorizer: who\n");
    assert_eq!(e.rule, Rule::Authorizer);

    let e = syntax_error("Authorizer: \"x\"\nConditions: &x == 1.0;\n");
    assert_eq!(e.rule, Rule::Types, "no float equality");

    let e = syntax_error("  Authorizer: \"x\"\n");
    assert_eq!((e.line, e.column, e.rule), (1, 3, Rule::Layout));

    let e = syntax_error("Authorizer: \"x\"\n\nLicensees: \"y\"\n");
    assert_eq!((e.line, e.column, e.rule), (3, 1, Rule::Layout));

    let e = syntax_error("Authorizer: \"x\"\nSignature: \"s\"\nComment: late\n");
    assert_eq!((e.line, e.rule), (3, Rule::Layout));

    let e = syntax_error("Authorizer: \"x\"\nConditions: a == b == c;\n");
    assert_eq!(e.rule, Rule::Conditions);

    let text = e.to_string();
    assert!(text.starts_with("line 2, column "), "{text}");
}

#[test]
fn a_bad_assertion_among_several_is_reported_and_the_others_count() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::write(
        &policies,
        "Authorizer: \"POLICY\"\nLicensees: \"A\"\nConditions: true -> \"maybe\";\n\n\
         Authorizer: \"POLICY\"\nConditions: oops\n\n\
         Authorizer: \"POLICY\"\nLicensees: \"A\"\nConditions: x == \"1\";\n",
    )
    .unwrap();
    let env = dir.path().join("env");
    std::fs::write(&env, "x = \"1\"\n").unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "\"A\"\n").unwrap();
    let args: Vec<String> = [
        "verify",
        "-e",
        env.to_str().unwrap(),
        "-r",
        "false,maybe,true",
        "-k",
        key.to_str().unwrap(),
        "-l",
        policies.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(offpay_keynote::cli::run(&args, &mut out, &mut err), 0);
    let (out, err) = (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    );
    assert_eq!(out, "Query result = true\n");
    assert!(err.contains("Error for assertion 1 in file <"), "{err}");
    assert!(err.contains("line 6, column "), "{err}");
}

#[test]
fn verify_usage_and_missing_parameters() {
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = offpay_keynote::cli::run(&args, &mut out, &mut err);
        (code, String::from_utf8(err).unwrap())
    };
    assert_eq!(run(&["verify"]).0, 1);
    assert_eq!(run(&["verify", "-h"]).0, 0);
    assert_eq!(run(&["verify", "-q"]).0, 1);
    let (code, err) = run(&["verify", "-r", "a,b"]);
    assert_eq!(code, 1);
    assert_eq!(err, "Should set environment before evaluations begin.\n");
    let (code, err) = run(&["verify", "-r", "a", "-r", "b"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "Do not define two sets of return values.\n")
    );
    let (code, err) = run(&["verify", "-e", "/nonexistent/env"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("/nonexistent/env: "));
    assert_eq!(run(&["frobnicate"]).0, 1);
    assert_eq!(run(&[]).0, 1);
}

#[test]
fn a_parse_cache_gives_what_parsing_gives() {
    let program = "amount == LIMIT && product ~= \"^[a-z]+$\" -> \"true\";";
    let assertion = |limit: &str| {
        format!(
            "Authorizer: \"POLICY\"\nLocal-Constants: LIMIT = \"{limit}\"\nLicensees: \"alice\"\nConditions: {program}\n"
        )
    };
    let mut cache = offpay_keynote::ParseCache::new();
    for limit in ["5", "7", "5"] {
        let text = assertion(limit);
        let cached = Assertion::parse_cached(text.as_bytes(), &mut cache).unwrap();
        let parsed = Assertion::parse(text.as_bytes()).unwrap();
        assert_eq!(cached.conditions(), parsed.conditions());
        assert_eq!(cached.local_constants(), parsed.local_constants());
        assert_eq!(cached.to_string(), parsed.to_string());
        for amount in ["5", "7"] {
            let answer = |assertion: Assertion| {
                let mut session = Session::new();
                session
                    .add_assertion(Arc::new(assertion), Trust::Trusted)
                    .unwrap();
                session.set_attribute(b"amount", amount.as_bytes()).unwrap();
                session.set_attribute(b"product", b"soda").unwrap();
                session.add_action_authorizer(b"alice").unwrap();
                let values = ComplianceValues::new(VALUES).unwrap();
                session
                    .query(&values, &mut SignatureCache::new())
                    .unwrap()
                    .value
            };
            let expected = if amount == limit { 3 } else { 0 };
            assert_eq!(
                answer(cached.clone()),
                expected,
                "limit {limit}, amount {amount}"
            );
            assert_eq!(answer(parsed.clone()), expected);
        }
    }
    // A program that does not parse is refused through the cache as well, with its position.
    let bad = "Authorizer: \"POLICY\"\nConditions: amount == ;\n";
    let error = Assertion::parse_cached(bad.as_bytes(), &mut cache).unwrap_err();
    assert_eq!(
        error.to_string(),
        Assertion::parse(bad.as_bytes()).unwrap_err().to_string()
    );
}
