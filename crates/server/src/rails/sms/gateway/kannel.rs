//! Kannel: smsbox's `get-url` callback brings an SMS in (`?id=%I&from=%p&text=%a`), replies go
//! out through the queue and `sendsms`, and delivery reports come back to the `dlr-url` this
//! adapter puts on each send (`?id=SENT_ID&status=%d`). Kannel cannot send headers, so its
//! callbacks carry the gateway token in the path.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use offpay_sms_tan::operator::inbound::InboundAnswer;
use offpay_sms_tan::operator::outbox;

use super::{
    Callback, CallbackRefusal, Gateway, InboundMessage, Outgoing, Report, SendAnswer, SendOutcome,
    field, form_pairs, message, secret_matches,
};
use crate::rails::sms::KannelConfig;

/// Delivery-report mask asked of Kannel: delivered, failed, buffered, SMSC accepted, SMSC
/// rejected.
pub const DLR_MASK: u32 = 31;

/// The Kannel adapter. Its callbacks are always served (authenticated by the gateway token);
/// it sends only when `[kannel]` is configured.
pub struct Kannel {
    gateway_token: zeroize::Zeroizing<String>,
    config: Option<KannelConfig>,
}

impl std::fmt::Debug for Kannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kannel")
            .field("gateway_token", &"<redacted>")
            .field("config", &self.config)
            .finish()
    }
}

impl Kannel {
    /// The adapter with the gateway token and, to send, Kannel's `sendsms` settings.
    pub fn new(gateway_token: &str, config: Option<KannelConfig>) -> Kannel {
        Kannel {
            gateway_token: zeroize::Zeroizing::new(gateway_token.to_owned()),
            config,
        }
    }

    fn authenticate(&self, callback: &Callback<'_>) -> Result<(), CallbackRefusal> {
        let presented = callback.path_secret.unwrap_or("");
        if secret_matches(self.gateway_token.as_bytes(), presented.as_bytes()) {
            Ok(())
        } else {
            Err(CallbackRefusal::BadToken)
        }
    }

    /// Kannel's `sendsms` request for `sms`, with a delivery report URL when configured.
    fn sendsms_url(&self, config: &KannelConfig, sms: Outgoing<'_>) -> Option<reqwest::Url> {
        let mut url = reqwest::Url::parse(&config.sendsms_url).ok()?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("username", &config.username)
                .append_pair("password", &config.password)
                .append_pair("to", sms.to.as_str())
                .append_pair("text", sms.text)
                .append_pair("charset", "UTF-8")
                .append_pair("coding", "0");
            if let Some(sender) = &config.sender {
                query.append_pair("from", sender);
            }
            if let Some(base) = &config.dlr_base_url {
                query
                    .append_pair("dlr-mask", &DLR_MASK.to_string())
                    .append_pair(
                        "dlr-url",
                        &format!(
                            "{}/sms/kannel/{}/dlr?id={}&status=%d",
                            base.trim_end_matches('/'),
                            self.gateway_token.as_str(),
                            sms.sent_id
                        ),
                    );
            }
        }
        Some(url)
    }
}

impl Gateway for Kannel {
    fn name(&self) -> &'static str {
        "kannel"
    }

    fn inbound(&self, callback: &Callback<'_>) -> Result<InboundMessage, CallbackRefusal> {
        self.authenticate(callback)?;
        let pairs = form_pairs(callback.query.as_bytes());
        message(
            field(&pairs, "id"),
            field(&pairs, "from"),
            field(&pairs, "text"),
        )
    }

    fn replies_inline(&self) -> bool {
        false
    }

    fn answer(&self, _answer: &InboundAnswer) -> Response {
        // Replies go through the durable queue and sendsms; an empty body makes Kannel send
        // nothing itself (sms-service `omit-empty = true`).
        (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "").into_response()
    }

    fn report(&self, callback: &Callback<'_>) -> Result<Report, CallbackRefusal> {
        self.authenticate(callback)?;
        let pairs = form_pairs(callback.query.as_bytes());
        let id = field(&pairs, "id")
            .filter(|id| !id.is_empty() && id.len() <= super::MESSAGE_ID_BYTES_MAX)
            .ok_or_else(|| CallbackRefusal::Malformed {
                code: "malformed_query",
                message: "the report needs id=SENT_ID".into(),
            })?;
        let status: u32 = field(&pairs, "status")
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| CallbackRefusal::Malformed {
                code: "malformed_query",
                message: "the report needs status=%d (Kannel's DLR type)".into(),
            })?;
        Ok(Report {
            sent_id: id.to_owned(),
            delivery: outbox::report(status),
            detail: format!("kannel DLR type {status}"),
        })
    }

    fn send_request(
        &self,
        http: &reqwest::Client,
        sms: Outgoing<'_>,
    ) -> Option<reqwest::RequestBuilder> {
        let config = self.config.as_ref()?;
        Some(http.get(self.sendsms_url(config, sms)?))
    }

    fn classify(&self, answer: &SendAnswer) -> SendOutcome {
        // As before the adapters: every refusal is retried (Kannel's 4xx are configuration
        // errors the operator fixes while the queue waits).
        if (200..300).contains(&answer.status) {
            SendOutcome::Sent { gateway_id: None }
        } else {
            SendOutcome::retry(
                format!("sendsms answered HTTP {}", answer.status),
                answer.retry_after_ms,
            )
        }
    }
}
