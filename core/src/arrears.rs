//! Clients in arrears: a compute node knows what it charged each client
//! for the tasks it ran, and what that client's receipts to it add up to.
//! A client that still has not paid, a grace period later, what it owed at
//! the start of that period (beyond a tolerance) gets no more work: it is
//! refused with `cannot-pay`, like a client claiming more bounty than the
//! ledgers give it.
//!
//! Sans-IO: the caller records charges and passes the time and the paid
//! totals in.

use std::collections::{BTreeMap, VecDeque};

use crate::money::Bounty;
use crate::node_id::NodeId;

/// How long a client has to pay a charge: settlement runs at a job's end
/// and at least every 10 s, and an unacknowledged receipt is sent again
/// every 5 s, so an honest client pays well within this.
pub const DEFAULT_GRACE_MS: u64 = 30_000;

/// Charges to each client over time, to compare with what it paid.
#[derive(Debug, Clone)]
pub struct Arrears {
    grace_ms: u64,
    tolerance: Bounty,
    /// Per client: (time, total charged by then), oldest first; only the
    /// newest sample at least `grace_ms` old is kept of the old ones.
    charged: BTreeMap<NodeId, VecDeque<(u64, Bounty)>>,
}

impl Arrears {
    /// A client may owe up to `tolerance` beyond `grace_ms`.
    pub fn new(grace_ms: u64, tolerance: Bounty) -> Self {
        Self {
            grace_ms,
            tolerance,
            charged: BTreeMap::new(),
        }
    }

    /// Records that `client` has been charged `total` so far, at `now_ms`.
    pub fn record(&mut self, now_ms: u64, client: NodeId, total: Bounty) {
        let samples = self.charged.entry(client).or_default();
        if samples.back().is_some_and(|(_, t)| *t == total) && samples.len() > 1 {
            // Nothing new charged: the last sample still says it.
            return;
        }
        samples.push_back((now_ms, total));
        let cutoff = now_ms.saturating_sub(self.grace_ms);
        while samples.len() > 1 && samples.get(1).is_some_and(|(t, _)| *t <= cutoff) {
            samples.pop_front();
        }
    }

    /// What `client` owed `grace_ms` ago: the charge it should have paid by now.
    pub fn due(&self, now_ms: u64, client: &NodeId) -> Bounty {
        let cutoff = now_ms.saturating_sub(self.grace_ms);
        self.charged
            .get(client)
            .and_then(|s| s.iter().rev().find(|(t, _)| *t <= cutoff))
            .map(|(_, total)| *total)
            .unwrap_or(Bounty::ZERO)
    }

    /// Whether `client`, having paid `paid` in all, is in arrears.
    pub fn in_arrears(&self, now_ms: u64, client: &NodeId, paid: Bounty) -> bool {
        self.due(now_ms, client).saturating_sub(paid) > self.tolerance
    }

    /// The clients with recorded charges.
    pub fn clients(&self) -> impl Iterator<Item = &NodeId> {
        self.charged.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> NodeId {
        NodeId::from_bytes(n.to_be_bytes())
    }

    fn units(n: u64) -> Bounty {
        Bounty::from_micros(n * 1_000_000)
    }

    #[test]
    fn a_charge_is_due_only_after_the_grace_period() {
        let mut a = Arrears::new(30_000, units(1));
        a.record(0, id(1), units(0));
        a.record(1_000, id(1), units(50));
        assert!(!a.in_arrears(20_000, &id(1), units(0)), "still in grace");
        assert_eq!(a.due(31_000, &id(1)), units(50));
        assert!(a.in_arrears(31_000, &id(1), units(0)));
        assert!(a.in_arrears(31_000, &id(1), units(48)));
        assert!(!a.in_arrears(31_000, &id(1), units(49)), "within tolerance");
        assert!(!a.in_arrears(31_000, &id(1), units(50)));
    }

    #[test]
    fn a_client_paying_as_it_goes_is_never_in_arrears() {
        let mut a = Arrears::new(30_000, units(1));
        let mut paid = units(0);
        for s in 0..200u64 {
            let now = s * 1_000;
            a.record(now, id(7), units(10 * s));
            // Pays what it was charged 10 s ago.
            paid = units(10 * s.saturating_sub(10)).max(paid);
            assert!(!a.in_arrears(now, &id(7), paid), "at {now}");
        }
    }

    #[test]
    fn history_stays_bounded() {
        let mut a = Arrears::new(30_000, units(1));
        for s in 0..10_000u64 {
            a.record(s * 1_000, id(2), units(s));
        }
        let kept = a.charged.get(&id(2)).map(|s| s.len()).unwrap_or(0);
        assert!(kept <= 32, "{kept} samples kept");
        assert_eq!(a.due(10_000_000, &id(2)), units(9_970));
        assert_eq!(a.clients().count(), 1);
    }

    #[test]
    fn an_unknown_client_owes_nothing() {
        let a = Arrears::new(30_000, units(1));
        assert!(!a.in_arrears(1_000_000, &id(3), Bounty::ZERO));
    }
}
