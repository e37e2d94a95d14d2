//! SMS gateway adapters: the generic webhook (form or JSON in, replies in the response body),
//! Kannel's `get-url` callback (replies through the queue and `sendsms`), Kannel's delivery
//! reports, and the outbound queue worker with bounded retries and backoff.
//!
//! Gateways authenticate with the gateway token (`DATA_DIR/sms-gateway.token`): the webhook in an
//! `Authorization: Bearer` header, Kannel (which cannot send headers) in the callback path. The
//! phone number a gateway reports is what phone binding trusts, so no unauthenticated caller may
//! inject SMS.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use offpay_ledger::{Batch, Operation};
use offpay_sms_tan::PhoneNumber;
use serde::Deserialize;
use serde_json::json;

use super::process::{self, get as get_record};
use super::records::{self, OutboundRecord, SentRecord};
use crate::AppState;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Largest inbound request body a gateway may send.
pub const INBOUND_BODY_BYTES_MAX: usize = 8 * 1024;
/// Longest gateway message id accepted.
pub const MESSAGE_ID_BYTES_MAX: usize = 200;
/// How long one `sendsms` call may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Send attempts before an SMS is given up (kept as `dead:` for the operator).
pub const SEND_ATTEMPTS_MAX: u32 = 8;
/// First retry delay; doubles per attempt.
pub const BACKOFF_BASE_MS: u64 = 500;
/// Longest retry delay.
pub const BACKOFF_MAX_MS: u64 = 5 * 60 * 1000;
/// Queue entries looked at per pass.
pub const OUTBOUND_PAGE: usize = 100;
/// How often the worker looks at the queue when nothing wakes it.
pub const OUTBOUND_POLL: Duration = Duration::from_secs(2);
/// Kannel delivery-report mask: delivered, failed, buffered, SMSC accepted, SMSC rejected.
pub const DLR_MASK: u32 = 31;

/// Gateway routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/sms/webhook", post(webhook))
        .route("/sms/kannel/{token}/inbound", get(kannel_inbound))
        .route("/sms/kannel/{token}/dlr", get(kannel_dlr))
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_gateway_token",
        "send the gateway token (DATA_DIR/sms-gateway.token) as 'Authorization: Bearer <token>'",
    )
}

/// The fields of an inbound SMS in the common SMS API styles.
#[derive(Debug, Default, Deserialize)]
pub struct WebhookSms {
    /// The sender.
    #[serde(alias = "From", alias = "msisdn", alias = "sender", alias = "phone")]
    pub from: Option<String>,
    /// The text.
    #[serde(alias = "Body", alias = "body", alias = "message", alias = "content")]
    pub text: Option<String>,
    /// The gateway's id of the message (stable across its retries).
    #[serde(
        alias = "MessageSid",
        alias = "messageId",
        alias = "id",
        alias = "message-id"
    )]
    pub message_id: Option<String>,
}

fn validate(sms: WebhookSms) -> Result<(String, PhoneNumber, String), ApiError> {
    let message_id = sms.message_id.unwrap_or_default();
    if message_id.is_empty() || message_id.len() > MESSAGE_ID_BYTES_MAX {
        return Err(ApiError::bad_request(
            "invalid_message_id",
            format!(
                "message_id is required, 1 to {MESSAGE_ID_BYTES_MAX} bytes (the gateway's id, the same on retries)"
            ),
        ));
    }
    let from = PhoneNumber::parse(sms.from.as_deref().unwrap_or("")).map_err(|_| {
        ApiError::bad_request(
            "invalid_from",
            "from must be a phone number like +254700000001",
        )
    })?;
    Ok((message_id, from, sms.text.unwrap_or_default()))
}

async fn webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    if !presented.is_some_and(|token| state.rails.sms.gateway_token_matches(token)) {
        Metrics::add(&state.metrics.http_unauthorized, 1);
        return Err(unauthorized());
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let sms: WebhookSms = if is_json {
        let Json(sms) = Json::<WebhookSms>::from_request(request, &state).await?;
        sms
    } else {
        let axum::Form(sms) = axum::Form::<WebhookSms>::from_request(request, &state)
            .await
            .map_err(|rejection| {
                ApiError::bad_request("malformed_request", rejection.body_text())
            })?;
        sms
    };
    let (message_id, from, text) = validate(sms)?;
    let answer = process::handle_inbound(&state, "webhook", &message_id, from, &text, true).await?;
    Ok(Json(json!({
        "replies": answer.replies,
        "reply": answer.replies.join("\n"),
        "duplicate": answer.duplicate,
        "verdict": answer.verdict,
        "queued": answer.queued,
    }))
    .into_response())
}

/// Kannel's `get-url` parameters: `?id=%I&from=%p&text=%a`.
#[derive(Debug, Deserialize)]
pub struct KannelInbound {
    /// Kannel's message id (`%I`).
    pub id: Option<String>,
    /// Sender (`%p`).
    pub from: Option<String>,
    /// Text (`%a`).
    pub text: Option<String>,
}

async fn kannel_inbound(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    query: Result<Query<KannelInbound>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    if !state.rails.sms.gateway_token_matches(&token) {
        Metrics::add(&state.metrics.http_unauthorized, 1);
        return Err(unauthorized());
    }
    let Query(query) = query
        .map_err(|rejection| ApiError::bad_request("malformed_query", rejection.body_text()))?;
    let (message_id, from, text) = validate(WebhookSms {
        from: query.from,
        text: query.text,
        message_id: query.id,
    })?;
    process::handle_inbound(&state, "kannel", &message_id, from, &text, false).await?;
    // Replies go through the durable queue and sendsms; an empty body makes Kannel send nothing
    // itself (sms-service `omit-empty = true`).
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "").into_response())
}

/// Kannel's delivery report: `?id=SENT_ID&status=%d`.
#[derive(Debug, Deserialize)]
pub struct KannelReport {
    /// Our sent id.
    pub id: String,
    /// Kannel's DLR type: 1 delivered, 2 failed, 4 buffered, 8 SMSC accepted, 16 SMSC rejected.
    pub status: u32,
}

fn report_name(status: u32) -> &'static str {
    match status {
        1 => "delivered",
        2 => "failed",
        4 => "buffered",
        8 => "smsc_accepted",
        16 => "smsc_rejected",
        _ => "unknown",
    }
}

async fn kannel_dlr(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    query: Result<Query<KannelReport>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    if !state.rails.sms.gateway_token_matches(&token) {
        Metrics::add(&state.metrics.http_unauthorized, 1);
        return Err(unauthorized());
    }
    let Query(report) = query
        .map_err(|rejection| ApiError::bad_request("malformed_query", rejection.body_text()))?;
    let key = records::sent_key(&report.id);
    let lookup = key.clone();
    let found = state
        .ledger
        .read(move |store| get_record::<SentRecord>(store, &lookup))
        .await?;
    let Some((mut sent, version)) = found else {
        return Err(ApiError::not_found("sent_sms", &report.id));
    };
    let now_ms = state.now().0;
    let mut operations = Vec::new();
    let failed = matches!(report.status, 2 | 16);
    // A final success never goes back to a lesser state.
    if sent.status != "delivered" {
        sent.status = report_name(report.status).to_owned();
    }
    sent.report_at_ms = Some(now_ms);
    if failed && sent.attempts < SEND_ATTEMPTS_MAX {
        operations.push(records::put(
            records::outbound_key(
                now_ms,
                &format!("{}/retry{}", sent.queue_key, sent.attempts),
            ),
            &OutboundRecord {
                version: records::FORMAT_VERSION,
                to: sent.to.clone(),
                text: sent.text.clone(),
                attempts: sent.attempts,
                next_attempt_ms: now_ms + backoff_ms(sent.attempts),
                queued_at_ms: now_ms,
                last_error: Some(format!("delivery report {}", report.status)),
            },
            None,
        ));
    }
    operations.push(records::put(key, &sent, Some(version)));
    let results = state
        .ledger
        .commit(vec![Batch { operations }], state.now())
        .await?;
    if let Some(Err(refusal)) = results.into_iter().next() {
        return Err(ApiError::refused(&refusal));
    }
    if failed {
        state.rails.sms.wake_outbound();
    }
    Ok((StatusCode::OK, "ok").into_response())
}

/// The retry delay after `attempts` failed attempts.
pub fn backoff_ms(attempts: u32) -> u64 {
    BACKOFF_BASE_MS
        .saturating_mul(1u64 << attempts.min(20))
        .min(BACKOFF_MAX_MS)
}

/// Sends queued SMS to Kannel's `sendsms`, oldest first, retrying with backoff. Holds only a weak
/// reference between passes so that shutdown is not delayed.
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

/// One pass over the queue; `Ok(true)` when it sent something (look again at once).
async fn send_pass(state: &Arc<AppState>) -> Result<bool, ApiError> {
    let rail = &state.rails.sms;
    let Some(kannel) = rail.kannel.clone() else {
        return Ok(false);
    };
    let page = state
        .ledger
        .read(|store| store.records(records::NAMESPACE, "out:", None, OUTBOUND_PAGE))
        .await?;
    let now_ms = state.now().0;
    let mut progressed = false;
    for record in page {
        let Ok(mut queued) = serde_json::from_slice::<OutboundRecord>(&record.value) else {
            continue;
        };
        if queued.next_attempt_ms > now_ms {
            continue;
        }
        let sent_id = records::short_hash(&record.key);
        let mut url = reqwest::Url::parse(&kannel.sendsms_url).map_err(|error| {
            ApiError::bad_request("invalid_sendsms_url", format!("sendsms_url: {error}"))
        })?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("username", &kannel.username)
                .append_pair("password", &kannel.password)
                .append_pair("to", &queued.to)
                .append_pair("text", &queued.text)
                .append_pair("charset", "UTF-8")
                .append_pair("coding", "0");
            if let Some(sender) = &kannel.sender {
                query.append_pair("from", sender);
            }
            if let Some(base) = &kannel.dlr_base_url {
                let token = &rail.gateway_token.0;
                query
                    .append_pair("dlr-mask", &DLR_MASK.to_string())
                    .append_pair(
                        "dlr-url",
                        &format!(
                            "{}/sms/kannel/{token}/dlr?id={sent_id}&status=%d",
                            base.trim_end_matches('/')
                        ),
                    );
            }
        }
        let result = rail.http.get(url).send().await;
        let error = match result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("sendsms answered HTTP {}", response.status())),
            Err(error) => Some(format!("sendsms unreachable: {}", error.without_url())),
        };
        let mut operations: Vec<Operation> = Vec::new();
        match error {
            None => {
                Metrics::add(&rail.metrics.sent, 1);
                operations.push(records::delete(record.key.clone(), Some(record.version)));
                operations.push(records::put(
                    records::sent_key(&sent_id),
                    &SentRecord {
                        version: records::FORMAT_VERSION,
                        to: queued.to.clone(),
                        queue_key: record.key.clone(),
                        status: "accepted".to_owned(),
                        sent_at_ms: now_ms,
                        report_at_ms: None,
                        text: queued.text.clone(),
                        attempts: queued.attempts + 1,
                    },
                    None,
                ));
                progressed = true;
            }
            Some(message) => {
                Metrics::add(&rail.metrics.send_failures, 1);
                queued.attempts += 1;
                queued.last_error = Some(message.clone());
                tracing::warn!(attempts = queued.attempts, error = %message, "sms send failed");
                if queued.attempts >= SEND_ATTEMPTS_MAX {
                    operations.push(records::delete(record.key.clone(), Some(record.version)));
                    operations.push(records::put(format!("dead:{}", record.key), &queued, None));
                } else {
                    queued.next_attempt_ms = now_ms + backoff_ms(queued.attempts);
                    operations.push(records::put(
                        record.key.clone(),
                        &queued,
                        Some(record.version),
                    ));
                }
            }
        }
        let results = state
            .ledger
            .commit(vec![Batch { operations }], state.now())
            .await?;
        if let Some(Err(refusal)) = results.into_iter().next() {
            tracing::warn!(%refusal, "sms queue update refused");
        }
    }
    Ok(progressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        assert_eq!(backoff_ms(0), BACKOFF_BASE_MS);
        assert_eq!(backoff_ms(1), 2 * BACKOFF_BASE_MS);
        assert_eq!(backoff_ms(30), BACKOFF_MAX_MS);
    }

    #[test]
    fn webhook_fields_accept_common_spellings() {
        let sms: WebhookSms =
            serde_json::from_str(r#"{"From":"+254700000001","Body":"HELP","MessageSid":"SM1"}"#)
                .unwrap();
        let (id, from, text) = validate(sms).unwrap();
        assert_eq!(
            (id.as_str(), from.as_str(), text.as_str()),
            ("SM1", "+254700000001", "HELP")
        );
        assert!(validate(WebhookSms::default()).is_err());
    }
}
