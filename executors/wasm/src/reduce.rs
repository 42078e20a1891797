//! Reducers: how a WASM job's task results become the job result.
//!
//! A module names its reducer in a custom section (see [`REDUCE_SECTION`]);
//! the host-side ones mirror the builtin executor's reduces byte for byte.

use std::fmt;
use std::str::FromStr;

use lppsp_core::component::TaskError;

/// Name of the custom section that names a module's reducer. Its content is
/// the reducer's name in ASCII (`sum-u64`, `w2`, `concat` or `guest`).
pub const REDUCE_SECTION: &str = "lppsp.reduce";

/// The export a `guest` reducer runs (a second command, see [`Reducer::Guest`]).
pub const GUEST_REDUCE_EXPORT: &str = "lppsp_reduce";

/// How task results (in task order) are integrated into the job result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reducer {
    /// Results concatenated in task order (the default, when a module names
    /// no reducer).
    Concat,
    /// Each result is a u64 LE; the job result is their wrapping sum, u64 LE
    /// (the builtin W1 and W3 reduce). Rendered as a decimal number.
    SumU64,
    /// Each result is `hits` u64 LE then `samples` u64 LE with
    /// `hits <= samples`; the job result is both sums, 16 bytes, failing on
    /// overflow (the builtin W2 reduce). Rendered as an estimate of pi.
    W2,
    /// The module's own [`GUEST_REDUCE_EXPORT`] export runs as a second
    /// command: stdin holds every result prefixed by its length (u32 LE),
    /// in task order; its stdout is the job result.
    Guest,
}

impl Reducer {
    /// Every reducer, for messages and docs.
    pub const ALL: [Reducer; 4] = [Self::Concat, Self::SumU64, Self::W2, Self::Guest];

    /// The name a module writes in its [`REDUCE_SECTION`].
    pub fn name(self) -> &'static str {
        match self {
            Self::Concat => "concat",
            Self::SumU64 => "sum-u64",
            Self::W2 => "w2",
            Self::Guest => "guest",
        }
    }
}

impl fmt::Display for Reducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Reducer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|r| r.name()).collect();
                format!("unknown reducer {s:?} (known: {})", names.join(", "))
            })
    }
}

fn result_error(kernel: &str, index: usize, want: &str, got: usize) -> TaskError {
    TaskError::BadInput(format!(
        "{kernel}: task result {index} is {got} bytes, expected {want}"
    ))
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_le_bytes)
}

fn read_pair(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() != 16 {
        return None;
    }
    let (a, b) = bytes.split_at(8);
    Some((read_u64(a)?, read_u64(b)?))
}

/// Concatenation in task order.
pub(crate) fn concat(results: &[&[u8]]) -> Vec<u8> {
    results.concat()
}

/// Wrapping u64 sum, as the builtin W1/W3 reduce.
pub(crate) fn sum_u64(kernel: &str, results: &[&[u8]]) -> Result<Vec<u8>, TaskError> {
    let mut total = 0u64;
    for (i, r) in results.iter().enumerate() {
        let v = read_u64(r).ok_or_else(|| result_error(kernel, i, "8", r.len()))?;
        total = total.wrapping_add(v);
    }
    Ok(total.to_le_bytes().to_vec())
}

/// Checked (hits, samples) sums, as the builtin W2 reduce.
pub(crate) fn w2(kernel: &str, results: &[&[u8]]) -> Result<Vec<u8>, TaskError> {
    let (mut hits, mut samples) = (0u64, 0u64);
    for (i, r) in results.iter().enumerate() {
        let (h, s) = read_pair(r).ok_or_else(|| result_error(kernel, i, "16", r.len()))?;
        if h > s {
            return Err(TaskError::BadInput(format!(
                "{kernel}: task result {i} claims {h} hits of {s} samples"
            )));
        }
        match (hits.checked_add(h), samples.checked_add(s)) {
            (Some(a), Some(b)) => (hits, samples) = (a, b),
            _ => {
                return Err(TaskError::BadInput(format!(
                    "{kernel}: the sample count overflows"
                )))
            }
        }
    }
    let mut out = hits.to_le_bytes().to_vec();
    out.extend_from_slice(&samples.to_le_bytes());
    Ok(out)
}

/// The stdin of a guest reducer: each result prefixed by its u32 LE length.
pub(crate) fn guest_input(kernel: &str, results: &[&[u8]]) -> Result<Vec<u8>, TaskError> {
    let total = results
        .iter()
        .fold(0usize, |n, r| n.saturating_add(r.len()).saturating_add(4));
    let mut out = Vec::with_capacity(total);
    for (i, r) in results.iter().enumerate() {
        let len = u32::try_from(r.len()).map_err(|_| {
            TaskError::BadInput(format!(
                "{kernel}: task result {i} is {} bytes, more than a u32 length can frame",
                r.len()
            ))
        })?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(r);
    }
    Ok(out)
}

/// Renders a job result for people, by reducer; `None` leaves it to the
/// trait's default (UTF-8 text, or a byte count).
pub(crate) fn render(reducer: Reducer, result: &[u8]) -> Option<String> {
    let malformed = || format!("malformed result ({} bytes)", result.len());
    match reducer {
        Reducer::SumU64 => Some(read_u64(result).map_or_else(malformed, |v| v.to_string())),
        Reducer::W2 => Some(match read_pair(result) {
            None => malformed(),
            Some((_, 0)) => "pi: no samples".to_string(),
            Some((hits, samples)) => {
                // Display only: the exact counts are printed alongside.
                let pi = 4.0 * hits as f64 / samples as f64;
                format!("pi = {pi:.9} ({hits} hits of {samples} samples)")
            }
        }),
        Reducer::Concat | Reducer::Guest => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Reducer::ALL {
            assert_eq!(r.name().parse::<Reducer>(), Ok(r));
        }
        assert!("sum".parse::<Reducer>().unwrap_err().contains("sum-u64"));
    }

    #[test]
    fn sums_wrap_and_check_lengths() {
        let a = u64::MAX.to_le_bytes();
        let b = 2u64.to_le_bytes();
        assert_eq!(sum_u64("k", &[&a, &b]).unwrap(), 1u64.to_le_bytes());
        assert!(
            matches!(sum_u64("k", &[&a, &[1, 2]]), Err(TaskError::BadInput(m)) if m.contains("task result 1"))
        );
    }

    #[test]
    fn w2_checks_hits_and_overflow() {
        let pair = |h: u64, s: u64| [h.to_le_bytes(), s.to_le_bytes()].concat();
        let out = w2("k", &[&pair(3, 4), &pair(1, 4)]).unwrap();
        assert_eq!(out, pair(4, 8));
        assert!(w2("k", &[&pair(5, 4)]).is_err());
        assert!(w2("k", &[&pair(0, u64::MAX), &pair(0, 1)]).is_err());
    }

    #[test]
    fn guest_input_frames_results() {
        let out = guest_input("k", &[b"ab", b"", b"c"]).unwrap();
        assert_eq!(out, [2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0, 1, 0, 0, 0, b'c']);
    }
}
