//! Randomness as an input. Rules that need fresh secrets (keys, session ids, salts) are handed
//! an [`Entropy`]; the server constructs [`OsEntropy`] once, tests and the simulator pass
//! [`SeededEntropy`].

use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The entropy source failed; no secret can be made safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the random number generator failed")]
pub struct EntropyError;

/// Where fresh, unpredictable bytes come from. Shared by every request, so `&self`.
pub trait Entropy: Send + Sync + std::fmt::Debug {
    /// Fills `destination` with unpredictable bytes.
    fn fill(&self, destination: &mut [u8]) -> Result<(), EntropyError>;
}

impl dyn Entropy + '_ {
    /// `N` fresh bytes.
    pub fn array<const N: usize>(&self) -> Result<[u8; N], EntropyError> {
        let mut bytes = [0u8; N];
        self.fill(&mut bytes)?;
        Ok(bytes)
    }

    /// A fresh `u64`.
    pub fn u64(&self) -> Result<u64, EntropyError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// The operating system's random number generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, destination: &mut [u8]) -> Result<(), EntropyError> {
        getrandom::fill(destination).map_err(|_| EntropyError)
    }
}

/// Deterministic bytes from a seed (SHA-256 in counter mode), for tests and the simulator only:
/// anyone who knows the seed knows every key made from it.
pub struct SeededEntropy {
    seed: [u8; 32],
    counter: Mutex<u64>,
}

impl SeededEntropy {
    /// A generator whose whole output follows from `seed`.
    pub fn from_seed(seed: u64) -> SeededEntropy {
        let mut hash = Sha256::new();
        hash.update(b"offpay-operator seeded entropy");
        hash.update(seed.to_be_bytes());
        SeededEntropy {
            seed: hash.finalize().into(),
            counter: Mutex::new(0),
        }
    }
}

impl std::fmt::Debug for SeededEntropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeededEntropy(..)")
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, destination: &mut [u8]) -> Result<(), EntropyError> {
        let mut counter = self.counter.lock().map_err(|_| EntropyError)?;
        for chunk in destination.chunks_mut(32) {
            let mut hash = Sha256::new();
            hash.update(self.seed);
            hash.update(counter.to_be_bytes());
            *counter += 1;
            let block: [u8; 32] = hash.finalize().into();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_entropy_is_reproducible_and_seed_dependent() {
        let first: &dyn Entropy = &SeededEntropy::from_seed(7);
        let again: &dyn Entropy = &SeededEntropy::from_seed(7);
        let other: &dyn Entropy = &SeededEntropy::from_seed(8);
        let a: [u8; 40] = first.array().unwrap();
        assert_eq!(a, again.array::<40>().unwrap());
        assert_ne!(a, other.array::<40>().unwrap());
        // The stream moves on: two draws differ.
        assert_ne!(first.array::<40>().unwrap(), a);
    }

    #[test]
    fn os_entropy_fills() {
        let source: &dyn Entropy = &OsEntropy;
        let bytes: [u8; 32] = source.array().unwrap();
        assert_ne!(bytes, [0u8; 32]);
    }
}
