//! The generic JSON webhook, for a gateway of the operator's own (an SMPP bridge, a modem box):
//! an SMS comes in as JSON or a form (`from`, `text`, `message_id`, with the common spellings of
//! other SMS APIs) and the replies go back in the JSON answer; queued SMS go out as a JSON POST
//! (`id`, `to`, `text`) to the configured URL; delivery reports come back as JSON (`id`,
//! `status`) to `/sms/webhook/report`.
//!
//! Authentication: `X-Offpay-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body under the
//! webhook secret (`DATA_DIR/sms-webhook.secret`), in both directions. The gateway token as
//! `Authorization: Bearer` is accepted while `sms.toml` has no `[webhook]` table (set-ups from
//! before the signature), and with one only if it says `allow_bearer = true`.

use axum::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use offpay_sms_tan::operator::inbound::InboundAnswer;
use offpay_sms_tan::operator::records::Delivery;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::{
    Callback, CallbackRefusal, Gateway, InboundMessage, Outgoing, Report, SendAnswer, SendOutcome,
    message, secret_matches,
};

/// The signature header, both directions.
pub const SIGNATURE_HEADER: &str = "x-offpay-signature";
/// The signature's scheme prefix.
pub const SIGNATURE_PREFIX: &str = "sha256=";

/// The webhook adapter.
pub struct Webhook {
    gateway_token: zeroize::Zeroizing<String>,
    secret: Option<zeroize::Zeroizing<Vec<u8>>>,
    allow_bearer: bool,
    send_url: Option<reqwest::Url>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("allow_bearer", &self.allow_bearer)
            .field(
                "send_url",
                &self.send_url.as_ref().map(reqwest::Url::as_str),
            )
            .finish_non_exhaustive()
    }
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

/// A delivery report to `/sms/webhook/report`.
#[derive(Debug, Deserialize)]
struct WebhookReport {
    id: String,
    status: String,
    #[serde(default)]
    detail: Option<String>,
}

/// The HMAC-SHA256 of `body` under `secret`, as the header value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes a key of any length.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

impl Webhook {
    /// The adapter: the gateway token (Bearer), the signing secret, whether Bearer is still
    /// accepted, and where queued SMS are POSTed.
    pub fn new(
        gateway_token: &str,
        secret: Option<zeroize::Zeroizing<Vec<u8>>>,
        allow_bearer: bool,
        send_url: Option<reqwest::Url>,
    ) -> Webhook {
        Webhook {
            gateway_token: zeroize::Zeroizing::new(gateway_token.to_owned()),
            secret,
            allow_bearer,
            send_url,
        }
    }

    fn authenticate(&self, callback: &Callback<'_>) -> Result<(), CallbackRefusal> {
        if let Some(signature) = callback.headers.get(SIGNATURE_HEADER) {
            let Some(secret) = &self.secret else {
                return Err(CallbackRefusal::Unauthenticated(
                    "a signed webhook needs the webhook secret configured ([webhook] in sms.toml)",
                ));
            };
            let presented = signature
                .to_str()
                .ok()
                .and_then(|value| value.trim().strip_prefix(SIGNATURE_PREFIX))
                .and_then(|hex_text| hex::decode(hex_text).ok())
                .unwrap_or_default();
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| {
                CallbackRefusal::Unauthenticated("the webhook secret is not usable")
            })?;
            mac.update(callback.body);
            return mac
                .verify_slice(&presented)
                .map_err(|_| CallbackRefusal::Unauthenticated("the body's signature is wrong"));
        }
        let bearer = callback
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        match bearer {
            Some(token)
                if self.allow_bearer
                    && secret_matches(self.gateway_token.as_bytes(), token.as_bytes()) =>
            {
                Ok(())
            }
            _ if !self.allow_bearer => Err(CallbackRefusal::Unauthenticated(
                "sign the body with the webhook secret (X-Offpay-Signature: sha256=<hex>)",
            )),
            _ => Err(CallbackRefusal::BadToken),
        }
    }
}

fn is_json(callback: &Callback<'_>) -> bool {
    callback
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// What a webhook report's status word means.
pub fn delivery(status: &str) -> Delivery {
    match status.to_ascii_lowercase().as_str() {
        "delivered" => Delivery::Delivered,
        "failed" | "undelivered" => Delivery::Failed,
        "rejected" => Delivery::SmscRejected,
        "buffered" | "queued" => Delivery::Buffered,
        "sent" | "accepted" | "submitted" => Delivery::SmscAccepted,
        _ => Delivery::Unknown,
    }
}

impl Gateway for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn inbound(&self, callback: &Callback<'_>) -> Result<InboundMessage, CallbackRefusal> {
        self.authenticate(callback)?;
        let sms: WebhookSms = if is_json(callback) {
            serde_json::from_slice(callback.body).map_err(|error| CallbackRefusal::Malformed {
                code: "malformed_request",
                message: format!("the JSON body does not read: {error}"),
            })?
        } else {
            serde_urlencoded_pairs(callback.body)
        };
        message(
            sms.message_id.as_deref(),
            sms.from.as_deref(),
            sms.text.as_deref(),
        )
    }

    fn replies_inline(&self) -> bool {
        true
    }

    fn answer(&self, answer: &InboundAnswer) -> Response {
        Json(json!({
            "replies": answer.replies,
            "reply": answer.replies.join("\n"),
            "duplicate": answer.duplicate,
            "verdict": answer.summary.verdict.word(),
            "queued": answer.summary.queued,
        }))
        .into_response()
    }

    fn report(&self, callback: &Callback<'_>) -> Result<Report, CallbackRefusal> {
        self.authenticate(callback)?;
        let report: WebhookReport =
            serde_json::from_slice(callback.body).map_err(|error| CallbackRefusal::Malformed {
                code: "malformed_request",
                message: format!("a report is JSON {{\"id\", \"status\"}}: {error}"),
            })?;
        if report.id.is_empty() || report.id.len() > super::MESSAGE_ID_BYTES_MAX {
            return Err(CallbackRefusal::Malformed {
                code: "invalid_message_id",
                message: "the report's id is the id the SMS was sent with".into(),
            });
        }
        let detail = match &report.detail {
            Some(detail) => format!("{}: {detail}", report.status),
            None => report.status.clone(),
        };
        Ok(Report {
            sent_id: report.id,
            delivery: delivery(&report.status),
            detail,
        })
    }

    fn send_request(
        &self,
        http: &reqwest::Client,
        sms: Outgoing<'_>,
    ) -> Option<reqwest::RequestBuilder> {
        let url = self.send_url.clone()?;
        let body = serde_json::to_vec(&json!({
            "id": sms.sent_id,
            "to": sms.to.as_str(),
            "text": sms.text,
        }))
        .ok()?;
        let mut request = http
            .post(url)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, sign(secret, &body));
        }
        Some(request.body(body))
    }

    fn classify(&self, answer: &SendAnswer) -> SendOutcome {
        if (200..300).contains(&answer.status) {
            SendOutcome::Sent { gateway_id: None }
        } else {
            SendOutcome::by_status("the webhook", answer)
        }
    }
}

/// A form body read leniently into the webhook's fields (the first value of each).
fn serde_urlencoded_pairs(body: &[u8]) -> WebhookSms {
    let pairs = super::form_pairs(body);
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| super::field(&pairs, name))
            .map(str::to_owned)
    };
    WebhookSms {
        from: first(&["from", "From", "msisdn", "sender", "phone"]),
        text: first(&["text", "Body", "body", "message", "content"]),
        message_id: first(&["message_id", "MessageSid", "messageId", "id", "message-id"]),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::*;

    fn callback<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Callback<'a> {
        Callback {
            path_and_query: "/sms/webhook",
            path_secret: None,
            peer: None,
            headers,
            query: "",
            body,
        }
    }

    #[test]
    fn webhook_fields_accept_common_spellings() {
        let gateway = Webhook::new("token", None, true, None);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer token".parse().unwrap());
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let body = br#"{"From":"+254700000001","Body":"HELP","MessageSid":"SM1"}"#;
        let read = gateway.inbound(&callback(&headers, body)).unwrap();
        assert_eq!(
            (
                read.message_id.as_str(),
                read.from.as_str(),
                read.text.as_str()
            ),
            ("SM1", "+254700000001", "HELP")
        );
        headers.remove(header::CONTENT_TYPE);
        let read = gateway
            .inbound(&callback(
                &headers,
                b"msisdn=%2B254700000001&message=BAL&id=7",
            ))
            .unwrap();
        assert_eq!(read.text, "BAL");
    }

    #[test]
    fn a_signature_is_checked_over_the_raw_body_and_bearer_can_be_turned_off() {
        let secret = zeroize::Zeroizing::new(b"webhook-secret".to_vec());
        let gateway = Webhook::new("token", Some(secret.clone()), false, None);
        let body = br#"{"from":"+254700000001","text":"HELP","message_id":"m1"}"#;
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        headers.insert(SIGNATURE_HEADER, sign(&secret, body).parse().unwrap());
        assert!(gateway.inbound(&callback(&headers, body)).is_ok());
        let tampered = br#"{"from":"+254700000009","text":"HELP","message_id":"m1"}"#;
        assert!(matches!(
            gateway.inbound(&callback(&headers, tampered)),
            Err(CallbackRefusal::Unauthenticated(_))
        ));
        headers.remove(SIGNATURE_HEADER);
        headers.insert(header::AUTHORIZATION, "Bearer token".parse().unwrap());
        assert!(matches!(
            gateway.inbound(&callback(&headers, body)),
            Err(CallbackRefusal::Unauthenticated(_))
        ));
    }
}
