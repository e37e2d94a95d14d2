//! Local fakes of the SMS aggregators' APIs, on loopback: each answers a send as the
//! aggregator's documentation shows (Africa's Talking's `SMSMessageData.Recipients`, Twilio's
//! created message or its error object), checks the credentials the way the aggregator does,
//! records what it accepted, and can be scripted to fail first (a 5xx, a 429 with
//! `Retry-After`). The tests play the aggregator's other half themselves: they call the server's
//! callbacks with the aggregator's form fields (and Twilio's signature).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// Africa's Talking's API key in the tests.
pub const AT_API_KEY: &str = "at-test-api-key";
/// Africa's Talking's username in the tests (its sandbox's).
pub const AT_USERNAME: &str = "sandbox";
/// Twilio's account in the tests.
pub const TWILIO_SID: &str = "AC00000000000000000000000000000001";
/// Twilio's auth token in the tests.
pub const TWILIO_TOKEN: &str = "twilio-test-auth-token";
/// The Twilio number that sends.
pub const TWILIO_FROM: &str = "+15005550006";
/// Upper bound on any wait for the server's worker.
pub const FAKE_WAIT_MAX: Duration = Duration::from_secs(60);

/// Which aggregator a fake plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    AfricasTalking,
    Twilio,
    /// The operator's own bridge behind the generic JSON webhook.
    Webhook,
}

/// One SMS the fake accepted.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The aggregator's id it answered with.
    pub id: String,
    pub to: String,
    pub text: String,
    /// Twilio's `StatusCallback`.
    pub status_callback: Option<String>,
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct Scripted {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

#[derive(Default)]
struct Shared {
    calls: usize,
    refused: usize,
    accepted: Vec<Accepted>,
    script: VecDeque<Scripted>,
    next_id: u64,
    /// The webhook's signing secret (read from the server's data directory once it started).
    webhook_secret: Vec<u8>,
}

/// A running fake; stops with its runtime on drop.
pub struct FakeAggregator {
    pub kind: Kind,
    pub base: String,
    shared: Arc<Mutex<Shared>>,
    _runtime: tokio::runtime::Runtime,
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn basic(user: &str, password: &str) -> String {
    use base64_lite::encode;
    format!("Basic {}", encode(format!("{user}:{password}").as_bytes()))
}

/// Just enough Base64 for a Basic header (the test crate has no Base64 dependency).
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for index in 0..4 {
                if index <= chunk.len() {
                    out.push(char::from(
                        ALPHABET[((n >> (18 - 6 * index)) & 63) as usize],
                    ));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

async fn answer(
    State((kind, shared)): State<(Kind, Arc<Mutex<Shared>>)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut shared = shared.lock().unwrap();
    shared.calls += 1;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let pairs = form(&body);
    match kind {
        Kind::AfricasTalking => {
            if method != Method::POST || uri.path() != "/version1/messaging" {
                return (StatusCode::NOT_FOUND, "Not Found").into_response();
            }
            // Its documented refusal of a wrong key: 401 and a plain sentence.
            if header("apikey") != AT_API_KEY || get(&pairs, "username") != Some(AT_USERNAME) {
                shared.refused += 1;
                return (
                    StatusCode::UNAUTHORIZED,
                    "The supplied authentication is invalid",
                )
                    .into_response();
            }
        }
        Kind::Twilio => {
            let path = format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json");
            if method != Method::POST || uri.path() != path {
                return (
                    StatusCode::NOT_FOUND,
                    r#"{"code":20404,"message":"The requested resource was not found","status":404}"#,
                )
                    .into_response();
            }
            if header("authorization") != basic(TWILIO_SID, TWILIO_TOKEN) {
                shared.refused += 1;
                return (
                    StatusCode::UNAUTHORIZED,
                    [("content-type", "application/json")],
                    r#"{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}"#,
                )
                    .into_response();
            }
        }
        Kind::Webhook => {
            if method != Method::POST || uri.path() != "/send" {
                return (StatusCode::NOT_FOUND, "not found").into_response();
            }
            let expected =
                offpay_server::rails::sms::gateway::webhook::sign(&shared.webhook_secret, &body);
            if header("x-offpay-signature") != expected {
                shared.refused += 1;
                return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
            }
        }
    }
    if let Some(scripted) = shared.script.pop_front() {
        let mut response = (
            StatusCode::from_u16(scripted.status).unwrap(),
            [("content-type", "application/json")],
            scripted.body,
        )
            .into_response();
        if let Some(after) = scripted.retry_after {
            response
                .headers_mut()
                .insert("retry-after", after.parse().unwrap());
        }
        return response;
    }
    shared.next_id += 1;
    if kind == Kind::Webhook {
        let posted: serde_json::Value = serde_json::from_slice(&body).unwrap();
        shared.accepted.push(Accepted {
            id: posted["id"].as_str().unwrap().to_owned(),
            to: posted["to"].as_str().unwrap().to_owned(),
            text: posted["text"].as_str().unwrap().to_owned(),
            status_callback: None,
        });
        return (StatusCode::OK, "{}").into_response();
    }
    let (to, text) = match kind {
        Kind::AfricasTalking => (get(&pairs, "to"), get(&pairs, "message")),
        _ => (get(&pairs, "To"), get(&pairs, "Body")),
    };
    let (to, text) = (to.unwrap_or("").to_owned(), text.unwrap_or("").to_owned());
    match kind {
        Kind::AfricasTalking => {
            let id = format!("ATXid_{:08}", shared.next_id);
            shared.accepted.push(Accepted {
                id: id.clone(),
                to: to.clone(),
                text,
                status_callback: None,
            });
            let body = serde_json::json!({ "SMSMessageData": {
                "Message": "Sent to 1/1 Total Cost: KES 0.8000",
                "Recipients": [{ "statusCode": 101, "number": to, "status": "Success",
                                 "cost": "KES 0.8000", "messageId": id }] } });
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        _ => {
            if get(&pairs, "From") != Some(TWILIO_FROM) {
                return (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/json")],
                    r#"{"code":21212,"message":"The 'From' number is not a valid phone number","status":400}"#,
                )
                    .into_response();
            }
            let id = format!("SM{:032}", shared.next_id);
            shared.accepted.push(Accepted {
                id: id.clone(),
                to: to.clone(),
                text: text.clone(),
                status_callback: get(&pairs, "StatusCallback").map(str::to_owned),
            });
            let body = serde_json::json!({ "sid": id, "account_sid": TWILIO_SID, "to": to,
                "from": TWILIO_FROM, "body": text, "status": "queued", "num_segments": "1" });
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

impl FakeAggregator {
    /// Starts a fake of `kind` on a loopback port.
    pub fn start(kind: Kind) -> FakeAggregator {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .fallback(answer)
            .with_state((kind, shared.clone()));
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAggregator {
            kind,
            base,
            shared,
            _runtime: runtime,
        }
    }

    /// The next answers, before it accepts again.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.shared.lock().unwrap().script.extend(answers);
    }

    /// The webhook's signing secret.
    pub fn set_webhook_secret(&self, secret: &[u8]) {
        self.shared.lock().unwrap().webhook_secret = secret.to_vec();
    }

    /// Calls so far (accepted, refused and scripted).
    pub fn calls(&self) -> usize {
        self.shared.lock().unwrap().calls
    }

    /// Everything accepted so far.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.shared.lock().unwrap().accepted.clone()
    }

    /// Waits for an accepted SMS to `to` starting with `prefix` (the `nth` such, from 0).
    pub fn wait_for(&self, to: &str, prefix: &str, nth: usize) -> Accepted {
        let deadline = Instant::now() + FAKE_WAIT_MAX;
        loop {
            let found: Vec<Accepted> = self
                .accepted()
                .into_iter()
                .filter(|sms| sms.to == to && sms.text.starts_with(prefix))
                .collect();
            if let Some(sms) = found.get(nth) {
                return sms.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no SMS to {to} starting {prefix:?}; accepted: {:?}",
                self.accepted()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many accepted SMS went to `to` starting with `prefix`.
    pub fn count(&self, to: &str, prefix: &str) -> usize {
        self.accepted()
            .iter()
            .filter(|sms| sms.to == to && sms.text.starts_with(prefix))
            .count()
    }
}

/// A form body.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Twilio's `X-Twilio-Signature` of a POST of `pairs` to `url`.
pub fn twilio_signature(url: &str, pairs: &[(&str, &str)]) -> String {
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    offpay_server::rails::sms::gateway::twilio::signature(TWILIO_TOKEN.as_bytes(), url, &owned)
}

/// The `<Message>` texts of a TwiML answer, unescaped.
pub fn twiml_messages(xml: &str) -> Vec<String> {
    xml.split("<Message>")
        .skip(1)
        .map(|part| {
            part.split("</Message>")
                .next()
                .unwrap()
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}
