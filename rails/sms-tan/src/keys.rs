//! Keys: the master key held outside the database, per-envelope keys derived from it, the digit
//! stream that turns a key into printed secrets, and the tags the master key makes (binding, pay
//! number, fingerprint). Sealing imported envelopes is in [`crate::seal`], above the envelope
//! file format it encrypts.
//!
//! Derivation (all HMAC-SHA256, labels are ASCII):
//! - envelope key  = HMAC(master, "offpay/sms-tan/v1/envelope" ‖ EUIN digits as ASCII)
//! - stream block i = HMAC(envelope key, purpose ‖ index ‖ i as u32 big-endian), where purpose is
//!   `"row"` or `"grid"` and index the row (1–50) or grid (1–4) number as one byte
//! - seal key      = HMAC(master, "offpay/sms-tan/v1/seal")
//!
//! A database therefore only ever holds the EUIN, its binding and used-row bookkeeping; whoever
//! reads it learns no TAN and no grid.

use alloc::vec::Vec;
use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::error::Misuse;
use crate::numbers::{AccountNumber, Euin};

type HmacSha256 = Hmac<Sha256>;

const ENVELOPE_LABEL: &[u8] = b"offpay/sms-tan/v1/envelope";
const FINGERPRINT_LABEL: &[u8] = b"offpay/sms-tan/v1/fingerprint";
const BINDING_LABEL: &[u8] = b"offpay/sms-tan/v1/binding";
const PAY_NUMBER_LABEL: &[u8] = b"offpay/sms-tan/v1/pay-number";
const RECORD_MAC_LABEL: &[u8] = b"offpay/sms-tan/v1/record-mac";
/// Format version byte at the start of every sealed envelope.
pub const SEALED_FORMAT_VERSION: u8 = 1;

pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The operator's master key: 32 bytes from a key file or KMS, never from the database.
/// Redacted in `Debug`, zeroized on drop.
pub struct MasterKey([u8; MasterKey::BYTES]);

impl MasterKey {
    /// Length in bytes.
    pub const BYTES: usize = 32;

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; MasterKey::BYTES]) -> MasterKey {
        MasterKey(bytes)
    }

    /// From a slice of exactly [`MasterKey::BYTES`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<MasterKey, Misuse> {
        let array: [u8; MasterKey::BYTES] = bytes.try_into().map_err(|_| Misuse::BadMasterKey)?;
        Ok(MasterKey(array))
    }

    /// The key from which every secret of envelope `euin` is derived.
    pub fn envelope_key(&self, euin: &Euin) -> EnvelopeKey {
        let mut ascii = [0u8; crate::limits::EUIN_DIGITS];
        for (slot, digit) in ascii.iter_mut().zip(euin.digits()) {
            *slot = b'0' + digit;
        }
        EnvelopeKey(hmac(&self.0, &[ENVELOPE_LABEL, &ascii]))
    }

    /// The tag that binds envelope `euin` to the account with receive number `account`.
    pub fn binding_tag(&self, euin: &Euin, account: &AccountNumber) -> BindingTag {
        let account_ascii = account.digits().map(|digit| b'0' + digit);
        let full = hmac(&self.0, &[BINDING_LABEL, &euin_ascii(euin), &account_ascii]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        BindingTag(tag)
    }

    /// A keyed tag of a secret pay number, for the server's index from pay number to account:
    /// the database keeps the tag, never the pay number, and without the master key a tag cannot
    /// be computed for a guessed number.
    pub fn pay_number_tag(&self, pay_number: &AccountNumber) -> [u8; 16] {
        let ascii = pay_number.digits().map(|digit| b'0' + digit);
        let full = hmac(&self.0, &[PAY_NUMBER_LABEL, &ascii]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }

    /// HMAC of `parts` under the master key itself (for keys derived by label, e.g. the seal key).
    #[cfg(feature = "operator")]
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        hmac(&self.0, parts)
    }

    /// The MAC of a stored record that can cause a posting (a scheduled payment, a pending
    /// callback, an account's settings): HMAC-SHA256 under a key derived from the master key, over
    /// the record's kind, its storage key and its content, so a database administrator can neither
    /// write a new one, nor change one, nor move one to another key.
    pub fn record_mac(&self, kind: &str, key: &str, content: &[u8]) -> [u8; 32] {
        let record_key = hmac(&self.0, &[RECORD_MAC_LABEL]);
        let kind_length = (kind.len() as u64).to_be_bytes();
        let key_length = (key.len() as u64).to_be_bytes();
        hmac(
            &record_key,
            &[
                &kind_length,
                kind.as_bytes(),
                &key_length,
                key.as_bytes(),
                content,
            ],
        )
    }

    /// Whether `mac` is the MAC of that record (constant time).
    pub fn record_mac_matches(&self, kind: &str, key: &str, content: &[u8], mac: &[u8]) -> bool {
        let expected = self.record_mac(kind, key, content);
        mac.len() == expected.len() && bool::from(expected[..].ct_eq(mac))
    }

    /// A short public fingerprint, so a server can check at start that it loaded the key its
    /// envelopes were printed with (store it beside the envelopes; it reveals nothing useful).
    pub fn fingerprint(&self) -> [u8; 8] {
        let full = hmac(&self.0, &[FINGERPRINT_LABEL]);
        let mut out = [0u8; 8];
        out.copy_from_slice(&full[..8]);
        out
    }
}

pub(crate) fn euin_ascii(euin: &Euin) -> [u8; crate::limits::EUIN_DIGITS] {
    let mut ascii = [0u8; crate::limits::EUIN_DIGITS];
    for (slot, digit) in ascii.iter_mut().zip(euin.digits()) {
        *slot = b'0' + digit;
    }
    ascii
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

/// The binding MAC of an envelope to an account (16 bytes of HMAC-SHA256 under the master key).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BindingTag(pub [u8; 16]);

impl BindingTag {
    /// Constant-time equality.
    pub fn matches(&self, other: &BindingTag) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for BindingTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BindingTag({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// An imported envelope encrypted under the master key: safe to keep in the database.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedEnvelope(pub(crate) Vec<u8>);

impl SealedEnvelope {
    /// From stored bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> SealedEnvelope {
        SealedEnvelope(bytes)
    }

    /// The bytes to store (starts with [`SEALED_FORMAT_VERSION`]).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SealedEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedEnvelope({} bytes)", self.0.len())
    }
}

/// The secret key of one envelope. Redacted in `Debug`, zeroized on drop.
#[derive(Clone)]
pub struct EnvelopeKey([u8; 32]);

impl EnvelopeKey {
    pub(crate) fn stream(&self, purpose: &'static [u8], index: u8) -> DigitStream {
        let mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        DigitStream {
            mac,
            purpose,
            index,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl Drop for EnvelopeKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvelopeKey(***)")
    }
}

/// Largest bound for which one 64-bit draw is used: the modulo bias is then below 2^-40.
const SINGLE_DRAW_BOUND_MAX: u64 = 1 << 24;

/// Uniform numbers from an HMAC counter-mode stream.
pub(crate) struct DigitStream {
    mac: HmacSha256,
    purpose: &'static [u8],
    index: u8,
    counter: u32,
    block: [u8; 32],
    used: usize,
}

impl DigitStream {
    fn next_u64(&mut self) -> u64 {
        if self.used + 8 > self.block.len() {
            let mut mac = self.mac.clone();
            mac.update(self.purpose);
            mac.update(&[self.index]);
            mac.update(&self.counter.to_be_bytes());
            self.block = mac.finalize().into_bytes().into();
            self.counter += 1;
            self.used = 0;
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.block[self.used..self.used + 8]);
        self.used += 8;
        u64::from_be_bytes(word)
    }

    /// A number uniform in `0..bound` to within 2^-40 (one draw up to 2^24, two above).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "empty range");
        if bound <= SINGLE_DRAW_BOUND_MAX {
            self.next_u64() % bound
        } else {
            let wide = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
            (wide % u128::from(bound)) as u64
        }
    }

    /// `count` distinct numbers below `bound`, uniformly (sampling without replacement).
    pub(crate) fn distinct_below<const N: usize>(&mut self, bound: u64) -> [u64; N] {
        assert!(
            N as u64 <= bound,
            "cannot draw more distinct values than the range holds"
        );
        let mut chosen = [0u64; N];
        for taken in 0..N {
            let mut value = self.below(bound - taken as u64);
            // Shift past every earlier choice at or below the value, in ascending order, so the
            // result is uniform over the values not yet taken.
            let mut sorted = chosen;
            sorted[..taken].sort_unstable();
            for earlier in &sorted[..taken] {
                if value >= *earlier {
                    value += 1;
                }
            }
            chosen[taken] = value;
        }
        chosen
    }
}

impl Drop for DigitStream {
    fn drop(&mut self) {
        self.block.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_draws_are_distinct_and_in_range() {
        let master = MasterKey::from_bytes([7; 32]);
        let key = master.envelope_key(&Euin::parse("26399912345").unwrap());
        let mut stream = key.stream(b"grid", 1);
        for _ in 0..200 {
            let values: [u64; 10] = stream.distinct_below(12);
            let mut sorted = values;
            sorted.sort_unstable();
            assert!(sorted.windows(2).all(|pair| pair[0] < pair[1]));
            assert!(sorted.iter().all(|value| *value < 12));
        }
    }

    #[test]
    fn keys_differ_per_envelope_and_debug_hides_them() {
        let master = MasterKey::from_bytes([7; 32]);
        let first = master.envelope_key(&Euin::parse("26399912345").unwrap());
        let second = master.envelope_key(&Euin::parse("26399912346").unwrap());
        assert_ne!(first.0, second.0);
        assert_eq!(format!("{master:?}"), "MasterKey(***)");
        assert_eq!(format!("{first:?}"), "EnvelopeKey(***)");
    }
}
