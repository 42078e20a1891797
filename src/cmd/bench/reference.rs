//! The expected result of each workload, computed here in plain loops
//! without the framework, and W2's serial baseline time.

use std::time::Instant;

use lppsp_executor_builtin as builtin;

use super::workload::W1_TASKS;

/// W1's job result for 10,000 tasks, as every system prints it.
const W1_EXPECTED: u64 = 1_291_890_006_563_070_912;

/// What a workload run is checked against.
pub(super) enum Expected {
    U64(u64),
    /// W2: hits of `samples` in all.
    Hits {
        hits: u64,
        samples: u64,
    },
}

/// W1's job result: the wrapping sum over tasks of the wrapping sum of
/// `(i*1000+k)^2`, `k` in `0..=999`.
pub(super) fn w1_expected(tasks: u64) -> u64 {
    if tasks == W1_TASKS {
        return W1_EXPECTED;
    }
    let mut total = 0u64;
    for i in 0..tasks {
        for k in 0..1000u64 {
            let v = i.wrapping_mul(1000).wrapping_add(k);
            total = total.wrapping_add(v.wrapping_mul(v));
        }
    }
    total
}

/// W3's job result: the wrapping byte sum of the inputs `InputSpec::Random`
/// makes (one SplitMix64 stream from the seed, 8 bytes LE per draw, each
/// task's input cut to `size` bytes), generated word by word.
pub(super) fn w3_expected(count: u64, size: u64, seed: u64) -> u64 {
    let mut words = lppsp_core::splitmix::SplitMix64::new(seed);
    let mut total = 0u64;
    for _ in 0..count {
        let mut left = size;
        while left > 0 {
            let z = words.next_u64();
            let take = left.min(8) as usize;
            let sum: u64 = z.to_le_bytes()[..take].iter().map(|&b| u64::from(b)).sum();
            total = total.wrapping_add(sum);
            left -= take as u64;
        }
    }
    total
}

/// W2 without the framework: the same task bodies in one plain loop.
/// Returns (hits, seconds).
pub(super) fn w2_serial(tasks: u64, samples: u64) -> (u64, f64) {
    let t = Instant::now();
    let mut hits = 0u64;
    for i in 0..tasks {
        hits += builtin::w2_hits(std::hint::black_box(i), samples);
    }
    (hits, t.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::bench::workload::W3_SEED;
    use lppsp_runtime::client::InputSpec;

    #[test]
    fn w1_reference_matches_benchmarks_md() {
        // The plain loop at full size gives the published value.
        let mut total = 0u64;
        for i in 0..W1_TASKS {
            total = total.wrapping_add(builtin::w1_value(i));
        }
        assert_eq!(total, W1_EXPECTED);
        assert_eq!(w1_expected(W1_TASKS), W1_EXPECTED);
        assert_eq!(
            w1_expected(7),
            (0..7).fold(0u64, |a, i| a.wrapping_add(builtin::w1_value(i)))
        );
    }

    #[test]
    fn w3_reference_matches_the_node_inputs() {
        for (count, size) in [(3u64, 1000u64), (2, 13), (4, 4096)] {
            let inputs = InputSpec::Random {
                count,
                size,
                seed: W3_SEED,
            }
            .materialize()
            .unwrap();
            let want = inputs
                .iter()
                .fold(0u64, |a, i| a.wrapping_add(builtin::byte_sum(i)));
            assert_eq!(w3_expected(count, size, W3_SEED), want, "{count}x{size}");
        }
    }
}
