//! Issue 18, the bank's database administrator and the operator's settings: the SMS-TAN settings
//! record carries a MAC under the master key. Settings a DBA changed (a higher
//! `printed_recipe_max`, lower fees, no dialback default) stop the rail — answered 503
//! `settings_tampered`, a gateway keeps the message — and are raised as `record_tampered` until
//! an operator stores settings again; settings and envelopes an earlier release wrote without a
//! MAC are sealed once at start, each in its own phase. On each backend, across restarts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

mod common;

use axum::http::StatusCode;
use common::*;
use offpay_ledger::{Batch, Operation, RecordWrite, Timestamp};
use offpay_operator::Loaded;
use offpay_server::config::ServerConfig;
use offpay_server::open_store;
use offpay_sms_tan::operator::records::{self, EnvelopeRecord, SETTINGS_KEY};
use offpay_sms_tan::operator::settings::SealedSettings;
use offpay_sms_tan::operator::upgrade::{self, SealPhase, SealStage};
use offpay_test_support::Backend;
use serde_json::{Value, json};

fn settings_form(printed_recipe_max: &str) -> Value {
    json!({
        "version": 1,
        "fees": [{ "currency": "KES", "low": "10", "middle": "15", "high": "25" }],
        "dialback_defaults": [{ "currency": "KES", "amount": "500000" }],
        "printed_recipe_max": [{ "currency": "KES", "amount": printed_recipe_max }],
        "rates": [], "hard_currencies": [], "utc_offset_minutes": 0, "euin_prefix": 263,
        "operator_name": "offpay", "sms_number": "+254700000000"
    })
}

/// Runs `edit` on the stored bytes of each of `keys` (the server stopped) and writes the result
/// back as a database administrator would: no version check, `None` deletes.
async fn dba(config: &ServerConfig, keys: Vec<String>, edit: fn(&str, Value) -> Option<Value>) {
    let config = config.clone();
    // The blocking PostgreSQL client may not run on the test's runtime thread.
    tokio::task::spawn_blocking(move || {
        let mut store = open_store(&config).unwrap();
        let mut operations = Vec::new();
        for key in keys {
            let stored = store
                .records(records::NAMESPACE, &key, None, 1)
                .unwrap()
                .into_iter()
                .find(|record| record.key == key)
                .unwrap_or_else(|| panic!("no record {key}"));
            let json: Value = serde_json::from_slice(&stored.value).unwrap();
            operations.push(Operation::PutRecord(RecordWrite {
                namespace: records::NAMESPACE.into(),
                key: key.clone(),
                value: edit(&key, json).map(|json| json.to_string().into_bytes()),
                expected_version: None,
            }));
        }
        let results = store
            .commit(&[Batch { operations }], Timestamp(START_MS))
            .unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn settings_changed_in_the_database_stop_the_rail_until_an_operator_stores_them() {
    for backend in Backend::all("SMS-TAN sealed settings") {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        let config = config(root, &root.join("data-0"), &backend);
        {
            let node = start(root, 0, &backend).await;
            let (status, body) = node
                .call(
                    "POST",
                    "/api/v1/sms/settings",
                    Some(settings_form("999.99")),
                )
                .await;
            assert!(status.is_success(), "{status} {body}");
        }
        // The DBA raises the printed-recipe ceiling a hundredfold (imported rows would then pay
        // what their printed checksums cannot bound).
        dba(&config, vec![SETTINGS_KEY.into()], |_, mut json| {
            json["printed_recipe_max"] = json!([{ "currency": "KES", "minor": 9_999_999 }]);
            Some(json)
        })
        .await;
        let node = start(root, 1, &backend).await;
        let (status, body) = node.call("GET", "/api/v1/sms/settings", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "settings_tampered", "{body}");
        // A message is not acknowledged (the gateway delivers it again later) and nothing moves.
        let (status, body) = node.sms("m-1", "BAL 26399912345 1 123").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(
            node.tampered_flags().await,
            1,
            "raised once, however often read"
        );
        // The operator stores settings again (through the API, with its controls): in force.
        let (status, body) = node
            .call(
                "POST",
                "/api/v1/sms/settings",
                Some(settings_form("999.99")),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        let (status, body) = node.call("GET", "/api/v1/sms/settings", None).await;
        assert!(status.is_success(), "{status} {body}");
        assert_eq!(body["printed_recipe_max"][0]["amount"], "999.99", "{body}");
        let (status, body) = node.sms("m-2", "BAL 26399912345 1 123").await;
        assert!(status.is_success(), "{status} {body}");
    }
}

/// An earlier release's database: settings and envelopes without a MAC and no marker for their
/// phases. The start seals them, each phase with its own marker; the settings are then in force.
#[tokio::test]
async fn settings_and_envelopes_of_an_earlier_release_are_sealed_at_start() {
    for backend in Backend::all("SMS-TAN envelope and settings sealing") {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        let config = config(root, &root.join("data-0"), &backend);
        let euin = {
            let node = start(root, 0, &backend).await;
            let (status, body) = node
                .call("POST", "/api/v1/sms/settings", Some(settings_form("500")))
                .await;
            assert!(status.is_success(), "{status} {body}");
            let (status, body) = node
                .call(
                    "POST",
                    "/api/v1/sms/envelopes/issue",
                    Some(json!({ "count": 1, "rows": 20 })),
                )
                .await;
            assert!(status.is_success(), "{status} {body}");
            body["euins"][0].as_str().unwrap().to_owned()
        };
        let envelope_key = format!("env:{euin}");
        dba(
            &config,
            vec![
                SETTINGS_KEY.into(),
                envelope_key.clone(),
                upgrade::SETTINGS_SEALED_MARKER_KEY.into(),
                upgrade::ENVELOPES_SEALED_MARKER_KEY.into(),
            ],
            |key, mut json| {
                if key.ends_with("-sealed") {
                    return None;
                }
                json.as_object_mut().unwrap().remove("mac");
                Some(json)
            },
        )
        .await;
        let node = start(root, 1, &backend).await;
        let (status, body) = node.call("GET", "/api/v1/sms/settings", None).await;
        assert!(status.is_success(), "{status} {body}");
        assert_eq!(body["printed_recipe_max"][0]["amount"], "500.00", "{body}");
        let operator = node.state.rails.sms.operator();
        let key = envelope_key.clone();
        let (settings, envelope, markers) = node
            .state
            .ledger
            .read(move |store| {
                let settings = Loaded::<SealedSettings>::read(store, SETTINGS_KEY).unwrap();
                let envelope = Loaded::<EnvelopeRecord>::read(store, &key).unwrap();
                let markers = [SealPhase::Envelopes, SealPhase::Settings].map(|phase| {
                    upgrade::load_phase_marker(store, phase)
                        .unwrap()
                        .value
                        .unwrap()
                });
                Ok((settings.value.unwrap(), envelope.value.unwrap(), markers))
            })
            .await
            .unwrap();
        assert!(settings.authentic(operator.master()));
        assert!(envelope.authentic(operator.master(), &envelope_key));
        let [envelopes_marker, settings_marker] = markers;
        assert_eq!(
            (envelopes_marker.stage, envelopes_marker.envelopes),
            (SealStage::Done, 1)
        );
        assert_eq!(
            (settings_marker.stage, settings_marker.settings),
            (SealStage::Done, 1)
        );
        assert!(envelopes_marker.authentic_for(operator.master(), SealPhase::Envelopes));
        assert!(!envelopes_marker.authentic_for(operator.master(), SealPhase::Settings));
    }
}
