//! The game day's order: a seeded shuffle that gives the same order for the
//! same seed on every machine and in every version.
//!
//! The generator is SplitMix64 (Steele, Lea and Flood, "Fast splittable
//! pseudorandom number generators", 2014): a 64-bit state advanced by
//! 0x9E3779B97F4A7C15, each output mixed by two xor-shift-multiply rounds
//! (multipliers 0xBF58476D1CE4E5B9 and 0x94D049BB133111EB, shifts 30, 27,
//! 31). The shuffle is Fisher–Yates from the last position down: position
//! `i` swaps with `j = next() % (i + 1)`. Both are written out here, in
//! integer arithmetic only, so no dependency's release can change a day's
//! order; the modulo's slight bias is irrelevant for a handful of
//! experiments. The tests pin the order of one seed.

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The indices `0..n` in the order `seed` gives.
pub fn shuffle(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut random = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let bound = u64::try_from(i + 1).unwrap_or(u64::MAX);
        let j = usize::try_from(random.next_u64() % bound).unwrap_or(0);
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_gives_its_reference_stream() {
        // The first outputs for seed 1234567, as the algorithm's reference
        // implementation gives them.
        let mut random = SplitMix64::new(1_234_567);
        let first: Vec<u64> = (0..3).map(|_| random.next_u64()).collect();
        assert_eq!(
            first,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }

    #[test]
    fn a_shuffle_is_a_permutation() {
        for seed in 0..50 {
            let mut order = shuffle(7, seed);
            order.sort_unstable();
            assert_eq!(order, (0..7).collect::<Vec<_>>());
        }
        assert_eq!(shuffle(0, 1), Vec::<usize>::new());
        assert_eq!(shuffle(1, 1), [0]);
    }
}
