//! Counting primes in `[lo, hi)`: a segmented sieve of Eratosthenes, with a
//! deterministic Miller-Rabin test for the survivors that the sieve alone
//! cannot settle.
//!
//! The sieve crosses out multiples of every prime up to
//! `min(isqrt(hi - 1), base_limit)`. When `isqrt(hi - 1)` is larger than the
//! base limit (numbers above 2^44 with the default limit of 2^22), a
//! survivor `n` greater than `base_limit^2` may still be a product of two
//! large primes, so it is checked with Miller-Rabin over the first twelve
//! primes as bases, which is exact for every `n < 3.3 * 10^24` (so for every
//! u64). Multiplication mod n uses Montgomery form, so that no 128-bit
//! division is on the hot path.

use crate::Guard;
use lppsp_core::component::TaskError;

/// Widest range `hi - lo` one task may ask for.
pub const MAX_PRIME_RANGE: u64 = 100_000_000;

/// Default bound on the sieving primes (2^22): the base sieve then takes
/// 4 MiB at most and a few milliseconds.
pub(crate) const BASE_LIMIT: u64 = 1 << 22;

/// Numbers per sieve segment (fits in a typical L2 cache as one byte each).
const SEGMENT: u64 = 1 << 18;

/// Bytes the sieve needs for `[lo, hi)` with the given base limit, roughly.
pub(crate) fn memory_estimate(lo: u64, hi: u64, base_limit: u64) -> u64 {
    let root = hi.saturating_sub(1).isqrt();
    let limit = root.min(base_limit);
    // Base sieve (one byte per number), the base primes (8 bytes each; fewer
    // than limit / 4 for any limit that matters) and one segment.
    let seg = hi.saturating_sub(lo).min(SEGMENT);
    (limit + 1) + 2 * limit + seg
}

/// The primes up to and including `limit` (`limit <= 2^32`).
fn small_primes(limit: u64) -> Vec<u64> {
    let Ok(len) = usize::try_from(limit.saturating_add(1)) else {
        return Vec::new();
    };
    // composite[n] for n in 0..=limit
    let mut composite = vec![false; len];
    let mut p: u64 = 2;
    while p.saturating_mul(p) <= limit {
        if composite.get(p as usize) == Some(&false) {
            let step = p as usize;
            for c in composite.iter_mut().skip((p * p) as usize).step_by(step) {
                *c = true;
            }
        }
        p += 1;
    }
    composite
        .iter()
        .enumerate()
        .skip(2)
        .filter(|(_, &c)| !c)
        .map(|(n, _)| n as u64)
        .collect()
}

/// Counts the primes in `[lo, hi)`, sieving with primes up to `base_limit`
/// (tests lower it to exercise the Miller-Rabin path on small numbers).
pub(crate) fn count_primes(
    lo: u64,
    hi: u64,
    base_limit: u64,
    guard: &Guard<'_>,
) -> Result<u64, TaskError> {
    let lo = lo.max(2);
    if hi <= lo {
        return Ok(0);
    }
    let root = (hi - 1).isqrt();
    let limit = root.min(base_limit).max(1);
    let base = small_primes(limit);
    // Survivors above limit^2 may be products of primes above the limit.
    let need_mr = root > limit;
    let settled_up_to = limit.saturating_mul(limit);

    let mut seg: Vec<bool> = Vec::new();
    let mut count: u64 = 0;
    let mut seg_lo = lo;
    while seg_lo < hi {
        guard.check()?;
        let len = (hi - seg_lo).min(SEGMENT);
        let seg_last = seg_lo + (len - 1);
        seg.clear();
        seg.resize(len as usize, false);
        for &p in &base {
            let p2 = p * p; // p <= 2^22 (or <= 2^32), so p*p fits.
            if p2 > seg_last {
                break;
            }
            let first = if p2 >= seg_lo {
                p2
            } else {
                match seg_lo % p {
                    0 => seg_lo,
                    r => match seg_lo.checked_add(p - r) {
                        Some(f) => f,
                        None => continue,
                    },
                }
            };
            if first > seg_last {
                continue;
            }
            for c in seg
                .iter_mut()
                .skip((first - seg_lo) as usize)
                .step_by(p as usize)
            {
                *c = true;
            }
        }
        for (i, &c) in seg.iter().enumerate() {
            if !c {
                let n = seg_lo + i as u64;
                if !need_mr || n <= settled_up_to || is_prime(n) {
                    count += 1;
                }
            }
        }
        seg_lo = seg_last.saturating_add(1);
        if seg_last == u64::MAX {
            break;
        }
    }
    Ok(count)
}

/// Montgomery arithmetic modulo an odd `n`.
struct Mont {
    n: u64,
    /// n^-1 mod 2^64
    inv: u64,
    /// R^2 mod n, R = 2^64
    r2: u64,
}

impl Mont {
    fn new(n: u64) -> Self {
        // Newton's iteration: n*n == 1 mod 8 for odd n (3 bits), each step
        // doubles the correct bits: 3, 6, 12, 24, 48, 96.
        let mut inv = n;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n.wrapping_mul(inv)));
        }
        let r = (1u128 << 64) % u128::from(n);
        let r2 = ((r * r) % u128::from(n)) as u64;
        Self { n, inv, r2 }
    }

    /// t * R^-1 mod n, for t < n * R.
    #[inline]
    fn redc(&self, t: u128) -> u64 {
        let m = (t as u64).wrapping_mul(self.inv);
        let mn = u128::from(m) * u128::from(self.n);
        // The low halves of t and m*n are equal, so (t - m*n) / R is the
        // difference of the high halves, which lies in (-n, n).
        let t_hi = (t >> 64) as u64;
        let mn_hi = (mn >> 64) as u64;
        if t_hi >= mn_hi {
            t_hi - mn_hi
        } else {
            t_hi.wrapping_sub(mn_hi).wrapping_add(self.n)
        }
    }

    #[inline]
    fn mul(&self, a: u64, b: u64) -> u64 {
        self.redc(u128::from(a) * u128::from(b))
    }

    fn to_mont(&self, a: u64) -> u64 {
        self.mul(a % self.n, self.r2)
    }

    fn pow(&self, mut base: u64, mut e: u64, one: u64) -> u64 {
        let mut acc = one;
        while e > 0 {
            if e & 1 == 1 {
                acc = self.mul(acc, base);
            }
            base = self.mul(base, base);
            e >>= 1;
        }
        acc
    }
}

const SMALL: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];

/// Deterministic primality test for any u64.
pub(crate) fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in SMALL {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    if n < 37 * 37 {
        return true;
    }
    let m = Mont::new(n);
    let one = m.to_mont(1);
    let minus_one = m.n - one;
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    'bases: for a in SMALL {
        // n > 37^2, so no base is a multiple of n.
        let mut x = m.pow(m.to_mont(a), d, one);
        if x == one || x == minus_one {
            continue;
        }
        for _ in 1..s {
            x = m.mul(x, x);
            if x == minus_one {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use lppsp_core::component::{CancelFlag, TaskLimits};

    fn count(lo: u64, hi: u64, base_limit: u64) -> u64 {
        let cancel = CancelFlag::new();
        let limits = TaskLimits::default();
        let guard = Guard::new(&cancel, &limits);
        count_primes(lo, hi, base_limit, &guard).unwrap()
    }

    fn trial(n: u64) -> bool {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    #[test]
    fn small_primes_are_right() {
        assert_eq!(small_primes(1), Vec::<u64>::new());
        assert_eq!(small_primes(2), vec![2]);
        assert_eq!(small_primes(30), vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
    }

    #[test]
    fn miller_rabin_matches_trial_division() {
        for n in 0..20_000 {
            assert_eq!(is_prime(n), trial(n), "{n}");
        }
        // Strong pseudoprimes to several bases, and Carmichael numbers.
        for n in [
            2_047u64,
            1_373_653,
            25_326_001,
            3_215_031_751,
            2_152_302_898_747,
            3_474_749_660_383,
            341_550_071_728_321,
            3_825_123_056_546_413_051,
            561,
            1_105,
            1_729,
        ] {
            assert!(!is_prime(n), "{n}");
        }
        // Large primes: 2^61 - 1, 2^64 - 59, and 2^64 - 83.
        for n in [(1u64 << 61) - 1, u64::MAX - 58, u64::MAX - 82] {
            assert!(is_prime(n), "{n}");
        }
        // 2^64 - 1 = 3 * 5 * 17 * 257 * 641 * 65537 * 6700417; product of
        // two large primes: 4294967291 * 4294967279.
        assert!(!is_prime(u64::MAX));
        assert!(!is_prime(4_294_967_291 * 4_294_967_279));
    }

    #[test]
    fn known_counts() {
        assert_eq!(count(0, 100, BASE_LIMIT), 25);
        assert_eq!(count(0, 1_000_000, BASE_LIMIT), 78_498);
        assert_eq!(count(0, 2, BASE_LIMIT), 0);
        assert_eq!(count(0, 3, BASE_LIMIT), 1);
        assert_eq!(count(2, 3, BASE_LIMIT), 1);
        assert_eq!(count(100, 100, BASE_LIMIT), 0);
        // Segment edges: a range spanning several segments.
        assert_eq!(count(0, 3 * SEGMENT + 7, BASE_LIMIT), {
            let mut c = 0;
            let mut n = 0;
            while n < 3 * SEGMENT + 7 {
                if is_prime(n) {
                    c += 1;
                }
                n += 1;
            }
            c
        });
        // 2^64 - k is prime for k = 59, 83, 95 below 100.
        assert_eq!(count(u64::MAX - 99, u64::MAX, BASE_LIMIT), 3);
    }

    #[test]
    fn sieve_with_low_base_limit_uses_miller_rabin_correctly() {
        // With base_limit 10 every survivor above 100 goes through
        // Miller-Rabin; the count must not change.
        for (lo, hi) in [(0, 50_000), (12_345, 67_890), (1 << 40, (1 << 40) + 20_000)] {
            assert_eq!(count(lo, hi, 10), count(lo, hi, BASE_LIMIT), "{lo}..{hi}");
        }
        let (lo, hi) = (1_000_000_000_000u64, 1_000_000_010_000u64);
        let by_mr = (lo..hi).filter(|&n| is_prime(n)).count() as u64;
        assert_eq!(count(lo, hi, BASE_LIMIT), by_mr);
        assert_eq!(count(lo, hi, 1_000), by_mr);
    }
}
