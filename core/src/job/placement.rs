//! Placing tasks: the pending tasks offered to the scheduler, applying
//! its plan within the budget, refusals, and why tasks still wait.

use super::{JobCommand, JobFailure, JobTracker, TaskState};
use crate::charge::{PlacementTerms, Promise};
use crate::component::scheduler::{PendingTask, Plan, Unplaced};
use crate::money::{Bounty, Price};
use crate::node_id::NodeId;
use crate::wire::RefuseReason;

/// Placement terms kept per task, at most (the latest ones): a task is
/// placed again only after a failure, a refusal or a time-out.
const MAX_TERMS_PER_TASK: usize = 8;

impl JobTracker {
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

    /// Tasks waiting to be placed (constant time, unlike [`JobTracker::progress`]).
    pub fn pending_count(&self) -> u64 {
        self.pending.len() as u64
    }

    /// Budget not yet spent nor reserved by tasks in flight.
    pub fn budget_left(&self) -> Bounty {
        self.unreserved()
    }

    /// Budget neither spent nor reserved.
    pub(super) fn unreserved(&self) -> Bounty {
        self.spec
            .budget
            .saturating_sub(self.spent)
            .saturating_sub(self.committed)
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
                    t.keep_off(p.node);
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
            t.keep_off(node);
            // It never ran there: no result from there counts.
            if let Some(i) = t.placements.iter().rposition(|p| p.node == node) {
                t.placements.remove(i);
            }
        }
        self.pending.insert(task);
    }
}
