//! The jobs a node submitted, as one sans-IO state machine: placement
//! rounds (the scheduler over [`PeerViews`]), the frames they send, what
//! compute nodes and integrators answer, and which nodes are held out of
//! placement for a while.
//!
//! Inputs: [`Client::submit`], [`Client::handle_frame`],
//! [`Client::handle_link_lost`], [`Client::handle_node_lost`],
//! [`Client::handle_peer_joined`], [`Client::handle_timeout`],
//! [`Client::cancel`] and [`Client::place`] (a placement round); outputs:
//! [`Client::poll_transmit`] (frames for other nodes) and
//! [`Client::poll_event`] (charges counted, members' faults, jobs ended).
//! The runtime keeps what is IO around it (links, the submitter's
//! channel, the journal); the simulator keeps its counters.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::charge::{Granted, Promise};
use crate::component::scheduler::PlacementRequest;
use crate::component::Scheduler;
use crate::curves;
use crate::job::{JobOutcome, JobSpec, JobTracker, ResultOutcome, TaskReport};
use crate::money::Price;
use crate::node::placement::{ClientKnowledge, PeerViews};
use crate::node_id::NodeId;
use crate::wire::{Body, Frame, JobId, Message, RefuseReason};

/// One submitted job and what the client sends with its tasks.
#[derive(Debug)]
pub struct ClientJob {
    pub tracker: JobTracker,
    /// The job's user code, sent once to each node that runs or
    /// integrates its tasks, before the first of them.
    pub module: Option<Bytes>,
    module_sent: BTreeSet<NodeId>,
    /// The most fuel each task may use (`Fuel-Limit`).
    pub fuel: Option<u64>,
    /// Its tasks are placed only while the market price is at most this.
    pub max_price: Option<Price>,
    /// When it was submitted (the driver's time).
    pub submitted_ms: u64,
}

impl ClientJob {
    #[must_use]
    pub fn new(spec: JobSpec, submitted_ms: u64) -> Self {
        Self::with_tracker(JobTracker::new(spec), submitted_ms)
    }

    /// A job around a tracker already set up (results restored).
    #[must_use]
    pub fn with_tracker(tracker: JobTracker, submitted_ms: u64) -> Self {
        Self {
            tracker,
            module: None,
            module_sent: BTreeSet::new(),
            fuel: None,
            max_price: None,
            submitted_ms,
        }
    }

    /// Whether its tasks are placed at `price` (`--max-price`).
    #[must_use]
    pub fn buys_at(&self, price: Price) -> bool {
        curves::buys_at(self.max_price, price)
    }
}

/// Something the driver must know or do.
#[derive(Debug)]
pub enum ClientEvent {
    /// A result was counted: meter `granted` for `payee`. `body` is the
    /// result when it came back here (not held by an integrator), for a
    /// driver that keeps results.
    Counted {
        job: JobId,
        task: u64,
        payee: NodeId,
        granted: Granted,
        fuel: Option<u64>,
        body: Option<Bytes>,
    },
    /// A member sent what it should not have (a result for a task not
    /// placed there, a claim above the terms): `reason` names it.
    MemberFault {
        peer: NodeId,
        reason: &'static str,
        job: JobId,
        task: u64,
    },
    /// A compute node refused a task.
    Refused {
        peer: NodeId,
        job: JobId,
        task: u64,
        reason: RefuseReason,
    },
    /// An integrator could not integrate; the client integrates itself.
    IntegrationFailed {
        job: JobId,
        integrator: NodeId,
        why: String,
    },
    /// The integrator is asked for the job's result.
    Integrating { job: JobId, integrator: NodeId },
    /// The job ended (its tracker holds the outcome and tallies).
    Finished(Box<ClientJob>),
}

/// Refusals that say the node will not work for this client for now
/// (rather than "not this task" or "not this instant"): placing there again
/// at once would only be refused again, so the node is held out a while.
fn holds_out(reason: RefuseReason) -> bool {
    matches!(
        reason,
        RefuseReason::CannotPay | RefuseReason::Unavailable | RefuseReason::BelowReserve
    )
}

/// The jobs this node submitted.
#[derive(Debug)]
pub struct Client {
    me: NodeId,
    jobs: BTreeMap<JobId, ClientJob>,
    /// Nodes held out of placement until the given time: the link failed
    /// (the book keeps a dead node until it expires, and placing on it
    /// would only spend the tasks' retries), or it refused this client.
    held_out: BTreeMap<NodeId, u64>,
    hold_ms: u64,
    transmits: VecDeque<(NodeId, Frame)>,
    events: VecDeque<ClientEvent>,
}

impl Client {
    /// A client for node `me`; a node that fails or refuses it is held out
    /// of placement for `hold_ms`.
    #[must_use]
    pub fn new(me: NodeId, hold_ms: u64) -> Self {
        Self {
            me,
            jobs: BTreeMap::new(),
            held_out: BTreeMap::new(),
            hold_ms,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    #[must_use]
    pub fn contains(&self, job: &JobId) -> bool {
        self.jobs.contains_key(job)
    }

    pub fn jobs(&self) -> impl Iterator<Item = (&JobId, &ClientJob)> {
        self.jobs.iter()
    }

    #[must_use]
    pub fn job(&self, id: &JobId) -> Option<&ClientJob> {
        self.jobs.get(id)
    }

    /// Tasks of all jobs not yet placed that would buy at `price`: the
    /// demand this node adds to its Queue.
    #[must_use]
    pub fn pending(&self, price: Price) -> u64 {
        self.jobs
            .values()
            .filter(|j| j.buys_at(price))
            .map(|j| j.tracker.pending_count())
            .sum()
    }

    /// Tasks of all jobs placed or waiting.
    #[must_use]
    pub fn in_pool(&self) -> u64 {
        self.jobs
            .values()
            .map(|j| {
                let p = j.tracker.progress();
                p.in_flight + p.pending
            })
            .sum()
    }

    /// Takes a job; its tasks go out at the next [`Client::place`].
    pub fn submit(&mut self, job: ClientJob) {
        let id = job.tracker.id();
        self.jobs.insert(id, job);
    }

    /// Cancels a job (its tasks in flight are told to stop).
    pub fn cancel(&mut self, job: &JobId, why: &str) {
        if let Some(j) = self.jobs.get_mut(job) {
            if !j.tracker.is_finished() {
                j.tracker.cancel(why);
            }
        }
    }

    /// A frame from a compute node or an integrator. `promised(node)` is
    /// the power `node` promised in its Hand (for a result that names none).
    pub fn handle_frame(
        &mut self,
        now: u64,
        peer: NodeId,
        frame: Frame,
        promised: impl FnOnce(&NodeId) -> u64,
    ) {
        match frame.message {
            Message::Result { job, task, ok } => {
                let Some(j) = self.jobs.get_mut(&job) else {
                    return;
                };
                let Some((report, fuel)) =
                    TaskReport::from_result_frame(peer, task, ok, frame, promised)
                else {
                    return;
                };
                let payee = report.node;
                let body = (report.held_by.is_none() && report.ok).then(|| report.body.clone());
                match j.tracker.on_result(now, report) {
                    ResultOutcome::Counted(granted) => {
                        for reason in granted.cuts.reasons() {
                            self.events.push_back(ClientEvent::MemberFault {
                                peer: payee,
                                reason,
                                job,
                                task,
                            });
                        }
                        self.events.push_back(ClientEvent::Counted {
                            job,
                            task,
                            payee,
                            granted,
                            fuel,
                            body,
                        });
                    }
                    ResultOutcome::Ignored(why) => {
                        if let Some(reason) = why.member_fault() {
                            self.events.push_back(ClientEvent::MemberFault {
                                peer,
                                reason,
                                job,
                                task,
                            });
                        }
                    }
                    ResultOutcome::Failed => {}
                }
            }
            Message::Integrated { job, ok } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    let body = frame.body.map(|b| b.to_bytes()).unwrap_or_default();
                    let result = if ok {
                        Ok(body)
                    } else {
                        let why = String::from_utf8_lossy(&body).into_owned();
                        self.events.push_back(ClientEvent::IntegrationFailed {
                            job,
                            integrator: peer,
                            why: why.clone(),
                        });
                        Err(why)
                    };
                    j.tracker.on_integrated(peer, result);
                }
            }
            Message::Accept { job, task } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.tracker.on_accept(peer, task);
                }
            }
            Message::Refuse { job, task, reason } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    j.tracker.on_refuse(peer, task, reason);
                    self.events.push_back(ClientEvent::Refused {
                        peer,
                        job,
                        task,
                        reason,
                    });
                    if holds_out(reason) {
                        self.held_out.insert(peer, now.saturating_add(self.hold_ms));
                    }
                }
            }
            _ => {}
        }
    }

    /// The link to `peer` failed or closed: its tasks go elsewhere and it
    /// gets no new ones for a while.
    pub fn handle_link_lost(&mut self, now: u64, peer: NodeId) {
        self.held_out.insert(peer, now.saturating_add(self.hold_ms));
        self.handle_node_lost(peer);
    }

    /// `peer` (re)joined the book: a failure before it left no longer
    /// keeps work from it.
    pub fn handle_peer_joined(&mut self, peer: NodeId) {
        self.held_out.remove(&peer);
    }

    /// A node left the book or its connection closed: its tasks go back.
    pub fn handle_node_lost(&mut self, peer: NodeId) {
        for j in self.jobs.values_mut() {
            // A new link may reach a restarted node without the module.
            j.module_sent.remove(&peer);
            j.tracker.on_node_lost(peer);
        }
    }

    /// Places again the tasks that ran out of time.
    pub fn handle_timeout(&mut self, now: u64) {
        for j in self.jobs.values_mut() {
            j.tracker.handle_timeout(now);
        }
    }

    /// The earliest moment a placed task times out.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.jobs
            .values()
            .filter_map(|j| j.tracker.poll_timeout())
            .min()
    }

    /// Whether a job waits for placement or its end (a round would do
    /// something).
    #[must_use]
    pub fn wants_round(&self) -> bool {
        self.jobs
            .values()
            .any(|j| j.tracker.is_finished() || j.tracker.pending_count() > 0)
    }

    /// One placement round at `price`: each job's pending tasks go to the
    /// scheduler over `views` (the book's peers), its commands become
    /// frames, and finished jobs end. `promise(node)` is what `node`
    /// promised in its Hand, fixed in each placement's terms.
    pub fn place(
        &mut self,
        now: u64,
        price: Price,
        views: &mut PeerViews,
        scheduler: &mut dyn Scheduler,
        promise: impl Fn(&NodeId) -> Promise,
    ) {
        self.held_out.retain(|_, until| now < *until);
        let mut in_flight = self.in_flight();
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in &ids {
            let Some(job) = self.jobs.get_mut(id) else {
                continue;
            };
            let tracker = &job.tracker;
            if tracker.is_finished() || tracker.pending_count() == 0 || !job.buys_at(price) {
                continue;
            }
            views.fit_to_job(
                price,
                ClientKnowledge {
                    me: self.me,
                    job: tracker,
                    in_flight: &in_flight,
                    held_out: &self.held_out,
                },
            );
            let free = usize::try_from(views.free_slots()).unwrap_or(usize::MAX);
            let pending = tracker.pending_tasks(free.max(1));
            if pending.is_empty() {
                continue;
            }
            let request = PlacementRequest {
                client: self.me,
                peers: views.views(),
                price,
                budget_left: tracker.budget_left(),
                est_task_micros: tracker.est_task_micros(),
                pending: &pending,
                constraints: &tracker.spec().constraints,
            };
            let plan = scheduler.place(&request);
            job.tracker.apply_plan(now, plan, price, &promise);
            // The next job sees the room this one took.
            if ids.len() > 1 {
                in_flight = self.in_flight();
            }
        }
        for id in &ids {
            self.flush_commands(*id, price);
        }
        for id in ids {
            if self.jobs.get(&id).is_some_and(|j| j.tracker.is_finished()) {
                if let Some(job) = self.jobs.remove(&id) {
                    self.events.push_back(ClientEvent::Finished(Box::new(job)));
                }
            }
        }
    }

    /// Tasks of all jobs in flight, per node.
    fn in_flight(&self) -> BTreeMap<NodeId, u64> {
        let mut used: BTreeMap<NodeId, u64> = BTreeMap::new();
        for j in self.jobs.values() {
            for (node, t) in j.tracker.tallies() {
                if t.in_flight > 0 {
                    *used.entry(*node).or_insert(0) += u64::from(t.in_flight);
                }
            }
        }
        used
    }

    /// A job's commands as frames: its module first to a node that has
    /// not had it, and each task with its fuel limit.
    fn flush_commands(&mut self, id: JobId, price: Price) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let kernel = job.tracker.spec().kernel.clone();
        while let Some(cmd) = job.tracker.poll_command() {
            use crate::job::JobCommand;
            if let (
                JobCommand::Place { node, .. } | JobCommand::Integrate { node, .. },
                Some(code),
            ) = (&cmd, &job.module)
            {
                if job.module_sent.insert(*node) {
                    let message = Message::Module {
                        job: id,
                        kernel: kernel.clone(),
                    };
                    let frame =
                        Frame::new(price, message).with_body(Body::from_bytes(code.clone()));
                    self.transmits.push_back((*node, frame));
                }
            }
            if let JobCommand::Integrate { node, .. } = &cmd {
                self.events.push_back(ClientEvent::Integrating {
                    job: id,
                    integrator: *node,
                });
            }
            let (node, frame) = cmd.into_frame(id, &kernel, price, job.fuel);
            self.transmits.push_back((node, frame));
        }
    }

    /// The next frame to send, and to whom. When it cannot be sent, the
    /// driver says so with [`Client::handle_link_lost`].
    pub fn poll_transmit(&mut self) -> Option<(NodeId, Frame)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

/// How a finished job ended, for counting: done (with or without an
/// integrator) or failed.
#[must_use]
pub fn succeeded(job: &ClientJob) -> bool {
    !matches!(job.tracker.outcome(), Some(JobOutcome::Failed(_)) | None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::scheduler::{Constraints, PeerView, Placement, Plan};
    use crate::money::Bounty;
    use crate::wire::{Arch, Endpoint, KernelName};

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 8])
    }

    /// Places every pending task on the first peer with room.
    struct FirstWithRoom;

    impl Scheduler for FirstWithRoom {
        fn name(&self) -> &str {
            "first-with-room"
        }
        fn place(&mut self, request: &PlacementRequest<'_>) -> Plan {
            let mut room: Vec<(NodeId, u32)> = request
                .peers
                .iter()
                .filter(|p| p.compute)
                .map(|p| (p.id, p.free_slots))
                .collect();
            let mut plan = Plan::default();
            for task in request.pending {
                if let Some((node, left)) = room.iter_mut().find(|(_, left)| *left > 0) {
                    *left -= 1;
                    plan.placements.push(Placement {
                        task: task.task,
                        node: *node,
                        result_to: request.client,
                        est_cost: Bounty::ZERO,
                    });
                }
            }
            plan
        }
    }

    fn views() -> PeerViews {
        let view = PeerView {
            id: id(2),
            addr: Endpoint("127.0.0.1:1".parse().expect("an address")),
            power: 100,
            arch: Arch::new("x86_64").expect("an arch"),
            compute: true,
            compatible: true,
            free_slots: 0,
            queue: 0,
            avg_task_micros: None,
        };
        PeerViews::from_peers([(view, 1, Price::ZERO)])
    }

    fn job(tasks: u64) -> ClientJob {
        let spec = JobSpec {
            id: JobId(7),
            client: id(1),
            kernel: KernelName::new("w1").expect("a kernel name"),
            inputs: (0..tasks)
                .map(|t| Bytes::from(t.to_le_bytes().to_vec()))
                .collect(),
            budget: Bounty::from_micros(1_000_000_000),
            constraints: Constraints::default(),
            max_attempts: 3,
            task_timeout_ms: 600_000,
            est_task_micros: 1_000_000,
            verify: 1,
        };
        ClientJob::new(spec, 0)
    }

    fn sent_tasks(client: &mut Client) -> Vec<u64> {
        let mut tasks = Vec::new();
        while let Some((_, frame)) = client.poll_transmit() {
            if let Message::Task { task, .. } = frame.message {
                tasks.push(task);
            }
        }
        tasks
    }

    fn round(client: &mut Client, now: u64, views: &mut PeerViews) {
        let promise = |_: &NodeId| Promise {
            power: 100,
            slots: 1,
        };
        client.place(now, Price::ZERO, views, &mut FirstWithRoom, promise);
    }

    #[test]
    fn a_node_that_refuses_the_client_cannot_pay_is_left_alone_for_a_while() {
        let mut client = Client::new(id(1), 4_000);
        let mut views = views();
        client.submit(job(3));
        round(&mut client, 0, &mut views);
        assert_eq!(
            sent_tasks(&mut client),
            [0],
            "one task per slot at a 1 s estimate"
        );
        let refuse = Message::Refuse {
            job: JobId(7),
            task: 0,
            reason: RefuseReason::CannotPay,
        };
        client.handle_frame(10, id(2), Frame::new(Price::ZERO, refuse), |_| 100);
        // Rounds before the hold ends send nothing: no hot loop of
        // placements that would only be refused again.
        for now in [11, 1_000, 3_999] {
            round(&mut client, now, &mut views);
            assert!(sent_tasks(&mut client).is_empty(), "placed at {now} ms");
        }
        round(&mut client, 4_010, &mut views);
        assert_eq!(sent_tasks(&mut client), [0], "placed again after the hold");
    }

    #[test]
    fn a_busy_node_is_tried_again_at_once() {
        let mut client = Client::new(id(1), 4_000);
        let mut views = views();
        client.submit(job(1));
        round(&mut client, 0, &mut views);
        assert_eq!(sent_tasks(&mut client), [0]);
        let refuse = Message::Refuse {
            job: JobId(7),
            task: 0,
            reason: RefuseReason::Busy,
        };
        client.handle_frame(10, id(2), Frame::new(Price::ZERO, refuse), |_| 100);
        round(&mut client, 11, &mut views);
        assert_eq!(sent_tasks(&mut client), [0]);
    }
}
