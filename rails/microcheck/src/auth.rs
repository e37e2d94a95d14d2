//! Signed statements: how a device proves who sends a request (a payer asking for credentials, a
//! merchant depositing) and how a merchant signs its offer. A statement is a KeyNote assertion
//! whose Comment carries a purpose and the SHA-256 of the payload, with no Licensees (so it
//! grants nothing if it ever reached a query), signed by the sender's key. Any key KeyNote signs
//! with works (Ed25519 by default, RSA-SHA1 or DSA-SHA1 for old devices).

use offpay_keynote::{Assertion, AssertionBuilder, Encoding, Principal, PrivateKey};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Refusal};
use crate::limits::ASSERTION_BYTES_MAX;

/// Signs `payload` for `purpose` (a short label such as `deposit`).
pub fn sign_statement(key: &PrivateKey, purpose: &str, payload: &[u8]) -> Result<String, Error> {
    let digest = hex::encode(Sha256::digest(payload));
    let assertion = AssertionBuilder::for_key(key, Encoding::Base64)
        .comment(&format!(
            "offpay-microcheck statement v1 {purpose} {digest}"
        ))
        .licensees("")
        .sign(key, Encoding::Base64)?;
    String::from_utf8(assertion.text().to_vec())
        .map_err(|_| Error::Usage("a statement is not UTF-8".into()))
}

/// Checks a statement: it parses, its Comment names `purpose` and the payload's digest, and its
/// signature verifies. Returns the signer.
pub fn verify_statement(text: &str, purpose: &str, payload: &[u8]) -> Result<Principal, Refusal> {
    verify_statement_parts(text, purpose, &[payload])
}

/// [`verify_statement`] for a payload given in consecutive parts (a request's header lines and
/// its body as received), so that a large body need not be copied to be checked.
pub fn verify_statement_parts(
    text: &str,
    purpose: &str,
    payload: &[&[u8]],
) -> Result<Principal, Refusal> {
    if text.len() > ASSERTION_BYTES_MAX {
        return Err(Refusal::malformed("signature", "too long"));
    }
    let assertion = Assertion::parse(text.as_bytes())
        .map_err(|e| Refusal::malformed("signature", e.to_string()))?;
    let mut hasher = Sha256::new();
    for part in payload {
        hasher.update(part);
    }
    let digest = hex::encode(hasher.finalize());
    let expected = format!("offpay-microcheck statement v1 {purpose} {digest}");
    let comment_matches = String::from_utf8_lossy(assertion.text())
        .lines()
        .any(|line| {
            line.strip_prefix("Comment:")
                .is_some_and(|body| body.trim() == expected)
        });
    if !comment_matches {
        return Err(Refusal::malformed(
            "signature",
            format!("it does not sign this {purpose}"),
        ));
    }
    assertion
        .verify_signature()
        .map_err(|e| Refusal::malformed("signature", e.to_string()))?;
    Ok(assertion.authorizer().clone())
}

/// A short printable fingerprint of a principal: 16 hex digits of the SHA-256 of its canonical
/// identifier. Used in record keys and messages (never the whole key).
pub fn fingerprint(principal: &Principal) -> String {
    let digest = Sha256::digest(principal.to_identifier(Encoding::Hex));
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_bind_purpose_payload_and_key() {
        let key = PrivateKey::ed25519_from_seed(&[9; 32]);
        let text = sign_statement(&key, "deposit", b"body").unwrap();
        assert_eq!(
            verify_statement(&text, "deposit", b"body").unwrap(),
            key.principal()
        );
        assert!(verify_statement(&text, "deposit", b"other").is_err());
        assert!(verify_statement(&text, "refresh", b"body").is_err());
        let altered = text.replace(
            "Signature: \"sig-ed25519-sha512-base64:A",
            "Signature: \"sig-ed25519-sha512-base64:B",
        );
        if altered != text {
            assert!(verify_statement(&altered, "deposit", b"body").is_err());
        }
        assert!(verify_statement("garbage", "deposit", b"body").is_err());
        assert_eq!(
            verify_statement_parts(&text, "deposit", &[b"bo", b"", b"dy"]).unwrap(),
            key.principal()
        );
        assert!(verify_statement_parts(&text, "deposit", &[b"bo", b"dy!"]).is_err());
    }
}
