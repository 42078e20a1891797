//! Built-in native kernels (W1-W3 benchmark kernels and useful ones) behind the Executor trait
//!
//! [`BuiltinExecutor`] (registered as `builtin`) runs the kernels below as
//! plain Rust on the calling worker thread. Every task input and result is
//! bytes with a fixed little-endian layout; the helpers [`w1_input`],
//! [`w2_input`], [`prime_input`], [`decode_u64`] and [`decode_w2`] build and
//! read them so that callers never re-implement a layout. [`KERNELS`] lists
//! the same table for `lppsp` to print.
//!
//! | kernel | task input | task result | reduce (job result) | rendering |
//! |---|---|---|---|---|
//! | `w1-sum-squares` | task index `i`, u64 LE (8 bytes) | sum of `(i*1000+k)^2` for `k` in `0..=999`, u64 wrapping, u64 LE | wrapping sum, u64 LE | decimal |
//! | `w2-monte-carlo-pi` | task index u64 LE, sample count u64 LE (16 bytes) | hits u64 LE, samples u64 LE | sums of both, 16 bytes | `pi = 3.141592654 (hits H of S samples)` |
//! | `w3-byte-sum` | any bytes | wrapping sum of the bytes, u64 LE | wrapping sum, u64 LE | decimal |
//! | `sha256` | any bytes | SHA-256 digest, 32 bytes | digests concatenated in task order | one hex digest per line |
//! | `prime-count` | `lo` u64 LE, `hi` u64 LE (16 bytes), `lo <= hi`, `hi - lo <= 10^8` | number of primes in `[lo, hi)`, u64 LE | sum, u64 LE | decimal |
//!
//! W1 and W2 follow shared/BENCHMARKS.md to the bit: W2 draws from
//! SplitMix64 seeded with the task index (`state += 0x9E3779B97F4A7C15;
//! z = state; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
//! z = (z ^ (z >> 27)) * 0x94D049BB133111EB; z ^ (z >> 31)`, all wrapping),
//! `x` then `y` each `(next >> 11) as f64 * 2^-53`, and counts
//! `x*x + y*y < 1.0`. [`w2_hits`] is the same loop without the executor,
//! for a serial baseline.
//!
//! Limits: every kernel checks the [`CancelFlag`] and the wall-clock limit
//! ([`TaskLimits::wall`]) between units of work (every 64 Ki samples for W2,
//! every 1 MiB of input for W3 and SHA-256, every sieve segment for
//! `prime-count`), and fails with [`TaskError::Cancelled`] or
//! [`TaskError::Timeout`]. `prime-count` also refuses a range whose sieve
//! would need more than [`TaskLimits::memory_bytes`]. The other kernels use
//! no memory beyond their input. Builtin kernels do not meter work, so
//! [`TaskOutput::fuel`] is `None`.
//!
//! Bad input (wrong length, `hi < lo`, too wide a range) is a
//! [`TaskError::BadInput`] that names the kernel and the expected layout;
//! bad task results given to `reduce` are too. Nothing here panics on any
//! input.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use lppsp_core::component::{CancelFlag, Executor, TaskError, TaskLimits, TaskOutput, TaskSpec};
use lppsp_core::wire::KernelName;
use sha2::{Digest, Sha256};

mod primes;

pub use primes::MAX_PRIME_RANGE;

/// The name this executor is registered under.
pub const NAME: &str = "builtin";

/// Kernel name of W1 (tiny tasks).
pub const W1_SUM_SQUARES: &str = "w1-sum-squares";
/// Kernel name of W2 (Monte Carlo pi).
pub const W2_MONTE_CARLO_PI: &str = "w2-monte-carlo-pi";
/// Kernel name of W3 (byte sum over large inputs).
pub const W3_BYTE_SUM: &str = "w3-byte-sum";
/// Kernel name of SHA-256.
pub const SHA256: &str = "sha256";
/// Kernel name of the prime counter.
pub const PRIME_COUNT: &str = "prime-count";

/// One row of the kernel table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelInfo {
    /// The kernel name jobs use.
    pub name: &'static str,
    /// One line: what the kernel computes.
    pub summary: &'static str,
    /// Task input layout.
    pub input: &'static str,
    /// Task result layout.
    pub output: &'static str,
    /// How task results are integrated, and how the job result is shown.
    pub reduce: &'static str,
}

/// Every builtin kernel, in a stable order (for `lppsp` to print).
pub const KERNELS: &[KernelInfo] = &[
    KernelInfo {
        name: W1_SUM_SQUARES,
        summary: "W1: sum of (i*1000+k)^2 for k in 0..=999, wrapping mod 2^64",
        input: "task index i: u64 LE (8 bytes)",
        output: "u64 LE",
        reduce: "wrapping sum of the task results; shown as a decimal number",
    },
    KernelInfo {
        name: W2_MONTE_CARLO_PI,
        summary: "W2: Monte Carlo pi, SplitMix64 seeded with the task index",
        input: "task index: u64 LE, sample count: u64 LE (16 bytes)",
        output: "hits: u64 LE, samples: u64 LE (16 bytes)",
        reduce: "sums of hits and samples; shown as pi = 4*hits/samples with the counts",
    },
    KernelInfo {
        name: W3_BYTE_SUM,
        summary: "W3: wrapping sum of the input's bytes mod 2^64",
        input: "any bytes",
        output: "u64 LE",
        reduce: "wrapping sum of the task results; shown as a decimal number",
    },
    KernelInfo {
        name: SHA256,
        summary: "SHA-256 digest of the input",
        input: "any bytes",
        output: "32-byte digest",
        reduce: "digests concatenated in task order; shown as one hex digest per line",
    },
    KernelInfo {
        name: PRIME_COUNT,
        summary: "number of primes in [lo, hi) (segmented sieve)",
        input: "lo: u64 LE, hi: u64 LE (16 bytes); lo <= hi, hi - lo <= 10^8",
        output: "u64 LE",
        reduce: "sum of the task results; shown as a decimal number",
    },
];

/// The table row of a kernel name, if it is a builtin.
pub fn kernel_info(name: &str) -> Option<&'static KernelInfo> {
    KERNELS.iter().find(|k| k.name == name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    W1,
    W2,
    W3,
    Sha256,
    PrimeCount,
}

impl Kernel {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            W1_SUM_SQUARES => Self::W1,
            W2_MONTE_CARLO_PI => Self::W2,
            W3_BYTE_SUM => Self::W3,
            SHA256 => Self::Sha256,
            PRIME_COUNT => Self::PrimeCount,
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------
// Input and result layouts.

/// Task input of `w1-sum-squares` for task index `i`.
pub fn w1_input(i: u64) -> Vec<u8> {
    i.to_le_bytes().to_vec()
}

/// Task input of `w2-monte-carlo-pi`: task index and number of samples.
pub fn w2_input(task: u64, samples: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&task.to_le_bytes());
    v.extend_from_slice(&samples.to_le_bytes());
    v
}

/// Task input of `prime-count`: the range `[lo, hi)`.
pub fn prime_input(lo: u64, hi: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&lo.to_le_bytes());
    v.extend_from_slice(&hi.to_le_bytes());
    v
}

/// Reads a u64 LE result (W1, W3, prime-count task or job results);
/// `None` unless `result` is exactly 8 bytes.
pub fn decode_u64(result: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(result).ok().map(u64::from_le_bytes)
}

/// Reads a W2 task or job result as `(hits, samples)`; `None` unless it is
/// exactly 16 bytes.
pub fn decode_w2(result: &[u8]) -> Option<(u64, u64)> {
    let [a, b] = read_words::<2>(result)?;
    Some((a, b))
}

fn read_words<const N: usize>(bytes: &[u8]) -> Option<[u64; N]> {
    if bytes.len() != N * 8 {
        return None;
    }
    let mut out = [0u64; N];
    for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        *slot = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?);
    }
    Some(out)
}

fn words_input<const N: usize>(
    kernel: &str,
    layout: &str,
    input: &[u8],
) -> Result<[u64; N], TaskError> {
    read_words::<N>(input).ok_or_else(|| {
        TaskError::BadInput(format!(
            "{kernel} expects {} bytes ({layout}), got {}",
            N * 8,
            input.len()
        ))
    })
}

// ---------------------------------------------------------------------------
// The kernels as plain functions.

/// W1 task body: sum over k in 0..=999 of (i*1000 + k)^2, wrapping mod 2^64.
pub fn w1_value(i: u64) -> u64 {
    let base = i.wrapping_mul(1000);
    (0..1000u64).fold(0u64, |acc, k| {
        let v = base.wrapping_add(k);
        acc.wrapping_add(v.wrapping_mul(v))
    })
}

/// 2^-53, exactly.
const TWO_POW_NEG_53: f64 = 1.0 / 9_007_199_254_740_992.0;

#[inline(always)]
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Draws `n` samples from the generator in `state` and counts the hits.
#[inline(always)]
fn w2_draw(state: &mut u64, n: u64) -> u64 {
    let mut s = *state;
    let mut hits = 0u64;
    for _ in 0..n {
        let x = (splitmix64(&mut s) >> 11) as f64 * TWO_POW_NEG_53;
        let y = (splitmix64(&mut s) >> 11) as f64 * TWO_POW_NEG_53;
        hits += u64::from(x * x + y * y < 1.0);
    }
    *state = s;
    hits
}

/// W2 task body: hits among `samples` points drawn from SplitMix64 seeded
/// with `task` (the same loop the kernel runs, minus its limit checks).
pub fn w2_hits(task: u64, samples: u64) -> u64 {
    let mut state = task;
    w2_draw(&mut state, samples)
}

/// W3 task body: the wrapping sum of the bytes, mod 2^64.
///
/// Sums 8 bytes at a time in four 16-bit lanes of a u64 (SWAR), folding the
/// lanes every 1 KiB before they can overflow; equal to the byte-wise sum.
pub fn byte_sum(data: &[u8]) -> u64 {
    // 128 words per block: each adds at most 2 * 255 to a lane, 128 * 510
    // = 65280 < 2^16.
    const BLOCK: usize = 1024;
    const LO: u64 = 0x00FF_00FF_00FF_00FF;
    let mut total = 0u64;
    for block in data.chunks(BLOCK) {
        let mut words = block.chunks_exact(8);
        let mut lanes = 0u64;
        for w in &mut words {
            let w = <[u8; 8]>::try_from(w).map_or(0, u64::from_le_bytes);
            lanes += (w & LO) + ((w >> 8) & LO);
        }
        let folded =
            (lanes & 0xFFFF) + ((lanes >> 16) & 0xFFFF) + ((lanes >> 32) & 0xFFFF) + (lanes >> 48);
        total = total.wrapping_add(folded);
        for &b in words.remainder() {
            total = total.wrapping_add(u64::from(b));
        }
    }
    total
}

// ---------------------------------------------------------------------------
// Limits.

/// Cancellation and wall-clock checks, shared by the kernels.
pub(crate) struct Guard<'a> {
    cancel: &'a CancelFlag,
    start: Instant,
    wall: Duration,
}

impl<'a> Guard<'a> {
    pub(crate) fn new(cancel: &'a CancelFlag, limits: &TaskLimits) -> Self {
        Self {
            cancel,
            start: Instant::now(),
            wall: limits.wall,
        }
    }

    pub(crate) fn check(&self) -> Result<(), TaskError> {
        if self.cancel.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        if self.start.elapsed() > self.wall {
            return Err(TaskError::Timeout(self.wall));
        }
        Ok(())
    }
}

/// Samples drawn between limit checks in W2.
const W2_CHECK_EVERY: u64 = 1 << 16;
/// Bytes processed between limit checks in W3 and SHA-256.
const BYTES_CHECK_EVERY: usize = 1 << 20;

fn run_w1(input: &[u8], guard: &Guard<'_>) -> Result<Vec<u8>, TaskError> {
    let [i] = words_input::<1>(W1_SUM_SQUARES, "task index u64 LE", input)?;
    guard.check()?;
    Ok(w1_value(i).to_le_bytes().to_vec())
}

fn run_w2(input: &[u8], guard: &Guard<'_>) -> Result<Vec<u8>, TaskError> {
    let [task, samples] = words_input::<2>(
        W2_MONTE_CARLO_PI,
        "task index u64 LE, sample count u64 LE",
        input,
    )?;
    let mut state = task;
    let mut hits = 0u64;
    let mut left = samples;
    while left > 0 {
        guard.check()?;
        let n = left.min(W2_CHECK_EVERY);
        hits += w2_draw(&mut state, n);
        left -= n;
    }
    guard.check()?;
    Ok(w2_input(hits, samples))
}

fn run_w3(input: &[u8], guard: &Guard<'_>) -> Result<Vec<u8>, TaskError> {
    let mut total = 0u64;
    for chunk in input.chunks(BYTES_CHECK_EVERY) {
        guard.check()?;
        total = total.wrapping_add(byte_sum(chunk));
    }
    guard.check()?;
    Ok(total.to_le_bytes().to_vec())
}

fn run_sha256(input: &[u8], guard: &Guard<'_>) -> Result<Vec<u8>, TaskError> {
    let mut h = Sha256::new();
    for chunk in input.chunks(BYTES_CHECK_EVERY) {
        guard.check()?;
        h.update(chunk);
    }
    guard.check()?;
    Ok(h.finalize().to_vec())
}

fn run_prime_count(
    input: &[u8],
    limits: &TaskLimits,
    guard: &Guard<'_>,
) -> Result<Vec<u8>, TaskError> {
    let [lo, hi] = words_input::<2>(PRIME_COUNT, "lo u64 LE, hi u64 LE", input)?;
    if hi < lo {
        return Err(TaskError::BadInput(format!(
            "{PRIME_COUNT}: hi ({hi}) is below lo ({lo})"
        )));
    }
    if hi - lo > MAX_PRIME_RANGE {
        return Err(TaskError::BadInput(format!(
            "{PRIME_COUNT}: range [{lo}, {hi}) is wider than {MAX_PRIME_RANGE}; split it into more tasks"
        )));
    }
    if primes::memory_estimate(lo, hi, primes::BASE_LIMIT) > limits.memory_bytes {
        return Err(TaskError::MemoryLimit(limits.memory_bytes));
    }
    let n = primes::count_primes(lo, hi, primes::BASE_LIMIT, guard)?;
    Ok(n.to_le_bytes().to_vec())
}

// ---------------------------------------------------------------------------
// Reduce and render.

fn result_error(kernel: &str, index: usize, want: &str, got: usize) -> TaskError {
    TaskError::BadInput(format!(
        "{kernel}: task result {index} is {got} bytes, expected {want}"
    ))
}

fn reduce_u64(
    kernel: &str,
    results: &[&[u8]],
    add: impl Fn(u64, u64) -> Option<u64>,
) -> Result<Vec<u8>, TaskError> {
    let mut total = 0u64;
    for (i, r) in results.iter().enumerate() {
        let v = decode_u64(r).ok_or_else(|| result_error(kernel, i, "8", r.len()))?;
        total = add(total, v).ok_or_else(|| {
            TaskError::BadInput(format!("{kernel}: the sum of the task results overflows"))
        })?;
    }
    Ok(total.to_le_bytes().to_vec())
}

fn reduce_w2(results: &[&[u8]]) -> Result<Vec<u8>, TaskError> {
    let (mut hits, mut samples) = (0u64, 0u64);
    for (i, r) in results.iter().enumerate() {
        let (h, s) =
            decode_w2(r).ok_or_else(|| result_error(W2_MONTE_CARLO_PI, i, "16", r.len()))?;
        if h > s {
            return Err(TaskError::BadInput(format!(
                "{W2_MONTE_CARLO_PI}: task result {i} claims {h} hits of {s} samples"
            )));
        }
        match (hits.checked_add(h), samples.checked_add(s)) {
            (Some(a), Some(b)) => (hits, samples) = (a, b),
            _ => {
                return Err(TaskError::BadInput(format!(
                    "{W2_MONTE_CARLO_PI}: the sample count overflows"
                )))
            }
        }
    }
    Ok(w2_input(hits, samples))
}

fn reduce_sha256(results: &[&[u8]]) -> Result<Vec<u8>, TaskError> {
    let mut out = Vec::with_capacity(results.len().saturating_mul(32));
    for (i, r) in results.iter().enumerate() {
        if r.len() != 32 {
            return Err(result_error(SHA256, i, "32", r.len()));
        }
        out.extend_from_slice(r);
    }
    Ok(out)
}

fn malformed(result: &[u8]) -> String {
    format!("malformed result ({} bytes)", result.len())
}

fn render_w2(result: &[u8]) -> String {
    match decode_w2(result) {
        None => malformed(result),
        Some((_, 0)) => "pi: no samples".to_string(),
        Some((hits, samples)) => {
            // Display only: the exact counts are printed alongside.
            let pi = 4.0 * hits as f64 / samples as f64;
            format!("pi = {pi:.9} ({hits} hits of {samples} samples)")
        }
    }
}

fn render_sha256(result: &[u8]) -> String {
    if !result.len().is_multiple_of(32) {
        return malformed(result);
    }
    result
        .chunks_exact(32)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// The executor.

/// The builtin executor: native kernels, run on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinExecutor;

impl BuiltinExecutor {
    pub fn new() -> Self {
        Self
    }
}

impl Executor for BuiltinExecutor {
    fn name(&self) -> &str {
        NAME
    }

    fn has_kernel(&self, kernel: &KernelName) -> bool {
        Kernel::from_name(kernel.as_str()).is_some()
    }

    fn run(
        &self,
        spec: &TaskSpec<'_>,
        limits: &TaskLimits,
        cancel: &CancelFlag,
    ) -> Result<TaskOutput, TaskError> {
        let kernel = Kernel::from_name(spec.kernel.as_str())
            .ok_or_else(|| TaskError::unknown_kernel(spec.kernel))?;
        let guard = Guard::new(cancel, limits);
        guard.check()?;
        let result = match kernel {
            Kernel::W1 => run_w1(spec.input, &guard),
            Kernel::W2 => run_w2(spec.input, &guard),
            Kernel::W3 => run_w3(spec.input, &guard),
            Kernel::Sha256 => run_sha256(spec.input, &guard),
            Kernel::PrimeCount => run_prime_count(spec.input, limits, &guard),
        }?;
        Ok(TaskOutput { result, fuel: None })
    }

    fn reduce(&self, kernel: &KernelName, results: &[&[u8]]) -> Result<Vec<u8>, TaskError> {
        match Kernel::from_name(kernel.as_str()).ok_or_else(|| TaskError::unknown_kernel(kernel))? {
            Kernel::W1 => reduce_u64(W1_SUM_SQUARES, results, |a, b| Some(a.wrapping_add(b))),
            Kernel::W3 => reduce_u64(W3_BYTE_SUM, results, |a, b| Some(a.wrapping_add(b))),
            Kernel::PrimeCount => reduce_u64(PRIME_COUNT, results, u64::checked_add),
            Kernel::W2 => reduce_w2(results),
            Kernel::Sha256 => reduce_sha256(results),
        }
    }

    fn render(&self, kernel: &KernelName, result: &[u8]) -> String {
        match Kernel::from_name(kernel.as_str()) {
            Some(Kernel::W1 | Kernel::W3 | Kernel::PrimeCount) => {
                decode_u64(result).map_or_else(|| malformed(result), |v| v.to_string())
            }
            Some(Kernel::W2) => render_w2(result),
            Some(Kernel::Sha256) => render_sha256(result),
            None => malformed(result),
        }
    }
}

#[cfg(test)]
mod tests;
