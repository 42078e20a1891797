//! The driver's side of the price agreement: samples fed to the balancer,
//! market output sent and committed states stored, and market status.

use lppsp_core::config::Role;
use lppsp_core::market::{self, MarketOutput};
use lppsp_core::node::sampling;
use lppsp_core::NodeId;
use tracing::{info, warn};

use crate::control::reply::{MarketStatus, OpenRound};

use super::Driver;

impl Driver {
    /// The other members of the book, for price rounds.
    pub(super) fn live_members(&self) -> Vec<NodeId> {
        self.book.peers().map(|p| p.id).collect()
    }

    /// Feeds the balancer one market sample (every tick) and runs the
    /// agreement's timers.
    pub(super) fn sample_market(&mut self, now: u64) {
        let own = market::OwnShare {
            queue: self.beacons.queue(),
            power: self.me.power,
            slots: self.offered_slots(),
        };
        let price = self.market.price();
        let sample = market::sample_book(&self.book, now, price, Some(own));
        let behind = self.book.peers().any(|p| p.price != price);
        let live = self.live_members();
        let Some(sample) = self.sampler.take(now, sample, behind) else {
            self.market.handle_timeout(now, &live);
            return;
        };
        let proposal = self.balancer.on_sample(&sample);
        let proposes = self.balancer_proposes();
        if let Some(p) = proposal.filter(|_| proposes) {
            info!(price = %p.price, evidence = %p.evidence, "balancer proposes a price");
            self.market.propose(now, p.price, p.evidence, &live);
        }
        self.market.handle_timeout(now, &live);
    }

    /// Whether this node's balancer may propose: an observer-only balancer
    /// (ml) proposes on an observer node and nowhere else.
    pub(super) fn balancer_proposes(&self) -> bool {
        sampling::balancer_proposes(
            self.cfg.node.role == Role::Observer,
            self.balancer.observer_only(),
        )
    }

    /// Counts a refusal of what a member said about the price or its queue.
    pub(super) fn refuse_member(&self, peer: NodeId, reason: market::MemberRefusal, what: &str) {
        self.refusals.refuse(peer, reason.as_str(), &what);
    }

    /// Sends what the price agreement asks for and applies commits.
    pub(super) async fn flush_market(&mut self) {
        let outputs = self.market.drain();
        // The newest committed state is on disk before any frame or
        // commit goes out at it.
        if let Some(state) = outputs.iter().rev().find_map(|o| match o {
            MarketOutput::Committed(c) => Some(*c),
            _ => None,
        }) {
            self.store_committed(state).await;
        }
        for out in outputs {
            match out {
                MarketOutput::Broadcast(message) => self.broadcast(message).await,
                MarketOutput::Committed(c) => {
                    info!(price = %c.price, epoch = c.epoch, proposer = ?c.proposer.map(|p| p.to_string()), "price committed");
                    self.balancer.on_commit(c.price);
                }
                MarketOutput::Refused { peer, reason, what } => {
                    self.refuse_member(peer, reason, &what)
                }
            }
        }
    }

    /// Writes `state` to the market state file, off the driver's thread.
    /// A failed write is logged: the node holds the state in memory either
    /// way, and a restart then starts from the last state stored.
    pub(super) async fn store_committed(&self, state: market::Committed) {
        let file = self.market_file.clone();
        let stored =
            tokio::task::spawn_blocking(move || file.save(&state).map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(error) = stored {
            warn!(%error, epoch = state.epoch, "cannot store the committed market state");
        }
    }

    pub(super) fn market_status(&self) -> MarketStatus {
        let c = self.market.committed();
        let behind: Vec<NodeId> = self
            .book
            .peers()
            .filter(|p| p.price != c.price)
            .map(|p| p.id)
            .collect();
        MarketStatus {
            price: c.price,
            epoch: c.epoch,
            proposer: c.proposer,
            pressure: self
                .sampler
                .last()
                .map(|s| s.pressure_milli as f64 / 1000.0),
            demand_tasks: self.sampler.last().map(|s| s.demand_tasks),
            supply_mflops: self.sampler.last().map(|s| s.supply_mflops),
            balancer: self.balancer.describe(),
            balancer_kind: self.balancer.name().to_string(),
            balancer_proposes: self.balancer_proposes(),
            balancer_state: self
                .balancer
                .status_json()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()),
            open_round: self
                .market
                .open_round()
                .map(|(epoch, price, yes_votes)| OpenRound {
                    epoch,
                    price,
                    yes_votes,
                }),
            last_abandoned: self.market.last_abandoned().map(str::to_string),
            rounds: self.market.stats(),
            peers_at_other_price: behind,
            peers_at_other_state: self.market.diverging(),
            history: self.market.history().copied().collect(),
            restored: self.restored,
        }
    }
}
