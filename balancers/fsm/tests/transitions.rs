//! The transition table of docs/balancers-fsm.md, one test per row (the
//! test is named after the row), then the defaults, decay, and determinism.

use lppsp_balancer_fsm::{FsmBalancer, FsmConfig, State, NAME};
use lppsp_core::component::{Balancer, MarketSample, PriceProposal};
use lppsp_core::money::{Price, UNIT};
use lppsp_core::registry::Options;
use proptest::prelude::*;

/// The default window, 5 minutes.
const W: u64 = 300_000;
/// The default threshold, pressure 2.0.
const T: u64 = 2000;

fn units(n: u64) -> Price {
    Price::from_units(n).unwrap()
}

fn sample(at_ms: u64, price: u64, pressure_milli: u64) -> MarketSample {
    MarketSample {
        at_ms,
        price: units(price),
        pressure_milli,
        demand_tasks: 0,
        supply_mflops: 0,
        nodes: 1,
    }
}

fn fsm() -> FsmBalancer {
    FsmBalancer::new(FsmConfig::default())
}

fn decaying() -> FsmBalancer {
    FsmBalancer::new(FsmConfig {
        decay: true,
        ..FsmConfig::default()
    })
}

fn proposed(p: Option<PriceProposal>) -> Price {
    p.expect("a proposal").price
}

fn is_armed_idle(b: &FsmBalancer) -> bool {
    matches!(b.state(), State::Idle { armed: true, .. })
}

fn is_resting(b: &FsmBalancer) -> bool {
    matches!(b.state(), State::Idle { armed: false, .. })
}

/// Starts an episode at t=0 (price 10, pressure `p0`) and commits the raise
/// to 11: the balancer is in its main window, raise done.
fn committed_episode(p0: u64) -> FsmBalancer {
    let mut b = fsm();
    assert_eq!(proposed(b.on_sample(&sample(0, 10, p0))), units(11));
    b.on_commit(units(11));
    // The next sample dates the commit: the window runs from t=0.
    assert_eq!(b.on_sample(&sample(0, 11, p0)), None);
    assert!(matches!(
        b.state(),
        State::Observing {
            awaiting: None,
            extra: false,
            ..
        }
    ));
    b
}

/// As [`committed_episode`] with P0 = 2.0, then an r = 0.55 window at t=W:
/// the balancer is in its extra window (price 11).
fn extra_window() -> FsmBalancer {
    let mut b = committed_episode(2000);
    assert_eq!(b.on_sample(&sample(W, 11, 1100)), None);
    assert!(matches!(
        b.state(),
        State::Observing {
            extra: true,
            since_ms: W,
            ..
        }
    ));
    b
}

/// An episode stopped at t=W with pressure still above the threshold
/// (P0 5.0, P 2.5, r = 0.5): the balancer is resting.
fn rested() -> FsmBalancer {
    let mut b = committed_episode(5000);
    assert_eq!(b.on_sample(&sample(W, 11, 2500)), None);
    assert!(is_resting(&b));
    b
}

// ---- Row 1 -------------------------------------------------------------

#[test]
fn idle_below_threshold_stays_idle() {
    let mut b = fsm();
    for (i, p) in [0, 500, 1999, 1000, T - 1].into_iter().enumerate() {
        assert_eq!(b.on_sample(&sample(i as u64 * W, 10, p)), None);
        assert!(is_armed_idle(&b));
    }
}

// ---- Row 2 -------------------------------------------------------------

#[test]
fn idle_at_threshold_starts_episode() {
    let mut b = fsm();
    assert_eq!(b.on_sample(&sample(0, 10, 1500)), None);
    // Exactly at the threshold counts ("at or above").
    let p = b.on_sample(&sample(1000, 10, T)).expect("a raise");
    assert_eq!(p.price, units(11));
    assert!(
        p.evidence.contains("pressure 2.0 >= threshold 2.0"),
        "{}",
        p.evidence
    );
    assert!(p.evidence.contains("raise 10 -> 11"), "{}", p.evidence);
    assert!(p.evidence.contains("window 300s"), "{}", p.evidence);
    assert_eq!(
        b.state(),
        State::Observing {
            since_ms: 1000,
            p0_milli: T,
            extra: false,
            awaiting: Some(units(11)),
            raises: 1,
        }
    );
    // The step is one whole unit, also from a fractional price.
    let mut b = fsm();
    let s = MarketSample {
        price: "2.5".parse().unwrap(),
        ..sample(0, 0, 2400)
    };
    assert_eq!(proposed(b.on_sample(&s)), "3.5".parse().unwrap());
}

// ---- Row 3 -------------------------------------------------------------

#[test]
fn resting_below_threshold_rearms() {
    let mut b = rested();
    assert_eq!(b.on_sample(&sample(W + 1000, 11, T - 1)), None);
    assert!(is_armed_idle(&b));
    // A new surge right after the dip starts a new episode at once.
    let p = b.on_sample(&sample(W + 2000, 11, 2600)).expect("a raise");
    assert_eq!(p.price, units(12));
    assert!(matches!(
        b.state(),
        State::Observing {
            p0_milli: 2600,
            raises: 1,
            ..
        }
    ));
}

// ---- Row 4 -------------------------------------------------------------

#[test]
fn resting_at_threshold_waits() {
    // P0 = 5.0 halved to 2.5: stopped, yet still above the threshold.
    let mut b = rested();
    for t in [W + 1, W + 60_000, 2 * W - 1] {
        assert_eq!(b.on_sample(&sample(t, 11, 2500)), None);
        assert!(is_resting(&b), "at {t}");
    }
}

// ---- Row 5 -------------------------------------------------------------

#[test]
fn resting_after_a_window_starts_episode() {
    let mut b = rested();
    assert_eq!(b.on_sample(&sample(W + 1, 11, 2500)), None);
    let p = b.on_sample(&sample(2 * W, 11, 2500)).expect("a raise");
    assert_eq!(p.price, units(12));
    assert_eq!(
        b.state(),
        State::Observing {
            since_ms: 2 * W,
            p0_milli: 2500,
            extra: false,
            awaiting: Some(units(12)),
            raises: 1,
        }
    );
}

// ---- Row 6 -------------------------------------------------------------

#[test]
fn window_open_waits() {
    // Main window: whatever the pressure, nothing happens before it ends.
    let mut b = committed_episode(2000);
    let before = b.state();
    for (t, p) in [(1, 0), (W / 2, 100_000), (W - 1, 1000)] {
        assert_eq!(b.on_sample(&sample(t, 11, p)), None);
        assert_eq!(b.state(), before);
    }
    // Extra window likewise.
    let mut b = extra_window();
    let before = b.state();
    for (t, p) in [(W + 1, 0), (2 * W - 1, 9000)] {
        assert_eq!(b.on_sample(&sample(t, 11, p)), None);
        assert_eq!(b.state(), before);
    }
    // A clock that goes backwards only delays the decision.
    let mut b = committed_episode(2000);
    b.on_sample(&sample(100, 11, 2000));
    let before = b.state();
    assert_eq!(b.on_sample(&sample(0, 11, 2000)), None);
    assert_eq!(b.state(), before);
}

// ---- Row 7 -------------------------------------------------------------

#[test]
fn uncommitted_raise_retried() {
    let mut b = fsm();
    assert_eq!(proposed(b.on_sample(&sample(0, 10, 2400))), units(11));
    // No commit: the price in the samples stays at 10.
    assert_eq!(b.on_sample(&sample(W - 1, 10, 2400)), None);
    let p = b.on_sample(&sample(W, 10, 2100)).expect("a retry");
    assert_eq!(p.price, units(11));
    assert!(p.evidence.contains("not committed"), "{}", p.evidence);
    assert!(
        p.evidence.contains("propose again 10 -> 11"),
        "{}",
        p.evidence
    );
    // P0 stays the original pressure; a retry is not a new raise.
    assert_eq!(
        b.state(),
        State::Observing {
            since_ms: W,
            p0_milli: 2400,
            extra: false,
            awaiting: Some(units(11)),
            raises: 1,
        }
    );
    // At most one retry per window.
    assert_eq!(b.on_sample(&sample(W + 1, 10, 2400)), None);
}

// ---- Row 8 -------------------------------------------------------------

#[test]
fn uncommitted_raise_abandoned() {
    let mut b = fsm();
    assert_eq!(proposed(b.on_sample(&sample(0, 10, 2400))), units(11));
    assert_eq!(b.on_sample(&sample(W, 10, T - 1)), None);
    assert!(is_armed_idle(&b));
    // Armed: a later surge starts a new episode at once.
    assert_eq!(proposed(b.on_sample(&sample(W + 1, 10, T))), units(11));
}

// ---- Row 9 -------------------------------------------------------------

#[test]
fn window_r_at_most_half_stops() {
    // r = 0.5 exactly, pressure now below the threshold: armed at once.
    let mut b = committed_episode(2000);
    assert_eq!(b.on_sample(&sample(W, 11, 1000)), None);
    assert_eq!(
        b.state(),
        State::Idle {
            armed: true,
            stopped_at_ms: W,
            calm_since_ms: None,
        }
    );
    // r well below 0.5.
    let mut b = committed_episode(2000);
    assert_eq!(b.on_sample(&sample(W, 11, 0)), None);
    assert!(is_armed_idle(&b));
    // r = 0.5 with pressure still at or above the threshold: resting.
    let mut b = committed_episode(4000);
    assert_eq!(b.on_sample(&sample(W, 11, 2000)), None);
    assert_eq!(
        b.state(),
        State::Idle {
            armed: false,
            stopped_at_ms: W,
            calm_since_ms: None,
        }
    );
}

// ---- Row 10 ------------------------------------------------------------

#[test]
fn window_r_to_60_percent_observes_extra_window() {
    // r = 0.6 exactly, and just above 0.5.
    for p in [1200, 1001] {
        let mut b = committed_episode(2000);
        assert_eq!(b.on_sample(&sample(W, 11, p)), None, "pressure {p}");
        assert_eq!(
            b.state(),
            State::Observing {
                since_ms: W,
                p0_milli: 2000,
                extra: true,
                awaiting: None,
                raises: 1,
            }
        );
    }
}

// ---- Row 11 ------------------------------------------------------------

#[test]
fn window_r_to_80_percent_raises() {
    // r = 0.8 exactly (the RFC's "drops to 80%"), and just above 0.6.
    for p in [1600, 1201] {
        let mut b = committed_episode(2000);
        let prop = b.on_sample(&sample(W, 11, p)).expect("a raise");
        assert_eq!(prop.price, units(12));
        assert!(prop.evidence.contains("in (0.6, 0.8]"), "{}", prop.evidence);
        assert!(prop.evidence.contains("P0 2.0"), "{}", prop.evidence);
        assert_eq!(
            b.state(),
            State::Observing {
                since_ms: W,
                p0_milli: 2000,
                extra: false,
                awaiting: Some(units(12)),
                raises: 2,
            }
        );
    }
}

// ---- Row 12 ------------------------------------------------------------

#[test]
fn window_r_above_80_percent_raises() {
    // Just above 0.8, no change, and a rise: all raise, P0 kept.
    for p in [1601, 2000, 5000] {
        let mut b = committed_episode(2000);
        let prop = b.on_sample(&sample(W, 11, p)).expect("a raise");
        assert_eq!(prop.price, units(12));
        assert!(prop.evidence.contains("> 0.8"), "{}", prop.evidence);
        assert!(matches!(
            b.state(),
            State::Observing {
                p0_milli: 2000,
                extra: false,
                raises: 2,
                ..
            }
        ));
    }
    // The evidence reads like the brief's example.
    let mut b = committed_episode(2400);
    let prop = b.on_sample(&sample(W, 11, 2000)).unwrap();
    assert!(
        prop.evidence
            .starts_with("pressure 2.0 after window 300s; P0 2.4; r=0.833 > 0.8; raise 11 -> 12"),
        "{}",
        prop.evidence
    );
}

// ---- Row 13 ------------------------------------------------------------

#[test]
fn extra_window_r_at_most_half_stops() {
    // P0 2.0; r = 0.5 compares with P0, not with the 0.55 of the window
    // before ("50% of the previous state" read as the original state).
    let mut b = extra_window();
    assert_eq!(b.on_sample(&sample(2 * W, 11, 1000)), None);
    assert_eq!(
        b.state(),
        State::Idle {
            armed: true,
            stopped_at_ms: 2 * W,
            calm_since_ms: None,
        }
    );
    // P0 5.0: extra window at 2.75 (r = 0.55), stop at 2.5 (r = 0.5) with
    // pressure still above the threshold: resting.
    let mut b = committed_episode(5000);
    assert_eq!(b.on_sample(&sample(W, 11, 2750)), None);
    assert!(matches!(b.state(), State::Observing { extra: true, .. }));
    assert_eq!(b.on_sample(&sample(2 * W, 11, 2500)), None);
    assert_eq!(
        b.state(),
        State::Idle {
            armed: false,
            stopped_at_ms: 2 * W,
            calm_since_ms: None,
        }
    );
}

// ---- Row 14 ------------------------------------------------------------

#[test]
fn extra_window_r_above_half_raises() {
    // Still in (0.5, 0.6]: no second extra window, raise.
    for p in [1001, 1200, 3000] {
        let mut b = extra_window();
        let prop = b.on_sample(&sample(2 * W, 11, p)).expect("a raise");
        assert_eq!(prop.price, units(12));
        assert!(prop.evidence.contains("extra window"), "{}", prop.evidence);
        assert_eq!(
            b.state(),
            State::Observing {
                since_ms: 2 * W,
                p0_milli: 2000,
                extra: false,
                awaiting: Some(units(12)),
                raises: 2,
            }
        );
    }
}

// ---- Row 15 ------------------------------------------------------------

#[test]
fn raise_at_maximum_price_stops() {
    let top = Price::from_micros(u64::MAX);
    let mut b = fsm();
    let s = MarketSample {
        price: top,
        ..sample(0, 0, 5000)
    };
    assert_eq!(b.on_sample(&s), None);
    assert!(is_resting(&b));
    // And it does not try again on every sample.
    let s = MarketSample {
        price: top,
        ..sample(1, 0, 5000)
    };
    assert_eq!(b.on_sample(&s), None);
    assert!(is_resting(&b));
    // Mid-episode likewise (the market moved near the top at t=0).
    let mut b = committed_episode(2000);
    let near_top = |at_ms| MarketSample {
        price: Price::from_micros(u64::MAX - UNIT + 1),
        ..sample(at_ms, 0, 2000)
    };
    assert_eq!(b.on_sample(&near_top(0)), None);
    assert_eq!(b.on_sample(&near_top(W)), None);
    assert!(is_resting(&b));
}

// ---- Row 16 ------------------------------------------------------------

#[test]
fn commit_at_or_above_target_counts_as_raise() {
    // Another proposer's higher commit counts as our raise.
    let mut b = fsm();
    assert_eq!(proposed(b.on_sample(&sample(0, 10, 2400))), units(11));
    b.on_commit(units(13));
    assert!(matches!(b.state(), State::Observing { awaiting: None, .. }));
    assert_eq!(b.market(), Some(units(13)));
    assert_eq!(b.on_sample(&sample(0, 13, 2400)), None);
    // So the window is judged on r, and the next raise is from 13.
    assert_eq!(proposed(b.on_sample(&sample(W, 13, 2400))), units(14));

    // A sample that already shows the price counts as the commit too.
    let mut b = fsm();
    b.on_sample(&sample(0, 10, 2400));
    b.on_sample(&sample(1000, 11, 2400));
    assert!(matches!(b.state(), State::Observing { awaiting: None, .. }));
}

// ---- Row 17 ------------------------------------------------------------

#[test]
fn commit_below_target_keeps_waiting() {
    let mut b = fsm();
    assert_eq!(proposed(b.on_sample(&sample(0, 10, 2400))), units(11));
    b.on_commit(units(9));
    assert_eq!(b.market(), Some(units(9)));
    assert_eq!(b.on_sample(&sample(0, 9, 2400)), None);
    assert!(matches!(
        b.state(),
        State::Observing {
            awaiting: Some(p),
            ..
        } if p == units(11)
    ));
    // The window ends uncommitted: retried from the market as it now is.
    let p = b.on_sample(&sample(W, 9, 2400)).expect("a retry");
    assert_eq!(p.price, units(10));
}

// ---- Row 18 ------------------------------------------------------------

#[test]
fn commit_while_idle_moves_market() {
    let mut b = fsm();
    b.on_sample(&sample(0, 10, 500));
    b.on_commit(units(12));
    assert_eq!(b.market(), Some(units(12)));
    assert!(is_armed_idle(&b));
    assert!(b.describe().contains("market 12"), "{}", b.describe());
}

// ---- Rows 22-24: many nodes, one step per window -----------------------

#[test]
fn another_nodes_raise_restarts_the_window() {
    // Row 22: observing (raise committed at t=0); at W/2 another node's
    // raise to 12 commits. Our window now runs from W/2.
    let mut b = committed_episode(2400);
    b.on_commit(units(12));
    assert_eq!(b.on_sample(&sample(W / 2, 12, 2400)), None);
    assert!(matches!(
        b.state(),
        State::Observing { since_ms, awaiting: None, extra: false, .. } if since_ms == W / 2
    ));
    assert_eq!(b.on_sample(&sample(W, 12, 2400)), None);
    assert_eq!(b.on_sample(&sample(W / 2 + W - 1, 12, 2400)), None);
    assert_eq!(
        proposed(b.on_sample(&sample(W / 2 + W, 12, 2400))),
        units(13)
    );
    // A move seen only in a sample's price counts the same.
    let mut b = committed_episode(2400);
    assert_eq!(b.on_sample(&sample(W / 2, 12, 2400)), None);
    assert_eq!(b.on_sample(&sample(W, 12, 2400)), None);
    assert_eq!(b.last_move_ms(), Some(W / 2));
}

#[test]
fn an_idle_node_under_pressure_joins_the_pools_episode() {
    // Row 23: idle, then another node's raise commits while pressure is
    // at the threshold: observe from the move with this pressure as P0,
    // instead of raising again on the next sample.
    let mut b = fsm();
    assert_eq!(b.on_sample(&sample(0, 10, 1000)), None);
    b.on_commit(units(11));
    assert_eq!(b.on_sample(&sample(100, 11, 2400)), None);
    assert!(matches!(
        b.state(),
        State::Observing {
            since_ms: 100,
            p0_milli: 2400,
            awaiting: None,
            ..
        }
    ));
    assert_eq!(b.on_sample(&sample(W + 99, 11, 2400)), None);
    assert_eq!(proposed(b.on_sample(&sample(W + 100, 11, 2400))), units(12));
}

#[test]
fn an_idle_node_holds_a_new_episode_for_a_window_after_a_move() {
    // Row 24: idle below the threshold when the pool moved; pressure then
    // reaches it. The move was this window's step: no raise before W.
    let mut b = fsm();
    assert_eq!(b.on_sample(&sample(0, 10, 1000)), None);
    b.on_commit(units(11));
    assert_eq!(b.on_sample(&sample(100, 11, 1000)), None);
    assert!(is_armed_idle(&b));
    assert_eq!(b.on_sample(&sample(200, 11, 3000)), None);
    assert!(
        b.describe().contains("the pool's last move"),
        "{}",
        b.describe()
    );
    assert_eq!(b.on_sample(&sample(W + 99, 11, 3000)), None);
    assert_eq!(proposed(b.on_sample(&sample(W + 100, 11, 3000))), units(12));
}

// ---- Row 19 ------------------------------------------------------------

#[test]
fn decay_lowers_after_a_calm_window() {
    let mut b = decaying();
    assert_eq!(b.on_sample(&sample(0, 10, 400)), None);
    assert_eq!(b.on_sample(&sample(W - 1, 10, 999)), None);
    let p = b.on_sample(&sample(W, 10, 400)).expect("a decay");
    assert_eq!(p.price, units(9));
    assert!(p.evidence.contains("decay 10 -> 9"), "{}", p.evidence);
    assert_eq!(
        b.state(),
        State::Idle {
            armed: true,
            stopped_at_ms: 0,
            calm_since_ms: Some(W),
        }
    );
    // One step per window: nothing until another window has passed since
    // the move, which the sample at W + 1 dates.
    assert_eq!(b.on_sample(&sample(W + 1, 9, 400)), None);
    assert_eq!(b.on_sample(&sample(2 * W, 9, 400)), None);
    assert_eq!(proposed(b.on_sample(&sample(2 * W + 1, 9, 400))), units(8));
    // The floor is reached, not crossed, from a fractional price.
    let mut b = decaying();
    let s = |at_ms| MarketSample {
        price: "1.5".parse().unwrap(),
        ..sample(at_ms, 0, 0)
    };
    b.on_sample(&s(0));
    assert_eq!(proposed(b.on_sample(&s(W))), units(1));
}

// ---- Row 20 ------------------------------------------------------------

#[test]
fn decay_at_floor_proposes_nothing() {
    let mut b = decaying();
    for (t, price) in [(0, 1), (W, 1), (2 * W, 0), (3 * W, 1)] {
        assert_eq!(b.on_sample(&sample(t, price, 0)), None, "at {t}");
    }
    assert!(matches!(
        b.state(),
        State::Idle {
            calm_since_ms: Some(t),
            ..
        } if t == 3 * W
    ));
}

// ---- Row 21 ------------------------------------------------------------

#[test]
fn decay_timer_restarts_when_pressure_rises() {
    let mut b = decaying();
    assert_eq!(b.on_sample(&sample(0, 10, 400)), None);
    // Between decay_below (1.0) and the threshold (2.0): not calm.
    assert_eq!(b.on_sample(&sample(W / 2, 10, 1000)), None);
    assert!(matches!(
        b.state(),
        State::Idle {
            calm_since_ms: None,
            armed: true,
            ..
        }
    ));
    assert_eq!(b.on_sample(&sample(W / 2 + 1, 10, 400)), None);
    assert_eq!(b.on_sample(&sample(W, 10, 400)), None);
    assert_eq!(
        proposed(b.on_sample(&sample(W / 2 + 1 + W, 10, 400))),
        units(9)
    );
    // An episode clears the calm timer too.
    let mut b = decaying();
    b.on_sample(&sample(0, 10, 400));
    b.on_sample(&sample(1, 10, 3000));
    b.on_commit(units(11));
    b.on_sample(&sample(1, 11, 3000));
    assert_eq!(b.on_sample(&sample(W + 1, 11, 0)), None); // r <= 0.5: stop
    assert_eq!(b.on_sample(&sample(W + 2, 11, 0)), None); // calm from here
    assert_eq!(b.on_sample(&sample(2 * W + 1, 11, 0)), None);
    assert_eq!(proposed(b.on_sample(&sample(2 * W + 2, 11, 0))), units(10));
}

// ---- Whole episodes ----------------------------------------------------

/// The RFC's walk-through: raise, keep raising at 80%, extra window at 60%,
/// then a final raise and a stop at 50%.
#[test]
fn a_full_episode() {
    let mut b = fsm();
    let mut price = 10;
    let mut t = 0;
    let step = |b: &mut FsmBalancer, t: u64, price: &mut u64, pressure| {
        let out = b.on_sample(&sample(t, *price, pressure));
        if let Some(p) = &out {
            b.on_commit(p.price);
            *price = p.price.micros() / UNIT;
            // Committed at once: the next sample, same time, dates it.
            assert_eq!(b.on_sample(&sample(t, *price, pressure)), None);
        }
        out.map(|p| p.price.micros() / UNIT)
    };
    assert_eq!(step(&mut b, t, &mut price, 3000), Some(11)); // P0 = 3.0
    t += W;
    assert_eq!(step(&mut b, t, &mut price, 2400), Some(12)); // r = 0.8
    t += W;
    assert_eq!(step(&mut b, t, &mut price, 1800), None); // r = 0.6: extra
    t += W;
    assert_eq!(step(&mut b, t, &mut price, 1650), Some(13)); // r = 0.55
    t += W;
    assert_eq!(step(&mut b, t, &mut price, 1500), None); // r = 0.5: stop
    assert!(is_armed_idle(&b)); // 1.5 is below the threshold
    t += 1;
    assert_eq!(step(&mut b, t, &mut price, 900), None);
    assert!(is_armed_idle(&b));
}

// ---- Defaults, options, describe ---------------------------------------

#[test]
fn default_never_lowers_the_price() {
    let mut b = fsm();
    assert!(!b.config().decay);
    for i in 0..100 {
        assert_eq!(b.on_sample(&sample(i * W / 3, 50, 0)), None);
    }
    // Not after an episode either.
    let mut b = committed_episode(4000);
    b.on_sample(&sample(W, 11, 0));
    for i in 1..50 {
        assert_eq!(b.on_sample(&sample(W + i * W, 11, 0)), None);
    }
}

#[test]
fn built_from_options_by_the_registry_factory() {
    let mut options = Options::new();
    options.insert("window_ms".into(), toml::Value::Integer(60_000));
    options.insert("threshold_milli".into(), toml::Value::Integer(1500));
    let mut b = FsmBalancer::build(&options).unwrap();
    assert_eq!(b.name(), NAME);
    assert_eq!(proposed(b.on_sample(&sample(0, 3, 1500))), units(4));
    b.on_commit(units(4));
    assert_eq!(b.on_sample(&sample(0, 4, 1500)), None);
    assert_eq!(b.on_sample(&sample(59_999, 4, 1500)), None);
    assert_eq!(proposed(b.on_sample(&sample(60_000, 4, 1500))), units(5));

    options.insert("window".into(), toml::Value::Integer(1));
    let err = FsmBalancer::build(&options).err().expect("an error");
    assert!(err.contains("`window`"), "{err}");
}

#[test]
fn describe_is_one_line_per_state() {
    let mut b = fsm();
    let lines = [
        b.describe(),
        {
            b.on_sample(&sample(0, 10, 5000));
            b.describe()
        },
        {
            b.on_commit(units(11));
            b.on_sample(&sample(0, 11, 5000));
            b.on_sample(&sample(W, 11, 2750));
            b.describe()
        },
        {
            b.on_sample(&sample(2 * W, 11, 2500));
            b.describe()
        },
    ];
    for line in &lines {
        assert!(line.starts_with("fsm: "), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }
    assert!(lines[0].contains("idle"), "{}", lines[0]);
    assert!(lines[1].contains("awaiting commit"), "{}", lines[1]);
    assert!(lines[2].contains("extra window"), "{}", lines[2]);
    assert!(lines[3].contains("resting"), "{}", lines[3]);
}

// ---- Properties --------------------------------------------------------

/// One input to the balancer: a sample `dt` ms after the previous one, or
/// a commit of the last proposal (or of some other price).
#[derive(Debug, Clone)]
enum Input {
    Sample { dt: u64, pressure: u64 },
    CommitLast,
    CommitOther(u64),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (0..W, 0u64..6000).prop_map(|(dt, pressure)| Input::Sample { dt, pressure }),
        2 => Just(Input::CommitLast),
        1 => (0u64..30).prop_map(Input::CommitOther),
    ]
}

/// Drives a balancer; returns (at_ms, market before, proposal) per proposal.
fn run(cfg: &FsmConfig, inputs: &[Input]) -> Vec<(u64, Price, PriceProposal)> {
    let mut b = FsmBalancer::new(cfg.clone());
    let mut t = 0;
    let mut market = units(10);
    let mut last = None;
    let mut out = Vec::new();
    for i in inputs {
        match i {
            Input::Sample { dt, pressure } => {
                t += dt;
                let s = MarketSample {
                    price: market,
                    ..sample(t, 0, *pressure)
                };
                if let Some(p) = b.on_sample(&s) {
                    last = Some(p.price);
                    out.push((t, market, p));
                }
            }
            Input::CommitLast => {
                if let Some(p) = last.take() {
                    market = p;
                    b.on_commit(p);
                }
            }
            Input::CommitOther(n) => {
                market = units(*n);
                b.on_commit(market);
            }
        }
        let d = b.describe();
        assert!(!d.contains('\n'));
    }
    out
}

proptest! {
    #[test]
    fn same_samples_give_same_proposals(
        inputs in proptest::collection::vec(input(), 0..200),
        decay in any::<bool>(),
    ) {
        let cfg = FsmConfig { decay, ..FsmConfig::default() };
        let a = run(&cfg, &inputs);
        let b = run(&cfg, &inputs);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn without_decay_only_raises_by_one_at_most_once_a_window(
        inputs in proptest::collection::vec(input(), 0..200),
    ) {
        let out = run(&FsmConfig::default(), &inputs);
        let mut prev: Option<u64> = None;
        for (t, market, p) in out {
            prop_assert_eq!(Some(p.price), market.plus_one());
            if let Some(prev) = prev {
                prop_assert!(t - prev >= W, "proposals at {} and {}", prev, t);
            }
            prev = Some(t);
        }
    }

    #[test]
    fn with_decay_lowers_by_one_never_below_floor(
        inputs in proptest::collection::vec(input(), 0..200),
    ) {
        let cfg = FsmConfig { decay: true, ..FsmConfig::default() };
        for (_, market, p) in run(&cfg, &inputs) {
            if p.price < market {
                prop_assert!(p.price >= cfg.floor);
                prop_assert!(market.micros() - p.price.micros() <= UNIT);
            } else {
                prop_assert_eq!(Some(p.price), market.plus_one());
            }
        }
    }
}

/// Five nodes, each running its own balancer on the same pressure, each
/// sampling at its own moments; a round commits the first proposal made on
/// the price in force, and the commit reaches each node either at once or
/// only through its next sample. However the nodes interleave, the pool's
/// price moves one unit at a time and at most once per window.
fn pool_of_five(steps: &[(u64, u64, Vec<u8>, u8)]) -> Vec<(u64, Price)> {
    let mut nodes: Vec<FsmBalancer> = (0..5).map(|_| fsm()).collect();
    // The node's own market tells its balancer of every commit, at once or
    // just before its next sample (as the runtime does, whichever comes first).
    let mut untold: Vec<Option<Price>> = vec![None; 5];
    let mut market = units(10);
    let mut t = 0;
    let mut commits: Vec<(u64, Price)> = Vec::new();
    for (dt, pressure, order, told) in steps {
        t += dt;
        for &i in order {
            let i = usize::from(i % 5);
            let node = &mut nodes[i];
            if let Some(c) = untold[i].take() {
                node.on_commit(c);
            }
            let Some(p) = node.on_sample(&sample(t, 0, *pressure).with_price(market)) else {
                continue;
            };
            // A round on the price in force commits; one made on a price
            // that has since moved is refused by the voters.
            if Some(p.price) == market.plus_one() || p.price < market {
                market = p.price;
                commits.push((t, market));
                for (j, n) in nodes.iter_mut().enumerate() {
                    if told & (1 << j) != 0 {
                        n.on_commit(market);
                    } else {
                        untold[j] = Some(market);
                    }
                }
            }
        }
    }
    commits
}

trait WithPrice {
    fn with_price(self, price: Price) -> Self;
}

impl WithPrice for MarketSample {
    fn with_price(self, price: Price) -> Self {
        MarketSample { price, ..self }
    }
}

proptest! {
    #[test]
    fn five_nodes_move_the_price_one_step_per_window(
        steps in proptest::collection::vec(
            (0..W / 3, 0u64..6000, proptest::collection::vec(0u8..5, 1..8), any::<u8>()),
            0..300,
        ),
    ) {
        let commits = pool_of_five(&steps);
        let mut prev: Option<(u64, Price)> = None;
        for (t, price) in commits {
            if let Some((pt, pp)) = prev {
                prop_assert_eq!(Some(price), pp.plus_one(), "one unit per step");
                prop_assert!(t - pt >= W, "moves at {} and {}", pt, t);
            }
            prev = Some((t, price));
        }
    }
}

#[test]
fn same_sequence_replayed_is_identical() {
    let seq: Vec<(u64, u64, u64)> = vec![
        (0, 10, 100),
        (1000, 10, 2500),
        (W + 1000, 11, 2300),
        (2 * W + 1000, 12, 1400),
        (3 * W + 1000, 12, 1300),
        (4 * W + 1000, 13, 500),
        (4 * W + 2000, 13, 3000),
    ];
    let go = || {
        let mut b = fsm();
        let mut out = Vec::new();
        for &(t, price, p) in &seq {
            let prop = b.on_sample(&sample(t, price, p));
            if let Some(prop) = &prop {
                b.on_commit(prop.price);
                let at = prop.price.micros() / UNIT;
                assert_eq!(b.on_sample(&sample(t, at, p)), None);
            }
            out.push((prop, b.describe()));
        }
        out
    };
    let first = go();
    assert_eq!(first, go());
    let prices: Vec<_> = first
        .iter()
        .filter_map(|(p, _)| p.as_ref().map(|p| p.price))
        .collect();
    assert_eq!(prices, vec![units(11), units(12), units(13), units(14)]);
}
