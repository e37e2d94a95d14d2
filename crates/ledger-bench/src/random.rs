//! Seeded randomness for the load generator: a xoshiro256** generator and an exact Zipf sampler.
//!
//! We carry our own generator rather than `rand`'s `StdRng` because a seed must replay the same
//! run in every future release, and `StdRng` does not promise a stable algorithm.

/// Most draws a rejection loop makes before giving up and taking its last candidate. The Zipf
/// sampler accepts well over half of its candidates, so reaching this bound has a probability
/// below 2^-64: it exists so that no loop is unbounded, not because it is ever expected.
const REJECTION_ATTEMPTS_MAX: u32 = 64;

/// xoshiro256** (Blackman and Vigna): fast, 256 bits of state, good statistical quality, and a
/// fixed algorithm, so a seed means the same sequence forever.
#[derive(Clone, Debug)]
pub struct Random {
    state: [u64; 4],
}

impl Random {
    /// A generator whose whole sequence is decided by `seed` (expanded with SplitMix64, as the
    /// xoshiro authors recommend, so that nearby seeds give unrelated sequences).
    pub fn new(seed: u64) -> Random {
        let mut splitmix = seed;
        let mut next = || {
            splitmix = splitmix.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut mixed = splitmix;
            mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            mixed ^ (mixed >> 31)
        };
        Random {
            state: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.state[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let shifted = self.state[1] << 17;
        self.state[2] ^= self.state[0];
        self.state[3] ^= self.state[1];
        self.state[1] ^= self.state[2];
        self.state[0] ^= self.state[3];
        self.state[2] ^= shifted;
        self.state[3] = self.state[3].rotate_left(45);
        result
    }

    /// A number in `0..bound` (`bound` > 0), by Lemire's multiply-and-shift. Its bias is at most
    /// `bound / 2^64`, below 10^-12 for any bound the benchmark uses, so it needs no rejection loop.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "Random::below needs a positive bound");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A uniform number in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u8) -> bool {
        self.below(100) < u64::from(percent)
    }
}

/// Draws ranks `0..elements` with probability proportional to `1 / (rank + 1)^exponent`: rank 0 is
/// the most frequent.
///
/// Rejection-inversion (Hörmann and Derflinger, "Rejection-inversion to generate variates from
/// monotone discrete distributions", 1996), as in Apache Commons' `ZipfDistribution`: exact for
/// every rank, O(1) set-up and O(1) expected time per draw, unlike the Gray et al. method of YCSB,
/// which needs the O(n) zeta sum and only approximates ranks past the second.
#[derive(Clone, Debug)]
pub struct Zipf {
    elements: u64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_elements: f64,
    squeeze: f64,
}

impl Zipf {
    /// A sampler over `elements` ranks (at least 1) with the given exponent θ (positive; the
    /// benchmark uses 0.99, as YCSB does).
    pub fn new(elements: u64, exponent: f64) -> Zipf {
        assert!(
            elements >= 1,
            "a Zipf distribution needs at least one element"
        );
        assert!(
            exponent > 0.0 && exponent.is_finite(),
            "the Zipf exponent must be positive"
        );
        let mut zipf = Zipf {
            elements,
            exponent,
            h_integral_x1: 0.0,
            h_integral_elements: 0.0,
            squeeze: 0.0,
        };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_elements = zipf.h_integral(elements as f64 + 0.5);
        zipf.squeeze = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        zipf
    }

    /// Number of ranks.
    pub fn elements(&self) -> u64 {
        self.elements
    }

    /// One rank in `0..elements`.
    pub fn sample(&mut self, random: &mut Random) -> u64 {
        let mut rank = 1;
        for _ in 0..REJECTION_ATTEMPTS_MAX {
            // u is uniform in (h_integral_x1, h_integral_elements].
            let u = self.h_integral_elements
                + random.unit() * (self.h_integral_x1 - self.h_integral_elements);
            let x = self.h_integral_inverse(u);
            rank = ((x + 0.5) as u64).clamp(1, self.elements);
            if rank as f64 - x <= self.squeeze
                || u >= self.h_integral(rank as f64 + 0.5) - self.h(rank as f64)
            {
                break;
            }
        }
        rank - 1
    }

    /// The theoretical probability of `rank` (0-based): `(rank + 1)^-θ / Σ k^-θ`. O(elements);
    /// for tests and reports.
    pub fn probability(&self, rank: u64) -> f64 {
        let normaliser: f64 = (1..=self.elements)
            .map(|k| (k as f64).powf(-self.exponent))
            .sum();
        (rank as f64 + 1.0).powf(-self.exponent) / normaliser
    }

    /// H(x) = ∫ h, the antiderivative of the hat function h(x) = x^-θ, shifted so that it is
    /// smooth at θ = 1 (where it becomes log x).
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper_exponential((1.0 - self.exponent) * log_x) * log_x
    }

    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper_logarithm(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, accurate near zero.
fn helper_logarithm(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, accurate near zero.
fn helper_exponential(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAWS: u64 = 400_000;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_another_seed_does_not() {
        let first: Vec<u64> = {
            let mut random = Random::new(7);
            (0..16).map(|_| random.next_u64()).collect()
        };
        let again: Vec<u64> = {
            let mut random = Random::new(7);
            (0..16).map(|_| random.next_u64()).collect()
        };
        let other: Vec<u64> = {
            let mut random = Random::new(8);
            (0..16).map(|_| random.next_u64()).collect()
        };
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn below_is_roughly_uniform() {
        const BUCKETS: u64 = 10;
        let mut random = Random::new(1);
        let mut counts = [0u64; BUCKETS as usize];
        for _ in 0..DRAWS {
            counts[random.below(BUCKETS) as usize] += 1;
        }
        let expected = DRAWS / BUCKETS;
        for count in counts {
            // 5 % of 40,000 is about ten standard deviations.
            assert!(
                count.abs_diff(expected) < expected / 20,
                "bucket count {count}, expected about {expected}"
            );
        }
    }

    #[test]
    fn unit_stays_in_the_half_open_interval() {
        let mut random = Random::new(2);
        for _ in 0..DRAWS {
            let value = random.unit();
            assert!((0.0..1.0).contains(&value), "{value}");
        }
    }

    #[test]
    fn zipf_rank_frequencies_match_theory() {
        const ELEMENTS: u64 = 10_000;
        const THETA: f64 = 0.99;
        let mut random = Random::new(3);
        let mut zipf = Zipf::new(ELEMENTS, THETA);
        let mut counts = vec![0u64; ELEMENTS as usize];
        for _ in 0..DRAWS {
            let rank = zipf.sample(&mut random);
            assert!(rank < ELEMENTS);
            counts[rank as usize] += 1;
        }
        // Rank 1 takes about 10 % of the draws with 10,000 elements at θ 0.99; the first few
        // ranks must each be within 5 % of theory (tens of standard deviations of slack is not
        // needed: at 40,000 draws one standard deviation is under 0.5 %).
        for rank in 0..4 {
            let expected = zipf.probability(rank) * DRAWS as f64;
            let observed = counts[rank as usize] as f64;
            assert!(
                (observed - expected).abs() < expected * 0.05,
                "rank {}: observed {observed}, expected {expected:.0}",
                rank + 1
            );
        }
        assert!(
            (zipf.probability(0) - 0.1).abs() < 0.02,
            "rank 1 should take about a tenth: {}",
            zipf.probability(0)
        );
        // Skew: the top 1 % of ranks take more than a third of the draws; a uniform choice would
        // give them 1 %.
        let top: u64 = counts[..(ELEMENTS / 100) as usize].iter().sum();
        assert!(top > DRAWS / 3, "top 1 % of ranks drew {top} of {DRAWS}");
        // And the tail is reached.
        assert!(counts[(ELEMENTS / 2) as usize..].iter().sum::<u64>() > 0);
    }

    #[test]
    fn zipf_works_at_the_edges() {
        let mut random = Random::new(4);
        let mut single = Zipf::new(1, 0.99);
        assert_eq!(single.sample(&mut random), 0);
        let mut pair = Zipf::new(2, 0.99);
        let firsts = (0..DRAWS).filter(|_| pair.sample(&mut random) == 0).count() as f64;
        let expected = pair.probability(0) * DRAWS as f64;
        assert!((firsts - expected).abs() < expected * 0.02);
        // θ = 1 exactly goes through the series expansions.
        let mut harmonic = Zipf::new(100, 1.0);
        let ones = (0..DRAWS)
            .filter(|_| harmonic.sample(&mut random) == 0)
            .count() as f64;
        let expected = harmonic.probability(0) * DRAWS as f64;
        assert!((ones - expected).abs() < expected * 0.05);
    }
}
