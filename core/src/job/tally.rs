//! The job's accounting: what each node ran, was granted and was paid,
//! the progress snapshot, and the means the tracker reads from them.

use std::collections::BTreeMap;

use super::{JobTracker, TaskState};
use crate::money::Bounty;
use crate::node_id::NodeId;

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

impl JobTracker {
    pub fn tallies(&self) -> &BTreeMap<NodeId, NodeTally> {
        &self.tallies
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
}
