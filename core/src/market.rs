//! Price agreement (DESIGN 4.10): a sans-IO state machine for the unanimous
//! rounds that change the network-wide market price.
//!
//! A round is `Propose(epoch, price, proposer)`, a `Vote` from every live
//! member of the book, then `Commit`. The messages ride the signed beacon
//! channel (UDP, broadcast), so every node hears every round, every vote
//! included; each is repeated every tick until the round ends, which rides
//! out lost datagrams.
//!
//! A member may run modified software, so nothing one member says moves
//! this node's price on its own (docs/PROTOCOL.md, "Price rounds"):
//!
//! - **What a voter says yes to.** A proposal is for the epoch after this
//!   node's committed one (or the reconciliation epoch, below), and its
//!   price is this node's price, a price inside the range the members hold
//!   with the highest and lowest one left out, or one step
//!   ([`MarketConfig::max_step_milli`]) from this node's price, at most
//!   once per [`MarketConfig::min_move_interval_ms`]. Anything else gets a
//!   `no` and a [`MemberRefusal`].
//! - **What a node adopts.** Another member's round is adopted only when
//!   this node voted yes on exactly that (epoch, proposer, price), the
//!   proposer committed it (its `Commit`, or its Hand), and every other
//!   live member of this node's own book endorsed it: its signed yes vote
//!   for that price, or its Hand saying it holds that state. A Hand's
//!   `Epoch` alone never moves the price; a Commit without the votes is
//!   refused.
//! - **Healed partitions.** When members' Hands keep saying they hold
//!   another state than ours for [`MarketConfig::reconcile_after_ms`], a
//!   node that sees a greater state than its own opens a reconciliation
//!   round: the same unanimous round, at one epoch above every state the
//!   members hold, for a price every voter can accept by the rule above.
//!
//! Ordering: a committed state is the pair `(epoch, proposer)`, compared
//! epoch first, then proposer id. Among concurrent proposals the greater
//! pair wins: a node votes yes only for the greatest proposal it has seen
//! above its committed state, and a proposer that sees a greater one gives
//! its own up.
//!
//! Unanimity is among the *live* members: the proposer counts the members
//! of its book at each check, so a member that dies mid-round drops out of
//! the round when it expires from the book.

use std::collections::{BTreeMap, BTreeSet};

use crate::money::{Price, UNIT};
use crate::node_id::NodeId;
use crate::wire::Message;

/// Furthest a member's Hand may claim to be ahead of this node's epoch
/// before the claim is refused; it bounds how far any round can move the
/// epoch, so no member can push it to the top of its range.
pub const MAX_EPOCH_GAP: u64 = 1 << 16;

/// How many of the latest commits [`Market::history`] keeps.
pub const HISTORY_LEN: usize = 64;

/// One change of the committed state, as this node saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitRecord {
    /// When this node took the state, ms on the node's clock.
    pub at_ms: u64,
    #[serde(flatten)]
    pub state: Committed,
}

/// A committed price and the round that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Why something a member sent about the price or its queue was refused.
/// The node counts each (`lppsp status`: `member_refusals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRefusal {
    /// A Propose, Commit or Hand `Epoch` beyond the epoch this node would
    /// agree to next.
    EpochJump,
    /// A proposed price more than one step from this node's price and
    /// outside the range the members hold.
    PriceStep,
    /// A proposal that would move the price again sooner than
    /// `min_move_interval_ms` after the last move.
    TooSoon,
    /// A Commit of a round this node did not vote for, or whose votes never
    /// came from every live member.
    UnbackedCommit,
    /// Two different prices proposed for one round.
    Equivocation,
    /// An Idle `Queue` above what the node could hold.
    QueueBound,
    /// A Hand's `Slots` above the bound.
    SlotsBound,
}

impl MemberRefusal {
    pub const ALL: [MemberRefusal; 7] = [
        Self::EpochJump,
        Self::PriceStep,
        Self::TooSoon,
        Self::UnbackedCommit,
        Self::Equivocation,
        Self::QueueBound,
        Self::SlotsBound,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EpochJump => "epoch_jump",
            Self::PriceStep => "price_step",
            Self::TooSoon => "too_soon",
            Self::UnbackedCommit => "unbacked_commit",
            Self::Equivocation => "equivocation",
            Self::QueueBound => "queue_bound",
            Self::SlotsBound => "slots_bound",
        }
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
    /// Largest move of one round, per mille of this node's price; never
    /// less than one whole unit (the FSM's step).
    pub max_step_milli: u64,
    /// Least time between two moves of this node's price by a step, ms.
    pub min_move_interval_ms: u64,
    /// How long members must hold another state than ours before a
    /// reconciliation round, ms.
    pub reconcile_after_ms: u64,
}

impl MarketConfig {
    /// Default of `max_step_milli`: 10% (and at least one unit).
    pub const DEFAULT_MAX_STEP_MILLI: u64 = 100;
    /// Default of `min_move_interval_ms`: one minute.
    pub const DEFAULT_MIN_MOVE_INTERVAL_MS: u64 = 60_000;
}

/// What the node must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketOutput {
    /// Broadcast this message on the signed beacon channel.
    Broadcast(Message),
    /// The committed price changed (our round, another's, or a healed
    /// partition): frames carry it from now on.
    Committed(Committed),
    /// Something `peer` sent was refused: count it.
    Refused {
        peer: NodeId,
        reason: MemberRefusal,
        what: String,
    },
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
    seen_ms: u64,
}

/// Another member's round above our committed epoch, and who endorses it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PeerRound {
    price: Price,
    seen_ms: u64,
    /// This node voted yes on it (at `price`).
    voted_yes: bool,
    /// Its proposer sent Commit for it, or its Hand holds it.
    proposer_committed: bool,
    /// Members whose signed yes vote at `price`, or whose Hand, endorse it.
    endorsed: BTreeSet<NodeId>,
}

/// Counters for status output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MarketStats {
    pub rounds_opened: u64,
    pub rounds_committed: u64,
    pub rounds_abandoned: u64,
    pub votes_cast: u64,
    /// Other members' rounds adopted with the evidence behind them.
    pub adopted_from_peers: u64,
    /// Reconciliation rounds this node opened.
    pub reconciliations: u64,
}

/// The agreement state machine; see the module doc.
#[derive(Debug)]
pub struct Market {
    cfg: MarketConfig,
    committed: Committed,
    own: Option<OwnRound>,
    backed: Option<Backed>,
    /// Other members' rounds above our epoch; at most one per proposer.
    rounds: BTreeMap<(u64, NodeId), PeerRound>,
    /// The state each live member's latest Hand says it holds.
    claims: BTreeMap<NodeId, Committed>,
    /// Since when some member has held another state than ours.
    diverged_since: Option<u64>,
    /// When our price last moved (not by reconciliation inside the range).
    last_move_ms: Option<u64>,
    last_reconcile_ms: Option<u64>,
    outputs: Vec<MarketOutput>,
    /// The latest commits, oldest first, at most [`HISTORY_LEN`].
    history: std::collections::VecDeque<CommitRecord>,
    stats: MarketStats,
    /// Why the last proposal was abandoned, for status.
    last_abandoned: Option<String>,
}

impl Market {
    pub fn new(cfg: MarketConfig) -> Self {
        let initial = Committed {
            epoch: 0,
            proposer: None,
            price: cfg.initial_price,
        };
        Self::resume(cfg, initial)
    }

    /// A node that starts again from the state it committed before it
    /// stopped (stored by the node). Members that moved on meanwhile hold a
    /// greater state, which this node reconciles to; its own older state
    /// is never greater than theirs, so it moves no one back.
    pub fn resume(cfg: MarketConfig, committed: Committed) -> Self {
        Self {
            committed,
            cfg,
            own: None,
            backed: None,
            rounds: BTreeMap::new(),
            claims: BTreeMap::new(),
            diverged_since: None,
            last_move_ms: None,
            last_reconcile_ms: None,
            outputs: Vec::new(),
            history: std::collections::VecDeque::new(),
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
    /// The latest commits this node took, oldest first, with the time it
    /// took each: the price path, for status and tests.
    pub fn history(&self) -> impl Iterator<Item = &CommitRecord> {
        self.history.iter()
    }
    /// The round this node has open: (epoch, price, yes votes so far).
    pub fn open_round(&self) -> Option<(u64, Price, usize)> {
        self.own.as_ref().map(|r| (r.epoch, r.price, r.yes.len()))
    }
    pub fn last_abandoned(&self) -> Option<&str> {
        self.last_abandoned.as_deref()
    }
    /// Members whose Hands say they hold another state than ours.
    pub fn diverging(&self) -> Vec<NodeId> {
        self.claims
            .iter()
            .filter(|(_, c)| **c != self.committed)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Drains what the node must do.
    pub fn drain(&mut self) -> Vec<MarketOutput> {
        std::mem::take(&mut self.outputs)
    }

    fn refuse(&mut self, peer: NodeId, reason: MemberRefusal, what: String) {
        self.outputs
            .push(MarketOutput::Refused { peer, reason, what });
    }

    /// One step from our price: `max_step_milli` of it, at least one unit.
    fn step(&self) -> u64 {
        let p = u128::from(self.committed.price.micros());
        let step = p.saturating_mul(u128::from(self.cfg.max_step_milli)) / 1000;
        u64::try_from(step).unwrap_or(u64::MAX).max(UNIT)
    }

    fn within_step(&self, price: Price) -> bool {
        price.micros().abs_diff(self.committed.price.micros()) <= self.step()
    }

    fn too_soon(&self, now_ms: u64) -> bool {
        self.last_move_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < self.cfg.min_move_interval_ms)
    }

    /// The prices the live members hold (ours included) with the lowest
    /// and the highest left out: one member alone cannot widen it. Needs
    /// three holders or more.
    fn trimmed_range(&self) -> Option<(Price, Price)> {
        let mut prices: Vec<Price> = self.claims.values().map(|c| c.price).collect();
        prices.push(self.committed.price);
        if prices.len() < 3 {
            return None;
        }
        prices.sort_unstable();
        let lo = *prices.get(1)?;
        let hi = *prices.get(prices.len() - 2)?;
        Some((lo, hi))
    }

    /// Whether we would agree to hold `price` now.
    fn acceptable_price(&self, now_ms: u64, price: Price) -> Result<(), MemberRefusal> {
        if price == self.committed.price {
            return Ok(());
        }
        if self
            .trimmed_range()
            .is_some_and(|(lo, hi)| lo <= price && price <= hi)
        {
            return Ok(());
        }
        if !self.within_step(price) {
            return Err(MemberRefusal::PriceStep);
        }
        if self.too_soon(now_ms) {
            return Err(MemberRefusal::TooSoon);
        }
        Ok(())
    }

    /// The epoch of a reconciliation round: one above every state the
    /// live members hold (their claims are within `MAX_EPOCH_GAP`).
    fn reconcile_epoch(&self) -> u64 {
        self.claims
            .values()
            .map(|c| c.epoch)
            .fold(self.committed.epoch, u64::max)
            .saturating_add(1)
    }

    /// The local balancer wants `price`. Opens a round at the next epoch
    /// unless one of ours is already open. A price further than one step
    /// is proposed one step towards it (voters would refuse more), and
    /// nothing is proposed sooner than the interval after the last move.
    /// `live` are the other live members of the book.
    pub fn propose(&mut self, now_ms: u64, price: Price, evidence: String, live: &[NodeId]) {
        if self.own.is_some() || price == self.committed.price || self.too_soon(now_ms) {
            return;
        }
        let price = if self.within_step(price) {
            price
        } else {
            let now = self.committed.price.micros();
            let step = self.step();
            if price.micros() > now {
                Price::from_micros(now.saturating_add(step))
            } else {
                Price::from_micros(now.saturating_sub(step))
            }
        };
        let epoch = self.committed.epoch.saturating_add(1);
        self.open(now_ms, epoch, price, evidence, live);
    }

    fn open(&mut self, now_ms: u64, epoch: u64, price: Price, evidence: String, live: &[NodeId]) {
        // Another node's round is in progress above us: let it finish first.
        if self
            .backed
            .is_some_and(|b| b.proposer != self.cfg.me && b.epoch > self.committed.epoch)
        {
            return;
        }
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
            seen_ms: now_ms,
        });
        self.stats.rounds_opened += 1;
        self.outputs.push(MarketOutput::Broadcast(Message::Propose {
            epoch,
            price,
            proposer: me,
        }));
        // A node alone in the book needs no one's vote.
        self.try_commit(now_ms, live);
    }

    /// A verified Propose, Vote or Commit from the member `from`.
    pub fn on_message(&mut self, now_ms: u64, from: NodeId, message: &Message, live: &[NodeId]) {
        match *message {
            // Only a round's proposer may open or commit it.
            Message::Propose {
                epoch,
                price,
                proposer,
            } if proposer == from => self.on_propose(now_ms, epoch, price, proposer),
            Message::Vote {
                epoch,
                proposer,
                price,
                yes,
            } => self.on_vote(now_ms, from, epoch, proposer, price, yes, live),
            Message::Commit {
                epoch,
                price,
                proposer,
            } if proposer == from => self.on_commit(now_ms, epoch, price, proposer, live),
            _ => {}
        }
    }

    /// A member's Hand said which state it holds. It never moves our price
    /// by itself: it endorses a round we know, and feeds reconciliation.
    pub fn on_peer_state(&mut self, now_ms: u64, from: NodeId, state: Committed, live: &[NodeId]) {
        if from == self.cfg.me {
            return;
        }
        if state.epoch > self.committed.epoch.saturating_add(MAX_EPOCH_GAP) {
            self.claims.remove(&from);
            self.refuse(
                from,
                MemberRefusal::EpochJump,
                format!(
                    "Hand Epoch {} (ours {}, at most {} ahead)",
                    state.epoch, self.committed.epoch, MAX_EPOCH_GAP
                ),
            );
            return;
        }
        self.claims.insert(from, state);
        let Some(proposer) = state.proposer else {
            return;
        };
        let key = (state.epoch, proposer);
        if let Some(r) = self.rounds.get_mut(&key) {
            if r.price == state.price {
                r.endorsed.insert(from);
                if from == proposer {
                    r.proposer_committed = true;
                }
                self.try_adopt(now_ms, key, live);
            }
        }
    }

    fn on_propose(&mut self, now_ms: u64, epoch: u64, price: Price, proposer: NodeId) {
        if epoch <= self.committed.epoch {
            // A round at or below our epoch can no longer be agreed: say no
            // so that its proposer stops waiting.
            self.vote(epoch, proposer, price, false);
            return;
        }
        let key = (epoch, proposer);
        if let Some(r) = self.rounds.get(&key) {
            if r.price != price {
                self.refuse(
                    proposer,
                    MemberRefusal::Equivocation,
                    format!(
                        "Propose epoch {epoch} at {price} after {} for the same round",
                        r.price
                    ),
                );
                if let Some(r) = self.rounds.get_mut(&key) {
                    r.voted_yes = false;
                }
                self.vote(epoch, proposer, price, false);
                return;
            }
            if !r.voted_yes {
                // Refused before: stays refused.
                self.vote(epoch, proposer, price, false);
                return;
            }
        }
        let next = self.committed.epoch.saturating_add(1);
        if epoch != next && epoch != self.reconcile_epoch() {
            self.refuse(
                proposer,
                MemberRefusal::EpochJump,
                format!(
                    "Propose epoch {epoch}, ours {}: only {next} or a reconciliation at {}",
                    self.committed.epoch,
                    self.reconcile_epoch()
                ),
            );
            self.vote(epoch, proposer, price, false);
            return;
        }
        if !self.rounds.contains_key(&key) {
            if let Err(reason) = self.acceptable_price(now_ms, price) {
                self.refuse(
                    proposer,
                    reason,
                    format!(
                        "Propose epoch {epoch} at {price}, ours {}",
                        self.committed.price
                    ),
                );
                self.vote(epoch, proposer, price, false);
                return;
            }
        }
        let greater = self.backed.is_none_or(|b| {
            (epoch, proposer) >= (b.epoch, b.proposer) || b.epoch <= self.committed.epoch
        });
        if !greater {
            // We back a greater round: say no so the proposer stops waiting.
            self.vote(epoch, proposer, price, false);
            return;
        }
        if let Some(own) = &self.own {
            if (own.epoch, self.cfg.me) < (epoch, proposer) {
                self.abandon(format!(
                    "a greater concurrent round (epoch {epoch}, proposer {proposer})"
                ));
            }
        }
        // One round per proposer: a newer one replaces its older ones.
        self.rounds
            .retain(|(e, p), _| *p != proposer || *e == epoch);
        let claims = &self.claims;
        let r = self.rounds.entry(key).or_insert_with(|| PeerRound {
            price,
            seen_ms: now_ms,
            voted_yes: true,
            proposer_committed: false,
            // Members whose Hands already hold it endorse it.
            endorsed: claims
                .iter()
                .filter(|(_, c)| {
                    c.epoch == epoch && c.proposer == Some(proposer) && c.price == price
                })
                .map(|(id, _)| *id)
                .collect(),
        });
        r.seen_ms = now_ms;
        self.backed = Some(Backed {
            epoch,
            proposer,
            seen_ms: now_ms,
        });
        // Answer every repeat: the proposer repeats because votes were lost.
        self.vote(epoch, proposer, price, true);
    }

    fn vote(&mut self, epoch: u64, proposer: NodeId, price: Price, yes: bool) {
        self.stats.votes_cast += 1;
        self.outputs.push(MarketOutput::Broadcast(Message::Vote {
            epoch,
            proposer,
            price,
            yes,
        }));
    }

    #[allow(clippy::too_many_arguments)]
    fn on_vote(
        &mut self,
        now_ms: u64,
        from: NodeId,
        epoch: u64,
        proposer: NodeId,
        price: Price,
        yes: bool,
        live: &[NodeId],
    ) {
        if proposer == self.cfg.me {
            let Some(own) = &mut self.own else {
                return;
            };
            // A vote for another epoch or price is not for this round.
            if own.epoch != epoch || own.price != price {
                return;
            }
            if !yes {
                self.abandon(format!("{from} voted no"));
                return;
            }
            own.yes.insert(from);
            self.try_commit(now_ms, live);
            return;
        }
        // Another member's round: every node hears every vote, and counts
        // it as evidence for that round at that price.
        let key = (epoch, proposer);
        if let Some(r) = self.rounds.get_mut(&key) {
            if yes && r.price == price {
                r.endorsed.insert(from);
                self.try_adopt(now_ms, key, live);
            }
        }
    }

    fn on_commit(
        &mut self,
        now_ms: u64,
        epoch: u64,
        price: Price,
        proposer: NodeId,
        live: &[NodeId],
    ) {
        if epoch <= self.committed.epoch {
            // Late or repeated: nothing to do.
            return;
        }
        let key = (epoch, proposer);
        match self.rounds.get_mut(&key) {
            Some(r) if r.voted_yes && r.price == price => {
                r.proposer_committed = true;
                r.endorsed.insert(proposer);
                self.try_adopt(now_ms, key, live);
            }
            _ => {
                let reason = if epoch > self.committed.epoch.saturating_add(MAX_EPOCH_GAP) {
                    MemberRefusal::EpochJump
                } else {
                    MemberRefusal::UnbackedCommit
                };
                self.refuse(
                    proposer,
                    reason,
                    format!("Commit epoch {epoch} at {price}: this node did not vote yes on it"),
                );
            }
        }
    }

    /// Adopts another member's round once the evidence is complete: our own
    /// yes, the proposer's commit, and every other live member's yes vote
    /// or Hand for it.
    fn try_adopt(&mut self, now_ms: u64, key: (u64, NodeId), live: &[NodeId]) {
        let Some(r) = self.rounds.get(&key) else {
            return;
        };
        if !r.voted_yes || !r.proposer_committed || key.0 <= self.committed.epoch {
            return;
        }
        // Every live member but us and the proposer must endorse it, so
        // fewer endorsements than that cannot be enough: skip the scan
        // (endorsements come one at a time).
        if r.endorsed.len().saturating_add(2) < live.len() {
            return;
        }
        let (epoch, proposer) = key;
        let me = self.cfg.me;
        if !live
            .iter()
            .all(|m| *m == me || *m == proposer || r.endorsed.contains(m))
        {
            return;
        }
        let state = Committed {
            epoch,
            proposer: Some(proposer),
            price: r.price,
        };
        self.stats.adopted_from_peers += 1;
        self.adopt(now_ms, state);
    }

    /// Commits our round when every live member has voted yes.
    fn try_commit(&mut self, now_ms: u64, live: &[NodeId]) {
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
        self.adopt(now_ms, state);
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

    fn adopt(&mut self, now_ms: u64, state: Committed) {
        if state.key() <= self.committed.key() {
            return;
        }
        // A move to a price the members hold (reconciliation) is not a
        // step of ours: it does not start the interval.
        let inside = self
            .trimmed_range()
            .is_some_and(|(lo, hi)| lo <= state.price && state.price <= hi);
        if state.price != self.committed.price && !inside {
            self.last_move_ms = Some(now_ms);
        }
        self.committed = state;
        if self.own.as_ref().is_some_and(|r| r.epoch <= state.epoch) {
            self.abandon(format!("epoch {} was committed first", state.epoch));
        }
        if self.backed.is_some_and(|b| b.epoch <= state.epoch) {
            self.backed = None;
        }
        self.rounds.retain(|(e, _), _| *e > state.epoch);
        if self.history.len() >= HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(CommitRecord {
            at_ms: now_ms,
            state,
        });
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
    /// it has run too long. Also forgets rounds nobody repeats, and opens a
    /// reconciliation round when members have held other states too long.
    pub fn handle_timeout(&mut self, now_ms: u64, live: &[NodeId]) {
        self.forget_departed(live);
        if let Some(b) = self.backed {
            let stale = now_ms.saturating_sub(b.seen_ms) >= self.cfg.round_timeout_ms;
            if b.proposer != self.cfg.me && stale {
                self.backed = None;
            }
        }
        let timeout = self.cfg.round_timeout_ms;
        let stale: Vec<((u64, NodeId), bool)> = self
            .rounds
            .iter()
            .filter(|(_, r)| now_ms.saturating_sub(r.seen_ms) >= timeout)
            .map(|(k, r)| (*k, r.voted_yes && r.proposer_committed))
            .collect();
        for (key, committed_unbacked) in stale {
            self.rounds.remove(&key);
            if committed_unbacked {
                self.refuse(
                    key.1,
                    MemberRefusal::UnbackedCommit,
                    format!(
                        "Commit epoch {}: votes of every live member never came",
                        key.0
                    ),
                );
            }
        }
        // The live set may have shrunk: a round may now be complete.
        let keys: Vec<(u64, NodeId)> = self.rounds.keys().copied().collect();
        for key in keys {
            self.try_adopt(now_ms, key, live);
        }
        self.try_commit(now_ms, live);
        self.maybe_reconcile(now_ms, live);
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

    /// Drops the claims of members no longer in `live`. The node and the
    /// simulator pass `live` in id order (the book's), which makes this a
    /// binary search per claim with no allocation.
    fn forget_departed(&mut self, live: &[NodeId]) {
        if self.claims.is_empty() {
            return;
        }
        if live.windows(2).all(|w| w[0] < w[1]) {
            self.claims.retain(|id, _| live.binary_search(id).is_ok());
        } else {
            let members: BTreeSet<&NodeId> = live.iter().collect();
            self.claims.retain(|id, _| members.contains(id));
        }
    }

    /// Opens a reconciliation round when members have held other states
    /// than ours for `reconcile_after_ms` and one of them is greater than
    /// ours (the node at the greatest state waits for the others to ask).
    fn maybe_reconcile(&mut self, now_ms: u64, live: &[NodeId]) {
        let committed = self.committed;
        let greater = |c: &Committed| {
            c.key() > committed.key() || (c.key() == committed.key() && c.price != committed.price)
        };
        if self.claims.values().all(|c| *c == committed) {
            self.diverged_since = None;
            return;
        }
        let since = *self.diverged_since.get_or_insert(now_ms);
        let after = self.cfg.reconcile_after_ms;
        let busy = self.own.is_some()
            || self
                .backed
                .is_some_and(|b| b.proposer != self.cfg.me && b.epoch > committed.epoch);
        if busy
            || now_ms.saturating_sub(since) < after
            || self
                .last_reconcile_ms
                .is_some_and(|t| now_ms.saturating_sub(t) < after)
        {
            return;
        }
        let Some(greatest) = self
            .claims
            .values()
            .filter(|c| greater(c))
            .max_by_key(|c| (c.key(), c.price))
            .copied()
        else {
            return;
        };
        let target = self.reconcile_price(now_ms, greatest.price);
        let epoch = self.reconcile_epoch();
        self.last_reconcile_ms = Some(now_ms);
        self.stats.reconciliations += 1;
        let evidence = format!(
            "reconcile: members hold other states than epoch {} since {} ms ago; greatest epoch {} at {}",
            committed.epoch,
            now_ms.saturating_sub(since),
            greatest.epoch,
            greatest.price
        );
        // A reconciliation at our own price still needs the round: it
        // moves every member to one (epoch, proposer).
        self.open(now_ms, epoch, target, evidence, live);
    }

    /// The price of a reconciliation: the greatest state's price if we
    /// could agree to it, else the (lower) median of the prices the
    /// members hold if we could, else one step from ours towards it.
    fn reconcile_price(&self, now_ms: u64, greatest: Price) -> Price {
        if self.acceptable_price(now_ms, greatest).is_ok() {
            return greatest;
        }
        let mut prices: Vec<Price> = self.claims.values().map(|c| c.price).collect();
        prices.push(self.committed.price);
        prices.sort_unstable();
        let median = prices
            .get((prices.len() - 1) / 2)
            .copied()
            .unwrap_or(self.committed.price);
        if self.acceptable_price(now_ms, median).is_ok() {
            return median;
        }
        if self.too_soon(now_ms) {
            return self.committed.price;
        }
        let now = self.committed.price.micros();
        if median.micros() > now {
            Price::from_micros(now.saturating_add(self.step()))
        } else {
            Price::from_micros(now.saturating_sub(self.step()))
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
    /// Tasks queued or running on this node, plus its jobs' tasks not yet
    /// placed whose maximum price the market price does not exceed
    /// ([`crate::curves::buys_at`]): what it reports in its Idle `Queue`.
    pub queue: u64,
    /// This node's power per slot, MFLOPS (its Hand's).
    pub power: u64,
    /// Task slots this node offers at the current price (0 when it does
    /// not compute, or below its reserve).
    pub slots: u32,
}

/// One market sample from the information book (DESIGN 4.11), at `price`
/// (the sampling node's committed price).
///
/// - **Demand**: the tasks willing to buy at `price`, queued or running in
///   the pool, as the nodes report them in their Idle `Queue`: a client
///   counts its jobs' unplaced tasks only while the price is at most the
///   job's maximum (tasks placed earlier run on at their placement
///   price and are counted where they run).
/// - **Supply**: the power offered at `price`, busy or not: per compute
///   node, its power times the slots its Hand offers, counted only when
///   its reserve is at or below `price` ([`crate::curves::offers_at`]).
/// - **Pressure**: demand per node.
///
/// `own` is the sampling node's part; `None` counts the book alone. The
/// node and the simulator both sample through here.
///
/// Demand is robust to one outlier (docs/balancers-fsm.md, "Pressure"):
/// the largest per-node report counts at most as much as the second
/// largest plus the most slots any other node offers, so one member,
/// whatever it reports, adds at most one node's worth of tasks above the
/// others. Each report is already capped by the book
/// ([`crate::book::max_queue_report`]); power and slots by the Hand's
/// bounds, and their product saturates.
#[must_use]
pub fn sample_book(
    book: &crate::book::Book,
    now_ms: u64,
    price: Price,
    own: Option<OwnShare>,
) -> crate::component::MarketSample {
    let mut reports: Vec<(u64, u32)> = Vec::with_capacity(book.len().saturating_add(1));
    let mut supply = 0u64;
    if let Some(o) = own {
        let slots = o.slots.min(crate::book::MAX_SLOTS);
        reports.push((o.queue, slots));
        supply = o.power.saturating_mul(u64::from(slots));
    }
    for p in book.peers() {
        reports.push((p.queue, p.slots));
        if p.slots > 0 && crate::curves::offers_at(p.reserve, price) {
            supply = supply.saturating_add(p.power.saturating_mul(u64::from(p.slots)));
        }
    }
    let demand = robust_demand(&reports);
    let nodes = u32::try_from(reports.len()).unwrap_or(u32::MAX);
    crate::component::MarketSample {
        at_ms: now_ms,
        price,
        pressure_milli: pressure_milli(demand, nodes),
        demand_tasks: demand,
        supply_mflops: supply,
        nodes: nodes.max(1),
    }
}

/// The pool's demand from per-node `(queue, slots)` reports: their sum,
/// with the largest report counting at most the second largest plus the
/// most slots offered by any other node.
#[must_use]
pub fn robust_demand(reports: &[(u64, u32)]) -> u64 {
    let Some((top, _)) = reports
        .iter()
        .enumerate()
        .max_by_key(|(i, (q, _))| (*q, std::cmp::Reverse(*i)))
    else {
        return 0;
    };
    let mut rest = 0u64;
    let mut second = 0u64;
    let mut most_slots = 0u32;
    for (i, (q, slots)) in reports.iter().enumerate() {
        if i == top {
            continue;
        }
        rest = rest.saturating_add(*q);
        second = second.max(*q);
        most_slots = most_slots.max(*slots);
    }
    let largest = reports.get(top).map_or(0, |r| r.0);
    rest.saturating_add(largest.min(second.saturating_add(u64::from(most_slots))))
}
