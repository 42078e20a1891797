//! The mandatory finite-state-machine balancer of RFC 1.4 (a), as a pure
//! state machine.
//!
//! When task queue pressure reaches the threshold the balancer proposes the
//! market price plus 1 and remembers that pressure, `P0`. After each window
//! (5 minutes by default) it compares the pressure `P` with `P0`, as
//! `r = P / P0`:
//!
//! - `r <= 0.5`: stop raising;
//! - `0.5 < r <= 0.6`: observe one more window, then stop if `r <= 0.5`,
//!   else raise by 1;
//! - `r > 0.6` (the RFC's "drops to 80%", and no drop at all): raise by 1.
//!
//! All of it is integer arithmetic on `pressure x 1000`; time comes only
//! from [`MarketSample::at_ms`]. The full transition table, with the places
//! where the RFC is ambiguous and what we chose, is in
//! `docs/balancers-fsm.md`; the tests in `tests/transitions.rs` follow it
//! row by row.

#![forbid(unsafe_code)]

mod config;

pub use config::{FsmConfig, OptionError, OPTION_KEYS};

use lppsp_core::component::{Balancer, MarketSample, PriceProposal};
use lppsp_core::money::{Price, UNIT};
use lppsp_core::registry::Options;

/// The name this balancer is registered under.
pub const NAME: &str = "fsm";

/// `r <= 0.5` (x 1000): stop raising (RFC: "drops to 50% ... stop").
pub const STOP_AT_MILLI: u64 = 500;
/// `0.5 < r <= 0.6` (x 1000): observe one more window (RFC: "drops to
/// 60% ... continue to observe").
pub const EXTRA_WINDOW_AT_MILLI: u64 = 600;
/// `0.6 < r <= 0.8` (x 1000) is the RFC's "drops to 80% ... continue to
/// increase"; `r > 0.8` raises too. Only the evidence text tells them apart.
pub const RFC_RAISE_AT_MILLI: u64 = 800;

/// Where the balancer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Watching pressure; no episode under way.
    Idle {
        /// Whether pressure reaching the threshold starts an episode at
        /// once. False ("resting") after an episode stopped with pressure
        /// still at or above the threshold, until pressure has been below
        /// the threshold once or a window has passed since the stop.
        armed: bool,
        /// When the last episode stopped (meaningful when not armed).
        stopped_at_ms: u64,
        /// Decay only: since when pressure has stayed below
        /// `decay_below_milli`.
        calm_since_ms: Option<u64>,
    },
    /// An episode: a raise was proposed at `since_ms`, or an extra window
    /// began then; the decision comes one window later.
    Observing {
        since_ms: u64,
        /// The pressure that started the episode (the RFC's "original state").
        p0_milli: u64,
        /// True during the extra window of the `0.5 < r <= 0.6` case.
        extra: bool,
        /// The price we proposed and have not yet seen committed.
        awaiting: Option<Price>,
        /// Raises proposed in this episode (retries not counted).
        raises: u32,
    },
}

/// The finite-state-machine balancer.
#[derive(Debug, Clone)]
pub struct FsmBalancer {
    cfg: FsmConfig,
    state: State,
    /// The committed market price, as last seen in a sample or a commit.
    market: Option<Price>,
    /// The last sample's pressure, for `describe`.
    last_pressure_milli: Option<u64>,
    /// The committed price moved since the last sample (a commit told by
    /// `on_commit`, or a sample showing a new price); the next sample
    /// dates the move.
    moved: bool,
    /// When this node last saw the committed price move, by anyone's
    /// round (the sample time that dated it).
    last_move_ms: Option<u64>,
}

impl FsmBalancer {
    /// A balancer with the given parameters, idle and armed.
    pub fn new(cfg: FsmConfig) -> Self {
        Self {
            cfg,
            state: State::Idle {
                armed: true,
                stopped_at_ms: 0,
                calm_since_ms: None,
            },
            market: None,
            last_pressure_milli: None,
            moved: false,
            last_move_ms: None,
        }
    }

    /// Builds one from the `[balancer] options` table; the error names the
    /// bad key.
    pub fn from_options(options: &Options) -> Result<Self, String> {
        FsmConfig::from_options(options).map(Self::new)
    }

    /// The factory the registry holds under [`NAME`].
    pub fn build(options: &Options) -> Result<Box<dyn Balancer>, String> {
        Self::from_options(options).map(|b| Box::new(b) as Box<dyn Balancer>)
    }

    /// The parameters it runs with.
    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// Where it is in the transition table.
    pub fn state(&self) -> State {
        self.state
    }

    /// The committed price as the balancer knows it.
    pub fn market(&self) -> Option<Price> {
        self.market
    }

    /// When this node last saw the committed price move (sample time).
    pub fn last_move_ms(&self) -> Option<u64> {
        self.last_move_ms
    }

    /// Marks the awaited raise as done when the market has reached it
    /// (our commit, or another proposer's at the same or a higher price),
    /// and notes a move of the price for the next sample to date.
    fn note_market(&mut self, price: Price) {
        if self.market.is_some_and(|known| known != price) {
            self.moved = true;
        }
        self.market = Some(price);
        if let State::Observing { awaiting, .. } = &mut self.state {
            if awaiting.is_some_and(|target| price >= target) {
                *awaiting = None;
            }
        }
    }

    /// The pool's price moved (our round or any other node's): every node
    /// runs this balancer, and one move is the whole pool's step for the
    /// window (docs/balancers-fsm.md, "Many nodes, one step per window").
    /// An observing node's window restarts at the move; an idle node under
    /// pressure joins the episode with its own pressure as P0; an idle
    /// node below the threshold holds any new episode for a window after
    /// the move (rows 22-24).
    fn pool_moved(&mut self, s: &MarketSample) {
        let at = s.at_ms;
        self.last_move_ms = Some(at);
        self.state = match self.state {
            State::Observing {
                p0_milli,
                awaiting,
                raises,
                ..
            } => State::Observing {
                since_ms: at,
                p0_milli,
                extra: false,
                awaiting,
                raises,
            },
            State::Idle { .. } if s.pressure_milli >= self.cfg.threshold_milli => {
                State::Observing {
                    since_ms: at,
                    p0_milli: s.pressure_milli,
                    extra: false,
                    awaiting: None,
                    raises: 0,
                }
            }
            State::Idle {
                armed,
                stopped_at_ms,
                calm_since_ms,
            } => State::Idle {
                armed,
                stopped_at_ms,
                calm_since_ms: calm_since_ms.map(|_| at),
            },
        };
    }

    fn idle(
        &mut self,
        s: &MarketSample,
        stopped_at_ms: u64,
        armed: bool,
        calm: Option<u64>,
    ) -> Option<PriceProposal> {
        let cfg = &self.cfg;
        let p = s.pressure_milli;
        if p >= cfg.threshold_milli {
            let rested = s.at_ms.saturating_sub(stopped_at_ms) >= cfg.window_ms;
            // The pool moved the price less than a window ago: that was
            // this window's step (row 24).
            let held = self
                .last_move_ms
                .is_some_and(|m| s.at_ms.saturating_sub(m) < cfg.window_ms);
            if held {
                self.state = State::Idle {
                    armed,
                    stopped_at_ms,
                    calm_since_ms: None,
                };
                return None;
            }
            if armed || rested {
                let why = format!(
                    "pressure {} >= threshold {}",
                    milli(p),
                    milli(cfg.threshold_milli)
                );
                return self.raise(s, p, 0, why);
            }
            self.state = State::Idle {
                armed: false,
                stopped_at_ms,
                calm_since_ms: None,
            };
            return None;
        }
        // Below the threshold: the next rise starts a new episode.
        let mut next = State::Idle {
            armed: true,
            stopped_at_ms,
            calm_since_ms: None,
        };
        let mut out = None;
        if cfg.decay && p < cfg.decay_below_milli {
            let since = calm.unwrap_or(s.at_ms);
            let mut calm_since = since;
            if s.at_ms.saturating_sub(since) >= cfg.window_ms {
                // One step per calm window, whether or not it is proposed.
                calm_since = s.at_ms;
                let lowered = s
                    .price
                    .saturating_sub(Price::from_micros(UNIT))
                    .max(cfg.floor);
                if lowered < s.price {
                    out = Some(PriceProposal {
                        price: lowered,
                        evidence: format!(
                            "pressure {} < decay_below {} for window {}; decay {} -> {}; floor {}",
                            milli(p),
                            milli(cfg.decay_below_milli),
                            duration(cfg.window_ms),
                            s.price,
                            lowered,
                            cfg.floor
                        ),
                    });
                }
            }
            next = State::Idle {
                armed: true,
                stopped_at_ms,
                calm_since_ms: Some(calm_since),
            };
        }
        self.state = next;
        out
    }

    fn observing(
        &mut self,
        s: &MarketSample,
        since_ms: u64,
        p0: u64,
        extra: bool,
        awaiting: Option<Price>,
        raises: u32,
    ) -> Option<PriceProposal> {
        let cfg = &self.cfg;
        if s.at_ms.saturating_sub(since_ms) < cfg.window_ms {
            return None;
        }
        let p = s.pressure_milli;
        let window = duration(cfg.window_ms);
        if let (false, Some(target)) = (extra, awaiting) {
            // The raise was not committed within the window: the pressure
            // says nothing about a price that never took effect.
            if p < cfg.threshold_milli {
                self.stop(s);
                return None;
            }
            let why = format!(
                "raise to {target} not committed within window {window}; pressure {} >= threshold {}; P0 {}",
                milli(p),
                milli(cfg.threshold_milli),
                milli(p0)
            );
            return self.retry(s, p0, raises, why);
        }
        let r = ratio(p, p0);
        let which = if extra { "extra window" } else { "window" };
        let seen = format!(
            "pressure {} after {which} {window}; P0 {}; r={}",
            milli(p),
            milli(p0),
            milli(r)
        );
        if at_most(p, p0, STOP_AT_MILLI) {
            self.stop(s);
            return None;
        }
        if extra {
            return self.raise(s, p0, raises, format!("{seen} > 0.5"));
        }
        if at_most(p, p0, EXTRA_WINDOW_AT_MILLI) {
            self.state = State::Observing {
                since_ms: s.at_ms,
                p0_milli: p0,
                extra: true,
                awaiting: None,
                raises,
            };
            return None;
        }
        let why = if at_most(p, p0, RFC_RAISE_AT_MILLI) {
            format!("{seen} in (0.6, 0.8]")
        } else {
            format!("{seen} > 0.8")
        };
        self.raise(s, p0, raises, why)
    }

    /// Ends the episode. Armed again at once if pressure is already below
    /// the threshold; otherwise resting (see [`State::Idle`]).
    fn stop(&mut self, s: &MarketSample) {
        self.state = State::Idle {
            armed: s.pressure_milli < self.cfg.threshold_milli,
            stopped_at_ms: s.at_ms,
            calm_since_ms: None,
        };
    }

    /// Proposes market + 1 and starts a window; a new raise of the episode.
    fn raise(
        &mut self,
        s: &MarketSample,
        p0: u64,
        raises: u32,
        why: String,
    ) -> Option<PriceProposal> {
        self.propose(s, p0, raises.saturating_add(1), why, "raise")
    }

    /// Proposes market + 1 again after a round that did not commit.
    fn retry(
        &mut self,
        s: &MarketSample,
        p0: u64,
        raises: u32,
        why: String,
    ) -> Option<PriceProposal> {
        self.propose(s, p0, raises, why, "propose again")
    }

    fn propose(
        &mut self,
        s: &MarketSample,
        p0: u64,
        raises: u32,
        why: String,
        verb: &str,
    ) -> Option<PriceProposal> {
        let Some(target) = s.price.plus_one() else {
            // The price cannot go higher: nothing to propose.
            self.stop(s);
            return None;
        };
        self.state = State::Observing {
            since_ms: s.at_ms,
            p0_milli: p0,
            extra: false,
            awaiting: Some(target),
            raises,
        };
        Some(PriceProposal {
            price: target,
            evidence: format!(
                "{why}; {verb} {} -> {target}; window {}",
                s.price,
                duration(self.cfg.window_ms)
            ),
        })
    }
}

impl Balancer for FsmBalancer {
    fn name(&self) -> &str {
        NAME
    }

    fn on_sample(&mut self, s: &MarketSample) -> Option<PriceProposal> {
        self.note_market(s.price);
        self.last_pressure_milli = Some(s.pressure_milli);
        if std::mem::take(&mut self.moved) {
            self.pool_moved(s);
        }
        match self.state {
            State::Idle {
                armed,
                stopped_at_ms,
                calm_since_ms,
            } => self.idle(s, stopped_at_ms, armed, calm_since_ms),
            State::Observing {
                since_ms,
                p0_milli,
                extra,
                awaiting,
                raises,
            } => self.observing(s, since_ms, p0_milli, extra, awaiting, raises),
        }
    }

    fn on_commit(&mut self, price: Price) {
        // A commit is a move, also the first this balancer hears of.
        if self.market.is_none() {
            self.moved = true;
        }
        self.note_market(price);
    }

    fn describe(&self) -> String {
        let cfg = &self.cfg;
        let state = match self.state {
            State::Idle {
                armed: true,
                calm_since_ms,
                ..
            } => {
                let mut s = format!("idle, raising at pressure >= {}", milli(cfg.threshold_milli));
                if let Some(moved) = self.last_move_ms {
                    s.push_str(&format!(
                        " from t={} (the pool's last move, t={}, was this window's step)",
                        duration(moved.saturating_add(cfg.window_ms)),
                        duration(moved)
                    ));
                }
                if let Some(since) = calm_since_ms {
                    s.push_str(&format!(
                        ", below {} since t={}",
                        milli(cfg.decay_below_milli),
                        duration(since)
                    ));
                }
                s
            }
            State::Idle {
                armed: false,
                stopped_at_ms,
                ..
            } => format!(
                "resting since t={} after a stop; next episode at pressure >= {} once it has dipped below, or from t={}",
                duration(stopped_at_ms),
                milli(cfg.threshold_milli),
                duration(stopped_at_ms.saturating_add(cfg.window_ms))
            ),
            State::Observing {
                since_ms,
                p0_milli,
                extra,
                awaiting,
                raises,
            } => {
                let mut s = format!(
                    "observing{} since t={} until t={}, P0 {}, {raises} raise(s)",
                    if extra { " (extra window)" } else { "" },
                    duration(since_ms),
                    duration(since_ms.saturating_add(cfg.window_ms)),
                    milli(p0_milli)
                );
                if let Some(target) = awaiting {
                    s.push_str(&format!(", raise to {target} awaiting commit"));
                }
                s
            }
        };
        let market = self
            .market
            .map_or_else(|| "unknown".to_string(), |p| p.to_string());
        let pressure = self
            .last_pressure_milli
            .map_or_else(|| "unknown".to_string(), milli);
        format!(
            "{NAME}: {state}; market {market}; pressure {pressure}; decay {}",
            if cfg.decay { "on" } else { "off" }
        )
    }
}

/// Whether `p / p0 <= bound_milli / 1000`, exactly.
fn at_most(p: u64, p0: u64, bound_milli: u64) -> bool {
    u128::from(p) * 1000 <= u128::from(bound_milli) * u128::from(p0)
}

/// `1000 x p / p0`, rounded down, for evidence only.
fn ratio(p: u64, p0: u64) -> u64 {
    (u128::from(p) * 1000)
        .checked_div(u128::from(p0))
        .map_or(u64::MAX, |r| u64::try_from(r).unwrap_or(u64::MAX))
}

/// `2400` -> `"2.4"`, `2000` -> `"2.0"`, `833` -> `"0.833"`.
fn milli(v: u64) -> String {
    let frac = format!("{:03}", v % 1000);
    let frac = frac.trim_end_matches('0');
    format!("{}.{}", v / 1000, if frac.is_empty() { "0" } else { frac })
}

/// `300000` -> `"300s"`, `1500` -> `"1500ms"`.
fn duration(ms: u64) -> String {
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
    fn formats_fixed_point_without_floats() {
        assert_eq!(milli(2400), "2.4");
        assert_eq!(milli(2000), "2.0");
        assert_eq!(milli(833), "0.833");
        assert_eq!(milli(0), "0.0");
        assert_eq!(milli(12_050), "12.05");
        assert_eq!(duration(300_000), "300s");
        assert_eq!(duration(1500), "1500ms");
    }

    #[test]
    fn ratio_bounds_are_exact() {
        assert!(at_most(1000, 2000, 500));
        assert!(!at_most(1001, 2000, 500));
        assert!(at_most(1200, 2000, 600));
        assert!(!at_most(1201, 2000, 600));
        assert!(at_most(u64::MAX / 2, u64::MAX, 500));
        assert_eq!(ratio(1666, 2000), 833);
        assert_eq!(ratio(1, 0), u64::MAX);
    }
}
