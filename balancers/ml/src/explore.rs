//! Exploration: when the window's prices are too close together to fit
//! and no fresh good fit is left, small probes alternately up and down
//! around an anchor price, so that the next fits see price variation.

use std::fmt;

use lppsp_core::component::PriceProposal;
use lppsp_core::money::Price;
use serde::Serialize;

use crate::price_steps::limit_step;
use crate::reason::{permille, Reason};
use crate::MlBalancer;

/// Which way an exploration probe goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Up => "up",
            Direction::Down => "down",
        })
    }
}

/// Exploration under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Exploration {
    /// The market price when exploration began; probes go around it.
    pub anchor: Price,
    /// Probes proposed so far; the next is up when even, down when odd.
    pub probes: u32,
}

impl MlBalancer {
    /// Proposes the next probe of the schedule. Probe `k` goes up from the
    /// anchor when `k` is even and down when odd, by [`probe_amplitude`]
    /// (levels of `explore_step` up to a cap that keeps a swing from one
    /// side to the other within one allowed step), then is step-limited and bounded
    /// like any proposal. A probe the bounds make a no-op is skipped for
    /// the next one.
    pub(crate) fn explore(
        &mut self,
        at_ms: u64,
        market: Price,
        cause: String,
    ) -> Option<PriceProposal> {
        let mut ex = self.exploration.unwrap_or(Exploration {
            anchor: market,
            probes: 0,
        });
        self.exploration = Some(ex);
        if let Some(r) = self.hold(at_ms) {
            self.reason = r;
            return None;
        }
        for _ in 0..2 {
            let probe = ex.probes;
            let direction = if probe.is_multiple_of(2) {
                Direction::Up
            } else {
                Direction::Down
            };
            let amplitude =
                probe_amplitude(probe, self.cfg.explore_step_milli, self.cfg.max_step_milli);
            let raw = probe_price(ex.anchor, direction, amplitude);
            let target = self.bound(limit_step(market, raw, self.cfg.max_step_milli));
            ex.probes = ex.probes.saturating_add(1);
            self.exploration = Some(ex);
            if target == market {
                continue;
            }
            self.reason = Reason::Probing {
                probe,
                direction,
                from: market,
                to: target,
            };
            let evidence = format!(
                "exploring ({cause}): probe {probe} {direction} {} around {}: {market} -> {target}",
                permille(amplitude),
                ex.anchor
            );
            return Some(self.propose(at_ms, target, true, evidence));
        }
        self.reason = Reason::ExplorationBlocked { cause };
        None
    }
}

/// The raw probe price: `anchor x (1000 +- step) / 1000`, rounded towards
/// the anchor, and at least one micro-unit away from it.
pub fn probe_price(anchor: Price, direction: Direction, step_milli: u64) -> Price {
    let a = u128::from(anchor.micros());
    let step = u128::from(step_milli.min(1000));
    let t = match direction {
        Direction::Up => (a * (1000 + step) / 1000).max(a + 1),
        Direction::Down => (a * (1000 - step)).div_ceil(1000).min(a.saturating_sub(1)),
    };
    Price::from_micros(u64::try_from(t).unwrap_or(u64::MAX))
}

/// The relative size (x 1000) of probe `k`. Probes come in up/down pairs;
/// pair `j` uses level `j mod n` of `n` amplitude levels, `step, 2 step,
/// ...` up to [`max_probe_milli`] (the last level is the cap). There are
/// always at least two levels (`cap / 2` and `cap` when `step` reaches the
/// cap), so that any two consecutive pairs visit four prices: repeating
/// one pair forever would leave the window with two prices, too few to
/// fit, once the anchor's samples have aged out.
pub fn probe_amplitude(probe: u32, step_milli: u64, max_step_milli: u64) -> u64 {
    let cap = max_probe_milli(max_step_milli);
    if cap == 0 {
        return 0;
    }
    let step = step_milli.clamp(1, cap);
    let (step, levels) = if step >= cap {
        ((cap / 2).max(1), 2)
    } else {
        (step, cap.div_ceil(step))
    };
    let level = u64::from(probe / 2) % levels;
    if level + 1 == levels {
        cap
    } else {
        step.saturating_mul(level + 1).min(cap)
    }
}

/// The widest probe, x 1000, for a given `max_step_milli` `m`: the
/// largest `a` with `(1 + a) / (1 - a) <= 1 + m`, that is
/// `a = m / (2 + m)`, rounded down. A swing from the down probe to the up
/// probe is then one allowed step, so that the step limit never shifts a
/// probe and the probes stay centred on their anchor.
pub fn max_probe_milli(max_step_milli: u64) -> u64 {
    let m = max_step_milli.min(1000);
    (1000 * m) / (2000 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_arithmetic() {
        let p = Price::from_micros;
        assert_eq!(probe_price(p(1_000_000), Direction::Up, 50), p(1_050_000));
        assert_eq!(probe_price(p(1_000_000), Direction::Down, 50), p(950_000));
        assert_eq!(probe_price(p(3), Direction::Up, 50), p(4));
        assert_eq!(probe_price(p(3), Direction::Down, 50), p(2));
        assert_eq!(max_probe_milli(100), 47);
        assert_eq!(max_probe_milli(1000), 333);
        assert_eq!(max_probe_milli(1), 0);
        // Levels 20, 40, 47, then again.
        let amps: Vec<u64> = (0..8).map(|k| probe_amplitude(k, 20, 100)).collect();
        assert_eq!(amps, [20, 20, 40, 40, 47, 47, 20, 20]);
        // A step at or above the cap still gives two levels.
        let amps: Vec<u64> = (0..6).map(|k| probe_amplitude(k, 47, 100)).collect();
        assert_eq!(amps, [23, 23, 47, 47, 23, 23]);
        assert_eq!(probe_amplitude(u32::MAX, u64::MAX, 100), 47);
        assert_eq!(probe_amplitude(3, 5, 1), 0);
        // The widest swing is within one step: 0.953 -> 1.047 is +9.9%.
        let (lo, hi) = (1000 - max_probe_milli(100), 1000 + max_probe_milli(100));
        assert!(hi * 1000 <= lo * 1100);
    }
}
