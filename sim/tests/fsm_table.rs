//! The FSM balancer's decisions in a simulated run agree with its
//! transition table (docs/balancers-fsm.md): every sample and commit the
//! traced node's balancer saw is replayed through the table, written here
//! row by row from the document, and each proposal must be the one the
//! table gives.

mod common;

use std::collections::BTreeSet;

use lppsp_core::component::MarketSample;
use lppsp_core::money::{Price, UNIT};
use lppsp_sim::TraceEvent;

#[derive(Debug, Clone, Copy)]
enum State {
    Idle {
        armed: bool,
        stopped_at: u64,
        calm_since: Option<u64>,
    },
    Observing {
        since: u64,
        p0: u64,
        extra: bool,
        awaiting: Option<Price>,
    },
}

/// The table's parameters (the scenario's fsm options).
struct Table {
    t: u64,
    w: u64,
    decay: bool,
    d: u64,
    floor: Price,
}

/// `P <= bound * P0` with bound in thousandths.
fn at_most(p: u64, p0: u64, bound_milli: u64) -> bool {
    u128::from(p) * 1000 <= u128::from(bound_milli) * u128::from(p0)
}

impl Table {
    /// Rows 2, 5, 7, 11, 12, 14 and 15: propose M + 1.
    fn raise(&self, s: &MarketSample, p0: u64, row: u32) -> (State, Option<Price>, u32) {
        match s.price.plus_one() {
            Some(target) => (
                State::Observing {
                    since: s.at_ms,
                    p0,
                    extra: false,
                    awaiting: Some(target),
                },
                Some(target),
                row,
            ),
            None => (self.stop(s), None, 15),
        }
    }

    fn stop(&self, s: &MarketSample) -> State {
        State::Idle {
            armed: s.pressure_milli < self.t,
            stopped_at: s.at_ms,
            calm_since: None,
        }
    }

    /// Rows 22 and 23, and the calm timer of row 24: the committed price
    /// moved before sample `s`, which dates the move.
    fn moved(&self, state: State, s: &MarketSample) -> State {
        let t = s.at_ms;
        match state {
            State::Observing { p0, awaiting, .. } => State::Observing {
                since: t,
                p0,
                extra: false,
                awaiting,
            },
            State::Idle { .. } if s.pressure_milli >= self.t => State::Observing {
                since: t,
                p0: s.pressure_milli,
                extra: false,
                awaiting: None,
            },
            State::Idle {
                armed,
                stopped_at,
                calm_since,
            } => State::Idle {
                armed,
                stopped_at,
                calm_since: calm_since.map(|_| t),
            },
        }
    }

    /// One sample: (next state, proposal, row applied). `last_move` is
    /// when the price last moved.
    fn sample(
        &self,
        state: State,
        s: &MarketSample,
        last_move: Option<u64>,
    ) -> (State, Option<Price>, u32) {
        let (p, t, m) = (s.pressure_milli, s.at_ms, s.price);
        match state {
            State::Idle {
                armed,
                stopped_at,
                calm_since,
            } => {
                if p >= self.t {
                    if last_move.is_some_and(|at| t.saturating_sub(at) < self.w) {
                        let next = State::Idle {
                            armed,
                            stopped_at,
                            calm_since: None,
                        };
                        return (next, None, 24);
                    }
                    if armed {
                        return self.raise(s, p, 2);
                    }
                    if t.saturating_sub(stopped_at) >= self.w {
                        return self.raise(s, p, 5);
                    }
                    let next = State::Idle {
                        armed: false,
                        stopped_at,
                        calm_since: None,
                    };
                    return (next, None, 4);
                }
                let row = if armed { 1 } else { 3 };
                if !(self.decay && p < self.d) {
                    let next = State::Idle {
                        armed: true,
                        stopped_at,
                        calm_since: None,
                    };
                    return (next, None, if self.decay { 21 } else { row });
                }
                let since = calm_since.unwrap_or(t);
                if t.saturating_sub(since) < self.w {
                    let next = State::Idle {
                        armed: true,
                        stopped_at,
                        calm_since: Some(since),
                    };
                    return (next, None, row);
                }
                let next = State::Idle {
                    armed: true,
                    stopped_at,
                    calm_since: Some(t),
                };
                let lowered = m.saturating_sub(Price::from_micros(UNIT)).max(self.floor);
                if lowered < m {
                    (next, Some(lowered), 19)
                } else {
                    (next, None, 20)
                }
            }
            State::Observing {
                since,
                p0,
                extra,
                awaiting,
            } => {
                if t.saturating_sub(since) < self.w {
                    return (state, None, 6);
                }
                if !extra && awaiting.is_some() {
                    if p >= self.t {
                        return self.raise(s, p0, 7);
                    }
                    return (self.stop(s), None, 8);
                }
                if at_most(p, p0, 500) {
                    return (self.stop(s), None, if extra { 13 } else { 9 });
                }
                if extra {
                    return self.raise(s, p0, 14);
                }
                if at_most(p, p0, 600) {
                    let next = State::Observing {
                        since: t,
                        p0,
                        extra: true,
                        awaiting: None,
                    };
                    return (next, None, 10);
                }
                self.raise(s, p0, if at_most(p, p0, 800) { 11 } else { 12 })
            }
        }
    }

    /// Rows 16-18: a commit, or a sample's market price.
    fn market(&self, state: State, price: Price) -> State {
        match state {
            State::Observing {
                since,
                p0,
                extra,
                awaiting: Some(target),
            } if price >= target => State::Observing {
                since,
                p0,
                extra,
                awaiting: None,
            },
            s => s,
        }
    }
}

#[test]
fn fsm_decisions_in_a_simulated_run_follow_the_transition_table() {
    let sc = common::small(600, &["fsm"]);
    let opts = &sc.strategies[0].options;
    let int = |k: &str, d: u64| {
        opts.get(k)
            .and_then(|v| v.as_integer())
            .map_or(d, |v| v as u64)
    };
    let table = Table {
        t: int("threshold_milli", 2000),
        w: int("window_ms", 300_000),
        decay: opts.get("decay").and_then(|v| v.as_bool()).unwrap_or(false),
        d: int("decay_below_milli", 1000),
        floor: Price::from_micros(UNIT),
    };
    let reg = common::registry();
    let mut rows_seen = BTreeSet::new();
    let mut proposals = 0;
    for node in [0, 1, 5] {
        let run = lppsp_sim::RunOptions {
            seed: 11,
            trace_node: Some(node),
            keep_receipts: false,
        };
        let out = lppsp_sim::run_one(&sc, 0, &reg, run, &|_| {}).unwrap();
        assert!(!out.trace.is_empty());
        let mut state = State::Idle {
            armed: true,
            stopped_at: 0,
            calm_since: None,
        };
        // The market as the balancer knows it, whether it moved since the
        // last sample, and when it last moved (rows 22-24).
        let mut market: Option<Price> = None;
        let mut moved = false;
        let mut last_move: Option<u64> = None;
        for (k, ev) in out.trace.iter().enumerate() {
            match ev {
                TraceEvent::Commit(price) => {
                    moved |= market != Some(*price);
                    market = Some(*price);
                    state = table.market(state, *price);
                }
                TraceEvent::Sample { sample, proposal } => {
                    moved |= market.is_some_and(|m| m != sample.price);
                    market = Some(sample.price);
                    state = table.market(state, sample.price);
                    if std::mem::take(&mut moved) {
                        last_move = Some(sample.at_ms);
                        state = table.moved(state, sample);
                    }
                    let (next, expected, row) = table.sample(state, sample, last_move);
                    assert_eq!(
                        proposal.as_ref().map(|p| p.price),
                        expected,
                        "node {node}, event {k}: row {row} of the table, sample {sample:?}, state {state:?}"
                    );
                    rows_seen.insert(row);
                    proposals += usize::from(expected.is_some());
                    state = next;
                }
            }
        }
    }
    // The run went through an episode: a start, windows, and decisions.
    assert!(proposals > 0);
    for row in [2, 6] {
        assert!(
            rows_seen.contains(&row),
            "row {row} never applied; rows seen {rows_seen:?}"
        );
    }
    assert!(
        rows_seen
            .iter()
            .any(|r| [9, 10, 11, 12, 13, 14].contains(r)),
        "no window decision; rows seen {rows_seen:?}"
    );
    eprintln!("rows applied: {rows_seen:?}, proposals: {proposals}");
}
