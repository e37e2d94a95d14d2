//! Principals, keys and signatures: the RFC 2792 encodings as the OpenBSD reference implements
//! them, plus Ed25519.
//!
//! | string prefix | contents |
//! |---|---|
//! | `rsa-hex:`, `rsa-base64:` | DER `SEQUENCE { n, e }` (PKCS#1 `RSAPublicKey`) |
//! | `dsa-hex:`, `dsa-base64:` | DER `SEQUENCE { y, p, q, g }` (OpenSSL `DSAPublicKey`) |
//! | `ed25519-hex:`, `ed25519-base64:` | the 32-byte Ed25519 public key |
//! | `binary-hex:`, `binary-base64:` | opaque bytes, compared decoded (as the reference does) |
//! | `private-` + one of the above | PKCS#1 `RSAPrivateKey`; OpenSSL `DSAPrivateKey` `SEQUENCE { 0, p, q, g, y, x }`; the 32-byte Ed25519 seed |
//!
//! Signatures are `sig-rsa-sha1-hex:`/`-base64:` (PKCS#1 v1.5 over the DER OCTET STRING
//! `04 14 || SHA-1(text)`, not a DigestInfo), `sig-dsa-sha1-hex:`/`-base64:` (DER
//! `SEQUENCE { r, s }` over SHA-1(text)) and `sig-ed25519-sha512-hex:`/`-base64:` (Ed25519 over
//! the text itself, which hashes with SHA-512 internally). The signed text is the assertion from
//! its first non-blank byte up to the `Signature:` label, followed by the algorithm name with its
//! colon, exactly as written in the signature.

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity as _, VartimeMultiscalarMul as _};
use dsa::signature::hazmat::PrehashVerifier as _;
use ed25519_dalek::{Signer as _, Verifier as _};
use rand::CryptoRng;
use rsa::BoxedUint;
use rsa::pkcs1::{
    DecodeRsaPrivateKey as _, DecodeRsaPublicKey as _, EncodeRsaPrivateKey as _,
    EncodeRsaPublicKey as _,
};
use rsa::traits::PublicKeyParts as _;
use sha1::{Digest as _, Sha1};
use sha2::Sha512;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::limits::{
    DER_INTEGERS_MAX, DSA_PRIME_BITS_MAX, DSA_PRIME_BITS_MIN, RSA_MODULUS_BITS_MAX,
    RSA_MODULUS_BITS_MIN,
};

/// The key algorithms a cryptographic principal can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// RSA, PKCS#1 public key.
    Rsa,
    /// DSA, OpenSSL public key layout.
    Dsa,
    /// Ed25519 (this implementation's modern default).
    Ed25519,
    /// Opaque bytes compared in decoded form (`binary-hex:`), never a signer.
    Binary,
}

impl KeyAlgorithm {
    fn label(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "rsa",
            KeyAlgorithm::Dsa => "dsa",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Binary => "binary",
        }
    }
}

/// How key and signature bits are written in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Lower-case hexadecimal.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

impl Encoding {
    fn label(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }

    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => BASE64.encode(bytes),
        }
    }

    fn decode(self, text: &[u8]) -> Result<Vec<u8>> {
        match self {
            Encoding::Hex => {
                if !text.len().is_multiple_of(2) {
                    return Err(Error::Key("hex encoding has an odd length".into()));
                }
                hex::decode(text).map_err(|e| Error::Key(format!("bad hex: {e}")))
            }
            Encoding::Base64 => {
                if !text.len().is_multiple_of(4) {
                    return Err(Error::Key(
                        "base64 encoding length is not a multiple of 4".into(),
                    ));
                }
                BASE64
                    .decode(text)
                    .map_err(|e| Error::Key(format!("bad base64: {e}")))
            }
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a [u8], prefix: &str) -> Option<&'a [u8]> {
    let prefix = prefix.as_bytes();
    if text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&text[prefix.len()..])
    } else {
        None
    }
}

const KEY_ALGORITHMS: [KeyAlgorithm; 4] = [
    KeyAlgorithm::Rsa,
    KeyAlgorithm::Dsa,
    KeyAlgorithm::Ed25519,
    KeyAlgorithm::Binary,
];
const ENCODINGS: [Encoding; 2] = [Encoding::Hex, Encoding::Base64];

/// Split `alg-enc:bits` into its algorithm, encoding and bits, if the prefix is one we know
/// (letter case ignored). No label holds a colon or, for algorithms, a dash, so the prefix ends
/// at the first colon and splits at its last dash.
fn split_key_prefix(text: &[u8]) -> Option<(KeyAlgorithm, Encoding, &[u8])> {
    let colon = text.iter().position(|&b| b == b':')?;
    let (label, bits) = (&text[..colon], &text[colon + 1..]);
    let dash = label.iter().rposition(|&b| b == b'-')?;
    let (algorithm, encoding) = (&label[..dash], &label[dash + 1..]);
    let algorithm = KEY_ALGORITHMS
        .into_iter()
        .find(|known| known.label().as_bytes().eq_ignore_ascii_case(algorithm))?;
    let encoding = ENCODINGS
        .into_iter()
        .find(|known| known.label().as_bytes().eq_ignore_ascii_case(encoding))?;
    Some((algorithm, encoding, bits))
}

// ---------------------------------------------------------------------------------------------
// Minimal DER: a SEQUENCE of non-negative INTEGERs is all KeyNote keys and DSA signatures use.

fn der_length(input: &[u8], at: &mut usize) -> Result<usize> {
    let first = *input
        .get(*at)
        .ok_or_else(|| Error::Key("DER ends early".into()))?;
    *at += 1;
    if first < 0x80 {
        return Ok(usize::from(first));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 4 {
        return Err(Error::Key("unsupported DER length".into()));
    }
    let mut length = 0usize;
    for _ in 0..count {
        let byte = *input
            .get(*at)
            .ok_or_else(|| Error::Key("DER ends early".into()))?;
        *at += 1;
        length = (length << 8) | usize::from(byte);
    }
    Ok(length)
}

/// Parse `SEQUENCE { INTEGER, ... }` into minimal big-endian magnitudes.
pub(crate) fn der_integers(input: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut at = 0;
    if input.first() != Some(&0x30) {
        return Err(Error::Key("expected a DER SEQUENCE".into()));
    }
    at += 1;
    let length = der_length(input, &mut at)?;
    if at.checked_add(length) != Some(input.len()) {
        return Err(Error::Key(
            "DER SEQUENCE length does not match the data".into(),
        ));
    }
    let mut integers = Vec::new();
    while at < input.len() {
        if input[at] != 0x02 {
            return Err(Error::Key("expected a DER INTEGER".into()));
        }
        at += 1;
        let length = der_length(input, &mut at)?;
        let end = at
            .checked_add(length)
            .filter(|&end| end <= input.len())
            .ok_or_else(|| Error::Key("DER INTEGER runs past the end".into()))?;
        let bytes = &input[at..end];
        if bytes.is_empty() {
            return Err(Error::Key("empty DER INTEGER".into()));
        }
        if bytes[0] & 0x80 != 0 {
            return Err(Error::Key("negative DER INTEGER".into()));
        }
        let first_nonzero = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        integers.push(bytes[first_nonzero..].to_vec());
        if integers.len() > DER_INTEGERS_MAX {
            return Err(Error::Key("too many DER INTEGERs".into()));
        }
        at = end;
    }
    Ok(integers)
}

fn der_push_length(out: &mut Vec<u8>, length: usize) {
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Encode magnitudes as `SEQUENCE { INTEGER, ... }`.
pub(crate) fn der_sequence(integers: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for magnitude in integers {
        let first_nonzero = magnitude
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(magnitude.len());
        let trimmed = &magnitude[first_nonzero..];
        body.push(0x02);
        let pad = trimmed.is_empty() || trimmed[0] & 0x80 != 0;
        der_push_length(&mut body, trimmed.len() + usize::from(pad));
        if pad {
            body.push(0);
        }
        body.extend_from_slice(trimmed);
    }
    let mut out = vec![0x30];
    der_push_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn bit_length(magnitude: &[u8]) -> usize {
    match magnitude.iter().position(|&b| b != 0) {
        None => 0,
        Some(first) => {
            (magnitude.len() - first - 1) * 8 + (8 - magnitude[first].leading_zeros() as usize)
        }
    }
}

fn precision_for(bits: usize) -> u32 {
    let limbs = bits.max(1).div_ceil(64);
    u32::try_from(limbs * 64).unwrap_or(u32::MAX)
}

fn boxed(magnitude: &[u8], precision: u32) -> Result<BoxedUint> {
    BoxedUint::from_be_slice(magnitude, precision)
        .map_err(|_| Error::Key("integer too large for its key".into()))
}

// ---------------------------------------------------------------------------------------------
// Principals.

/// A principal in canonical form (RFC 2704 §5.2): keys are compared decoded, so `dsa-hex:` and
/// `dsa-base64:` spellings of one key are the same principal; anything else is an opaque,
/// case-sensitive string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// An opaque identifier, e.g. `POLICY` or `Key3`.
    Opaque(Vec<u8>),
    /// A key: its algorithm and canonical material (for RSA and DSA the DER integers,
    /// re-encoded minimally; for Ed25519 the 32 bytes; for binary keys the bytes).
    Key {
        /// The algorithm.
        algorithm: KeyAlgorithm,
        /// Canonical material.
        material: Vec<u8>,
    },
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Opaque(name) => write!(f, "Opaque({:?})", String::from_utf8_lossy(name)),
            Principal::Key {
                algorithm,
                material,
            } => {
                let shown = hex::encode(&material[..material.len().min(8)]);
                write!(f, "Key({algorithm:?}, {shown}..)")
            }
        }
    }
}

impl Principal {
    /// The principal named `POLICY`, root of every query.
    pub fn policy() -> Self {
        Principal::Opaque(b"POLICY".to_vec())
    }

    /// Interpret a principal identifier string: a known key prefix must decode, anything else is
    /// opaque.
    pub fn parse(identifier: &[u8]) -> Result<Self> {
        let Some((algorithm, encoding, bits)) = split_key_prefix(identifier) else {
            return Ok(Principal::Opaque(identifier.to_vec()));
        };
        let decoded = encoding.decode(bits)?;
        let material = match algorithm {
            KeyAlgorithm::Rsa => {
                let ints = der_integers(&decoded)?;
                if ints.len() != 2 {
                    return Err(Error::Key(
                        "an RSA key is SEQUENCE { n, e } (two integers)".into(),
                    ));
                }
                der_sequence(&[&ints[0], &ints[1]])
            }
            KeyAlgorithm::Dsa => {
                let ints = der_integers(&decoded)?;
                if ints.len() != 4 {
                    return Err(Error::Key(
                        "a DSA key is SEQUENCE { y, p, q, g } (four integers)".into(),
                    ));
                }
                der_sequence(&[&ints[0], &ints[1], &ints[2], &ints[3]])
            }
            KeyAlgorithm::Ed25519 => {
                if decoded.len() != 32 {
                    return Err(Error::Key("an Ed25519 key is 32 bytes".into()));
                }
                decoded
            }
            KeyAlgorithm::Binary => decoded,
        };
        Ok(Principal::Key {
            algorithm,
            material,
        })
    }

    /// The key algorithm, if this principal is a key.
    pub fn algorithm(&self) -> Option<KeyAlgorithm> {
        match self {
            Principal::Opaque(_) => None,
            Principal::Key { algorithm, .. } => Some(*algorithm),
        }
    }

    /// Write this principal as an identifier string (keys in the given encoding).
    pub fn to_identifier(&self, encoding: Encoding) -> Vec<u8> {
        match self {
            Principal::Opaque(name) => name.clone(),
            Principal::Key {
                algorithm,
                material,
            } => format!(
                "{}-{}:{}",
                algorithm.label(),
                encoding.label(),
                encoding.encode(material)
            )
            .into_bytes(),
        }
    }

    fn verifier(&self) -> Result<Verifier> {
        let Principal::Key {
            algorithm,
            material,
        } = self
        else {
            return Err(Error::Signature(
                "the authorizer is an opaque principal, which cannot sign".into(),
            ));
        };
        match algorithm {
            KeyAlgorithm::Rsa => {
                let key = rsa::RsaPublicKey::from_pkcs1_der(material)
                    .map_err(|e| Error::Key(format!("RSA key unusable for signatures: {e}")))?;
                let bits = key.n().bits() as usize;
                if !(RSA_MODULUS_BITS_MIN..=RSA_MODULUS_BITS_MAX).contains(&bits) {
                    return Err(Error::Key(format!(
                        "RSA modulus of {bits} bits (signatures need {RSA_MODULUS_BITS_MIN} to \
                         {RSA_MODULUS_BITS_MAX})"
                    )));
                }
                Ok(Verifier::Rsa(Box::new(key)))
            }
            KeyAlgorithm::Dsa => {
                let ints = der_integers(material)?;
                let [y, p, q, g] = ints.as_slice() else {
                    return Err(Error::Key("a DSA key has four integers".into()));
                };
                Ok(Verifier::Dsa(Box::new(dsa_verifying_key(p, q, g, y)?)))
            }
            KeyAlgorithm::Ed25519 => {
                let bytes: [u8; 32] = material
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Key("an Ed25519 key is 32 bytes".into()))?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| Error::Key("not a valid Ed25519 public key".into()))?;
                if key.is_weak() {
                    return Err(Error::Key("a weak (small-order) Ed25519 key".into()));
                }
                Ok(Verifier::Ed25519(key))
            }
            KeyAlgorithm::Binary => Err(Error::Signature(
                "binary keys have no signature algorithm".into(),
            )),
        }
    }
}

fn dsa_components(p: &[u8], q: &[u8], g: &[u8]) -> Result<dsa::Components> {
    let p_bits = bit_length(p);
    if !(DSA_PRIME_BITS_MIN..=DSA_PRIME_BITS_MAX).contains(&p_bits) {
        return Err(Error::Key(format!(
            "DSA prime of {p_bits} bits (signatures need {DSA_PRIME_BITS_MIN} to \
             {DSA_PRIME_BITS_MAX})"
        )));
    }
    let q_bits = bit_length(q);
    if !(160..=256).contains(&q_bits) {
        return Err(Error::Key(format!(
            "DSA q of {q_bits} bits (need 160 to 256)"
        )));
    }
    let p_precision = precision_for(p_bits);
    let q_precision = precision_for(q_bits);
    dsa::Components::from_components_unchecked(
        boxed(p, p_precision)?,
        boxed(q, q_precision)?,
        boxed(g, p_precision)?,
    )
    .map_err(|_| Error::Key("DSA parameters are invalid".into()))
}

fn dsa_verifying_key(p: &[u8], q: &[u8], g: &[u8], y: &[u8]) -> Result<dsa::VerifyingKey> {
    let components = dsa_components(p, q, g)?;
    let precision = precision_for(bit_length(p));
    dsa::VerifyingKey::from_components(components, boxed(y, precision)?)
        .map_err(|_| Error::Key("DSA public value is invalid".into()))
}

fn magnitude(value: &BoxedUint) -> Vec<u8> {
    value.to_be_bytes_trimmed_vartime().into_vec()
}

// ---------------------------------------------------------------------------------------------
// Signature algorithms.

/// The signature algorithms this engine verifies and produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// `sig-rsa-sha1-hex:` / `sig-rsa-sha1-base64:`
    RsaSha1(Encoding),
    /// `sig-dsa-sha1-hex:` / `sig-dsa-sha1-base64:`
    DsaSha1(Encoding),
    /// `sig-ed25519-sha512-hex:` / `sig-ed25519-sha512-base64:`
    Ed25519(Encoding),
}

impl SignatureAlgorithm {
    /// Every supported algorithm, for iteration in tests and tools.
    pub const ALL: [SignatureAlgorithm; 6] = [
        SignatureAlgorithm::RsaSha1(Encoding::Hex),
        SignatureAlgorithm::RsaSha1(Encoding::Base64),
        SignatureAlgorithm::DsaSha1(Encoding::Hex),
        SignatureAlgorithm::DsaSha1(Encoding::Base64),
        SignatureAlgorithm::Ed25519(Encoding::Hex),
        SignatureAlgorithm::Ed25519(Encoding::Base64),
    ];

    /// The algorithm name with its colon, as it starts a signature string.
    pub fn name(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaSha1(Encoding::Hex) => "sig-rsa-sha1-hex:",
            SignatureAlgorithm::RsaSha1(Encoding::Base64) => "sig-rsa-sha1-base64:",
            SignatureAlgorithm::DsaSha1(Encoding::Hex) => "sig-dsa-sha1-hex:",
            SignatureAlgorithm::DsaSha1(Encoding::Base64) => "sig-dsa-sha1-base64:",
            SignatureAlgorithm::Ed25519(Encoding::Hex) => "sig-ed25519-sha512-hex:",
            SignatureAlgorithm::Ed25519(Encoding::Base64) => "sig-ed25519-sha512-base64:",
        }
    }

    /// The key algorithm that makes these signatures.
    pub fn key_algorithm(self) -> KeyAlgorithm {
        match self {
            SignatureAlgorithm::RsaSha1(_) => KeyAlgorithm::Rsa,
            SignatureAlgorithm::DsaSha1(_) => KeyAlgorithm::Dsa,
            SignatureAlgorithm::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    fn encoding(self) -> Encoding {
        match self {
            SignatureAlgorithm::RsaSha1(e)
            | SignatureAlgorithm::DsaSha1(e)
            | SignatureAlgorithm::Ed25519(e) => e,
        }
    }

    /// Recognise the algorithm at the start of a signature string (case-insensitively, as the
    /// reference); returns it with the length of the name as written.
    pub fn from_signature(signature: &[u8]) -> Option<(Self, usize)> {
        Self::ALL.into_iter().find_map(|algorithm| {
            strip_prefix_ignore_case(signature, algorithm.name())
                .map(|_| (algorithm, algorithm.name().len()))
        })
    }

    /// Parse an algorithm name as given to `keynote sign` (with its colon).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.name().eq_ignore_ascii_case(name))
    }
}

enum Verifier {
    Rsa(Box<rsa::RsaPublicKey>),
    Dsa(Box<dsa::VerifyingKey>),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// The DER OCTET STRING of a SHA-1 digest, which the reference pads and signs with RSA.
fn rsa_payload(message: &[&[u8]]) -> [u8; 22] {
    let mut hasher = Sha1::new();
    for part in message {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut payload = [0u8; 22];
    payload[0] = 0x04;
    payload[1] = 0x14;
    payload[2..].copy_from_slice(&digest);
    payload
}

fn sha1_of(message: &[&[u8]]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    for part in message {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Check `signature` (the full `sig-...:bits` string) by `signer` over `signed_text`.
pub(crate) fn verify(signer: &Principal, signed_text: &[u8], signature: &[u8]) -> Result<()> {
    let (algorithm, name_length) = SignatureAlgorithm::from_signature(signature)
        .ok_or_else(|| Error::Signature("unknown or unsupported signature algorithm".into()))?;
    if signer.algorithm() != Some(algorithm.key_algorithm()) {
        return Err(Error::Signature(format!(
            "{} does not match the authorizer's key algorithm",
            algorithm.name()
        )));
    }
    let bits = algorithm
        .encoding()
        .decode(&signature[name_length..])
        .map_err(|e| Error::Signature(format!("signature bits: {e}")))?;
    let message: [&[u8]; 2] = [signed_text, &signature[..name_length]];
    match signer.verifier()? {
        Verifier::Rsa(key) => key
            .verify(
                rsa::pkcs1v15::Pkcs1v15Sign::new_unprefixed(),
                &rsa_payload(&message),
                &bits,
            )
            .map_err(|_| Error::Signature("RSA signature does not verify".into())),
        Verifier::Dsa(key) => {
            let signature = dsa::Signature::try_from(bits.as_slice())
                .map_err(|_| Error::Signature("malformed DSA signature".into()))?;
            key.verify_prehash(&sha1_of(&message), &signature)
                .map_err(|_| Error::Signature("DSA signature does not verify".into()))
        }
        Verifier::Ed25519(key) => {
            let signature = ed25519_signature(&bits)?;
            key.verify(&message.concat(), &signature)
                .map_err(|_| Error::Signature("Ed25519 signature does not verify".into()))
        }
    }
}

fn ed25519_signature(bits: &[u8]) -> Result<ed25519_dalek::Signature> {
    let bytes: [u8; 64] = bits
        .try_into()
        .map_err(|_| Error::Signature("an Ed25519 signature is 64 bytes".into()))?;
    Ok(ed25519_dalek::Signature::from_bytes(&bytes))
}

/// One Ed25519 signature prepared for batch verification: its parts, and the challenge
/// `H(R ‖ A ‖ M)` already reduced, so that the message itself need not be kept.
pub(crate) struct Ed25519Item {
    r: CompressedEdwardsY,
    s: Scalar,
    challenge: Scalar,
    key: ed25519_dalek::VerifyingKey,
}

/// Prepare an Ed25519-signed assertion for batch verification; `None` if it is not one (or is
/// malformed, or its `s` is not canonical, in which case single verification reports why).
/// Each signer's public key is decompressed once per `keys` (a batch of many assertions by few
/// signers otherwise spends much of its preparation decompressing the same keys).
pub(crate) fn ed25519_item_cached(
    signer: &Principal,
    signed_text: &[u8],
    signature: &[u8],
    keys: &mut crate::FastMap<Principal, ed25519_dalek::VerifyingKey>,
) -> Option<Ed25519Item> {
    let (algorithm, name_length) = SignatureAlgorithm::from_signature(signature)?;
    if !matches!(algorithm, SignatureAlgorithm::Ed25519(_))
        || signer.algorithm() != Some(KeyAlgorithm::Ed25519)
    {
        return None;
    }
    let bits = algorithm
        .encoding()
        .decode(&signature[name_length..])
        .ok()?;
    let bits: [u8; 64] = bits.try_into().ok()?;
    let key = match keys.get(signer) {
        Some(key) => *key,
        None => {
            let Ok(Verifier::Ed25519(key)) = signer.verifier() else {
                return None;
            };
            keys.insert(signer.clone(), key);
            key
        }
    };
    let r: [u8; 32] = bits[..32].try_into().ok()?;
    let s: [u8; 32] = bits[32..].try_into().ok()?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s))?;
    // The signed message is the assertion's text followed by the signature algorithm's name.
    let challenge: [u8; 64] = Sha512::new()
        .chain_update(r)
        .chain_update(key.as_bytes())
        .chain_update(signed_text)
        .chain_update(&signature[..name_length])
        .finalize()
        .into();
    Some(Ed25519Item {
        r: CompressedEdwardsY(r),
        s,
        challenge: Scalar::from_bytes_mod_order_wide(&challenge),
        key,
    })
}

/// Verify many Ed25519 signatures at once; `true` only if every one is valid.
///
/// Each signature (R, s) by key A on challenge h satisfies `[s]B = R + [h]A`. With a random
/// 128-bit `z` per signature, the batch checks
/// `[−Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σⱼ [Σ_{i signed by j} zᵢhᵢ]Aⱼ = 0`
/// in one multiscalar multiplication (the equation and the cofactorless check of
/// `ed25519_dalek::verify_batch`). Signatures by the same key share one `A` term, so a deposit of
/// a thousand microchecks by twenty payers multiplies about a thousand points, not two thousand.
/// The `z` are drawn from SHA-512 of every challenge and `s` in the batch, so they are fixed only
/// once the signatures are: a forger cannot choose signatures whose errors cancel.
pub(crate) fn ed25519_verify_batch(items: &[Ed25519Item]) -> bool {
    let mut transcript = Sha512::new().chain_update(b"offpay keynote ed25519 batch v1");
    for item in items {
        transcript.update(item.challenge.as_bytes());
        transcript.update(item.s.as_bytes());
    }
    let seed: [u8; 64] = transcript.finalize().into();
    let mut weights = Vec::with_capacity(items.len());
    for block in 0..items.len().div_ceil(4) {
        let bytes: [u8; 64] = Sha512::new()
            .chain_update(seed)
            .chain_update((block as u64).to_le_bytes())
            .finalize()
            .into();
        for chunk in bytes.chunks_exact(16) {
            let mut z = [0u8; 16];
            z.copy_from_slice(chunk);
            weights.push(Scalar::from(u128::from_le_bytes(z)));
        }
    }
    weights.truncate(items.len());

    let mut basepoint = Scalar::ZERO;
    let mut signers: crate::FastMap<[u8; 32], usize> = crate::FastMap::default();
    let mut key_points: Vec<EdwardsPoint> = Vec::new();
    let mut key_scalars: Vec<Scalar> = Vec::new();
    let mut r_points = Vec::with_capacity(items.len());
    for (item, z) in items.iter().zip(&weights) {
        let Some(r) = item.r.decompress() else {
            return false;
        };
        r_points.push(r);
        basepoint -= z * item.s;
        let index = *signers.entry(item.key.to_bytes()).or_insert_with(|| {
            key_points.push(item.key.to_edwards());
            key_scalars.push(Scalar::ZERO);
            key_points.len() - 1
        });
        key_scalars[index] += z * item.challenge;
    }
    let sum = EdwardsPoint::vartime_multiscalar_mul(
        core::iter::once(&basepoint)
            .chain(&weights)
            .chain(&key_scalars),
        core::iter::once(&ED25519_BASEPOINT_POINT)
            .chain(&r_points)
            .chain(&key_points),
    );
    sum.is_identity()
}

// ---------------------------------------------------------------------------------------------
// Private keys.

enum SecretKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    Dsa(Box<dsa::SigningKey>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// A private key that signs assertions. Its `Debug` shows only the algorithm; the key material
/// is wiped from memory when it is dropped (the RSA, DSA and Ed25519 key types zeroize
/// themselves, and every encoding of it this crate makes is [`Zeroizing`]).
pub struct PrivateKey {
    secret: SecretKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl PrivateKey {
    /// Generate a key. RSA takes `bits` between the crate's limits; DSA takes 1024 (q of 160
    /// bits, as the reference generates), 2048 or 3072; Ed25519 takes 256.
    pub fn generate<R: CryptoRng + ?Sized>(
        algorithm: KeyAlgorithm,
        bits: usize,
        rng: &mut R,
    ) -> Result<Self> {
        let secret = match algorithm {
            KeyAlgorithm::Rsa => {
                if !(RSA_MODULUS_BITS_MIN..=RSA_MODULUS_BITS_MAX).contains(&bits) {
                    return Err(Error::Usage(format!(
                        "RSA key size {bits} (supported: {RSA_MODULUS_BITS_MIN} to \
                         {RSA_MODULUS_BITS_MAX})"
                    )));
                }
                let key = rsa::RsaPrivateKey::new(rng, bits)
                    .map_err(|e| Error::Key(format!("RSA key generation failed: {e}")))?;
                SecretKey::Rsa(Box::new(key))
            }
            KeyAlgorithm::Dsa => {
                #[allow(deprecated)]
                let size = match bits {
                    1024 => dsa::KeySize::DSA_1024_160,
                    2048 => dsa::KeySize::DSA_2048_256,
                    3072 => dsa::KeySize::DSA_3072_256,
                    _ => {
                        return Err(Error::Usage(format!(
                            "DSA key size {bits} (supported: 1024, 2048, 3072)"
                        )));
                    }
                };
                let components = dsa::Components::try_generate_from_rng_with_key_size(rng, size)
                    .map_err(|_| Error::Key("DSA parameter generation failed".into()))?;
                let key = dsa::SigningKey::try_generate_from_rng_with_components(rng, components)
                    .map_err(|_| Error::Key("DSA key generation failed".into()))?;
                SecretKey::Dsa(Box::new(key))
            }
            KeyAlgorithm::Ed25519 => {
                if bits != 256 {
                    return Err(Error::Usage(format!(
                        "Ed25519 key size {bits} (the only size is 256)"
                    )));
                }
                let mut seed = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(seed.as_mut());
                SecretKey::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(&seed)))
            }
            KeyAlgorithm::Binary => {
                return Err(Error::Usage("binary keys cannot sign".into()));
            }
        };
        Ok(Self { secret })
    }

    /// Build an Ed25519 key from its 32-byte seed (for deterministic tests and devices that
    /// keep the seed elsewhere).
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> Self {
        Self {
            secret: SecretKey::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(seed))),
        }
    }

    /// Decode a `private-<alg>-<enc>:` string (as `keynote keygen` writes it).
    pub fn parse(identifier: &[u8]) -> Result<Self> {
        let rest = strip_prefix_ignore_case(identifier, "private-")
            .ok_or_else(|| Error::Key("a private key starts with `private-`".into()))?;
        let (algorithm, encoding, bits) = split_key_prefix(rest)
            .ok_or_else(|| Error::Key("unknown private key algorithm".into()))?;
        let decoded = Zeroizing::new(encoding.decode(bits)?);
        let secret = match algorithm {
            KeyAlgorithm::Rsa => SecretKey::Rsa(Box::new(
                rsa::RsaPrivateKey::from_pkcs1_der(&decoded)
                    .map_err(|e| Error::Key(format!("bad RSA private key: {e}")))?,
            )),
            KeyAlgorithm::Dsa => {
                let ints = Zeroizing::new(der_integers(&decoded)?);
                let [version, p, q, g, y, x] = ints.as_slice() else {
                    return Err(Error::Key(
                        "a DSA private key is SEQUENCE { 0, p, q, g, y, x }".into(),
                    ));
                };
                if !version.is_empty() {
                    return Err(Error::Key("DSA private key version must be 0".into()));
                }
                let public = dsa_verifying_key(p, q, g, y)?;
                let x = boxed(x, precision_for(bit_length(q)))?;
                SecretKey::Dsa(Box::new(
                    dsa::SigningKey::from_components(public, x)
                        .map_err(|_| Error::Key("DSA private value is invalid".into()))?,
                ))
            }
            KeyAlgorithm::Ed25519 => {
                let seed: [u8; 32] = decoded
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Key("an Ed25519 private key is 32 bytes".into()))?;
                let seed = Zeroizing::new(seed);
                SecretKey::Ed25519(Box::new(ed25519_dalek::SigningKey::from_bytes(&seed)))
            }
            KeyAlgorithm::Binary => return Err(Error::Key("binary keys cannot sign".into())),
        };
        Ok(Self { secret })
    }

    /// The key algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.secret {
            SecretKey::Rsa(_) => KeyAlgorithm::Rsa,
            SecretKey::Dsa(_) => KeyAlgorithm::Dsa,
            SecretKey::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// The private key as a `private-<alg>-<enc>:` string.
    pub fn to_identifier(&self, encoding: Encoding) -> Result<Zeroizing<String>> {
        let der: Zeroizing<Vec<u8>> = match &self.secret {
            SecretKey::Rsa(key) => Zeroizing::new(
                key.to_pkcs1_der()
                    .map_err(|e| Error::Key(format!("RSA encoding failed: {e}")))?
                    .as_bytes()
                    .to_vec(),
            ),
            SecretKey::Dsa(key) => {
                let public = key.verifying_key();
                let c = public.components();
                let parts = Zeroizing::new([
                    Vec::new(),
                    magnitude(c.p()),
                    magnitude(c.q()),
                    magnitude(c.g()),
                    magnitude(public.y()),
                    magnitude(key.x()),
                ]);
                let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                Zeroizing::new(der_sequence(&refs))
            }
            SecretKey::Ed25519(key) => Zeroizing::new(key.to_bytes().to_vec()),
        };
        Ok(Zeroizing::new(format!(
            "private-{}-{}:{}",
            self.algorithm().label(),
            encoding.label(),
            Zeroizing::new(encoding.encode(&der)).as_str()
        )))
    }

    /// The public half as a principal.
    pub fn principal(&self) -> Principal {
        let material = match &self.secret {
            SecretKey::Rsa(key) => {
                let public = key.to_public_key();
                match public.to_pkcs1_der() {
                    Ok(document) => document.as_bytes().to_vec(),
                    Err(_) => der_sequence(&[&magnitude(public.n()), &magnitude(public.e())]),
                }
            }
            SecretKey::Dsa(key) => {
                let public = key.verifying_key();
                let c = public.components();
                der_sequence(&[
                    &magnitude(public.y()),
                    &magnitude(c.p()),
                    &magnitude(c.q()),
                    &magnitude(c.g()),
                ])
            }
            SecretKey::Ed25519(key) => key.verifying_key().to_bytes().to_vec(),
        };
        // Normalise exactly as `Principal::parse` does, so that equality holds.
        let canonical = match self.algorithm() {
            KeyAlgorithm::Rsa | KeyAlgorithm::Dsa => match der_integers(&material) {
                Ok(ints) => {
                    let refs: Vec<&[u8]> = ints.iter().map(Vec::as_slice).collect();
                    der_sequence(&refs)
                }
                Err(_) => material,
            },
            _ => material,
        };
        Principal::Key {
            algorithm: self.algorithm(),
            material: canonical,
        }
    }

    /// The signature algorithm this key uses with the given encoding.
    pub fn signature_algorithm(&self, encoding: Encoding) -> SignatureAlgorithm {
        match self.algorithm() {
            KeyAlgorithm::Rsa => SignatureAlgorithm::RsaSha1(encoding),
            KeyAlgorithm::Dsa => SignatureAlgorithm::DsaSha1(encoding),
            _ => SignatureAlgorithm::Ed25519(encoding),
        }
    }

    /// Sign `signed_text` (the assertion up to its `Signature:` label) with `algorithm`;
    /// returns the full signature string `sig-...:bits`.
    pub fn sign(&self, signed_text: &[u8], algorithm: SignatureAlgorithm) -> Result<String> {
        if algorithm.key_algorithm() != self.algorithm() {
            return Err(Error::Usage(format!(
                "{} needs a {:?} key, not {:?}",
                algorithm.name(),
                algorithm.key_algorithm(),
                self.algorithm()
            )));
        }
        // A signature that verification would refuse (a key too small or too large, a weak
        // Ed25519 key) is not made: `sign` and `sigver` accept the same keys.
        self.principal().verifier()?;
        let name = algorithm.name().as_bytes();
        let message: [&[u8]; 2] = [signed_text, name];
        let bits = match &self.secret {
            SecretKey::Rsa(key) => key
                .sign(
                    rsa::pkcs1v15::Pkcs1v15Sign::new_unprefixed(),
                    &rsa_payload(&message),
                )
                .map_err(|e| Error::Signature(format!("RSA signing failed: {e}")))?,
            SecretKey::Dsa(key) => {
                let signature = key
                    .sign_prehashed_rfc6979::<Sha1>(&sha1_of(&message))
                    .map_err(|_| Error::Signature("DSA signing failed".into()))?;
                let boxed: Box<[u8]> = signature.into();
                boxed.into_vec()
            }
            SecretKey::Ed25519(key) => key.sign(&message.concat()).to_bytes().to_vec(),
        };
        Ok(format!(
            "{}{}",
            algorithm.name(),
            algorithm.encoding().encode(&bits)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefixes_are_split_whatever_their_case() {
        fn split(text: &str) -> Option<(KeyAlgorithm, Encoding, &[u8])> {
            split_key_prefix(text.as_bytes())
        }
        assert_eq!(
            split("ed25519-base64:AAAA"),
            Some((KeyAlgorithm::Ed25519, Encoding::Base64, &b"AAAA"[..]))
        );
        assert_eq!(
            split("RSA-Hex:00ff:11"),
            Some((KeyAlgorithm::Rsa, Encoding::Hex, &b"00ff:11"[..]))
        );
        assert_eq!(
            split("binary-hex:"),
            Some((KeyAlgorithm::Binary, Encoding::Hex, &b""[..]))
        );
        for unknown in [
            "ed25519:AAAA",
            "ed25519-base64AAAA",
            "ed25519-base32:AAAA",
            "x-ed25519-hex:00",
            "dsa-hex-hex:00",
            ":00",
            "",
        ] {
            assert_eq!(split(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn der_round_trip() {
        let encoded = der_sequence(&[&[0x01, 0x00], &[0x80], &[]]);
        assert_eq!(
            encoded,
            vec![
                0x30, 0x0b, 0x02, 0x02, 0x01, 0x00, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x00
            ]
        );
        assert_eq!(
            der_integers(&encoded).unwrap(),
            vec![vec![0x01, 0x00], vec![0x80], vec![]]
        );
        assert!(der_integers(&[0x30, 0x03, 0x02, 0x01, 0x80]).is_err());
        assert!(der_integers(&[0x30, 0x04, 0x02, 0x01, 0x01]).is_err());
    }

    #[test]
    fn hex_and_base64_spell_the_same_principal() {
        let der = der_sequence(&[&[0x12, 0x34], &[0x01, 0x00, 0x01]]);
        let hex_form = format!("rsa-hex:{}", hex::encode(&der));
        let b64_form = format!("RSA-BASE64:{}", BASE64.encode(&der));
        assert_eq!(
            Principal::parse(hex_form.as_bytes()).unwrap(),
            Principal::parse(b64_form.as_bytes()).unwrap()
        );
        assert_eq!(
            Principal::parse(b"Key3").unwrap(),
            Principal::Opaque(b"Key3".to_vec())
        );
        assert!(Principal::parse(b"dsa-hex:zz").is_err());
        assert!(Principal::parse(b"dsa-base64:abc").is_err());
    }

    #[test]
    fn ed25519_sign_and_verify() {
        let key = PrivateKey::ed25519_from_seed(&[7u8; 32]);
        let algorithm = SignatureAlgorithm::Ed25519(Encoding::Base64);
        let signature = key.sign(b"Authorizer: x\n", algorithm).unwrap();
        assert!(verify(&key.principal(), b"Authorizer: x\n", signature.as_bytes()).is_ok());
        assert!(verify(&key.principal(), b"Authorizer: y\n", signature.as_bytes()).is_err());
        let text = key.to_identifier(Encoding::Hex).unwrap();
        let again = PrivateKey::parse(text.as_bytes()).unwrap();
        assert_eq!(again.principal(), key.principal());
        assert!(!format!("{key:?}").contains(&text[20..40]));
    }

    /// `count` signed messages by `signers` keys in turn, prepared for batch verification.
    fn batch_items(count: usize, signers: u8) -> Vec<Ed25519Item> {
        let algorithm = SignatureAlgorithm::Ed25519(Encoding::Base64);
        let keys: Vec<PrivateKey> = (0..signers)
            .map(|n| PrivateKey::ed25519_from_seed(&[n + 1; 32]))
            .collect();
        let mut decompressed = crate::FastMap::default();
        (0..count)
            .map(|i| {
                let key = &keys[i % keys.len()];
                let text = format!("Authorizer: x\nConditions: nonce == \"{i}\";\n");
                let signature = key.sign(text.as_bytes(), algorithm).unwrap();
                assert!(verify(&key.principal(), text.as_bytes(), signature.as_bytes()).is_ok());
                ed25519_item_cached(
                    &key.principal(),
                    text.as_bytes(),
                    signature.as_bytes(),
                    &mut decompressed,
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_batch_of_good_signatures_by_few_keys_verifies() {
        for (count, signers) in [(1, 1), (2, 1), (7, 3), (64, 64), (300, 5)] {
            assert!(
                ed25519_verify_batch(&batch_items(count, signers)),
                "{count}/{signers}"
            );
        }
        assert!(ed25519_verify_batch(&[]));
    }

    #[test]
    fn one_bad_signature_fails_the_batch() {
        // A challenge for another message (the signature moved onto other text).
        let mut items = batch_items(50, 4);
        items[17].challenge = items[18].challenge;
        assert!(!ed25519_verify_batch(&items));
        // Another signer's key.
        let mut items = batch_items(50, 4);
        items[3].key = items[4].key;
        assert!(!ed25519_verify_batch(&items));
        // An altered s.
        let mut items = batch_items(50, 4);
        items[49].s += Scalar::ONE;
        assert!(!ed25519_verify_batch(&items));
        // An R that is not a point on the curve.
        let mut items = batch_items(50, 4);
        let mut r = items[0].r.to_bytes();
        while CompressedEdwardsY(r).decompress().is_some() {
            r[0] = r[0].wrapping_add(1);
        }
        items[0].r = CompressedEdwardsY(r);
        assert!(!ed25519_verify_batch(&items));
    }

    #[test]
    fn errors_that_cancel_in_a_plain_sum_are_caught() {
        // Two signatures by the same key, one s raised and the other lowered by the same amount:
        // the unweighted sum of their equations still holds, so only the random weights reveal
        // the forgery.
        let mut items = batch_items(10, 1);
        let shift = Scalar::from(12_345u64);
        items[2].s += shift;
        items[7].s -= shift;
        assert!(!ed25519_verify_batch(&items));
        // Two challenges swapped between signatures by the same key (items 0 and 2 of two
        // signers taking turns): the unweighted sum of the key's terms is unchanged.
        let mut items = batch_items(10, 2);
        let moved = items[0].challenge;
        items[0].challenge = items[2].challenge;
        items[2].challenge = moved;
        assert!(!ed25519_verify_batch(&items));
    }

    #[test]
    fn a_non_canonical_s_is_left_to_single_verification() {
        let key = PrivateKey::ed25519_from_seed(&[3; 32]);
        let algorithm = SignatureAlgorithm::Ed25519(Encoding::Hex);
        let signature = key.sign(b"Authorizer: x\n", algorithm).unwrap();
        let (_, name_length) = SignatureAlgorithm::from_signature(signature.as_bytes()).unwrap();
        let mut bits = Encoding::Hex
            .decode(&signature.as_bytes()[name_length..])
            .unwrap();
        // s + l: the same value modulo l, but not its canonical encoding.
        let s = Scalar::from_canonical_bytes(bits[32..].try_into().unwrap()).unwrap();
        let l_bytes = (Scalar::ZERO - Scalar::ONE).to_bytes();
        let mut wide = [0u8; 33];
        let mut carry = 0u16;
        for (k, slot) in wide.iter_mut().take(32).enumerate() {
            let sum =
                u16::from(s.as_bytes()[k]) + u16::from(l_bytes[k]) + carry + u16::from(k == 0);
            *slot = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0, "s + l fits in 256 bits");
        bits[32..].copy_from_slice(&wide[..32]);
        let forged = format!(
            "{}{}",
            &signature[..name_length],
            Encoding::Hex.encode(&bits)
        );
        assert!(verify(&key.principal(), b"Authorizer: x\n", forged.as_bytes()).is_err());
        assert!(
            ed25519_item_cached(
                &key.principal(),
                b"Authorizer: x\n",
                forged.as_bytes(),
                &mut crate::FastMap::default()
            )
            .is_none()
        );
    }
}
