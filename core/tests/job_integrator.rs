//! The job tracker when results go to an integrator the scheduler named.

use bytes::Bytes;
use lppsp_core::component::{Placement, Plan};
use lppsp_core::job::{JobCommand, JobOutcome, JobTracker, TaskReport};
use lppsp_core::money::Bounty;

mod common;
use common::{id, price, promise, CLIENT};

const WORKER: u8 = 1;
const INTEGRATOR: u8 = 2;

/// A job of `tasks` W1 inputs, each run once.
fn tracker(tasks: u64) -> JobTracker {
    common::tracker(tasks, 1)
}

fn plan(tasks: &[u64], result_to: u8) -> Plan {
    Plan {
        placements: tasks
            .iter()
            .map(|&task| Placement {
                task,
                node: id(WORKER),
                result_to: id(result_to),
                est_cost: Bounty::ZERO,
            })
            .collect(),
        unplaced: Vec::new(),
    }
}

fn commands(t: &mut JobTracker) -> Vec<JobCommand> {
    std::iter::from_fn(|| t.poll_command()).collect()
}

fn report(task: u64, held_by: Option<u8>) -> TaskReport {
    TaskReport {
        node: id(WORKER),
        task,
        ok: true,
        body: if held_by.is_some() {
            Bytes::new()
        } else {
            Bytes::from(vec![task as u8])
        },
        micros: 10,
        power: 100,
        held_by: held_by.map(id),
    }
}

#[test]
fn results_held_by_the_integrator_are_integrated_there() {
    let mut t = tracker(2);
    t.apply_plan(0, plan(&[0, 1], INTEGRATOR), price(), promise);
    let cmds = commands(&mut t);
    assert!(cmds.iter().all(|c| matches!(c,
        JobCommand::Place { result_to: Some(r), .. } if *r == id(INTEGRATOR))));
    assert_eq!(t.integrator(), Some(id(INTEGRATOR)));

    // A held result claimed by some other node does not count.
    assert!(t.on_result(1, report(0, Some(9))).charge().is_none());
    assert!(t
        .on_result(1, report(0, Some(INTEGRATOR)))
        .charge()
        .is_some());
    assert!(t
        .on_result(2, report(1, Some(INTEGRATOR)))
        .charge()
        .is_some());
    assert_eq!(
        commands(&mut t),
        [JobCommand::Integrate {
            node: id(INTEGRATOR),
            tasks: 2
        }]
    );
    assert!(t.outcome().is_none(), "waits for the integrator");
    t.on_integrated(id(9), Ok(Bytes::from_static(b"wrong node")));
    assert!(t.outcome().is_none());
    t.on_integrated(id(INTEGRATOR), Ok(Bytes::from_static(b"sum")));
    assert_eq!(
        t.outcome(),
        Some(&JobOutcome::Integrated(Bytes::from_static(b"sum")))
    );
    assert_eq!(t.progress().done, 2);
}

#[test]
fn a_lost_integrator_means_its_results_run_again_and_come_to_the_client() {
    let mut t = tracker(3);
    t.apply_plan(0, plan(&[0, 1, 2], INTEGRATOR), price(), promise);
    commands(&mut t);
    t.on_result(1, report(0, Some(INTEGRATOR)));
    t.on_result(1, report(1, Some(INTEGRATOR)));
    t.on_node_lost(id(INTEGRATOR));
    assert_eq!(t.integrator(), None);
    // Task 2 still runs, but its result would go to the dead node: it is
    // cancelled there and placed again.
    let p = t.progress();
    assert_eq!((p.done, p.pending, p.in_flight), (0, 3, 0));
    assert_eq!(
        commands(&mut t),
        [JobCommand::Cancel {
            node: id(WORKER),
            task: 2
        }]
    );

    // The scheduler still names the dead node: the tracker does not go back to it.
    t.apply_plan(2, plan(&[0, 1, 2], INTEGRATOR), price(), promise);
    let cmds = commands(&mut t);
    assert_eq!(cmds.len(), 3);
    assert!(cmds.iter().all(|c| matches!(
        c,
        JobCommand::Place {
            result_to: None,
            ..
        }
    )));
    // A late report from the old integrator is ignored.
    assert!(t
        .on_result(3, report(0, Some(INTEGRATOR)))
        .charge()
        .is_none());
    for task in 0..3 {
        t.on_result(4, report(task, None));
    }
    match t.outcome() {
        Some(JobOutcome::Done(results)) => assert_eq!(results.len(), 3),
        other => panic!("expected Done, got {other:?}"),
    }
}

#[test]
fn an_integrator_that_does_not_answer_is_given_up_after_the_task_timeout() {
    let mut t = tracker(1);
    t.apply_plan(0, plan(&[0], INTEGRATOR), price(), promise);
    commands(&mut t);
    t.on_result(10, report(0, Some(INTEGRATOR)));
    assert!(matches!(
        commands(&mut t).as_slice(),
        [JobCommand::Integrate { .. }]
    ));
    assert_eq!(t.poll_timeout(), Some(1010));
    t.handle_timeout(500);
    assert_eq!(t.integrator(), Some(id(INTEGRATOR)));
    t.handle_timeout(1010);
    assert_eq!(t.integrator(), None);
    assert_eq!(t.progress().pending, 1);
}

#[test]
fn an_integrator_error_also_falls_back_to_the_client() {
    let mut t = tracker(1);
    t.apply_plan(0, plan(&[0], INTEGRATOR), price(), promise);
    commands(&mut t);
    t.on_result(1, report(0, Some(INTEGRATOR)));
    commands(&mut t);
    t.on_integrated(id(INTEGRATOR), Err("missing 1 task".into()));
    assert_eq!(t.progress().pending, 1);
    t.apply_plan(2, plan(&[0], INTEGRATOR), price(), promise);
    commands(&mut t);
    t.on_result(3, report(0, None));
    assert!(matches!(t.outcome(), Some(JobOutcome::Done(_))));
}

#[test]
fn a_failed_job_tells_the_integrator_to_forget_it() {
    let mut t = tracker(2);
    t.apply_plan(0, plan(&[0, 1], INTEGRATOR), price(), promise);
    commands(&mut t);
    t.cancel("user");
    let cmds = commands(&mut t);
    assert!(cmds.contains(&JobCommand::Forget {
        node: id(INTEGRATOR)
    }));
    assert_eq!(
        cmds.iter()
            .filter(|c| matches!(c, JobCommand::Cancel { .. }))
            .count(),
        2
    );
}

#[test]
fn results_to_the_client_need_no_integrator() {
    let mut t = tracker(2);
    t.apply_plan(0, plan(&[0, 1], CLIENT), price(), promise);
    assert_eq!(t.integrator(), None);
    assert!(commands(&mut t).iter().all(|c| matches!(
        c,
        JobCommand::Place {
            result_to: None,
            ..
        }
    )));
    t.on_result(1, report(0, None));
    // Counted once.
    assert!(t.on_result(1, report(0, None)).charge().is_none());
    t.on_result(1, report(1, None));
    assert_eq!(t.progress().duplicates, 1);
    assert_eq!(
        t.outcome(),
        Some(&JobOutcome::Done(vec![
            Bytes::from(vec![0u8]),
            Bytes::from(vec![1u8])
        ]))
    );
}

#[test]
fn restored_results_are_not_run_again_and_the_client_integrates() {
    let mut t = tracker(4);
    assert!(t.restore_result(0, 1, Bytes::from_static(b"kept-1")));
    assert!(t.restore_result(0, 3, Bytes::from_static(b"kept-3")));
    assert!(!t.restore_result(0, 3, Bytes::new()), "already done");
    assert!(
        !t.restore_result(0, 9, Bytes::new()),
        "not a task of the job"
    );
    let pending: Vec<u64> = t.pending_tasks(10).iter().map(|p| p.task).collect();
    assert_eq!(pending, [0, 2]);
    assert_eq!(t.progress().done, 2);

    // The scheduler names an integrator: ignored, the client holds results.
    t.apply_plan(0, plan(&[0, 2], INTEGRATOR), price(), promise);
    assert!(commands(&mut t).iter().all(|c| matches!(
        c,
        JobCommand::Place {
            result_to: None,
            ..
        }
    )));
    assert_eq!(
        t.on_result(1, report(0, None)).charge(),
        Some(Bounty::from_micros(1000))
    );
    assert!(t.on_result(1, report(2, None)).charge().is_some());
    let Some(JobOutcome::Done(results)) = t.outcome() else {
        panic!("{:?}", t.outcome());
    };
    assert_eq!(
        results,
        &vec![
            Bytes::from(vec![0u8]),
            Bytes::from_static(b"kept-1"),
            Bytes::from(vec![2u8]),
            Bytes::from_static(b"kept-3"),
        ]
    );
    // Only the two tasks that ran were paid for.
    assert_eq!(t.tallies()[&id(WORKER)].tasks_done, 2);
}

#[test]
fn a_job_whose_every_result_was_kept_is_done_at_once() {
    let mut t = tracker(2);
    assert!(t.restore_result(5, 0, Bytes::from_static(b"a")));
    assert!(t.outcome().is_none());
    assert!(t.restore_result(5, 1, Bytes::from_static(b"b")));
    assert!(matches!(t.outcome(), Some(JobOutcome::Done(r)) if r.len() == 2));
}
