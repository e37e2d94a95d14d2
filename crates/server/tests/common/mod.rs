//! A server of the SMS-TAN rail started in this process and started again over the same ledger
//! (each start with its own copy of the data directory), driven through its router: the restart
//! harness of the sealing and upgrade tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use offpay_ledger::Timestamp;
use offpay_operator::{ManualClock, SeededEntropy};
use offpay_server::config::{Overrides, ServerConfig};
use offpay_server::{AppState, Inputs, Server, router};
use offpay_test_support::Backend;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The clock of every start.
pub const START_MS: u64 = 1_790_000_000_000;

/// One started server.
pub struct Node {
    /// The started server's state.
    pub state: Arc<AppState>,
    /// Its operator token.
    pub token: String,
    /// Its SMS gateway token.
    pub gateway_token: String,
}

/// One start's configuration: its own data directory (a server in this process holds its
/// directory's lock until the process ends) on the one ledger of the run.
pub fn config(root: &Path, data: &Path, backend: &Backend) -> ServerConfig {
    let database_url = backend.database_url().map_or_else(
        || format!("sqlite://{}", root.join("ledger.sqlite").display()),
        str::to_owned,
    );
    ServerConfig::resolve(
        Overrides {
            data_dir: Some(data.to_owned()),
            listen: Some("127.0.0.1:0".into()),
            database_url: Some(database_url),
            ..Overrides::default()
        },
        &|_| None,
    )
    .unwrap()
}

/// A copy of data directory `from` (its keys and tokens) in `to`, without the lock.
pub fn copy_data_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_data_dir(&entry.path(), &target);
        } else if entry.file_name() != "offpay.lock" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub async fn start(root: &Path, start: usize, backend: &Backend) -> Node {
    let data = root.join(format!("data-{start}"));
    if start > 0 {
        copy_data_dir(&root.join(format!("data-{}", start - 1)), &data);
    }
    let config = config(root, &data, backend);
    let server = Server::start_with(
        config.clone(),
        Inputs {
            clock: Arc::new(ManualClock::new(Timestamp(START_MS))),
            entropy: Arc::new(SeededEntropy::from_seed(5)),
        },
    )
    .await
    .expect("the server starts");
    let read = |path: &Path| std::fs::read_to_string(path).unwrap().trim().to_owned();
    Node {
        state: server.state(),
        token: read(&config.token_path()),
        gateway_token: read(&data.join("sms-gateway.token")),
    }
}

impl Node {
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token));
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.send(request).await
    }

    /// One SMS through the generic webhook.
    pub async fn sms(&self, id: &str, text: &str) -> (StatusCode, Value) {
        let body = json!({ "from": "+254700000001", "text": text, "message_id": id });
        let request = Request::builder()
            .method("POST")
            .uri("/sms/webhook")
            .header("authorization", format!("Bearer {}", self.gateway_token))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    /// How many `record_tampered` flags the SMS rail raised.
    pub async fn tampered_flags(&self) -> usize {
        let (status, flags) = self.call("GET", "/api/v1/fraud?rail=sms", None).await;
        assert!(status.is_success(), "{status} {flags}");
        flags
            .to_string()
            .matches("\"kind\":\"record_tampered\"")
            .count()
    }
}
