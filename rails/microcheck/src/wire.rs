//! The local link between a payer device and a vending machine (infrared in the paper; TCP on
//! loopback here). A frame is a 4-byte big-endian length, at most [`FRAME_BYTES_MAX`], followed by
//! a JSON object `{"v": 1, "type": ..., ...}`. Unknown versions, types and fields are refused
//! with a reason; nothing a peer sends can make a reader allocate more than one frame.
//!
//! ```text
//! payer                                   machine
//!   select {item}                 ─────▶
//!                                 ◀─────  offer {offer, merchant_credential, offer_signature}
//!                                         | refused {code, reason}   (sold out, unknown item)
//!   payment {microcheck, credentials} ──▶
//!   | decline {nonce}
//!                                 ◀─────  receipt {nonce, product, amount, currency}
//!                                         | refused {code, reason}
//! ```

use serde::{Deserialize, Serialize};

use crate::error::Refusal;
use crate::limits::{FRAME_BYTES_MAX, FRAME_PREFIX_BYTES};
use crate::offer::Offer;

/// Version of the link protocol.
pub const WIRE_VERSION: u32 = 1;

/// One message of the local link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// Payer → machine: the button pressed.
    Select {
        /// Link version.
        v: u32,
        /// Item number on the machine's stock list.
        item: u32,
    },
    /// Machine → payer: what it costs, signed by the merchant, with its PA credential.
    Offer {
        /// Link version.
        v: u32,
        /// The offer.
        offer: Offer,
        /// The merchant's credential from the PA.
        merchant_credential: String,
        /// A statement by the merchant key over [`Offer::signed_bytes`].
        offer_signature: String,
    },
    /// Payer → machine: the microcheck and the credentials that make it good.
    Payment {
        /// Link version.
        v: u32,
        /// The microcheck.
        microcheck: String,
        /// Credentials.
        credentials: Vec<String>,
    },
    /// Payer → machine: no, thanks (so the machine need not wait for a timeout).
    Decline {
        /// Link version.
        v: u32,
        /// The offer's nonce.
        nonce: String,
    },
    /// Machine → payer: dispensed.
    Receipt {
        /// Link version.
        v: u32,
        /// The offer's nonce.
        nonce: String,
        /// What was dispensed.
        product: String,
        /// Amount.
        amount: String,
        /// Currency.
        currency: String,
    },
    /// Either way: refused, with the reason.
    Refused {
        /// Link version.
        v: u32,
        /// Stable code ([`Refusal::code`]).
        code: String,
        /// For people.
        reason: String,
    },
}

impl Message {
    /// A refusal message.
    pub fn refused(refusal: &Refusal) -> Message {
        Message::Refused {
            v: WIRE_VERSION,
            code: refusal.code(),
            reason: refusal.to_string(),
        }
    }

    fn version(&self) -> u32 {
        match self {
            Message::Select { v, .. }
            | Message::Offer { v, .. }
            | Message::Payment { v, .. }
            | Message::Decline { v, .. }
            | Message::Receipt { v, .. }
            | Message::Refused { v, .. } => *v,
        }
    }

    /// The frame: length prefix and JSON body.
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let length = u32::try_from(body.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(FRAME_PREFIX_BYTES + body.len());
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses a frame body.
    pub fn decode(body: &[u8]) -> Result<Message, Refusal> {
        if body.len() > FRAME_BYTES_MAX {
            return Err(Refusal::malformed(
                "frame",
                format!("longer than {FRAME_BYTES_MAX} bytes"),
            ));
        }
        let message: Message = serde_json::from_slice(body)
            .map_err(|e| Refusal::malformed("message", e.to_string()))?;
        if message.version() != WIRE_VERSION {
            return Err(Refusal::malformed(
                "message",
                format!(
                    "link version {} (this device speaks {WIRE_VERSION})",
                    message.version()
                ),
            ));
        }
        Ok(message)
    }
}

/// Reads a length prefix; refuses lengths over [`FRAME_BYTES_MAX`] before anything is allocated.
pub fn frame_length(prefix: [u8; FRAME_PREFIX_BYTES]) -> Result<usize, Refusal> {
    let length = u32::from_be_bytes(prefix) as usize;
    if length == 0 || length > FRAME_BYTES_MAX {
        return Err(Refusal::malformed(
            "frame",
            format!("length {length} (1 to {FRAME_BYTES_MAX} allowed)"),
        ));
    }
    Ok(length)
}

/// Sans-I/O frame reassembly: push what arrived, pop whole messages.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Appends received bytes (the buffer never holds more than one frame plus what was pushed).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` if more bytes are needed. After an error the link
    /// should be closed: framing is lost.
    pub fn next_message(&mut self) -> Result<Option<Message>, Refusal> {
        if self.buffer.len() < FRAME_PREFIX_BYTES {
            return Ok(None);
        }
        let mut prefix = [0u8; FRAME_PREFIX_BYTES];
        prefix.copy_from_slice(&self.buffer[..FRAME_PREFIX_BYTES]);
        let length = frame_length(prefix)?;
        if self.buffer.len() < FRAME_PREFIX_BYTES + length {
            return Ok(None);
        }
        let body: Vec<u8> = self
            .buffer
            .drain(..FRAME_PREFIX_BYTES + length)
            .skip(FRAME_PREFIX_BYTES)
            .collect();
        Message::decode(&body).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_refusals() {
        let message = Message::Select { v: 1, item: 3 };
        let mut reader = FrameReader::new();
        reader.push(&message.encode());
        assert_eq!(reader.next_message().unwrap(), Some(message));
        assert_eq!(reader.next_message().unwrap(), None);
        for body in [
            &br#"{"type":"select","v":2,"item":1}"#[..],
            br#"{"type":"select","v":1,"item":1,"extra":0}"#,
            br#"{"type":"teleport","v":1}"#,
            br#"{"type":"select","v":1,"item":-1}"#,
            b"\xff\xfe",
            b"[]",
        ] {
            assert!(
                Message::decode(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(frame_length([0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(frame_length([0, 0, 0, 0]).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut reader = FrameReader::new();
            reader.push(&bytes);
            for _ in 0..8 {
                match reader.next_message() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }

        #[test]
        fn frames_survive_any_split(item in any::<u32>(), reason in "[ -~]{0,200}", split in 0usize..400) {
            let messages = [
                Message::Select { v: 1, item },
                Message::Refused { v: 1, code: "x".into(), reason },
            ];
            let bytes: Vec<u8> = messages.iter().flat_map(Message::encode).collect();
            let split = split.min(bytes.len());
            let mut reader = FrameReader::new();
            let mut got = Vec::new();
            for part in [&bytes[..split], &bytes[split..]] {
                reader.push(part);
                while let Some(message) = reader.next_message().unwrap() {
                    got.push(message);
                }
            }
            prop_assert_eq!(got, messages.to_vec());
        }
    }
}
