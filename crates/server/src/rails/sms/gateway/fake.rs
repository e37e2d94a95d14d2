//! A fake gateway for tests: it records every SMS the worker hands it and answers from a script
//! (sent, or a scripted failure). No configuration selects it: a test puts it in with
//! [`crate::rails::sms::SmsRail::replace_outbound_for_tests`]. It takes no callbacks.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use offpay_sms_tan::operator::inbound::InboundAnswer;

use super::{
    Callback, CallbackRefusal, Gateway, InboundMessage, Outgoing, Report, SendAnswer, SendOutcome,
};

/// Most SMS a fake keeps (a test sends far fewer).
pub const RECORDED_MAX: usize = 10_000;

/// One SMS the fake was handed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeSent {
    /// The server's id of it.
    pub sent_id: String,
    /// Recipient.
    pub to: String,
    /// Text.
    pub text: String,
    /// What the fake answered.
    pub outcome: SendOutcome,
}

/// The fake gateway.
#[derive(Debug, Default)]
pub struct FakeGateway {
    script: Mutex<VecDeque<SendOutcome>>,
    sent: Mutex<Vec<FakeSent>>,
}

impl FakeGateway {
    /// A fake that accepts everything.
    pub fn new() -> FakeGateway {
        FakeGateway::default()
    }

    /// The next answers, in order, before it accepts everything again.
    pub fn script(&self, outcomes: impl IntoIterator<Item = SendOutcome>) {
        if let Ok(mut script) = self.script.lock() {
            script.extend(outcomes);
        }
    }

    /// Every SMS handed over so far, with what the fake answered.
    pub fn sent(&self) -> Vec<FakeSent> {
        self.sent
            .lock()
            .map(|sent| sent.clone())
            .unwrap_or_default()
    }

    /// The answer to one send, recorded.
    pub fn take(&self, sms: Outgoing<'_>) -> SendOutcome {
        let outcome = self
            .script
            .lock()
            .ok()
            .and_then(|mut script| script.pop_front())
            .unwrap_or(SendOutcome::Sent {
                gateway_id: Some(format!("fake-{}", sms.sent_id)),
            });
        if let Ok(mut sent) = self.sent.lock()
            && sent.len() < RECORDED_MAX
        {
            sent.push(FakeSent {
                sent_id: sms.sent_id.to_owned(),
                to: sms.to.as_str().to_owned(),
                text: sms.text.to_owned(),
                outcome: outcome.clone(),
            });
        }
        outcome
    }
}

impl Gateway for FakeGateway {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn inbound(&self, _callback: &Callback<'_>) -> Result<InboundMessage, CallbackRefusal> {
        Err(CallbackRefusal::Unauthenticated(
            "the fake gateway takes no callbacks",
        ))
    }

    fn replies_inline(&self) -> bool {
        false
    }

    fn answer(&self, _answer: &InboundAnswer) -> Response {
        StatusCode::NO_CONTENT.into_response()
    }

    fn report(&self, _callback: &Callback<'_>) -> Result<Report, CallbackRefusal> {
        Err(CallbackRefusal::Unauthenticated(
            "the fake gateway takes no callbacks",
        ))
    }

    fn send_request(
        &self,
        _http: &reqwest::Client,
        _sms: Outgoing<'_>,
    ) -> Option<reqwest::RequestBuilder> {
        None
    }

    fn classify(&self, _answer: &SendAnswer) -> SendOutcome {
        SendOutcome::Sent { gateway_id: None }
    }

    fn send_in_process(&self, sms: Outgoing<'_>) -> Option<SendOutcome> {
        Some(self.take(sms))
    }
}
