//! Sealing: an imported envelope (printed elsewhere) is kept in the database encrypted under a
//! key derived from the master key, in the envelope file format of [`crate::import`].
//!
//! - seal key = HMAC(master, "offpay/sms-tan/v1/seal")
//! - nonce    = HMAC(seal key, "offpay/sms-tan/v1/seal-nonce" ‖ EUIN ‖ file text), first 24 bytes
//! - sealed   = version byte ‖ nonce ‖ XChaCha20-Poly1305(file text, associated data version ‖ EUIN)

use alloc::vec::Vec;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::envelope::Envelope;
use crate::error::SealError;
use crate::keys::{MasterKey, SEALED_FORMAT_VERSION, SealedEnvelope, euin_ascii, hmac};
use crate::numbers::Euin;

const SEAL_LABEL: &[u8] = b"offpay/sms-tan/v1/seal";
const SEAL_NONCE_LABEL: &[u8] = b"offpay/sms-tan/v1/seal-nonce";
const SEAL_NONCE_BYTES: usize = 24;
const SEAL_TAG_BYTES: usize = 16;
const TEXT_SEAL_LABEL: &[u8] = b"offpay/sms-tan/v1/seal-text";
const TEXT_SEAL_NONCE_LABEL: &[u8] = b"offpay/sms-tan/v1/seal-text-nonce";
const TEXT_TAG_LABEL: &[u8] = b"offpay/sms-tan/v1/text-tag";

impl MasterKey {
    /// Encrypts a text the operator must keep but nobody may read from the database (the replies
    /// a gateway retry is answered with): XChaCha20-Poly1305 under a key derived from the master
    /// key, synthetic nonce, `context` (the record's key) as associated data so the blob cannot
    /// be moved. Format: version byte ‖ nonce ‖ ciphertext ‖ tag.
    pub fn seal_text(&self, context: &[u8], text: &[u8]) -> Vec<u8> {
        let key = Zeroizing::new(self.mac(&[TEXT_SEAL_LABEL]));
        let mut plaintext = Zeroizing::new(text.to_vec());
        let nonce_full = hmac(&*key, &[TEXT_SEAL_NONCE_LABEL, context, &plaintext]);
        let mut nonce_bytes = [0u8; SEAL_NONCE_BYTES];
        nonce_bytes.copy_from_slice(&nonce_full[..SEAL_NONCE_BYTES]);
        let cipher = XChaCha20Poly1305::new(&Key::from(*key));
        let nonce = XNonce::from(nonce_bytes);
        let tag =
            match cipher.encrypt_inout_detached(&nonce, context, plaintext.as_mut_slice().into()) {
                Ok(tag) => tag,
                Err(_) => unreachable!("reply texts are far below the AEAD length limit"),
            };
        let mut out = Vec::with_capacity(1 + SEAL_NONCE_BYTES + plaintext.len() + SEAL_TAG_BYTES);
        out.push(SEALED_FORMAT_VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&plaintext);
        out.extend_from_slice(tag.as_slice());
        out
    }

    /// Opens a text sealed with [`MasterKey::seal_text`] under the same `context`.
    pub fn unseal_text(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Corrupt)?;
        if version != SEALED_FORMAT_VERSION {
            return Err(SealError::UnsupportedVersion);
        }
        if rest.len() < SEAL_NONCE_BYTES + SEAL_TAG_BYTES {
            return Err(SealError::Corrupt);
        }
        let (nonce_bytes, body) = rest.split_at(SEAL_NONCE_BYTES);
        let (ciphertext, tag) = body.split_at(body.len() - SEAL_TAG_BYTES);
        let key = Zeroizing::new(self.mac(&[TEXT_SEAL_LABEL]));
        let cipher = XChaCha20Poly1305::new(&Key::from(*key));
        let mut nonce_array = [0u8; SEAL_NONCE_BYTES];
        nonce_array.copy_from_slice(nonce_bytes);
        let mut tag_array = [0u8; SEAL_TAG_BYTES];
        tag_array.copy_from_slice(tag);
        let mut plaintext = ciphertext.to_vec();
        cipher
            .decrypt_inout_detached(
                &XNonce::from(nonce_array),
                context,
                plaintext.as_mut_slice().into(),
                &tag_array.into(),
            )
            .map_err(|_| SealError::Inauthentic)?;
        Ok(plaintext)
    }

    /// A keyed hash of a text (16 bytes, hex): what is kept of an SMS once it is delivered, so the
    /// operator can match a complaint to it without the database holding its words or codes.
    pub fn text_tag(&self, text: &str) -> alloc::string::String {
        let key = Zeroizing::new(self.mac(&[TEXT_TAG_LABEL]));
        let full = hmac(&*key, &[text.as_bytes()]);
        hex::encode(&full[..16])
    }

    /// Encrypts an imported envelope for storage. Deterministic (synthetic nonce from the
    /// content), so no randomness is needed and sealing the same envelope twice gives the same
    /// bytes; the EUIN is bound as associated data so a blob cannot be moved to another envelope.
    pub fn seal(&self, envelope: &Envelope) -> SealedEnvelope {
        let key = Zeroizing::new(self.mac(&[SEAL_LABEL]));
        let mut plaintext = Zeroizing::new(crate::import::format_envelope(envelope).into_bytes());
        let euin_text = euin_ascii(&envelope.euin);
        let nonce_full = hmac(&*key, &[SEAL_NONCE_LABEL, &euin_text, &plaintext]);
        let mut nonce_bytes = [0u8; SEAL_NONCE_BYTES];
        nonce_bytes.copy_from_slice(&nonce_full[..SEAL_NONCE_BYTES]);
        let cipher = XChaCha20Poly1305::new(&Key::from(*key));
        let nonce = XNonce::from(nonce_bytes);
        let aad = associated_data(&envelope.euin);
        let tag = match cipher.encrypt_inout_detached(&nonce, &aad, plaintext.as_mut_slice().into())
        {
            Ok(tag) => tag,
            Err(_) => unreachable!("envelope texts are far below the AEAD length limit"),
        };
        let mut out = Vec::with_capacity(1 + SEAL_NONCE_BYTES + plaintext.len() + SEAL_TAG_BYTES);
        out.push(SEALED_FORMAT_VERSION);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&plaintext);
        out.extend_from_slice(tag.as_slice());
        SealedEnvelope(out)
    }

    /// Opens a sealed envelope for `euin`.
    pub fn unseal(&self, euin: &Euin, sealed: &SealedEnvelope) -> Result<Envelope, SealError> {
        let bytes = &sealed.0;
        let (&version, rest) = bytes.split_first().ok_or(SealError::Corrupt)?;
        if version != SEALED_FORMAT_VERSION {
            return Err(SealError::UnsupportedVersion);
        }
        if rest.len() < SEAL_NONCE_BYTES + SEAL_TAG_BYTES {
            return Err(SealError::Corrupt);
        }
        let (nonce_bytes, rest) = rest.split_at(SEAL_NONCE_BYTES);
        let (ciphertext, tag_bytes) = rest.split_at(rest.len() - SEAL_TAG_BYTES);
        let key = Zeroizing::new(self.mac(&[SEAL_LABEL]));
        let cipher = XChaCha20Poly1305::new(&Key::from(*key));
        let mut nonce_array = [0u8; SEAL_NONCE_BYTES];
        nonce_array.copy_from_slice(nonce_bytes);
        let mut tag_array = [0u8; SEAL_TAG_BYTES];
        tag_array.copy_from_slice(tag_bytes);
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        cipher
            .decrypt_inout_detached(
                &XNonce::from(nonce_array),
                &associated_data(euin),
                buffer.as_mut_slice().into(),
                &tag_array.into(),
            )
            .map_err(|_| SealError::Inauthentic)?;
        let text = core::str::from_utf8(&buffer).map_err(|_| SealError::Corrupt)?;
        let envelope = crate::import::parse_envelope(text).map_err(|_| SealError::Corrupt)?;
        if envelope.euin != *euin {
            return Err(SealError::Inauthentic);
        }
        Ok(envelope)
    }
}

fn associated_data(euin: &Euin) -> [u8; 1 + crate::limits::EUIN_DIGITS] {
    let mut aad = [0u8; 1 + crate::limits::EUIN_DIGITS];
    aad[0] = SEALED_FORMAT_VERSION;
    aad[1..].copy_from_slice(&euin_ascii(euin));
    aad
}
