//! The ML balancer's options, read from the `[balancer] options` table.

use lppsp_core::money::Price;
pub use lppsp_core::registry::OptionError;
use lppsp_core::registry::{parse_options, Options};
use serde::{Deserialize, Serialize};

use crate::model::MIN_FIT_SAMPLES;

/// The largest `window` accepted: the window is kept in memory and refitted
/// on every kept sample, so it must stay small.
pub const MAX_WINDOW: usize = 100_000;

/// Parameters of the ML balancer.
///
/// Built from the component options map with [`MlConfig::from_options`];
/// every field has a default, so an empty map gives a working observer
/// (exploration off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlConfig {
    /// Keep at most one sample per this many milliseconds; samples in
    /// between only update the market price. Default 5 000. 0 keeps every
    /// sample.
    pub sample_every_ms: u64,
    /// The most samples kept; the oldest is dropped first. Default 240
    /// (20 minutes at the default interval).
    pub window: usize,
    /// Usable samples (price, demand and supply all above zero) needed
    /// before the balancer fits at all. Default 12; at least 3.
    pub min_samples: usize,
    /// Both fits need at least this R^2 for a proposal. Default 0.8; in
    /// `[0, 1]`.
    pub min_r2: f64,
    /// The largest relative price change of one proposal, x 1000. Default
    /// 100 (10%); in `1..=1000`.
    pub max_step_milli: u64,
    /// The lowest price ever proposed. Default `"0.001"`; above 0.
    pub min_price: Price,
    /// The highest price ever proposed. Default `"1000000"`; at least
    /// `min_price`.
    pub max_price: Price,
    /// The least time between two proposals (probes included), in
    /// milliseconds, so that the market shows its answer to one price
    /// before the next. Default 60 000.
    pub min_interval_ms: u64,
    /// Changes smaller than this, relative to the market price and x 1000,
    /// are not proposed. Default 10 (1%); below `max_step_milli`.
    pub deadband_milli: u64,
    /// Probe the market with small price moves when the window's prices
    /// are too close together to fit. Default off: moving the price only
    /// to learn is a community decision.
    pub explore: bool,
    /// The size of the first exploration probes relative to their anchor
    /// price, x 1000; later pairs widen by this much each up to
    /// `max_step / (2 + max_step)` (47 for the default 10% step), then the
    /// cycle starts again. Default 25 (2.5%); with `explore` on, in `1..=`
    /// that cap.
    pub explore_step_milli: u64,
    /// Work in one task, in MFLOP (MFLOPS x seconds): turns queued tasks
    /// into processing power. Default 10 000 (10 s on a 1 GFLOPS node).
    pub task_mflop: u64,
    /// How soon the queue should drain, in milliseconds: demand is the
    /// power that would run the queue down in this time. Default 60 000.
    pub horizon_ms: u64,
}

impl Default for MlConfig {
    fn default() -> Self {
        Self {
            sample_every_ms: 5_000,
            window: 240,
            min_samples: 12,
            min_r2: 0.8,
            max_step_milli: 100,
            min_price: Price::from_micros(1_000),
            max_price: Price::from_micros(1_000_000 * 1_000_000),
            min_interval_ms: 60_000,
            deadband_milli: 10,
            explore: false,
            explore_step_milli: 25,
            task_mflop: 10_000,
            horizon_ms: 60_000,
        }
    }
}

/// The option names [`MlConfig`] accepts, for error messages.
pub const OPTION_KEYS: [&str; 13] = [
    "sample_every_ms",
    "window",
    "min_samples",
    "min_r2",
    "max_step_milli",
    "min_price",
    "max_price",
    "min_interval_ms",
    "deadband_milli",
    "explore",
    "explore_step_milli",
    "task_mflop",
    "horizon_ms",
];

impl MlConfig {
    /// Reads and checks the options; the error names the bad key.
    pub fn from_options(options: &Options) -> Result<Self, String> {
        Self::parse_options(options).map_err(|e| e.to_string())
    }

    /// As [`MlConfig::from_options`], with a structured error.
    pub fn parse_options(options: &Options) -> Result<Self, OptionError> {
        let cfg: MlConfig = parse_options(options, &OPTION_KEYS)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), OptionError> {
        if self.window < MIN_FIT_SAMPLES || self.window > MAX_WINDOW {
            return Err(OptionError::new(
                "window",
                format!("must be in {MIN_FIT_SAMPLES}..={MAX_WINDOW}"),
            ));
        }
        if self.min_samples < MIN_FIT_SAMPLES {
            return Err(OptionError::new(
                "min_samples",
                format!("must be at least {MIN_FIT_SAMPLES} (two coefficients and one degree of freedom)"),
            ));
        }
        if self.min_samples > self.window {
            return Err(OptionError::new(
                "min_samples",
                format!("must not exceed window ({})", self.window),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_r2) {
            return Err(OptionError::new("min_r2", "must be in [0, 1]"));
        }
        if !(1..=1000).contains(&self.max_step_milli) {
            return Err(OptionError::new("max_step_milli", "must be in 1..=1000"));
        }
        if self.min_price == Price::ZERO {
            return Err(OptionError::new(
                "min_price",
                "must be above 0 (the model works on log prices)",
            ));
        }
        if self.max_price < self.min_price {
            return Err(OptionError::new(
                "max_price",
                format!("must be at least min_price ({})", self.min_price),
            ));
        }
        if self.deadband_milli >= self.max_step_milli {
            return Err(OptionError::new(
                "deadband_milli",
                format!(
                    "must be below max_step_milli ({}), or no step could ever be proposed",
                    self.max_step_milli
                ),
            ));
        }
        let cap = crate::max_probe_milli(self.max_step_milli);
        if self.explore && !(1..=cap).contains(&self.explore_step_milli) {
            return Err(OptionError::new(
                "explore_step_milli",
                format!(
                    "must be in 1..={cap} when explore is on (a swing from the down probe to the up probe must fit in max_step_milli {})",
                    self.max_step_milli
                ),
            ));
        }
        if self.task_mflop == 0 {
            return Err(OptionError::new("task_mflop", "must be above 0"));
        }
        if self.horizon_ms == 0 {
            return Err(OptionError::new("horizon_ms", "must be above 0"));
        }
        Ok(())
    }

    /// Queued tasks as the processing power, in MFLOPS, that would drain
    /// them within `horizon_ms`: `tasks x task_mflop / horizon`.
    pub fn demand_mflops(&self, tasks: u64) -> f64 {
        // Floats are fine here: this is model input, not money.
        tasks as f64 * self.task_mflop as f64 * 1000.0 / self.horizon_ms as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let cfg = MlConfig::from_options(&Options::new()).unwrap();
        assert_eq!(cfg, MlConfig::default());
        assert_eq!(cfg.min_price.to_string(), "0.001");
        assert_eq!(cfg.max_price.to_string(), "1000000");
    }

    #[test]
    fn demand_conversion() {
        let cfg = MlConfig::default();
        // 6 tasks of 10 000 MFLOP to drain in 60 s: 1000 MFLOPS.
        assert_eq!(cfg.demand_mflops(6), 1000.0);
        assert_eq!(cfg.demand_mflops(0), 0.0);
    }
}
