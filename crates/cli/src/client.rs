//! A small blocking client for the operator API, shared by `admin` and `demo`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// How long one API call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The CA file given with `--ca-file` (or `OFFPAY_CA_FILE`), trusted besides the system's roots.
static EXTRA_CA_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Trusts the CA certificates in `path` for every HTTPS call this process makes.
pub fn trust_ca_file(path: PathBuf) {
    let _ = EXTRA_CA_FILE.set(path);
}

/// An HTTP client builder for every call the CLI makes: HTTPS verified against the system's
/// roots and the `--ca-file` CA, no redirects followed (an answer is the server's own).
pub fn http_builder() -> Result<reqwest::blocking::ClientBuilder, String> {
    let mut builder =
        reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(path) = EXTRA_CA_FILE.get() {
        let pem = std::fs::read(path)
            .map_err(|error| format!("cannot read the CA file {}: {error}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|error| format!("the CA file {} is not PEM: {error}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!(
                "the CA file {} holds no certificate",
                path.display()
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder)
}

/// An error with its causes, `outer: inner: innermost` (reqwest's own text leaves out why a
/// request failed, such as a certificate the client does not trust).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// Times one call is sent when the server could not be reached or was briefly unavailable
/// (`503`); a call that changes state carries the same `Idempotency-Key` every time, so the server
/// applies it once.
pub const CALL_ATTEMPTS_MAX: u32 = 3;
/// The wait before the second attempt; doubled before each one after.
const RETRY_WAIT_FIRST: Duration = Duration::from_millis(500);
/// Random bytes in an invocation's idempotency key (hex-encoded).
const IDEMPOTENCY_KEY_BYTES: usize = 16;

/// An API client bound to one server and token.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
    /// This invocation's key, from the OS random source; its `n`-th state-changing call sends
    /// `KEY-n`.
    idempotency_base: String,
    calls: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// A failed call: the server's error object, or why there was no answer.
#[derive(Debug)]
pub enum CallError {
    /// The server answered with an error.
    Api {
        /// HTTP status.
        status: u16,
        /// The `error` object.
        body: Value,
    },
    /// No usable answer.
    Transport(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Api { status, body } => {
                let message = body
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)");
                write!(f, "{message} (HTTP {status})")
            }
            CallError::Transport(message) => f.write_str(message),
        }
    }
}

impl ApiClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) with the token read from `token_file`
    /// when it exists.
    pub fn new(base: &str, token_file: Option<&Path>) -> Result<ApiClient, String> {
        let token = match token_file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Some(text.trim().to_owned()),
                Err(error) => {
                    return Err(format!(
                        "cannot read the operator token file {}: {error}",
                        path.display()
                    ));
                }
            },
            None => None,
        };
        ApiClient::build(base, token)
    }

    /// A client for `base` with `token` (a token just made, not in a file).
    pub fn with_token(base: &str, token: String) -> Result<ApiClient, String> {
        ApiClient::build(base, Some(token))
    }

    fn build(base: &str, token: Option<String>) -> Result<ApiClient, String> {
        let http = http_builder()?
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| format!("cannot build an HTTP client: {error}"))?;
        let mut key = [0u8; IDEMPOTENCY_KEY_BYTES];
        getrandom::fill(&mut key).map_err(|error| format!("no randomness: {error}"))?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
            idempotency_base: hex_key(&key),
            calls: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The key of the next state-changing call.
    fn next_idempotency_key(&self) -> String {
        let call = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{}", self.idempotency_base, call + 1)
    }

    /// Sends the request `build` makes, again (with the same idempotency key) when the server
    /// could not be reached or answered `503`, at most [`CALL_ATTEMPTS_MAX`] times.
    fn send_with_retries(
        &self,
        build: impl Fn() -> reqwest::blocking::RequestBuilder,
    ) -> Result<Value, CallError> {
        let mut wait = RETRY_WAIT_FIRST;
        let mut attempt = 1;
        loop {
            match self.send(build()) {
                Err(error) if attempt < CALL_ATTEMPTS_MAX && retryable(&error) => {
                    eprintln!("offpay: {error}; trying again in {} ms", wait.as_millis());
                    std::thread::sleep(wait);
                    wait *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder) -> Result<Value, CallError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().map_err(|error| {
            CallError::Transport(format!(
                "cannot reach the offpay server at {}: {}",
                self.base,
                error_chain(&error)
            ))
        })?;
        let status = response.status();
        let body: Value = response.json().map_err(|error| {
            CallError::Transport(format!(
                "the server sent an answer that is not JSON: {error}"
            ))
        })?;
        if status == reqwest::StatusCode::ACCEPTED && body.get("approval").is_some() {
            // Held for a second user's approval: not applied yet, so not a success to print as
            // one. The message names the approval and how to approve it.
            return Err(CallError::Api {
                status: status.as_u16(),
                body: serde_json::json!({ "error": {
                    "code": "approval_required",
                    "message": body.get("message").and_then(Value::as_str).unwrap_or("held for approval"),
                    "approval": body.get("approval"),
                } }),
            });
        }
        if status.is_success() {
            Ok(body)
        } else {
            Err(CallError::Api {
                status: status.as_u16(),
                body,
            })
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Value, CallError> {
        self.send_with_retries(|| self.http.get(format!("{}{path}", self.base)))
    }

    /// `POST path` with a JSON body and this call's `Idempotency-Key`.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let key = self.next_idempotency_key();
        self.send_with_retries(|| {
            self.http
                .post(format!("{}{path}", self.base))
                .header("Idempotency-Key", &key)
                .json(body)
        })
    }
}

/// Whether a failed call may be sent again: no answer at all, or the server's "briefly
/// unavailable".
fn retryable(error: &CallError) -> bool {
    match error {
        CallError::Transport(message) => message.starts_with("cannot reach"),
        CallError::Api { status, .. } => *status == 503,
    }
}

fn hex_key(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Percent-encodes one URL path segment (ids may contain `+` and `@`).
pub fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
