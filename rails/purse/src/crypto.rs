//! Keys, AES-128-CMAC, the unbiased decimal truncation D, key derivation and key wrapping.
//!
//! CMAC (RFC 4493 / NIST SP 800-38B) is written here on top of the `aes` block cipher rather than
//! taken from the `cmac` crate so that every AES block operation goes through one function that
//! counts them ([`aes_block_count`]): the SIM budget is counted, not estimated. The tests check
//! this CMAC against the `cmac` crate and the RFC 4493 vectors.

use core::fmt;

use aes::Aes128;
use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
#[cfg(feature = "std")]
use hmac::{Hmac, Mac};
#[cfg(feature = "std")]
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::params::TRUNCATION_DIGITS_MAX;

/// Bytes of an AES-128 key.
pub const KEY_BYTES: usize = 16;
/// Bytes of an AES block and of a CMAC tag.
pub const BLOCK_BYTES: usize = 16;
/// Bytes of the operator master key.
pub const MASTER_KEY_BYTES: usize = 32;

/// A 128-bit secret key (scheme key, per-purse key, pairwise key, derived keys). Wiped on drop;
/// `Debug` shows nothing of it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; KEY_BYTES]);

impl SecretKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> SecretKey {
        SecretKey(bytes)
    }

    /// The raw bytes (for sealing the purse state and for wrapping).
    pub fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_equals(&self, other: &SecretKey) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// The operator's master key, from which every per-purse, scheme and pairwise key is derived. It
/// lives outside any database (a key file, a KMS, later an HSM); the server passes it in.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; MASTER_KEY_BYTES]);

impl MasterKey {
    /// Wraps the 32 raw bytes of the master key.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_BYTES]) -> MasterKey {
        MasterKey(bytes)
    }

    #[cfg(feature = "operator")]
    pub(crate) fn derive(&self, label: &[u8], context: &[&[u8]]) -> SecretKey {
        hmac_derive(&self.0, label, context)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// HMAC-SHA256(key, label ‖ 0x00 ‖ context...) truncated to 128 bits. Server side and for sealing
/// the software secure element; the purse itself derives with CMAC ([`cmac_derive`]).
#[cfg(feature = "operator")]
pub(crate) fn hmac_derive(key: &[u8], label: &[u8], context: &[&[u8]]) -> SecretKey {
    let mut out = [0u8; KEY_BYTES];
    out.copy_from_slice(&hmac_sha256(key, label, context)[..KEY_BYTES]);
    SecretKey(out)
}

/// HMAC-SHA256(key, label ‖ 0x00 ‖ each context part prefixed by its length byte).
#[cfg(feature = "std")]
pub(crate) fn hmac_sha256(key: &[u8], label: &[u8], context: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length.
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key");
    mac.update(label);
    mac.update(&[0]);
    for part in context {
        mac.update(&[part.len() as u8]);
        mac.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

#[cfg(feature = "std")]
std::thread_local! {
    static AES_BLOCKS: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// AES block operations (encryptions and decryptions) performed so far on this thread. Take the
/// difference around an operation to see what it costs on a SIM (~3 ms per block). Without the
/// `std` feature there is no counter and this returns 0.
pub fn aes_block_count() -> u64 {
    #[cfg(feature = "std")]
    {
        AES_BLOCKS.with(core::cell::Cell::get)
    }
    #[cfg(not(feature = "std"))]
    {
        0
    }
}

fn count_block() {
    #[cfg(feature = "std")]
    AES_BLOCKS.with(|count| count.set(count.get() + 1));
}

/// AES-128 with every block operation counted.
pub(crate) struct BlockCipher(Aes128);

impl BlockCipher {
    pub(crate) fn new(key: &SecretKey) -> BlockCipher {
        BlockCipher(Aes128::new(&Array::from(key.0)))
    }

    pub(crate) fn encrypt(&self, block: &mut [u8; BLOCK_BYTES]) {
        count_block();
        let mut array = Array::from(*block);
        self.0.encrypt_block(&mut array);
        block.copy_from_slice(&array);
    }

    pub(crate) fn decrypt(&self, block: &mut [u8; BLOCK_BYTES]) {
        count_block();
        let mut array = Array::from(*block);
        self.0.decrypt_block(&mut array);
        block.copy_from_slice(&array);
    }
}

fn double(block: &[u8; BLOCK_BYTES]) -> [u8; BLOCK_BYTES] {
    let value = u128::from_be_bytes(*block);
    let shifted = value << 1;
    // Constant 0x87 from the field polynomial, applied when the top bit falls off; computed
    // without a branch on the secret bit.
    let carry = (value >> 127) as u8;
    let reduced = shifted ^ u128::from(0x87u8 & carry.wrapping_neg());
    reduced.to_be_bytes()
}

/// AES-128-CMAC of `message` under `key`: one block for the subkey, then one per 16 bytes of
/// message (at least one).
pub fn cmac(key: &SecretKey, message: &[u8]) -> [u8; BLOCK_BYTES] {
    let cipher = BlockCipher::new(key);
    let mut zero = [0u8; BLOCK_BYTES];
    cipher.encrypt(&mut zero);
    let subkey1 = double(&zero);
    let subkey2 = double(&subkey1);

    let full_blocks = if message.is_empty() {
        0
    } else {
        (message.len() - 1) / BLOCK_BYTES
    };
    let mut state = [0u8; BLOCK_BYTES];
    for chunk in message.chunks(BLOCK_BYTES).take(full_blocks) {
        for (byte, input) in state.iter_mut().zip(chunk) {
            *byte ^= input;
        }
        cipher.encrypt(&mut state);
    }
    let last = &message[full_blocks * BLOCK_BYTES..];
    let mut final_block = [0u8; BLOCK_BYTES];
    if last.len() == BLOCK_BYTES {
        for (index, byte) in final_block.iter_mut().enumerate() {
            *byte = last[index] ^ subkey1[index];
        }
    } else {
        final_block[..last.len()].copy_from_slice(last);
        final_block[last.len()] = 0x80;
        for (byte, subkey) in final_block.iter_mut().zip(subkey2) {
            *byte ^= subkey;
        }
    }
    for (byte, input) in state.iter_mut().zip(final_block) {
        *byte ^= input;
    }
    cipher.encrypt(&mut state);
    state
}

/// Constant-time check of a 16-byte tag.
pub fn tags_equal(left: &[u8; BLOCK_BYTES], right: &[u8; BLOCK_BYTES]) -> bool {
    bool::from(left.ct_eq(right))
}

/// D: the first 64 bits of the MAC, big-endian, modulo 10^digits. The bias towards small values is
/// at most 10^digits / 2^64 <= 2^-40 for digits <= 7.
pub fn decimal_truncate(mac: &[u8; BLOCK_BYTES], digits: u32) -> u32 {
    assert!(
        (1..=TRUNCATION_DIGITS_MAX).contains(&digits),
        "truncation digits out of range"
    );
    let mut high = [0u8; 8];
    high.copy_from_slice(&mac[..8]);
    (u64::from_be_bytes(high) % 10u64.pow(digits)) as u32
}

/// A key derived from `key` with CMAC in counter mode (NIST SP 800-108): CMAC(key, 0x01 ‖ label
/// ‖ 0x00 ‖ 0x0080). Cheap enough for a SIM; used for the purse's sync and wrap keys.
pub(crate) fn cmac_derive(key: &SecretKey, label: &[u8]) -> SecretKey {
    let mut input = [0u8; 48];
    let length = label.len().min(44);
    input[0] = 1;
    input[1..1 + length].copy_from_slice(&label[..length]);
    input[1 + length] = 0;
    input[2 + length] = 0x00;
    input[3 + length] = 0x80;
    SecretKey(cmac(key, &input[..4 + length]))
}

/// Encrypts one 128-bit key under `wrapping` (a single AES block: the wrapped keys are uniformly
/// random and every message carrying them is MAC'd, so one block is a sound wrap).
#[cfg(feature = "operator")]
pub(crate) fn wrap_key(wrapping: &SecretKey, key: &SecretKey) -> [u8; KEY_BYTES] {
    let mut block = key.0;
    BlockCipher::new(wrapping).encrypt(&mut block);
    block
}

/// Inverse of [`wrap_key`].
pub(crate) fn unwrap_key(wrapping: &SecretKey, wrapped: &[u8; KEY_BYTES]) -> SecretKey {
    let mut block = *wrapped;
    BlockCipher::new(wrapping).decrypt(&mut block);
    SecretKey(block)
}

/// Labels of the keys the purse derives from its per-purse key.
pub(crate) const LABEL_SYNC_KEY: &[u8] = b"offpay purse sync mac";
pub(crate) const LABEL_WRAP_KEY: &[u8] = b"offpay purse key wrap";
pub(crate) const LABEL_TICKET_KEY: &[u8] = b"offpay purse ticket tag";

/// The keys a purse derives from its per-purse key K_P.
#[derive(Clone, Debug)]
pub(crate) struct PurseKeys {
    pub(crate) sync: SecretKey,
    pub(crate) wrap: SecretKey,
    pub(crate) ticket: SecretKey,
}

impl PurseKeys {
    pub(crate) fn derive(purse_key: &SecretKey) -> PurseKeys {
        PurseKeys {
            sync: cmac_derive(purse_key, LABEL_SYNC_KEY),
            wrap: cmac_derive(purse_key, LABEL_WRAP_KEY),
            ticket: cmac_derive(purse_key, LABEL_TICKET_KEY),
        }
    }
}
