//! The model: log-log demand and supply curves fitted by ordinary least
//! squares (linfa-linear), and the price where they cross.
//!
//! ```text
//! ln D = a_d + e_d ln p        (demand, e_d expected < 0)
//! ln S = a_s + e_s ln p        (supply, e_s expected > 0)
//! D = S  <=>  p* = exp((a_d - a_s) / (e_s - e_d))
//! ```
//!
//! `p` is in whole price units, `D` and `S` in MFLOPS. Floats live only
//! here; the balancer turns `p*` into a [`Price`] at the boundary.

use linfa::traits::Fit as _;
use linfa::Dataset;
use linfa_linear::LinearRegression;
use lppsp_core::money::{Price, UNIT};
use ndarray::{Array1, Array2};
use serde::Serialize;

/// The fewest usable samples a fit takes: two coefficients and one degree
/// of freedom left for R^2 to mean anything.
pub const MIN_FIT_SAMPLES: usize = 3;
/// The fewest distinct prices a fit takes. Two would define a line, but
/// any two clusters of points do; a third price is the first check that
/// the curve is log-linear at all.
pub const MIN_DISTINCT_PRICES: usize = 3;
/// The smallest `e_s - e_d` for which the curves are taken to cross: below
/// it they are (nearly) parallel and `p*` flies off to 0 or infinity.
pub const MIN_ELASTICITY_GAP: f64 = 1e-3;

/// One observation in the model's units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken (`MarketSample::at_ms`).
    pub at_ms: u64,
    /// The committed price then.
    pub price: Price,
    /// Processing power the queued work needs, MFLOPS.
    pub demand_mflops: f64,
    /// Idle processing power, MFLOPS.
    pub supply_mflops: f64,
}

impl Sample {
    /// Whether the sample can enter a log-log fit: price, demand and supply
    /// all finite and above zero (the log of zero does not exist).
    pub fn usable(&self) -> bool {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        self.price > Price::ZERO && positive(self.demand_mflops) && positive(self.supply_mflops)
    }

    /// The price in whole units, as the model's `p`.
    pub fn price_units(&self) -> f64 {
        self.price.micros() as f64 / UNIT as f64
    }
}

/// One fitted curve, `ln y = intercept + elasticity x ln p`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Curve {
    pub elasticity: f64,
    pub intercept: f64,
    /// Coefficient of determination in log space, in `[0, 1]`.
    pub r2: f64,
}

/// Both curves and where they cross.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fit {
    /// `e_d`: percent change of demand per percent change of price.
    pub demand_elasticity: f64,
    /// `a_d`: ln of demand (MFLOPS) at price 1.
    pub demand_intercept: f64,
    pub demand_r2: f64,
    /// `e_s`: percent change of supply per percent change of price.
    pub supply_elasticity: f64,
    /// `a_s`: ln of supply (MFLOPS) at price 1.
    pub supply_intercept: f64,
    pub supply_r2: f64,
    /// `p*`, in whole price units: where fitted demand meets fitted supply.
    pub clearing_price: f64,
    /// Usable samples the fit used.
    pub samples: usize,
}

impl Fit {
    /// The demand curve alone.
    pub fn demand(&self) -> Curve {
        Curve {
            elasticity: self.demand_elasticity,
            intercept: self.demand_intercept,
            r2: self.demand_r2,
        }
    }

    /// The supply curve alone.
    pub fn supply(&self) -> Curve {
        Curve {
            elasticity: self.supply_elasticity,
            intercept: self.supply_intercept,
            r2: self.supply_r2,
        }
    }
}

/// Why no fit came out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("{usable} usable sample(s), need {needed} ({skipped} skipped: zero price, demand or supply)")]
    TooFewSamples {
        usable: usize,
        skipped: usize,
        needed: usize,
    },
    #[error("{distinct} distinct price(s) among the samples, need {needed}")]
    TooFewPrices { distinct: usize, needed: usize },
    /// The curves were fitted but do not cross usefully; both are kept so
    /// that the caller can still report them.
    #[error(
        "curves do not cross: supply elasticity {:.3} - demand elasticity {:.3} <= {MIN_ELASTICITY_GAP}",
        supply.elasticity,
        demand.elasticity
    )]
    NoCrossing {
        demand: Curve,
        supply: Curve,
        samples: usize,
    },
    #[error("clearing price exp({ln_price:.3}) is out of range")]
    ClearingOutOfRange {
        demand: Curve,
        supply: Curve,
        ln_price: f64,
    },
    #[error("regression failed: {0}")]
    Regression(String),
}

/// Fits both curves on the usable samples and solves for the clearing
/// price. Samples with a zero price, demand or supply are skipped (see
/// [`Sample::usable`]); order does not matter.
pub fn fit(samples: &[Sample]) -> Result<Fit, FitError> {
    let usable: Vec<&Sample> = samples.iter().filter(|s| s.usable()).collect();
    let n = usable.len();
    if n < MIN_FIT_SAMPLES {
        return Err(FitError::TooFewSamples {
            usable: n,
            skipped: samples.len() - n,
            needed: MIN_FIT_SAMPLES,
        });
    }
    let distinct = distinct_prices(samples);
    if distinct < MIN_DISTINCT_PRICES {
        return Err(FitError::TooFewPrices {
            distinct,
            needed: MIN_DISTINCT_PRICES,
        });
    }
    let ln_p: Vec<f64> = usable.iter().map(|s| s.price_units().ln()).collect();
    let ln_d: Vec<f64> = usable.iter().map(|s| s.demand_mflops.ln()).collect();
    let ln_s: Vec<f64> = usable.iter().map(|s| s.supply_mflops.ln()).collect();
    let demand = regress(&ln_p, &ln_d)?;
    let supply = regress(&ln_p, &ln_s)?;
    let gap = supply.elasticity - demand.elasticity;
    if gap.is_nan() || gap <= MIN_ELASTICITY_GAP {
        return Err(FitError::NoCrossing {
            demand,
            supply,
            samples: n,
        });
    }
    let ln_price = (demand.intercept - supply.intercept) / gap;
    let clearing_price = ln_price.exp();
    if !clearing_price.is_finite() || clearing_price <= 0.0 {
        return Err(FitError::ClearingOutOfRange {
            demand,
            supply,
            ln_price,
        });
    }
    Ok(Fit {
        demand_elasticity: demand.elasticity,
        demand_intercept: demand.intercept,
        demand_r2: demand.r2,
        supply_elasticity: supply.elasticity,
        supply_intercept: supply.intercept,
        supply_r2: supply.r2,
        clearing_price,
        samples: n,
    })
}

/// Distinct prices among the usable samples.
pub fn distinct_prices(samples: &[Sample]) -> usize {
    let mut prices: Vec<Price> = samples
        .iter()
        .filter(|s| s.usable())
        .map(|s| s.price)
        .collect();
    prices.sort_unstable();
    prices.dedup();
    prices.len()
}

/// OLS of `y` on `x` with an intercept, through linfa-linear.
fn regress(x: &[f64], y: &[f64]) -> Result<Curve, FitError> {
    let n = x.len();
    if n == 0 || y.len() != n {
        return Err(FitError::Regression(format!(
            "{n} x values for {} y values",
            y.len()
        )));
    }
    let nf = n as f64;
    // Centre ln p: prices far from 1 with a narrow spread would otherwise
    // make the [ln p, 1] design matrix ill-conditioned.
    let x_mean = x.iter().sum::<f64>() / nf;
    let centred: Vec<f64> = x.iter().map(|v| v - x_mean).collect();
    let records = Array2::from_shape_vec((n, 1), centred.clone())
        .map_err(|e| FitError::Regression(e.to_string()))?;
    let targets = Array1::from_vec(y.to_vec());
    let model = LinearRegression::new()
        .fit(&Dataset::new(records, targets))
        .map_err(|e| FitError::Regression(e.to_string()))?;
    let elasticity = model
        .params()
        .first()
        .copied()
        .ok_or_else(|| FitError::Regression("no slope in the fitted model".to_string()))?;
    let centred_intercept = model.intercept();
    let intercept = centred_intercept - elasticity * x_mean;
    if !elasticity.is_finite() || !intercept.is_finite() {
        return Err(FitError::Regression(format!(
            "non-finite coefficients: slope {elasticity}, intercept {intercept}"
        )));
    }
    let y_mean = y.iter().sum::<f64>() / nf;
    let (ss_res, ss_tot) =
        centred
            .iter()
            .zip(y)
            .fold((0.0, 0.0), |(res, tot): (f64, f64), (xc, yi)| {
                let e = yi - (centred_intercept + elasticity * xc);
                (res + e * e, tot + (yi - y_mean) * (yi - y_mean))
            });
    Ok(Curve {
        elasticity,
        intercept,
        r2: r_squared(ss_res, ss_tot, nf),
    })
}

/// `1 - SS_res / SS_tot`, clamped to `[0, 1]` against rounding. A flat
/// series (`SS_tot` about 0) is fitted exactly by a flat line, so it
/// counts as a perfect fit rather than a division by zero.
fn r_squared(ss_res: f64, ss_tot: f64, n: f64) -> f64 {
    // Squared log deviations below this are rounding noise, not variance.
    let tiny = 1e-18 * n;
    if ss_tot <= tiny {
        return if ss_res <= tiny { 1.0 } else { 0.0 };
    }
    let r2 = 1.0 - ss_res / ss_tot;
    if r2.is_nan() {
        0.0
    } else {
        r2.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(price_micros: u64, d: f64, sup: f64) -> Sample {
        Sample {
            at_ms: 0,
            price: Price::from_micros(price_micros),
            demand_mflops: d,
            supply_mflops: sup,
        }
    }

    #[test]
    fn exact_power_laws_are_recovered() {
        // D = 1000 p^-1, S = 10 p^1: they cross at p = 10.
        let samples: Vec<Sample> = [5u64, 8, 10, 12, 20]
            .iter()
            .map(|&p| {
                let pf = p as f64;
                s(p * UNIT, 1000.0 / pf, 10.0 * pf)
            })
            .collect();
        let f = fit(&samples).unwrap();
        assert!((f.demand_elasticity + 1.0).abs() < 1e-9, "{f:?}");
        assert!((f.supply_elasticity - 1.0).abs() < 1e-9, "{f:?}");
        assert!((f.clearing_price - 10.0).abs() < 1e-6, "{f:?}");
        assert!((f.demand_r2 - 1.0).abs() < 1e-9);
        assert_eq!(f.samples, 5);
    }

    #[test]
    fn flat_supply_is_a_perfect_fit_and_still_crosses() {
        let samples: Vec<Sample> = [1u64, 2, 4]
            .iter()
            .map(|&p| s(p * UNIT, 8.0 / p as f64, 4.0))
            .collect();
        let f = fit(&samples).unwrap();
        assert_eq!(f.supply_r2, 1.0);
        assert!(f.supply_elasticity.abs() < 1e-9);
        assert!((f.clearing_price - 2.0).abs() < 1e-9, "{f:?}");
    }

    #[test]
    fn unusable_samples_are_skipped() {
        let samples = vec![
            s(UNIT, 0.0, 1.0),
            s(0, 1.0, 1.0),
            s(UNIT, 1.0, 0.0),
            s(UNIT, f64::NAN, 1.0),
        ];
        assert_eq!(
            fit(&samples),
            Err(FitError::TooFewSamples {
                usable: 0,
                skipped: 4,
                needed: 3
            })
        );
    }

    #[test]
    fn parallel_curves_do_not_cross() {
        // Demand and supply both rise with elasticity 1.
        let samples: Vec<Sample> = [1u64, 2, 4]
            .iter()
            .map(|&p| s(p * UNIT, p as f64, 2.0 * p as f64))
            .collect();
        assert!(matches!(fit(&samples), Err(FitError::NoCrossing { .. })));
    }

    #[test]
    fn r_squared_edges() {
        assert_eq!(r_squared(0.0, 0.0, 3.0), 1.0);
        assert_eq!(r_squared(1.0, 0.0, 3.0), 0.0);
        assert_eq!(r_squared(2.0, 1.0, 3.0), 0.0);
        assert_eq!(r_squared(0.25, 1.0, 3.0), 0.75);
    }
}
