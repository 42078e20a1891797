//! `proportional`: an example balancer plugin for lppsp.
//!
//! A proportional controller on task queue pressure (RFC 1.3: tasks queued
//! or running per node). With `e = (pressure - target) / target`, the
//! relative error, the proposed price is
//!
//! ```text
//! price' = price x (1 + gain x e)
//! ```
//!
//! with the step limited to `max_step` of the price and the result kept
//! within `[min_price_micros, max_price_micros]`. Inside the dead band
//! (`|pressure - target| <= deadband`) nothing is proposed, so the price
//! rests when the market is near balance instead of hunting around it. A
//! proposal is made at most once per `interval_ms`, so that the network
//! has time to commit one before the next.
//!
//! The arithmetic is integer throughout (micro-units and thousandths), so
//! that every node running this balancer on the same samples proposes the
//! same price.
//!
//! **Options** (`[balancer.options]`), all integers:
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `target_milli` | 1000 | pressure aimed at, x1000 (1000: one task per node) |
//! | `gain_milli` | 500 | gain x1000 |
//! | `deadband_milli` | 100 | no change while pressure is this close to the target, x1000 |
//! | `max_step_milli` | 250 | largest change per proposal, x1000 of the price |
//! | `min_price_micros` | 1000 | lowest price proposed |
//! | `max_price_micros` | 1000000000 | highest price proposed |
//! | `interval_ms` | 5000 | least time between proposals |

use lppsp_plugin_abi::{export_balancer, Balancer, MarketSample, PriceProposal};
use serde::Deserialize;

/// The options, from `[balancer.options]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    pub target_milli: u64,
    pub gain_milli: u64,
    pub deadband_milli: u64,
    pub max_step_milli: u64,
    pub min_price_micros: u64,
    pub max_price_micros: u64,
    pub interval_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            target_milli: 1000,
            gain_milli: 500,
            deadband_milli: 100,
            max_step_milli: 250,
            min_price_micros: 1000,
            max_price_micros: 1_000_000_000,
            interval_ms: 5000,
        }
    }
}

/// The controller's state.
#[derive(Debug, Clone, Default)]
pub struct Proportional {
    options: Options,
    last_pressure_milli: Option<u64>,
    last_proposal_ms: Option<u64>,
    last_proposed: Option<u64>,
}

impl Proportional {
    pub fn with_options(options: Options) -> Result<Self, String> {
        if options.target_milli == 0 {
            return Err("target_milli must be above 0".into());
        }
        if options.min_price_micros > options.max_price_micros {
            return Err("min_price_micros must not exceed max_price_micros".into());
        }
        Ok(Self {
            options,
            ..Self::default()
        })
    }

    /// The price the controller wants for `sample`, before the dead band
    /// and the proposal interval are considered.
    pub fn target_price(&self, sample: &MarketSample) -> u64 {
        let o = &self.options;
        let price = i128::from(sample.price_micros);
        let error = i128::from(sample.pressure_milli) - i128::from(o.target_milli);
        // price x gain x error / target, in micro-units.
        let step = price * i128::from(o.gain_milli) * error / (1000 * i128::from(o.target_milli));
        let limit = price * i128::from(o.max_step_milli) / 1000;
        let step = step.clamp(-limit, limit);
        let proposed = (price + step).clamp(
            i128::from(o.min_price_micros),
            i128::from(o.max_price_micros),
        );
        // Within [min, max], both u64.
        u64::try_from(proposed).unwrap_or(o.max_price_micros)
    }
}

fn amount(micros: u64) -> String {
    let frac = micros % 1_000_000;
    if frac == 0 {
        format!("{}", micros / 1_000_000)
    } else {
        let s = format!("{}.{frac:06}", micros / 1_000_000);
        s.trim_end_matches('0').to_string()
    }
}

impl Balancer for Proportional {
    fn new(options: &str) -> Result<Self, String> {
        let options: Options = toml::from_str(options).map_err(|e| e.message().to_string())?;
        Self::with_options(options)
    }

    fn on_sample(&mut self, sample: &MarketSample) -> Option<PriceProposal> {
        let o = self.options;
        self.last_pressure_milli = Some(sample.pressure_milli);
        if sample.pressure_milli.abs_diff(o.target_milli) <= o.deadband_milli {
            return None;
        }
        if self
            .last_proposal_ms
            .is_some_and(|t| sample.at_ms.saturating_sub(t) < o.interval_ms)
        {
            return None;
        }
        let price = self.target_price(sample);
        if price == sample.price_micros {
            return None;
        }
        self.last_proposal_ms = Some(sample.at_ms);
        self.last_proposed = Some(price);
        Some(PriceProposal {
            price_micros: price,
            evidence: format!(
                "pressure {} vs target {}: price {} -> {}",
                amount(sample.pressure_milli * 1000),
                amount(o.target_milli * 1000),
                amount(sample.price_micros),
                amount(price)
            )
            .into(),
        })
    }

    fn on_commit(&mut self, _price_micros: u64) {
        // The committed price arrives in the next sample; a commit only
        // means the next proposal need not wait for the interval.
        self.last_proposal_ms = None;
    }

    fn describe(&self) -> String {
        let pressure = self
            .last_pressure_milli
            .map_or("-".to_string(), |p| amount(p * 1000));
        let proposed = self.last_proposed.map_or("-".to_string(), amount);
        format!(
            "proportional: target pressure {}, last pressure {pressure}, last proposal {proposed}",
            amount(self.options.target_milli * 1000)
        )
    }
}

export_balancer!(
    Proportional,
    "proportional",
    "proportional controller of the price on task queue pressure"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, price_micros: u64, pressure_milli: u64) -> MarketSample {
        MarketSample {
            at_ms,
            price_micros,
            pressure_milli,
            demand_tasks: 0,
            supply_mflops: 0,
            nodes: 2,
        }
    }

    #[test]
    fn pressure_above_target_raises_the_price_in_proportion() {
        let mut b = Proportional::new("").unwrap();
        // 20 % over target, gain 0.5: +10 %.
        let p = b.on_sample(&sample(0, 1_000_000, 1200)).unwrap();
        assert_eq!(p.price_micros, 1_100_000);
        assert_eq!(p.evidence, "pressure 1.2 vs target 1: price 1 -> 1.1");
        // Far over target: the step is capped at 25 %.
        let mut b = Proportional::new("").unwrap();
        let p = b.on_sample(&sample(0, 1_000_000, 9000)).unwrap();
        assert_eq!(p.price_micros, 1_250_000);
    }

    #[test]
    fn pressure_below_target_lowers_it_down_to_the_floor() {
        let mut b = Proportional::new("min_price_micros = 900000").unwrap();
        let p = b.on_sample(&sample(0, 1_000_000, 0)).unwrap();
        assert_eq!(p.price_micros, 900_000);
    }

    #[test]
    fn the_dead_band_and_the_interval_hold_proposals_back() {
        let mut b = Proportional::new("interval_ms = 1000").unwrap();
        assert_eq!(b.on_sample(&sample(0, 1_000_000, 1050)), None);
        assert!(b.on_sample(&sample(0, 1_000_000, 2000)).is_some());
        assert_eq!(b.on_sample(&sample(500, 1_000_000, 2000)), None);
        assert!(b.on_sample(&sample(1000, 1_000_000, 2000)).is_some());
        b.on_commit(1_250_000);
        assert!(b.on_sample(&sample(1001, 1_250_000, 2000)).is_some());
        assert!(b.describe().contains("last pressure 2"), "{}", b.describe());
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(Proportional::new("target_milli = 0").is_err());
        assert!(Proportional::new("gain = 1").unwrap_err().contains("gain"));
    }
}
