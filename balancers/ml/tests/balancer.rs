//! The balancer around the model: guards and their reasons, step and
//! bound clamps, the deadband, pacing, exploration, options and commits.

mod common;

use common::{price, rel_err, units, Market, Rng};
use lppsp_balancer_ml::{
    Direction, MlBalancer, MlConfig, OptionError, Reason, Side, Status, MIN_DISTINCT_PRICES, NAME,
};
use lppsp_core::component::{Balancer, MarketSample, PriceProposal};
use lppsp_core::money::{Price, UNIT};
use lppsp_core::registry::Options;
use proptest::prelude::*;

const MARKET: Market = Market {
    demand_elasticity: -0.5,
    supply_elasticity: 0.8,
    p_star: 10.0,
    supply_scale: 5_000.0,
};

fn p(units: u64) -> Price {
    Price::from_units(units).unwrap()
}

/// Every sample kept, no pacing, one task = one MFLOPS.
fn cfg() -> MlConfig {
    MlConfig {
        sample_every_ms: 0,
        min_interval_ms: 0,
        task_mflop: 1,
        horizon_ms: 1000,
        ..MlConfig::default()
    }
}

fn ms(at_ms: u64, price: Price, demand_tasks: u64, supply_mflops: u64) -> MarketSample {
    MarketSample {
        at_ms,
        price,
        pressure_milli: 0,
        demand_tasks,
        supply_mflops,
        nodes: 4,
    }
}

/// Feeds `n` samples of `m` at prices spread over `[p*/2, 2 p*]`, the last
/// one at `last`; returns the last answer.
fn feed(b: &mut MlBalancer, m: &Market, n: u64, last: Price, seed: u64) -> Option<PriceProposal> {
    let mut rng = Rng::new(seed);
    let mut out = None;
    for i in 0..n {
        let at = if i + 1 == n {
            last
        } else {
            price(m.p_star * 2f64.powf(rng.signed_unit()))
        };
        out = b.on_sample(&m.market_sample(i * 1000, at, 0.01, &mut rng));
        if i + 1 < n {
            assert!(
                out.is_none() || b.config().min_samples > n as usize,
                "{out:?}"
            );
        }
    }
    out
}

/// Samples fed by [`fitted`] before the deciding one.
const FED: u64 = 59;

/// A balancer that has seen [`FED`] samples of [`MARKET`] at prices spread
/// over `[5, 20]` and waits for one more (`min_samples` = 60) before its
/// first decision, which [`next`] then triggers at a chosen price.
fn fitted(cfg: MlConfig) -> MlBalancer {
    let mut b = MlBalancer::new(MlConfig {
        min_samples: FED as usize + 1,
        ..cfg
    });
    let mut rng = Rng::new(5);
    for i in 0..FED {
        let at = price(MARKET.p_star * 2f64.powf(rng.signed_unit()));
        assert_eq!(
            b.on_sample(&MARKET.market_sample(i * 1000, at, 0.01, &mut rng)),
            None
        );
    }
    b
}

/// One more sample of [`MARKET`] at `at` (whole seconds after the fed ones).
fn next(b: &mut MlBalancer, secs: u64, at: Price) -> Option<PriceProposal> {
    let mut rng = Rng::new(1000 + secs);
    b.on_sample(&MARKET.market_sample((FED + secs) * 1000, at, 0.01, &mut rng))
}

#[test]
fn name_and_build() {
    let b = MlBalancer::build(&Options::new()).unwrap();
    assert_eq!(b.name(), NAME);
    assert_eq!(NAME, "ml");
    assert_eq!(
        b.describe(),
        "ml: waiting: no samples yet; market unknown; 0 samples (0 usable, 0 distinct price(s)); no fit"
    );
}

#[test]
fn too_few_samples_wait() {
    let mut b = MlBalancer::new(cfg());
    assert_eq!(feed(&mut b, &MARKET, 5, p(5), 1), None);
    assert_eq!(
        b.reason(),
        &Reason::Waiting {
            usable: 5,
            needed: 12,
            skipped: 0
        }
    );
    assert!(
        b.describe().contains("waiting: 5/12 samples"),
        "{}",
        b.describe()
    );
    assert_eq!(b.status().fit, None);
}

#[test]
fn zero_demand_or_supply_is_skipped_and_said() {
    let mut b = MlBalancer::new(cfg());
    for i in 0..20 {
        // Idle queue or saturated pool: the log of zero does not exist.
        let (d, s) = if i % 2 == 0 { (0, 5000) } else { (100, 0) };
        assert_eq!(b.on_sample(&ms(i * 1000, p(5 + i), d, s)), None);
    }
    assert_eq!(
        b.reason(),
        &Reason::Waiting {
            usable: 0,
            needed: 12,
            skipped: 20
        }
    );
    assert_eq!(
        b.reason().to_string(),
        "waiting: 0/12 samples (20 skipped: zero price, demand or supply)"
    );
}

#[test]
fn constant_price_gives_no_proposal_without_exploration() {
    let mut b = MlBalancer::new(cfg());
    let mut rng = Rng::new(2);
    for i in 0..30 {
        assert_eq!(
            b.on_sample(&MARKET.market_sample(i * 1000, p(10), 0.05, &mut rng)),
            None
        );
    }
    assert_eq!(
        b.reason(),
        &Reason::NoPriceVariation {
            distinct: 1,
            needed: MIN_DISTINCT_PRICES
        }
    );
    assert_eq!(
        b.reason().to_string(),
        "no proposal: 1 distinct price(s) in window, need 3; exploration off"
    );
    assert_eq!(b.status().exploration, None);
}

#[test]
fn heavy_noise_is_a_poor_fit() {
    for (side, demand_noise, supply_noise) in [(Side::Demand, 3.0, 0.01), (Side::Supply, 0.01, 3.0)]
    {
        let mut b = MlBalancer::new(cfg());
        let mut rng = Rng::new(4);
        let mut out = None;
        for i in 0..120u64 {
            let at = price(10.0 * 1.2f64.powf(rng.signed_unit()));
            let pf = units(at);
            let d = MARKET.demand(pf) * (demand_noise * rng.signed_unit()).exp();
            let s = MARKET.supply(pf) * (supply_noise * rng.signed_unit()).exp();
            out = out.or(b.on_sample(&ms(
                i * 1000,
                at,
                d.round() as u64 + 1,
                s.round() as u64 + 1,
            )));
        }
        assert_eq!(out, None);
        let Reason::PoorFit {
            side: got,
            r2,
            min_r2,
        } = b.reason().clone()
        else {
            panic!("{:?}", b.reason());
        };
        assert_eq!(got, side);
        assert!(r2 < 0.8 && min_r2 == 0.8, "{r2}");
        let text = b.reason().to_string();
        assert!(
            text.starts_with(&format!("no proposal: {side} fit R^2 0."))
                && text.ends_with(" < 0.80"),
            "{text}"
        );
        // The poor fit is still shown, for diagnosis.
        assert!(b.status().fit.is_some());
    }
}

#[test]
fn parallel_curves_do_not_cross() {
    let mut b = MlBalancer::new(cfg());
    for i in 0..20u64 {
        let pr = 5 + i % 5;
        // Demand and supply both proportional to price.
        assert_eq!(b.on_sample(&ms(i * 1000, p(pr), 100 * pr, 300 * pr)), None);
    }
    assert!(
        matches!(b.reason(), Reason::NoCrossing { .. }),
        "{:?}",
        b.reason()
    );
    assert!(b
        .reason()
        .to_string()
        .starts_with("no proposal: curves do not cross"));
}

#[test]
fn good_fit_proposes_the_clearing_price_within_one_step() {
    let mut b = fitted(cfg());
    // p* = 10, market 5: the step is held to 10%.
    let prop = next(&mut b, 100, p(5)).unwrap();
    assert_eq!(prop.price, price(5.5));
    assert!(
        prop.evidence.contains("step limited to 10%"),
        "{}",
        prop.evidence
    );
    assert!(prop.evidence.contains("5 -> 5.5"), "{}", prop.evidence);
    let f = b.status().fit.unwrap();
    assert!(rel_err(f.clearing_price, 10.0) < 0.02, "{f:?}");
    assert!(matches!(b.reason(), Reason::Proposed { .. }));

    // Downwards the same.
    let mut b = fitted(cfg());
    assert_eq!(next(&mut b, 100, p(20)).unwrap().price, p(18));

    // Close enough: the clearing price itself.
    let mut b = fitted(cfg());
    let prop = next(&mut b, 100, price(9.5)).unwrap();
    let f = b.status().fit.unwrap();
    assert_eq!(
        prop.price,
        lppsp_balancer_ml::price_from_units(f.clearing_price)
    );
    assert!(!prop.evidence.contains("limited"), "{}", prop.evidence);
}

#[test]
fn bounds_hold_and_win_over_the_step() {
    let bounded = MlConfig {
        min_price: price(8.0),
        max_price: p(9),
        ..cfg()
    };
    // Step would give 9.35; the bound says 9.
    let mut b = fitted(bounded.clone());
    let prop = next(&mut b, 100, price(8.5)).unwrap();
    assert_eq!(prop.price, p(9));
    assert!(
        prop.evidence.contains("bounded to [8, 9]"),
        "{}",
        prop.evidence
    );
    // A market above the bounds is brought back inside in one proposal.
    let mut b = fitted(bounded.clone());
    assert_eq!(next(&mut b, 100, p(20)).unwrap().price, p(9));
    // A market below them too, even though p* is above.
    let mut b = fitted(MlConfig {
        min_price: p(12),
        max_price: p(20),
        ..cfg()
    });
    assert_eq!(next(&mut b, 100, p(11)).unwrap().price, p(12));
    // At the bound already: nothing to propose.
    let mut b = fitted(bounded);
    assert_eq!(next(&mut b, 100, p(9)), None);
    assert!(matches!(b.reason(), Reason::InDeadband { .. }));
}

#[test]
fn deadband_suppresses_tiny_changes() {
    let mut b = fitted(cfg());
    // A first decision, to learn the fitted target.
    assert!(next(&mut b, 1, p(5)).is_some());
    let f = *b.current_fit().unwrap();
    let target = lppsp_balancer_ml::price_from_units(f.clearing_price);
    // Half a percent below the target: inside the 1% deadband (one more
    // sample moves the fit far less than the other half percent).
    let market = Price::from_micros(target.micros() - target.micros() / 200);
    assert_eq!(next(&mut b, 2, market), None);
    assert!(
        matches!(b.reason(), Reason::InDeadband { .. }),
        "{:?}",
        b.reason()
    );
    assert!(b.reason().to_string().starts_with("holding: target "));
    // Two percent off is outside it.
    let market = Price::from_micros(target.micros() - target.micros() / 50);
    assert!(next(&mut b, 3, market).is_some());
}

#[test]
fn proposals_are_paced_by_min_interval() {
    let mut b = fitted(MlConfig {
        min_interval_ms: 60_000,
        ..cfg()
    });
    assert!(next(&mut b, 100, p(5)).is_some());
    b.on_commit(price(5.5));
    assert_eq!(next(&mut b, 130, price(5.5)), None);
    assert_eq!(
        b.reason(),
        &Reason::Holding {
            last_ms: 159_000,
            next_ms: 219_000
        }
    );
    assert_eq!(
        b.reason().to_string(),
        "holding: last proposal at t=159s, next from t=219s"
    );
    assert_eq!(next(&mut b, 160, price(5.5)).unwrap().price, price(6.05));
}

#[test]
fn sampling_interval_and_window_cap() {
    let mut b = MlBalancer::new(MlConfig {
        sample_every_ms: 5_000,
        window: 10,
        min_samples: 10,
        ..cfg()
    });
    for t in (0..30_000).step_by(1000) {
        b.on_sample(&ms(t, p(3), 10, 10));
    }
    // One kept every 5 s: t = 0, 5, ..., 25 s.
    assert_eq!(b.status().samples, 6);
    let kept: Vec<u64> = b.samples().map(|s| s.at_ms).collect();
    assert_eq!(kept, vec![0, 5_000, 10_000, 15_000, 20_000, 25_000]);
    for t in (30_000..200_000).step_by(5000) {
        b.on_sample(&ms(t, p(3), 10, 10));
    }
    assert_eq!(b.status().samples, 10);
    assert_eq!(b.samples().next().unwrap().at_ms, 150_000);
}

#[test]
fn demand_is_converted_to_mflops() {
    let mut b = MlBalancer::new(MlConfig {
        task_mflop: 10_000,
        horizon_ms: 60_000,
        ..cfg()
    });
    b.on_sample(&ms(0, p(1), 6, 500));
    let s = *b.samples().next().unwrap();
    assert_eq!(s.demand_mflops, 1000.0);
    assert_eq!(s.supply_mflops, 500.0);
}

fn exploring() -> MlConfig {
    MlConfig {
        explore: true,
        min_samples: 3,
        ..cfg()
    }
}

#[test]
fn exploration_probes_alternate_around_the_anchor() {
    let mut b = MlBalancer::new(exploring());
    let mut rng = Rng::new(8);
    let mut probes = Vec::new();
    // Probes never committed: the market stays at 10 and keeps probing.
    for i in 0..12u64 {
        if let Some(prop) = b.on_sample(&MARKET.market_sample(i * 1000, p(10), 0.01, &mut rng)) {
            probes.push(prop.price);
            assert!(
                prop.evidence.starts_with("exploring ("),
                "{}",
                prop.evidence
            );
        }
    }
    // Nothing until min_samples, then one probe per sample.
    assert_eq!(probes.len(), 10);
    // Pairs of +-2.5% (explore_step_milli) and +-4.7% (the cap for a 10%
    // max step), in turn.
    let want = [10.25, 9.75, 10.47, 9.53];
    for (k, got) in probes.iter().enumerate() {
        assert_eq!(*got, price(want[k % 4]), "probe {k}");
    }
    assert_eq!(
        b.reason(),
        &Reason::Probing {
            probe: 9,
            direction: Direction::Down,
            from: p(10),
            to: price(9.75)
        }
    );
    let ex = b.status().exploration.unwrap();
    assert_eq!((ex.anchor, ex.probes), (p(10), 10));
}

#[test]
fn exploration_with_commits_leads_to_a_fit() {
    let mut b = MlBalancer::new(exploring());
    let mut rng = Rng::new(9);
    // p* is 10; the market starts flat at 8.
    let mut market = p(8);
    let mut seen = Vec::new();
    for i in 0..30u64 {
        if let Some(prop) = b.on_sample(&MARKET.market_sample(i * 1000, market, 0.01, &mut rng)) {
            seen.push((prop.price, prop.evidence.starts_with("exploring")));
            market = prop.price;
            b.on_commit(market);
        }
    }
    // Probes while the prices are too close, then clearing-price steps
    // (10% at most) that reach p*.
    let probes = seen.iter().take_while(|(_, probe)| *probe).count();
    assert!(probes >= 2, "{seen:?}");
    assert_eq!(seen[..2], [(price(8.2), true), (price(7.8), true)]);
    assert!(seen[probes..].iter().all(|(_, probe)| !probe), "{seen:?}");
    assert_eq!(b.status().exploration, None);
    assert!(rel_err(units(market), 10.0) < 0.02, "{seen:?}");
}

#[test]
fn exploration_respects_bounds() {
    // Anchor at the top: the up probe is a no-op and is skipped.
    let mut b = MlBalancer::new(MlConfig {
        max_price: p(10),
        ..exploring()
    });
    let mut rng = Rng::new(10);
    let mut probes = Vec::new();
    for i in 0..8u64 {
        if let Some(prop) = b.on_sample(&MARKET.market_sample(i * 1000, p(10), 0.01, &mut rng)) {
            probes.push(prop.price);
        }
    }
    assert!(!probes.is_empty());
    // Up probes are skipped; the downs keep their schedule.
    assert_eq!(
        probes[..3],
        [price(9.75), price(9.53), price(9.75)],
        "{probes:?}"
    );
    // No room at all: min = max = market.
    let mut b = MlBalancer::new(MlConfig {
        min_price: p(10),
        max_price: p(10),
        ..exploring()
    });
    for i in 0..5u64 {
        assert_eq!(
            b.on_sample(&MARKET.market_sample(i * 1000, p(10), 0.01, &mut rng)),
            None
        );
    }
    assert!(
        matches!(b.reason(), Reason::ExplorationBlocked { .. }),
        "{:?}",
        b.reason()
    );
    assert_eq!(
        b.reason().to_string(),
        "no proposal: 5 usable samples over 1 distinct price(s), spread under 2.5%; bounds leave no room to explore"
    );
}

#[test]
fn exploration_is_paced_too() {
    let mut b = MlBalancer::new(MlConfig {
        min_interval_ms: 10_000,
        ..exploring()
    });
    let mut rng = Rng::new(11);
    let mut at = Vec::new();
    for i in 0..30u64 {
        if b.on_sample(&MARKET.market_sample(i * 1000, p(10), 0.01, &mut rng))
            .is_some()
        {
            at.push(i * 1000);
        }
    }
    assert_eq!(at, vec![2_000, 12_000, 22_000]);
}

#[test]
fn closed_loop_converges_to_the_clearing_price() {
    // The market answers each committed price; the balancer explores,
    // fits and steps until within the deadband of p*.
    for (i, m) in [
        MARKET,
        Market {
            demand_elasticity: -1.2,
            supply_elasticity: 0.3,
            p_star: 2.5,
            supply_scale: 20_000.0,
        },
    ]
    .iter()
    .enumerate()
    {
        // Probes span about +-max_step/2; 20% gives the low supply
        // elasticity of the second market enough spread to pass min_r2.
        let mut b = MlBalancer::new(MlConfig {
            explore: true,
            max_step_milli: 200,
            ..cfg()
        });
        let mut rng = Rng::new(100 + i as u64);
        let mut market = p(1);
        for t in 0..400u64 {
            if let Some(prop) = b.on_sample(&m.market_sample(t * 1000, market, 0.01, &mut rng)) {
                market = prop.price;
                b.on_commit(market);
            }
        }
        assert!(
            rel_err(units(market), m.p_star) < 0.02,
            "{m:?}: {}",
            b.describe()
        );
    }
}

#[test]
fn closed_loop_with_default_pacing() {
    // Default options (sample every 5 s, propose at most once a minute,
    // 10% steps) but exploration on, from a price 10x too low: a few
    // probes, about 25 steps to climb, each a minute apart, then it
    // settles. The noise is 1%: probes of at most +-4.7% could not show a
    // -0.5 elasticity through much more to R^2 0.8.
    let mut b = MlBalancer::new(MlConfig {
        explore: true,
        task_mflop: 1,
        horizon_ms: 1000,
        ..MlConfig::default()
    });
    let mut rng = Rng::new(7);
    let mut market = p(1);
    let mut proposals = 0;
    let mut band = (f64::MAX, 0.0f64);
    // Two hours of one sample a second.
    for t in 0..7_200u64 {
        if t >= 3_600 {
            band = (band.0.min(units(market)), band.1.max(units(market)));
        }
        if let Some(prop) = b.on_sample(&MARKET.market_sample(t * 1000, market, 0.01, &mut rng)) {
            proposals += 1;
            market = prop.price;
            b.on_commit(market);
        }
    }
    assert!(
        rel_err(units(market), MARKET.p_star) < 0.02,
        "{}",
        b.describe()
    );
    // Settled in the second hour: re-exploration stays within the probe
    // band (+-4.7%) of the anchor, itself within 1% of p*.
    assert!(
        band.0 > 0.94 * MARKET.p_star && band.1 < 1.06 * MARKET.p_star,
        "{band:?}"
    );
    // Paced: never more than one a minute.
    assert!(proposals <= 120, "{proposals}");
}

#[test]
fn last_good_fit_is_used_until_the_window_turns_over() {
    let window = 60;
    let mut b = fitted(MlConfig {
        window,
        explore: true,
        ..cfg()
    });
    assert_eq!(next(&mut b, 1, p(5)).unwrap().price, price(5.5));
    // The market stays at 5.5 (nothing committed); the spread ages out of
    // the window, the fit stops passing, and the last good one is used
    // until `window` samples after it; then exploration starts.
    let mut phases = Vec::new();
    for secs in 2..200 {
        let Some(prop) = next(&mut b, secs, price(5.5)) else {
            continue;
        };
        let phase = if prop.evidence.starts_with("exploring") {
            "probe"
        } else if prop.evidence.contains("last good fit") {
            assert_eq!(prop.price, price(6.05), "{}", prop.evidence);
            "trusted"
        } else {
            assert_eq!(prop.price, price(6.05), "{}", prop.evidence);
            "fit"
        };
        if phases.last() != Some(&phase) {
            phases.push(phase);
            if phase == "probe" {
                let good = b.status().last_good_fit.unwrap();
                assert_eq!(good.samples_since, window as u64);
                assert!(rel_err(good.fit.clearing_price, 10.0) < 0.02);
            }
        }
    }
    assert_eq!(phases, ["fit", "trusted", "probe"]);
}

#[test]
fn on_commit_updates_state() {
    let mut b = fitted(cfg());
    assert_eq!(b.status().commits, 0);
    let prop = next(&mut b, 100, p(5)).unwrap();
    let last = b.status().last_proposal.unwrap();
    assert!(!last.committed && !last.probe && last.price == prop.price);
    // Another proposer's price first: the market moves, ours still pending.
    b.on_commit(p(7));
    assert_eq!(b.status().market, Some(p(7)));
    assert!(!b.status().last_proposal.unwrap().committed);
    b.on_commit(prop.price);
    let st = b.status();
    assert_eq!(st.market, Some(prop.price));
    assert_eq!(st.commits, 2);
    assert!(st.last_proposal.unwrap().committed);
    assert!(b.describe().contains("market 5.5"), "{}", b.describe());
}

#[test]
fn status_serializes() {
    let mut b = fitted(cfg());
    next(&mut b, 100, p(5));
    let st: Status = b.status();
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["balancer"], "ml");
    assert_eq!(json["market"], "5");
    assert_eq!(json["samples"], 60);
    assert!(json["fit"]["clearing_price"].as_f64().unwrap() > 9.0);
    assert!(json["fit"]["demand_r2"].as_f64().unwrap() > 0.8);
    assert!(json["reason"]
        .as_str()
        .unwrap()
        .starts_with("proposed 5 -> 5.5"));
    assert_eq!(json["last_proposal"]["price"], "5.5");
}

#[test]
fn same_inputs_same_proposals() {
    let run = || {
        let mut b = MlBalancer::new(MlConfig {
            explore: true,
            ..cfg()
        });
        let mut rng = Rng::new(42);
        let mut market = p(3);
        let mut out = Vec::new();
        for t in 0..200u64 {
            if let Some(prop) = b.on_sample(&MARKET.market_sample(t * 1000, market, 0.03, &mut rng))
            {
                market = prop.price;
                b.on_commit(market);
                out.push(prop);
            }
        }
        (out, b.describe())
    };
    assert_eq!(run(), run());
}

// ---- options ----

fn opts(pairs: &[(&str, toml::Value)]) -> Options {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

#[test]
fn empty_options_give_the_defaults() {
    let cfg = MlConfig::from_options(&Options::new()).unwrap();
    assert_eq!(cfg, MlConfig::default());
    assert_eq!(cfg.sample_every_ms, 5_000);
    assert_eq!(cfg.window, 240);
    assert_eq!(cfg.min_samples, 12);
    assert_eq!(cfg.min_r2, 0.8);
    assert_eq!(cfg.max_step_milli, 100);
    assert!(!cfg.explore);
}

#[test]
fn all_options_are_read() {
    use toml::Value::{Boolean, Float, Integer, String as S};
    let got = MlConfig::from_options(&opts(&[
        ("sample_every_ms", Integer(1000)),
        ("window", Integer(100)),
        ("min_samples", Integer(20)),
        ("min_r2", Float(0.9)),
        ("max_step_milli", Integer(50)),
        ("min_price", S("0.5".into())),
        ("max_price", Integer(40)),
        ("min_interval_ms", Integer(30_000)),
        ("deadband_milli", Integer(5)),
        ("explore", Boolean(true)),
        ("explore_step_milli", Integer(20)),
        ("task_mflop", Integer(500)),
        ("horizon_ms", Integer(10_000)),
    ]))
    .unwrap();
    assert_eq!(
        got,
        MlConfig {
            sample_every_ms: 1000,
            window: 100,
            min_samples: 20,
            min_r2: 0.9,
            max_step_milli: 50,
            min_price: price(0.5),
            max_price: p(40),
            min_interval_ms: 30_000,
            deadband_milli: 5,
            explore: true,
            explore_step_milli: 20,
            task_mflop: 500,
            horizon_ms: 10_000,
        }
    );
    // R^2 may be written as a whole number.
    let got = MlConfig::from_options(&opts(&[("min_r2", Integer(1))])).unwrap();
    assert_eq!(got.min_r2, 1.0);
    let b = MlBalancer::from_options(&opts(&[("window", Integer(50))])).unwrap();
    assert_eq!(b.config().window, 50);
}

#[test]
fn options_errors_name_the_key() {
    use toml::Value::{Boolean, Float, Integer, String as S};
    let cases: Vec<(Options, &str)> = vec![
        (opts(&[("windw", Integer(1))]), "windw"),
        (opts(&[("sample_every_ms", Integer(-1))]), "sample_every_ms"),
        (
            opts(&[("sample_every_ms", S("5s".into()))]),
            "sample_every_ms",
        ),
        (opts(&[("window", Integer(2))]), "window"),
        (opts(&[("window", Integer(1_000_000))]), "window"),
        (opts(&[("window", Float(240.0))]), "window"),
        (opts(&[("min_samples", Integer(2))]), "min_samples"),
        (opts(&[("min_samples", Integer(300))]), "min_samples"),
        (opts(&[("min_r2", Float(1.5))]), "min_r2"),
        (opts(&[("min_r2", Float(-0.1))]), "min_r2"),
        (opts(&[("min_r2", Float(f64::NAN))]), "min_r2"),
        (opts(&[("min_r2", S("high".into()))]), "min_r2"),
        (opts(&[("max_step_milli", Integer(0))]), "max_step_milli"),
        (opts(&[("max_step_milli", Integer(1001))]), "max_step_milli"),
        (opts(&[("min_price", Integer(0))]), "min_price"),
        (opts(&[("min_price", S("-1".into()))]), "min_price"),
        (opts(&[("max_price", S("0.0000001".into()))]), "max_price"),
        (
            opts(&[("min_price", Integer(10)), ("max_price", Integer(5))]),
            "max_price",
        ),
        (
            opts(&[("min_interval_ms", Boolean(true))]),
            "min_interval_ms",
        ),
        (opts(&[("deadband_milli", Integer(100))]), "deadband_milli"),
        (opts(&[("explore", Integer(1))]), "explore"),
        (
            opts(&[
                ("explore", Boolean(true)),
                ("explore_step_milli", Integer(0)),
            ]),
            "explore_step_milli",
        ),
        (
            opts(&[
                ("explore", Boolean(true)),
                ("explore_step_milli", Integer(200)),
            ]),
            "explore_step_milli",
        ),
        (opts(&[("task_mflop", Integer(0))]), "task_mflop"),
        (opts(&[("horizon_ms", Integer(0))]), "horizon_ms"),
    ];
    for (options, key) in cases {
        let err: OptionError = MlConfig::parse_options(&options).unwrap_err();
        assert_eq!(err.key, key, "{err}");
        let text = MlBalancer::from_options(&options).unwrap_err();
        assert!(text.contains(&format!("`{key}`")), "{text}");
    }
    // explore_step_milli is only checked with explore on.
    assert!(MlConfig::from_options(&opts(&[("explore_step_milli", Integer(0))])).is_ok());
}

// ---- properties ----

proptest! {
    /// Whatever the market does, every proposal is within the bounds, and
    /// (from a market inside them) within one max step of the market.
    #[test]
    fn proposals_stay_bounded_and_stepped(
        seed in any::<u64>(),
        explore in any::<bool>(),
        max_step_milli in 20u64..=300,
        lo in 1u64..50,
        span in 1u64..50,
        start in 1u64..120,
        e_d in -2.0f64..0.5,
        e_s in -0.5f64..2.0,
        noise in 0.0f64..1.0,
    ) {
        let cfg = MlConfig {
            explore,
            max_step_milli,
            explore_step_milli: max_step_milli / 2,
            deadband_milli: 5,
            min_samples: 5,
            min_price: p(lo),
            max_price: p(lo + span),
            ..cfg()
        };
        let (min, max) = (cfg.min_price, cfg.max_price);
        let mut b = MlBalancer::new(cfg);
        let m = Market {
            demand_elasticity: e_d,
            supply_elasticity: e_s,
            p_star: (lo + span / 2) as f64,
            supply_scale: 1000.0,
        };
        let mut rng = Rng::new(seed);
        let mut market = p(start);
        for t in 0..80u64 {
            let s = m.market_sample(t * 1000, market, noise, &mut rng);
            if let Some(prop) = b.on_sample(&s) {
                prop_assert!(prop.price >= min && prop.price <= max, "{:?} outside [{}, {}]", prop, min, max);
                prop_assert_ne!(prop.price, market);
                if market >= min && market <= max {
                    let diff = u128::from(prop.price.micros().abs_diff(market.micros()));
                    let limit = (u128::from(market.micros()) * u128::from(max_step_milli) / 1000).max(1);
                    prop_assert!(diff <= limit + 1, "{} -> {} beyond {} per mille", market, prop.price, max_step_milli);
                }
                // Commit about half the time, deterministically.
                if rng.next_u64().is_multiple_of(2) {
                    market = prop.price;
                    b.on_commit(market);
                }
            }
        }
    }
}

proptest! {
    /// Probes (never committed, so the market stays at the anchor) stay
    /// within the bounds and within the probe cap of the anchor, and go up
    /// and down in turn whenever the bounds leave room on both sides.
    #[test]
    fn probes_are_bounded_and_alternate(
        anchor in 1_000u64..100_000_000,
        below in 0u64..200,
        above in 0u64..200,
        max_step_milli in 20u64..=500,
        step_frac in 1u64..=100,
    ) {
        let cap = lppsp_balancer_ml::max_probe_milli(max_step_milli);
        let explore_step_milli = (cap * step_frac / 100).max(1);
        // Bounds `below` and `above` per mille away from the anchor.
        let min = Price::from_micros(anchor - anchor * below.min(999) / 1000);
        let max = Price::from_micros(anchor + anchor * above / 1000);
        let mut b = MlBalancer::new(MlConfig {
            explore: true,
            min_samples: 3,
            max_step_milli,
            explore_step_milli,
            deadband_milli: 0,
            min_price: min,
            max_price: max,
            ..cfg()
        });
        let a = Price::from_micros(anchor);
        let mut ups = Vec::new();
        for t in 0..40u64 {
            if let Some(prop) = b.on_sample(&ms(t * 1000, a, 100, 100)) {
                prop_assert!(prop.price >= min && prop.price <= max);
                prop_assert_ne!(prop.price, a);
                let diff = u128::from(prop.price.micros().abs_diff(anchor));
                prop_assert!(diff * 1000 <= u128::from(anchor) * u128::from(cap) + 1000);
                ups.push(prop.price > a);
            }
        }
        let room = below.min(999) > cap && above > cap;
        if room {
            prop_assert_eq!(ups.len(), 38);
            for (k, up) in ups.iter().enumerate() {
                prop_assert_eq!(*up, k % 2 == 0);
            }
        }
    }
}

#[test]
fn unit_is_a_micro_million() {
    // The tests build prices from floats; keep the scale honest.
    assert_eq!(UNIT, 1_000_000);
    assert_eq!(price(5.5), Price::from_micros(5_500_000));
}
