//! SMS gateways behind one trait, [`Gateway`]: how an aggregator's callbacks are authenticated
//! and read (an inbound SMS, a delivery report), how a reply goes back (in the HTTP answer, such
//! as TwiML, or through the durable queue), and how one queued SMS is sent and the answer
//! classified (sent, retry later with the aggregator's rate-limit hint, refused for good).
//! Adapters: [`kannel`] (`get-url` / `sendsms`), [`africastalking`], [`twilio`], [`webhook`]
//! (the generic JSON webhook), and [`fake`] for tests (not selectable by configuration).
//!
//! The queue's policy (retries, jittered backoff, dead letters, what a delivery report changes)
//! is the rail's (`offpay_sms_tan::operator::outbox`); this module is its I/O: the routes, the
//! outbound worker, and the HTTP calls. The phone number a gateway reports is what phone binding
//! trusts, so every callback is authenticated before anything in it reaches the rail, the way
//! that aggregator can: a secret in the path (Kannel, Africa's Talking, with an optional IP
//! allow-list), an HMAC signature (Twilio, the webhook), or the gateway token as a Bearer header
//! (the webhook, for existing set-ups).

pub mod africastalking;
pub mod config;
pub mod fake;
pub mod kannel;
pub mod twilio;
pub mod webhook;

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use offpay_operator::{Attempt, Loaded};
use offpay_sms_tan::PhoneNumber;
use offpay_sms_tan::operator::inbound::{InboundAnswer, InboundSms};
use offpay_sms_tan::operator::outbox::{self, OUTBOUND_PAGE, SendFailure};
use offpay_sms_tan::operator::records::{self, Delivery, NAMESPACE, OUTBOUND_PREFIX, SentRecord};

use super::SmsFailure;
use super::inbound::handle_inbound;
use crate::AppState;
use crate::auth::RemoteAddr;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::runner;

/// Largest inbound request body a gateway may send.
pub const INBOUND_BODY_BYTES_MAX: usize = 8 * 1024;
/// Longest gateway message id accepted.
pub const MESSAGE_ID_BYTES_MAX: usize = 200;
/// How long one send call may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of an aggregator's answer read (its JSON status is small).
pub const SEND_ANSWER_BYTES_MAX: usize = 64 * 1024;
/// How often the worker looks at the queue when nothing wakes it.
pub const OUTBOUND_POLL: Duration = Duration::from_secs(2);
/// Kannel delivery-report mask: delivered, failed, buffered, SMSC accepted, SMSC rejected.
pub const DLR_MASK: u32 = kannel::DLR_MASK;

const _: () = assert!(MESSAGE_ID_BYTES_MAX <= outbox::GATEWAY_ID_BYTES_MAX);

/// A callback as it arrived, for an adapter to authenticate and read. No I/O is left to do.
pub struct Callback<'a> {
    /// The path and query the aggregator called (what signatures over the URL cover).
    pub path_and_query: &'a str,
    /// The secret in the path, for adapters that authenticate by one.
    pub path_secret: Option<&'a str>,
    /// The peer's address (`None` for a router driven in-process).
    pub peer: Option<IpAddr>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The query string (GET callbacks).
    pub query: &'a str,
    /// The raw body (POST callbacks), as signed.
    pub body: &'a [u8],
}

impl fmt::Debug for Callback<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body holds the SMS (a TAN) and the path the gateway token: neither is shown.
        f.debug_struct("Callback")
            .field("peer", &self.peer)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// One inbound SMS an adapter read from an authenticated callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The aggregator's id of the message (the same on its retries).
    pub message_id: String,
    /// The sender.
    pub from: PhoneNumber,
    /// The text.
    pub text: String,
}

/// One delivery report an adapter read from an authenticated callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The id the SMS is kept under ([`outbox::gateway_sent_id`] or the server's own id).
    pub sent_id: String,
    /// What the report says.
    pub delivery: Delivery,
    /// The aggregator's words (its status and failure reason), for the operator.
    pub detail: String,
}

/// Why a callback is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackRefusal {
    /// The gateway token is missing or wrong (Kannel's path, the webhook's Bearer header): 401,
    /// as before the adapters.
    BadToken,
    /// Not from the aggregator: a bad or missing secret or signature, a peer not allowed.
    Unauthenticated(&'static str),
    /// Authenticated but not readable.
    Malformed {
        /// A short machine code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl CallbackRefusal {
    fn malformed(code: &'static str, message: impl Into<String>) -> CallbackRefusal {
        CallbackRefusal::Malformed {
            code,
            message: message.into(),
        }
    }
}

impl From<CallbackRefusal> for ApiError {
    fn from(refusal: CallbackRefusal) -> ApiError {
        match refusal {
            CallbackRefusal::BadToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_gateway_token",
                "send the gateway token (DATA_DIR/sms-gateway.token) as 'Authorization: Bearer <token>', or sign the body (see docs/guide/sms-gateways.md)",
            ),
            CallbackRefusal::Unauthenticated(how) => ApiError::new(
                StatusCode::FORBIDDEN,
                "gateway_not_authenticated",
                format!("this callback is not authenticated: {how}"),
            ),
            CallbackRefusal::Malformed { code, message } => ApiError::bad_request(code, message),
        }
    }
}

/// One SMS to send.
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    /// The server's id of it (delivery reports that name the server's id carry this one).
    pub sent_id: &'a str,
    /// The recipient.
    pub to: &'a PhoneNumber,
    /// The text.
    pub text: &'a str,
}

impl fmt::Debug for Outgoing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text may hold a TAN.
        f.debug_struct("Outgoing")
            .field("sent_id", &self.sent_id)
            .field("to", &self.to)
            .field("text_chars", &self.text.chars().count())
            .finish()
    }
}

/// What an aggregator answered to a send call, as read by the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendAnswer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` in milliseconds (seconds or an HTTP date are both read).
    pub retry_after_ms: Option<u64>,
    /// The body, at most [`SEND_ANSWER_BYTES_MAX`] bytes.
    pub body: String,
}

/// What became of a send call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Handed over; `gateway_id` is the aggregator's id of it when its reports name that id.
    Sent {
        /// The aggregator's message id.
        gateway_id: Option<String>,
    },
    /// Not handed over.
    Failed(SendFailure),
}

impl SendOutcome {
    fn retry(reason: impl Into<String>, retry_after_ms: Option<u64>) -> SendOutcome {
        SendOutcome::Failed(SendFailure::RetryLater {
            reason: reason.into(),
            retry_after_ms,
        })
    }

    fn permanent(reason: impl Into<String>) -> SendOutcome {
        SendOutcome::Failed(SendFailure::Permanent {
            reason: reason.into(),
        })
    }

    /// The classification every adapter shares for an answer its own rules do not settle: 429
    /// and 5xx are retried (with the hint), other statuses are refusals.
    fn by_status(gateway: &str, answer: &SendAnswer) -> SendOutcome {
        match answer.status {
            429 => SendOutcome::retry(
                format!("{gateway} is rate limiting (HTTP 429)"),
                answer.retry_after_ms,
            ),
            500..=599 => SendOutcome::retry(
                format!("{gateway} answered HTTP {}", answer.status),
                answer.retry_after_ms,
            ),
            status => SendOutcome::permanent(format!("{gateway} refused the SMS (HTTP {status})")),
        }
    }
}

/// An SMS aggregator's adapter. The methods are pure: the routes and the worker do the I/O.
pub trait Gateway: Send + Sync + fmt::Debug {
    /// The adapter's name (`kannel`, `africastalking`, `twilio`, `webhook`, `fake`), also the
    /// `gateway` of the rail's dedupe keys.
    fn name(&self) -> &'static str;

    /// Authenticates an inbound-SMS callback and reads it.
    fn inbound(&self, callback: &Callback<'_>) -> Result<InboundMessage, CallbackRefusal>;

    /// Whether replies to the sender go back in the callback's HTTP answer (else they are queued
    /// and sent like every other SMS).
    fn replies_inline(&self) -> bool;

    /// The HTTP answer to an inbound callback, with the replies when they go inline.
    fn answer(&self, answer: &InboundAnswer) -> Response;

    /// Authenticates a delivery-report callback and reads it.
    fn report(&self, callback: &Callback<'_>) -> Result<Report, CallbackRefusal>;

    /// The HTTP request that sends `sms` (`None` when this adapter cannot send).
    fn send_request(
        &self,
        http: &reqwest::Client,
        sms: Outgoing<'_>,
    ) -> Option<reqwest::RequestBuilder>;

    /// What the aggregator's answer to [`Gateway::send_request`] means.
    fn classify(&self, answer: &SendAnswer) -> SendOutcome;

    /// For an adapter that sends without HTTP (the fake gateway): the outcome of sending `sms`.
    fn send_in_process(&self, _sms: Outgoing<'_>) -> Option<SendOutcome> {
        None
    }
}

/// Gateway routes. Kannel and the webhook are always there (authenticated by the gateway token
/// or the webhook's signature); Africa's Talking and Twilio only when configured.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/sms/webhook", post(webhook_inbound))
        .route("/sms/webhook/report", post(webhook_report))
        .route("/sms/kannel/{token}/inbound", get(kannel_inbound))
        .route("/sms/kannel/{token}/dlr", get(kannel_dlr))
        .route(
            "/sms/africastalking/{secret}/inbound",
            post(africastalking_inbound),
        )
        .route(
            "/sms/africastalking/{secret}/report",
            post(africastalking_report),
        )
        .route("/sms/twilio/inbound", post(twilio_inbound))
        .route("/sms/twilio/status", post(twilio_status))
}

/// Which adapter a route serves.
#[derive(Clone, Copy)]
enum Which {
    Kannel,
    Webhook,
    AfricasTalking,
    Twilio,
}

fn adapter(state: &AppState, which: Which) -> Result<Arc<dyn Gateway>, ApiError> {
    let gateways = &state.rails.sms.gateways;
    let found = match which {
        Which::Kannel => Some(gateways.kannel.clone() as Arc<dyn Gateway>),
        Which::Webhook => Some(gateways.webhook.clone() as Arc<dyn Gateway>),
        Which::AfricasTalking => gateways
            .africastalking
            .clone()
            .map(|adapter| adapter as Arc<dyn Gateway>),
        Which::Twilio => gateways
            .twilio
            .clone()
            .map(|adapter| adapter as Arc<dyn Gateway>),
    };
    found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "gateway_not_configured",
            "this SMS gateway is not configured on this server (see docs/guide/sms-gateways.md)",
        )
    })
}

/// The parts of a request an adapter reads.
struct Incoming {
    path_and_query: String,
    query: String,
    peer: Option<IpAddr>,
    headers: HeaderMap,
    body: Bytes,
}

async fn incoming(request: Request) -> Result<Incoming, ApiError> {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|value| value.as_str().to_owned())
        .unwrap_or_default();
    let query = request.uri().query().unwrap_or("").to_owned();
    let peer = request
        .extensions()
        .get::<ConnectInfo<RemoteAddr>>()
        .map(|info| info.0.0.ip());
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), INBOUND_BODY_BYTES_MAX)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("a gateway callback is at most {INBOUND_BODY_BYTES_MAX} bytes"),
            )
        })?;
    Ok(Incoming {
        path_and_query,
        query,
        peer,
        headers,
        body,
    })
}

impl Incoming {
    fn callback<'a>(&'a self, path_secret: Option<&'a str>) -> Callback<'a> {
        Callback {
            path_and_query: &self.path_and_query,
            path_secret,
            peer: self.peer,
            headers: &self.headers,
            query: &self.query,
            body: &self.body,
        }
    }
}

fn refused(state: &AppState, refusal: CallbackRefusal) -> ApiError {
    if matches!(
        refusal,
        CallbackRefusal::Unauthenticated(_) | CallbackRefusal::BadToken
    ) {
        Metrics::add(&state.metrics.http_unauthorized, 1);
    }
    refusal.into()
}

/// The shared inbound path: authenticate and read (nothing reaches the rail before), handle,
/// answer the adapter's way.
async fn inbound_path(
    state: Arc<AppState>,
    which: Which,
    secret: Option<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let gateway = adapter(&state, which)?;
    let incoming = incoming(request).await?;
    let message = gateway
        .inbound(&incoming.callback(secret.as_deref()))
        .map_err(|refusal| refused(&state, refusal))?;
    let answer = handle_inbound(
        &state,
        InboundSms {
            gateway: gateway.name().into(),
            message_id: message.message_id,
            from: message.from,
            text: message.text,
            answer_inline: gateway.replies_inline(),
        },
    )
    .await?;
    Ok(gateway.answer(&answer))
}

/// The shared delivery-report path: authenticate and read, then the rail's policy.
async fn report_path(
    state: Arc<AppState>,
    which: Which,
    secret: Option<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let gateway = adapter(&state, which)?;
    let incoming = incoming(request).await?;
    let report = gateway
        .report(&incoming.callback(secret.as_deref()))
        .map_err(|refusal| refused(&state, refusal))?;
    record_report(&state, &report).await?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok").into_response())
}

/// Applies one delivery report (idempotent: the rail keeps the strongest report).
pub async fn record_report(state: &Arc<AppState>, report: &Report) -> Result<(), ApiError> {
    let key = records::sent_key(&report.sent_id);
    let operator = state.rails.sms.operator();
    let now = state.now();
    let jitter = jitter(state);
    let requeued = runner::run(
        &state.ledger,
        now,
        || {
            let key = key.clone();
            let state = state.clone();
            async move {
                state
                    .ledger
                    .read(move |store| Ok(Loaded::<SentRecord>::read(store, &key)))
                    .await?
                    .map_err(SmsFailure::from)
            }
        },
        |sent| {
            outbox::delivery_report(
                sent,
                &report.sent_id,
                report.delivery,
                &report.detail,
                jitter,
                now,
                operator.master(),
            )
            .map_err(SmsFailure::from)
        },
    )
    .await?;
    if requeued {
        state.rails.sms.wake_outbound();
    }
    Ok(())
}

/// Random bits for the backoff's jitter, from the server's entropy (none is no jitter).
fn jitter(state: &AppState) -> u64 {
    state
        .entropy
        .as_ref()
        .array::<8>()
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

async fn webhook_inbound(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    inbound_path(state, Which::Webhook, None, request).await
}

async fn webhook_report(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    report_path(state, Which::Webhook, None, request).await
}

async fn kannel_inbound(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    inbound_path(state, Which::Kannel, Some(token), request).await
}

async fn kannel_dlr(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    report_path(state, Which::Kannel, Some(token), request).await
}

async fn africastalking_inbound(
    State(state): State<Arc<AppState>>,
    Path(secret): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    inbound_path(state, Which::AfricasTalking, Some(secret), request).await
}

async fn africastalking_report(
    State(state): State<Arc<AppState>>,
    Path(secret): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    report_path(state, Which::AfricasTalking, Some(secret), request).await
}

async fn twilio_inbound(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    inbound_path(state, Which::Twilio, None, request).await
}

async fn twilio_status(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    report_path(state, Which::Twilio, None, request).await
}

// --- shared reading helpers for the adapters ----------------------------------------------------

/// The message id, sender and text of an inbound SMS, checked.
pub fn message(
    message_id: Option<&str>,
    from: Option<&str>,
    text: Option<&str>,
) -> Result<InboundMessage, CallbackRefusal> {
    let message_id = message_id.unwrap_or_default();
    if message_id.is_empty() || message_id.len() > MESSAGE_ID_BYTES_MAX {
        return Err(CallbackRefusal::malformed(
            "invalid_message_id",
            format!(
                "the message id is required, 1 to {MESSAGE_ID_BYTES_MAX} bytes (the gateway's id, the same on retries)"
            ),
        ));
    }
    let from = PhoneNumber::parse(from.unwrap_or("")).map_err(|_| {
        CallbackRefusal::malformed(
            "invalid_from",
            "the sender must be a phone number like +254700000001",
        )
    })?;
    Ok(InboundMessage {
        message_id: message_id.to_owned(),
        from,
        text: text.unwrap_or_default().to_owned(),
    })
}

/// A gateway's own message id in a report, checked, as the id its SMS is kept under.
pub fn gateway_report_id(gateway: &str, id: Option<&str>) -> Result<String, CallbackRefusal> {
    match id {
        Some(id) if !id.is_empty() && id.len() <= MESSAGE_ID_BYTES_MAX => {
            Ok(outbox::gateway_sent_id(gateway, id))
        }
        _ => Err(CallbackRefusal::malformed(
            "invalid_message_id",
            format!("the report's message id is required, 1 to {MESSAGE_ID_BYTES_MAX} bytes"),
        )),
    }
}

/// The `name=value` pairs of a form body or query string, in order.
pub fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// The first value of `name` in `pairs`.
pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Constant-time equality of two secrets (lengths are not secret).
pub fn secret_matches(expected: &[u8], presented: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(expected, presented).into()
}

/// `Retry-After` as milliseconds: delta-seconds, or an HTTP date compared with `now_ms`.
pub fn retry_after_ms(value: Option<&str>, now_ms: u64) -> Option<u64> {
    let value = value?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate_ms(value)?;
    Some(at.saturating_sub(now_ms))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as Unix milliseconds.
fn httpdate_ms(value: &str) -> Option<u64> {
    let mut words = value.split_whitespace();
    let _weekday = words.next()?;
    let day: u64 = words.next()?.parse().ok()?;
    let month = match words.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = words.next()?.parse().ok()?;
    let mut clock = words.next()?.split(':');
    let hour: u64 = clock.next()?.parse().ok()?;
    let minute: u64 = clock.next()?.parse().ok()?;
    let second: u64 = clock.next()?.parse().ok()?;
    if words.next()? != "GMT" || day == 0 || day > 31 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + i64::try_from(day).ok()? - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1000)
}

// --- the outbound worker ------------------------------------------------------------------------

/// Sends queued SMS through the configured adapter, oldest first, retrying with jittered backoff.
/// Holds only a weak reference between passes so that shutdown is not delayed.
pub async fn outbound_worker(state: Weak<AppState>) {
    loop {
        let wait = {
            let Some(state) = state.upgrade() else { return };
            match send_pass(&state).await {
                Ok(true) => Duration::ZERO,
                Ok(false) => OUTBOUND_POLL,
                Err(error) => {
                    tracing::warn!(%error.message, "sms outbound pass failed");
                    OUTBOUND_POLL
                }
            }
        };
        if wait.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        let notified = {
            let Some(state) = state.upgrade() else { return };
            let state = state.clone();
            async move {
                tokio::select! {
                    () = state.rails.sms.wake.notified() => {},
                    () = tokio::time::sleep(wait) => {},
                }
            }
        };
        notified.await;
    }
}

/// Calls the aggregator for one SMS and classifies its answer.
pub async fn send_one(
    gateway: &dyn Gateway,
    http: &reqwest::Client,
    sms: Outgoing<'_>,
    now_ms: u64,
) -> SendOutcome {
    if let Some(outcome) = gateway.send_in_process(sms) {
        return outcome;
    }
    let Some(request) = gateway.send_request(http, sms) else {
        return SendOutcome::retry(format!("the {} adapter cannot send", gateway.name()), None);
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            return SendOutcome::retry(
                format!(
                    "{} unreachable: {}",
                    gateway.name(),
                    error_chain(&error.without_url())
                ),
                None,
            );
        }
    };
    let status = response.status().as_u16();
    let retry_after_ms = retry_after_ms(
        response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()),
        now_ms,
    );
    let body = read_bounded(response).await;
    gateway.classify(&SendAnswer {
        status,
        retry_after_ms,
        body,
    })
}

async fn read_bounded(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = SEND_ANSWER_BYTES_MAX.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= SEND_ANSWER_BYTES_MAX {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One pass over the queue; `Ok(true)` when it sent something (look again at once).
async fn send_pass(state: &Arc<AppState>) -> Result<bool, ApiError> {
    let rail = &state.rails.sms;
    let Some(gateway) = rail.gateways.outbound() else {
        return Ok(false);
    };
    let page = state
        .ledger
        .read(|store| store.records(NAMESPACE, OUTBOUND_PREFIX, None, OUTBOUND_PAGE))
        .await?;
    let (due, errors) = outbox::due(&page, state.now());
    for error in errors {
        tracing::error!(%error, "an outbound SMS does not decode; left for the operator");
    }
    let mut progressed = false;
    for due in due {
        let outcome = match due.sms() {
            Some(queued) => {
                send_one(
                    gateway.as_ref(),
                    &rail.http,
                    Outgoing {
                        sent_id: &due.sent_id,
                        to: &queued.to,
                        text: &queued.text,
                    },
                    state.now().0,
                )
                .await
            }
            None => continue,
        };
        let now = state.now();
        let effects = match &outcome {
            SendOutcome::Sent { gateway_id } => {
                Metrics::add(&rail.metrics.sent, 1);
                progressed = true;
                let sent_id = match gateway_id {
                    Some(id) => outbox::gateway_sent_id(gateway.name(), id),
                    None => due.sent_id.clone(),
                };
                outbox::sent(&due, &sent_id, now)
            }
            SendOutcome::Failed(failure) => {
                Metrics::add(&rail.metrics.send_failures, 1);
                tracing::warn!(gateway = gateway.name(), ?failure, "sms send failed");
                outbox::failed(&due, failure, jitter(state), now, rail.operator().master())
            }
        }
        .map_err(SmsFailure::from)?;
        match runner::commit(&state.ledger, effects, now).await {
            Ok(Attempt::Done(_)) => {}
            Ok(Attempt::Conflict) => tracing::warn!("an SMS queue entry changed while it was sent"),
            Err(error) => tracing::warn!(%error, "sms queue update refused"),
        }
    }
    Ok(progressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after_ms(Some("30"), 0), Some(30_000));
        assert_eq!(retry_after_ms(None, 0), None);
        assert_eq!(retry_after_ms(Some("soon"), 0), None);
        // 1994-11-06T08:49:37Z is Unix 784111777.
        let at = 784_111_777_000;
        assert_eq!(
            retry_after_ms(Some("Sun, 06 Nov 1994 08:49:37 GMT"), at - 5_000),
            Some(5_000)
        );
        assert_eq!(
            retry_after_ms(Some("Sun, 06 Nov 1994 08:49:37 GMT"), at + 1),
            Some(0)
        );
    }

    #[test]
    fn a_message_needs_an_id_and_a_phone_number() {
        let read = message(Some("SM1"), Some("+254700000001"), Some("HELP")).unwrap();
        assert_eq!(read.from.as_str(), "+254700000001");
        assert!(message(None, Some("+254700000001"), None).is_err());
        assert!(message(Some("x"), Some("nobody"), None).is_err());
        let long = "x".repeat(MESSAGE_ID_BYTES_MAX + 1);
        assert!(message(Some(&long), Some("+254700000001"), None).is_err());
    }
}
