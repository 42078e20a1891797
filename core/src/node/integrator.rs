//! The integrator: a node the scheduler names to receive a job's task
//! results (DESIGN 4.6). It keeps the first result of each task, tells the
//! client (who keeps the accounts) that the task is done, and when the
//! client asks, hands the results over for the kernel's reduce, which the
//! driver runs (off its event loop: a reduce may be long).

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::node_id::NodeId;
use crate::wire::headers::ResultHeaders;
use crate::wire::{Body, Frame, JobId, Message};

/// Bytes of results one node holds for all clients together; past it, new
/// results are refused back to the client as failures, so a client cannot
/// fill this node's memory.
pub const MAX_HELD_BYTES: u64 = 1 << 30;
/// A job nobody has touched for this long is dropped (its client is gone).
pub const IDLE_JOB_MS: u64 = 30 * 60 * 1000;

#[derive(Debug, Default)]
struct HeldJob {
    results: BTreeMap<u64, Bytes>,
    bytes: u64,
    touched_ms: u64,
}

/// Why the integrator could not integrate a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrateError {
    #[error("no results held for job {0}")]
    NothingHeld(JobId),
    #[error("{missing} of {tasks} task results are missing here")]
    Missing { missing: u64, tasks: u64 },
}

/// Results this node holds for other nodes' jobs.
#[derive(Debug, Default)]
pub struct Integrator {
    jobs: BTreeMap<(NodeId, JobId), HeldJob>,
    held_bytes: u64,
}

impl Integrator {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Jobs and bytes held now.
    #[must_use]
    pub fn held(&self) -> (usize, u64) {
        (self.jobs.len(), self.held_bytes)
    }

    /// A compute node (`worker`) sent a task result meant for us. Returns
    /// the notice for the client, who counts and pays for the task, and to
    /// whom it goes; None when the frame names no client.
    pub fn on_result(&mut self, now: u64, worker: NodeId, frame: Frame) -> Option<(NodeId, Frame)> {
        let Message::Result { job, task, ok } = frame.message else {
            return None;
        };
        let headers = ResultHeaders::read(&frame.headers).ok()?;
        let client = headers.client?;
        let body = frame.body.map(|b| b.to_bytes()).unwrap_or_default();
        let notice = Frame::new(frame.price, Message::Result { job, task, ok });
        let notice = headers.notice_from(worker).write(notice);
        if !ok {
            // A failure is the client's to handle: pass its cause on.
            return Some((client, notice.with_body(Body::from_bytes(body))));
        }
        let size = body.len() as u64;
        if self.held_bytes.saturating_add(size) > MAX_HELD_BYTES {
            let headers = ResultHeaders {
                worker: Some(worker),
                ..ResultHeaders::default()
            };
            let failed = Frame::new(
                frame.price,
                Message::Result {
                    job,
                    task,
                    ok: false,
                },
            )
            .with_body(Body::from_bytes(Bytes::from_static(
                b"the integrator holds too many results",
            )));
            return Some((client, headers.write(failed)));
        }
        let held = self.jobs.entry((client, job)).or_default();
        held.touched_ms = now;
        // A second run of the task (placed again after a timeout): the
        // first result stands, and the client counts the task once.
        if let std::collections::btree_map::Entry::Vacant(slot) = held.results.entry(task) {
            slot.insert(body);
            held.bytes = held.bytes.saturating_add(size);
            self.held_bytes = self.held_bytes.saturating_add(size);
        }
        Some((client, notice))
    }

    /// Removes a job's held results, in task order.
    fn take(&mut self, client: NodeId, job: JobId) -> Option<Vec<Bytes>> {
        let held = self.jobs.remove(&(client, job))?;
        self.held_bytes = self.held_bytes.saturating_sub(held.bytes);
        Some(held.results.into_values().collect())
    }

    /// The client asks for the job result: takes the held results of `job`,
    /// checking that tasks `0..tasks` are all there.
    pub fn take_for_integration(
        &mut self,
        client: NodeId,
        job: JobId,
        tasks: u64,
    ) -> Result<Vec<Bytes>, IntegrateError> {
        let held = self
            .jobs
            .get(&(client, job))
            .ok_or(IntegrateError::NothingHeld(job))?;
        // `tasks` comes from the wire: count what is held below it (bounded
        // by what is held), never walk 0..tasks.
        let have = held.results.range(..tasks).count() as u64;
        if have != tasks || held.results.len() as u64 != tasks {
            let missing = tasks.saturating_sub(have);
            return Err(IntegrateError::Missing { missing, tasks });
        }
        self.take(client, job)
            .ok_or(IntegrateError::NothingHeld(job))
    }

    /// The client dropped the job (failed or cancelled).
    pub fn forget(&mut self, client: NodeId, job: JobId) {
        self.take(client, job);
    }

    /// Drops jobs untouched for [`IDLE_JOB_MS`]; returns them.
    pub fn expire(&mut self, now: u64) -> Vec<(NodeId, JobId)> {
        let stale: Vec<(NodeId, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, h)| now.saturating_sub(h.touched_ms) >= IDLE_JOB_MS)
            .map(|(k, _)| *k)
            .collect();
        for (client, job) in &stale {
            self.take(*client, *job);
        }
        stale
    }
}

/// The `Integrated` answer to a client: the job result, or why there is
/// none.
#[must_use]
pub fn answer(price: crate::money::Price, job: JobId, outcome: Result<Vec<u8>, String>) -> Frame {
    let (ok, body) = match outcome {
        Ok(r) => (true, Bytes::from(r)),
        Err(e) => (false, Bytes::from(e.into_bytes())),
    };
    Frame::new(price, Message::Integrated { job, ok }).with_body(Body::from_bytes(body))
}
