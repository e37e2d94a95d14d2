//! The console's rail pages through the operator API, on SQLite and (with
//! `OFFPAY_TEST_DATABASE_URL`) PostgreSQL:
//! - a microcheck payer blocked by customer care gets no credential online (refresh and
//!   transaction refused, `payer_blocked`), while the microchecks it signed under credentials
//!   issued before the block still clear and pay the merchant, those dated after the block
//!   flagged `spent_after_block`; support may block and unblock, finance and the auditor may not;
//! - the CSC's deposits list names each microcheck's payer, amount and fate (a refused one with
//!   its reason); the strikes list shows the blocked payer; both refuse bad filters;
//! - a purse's syncs list tells each sync: when, entries uploaded, balance reported against the
//!   shadow, flags.
//!
//! Each new route's answer is checked against the schema it declares in the OpenAPI document.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use offpay_keynote::{Encoding, PrivateKey};
use offpay_microcheck::auth::sign_statement;
use offpay_microcheck::csc::{DepositBody, DepositItem};
use offpay_microcheck::request::request_payload;
use offpay_microcheck::{Offer, UnixSeconds};
use offpay_test_support::{Backend, InProcess};
use serde_json::{Value, json};
use tower::ServiceExt;

fn now() -> UnixSeconds {
    UnixSeconds(offpay_operator::Clock::now(&offpay_operator::SystemClock).0 / 1000)
}

fn identifier(key: &PrivateKey) -> String {
    String::from_utf8(key.principal().to_identifier(Encoding::Base64)).unwrap()
}

fn signed(key: &PrivateKey, purpose: &str, who: &str, body: Value) -> Value {
    let time = now().0;
    let payload = request_payload(purpose, who, time, &body);
    let signature = sign_statement(key, purpose, &payload).unwrap();
    json!({ "who": who, "time": time, "signature": signature, "body": body })
}

async fn add_user(server: &InProcess, name: &str, role: &str) -> String {
    let (status, answer) = server
        .post("/api/v1/users", json!({ "name": name, "role": role }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

async fn ok(server: &InProcess, path: &str, body: Value) -> Value {
    let (status, answer) = server.post(path, body).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer
}

async fn device(server: &InProcess, path: &str, body: Value) -> (StatusCode, Value) {
    server
        .call("POST", path, Some(&body.to_string()), None)
        .await
}

fn offer(merchant: &str, nonce: u32, at: UnixSeconds, amount: &str) -> Offer {
    Offer {
        merchant: merchant.into(),
        currency: "KES".into(),
        product: "Pocari Sweat".into(),
        product_class: "drink".into(),
        date: at.date(),
        timestamp: at.stamp(),
        amount: amount.into(),
        app_domain: "vend".into(),
        nonce: format!("{nonce:032x}"),
    }
}

fn microcheck(payer: &PrivateKey, credential: &str, offer: Offer) -> DepositItem {
    let check = offpay_microcheck::microcheck::write(payer, &offer.terms().unwrap()).unwrap();
    DepositItem {
        offer,
        microcheck: String::from_utf8(check.text().to_vec()).unwrap(),
        credentials: vec![credential.to_owned()],
    }
}

async fn deposit(server: &InProcess, merchant: &PrivateKey, items: &[DepositItem]) -> Vec<Value> {
    let body = serde_json::to_value(DepositBody::pack(items)).unwrap();
    let (status, answer) = device(
        server,
        "/microcheck/v1/deposit",
        signed(merchant, "deposit", "vm-1", body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["results"].as_array().unwrap().clone()
}

async fn refresh(server: &InProcess, payer: &PrivateKey) -> (StatusCode, Value) {
    device(
        server,
        "/microcheck/v1/payer/refresh",
        signed(payer, "refresh", "alice", json!({})),
    )
    .await
}

async fn balance(server: &InProcess, account: &str) -> String {
    let (status, answer) = server.get(&format!("/api/v1/accounts/{account}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["balance"].as_str().unwrap().to_owned()
}

/// The schema's type names `value` has (a minimal check: types, required fields, items).
fn conforms(schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !allowed.is_empty() && !allowed.contains(&kind) {
        out.push(format!("{at}: {kind}, declared {allowed:?}"));
    }
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap();
        if value.get(name).is_none() {
            out.push(format!("{at}: no {name}"));
        }
    }
    if let (Some(properties), Some(object)) = (schema["properties"].as_object(), value.as_object())
    {
        for (name, field) in object {
            if let Some(declared) = properties.get(name) {
                conforms(declared, field, &format!("{at}.{name}"), out);
            }
        }
    }
    if let Some(items) = value.as_array() {
        for (index, item) in items.iter().enumerate() {
            conforms(&schema["items"], item, &format!("{at}[{index}]"), out);
        }
    }
}

/// Checks `answer` of `method template` against the OpenAPI document the server serves.
async fn declared(server: &InProcess, method: &str, template: &str, answer: &Value) {
    let (_, document) = server.get("/api/v1/openapi.json").await;
    let schema = &document["paths"][format!("/api/v1{template}")][method]["responses"]["200"]["content"]
        ["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {template} declares its answer"
    );
    let mut out = Vec::new();
    conforms(schema, answer, template, &mut out);
    assert!(out.is_empty(), "{method} {template}: {out:#?}");
}

async fn a_blocked_payer_gets_no_credential_and_its_merchants_are_still_paid(backend: Backend) {
    let server = InProcess::start(backend).await;
    let support = add_user(&server, "sam", "support").await;
    let auditor = add_user(&server, "aud", "auditor").await;
    let finance = add_user(&server, "fin", "finance").await;
    let provisioning = add_user(&server, "pat", "provisioning").await;
    ok(
        &server,
        "/api/v1/microcheck/strategy",
        json!({
            "version": 1, "app_domain": "vend", "currency": "KES",
            "tiers": [{ "name": "test", "amount_max": "5.00", "validity_seconds": 86_400,
                        "per_merchant_day_max": 50 }],
            "merchant_validity_seconds": 86_400, "adulthood_validity_seconds": 86_400,
            "transaction_amount_max": "50.00", "transaction_validity_seconds": 900,
            "machine_day_purchases_max": 1000, "travel_speed_kmh_max": 300,
        }),
    )
    .await;
    let payer = PrivateKey::ed25519_from_seed(&[51; 32]);
    let merchant = PrivateKey::ed25519_from_seed(&[52; 32]);
    ok(
        &server,
        "/api/v1/microcheck/payers",
        json!({ "name": "alice", "key": identifier(&payer) }),
    )
    .await;
    ok(
        &server,
        "/api/v1/transfers",
        json!({ "transfers": [{ "id": "fund:alice", "debit_account": "operator:float",
                 "credit_account": "mc:payer:alice", "amount": "20.00" }] }),
    )
    .await;
    ok(
        &server,
        "/api/v1/microcheck/merchants",
        json!({ "id": "vm-1", "key": identifier(&merchant) }),
    )
    .await;
    let (status, answer) = refresh(&server, &payer).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let credential = answer["credentials"][0].as_str().unwrap().to_owned();

    // Two purchases made offline: one a minute before the block, one a minute after it.
    let blocked_from = now();
    let before = microcheck(
        &payer,
        &credential,
        offer("vm-1", 1, UnixSeconds(blocked_from.0 - 60), "0.83"),
    );
    let after = microcheck(
        &payer,
        &credential,
        offer("vm-1", 2, blocked_from.plus(60), "0.83"),
    );

    // Only customer care (and admins) may block; the auditor and finance are refused.
    let block = "/api/v1/microcheck/payers/alice/block";
    let body = json!({ "reason": "phone stolen, reported at the desk" }).to_string();
    for token in [&auditor, &finance, &provisioning] {
        let (status, answer) = server.call("POST", block, Some(&body), Some(token)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
    }
    let (_, payer_view) = server.get("/api/v1/microcheck/payers/alice").await;
    assert_eq!(
        payer_view["blocked"], false,
        "nothing changed: {payer_view}"
    );
    let (status, answer) = server
        .call("POST", block, Some(&body), Some(&support))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["blocked"], true, "{answer}");
    declared(&server, "post", "/microcheck/payers/{name}/block", &answer).await;
    assert!(
        answer["blocked_at"].as_str().unwrap().ends_with('Z'),
        "{answer}"
    );
    // A reason too long or with control characters is refused, nothing changed.
    let (status, answer) = server
        .call(
            "POST",
            block,
            Some(&json!({ "reason": "x".repeat(201) }).to_string()),
            Some(&support),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = server
        .call(
            "POST",
            "/api/v1/microcheck/payers/nobody/block",
            Some("{}"),
            Some(&support),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");

    // The blocked payer's device gets nothing online.
    let (status, answer) = refresh(&server, &payer).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"]["code"], "payer_blocked", "{answer}");
    let online = offer("vm-1", 3, now(), "9.00");
    let (status, answer) = device(
        &server,
        "/microcheck/v1/payer/transaction",
        signed(&payer, "transaction", "alice", json!({ "offer": online })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"]["code"], "payer_blocked", "{answer}");
    // A new device key does not lift the block.
    let new_key = PrivateKey::ed25519_from_seed(&[53; 32]);
    ok(
        &server,
        "/api/v1/microcheck/payers",
        json!({ "name": "alice", "key": identifier(&new_key) }),
    )
    .await;
    let (status, answer) = refresh(&server, &new_key).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["error"]["code"], "payer_blocked", "{answer}");

    // The machine deposits both microchecks: both paid from alice's account (approved under a
    // credential issued before the block); the one dated after the block is flagged.
    let results = deposit(&server, &merchant, &[before.clone(), after]).await;
    assert_eq!(results[0]["status"], "posted", "{results:?}");
    assert_eq!(results[1]["status"], "posted", "{results:?}");
    assert_eq!(results[0]["flags"], json!([]), "{results:?}");
    // (The new key registered above also retired the old one: a loss report's flag too.)
    let flags = results[1]["flags"].as_array().unwrap();
    assert!(flags.contains(&json!("spent_after_block")), "{results:?}");
    assert_eq!(balance(&server, "mc:merchant:vm-1").await, "1.66");
    assert_eq!(balance(&server, "mc:payer:alice").await, "18.34");
    let (_, flags) = server
        .get("/api/v1/fraud?rail=microcheck&subject=alice")
        .await;
    assert!(
        flags.to_string().contains("spent_after_block"),
        "the case is in the fraud queue: {flags}"
    );
    // The same microcheck again: refused, and the deposits list says why.
    let again = deposit(&server, &merchant, &[before]).await;
    assert_eq!(again[0]["code"], "already_deposited", "{again:?}");

    // The deposits list: newest first, each microcheck with its payer, amount and fate.
    let (status, deposits) = server
        .call(
            "GET",
            "/api/v1/microcheck/deposits?merchant=vm-1",
            None,
            Some(&auditor),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{deposits}");
    declared(&server, "get", "/microcheck/deposits", &deposits).await;
    let items = deposits["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{deposits}");
    assert_eq!(deposits["next_cursor"], Value::Null);
    let (newest, first) = (&items[0], &items[1]);
    assert_eq!(newest["refused"], 1, "{newest}");
    assert_eq!(newest["items"][0]["state"], "refused", "{newest}");
    assert_eq!(newest["items"][0]["code"], "already_deposited", "{newest}");
    assert_eq!(newest["items"][0]["payer"], "alice", "{newest}");
    assert_eq!(first["posted"], 2, "{first}");
    assert_eq!(first["items"][1]["payer"], "alice", "{first}");
    assert_eq!(first["items"][1]["amount"], "0.83", "{first}");
    assert_eq!(first["items"][1]["currency"], "KES", "{first}");
    assert!(
        first["items"][1]["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("spent_after_block")),
        "{first}"
    );
    assert_eq!(first["items"][0]["flags"], json!([]), "{first}");
    assert!(
        first["received_at"].as_str().unwrap().ends_with('Z'),
        "{first}"
    );
    // Filters, and a page of one with its cursor.
    let (_, refused) = server
        .get("/api/v1/microcheck/deposits?outcome=refused")
        .await;
    assert_eq!(refused["items"].as_array().unwrap().len(), 1, "{refused}");
    let (_, by_payer) = server.get("/api/v1/microcheck/deposits?payer=bob").await;
    assert_eq!(by_payer["items"], json!([]), "{by_payer}");
    let (_, page) = server.get("/api/v1/microcheck/deposits?limit=1").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = server
        .get(&format!(
            "/api/v1/microcheck/deposits?limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["items"][0]["posted"], 2, "{rest}");
    for bad in [
        "/api/v1/microcheck/deposits?outcome=maybe",
        "/api/v1/microcheck/deposits?merchant=a%20b",
        "/api/v1/microcheck/deposits?colour=red",
        "/api/v1/microcheck/strikes?all=perhaps",
    ] {
        let (status, answer) = server.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
    let (status, _) = server
        .call(
            "GET",
            "/api/v1/microcheck/deposits",
            None,
            Some(&provisioning),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "provisioning reads no deposits"
    );

    // The strikes list names the blocked payer with its reason; the payer list says blocked.
    let (_, strikes) = server.get("/api/v1/microcheck/strikes").await;
    declared(&server, "get", "/microcheck/strikes", &strikes).await;
    let alice = &strikes["items"][0];
    assert_eq!(alice["payer"], "alice", "{strikes}");
    assert_eq!(alice["blocked"], true, "{strikes}");
    assert_eq!(
        alice["block_reason"], "phone stolen, reported at the desk",
        "{strikes}"
    );
    assert_eq!(alice["strikes"], 0, "{strikes}");
    let (_, payers) = server.get("/api/v1/microcheck/payers").await;
    assert_eq!(payers["items"][0]["state"], "blocked", "{payers}");

    // Unblocked: credentials again; the strikes list (without all=true) is empty.
    let (status, answer) = server
        .call(
            "POST",
            "/api/v1/microcheck/payers/alice/unblock",
            None,
            Some(&support),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["blocked"], false, "{answer}");
    let (status, answer) = refresh(&server, &new_key).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, strikes) = server.get("/api/v1/microcheck/strikes").await;
    assert_eq!(strikes["items"], json!([]), "{strikes}");
    let (_, strikes) = server.get("/api/v1/microcheck/strikes?all=true").await;
    assert_eq!(strikes["items"][0]["effect"], "full limits", "{strikes}");

    // Both actions are in the audit log with the support user's name.
    let (_, audit) = server.get("/api/v1/audit?user=sam&limit=50").await;
    let text = audit.to_string();
    assert!(text.contains("/microcheck/payers/alice/block"), "{text}");
    assert!(text.contains("/microcheck/payers/alice/unblock"), "{text}");
}

async fn a_purses_syncs_are_listed_newest_first(backend: Backend) {
    use offpay_purse::Outcome;
    let server = InProcess::start(backend).await;
    let phone = "+254700000077";
    let answer = ok(&server, "/api/v1/purse/purses", json!({ "phone": phone })).await;
    let provisioning = hex::decode(answer["provisioning"].as_str().unwrap()).unwrap();
    let mut purse = offpay_purse::Purse::provision(
        &offpay_purse::Provisioning::decode(&provisioning).unwrap(),
        offpay_purse::Pin::parse("1234").unwrap(),
    );
    let path = format!("/api/v1/purse/purses/{}/syncs", phone.replace('+', "%2B"));
    let (_, empty) = server.get(&path).await;
    assert_eq!(empty["items"], json!([]), "{empty}");
    ok(
        &server,
        &format!("/api/v1/purse/purses/{}/float", phone.replace('+', "%2B")),
        json!({ "amount": "500", "memo": "float" }),
    )
    .await;
    for _ in 0..3 {
        let Outcome::SyncUpload { upload, .. } = purse.start_sync(offpay_purse::Timestamp(now().0))
        else {
            panic!("a sync upload")
        };
        let response = offpay_server::router(server.state.clone())
            .oneshot(
                Request::builder()
                    .method("POST")
                    .uri("/purse/v1/sync")
                    .header("content-type", "application/octet-stream")
                    .body(Body::from(upload))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let answer = response.into_body().collect().await.unwrap().to_bytes();
        purse.apply_answer(&answer).unwrap();
    }
    let (status, syncs) = server.get(&format!("{path}?limit=2")).await;
    assert_eq!(status, StatusCode::OK, "{syncs}");
    declared(&server, "get", "/purse/purses/{phone}/syncs", &syncs).await;
    // The check is not a rubber stamp: a wrong type and a missing field are caught.
    let (_, document) = server.get("/api/v1/openapi.json").await;
    let mut out = Vec::new();
    conforms(
        &document["paths"]["/api/v1/purse/purses/{phone}/syncs"]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"],
        &json!({ "items": [{ "sequence": "one" }], "next_cursor": null }),
        "syncs",
        &mut out,
    );
    assert!(out.len() > 5, "{out:?}");
    let items = syncs["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{syncs}");
    assert!(
        items[0]["sequence"].as_u64() > items[1]["sequence"].as_u64(),
        "{syncs}"
    );
    // The newest sync reported the float the purse applied at the sync before.
    assert_eq!(items[0]["reported_balance"], "500.00", "{syncs}");
    assert_eq!(items[0]["shadow_balance"], "500.00", "{syncs}");
    assert_eq!(items[0]["balances_agree"], true, "{syncs}");
    assert_eq!(items[0]["currency"], "KES", "{syncs}");
    assert!(items[0]["synced_at"].as_str().unwrap().ends_with('Z'));
    let cursor = syncs["next_cursor"].as_str().unwrap();
    let (_, rest) = server.get(&format!("{path}?limit=2&cursor={cursor}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["items"][0]["reported_balance"], "0.00", "{rest}");
    assert_eq!(rest["next_cursor"], Value::Null, "{rest}");
    let (status, _) = server.get(&format!("{path}?cursor=c1ff")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = server
        .get("/api/v1/purse/purses/%2B254700000078/syncs")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Each story runs on SQLite, and on a fresh PostgreSQL database when `OFFPAY_TEST_DATABASE_URL`
/// is set.
macro_rules! on_every_backend {
    ($($story:ident),* $(,)?) => {
        mod every_backend {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $story() {
                    for backend in super::Backend::all(stringify!($story)) {
                        super::$story(backend).await;
                    }
                }
            )*
        }
    };
}

on_every_backend!(
    a_blocked_payer_gets_no_credential_and_its_merchants_are_still_paid,
    a_purses_syncs_are_listed_newest_first,
);
