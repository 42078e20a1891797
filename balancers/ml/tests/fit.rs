//! The model on synthetic markets with known elasticities: the fit must
//! find them within 5% and the clearing price within 2%.

mod common;

use common::{rel_err, Market, Rng};
use lppsp_balancer_ml::{fit, FitError, Sample, MIN_DISTINCT_PRICES};
use lppsp_core::money::Price;
use proptest::prelude::*;

fn check(m: &Market, got: &lppsp_balancer_ml::Fit) {
    assert!(
        rel_err(got.demand_elasticity, m.demand_elasticity) < 0.05,
        "{m:?}: {got:?}"
    );
    assert!(
        rel_err(got.supply_elasticity, m.supply_elasticity) < 0.05,
        "{m:?}: {got:?}"
    );
    assert!(
        rel_err(got.clearing_price, m.p_star) < 0.02,
        "{m:?}: {got:?}"
    );
}

#[test]
fn known_markets_are_recovered() {
    let markets = [
        // (e_d, e_s, p*, B)
        (-0.5, 0.8, 10.0, 5_000.0),
        (-1.2, 0.3, 2.5, 20_000.0),
        (-0.3, 1.5, 0.05, 100_000.0),
        (-2.0, 0.5, 150.0, 100.0),
        (-0.8, 0.2, 1.0, 1_000.0),
        (-0.25, 0.25, 42.0, 7_500.0),
    ];
    for (i, &(e_d, e_s, p_star, b)) in markets.iter().enumerate() {
        let m = Market {
            demand_elasticity: e_d,
            supply_elasticity: e_s,
            p_star,
            supply_scale: b,
        };
        let samples = m.samples(120, 0.02, &mut Rng::new(i as u64 + 1));
        let f = fit(&samples).unwrap();
        check(&m, &f);
        assert_eq!(f.samples, 120);
        assert!(f.demand_r2 > 0.9 && f.supply_r2 > 0.9, "{m:?}: {f:?}");
        // The intercepts are the curves at price 1.
        assert!(rel_err(f.supply_intercept.exp(), b) < 0.05, "{m:?}: {f:?}");
        assert!(
            rel_err(f.demand_intercept.exp(), m.demand_scale()) < 0.05,
            "{m:?}: {f:?}"
        );
    }
}

#[test]
fn unusable_samples_are_left_out_of_the_fit() {
    let m = Market {
        demand_elasticity: -0.5,
        supply_elasticity: 0.8,
        p_star: 10.0,
        supply_scale: 5_000.0,
    };
    let mut samples = m.samples(60, 0.01, &mut Rng::new(9));
    // An idle queue and a saturated pool cannot be logged: skipped.
    samples.push(Sample {
        demand_mflops: 0.0,
        ..samples[0]
    });
    samples.push(Sample {
        supply_mflops: 0.0,
        ..samples[1]
    });
    let f = fit(&samples).unwrap();
    assert_eq!(f.samples, 60);
    check(&m, &f);
}

#[test]
fn one_or_two_prices_are_not_enough() {
    let m = Market {
        demand_elasticity: -0.5,
        supply_elasticity: 0.8,
        p_star: 10.0,
        supply_scale: 5_000.0,
    };
    let mut samples = m.samples(40, 0.01, &mut Rng::new(3));
    for (i, s) in samples.iter_mut().enumerate() {
        s.price = Price::from_units(if i % 2 == 0 { 8 } else { 12 }).unwrap();
    }
    assert_eq!(
        fit(&samples),
        Err(FitError::TooFewPrices {
            distinct: 2,
            needed: MIN_DISTINCT_PRICES
        })
    );
}

#[test]
fn fit_is_deterministic() {
    let m = Market {
        demand_elasticity: -0.7,
        supply_elasticity: 0.4,
        p_star: 3.0,
        supply_scale: 900.0,
    };
    let samples = m.samples(200, 0.05, &mut Rng::new(77));
    assert_eq!(fit(&samples), fit(&samples));
    // Order does not matter beyond rounding.
    let mut reversed = samples.clone();
    reversed.reverse();
    let (a, b) = (fit(&samples).unwrap(), fit(&reversed).unwrap());
    assert!(rel_err(a.clearing_price, b.clearing_price) < 1e-9);
}

proptest! {
    #[test]
    fn random_markets_are_recovered(
        e_d in -2.0f64..-0.2,
        e_s in 0.2f64..2.0,
        ln_p_star in (0.01f64).ln()..(1000.0f64).ln(),
        ln_b in (10.0f64).ln()..(1e6f64).ln(),
        seed in any::<u64>(),
    ) {
        let m = Market {
            demand_elasticity: e_d,
            supply_elasticity: e_s,
            p_star: ln_p_star.exp(),
            supply_scale: ln_b.exp(),
        };
        let samples = m.samples(120, 0.01, &mut Rng::new(seed));
        let f = fit(&samples).unwrap();
        prop_assert!(rel_err(f.demand_elasticity, e_d) < 0.05, "{:?}: {:?}", m, f);
        prop_assert!(rel_err(f.supply_elasticity, e_s) < 0.05, "{:?}: {:?}", m, f);
        prop_assert!(rel_err(f.clearing_price, m.p_star) < 0.02, "{:?}: {:?}", m, f);
    }
}
