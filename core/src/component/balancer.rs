//! The Balancer trait: watches the market and proposes prices.

use crate::money::Price;

/// One observation of the market, taken by the node at regular intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketSample {
    /// Milliseconds since the node started (monotonic).
    pub at_ms: u64,
    /// The committed price now.
    pub price: Price,
    /// Task queue pressure (RFC 1.3) x 1000: tasks queued or running in the
    /// pool, per node. Kept as an integer so every node computes it alike.
    pub pressure_milli: u64,
    /// Tasks willing to buy at `price`, queued or running in the pool
    /// (demand; see `market::sample_book`).
    pub demand_tasks: u64,
    /// Processing power offered at `price`, busy or not, MFLOPS: power
    /// times slots of the compute nodes whose reserve is at or below it
    /// (supply).
    pub supply_mflops: u64,
    /// Live nodes in the book, this node included.
    pub nodes: u32,
}

/// A price the balancer wants the network to agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceProposal {
    pub price: Price,
    /// Why, in words: carried as evidence in the Propose frame.
    pub evidence: String,
}

/// Turns market samples into price proposals. Pure and synchronous.
pub trait Balancer: Send {
    /// The name this balancer is registered under.
    fn name(&self) -> &str;
    /// Takes one sample; returns a proposal when the price should change.
    fn on_sample(&mut self, sample: &MarketSample) -> Option<PriceProposal>;
    /// A price was committed by the network (ours or another proposer's).
    fn on_commit(&mut self, _price: Price) {}
    /// One line on the balancer's state, for status output.
    fn describe(&self) -> String {
        self.name().to_string()
    }
    /// Whether this balancer proposes only on an observer node (`lppsp
    /// observe`). On other nodes it then proposes nothing: they vote on the
    /// observer's proposals (RFC 1.4 b: the ML balancer runs on one
    /// observer, and configuring it on a member turns the member's FSM off).
    fn observer_only(&self) -> bool {
        false
    }
    /// The balancer's state as a JSON object (text), for `lppsp status`:
    /// the ML balancer's fit, say. None when it has nothing more to say
    /// than [`Balancer::describe`].
    fn status_json(&self) -> Option<String> {
        None
    }
}
