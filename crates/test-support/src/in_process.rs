//! A server started in the test's own process and driven through its router (no socket).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use offpay_server::config::{Overrides, ServerConfig};
use offpay_server::{AppState, Inputs, Server, router};
use serde_json::Value;
use tower::ServiceExt;

use crate::database::Backend;

/// A started server: its state, operator token and data directory (removed on drop, after the
/// database).
#[derive(Debug)]
pub struct InProcess {
    /// The shared state handlers see.
    pub state: Arc<AppState>,
    /// The operator token.
    pub token: String,
    /// The resolved configuration.
    pub config: ServerConfig,
    backend: Backend,
    directory: tempfile::TempDir,
}

impl InProcess {
    /// Starts a server on `backend` in a fresh data directory, on the real clock and entropy.
    pub async fn start(backend: Backend) -> InProcess {
        InProcess::start_with(backend, Inputs::real()).await
    }

    /// Starts a server on `backend` with the given clock and entropy.
    pub async fn start_with(backend: Backend, inputs: Inputs) -> InProcess {
        let directory = tempfile::tempdir().expect("a data directory");
        let config = ServerConfig::resolve(
            Overrides {
                data_dir: Some(directory.path().to_owned()),
                listen: Some("127.0.0.1:0".into()),
                database_url: backend.database_url().map(str::to_owned),
                ..Overrides::default()
            },
            &|_| None,
        )
        .expect("the test configuration resolves");
        let server = Server::start_with(config.clone(), inputs)
            .await
            .expect("the server starts");
        let token = std::fs::read_to_string(config.token_path())
            .expect("the token file")
            .trim()
            .to_owned();
        InProcess {
            state: server.state(),
            token,
            config,
            backend,
            directory,
        }
    }

    /// The backend this server runs on.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.directory.path()
    }

    /// Calls the router: `method path` with an optional JSON body and bearer token; returns the
    /// status and the body as JSON (or as a JSON string when it is not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_owned())),
            None => request.body(Body::empty()),
        }
        .expect("a well-formed request");
        let response = router(self.state.clone())
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    /// `POST path` with `body` as the operator.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(&body.to_string()), Some(&self.token))
            .await
    }

    /// `GET path` as the operator.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call("GET", path, None, Some(&self.token)).await
    }
}
