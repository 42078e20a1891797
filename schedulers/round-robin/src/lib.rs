//! Round-robin scheduler: spreads tasks evenly over suitable idle nodes
//!
//! [`RoundRobin`] (registered as `round-robin`) visits the suitable peers
//! in NodeId order, one task per visit, skipping peers whose free slots are
//! used up, so that every node gets work before any gets a second task. Its
//! cursor (the last node it placed a task on) is kept between calls, so
//! successive calls carry on round the ring rather than starting again at
//! the first node; the cursor is a NodeId, so peers joining or leaving the
//! book do not shift it.
//!
//! Suitability, the budget rule and the reasons for unplaced tasks are
//! shared with the other built-in schedulers in [`suitability`]:
//!
//! - suitable = compute, compatible, of the job's architecture (if set),
//!   at least the job's minimum power, with a free slot; one task per free
//!   slot;
//! - a task avoids the nodes in its `avoid` list while any other suitable
//!   node has room, and goes to an avoided one rather than wait;
//! - before each placement the task's estimated cost on the chosen node,
//!   `charge(price, power, avg_task_micros or est_task_micros)`, must fit in
//!   what is left of the budget after this call's earlier placements; the
//!   first time it does not, placement stops and the remaining tasks are
//!   reported as `BudgetShort { needed, left }`;
//! - tasks that find no room get the most specific reason:
//!   `NoComputeNodes`, `NoNodeOfArch`, `BelowMinPower` or `AllBusy`.

#![forbid(unsafe_code)]

use lppsp_core::component::{PendingTask, PlacementRequest, Plan, Scheduler};
use lppsp_core::node_id::NodeId;

pub mod suitability;

use suitability::{candidates, fill, pick_in_order, Candidate, Policy, SchedulerOptions};

/// The name this scheduler is registered under.
pub const NAME: &str = "round-robin";

/// Cycles through the suitable peers, one task per free slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundRobin {
    /// The node the last task went to.
    last: Option<NodeId>,
    options: SchedulerOptions,
}

impl RoundRobin {
    pub fn new() -> Self {
        Self::default()
    }

    /// With `[scheduler.options]` (see [`SchedulerOptions`]).
    pub fn with_options(options: SchedulerOptions) -> Self {
        Self {
            last: None,
            options,
        }
    }

    /// The node the last task was placed on, if any.
    pub fn cursor(&self) -> Option<NodeId> {
        self.last
    }
}

/// The ring position within one call.
struct Ring {
    next: usize,
    last: Option<NodeId>,
}

impl<'a> Policy<'a> for Ring {
    fn pick(&mut self, candidates: &[Candidate<'a>], task: &PendingTask) -> Option<usize> {
        let n = candidates.len();
        let start = if self.next < n { self.next } else { 0 };
        pick_in_order(candidates, (start..n).chain(0..start), task)
    }

    fn placed(&mut self, candidates: &[Candidate<'a>], index: usize) {
        self.next = index + 1;
        self.last = candidates.get(index).map(Candidate::id);
    }
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &str {
        NAME
    }

    fn place(&mut self, request: &PlacementRequest<'_>) -> Plan {
        let cands = candidates(request);
        // Start just after the last node used (candidates are sorted by id).
        let next = match self.last {
            Some(last) => cands.partition_point(|c| c.id() <= last),
            None => 0,
        };
        let mut ring = Ring {
            next,
            last: self.last,
        };
        let plan = fill(request, cands, &mut ring, self.options.integrator);
        self.last = ring.last;
        plan
    }
}

#[cfg(test)]
mod tests;
