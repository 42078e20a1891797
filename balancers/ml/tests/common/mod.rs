//! Synthetic markets with known elasticities, and a deterministic PRNG.

#![allow(dead_code)]

use lppsp_balancer_ml::Sample;
use lppsp_core::component::MarketSample;
use lppsp_core::money::{Price, UNIT};

/// SplitMix64: small, deterministic, good enough for test noise.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1]`.
    pub fn signed_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// `D = A p^e_d`, `S = B p^e_s`, with `A` chosen so that they cross at
/// `p_star`.
#[derive(Debug, Clone, Copy)]
pub struct Market {
    pub demand_elasticity: f64,
    pub supply_elasticity: f64,
    pub p_star: f64,
    /// `B`: supply (MFLOPS) at price 1.
    pub supply_scale: f64,
}

impl Market {
    pub fn demand_scale(&self) -> f64 {
        self.supply_scale
            * self
                .p_star
                .powf(self.supply_elasticity - self.demand_elasticity)
    }

    pub fn demand(&self, p: f64) -> f64 {
        self.demand_scale() * p.powf(self.demand_elasticity)
    }

    pub fn supply(&self, p: f64) -> f64 {
        self.supply_scale * p.powf(self.supply_elasticity)
    }

    /// `n` samples at prices spread log-uniformly over `[p*/2, 2 p*]`,
    /// each value times `exp(noise x u)` with `u` uniform in `[-1, 1]`.
    pub fn samples(&self, n: usize, noise: f64, rng: &mut Rng) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let p = price(self.p_star * 2f64.powf(rng.signed_unit()));
                let pf = units(p);
                Sample {
                    at_ms: i as u64 * 1000,
                    price: p,
                    demand_mflops: self.demand(pf) * (noise * rng.signed_unit()).exp(),
                    supply_mflops: self.supply(pf) * (noise * rng.signed_unit()).exp(),
                }
            })
            .collect()
    }

    /// One market sample at `price`, with noise as in [`Market::samples`].
    /// Demand is in tasks of 1 MFLOPS each (see [`one_mflops_tasks`]).
    pub fn market_sample(&self, at_ms: u64, p: Price, noise: f64, rng: &mut Rng) -> MarketSample {
        let pf = units(p);
        let d = self.demand(pf) * (noise * rng.signed_unit()).exp();
        let s = self.supply(pf) * (noise * rng.signed_unit()).exp();
        MarketSample {
            at_ms,
            price: p,
            pressure_milli: 0,
            demand_tasks: d.round() as u64,
            supply_mflops: s.round() as u64,
            nodes: 4,
        }
    }
}

/// Options under which one task is one MFLOPS of demand.
pub fn one_mflops_tasks() -> [(&'static str, toml::Value); 2] {
    [
        ("task_mflop", toml::Value::Integer(1)),
        ("horizon_ms", toml::Value::Integer(1000)),
    ]
}

/// Whole units to a price, to the nearest micro-unit.
pub fn price(units: f64) -> Price {
    Price::from_micros((units * UNIT as f64).round() as u64)
}

pub fn units(p: Price) -> f64 {
    p.micros() as f64 / UNIT as f64
}

pub fn rel_err(got: f64, want: f64) -> f64 {
    ((got - want) / want).abs()
}
