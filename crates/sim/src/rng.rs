//! The one source of every decision a run makes: SplitMix64 from the seed. Every device's and
//! operator's randomness is drawn from it, so a seed replays byte for byte.

use offpay_operator::{Entropy, EntropyError};

/// The run's generator.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A draw in `0..bound` (`bound` > 0; the bias is at most bound / 2^64).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "a draw below zero");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A draw in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high);
        low + self.below(high - low + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An index into a list of `length` (> 0) items.
    pub fn index(&mut self, length: usize) -> usize {
        self.below(length as u64) as usize
    }

    /// A generator of its own for a part of the run (drawn from this one).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    /// 32 bytes (a key).
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.fill(&mut out);
        out
    }

    /// Fills `out`.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

impl offpay_purse::RandomSource for Rng {
    fn fill_bytes(&mut self, out: &mut [u8]) {
        self.fill(out);
    }
}

impl offpay_wallet::Entropy for Rng {
    fn fill(&mut self, destination: &mut [u8]) {
        Rng::fill(self, destination);
    }
}

/// The operator's entropy in a run: seeded, so the operator's draws replay too.
pub fn operator_entropy(rng: &mut Rng) -> offpay_operator::SeededEntropy {
    offpay_operator::SeededEntropy::from_seed(rng.next_u64())
}

/// Entropy that is always the same function of a generator (for APIs that take `&dyn Entropy`).
#[derive(Debug)]
pub struct RngEntropy(pub std::sync::Mutex<Rng>);

impl Entropy for RngEntropy {
    fn fill(&self, destination: &mut [u8]) -> Result<(), EntropyError> {
        let mut rng = self.0.lock().map_err(|_| EntropyError)?;
        rng.fill(destination);
        Ok(())
    }
}
