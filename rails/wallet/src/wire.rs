//! The datagram format and message security.
//!
//! Two frames exist. The look-up is a broadcast, so it is signed but not encrypted (it carries
//! nothing secret: the seller's credential and a fresh transfer id). Every other message is
//! sealed: signed with the sender's Ed25519 key over the SHA-256 digest of its contents and the
//! recipient's id, then encrypted with ChaCha20-Poly1305 under a fresh key derived from an
//! ephemeral X25519 exchange with the recipient's key (the KEM/DEM shape of HPKE base mode). See
//! `docs/protocols/device-wallet.md` for the byte layouts.

use alloc::vec::Vec;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use offpay_money::Amount;
use zeroize::Zeroize;

use crate::codec::{Reader, Writer};
use crate::credential::{CREDENTIAL_BYTES, Credential, VerifiedCredentials};
use crate::error::{Error, Malformed, PeerError};
use crate::ids::{Millis, TransferId, WalletId};
use crate::keys::{Entropy, WalletKeys, random_array, verify};
use crate::terms::{AGREEMENT_BYTES, Agreement};

/// Version byte that starts every datagram.
pub const WIRE_VERSION: u8 = 1;
/// Largest datagram this crate sends or accepts (fits one UDP payload on any link).
pub const DATAGRAM_BYTES_MAX: usize = 1200;
const FRAME_LOOKUP: u8 = 1;
const FRAME_SEALED: u8 = 2;
const SIGNATURE_BYTES: usize = 64;
const TAG_BYTES: usize = 16;
/// Bytes before the ciphertext of a sealed frame: version, frame kind, recipient, ephemeral key.
const SEALED_HEADER_BYTES: usize = 1 + 1 + 16 + 32;
const DOMAIN_LOOKUP: &[u8] = b"offpay-wallet v1 lookup";
const DOMAIN_MESSAGE: &[u8] = b"offpay-wallet v1 message";
const DOMAIN_SEAL: &[u8] = b"offpay-wallet v1 seal";

/// Why a buyer or seller aborts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AbortReason {
    /// The buyer's user declined the price, or did not answer in time.
    Declined,
    /// The buyer has not enough available value.
    InsufficientFunds,
    /// The payment would break a limit of the buyer's or seller's credential.
    LimitExceeded,
    /// The buyer does not know this transfer (the seed's rule: answer an unknown commit-request
    /// with abort).
    UnknownTransfer,
    /// The seller gave up waiting for the buyer's agreement, or decided to void.
    SellerVoided,
}

impl AbortReason {
    /// In words, for the person holding the wallet.
    pub fn describe(self) -> &'static str {
        match self {
            AbortReason::Declined => "declined, or not answered in time",
            AbortReason::InsufficientFunds => "not enough value in the wallet",
            AbortReason::LimitExceeded => {
                "it would break a limit of the wallet (largest payment, or most paid between \
                 two syncs); sync first"
            }
            AbortReason::UnknownTransfer => "the wallet does not know this payment",
            AbortReason::SellerVoided => "the seller cancelled it",
        }
    }

    /// A short name for machines (`declined`, `insufficient_funds`, `limit_exceeded`,
    /// `unknown_transfer`, `seller_voided`).
    pub fn name(self) -> &'static str {
        match self {
            AbortReason::Declined => "declined",
            AbortReason::InsufficientFunds => "insufficient_funds",
            AbortReason::LimitExceeded => "limit_exceeded",
            AbortReason::UnknownTransfer => "unknown_transfer",
            AbortReason::SellerVoided => "seller_voided",
        }
    }

    fn code(self) -> u8 {
        match self {
            AbortReason::Declined => 1,
            AbortReason::InsufficientFunds => 2,
            AbortReason::LimitExceeded => 3,
            AbortReason::UnknownTransfer => 4,
            AbortReason::SellerVoided => 5,
        }
    }
    fn from_code(code: u8) -> Result<Self, Malformed> {
        Ok(match code {
            1 => AbortReason::Declined,
            2 => AbortReason::InsufficientFunds,
            3 => AbortReason::LimitExceeded,
            4 => AbortReason::UnknownTransfer,
            5 => AbortReason::SellerVoided,
            other => return Err(Malformed::UnknownKind(other)),
        })
    }
}

/// How a transfer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The value moved.
    Posted,
    /// Nothing moved.
    Voided,
}

impl Outcome {
    pub(crate) fn code(self) -> u8 {
        match self {
            Outcome::Posted => 1,
            Outcome::Voided => 2,
        }
    }
    pub(crate) fn from_code(code: u8) -> Result<Self, Malformed> {
        match code {
            1 => Ok(Outcome::Posted),
            2 => Ok(Outcome::Voided),
            other => Err(Malformed::UnknownKind(other)),
        }
    }
}

/// The body of a sealed message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// Buyer → seller: "I am in buyer mode" (answer to a look-up).
    Present,
    /// Seller → buyer: phase 1, with the price.
    CommitRequest {
        /// The price.
        amount: Amount,
    },
    /// Buyer → seller: prepared (funds held, record forced to the log).
    Agreed {
        /// The buyer's signed promise.
        agreement: Agreement,
    },
    /// Either way: the buyer votes no, or the seller decides void.
    Abort {
        /// Why.
        reason: AbortReason,
    },
    /// Seller → buyer: phase 2, commit (record forced to the seller's log).
    Commit {
        /// The seller's commit signature over the terms and agreement.
        signature: [u8; 64],
    },
    /// Buyer → seller: the buyer recorded the outcome.
    Acknowledged {
        /// What the buyer recorded.
        outcome: Outcome,
    },
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::Present => 2,
            Body::CommitRequest { .. } => 3,
            Body::Agreed { .. } => 4,
            Body::Abort { .. } => 5,
            Body::Commit { .. } => 6,
            Body::Acknowledged { .. } => 7,
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Present => "present",
            Body::CommitRequest { .. } => "commit-request",
            Body::Agreed { .. } => "agreed",
            Body::Abort { .. } => "abort",
            Body::Commit { .. } => "commit",
            Body::Acknowledged { .. } => "acknowledged",
        }
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u8(self.kind());
        match self {
            Body::Present => {}
            Body::CommitRequest { amount } => {
                w.amount(*amount);
            }
            Body::Agreed { agreement } => agreement.write(w),
            Body::Abort { reason } => {
                w.u8(reason.code());
            }
            Body::Commit { signature } => {
                w.raw(signature);
            }
            Body::Acknowledged { outcome } => {
                w.u8(outcome.code());
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Body, Malformed> {
        Ok(match r.u8()? {
            2 => Body::Present,
            3 => Body::CommitRequest {
                amount: r.amount()?,
            },
            4 => Body::Agreed {
                agreement: Agreement::read(r)?,
            },
            5 => Body::Abort {
                reason: AbortReason::from_code(r.u8()?)?,
            },
            6 => Body::Commit {
                signature: r.array()?,
            },
            7 => Body::Acknowledged {
                outcome: Outcome::from_code(r.u8()?)?,
            },
            other => return Err(Malformed::UnknownKind(other)),
        })
    }
}

const _: () = assert!(
    SEALED_HEADER_BYTES
        + CREDENTIAL_BYTES
        + 16
        + 8
        + 1
        + AGREEMENT_BYTES
        + SIGNATURE_BYTES
        + TAG_BYTES
        <= DATAGRAM_BYTES_MAX
);

/// A datagram whose signatures, credential and addressing have been checked.
#[derive(Clone, Debug)]
pub(crate) enum Incoming {
    Lookup {
        sender: Credential,
        transfer_id: TransferId,
        seq: u64,
    },
    Sealed {
        sender: Credential,
        transfer_id: TransferId,
        seq: u64,
        body: Body,
    },
}

/// Encodes a signed look-up broadcast.
pub(crate) fn encode_lookup(
    keys: &WalletKeys,
    credential: &[u8],
    transfer_id: TransferId,
    seq: u64,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(WIRE_VERSION)
        .u8(FRAME_LOOKUP)
        .raw(credential)
        .raw(&transfer_id.0)
        .u64(seq);
    let signature = keys.sign(&[DOMAIN_LOOKUP, &w.bytes]);
    w.raw(&signature);
    w.finish()
}

/// Derives the fresh content key and nonce from the X25519 shared secret.
fn seal_key(shared: &[u8; 32], ephemeral_public: &[u8; 32], recipient_key: &[u8; 32]) -> [u8; 44] {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral_public);
    salt[32..].copy_from_slice(recipient_key);
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), shared);
    let mut okm = [0u8; 44];
    // 44 bytes is far below HKDF-SHA256's limit of 255 * 32.
    if hkdf.expand(DOMAIN_SEAL, &mut okm).is_err() {
        unreachable!("HKDF output length is a constant within bounds");
    }
    okm
}

fn aead_seal(okm: &[u8; 44], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut key = [0u8; 32];
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    let cipher = ChaCha20Poly1305::new(&key.into());
    key.zeroize();
    match cipher.encrypt(
        &nonce.into(),
        Payload {
            msg: plaintext,
            aad,
        },
    ) {
        Ok(ciphertext) => ciphertext,
        Err(_) => unreachable!("ChaCha20-Poly1305 encrypts any datagram-sized input"),
    }
}

fn aead_open(okm: &[u8; 44], aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, PeerError> {
    let mut key = [0u8; 32];
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    let cipher = ChaCha20Poly1305::new(&key.into());
    key.zeroize();
    cipher
        .decrypt(
            &nonce.into(),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| PeerError::DecryptionFailed)
}

/// Signs, then seals a message for `recipient`.
pub(crate) fn seal(
    keys: &WalletKeys,
    own_credential: &[u8],
    recipient: &Credential,
    transfer_id: TransferId,
    seq: u64,
    body: &Body,
    entropy: &mut dyn Entropy,
) -> Vec<u8> {
    let mut inner = Writer::new();
    inner.raw(own_credential).raw(&transfer_id.0).u64(seq);
    body.write(&mut inner);
    let signature = keys.sign(&[DOMAIN_MESSAGE, &recipient.wallet_id.0, &inner.bytes]);
    inner.raw(&signature);
    let mut plaintext = inner.finish();

    let mut ephemeral_secret = random_array::<32>(entropy);
    let ephemeral_public =
        x25519_dalek::x25519(ephemeral_secret, x25519_dalek::X25519_BASEPOINT_BYTES);
    let mut shared = x25519_dalek::x25519(ephemeral_secret, recipient.encryption_key);
    ephemeral_secret.zeroize();
    let mut okm = seal_key(&shared, &ephemeral_public, &recipient.encryption_key);
    shared.zeroize();

    let mut header = Writer::new();
    header
        .u8(WIRE_VERSION)
        .u8(FRAME_SEALED)
        .raw(&recipient.wallet_id.0)
        .raw(&ephemeral_public);
    let ciphertext = aead_seal(&okm, &header.bytes, &plaintext);
    okm.zeroize();
    plaintext.zeroize();
    header.raw(&ciphertext);
    let datagram = header.finish();
    debug_assert!(datagram.len() <= DATAGRAM_BYTES_MAX);
    datagram
}

/// Fuzzing only (feature `fuzzing`): [`seal`] for a fuzz target that holds a wallet's keys, so
/// that a chosen body reaches the receiver's checks behind the AEAD and the signature.
#[cfg(feature = "fuzzing")]
pub fn seal_for_fuzzing(
    keys: &WalletKeys,
    own_credential: &[u8],
    recipient: &Credential,
    transfer_id: TransferId,
    seq: u64,
    body: &Body,
    entropy: &mut dyn Entropy,
) -> Vec<u8> {
    seal(
        keys,
        own_credential,
        recipient,
        transfer_id,
        seq,
        body,
        entropy,
    )
}

/// Fuzzing only (feature `fuzzing`): a look-up broadcast signed with `keys`.
#[cfg(feature = "fuzzing")]
pub fn lookup_for_fuzzing(
    keys: &WalletKeys,
    credential: &[u8],
    transfer_id: TransferId,
    seq: u64,
) -> Vec<u8> {
    encode_lookup(keys, credential, transfer_id, seq)
}

/// The parts of a datagram that can be read without keys, for logs and property tests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// A signed look-up broadcast.
    Lookup {
        /// The seller's wallet id, from its credential.
        seller: WalletId,
        /// The transfer the seller proposes.
        transfer_id: TransferId,
        /// Sender's sequence number.
        seq: u64,
    },
    /// A sealed message.
    Sealed {
        /// Whom it is for.
        recipient: WalletId,
        /// Length of the encrypted part.
        ciphertext_bytes: usize,
    },
}

/// Reads the outer frame of a datagram without checking any signature.
pub fn inspect(datagram: &[u8]) -> Result<Frame, Malformed> {
    if datagram.len() > DATAGRAM_BYTES_MAX {
        return Err(Malformed::TooLong);
    }
    let mut r = Reader::new(datagram);
    let version = r.u8()?;
    if version != WIRE_VERSION {
        return Err(Malformed::UnknownVersion(version));
    }
    match r.u8()? {
        FRAME_LOOKUP => {
            let credential = Credential::read(&mut r)?;
            let transfer_id = TransferId(r.array()?);
            let seq = r.u64()?;
            let _signature: [u8; 64] = r.array()?;
            r.finish()?;
            Ok(Frame::Lookup {
                seller: credential.wallet_id,
                transfer_id,
                seq,
            })
        }
        FRAME_SEALED => {
            let recipient = WalletId(r.array()?);
            let _ephemeral: [u8; 32] = r.array()?;
            let ciphertext_bytes = r.remaining();
            if ciphertext_bytes < TAG_BYTES {
                return Err(Malformed::Truncated);
            }
            Ok(Frame::Sealed {
                recipient,
                ciphertext_bytes,
            })
        }
        other => Err(Malformed::UnknownKind(other)),
    }
}

/// Opens and checks a datagram: addressing, decryption, credential, signature. Returns nothing
/// about a datagram that fails any check but the reason.
pub(crate) fn open(
    keys: &WalletKeys,
    own_id: WalletId,
    office_public: &[u8; 32],
    verified: &mut VerifiedCredentials,
    now: Millis,
    datagram: &[u8],
) -> Result<Incoming, Error> {
    match inspect(datagram)? {
        Frame::Lookup {
            transfer_id, seq, ..
        } => {
            let signed_bytes = datagram.len() - SIGNATURE_BYTES;
            let credential = Credential::decode(&datagram[2..2 + CREDENTIAL_BYTES])?;
            verified.verify_at(&credential, office_public, now)?;
            let mut signature = [0u8; 64];
            signature.copy_from_slice(&datagram[signed_bytes..]);
            verify(
                &credential.signing_key,
                &[DOMAIN_LOOKUP, &datagram[..signed_bytes]],
                &signature,
            )?;
            Ok(Incoming::Lookup {
                sender: credential,
                transfer_id,
                seq,
            })
        }
        Frame::Sealed { recipient, .. } => {
            if recipient != own_id {
                return Err(PeerError::Misdirected.into());
            }
            let mut ephemeral_public = [0u8; 32];
            ephemeral_public.copy_from_slice(&datagram[18..SEALED_HEADER_BYTES]);
            let mut shared = x25519_dalek::x25519(*keys.encryption_secret(), ephemeral_public);
            if shared == [0u8; 32] {
                // A low-order ephemeral key: no secret was agreed.
                return Err(PeerError::DecryptionFailed.into());
            }
            let mut okm = seal_key(&shared, &ephemeral_public, &keys.encryption_public());
            shared.zeroize();
            let opened = aead_open(
                &okm,
                &datagram[..SEALED_HEADER_BYTES],
                &datagram[SEALED_HEADER_BYTES..],
            );
            okm.zeroize();
            let plaintext = zeroize::Zeroizing::new(opened?);
            if plaintext.len() < SIGNATURE_BYTES {
                return Err(Malformed::Truncated.into());
            }
            let signed_bytes = plaintext.len() - SIGNATURE_BYTES;
            let mut r = Reader::new(&plaintext[..signed_bytes]);
            let sender = Credential::read(&mut r)?;
            let transfer_id = TransferId(r.array()?);
            let seq = r.u64()?;
            let body = Body::read(&mut r)?;
            r.finish()?;
            verified.verify_at(&sender, office_public, now)?;
            let mut signature = [0u8; 64];
            signature.copy_from_slice(&plaintext[signed_bytes..]);
            verify(
                &sender.signing_key,
                &[DOMAIN_MESSAGE, &own_id.0, &plaintext[..signed_bytes]],
                &signature,
            )?;
            Ok(Incoming::Sealed {
                sender,
                transfer_id,
                seq,
                body,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offpay_money::Currency;
    use proptest::prelude::*;

    fn body_strategy() -> impl Strategy<Value = Body> {
        prop_oneof![
            Just(Body::Present),
            (1u64..Amount::MAX_MINOR).prop_map(|minor| Body::CommitRequest {
                amount: Amount::from_minor(minor, Currency::KES).expect("in range"),
            }),
            (
                any::<u64>(),
                any::<u64>(),
                any::<[u8; 32]>(),
                any::<[u8; 32]>()
            )
                .prop_map(|(spend, balance, a, b)| {
                    let mut signature = [0u8; 64];
                    signature[..32].copy_from_slice(&a);
                    signature[32..].copy_from_slice(&b);
                    Body::Agreed {
                        agreement: Agreement {
                            buyer_spend_seq: spend,
                            buyer_balance_after_minor: balance,
                            signature,
                        },
                    }
                }),
            (1u8..=5).prop_map(|code| Body::Abort {
                reason: AbortReason::from_code(code).expect("known"),
            }),
            any::<[u8; 32]>().prop_map(|half| {
                let mut signature = [7u8; 64];
                signature[..32].copy_from_slice(&half);
                Body::Commit { signature }
            }),
            prop_oneof![Just(Outcome::Posted), Just(Outcome::Voided)]
                .prop_map(|outcome| Body::Acknowledged { outcome }),
        ]
    }

    proptest! {
        #[test]
        fn every_body_survives_encoding(body in body_strategy()) {
            let mut w = Writer::new();
            body.write(&mut w);
            let bytes = w.finish();
            let mut r = Reader::new(&bytes);
            let decoded = Body::read(&mut r).expect("decodes");
            r.finish().expect("no trailing bytes");
            prop_assert_eq!(decoded, body);
        }

        #[test]
        fn no_prefix_of_a_body_decodes(body in body_strategy()) {
            let mut w = Writer::new();
            body.write(&mut w);
            let bytes = w.finish();
            for cut in 0..bytes.len() {
                let mut r = Reader::new(&bytes[..cut]);
                let whole = Body::read(&mut r).and_then(|_| r.finish());
                prop_assert!(whole.is_err() || cut == bytes.len());
                if cut > 0 && matches!(body, Body::Present) {
                    break;
                }
            }
        }

        #[test]
        fn inspect_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let _ = inspect(&bytes);
        }
    }
}
