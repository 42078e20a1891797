//! Price agreement rounds among several nodes on a simulated broadcast
//! channel: unanimity, concurrent proposals, lost datagrams, members dying
//! mid-round, and convergence after a partition heals.

use lppsp_core::market::{Committed, Market, MarketConfig, MarketOutput};
use lppsp_core::money::Price;
use lppsp_core::wire::Message;
use lppsp_core::NodeId;

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([0, 0, 0, 0, 0, 0, 0, n])
}

fn price(units: u64) -> Price {
    Price::from_units(units).unwrap()
}

/// Nodes 1..=n on one broadcast channel; `link(from, to)` says whether a
/// datagram gets through.
struct Net {
    nodes: Vec<(NodeId, Market)>,
    alive: Vec<bool>,
    now: u64,
}

impl Net {
    fn new(n: u8) -> Self {
        let nodes = (1..=n)
            .map(|i| {
                let m = Market::new(MarketConfig {
                    me: id(i),
                    initial_price: price(1),
                    repeat_ms: 1000,
                    round_timeout_ms: 10_000,
                });
                (id(i), m)
            })
            .collect();
        Self {
            nodes,
            alive: vec![true; n as usize],
            now: 0,
        }
    }

    fn live_except(&self, me: usize) -> Vec<NodeId> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != me && self.alive[*j])
            .map(|(_, (id, _))| *id)
            .collect()
    }

    /// Delivers broadcasts until quiet; returns how many were delivered.
    fn run(&mut self, link: &dyn Fn(usize, usize) -> bool) -> usize {
        let mut delivered = 0;
        loop {
            let mut sent = Vec::new();
            for (i, (_, m)) in self.nodes.iter_mut().enumerate() {
                for out in m.drain() {
                    if let MarketOutput::Broadcast(msg) = out {
                        sent.push((i, msg));
                    }
                }
            }
            if sent.is_empty() {
                return delivered;
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
                    let live = self.live_except(to);
                    let now = self.now;
                    self.nodes[to].1.on_message(now, from_id, &msg, &live);
                    delivered += 1;
                }
            }
        }
    }

    fn tick(&mut self, ms: u64, link: &dyn Fn(usize, usize) -> bool) {
        self.now += ms;
        for i in 0..self.nodes.len() {
            if self.alive[i] {
                let live = self.live_except(i);
                let now = self.now;
                self.nodes[i].1.handle_timeout(now, &live);
            }
        }
        self.run(link);
    }

    fn propose(&mut self, i: usize, units: u64) {
        let live = self.live_except(i);
        let now = self.now;
        self.nodes[i]
            .1
            .propose(now, price(units), "test".into(), &live);
    }

    fn prices(&self) -> Vec<Price> {
        self.nodes
            .iter()
            .zip(&self.alive)
            .filter(|(_, a)| **a)
            .map(|((_, m), _)| m.price())
            .collect()
    }
}

fn all(_: usize, _: usize) -> bool {
    true
}

#[test]
fn a_round_with_every_vote_commits_on_every_node() {
    let mut net = Net::new(3);
    net.propose(0, 2);
    net.run(&all);
    assert_eq!(net.prices(), [price(2); 3]);
    let c = net.nodes[2].1.committed();
    assert_eq!((c.epoch, c.proposer), (1, Some(id(1))));
    assert_eq!(net.nodes[0].1.stats().rounds_committed, 1);
    assert_eq!(net.nodes[0].1.open_round(), None);
}

#[test]
fn a_node_alone_commits_at_once() {
    let mut net = Net::new(1);
    net.propose(0, 5);
    assert_eq!(net.prices(), [price(5)]);
}

#[test]
fn no_commit_without_every_live_vote_and_lost_datagrams_are_repeated() {
    let mut net = Net::new(3);
    // Node 3 hears nothing at first.
    let deaf3 = |_: usize, to: usize| to != 2;
    net.propose(0, 2);
    net.run(&deaf3);
    assert_eq!(net.prices(), [price(1); 3], "no unanimity yet");
    assert!(net.nodes[0].1.open_round().is_some());
    // The next tick repeats the Propose; now it gets through.
    net.tick(1000, &all);
    assert_eq!(net.prices(), [price(2); 3]);
}

#[test]
fn a_member_that_dies_mid_round_leaves_it_when_it_expires() {
    let mut net = Net::new(3);
    net.alive[2] = true;
    let to_dead = |_: usize, to: usize| to != 2;
    net.propose(0, 3);
    net.run(&to_dead);
    assert_eq!(net.nodes[0].1.price(), price(1));
    // Node 3 expires from the book: the round completes without it.
    net.alive[2] = false;
    net.tick(1000, &to_dead);
    assert_eq!(net.prices(), [price(3); 2]);
}

#[test]
fn concurrent_proposals_resolve_to_the_greater_epoch_and_proposer() {
    let mut net = Net::new(3);
    // Nodes 1 and 3 propose at once, for the same epoch.
    net.propose(0, 2);
    net.propose(2, 7);
    net.run(&all);
    for _ in 0..3 {
        net.tick(1000, &all);
    }
    // (1, node 3) > (1, node 1): node 3's price wins everywhere.
    assert_eq!(net.prices(), [price(7); 3]);
    assert!(net.nodes[0].1.stats().rounds_abandoned >= 1);
    assert_eq!(
        net.nodes[1].1.committed().proposer,
        Some(id(3)),
        "the lesser proposer gave up"
    );
}

#[test]
fn a_no_vote_or_a_timeout_abandons_the_round() {
    let mut net = Net::new(2);
    // Node 2 never hears anything.
    let cut = |_: usize, _: usize| false;
    net.propose(0, 2);
    net.run(&cut);
    for _ in 0..10 {
        net.tick(1000, &cut);
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
    let mut net = Net::new(4);
    // {1, 2} and {3, 4} cannot hear each other; each side treats the
    // other as gone (expired from its book).
    let side = |i: usize| i / 2;
    let split = move |from: usize, to: usize| side(from) == side(to);
    for i in [0usize, 2] {
        let live: Vec<NodeId> = (0..4)
            .filter(|j| *j != i && side(*j) == side(i))
            .map(|j| id(j as u8 + 1))
            .collect();
        let now = net.now;
        net.nodes[i]
            .1
            .propose(now, price(if i == 0 { 4 } else { 9 }), "side".into(), &live);
    }
    // Deliver with each side's own membership.
    loop {
        let mut sent = Vec::new();
        for (i, (_, m)) in net.nodes.iter_mut().enumerate() {
            for out in m.drain() {
                if let MarketOutput::Broadcast(msg) = out {
                    sent.push((i, msg));
                }
            }
        }
        if sent.is_empty() {
            break;
        }
        for (from, msg) in sent {
            let from_id = id(from as u8 + 1);
            for to in 0..4 {
                if to != from && split(from, to) {
                    let live: Vec<NodeId> = (0..4)
                        .filter(|j| *j != to && side(*j) == side(to))
                        .map(|j| id(j as u8 + 1))
                        .collect();
                    net.nodes[to].1.on_message(0, from_id, &msg, &live);
                }
            }
        }
    }
    assert_eq!(net.prices(), [price(4), price(4), price(9), price(9)]);
    // Healed: Hands carry each node's committed state.
    let states: Vec<Committed> = net.nodes.iter().map(|(_, m)| m.committed()).collect();
    for (_, m) in net.nodes.iter_mut() {
        for s in &states {
            m.on_peer_state(*s);
        }
    }
    // (1, node 3) > (1, node 1): the price node 3's side committed.
    assert_eq!(net.prices(), [price(9); 4]);
}

#[test]
fn a_proposal_at_or_below_the_committed_state_is_ignored() {
    let mut net = Net::new(2);
    net.propose(0, 2);
    net.run(&all);
    let before = net.nodes[1].1.stats().votes_cast;
    let stale = Message::Propose {
        epoch: 1,
        price: price(50),
        proposer: id(1),
    };
    net.nodes[1].1.on_message(0, id(1), &stale, &[id(1)]);
    assert_eq!(net.nodes[1].1.stats().votes_cast, before);
    // A Propose relayed by someone other than its proposer is ignored too.
    let forged = Message::Propose {
        epoch: 9,
        price: price(50),
        proposer: id(1),
    };
    net.nodes[1].1.on_message(0, id(3), &forged, &[id(1)]);
    assert_eq!(net.nodes[1].1.stats().votes_cast, before);
    assert_eq!(net.prices(), [price(2); 2]);
}

#[test]
fn pressure_is_tasks_per_node_in_thousandths() {
    use lppsp_core::market::pressure_milli;
    assert_eq!(pressure_milli(7, 2), 3500);
    assert_eq!(pressure_milli(0, 5), 0);
    assert_eq!(pressure_milli(3, 0), 3000);
}
