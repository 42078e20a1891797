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
mod decision;
mod explore;
pub mod model;
mod price_steps;
mod reason;
mod status;

pub use config::{MlConfig, OptionError, MAX_WINDOW, OPTION_KEYS};
pub use explore::{max_probe_milli, probe_amplitude, probe_price, Direction, Exploration};
pub use model::{
    distinct_prices, fit, Curve, Fit, FitError, Sample, MIN_DISTINCT_PRICES, MIN_ELASTICITY_GAP,
    MIN_FIT_SAMPLES,
};
pub use price_steps::{in_deadband, limit_step, price_from_units};
pub use reason::{Reason, Side};
pub use status::{GoodFit, LastProposal, Status};

use std::collections::VecDeque;

use lppsp_core::component::{Balancer, MarketSample, PriceProposal};
use lppsp_core::money::Price;
use lppsp_core::registry::Options;

/// The name this balancer is registered under.
pub const NAME: &str = "ml";

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
        self.describe_line()
    }
}
