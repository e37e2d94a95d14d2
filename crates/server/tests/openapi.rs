//! The OpenAPI document: every route of the table is in it with its method and roles; every
//! route declares its schemas (none is left untyped); the
//! document is well-formed OpenAPI 3.1 (path parameters declared, references resolved); and real
//! answers validate against the schemas it declares.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;

use axum::http::StatusCode;
use offpay_server::openapi::declared;
use offpay_test_support::{Backend, InProcess};
use serde_json::{Value, json};

/// Checks `value` against the subset of JSON Schema the document uses (`type`, `required`,
/// `properties`, `additionalProperties: false`, `items`, `enum`, `anyOf`, `$ref` into
/// `components`); returns what does not match.
fn violations(document: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let pointer = reference.trim_start_matches('#');
        let target = document.pointer(pointer).expect("a reference resolves");
        return violations(document, target, value, at, out);
    }
    let type_ok = |name: &str| match name {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        other => panic!("unknown type {other}"),
    };
    match &schema["type"] {
        Value::String(name) if !type_ok(name) => out.push(format!("{at}: not a {name}: {value}")),
        Value::Array(names) if !names.iter().any(|name| type_ok(name.as_str().unwrap())) => {
            out.push(format!("{at}: not one of {names:?}: {value}"));
        }
        _ => {}
    }
    if let Some(branches) = schema["anyOf"].as_array() {
        let fits = branches.iter().any(|branch| {
            let mut inner = Vec::new();
            violations(document, branch, value, at, &mut inner);
            inner.is_empty()
        });
        if !fits {
            out.push(format!("{at}: fits none of anyOf: {value}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        out.push(format!("{at}: {value} not in {allowed:?}"));
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            if !object.contains_key(name.as_str().unwrap()) {
                out.push(format!("{at}: missing {name}"));
            }
        }
        if schema["additionalProperties"] == false {
            for name in object.keys() {
                if schema["properties"].get(name).is_none() {
                    out.push(format!("{at}: {name} is not a declared field"));
                }
            }
        }
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            if let Some(field) = object.get(name) {
                violations(document, property, field, &format!("{at}.{name}"), out);
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, item) in array.iter().enumerate() {
            violations(document, items, item, &format!("{at}[{index}]"), out);
        }
    }
}

#[test]
fn every_route_is_in_the_document_with_its_method_roles_and_schemas() {
    let routes = offpay_server::operator_routes();
    let document = offpay_server::openapi::document(routes.table());
    assert_eq!(document["openapi"], "3.1.0");
    let mut operation_ids = BTreeSet::new();
    let mut undeclared = Vec::new();
    for spec in routes.table().specs() {
        let template = format!("/api/v1{}", spec.path);
        let method = spec.method.as_str().to_ascii_lowercase();
        let operation = &document["paths"][&template][&method];
        assert!(
            operation.is_object(),
            "{method} {template} is not in the document"
        );
        let roles: Vec<&str> = spec.roles.iter().map(|role| role.as_str()).collect();
        assert_eq!(operation["x-roles"], json!(roles), "{method} {template}");
        assert!(operation_ids.insert(operation["operationId"].as_str().unwrap().to_owned()));
        if declared(&spec.method, spec.path).is_none() {
            undeclared.push(format!("{method} {}", spec.path));
        }
        assert!(operation.get("x-untyped").is_none(), "{method} {template}");
        // A success answer with a JSON schema, and the one error schema on every error status.
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses
                .iter()
                .any(|(status, response)| status.starts_with('2')
                    && response["content"]["application/json"]["schema"].is_object()),
            "{method} {template} declares its success answer"
        );
        // A body is declared with its schema, and its example (if any) fits the schema.
        if let Some(body) = operation.get("requestBody") {
            let media = &body["content"]["application/json"];
            assert!(media["schema"].is_object(), "{method} {template}");
            if let Some(example) = media.get("example") {
                let mut out = Vec::new();
                violations(&document, &media["schema"], example, &template, &mut out);
                assert!(
                    out.is_empty(),
                    "the example of {method} {template}: {out:#?}"
                );
            }
        }
        // Path parameters are declared, required, and exactly those of the template.
        let in_template: BTreeSet<&str> = spec
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared_path: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|parameter| parameter["in"] == "path")
            .inspect(|parameter| assert_eq!(parameter["required"], true))
            .map(|parameter| parameter["name"].as_str().unwrap())
            .collect();
        assert_eq!(in_template, declared_path, "{method} {template}");
        let idempotency = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|parameter| parameter["name"] == "Idempotency-Key");
        assert_eq!(idempotency, spec.moves_money, "{method} {template}");
        assert_eq!(
            operation["responses"]["202"].is_object(),
            spec.creates_value.is_some(),
            "{method} {template}"
        );
        // Every reference resolves.
        let text = operation.to_string();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let target = reference.split('"').next().unwrap();
            assert!(
                document.pointer(target.trim_start_matches('#')).is_some(),
                "{target} in {method} {template}"
            );
        }
    }
    assert!(
        undeclared.is_empty(),
        "routes that declare no schema (declare them in openapi::declared): {undeclared:#?}"
    );
    let paths = document["paths"].as_object().unwrap();
    let operations: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        operations,
        routes.table().specs().len(),
        "nothing but the table"
    );
}

async fn real_answers_validate_against_the_declared_schemas(backend: Backend) {
    let server = InProcess::start(backend).await;
    let (status, document) = server.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{document}");
    // Some data on two rails and a fraud case.
    for (path, body) in [
        ("/api/v1/purse/purses", json!({ "phone": "+254700000001" })),
        (
            "/api/v1/sms/accounts",
            json!({ "receive_number": "111100002222", "bound_phones": ["+254700000001"] }),
        ),
        (
            "/api/v1/sms/envelopes/issue",
            json!({ "count": 1, "rows": 20 }),
        ),
        (
            "/api/v1/accounts",
            json!({ "id": "float", "kind": "operator_float" }),
        ),
        (
            "/api/v1/accounts",
            json!({ "id": "alice", "kind": "customer" }),
        ),
        (
            "/api/v1/transfers",
            json!({ "transfers": [{ "id": "t1", "debit_account": "float", "credit_account": "alice", "amount": "5.00" }] }),
        ),
    ] {
        let (status, answer) = server.post(path, body.clone()).await;
        assert!(status.is_success(), "{path}: {answer}");
        // The request conforms to the declared body, and the answer to the declared response.
        let operation = &document["paths"][path]["post"];
        let mut out = Vec::new();
        violations(
            &document,
            &operation["requestBody"]["content"]["application/json"]["schema"],
            &body,
            path,
            &mut out,
        );
        let schema =
            &operation["responses"][status.as_str()]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{path} declares its {status} answer");
        violations(&document, schema, &answer, path, &mut out);
        assert!(out.is_empty(), "{out:#?}");
    }
    let (_, envelopes) = server.get("/api/v1/sms/envelopes").await;
    let euin = envelopes["items"][0]["euin"].as_str().unwrap().to_owned();
    let mut checked = 0;
    // Routes with path parameters: the path called and the template it fills.
    let phone = "%2B254700000001";
    let filled = [
        ("/api/v1/accounts/alice".to_owned(), "/api/v1/accounts/{id}"),
        (
            "/api/v1/accounts/alice/history".to_owned(),
            "/api/v1/accounts/{id}/history",
        ),
        ("/api/v1/transfers/t1".to_owned(), "/api/v1/transfers/{id}"),
        (
            format!("/api/v1/purse/purses/{phone}"),
            "/api/v1/purse/purses/{phone}",
        ),
        (
            format!("/api/v1/purse/purses/{phone}/statement"),
            "/api/v1/purse/purses/{phone}/statement",
        ),
        (
            "/api/v1/sms/accounts/111100002222".to_owned(),
            "/api/v1/sms/accounts/{number}",
        ),
        (
            format!("/api/v1/sms/envelopes/{euin}"),
            "/api/v1/sms/envelopes/{euin}",
        ),
    ];
    for (path, template) in &filled {
        let (status, answer) = server.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        let schema = &document["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        let mut out = Vec::new();
        violations(&document, schema, &answer, template, &mut out);
        assert!(out.is_empty(), "{out:#?}");
        checked += 1;
    }
    for path in [
        "/api/v1/openapi.json",
        "/api/v1/accounts",
        "/api/v1/transfers",
        "/api/v1/purse/purses",
        "/api/v1/purse/scheme-key",
        "/api/v1/sms/accounts",
        "/api/v1/sms/envelopes",
        "/api/v1/sms/terminals",
        "/api/v1/sms/dead-letters",
        "/api/v1/wallets",
        "/api/v1/microcheck/payers",
        "/api/v1/microcheck/merchants",
        "/api/v1/fraud",
        "/api/v1/approvals",
        "/api/v1/audit",
        "/api/v1/search?q=%2B254700000001",
        "/api/v1/customers/%2B254700000001",
        "/api/v1/totals",
        "/api/v1/users",
        "/api/v1/audit/verify",
        "/api/v1/sms/settings",
        "/api/v1/sms/status",
        "/api/v1/sms/disputes",
        "/api/v1/sms/outbox",
        "/api/v1/sms/scheduled",
        "/api/v1/sms/sent",
        "/api/v1/microcheck/strategy",
    ] {
        let (status, answer) = server.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        let template = path
            .split('?')
            .next()
            .unwrap()
            .replace("%2B254700000001", "{phone}");
        let schema = &document["paths"][&template]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        assert!(schema.is_object(), "{template} declares a schema");
        let mut out = Vec::new();
        violations(&document, schema, &answer, &template, &mut out);
        assert!(out.is_empty(), "{out:#?}");
        checked += 1;
        if answer["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
        {
            checked += 1;
        }
    }
    assert!(checked > 35, "most lists had items to check: {checked}");
    // An error answer validates against the one error schema.
    let (status, answer) = server.get("/api/v1/accounts?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut out = Vec::new();
    violations(
        &document,
        &json!({ "$ref": "#/components/schemas/Error" }),
        &answer,
        "error",
        &mut out,
    );
    assert!(out.is_empty(), "{out:#?}");
    // The validator is not a rubber stamp.
    let mut out = Vec::new();
    let schema = &document["paths"]["/api/v1/fraud"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    violations(
        &document,
        schema,
        &json!({ "items": [{ "id": 3 }] }),
        "fraud",
        &mut out,
    );
    assert!(out.len() > 5, "{out:?}");
}

#[tokio::test]
async fn real_answers_validate() {
    for backend in Backend::all("openapi") {
        real_answers_validate_against_the_declared_schemas(backend).await;
    }
}

/// Bad input gets a 4xx in the one error schema (never a 5xx, never a bare text answer), and
/// changes nothing. Found by the schema-driven check (scripts/schemathesis.sh): these routes
/// read their body or query with axum's own extractors, whose rejections were plain text.
#[tokio::test]
async fn bad_input_is_answered_in_the_error_schema() {
    let server = InProcess::start(Backend::all("openapi").remove(0)).await;
    let (_, document) = server.get("/api/v1/openapi.json").await;
    let (_, before) = server.get("/api/v1/accounts").await;
    let token = server.token.clone();
    for (method, path, body) in [
        ("POST", "/api/v1/wallets/w1/case", Some("{\"decision\": 7}")),
        ("POST", "/api/v1/wallets/w1/case", Some("not json")),
        (
            "POST",
            "/api/v1/wallets/w1/case",
            Some("{\"decision\": \"confirm\", \"x\": 1}"),
        ),
        ("GET", "/api/v1/sms/outbox?limit=many", None),
        ("GET", "/api/v1/sms/sent?limit=-1", None),
        ("GET", "/api/v1/sms/scheduled?after=a&limit=x", None),
        ("GET", "/api/v1/sms/disputes?limit=", None),
        ("GET", "/api/v1/sms/disputes?color=red", None),
    ] {
        let (status, answer) = server.call(method, path, body, Some(&token)).await;
        assert!(
            status.is_client_error(),
            "{method} {path}: {status} {answer}"
        );
        let mut out = Vec::new();
        violations(
            &document,
            &json!({ "$ref": "#/components/schemas/Error" }),
            &answer,
            path,
            &mut out,
        );
        assert!(
            out.is_empty(),
            "{method} {path}: {status} {answer}: {out:#?}"
        );
    }
    let (_, after) = server.get("/api/v1/accounts").await;
    assert_eq!(before, after, "nothing was applied");
}
