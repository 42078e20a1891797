//! Frames reaching a node: task offers through admission, cancels,
//! results held and integrated for other clients, and results and
//! integration answers passed to the node's own client.

use lppsp_core::node::admission::{NodeState, TaskOffer};
use lppsp_core::node::integrator;
use lppsp_core::wire::headers::{ResultHeaders, TaskHeaders};
use lppsp_core::wire::{Frame, Message};

use crate::SimError;

use super::{Sim, Work};

impl Sim<'_> {
    pub(super) fn on_frame(
        &mut self,
        to: usize,
        from: usize,
        frame: Frame,
    ) -> Result<(), SimError> {
        let now = self.now;
        let d = self.domain(to);
        if self.domain(from) != d {
            return Ok(());
        }
        let Some(sender) = self.nodes.get(from).map(|n| n.id) else {
            return Ok(());
        };
        let Some(n) = self.nodes.get_mut(to) else {
            return Ok(());
        };
        if !n.alive {
            return Ok(());
        }
        match frame.message {
            Message::Task { job, task, .. } => {
                let body = frame.body.map(|b| b.to_bytes()).unwrap_or_default();
                // The node's rules; simulated clients are all in good
                // standing and every node has the simulated kernel.
                let offer = TaskOffer {
                    client: sender,
                    price: frame.price,
                    kernel_known: true,
                    input_bytes: body.len() as u64,
                };
                let state = NodeState {
                    available: true,
                    client_refused: false,
                    load: (n.running.len() + n.waiting.len()) as u64,
                };
                if let Err(refusal) = n.admission.admit(&offer, state) {
                    n.tasks_refused += 1;
                    let reason = refusal.reason();
                    let answer =
                        Frame::new(n.market.price(), Message::Refuse { job, task, reason });
                    self.send(to, sender, answer);
                    return Ok(());
                }
                let mflop = body
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(1);
                let result_to = TaskHeaders::read(&frame.headers)
                    .ok()
                    .and_then(|h| h.result_to);
                n.waiting.push_back(Work {
                    job,
                    task,
                    client: from,
                    client_id: sender,
                    bytes: offer.input_bytes,
                    result_to,
                    mflop,
                });
                self.start_tasks(to);
            }
            Message::Cancel {
                job,
                task: Some(task),
            } => {
                let admission = &mut n.admission;
                n.waiting.retain(|w| {
                    let cancelled = w.job == job && w.task == task && w.client == from;
                    if cancelled {
                        admission.release(w.client_id, w.bytes);
                    }
                    !cancelled
                });
                for r in &mut n.running {
                    if r.work.job == job && r.work.task == task && r.work.client == from {
                        r.cancelled = true;
                    }
                }
            }
            Message::Cancel { job, task: None } => n.integrator.forget(sender, job),
            Message::Result { .. } if ResultHeaders::for_integrator(&frame.headers) => {
                // We integrate for the client: hold the result, tell it.
                if let Some((client, notice)) = n.integrator.on_result(now, sender, frame) {
                    self.send(to, client, notice);
                }
            }
            Message::Integrate { job, tasks, .. } => {
                // The simulated kernel's reduce is empty: the answer says
                // whether every result is held here.
                let outcome = n
                    .integrator
                    .take_for_integration(sender, job, tasks)
                    .map(|_| Vec::new())
                    .map_err(|e| e.to_string());
                let answer = integrator::answer(n.market.price(), job, outcome);
                self.send(to, sender, answer);
            }
            Message::Result { .. } => {
                let book = self.books.get(d);
                n.client.handle_frame(now, sender, frame, |worker| {
                    book.and_then(|b| b.peer(worker)).map_or(0, |p| p.power)
                });
                self.client_events(to);
                self.queue_schedule(to, self.sc.jobs.schedule_delay_ms);
            }
            Message::Integrated { .. } => {
                n.client.handle_frame(now, sender, frame, |_| 0);
                self.client_events(to);
                self.queue_schedule(to, 0);
            }
            _ => {}
        }
        Ok(())
    }
}
