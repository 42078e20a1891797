//! What the balancer concluded from its latest kept sample, as a value
//! (for `lppsp status`) and in words (for `describe()` and the logs).

use std::fmt;

use lppsp_core::money::Price;
use serde::Serialize;

use crate::explore::Direction;
use crate::model::MIN_ELASTICITY_GAP;

/// Which curve a reason is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Demand,
    Supply,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Demand => "demand",
            Side::Supply => "supply",
        })
    }
}

/// What the balancer concluded from its latest kept sample; shown by
/// `describe()` and [`Status::reason`](crate::Status::reason).
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// No sample kept yet.
    Starting,
    /// Fewer usable samples than `min_samples`.
    Waiting {
        usable: usize,
        needed: usize,
        skipped: usize,
    },
    /// Too few distinct prices to fit, and exploration is off.
    NoPriceVariation { distinct: usize, needed: usize },
    /// Exploration is wanted (for the cause given) but the bounds leave no
    /// room for a probe.
    ExplorationBlocked { cause: String },
    /// A fit below `min_r2`.
    PoorFit { side: Side, r2: f64, min_r2: f64 },
    /// The fitted curves do not cross (`e_s - e_d` too small).
    NoCrossing {
        demand_elasticity: f64,
        supply_elasticity: f64,
    },
    /// Any other fit failure.
    FitFailed(String),
    /// Exploration on, and the prices in the window are too close to fit:
    /// fewer than [`MIN_DISTINCT_PRICES`](crate::MIN_DISTINCT_PRICES) distinct, or the highest less
    /// than one probe step above the lowest.
    Narrow {
        usable: usize,
        distinct: usize,
        explore_step_milli: u64,
    },
    /// Within `min_interval_ms` of the last proposal.
    Holding { last_ms: u64, next_ms: u64 },
    /// The (clamped) target is within the deadband of the market.
    InDeadband { target: Price, market: Price },
    /// A clearing-price proposal was made.
    Proposed {
        from: Price,
        to: Price,
        clearing_price: f64,
    },
    /// An exploration probe was proposed.
    Probing {
        probe: u32,
        direction: Direction,
        from: Price,
        to: Price,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Starting => f.write_str("waiting: no samples yet"),
            Reason::Waiting {
                usable,
                needed,
                skipped,
            } => {
                write!(f, "waiting: {usable}/{needed} samples")?;
                if *skipped > 0 {
                    write!(f, " ({skipped} skipped: zero price, demand or supply)")?;
                }
                Ok(())
            }
            Reason::NoPriceVariation { distinct, needed } => write!(
                f,
                "no proposal: {distinct} distinct price(s) in window, need {needed}; exploration off"
            ),
            Reason::ExplorationBlocked { cause } => write!(
                f,
                "no proposal: {cause}; bounds leave no room to explore"
            ),
            Reason::PoorFit { side, r2, min_r2 } => {
                write!(f, "no proposal: {side} fit R^2 {r2:.2} < {min_r2:.2}")
            }
            Reason::NoCrossing {
                demand_elasticity,
                supply_elasticity,
            } => write!(
                f,
                "no proposal: curves do not cross (supply elasticity {supply_elasticity:.3} - demand elasticity {demand_elasticity:.3} <= {MIN_ELASTICITY_GAP})"
            ),
            Reason::FitFailed(why) => write!(f, "no proposal: {why}"),
            Reason::Narrow {
                usable,
                distinct,
                explore_step_milli,
            } => write!(
                f,
                "{usable} usable samples over {distinct} distinct price(s), spread under {}",
                permille(*explore_step_milli)
            ),
            Reason::Holding { last_ms, next_ms } => write!(
                f,
                "holding: last proposal at t={}, next from t={}",
                duration(*last_ms),
                duration(*next_ms)
            ),
            Reason::InDeadband { target, market } => {
                write!(f, "holding: target {target} within deadband of market {market}")
            }
            Reason::Proposed {
                from,
                to,
                clearing_price,
            } => write!(f, "proposed {from} -> {to} (clearing price {clearing_price:.6})"),
            Reason::Probing {
                probe,
                direction,
                from,
                to,
            } => write!(f, "exploring: probe {probe} ({direction}) {from} -> {to}"),
        }
    }
}

impl Reason {
    /// The reason as a cause inside another message: without the leading
    /// "no proposal: ".
    pub(crate) fn cause(&self) -> String {
        let text = self.to_string();
        match text.strip_prefix("no proposal: ") {
            Some(rest) => rest.to_string(),
            None => text,
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `100` -> `"10%"`, `15` -> `"1.5%"`.
pub(crate) fn permille(v: u64) -> String {
    if v.is_multiple_of(10) {
        format!("{}%", v / 10)
    } else {
        format!("{}.{}%", v / 10, v % 10)
    }
}

/// `300000` -> `"300s"`, `1500` -> `"1500ms"`.
pub(crate) fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permille_and_duration_words() {
        assert_eq!(permille(100), "10%");
        assert_eq!(permille(15), "1.5%");
        assert_eq!(duration(60_000), "60s");
    }
}
