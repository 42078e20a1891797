//! When a market sample reaches the balancer, and whether the balancer's
//! proposals go to the price agreement.
//!
//! Right after the price changes, the peers' Queue and Slots may still be
//! those of the old price: a sample then mixes two markets. So the node
//! holds samples back until every peer's beacons carry the new price, for
//! at most two expiry periods (a peer stuck at another price must not
//! starve the balancer).

use crate::component::MarketSample;
use crate::money::Price;

/// A node's sampling state.
#[derive(Debug, Clone)]
pub struct MarketSampler {
    /// The price of the latest sample, and when it last changed.
    sampled_price: Price,
    last_change_ms: Option<u64>,
    /// How long a price change may hold samples back, at most.
    settle_ms: u64,
    last: Option<MarketSample>,
}

impl MarketSampler {
    /// A sampler for a node whose peers expire after `expiry_ms`.
    #[must_use]
    pub fn new(initial_price: Price, expiry_ms: u64) -> Self {
        Self {
            sampled_price: initial_price,
            last_change_ms: None,
            settle_ms: expiry_ms.saturating_mul(2),
            last: None,
        }
    }

    /// Takes this tick's sample at the node's committed price
    /// (`sample.price`); `peers_behind` says whether some peer's beacons
    /// still carry another price. Returns the sample when it is for the
    /// balancer, None while the market settles after a change.
    pub fn take(
        &mut self,
        now: u64,
        sample: MarketSample,
        peers_behind: bool,
    ) -> Option<MarketSample> {
        if sample.price != self.sampled_price {
            self.sampled_price = sample.price;
            self.last_change_ms = Some(now);
        }
        self.last = Some(sample);
        let settling = peers_behind
            && self
                .last_change_ms
                .is_some_and(|t| now.saturating_sub(t) < self.settle_ms);
        (!settling).then_some(sample)
    }

    /// The latest sample taken, for status.
    #[must_use]
    pub fn last(&self) -> Option<MarketSample> {
        self.last
    }
}

/// Whether a balancer's proposals go to the price agreement: an
/// observer-only balancer (the ML one) proposes on an observer node and
/// nowhere else; the FSM proposes everywhere.
#[must_use]
pub fn balancer_proposes(node_is_observer: bool, balancer_observer_only: bool) -> bool {
    node_is_observer || !balancer_observer_only
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(price: u64) -> MarketSample {
        MarketSample {
            at_ms: 0,
            price: Price::from_micros(price),
            pressure_milli: 0,
            demand_tasks: 0,
            supply_mflops: 0,
            nodes: 1,
        }
    }

    #[test]
    fn samples_wait_for_the_peers_after_a_change_but_not_for_ever() {
        let mut s = MarketSampler::new(Price::from_micros(1), 1000);
        assert!(s.take(0, sample(1), true).is_some(), "no change yet");
        assert!(s.take(10, sample(2), true).is_none(), "peers behind");
        assert!(s.take(20, sample(2), false).is_some(), "peers caught up");
        assert!(s.take(30, sample(3), true).is_none());
        assert!(s.take(2029, sample(3), true).is_none());
        assert!(
            s.take(2030, sample(3), true).is_some(),
            "two expiries passed"
        );
    }

    #[test]
    fn only_an_observer_runs_an_observer_only_balancer() {
        assert!(balancer_proposes(false, false));
        assert!(balancer_proposes(true, true));
        assert!(!balancer_proposes(false, true));
    }
}
