//! The simulated network: broadcast domains and partitions, loss and
//! latency, beacons heard by the domains' books, and frames on links.

use lppsp_core::beacon::VerifiedBeacon;
use lppsp_core::node::beacons::BeaconState;
use lppsp_core::splitmix::splitmix64;
use lppsp_core::wire::{Frame, Message};
use lppsp_core::{NodeId, PROTOCOL_VERSION};
use rand_chacha::rand_core::RngCore;

use crate::draws::unit;

use super::{Ev, Sim};

/// The software name simulated Hands carry.
const SOFTWARE: &str = "lppsp-sim";

impl Sim<'_> {
    /// Which side of the current partition a node is on.
    pub(super) fn domain(&self, i: usize) -> usize {
        match self.partition {
            Some(f) if (splitmix64(i as u64 ^ 0x5157) >> 11) as f64 / (1u64 << 53) as f64 <= f => 1,
            _ => 0,
        }
    }

    /// Where a beacon from node `i` is heard.
    pub(super) fn beacon_domains(&self, i: usize) -> std::ops::Range<usize> {
        if self.partition.is_some() {
            let d = self.domain(i);
            d..d + 1
        } else {
            0..self.books.len()
        }
    }

    pub(super) fn lost(&mut self) -> bool {
        self.sc.links.loss > 0.0 && unit(&mut self.link_rng) < self.sc.links.loss
    }

    pub(super) fn latency(&mut self) -> u64 {
        let j = self.sc.links.jitter_ms;
        let extra = if j > 0 {
            self.link_rng.next_u64() % (j + 1)
        } else {
            0
        };
        self.sc.links.latency_ms + extra
    }

    pub(super) fn beacon(&mut self, i: usize, message: Message) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        n.seq += 1;
        let curve = lppsp_core::curves::SupplyCurve::flat(n.reserve, self.sc.population.slots);
        let state = BeaconState::of(
            &message,
            &n.beacons,
            curve.slots_at(n.market.price()),
            Some(n.reserve),
            n.market.committed(),
        );
        let hand = state.introduces;
        let b = VerifiedBeacon {
            node: n.id,
            seq: n.seq,
            price: n.market.price(),
            cert_der: hand.then(Vec::new),
            protocol: hand.then(|| PROTOCOL_VERSION.to_string()),
            software: hand.then(|| SOFTWARE.to_string()),
            queue: state.queue,
            slots: state.slots,
            reserve: state.reserve,
            epoch: state.epoch,
            message,
        };
        let src = n.addr.0;
        let domains = self.beacon_domains(i);
        let last = domains.end.saturating_sub(1);
        let mut b = Some(b);
        for d in domains {
            if self.lost() {
                continue;
            }
            let beacon = if d == last { b.take() } else { b.clone() };
            if let (Some(book), Some(beacon)) = (self.books.get_mut(d), beacon) {
                let _ = book.handle_beacon(self.now, src, beacon);
            }
        }
    }

    /// Sends a frame over the link from `from` to `to`; false when the link
    /// cannot be made (the node is gone or across a partition).
    pub(super) fn send(&mut self, from: usize, to: NodeId, frame: Frame) -> bool {
        let Some(&t) = self.index.get(&to) else {
            return false;
        };
        let reachable =
            self.nodes.get(t).is_some_and(|n| n.alive) && self.domain(t) == self.domain(from);
        if !reachable {
            return false;
        }
        let at = self.now + self.latency();
        self.push(
            at,
            Ev::Frame {
                to: t,
                from,
                frame: Box::new(frame),
            },
        );
        true
    }
}
