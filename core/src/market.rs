//! Price agreement (DESIGN 4.10): a sans-IO state machine for the unanimous
//! rounds that change the network-wide market price.
//!
//! A round is `Propose(epoch, price, proposer)`, a `Vote` from every live
//! member of the book, then `Commit`. The messages ride the signed beacon
//! channel (UDP, broadcast), so every node hears every round; each is
//! repeated every tick until the round ends, which rides out lost datagrams.
//!
//! Ordering: a committed state is the pair `(epoch, proposer)`, compared
//! epoch first, then proposer id. Among concurrent proposals the greater
//! pair wins: a node votes yes only for the greatest proposal it has seen
//! above its committed state, and a proposer that sees a greater one gives
//! its own up. Convergence after a partition: every Hand carries the
//! sender's committed `(epoch, proposer)` and price, and a node adopts any
//! committed state greater than its own. Both halves of a healed partition
//! therefore end on the price of the greatest pair either of them committed.
//!
//! Unanimity is among the *live* members: the proposer counts the members
//! of its book at each check, so a member that dies mid-round drops out of
//! the round when it expires from the book.

use std::collections::BTreeSet;

use crate::money::Price;
use crate::node_id::NodeId;
use crate::wire::Message;

/// A committed price and the round that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Committed {
    pub epoch: u64,
    /// `None` for the configured initial price (epoch 0).
    pub proposer: Option<NodeId>,
    pub price: Price,
}

impl Committed {
    /// The order of committed states and proposals.
    pub fn key(&self) -> (u64, Option<NodeId>) {
        (self.epoch, self.proposer)
    }
}

/// Settings of the agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketConfig {
    pub me: NodeId,
    pub initial_price: Price,
    /// How often an open round's messages are repeated, ms (the tick).
    pub repeat_ms: u64,
    /// A round not complete after this long is given up, ms.
    pub round_timeout_ms: u64,
}

/// What the node must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketOutput {
    /// Broadcast this message on the signed beacon channel.
    Broadcast(Message),
    /// The committed price changed (our round, another's, or a healed
    /// partition): frames carry it from now on.
    Committed(Committed),
}

/// A round this node opened.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnRound {
    epoch: u64,
    price: Price,
    evidence: String,
    opened_ms: u64,
    last_sent_ms: u64,
    yes: BTreeSet<NodeId>,
}

/// The round this node currently backs (its yes vote), its own or another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backed {
    epoch: u64,
    proposer: NodeId,
    price: Price,
    seen_ms: u64,
    last_voted_ms: u64,
}

/// Counters for status output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MarketStats {
    pub rounds_opened: u64,
    pub rounds_committed: u64,
    pub rounds_abandoned: u64,
    pub votes_cast: u64,
    pub adopted_from_peers: u64,
}

/// The agreement state machine; see the module doc.
#[derive(Debug)]
pub struct Market {
    cfg: MarketConfig,
    committed: Committed,
    own: Option<OwnRound>,
    backed: Option<Backed>,
    outputs: Vec<MarketOutput>,
    stats: MarketStats,
    /// Why the last proposal was abandoned, for status.
    last_abandoned: Option<String>,
}

impl Market {
    pub fn new(cfg: MarketConfig) -> Self {
        Self {
            committed: Committed {
                epoch: 0,
                proposer: None,
                price: cfg.initial_price,
            },
            cfg,
            own: None,
            backed: None,
            outputs: Vec::new(),
            stats: MarketStats::default(),
            last_abandoned: None,
        }
    }

    pub fn committed(&self) -> Committed {
        self.committed
    }
    pub fn price(&self) -> Price {
        self.committed.price
    }
    pub fn stats(&self) -> MarketStats {
        self.stats
    }
    /// The round this node has open: (epoch, price, yes votes so far).
    pub fn open_round(&self) -> Option<(u64, Price, usize)> {
        self.own.as_ref().map(|r| (r.epoch, r.price, r.yes.len()))
    }
    pub fn last_abandoned(&self) -> Option<&str> {
        self.last_abandoned.as_deref()
    }

    /// Drains what the node must do.
    pub fn drain(&mut self) -> Vec<MarketOutput> {
        std::mem::take(&mut self.outputs)
    }

    /// The local balancer wants `price`. Opens a round at the next epoch
    /// unless one of ours is already open. `live` are the other live
    /// members of the book.
    pub fn propose(&mut self, now_ms: u64, price: Price, evidence: String, live: &[NodeId]) {
        if self.own.is_some() || price == self.committed.price {
            return;
        }
        // Another node's round is in progress above us: let it finish first.
        if self
            .backed
            .is_some_and(|b| b.proposer != self.cfg.me && b.epoch > self.committed.epoch)
        {
            return;
        }
        let epoch = self.committed.epoch.saturating_add(1);
        let me = self.cfg.me;
        self.own = Some(OwnRound {
            epoch,
            price,
            evidence,
            opened_ms: now_ms,
            last_sent_ms: now_ms,
            yes: BTreeSet::new(),
        });
        self.backed = Some(Backed {
            epoch,
            proposer: me,
            price,
            seen_ms: now_ms,
            last_voted_ms: now_ms,
        });
        self.stats.rounds_opened += 1;
        self.outputs.push(MarketOutput::Broadcast(Message::Propose {
            epoch,
            price,
            proposer: me,
        }));
        // A node alone in the book needs no one's vote.
        self.try_commit(live);
    }

    /// A verified Propose, Vote or Commit from the peer `from`.
    pub fn on_message(&mut self, now_ms: u64, from: NodeId, message: &Message, live: &[NodeId]) {
        // Only a round's proposer may open or commit it; votes count only
        // for our own rounds.
        match *message {
            Message::Propose {
                epoch,
                price,
                proposer,
            } if proposer == from => self.on_propose(now_ms, epoch, price, proposer),
            Message::Vote {
                epoch,
                proposer,
                yes,
            } if proposer == self.cfg.me => self.on_vote(from, epoch, yes, live),
            Message::Commit {
                epoch,
                price,
                proposer,
            } if proposer == from => self.adopt(Committed {
                epoch,
                proposer: Some(proposer),
                price,
            }),
            _ => {}
        }
    }

    /// A peer's Hand said what it has committed (partition healing).
    pub fn on_peer_state(&mut self, state: Committed) {
        if state.key() > self.committed.key() {
            self.stats.adopted_from_peers += 1;
            self.adopt(state);
        }
    }

    fn on_propose(&mut self, now_ms: u64, epoch: u64, price: Price, proposer: NodeId) {
        if (epoch, Some(proposer)) <= self.committed.key() {
            return;
        }
        let greater = self.backed.is_none_or(|b| {
            (epoch, proposer) >= (b.epoch, b.proposer) || b.epoch <= self.committed.epoch
        });
        if !greater {
            // We back a greater round: say no so the proposer stops waiting.
            self.vote(epoch, proposer, false);
            return;
        }
        if let Some(own) = &self.own {
            if (own.epoch, self.cfg.me) < (epoch, proposer) {
                self.abandon(format!(
                    "a greater concurrent round (epoch {epoch}, proposer {proposer})"
                ));
            }
        }
        let repeat = self
            .backed
            .is_some_and(|b| b.epoch == epoch && b.proposer == proposer);
        if repeat {
            if let Some(b) = &mut self.backed {
                b.seen_ms = now_ms;
            }
        } else {
            self.backed = Some(Backed {
                epoch,
                proposer,
                price,
                seen_ms: now_ms,
                last_voted_ms: now_ms,
            });
        }
        // Answer every repeat: the proposer repeats because votes were lost.
        self.vote(epoch, proposer, true);
    }

    fn vote(&mut self, epoch: u64, proposer: NodeId, yes: bool) {
        self.stats.votes_cast += 1;
        self.outputs.push(MarketOutput::Broadcast(Message::Vote {
            epoch,
            proposer,
            yes,
        }));
    }

    fn on_vote(&mut self, from: NodeId, epoch: u64, yes: bool, live: &[NodeId]) {
        let Some(own) = &mut self.own else {
            return;
        };
        if own.epoch != epoch {
            return;
        }
        if !yes {
            self.abandon(format!("{from} voted no"));
            return;
        }
        own.yes.insert(from);
        self.try_commit(live);
    }

    /// Commits our round when every live member has voted yes.
    fn try_commit(&mut self, live: &[NodeId]) {
        let Some(own) = &self.own else {
            return;
        };
        // Every other live member must have voted yes, so fewer yes votes
        // than that cannot be enough: skip the scan (votes come one at a
        // time, and a full scan per vote is quadratic in members).
        if own.yes.len().saturating_add(1) < live.len() {
            return;
        }
        if !live
            .iter()
            .all(|m| *m == self.cfg.me || own.yes.contains(m))
        {
            return;
        }
        let state = Committed {
            epoch: own.epoch,
            proposer: Some(self.cfg.me),
            price: own.price,
        };
        self.outputs.push(MarketOutput::Broadcast(Message::Commit {
            epoch: state.epoch,
            price: state.price,
            proposer: self.cfg.me,
        }));
        self.stats.rounds_committed += 1;
        self.own = None;
        self.adopt(state);
    }

    fn abandon(&mut self, why: String) {
        if self.own.take().is_some() {
            self.stats.rounds_abandoned += 1;
            self.last_abandoned = Some(why);
            if self.backed.is_some_and(|b| b.proposer == self.cfg.me) {
                self.backed = None;
            }
        }
    }

    fn adopt(&mut self, state: Committed) {
        if state.key() <= self.committed.key() {
            return;
        }
        self.committed = state;
        if self.own.as_ref().is_some_and(|r| r.epoch <= state.epoch) {
            self.abandon(format!("epoch {} was committed first", state.epoch));
        }
        if self.backed.is_some_and(|b| b.epoch <= state.epoch) {
            self.backed = None;
        }
        self.outputs.push(MarketOutput::Committed(state));
    }

    /// The next moment `handle_timeout` has work, ms.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.own
            .as_ref()
            .map(|r| r.last_sent_ms.saturating_add(self.cfg.repeat_ms))
    }

    /// Repeats our open round's Propose (lost datagrams), commits it when
    /// the members still missing have left the book, or gives it up when
    /// it has run too long. Also forgets a backed round nobody repeats.
    pub fn handle_timeout(&mut self, now_ms: u64, live: &[NodeId]) {
        if let Some(b) = self.backed {
            let stale = now_ms.saturating_sub(b.seen_ms) >= self.cfg.round_timeout_ms;
            if b.proposer != self.cfg.me && stale {
                self.backed = None;
            }
        }
        self.try_commit(live);
        let Some(own) = &mut self.own else {
            return;
        };
        if now_ms.saturating_sub(own.opened_ms) >= self.cfg.round_timeout_ms {
            let missing = live.iter().filter(|m| !own.yes.contains(m)).count();
            self.abandon(format!("timed out waiting for {missing} votes"));
            return;
        }
        if now_ms.saturating_sub(own.last_sent_ms) >= self.cfg.repeat_ms {
            own.last_sent_ms = now_ms;
            let message = Message::Propose {
                epoch: own.epoch,
                price: own.price,
                proposer: self.cfg.me,
            };
            self.outputs.push(MarketOutput::Broadcast(message));
        }
    }

    /// The evidence of our open round, for the Propose frame's header.
    pub fn evidence(&self) -> Option<&str> {
        self.own.as_ref().map(|r| r.evidence.as_str())
    }
}

/// Task queue pressure (RFC 1.3) x 1000: tasks queued or running in the
/// pool per node, in integers so every node computes it alike.
pub fn pressure_milli(tasks_in_pool: u64, nodes: u32) -> u64 {
    tasks_in_pool
        .saturating_mul(1000)
        .checked_div(u64::from(nodes.max(1)))
        .unwrap_or(0)
}

/// A node's own part of a market sample: it is not in its own book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OwnShare {
    /// Tasks queued or running on this node.
    pub queue: u64,
    /// This node's power when it is an idle compute node, else 0.
    pub idle_power: u64,
}

/// One market sample from the information book (DESIGN 4.11): demand is the
/// tasks queued or running in the pool as the nodes report them in their
/// Idle beacons, supply the power of idle compute nodes, and pressure the
/// one per the other. `own` is the sampling node's part; `None` counts
/// the book alone. The node and the simulator both sample through here.
#[must_use]
pub fn sample_book(
    book: &crate::book::Book,
    now_ms: u64,
    price: Price,
    own: Option<OwnShare>,
) -> crate::component::MarketSample {
    let (mut in_pool, mut supply, mut nodes) = match own {
        Some(o) => (o.queue, o.idle_power, 1u32),
        None => (0, 0, 0),
    };
    for p in book.peers() {
        nodes = nodes.saturating_add(1);
        in_pool = in_pool.saturating_add(p.queue);
        if p.slots > 0 && p.idle {
            supply = supply.saturating_add(p.power);
        }
    }
    crate::component::MarketSample {
        at_ms: now_ms,
        price,
        pressure_milli: pressure_milli(in_pool, nodes),
        demand_tasks: in_pool,
        supply_mflops: supply,
        nodes: nodes.max(1),
    }
}
