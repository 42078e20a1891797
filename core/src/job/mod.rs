//! A client's job: a sans-IO state machine that tracks every task from
//! pending to placed to done, applies the scheduler's plans, enforces the
//! budget (DESIGN 4.7), retries lost or failed tasks a bounded number of
//! times, and counts each task's result exactly once.
//!
//! Inputs are `apply_plan`, `on_accept`, `on_refuse`, `on_result`,
//! `on_node_lost` and `handle_timeout(now)`; outputs are drained with
//! `poll_command` (place or cancel a task on a node). Time is passed in.
//!
//! Verification (`JobSpec::verify = K` above 1), as volunteer-computing
//! systems do it: each input runs as K replicas on K different nodes, and
//! its result is accepted only once K nodes returned byte-equal results.
//! While they disagree, one more replica runs at a time on a node the
//! input has not run on; once a value has K votes, every node that
//! returned another value is counted (`NodeTally::disagreed`) and excluded
//! from the job: its tasks in flight are cancelled and its results for
//! inputs not yet accepted are thrown away. Replicas are tasks like any
//! other on the wire (task number = replica number); results always come
//! back to the client, since an integrator could not compare them.
//!
//! The parts, one concept each:
//! - `spec`: what a job is, the commands it gives, how it ends;
//! - `report`: a task's result as read from a `Result` frame;
//! - `tally`: per-node accounting and the progress snapshot;
//! - `placement`: pending tasks, the scheduler's plans, refusals;
//! - `results`: whether a result counts and what it is paid;
//! - `verify`: K replicas per input and the nodes that disagree;
//! - `integrate`: integration at the client or at an integrator.
//!
//! This file holds the tracker's state and its lifecycle: creation,
//! commands out, retries, failure, lost nodes and time-outs.

mod integrate;
mod placement;
mod report;
mod results;
mod spec;
mod tally;
mod verify;

pub use report::TaskReport;
pub use results::{Ignored, ResultOutcome};
pub use spec::{JobCommand, JobFailure, JobOutcome, JobSpec};
pub use tally::{NodeTally, Progress};

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::charge::{PlacementTerms, SlotClocks, WorkMeans};
use crate::component::scheduler::Unplaced;
use crate::money::Bounty;
use crate::node_id::NodeId;
use crate::wire::{JobId, RefuseReason};

#[derive(Debug, Clone, PartialEq, Eq)]
enum TaskState {
    Pending,
    InFlight {
        node: NodeId,
        since_ms: u64,
        /// Budget reserved for this placement while it runs.
        reserved: Bounty,
    },
    Done,
    /// A replica whose result is not wanted (its node was excluded).
    Discarded,
}

#[derive(Debug, Clone)]
struct Task {
    state: TaskState,
    attempts: u32,
    avoid: Vec<NodeId>,
    result: Option<Bytes>,
    /// The integrator holding this task's result, when not the client.
    held_by: Option<NodeId>,
    /// The input this task runs (with `verify`, several tasks share one).
    input: u64,
    /// The node whose result `result` is.
    ran_on: Option<NodeId>,
    /// The terms of this task's latest placements: a result counts only
    /// from a node the task was placed on, and is paid on those terms.
    placements: Vec<PlacementTerms>,
}

impl Task {
    /// A task not yet placed that runs input `input`, kept off the nodes
    /// in `avoid`.
    fn pending(input: u64, avoid: Vec<NodeId>) -> Self {
        Task {
            state: TaskState::Pending,
            attempts: 0,
            avoid,
            result: None,
            held_by: None,
            input,
            ran_on: None,
            placements: Vec::new(),
        }
    }

    /// Keeps the task off `node` from now on.
    fn keep_off(&mut self, node: NodeId) {
        if !self.avoid.contains(&node) {
            self.avoid.push(node);
        }
    }
}

/// The job state machine; see the module doc.
#[derive(Debug)]
pub struct JobTracker {
    spec: JobSpec,
    tasks: Vec<Task>,
    pending: BTreeSet<u64>,
    done: u64,
    spent: Bounty,
    committed: Bounty,
    retries: u64,
    duplicates: u64,
    tallies: BTreeMap<NodeId, NodeTally>,
    /// Every tally's `mean_work`, in order, for the reference work.
    work_means: WorkMeans,
    /// Refusals per reason in the latest round, for "why is it waiting".
    refusals: BTreeMap<RefuseReason, u64>,
    unplaced: BTreeMap<Unplaced, u64>,
    outcome: Option<JobOutcome>,
    commands: VecDeque<JobCommand>,
    /// The node results go to, when the scheduler named one other than the
    /// client; fixed at the first placement so that one node holds them all.
    integrator: Option<NodeId>,
    /// The client integrates from now on: an integrator was lost, or the
    /// client holds results restored from an earlier run of the job.
    client_integrates: bool,
    /// Since when (ms) the integrator has been asked for the job result.
    integrating_since: Option<u64>,
    /// With `verify`: each input's tasks (replicas), its accepted result,
    /// and how many inputs have one.
    replicas: Vec<Vec<u64>>,
    accepted: Vec<Option<Bytes>>,
    inputs_accepted: u64,
    /// Nodes excluded from the job for returning wrong results.
    excluded: BTreeSet<NodeId>,
    /// Run time seen per node slot, which bounds the time paid for.
    slot_clocks: SlotClocks,
}

impl JobTracker {
    pub fn new(spec: JobSpec) -> Self {
        let inputs = spec.inputs.len();
        let k = spec.verify.max(1) as usize;
        let n = inputs.saturating_mul(k);
        let tasks: Vec<Task> = (0..n)
            .map(|i| Task::pending((i / k) as u64, Vec::new()))
            .collect();
        let replicas = if k > 1 {
            (0..inputs)
                .map(|g| (g * k..(g + 1) * k).map(|i| i as u64).collect())
                .collect()
        } else {
            Vec::new()
        };
        let accepted = if k > 1 {
            vec![None; inputs]
        } else {
            Vec::new()
        };
        let pending = (0..n as u64).collect();
        let mut t = Self {
            spec,
            tasks,
            pending,
            done: 0,
            spent: Bounty::ZERO,
            committed: Bounty::ZERO,
            retries: 0,
            duplicates: 0,
            tallies: BTreeMap::new(),
            work_means: WorkMeans::default(),
            refusals: BTreeMap::new(),
            unplaced: BTreeMap::new(),
            outcome: None,
            commands: VecDeque::new(),
            integrator: None,
            client_integrates: false,
            integrating_since: None,
            replicas,
            accepted,
            inputs_accepted: 0,
            excluded: BTreeSet::new(),
            slot_clocks: SlotClocks::default(),
        };
        if n == 0 {
            t.outcome = Some(JobOutcome::Done(Vec::new()));
        }
        t
    }

    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }
    pub fn id(&self) -> JobId {
        self.spec.id
    }
    pub fn outcome(&self) -> Option<&JobOutcome> {
        self.outcome.as_ref()
    }
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// The next command for the runtime.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<JobCommand> {
        self.commands.pop_front()
    }

    /// Releases a task's in-flight state; returns the node it was on.
    fn release(&mut self, task: u64) -> Option<NodeId> {
        let t = self.tasks.get_mut(task as usize)?;
        let TaskState::InFlight { node, reserved, .. } = t.state.clone() else {
            return None;
        };
        t.state = TaskState::Pending;
        self.committed = self.committed.saturating_sub(reserved);
        if let Some(tally) = self.tallies.get_mut(&node) {
            tally.in_flight = tally.in_flight.saturating_sub(1);
        }
        Some(node)
    }

    /// Releases a task's in-flight state and tells its node to stop it;
    /// returns the node it was on.
    fn cancel_placement(&mut self, task: u64) -> Option<NodeId> {
        let node = self.release(task)?;
        self.commands.push_back(JobCommand::Cancel { node, task });
        Some(node)
    }

    /// A placed task goes back to pending after a failure on `node`.
    fn retry(&mut self, task: u64, node: NodeId, cause: String) {
        if self.release(task).is_none() {
            return;
        }
        self.tallies.entry(node).or_default().tasks_failed += 1;
        let Some(t) = self.tasks.get_mut(task as usize) else {
            return;
        };
        t.attempts += 1;
        t.keep_off(node);
        let attempts = t.attempts;
        if attempts >= self.spec.max_attempts {
            self.fail(JobFailure::TaskFailed {
                task,
                attempts,
                cause,
            });
            return;
        }
        self.retries += 1;
        self.pending.insert(task);
    }

    /// Ends the job: every task in flight is cancelled.
    fn fail(&mut self, why: JobFailure) {
        if self.outcome.is_some() {
            return;
        }
        for i in 0..self.tasks.len() as u64 {
            self.cancel_placement(i);
        }
        self.pending.clear();
        if let Some(node) = self.integrator {
            self.commands.push_back(JobCommand::Forget { node });
        }
        self.integrating_since = None;
        self.outcome = Some(JobOutcome::Failed(why));
    }

    /// Cancels the job at the user's request.
    pub fn cancel(&mut self, why: &str) {
        self.fail(JobFailure::Cancelled(why.to_string()));
    }

    /// `node` left, expired or dropped its connection: its tasks go back.
    pub fn on_node_lost(&mut self, node: NodeId) {
        self.integrator_lost(node);
        let lost: Vec<u64> = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t.state, TaskState::InFlight { node: n, .. } if n == node))
            .map(|(i, _)| i as u64)
            .collect();
        for task in lost {
            self.retry(task, node, format!("node {node} was lost while running it"));
        }
    }

    /// The earliest moment a placed task times out.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        let timeout = self.spec.task_timeout_ms;
        self.tasks
            .iter()
            .filter_map(|t| match t.state {
                TaskState::InFlight { since_ms, .. } => Some(since_ms.saturating_add(timeout)),
                _ => None,
            })
            .chain(self.integrating_since.map(|s| s.saturating_add(timeout)))
            .min()
    }

    /// Places again every task that has run out of time.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let timeout = self.spec.task_timeout_ms;
        if let (Some(node), Some(since)) = (self.integrator, self.integrating_since) {
            if now_ms.saturating_sub(since) >= timeout {
                self.integrator_lost(node);
            }
        }
        let late: Vec<(u64, NodeId)> = self
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match t.state {
                TaskState::InFlight { node, since_ms, .. }
                    if now_ms.saturating_sub(since_ms) >= timeout =>
                {
                    Some((i as u64, node))
                }
                _ => None,
            })
            .collect();
        for (task, node) in late {
            self.commands.push_back(JobCommand::Cancel { node, task });
            self.retry(
                task,
                node,
                format!("no result from {node} within {timeout} ms"),
            );
        }
    }
}
