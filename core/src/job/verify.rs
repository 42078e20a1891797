//! Verification (`JobSpec::verify = K` above 1): which node a replica may
//! run on, accepting an input's result once K replicas agree, and
//! excluding the nodes that disagreed.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::{JobFailure, JobTracker, Task, TaskState};
use crate::node_id::NodeId;

impl JobTracker {
    pub(super) fn verifying(&self) -> bool {
        self.spec.verify > 1
    }

    /// Nodes excluded from this job for returning wrong results.
    pub fn excluded(&self) -> &BTreeSet<NodeId> {
        &self.excluded
    }

    /// Whether replica `task` may run on `node`: not excluded, and no other
    /// replica of its input ran or runs there.
    pub(super) fn may_run_replica(&self, task: u64, node: NodeId) -> bool {
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
    pub(super) fn check_replicas(&mut self, now_ms: u64, input: u64) {
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
                    self.cancel_placement(m);
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
            self.tasks.push(Task::pending(input, avoid));
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
                self.cancel_placement(i as u64);
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
}
