//! Keys and randomness. Secrets are zeroized on drop and never shown by `Debug`.

use core::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::codec::sha256;
use crate::error::PeerError;

/// Where fresh randomness comes from. Passed into every call that needs it, so that a simulation
/// can be replayed from one seed.
pub trait Entropy {
    /// Fills `destination` with unpredictable bytes.
    fn fill(&mut self, destination: &mut [u8]);
}

/// The operating system's random number generator.
#[cfg(feature = "std")]
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

#[cfg(feature = "std")]
impl Entropy for OsEntropy {
    fn fill(&mut self, destination: &mut [u8]) {
        // A machine whose random number generator fails cannot make keys safely; stopping is the
        // only sound answer.
        if getrandom::fill(destination).is_err() {
            panic!("the operating system's random number generator failed");
        }
    }
}

/// Deterministic randomness from a seed (SHA-256 in counter mode), for tests, simulations and
/// benchmarks only: anyone who knows the seed knows every key.
#[derive(Clone)]
pub struct SeededEntropy {
    seed: [u8; 32],
    counter: u64,
}

impl SeededEntropy {
    /// A generator whose whole output follows from `seed`.
    pub fn from_seed(seed: u64) -> Self {
        SeededEntropy {
            seed: sha256(&[b"offpay-wallet seeded entropy", &seed.to_be_bytes()]),
            counter: 0,
        }
    }
}

impl fmt::Debug for SeededEntropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeededEntropy(..)")
    }
}

impl Entropy for SeededEntropy {
    fn fill(&mut self, destination: &mut [u8]) {
        for chunk in destination.chunks_mut(32) {
            let block = sha256(&[&self.seed, &self.counter.to_be_bytes()]);
            self.counter += 1;
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

pub(crate) fn random_array<const N: usize>(entropy: &mut dyn Entropy) -> [u8; N] {
    let mut out = [0u8; N];
    entropy.fill(&mut out);
    out
}

/// A wallet's two key pairs: Ed25519 to sign, X25519 to receive sealed messages.
#[derive(Clone, ZeroizeOnDrop)]
pub struct WalletKeys {
    signing: SigningKey,
    encryption_secret: [u8; 32],
    #[zeroize(skip)]
    encryption_public: [u8; 32],
}

impl WalletKeys {
    /// Fresh keys.
    pub fn generate(entropy: &mut dyn Entropy) -> Self {
        let mut signing_seed = random_array::<32>(entropy);
        let encryption_secret = random_array::<32>(entropy);
        let keys = WalletKeys::from_secrets(&signing_seed, encryption_secret);
        signing_seed.zeroize();
        keys
    }

    /// Keys from their secret halves (as stored in the wallet file).
    pub fn from_secrets(signing_seed: &[u8; 32], encryption_secret: [u8; 32]) -> Self {
        WalletKeys {
            signing: SigningKey::from_bytes(signing_seed),
            encryption_public: x25519_dalek::x25519(
                encryption_secret,
                x25519_dalek::X25519_BASEPOINT_BYTES,
            ),
            encryption_secret,
        }
    }

    /// The Ed25519 public key others verify our signatures with.
    pub fn signing_public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The X25519 public key others seal messages to.
    pub fn encryption_public(&self) -> [u8; 32] {
        self.encryption_public
    }

    pub(crate) fn signing_seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub(crate) fn encryption_secret(&self) -> &[u8; 32] {
        &self.encryption_secret
    }

    /// Signs the SHA-256 digest of `parts` (hash, then sign, as the seed describes).
    pub(crate) fn sign(&self, parts: &[&[u8]]) -> [u8; 64] {
        self.signing.sign(&sha256(parts)).to_bytes()
    }
}

impl fmt::Debug for WalletKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalletKeys")
            .field("signing_public", &Hex(&self.signing_public()))
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// The money office's signing key: it signs credentials, charge vouchers and sync replies.
#[derive(Clone, ZeroizeOnDrop)]
pub struct OfficeKeys {
    signing: SigningKey,
}

impl OfficeKeys {
    /// A fresh key.
    pub fn generate(entropy: &mut dyn Entropy) -> Self {
        let mut seed = random_array::<32>(entropy);
        let keys = OfficeKeys::from_secret(&seed);
        seed.zeroize();
        keys
    }

    /// The key from its 32-byte secret (as the server keeps it in its key file).
    pub fn from_secret(seed: &[u8; 32]) -> Self {
        OfficeKeys {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte secret, for the server's key file.
    pub fn to_secret(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.signing.to_bytes())
    }

    /// The public key every wallet holds to verify the office.
    pub fn public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub(crate) fn sign(&self, parts: &[&[u8]]) -> [u8; 64] {
        self.signing.sign(&sha256(parts)).to_bytes()
    }
}

impl fmt::Debug for OfficeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfficeKeys")
            .field("public", &Hex(&self.public()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Verifies an Ed25519 signature over the SHA-256 digest of `parts` (strict verification: no
/// malleable signatures, no small-order keys).
pub(crate) fn verify(
    public: &[u8; 32],
    parts: &[&[u8]],
    signature: &[u8; 64],
) -> Result<(), PeerError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| PeerError::BadSignature)?;
    let signature = Signature::from_bytes(signature);
    key.verify_strict(&sha256(parts), &signature)
        .map_err(|_| PeerError::BadSignature)
}

/// Shows bytes as hex in `Debug` output.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}
