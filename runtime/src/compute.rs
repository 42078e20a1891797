//! The compute side of a node: accepts tasks from clients over the
//! transport, runs them on worker threads outside the async reactor (one
//! task at a time per slot), and sends results back to the client, or to
//! the integrator the client named in the task's `Result-To` header.
//!
//! A connection may carry many tasks at once: they queue here (bounded)
//! and their results go back in batches, so per-task cost is a few
//! microseconds rather than a round trip.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lppsp_core::component::{CancelFlag, Executor, TaskLimits, TaskSpec};
use lppsp_core::money::{self, Bounty, Price};
use lppsp_core::node::admission::{Admission, AdmissionConfig, NodeState, Refusal, TaskOffer};
use lppsp_core::wire::headers::{ResultHeaders, TaskHeaders};
use lppsp_core::wire::{Body, Frame, JobId, KernelName, Message, RefuseReason};
use lppsp_core::NodeId;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::refusals::MemberRefusals;

/// Settings of the compute service.
#[derive(Debug, Clone)]
pub struct ComputeConfig {
    pub slots: u32,
    /// MFLOPS this node charges at.
    pub power: u64,
    pub task_timeout: Duration,
    pub max_input_bytes: u64,
    /// Tasks accepted beyond the running ones before refusing as busy.
    pub max_queue: u64,
    /// Tasks one client may have queued or running here.
    pub max_tasks_per_client: u64,
    /// Input bytes of all queued or running tasks together.
    pub max_queued_bytes: u64,
    /// Input bytes of one client's queued or running tasks.
    pub max_queued_bytes_per_client: u64,
    /// When false the node refuses every task as unavailable.
    pub sharing: bool,
    /// The owner's reserve price: a task placed at a lower price (its
    /// frame's price line) is refused `below-reserve`.
    pub reserve: Price,
}

struct Work {
    /// Input bytes, held against the client's quota until the task ends.
    size: u64,
    /// Fuel the client allows each task (`Fuel-Limit`), if it set one.
    fuel: Option<u64>,
    client: NodeId,
    job: JobId,
    task: u64,
    kernel: KernelName,
    input: Bytes,
    price: Price,
    cancel: CancelFlag,
    reply: mpsc::UnboundedSender<Frame>,
    /// Set when the result goes to an integrator, not back to the client.
    relay_to: Option<NodeId>,
}

/// A task queued or running: how to stop it and whom to tell.
struct Placed {
    cancel: CancelFlag,
    reply: mpsc::UnboundedSender<Frame>,
    price: Price,
}

/// Tasks queued or running, by (client, job, task).
type Running = Arc<Mutex<HashMap<(NodeId, JobId, u64), Placed>>>;

/// Counters the node reports in its status.
#[derive(Debug, Default)]
pub struct ComputeStats {
    pub tasks_done: AtomicU64,
    pub tasks_failed: AtomicU64,
    pub tasks_refused: AtomicU64,
    /// Tasks stopped by a Cancel frame before they finished.
    pub tasks_cancelled: AtomicU64,
    /// Tasks stopped because the owner needed the machine (sharing policy).
    pub tasks_withdrawn: AtomicU64,
    pub bad_frames: AtomicU64,
    /// Bounty earned, in micro-units, per client.
    pub earned: Mutex<BTreeMap<NodeId, Bounty>>,
}

/// The compute service shared by all incoming connections.
pub struct ComputeService {
    cfg: ComputeConfig,
    executor: Arc<dyn Executor>,
    queue: std::sync::mpsc::Sender<Work>,
    /// Tasks queued or running.
    load: Arc<AtomicU64>,
    running: Running,
    quota: Arc<Mutex<Admission>>,
    refusals: MemberRefusals,
    pub stats: Arc<ComputeStats>,
    /// Clients refused work: their claimed bounty exceeds what the ledger
    /// says they have (DESIGN 4.8).
    refused_clients: Mutex<std::collections::HashSet<NodeId>>,
    /// False while the sharing policy says the owner needs the machine.
    available: std::sync::atomic::AtomicBool,
}

/// A result on its way to an integrator (a node other than the client),
/// sent by the node driver over its own link to that node.
pub type Relay = mpsc::UnboundedSender<(NodeId, Frame)>;

impl ComputeService {
    /// Starts `cfg.slots` worker threads.
    pub fn start(
        cfg: ComputeConfig,
        executor: Arc<dyn Executor>,
        relay: Relay,
        refusals: MemberRefusals,
    ) -> Arc<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Work>();
        let rx = Arc::new(Mutex::new(rx));
        let load = Arc::new(AtomicU64::new(0));
        let running = Arc::new(Mutex::new(HashMap::new()));
        let stats = Arc::new(ComputeStats::default());
        let quota = Arc::new(Mutex::new(Admission::new(AdmissionConfig {
            slots: cfg.slots,
            max_queue: cfg.max_queue,
            max_input_bytes: cfg.max_input_bytes,
            max_tasks_per_client: cfg.max_tasks_per_client,
            max_queued_bytes: cfg.max_queued_bytes,
            max_queued_bytes_per_client: cfg.max_queued_bytes_per_client,
            reserve: cfg.reserve,
        })));
        for i in 0..cfg.slots.max(1) {
            let rx = rx.clone();
            let limits = TaskLimits {
                wall: cfg.task_timeout,
                ..TaskLimits::default()
            };
            let ctx = WorkerContext {
                executor: executor.clone(),
                limits,
                power: cfg.power,
                load: load.clone(),
                running: running.clone(),
                quota: quota.clone(),
                stats: stats.clone(),
                relay: relay.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("lppsp-slot-{i}"))
                .spawn(move || worker(rx, ctx));
            if let Err(e) = spawned {
                warn!(error = %e, "cannot start a worker thread");
            }
        }
        Arc::new(Self {
            cfg,
            executor,
            queue: tx,
            load,
            running,
            quota,
            refusals,
            stats,
            refused_clients: Mutex::new(std::collections::HashSet::new()),
            available: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Tasks queued or running here (the Idle beacon's Queue).
    pub fn load(&self) -> u64 {
        self.load.load(Ordering::Relaxed)
    }

    /// Replaces the set of clients that cannot pay.
    pub fn set_refused_clients(&self, clients: std::collections::HashSet<NodeId>) {
        if let Ok(mut r) = self.refused_clients.lock() {
            *r = clients;
        }
    }

    /// Counts a frame that could not be read (shown in status).
    pub fn count_bad_frame(&self) {
        self.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops every task queued or running that `client` placed over the
    /// connection answering on `reply` (that connection closed). Tasks the
    /// same client placed over another connection, such as the new one it
    /// opened after a partition, are not touched: their results still have
    /// somewhere to go.
    pub fn cancel_all_of(&self, client: NodeId, reply: &mpsc::UnboundedSender<Frame>) {
        if let Ok(running) = self.running.lock() {
            for ((c, _, _), placed) in running.iter() {
                if *c == client && placed.reply.same_channel(reply) && !placed.cancel.is_cancelled()
                {
                    placed.cancel.cancel();
                    self.stats.tasks_cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Opens or closes the node to new tasks (the sharing policy).
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::Relaxed);
    }

    /// The owner is back: stops every task queued or running and tells
    /// each client its task was refused as unavailable, so that it places
    /// the task elsewhere without counting a failure. A task that finished
    /// meanwhile has its result sent already and the refusal is ignored.
    /// Returns how many tasks were withdrawn.
    pub fn withdraw_all(&self) -> usize {
        let Ok(running) = self.running.lock() else {
            return 0;
        };
        let mut withdrawn = 0;
        for ((_, job, task), placed) in running.iter() {
            if placed.cancel.is_cancelled() {
                continue;
            }
            placed.cancel.cancel();
            withdrawn += 1;
            let refuse = Message::Refuse {
                job: *job,
                task: *task,
                reason: RefuseReason::Unavailable,
            };
            let _ = placed.reply.send(Frame::new(placed.price, refuse));
        }
        self.stats
            .tasks_withdrawn
            .fetch_add(withdrawn as u64, Ordering::Relaxed);
        withdrawn
    }

    /// Handles a Task or Cancel frame from `client`; answers go to `reply`.
    pub fn on_frame(&self, client: NodeId, frame: Frame, reply: &mpsc::UnboundedSender<Frame>) {
        let price = frame.price;
        match frame.message {
            Message::Task { job, task, kernel } => {
                let refuse = |reason: RefuseReason| {
                    self.stats.tasks_refused.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Frame::new(price, Message::Refuse { job, task, reason }));
                };
                let Ok(headers) = TaskHeaders::read(&frame.headers) else {
                    self.count_bad_frame();
                    return;
                };
                let relay_to = headers.result_to.filter(|r| *r != client);
                let fuel = headers.fuel_limit;
                let input = frame.body.map(|b| b.to_bytes()).unwrap_or_default();
                let size = input.len() as u64;
                let offer = TaskOffer {
                    client,
                    price,
                    kernel_known: self.executor.has_kernel(&kernel),
                    input_bytes: size,
                };
                let state = NodeState {
                    available: self.cfg.sharing && self.available.load(Ordering::Relaxed),
                    client_refused: self
                        .refused_clients
                        .lock()
                        .map(|r| r.contains(&client))
                        .unwrap_or(false),
                    load: self.load(),
                };
                let admitted = match self.quota.lock() {
                    Ok(mut admission) => admission.admit(&offer, state),
                    Err(_) => Err(Refusal::Refuse(RefuseReason::Unavailable)),
                };
                match admitted {
                    Ok(()) => {}
                    Err(Refusal::Quota(quota)) => {
                        self.refusals
                            .refuse(client, quota, &format_args!("job {job} task {task}"));
                        return refuse(RefuseReason::Busy);
                    }
                    Err(refusal) => {
                        let reason = refusal.reason();
                        debug!(%client, %job, task, %price, reason = reason.as_str(), "task refused");
                        return refuse(reason);
                    }
                }
                let cancel = CancelFlag::new();
                if let Ok(mut running) = self.running.lock() {
                    let placed = Placed {
                        cancel: cancel.clone(),
                        reply: reply.clone(),
                        price,
                    };
                    running.insert((client, job, task), placed);
                }
                self.load.fetch_add(1, Ordering::Relaxed);
                let work = Work {
                    size,
                    fuel,
                    client,
                    job,
                    task,
                    kernel,
                    input,
                    price,
                    cancel,
                    reply: reply.clone(),
                    relay_to,
                };
                if self.queue.send(work).is_err() {
                    self.load.fetch_sub(1, Ordering::Relaxed);
                    if let Ok(mut q) = self.quota.lock() {
                        q.release(client, size);
                    }
                    return refuse(RefuseReason::Unavailable);
                }
                let _ = reply.send(Frame::new(price, Message::Accept { job, task }));
            }
            Message::Cancel { job, task } => {
                let Ok(running) = self.running.lock() else {
                    return;
                };
                let cancel = |placed: &Placed| {
                    let flag = &placed.cancel;
                    if !flag.is_cancelled() {
                        flag.cancel();
                        self.stats.tasks_cancelled.fetch_add(1, Ordering::Relaxed);
                    }
                };
                match task {
                    // One task: the map is keyed by it.
                    Some(t) => running.get(&(client, job, t)).into_iter().for_each(cancel),
                    None => running
                        .iter()
                        .filter(|((c, j, _), _)| *c == client && *j == job)
                        .for_each(|(_, placed)| cancel(placed)),
                }
            }
            other => {
                debug!(peer = %client, kind = other.kind(), "frame not for the compute service")
            }
        }
    }
}

/// What every worker thread shares.
struct WorkerContext {
    executor: Arc<dyn Executor>,
    limits: TaskLimits,
    power: u64,
    load: Arc<AtomicU64>,
    running: Running,
    quota: Arc<Mutex<Admission>>,
    stats: Arc<ComputeStats>,
    relay: Relay,
}

fn worker(rx: Arc<Mutex<std::sync::mpsc::Receiver<Work>>>, ctx: WorkerContext) {
    let WorkerContext {
        executor,
        limits,
        power,
        load,
        running,
        quota,
        stats,
        relay,
    } = ctx;
    loop {
        let work = {
            let Ok(guard) = rx.lock() else { return };
            match guard.recv() {
                Ok(w) => w,
                Err(_) => return,
            }
        };
        let key = (work.client, work.job, work.task);
        if !work.cancel.is_cancelled() {
            let started = Instant::now();
            let spec = TaskSpec {
                job: work.job,
                task: work.task,
                kernel: &work.kernel,
                input: &work.input,
            };
            let limits = TaskLimits {
                // A client may ask for less fuel than this node allows, never more.
                fuel: match (work.fuel, limits.fuel) {
                    (Some(asked), Some(allowed)) => Some(asked.min(allowed)),
                    (asked, allowed) => asked.or(allowed),
                },
                ..limits
            };
            let outcome = executor.run(&spec, &limits, &work.cancel);
            let micros = u64::try_from(started.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            let (ok, body, fuel) = match outcome {
                Ok(out) => (true, out.result, out.fuel),
                Err(e) => (false, e.to_string().into_bytes(), None),
            };
            if work.cancel.is_cancelled() {
                // Counted as cancelled where it was cancelled; its
                // interrupted run is no failure of the task.
            } else if ok {
                stats.tasks_done.fetch_add(1, Ordering::Relaxed);
                let charge = money::charge(work.price, power, micros).unwrap_or(Bounty::ZERO);
                if let Ok(mut earned) = stats.earned.lock() {
                    let e = earned.entry(work.client).or_insert(Bounty::ZERO);
                    *e = e.checked_add(charge).unwrap_or(*e);
                }
            } else {
                stats.tasks_failed.fetch_add(1, Ordering::Relaxed);
            }
            if !work.cancel.is_cancelled() {
                let frame = Frame::new(
                    work.price,
                    Message::Result {
                        job: work.job,
                        task: work.task,
                        ok,
                    },
                )
                .with_body(Body::from_bytes(body));
                let headers = ResultHeaders {
                    elapsed_us: Some(micros),
                    power: Some(power),
                    fuel,
                    client: work.relay_to.map(|_| work.client),
                    worker: None,
                };
                let frame = headers.write(frame);
                match work.relay_to {
                    Some(integrator) => {
                        let _ = relay.send((integrator, frame));
                    }
                    None => {
                        let _ = work.reply.send(frame);
                    }
                }
            }
        }
        if let Ok(mut r) = running.lock() {
            r.remove(&key);
        }
        if let Ok(mut q) = quota.lock() {
            q.release(work.client, work.size);
        }
        load.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lppsp_core::component::{TaskError, TaskOutput};
    use std::sync::atomic::AtomicBool;

    /// Runs kernel "hold": waits until the task is cancelled or the test
    /// lets every held task go.
    struct Hold(Arc<AtomicBool>);

    impl Executor for Hold {
        fn name(&self) -> &str {
            "hold"
        }
        fn has_kernel(&self, kernel: &KernelName) -> bool {
            kernel.as_str() == "hold"
        }
        fn run(
            &self,
            _spec: &TaskSpec<'_>,
            _limits: &TaskLimits,
            cancel: &CancelFlag,
        ) -> Result<TaskOutput, TaskError> {
            while !self.0.load(Ordering::Relaxed) {
                if cancel.is_cancelled() {
                    return Err(TaskError::Cancelled);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(TaskOutput {
                result: b"done".to_vec(),
                fuel: None,
            })
        }
        fn reduce(&self, _: &KernelName, _: &[&[u8]]) -> Result<Vec<u8>, TaskError> {
            Ok(Vec::new())
        }
    }

    fn task(task: u64) -> Frame {
        Frame::new(
            Price::from_micros(1_000_000),
            Message::Task {
                job: JobId(7),
                task,
                kernel: KernelName::new("hold").unwrap(),
            },
        )
    }

    fn results(rx: &mut mpsc::UnboundedReceiver<Frame>) -> Vec<(u64, bool)> {
        let mut out = Vec::new();
        while let Ok(f) = rx.try_recv() {
            if let Message::Result { task, ok, .. } = f.message {
                out.push((task, ok));
            }
        }
        out
    }

    #[test]
    fn a_closed_connection_cancels_only_the_tasks_that_came_by_it() {
        let release = Arc::new(AtomicBool::new(false));
        let (relay, _relayed) = mpsc::unbounded_channel();
        let compute = ComputeService::start(
            ComputeConfig {
                slots: 2,
                power: 100,
                task_timeout: Duration::from_secs(30),
                max_input_bytes: 1 << 20,
                max_queue: 4,
                max_tasks_per_client: 8,
                max_queued_bytes: 1 << 20,
                max_queued_bytes_per_client: 1 << 20,
                sharing: true,
                reserve: Price::ZERO,
            },
            Arc::new(Hold(release.clone())),
            relay,
            MemberRefusals::default(),
        );
        let client = NodeId::from_public_key_der(b"client");
        let (old_tx, mut old_rx) = mpsc::unbounded_channel();
        let (new_tx, mut new_rx) = mpsc::unbounded_channel();
        compute.on_frame(client, task(1), &old_tx);
        compute.on_frame(client, task(2), &new_tx);
        assert_eq!(compute.load(), 2);

        // The client's old connection closes after it opened a new one.
        compute.cancel_all_of(client, &old_tx);
        release.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(10);
        while compute.load() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(compute.load(), 0);
        assert_eq!(results(&mut new_rx), vec![(2, true)]);
        assert_eq!(results(&mut old_rx), vec![]);
        let stats = &compute.stats;
        assert_eq!(stats.tasks_cancelled.load(Ordering::Relaxed), 1);
        assert_eq!(stats.tasks_done.load(Ordering::Relaxed), 1);
        assert_eq!(stats.tasks_failed.load(Ordering::Relaxed), 0);
    }

    fn refusals(rx: &mut mpsc::UnboundedReceiver<Frame>) -> Vec<(u64, RefuseReason)> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|f| match f.message {
                Message::Refuse { task, reason, .. } => Some((task, reason)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_client_cannot_take_more_than_its_share_of_the_queue() {
        let release = Arc::new(AtomicBool::new(false));
        let (relay, _relayed) = mpsc::unbounded_channel();
        let refused = MemberRefusals::default();
        let compute = ComputeService::start(
            ComputeConfig {
                slots: 1,
                power: 100,
                task_timeout: Duration::from_secs(30),
                max_input_bytes: 1 << 20,
                max_queue: 100,
                max_tasks_per_client: 3,
                max_queued_bytes: 1 << 20,
                max_queued_bytes_per_client: 1 << 20,
                sharing: true,
                reserve: Price::ZERO,
            },
            Arc::new(Hold(release.clone())),
            relay,
            refused.clone(),
        );
        let greedy = NodeId::from_public_key_der(b"greedy");
        let other = NodeId::from_public_key_der(b"other");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (other_tx, mut other_rx) = mpsc::unbounded_channel();
        for t in 0..5 {
            compute.on_frame(greedy, task(t), &tx);
        }
        compute.on_frame(other, task(0), &other_tx);
        assert_eq!(compute.load(), 4);
        assert_eq!(
            refusals(&mut rx),
            vec![(3, RefuseReason::Busy), (4, RefuseReason::Busy)]
        );
        assert_eq!(refusals(&mut other_rx), vec![]);
        assert_eq!(refused.count("client_task_quota"), 2);
        // Once its tasks end, the client has its share again.
        release.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while compute.load() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        compute.on_frame(greedy, task(9), &tx);
        assert!(refusals(&mut rx).is_empty());
    }

    #[test]
    fn a_task_placed_below_the_reserve_is_refused_and_one_at_it_runs() {
        let release = Arc::new(AtomicBool::new(false));
        let (relay, _relayed) = mpsc::unbounded_channel();
        let compute = ComputeService::start(
            ComputeConfig {
                slots: 1,
                power: 100,
                task_timeout: Duration::from_secs(30),
                max_input_bytes: 1 << 20,
                max_queue: 100,
                max_tasks_per_client: 100,
                max_queued_bytes: 1 << 20,
                max_queued_bytes_per_client: 1 << 20,
                sharing: true,
                // task() places at price 1.
                reserve: Price::from_micros(1_000_001),
            },
            Arc::new(Hold(release.clone())),
            relay,
            MemberRefusals::default(),
        );
        let client = NodeId::from_public_key_der(b"client");
        let (tx, mut rx) = mpsc::unbounded_channel();
        compute.on_frame(client, task(1), &tx);
        assert_eq!(refusals(&mut rx), vec![(1, RefuseReason::BelowReserve)]);
        assert_eq!(compute.load(), 0);
        let mut at_reserve = task(2);
        at_reserve.price = Price::from_micros(1_000_001);
        compute.on_frame(client, at_reserve, &tx);
        assert!(refusals(&mut rx).is_empty());
        assert_eq!(compute.load(), 1);
        release.store(true, Ordering::Relaxed);
    }
}
