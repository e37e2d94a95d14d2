//! The purse scheme key's rotation through the operator API: the first is made, a second within
//! the longest purse validity is refused (`rotation_too_soon`, 409, nothing changed), one after it
//! is made, and `force` makes one at once (a compromised key). Both backends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

use std::sync::Arc;

use axum::http::StatusCode;
use offpay_ledger::Timestamp;
use offpay_operator::{ManualClock, SeededEntropy};
use offpay_server::Inputs;
use offpay_test_support::{Backend, InProcess};
use serde_json::json;

const DAY_MS: u64 = 86_400_000;
const ROTATE: &str = "/api/v1/purse/scheme-key/rotate";

#[tokio::test]
async fn a_rotation_sooner_than_the_longest_validity_is_refused_unless_forced() {
    for backend in Backend::all("purse_rotation") {
        let clock = Arc::new(ManualClock::new(Timestamp(1_780_000_000_000)));
        let server = InProcess::start_with(
            backend,
            Inputs {
                clock: clock.clone(),
                entropy: Arc::new(SeededEntropy::from_seed(5)),
            },
        )
        .await;
        // An empty body is a normal rotation.
        let (status, answer) = server.call("POST", ROTATE, None, Some(&server.token)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["scheme_epoch"], 2);

        clock.advance_ms(29 * DAY_MS);
        let (status, answer) = server.post(ROTATE, json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["error"]["code"], "rotation_too_soon", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("UTC"), "the safe date is named: {message}");
        let (status, answer) = server.post(ROTATE, json!({ "forse": true })).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "a misspelt field: {answer}"
        );

        // Nothing changed: a day later (30 days after the first) the next epoch is 3.
        clock.advance_ms(DAY_MS);
        let (status, answer) = server.post(ROTATE, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["scheme_epoch"], 3);

        let (status, answer) = server.post(ROTATE, json!({ "force": true })).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["scheme_epoch"], 4);
        assert_eq!(answer["generation_epoch"], 3);
    }
}
