//! Samples what the sharing policy looks at (local time, the owner's last
//! input, other programs' CPU load) and tracks whether the node may compute.
//!
//! Linux sources: the owner's last input is the latest access or change
//! time of the input device files (`/dev/input/event*` by default; the
//! kernel updates them as events are read by the desktop); no such file
//! means a headless box, always idle. CPU load is `/proc/stat` (all cores)
//! less this process's own time from `/proc/self/stat`, over one tick.

use std::time::{Duration, Instant, SystemTime};

use lppsp_core::sharing::{Availability, Inputs, LocalTime, Policy, SharingSection, Weekday};
use tracing::{info, warn};

use crate::control::reply::SharingStatus;

/// CPU time counters, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    /// Busy time of the whole machine.
    busy: u64,
    total: u64,
    /// This process's user + system time.
    own: u64,
}

/// The node's sharing state, sampled every tick.
pub struct Sharing {
    policy: Policy,
    devices: Vec<String>,
    last_cpu: Option<CpuTimes>,
    state: Availability,
    since: Instant,
    last_inputs: Option<Inputs>,
    warned_devices: bool,
}

impl Sharing {
    /// `section` was checked when the config loaded; a policy that does
    /// not parse here is treated as off.
    pub fn new(section: &SharingSection) -> Self {
        let policy = Policy::from_section(section).unwrap_or_default();
        Self {
            policy,
            devices: section.input_devices.clone(),
            last_cpu: None,
            state: Availability::Available,
            since: Instant::now(),
            last_inputs: None,
            warned_devices: false,
        }
    }

    pub fn is_available(&self) -> bool {
        self.state.is_available()
    }

    /// Samples and evaluates; returns the new state when it changed.
    pub fn tick(&mut self) -> Option<&Availability> {
        if !self.policy.is_active() {
            return None;
        }
        let inputs = Inputs {
            now: local_now(),
            since_input: if self.policy.owner_idle.is_some() {
                self.since_last_input()
            } else {
                None
            },
            other_cpu_percent: if self.policy.max_other_cpu_percent.is_some() {
                self.other_cpu_percent()
            } else {
                None
            },
        };
        self.last_inputs = Some(inputs);
        let next = self.policy.evaluate(&inputs);
        if next == self.state {
            return None;
        }
        // A reason whose numbers moved (seconds since input) is no change.
        let same_kind = std::mem::discriminant(&next) == std::mem::discriminant(&self.state)
            && match (&next, &self.state) {
                (Availability::Unavailable(a), Availability::Unavailable(b)) => {
                    std::mem::discriminant(a) == std::mem::discriminant(b)
                }
                _ => true,
            };
        self.state = next;
        if same_kind {
            return None;
        }
        self.since = Instant::now();
        match &self.state {
            Availability::Available => info!("sharing: available again"),
            Availability::Unavailable(r) => info!(reason = %r, "sharing: unavailable"),
        }
        Some(&self.state)
    }

    /// The state for `lppsp status`.
    pub fn status(&self) -> SharingStatus {
        let (available, reason) = match &self.state {
            Availability::Available => (true, None),
            Availability::Unavailable(r) => (false, Some(r.to_string())),
        };
        let inputs = self.last_inputs.as_ref();
        SharingStatus {
            policy: self.policy.is_active(),
            available,
            reason,
            since_s: self.since.elapsed().as_secs(),
            since_input_s: inputs.and_then(|i| i.since_input).map(|d| d.as_secs_f64()),
            other_cpu_percent: inputs.and_then(|i| i.other_cpu_percent),
        }
    }

    /// Time since the newest access or change of an input device file;
    /// `None` when there is none (headless: idle).
    fn since_last_input(&mut self) -> Option<Duration> {
        let mut newest: Option<SystemTime> = None;
        for pattern in &self.devices {
            let paths = match glob::glob(pattern) {
                Ok(p) => p,
                Err(e) => {
                    if !self.warned_devices {
                        warn!(pattern, error = %e, "sharing.input_devices: bad pattern");
                        self.warned_devices = true;
                    }
                    continue;
                }
            };
            for path in paths.flatten() {
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                for t in [meta.accessed(), meta.modified()].into_iter().flatten() {
                    newest = Some(newest.map_or(t, |n| n.max(t)));
                }
            }
        }
        // A time in the future (clock set back) counts as just now.
        newest.map(|t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or(Duration::ZERO)
        })
    }

    /// Other programs' share of all CPUs since the previous sample, percent.
    fn other_cpu_percent(&mut self) -> Option<f64> {
        let now = read_cpu_times()?;
        let prev = self.last_cpu.replace(now)?;
        let total = now.total.checked_sub(prev.total)?;
        if total == 0 {
            return None;
        }
        let busy = now.busy.saturating_sub(prev.busy);
        let own = now.own.saturating_sub(prev.own);
        Some(busy.saturating_sub(own) as f64 * 100.0 / total as f64)
    }
}

/// The local weekday and minute of the day.
fn local_now() -> LocalTime {
    use chrono::{Datelike as _, Timelike as _};
    let now = chrono::Local::now();
    LocalTime {
        weekday: Weekday::from_monday0(now.weekday().num_days_from_monday()),
        minute: u16::try_from(now.hour() * 60 + now.minute()).unwrap_or(0),
    }
}

fn read_cpu_times() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let (busy, total) = parse_proc_stat(&stat)?;
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_self_stat(&s))?;
    Some(CpuTimes { busy, total, own })
}

/// The first `cpu` line of /proc/stat: (busy, total) clock ticks.
fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// utime + stime of /proc/self/stat (fields 14 and 15, after the command
/// name in parentheses, which may hold spaces).
fn parse_self_stat(text: &str) -> Option<u64> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_proc_stat(stat), Some((161, 1181)));
        let own = "1234 (my prog) S 1 2 3 4 5 6 7 8 9 10 70 30 0 0";
        assert_eq!(parse_self_stat(own), Some(100));
        assert_eq!(parse_self_stat("garbage"), None);
    }

    #[test]
    fn a_touched_input_file_makes_the_owner_active() {
        let tmp = tempfile::tempdir().unwrap();
        let device = tmp.path().join("event0");
        std::fs::write(&device, "").unwrap();
        let section = SharingSection {
            owner_idle_minutes: Some(1.0),
            input_devices: vec![tmp.path().join("event*").display().to_string()],
            ..SharingSection::default()
        };
        let mut s = Sharing::new(&section);
        assert!(matches!(s.tick(), Some(Availability::Unavailable(_))));
        assert!(!s.is_available());
        assert_eq!(s.tick(), None, "no change, no report");
        assert!(s.status().reason.unwrap().contains("owner active"));
        // No device at all: headless, idle.
        std::fs::remove_file(&device).unwrap();
        assert_eq!(s.tick(), Some(&Availability::Available));
    }
}
