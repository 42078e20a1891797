//! The job tracker pays only what the client can check: under any
//! sequence of placements and reports (forged, duplicated, late, from
//! strangers, with any claimed time and power), the job never spends past
//! its budget, a result counts only from a node its task was placed on,
//! and each charge is at most the placement's price x the power the node
//! promised x the time the client saw the task there.

use std::collections::BTreeMap;

use bytes::Bytes;
use lppsp_core::charge::{lower_median, Promise, CLOCK_SLACK_MS, MAX_SLOT_CLOCKS};
use lppsp_core::component::{Placement, Plan};
use lppsp_core::job::{JobCommand, JobSpec, JobTracker, ResultOutcome, TaskReport};
use lppsp_core::money::{self, Bounty, Price};
use lppsp_core::wire::{JobId, KernelName, RefuseReason};
use lppsp_core::NodeId;
use proptest::prelude::*;

mod common;
use common::{id, CLIENT};

const NODES: u8 = 5;
const TASKS: u64 = 12;

/// Node 1..=4 promise these; node 5 is a stranger never placed on (but
/// still in the book).
fn promise_of(node: &NodeId) -> Promise {
    let n = node.as_bytes()[7];
    Promise {
        power: 100 * u64::from(n),
        slots: u32::from(n % 3) + 1,
    }
}

#[derive(Debug, Clone)]
enum Step {
    Place {
        tasks: Vec<u64>,
        node: u8,
        est_cost: u64,
        price: u64,
    },
    Report {
        task: u64,
        node: u8,
        ok: bool,
        micros: u64,
        power: u64,
        held: bool,
    },
    Refuse {
        task: u64,
        node: u8,
    },
    Lost(u8),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let claim = prop_oneof![0..5_000_000u64, Just(u64::MAX), any::<u64>()];
    prop_oneof![
        (
            proptest::collection::vec(0..TASKS, 1..4),
            1..NODES,
            0..5_000_000u64,
            1..3_000_000u64
        )
            .prop_map(|(tasks, node, est_cost, price)| Step::Place {
                tasks,
                node,
                est_cost,
                price
            }),
        (
            0..TASKS + 2,
            1..=NODES,
            any::<bool>(),
            claim.clone(),
            claim,
            prop::bool::weighted(0.1)
        )
            .prop_map(|(task, node, ok, micros, power, held)| Step::Report {
                task,
                node,
                ok,
                micros,
                power,
                held
            }),
        (0..TASKS, 1..NODES).prop_map(|(task, node)| Step::Refuse { task, node }),
        (1..NODES).prop_map(Step::Lost),
        (0..2_000u64).prop_map(Step::Wait),
    ]
}

/// One placement as the client made it.
#[derive(Debug, Clone, Copy)]
struct Made {
    at_ms: u64,
    price: Price,
    promise: Promise,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn charges_stay_within_the_budget_and_what_the_client_saw(
        budget in 0..20_000_000u64,
        verify in 1..3u32,
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut t = JobTracker::new(JobSpec {
            id: JobId(1),
            client: id(CLIENT),
            kernel: KernelName::new("w1-sum-squares").unwrap(),
            inputs: (0..TASKS).map(|i| Bytes::from(i.to_le_bytes().to_vec())).collect(),
            budget: Bounty::from_micros(budget),
            constraints: Default::default(),
            max_attempts: 3,
            task_timeout_ms: 1000,
            est_task_micros: 1000,
            verify,
        });
        let mut now = 0u64;
        // Every placement of a task on a node, oldest first: a refusal
        // withdraws the latest, and a late result of an earlier one (the
        // node was given up on, then placed again) is paid on its terms.
        let mut made: BTreeMap<(u64, NodeId), Vec<Made>> = BTreeMap::new();
        let mut paid = Bounty::ZERO;
        let mut micros_on: BTreeMap<NodeId, (u64, u64)> = BTreeMap::new();
        let mut plan_price = Price::from_micros(0);
        for s in steps {
            match s {
                Step::Place { tasks, node, est_cost, price } => {
                    let price = Price::from_micros(price);
                    plan_price = price;
                    let plan = Plan {
                        placements: tasks.iter().map(|&task| Placement {
                            task,
                            node: id(node),
                            result_to: id(CLIENT),
                            est_cost: Bounty::from_micros(est_cost),
                        }).collect(),
                        unplaced: Vec::new(),
                    };
                    t.apply_plan(now, plan, price, promise_of);
                }
                Step::Report { task, node, ok, micros, power, held } => {
                    let report = TaskReport {
                        node: id(node),
                        task,
                        ok,
                        body: Bytes::from_static(b"r"),
                        micros,
                        power,
                        held_by: held.then(|| id(7)),
                    };
                    if let ResultOutcome::Counted(g) = t.on_result(now, report) {
                        let placements = made.get(&(task, id(node))).cloned().unwrap_or_default();
                        prop_assert!(!placements.is_empty(), "paid task {task} from node {node}, never placed there");
                        // Paid on the terms of one placement made there:
                        // its price, at most its promise, at most the time
                        // since it and the charge those allow.
                        let on_terms_of = |placed: &Made| {
                            let seen_us = (now - placed.at_ms + CLOCK_SLACK_MS) * 1000;
                            g.price == placed.price
                                && g.power <= placed.promise.power
                                && g.micros <= seen_us
                                && g.charge <= money::charge(placed.price, placed.promise.power, seen_us).unwrap()
                        };
                        prop_assert!(
                            placements.iter().any(on_terms_of),
                            "{g:?} is on the terms of none of {placements:?}"
                        );
                        prop_assert_eq!(money::charge(g.price, g.power, g.micros).unwrap(), g.charge);
                        paid = paid.checked_add(g.charge).unwrap();
                        let e = micros_on.entry(id(node)).or_insert((0, 0));
                        e.0 += g.micros;
                        e.1 += 1;
                    }
                }
                Step::Refuse { task, node } => t.on_refuse(id(node), task, RefuseReason::Busy),
                Step::Lost(node) => t.on_node_lost(id(node)),
                Step::Wait(ms) => {
                    now += ms;
                    t.handle_timeout(now);
                }
            }
            while let Some(c) = t.poll_command() {
                if let JobCommand::Place { node, task, .. } = c {
                    // Only a plan places tasks: at that plan's price.
                    made.entry((task, node)).or_default().push(Made {
                        at_ms: now,
                        price: plan_price,
                        promise: promise_of(&node),
                    });
                }
            }
            prop_assert!(paid <= Bounty::from_micros(budget), "paid {paid} of a budget of {budget}");
            prop_assert_eq!(t.progress().spent, paid);
            // Per node, no more time than its slots give from 0 to now.
            for (node, (micros, results)) in &micros_on {
                let slots = u64::from(promise_of(node).slots.min(MAX_SLOT_CLOCKS));
                let wall = (now + CLOCK_SLACK_MS * results) * 1000;
                prop_assert!(*micros <= slots * wall, "{micros} us on {slots} slots in {wall} us");
            }
        }
    }
}

/// The job's reference work as first defined: every other node's mean
/// granted work, and this node's counting a result of `power` x `micros`,
/// collected and sorted for their lower median.
fn reference_by_sorting(t: &JobTracker, node: NodeId, power: u64, micros: u64) -> Option<u64> {
    let mut means: Vec<u64> = t
        .tallies()
        .iter()
        .filter(|(n, tally)| **n != node && tally.tasks_done > 0)
        .map(|(_, tally)| tally.work / tally.tasks_done)
        .collect();
    let (work, tasks) = t
        .tallies()
        .get(&node)
        .map_or((0, 0), |tally| (tally.work, tally.tasks_done));
    means.push(work.saturating_add(power.saturating_mul(micros)) / tasks.saturating_add(1));
    lower_median(means)
}

/// A result of task `task` from the node it was placed on, `wait_ms`
/// after the previous step; `probe` is a result size to ask the
/// reference work for, from every node.
#[derive(Debug, Clone)]
struct Counted {
    task: u64,
    micros: u64,
    power: u64,
    wait_ms: u64,
    probe: (u64, u64),
}

fn counted(tasks: u64) -> impl Strategy<Value = Counted> {
    // Repeated values make nodes' means tie; huge ones saturate the work.
    let claim = || {
        prop_oneof![
            Just(1_000u64),
            0..5_000_000u64,
            Just(u64::MAX),
            any::<u64>()
        ]
    };
    (0..tasks, claim(), claim(), 0..3_000u64, (claim(), claim())).prop_map(
        |(task, micros, power, wait_ms, probe)| Counted {
            task,
            micros,
            power,
            wait_ms,
            probe,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The tracker keeps the nodes' means in order instead of sorting them
    /// per result: whatever the results, its reference work stays what
    /// sorting every node's mean gives, for every node and result size.
    #[test]
    fn reference_work_is_the_lower_median_of_the_nodes_means(
        nodes in 1..12u8,
        results in proptest::collection::vec(counted(64), 1..120),
    ) {
        let tasks = 64u64;
        let mut t = JobTracker::new(JobSpec {
            id: JobId(2),
            client: id(CLIENT),
            kernel: KernelName::new("w1-sum-squares").unwrap(),
            inputs: (0..tasks).map(|i| Bytes::from(i.to_le_bytes().to_vec())).collect(),
            budget: Bounty::from_micros(u64::MAX),
            constraints: Default::default(),
            max_attempts: 3,
            task_timeout_ms: 1000,
            est_task_micros: 1000,
            verify: 1,
        });
        let placed_on = |task: u64| id(1 + (task % u64::from(nodes)) as u8);
        let plan = Plan {
            placements: (0..tasks).map(|task| Placement {
                task,
                node: placed_on(task),
                result_to: id(CLIENT),
                est_cost: Bounty::from_micros(1_000 * (task + 1)),
            }).collect(),
            unplaced: Vec::new(),
        };
        t.apply_plan(0, plan, Price::from_micros(1), promise_of);
        let mut now = 0u64;
        let mut counted_results = 0u64;
        for r in results {
            now += r.wait_ms;
            // Node `nodes + 1` never ran a task: its mean is its first result.
            for n in 1..=nodes + 1 {
                let (power, micros) = r.probe;
                prop_assert_eq!(
                    Some(t.reference_work(id(n), power, micros)),
                    reference_by_sorting(&t, id(n), power, micros),
                    "node {} probing {} x {}", n, power, micros
                );
            }
            let report = TaskReport {
                node: placed_on(r.task),
                task: r.task,
                ok: true,
                body: Bytes::from_static(b"r"),
                micros: r.micros,
                power: r.power,
                held_by: None,
            };
            if matches!(t.on_result(now, report), ResultOutcome::Counted(_)) {
                counted_results += 1;
            }
        }
        let done: u64 = t.tallies().values().map(|tally| tally.tasks_done).sum();
        prop_assert_eq!(done, counted_results);
    }
}
