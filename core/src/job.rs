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

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::charge::{self, Granted, PlacementTerms, Promise, SlotClocks, WorkMeans};
use crate::component::scheduler::{Constraints, PendingTask, Plan, Unplaced};
use crate::money::{Bounty, Price};
use crate::node_id::NodeId;
use crate::wire::headers::{ResultHeaders, TaskHeaders};
use crate::wire::{Body, Frame, JobId, KernelName, Message, RefuseReason};

/// What a job is.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub id: JobId,
    /// The node that submitted the job and pays for it.
    pub client: NodeId,
    pub kernel: KernelName,
    /// One input per task, in task order.
    pub inputs: Vec<Bytes>,
    /// The most this job may spend.
    pub budget: Bounty,
    pub constraints: Constraints,
    /// Placements a task may fail (error, lost node, timeout) before the job fails.
    pub max_attempts: u32,
    /// A placed task with no result after this long is placed again.
    pub task_timeout_ms: u64,
    /// Expected run time of one task before any has finished, microseconds.
    pub est_task_micros: u64,
    /// Nodes that must agree on each input's result (1: no verification).
    pub verify: u32,
}

/// Something the runtime must do for the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCommand {
    /// Send task `task` with `input` to `node`; the result goes to
    /// `result_to` (`None`: back to the client).
    Place {
        node: NodeId,
        task: u64,
        input: Bytes,
        result_to: Option<NodeId>,
    },
    /// Tell `node` to stop `task`.
    Cancel { node: NodeId, task: u64 },
    /// Ask the integrator `node`, which holds the results, to integrate
    /// tasks `0..tasks` and send back the job result.
    Integrate { node: NodeId, tasks: u64 },
    /// Tell the integrator `node` to drop what it holds of the job.
    Forget { node: NodeId },
}

impl JobCommand {
    /// The node this command is for, and the frame that carries it, at
    /// `price`; a task carries the job's `fuel_limit`, if it has one.
    pub fn into_frame(
        self,
        job: JobId,
        kernel: &KernelName,
        price: Price,
        fuel_limit: Option<u64>,
    ) -> (NodeId, Frame) {
        match self {
            JobCommand::Place {
                node,
                task,
                input,
                result_to,
            } => {
                let message = Message::Task {
                    job,
                    task,
                    kernel: kernel.clone(),
                };
                let frame = Frame::new(price, message).with_body(Body::from_bytes(input));
                let headers = TaskHeaders {
                    result_to,
                    fuel_limit,
                };
                (node, headers.write(frame))
            }
            JobCommand::Cancel { node, task } => (
                node,
                Frame::new(
                    price,
                    Message::Cancel {
                        job,
                        task: Some(task),
                    },
                ),
            ),
            JobCommand::Integrate { node, tasks } => {
                let message = Message::Integrate {
                    job,
                    tasks,
                    kernel: kernel.clone(),
                };
                (node, Frame::new(price, message))
            }
            JobCommand::Forget { node } => {
                (node, Frame::new(price, Message::Cancel { job, task: None }))
            }
        }
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobFailure {
    #[error("insufficient bounty: the next task needs {needed} at the current price, {left} left of the budget")]
    InsufficientBounty { needed: Bounty, left: Bounty },
    #[error("task {task} failed {attempts} times; last cause: {cause}")]
    TaskFailed {
        task: u64,
        attempts: u32,
        cause: String,
    },
    #[error("cancelled: {0}")]
    Cancelled(String),
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Every task's result, in task order, for the client to integrate.
    Done(Vec<Bytes>),
    /// The job result, integrated by the node the scheduler named.
    Integrated(Bytes),
    Failed(JobFailure),
}

/// A task's result as a compute node reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReport {
    pub node: NodeId,
    pub task: u64,
    /// `true`: `body` is the output; `false`: `body` is the error text.
    pub ok: bool,
    pub body: Bytes,
    /// Run time the node reports, microseconds.
    pub micros: u64,
    /// MFLOPS the node charges at.
    pub power: u64,
    /// `Some(integrator)`: the result went to that node, which holds it
    /// (`body` is then empty); `None`: `body` is the result itself.
    pub held_by: Option<NodeId>,
}

impl TaskReport {
    /// Reads the `Result/job/task/status` frame `frame` from `sender`. The
    /// worker is the node named by `Worker` when an integrator holds the
    /// result (the frame then comes from the integrator), else the sender.
    /// The power is the frame's `Power` as claimed (`promised(worker)`, what
    /// the node promised in its Hand, when absent); the tracker pays at most
    /// the promise made at placement. Returns the report and the fuel
    /// the task used (`Fuel`), or None when `Worker` is not a node id.
    pub fn from_result_frame(
        sender: NodeId,
        task: u64,
        ok: bool,
        frame: Frame,
        promised: impl FnOnce(&NodeId) -> u64,
    ) -> Option<(TaskReport, Option<u64>)> {
        let headers = ResultHeaders::read(&frame.headers).ok()?;
        let (node, held_by) = match headers.worker {
            Some(w) => (w, Some(sender)),
            None => (sender, None),
        };
        let micros = headers.elapsed_us.unwrap_or(0);
        // The claim as made: the tracker caps it at the promise the node
        // made when the task was placed, and counts a claim above it.
        let power = headers.power.unwrap_or_else(|| promised(&node));
        let fuel = headers.fuel;
        let body = frame.body.map(|b| b.to_bytes()).unwrap_or_default();
        let report = TaskReport {
            node,
            task,
            ok,
            body,
            micros,
            power,
            held_by,
        };
        Some((report, fuel))
    }
}

/// Per-node accounting for one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeTally {
    pub tasks_done: u64,
    pub tasks_failed: u64,
    /// Run time granted (paid for), microseconds.
    pub micros: u64,
    /// Work granted: power x run time, MFLOPS x microseconds.
    pub work: u64,
    pub charged: Bounty,
    pub in_flight: u32,
    pub refused: u64,
    /// Results that disagreed with the accepted one (`verify`).
    pub disagreed: u64,
}

impl NodeTally {
    /// Mean work granted per task, once a task was counted.
    #[must_use]
    pub fn mean_work(&self) -> Option<u64> {
        self.work.checked_div(self.tasks_done)
    }
}

/// A snapshot for progress display.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub total: u64,
    pub done: u64,
    pub in_flight: u64,
    pub pending: u64,
    pub spent: Bounty,
    pub budget: Bounty,
    pub retries: u64,
    pub duplicates: u64,
}

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

/// Placement terms kept per task, at most (the latest ones): a task is
/// placed again only after a failure, a refusal or a time-out.
const MAX_TERMS_PER_TASK: usize = 8;

/// What became of a reported result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultOutcome {
    /// The task is done; the client pays this.
    Counted(Granted),
    /// The node that ran it reported a failure: the task runs again.
    Failed,
    /// Not counted, for this reason.
    Ignored(Ignored),
}

impl ResultOutcome {
    /// The charge, when the result was counted.
    #[must_use]
    pub fn charge(&self) -> Option<Bounty> {
        match self {
            ResultOutcome::Counted(g) => Some(g.charge),
            _ => None,
        }
    }
}

/// Why a result was not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// The job has ended.
    JobOver,
    /// The job has no such task.
    UnknownTask,
    /// The task is done already (a second run after a time-out).
    Duplicate,
    /// A replica whose result is no longer wanted.
    Discarded,
    /// The node was excluded from the job for wrong results.
    Excluded,
    /// The task was never placed on that node.
    NotPlacedThere,
    /// A result held by a node that is not the job's integrator.
    NotOurIntegrator,
    /// A failure report from a placement given up on.
    StaleFailure,
}

impl Ignored {
    /// The counter name when the result is something no honest member
    /// sends (a claim for work it was not given); `None` for the ordinary
    /// races of a distributed job.
    #[must_use]
    pub fn member_fault(&self) -> Option<&'static str> {
        match self {
            Ignored::UnknownTask => Some("result_for_unknown_task"),
            Ignored::NotPlacedThere => Some("result_not_placed_there"),
            Ignored::NotOurIntegrator => Some("result_from_non_integrator"),
            _ => None,
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
            .map(|i| Task {
                state: TaskState::Pending,
                attempts: 0,
                avoid: Vec::new(),
                result: None,
                held_by: None,
                input: (i / k) as u64,
                ran_on: None,
                placements: Vec::new(),
            })
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
    pub fn tallies(&self) -> &BTreeMap<NodeId, NodeTally> {
        &self.tallies
    }
    /// The node integrating this job's results, when not the client.
    pub fn integrator(&self) -> Option<NodeId> {
        self.integrator
    }
    /// Why tasks were left pending in the latest rounds.
    pub fn waiting_reasons(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .unplaced
            .iter()
            .map(|(r, n)| format!("{n} tasks: {r}"))
            .collect();
        if !self.refusals.is_empty() {
            let r: Vec<String> = self
                .refusals
                .iter()
                .map(|(k, n)| format!("{} x{n}", k.as_str()))
                .collect();
            v.push(format!("refused by nodes: {}", r.join(", ")));
        }
        v
    }

    pub fn progress(&self) -> Progress {
        let in_flight = self
            .tasks
            .iter()
            .filter(|t| matches!(t.state, TaskState::InFlight { .. }))
            .count() as u64;
        Progress {
            total: self.tasks.len() as u64,
            done: self.done,
            in_flight,
            pending: self.pending.len() as u64,
            spent: self.spent,
            budget: self.spec.budget,
            retries: self.retries,
            duplicates: self.duplicates,
        }
    }

    /// Tasks waiting to be placed (constant time, unlike [`JobTracker::progress`]).
    pub fn pending_count(&self) -> u64 {
        self.pending.len() as u64
    }

    /// Budget not yet spent nor reserved by tasks in flight.
    pub fn budget_left(&self) -> Bounty {
        self.unreserved()
    }

    /// Budget neither spent nor reserved.
    fn unreserved(&self) -> Bounty {
        self.spec
            .budget
            .saturating_sub(self.spent)
            .saturating_sub(self.committed)
    }

    /// Mean task time so far (or the spec's estimate).
    pub fn est_task_micros(&self) -> u64 {
        let (n, micros) = self
            .tallies
            .values()
            .fold((0u64, 0u64), |(n, m), t| (n + t.tasks_done, m + t.micros));
        micros.checked_div(n).unwrap_or(self.spec.est_task_micros)
    }

    /// Mean task time on `node`, when a task finished there.
    pub fn avg_micros_on(&self, node: &NodeId) -> Option<u64> {
        self.tallies
            .get(node)
            .filter(|t| t.tasks_done > 0)
            .map(|t| t.micros / t.tasks_done)
    }

    pub fn in_flight_on(&self, node: &NodeId) -> u32 {
        self.tallies.get(node).map(|t| t.in_flight).unwrap_or(0)
    }

    /// Up to `max` pending tasks, lowest index first, for the scheduler.
    pub fn pending_tasks(&self, max: usize) -> Vec<PendingTask> {
        self.pending
            .iter()
            .take(max)
            .filter_map(|&i| {
                let t = self.tasks.get(i as usize)?;
                let mut avoid = t.avoid.clone();
                avoid.extend(self.excluded.iter().filter(|n| !t.avoid.contains(n)));
                Some(PendingTask {
                    task: i,
                    attempts: t.attempts,
                    avoid,
                })
            })
            .collect()
    }

    /// The next command for the runtime.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<JobCommand> {
        self.commands.pop_front()
    }

    /// Applies a scheduler's plan made at `now_ms` at market price `price`;
    /// `promise` gives what each node promised in its Hand. These, with a
    /// reservation of the budget, are the terms each placement is paid on.
    pub fn apply_plan(
        &mut self,
        now_ms: u64,
        plan: Plan,
        price: Price,
        promise: impl Fn(&NodeId) -> Promise,
    ) {
        if self.outcome.is_some() {
            return;
        }
        self.unplaced.clear();
        // Verified results come back to the client, which compares them.
        if self.integrator.is_none() && !self.client_integrates && !self.verifying() {
            self.integrator = plan
                .placements
                .first()
                .map(|p| p.result_to)
                .filter(|r| *r != self.spec.client);
        }
        for p in plan.placements {
            if self.verifying() && !self.may_run_replica(p.task, p.node) {
                if let Some(t) = self.tasks.get_mut(p.task as usize) {
                    if !t.avoid.contains(&p.node) {
                        t.avoid.push(p.node);
                    }
                }
                continue;
            }
            let reserved = p.est_cost;
            let unreserved = self.unreserved();
            let Some(task) = self.tasks.get_mut(p.task as usize) else {
                continue;
            };
            if task.state != TaskState::Pending {
                continue;
            }
            // Whatever the scheduler planned, spend and reservations never
            // pass the budget: the task waits for a reservation to free.
            if reserved > unreserved {
                let short = Unplaced::BudgetShort {
                    needed: reserved,
                    left: unreserved,
                };
                *self.unplaced.entry(short).or_insert(0) += 1;
                continue;
            }
            let input_index = task.input;
            task.state = TaskState::InFlight {
                node: p.node,
                since_ms: now_ms,
                reserved,
            };
            if task.placements.len() >= MAX_TERMS_PER_TASK {
                task.placements.remove(0);
            }
            task.placements.push(PlacementTerms {
                node: p.node,
                placed_ms: now_ms,
                price,
                promise: promise(&p.node),
                reserved,
            });
            self.pending.remove(&p.task);
            self.committed = self
                .committed
                .checked_add(reserved)
                .unwrap_or(self.committed);
            self.tallies.entry(p.node).or_default().in_flight += 1;
            let input = self
                .spec
                .inputs
                .get(input_index as usize)
                .cloned()
                .unwrap_or_default();
            self.commands.push_back(JobCommand::Place {
                node: p.node,
                task: p.task,
                input,
                result_to: self.integrator,
            });
        }
        for (_, reason) in &plan.unplaced {
            *self.unplaced.entry(reason.clone()).or_insert(0) += 1;
        }
        if let Some((_, Unplaced::BudgetShort { needed, left })) = plan
            .unplaced
            .iter()
            .find(|(_, r)| matches!(r, Unplaced::BudgetShort { .. }))
        {
            self.fail(JobFailure::InsufficientBounty {
                needed: *needed,
                left: *left,
            });
        }
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
        if !t.avoid.contains(&node) {
            t.avoid.push(node);
        }
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
            if let Some(node) = self.release(i) {
                self.commands
                    .push_back(JobCommand::Cancel { node, task: i });
            }
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

    /// The node took the task into its queue.
    pub fn on_accept(&mut self, _node: NodeId, _task: u64) {}

    /// The node would not take the task: place it elsewhere.
    pub fn on_refuse(&mut self, node: NodeId, task: u64, reason: RefuseReason) {
        let on_that_node = matches!(
            self.tasks.get(task as usize).map(|t| &t.state),
            Some(TaskState::InFlight { node: n, .. }) if *n == node
        );
        if !on_that_node {
            return;
        }
        self.release(task);
        *self.refusals.entry(reason).or_insert(0) += 1;
        self.tallies.entry(node).or_default().refused += 1;
        if let Some(t) = self.tasks.get_mut(task as usize) {
            if !t.avoid.contains(&node) {
                t.avoid.push(node);
            }
            // It never ran there: no result from there counts.
            if let Some(i) = t.placements.iter().rposition(|p| p.node == node) {
                t.placements.remove(i);
            }
        }
        self.pending.insert(task);
    }

    /// A result arrived. Returns the charge when the result was counted.
    /// A result kept from an earlier run of this job (`submit --resume`):
    /// the task counts as done without running or being paid for again,
    /// and the job integrates at the client, which holds it. Taken only
    /// before any placement, for a pending task of a job without `verify`
    /// (whose replicas would need their votes kept too); returns whether
    /// it was taken.
    pub fn restore_result(&mut self, now_ms: u64, task: u64, result: Bytes) -> bool {
        if self.verifying() || self.outcome.is_some() || self.integrator.is_some() {
            return false;
        }
        let Some(t) = self.tasks.get_mut(task as usize) else {
            return false;
        };
        if t.state != TaskState::Pending {
            return false;
        }
        t.state = TaskState::Done;
        t.result = Some(result);
        self.pending.remove(&task);
        self.client_integrates = true;
        self.done += 1;
        if self.done == self.tasks.len() as u64 {
            self.all_done(now_ms);
        }
        true
    }

    /// A result arrived at `now_ms`. It counts only from a node the task
    /// was placed on (through the job's integrator, for a result it
    /// holds), and is paid on that placement's terms, bounded as
    /// [`crate::charge`] says, whatever the report claims.
    pub fn on_result(&mut self, now_ms: u64, report: TaskReport) -> ResultOutcome {
        let TaskReport {
            node,
            task,
            ok,
            body,
            micros,
            power,
            held_by,
        } = report;
        let Some((state, terms)) = self.tasks.get(task as usize).map(|t| {
            let terms = t.placements.iter().rev().find(|p| p.node == node).copied();
            (t.state.clone(), terms)
        }) else {
            return ResultOutcome::Ignored(Ignored::UnknownTask);
        };
        if self.outcome.is_some() {
            return ResultOutcome::Ignored(Ignored::JobOver);
        }
        // Only the job's integrator may report a result it holds; a report
        // from an integrator given up on is ignored and the task runs again.
        if held_by.is_some() && held_by != self.integrator {
            return ResultOutcome::Ignored(Ignored::NotOurIntegrator);
        }
        let Some(terms) = terms else {
            return ResultOutcome::Ignored(Ignored::NotPlacedThere);
        };
        match state {
            TaskState::Done => {
                self.duplicates += 1;
                ResultOutcome::Ignored(Ignored::Duplicate)
            }
            TaskState::Discarded => ResultOutcome::Ignored(Ignored::Discarded),
            _ if self.excluded.contains(&node) => ResultOutcome::Ignored(Ignored::Excluded),
            TaskState::InFlight { node: n, .. } if n == node && !ok => {
                let cause = String::from_utf8_lossy(&body).into_owned();
                self.retry(task, node, format!("on {node}: {cause}"));
                ResultOutcome::Failed
            }
            _ if !ok => ResultOutcome::Ignored(Ignored::StaleFailure),
            state => {
                // A correct result counts even from a node we had given up
                // on; any other placement of the task is then cancelled.
                if let TaskState::InFlight { node: other, .. } = state {
                    self.release(task);
                    if other != node {
                        self.commands
                            .push_back(JobCommand::Cancel { node: other, task });
                    }
                }
                let granted_us = self.slot_clocks.grant(
                    node,
                    terms.promise.slots,
                    terms.placed_ms,
                    now_ms,
                    micros,
                );
                let reference = self.reference_work(
                    node,
                    power.min(terms.promise.power),
                    granted_us.min(micros),
                );
                // This placement's reservation was released above (or
                // earlier, for a node given up on): what is not reserved
                // by other tasks is what the result may take.
                let granted = charge::grant(
                    &terms,
                    power,
                    micros,
                    granted_us,
                    Some(reference),
                    self.unreserved(),
                );
                self.spent = self.spent.checked_add(granted.charge).unwrap_or(self.spent);
                let tally = self.tallies.entry(node).or_default();
                let old_mean = tally.mean_work();
                tally.tasks_done += 1;
                tally.micros = tally.micros.saturating_add(granted.micros);
                tally.work = tally
                    .work
                    .saturating_add(granted.power.saturating_mul(granted.micros));
                tally.charged = tally
                    .charged
                    .checked_add(granted.charge)
                    .unwrap_or(tally.charged);
                if let Some(mean) = tally.mean_work() {
                    self.work_means.replace(old_mean, mean);
                }
                self.pending.remove(&task);
                let mut input = None;
                if let Some(t) = self.tasks.get_mut(task as usize) {
                    t.state = TaskState::Done;
                    t.result = Some(body);
                    t.held_by = held_by;
                    t.ran_on = Some(node);
                    input = Some(t.input);
                }
                self.done += 1;
                if self.verifying() {
                    if let Some(input) = input {
                        self.check_replicas(now_ms, input);
                    }
                } else if self.done == self.tasks.len() as u64 {
                    self.all_done(now_ms);
                }
                ResultOutcome::Counted(granted)
            }
        }
    }

    /// The job's reference work per task (MFLOPS x microseconds): the
    /// lower median, over the nodes that ran its tasks, of each node's mean
    /// granted work, counting a result of `work_power` x `work_micros` on
    /// `node` now. One node's claims cannot move it while another node's
    /// measurements stand beside them. Costs a binary search over the
    /// kept means: it is asked for on every counted result.
    #[must_use]
    pub fn reference_work(&self, node: NodeId, work_power: u64, work_micros: u64) -> u64 {
        let this = work_power.saturating_mul(work_micros);
        let own = self.tallies.get(&node);
        let (own_work, own_tasks) = own.map_or((0, 0), |t| (t.work, t.tasks_done));
        let own_mean = own_work.saturating_add(this) / own_tasks.saturating_add(1);
        self.work_means
            .lower_median_replacing(own.and_then(NodeTally::mean_work), own_mean)
    }

    /// Every task has a result: integrate here, or ask the integrator.
    fn all_done(&mut self, now_ms: u64) {
        match self.integrator {
            Some(node) if self.tasks.iter().any(|t| t.held_by == Some(node)) => {
                self.integrating_since = Some(now_ms);
                self.commands.push_back(JobCommand::Integrate {
                    node,
                    tasks: self.tasks.len() as u64,
                });
            }
            _ if self.verifying() => {
                let results = self
                    .accepted
                    .iter_mut()
                    .map(|r| r.take().unwrap_or_default())
                    .collect();
                self.outcome = Some(JobOutcome::Done(results));
            }
            _ => {
                let results = self
                    .tasks
                    .iter_mut()
                    .map(|t| t.result.take().unwrap_or_default())
                    .collect();
                self.outcome = Some(JobOutcome::Done(results));
            }
        }
    }

    fn verifying(&self) -> bool {
        self.spec.verify > 1
    }

    /// Nodes excluded from this job for returning wrong results.
    pub fn excluded(&self) -> &BTreeSet<NodeId> {
        &self.excluded
    }

    /// Whether replica `task` may run on `node`: not excluded, and no other
    /// replica of its input ran or runs there.
    fn may_run_replica(&self, task: u64, node: NodeId) -> bool {
        if self.excluded.contains(&node) {
            return false;
        }
        let Some(input) = self.tasks.get(task as usize).map(|t| t.input) else {
            return false;
        };
        let siblings = self.replicas.get(input as usize).map(Vec::as_slice);
        !siblings.unwrap_or_default().iter().any(|&other| {
            other != task
                && self.tasks.get(other as usize).is_some_and(|t| {
                    matches!(t.state, TaskState::InFlight { node: n, .. } if n == node)
                        || t.ran_on == Some(node)
                })
        })
    }

    /// With `verify`: accepts input `input`'s result once K replicas
    /// agree, excluding the nodes that disagreed; else makes sure a
    /// replica is pending or running.
    fn check_replicas(&mut self, now_ms: u64, input: u64) {
        let mut work = vec![input];
        while let Some(input) = work.pop() {
            if self.outcome.is_some() {
                return;
            }
            let k = self.spec.verify as usize;
            let Some(members) = self.replicas.get(input as usize).cloned() else {
                continue;
            };
            if self
                .accepted
                .get(input as usize)
                .is_none_or(Option::is_some)
            {
                continue;
            }
            // Votes: each distinct value with the nodes that returned it.
            let mut votes: Vec<(Bytes, Vec<NodeId>)> = Vec::new();
            for &m in &members {
                let Some(t) = self.tasks.get(m as usize) else {
                    continue;
                };
                let (TaskState::Done, Some(node), Some(value)) = (&t.state, t.ran_on, &t.result)
                else {
                    continue;
                };
                match votes.iter_mut().find(|(v, _)| v == value) {
                    Some((_, nodes)) => nodes.push(node),
                    None => votes.push((value.clone(), vec![node])),
                }
            }
            if let Some((value, _)) = votes.iter().find(|(_, nodes)| nodes.len() >= k) {
                let value = value.clone();
                let liars: Vec<NodeId> = votes
                    .iter()
                    .filter(|(v, _)| *v != value)
                    .flat_map(|(_, nodes)| nodes.iter().copied())
                    .collect();
                if let Some(slot) = self.accepted.get_mut(input as usize) {
                    *slot = Some(value);
                }
                self.inputs_accepted += 1;
                // Replicas still out are not needed.
                for &m in &members {
                    if let Some(node) = self.release(m) {
                        self.commands
                            .push_back(JobCommand::Cancel { node, task: m });
                    }
                    if let Some(t) = self.tasks.get_mut(m as usize) {
                        if t.state == TaskState::Pending {
                            t.state = TaskState::Discarded;
                        }
                    }
                    self.pending.remove(&m);
                }
                for liar in liars {
                    self.tallies.entry(liar).or_default().disagreed += 1;
                    work.extend(self.exclude(liar));
                }
                if self.inputs_accepted == self.accepted.len() as u64 {
                    self.all_done(now_ms);
                    return;
                }
                continue;
            }
            let open = members.iter().any(|&m| {
                self.tasks.get(m as usize).is_some_and(|t| {
                    matches!(t.state, TaskState::Pending | TaskState::InFlight { .. })
                })
            });
            if open {
                continue;
            }
            // Not enough agreement yet: one more replica, on a new node.
            let limit = k.saturating_mul(1 + self.spec.max_attempts.max(1) as usize);
            if members.len() >= limit {
                self.fail(JobFailure::TaskFailed {
                    task: input,
                    attempts: members.len() as u32,
                    cause: format!(
                        "{} nodes returned {} different results",
                        members.len(),
                        votes.len()
                    ),
                });
                return;
            }
            let mut avoid: Vec<NodeId> = members
                .iter()
                .filter_map(|&m| self.tasks.get(m as usize).and_then(|t| t.ran_on))
                .collect();
            avoid.extend(self.excluded.iter().copied());
            let index = self.tasks.len() as u64;
            self.tasks.push(Task {
                state: TaskState::Pending,
                attempts: 0,
                avoid,
                result: None,
                held_by: None,
                input,
                ran_on: None,
                placements: Vec::new(),
            });
            if let Some(r) = self.replicas.get_mut(input as usize) {
                r.push(index);
            }
            self.pending.insert(index);
        }
    }

    /// Excludes `node` from the job: its tasks in flight are cancelled and
    /// its results for inputs not yet accepted thrown away. Returns the
    /// inputs to check again.
    fn exclude(&mut self, node: NodeId) -> Vec<u64> {
        if !self.excluded.insert(node) {
            return Vec::new();
        }
        let mut touched = Vec::new();
        for i in 0..self.tasks.len() {
            let Some(t) = self.tasks.get(i) else { continue };
            let input = t.input;
            let open_input = self
                .accepted
                .get(input as usize)
                .is_some_and(Option::is_none);
            let in_flight_here =
                matches!(t.state, TaskState::InFlight { node: n, .. } if n == node);
            let done_here = t.state == TaskState::Done && t.ran_on == Some(node);
            if in_flight_here {
                self.release(i as u64);
                self.commands.push_back(JobCommand::Cancel {
                    node,
                    task: i as u64,
                });
            }
            if in_flight_here || (done_here && open_input) {
                if done_here {
                    self.done = self.done.saturating_sub(1);
                }
                self.pending.remove(&(i as u64));
                if let Some(t) = self.tasks.get_mut(i) {
                    t.state = TaskState::Discarded;
                    t.result = None;
                }
            }
            if (in_flight_here || done_here) && open_input {
                touched.push(input);
            }
        }
        touched
    }

    /// The integrator answered `Integrate`: the job result, or why not.
    pub fn on_integrated(&mut self, node: NodeId, result: Result<Bytes, String>) {
        if self.outcome.is_some() || self.integrator != Some(node) {
            return;
        }
        if self.integrating_since.is_none() {
            return;
        }
        match result {
            Ok(bytes) => {
                self.integrating_since = None;
                self.outcome = Some(JobOutcome::Integrated(bytes));
            }
            Err(_) => self.integrator_lost(node),
        }
    }

    /// The integrator is gone or failed: the tasks whose results it held
    /// run again (the work was done and stays paid for), with results back
    /// to the client from now on.
    fn integrator_lost(&mut self, node: NodeId) {
        if self.integrator != Some(node) || self.outcome.is_some() {
            return;
        }
        self.integrator = None;
        self.client_integrates = true;
        self.integrating_since = None;
        // Tasks in flight were told to send their results to the lost
        // node: those results would never arrive, so place them again now
        // rather than wait for their time-outs.
        for i in 0..self.tasks.len() as u64 {
            if let Some(worker) = self.release(i) {
                self.commands.push_back(JobCommand::Cancel {
                    node: worker,
                    task: i,
                });
                self.pending.insert(i);
            }
        }
        for (i, t) in self.tasks.iter_mut().enumerate() {
            if t.state == TaskState::Done && t.held_by == Some(node) {
                t.state = TaskState::Pending;
                t.held_by = None;
                t.result = None;
                self.done = self.done.saturating_sub(1);
                self.pending.insert(i as u64);
                self.retries += 1;
            }
        }
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
