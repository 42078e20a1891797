//! Integrating the job's results: at the client, or at the node the
//! scheduler named, and what happens when that integrator is lost.

use bytes::Bytes;

use super::{JobCommand, JobOutcome, JobTracker, TaskState};
use crate::node_id::NodeId;

impl JobTracker {
    /// The node integrating this job's results, when not the client.
    pub fn integrator(&self) -> Option<NodeId> {
        self.integrator
    }

    /// Every task has a result: integrate here, or ask the integrator.
    pub(super) fn all_done(&mut self, now_ms: u64) {
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
    pub(super) fn integrator_lost(&mut self, node: NodeId) {
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
            if self.cancel_placement(i).is_some() {
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
}
