//! The integrator: a node the scheduler names to receive a job's task
//! results (DESIGN 4.6). It keeps the first result of each task, tells the
//! client (who keeps the accounts) that the task is done, and when the
//! client asks, integrates the results with the kernel's reduce and sends
//! back the job result.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use lppsp_core::component::Executor;
use lppsp_core::wire::headers::ResultHeaders;
use lppsp_core::wire::{Body, Frame, JobId, KernelName, Message};
use lppsp_core::NodeId;
use tracing::{debug, warn};

/// Bytes of results one node holds for all clients together; past it, new
/// results are refused back to the client as failures, so a client cannot
/// fill this node's memory.
pub const MAX_HELD_BYTES: u64 = 1 << 30;
/// A job nobody has touched for this long is dropped (its client is gone).
pub const IDLE_JOB_MS: u64 = 30 * 60 * 1000;

#[derive(Default)]
struct HeldJob {
    results: BTreeMap<u64, Bytes>,
    bytes: u64,
    touched_ms: u64,
}

/// Results this node holds for other nodes' jobs.
pub struct Integrator {
    jobs: HashMap<(NodeId, JobId), HeldJob>,
    held_bytes: u64,
    executor: Arc<dyn Executor>,
}

/// What to send, and to whom.
pub type Outgoing = (NodeId, Frame);

impl Integrator {
    pub fn new(executor: Arc<dyn Executor>) -> Self {
        Self {
            jobs: HashMap::new(),
            held_bytes: 0,
            executor,
        }
    }

    /// Jobs and bytes held now.
    pub fn held(&self) -> (usize, u64) {
        (self.jobs.len(), self.held_bytes)
    }

    /// A compute node (`worker`) sent a task result meant for us. Returns
    /// the notice for the client, who counts and pays for the task.
    pub fn on_result(&mut self, now_ms: u64, worker: NodeId, frame: Frame) -> Option<Outgoing> {
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
            warn!(%client, %job, task, "integrator full; result refused");
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
        held.touched_ms = now_ms;
        match held.results.entry(task) {
            // A second run of the task (re-placed after a timeout): the
            // first result stands, and the client counts the task once.
            std::collections::btree_map::Entry::Occupied(_) => {
                debug!(%client, %job, task, "duplicate result kept out");
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(body);
                held.bytes += size;
                self.held_bytes += size;
            }
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
    /// checking that tasks `0..tasks` are all there. The caller runs
    /// [`integrate`] on them off the reactor, since a reduce may be long.
    pub fn take_for_integration(
        &mut self,
        client: NodeId,
        job: JobId,
        tasks: u64,
    ) -> Result<Vec<Bytes>, String> {
        let held = self
            .jobs
            .get(&(client, job))
            .ok_or_else(|| format!("no results held for job {job}"))?;
        // `tasks` comes from the wire: count what is held below it (bounded
        // by what is held), never walk 0..tasks.
        let have = held.results.range(..tasks).count() as u64;
        if have != tasks || held.results.len() as u64 != tasks {
            let missing = tasks.saturating_sub(have);
            return Err(format!(
                "{missing} of {tasks} task results are missing here"
            ));
        }
        self.take(client, job)
            .ok_or_else(|| format!("no results held for job {job}"))
    }

    /// The client dropped the job (failed or cancelled).
    pub fn forget(&mut self, client: NodeId, job: JobId) {
        self.take(client, job);
    }

    /// Drops jobs untouched for [`IDLE_JOB_MS`].
    pub fn expire(&mut self, now_ms: u64) {
        let stale: Vec<(NodeId, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, h)| now_ms.saturating_sub(h.touched_ms) >= IDLE_JOB_MS)
            .map(|(k, _)| *k)
            .collect();
        for (client, job) in stale {
            warn!(%client, %job, "dropping results of a job nobody asked for");
            self.take(client, job);
        }
    }

    pub fn executor(&self) -> Arc<dyn Executor> {
        self.executor.clone()
    }
}

/// Reduces `results` with `kernel` and builds the `Integrated` answer.
/// Runs on a blocking thread: a reduce may be long.
pub fn integrate(
    executor: &dyn Executor,
    price: lppsp_core::money::Price,
    job: JobId,
    kernel: &KernelName,
    results: Result<Vec<Bytes>, String>,
) -> Frame {
    let outcome = results.and_then(|results| {
        let refs: Vec<&[u8]> = results.iter().map(|r| r.as_ref()).collect();
        executor.reduce(kernel, &refs).map_err(|e| e.to_string())
    });
    let (ok, body) = match outcome {
        Ok(r) => (true, Bytes::from(r)),
        Err(e) => (false, Bytes::from(e.into_bytes())),
    };
    Frame::new(price, Message::Integrated { job, ok }).with_body(Body::from_bytes(body))
}
