//! One tick of every node: beacons sent, the domains' books timed out
//! and sampled, departures told to clients, and each node's market fed
//! committed states and samples, its timers run and its meters settled.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use lppsp_core::book::BookEvent;
use lppsp_core::market::{self, Committed};
use lppsp_core::money::Price;
use lppsp_core::wire::{Hand, Message};
use lppsp_core::NodeId;

use crate::SimError;

use super::{Sim, TraceEvent};

/// The price most often among `prices` (the lowest of those tied), 0 for
/// none.
fn modal_price(prices: impl Iterator<Item = Price>) -> Price {
    let mut counts: BTreeMap<Price, u64> = BTreeMap::new();
    for p in prices {
        *counts.entry(p).or_insert(0) += 1;
    }
    counts
        .iter()
        .max_by_key(|(p, c)| (**c, Reverse(**p)))
        .map(|(p, _)| *p)
        .unwrap_or(Price::ZERO)
}

impl Sim<'_> {
    pub(super) fn tick(&mut self) -> Result<(), SimError> {
        let now = self.now;
        // Beacons: Hand every tick; Idle on change and every few ticks.
        for i in 0..self.nodes.len() {
            let Some(n) = self.nodes.get_mut(i) else {
                continue;
            };
            if !n.alive {
                continue;
            }
            let load = (n.running.len() + n.waiting.len()) as u64;
            let pending = n.client.pending(n.market.price());
            // Simulated owners never take their machines back.
            let idle_due = n.beacons.on_tick(load, pending, true);
            let idle = n.beacons.idle();
            let hand = Hand {
                addr: n.addr,
                power: n.power,
                arch: n.arch.clone(),
                is_client: n.is_client,
                remaining_bounty: None,
            };
            let is_client = n.is_client;
            let hand = Hand {
                remaining_bounty: is_client.then(|| self.remaining(i)),
                ..hand
            };
            self.beacon(i, Message::Hand(hand));
            if idle_due {
                self.beacon(i, Message::Idle { idle });
            }
        }
        // The books: expiries and what changed.
        let mut claims: Vec<Vec<(NodeId, Committed)>> = vec![Vec::new(); self.books.len()];
        let mut departed: Vec<(usize, NodeId)> = Vec::new();
        for (d, book) in self.books.iter_mut().enumerate() {
            book.handle_timeout(now);
            while let Some(ev) = book.poll_event() {
                match ev {
                    BookEvent::Departed(id, _) => departed.push((d, id)),
                    BookEvent::PeerCommitted(from, state) => {
                        if let Some(c) = claims.get_mut(d) {
                            c.push((from, state));
                        }
                    }
                    _ => {}
                }
            }
            if let Some(s) = self.samples.get_mut(d) {
                // A domain's book lists every node of the domain, the
                // sampling one included: no own share to add. Sampled at
                // the price most of its nodes announce; each node's
                // balancer then reads it at its own price.
                let price = modal_price(book.peers().map(|p| p.price));
                *s = Some(market::sample_book(book, now, price, None));
            }
            if let Some(c) = self.price_counts.get_mut(d) {
                c.clear();
                for p in book.peers() {
                    *c.entry(p.price).or_insert(0) += 1;
                }
            }
            if let Some(l) = self.live.get_mut(d) {
                l.clear();
                l.extend(book.peers().map(|p| p.id));
            }
            if let Some(v) = self.views.get_mut(d) {
                v.rebuild(book);
            }
        }
        for (d, id) in departed {
            for i in 0..self.nodes.len() {
                if self.domain(i) != d {
                    continue;
                }
                if let Some(n) = self.nodes.get_mut(i) {
                    if n.alive && !n.client.is_empty() {
                        n.client.handle_node_lost(id);
                        self.queue_schedule(i, 0);
                    }
                }
            }
        }
        // Hands are fed while a domain's members disagree, and once more
        // after they agree again (so every market sees the agreement).
        let agreed: Vec<bool> = claims
            .iter()
            .map(|c| c.windows(2).all(|w| w[0].1 == w[1].1))
            .collect();
        let feed: Vec<bool> = agreed
            .iter()
            .zip(&self.claims_agreed)
            .map(|(now, before)| !now || !before)
            .collect();
        self.claims_agreed.clone_from(&agreed);
        // Every node: take the Hands' committed states, run timers, sample
        // the market, settle.
        for i in 0..self.nodes.len() {
            let d = self.domain(i);
            let Some(n) = self.nodes.get_mut(i) else {
                continue;
            };
            if !n.alive {
                continue;
            }
            let live = self.live.get(d).map(Vec::as_slice).unwrap_or_default();
            if feed.get(d).copied().unwrap_or(false) {
                for (from, state) in claims.get(d).map(Vec::as_slice).unwrap_or_default() {
                    n.market.on_peer_state(now, *from, *state, live);
                }
            }
            n.client.handle_timeout(now);
            n.integrator.expire(now);
            let timers = n.client.wants_round();
            let domain_sample = self.samples.get(d).copied().flatten().map(|mut s| {
                s.price = n.market.price();
                s
            });
            // Whether some member of the domain still carries another price.
            let behind = self.price_counts.get(d).is_some_and(|c| {
                let at_ours = c.get(&n.market.price()).copied().unwrap_or(0);
                c.values().sum::<usize>() > at_ours
            });
            let sample = domain_sample.and_then(|s| n.sampler.take(now, s, behind));
            if let Some(sample) = sample {
                if let Some(b) = &mut n.balancer {
                    let proposal = b.on_sample(&sample);
                    if self.opts.trace_node == Some(i) {
                        self.out.trace.push(TraceEvent::Sample {
                            sample,
                            proposal: proposal.clone(),
                        });
                    }
                    if let Some(p) = proposal {
                        n.market.propose(now, p.price, p.evidence, live);
                    }
                }
            }
            n.market.handle_timeout(now, live);
            self.flush_market(i, d);
            if timers {
                self.queue_schedule(i, 0);
            }
            self.settle_if_due(i, false)?;
        }
        Ok(())
    }
}
