//! Twilio. An inbound SMS is a form POST to the number's "a message comes in" webhook (`From`,
//! `To`, `Body`, `MessageSid`, `AccountSid`, …); a status callback is a form POST (`MessageSid`,
//! `MessageStatus`: queued, sending, sent, delivered, undelivered, failed, read, …; `ErrorCode`).
//! Both are signed: `X-Twilio-Signature` is the Base64 HMAC-SHA1, keyed with the account's auth
//! token, of the full URL Twilio called followed by every POST parameter sorted by name, each
//! name directly followed by its value — so the server must know its public URL (a proxy in
//! front changes the URL it sees). Replies go back as TwiML in the webhook's answer
//! (`<Response><Message>…</Message></Response>`), or, with `reply = "api"`, through the queue
//! like every other SMS: a form POST to `{base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`
//! with basic auth (`To`, `From` or `MessagingServiceSid`, `Body`, `StatusCallback`), answered
//! 201 with the message's `sid`, or an error `{code, message, status}` (429 with code 20429 when
//! rate limited). As Twilio's documentation gives them (twilio.com/docs/usage/webhooks/
//! webhooks-security, /docs/messaging/api/message-resource, /docs/messaging/twiml).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use offpay_sms_tan::operator::inbound::InboundAnswer;
use offpay_sms_tan::operator::records::Delivery;
use serde::Deserialize;
use sha1::Sha1;

use super::{
    Callback, CallbackRefusal, Gateway, InboundMessage, Outgoing, Report, SendAnswer, SendOutcome,
    field, form_pairs, gateway_report_id, message,
};

/// The API.
pub const LIVE_BASE_URL: &str = "https://api.twilio.com";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// The status callback's path on this server.
pub const STATUS_PATH: &str = "/sms/twilio/status";

/// Who sends Twilio's outgoing SMS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    /// A Twilio phone number (`From`).
    From(String),
    /// A messaging service (`MessagingServiceSid`).
    MessagingService(String),
}

/// The settings of [`Twilio::new`].
pub struct TwilioSettings {
    /// The API's base URL (live or a test's fake).
    pub base_url: reqwest::Url,
    /// The account SID (`AC…`).
    pub account_sid: String,
    /// The auth token: it signs the webhooks and authenticates the API calls.
    pub auth_token: zeroize::Zeroizing<String>,
    /// Who sends.
    pub sender: Sender,
    /// This server's URL as Twilio calls it (`https://pay.example.com`), without a trailing `/`.
    pub public_url: String,
    /// Replies to the sender as TwiML in the webhook's answer (else queued for the API).
    pub reply_twiml: bool,
}

impl std::fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSettings")
            .field("base_url", &self.base_url.as_str())
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// The Twilio adapter.
pub struct Twilio {
    settings: TwilioSettings,
}

impl std::fmt::Debug for Twilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twilio")
            .field("base_url", &self.settings.base_url.as_str())
            .field("account_sid", &self.settings.account_sid)
            .field("auth_token", &"<redacted>")
            .field("sender", &self.settings.sender)
            .field("public_url", &self.settings.public_url)
            .field("reply_twiml", &self.settings.reply_twiml)
            .finish()
    }
}

/// Twilio's signature of a request to `url` with the POST `parameters`, keyed with `auth_token`.
pub fn signature(auth_token: &[u8], url: &str, parameters: &[(String, String)]) -> String {
    let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token) else {
        return String::new();
    };
    let mac = signed_content(mac, url, parameters);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn signed_content(mut mac: Hmac<Sha1>, url: &str, parameters: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<&(String, String)> = parameters.iter().collect();
    sorted.sort();
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// `text` with the five XML special characters escaped.
pub fn xml_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The TwiML that sends `replies` to the sender (an empty `<Response/>` sends nothing).
pub fn twiml(replies: &[String]) -> String {
    let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#);
    for reply in replies {
        xml.push_str("<Message>");
        xml.push_str(&xml_escape(reply));
        xml.push_str("</Message>");
    }
    xml.push_str("</Response>");
    xml
}

/// What a `MessageStatus` means.
pub fn delivery(status: &str) -> Delivery {
    match status {
        "delivered" | "read" => Delivery::Delivered,
        "undelivered" | "failed" => Delivery::Failed,
        "sent" => Delivery::SmscAccepted,
        // accepted, scheduled, queued, sending: still with Twilio, as when the API answered.
        "accepted" | "scheduled" | "queued" | "sending" => Delivery::Accepted,
        _ => Delivery::Unknown,
    }
}

#[derive(Debug, Deserialize)]
struct CreatedMessage {
    sid: String,
}

#[derive(Debug, Deserialize)]
struct TwilioError {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: String,
}

impl Twilio {
    /// The adapter.
    pub fn new(settings: TwilioSettings) -> Twilio {
        Twilio { settings }
    }

    fn authenticate(
        &self,
        callback: &Callback<'_>,
    ) -> Result<Vec<(String, String)>, CallbackRefusal> {
        let pairs = form_pairs(callback.body);
        let presented = callback
            .headers
            .get(SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .ok()
            })
            .ok_or(CallbackRefusal::Unauthenticated(
                "X-Twilio-Signature is missing",
            ))?;
        let url = format!("{}{}", self.settings.public_url, callback.path_and_query);
        let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(self.settings.auth_token.as_bytes())
            .map_err(|_| CallbackRefusal::Unauthenticated("the auth token is not usable"))?;
        signed_content(mac, &url, &pairs)
            .verify_slice(&presented)
            .map_err(|_| {
                CallbackRefusal::Unauthenticated(
                    "X-Twilio-Signature does not match (is public_url the URL Twilio calls?)",
                )
            })?;
        Ok(pairs)
    }

    fn messages_url(&self) -> Option<reqwest::Url> {
        self.settings
            .base_url
            .join(&format!(
                "2010-04-01/Accounts/{}/Messages.json",
                self.settings.account_sid
            ))
            .ok()
    }
}

impl Gateway for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn inbound(&self, callback: &Callback<'_>) -> Result<InboundMessage, CallbackRefusal> {
        let pairs = self.authenticate(callback)?;
        if field(&pairs, "AccountSid").is_some_and(|sid| sid != self.settings.account_sid) {
            return Err(CallbackRefusal::Unauthenticated(
                "the message is for another Twilio account",
            ));
        }
        message(
            field(&pairs, "MessageSid"),
            field(&pairs, "From"),
            field(&pairs, "Body"),
        )
    }

    fn replies_inline(&self) -> bool {
        self.settings.reply_twiml
    }

    fn answer(&self, answer: &InboundAnswer) -> Response {
        let replies: &[String] = if self.settings.reply_twiml {
            &answer.replies
        } else {
            &[]
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            twiml(replies),
        )
            .into_response()
    }

    fn report(&self, callback: &Callback<'_>) -> Result<Report, CallbackRefusal> {
        let pairs = self.authenticate(callback)?;
        let sent_id = gateway_report_id(self.name(), field(&pairs, "MessageSid"))?;
        let status = field(&pairs, "MessageStatus").unwrap_or("");
        let detail = match field(&pairs, "ErrorCode").filter(|code| !code.is_empty()) {
            Some(code) => format!("{status} (error {code})"),
            None => status.to_owned(),
        };
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
        let url = self.messages_url()?;
        let status_callback = format!("{}{STATUS_PATH}", self.settings.public_url);
        let (sender_field, sender) = match &self.settings.sender {
            Sender::From(number) => ("From", number.as_str()),
            Sender::MessagingService(sid) => ("MessagingServiceSid", sid.as_str()),
        };
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("To", sms.to.as_str())
            .append_pair(sender_field, sender)
            .append_pair("Body", sms.text)
            .append_pair("StatusCallback", &status_callback)
            .finish();
        Some(
            http.post(url)
                .basic_auth(
                    &self.settings.account_sid,
                    Some(self.settings.auth_token.as_str()),
                )
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body),
        )
    }

    fn classify(&self, answer: &SendAnswer) -> SendOutcome {
        if (200..300).contains(&answer.status) {
            return match serde_json::from_str::<CreatedMessage>(&answer.body) {
                Ok(created) if !created.sid.is_empty() => SendOutcome::Sent {
                    gateway_id: Some(created.sid),
                },
                _ => SendOutcome::Sent { gateway_id: None },
            };
        }
        let error = serde_json::from_str::<TwilioError>(&answer.body).ok();
        let code = error.as_ref().and_then(|error| error.code);
        let words = match &error {
            Some(error) => format!(
                "twilio answered HTTP {} (error {}: {})",
                answer.status,
                code.map_or_else(|| "-".to_owned(), |code| code.to_string()),
                error.message
            ),
            None => format!("twilio answered HTTP {}", answer.status),
        };
        match (answer.status, code) {
            (429, _) | (500..=599, _) => SendOutcome::retry(words, answer.retry_after_ms),
            // Credentials the operator has to fix: keep the SMS queued meanwhile.
            (401 | 403, _) => SendOutcome::retry(words, None),
            // Other 4xx: this message will never pass (21211 an invalid `To`, 21610 the recipient
            // replied STOP, 21614 not a mobile number, …).
            _ => SendOutcome::permanent(words),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use offpay_sms_tan::operator::outbox::SendFailure;

    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn the_signature_matches_twilios_documented_example() {
        // The worked example of Twilio's webhook security page: auth token 12345.
        let parameters = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            signature(
                b"12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &parameters
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    fn twilio() -> Twilio {
        Twilio::new(TwilioSettings {
            base_url: reqwest::Url::parse("http://127.0.0.1:1/").unwrap(),
            account_sid: "AC0001".into(),
            auth_token: zeroize::Zeroizing::new("token".into()),
            sender: Sender::From("+15005550006".into()),
            public_url: "https://pay.example.com".into(),
            reply_twiml: true,
        })
    }

    #[test]
    fn inbound_is_refused_without_the_right_signature() {
        let body =
            "From=%2B254711000003&To=%2B15005550006&Body=BAL&MessageSid=SM1&AccountSid=AC0001";
        let parameters = form_pairs(body.as_bytes());
        let good = signature(
            b"token",
            "https://pay.example.com/sms/twilio/inbound",
            &parameters,
        );
        let mut headers = HeaderMap::new();
        let call = |headers: &HeaderMap| {
            twilio()
                .inbound(&Callback {
                    path_and_query: "/sms/twilio/inbound",
                    path_secret: None,
                    peer: None,
                    headers,
                    query: "",
                    body: body.as_bytes(),
                })
                .map(|message| message.text)
        };
        assert!(matches!(
            call(&headers),
            Err(CallbackRefusal::Unauthenticated(_))
        ));
        headers.insert(SIGNATURE_HEADER, good.parse().unwrap());
        assert_eq!(call(&headers), Ok("BAL".into()));
        let other = signature(
            b"token",
            "https://elsewhere.example.com/sms/twilio/inbound",
            &parameters,
        );
        headers.insert(SIGNATURE_HEADER, other.parse().unwrap());
        assert!(matches!(
            call(&headers),
            Err(CallbackRefusal::Unauthenticated(_))
        ));
    }

    #[test]
    fn twiml_escapes_the_reply() {
        assert_eq!(
            twiml(&["PAID <5> & \"ok\"".into()]),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>PAID &lt;5&gt; &amp; &quot;ok&quot;</Message></Response>"#
        );
        assert!(twiml(&[]).ends_with("<Response></Response>"));
    }

    #[test]
    fn api_answers_are_classified() {
        let gateway = twilio();
        let answer = |status: u16, body: &str, retry_after_ms: Option<u64>| SendAnswer {
            status,
            retry_after_ms,
            body: body.into(),
        };
        assert_eq!(
            gateway.classify(&answer(201, r#"{"sid":"SM9","status":"queued"}"#, None)),
            SendOutcome::Sent {
                gateway_id: Some("SM9".into())
            }
        );
        assert!(matches!(
            gateway.classify(&answer(
                429,
                r#"{"code":20429,"message":"Too Many Requests","status":429}"#,
                Some(2000)
            )),
            SendOutcome::Failed(SendFailure::RetryLater {
                retry_after_ms: Some(2000),
                ..
            })
        ));
        assert!(matches!(
            gateway.classify(&answer(400, r#"{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}"#, None)),
            SendOutcome::Failed(SendFailure::Permanent { .. })
        ));
        assert!(matches!(
            gateway.classify(&answer(503, "", None)),
            SendOutcome::Failed(SendFailure::RetryLater { .. })
        ));
        assert_eq!(delivery("delivered"), Delivery::Delivered);
        assert_eq!(delivery("undelivered"), Delivery::Failed);
        assert_eq!(delivery("queued"), Delivery::Accepted);
    }
}
