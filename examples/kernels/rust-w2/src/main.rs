//! W2 (Monte Carlo pi) as a WASM kernel: stdin is the task index and the
//! sample count (u64 LE each), stdout the hits and the samples (u64 LE
//! each), bit for bit the builtin `w2-monte-carlo-pi`.

use std::io::{Read, Write};
use std::process::ExitCode;

/// Names the job's reduce for the `wasm` executor (docs/wasm.md).
#[cfg(target_family = "wasm")]
#[link_section = "lppsp.reduce"]
#[used]
static REDUCE: [u8; 2] = *b"w2";

/// 2^-53, exactly.
const TWO_POW_NEG_53: f64 = 1.0 / 9_007_199_254_740_992.0;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hits(task: u64, samples: u64) -> u64 {
    let mut state = task;
    let mut hits = 0u64;
    for _ in 0..samples {
        let x = (splitmix64(&mut state) >> 11) as f64 * TWO_POW_NEG_53;
        let y = (splitmix64(&mut state) >> 11) as f64 * TWO_POW_NEG_53;
        hits += u64::from(x * x + y * y < 1.0);
    }
    hits
}

fn word(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_le_bytes)
}

fn main() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("reading stdin: {e}");
        return ExitCode::from(1);
    }
    let (Some(task), Some(samples)) = (
        input.get(..8).and_then(word),
        input.get(8..).and_then(word),
    ) else {
        // Exit code 2: bad input.
        eprintln!(
            "w2-monte-carlo-pi expects 16 bytes (task index u64 LE, sample count u64 LE), got {}",
            input.len()
        );
        return ExitCode::from(2);
    };
    let mut out = hits(task, samples).to_le_bytes().to_vec();
    out.extend_from_slice(&samples.to_le_bytes());
    match std::io::stdout().write_all(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing stdout: {e}");
            ExitCode::from(1)
        }
    }
}
