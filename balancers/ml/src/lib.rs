//! The ML observer balancer of RFC 1.4 (b): prices from fitted supply and
//! demand elasticities.
//!
//! An observer node samples the market (price, queued work, idle power),
//! fits two log-log curves by ordinary least squares (linfa-linear),
//!
//! ```text
//! ln D = a_d + e_d ln p      D = queued tasks x task_mflop / horizon (MFLOPS)
//! ln S = a_s + e_s ln p      S = idle processing power (MFLOPS)
//! ```
//!
//! and proposes the price where they meet, `p* = exp((a_d - a_s) / (e_s -
//! e_d))`, through the same agreement round as the FSM balancer.
//!
//! The key trade-off is caution over speed: nothing is proposed until the
//! window holds enough samples over enough distinct prices and both fits
//! reach `min_r2`; each proposal moves the price by at most
//! `max_step_milli`, stays within `[min_price, max_price]`, waits
//! `min_interval_ms` after the last one, and skips changes inside the
//! deadband. When the window cannot be fitted (prices too close together,
//! or R^2 too low), the last good fit is used until the window has turned
//! over since it was made; after that, optional exploration proposes
//! small probes, alternately up and down around an anchor price.
//!
//! Floats live only inside the model ([`model`]); the clearing price is
//! rounded to the nearest micro-unit once, and every clamp after that is
//! integer arithmetic on [`Price`]. The balancer is pure: time comes only
//! from [`MarketSample::at_ms`], and there is no clock, thread or random
//! number. The formulas, options and guards are in `docs/balancers.md`.

#![forbid(unsafe_code)]

mod config;
pub mod model;

pub use config::{MlConfig, OptionError, MAX_WINDOW, OPTION_KEYS};
pub use model::{
    distinct_prices, fit, Curve, Fit, FitError, Sample, MIN_DISTINCT_PRICES, MIN_ELASTICITY_GAP,
    MIN_FIT_SAMPLES,
};

use std::collections::VecDeque;
use std::fmt;

use lppsp_core::component::{Balancer, MarketSample, PriceProposal};
use lppsp_core::money::{Price, UNIT};
use lppsp_core::registry::Options;
use serde::Serialize;

/// The name this balancer is registered under.
pub const NAME: &str = "ml";

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

/// What the balancer concluded from its latest kept sample; shown by
/// `describe()` and [`Status::reason`].
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
    /// fewer than [`MIN_DISTINCT_PRICES`] distinct, or the highest less
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
    fn cause(&self) -> String {
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

/// The last proposal made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LastProposal {
    pub at_ms: u64,
    pub price: Price,
    /// An exploration probe rather than a clearing-price step.
    pub probe: bool,
    /// Whether a commit at this price has been seen since.
    pub committed: bool,
}

/// Exploration under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Exploration {
    /// The market price when exploration began; probes go around it.
    pub anchor: Price,
    /// Probes proposed so far; the next is up when even, down when odd.
    pub probes: u32,
}

/// The last fit that passed every guard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GoodFit {
    pub fit: Fit,
    /// The `at_ms` of the sample it was made on.
    pub at_ms: u64,
    /// Kept samples since; it is trusted while this is below `window`.
    pub samples_since: u64,
}

/// The balancer's state for `lppsp status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub balancer: &'static str,
    /// The committed price as last seen.
    pub market: Option<Price>,
    /// Samples in the window.
    pub samples: usize,
    /// Of which usable in a fit.
    pub usable_samples: usize,
    /// Distinct prices among the usable samples.
    pub distinct_prices: usize,
    /// The fit on the current window, if one came out (poor ones too).
    pub fit: Option<Fit>,
    /// The last fit that passed every guard.
    pub last_good_fit: Option<GoodFit>,
    /// What the balancer concluded, in words.
    pub reason: Reason,
    pub last_proposal: Option<LastProposal>,
    pub exploration: Option<Exploration>,
    /// Commits seen (ours or other proposers').
    pub commits: u64,
}

/// The ML observer balancer.
#[derive(Debug, Clone)]
pub struct MlBalancer {
    cfg: MlConfig,
    window: VecDeque<Sample>,
    last_kept_ms: Option<u64>,
    market: Option<Price>,
    fit: Option<Fit>,
    usable: usize,
    distinct: usize,
    reason: Reason,
    last_proposal: Option<LastProposal>,
    exploration: Option<Exploration>,
    commits: u64,
    /// Kept samples so far, to age `last_good`.
    kept: u64,
    /// The last good fit and the value of `kept` when it was made.
    last_good: Option<(Fit, u64, u64)>,
}

impl MlBalancer {
    /// A balancer with the given parameters and an empty window.
    pub fn new(cfg: MlConfig) -> Self {
        Self {
            window: VecDeque::with_capacity(cfg.window.min(1024)),
            cfg,
            last_kept_ms: None,
            market: None,
            fit: None,
            usable: 0,
            distinct: 0,
            reason: Reason::Starting,
            last_proposal: None,
            exploration: None,
            commits: 0,
            kept: 0,
            last_good: None,
        }
    }

    /// Builds one from the `[balancer] options` table; the error names the
    /// bad key.
    pub fn from_options(options: &Options) -> Result<Self, String> {
        MlConfig::from_options(options).map(Self::new)
    }

    /// The factory the registry holds under [`NAME`].
    pub fn build(options: &Options) -> Result<Box<dyn Balancer>, String> {
        Self::from_options(options).map(|b| Box::new(b) as Box<dyn Balancer>)
    }

    /// The parameters it runs with.
    pub fn config(&self) -> &MlConfig {
        &self.cfg
    }

    /// The samples in the window, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.window.iter()
    }

    /// What it concluded from its latest kept sample.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// The fit on the current window, if one came out.
    pub fn current_fit(&self) -> Option<&Fit> {
        self.fit.as_ref()
    }

    /// Everything `lppsp status` shows, serializable.
    pub fn status(&self) -> Status {
        Status {
            balancer: NAME,
            market: self.market,
            samples: self.window.len(),
            usable_samples: self.usable,
            distinct_prices: self.distinct,
            fit: self.fit,
            last_good_fit: self.last_good.map(|(fit, at_ms, kept)| GoodFit {
                fit,
                at_ms,
                samples_since: self.kept.saturating_sub(kept),
            }),
            reason: self.reason.clone(),
            last_proposal: self.last_proposal,
            exploration: self.exploration,
            commits: self.commits,
        }
    }

    /// Converts a market sample into the model's units.
    pub fn to_sample(&self, s: &MarketSample) -> Sample {
        Sample {
            at_ms: s.at_ms,
            price: s.price,
            demand_mflops: self.cfg.demand_mflops(s.demand_tasks),
            supply_mflops: s.supply_mflops as f64,
        }
    }

    /// Whether a sample at `at_ms` is due under `sample_every_ms`.
    fn due(&self, at_ms: u64) -> bool {
        self.last_kept_ms
            .is_none_or(|last| at_ms.saturating_sub(last) >= self.cfg.sample_every_ms)
    }

    /// When the next proposal may be made, if one was made already.
    fn hold(&self, at_ms: u64) -> Option<Reason> {
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
    fn decide(&mut self, at_ms: u64, market: Price) -> Option<PriceProposal> {
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

    /// Proposes the next probe of the schedule. Probe `k` goes up from the
    /// anchor when `k` is even and down when odd, by [`probe_amplitude`]
    /// (levels of `explore_step` up to a cap that keeps a swing from one
    /// side to the other within one allowed step), then is step-limited and bounded
    /// like any proposal. A probe the bounds make a no-op is skipped for
    /// the next one.
    fn explore(&mut self, at_ms: u64, market: Price, cause: String) -> Option<PriceProposal> {
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

    fn propose(
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
    fn bound(&self, p: Price) -> Price {
        p.clamp(self.cfg.min_price, self.cfg.max_price)
    }
}

impl Balancer for MlBalancer {
    fn name(&self) -> &str {
        NAME
    }

    fn status_json(&self) -> Option<String> {
        serde_json::to_string(&self.status()).ok()
    }

    fn observer_only(&self) -> bool {
        true
    }

    fn on_sample(&mut self, s: &MarketSample) -> Option<PriceProposal> {
        self.market = Some(s.price);
        if !self.due(s.at_ms) {
            return None;
        }
        self.last_kept_ms = Some(s.at_ms);
        self.kept = self.kept.saturating_add(1);
        let sample = self.to_sample(s);
        if self.window.len() >= self.cfg.window {
            self.window.pop_front();
        }
        self.window.push_back(sample);
        self.usable = self.window.iter().filter(|s| s.usable()).count();
        self.distinct = distinct_prices(self.window.make_contiguous());
        self.decide(s.at_ms, s.price)
    }

    fn on_commit(&mut self, price: Price) {
        self.market = Some(price);
        self.commits = self.commits.saturating_add(1);
        if let Some(last) = &mut self.last_proposal {
            if last.price == price {
                last.committed = true;
            }
        }
    }

    fn describe(&self) -> String {
        let market = self
            .market
            .map_or_else(|| "unknown".to_string(), |p| p.to_string());
        let fit = self.fit.map_or_else(
            || "no fit".to_string(),
            |f| {
                format!(
                    "fit e_d={:.3} (R^2 {:.2}) e_s={:.3} (R^2 {:.2}) p*={:.6}",
                    f.demand_elasticity,
                    f.demand_r2,
                    f.supply_elasticity,
                    f.supply_r2,
                    f.clearing_price
                )
            },
        );
        let mut extra = String::new();
        if let Some((good, at_ms, kept)) = self.last_good {
            if self.fit != Some(good) {
                extra.push_str(&format!(
                    "; last good fit p*={:.6} at t={}, {} samples ago",
                    good.clearing_price,
                    duration(at_ms),
                    self.kept.saturating_sub(kept)
                ));
            }
        }
        if let Some(ex) = self.exploration {
            extra.push_str(&format!(
                "; exploring around {} ({} probes)",
                ex.anchor, ex.probes
            ));
        }
        format!(
            "{NAME}: {}; market {market}; {} samples ({} usable, {} distinct price(s)); {fit}{extra}",
            self.reason,
            self.window.len(),
            self.usable,
            self.distinct
        )
    }
}

/// `p` whole units as a [`Price`], rounded to the nearest micro-unit (half
/// away from zero). NaN and negatives give 0 and values beyond the type
/// saturate; the bounds clamp both afterwards.
pub fn price_from_units(p: f64) -> Price {
    let micros = (p * UNIT as f64).round();
    if micros.is_nan() || micros <= 0.0 {
        Price::ZERO
    } else if micros >= u64::MAX as f64 {
        Price::from_micros(u64::MAX)
    } else {
        // In range and integral, so the cast is exact.
        Price::from_micros(micros as u64)
    }
}

/// Moves from `market` towards `target` by at most `max_step_milli`/1000
/// of `market`, and by at least one micro-unit so that tiny prices are not
/// stuck. Integer arithmetic: the up limit rounds down and the down limit
/// up, so the step never exceeds the maximum (beyond that one micro-unit).
pub fn limit_step(market: Price, target: Price, max_step_milli: u64) -> Price {
    let m = u128::from(market.micros());
    let step = u128::from(max_step_milli.min(1000));
    let up = (m * (1000 + step) / 1000).max(m + 1);
    let down = (m * (1000 - step)).div_ceil(1000).min(m.saturating_sub(1));
    let t = u128::from(target.micros()).clamp(down, up);
    Price::from_micros(u64::try_from(t).unwrap_or(u64::MAX))
}

/// Whether `target` is within `deadband_milli`/1000 of `market` (or equal).
pub fn in_deadband(market: Price, target: Price, deadband_milli: u64) -> bool {
    let diff = u128::from(market.micros().abs_diff(target.micros()));
    diff == 0 || diff * 1000 < u128::from(deadband_milli) * u128::from(market.micros())
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

/// `100` -> `"10%"`, `15` -> `"1.5%"`.
fn permille(v: u64) -> String {
    if v.is_multiple_of(10) {
        format!("{}%", v / 10)
    } else {
        format!("{}.{}%", v / 10, v % 10)
    }
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
    fn price_conversion_rounds_to_nearest_micro() {
        assert_eq!(price_from_units(1.5), Price::from_micros(1_500_000));
        assert_eq!(price_from_units(0.0000004), Price::ZERO);
        assert_eq!(price_from_units(0.0000005), Price::from_micros(1));
        assert_eq!(price_from_units(-3.0), Price::ZERO);
        assert_eq!(price_from_units(f64::NAN), Price::ZERO);
        assert_eq!(
            price_from_units(f64::INFINITY),
            Price::from_micros(u64::MAX)
        );
        assert_eq!(price_from_units(1e300), Price::from_micros(u64::MAX));
    }

    #[test]
    fn step_limit_is_integer_and_moves_tiny_prices() {
        let p = Price::from_micros;
        assert_eq!(limit_step(p(10_000_000), p(20_000_000), 100), p(11_000_000));
        assert_eq!(limit_step(p(10_000_000), p(1_000_000), 100), p(9_000_000));
        assert_eq!(limit_step(p(10_000_000), p(10_500_000), 100), p(10_500_000));
        // 10% of 5 micro-units rounds to nothing; one micro-unit still moves.
        assert_eq!(limit_step(p(5), p(100), 100), p(6));
        assert_eq!(limit_step(p(5), p(0), 100), p(4));
        assert_eq!(limit_step(p(0), p(100), 100), p(1));
        assert_eq!(limit_step(p(0), p(0), 100), p(0));
        assert_eq!(limit_step(p(u64::MAX), p(u64::MAX), 1000), p(u64::MAX));
    }

    #[test]
    fn deadband_and_probe_arithmetic() {
        let p = Price::from_micros;
        assert!(in_deadband(p(1_000_000), p(1_000_000), 0));
        assert!(in_deadband(p(1_000_000), p(1_009_999), 10));
        assert!(!in_deadband(p(1_000_000), p(1_010_000), 10));
        assert!(!in_deadband(p(0), p(1), 10));
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
        assert_eq!(permille(100), "10%");
        assert_eq!(permille(15), "1.5%");
        assert_eq!(duration(60_000), "60s");
    }
}
