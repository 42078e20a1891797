//! Results coming back: whether a reported result counts, what it is
//! paid (bounded as [`crate::charge`] says), and results restored from an
//! earlier run of the job.

use bytes::Bytes;

use super::{JobCommand, JobTracker, NodeTally, TaskReport, TaskState};
use crate::charge::{self, Granted};
use crate::money::Bounty;
use crate::node_id::NodeId;

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

impl JobTracker {
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
}
