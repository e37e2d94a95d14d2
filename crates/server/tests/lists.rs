//! The list and search API: one cursor style for every list (each item seen exactly once across
//! pages), filters, search by each kind of id, the customer view across rails, fraud case
//! decisions (audited, role-checked), and bad paging input refused with nothing changed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::StatusCode;
use offpay_ledger::{Batch, Timestamp};
use offpay_operator::{FraudFlag, ManualClock, SeededEntropy};
use offpay_server::Inputs;
use offpay_test_support::{Backend, InProcess};
use serde_json::{Value, json};

const PHONE: &str = "+254700000001";
const OTHER_PHONE: &str = "+254700000002";
const SMS_ACCOUNT: &str = "111100002222";
/// 2023-11-14T22:13:20Z.
const START_MS: u64 = 1_700_000_000_000;

async fn start(backend: Backend) -> (InProcess, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp(START_MS)));
    let inputs = Inputs {
        clock: clock.clone(),
        entropy: Arc::new(SeededEntropy::from_seed(23)),
    };
    (InProcess::start_with(backend, inputs).await, clock)
}

async fn ok(server: &InProcess, path: &str) -> Value {
    let (status, body) = server.get(path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

async fn posted(server: &InProcess, path: &str, body: Value) -> Value {
    let (status, answer) = server.post(path, body).await;
    assert!(status.is_success(), "POST {path}: {status} {answer}");
    answer
}

/// Walks a list page by page with `limit`, returning every item's `field` and the page count.
async fn walk(server: &InProcess, path: &str, limit: usize, field: &str) -> (Vec<String>, usize) {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("{path}{separator}limit={limit}");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page = ok(server, &url).await;
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= limit, "{page}");
        for item in items {
            seen.push(
                item[field]
                    .as_str()
                    .map_or_else(|| item[field].to_string(), str::to_owned),
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 100, "the walk ends");
    }
    (seen, pages)
}

fn once(seen: &[String]) -> BTreeSet<String> {
    let set: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(set.len(), seen.len(), "an item came twice: {seen:?}");
    set
}

async fn paging_walks_every_list_and_sees_each_item_once(backend: Backend) {
    let (server, clock) = start(backend).await;
    for index in 0..7 {
        posted(
            &server,
            "/api/v1/accounts",
            json!({ "id": format!("pg:{index}"), "kind": "customer" }),
        )
        .await;
    }
    posted(
        &server,
        "/api/v1/accounts",
        json!({ "id": "pg:ugx", "kind": "customer", "currency": "UGX" }),
    )
    .await;
    posted(
        &server,
        "/api/v1/accounts",
        json!({ "id": "float", "kind": "operator_float" }),
    )
    .await;
    let (seen, pages) = walk(&server, "/api/v1/accounts?prefix=pg:", 3, "id").await;
    assert_eq!(once(&seen).len(), 8, "{seen:?}");
    assert!(pages >= 3, "8 items at 3 a page is 3 pages");
    let (seen, _) = walk(&server, "/api/v1/accounts?prefix=pg:&currency=UGX", 2, "id").await;
    assert_eq!(seen, vec!["pg:ugx"]);

    for index in 0..5 {
        posted(
            &server,
            "/api/v1/purse/purses",
            json!({ "phone": format!("+25470000010{index}") }),
        )
        .await;
    }
    let (seen, _) = walk(&server, "/api/v1/purse/purses", 2, "phone").await;
    assert_eq!(once(&seen).len(), 5);
    posted(
        &server,
        "/api/v1/purse/purses/+254700000103/block",
        json!({ "blocked": true }),
    )
    .await;
    let (seen, _) = walk(&server, "/api/v1/purse/purses?state=blocked", 2, "phone").await;
    assert_eq!(seen, vec!["+254700000103"]);
    let keys = ok(&server, "/api/v1/purse/scheme-key").await;
    assert_eq!(keys["purses_provisioned"], 5, "{keys}");
    assert_eq!(keys["purses_blocked"], 1, "{keys}");
    assert!(keys["scheme_epoch"].is_u64(), "{keys}");

    // Transfers: eleven from the float to pg:0 and pg:1, a minute apart.
    for index in 0..11u64 {
        clock.advance_ms(60_000);
        let credit = if index % 2 == 0 { "pg:0" } else { "pg:1" };
        posted(
            &server,
            "/api/v1/transfers",
            json!({ "transfers": [{ "id": format!("t{index:02}"), "debit_account": "float",
                    "credit_account": credit, "amount": format!("{}.00", index + 1) }] }),
        )
        .await;
    }
    let (seen, _) = walk(&server, "/api/v1/transfers", 4, "id").await;
    assert_eq!(once(&seen).len(), 11, "every transfer once: {seen:?}");
    let (seen, _) = walk(&server, "/api/v1/transfers?account=pg:0", 2, "id").await;
    assert_eq!(
        seen,
        vec!["t10", "t08", "t06", "t04", "t02", "t00"],
        "newest first"
    );
    let (seen, _) = walk(&server, "/api/v1/transfers?min=3.00&max=5.00", 10, "id").await;
    assert_eq!(once(&seen), ["t02", "t03", "t04"].map(String::from).into());
    // t00 at START + 1 min ... t10 at START + 11 min; from inclusive, to exclusive.
    let (seen, _) = walk(
        &server,
        "/api/v1/transfers?from=2023-11-14T22:15:20Z&to=2023-11-14T22:17:20.000Z",
        10,
        "id",
    )
    .await;
    assert_eq!(once(&seen), ["t01", "t02"].map(String::from).into());
    let page = ok(&server, "/api/v1/transfers?account=pg:0&limit=1").await;
    assert_eq!(page["items"][0]["committed_at"], "2023-11-14T22:24:20.000Z");
    assert_eq!(page["items"][0]["rail"], "ledger");
    assert_eq!(page["items"][0]["amount"], "11.00");
    assert_eq!(page["items"][0]["currency"], "KES");
    let (seen, _) = walk(&server, "/api/v1/transfers?rail=purse", 10, "id").await;
    assert!(seen.is_empty(), "no purse has moved money: {seen:?}");
    let (status, body) = server.get("/api/v1/transfers?account=nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

async fn bad_paging_input_is_refused_and_changes_nothing(backend: Backend) {
    let (server, _) = start(backend).await;
    posted(
        &server,
        "/api/v1/accounts",
        json!({ "id": "alice", "kind": "customer" }),
    )
    .await;
    let before = ok(&server, "/api/v1/audit?limit=500").await;
    for (path, code) in [
        ("/api/v1/accounts?limit=0", "invalid_limit"),
        ("/api/v1/accounts?limit=501", "invalid_limit"),
        ("/api/v1/accounts?limit=ten", "invalid_limit"),
        ("/api/v1/accounts?cursor=zz", "invalid_cursor"),
        ("/api/v1/purse/purses?cursor=c1ff", "invalid_cursor"),
        // A cursor of another list (an account id, not a purse key).
        ("/api/v1/purse/purses?cursor=c1616c696365", "invalid_cursor"),
        ("/api/v1/accounts?colour=red", "unknown_parameter"),
        ("/api/v1/fraud?state=closed", "invalid_state"),
        ("/api/v1/fraud?rail=bank", "invalid_rail"),
        ("/api/v1/transfers?from=yesterday", "invalid_time"),
        ("/api/v1/transfers?min=lots", "invalid_amount"),
        ("/api/v1/transfers?rail=bank", "invalid_rail"),
        ("/api/v1/sms/envelopes?state=lost", "invalid_state"),
        ("/api/v1/search?q=", "invalid_query"),
        ("/api/v1/customers/alice", "invalid_phone"),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().len() > 10,
            "{path}: a clear message: {body}"
        );
    }
    let after = ok(&server, "/api/v1/audit?limit=500").await;
    assert_eq!(before["items"], after["items"], "nothing was written");
    let (status, _) = server.get("/api/v1/accounts/alice").await;
    assert_eq!(status, StatusCode::OK);
}

/// A purse, an SMS-TAN account bound to the same phone with an envelope, a ledger account.
async fn customer_on_two_rails(server: &InProcess) -> String {
    posted(server, "/api/v1/purse/purses", json!({ "phone": PHONE })).await;
    posted(
        server,
        "/api/v1/sms/accounts",
        json!({ "receive_number": SMS_ACCOUNT, "bound_phones": ["+254 700 000 001"], "notify_phone": PHONE }),
    )
    .await;
    posted(
        server,
        "/api/v1/sms/accounts",
        json!({ "receive_number": "555500001111", "bound_phones": [OTHER_PHONE] }),
    )
    .await;
    let issued = posted(
        server,
        "/api/v1/sms/envelopes/issue",
        json!({ "count": 2, "rows": 20 }),
    )
    .await;
    let euin = issued["euins"][0].as_str().unwrap().to_owned();
    posted(
        server,
        &format!("/api/v1/sms/envelopes/{euin}/bind"),
        json!({ "account": SMS_ACCOUNT }),
    )
    .await;
    euin
}

async fn search_finds_each_kind_and_the_customer_view_spans_rails(backend: Backend) {
    let (server, _) = start(backend).await;
    let euin = customer_on_two_rails(&server).await;
    let kinds = |body: &Value| -> BTreeSet<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                format!(
                    "{}:{}",
                    item["kind"].as_str().unwrap(),
                    item["id"].as_str().unwrap()
                )
            })
            .collect()
    };
    // A phone typed with spaces and dashes finds the purse and the SMS-TAN account bound to it.
    let found = ok(&server, "/api/v1/search?q=%2B254%20700-000-001").await;
    assert_eq!(
        kinds(&found),
        [
            format!("purse:{PHONE}"),
            format!("sms_account:{SMS_ACCOUNT}")
        ]
        .into(),
        "{found}"
    );
    for item in found["items"].as_array().unwrap() {
        for field in ["rail", "label", "state", "api"] {
            assert!(!item[field].is_null(), "{field} in {item}");
        }
        let (status, body) = server.get(item["api"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "the api link works: {body}");
    }
    let found = ok(&server, &format!("/api/v1/search?q={SMS_ACCOUNT}")).await;
    assert!(
        kinds(&found).contains(&format!("sms_account:{SMS_ACCOUNT}")),
        "{found}"
    );
    let found = ok(&server, &format!("/api/v1/search?q={euin}")).await;
    assert_eq!(
        kinds(&found),
        [format!("envelope:{euin}")].into(),
        "{found}"
    );
    assert_eq!(found["items"][0]["state"], "active");
    let found = ok(
        &server,
        &format!("/api/v1/search?q=purse:{PHONE}").replace('+', "%2B"),
    )
    .await;
    assert_eq!(
        kinds(&found),
        [format!("ledger_account:purse:{PHONE}")].into(),
        "{found}"
    );
    let shadow = ok(&server, &format!("/api/v1/purse/purses/{PHONE}")).await;
    let purse_id = shadow["purse_id"].as_u64().unwrap();
    let found = ok(&server, &format!("/api/v1/search?q={purse_id}")).await;
    assert!(kinds(&found).contains(&format!("purse:{PHONE}")), "{found}");
    let found = ok(&server, "/api/v1/search?q=nothing-like-this").await;
    assert_eq!(found["items"], json!([]));

    // The customer view.
    let view = ok(&server, "/api/v1/customers/254700000001").await;
    assert_eq!(view["phone"], PHONE);
    assert_eq!(view["purses"][0]["phone"], PHONE, "{view}");
    assert_eq!(view["purses"][0]["state"], "active");
    let accounts: Vec<&str> = view["sms_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["receive_number"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, vec![SMS_ACCOUNT], "not the other phone's account");
    assert_eq!(view["sms_accounts"][0]["balance"], "0.00");
    assert_eq!(view["envelopes"][0]["euin"], euin.as_str());
    let ledger: BTreeSet<&str> = view["ledger_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(ledger.contains(format!("purse:{PHONE}").as_str()), "{view}");
    assert!(
        ledger.contains(format!("sms:{SMS_ACCOUNT}").as_str()),
        "{view}"
    );
    assert_eq!(view["complete"], true);
    assert_eq!(view["not_linked"].as_array().unwrap().len(), 2);
    let (status, body) = server.get("/api/v1/customers/+254799999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "unknown_customer");

    // SMS-TAN lists and their filters.
    let (seen, _) = walk(&server, "/api/v1/sms/envelopes", 1, "euin").await;
    assert_eq!(once(&seen).len(), 2);
    let (seen, _) = walk(
        &server,
        "/api/v1/sms/envelopes?state=unallocated",
        5,
        "euin",
    )
    .await;
    assert_eq!(seen.len(), 1);
    assert_ne!(seen[0], euin);
    let (seen, _) = walk(&server, "/api/v1/sms/accounts", 1, "receive_number").await;
    assert_eq!(once(&seen).len(), 2);
}

async fn raise_flag(server: &InProcess, subject: &str) -> String {
    let flag = FraudFlag::new(
        "purse",
        "duplicate_counter",
        subject,
        "two entries with counter 7",
        json!({ "counter": 7 }),
        Timestamp(START_MS),
    );
    server
        .state
        .ledger
        .commit(
            vec![Batch {
                operations: vec![flag.operation("7")],
            }],
            Timestamp(START_MS),
        )
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    flag.key("7")
}

async fn add_user(server: &InProcess, name: &str, role: &str) -> String {
    let answer = posted(
        server,
        "/api/v1/users",
        json!({ "name": name, "role": role }),
    )
    .await;
    answer["token"].as_str().unwrap().to_owned()
}

async fn fraud_cases_are_decided_audited_and_role_checked(backend: Backend) {
    let (server, _) = start(backend).await;
    customer_on_two_rails(&server).await;
    let id = raise_flag(&server, PHONE).await;
    let path = |action: &str| format!("/api/v1/fraud/{}/{action}", id.replace('+', "%2B"));
    let support = add_user(&server, "sue", "support").await;
    let finance = add_user(&server, "fay", "finance").await;
    let note = json!({ "note": "counter reuse confirmed with the agent" }).to_string();

    let open = ok(&server, "/api/v1/fraud?state=open").await;
    assert_eq!(open["items"][0]["id"], id.as_str());
    assert_eq!(open["items"][0]["raised_at"], "2023-11-14T22:13:20.000Z");
    let view = ok(
        &server,
        &format!("/api/v1/customers/{PHONE}").replace('+', "%2B"),
    )
    .await;
    assert_eq!(
        view["fraud_flags"][0]["id"],
        id.as_str(),
        "the customer view names the case"
    );

    // Finance may read the queue but not decide.
    let (status, body) = server
        .call("POST", &path("clear"), Some(&note), Some(&finance))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A bad note changes nothing.
    let (status, body) = server
        .call(
            "POST",
            &path("clear"),
            Some(r#"{"note":"  "}"#),
            Some(&support),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_note");
    assert_eq!(
        ok(&server, "/api/v1/fraud?state=open").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (status, body) = server
        .call("POST", &path("escalate"), Some(&note), Some(&support))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "escalated");
    assert_eq!(body["decisions"][0]["by"], "sue");
    let (status, body) = server
        .call("POST", &path("escalate"), Some(&note), Some(&support))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "case_decided");
    let (status, body) = server
        .call("POST", &path("clear"), Some(r#"{"note":"refunded"}"#), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = server
        .call(
            "POST",
            &path("clear"),
            Some(r#"{"note":"refunded"}"#),
            Some(&server.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "cleared");
    assert_eq!(body["decisions"][1]["by"], "admin");
    assert_eq!(body["decisions"][1]["note"], "refunded");

    let cleared = ok(&server, "/api/v1/fraud?state=cleared").await;
    assert_eq!(cleared["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        ok(&server, "/api/v1/fraud?state=open").await["items"],
        json!([])
    );
    let view = ok(
        &server,
        &format!("/api/v1/customers/{PHONE}").replace('+', "%2B"),
    )
    .await;
    assert_eq!(
        view["fraud_flags"],
        json!([]),
        "a cleared case is no longer shown as open"
    );
    let (status, body) = server
        .call(
            "POST",
            "/api/v1/fraud/purse:nothing/clear",
            Some(&note),
            Some(&support),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Both decisions are in the audit log, with who made them.
    let log = ok(&server, "/api/v1/audit?limit=500").await;
    let decided: Vec<(String, String)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| {
            entry["action"]
                .as_str()
                .unwrap_or_default()
                .starts_with("POST /api/v1/fraud/")
        })
        .filter(|entry| entry["outcome"] == "committed")
        .map(|entry| {
            (
                entry["user"].as_str().unwrap_or_default().to_owned(),
                entry["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        decided.contains(&("sue".into(), "POST /api/v1/fraud/{id}/escalate".into()))
            && decided.contains(&("admin".into(), "POST /api/v1/fraud/{id}/clear".into())),
        "{decided:?} in {log}"
    );
    // The audit list filters by user and time.
    let sues = ok(&server, "/api/v1/audit?user=sue&limit=500").await;
    let users: BTreeSet<&str> = sues["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["sue"].into(), "{sues}");
    assert_eq!(sues["items"][0]["at"], "2023-11-14T22:13:20.000Z");
    let later = ok(&server, "/api/v1/audit?from=2023-11-14T22:13:21Z").await;
    assert_eq!(
        later["items"],
        json!([]),
        "every entry is at the start time"
    );
}

offpay_test_support::on_every_backend_async!(
    paging_walks_every_list_and_sees_each_item_once,
    bad_paging_input_is_refused_and_changes_nothing,
    search_finds_each_kind_and_the_customer_view_spans_rails,
    fraud_cases_are_decided_audited_and_role_checked,
);
