//! What may be stored or logged about an inbound SMS: its kind and the envelope number, never the
//! text itself (no TAN, checksum, coded field, amount, payee or pay number).

use core::fmt;

use crate::grammar::{Message, MessageKind, PayerRef, guess_kind, parse};
use crate::numbers::Euin;

/// A storable summary of an inbound SMS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RedactedSms {
    /// The kind, if the first word says it.
    pub kind: Option<MessageKind>,
    /// The envelope number, if the message names the payer by it (pay numbers are never kept).
    pub envelope: Option<Euin>,
    /// Whether the whole text was readable.
    pub readable: bool,
    /// Length of the original text in bytes (for diagnosing gateway truncation).
    pub length: usize,
}

/// Redacts an inbound SMS for storage and logs.
pub fn redact_sms(text: &str) -> RedactedSms {
    redact_parsed(text, parse(text).as_ref().ok())
}

/// Redacts an SMS already parsed (`None`: it could not be read).
pub fn redact_parsed(text: &str, message: Option<&Message>) -> RedactedSms {
    match message {
        Some(message) => RedactedSms {
            kind: Some(message.kind()),
            envelope: match message.payer() {
                Some(PayerRef::Envelope(euin)) => Some(euin),
                _ => None,
            },
            readable: true,
            length: text.len(),
        },
        None => RedactedSms {
            kind: guess_kind(text),
            envelope: None,
            readable: false,
            length: text.len(),
        },
    }
}

impl fmt::Display for RedactedSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Some(kind) => write!(f, "{}", kind.keyword())?,
            None => f.write_str("UNKNOWN")?,
        }
        if let Some(euin) = self.envelope {
            write!(f, " envelope={euin}")?;
        }
        if !self.readable {
            f.write_str(" unreadable")?;
        }
        write!(f, " bytes={} [fields redacted]", self.length)
    }
}

impl fmt::Debug for RedactedSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedSms({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_kind_and_drops_secrets() {
        let text = "PAYG 26399912345 1 90 447 881 725 108 921 179 447 881 725 108 789187532813.23 874 123456";
        let redacted = redact_sms(text).to_string();
        assert_eq!(
            redacted,
            format!(
                "PAYG envelope=26399912345 bytes={} [fields redacted]",
                text.len()
            )
        );
        for secret in ["447", "789187532813", "874", " 123456"] {
            assert!(!redacted.contains(secret), "{secret} leaked");
        }
        let by_pay_number = redact_sms("PAY 123456789012 901020377865 50 1 927927").to_string();
        assert!(!by_pay_number.contains("123456789012"));
        assert!(!by_pay_number.contains("927927"));
        let password = redact_sms("PASSWORD 26399912345 3 463 MyPass2026").to_string();
        assert!(!password.contains("MyPass2026") && !password.contains("463"));
        assert_eq!(
            redact_sms("PAY 1 2").to_string(),
            "PAY unreadable bytes=7 [fields redacted]"
        );
    }
}
