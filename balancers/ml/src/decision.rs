//! The decision for one kept sample: enough samples, enough price
//! variation, a fit that passes `min_r2` and crosses (or the last good
//! one while it is fresh), then a step towards the clearing price that
//! is paced, step-limited, bounded and outside the deadband; exploration
//! when nothing can be fitted.

use lppsp_core::component::PriceProposal;
use lppsp_core::money::Price;

use crate::model::{fit, Curve, Fit, FitError, MIN_DISTINCT_PRICES};
use crate::price_steps::{in_deadband, limit_step, price_from_units};
use crate::reason::{duration, permille, Reason, Side};
use crate::status::LastProposal;
use crate::{MlBalancer, NAME};

impl MlBalancer {
    /// When the next proposal may be made, if one was made already.
    pub(crate) fn hold(&self, at_ms: u64) -> Option<Reason> {
        let last = self.last_proposal?;
        let next = last.at_ms.saturating_add(self.cfg.min_interval_ms);
        (at_ms < next).then_some(Reason::Holding {
            last_ms: last.at_ms,
            next_ms: next,
        })
    }

    /// Whether the usable prices are too close together to fit: fewer
    /// than [`MIN_DISTINCT_PRICES`] distinct, or, with exploration on, the
    /// highest less than one probe step above the lowest.
    fn too_narrow(&self) -> bool {
        if self.distinct < MIN_DISTINCT_PRICES {
            return true;
        }
        if !self.cfg.explore {
            return false;
        }
        let mut usable = self.window.iter().filter(|s| s.usable()).map(|s| s.price);
        let Some(first) = usable.next() else {
            return true;
        };
        let (lo, hi) = usable.fold((first, first), |(lo, hi), p| (lo.min(p), hi.max(p)));
        u128::from(hi.micros()) * 1000
            < u128::from(lo.micros()).saturating_mul(1000 + u128::from(self.cfg.explore_step_milli))
    }

    /// The whole decision for one kept sample; sets `self.reason`.
    ///
    /// In order: enough samples; enough price variation; a fit on the
    /// window that passes `min_r2` and crosses. When the window cannot be
    /// fitted (too narrow or too noisy), the last good fit is used instead
    /// while it is fresh; after that, exploration probes if it is on.
    pub(crate) fn decide(&mut self, at_ms: u64, market: Price) -> Option<PriceProposal> {
        let cfg = &self.cfg;
        if self.usable < cfg.min_samples {
            self.fit = None;
            self.reason = Reason::Waiting {
                usable: self.usable,
                needed: cfg.min_samples,
                skipped: self.window.len().saturating_sub(self.usable),
            };
            return None;
        }
        let failure = if self.too_narrow() {
            self.fit = None;
            if cfg.explore {
                Reason::Narrow {
                    usable: self.usable,
                    distinct: self.distinct,
                    explore_step_milli: cfg.explore_step_milli,
                }
            } else {
                Reason::NoPriceVariation {
                    distinct: self.distinct,
                    needed: MIN_DISTINCT_PRICES,
                }
            }
        } else {
            match self.fit_window() {
                Ok(f) => {
                    // A good fit: exploration, if any, has done its job.
                    self.exploration = None;
                    self.last_good = Some((f, at_ms, self.kept));
                    return self.act(at_ms, market, f, None);
                }
                Err(r @ Reason::PoorFit { .. }) => r,
                Err(r) => {
                    // Curves that do not cross are not helped by more
                    // price variation, and make older fits suspect.
                    self.exploration = None;
                    self.last_good = None;
                    self.reason = r;
                    return None;
                }
            }
        };
        if let Some((good, good_ms)) = self.fresh_good_fit() {
            self.exploration = None;
            let note = format!(
                "last good fit, at t={} (now: {})",
                duration(good_ms),
                failure.cause()
            );
            return self.act(at_ms, market, good, Some(note));
        }
        if self.cfg.explore {
            return self.explore(at_ms, market, failure.cause());
        }
        self.exploration = None;
        self.reason = failure;
        None
    }

    /// Fits the window; `Err` carries the reason it cannot be used. The
    /// fit is kept for status even when poor.
    fn fit_window(&mut self) -> Result<Fit, Reason> {
        let min_r2 = self.cfg.min_r2;
        let poor = |demand: &Curve, supply: &Curve| {
            if demand.r2 < min_r2 {
                Some(Reason::PoorFit {
                    side: Side::Demand,
                    r2: demand.r2,
                    min_r2,
                })
            } else if supply.r2 < min_r2 {
                Some(Reason::PoorFit {
                    side: Side::Supply,
                    r2: supply.r2,
                    min_r2,
                })
            } else {
                None
            }
        };
        match fit(self.window.make_contiguous()) {
            Ok(f) => {
                self.fit = Some(f);
                match poor(&f.demand(), &f.supply()) {
                    Some(r) => Err(r),
                    None => Ok(f),
                }
            }
            Err(e) => {
                self.fit = None;
                tracing::debug!(balancer = NAME, error = %e, "no fit");
                // A poor fit is the more useful thing to report: it says
                // why the other numbers cannot be trusted.
                Err(match &e {
                    FitError::NoCrossing { demand, supply, .. } => {
                        poor(demand, supply).unwrap_or(Reason::NoCrossing {
                            demand_elasticity: demand.elasticity,
                            supply_elasticity: supply.elasticity,
                        })
                    }
                    FitError::ClearingOutOfRange { demand, supply, .. } => {
                        poor(demand, supply).unwrap_or_else(|| Reason::FitFailed(e.to_string()))
                    }
                    _ => Reason::FitFailed(e.to_string()),
                })
            }
        }
    }

    /// The last good fit and its time, while the window has not turned
    /// over since it was made (fewer than `window` kept samples).
    fn fresh_good_fit(&self) -> Option<(Fit, u64)> {
        let (good, at_ms, kept) = self.last_good?;
        let window = u64::try_from(self.cfg.window).unwrap_or(u64::MAX);
        (self.kept.saturating_sub(kept) < window).then_some((good, at_ms))
    }

    /// Steps towards the clearing price of `f`: pacing, step limit,
    /// bounds, deadband, in that order.
    fn act(
        &mut self,
        at_ms: u64,
        market: Price,
        f: Fit,
        note: Option<String>,
    ) -> Option<PriceProposal> {
        if let Some(r) = self.hold(at_ms) {
            self.reason = r;
            return None;
        }
        let clearing = price_from_units(f.clearing_price);
        let stepped = limit_step(market, clearing, self.cfg.max_step_milli);
        let target = self.bound(stepped);
        if in_deadband(market, target, self.cfg.deadband_milli) {
            self.reason = Reason::InDeadband { target, market };
            return None;
        }
        let mut limits = Vec::new();
        if stepped != clearing {
            limits.push(format!(
                "step limited to {}",
                permille(self.cfg.max_step_milli)
            ));
        }
        if target != stepped {
            limits.push(format!(
                "bounded to [{}, {}]",
                self.cfg.min_price, self.cfg.max_price
            ));
        }
        let evidence = format!(
            "clearing price {:.6} from {} samples{} (demand e={:.3} R^2 {:.3}, supply e={:.3} R^2 {:.3}); {market} -> {target}{}",
            f.clearing_price,
            f.samples,
            note.map_or_else(String::new, |n| format!(", {n}")),
            f.demand_elasticity,
            f.demand_r2,
            f.supply_elasticity,
            f.supply_r2,
            if limits.is_empty() {
                String::new()
            } else {
                format!(" ({})", limits.join(", "))
            }
        );
        self.reason = Reason::Proposed {
            from: market,
            to: target,
            clearing_price: f.clearing_price,
        };
        Some(self.propose(at_ms, target, false, evidence))
    }

    pub(crate) fn propose(
        &mut self,
        at_ms: u64,
        price: Price,
        probe: bool,
        evidence: String,
    ) -> PriceProposal {
        tracing::debug!(balancer = NAME, %price, probe, %evidence, "proposal");
        self.last_proposal = Some(LastProposal {
            at_ms,
            price,
            probe,
            committed: false,
        });
        PriceProposal { price, evidence }
    }

    /// Clamps into `[min_price, max_price]`.
    pub(crate) fn bound(&self, p: Price) -> Price {
        p.clamp(self.cfg.min_price, self.cfg.max_price)
    }
}
