//! The fields of a run's JSON line that do not come from the job: rounding,
//! versions and time stamps, the decoded result, sums over nodes, and the
//! one-line summary for people.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

pub(super) fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

pub(super) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn os_version() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut v = std::env::consts::OS.to_string();
    if !release.is_empty() {
        v.push(' ');
        v.push_str(&release);
    }
    v.push(' ');
    v.push_str(std::env::consts::ARCH);
    v
}

pub(super) fn versions() -> Value {
    json!({
        "lppsp": env!("CARGO_PKG_VERSION"),
        "rustc": option_env!("LPPSP_RUSTC_VERSION").unwrap_or("unknown"),
        "os": os_version(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    })
}

pub(super) fn commit() -> &'static str {
    option_env!("LPPSP_GIT_COMMIT").unwrap_or("unknown")
}

pub(super) fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Decodes the `result_hex` of a `done` event.
pub(super) fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub(super) fn sum_f64(m: &Map<String, Value>) -> f64 {
    m.values().filter_map(Value::as_f64).sum()
}

pub(super) fn sum_mib(m: &Map<String, Value>) -> f64 {
    round1(sum_f64(m))
}

pub(super) fn summary_line(v: &Value) -> String {
    let mut s = format!(
        "{} run {}: {} {} (job {} s, start-up {} s)",
        v["workload"].as_str().unwrap_or("?"),
        v["run"],
        v["figure"],
        v["unit"].as_str().unwrap_or(""),
        v["job_s"],
        v["startup_s"],
    );
    if let Some(e) = v["efficiency"].as_f64() {
        s.push_str(&format!(", efficiency {e}"));
    }
    s.push_str(if v["correct"].as_bool() == Some(true) {
        ", result correct"
    } else {
        ", RESULT WRONG"
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decoding() {
        assert_eq!(from_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
