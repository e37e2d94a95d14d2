//! Africa's Talking. Inbound SMS arrive as a form POST to the "incoming messages" callback
//! (`from`, `to`, `text`, `id`, `date`, `linkId`, `networkCode`); delivery reports as a form POST
//! to the "delivery reports" callback (`id` — the `messageId` the send answered —, `status`:
//! Sent, Submitted, Buffered, Rejected, Success, Failed; `phoneNumber`, `networkCode`,
//! `failureReason`, `retryCount`). Africa's Talking sends no signature and no auth header, so
//! both callbacks carry the gateway token in their path, and an IP allow-list can be added.
//! Replies are queued and sent through its messaging API: a form POST to
//! `{base_url}/version1/messaging` with the `apiKey` header (`username`, `to`, `message`,
//! optional `from`), answered with `SMSMessageData.Recipients[]` (`statusCode`, `status`,
//! `messageId`). Field names and codes as its SMS documentation gives them
//! (docs.africastalking.com/sms/sending, /sms/deliveryreports, /sms/incomingsms).

use std::net::IpAddr;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use offpay_sms_tan::operator::inbound::InboundAnswer;
use offpay_sms_tan::operator::records::Delivery;
use serde::Deserialize;

use super::{
    Callback, CallbackRefusal, Gateway, InboundMessage, Outgoing, Report, SendAnswer, SendOutcome,
    field, form_pairs, gateway_report_id, message, secret_matches,
};

/// The live API.
pub const LIVE_BASE_URL: &str = "https://api.africastalking.com";
/// The sandbox API.
pub const SANDBOX_BASE_URL: &str = "https://api.sandbox.africastalking.com";
/// Most entries of an IP allow-list.
pub const ALLOWED_NETWORKS_MAX: usize = 64;

/// An IP network of an allow-list (`196.201.214.0/24`, `2001:db8::/32`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Reads `a.b.c.d`, `a.b.c.d/n` or the IPv6 forms.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network"))?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
            None => bits,
        };
        Ok(Network { address, prefix })
    }

    /// Whether `peer` is in this network.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            IpAddr::V4(_) => peer,
        };
        match (self.address, peer) {
            (IpAddr::V4(network), IpAddr::V4(peer)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(peer) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(peer)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(peer) & mask
            }
            _ => false,
        }
    }
}

/// The Africa's Talking adapter.
pub struct AfricasTalking {
    gateway_token: zeroize::Zeroizing<String>,
    base_url: reqwest::Url,
    username: String,
    api_key: zeroize::Zeroizing<String>,
    sender: Option<String>,
    allow: Vec<Network>,
}

impl std::fmt::Debug for AfricasTalking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfricasTalking")
            .field("base_url", &self.base_url.as_str())
            .field("username", &self.username)
            .field("api_key", &"<redacted>")
            .field("sender", &self.sender)
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

/// The settings of [`AfricasTalking::new`].
pub struct AfricasTalkingSettings {
    /// The API's base URL (live, sandbox, or a test's fake).
    pub base_url: reqwest::Url,
    /// The application's username (`sandbox` in the sandbox).
    pub username: String,
    /// The API key.
    pub api_key: zeroize::Zeroizing<String>,
    /// The short code or alphanumeric sender id (`None`: the account's default).
    pub sender: Option<String>,
    /// Networks the callbacks may come from (empty: any).
    pub allow: Vec<Network>,
}

impl std::fmt::Debug for AfricasTalkingSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfricasTalkingSettings")
            .field("base_url", &self.base_url.as_str())
            .field("username", &self.username)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl AfricasTalking {
    /// The adapter; its callbacks are authenticated by `gateway_token` in the path.
    pub fn new(gateway_token: &str, settings: AfricasTalkingSettings) -> AfricasTalking {
        AfricasTalking {
            gateway_token: zeroize::Zeroizing::new(gateway_token.to_owned()),
            base_url: settings.base_url,
            username: settings.username,
            api_key: settings.api_key,
            sender: settings.sender,
            allow: settings.allow,
        }
    }

    fn authenticate(
        &self,
        callback: &Callback<'_>,
    ) -> Result<Vec<(String, String)>, CallbackRefusal> {
        let presented = callback.path_secret.unwrap_or("");
        if !secret_matches(self.gateway_token.as_bytes(), presented.as_bytes()) {
            return Err(CallbackRefusal::Unauthenticated(
                "the path does not hold the gateway token",
            ));
        }
        if !self.allow.is_empty()
            && !callback
                .peer
                .is_some_and(|peer| self.allow.iter().any(|network| network.contains(peer)))
        {
            return Err(CallbackRefusal::Unauthenticated(
                "the caller's address is not in the allow-list",
            ));
        }
        Ok(form_pairs(callback.body))
    }
}

/// What a delivery report's `status` means.
pub fn delivery(status: &str) -> Delivery {
    match status {
        "Success" => Delivery::Delivered,
        "Failed" => Delivery::Failed,
        "Rejected" => Delivery::SmscRejected,
        "Buffered" => Delivery::Buffered,
        "Sent" | "Submitted" => Delivery::SmscAccepted,
        _ => Delivery::Unknown,
    }
}

#[derive(Debug, Deserialize)]
struct MessagingAnswer {
    #[serde(rename = "SMSMessageData")]
    data: MessageData,
}

#[derive(Debug, Deserialize)]
struct MessageData {
    #[serde(rename = "Message", default)]
    message: String,
    #[serde(rename = "Recipients", default)]
    recipients: Vec<Recipient>,
}

#[derive(Debug, Deserialize)]
struct Recipient {
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(default)]
    status: String,
    #[serde(rename = "messageId", default)]
    message_id: String,
}

/// What a recipient's `statusCode` means: 100 Processed, 101 Sent, 102 Queued are accepted; 405
/// InsufficientBalance and 5xx (InternalServerError, GatewayError, RejectedByGateway) may pass
/// later; the others (401 RiskHold, 402 InvalidSenderId, 403 InvalidPhoneNumber, 404
/// UnsupportedNumberType, 406 UserInBlacklist, 407 CouldNotRoute, 409 DoNotDisturbRejection) will
/// not.
fn recipient_outcome(recipient: &Recipient) -> SendOutcome {
    let words = format!(
        "africastalking: {} ({})",
        recipient.status, recipient.status_code
    );
    match recipient.status_code {
        100..=102 if !recipient.message_id.is_empty() => SendOutcome::Sent {
            gateway_id: Some(recipient.message_id.clone()),
        },
        100..=102 => SendOutcome::Sent { gateway_id: None },
        405 | 500..=599 => SendOutcome::retry(words, None),
        _ => SendOutcome::permanent(words),
    }
}

impl Gateway for AfricasTalking {
    fn name(&self) -> &'static str {
        "africastalking"
    }

    fn inbound(&self, callback: &Callback<'_>) -> Result<InboundMessage, CallbackRefusal> {
        let pairs = self.authenticate(callback)?;
        message(
            field(&pairs, "id"),
            field(&pairs, "from"),
            field(&pairs, "text"),
        )
    }

    fn replies_inline(&self) -> bool {
        // Africa's Talking does not read an SMS reply from the callback's answer.
        false
    }

    fn answer(&self, _answer: &InboundAnswer) -> Response {
        (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "").into_response()
    }

    fn report(&self, callback: &Callback<'_>) -> Result<Report, CallbackRefusal> {
        let pairs = self.authenticate(callback)?;
        let sent_id = gateway_report_id(self.name(), field(&pairs, "id"))?;
        let status = field(&pairs, "status").unwrap_or("");
        let mut detail = status.to_owned();
        if let Some(reason) = field(&pairs, "failureReason").filter(|reason| !reason.is_empty()) {
            detail = format!("{detail}: {reason}");
        }
        if let Some(retries) = field(&pairs, "retryCount") {
            detail = format!("{detail} (retry count {retries})");
        }
        Ok(Report {
            sent_id,
            delivery: delivery(status),
            detail,
        })
    }

    fn send_request(
        &self,
        http: &reqwest::Client,
        sms: Outgoing<'_>,
    ) -> Option<reqwest::RequestBuilder> {
        let url = self.base_url.join("version1/messaging").ok()?;
        let mut form = vec![
            ("username", self.username.as_str()),
            ("to", sms.to.as_str()),
            ("message", sms.text),
        ];
        if let Some(sender) = &self.sender {
            form.push(("from", sender.as_str()));
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        Some(
            http.post(url)
                .header("apiKey", self.api_key.as_str())
                .header(header::ACCEPT, "application/json")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body),
        )
    }

    fn classify(&self, answer: &SendAnswer) -> SendOutcome {
        match answer.status {
            200..=299 => {}
            // A key the operator has to fix: keep the SMS queued meanwhile.
            401 | 403 => {
                return SendOutcome::retry(
                    format!(
                        "africastalking refused the username or API key (HTTP {})",
                        answer.status
                    ),
                    None,
                );
            }
            _ => return SendOutcome::by_status("africastalking", answer),
        }
        let Ok(parsed) = serde_json::from_str::<MessagingAnswer>(&answer.body) else {
            return SendOutcome::retry("africastalking answered something unreadable", None);
        };
        match parsed.data.recipients.first() {
            Some(recipient) => recipient_outcome(recipient),
            None => SendOutcome::permanent(format!(
                "africastalking sent to nobody: {}",
                parsed.data.message
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use offpay_sms_tan::operator::outbox::SendFailure;

    use super::*;

    fn gateway(allow: &[&str]) -> AfricasTalking {
        AfricasTalking::new(
            "path-token",
            AfricasTalkingSettings {
                base_url: reqwest::Url::parse("http://127.0.0.1:1/").unwrap(),
                username: "sandbox".into(),
                api_key: zeroize::Zeroizing::new("key".into()),
                sender: None,
                allow: allow
                    .iter()
                    .map(|text| Network::parse(text).unwrap())
                    .collect(),
            },
        )
    }

    fn callback<'a>(
        headers: &'a HeaderMap,
        secret: &'a str,
        peer: &str,
        body: &'a [u8],
    ) -> Callback<'a> {
        Callback {
            path_and_query: "/",
            path_secret: Some(secret),
            peer: Some(peer.parse().unwrap()),
            headers,
            query: "",
            body,
        }
    }

    #[test]
    fn inbound_needs_the_path_token_and_an_allowed_address() {
        let headers = HeaderMap::new();
        let body = b"from=%2B254711000003&to=22384&text=BAL&id=ATXid_1&date=2026-12-07&linkId=L1";
        let read = gateway(&[])
            .inbound(&callback(&headers, "path-token", "10.0.0.1", body))
            .unwrap();
        assert_eq!(
            (
                read.message_id.as_str(),
                read.from.as_str(),
                read.text.as_str()
            ),
            ("ATXid_1", "+254711000003", "BAL")
        );
        assert!(matches!(
            gateway(&[]).inbound(&callback(&headers, "wrong", "10.0.0.1", body)),
            Err(CallbackRefusal::Unauthenticated(_))
        ));
        let listed = gateway(&["196.201.214.0/24", "::1"]);
        assert!(
            listed
                .inbound(&callback(&headers, "path-token", "196.201.214.77", body))
                .is_ok()
        );
        assert!(
            listed
                .inbound(&callback(&headers, "path-token", "::1", body))
                .is_ok()
        );
        assert!(matches!(
            listed.inbound(&callback(&headers, "path-token", "196.201.215.1", body)),
            Err(CallbackRefusal::Unauthenticated(_))
        ));
    }

    #[test]
    fn networks_parse_and_match() {
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("nowhere").is_err());
        let all = Network::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let mapped = Network::parse("127.0.0.1").unwrap();
        assert!(mapped.contains("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn reports_map_its_statuses() {
        let headers = HeaderMap::new();
        let body = b"id=ATXid_9&status=Failed&phoneNumber=%2B254711000003&networkCode=63902&failureReason=UserInBlackList&retryCount=0";
        let report = gateway(&[])
            .report(&callback(&headers, "path-token", "10.0.0.1", body))
            .unwrap();
        assert_eq!(report.delivery, Delivery::Failed);
        assert!(
            report.detail.contains("UserInBlackList"),
            "{}",
            report.detail
        );
        assert_eq!(
            report.sent_id,
            offpay_sms_tan::operator::outbox::gateway_sent_id("africastalking", "ATXid_9")
        );
        assert_eq!(delivery("Success"), Delivery::Delivered);
        assert_eq!(delivery("Submitted"), Delivery::SmscAccepted);
    }

    #[test]
    fn send_answers_are_classified_by_recipient_status_code() {
        let at = gateway(&[]);
        let answer = |status: u16, body: &str| SendAnswer {
            status,
            retry_after_ms: None,
            body: body.into(),
        };
        let ok = r#"{"SMSMessageData":{"Message":"Sent to 1/1 Total Cost: KES 0.8000","Recipients":[{"statusCode":101,"number":"+254711000003","status":"Success","cost":"KES 0.8000","messageId":"ATXid_1"}]}}"#;
        assert_eq!(
            at.classify(&answer(201, ok)),
            SendOutcome::Sent {
                gateway_id: Some("ATXid_1".into())
            }
        );
        let invalid = r#"{"SMSMessageData":{"Message":"Sent to 0/1","Recipients":[{"statusCode":403,"number":"+2547","status":"InvalidPhoneNumber","cost":"0","messageId":"None"}]}}"#;
        assert!(matches!(
            at.classify(&answer(201, invalid)),
            SendOutcome::Failed(SendFailure::Permanent { .. })
        ));
        let broke = invalid.replace("403", "405");
        assert!(matches!(
            at.classify(&answer(201, &broke)),
            SendOutcome::Failed(SendFailure::RetryLater { .. })
        ));
        let limited = SendAnswer {
            status: 429,
            retry_after_ms: Some(3000),
            body: String::new(),
        };
        assert_eq!(
            at.classify(&limited),
            SendOutcome::Failed(SendFailure::RetryLater {
                reason: "africastalking is rate limiting (HTTP 429)".into(),
                retry_after_ms: Some(3000)
            })
        );
        assert!(matches!(
            at.classify(&answer(401, "The supplied authentication is invalid")),
            SendOutcome::Failed(SendFailure::RetryLater { .. })
        ));
        assert!(matches!(
            at.classify(&answer(400, "Invalid Sender Id")),
            SendOutcome::Failed(SendFailure::Permanent { .. })
        ));
    }
}
