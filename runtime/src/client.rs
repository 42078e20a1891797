//! The client side of a node: jobs submitted through the control endpoint,
//! placed by the configured scheduler onto peers from the book, tracked by
//! the core job state machine, and integrated with the executor's reduce.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lppsp_core::book::Book;
use lppsp_core::component::{Constraints, Executor, Scheduler, Transport};
use lppsp_core::job::{JobFailure, JobOutcome, JobSpec, JobTracker, NodeTally};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::node::client::{Client as CoreClient, ClientEvent, ClientJob};
use lppsp_core::node::defaults;
use lppsp_core::node::placement::PeerViews;
use lppsp_core::wire::{Arch, Frame, JobId, KernelName, Message};
use lppsp_core::NodeId;
use lppsp_ledger::TaskCharge;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::control::reply::{
    JobAccepted, JobDone, JobEvent, JobFailCode, JobFailed, JobProgress, JobState, JobSummary,
};
use crate::control::reply_json;
use crate::journal::{JobJournal, ResultLog};
use crate::links::{Links, NetEvent};
use crate::refusals::MemberRefusals;

/// Most tasks one job may have.
pub const MAX_TASKS: u64 = 10_000_000;
/// Most input bytes one job may hold in memory.
pub const MAX_JOB_BYTES: u64 = 4 << 30;

/// How a job's task inputs are given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputSpec {
    /// Task i (start <= i < end) gets i as u64 LE, then each of `extra` as u64 LE.
    Range {
        start: u64,
        end: u64,
        #[serde(default)]
        extra: Vec<u64>,
    },
    /// Splits [start, end) into spans of `step`: each task gets lo and hi as u64 LE.
    Spans { start: u64, end: u64, step: u64 },
    /// One task per file, its bytes as input (read by the node, on this machine).
    Files { paths: Vec<PathBuf> },
    /// `count` tasks of `size` pseudo-random bytes (SplitMix64 from `seed`).
    Random { count: u64, size: u64, seed: u64 },
    /// One task per string, its UTF-8 bytes as input.
    Inline { inputs: Vec<String> },
}

impl InputSpec {
    /// The task inputs, bounded by [`MAX_TASKS`] and [`MAX_JOB_BYTES`].
    pub fn materialize(&self) -> Result<Vec<Bytes>, String> {
        let check_count = |n: u64| {
            if n > MAX_TASKS {
                Err(format!("{n} tasks is more than the limit of {MAX_TASKS}"))
            } else {
                Ok(())
            }
        };
        match self {
            InputSpec::Range { start, end, extra } => {
                check_count(end.saturating_sub(*start))?;
                Ok((*start..*end)
                    .map(|i| {
                        let mut v = Vec::with_capacity(8 * (1 + extra.len()));
                        v.extend_from_slice(&i.to_le_bytes());
                        for x in extra {
                            v.extend_from_slice(&x.to_le_bytes());
                        }
                        Bytes::from(v)
                    })
                    .collect())
            }
            InputSpec::Spans { start, end, step } => {
                if *step == 0 {
                    return Err("spans: step must be at least 1".into());
                }
                check_count(end.saturating_sub(*start).div_ceil(*step))?;
                let mut out = Vec::new();
                let mut lo = *start;
                while lo < *end {
                    let hi = lo.saturating_add(*step).min(*end);
                    let mut v = Vec::with_capacity(16);
                    v.extend_from_slice(&lo.to_le_bytes());
                    v.extend_from_slice(&hi.to_le_bytes());
                    out.push(Bytes::from(v));
                    lo = hi;
                }
                Ok(out)
            }
            InputSpec::Files { paths } => {
                check_count(paths.len() as u64)?;
                let mut total = 0u64;
                paths
                    .iter()
                    .map(|p| {
                        let data = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
                        total += data.len() as u64;
                        if total > MAX_JOB_BYTES {
                            return Err(format!("inputs exceed {MAX_JOB_BYTES} bytes"));
                        }
                        Ok(Bytes::from(data))
                    })
                    .collect()
            }
            InputSpec::Inline { inputs } => {
                check_count(inputs.len() as u64)?;
                let total: u64 = inputs.iter().map(|s| s.len() as u64).sum();
                if total > MAX_JOB_BYTES {
                    return Err(format!("inputs exceed {MAX_JOB_BYTES} bytes"));
                }
                Ok(inputs
                    .iter()
                    .map(|s| Bytes::from(s.clone().into_bytes()))
                    .collect())
            }
            InputSpec::Random { count, size, seed } => {
                check_count(*count)?;
                if count.saturating_mul(*size) > MAX_JOB_BYTES {
                    return Err(format!("inputs exceed {MAX_JOB_BYTES} bytes"));
                }
                let mut words = lppsp_core::splitmix::SplitMix64::new(*seed);
                Ok((0..*count)
                    .map(|_| {
                        let mut v = Vec::with_capacity(*size as usize);
                        while (v.len() as u64) < *size {
                            v.extend_from_slice(&words.next_u64().to_le_bytes());
                        }
                        v.truncate(*size as usize);
                        Bytes::from(v)
                    })
                    .collect())
            }
        }
    }
}

/// A job as `lppsp submit` sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// A builtin kernel's name; empty (or the module's `wasm:` name) when
    /// `module` is given.
    #[serde(default)]
    pub kernel: String,
    pub inputs: InputSpec,
    /// User code: a WASM module, base64 (standard alphabet). Its kernel
    /// name is `wasm:` + its SHA-256.
    #[serde(default)]
    pub module: Option<String>,
    /// Fuel each task may burn (WASM); unset = the compute node's default.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Defaults to the node's remaining bounty.
    #[serde(default)]
    pub budget: Option<Bounty>,
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub min_power: u64,
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "defaults::task_timeout_s")]
    pub task_timeout_s: u64,
    /// Expected time of one task before any has finished, ms.
    #[serde(default = "defaults::est_task_ms")]
    pub est_task_ms: u64,
    /// Nodes that must return byte-equal results for each input (1: no
    /// verification); see `lppsp_core::job`.
    #[serde(default = "defaults::verify")]
    pub verify: u32,
    /// Run again the unfinished job with this id, as the node's journal
    /// recorded it (`lppsp submit --resume JOB`); the other fields are
    /// then ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// The most the job pays per unit of price (`lppsp submit
    /// --max-price`): while the market price is above it, its tasks are
    /// not placed and count as no demand; unset = any price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<Price>,
}

/// What the runtime keeps of a job beside the core's [`ClientJob`]: its
/// submitter's channel and clock, and where its results are kept.
struct JobIo {
    subscriber: mpsc::Sender<serde_json::Value>,
    started: Instant,
    last_progress: Option<Instant>,
    /// Where results that come back here are kept for `--resume`.
    results: Option<ResultLog>,
}

/// Every job this node has submitted, and its links to compute nodes.
pub struct Client {
    /// Results and claims refused from members, counted.
    refusals: MemberRefusals,
    me: NodeId,
    /// The jobs and their placement: the node's sans-IO client.
    core: CoreClient,
    io: BTreeMap<JobId, JobIo>,
    links: Links,
    scheduler: Box<dyn Scheduler>,
    views: PeerViews,
    executor: Arc<dyn Executor>,
    job_seq: u64,
    /// Bounty spent by finished jobs.
    pub spent: Bounty,
    /// Charges counted since the driver last took them, for its accounts.
    metered: Vec<TaskCharge>,
    /// A job ended since the driver last asked: time to settle.
    job_ended: bool,
    /// The latest finished jobs, newest last, for status (bounded).
    finished: VecDeque<JobSummary>,
    /// Answers for the submitters of jobs that just ended.
    finished_events: Vec<(JobId, JobEvent)>,
    /// Where accepted jobs are recorded until they end.
    journal: Option<JobJournal>,
}

/// The largest task result read back from the journal on `--resume`.
const MAX_KEPT_RESULT: u32 = 256 * 1024 * 1024;

/// Finished jobs kept for status.
const FINISHED_KEPT: usize = 20;

impl Client {
    pub fn new(
        me: NodeId,
        transport: Arc<dyn Transport>,
        scheduler: Box<dyn Scheduler>,
        executor: Arc<dyn Executor>,
        net_tx: mpsc::Sender<NetEvent>,
        seed: u64,
        hold_ms: u64,
    ) -> Self {
        Self {
            refusals: MemberRefusals::default(),
            me,
            core: CoreClient::new(me, hold_ms),
            io: BTreeMap::new(),
            links: Links::new(transport, net_tx),
            scheduler,
            views: PeerViews::default(),
            executor,
            job_seq: seed,
            spent: Bounty::ZERO,
            metered: Vec::new(),
            job_ended: false,
            finished: VecDeque::new(),
            finished_events: Vec::new(),
            journal: None,
        }
    }

    /// Counts refused results and cut claims in the node's `refusals`.
    pub fn set_refusals(&mut self, refusals: MemberRefusals) {
        self.refusals = refusals;
    }

    pub fn active_jobs(&self) -> usize {
        self.core.len()
    }

    /// Charges counted since the last call.
    pub fn take_metered(&mut self) -> Vec<TaskCharge> {
        std::mem::take(&mut self.metered)
    }

    /// Whether a job ended since the last call.
    pub fn take_job_ended(&mut self) -> bool {
        std::mem::take(&mut self.job_ended)
    }

    /// Running jobs, then the latest finished ones: progress (done of
    /// total, spent), placements per node, elapsed time.
    pub fn jobs_status(&self) -> Vec<JobSummary> {
        let running = self.core.jobs().map(|(id, j)| {
            let elapsed = self
                .io
                .get(id)
                .map_or(0.0, |io| io.started.elapsed().as_secs_f64());
            let mut v = job_summary(*id, &j.tracker, JobState::Running, elapsed);
            v.max_price = j.max_price;
            v
        });
        // Journaled jobs not running here: left by an earlier run of the node.
        let unfinished = self
            .journal
            .iter()
            .flat_map(|j| j.unfinished())
            .filter(|id| !self.core.contains(id))
            .map(|id| JobSummary {
                job: id.to_string(),
                state: JobState::Unfinished,
                kernel: None,
                progress: None,
                placements: None,
                elapsed_s: None,
                max_price: None,
            });
        running
            .chain(unfinished)
            .chain(self.finished.iter().cloned())
            .collect()
    }

    /// Records accepted jobs in `journal` until they end.
    pub fn set_journal(&mut self, journal: JobJournal) {
        self.journal = Some(journal);
    }

    /// Tasks of this client's jobs not yet placed that would buy at
    /// `price` (demand the compute nodes' queues do not show yet): a job
    /// whose maximum price is below it waits and is no demand.
    pub fn pending(&self, price: Price) -> u64 {
        self.core.pending(price)
    }

    /// Tasks this client has queued or running in the pool.
    pub fn in_pool(&self) -> u64 {
        self.core.in_pool()
    }

    /// Accepts a job; replies go to `reply` until it finishes.
    pub async fn submit(
        &mut self,
        now_ms: u64,
        req: SubmitRequest,
        reply: mpsc::Sender<serde_json::Value>,
        balance: Bounty,
    ) {
        let fail = |error: String| reply_json(&JobEvent::Rejected { error });
        let mut resumed = None;
        let req = match req.resume.as_deref() {
            None => req,
            Some(text) => {
                let stored = text.parse::<JobId>().ok().and_then(|id| {
                    let journal = self.journal.as_ref()?;
                    Some((id, journal.load(id)?))
                });
                let Some((old, stored)) = stored.filter(|(id, _)| !self.core.contains(id)) else {
                    let msg = format!("no unfinished job {text} in this node's journal");
                    let _ = reply.send(fail(msg)).await;
                    return;
                };
                resumed = Some(old);
                stored
            }
        };
        let module = match self.load_module(&req) {
            Ok(m) => m,
            Err(e) => {
                let _ = reply.send(fail(e)).await;
                return;
            }
        };
        let kernel_name = match &module {
            Some((kernel, _)) => kernel.as_str().to_string(),
            None => req.kernel.clone(),
        };
        let kernel = match KernelName::new(kernel_name) {
            Ok(k) if self.executor.has_kernel(&k) => k,
            Ok(k) => {
                let _ = reply
                    .send(fail(format!("unknown kernel {k} (see `lppsp kernels`)")))
                    .await;
                return;
            }
            Err(e) => {
                let _ = reply.send(fail(format!("kernel name: {e}"))).await;
                return;
            }
        };
        let arch = match req.arch.as_deref().map(Arch::new).transpose() {
            Ok(a) => a,
            Err(e) => {
                let _ = reply.send(fail(format!("arch: {e}"))).await;
                return;
            }
        };
        let inputs = match req.inputs.materialize() {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(fail(format!("inputs: {e}"))).await;
                return;
            }
        };
        self.job_seq = self.job_seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let id = JobId(self.job_seq);
        let budget = req.budget.unwrap_or(balance).min(balance);
        let total = inputs.len();
        let spec = JobSpec {
            id,
            client: self.me,
            kernel,
            inputs,
            budget,
            constraints: Constraints {
                arch,
                min_power: req.min_power,
            },
            max_attempts: req.max_attempts.max(1),
            task_timeout_ms: req.task_timeout_s.saturating_mul(1000).max(1),
            est_task_micros: req.est_task_ms.saturating_mul(1000).max(1),
            verify: req.verify.max(1),
        };
        let mut kept = Vec::new();
        if let Some(journal) = &self.journal {
            if let Err(e) = journal.record(id, &req) {
                let _ = reply
                    .send(fail(format!("cannot record the job: {e}")))
                    .await;
                return;
            }
            if let Some(old) = resumed {
                // Its results first: finishing the old job removes them.
                if spec.verify <= 1 {
                    kept = journal.take_over_results(old, id, total as u64, MAX_KEPT_RESULT);
                }
                journal.finish(old);
                info!(job = %id, resumed = %old, "unfinished job runs again");
            }
        }
        info!(job = %id, kernel = %spec.kernel, tasks = total, budget = %budget, "job submitted");
        let verify = spec.verify > 1;
        let mut tracker = JobTracker::new(spec);
        // Results kept from the earlier run are not run (or paid) again.
        let mut restored = 0u64;
        let mut results = None;
        if let (Some(journal), false) = (&self.journal, verify) {
            if resumed.is_some() {
                for (task, result) in kept {
                    restored += u64::from(tracker.restore_result(0, task, result));
                }
                info!(job = %id, restored, "results kept from the earlier run");
            }
            results = journal
                .result_log(id)
                .inspect_err(
                    |e| warn!(job = %id, error = %e, "task results will not be kept for --resume"),
                )
                .ok();
        }
        let accepted = JobEvent::Accepted(JobAccepted {
            job: id.to_string(),
            tasks: total as u64,
            budget,
            resumed: resumed.map(|old| old.to_string()),
            restored: resumed.map(|_| restored),
            max_price: req.max_price,
        });
        let _ = reply.send(reply_json(&accepted)).await;
        let mut job = ClientJob::with_tracker(tracker, now_ms);
        job.module = module.map(|(_, code)| code);
        job.fuel = req.fuel;
        job.max_price = req.max_price;
        self.core.submit(job);
        self.io.insert(
            id,
            JobIo {
                subscriber: reply,
                started: Instant::now(),
                last_progress: None,
                results,
            },
        );
    }

    /// Decodes and loads the request's module, if it has one: the node's
    /// own executor must accept it (it checks imports and compiles), or no
    /// peer would.
    fn load_module(&self, req: &SubmitRequest) -> Result<Option<(KernelName, Bytes)>, String> {
        use base64::Engine as _;
        let Some(text) = &req.module else {
            return Ok(None);
        };
        let code = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("module: not base64: {e}"))?;
        let kernel = self
            .executor
            .load_module(&code)
            .map_err(|e| format!("module rejected: {e}"))?;
        if !req.kernel.is_empty() && req.kernel != kernel.as_str() {
            return Err(format!(
                "module: its kernel name is {kernel}, but the request names {}",
                req.kernel
            ));
        }
        Ok(Some((kernel, Bytes::from(code))))
    }

    /// Sends `frame` to `node` over our link to it; false when the node
    /// cannot be reached (not in the book, or its link is gone).
    pub fn send_to(&mut self, now_ms: u64, node: NodeId, frame: Frame, book: &Book) -> bool {
        self.links.send_or_hold(now_ms, node, frame, book)
    }

    /// The connections this client uses to reach other nodes.
    pub fn links(&mut self) -> &mut Links {
        &mut self.links
    }

    /// Handles a frame from a compute node or an integrator.
    pub fn on_frame(&mut self, now_ms: u64, peer: NodeId, frame: Frame, book: &Book) {
        if !matches!(
            frame.message,
            Message::Result { .. }
                | Message::Integrated { .. }
                | Message::Accept { .. }
                | Message::Refuse { .. }
        ) {
            return debug!(%peer, kind = frame.message.kind(), "unexpected frame on a client link");
        }
        self.core.handle_frame(now_ms, peer, frame, |worker| {
            book.peer(worker).map(|p| p.power).unwrap_or(0)
        });
        self.drain_events();
    }

    /// What the core client reported: charges to meter, results to keep,
    /// members' faults to count, finished jobs to answer.
    fn drain_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            match event {
                ClientEvent::Counted {
                    job,
                    task,
                    payee,
                    granted,
                    fuel,
                    body,
                } => {
                    let log = self.io.get_mut(&job).and_then(|io| io.results.as_mut());
                    if let (Some(log), Some(body)) = (log, body) {
                        log.append(task, &body);
                    }
                    self.metered
                        .push(TaskCharge::granted(job, payee, &granted, fuel));
                }
                ClientEvent::MemberFault {
                    peer,
                    reason,
                    job,
                    task,
                } => self
                    .refusals
                    .refuse(peer, reason, &format_args!("job {job} task {task}")),
                ClientEvent::Refused {
                    peer,
                    job,
                    task,
                    reason,
                } => debug!(%peer, %job, task, reason = reason.as_str(), "task refused"),
                ClientEvent::IntegrationFailed {
                    job,
                    integrator,
                    why,
                } => {
                    warn!(%job, %integrator, error = %why, "integration failed; integrating here")
                }
                ClientEvent::Integrating { job, integrator } => {
                    info!(%job, %integrator, "asking the integrator for the job result")
                }
                ClientEvent::Finished(job) => self.finish(*job),
            }
        }
    }

    /// The link to `peer` failed or closed: its tasks go elsewhere and it
    /// gets no new ones for a while.
    pub fn on_link_lost(&mut self, peer: NodeId, now_ms: u64) {
        self.links.drop_link(&peer);
        self.core.handle_link_lost(now_ms, peer);
    }

    /// `peer` (re)joined the book: a link failure before it left no longer
    /// keeps work from it.
    pub fn on_peer_joined(&mut self, peer: NodeId) {
        self.core.handle_peer_joined(peer);
    }

    /// A compute node left the book or its connection closed.
    pub fn on_node_lost(&mut self, peer: NodeId) {
        self.links.drop_link(&peer);
        self.core.handle_node_lost(peer);
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.core.handle_timeout(now_ms);
        for io in self.io.values_mut() {
            if let Some(log) = &mut io.results {
                log.flush();
            }
        }
    }

    /// Runs the scheduler for every job, sends what it decided, and reports
    /// progress and results to the submitters.
    pub async fn schedule(&mut self, now_ms: u64, book: &Book, price: Price) {
        for (id, io) in &self.io {
            if io.subscriber.is_closed() {
                warn!(job = %id, "submitter went away; cancelling the job");
                self.core.cancel(id, "the submitter disconnected");
            }
        }
        self.views.rebuild(book);
        self.core.place(
            now_ms,
            price,
            &mut self.views,
            self.scheduler.as_mut(),
            |n| book.promise(n),
        );
        let mut lost = Vec::new();
        while let Some((node, frame)) = self.core.poll_transmit() {
            if !self.links.send(node, frame, book) {
                lost.push(node);
            }
        }
        for node in lost {
            self.on_link_lost(node, now_ms);
        }
        self.drain_events();
        for (id, job) in self.core.jobs() {
            let Some(io) = self.io.get_mut(id) else {
                continue;
            };
            report_progress(*id, job, io, price);
        }
        for (id, event) in std::mem::take(&mut self.finished_events) {
            if let Some(io) = self.io.remove(&id) {
                let _ = io.subscriber.send(reply_json(&event)).await;
            }
        }
    }

    /// A job ended: its summary for status, its answer for the submitter.
    fn finish(&mut self, job: ClientJob) {
        let id = job.tracker.id();
        let Some(outcome) = job.tracker.outcome().cloned() else {
            return;
        };
        if let Some(journal) = &self.journal {
            journal.finish(id);
        }
        self.job_ended = true;
        let tracker = &job.tracker;
        let progress = tracker.progress();
        self.spent = self.spent.checked_add(progress.spent).unwrap_or(self.spent);
        let nodes = tallies(tracker);
        let elapsed = self
            .io
            .get(&id)
            .map_or(0.0, |io| io.started.elapsed().as_secs_f64());
        let state = match &outcome {
            JobOutcome::Failed(_) => JobState::Failed,
            _ => JobState::Done,
        };
        if self.finished.len() >= FINISHED_KEPT {
            self.finished.pop_front();
        }
        self.finished
            .push_back(job_summary(id, tracker, state, elapsed));
        let kernel = tracker.spec().kernel.clone();
        // The job's result, integrated here or by its integrator.
        let done = |result: &[u8], integrated_by, progress, nodes| {
            JobEvent::Done(JobDone {
                job: id.to_string(),
                result: self.executor.render(&kernel, result),
                result_hex: hex_short(result),
                elapsed_s: elapsed,
                progress,
                nodes,
                integrated_by,
            })
        };
        let event = match outcome {
            JobOutcome::Integrated(result) => {
                info!(job = %id, elapsed_s = elapsed, spent = %progress.spent, "job done (integrated by the scheduler's node)");
                done(&result, tracker.integrator(), progress, nodes)
            }
            JobOutcome::Done(results) => {
                let refs: Vec<&[u8]> = results.iter().map(|r| r.as_ref()).collect();
                match self.executor.reduce(&kernel, &refs) {
                    Ok(result) => {
                        info!(job = %id, elapsed_s = elapsed, spent = %progress.spent, "job done");
                        done(&result, None, progress, nodes)
                    }
                    Err(e) => JobEvent::Failed(JobFailed {
                        job: id.to_string(),
                        code: JobFailCode::ReduceFailed,
                        error: format!("integrating results: {e}"),
                        elapsed_s: None,
                        progress,
                        nodes,
                    }),
                }
            }
            JobOutcome::Failed(why) => {
                let code = match why {
                    JobFailure::InsufficientBounty { .. } => JobFailCode::InsufficientBounty,
                    JobFailure::TaskFailed { .. } => JobFailCode::TaskFailed,
                    JobFailure::Cancelled(_) => JobFailCode::Cancelled,
                };
                warn!(job = %id, error = %why, "job failed");
                JobEvent::Failed(JobFailed {
                    job: id.to_string(),
                    code,
                    error: why.to_string(),
                    elapsed_s: Some(elapsed),
                    progress,
                    nodes,
                })
            }
        };
        self.finished_events.push((id, event));
    }
}

/// Tells a running job's submitter how far it is, at most every 100 ms.
fn report_progress(id: JobId, job: &ClientJob, io: &mut JobIo, price: Price) {
    let now = Instant::now();
    if io
        .last_progress
        .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
    {
        return;
    }
    io.last_progress = Some(now);
    let p = job.tracker.progress();
    let mut waiting = job.tracker.waiting_reasons();
    if let Some(max) = job.max_price.filter(|_| !job.buys_at(price)) {
        waiting.insert(0, format!("price {price} > max {max}"));
    }
    let event = JobEvent::Progress(JobProgress {
        job: id.to_string(),
        progress: p,
        elapsed_s: io.started.elapsed().as_secs_f64(),
        waiting,
    });
    let _ = io.subscriber.try_send(reply_json(&event));
}

/// What each node did for the job and was paid, by node.
fn tallies(tracker: &JobTracker) -> BTreeMap<NodeId, NodeTally> {
    tracker.tallies().clone()
}

/// One job as status shows it.
fn job_summary(id: JobId, tracker: &JobTracker, state: JobState, elapsed_s: f64) -> JobSummary {
    JobSummary {
        job: id.to_string(),
        state,
        kernel: Some(tracker.spec().kernel.to_string()),
        progress: Some(tracker.progress()),
        placements: Some(tallies(tracker)),
        elapsed_s: Some(elapsed_s),
        max_price: None,
    }
}

fn hex_short(b: &[u8]) -> String {
    let take = b.len().min(64);
    b.get(..take)
        .map(|s| s.iter().map(|x| format!("{x:02x}")).collect())
        .unwrap_or_default()
}
