//! Price-aware scheduler: most processing power per unit of bounty first, within budget and constraints
//!
//! [`PriceAware`] (registered as `price-aware`, the default) sends each task
//! to the suitable node where it is expected to cost the least, so that a
//! job's budget buys as much computing as it can.
//!
//! **Policy.** Suitable peers (compute, compatible, of the job's
//! architecture if one is set, at least the job's minimum power, with a free
//! slot) are ranked by:
//!
//! 1. estimated cost of one task, ascending:
//!    `charge(price, power, time)`, where the time is the mean run time of
//!    this job's tasks measured on that node, or, until one has finished
//!    there, the job's work per task (power x time, measured on the other
//!    nodes, or the job's estimate at the pool's mean power) divided by the
//!    node's power. Since the charge is price x power x time, a node is
//!    cheap for a job when it finishes the job's tasks in little time for
//!    its power;
//! 2. then fewer tasks reported queued or running there (the same cost,
//!    started sooner);
//! 3. then the client's own order of nodes, a fixed mix of the client's and
//!    the node's ids ([`spread`]): clients that all see the same pool do
//!    not all pile onto one node. (Higher power is no tie-break: at equal
//!    cost it helps one client's latency a little and, with many clients,
//!    sends all of them to the fastest node first.)
//! 4. then NodeId, so that the ranking is a total order and the plan does
//!    not depend on the order of the information book.
//!
//! Tasks are placed in the order given, each on the best-ranked node that
//! still has a free slot, so the cheapest node's slots fill first. A task
//! skips the nodes in its `avoid` list while another ranked node has room,
//! and goes to an avoided node rather than wait.
//!
//! **Budget.** Before each placement the task's estimated cost on the chosen
//! node must fit in what is left of the budget after this call's earlier
//! placements. Because nodes are tried cheapest first, the first task that
//! does not fit means no later one would at this price: placement stops and
//! the remaining tasks are reported as `BudgetShort { needed, left }`
//! (DESIGN 4.7). Each placement carries its estimate in `est_cost`, which
//! the client commits while the task runs. Tasks that find no room get the
//! most specific reason: `NoComputeNodes`, `NoNodeOfArch`, `BelowMinPower`
//! or `AllBusy`.
//!
//! Before any task has finished anywhere, every node is expected to do the
//! same work, so a task costs the same on each (price x work) and the
//! queue, then the client's order, decides. Once tasks finish, measured
//! times take over: a node slower than its promised power costs more there.
//!
//! The scheduler keeps no state between calls: the same request always
//! gives the same plan.

#![forbid(unsafe_code)]

use lppsp_core::component::{PendingTask, PlacementRequest, Plan, Scheduler};
use lppsp_core::splitmix::splitmix64;
use lppsp_core::NodeId;
use lppsp_scheduler_round_robin::suitability::{
    candidates, fill, pick_in_order, Candidate, Policy, SchedulerOptions,
};

/// The name this scheduler is registered under.
pub const NAME: &str = "price-aware";

/// Places each task on the cheapest suitable node with a free slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriceAware {
    options: SchedulerOptions,
}

impl PriceAware {
    pub fn new() -> Self {
        Self::default()
    }

    /// With `[scheduler.options]` (see [`SchedulerOptions`]).
    pub fn with_options(options: SchedulerOptions) -> Self {
        Self { options }
    }
}

/// The suitable peers of a request with a free slot, best first: by
/// estimated cost per task, then shorter reported queue, then the
/// client's own order of nodes ([`spread`]), then NodeId.
pub fn rank<'a>(request: &PlacementRequest<'a>) -> Vec<Candidate<'a>> {
    let client = request.client;
    let mut cands = candidates(request);
    cands.sort_by_key(|c| (c.cost, c.peer.queue, spread(client, c.id()), c.id()));
    cands
}

/// Where `node` stands in `client`'s order of equals: a fixed mix of the
/// two ids ([`splitmix64`]). Every client ranks nodes of equal
/// cost and queue differently, so that many clients placing at once spread
/// over the pool instead of all choosing the same node; one client always
/// ranks them the same way.
#[must_use]
pub fn spread(client: NodeId, node: NodeId) -> u64 {
    splitmix64(
        u64::from_be_bytes(*client.as_bytes())
            ^ u64::from_be_bytes(*node.as_bytes()).rotate_left(29),
    )
}

/// Best-ranked first.
struct InRankOrder;

impl<'a> Policy<'a> for InRankOrder {
    fn pick(&mut self, candidates: &[Candidate<'a>], task: &PendingTask) -> Option<usize> {
        pick_in_order(candidates, 0..candidates.len(), task)
    }
}

impl Scheduler for PriceAware {
    fn name(&self) -> &str {
        NAME
    }

    fn place(&mut self, request: &PlacementRequest<'_>) -> Plan {
        fill(
            request,
            rank(request),
            &mut InRankOrder,
            self.options.integrator,
        )
    }
}

#[cfg(test)]
mod tests;
