//! The processing-power self-benchmark (DESIGN 4.5): MFLOPS in well under a second.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Measures double-precision multiply-add throughput of one core for about
/// `budget`, in MFLOPS. Eight independent accumulators keep the pipeline
/// full, so the figure reflects the core rather than one dependency chain.
pub fn measure_mflops(budget: Duration) -> u64 {
    const ROUNDS: u64 = 50_000;
    let mut acc = [1.0f64, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7];
    let start = Instant::now();
    let mut flops: u64 = 0;
    loop {
        for _ in 0..ROUNDS {
            for a in acc.iter_mut() {
                *a = black_box(*a) * 0.999_999_9 + 1e-7;
            }
        }
        flops += ROUNDS * acc.len() as u64 * 2;
        if start.elapsed() >= budget {
            break;
        }
    }
    black_box(acc);
    let micros = start.elapsed().as_micros().max(1);
    u64::try_from(u128::from(flops) / micros)
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The power a node offers: the measured figure, capped by config.
pub fn offered_mflops(measured: u64, cap: Option<u64>) -> u64 {
    match cap {
        Some(c) => measured.min(c).max(1),
        None => measured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_something_and_caps() {
        let m = measure_mflops(Duration::from_millis(20));
        assert!(m > 0);
        assert_eq!(offered_mflops(5000, Some(1200)), 1200);
        assert_eq!(offered_mflops(800, Some(1200)), 800);
        assert_eq!(offered_mflops(800, None), 800);
    }
}
