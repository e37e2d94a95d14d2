//! The wallet log at rest, encrypted.
//!
//! The log names every counterparty, amount and balance, so on a device it is kept sealed under
//! a key derived from the wallet's signing seed, which lives only in the wallet file (itself
//! sealed under the owner's passphrase): a stolen phone's files reveal nothing of the log without
//! the passphrase.
//!
//! Layout: `"OPWL" | version=1`, then one sealed frame per log frame, each
//! `length u32 | nonce (12) | ChaCha20-Poly1305(log frame)` with the 5 header bytes as associated
//! data. Frames are sealed one by one because the log is appended one forced frame at a time; a
//! torn append can only damage the last sealed frame, which is cut off as a torn tail exactly as
//! in the plain log (`crate::record::parse_log`).
//!
//! The nonce is synthetic: the first 12 bytes of `SHA-256("offpay-wallet v1 log nonce" ‖ key ‖
//! frame)`. Each frame holds its own sequence number and the hash of the one before, so two
//! different frames never share a nonce, and a frame written twice (a rolled-back copy) gives the
//! same bytes, which reveals only that they are equal. No randomness is needed to append.

use alloc::vec::Vec;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::codec::sha256;
use crate::error::{Error, Malformed, Misuse, StorageError};
use crate::ids::WalletId;
use crate::keys::WalletKeys;
use crate::record::{FRAME_OVERHEAD_BYTES, RECORD_BYTES_MAX, frame, parse_log};

/// First bytes of a sealed log.
pub const SEALED_LOG_MAGIC: &[u8; 4] = b"OPWL";
/// Format version of a sealed log.
pub const SEALED_LOG_VERSION: u8 = 1;
/// Bytes before the first sealed frame.
pub const SEALED_LOG_HEADER_BYTES: usize = 5;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// What sealing adds to a log frame: its length, its nonce and its tag.
pub const SEALED_FRAME_OVERHEAD_BYTES: usize = 4 + NONCE_BYTES + TAG_BYTES;
/// Largest sealed frame.
pub const SEALED_FRAME_BYTES_MAX: usize =
    RECORD_BYTES_MAX + FRAME_OVERHEAD_BYTES + SEALED_FRAME_OVERHEAD_BYTES;
const BLOCKED_MAGIC: &[u8; 4] = b"OPWK";
const DOMAIN_KEY: &[u8] = b"offpay-wallet v1 log key";
const DOMAIN_NONCE: &[u8] = b"offpay-wallet v1 log nonce";
const DOMAIN_BLOCKED: &[u8] = b"offpay-wallet v1 blocked list";

/// The key that seals a wallet's log and its blocked list; derived from the wallet's signing
/// seed, never stored. Redacted in `Debug`.
#[derive(Clone)]
pub struct LogKey {
    key: Zeroizing<[u8; 32]>,
}

impl core::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("LogKey(..)")
    }
}

/// The header every sealed log starts with.
pub fn sealed_log_header() -> [u8; SEALED_LOG_HEADER_BYTES] {
    let mut header = [0u8; SEALED_LOG_HEADER_BYTES];
    header[..4].copy_from_slice(SEALED_LOG_MAGIC);
    header[4] = SEALED_LOG_VERSION;
    header
}

/// Whether `bytes` are a sealed log (rather than an earlier release's plain log, which starts
/// with a frame length whose first byte is zero).
pub fn is_sealed_log(bytes: &[u8]) -> bool {
    bytes.starts_with(SEALED_LOG_MAGIC)
}

/// A sealed log opened: the plain log and where each frame ends on disk.
#[derive(Debug)]
pub struct OpenedLog {
    /// The plain log frames, in order (feed them to `Wallet::open`).
    pub plain: Zeroizing<Vec<u8>>,
    /// For each frame: where it ends in `plain` and on disk.
    pub frame_ends: Vec<(u64, u64)>,
    /// Disk bytes holding the header and those frames.
    pub valid_bytes: u64,
    /// Disk bytes after them that were a torn append (to be cut off).
    pub torn_bytes: u64,
}

impl LogKey {
    /// The log key of the wallet with these keys.
    pub fn derive(keys: &WalletKeys) -> LogKey {
        let seed = Zeroizing::new(keys.signing_seed());
        let hkdf = Hkdf::<Sha256>::new(Some(DOMAIN_KEY), seed.as_ref());
        let mut key = Zeroizing::new([0u8; 32]);
        // 32 bytes is always a valid HKDF-SHA256 output length.
        if hkdf.expand(DOMAIN_KEY, key.as_mut()).is_err() {
            unreachable!("HKDF-SHA256 gives 32 bytes");
        }
        LogKey { key }
    }

    fn nonce(&self, domain: &[u8], plaintext: &[u8]) -> [u8; NONCE_BYTES] {
        let digest = sha256(&[DOMAIN_NONCE, domain, self.key.as_ref(), plaintext]);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&digest[..NONCE_BYTES]);
        nonce
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&(*self.key).into())
    }

    /// Seals one log frame (an `Action::Persist` frame) for appending after the header.
    pub fn seal_frame(&self, log_frame: &[u8]) -> Vec<u8> {
        let nonce = self.nonce(b"", log_frame);
        let header = sealed_log_header();
        let ciphertext = match self.cipher().encrypt(
            &nonce.into(),
            Payload {
                msg: log_frame,
                aad: &header,
            },
        ) {
            Ok(ciphertext) => ciphertext,
            Err(_) => unreachable!("ChaCha20-Poly1305 seals any frame the log holds"),
        };
        let mut sealed = Vec::with_capacity(SEALED_FRAME_OVERHEAD_BYTES + log_frame.len());
        sealed.extend_from_slice(&(ciphertext.len() as u32).to_be_bytes());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    fn open_frame(&self, bytes: &[u8]) -> Option<(Zeroizing<Vec<u8>>, usize)> {
        let length = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        if !(TAG_BYTES..=SEALED_FRAME_BYTES_MAX - 4 - NONCE_BYTES).contains(&length) {
            return None;
        }
        let nonce: [u8; NONCE_BYTES] = bytes.get(4..4 + NONCE_BYTES)?.try_into().ok()?;
        let ciphertext = bytes.get(4 + NONCE_BYTES..4 + NONCE_BYTES + length)?;
        let header = sealed_log_header();
        let plain = self
            .cipher()
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: &header,
                },
            )
            .ok()?;
        Some((Zeroizing::new(plain), 4 + NONCE_BYTES + length))
    }

    /// Opens a sealed log. A sealed frame that is cut short or fails its tag is a torn tail if
    /// nothing more than one sealed frame's worth of bytes follows its start; anything else is
    /// corruption (`StorageError::Corrupt`). The plain log is then checked by `Wallet::open`.
    pub fn open_log(&self, bytes: &[u8]) -> Result<OpenedLog, StorageError> {
        if bytes.len() < SEALED_LOG_HEADER_BYTES || !is_sealed_log(bytes) {
            return Err(StorageError::Corrupt { offset: 0 });
        }
        if bytes[4] != SEALED_LOG_VERSION {
            return Err(StorageError::Corrupt { offset: 4 });
        }
        let mut plain = Zeroizing::new(Vec::with_capacity(bytes.len()));
        let mut frame_ends = Vec::new();
        let mut offset = SEALED_LOG_HEADER_BYTES;
        while offset < bytes.len() {
            let rest = &bytes[offset..];
            match self.open_frame(rest) {
                Some((frame_plain, used)) => {
                    plain.extend_from_slice(&frame_plain);
                    offset += used;
                    frame_ends.push((plain.len() as u64, offset as u64));
                }
                None if rest.len() <= SEALED_FRAME_BYTES_MAX => {
                    return Ok(OpenedLog {
                        plain,
                        frame_ends,
                        valid_bytes: offset as u64,
                        torn_bytes: rest.len() as u64,
                    });
                }
                None => {
                    return Err(StorageError::Corrupt {
                        offset: offset as u64,
                    });
                }
            }
        }
        Ok(OpenedLog {
            plain,
            frame_ends,
            valid_bytes: offset as u64,
            torn_bytes: 0,
        })
    }

    /// The plain log from stored bytes, sealed or (an earlier release's) plain; a torn tail of a
    /// sealed log is left out, that of a plain log is kept for `parse_log` to find.
    pub fn plain_log(&self, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, StorageError> {
        if is_sealed_log(bytes) {
            Ok(self.open_log(bytes)?.plain)
        } else {
            Ok(Zeroizing::new(bytes.to_vec()))
        }
    }

    /// Seals a whole plain log (an earlier release's, to migrate it): header, then each whole
    /// frame sealed; a torn tail is dropped.
    pub fn seal_log(&self, plain: &[u8]) -> Result<Vec<u8>, StorageError> {
        let parsed = parse_log(plain)?;
        let mut sealed = Vec::from(sealed_log_header());
        for record in &parsed.records {
            sealed.extend_from_slice(&self.seal_frame(&frame(record)));
        }
        Ok(sealed)
    }

    /// Seals the blocked list kept beside the log: `"OPWK" | version | nonce | ciphertext of
    /// the ids`.
    pub fn seal_blocked(&self, blocked: &[WalletId]) -> Vec<u8> {
        let mut plain = Zeroizing::new(Vec::with_capacity(blocked.len() * WalletId::BYTES));
        for id in blocked {
            plain.extend_from_slice(&id.0);
        }
        let nonce = self.nonce(DOMAIN_BLOCKED, &plain);
        let mut out = Vec::with_capacity(5 + NONCE_BYTES + plain.len() + TAG_BYTES);
        out.extend_from_slice(BLOCKED_MAGIC);
        out.push(SEALED_LOG_VERSION);
        let ciphertext = match self.cipher().encrypt(
            &nonce.into(),
            Payload {
                msg: &plain,
                aad: &out[..5],
            },
        ) {
            Ok(ciphertext) => ciphertext,
            Err(_) => unreachable!("ChaCha20-Poly1305 seals a bounded list"),
        };
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens a blocked list sealed by [`LogKey::seal_blocked`].
    pub fn open_blocked(&self, bytes: &[u8]) -> Result<Vec<WalletId>, Error> {
        let max = 5 + NONCE_BYTES + crate::sync::REPLY_BLOCKED_MAX * WalletId::BYTES + TAG_BYTES;
        if bytes.len() > max {
            return Err(Malformed::TooLong.into());
        }
        if bytes.len() < 5 + NONCE_BYTES + TAG_BYTES
            || &bytes[..4] != BLOCKED_MAGIC
            || bytes[4] != SEALED_LOG_VERSION
        {
            return Err(Misuse::WrongPassphraseOrCorrupt.into());
        }
        let nonce: [u8; NONCE_BYTES] = bytes[5..5 + NONCE_BYTES]
            .try_into()
            .map_err(|_| Malformed::Truncated)?;
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    &nonce.into(),
                    Payload {
                        msg: &bytes[5 + NONCE_BYTES..],
                        aad: &bytes[..5],
                    },
                )
                .map_err(|_| Misuse::WrongPassphraseOrCorrupt)?,
        );
        if plain.len() % WalletId::BYTES != 0 {
            return Err(Malformed::InvalidField.into());
        }
        Ok(plain
            .chunks_exact(WalletId::BYTES)
            .map(|chunk| {
                let mut id = [0u8; WalletId::BYTES];
                id.copy_from_slice(chunk);
                WalletId(id)
            })
            .collect())
    }
}
