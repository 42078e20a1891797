//! Price agreement rounds among several nodes on a simulated broadcast
//! channel, in virtual time: unanimity, concurrent proposals, lost
//! datagrams, members dying mid-round, a healed partition, and a member
//! running modified software that forges commits, jumps epochs, proposes
//! far prices, equivocates and lies in its Hands.

use lppsp_core::market::{
    Committed, Market, MarketConfig, MarketOutput, MemberRefusal, MAX_EPOCH_GAP,
};
use lppsp_core::money::Price;
use lppsp_core::wire::Message;
use lppsp_core::NodeId;
use proptest::prelude::*;

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([0, 0, 0, 0, 0, 0, 0, n])
}

fn price(units: u64) -> Price {
    Price::from_units(units).unwrap()
}

const TICK: u64 = 1000;
const INTERVAL: u64 = 30_000;

fn config(me: NodeId, initial: u64) -> MarketConfig {
    MarketConfig {
        me,
        initial_price: price(initial),
        repeat_ms: TICK,
        round_timeout_ms: 10_000,
        max_step_milli: MarketConfig::DEFAULT_MAX_STEP_MILLI,
        min_move_interval_ms: INTERVAL,
        reconcile_after_ms: 3_000,
    }
}

/// Nodes 1..=n on one broadcast channel; `link(from, to)` says whether a
/// datagram gets through, and `member(i, j)` whether node j is in node
/// i's book (both default to everyone).
struct Net {
    nodes: Vec<(NodeId, Market)>,
    alive: Vec<bool>,
    now: u64,
    refusals: Vec<(usize, NodeId, MemberRefusal)>,
    /// Members in every book that are not among `nodes` (the liar).
    extra: Vec<NodeId>,
}

type Link<'a> = &'a dyn Fn(usize, usize) -> bool;

impl Net {
    fn new(n: u8) -> Self {
        Self::with_price(n, 1)
    }

    fn with_price(n: u8, initial: u64) -> Self {
        let nodes = (1..=n)
            .map(|i| (id(i), Market::new(config(id(i), initial))))
            .collect();
        Self {
            nodes,
            alive: vec![true; n as usize],
            now: 0,
            refusals: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// The other live members in node `me`'s book: those `link` joins.
    fn live(&self, me: usize, link: Link<'_>) -> Vec<NodeId> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != me && self.alive[*j] && link(*j, me))
            .map(|(_, (id, _))| *id)
            .chain(self.extra.iter().copied())
            .collect()
    }

    fn drain(&mut self) -> Vec<(usize, Message)> {
        let mut sent = Vec::new();
        for (i, (_, m)) in self.nodes.iter_mut().enumerate() {
            for out in m.drain() {
                match out {
                    MarketOutput::Broadcast(msg) => sent.push((i, msg)),
                    MarketOutput::Refused { peer, reason, .. } => {
                        self.refusals.push((i, peer, reason))
                    }
                    MarketOutput::Committed(_) => {}
                }
            }
        }
        sent
    }

    /// Delivers broadcasts until quiet.
    fn run(&mut self, link: Link<'_>) {
        loop {
            let sent = self.drain();
            if sent.is_empty() {
                return;
            }
            for (from, msg) in sent {
                if !self.alive[from] {
                    continue;
                }
                let from_id = self.nodes[from].0;
                for to in 0..self.nodes.len() {
                    if to == from || !self.alive[to] || !link(from, to) {
                        continue;
                    }
                    let live = self.live(to, link);
                    let now = self.now;
                    self.nodes[to].1.on_message(now, from_id, &msg, &live);
                }
            }
        }
    }

    /// One tick: every node's Hand (its committed state) reaches the
    /// nodes `link` joins it to, then timers run.
    fn tick(&mut self, link: Link<'_>) {
        self.now += TICK;
        let states: Vec<Committed> = self.nodes.iter().map(|(_, m)| m.committed()).collect();
        for to in 0..self.nodes.len() {
            for (from, state) in states.iter().enumerate() {
                if from != to && self.alive[from] && self.alive[to] && link(from, to) {
                    let live = self.live(to, link);
                    let now = self.now;
                    let from_id = self.nodes[from].0;
                    self.nodes[to].1.on_peer_state(now, from_id, *state, &live);
                }
            }
        }
        self.run(link);
        for i in 0..self.nodes.len() {
            if self.alive[i] {
                let live = self.live(i, link);
                let now = self.now;
                self.nodes[i].1.handle_timeout(now, &live);
            }
        }
        self.run(link);
    }

    fn ticks(&mut self, n: usize, link: Link<'_>) {
        for _ in 0..n {
            self.tick(link);
        }
    }

    fn propose(&mut self, i: usize, units: u64, link: Link<'_>) {
        let live = self.live(i, link);
        let now = self.now;
        self.nodes[i]
            .1
            .propose(now, price(units), "test".into(), &live);
        self.run(link);
    }

    /// Node `i` opens a round for `units`, every member in its book;
    /// nothing is delivered yet.
    fn start_round(&mut self, i: usize, units: u64) {
        let live = self.live(i, &all);
        let now = self.now;
        self.nodes[i]
            .1
            .propose(now, price(units), "test".into(), &live);
    }

    /// Delivers broadcasts until quiet, each only where
    /// `gets_through(from, to, message)`; every book still lists everyone.
    fn deliver_where(&mut self, gets_through: &dyn Fn(usize, usize, &Message) -> bool) {
        loop {
            let sent = self.drain();
            if sent.is_empty() {
                return;
            }
            for (from, msg) in sent {
                let from_id = self.nodes[from].0;
                for to in 0..self.nodes.len() {
                    if to != from && gets_through(from, to, &msg) {
                        let live = self.live(to, &all);
                        let now = self.now;
                        self.nodes[to].1.on_message(now, from_id, &msg, &live);
                    }
                }
            }
        }
    }

    /// Every node takes `msg` from node id `from` (a member of its book).
    fn inject_all(&mut self, from: NodeId, msg: &Message) {
        for to in 0..self.nodes.len() {
            self.inject(to, from, msg);
        }
    }

    /// Every node takes the Hand `state` from node id `from` (a member of
    /// its book).
    fn hand_to_all(&mut self, from: NodeId, state: Committed) {
        for to in 0..self.nodes.len() {
            let mut live = self.live(to, &all);
            if !live.contains(&from) {
                live.push(from);
            }
            let now = self.now;
            self.nodes[to].1.on_peer_state(now, from, state, &live);
        }
    }

    /// Node `to` takes `msg` from node id `from` (a member of its book).
    fn inject(&mut self, to: usize, from: NodeId, msg: &Message) {
        let mut live = self.live(to, &all);
        if !live.contains(&from) {
            live.push(from);
        }
        let now = self.now;
        self.nodes[to].1.on_message(now, from, msg, &live);
    }

    fn prices(&self) -> Vec<Price> {
        self.nodes
            .iter()
            .zip(&self.alive)
            .filter(|(_, a)| **a)
            .map(|((_, m), _)| m.price())
            .collect()
    }

    fn refused(&self, at: usize, reason: MemberRefusal) -> usize {
        self.refusals
            .iter()
            .filter(|(i, _, r)| *i == at && *r == reason)
            .count()
    }
}

fn all(_: usize, _: usize) -> bool {
    true
}

#[test]
fn a_round_with_every_vote_commits_on_every_node() {
    let mut net = Net::new(3);
    net.propose(0, 2, &all);
    assert_eq!(net.prices(), [price(2); 3]);
    let c = net.nodes[2].1.committed();
    assert_eq!((c.epoch, c.proposer), (1, Some(id(1))));
    assert_eq!(net.nodes[0].1.stats().rounds_committed, 1);
    assert_eq!(net.nodes[1].1.stats().adopted_from_peers, 1);
    assert_eq!(net.nodes[0].1.open_round(), None);
    assert!(net.refusals.is_empty(), "{:?}", net.refusals);
}

#[test]
fn a_node_alone_commits_at_once() {
    let mut net = Net::new(1);
    net.propose(0, 2, &all);
    assert_eq!(net.prices(), [price(2)]);
}

#[test]
fn the_balancer_is_held_to_one_step_and_the_interval() {
    let mut net = Net::with_price(2, 10);
    // 10 -> 50 is proposed as one step (10% of 10, at least one unit).
    net.propose(0, 50, &all);
    assert_eq!(net.prices(), [price(11); 2]);
    // Too soon for another move: nothing is proposed.
    net.propose(0, 12, &all);
    assert_eq!(net.nodes[0].1.open_round(), None);
    net.now += INTERVAL;
    net.propose(0, 12, &all);
    assert_eq!(net.prices(), [price(12); 2]);
}

#[test]
fn no_commit_without_every_live_vote_and_lost_datagrams_are_repeated() {
    let mut net = Net::new(3);
    // Node 3 hears no round message at first (its book still lists all).
    net.start_round(0, 2);
    net.deliver_where(&|_, to, _| to != 2);
    assert_eq!(net.prices(), [price(1); 3], "no unanimity yet");
    assert!(net.nodes[0].1.open_round().is_some());
    // The next tick repeats the Propose; now it gets through.
    net.tick(&all);
    assert_eq!(net.prices(), [price(2); 3]);
}

#[test]
fn a_member_still_in_the_book_blocks_the_round_until_it_expires() {
    let mut net = Net::new(3);
    // Node 3 is in every book but hears nothing.
    net.start_round(0, 2);
    net.deliver_where(&|_, to, _| to != 2);
    assert_eq!(net.nodes[0].1.price(), price(1));
    // Node 3 expires from the books: the round completes without it.
    net.alive[2] = false;
    net.tick(&all);
    assert_eq!(net.prices(), [price(2); 2]);
}

#[test]
fn concurrent_proposals_resolve_to_the_greater_epoch_and_proposer() {
    let mut net = Net::with_price(3, 10);
    // Nodes 1 and 3 propose at once, for the same epoch.
    net.start_round(0, 11);
    net.start_round(2, 9);
    net.run(&all);
    net.ticks(3, &all);
    // (1, node 3) > (1, node 1): node 3's price wins everywhere.
    assert_eq!(net.prices(), [price(9); 3]);
    assert!(net.nodes[0].1.stats().rounds_abandoned >= 1);
    for (_, m) in &net.nodes {
        assert_eq!(m.committed().key(), (1, Some(id(3))));
    }
}

#[test]
fn a_no_vote_or_a_timeout_abandons_the_round() {
    let mut net = Net::new(2);
    // Node 2 is in the book and never hears anything.
    net.start_round(0, 2);
    let live = net.live(0, &all);
    for _ in 0..11 {
        net.now += TICK;
        let now = net.now;
        net.nodes[0].1.handle_timeout(now, &live);
        net.drain();
    }
    assert_eq!(net.prices(), [price(1); 2]);
    assert_eq!(net.nodes[0].1.stats().rounds_abandoned, 1);
    assert!(net.nodes[0]
        .1
        .last_abandoned()
        .unwrap()
        .contains("timed out"));
}

#[test]
fn after_a_partition_heals_every_node_holds_one_price() {
    let mut net = Net::with_price(4, 10);
    // {1, 2} and {3, 4} cannot hear each other and have dropped each other
    // from their books. Each side moves the price on its own, several
    // rounds apart, so that the epochs and prices differ by more than a step.
    let side = |i: usize| i / 2;
    let split = move |from: usize, to: usize| side(from) == side(to);
    net.propose(0, 11, &split);
    net.propose(2, 9, &split);
    net.now += INTERVAL;
    net.propose(2, 8, &split);
    net.now += INTERVAL;
    net.propose(3, 7, &split);
    net.ticks(2, &split);
    assert_eq!(net.prices(), [price(11), price(11), price(7), price(7)]);
    let epochs: Vec<u64> = net.nodes.iter().map(|(_, m)| m.committed().epoch).collect();
    assert_eq!(epochs, [1, 1, 3, 3]);
    // Healed: books list everyone again, Hands carry each state. Nothing
    // moves on a Hand alone; a reconciliation round settles it.
    net.tick(&all);
    assert_eq!(net.prices(), [price(11), price(11), price(7), price(7)]);
    net.ticks(10, &all);
    let states: Vec<Committed> = net.nodes.iter().map(|(_, m)| m.committed()).collect();
    assert!(
        states.iter().all(|s| *s == states[0]),
        "one state everywhere: {states:?}"
    );
    assert!(
        [price(7), price(11)].contains(&states[0].price),
        "a price one side held: {states:?}"
    );
    assert_eq!(states[0].epoch, 4, "one above the greatest epoch held");
    // The nodes with the lesser epoch asked for it.
    assert!(net.nodes[0].1.stats().reconciliations + net.nodes[1].1.stats().reconciliations >= 1);
    assert_eq!(net.nodes[2].1.stats().reconciliations, 0);
    for reason in [MemberRefusal::PriceStep, MemberRefusal::UnbackedCommit] {
        for i in 0..4 {
            assert_eq!(net.refused(i, reason), 0, "{:?}", net.refusals);
        }
    }
}

#[test]
fn a_restarted_node_catches_up_through_a_round() {
    let mut net = Net::with_price(3, 10);
    net.propose(0, 11, &all);
    // Node 3 restarts: epoch 0, the initial price.
    net.nodes[2].1 = Market::new(config(id(3), 10));
    net.ticks(8, &all);
    let states: Vec<Committed> = net.nodes.iter().map(|(_, m)| m.committed()).collect();
    assert!(states.iter().all(|s| *s == states[0]), "{states:?}");
    assert_eq!(states[0].price, price(11));
    assert_eq!(states[0].epoch, 2);
}

#[test]
fn a_node_resumed_from_its_stored_state_rejoins_the_pool_and_moves_no_one_back() {
    let mut net = Net::with_price(3, 10);
    net.propose(0, 11, &all);
    let stored = net.nodes[2].1.committed();
    assert_eq!((stored.epoch, stored.price), (1, price(11)));
    // Node 3 stops; the two others drop it from their books and move the
    // price on by two steps.
    net.alive[2] = false;
    net.now += INTERVAL;
    net.propose(0, 12, &all);
    net.now += INTERVAL;
    net.propose(1, 13, &all);
    let pool = net.nodes[0].1.committed();
    assert_eq!((pool.epoch, pool.price), (3, price(13)));
    // It starts again from the state it stored, behind the pool.
    net.nodes[2].1 = Market::resume(config(id(3), 10), stored);
    net.alive[2] = true;
    assert_eq!(net.nodes[2].1.committed(), stored);
    net.ticks(8, &all);
    let states: Vec<Committed> = net.nodes.iter().map(|(_, m)| m.committed()).collect();
    assert!(states.iter().all(|s| *s == states[0]), "{states:?}");
    assert_eq!(
        states[0].price,
        price(13),
        "the pool's price, not the stored one"
    );
    assert_eq!(states[0].epoch, 4, "one above the pool's epoch");
    // The two that moved on asked for nothing; the resumed node did.
    assert_eq!(net.nodes[0].1.stats().reconciliations, 0);
    assert_eq!(net.nodes[1].1.stats().reconciliations, 0);
    assert!(net.nodes[2].1.stats().reconciliations >= 1);
    for i in 0..3 {
        assert_eq!(
            net.refused(i, MemberRefusal::PriceStep),
            0,
            "{:?}",
            net.refusals
        );
    }
}

#[test]
fn every_node_resumed_from_one_stored_state_keeps_it() {
    let mut net = Net::with_price(3, 10);
    net.propose(0, 11, &all);
    let stored = net.nodes[0].1.committed();
    for (i, (me, m)) in net.nodes.iter_mut().enumerate() {
        assert_eq!(m.committed(), stored, "node {i}");
        *m = Market::resume(config(*me, 10), stored);
    }
    net.ticks(8, &all);
    for (_, m) in &net.nodes {
        assert_eq!(m.committed(), stored);
        assert_eq!(m.stats().reconciliations, 0);
    }
}

// ---- A member running modified software: node 4 is the liar. ----

const LIAR: u8 = 4;

/// The liar's Propose of `units` for round `epoch`.
fn liar_propose(epoch: u64, units: u64) -> Message {
    Message::Propose {
        epoch,
        price: price(units),
        proposer: id(LIAR),
    }
}

/// The liar's Commit of `units` for round `epoch`.
fn liar_commit(epoch: u64, units: u64) -> Message {
    Message::Commit {
        epoch,
        price: price(units),
        proposer: id(LIAR),
    }
}

#[test]
fn a_forged_commit_without_votes_is_refused() {
    let mut net = Net::with_price(3, 10);
    let forged = liar_commit(1, 1000);
    net.inject_all(id(LIAR), &forged);
    net.run(&all);
    assert_eq!(net.prices(), [price(10); 3]);
    for to in 0..3 {
        assert_eq!(net.refused(to, MemberRefusal::UnbackedCommit), 1);
    }
    // A Commit of a round it did propose, but that not every member voted
    // for, is refused too: node 3 never hears the Propose.
    let propose = liar_propose(1, 11);
    net.inject(0, id(LIAR), &propose);
    net.inject(1, id(LIAR), &propose);
    net.run(&all);
    let commit = liar_commit(1, 11);
    net.inject_all(id(LIAR), &commit);
    net.run(&all);
    assert_eq!(net.prices(), [price(10); 3]);
    assert_eq!(net.refused(2, MemberRefusal::UnbackedCommit), 2);
}

#[test]
fn a_hand_at_a_huge_epoch_moves_nothing_and_rounds_still_commit() {
    let mut net = Net::with_price(3, 10);
    let frozen = Committed {
        epoch: u64::MAX,
        proposer: Some(id(LIAR)),
        price: price(1000),
    };
    for _ in 0..20 {
        net.hand_to_all(id(LIAR), frozen);
        net.tick(&all);
    }
    assert_eq!(net.prices(), [price(10); 3]);
    assert!(net.refused(0, MemberRefusal::EpochJump) >= 20);
    // Honest rounds go on.
    net.propose(1, 11, &all);
    assert_eq!(net.prices(), [price(11); 3]);
    assert_eq!(net.nodes[0].1.committed().epoch, 1);
}

#[test]
fn a_propose_at_a_far_epoch_or_a_far_price_gets_no() {
    let mut net = Net::with_price(2, 10);
    let jump = liar_propose(2, 11);
    net.inject(0, id(LIAR), &jump);
    let far = liar_propose(1, 1000);
    net.inject(1, id(LIAR), &far);
    let votes: Vec<(usize, Message)> = net.drain();
    assert!(votes
        .iter()
        .all(|(_, m)| matches!(m, Message::Vote { yes: false, .. })));
    assert_eq!(net.refused(0, MemberRefusal::EpochJump), 1);
    assert_eq!(net.refused(1, MemberRefusal::PriceStep), 1);
    assert_eq!(net.prices(), [price(10); 2]);
}

#[test]
fn a_liar_moves_the_price_at_most_one_step_per_interval() {
    let mut net = Net::with_price(3, 10);
    // Node 4 proposes a step, and all vote yes: that is a legitimate round.
    let mut epoch = 1;
    let liar_round = |net: &mut Net, epoch: u64, to: u64| {
        net.inject_all(id(LIAR), &liar_propose(epoch, to));
        net.run(&all);
        net.inject_all(id(LIAR), &liar_commit(epoch, to));
        net.run(&all);
    };
    liar_round(&mut net, epoch, 11);
    assert_eq!(net.prices(), [price(11); 3]);
    // At once another step: too soon.
    epoch += 1;
    liar_round(&mut net, epoch, 12);
    assert_eq!(net.prices(), [price(11); 3]);
    assert_eq!(net.refused(0, MemberRefusal::TooSoon), 1);
    // After the interval: one more step, no more.
    net.now += INTERVAL;
    liar_round(&mut net, epoch, 13);
    assert_eq!(net.prices(), [price(11); 3]);
    assert_eq!(net.refused(0, MemberRefusal::PriceStep), 1);
    liar_round(&mut net, epoch, 12);
    assert_eq!(net.prices(), [price(12); 3]);
}

#[test]
fn two_prices_for_one_round_are_refused() {
    let mut net = Net::with_price(2, 10);
    for p in [11, 9] {
        net.inject(0, id(LIAR), &liar_propose(1, p));
    }
    net.drain();
    assert_eq!(net.refused(0, MemberRefusal::Equivocation), 1);
    // A Commit of either price is not adopted: node 1 no longer backs it.
    net.inject(0, id(LIAR), &liar_commit(1, 11));
    assert_eq!(net.nodes[0].1.price(), price(10));
}

#[test]
fn votes_bind_their_price_and_late_or_repeated_votes_change_nothing() {
    let mut net = Net::with_price(3, 10);
    // Node 1's round; node 3 hears nothing yet, so no commit.
    net.start_round(0, 11);
    let propose = net.drain();
    for (_, msg) in &propose {
        let live = net.live(1, &all);
        net.nodes[1].1.on_message(0, id(1), msg, &live);
    }
    // Node 3's yes vote, but for another price: it counts for nothing.
    let wrong = Message::Vote {
        epoch: 1,
        proposer: id(1),
        price: price(12),
        yes: true,
    };
    for to in 0..2 {
        let live = net.live(to, &all);
        net.nodes[to].1.on_message(0, id(3), &wrong, &live);
    }
    // Node 2's yes vote, many times over: still one voter.
    let votes: Vec<(usize, Message)> = net.drain();
    for _ in 0..5 {
        for (_, msg) in &votes {
            let live = net.live(0, &all);
            net.nodes[0].1.on_message(0, id(2), msg, &live);
        }
    }
    assert_eq!(net.nodes[0].1.open_round().map(|r| r.2), Some(1));
    assert_eq!(net.prices(), [price(10); 3]);
    // The Propose reaches node 3: now it commits everywhere.
    net.tick(&all);
    assert_eq!(net.prices(), [price(11); 3]);
    // A late vote for the finished round, and a vote for a round nobody
    // proposed, change nothing.
    let late = Message::Vote {
        epoch: 1,
        proposer: id(1),
        price: price(11),
        yes: false,
    };
    let phantom = Message::Vote {
        epoch: 2,
        proposer: id(LIAR),
        price: price(1000),
        yes: true,
    };
    net.inject_all(id(LIAR), &late);
    net.inject_all(id(LIAR), &phantom);
    net.ticks(3, &all);
    assert_eq!(net.prices(), [price(11); 3]);
}

#[test]
fn a_commit_is_adopted_once_a_missing_vote_shows_in_a_hand() {
    let mut net = Net::with_price(3, 10);
    // Node 3 never hears node 2's vote, nor the Commit.
    net.start_round(0, 11);
    net.deliver_where(&|from, to, msg| {
        to != 2 || (from != 1 && !matches!(msg, Message::Commit { .. }))
    });
    assert_eq!(net.prices(), [price(11), price(11), price(10)]);
    // The next Hands say nodes 1 and 2 hold the round: node 3 adopts it.
    net.tick(&all);
    assert_eq!(net.prices(), [price(11); 3]);
    assert_eq!(net.refused(2, MemberRefusal::UnbackedCommit), 0);
}

#[test]
fn a_liar_holding_another_state_cannot_pull_the_others_to_it() {
    let mut net = Net::with_price(3, 10);
    net.extra = vec![id(LIAR)];
    let lie = |net: &Net| Committed {
        epoch: net.nodes[0].1.committed().epoch + 1,
        proposer: Some(id(LIAR)),
        price: price(1000),
    };
    for _ in 0..30 {
        let state = lie(&net);
        net.hand_to_all(id(LIAR), state);
        net.tick(&all);
    }
    // Reconciliation rounds may be opened (a member can always cost a
    // round), but the price stays what the honest members hold.
    assert_eq!(net.prices(), [price(10); 3]);
    assert!(net
        .nodes
        .iter()
        .any(|(_, m)| m.stats().reconciliations >= 1));
    let states: Vec<Committed> = net.nodes.iter().map(|(_, m)| m.committed()).collect();
    assert!(states.iter().all(|s| *s == states[0]), "{states:?}");
}

#[test]
fn epoch_gap_bound_is_what_a_hand_may_claim() {
    let mut m = Market::new(config(id(1), 10));
    let ok = Committed {
        epoch: MAX_EPOCH_GAP,
        proposer: Some(id(2)),
        price: price(10),
    };
    m.on_peer_state(0, id(2), ok, &[id(2)]);
    assert!(m.drain().is_empty());
    let far = Committed {
        epoch: MAX_EPOCH_GAP + 1,
        ..ok
    };
    m.on_peer_state(0, id(2), far, &[id(2)]);
    assert!(matches!(
        m.drain().as_slice(),
        [MarketOutput::Refused {
            reason: MemberRefusal::EpochJump,
            ..
        }]
    ));
    assert_eq!(m.price(), price(10));
}

/// One lying member among three honest ones, sending any sequence of
/// round messages and Hand states: the honest nodes' price moves at most
/// one step per interval, they always agree, and their epoch stays within
/// reach.
#[derive(Debug, Clone)]
enum Lie {
    Propose(u64, u64),
    Commit(u64, u64),
    Vote(u64, u8, u64, bool),
    Hand(u64, u64),
    Wait(u64),
}

fn lie() -> impl Strategy<Value = Lie> {
    let epoch = prop_oneof![0u64..4, Just(u64::MAX), any::<u64>()];
    let units = prop_oneof![8u64..13, 1u64..2000];
    prop_oneof![
        (epoch.clone(), units.clone()).prop_map(|(e, p)| Lie::Propose(e, p)),
        (epoch.clone(), units.clone()).prop_map(|(e, p)| Lie::Commit(e, p)),
        (epoch.clone(), 1u8..5, units.clone(), any::<bool>())
            .prop_map(|(e, who, p, y)| Lie::Vote(e, who, p, y)),
        (epoch, units).prop_map(|(e, p)| Lie::Hand(e, p)),
        (0u64..40_000).prop_map(Lie::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn one_liar_moves_the_price_at_most_one_step_per_interval(
        lies in proptest::collection::vec(lie(), 1..60)
    ) {
        let mut net = Net::with_price(3, 10);
        net.extra = vec![id(LIAR)];
        let mut moves: Vec<(u64, Price)> = vec![(0, price(10))];
        for l in lies {
            let epoch = |e: u64| if e < 4 { net.nodes[0].1.committed().epoch + e } else { e };
            match l {
                Lie::Propose(e, p) => {
                    let m = liar_propose(epoch(e), p);
                    net.inject_all(id(LIAR), &m);
                }
                Lie::Commit(e, p) => {
                    let m = liar_commit(epoch(e), p);
                    net.inject_all(id(LIAR), &m);
                }
                Lie::Vote(e, who, p, yes) => {
                    let m = Message::Vote { epoch: epoch(e), proposer: id(who), price: price(p), yes };
                    net.inject_all(id(LIAR), &m);
                }
                Lie::Hand(e, p) => {
                    let state = Committed { epoch: epoch(e), proposer: Some(id(LIAR)), price: price(p) };
                    net.hand_to_all(id(LIAR), state);
                }
                Lie::Wait(ms) => net.now += ms,
            }
            net.run(&all);
            net.tick(&all);
            let p = net.nodes[0].1.price();
            if p != moves.last().unwrap().1 {
                moves.push((net.now, p));
            }
            for (_, m) in &net.nodes {
                prop_assert!(m.committed().epoch <= 60 * (MAX_EPOCH_GAP + 2));
            }
        }
        for w in moves.windows(2) {
            let (t0, p0) = w[0];
            let (t1, p1) = w[1];
            let step = (p0.micros() / 10).max(1_000_000);
            prop_assert!(p1.micros().abs_diff(p0.micros()) <= step, "{moves:?}");
            if w[0].0 > 0 {
                prop_assert!(t1 - t0 >= INTERVAL - TICK, "{moves:?}");
            }
        }
        // Give the honest nodes time to settle: they agree.
        net.ticks(15, &all);
        let states: Vec<Committed> = net.nodes.iter().map(|(_, m)| m.committed()).collect();
        prop_assert!(states.iter().all(|s| s.price == states[0].price), "{states:?}");
    }
}

#[test]
fn pressure_is_tasks_per_node_in_thousandths() {
    use lppsp_core::market::pressure_milli;
    assert_eq!(pressure_milli(7, 2), 3500);
    assert_eq!(pressure_milli(0, 5), 0);
    assert_eq!(pressure_milli(3, 0), 3000);
}

#[test]
fn one_report_adds_at_most_one_node_of_demand() {
    use lppsp_core::book::max_queue_report;
    use lppsp_core::market::robust_demand;
    assert_eq!(robust_demand(&[]), 0);
    // Honest reports count in full while none stands out.
    assert_eq!(robust_demand(&[(3, 1), (2, 1), (2, 1)]), 7);
    // One report far above the rest counts as the next largest plus the
    // most slots another node offers: a liar alone in an idle pool.
    let cap = max_queue_report(0, true);
    assert_eq!(robust_demand(&[(cap, 0), (0, 1), (0, 4), (0, 0)]), 4);
    // A client with a large job beside busy compute nodes.
    assert_eq!(robust_demand(&[(2998, 0), (1, 1), (1, 1)]), 4);
    // A liar and an honest client: the honest reports count in full.
    assert_eq!(robust_demand(&[(u64::MAX, 0), (500, 0), (1, 1)]), 1002);
    // Bounds: 64 per slot, slots at most 1024, and clients up to 2^24 more.
    assert_eq!(max_queue_report(2, false), 128);
    assert_eq!(max_queue_report(5000, false), 1024 * 64);
    assert_eq!(max_queue_report(0, true), 1 << 24);
}
