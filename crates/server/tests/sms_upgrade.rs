//! Upgrading an operator whose SMS-TAN records were written before record MACs: the first start
//! seals them (every account pays again), a start over a database whose marker was removed seals
//! nothing, and an operator's forced sealing does. On each backend.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

mod common;

use axum::http::StatusCode;
use common::*;
use offpay_ledger::{Batch, Timestamp};
use offpay_operator::Loaded;
use offpay_server::config::ServerConfig;
use offpay_server::open_store;
use offpay_sms_tan::AccountNumber;
use offpay_sms_tan::operator::records::{self, AccountRecord};
use offpay_sms_tan::operator::upgrade::{self, SealStage};
use offpay_test_support::Backend;
use serde_json::json;

const ACCOUNTS: [&str; 3] = ["111100002222", "901020377865", "555500001111"];

impl Node {
    /// Which of [`ACCOUNTS`] have authentic settings, as this server's rail reads them.
    async fn authentic(&self) -> Vec<bool> {
        let operator = self.state.rails.sms.operator();
        self.state
            .ledger
            .read(move |store| {
                Ok(ACCOUNTS
                    .iter()
                    .map(|number| {
                        let key = records::account_key(&AccountNumber::parse(number).unwrap());
                        let loaded = Loaded::<AccountRecord>::read(store, &key).unwrap();
                        loaded
                            .value
                            .unwrap()
                            .settings_authentic(operator.master(), &key)
                    })
                    .collect())
            })
            .await
            .unwrap()
    }

    async fn marker(&self) -> Option<upgrade::SealedMarker> {
        self.state
            .ledger
            .read(|store| Ok(upgrade::load_marker(store).unwrap().value))
            .await
            .unwrap()
    }
}

/// What an insider or an earlier release leaves: the named accounts' settings without a MAC,
/// and (optionally) no marker. Written straight into the database, the server stopped.
async fn strip(config: &ServerConfig, accounts: &'static [&'static str], remove_marker: bool) {
    let config = config.clone();
    // The blocking PostgreSQL client may not run on the test's runtime thread.
    tokio::task::spawn_blocking(move || strip_now(&config, accounts, remove_marker))
        .await
        .unwrap();
}

fn strip_now(config: &ServerConfig, accounts: &[&str], remove_marker: bool) {
    let mut store = open_store(config).unwrap();
    let mut operations = Vec::new();
    for number in accounts {
        let key = records::account_key(&AccountNumber::parse(number).unwrap());
        let loaded = Loaded::<AccountRecord>::read(store.as_mut(), &key).unwrap();
        let mut account = loaded.value.clone().unwrap();
        account.settings_mac = [0; 32];
        operations.push(loaded.write(&account).unwrap());
    }
    if remove_marker {
        let marker = upgrade::load_marker(store.as_mut()).unwrap();
        assert!(marker.value.is_some(), "every start leaves a marker");
        operations.push(marker.delete());
    }
    let results = store
        .commit(&[Batch { operations }], Timestamp(START_MS))
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test]
async fn an_upgraded_database_is_sealed_once_and_a_removed_marker_is_not_believed() {
    for backend in Backend::all("SMS-TAN upgrade sealing") {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        // The database the offline edits below go to (every start uses the same one).
        let config = config(root, &root.join("data-0"), &backend);
        {
            let node = start(root, 0, &backend).await;
            for number in ACCOUNTS {
                let (status, body) = node
                    .call(
                        "POST",
                        "/api/v1/sms/accounts",
                        Some(json!({ "receive_number": number })),
                    )
                    .await;
                assert!(status.is_success(), "{status} {body}");
            }
            assert_eq!(node.authentic().await, vec![true; 3]);
            let marker = node
                .marker()
                .await
                .expect("the first start writes the marker");
            assert_eq!((marker.stage, marker.accounts), (SealStage::Done, 0));
        }

        // An earlier release's database: no MAC anywhere, no marker. The start seals it.
        strip(&config, &ACCOUNTS, true).await;
        {
            let node = start(root, 1, &backend).await;
            assert_eq!(node.authentic().await, vec![true; 3]);
            let marker = node.marker().await.unwrap();
            assert_eq!((marker.stage, marker.accounts), (SealStage::Done, 3));
        }

        // An insider strips one account's MAC and removes the marker: the start seals nothing.
        strip(&config, &ACCOUNTS[..1], true).await;
        let node = start(root, 2, &backend).await;
        assert_eq!(node.authentic().await, vec![false, true, true]);
        assert!(node.marker().await.is_none());
        // The operator, having checked, forces it; a request without `force` changes nothing.
        let (status, body) = node
            .call(
                "POST",
                "/api/v1/sms/records/seal",
                Some(json!({ "force": false })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "force_required");
        assert_eq!(node.authentic().await, vec![false, true, true]);
        let (status, body) = node
            .call(
                "POST",
                "/api/v1/sms/records/seal",
                Some(json!({ "force": true })),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        assert_eq!(
            (body["accounts"].as_u64(), body["authentic"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(node.authentic().await, vec![true; 3]);
        assert_eq!(node.marker().await.unwrap().stage, SealStage::Done);
    }
}

/// Which of [`ACCOUNTS`] have an authentic spending window, and the window phase's marker.
async fn windows(node: &Node) -> (Vec<bool>, Option<upgrade::SealedMarker>) {
    let operator = node.state.rails.sms.operator();
    node.state
        .ledger
        .read(move |store| {
            let authentic = ACCOUNTS
                .iter()
                .map(|number| {
                    let key = records::account_key(&AccountNumber::parse(number).unwrap());
                    let loaded = Loaded::<AccountRecord>::read(store, &key).unwrap();
                    loaded
                        .value
                        .unwrap()
                        .spending_authentic(operator.master(), &key)
                })
                .collect();
            let marker =
                upgrade::load_phase_marker(store, upgrade::SealPhase::SpendingWindows).unwrap();
            Ok((authentic, marker.value))
        })
        .await
        .unwrap()
}

/// The named accounts' spending windows without a MAC and no window marker: what the release
/// before the window's MAC left (or an insider's edit). Written with the server stopped.
fn strip_windows_now(config: &ServerConfig, accounts: &[&str]) {
    let mut store = open_store(config).unwrap();
    let mut operations = Vec::new();
    for number in accounts {
        let key = records::account_key(&AccountNumber::parse(number).unwrap());
        let loaded = Loaded::<AccountRecord>::read(store.as_mut(), &key).unwrap();
        let mut account = loaded.value.clone().unwrap();
        account.spending_mac = [0; 32];
        operations.push(loaded.write(&account).unwrap());
    }
    let marker =
        upgrade::load_phase_marker(store.as_mut(), upgrade::SealPhase::SpendingWindows).unwrap();
    assert!(
        marker.value.is_some(),
        "every start leaves the window marker"
    );
    operations.push(marker.delete());
    let results = store
        .commit(&[Batch { operations }], Timestamp(START_MS))
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// Issue 18, the spending window's MAC: a database of the release before it (settings sealed,
/// the records marker done, windows without a MAC, no window marker) has its windows sealed at
/// the next start, in their own phase; an insider's stripped window beside sealed ones is not.
#[tokio::test]
async fn spending_windows_of_the_release_before_are_sealed_at_start() {
    for backend in Backend::all("SMS-TAN spending-window sealing") {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path();
        let config = config(root, &root.join("data-0"), &backend);
        {
            let node = start(root, 0, &backend).await;
            for number in ACCOUNTS {
                let (status, body) = node
                    .call(
                        "POST",
                        "/api/v1/sms/accounts",
                        Some(json!({ "receive_number": number })),
                    )
                    .await;
                assert!(status.is_success(), "{status} {body}");
            }
            let (authentic, marker) = windows(&node).await;
            assert_eq!(authentic, vec![true; 3]);
            assert_eq!(marker.unwrap().stage, SealStage::Done);
        }
        let stripped = config.clone();
        tokio::task::spawn_blocking(move || strip_windows_now(&stripped, &ACCOUNTS))
            .await
            .unwrap();
        {
            let node = start(root, 1, &backend).await;
            let (authentic, marker) = windows(&node).await;
            assert_eq!(authentic, vec![true; 3], "sealed at start");
            let marker = marker.unwrap();
            assert_eq!((marker.stage, marker.accounts), (SealStage::Done, 3));
            // The records phase was untouched: settings still authentic, its marker done.
            assert_eq!(node.authentic().await, vec![true; 3]);
        }
        let stripped = config.clone();
        tokio::task::spawn_blocking(move || strip_windows_now(&stripped, &ACCOUNTS[..1]))
            .await
            .unwrap();
        let node = start(root, 2, &backend).await;
        let (authentic, marker) = windows(&node).await;
        assert_eq!(
            authentic,
            vec![false, true, true],
            "the insider's window stays refused"
        );
        assert!(marker.is_none());
    }
}
