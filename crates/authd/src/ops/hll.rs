//! A HyperLogLog of user ids: this instance's own estimate of distinct active users, used
//! when Redis (whose `PFCOUNT` covers every instance) is off or unreachable.
//!
//! 2^14 registers of one byte (16 KiB a day), standard error 1.04 / sqrt(2^14) = 0.81 %,
//! the same precision as Redis's own HyperLogLog.

use cache_core::UserId;

/// Index bits: 2^14 registers.
const P: u32 = 14;
const M: usize = 1 << P;

/// Distinct-count estimator over user ids.
#[derive(Clone)]
pub struct HyperLogLog {
    registers: Box<[u8]>,
}

impl std::fmt::Debug for HyperLogLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperLogLog").field("estimate", &self.estimate()).finish()
    }
}

impl Default for HyperLogLog {
    fn default() -> Self {
        Self::new()
    }
}

impl HyperLogLog {
    /// An empty estimator.
    pub fn new() -> Self {
        Self { registers: vec![0; M].into_boxed_slice() }
    }

    /// Adds one id (adding it again changes nothing).
    pub fn insert(&mut self, id: UserId) {
        // Ids are positive, so the cast is lossless.
        let hash = mix(id.get() as u64);
        let index = usize::try_from(hash >> (64 - P)).unwrap_or(0);
        // The remaining bits, with a sentinel so that the rank is at most 64 - P + 1.
        let rest = (hash << P) | (1 << (P - 1));
        let rank = u8::try_from(rest.leading_zeros() + 1).unwrap_or(u8::MAX);
        if let Some(register) = self.registers.get_mut(index) {
            *register = (*register).max(rank);
        }
    }

    /// The estimated number of distinct ids added.
    pub fn estimate(&self) -> u64 {
        let m = M as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let mut sum = 0.0;
        let mut zeros = 0u32;
        for &r in self.registers.iter() {
            sum += 2f64.powi(-i32::from(r));
            if r == 0 {
                zeros += 1;
            }
        }
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            // Small cardinalities: linear counting is exact-ish where HyperLogLog is biased.
            m * (m / f64::from(zeros)).ln()
        } else {
            raw
        };
        // A float estimate of a count: round to the nearest integer (never negative).
        estimate.round().max(0.0) as u64
    }
}

/// A 64-bit finalizer (SplitMix64's): user ids are random already, but the estimator
/// needs every bit to be uniformly mixed whatever the ids look like.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_within_a_few_percent() {
        let mut hll = HyperLogLog::new();
        assert_eq!(hll.estimate(), 0);
        // Sequential ids: the worst case for a weak hash.
        for (i, n) in [(1, 1u64), (2, 10), (3, 1_000), (4, 50_000)] {
            let mut hll = HyperLogLog::new();
            for id in 1..=n {
                let id = UserId::new(i64::try_from(id * 7 + i).unwrap()).unwrap();
                hll.insert(id);
                hll.insert(id);
            }
            let estimate = hll.estimate();
            let error = estimate.abs_diff(n) as f64 / n as f64;
            assert!(error <= 0.03, "{n} ids estimated as {estimate}");
        }
        hll.insert(UserId::new(5).unwrap());
        assert_eq!(hll.estimate(), 1);
    }
}
