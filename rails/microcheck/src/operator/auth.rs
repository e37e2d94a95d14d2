//! Authenticating a device's request ([`crate::request`]): the request is recent (within
//! [`CLOCK_SKEW_SECONDS_MAX`] of the operator's clock), and a statement by the sender's
//! registered key signs its purpose, sender, time and body.

use offpay_keynote::Principal;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::OperatorError;
use crate::auth::{verify_statement, verify_statement_parts};
use crate::limits::CLOCK_SKEW_SECONDS_MAX;
use crate::request::{request_header, request_payload};
use crate::time::UnixSeconds;

/// A device request as received: who, when, and a statement signing
/// [`request_payload`] of the body as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequest {
    /// Payer name or merchant id.
    pub who: String,
    /// Unix seconds at the device.
    pub time: u64,
    /// Statement by the device key.
    pub signature: String,
    /// Purpose-specific body, as sent: the signature covers these bytes.
    #[serde(default = "null_body")]
    pub body: Box<RawValue>,
}

fn null_body() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable!("valid JSON"))
}

impl SignedRequest {
    /// The body as a JSON value.
    pub fn body_value(&self) -> Result<Value, OperatorError> {
        serde_json::from_str(self.body.get())
            .map_err(|e| OperatorError::invalid("malformed", format!("request body: {e}")))
    }

    /// Checks that the request is recent at `now` and signed for `purpose` by `registered`.
    pub fn authenticate(
        &self,
        purpose: &str,
        registered: &Principal,
        now: UnixSeconds,
    ) -> Result<(), OperatorError> {
        let skew = now.0.abs_diff(self.time);
        if skew > CLOCK_SKEW_SECONDS_MAX {
            return Err(OperatorError::Unauthenticated {
                code: "stale_request".to_owned(),
                message: format!(
                    "the request time is {skew} s from the server's clock (at most {CLOCK_SKEW_SECONDS_MAX})"
                ),
            });
        }
        let refused = |refusal: crate::Refusal| OperatorError::Unauthenticated {
            code: refusal.code(),
            message: refusal.to_string(),
        };
        // The statement signs the body as sent (what the device does: compact JSON); a client
        // that signed the compact form but sent the body laid out otherwise is checked against
        // the compact form of what it sent.
        // Hashed in two parts: a deposit's body is over a megabyte, and copying it after the
        // header lines only to hash it cost a copy and a fresh allocation per request.
        let header = request_header(purpose, &self.who, self.time);
        let body = self.body.get().as_bytes();
        let signer =
            match verify_statement_parts(&self.signature, purpose, &[header.as_bytes(), body]) {
                Ok(signer) => signer,
                Err(refusal) => {
                    let compact =
                        request_payload(purpose, &self.who, self.time, &self.body_value()?);
                    if compact.strip_prefix(header.as_bytes()) == Some(body) {
                        return Err(refused(refusal));
                    }
                    verify_statement(&self.signature, purpose, &compact).map_err(refused)?
                }
            };
        if signer != *registered {
            return Err(OperatorError::Unauthenticated {
                code: "wrong_key".to_owned(),
                message: format!("the request is not signed by {}'s registered key", self.who),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use offpay_keynote::PrivateKey;
    use serde_json::json;

    use super::*;
    use crate::request::{purpose, sign_request};

    const NOW: u64 = 1_767_225_600;

    fn received(request: &Value) -> SignedRequest {
        serde_json::from_value(request.clone()).unwrap()
    }

    fn code(result: Result<(), OperatorError>) -> String {
        result.unwrap_err().code()
    }

    #[test]
    fn a_request_signed_by_the_registered_key_within_the_skew_passes() {
        let key = PrivateKey::ed25519_from_seed(&[5; 32]);
        let request =
            sign_request(&key, purpose::DEPOSIT, "vm-1", NOW, json!({"items": []})).unwrap();
        let request = received(&request);
        let registered = key.principal();
        request
            .authenticate(purpose::DEPOSIT, &registered, UnixSeconds(NOW))
            .unwrap();
        request
            .authenticate(
                purpose::DEPOSIT,
                &registered,
                UnixSeconds(NOW + CLOCK_SKEW_SECONDS_MAX),
            )
            .unwrap();
        assert_eq!(
            code(request.authenticate(
                purpose::DEPOSIT,
                &registered,
                UnixSeconds(NOW + CLOCK_SKEW_SECONDS_MAX + 1)
            )),
            "stale_request"
        );
        assert_eq!(
            code(request.authenticate(
                purpose::DEPOSIT,
                &registered,
                UnixSeconds(NOW - CLOCK_SKEW_SECONDS_MAX - 1)
            )),
            "stale_request"
        );
        let other = PrivateKey::ed25519_from_seed(&[6; 32]).principal();
        assert_eq!(
            code(request.authenticate(purpose::DEPOSIT, &other, UnixSeconds(NOW))),
            "wrong_key"
        );
        assert_eq!(
            code(request.authenticate(purpose::REFRESH, &registered, UnixSeconds(NOW))),
            "malformed"
        );
    }

    #[test]
    fn a_body_laid_out_otherwise_is_checked_in_its_compact_form_and_an_altered_one_fails() {
        let key = PrivateKey::ed25519_from_seed(&[5; 32]);
        let signed = sign_request(
            &key,
            purpose::STATEMENT,
            "alice",
            NOW,
            json!({"after": "k"}),
        )
        .unwrap();
        let text = format!(
            r#"{{"who":"alice","time":{NOW},"signature":{},"body":{{ "after" : "k" }}}}"#,
            signed["signature"]
        );
        let request: SignedRequest = serde_json::from_str(&text).unwrap();
        request
            .authenticate(purpose::STATEMENT, &key.principal(), UnixSeconds(NOW))
            .unwrap();
        let altered = text.replace("\"k\"", "\"j\"");
        let request: SignedRequest = serde_json::from_str(&altered).unwrap();
        assert_eq!(
            code(request.authenticate(purpose::STATEMENT, &key.principal(), UnixSeconds(NOW))),
            "malformed"
        );
    }
}
