//! Device requests to the operator: a payer asking for credentials or its statement, a merchant
//! refreshing its credential or depositing. Each request is `{who, time, signature, body}`, the
//! signature a statement ([`crate::auth`]) by the device's registered key over
//! [`request_payload`]. The device half signs here; the operator half checks in
//! `operator::auth`.

use offpay_keynote::PrivateKey;
use serde_json::{Value, json};

use crate::auth::sign_statement;
use crate::error::Error;

/// Request purposes, each a statement purpose (a statement for one never passes for another).
pub mod purpose {
    /// A payer asks for its offline credentials.
    pub const REFRESH: &str = "refresh";
    /// A payer asks for a transaction-specific credential.
    pub const TRANSACTION: &str = "transaction";
    /// A payer asks for its statement.
    pub const STATEMENT: &str = "statement";
    /// A merchant asks for its credential again.
    pub const MERCHANT_REFRESH: &str = "merchant-refresh";
    /// A merchant deposits microchecks.
    pub const DEPOSIT: &str = "deposit";
}

/// The header lines a request's signature covers before its body: `purpose\nwho\ntime\n`.
pub fn request_header(purpose: &str, who: &str, time: u64) -> String {
    format!("{purpose}\n{who}\n{time}\n")
}

/// The bytes a device signs for a request: [`request_header`], then the body as compact JSON.
pub fn request_payload(purpose: &str, who: &str, time: u64, body: &Value) -> Vec<u8> {
    let mut out = request_header(purpose, who, time).into_bytes();
    // Serialising a `Value` into a vector cannot fail.
    out.extend_from_slice(&serde_json::to_vec(body).unwrap_or_default());
    out
}

/// A request `who` sends at `time` (Unix seconds at the device) for `purpose`, signed by `key`:
/// the JSON to post.
pub fn sign_request(
    key: &PrivateKey,
    purpose: &str,
    who: &str,
    time: u64,
    body: Value,
) -> Result<Value, Error> {
    let payload = request_payload(purpose, who, time, &body);
    let signature = sign_statement(key, purpose, &payload)?;
    Ok(json!({ "who": who, "time": time, "signature": signature, "body": body }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use super::*;
    use crate::auth::verify_statement;

    #[test]
    fn a_signed_request_covers_purpose_sender_time_and_compact_body() {
        let key = PrivateKey::ed25519_from_seed(&[3; 32]);
        let body = json!({ "after": "x" });
        let request = sign_request(
            &key,
            purpose::STATEMENT,
            "alice",
            1_767_225_600,
            body.clone(),
        )
        .unwrap();
        assert_eq!(
            request_payload(purpose::STATEMENT, "alice", 1_767_225_600, &body),
            b"statement\nalice\n1767225600\n{\"after\":\"x\"}".to_vec()
        );
        let signature = request["signature"].as_str().unwrap();
        let payload = request_payload(purpose::STATEMENT, "alice", 1_767_225_600, &body);
        assert_eq!(
            verify_statement(signature, purpose::STATEMENT, &payload).unwrap(),
            key.principal()
        );
        assert!(verify_statement(signature, purpose::REFRESH, &payload).is_err());
        assert_eq!(request["who"], "alice");
        assert_eq!(request["body"], body);
    }
}
