//! The job tracker with `verify = K`: each input runs on K different
//! nodes, a result is accepted only when K agree, and a node that
//! disagrees is counted and excluded from the job.

use bytes::Bytes;
use lppsp_core::component::{Placement, Plan};
use lppsp_core::job::{JobCommand, JobOutcome, JobTracker, TaskReport};
use lppsp_core::money::Bounty;
use lppsp_core::NodeId;

mod common;
use common::{id, price, promise, tracker, CLIENT};

fn plan(placements: &[(u64, u8)]) -> Plan {
    Plan {
        placements: placements
            .iter()
            .map(|&(task, node)| Placement {
                task,
                node: id(node),
                result_to: id(CLIENT),
                est_cost: Bounty::ZERO,
            })
            .collect(),
        unplaced: Vec::new(),
    }
}

fn commands(t: &mut JobTracker) -> Vec<JobCommand> {
    std::iter::from_fn(|| t.poll_command()).collect()
}

fn placed(t: &mut JobTracker) -> Vec<(u64, NodeId)> {
    commands(t)
        .into_iter()
        .filter_map(|c| match c {
            JobCommand::Place { node, task, .. } => Some((task, node)),
            _ => None,
        })
        .collect()
}

fn result(t: &mut JobTracker, task: u64, node: u8, value: u8) {
    let report = TaskReport {
        node: id(node),
        task,
        ok: true,
        body: Bytes::from(vec![value]),
        micros: 10,
        power: 100,
        held_by: None,
    };
    t.on_result(0, report);
}

fn done(t: &JobTracker) -> Vec<Bytes> {
    match t.outcome() {
        Some(JobOutcome::Done(r)) => r.clone(),
        other => panic!("not done: {other:?}"),
    }
}

#[test]
fn each_input_runs_k_times_and_agreeing_results_are_accepted_once() {
    let mut t = tracker(2, 2);
    assert_eq!(t.pending_count(), 4);
    t.apply_plan(0, plan(&[(0, 1), (1, 2), (2, 1), (3, 2)]), price(), promise);
    let p = placed(&mut t);
    assert_eq!(p.len(), 4);
    // Results come back to the client, never to an integrator.
    assert!(t.integrator().is_none());
    result(&mut t, 0, 1, 10);
    result(&mut t, 1, 2, 10);
    result(&mut t, 2, 1, 20);
    assert!(t.outcome().is_none());
    result(&mut t, 3, 2, 20);
    assert_eq!(done(&t), vec![Bytes::from(vec![10]), Bytes::from(vec![20])]);
    assert!(t.excluded().is_empty());
}

#[test]
fn two_replicas_of_one_input_never_share_a_node() {
    let mut t = tracker(1, 2);
    t.apply_plan(0, plan(&[(0, 1), (1, 1)]), price(), promise);
    assert_eq!(placed(&mut t), vec![(0, id(1))]);
    assert_eq!(t.pending_count(), 1);
    // The skipped replica avoids the node from now on.
    let pending = t.pending_tasks(10);
    assert_eq!(pending.len(), 1);
    assert!(pending[0].avoid.contains(&id(1)));
    t.apply_plan(1, plan(&[(1, 2)]), price(), promise);
    assert_eq!(placed(&mut t), vec![(1, id(2))]);
}

#[test]
fn a_disagreeing_node_is_outvoted_counted_and_excluded() {
    // Node 3 lies. Input 0 runs on 1 and 3: they disagree, a third
    // replica runs on 2 and agrees with 1.
    let mut t = tracker(2, 2);
    t.apply_plan(0, plan(&[(0, 1), (1, 3), (2, 3), (3, 2)]), price(), promise);
    assert_eq!(placed(&mut t).len(), 4);
    result(&mut t, 0, 1, 10);
    result(&mut t, 1, 3, 99);
    // No agreement: one more replica, avoiding both nodes.
    let pending = t.pending_tasks(10);
    assert_eq!(pending.len(), 1, "{pending:?}");
    let extra = pending[0].task;
    assert!(pending[0].avoid.contains(&id(1)) && pending[0].avoid.contains(&id(3)));
    // Input 1's replica on the liar is still running.
    t.apply_plan(1, plan(&[(extra, 2)]), price(), promise);
    assert_eq!(placed(&mut t), vec![(extra, id(2))]);
    result(&mut t, extra, 2, 10);
    // Accepted; the liar is excluded and its task for input 1 cancelled.
    assert!(t.excluded().contains(&id(3)));
    assert_eq!(t.tallies()[&id(3)].disagreed, 1);
    let cmds = commands(&mut t);
    assert!(
        cmds.contains(&JobCommand::Cancel {
            node: id(3),
            task: 2
        }),
        "{cmds:?}"
    );
    // A late result from the liar is ignored.
    result(&mut t, 2, 3, 99);
    assert!(t.pending_tasks(10).is_empty());
    // Input 1's other replica agrees with nobody yet: one more replica,
    // which may not go to the liar.
    result(&mut t, 3, 2, 20);
    let pending = t.pending_tasks(10);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(pending[0].avoid.contains(&id(3)) && pending[0].avoid.contains(&id(2)));
    t.apply_plan(2, plan(&[(pending[0].task, 3)]), price(), promise);
    assert!(placed(&mut t).is_empty(), "the liar got work");
    t.apply_plan(3, plan(&[(pending[0].task, 1)]), price(), promise);
    assert_eq!(placed(&mut t).len(), 1);
    result(&mut t, pending[0].task, 1, 20);
    assert_eq!(done(&t), vec![Bytes::from(vec![10]), Bytes::from(vec![20])]);
    assert_eq!(t.excluded().len(), 1);
}

#[test]
fn endless_disagreement_fails_the_job_instead_of_looping() {
    let mut t = tracker(1, 2);
    let mut next = vec![0u64, 1];
    let mut node = 1u8;
    for round in 0..20 {
        if t.outcome().is_some() {
            break;
        }
        let placements: Vec<(u64, u8)> = next
            .iter()
            .map(|&task| {
                node += 1;
                (task, node)
            })
            .collect();
        t.apply_plan(round, plan(&placements), price(), promise);
        for (task, n) in placed(&mut t) {
            let who = n.as_bytes()[7];
            result(&mut t, task, who, who);
        }
        next = t.pending_tasks(10).iter().map(|p| p.task).collect();
    }
    assert!(
        matches!(t.outcome(), Some(JobOutcome::Failed(_))),
        "{:?}",
        t.outcome()
    );
}
