//! The simulated population: nodes made from the scenario's draws, and
//! nodes joining, leaving (with a Leave beacon) and crashing.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use lppsp_core::config::{ComponentSection, ShareSection};
use lppsp_core::market::{Market, MarketConfig};
use lppsp_core::node::admission::{Admission, AdmissionConfig};
use lppsp_core::node::beacons::BeaconSchedule;
use lppsp_core::node::client::Client;
use lppsp_core::node::integrator::Integrator;
use lppsp_core::node::sampling::{self, MarketSampler};
use lppsp_core::splitmix::splitmix64;
use lppsp_core::wire::{Arch, Endpoint, Message};
use lppsp_core::NodeId;
use lppsp_ledger::Meters;

use crate::draws::{self, unit};
use crate::scenario::NO_BALANCER;
use crate::SimError;

use super::{Sim, SimNode};

fn node_id(index: usize) -> NodeId {
    NodeId::from_bytes(splitmix64(index as u64 + 1).to_be_bytes())
}

impl Sim<'_> {
    pub(super) fn churn_gap(&mut self, per_hour: f64) -> u64 {
        let u = unit(&mut self.churn_rng);
        (-(1.0 - u).ln() / per_hour * 3_600_000.0).ceil() as u64 + 1
    }

    pub(super) fn add_node(&mut self) -> Result<(), SimError> {
        let index = self.nodes.len();
        let id = node_id(index);
        let pop = &self.sc.population;
        let draws::NodeDraw {
            power,
            arch,
            reserve,
            is_client,
        } = draws::node(&mut self.pop_rng, pop);
        let arch = Arch::new(arch).map_err(SimError::Scenario)?;
        let runs_balancer = pop
            .balancer_nodes
            .is_none_or(|n| (index as u64) < u64::from(n));
        let balancer = if runs_balancer && self.strategy.kind != NO_BALANCER {
            let section = ComponentSection {
                kind: self.strategy.kind.clone(),
                path: self.strategy.path.clone(),
                options: self.strategy.options.clone(),
            };
            Some(
                self.registry
                    .balancer(&section)
                    .map_err(|e| SimError::Component(e.to_string()))?,
            )
        } else {
            None
        };
        // The node's rule (`sampling::balancer_proposes`): an
        // observer-only balancer proposes from the pool's observer, here
        // the first node, and nowhere else; a node whose proposals would
        // be dropped runs none (the same outcome, without the fitting).
        let observer = index == 0;
        let balancer =
            balancer.filter(|b| sampling::balancer_proposes(observer, b.observer_only()));
        let scheduler = if is_client {
            let j = &self.sc.jobs.scheduler;
            let section = ComponentSection {
                kind: j.kind.clone(),
                path: j.path.clone(),
                options: j.options.clone(),
            };
            Some(
                self.registry
                    .scheduler(&section)
                    .map_err(|e| SimError::Component(e.to_string()))?,
            )
        } else {
            None
        };
        let ip = Ipv4Addr::from(0x0A00_0000u32 | (index as u32 & 0x00FF_FFFF));
        let node = SimNode {
            id,
            addr: Endpoint(SocketAddr::V4(SocketAddrV4::new(ip, 7100))),
            power,
            arch,
            reserve,
            is_client,
            alive: true,
            life: 0,
            seq: 0,
            beacons: BeaconSchedule::new(),
            sampler: MarketSampler::new(self.sc.initial_price, self.expiry_ms),
            market: Market::new(MarketConfig {
                me: id,
                initial_price: self.sc.initial_price,
                repeat_ms: self.sc.tick_ms,
                round_timeout_ms: self.expiry_ms.saturating_mul(3),
                max_step_milli: MarketConfig::DEFAULT_MAX_STEP_MILLI,
                // Simulated members are honest and their balancers pace
                // themselves; the interval guards against modified ones.
                min_move_interval_ms: 0,
                reconcile_after_ms: self.expiry_ms.saturating_mul(2),
            }),
            balancer,
            integrator: Integrator::new(),
            admission: Admission::new(AdmissionConfig::from_share(
                &ShareSection {
                    slots: pop.slots,
                    ..ShareSection::default()
                },
                reserve,
            )),
            waiting: VecDeque::new(),
            running: Vec::new(),
            tasks_done: 0,
            tasks_refused: 0,
            scheduler,
            client: Client::new(id, self.expiry_ms),
            job_seq: 0,
            meters: Meters::since(self.now),
            next_receipt: 1,
            schedule_queued: false,
        };
        self.ledger.open_account(id);
        if is_client {
            self.clients.push(index);
        }
        self.index.insert(id, index);
        self.nodes.push(node);
        Ok(())
    }

    pub(super) fn pick_alive(&mut self) -> Option<usize> {
        let alive: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes.get(i).is_some_and(|n| n.alive))
            .collect();
        if alive.len() <= 1 {
            return None;
        }
        let k = (unit(&mut self.churn_rng) * alive.len() as f64) as usize;
        alive.get(k).copied()
    }

    /// A node goes away: with a Leave beacon, or silently (a crash).
    pub(super) fn kill(&mut self, i: usize, leave: bool) {
        if leave {
            if let Some(addr) = self.nodes.get(i).map(|n| n.addr) {
                self.beacon(i, Message::Leave { addr });
            }
        }
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        n.alive = false;
        n.life += 1;
        self.clients.retain(|&c| c != i);
        n.waiting.clear();
        n.running.clear();
        n.admission = Admission::new(n.admission.config().clone());
        n.integrator = Integrator::new();
        self.lost += n.client.len() as u64;
        n.client = Client::new(n.id, self.expiry_ms);
        // Unsettled charges die with the payer: no receipt, no money moves.
        n.meters.clear();
        if leave {
            for book in &mut self.books {
                while book.poll_event().is_some() {}
            }
            let id = self.nodes.get(i).map(|n| n.id);
            if let Some(id) = id {
                for c in 0..self.nodes.len() {
                    let Some(n) = self.nodes.get_mut(c) else {
                        continue;
                    };
                    if n.alive && !n.client.is_empty() {
                        n.client.handle_node_lost(id);
                        self.queue_schedule(c, 0);
                    }
                }
            }
        }
    }
}
