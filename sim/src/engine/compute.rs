//! The compute side of each node: admitted tasks run in its slots and
//! their results sent to the client or its integrator.

use lppsp_core::wire::headers::ResultHeaders;
use lppsp_core::wire::{Frame, Message};

use super::{Ev, Running, Sim};

impl Sim<'_> {
    pub(super) fn start_tasks(&mut self, i: usize) {
        let slots = self.sc.population.slots as usize;
        loop {
            let Some(n) = self.nodes.get_mut(i) else {
                return;
            };
            if n.running.len() >= slots {
                return;
            }
            let Some(work) = n.waiting.pop_front() else {
                return;
            };
            let micros = work.mflop.saturating_mul(1_000_000) / n.power.max(1);
            self.next_key += 1;
            let key = self.next_key;
            let life = n.life;
            n.running.push(Running {
                work,
                key,
                micros,
                cancelled: false,
            });
            let at = self.now + micros.div_ceil(1000).max(1);
            self.push(at, Ev::TaskDone { node: i, life, key });
        }
    }

    pub(super) fn on_task_done(&mut self, i: usize, life: u32, key: u64) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if !n.alive || n.life != life {
            return;
        }
        let Some(pos) = n.running.iter().position(|r| r.key == key) else {
            return;
        };
        let r = n.running.swap_remove(pos);
        n.admission.release(r.work.client_id, r.work.bytes);
        if !r.cancelled {
            n.tasks_done += 1;
            let price = n.market.price();
            let power = n.power;
            let frame = Frame::new(
                price,
                Message::Result {
                    job: r.work.job,
                    task: r.work.task,
                    ok: true,
                },
            );
            let mut headers = ResultHeaders {
                elapsed_us: Some(r.micros),
                power: Some(power),
                ..ResultHeaders::default()
            };
            let client_id = self.nodes.get(r.work.client).map(|c| c.id);
            let to = match (r.work.result_to, client_id) {
                (Some(integrator), Some(client)) if integrator != client => {
                    headers.client = Some(client);
                    Some(integrator)
                }
                (_, client) => client,
            };
            if let Some(to) = to {
                self.send(i, to, headers.write(frame));
            }
        }
        self.start_tasks(i);
    }
}
