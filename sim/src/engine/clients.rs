//! The client side of each node: jobs arriving, scheduling rounds, what
//! the client state machine reports, and charges settled as receipts.

use bytes::Bytes;
use lppsp_core::component::scheduler::Constraints;
use lppsp_core::job::JobSpec;
use lppsp_core::money::Bounty;
use lppsp_core::node::client::{self, ClientEvent, ClientJob};
use lppsp_core::wire::{Arch, Frame, JobId, KernelName};
use lppsp_core::NodeId;
use lppsp_ledger::TaskCharge;

use crate::draws;
use crate::SimError;

use super::{Ev, Sim};

/// Receipts are dated from here (2026-01-01T00:00:00Z) plus virtual time.
const SIM_EPOCH_S: u64 = 1_767_225_600;

impl Sim<'_> {
    pub(super) fn remaining(&self, i: usize) -> Bounty {
        let Some(n) = self.nodes.get(i) else {
            return Bounty::ZERO;
        };
        let unsettled = i128::from(n.meters.unsettled().micros());
        let left = self.ledger.balance(&n.id) - unsettled;
        Bounty::from_micros(u64::try_from(left.max(0)).unwrap_or(u64::MAX))
    }

    pub(super) fn next_arrival(&mut self) {
        if let Some(at) = draws::next_arrival_ms(
            &mut self.arrivals_rng,
            &self.sc.jobs,
            self.sc.duration_s,
            self.now,
        ) {
            self.push(at, Ev::Arrival);
        }
    }

    pub(super) fn arrival(&mut self) -> Result<(), SimError> {
        let j = &self.sc.jobs;
        let draws::JobDraw {
            works,
            max_price,
            arch,
            client_pick,
        } = draws::job(&mut self.arrivals_rng, j, &self.sc.population);
        let arch = arch.and_then(|n| Arch::new(n).ok());
        let Some(c) = draws::pick_client(client_pick, &self.clients) else {
            return Ok(());
        };
        let budget = j.budget.min(self.remaining(c));
        let (max_attempts, timeout, est) = (j.max_attempts, j.task_timeout_s, j.est_task_ms);
        let Some(n) = self.nodes.get_mut(c) else {
            return Ok(());
        };
        // The node's rule (`curves::buys_at`); a job the price deters is
        // not submitted here, where a node's job would wait.
        if !lppsp_core::curves::buys_at(max_price, n.market.price()) {
            self.deterred += 1;
            return Ok(());
        }
        n.job_seq += 1;
        let id = JobId(((c as u64) << 32) | n.job_seq);
        let spec = JobSpec {
            id,
            client: n.id,
            kernel: KernelName::new("sim").map_err(SimError::Scenario)?,
            inputs: works
                .iter()
                .map(|w| Bytes::copy_from_slice(&w.to_be_bytes()))
                .collect(),
            budget,
            constraints: Constraints { arch, min_power: 0 },
            max_attempts: max_attempts.max(1),
            task_timeout_ms: timeout.saturating_mul(1000).max(1),
            est_task_micros: est.saturating_mul(1000).max(1),
            verify: 1,
        };
        let mut job = ClientJob::new(spec, self.now);
        job.max_price = max_price;
        n.client.submit(job);
        self.submitted += 1;
        self.schedule(c)
    }

    pub(super) fn queue_schedule(&mut self, i: usize, delay: u64) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if n.schedule_queued || !n.alive {
            return;
        }
        n.schedule_queued = true;
        self.push(self.now + delay, Ev::Schedule(i));
    }

    /// The client's scheduling round: place pending tasks, send commands,
    /// close finished jobs (as the node's client does after each event).
    pub(super) fn schedule(&mut self, i: usize) -> Result<(), SimError> {
        let now = self.now;
        let d = self.domain(i);
        let Some(n) = self.nodes.get_mut(i) else {
            return Ok(());
        };
        if !n.alive {
            return Ok(());
        }
        let price = n.market.price();
        // The domain's peers as of the last tick (rebuilt every tick): a
        // scale-only approximation, one view shared by a domain's clients.
        let (Some(views), Some(book), Some(scheduler)) = (
            self.views.get_mut(d),
            self.books.get(d),
            n.scheduler.as_mut(),
        ) else {
            return Ok(());
        };
        n.client
            .place(now, price, views, scheduler.as_mut(), |node| {
                book.promise(node)
            });
        let mut sends: Vec<(NodeId, Frame)> = Vec::new();
        while let Some(t) = n.client.poll_transmit() {
            sends.push(t);
        }
        let mut unreachable = Vec::new();
        for (to, frame) in sends {
            if !self.send(i, to, frame) {
                unreachable.push(to);
            }
        }
        if !unreachable.is_empty() {
            if let Some(n) = self.nodes.get_mut(i) {
                for to in unreachable {
                    n.client.handle_link_lost(now, to);
                }
            }
            self.queue_schedule(i, self.sc.jobs.schedule_delay_ms.max(1));
        }
        if self.client_events(i) {
            self.settle_if_due(i, true)?;
        }
        Ok(())
    }

    /// Takes what node `i`'s client reported: charges to meter, jobs that
    /// ended. Returns whether a job ended.
    pub(super) fn client_events(&mut self, i: usize) -> bool {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(i) else {
            return false;
        };
        let mut ended = false;
        while let Some(event) = n.client.poll_event() {
            match event {
                ClientEvent::Counted {
                    job,
                    payee,
                    granted,
                    ..
                } => n
                    .meters
                    .add(TaskCharge::granted(job, payee, &granted, None)),
                ClientEvent::Finished(job) => {
                    ended = true;
                    if client::succeeded(&job) {
                        self.done += 1;
                        self.latencies.push(now.saturating_sub(job.submitted_ms));
                    } else {
                        self.failed += 1;
                    }
                }
                // Simulated members are honest; refusals and integrators'
                // answers change nothing here beyond the client's state.
                ClientEvent::MemberFault { .. }
                | ClientEvent::Refused { .. }
                | ClientEvent::IntegrationFailed { .. }
                | ClientEvent::Integrating { .. } => {}
            }
        }
        ended
    }

    /// Turns open meters into receipts on job end or when the settlement
    /// period has passed.
    pub(super) fn settle_if_due(&mut self, i: usize, job_ended: bool) -> Result<(), SimError> {
        let now = self.now;
        let every = self.sc.settle_every_s * 1000;
        let Some(n) = self.nodes.get_mut(i) else {
            return Ok(());
        };
        if !(job_ended && !n.meters.is_empty() || n.meters.due(now, every)) {
            return Ok(());
        }
        let market_price = n.market.price();
        let issued = SIM_EPOCH_S + now / 1000;
        for settlement in n.meters.settle(now) {
            let fields = settlement.receipt_fields(n.id, n.next_receipt, issued, market_price);
            n.next_receipt += 1;
            self.ledger.settle(fields)?;
        }
        Ok(())
    }
}
