//! The sharing policy: when the machine's owner lets this node compute.
//!
//! Volunteer computing runs only when the owner does not need the machine:
//! no keyboard or mouse input for a while, little CPU load from other
//! programs, and inside the time-of-day windows the owner allowed. This
//! module is pure: [`Policy::evaluate`] takes the samples (local time, time
//! since the last input, other programs' CPU load) and says whether the node
//! may compute, and why not. The runtime takes the samples every tick.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[sharing]` config section. Every rule is off by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharingSection {
    /// Compute only when there was no keyboard or mouse input for this
    /// many minutes (a fraction is allowed: 0.5 is 30 s).
    pub owner_idle_minutes: Option<f64>,
    /// Compute only when the CPU load of other programs (the whole
    /// machine, all cores, less this process) is below this percent.
    pub max_other_cpu_percent: Option<f64>,
    /// Offer this percent of the machine: the task slots and the advertised
    /// power are scaled by it (at least one slot stays).
    pub cpu_share_percent: Option<u8>,
    /// Compute only inside these local-time windows, e.g. `"22:00-07:00"`,
    /// `"Sat 00:00-24:00"`, `"Mon-Fri 12:00-13:30"`. Empty: any time.
    pub windows: Vec<String>,
    /// Where input events are read from (glob patterns): the most recent
    /// access or change time of these files is the owner's last input.
    pub input_devices: Vec<String>,
}

impl Default for SharingSection {
    fn default() -> Self {
        Self {
            owner_idle_minutes: None,
            max_other_cpu_percent: None,
            cpu_share_percent: None,
            windows: Vec::new(),
            input_devices: vec!["/dev/input/event*".into()],
        }
    }
}

/// A day of the week, Monday first (ISO 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Weekday(u8);

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Weekday {
    /// `0` is Monday, `6` Sunday; other values wrap.
    pub fn from_monday0(n: u32) -> Self {
        Self((n % 7) as u8)
    }
    fn prev(self) -> Self {
        Self((self.0 + 6) % 7)
    }
    fn parse(s: &str) -> Option<Self> {
        let lower = s.to_ascii_lowercase();
        let short = lower.get(..3)?;
        let i = DAY_NAMES.iter().position(|d| *d == short)?;
        // "Mon" and "Monday" are both fine; "Monkey" is not.
        let full = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        (lower.len() == 3 || full.get(i) == Some(&lower.as_str())).then_some(Self(i as u8))
    }
}

/// A moment in local time, as far as windows care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub weekday: Weekday,
    /// Minutes since local midnight, 0..1440.
    pub minute: u16,
}

/// One time-of-day window on some days of the week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bit `d` set: the window starts on weekday `d`.
    days: u8,
    start: u16,
    end: u16,
}

/// A window that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window {text:?}: {reason} (expected e.g. \"22:00-07:00\", \"Sat 00:00-24:00\" or \"Mon-Fri 09:00-17:00\")")]
pub struct WindowError {
    pub text: String,
    pub reason: &'static str,
}

impl Window {
    /// Parses `[Day[-Day]] HH:MM-HH:MM`. A window whose end is before its
    /// start runs past midnight into the next day.
    pub fn parse(text: &str) -> Result<Self, WindowError> {
        let err = |reason| WindowError {
            text: text.to_string(),
            reason,
        };
        let mut parts = text.split_whitespace();
        let (days_part, times) = match (parts.next(), parts.next(), parts.next()) {
            (Some(t), None, None) => (None, t),
            (Some(d), Some(t), None) => (Some(d), t),
            _ => return Err(err("expected at most two parts: days and times")),
        };
        let days = match days_part {
            None => 0x7f,
            Some(d) => {
                let (first, last) = match d.split_once('-') {
                    Some((a, b)) => (a, b),
                    None => (d, d),
                };
                let first = Weekday::parse(first).ok_or_else(|| err("unknown day"))?;
                let last = Weekday::parse(last).ok_or_else(|| err("unknown day"))?;
                let mut bits = 0u8;
                let mut day = first;
                loop {
                    bits |= 1 << day.0;
                    if day == last {
                        break;
                    }
                    day = Weekday((day.0 + 1) % 7);
                }
                bits
            }
        };
        let (start, end) = times
            .split_once('-')
            .ok_or_else(|| err("times must be HH:MM-HH:MM"))?;
        let start = parse_hhmm(start).ok_or_else(|| err("bad start time"))?;
        let end = parse_hhmm(end).ok_or_else(|| err("bad end time"))?;
        if start == end {
            return Err(err("start and end are the same"));
        }
        if start == MINUTES_PER_DAY {
            return Err(err("a window cannot start at 24:00"));
        }
        Ok(Self { days, start, end })
    }

    /// Whether `t` is inside the window.
    pub fn contains(&self, t: LocalTime) -> bool {
        let on = |d: Weekday| self.days & (1 << d.0) != 0;
        if self.start < self.end {
            on(t.weekday) && (self.start..self.end).contains(&t.minute)
        } else {
            (on(t.weekday) && t.minute >= self.start)
                || (on(t.weekday.prev()) && t.minute < self.end)
        }
    }
}

const MINUTES_PER_DAY: u16 = 24 * 60;

/// `HH:MM`, 00:00 to 24:00.
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    let total = h.checked_mul(60)?.checked_add(m)?;
    (m < 60 && total <= MINUTES_PER_DAY).then_some(total)
}

/// The policy, checked and ready to evaluate.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    pub owner_idle: Option<Duration>,
    pub max_other_cpu_percent: Option<f64>,
    pub windows: Vec<Window>,
}

/// What [`Policy::evaluate`] looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    pub now: LocalTime,
    /// Time since the owner's last keyboard or mouse input; `None` when the
    /// machine has no input device (a headless box: always idle).
    pub since_input: Option<Duration>,
    /// CPU load of other programs, percent of the whole machine; `None`
    /// until two samples were taken.
    pub other_cpu_percent: Option<f64>,
}

/// Why the node may not compute now.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The owner used the keyboard or mouse recently.
    OwnerActive {
        since_input: Duration,
        needed: Duration,
    },
    /// Other programs keep the CPU busy.
    CpuBusy { percent: f64, max: f64 },
    /// Outside every allowed time window.
    OutsideWindows,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::OwnerActive {
                since_input,
                needed,
            } => write!(
                f,
                "owner active: last input {}s ago, idle needs {}s",
                since_input.as_secs(),
                needed.as_secs()
            ),
            Reason::CpuBusy { percent, max } => {
                write!(
                    f,
                    "other programs use {percent:.0}% CPU (at most {max:.0}%)"
                )
            }
            Reason::OutsideWindows => write!(f, "outside the sharing windows"),
        }
    }
}

/// Whether the node may compute.
#[derive(Debug, Clone, PartialEq)]
pub enum Availability {
    Available,
    Unavailable(Reason),
}

impl Availability {
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available)
    }
}

impl Policy {
    /// Checks the section; the error names the key.
    pub fn from_section(s: &SharingSection) -> Result<Self, (&'static str, String)> {
        let owner_idle = match s.owner_idle_minutes {
            None => None,
            Some(m) if m.is_finite() && (0.0..=1e6).contains(&m) => {
                Some(Duration::from_secs_f64(m * 60.0))
            }
            Some(_) => {
                return Err((
                    "sharing.owner_idle_minutes",
                    "must be a number of minutes from 0 to 1000000".into(),
                ))
            }
        };
        if let Some(p) = s.max_other_cpu_percent {
            if !(p.is_finite() && (0.0..=100.0).contains(&p)) {
                return Err((
                    "sharing.max_other_cpu_percent",
                    "must be from 0 to 100".into(),
                ));
            }
        }
        if let Some(p) = s.cpu_share_percent {
            if !(1..=100).contains(&p) {
                return Err(("sharing.cpu_share_percent", "must be from 1 to 100".into()));
            }
        }
        let windows = s
            .windows
            .iter()
            .map(|w| Window::parse(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("sharing.windows", e.to_string()))?;
        Ok(Self {
            owner_idle,
            max_other_cpu_percent: s.max_other_cpu_percent,
            windows,
        })
    }

    /// Whether any rule is on (otherwise the node never samples).
    pub fn is_active(&self) -> bool {
        self.owner_idle.is_some()
            || self.max_other_cpu_percent.is_some()
            || !self.windows.is_empty()
    }

    /// Applies the rules in a fixed order: windows, owner input, CPU load.
    pub fn evaluate(&self, inputs: &Inputs) -> Availability {
        if !self.windows.is_empty() && !self.windows.iter().any(|w| w.contains(inputs.now)) {
            return Availability::Unavailable(Reason::OutsideWindows);
        }
        if let (Some(needed), Some(since)) = (self.owner_idle, inputs.since_input) {
            if since < needed {
                return Availability::Unavailable(Reason::OwnerActive {
                    since_input: since,
                    needed,
                });
            }
        }
        if let (Some(max), Some(percent)) = (self.max_other_cpu_percent, inputs.other_cpu_percent) {
            if percent >= max {
                return Availability::Unavailable(Reason::CpuBusy { percent, max });
            }
        }
        Availability::Available
    }
}

/// Scales task slots and offered power by `cpu_share_percent` (at least
/// one slot and one MFLOPS stay when there was any).
pub fn apply_share(slots: u32, power: u64, percent: Option<u8>) -> (u32, u64) {
    let Some(p) = percent else {
        return (slots, power);
    };
    let p = u64::from(p.min(100));
    let scaled_slots = (u64::from(slots) * p).div_ceil(100);
    let scaled_power = (power * p / 100).max(power.min(1));
    (
        u32::try_from(scaled_slots)
            .unwrap_or(slots)
            .max(slots.min(1)),
        scaled_power,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32, hh: u16, mm: u16) -> LocalTime {
        LocalTime {
            weekday: Weekday::from_monday0(day),
            minute: hh * 60 + mm,
        }
    }

    fn inputs(now: LocalTime) -> Inputs {
        Inputs {
            now,
            since_input: None,
            other_cpu_percent: None,
        }
    }

    #[test]
    fn windows_parse_and_wrap_past_midnight() {
        let night = Window::parse("22:00-07:00").unwrap();
        assert!(night.contains(at(0, 22, 0)));
        assert!(night.contains(at(0, 23, 59)));
        assert!(night.contains(at(1, 6, 59)));
        assert!(!night.contains(at(1, 7, 0)));
        assert!(!night.contains(at(1, 12, 0)));

        let sat = Window::parse("Sat 00:00-24:00").unwrap();
        assert!(sat.contains(at(5, 0, 0)));
        assert!(sat.contains(at(5, 23, 59)));
        assert!(!sat.contains(at(6, 0, 0)));
        assert!(!sat.contains(at(4, 23, 59)));

        let lunch = Window::parse("Mon-Fri 12:00-13:30").unwrap();
        assert!(lunch.contains(at(4, 13, 29)));
        assert!(!lunch.contains(at(4, 13, 30)));
        assert!(!lunch.contains(at(5, 12, 30)));

        // Fri night into Saturday morning, and a range across the week's end.
        let fri = Window::parse("friday 23:00-01:00").unwrap();
        assert!(fri.contains(at(5, 0, 30)));
        assert!(!fri.contains(at(6, 0, 30)));
        let weekend = Window::parse("Sat-Sun 10:00-11:00").unwrap();
        assert!(weekend.contains(at(6, 10, 0)));
        assert!(!weekend.contains(at(0, 10, 0)));
    }

    #[test]
    fn bad_windows_are_refused_with_the_text() {
        for bad in [
            "",
            "22:00",
            "22-07",
            "25:00-07:00",
            "22:60-07:00",
            "Xyz 01:00-02:00",
            "Monkey 01:00-02:00",
            "10:00-10:00",
            "24:00-01:00",
            "Mon 01:00-02:00 x",
            "1:5-2:00",
        ] {
            let err = Window::parse(bad).unwrap_err();
            assert_eq!(err.text, bad);
            assert!(err.to_string().contains("expected e.g."), "{err}");
        }
    }

    #[test]
    fn off_by_default_and_always_available() {
        let p = Policy::from_section(&SharingSection::default()).unwrap();
        assert!(!p.is_active());
        let i = Inputs {
            now: at(2, 12, 0),
            since_input: Some(Duration::ZERO),
            other_cpu_percent: Some(100.0),
        };
        assert_eq!(p.evaluate(&i), Availability::Available);
    }

    #[test]
    fn each_rule_gives_its_reason() {
        let p = Policy::from_section(&SharingSection {
            owner_idle_minutes: Some(5.0),
            max_other_cpu_percent: Some(30.0),
            windows: vec!["22:00-07:00".into()],
            ..SharingSection::default()
        })
        .unwrap();
        let night = at(1, 23, 0);
        assert_eq!(
            p.evaluate(&inputs(at(1, 12, 0))),
            Availability::Unavailable(Reason::OutsideWindows)
        );
        // No input device: idle; no CPU sample yet: not busy.
        assert_eq!(p.evaluate(&inputs(night)), Availability::Available);
        let recent = Inputs {
            since_input: Some(Duration::from_secs(60)),
            ..inputs(night)
        };
        assert!(matches!(
            p.evaluate(&recent),
            Availability::Unavailable(Reason::OwnerActive { .. })
        ));
        let quiet = Inputs {
            since_input: Some(Duration::from_secs(301)),
            other_cpu_percent: Some(29.0),
            ..inputs(night)
        };
        assert_eq!(p.evaluate(&quiet), Availability::Available);
        let busy = Inputs {
            other_cpu_percent: Some(30.0),
            ..quiet
        };
        let Availability::Unavailable(reason) = p.evaluate(&busy) else {
            panic!("busy CPU must be unavailable");
        };
        assert!(reason.to_string().contains("30% CPU"), "{reason}");
    }

    #[test]
    fn sections_are_checked() {
        let bad = |s: SharingSection| Policy::from_section(&s).unwrap_err().0;
        let d = SharingSection::default;
        assert_eq!(
            bad(SharingSection {
                owner_idle_minutes: Some(-1.0),
                ..d()
            }),
            "sharing.owner_idle_minutes"
        );
        assert_eq!(
            bad(SharingSection {
                max_other_cpu_percent: Some(101.0),
                ..d()
            }),
            "sharing.max_other_cpu_percent"
        );
        assert_eq!(
            bad(SharingSection {
                cpu_share_percent: Some(0),
                ..d()
            }),
            "sharing.cpu_share_percent"
        );
        assert_eq!(
            bad(SharingSection {
                windows: vec!["nope".into()],
                ..d()
            }),
            "sharing.windows"
        );
    }

    #[test]
    fn share_scales_slots_and_power() {
        assert_eq!(apply_share(4, 1000, None), (4, 1000));
        assert_eq!(apply_share(4, 1000, Some(50)), (2, 500));
        assert_eq!(apply_share(4, 1000, Some(10)), (1, 100));
        assert_eq!(apply_share(1, 3, Some(1)), (1, 1));
        assert_eq!(apply_share(0, 0, Some(50)), (0, 0));
    }
}
