//! SMS gateway adapters: the generic webhook (form or JSON in, replies in the response body),
//! Kannel's `get-url` callback (replies through the queue and `sendsms`), Kannel's delivery
//! reports, and the outbound worker's calls to `sendsms`. The queue's policy (retries, backoff,
//! dead letters, what a delivery report changes) is the rail's
//! (`offpay_sms_tan::operator::outbox`); this is its HTTP adapter.
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
use offpay_operator::{Attempt, Loaded};
use offpay_sms_tan::PhoneNumber;
use offpay_sms_tan::operator::inbound::InboundSms;
use offpay_sms_tan::operator::outbox::{self, Due, OUTBOUND_PAGE};
use offpay_sms_tan::operator::records::{self, NAMESPACE, OUTBOUND_PREFIX, SentRecord};
use serde::Deserialize;
use serde_json::json;

use super::inbound::handle_inbound;
use super::{KannelConfig, SmsFailure};
use crate::AppState;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::runner;

/// Largest inbound request body a gateway may send.
pub const INBOUND_BODY_BYTES_MAX: usize = 8 * 1024;
/// Longest gateway message id accepted.
pub const MESSAGE_ID_BYTES_MAX: usize = 200;
/// How long one `sendsms` call may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
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
    let answer = handle_inbound(
        &state,
        InboundSms {
            gateway: "webhook".into(),
            message_id,
            from,
            text,
            answer_inline: true,
        },
    )
    .await?;
    Ok(Json(json!({
        "replies": answer.replies,
        "reply": answer.replies.join("\n"),
        "duplicate": answer.duplicate,
        "verdict": answer.summary.verdict.word(),
        "queued": answer.summary.queued,
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
    handle_inbound(
        &state,
        InboundSms {
            gateway: "kannel".into(),
            message_id,
            from,
            text,
            answer_inline: false,
        },
    )
    .await?;
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
    let operator = state.rails.sms.operator();
    let now = state.now();
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
            outbox::delivery_report(sent, &report.id, report.status, now, operator.master())
                .map_err(SmsFailure::from)
        },
    )
    .await?;
    if requeued {
        state.rails.sms.wake_outbound();
    }
    Ok((StatusCode::OK, "ok").into_response())
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
        .read(|store| store.records(NAMESPACE, OUTBOUND_PREFIX, None, OUTBOUND_PAGE))
        .await?;
    let (due, errors) = outbox::due(&page, state.now());
    for error in errors {
        tracing::error!(%error, "an outbound SMS does not decode; left for the operator");
    }
    let mut progressed = false;
    for due in due {
        let url = sendsms_url(&kannel, &rail.gateway_token.0, &due)?;
        let result = rail.http.get(url).send().await;
        let error = match result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("sendsms answered HTTP {}", response.status())),
            Err(error) => Some(format!("sendsms unreachable: {}", error.without_url())),
        };
        let now = state.now();
        let effects = match &error {
            None => {
                Metrics::add(&rail.metrics.sent, 1);
                progressed = true;
                outbox::sent(&due, now)
            }
            Some(message) => {
                Metrics::add(&rail.metrics.send_failures, 1);
                tracing::warn!(error = %message, "sms send failed");
                outbox::failed(&due, message, now, rail.operator().master())
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

/// Kannel's `sendsms` request for `due`, with a delivery report URL when configured.
fn sendsms_url(
    kannel: &KannelConfig,
    gateway_token: &str,
    due: &Due,
) -> Result<reqwest::Url, ApiError> {
    let mut url = reqwest::Url::parse(&kannel.sendsms_url).map_err(|error| {
        ApiError::bad_request("invalid_sendsms_url", format!("sendsms_url: {error}"))
    })?;
    let Some(queued) = due.sms() else {
        return Ok(url);
    };
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("username", &kannel.username)
            .append_pair("password", &kannel.password)
            .append_pair("to", queued.to.as_str())
            .append_pair("text", &queued.text)
            .append_pair("charset", "UTF-8")
            .append_pair("coding", "0");
        if let Some(sender) = &kannel.sender {
            query.append_pair("from", sender);
        }
        if let Some(base) = &kannel.dlr_base_url {
            query
                .append_pair("dlr-mask", &DLR_MASK.to_string())
                .append_pair(
                    "dlr-url",
                    &format!(
                        "{}/sms/kannel/{gateway_token}/dlr?id={}&status=%d",
                        base.trim_end_matches('/'),
                        due.sent_id
                    ),
                );
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

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
