//! The Scheduler trait: where a job's pending tasks should run.

use std::fmt;

use crate::money::{Bounty, Price};
use crate::node_id::NodeId;
use crate::wire::{Arch, Endpoint};

/// What a scheduler knows of one peer: a snapshot of its information book entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub id: NodeId,
    pub addr: Endpoint,
    /// Promised processing power, MFLOPS.
    pub power: u64,
    pub arch: Arch,
    /// The peer offers computing (it is a compute node and sharing now).
    pub compute: bool,
    /// Speaks a protocol version we can work with.
    pub compatible: bool,
    /// Task slots the peer has free, as far as this client knows
    /// (its configured slots less the tasks this client has in flight there).
    pub free_slots: u32,
    /// Tasks queued or running there, as it reported in its Idle beacon.
    pub queue: u32,
    /// Mean run time of this job's tasks on this node so far, microseconds.
    /// The charge is price x power x time, so this is what makes a node
    /// cheap or dear for this job; `None` until a task finished there.
    pub avg_task_micros: Option<u64>,
}

/// A task waiting to be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTask {
    pub task: u64,
    /// Placements tried so far.
    pub attempts: u32,
    /// Nodes that refused or lost this task; avoid them while others exist.
    pub avoid: Vec<NodeId>,
}

/// A job's placement constraints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Constraints {
    /// Run only on this architecture (builtin kernels are portable; native
    /// code the user ships is not).
    pub arch: Option<Arch>,
    /// Run only on nodes with at least this many MFLOPS.
    pub min_power: u64,
}

/// Everything a scheduler may look at.
#[derive(Debug, Clone)]
pub struct PlacementRequest<'a> {
    /// The node that submitted the job; results go here unless the
    /// scheduler names another node.
    pub client: NodeId,
    pub peers: &'a [PeerView],
    pub price: Price,
    /// Budget not yet spent or committed to tasks in flight.
    pub budget_left: Bounty,
    /// Expected run time of one task in microseconds (measured from
    /// finished tasks, or the job's estimate before any finished).
    pub est_task_micros: u64,
    pub pending: &'a [PendingTask],
    pub constraints: &'a Constraints,
}

impl PlacementRequest<'_> {
    /// The work of one task, as power x time (MFLOPS x microseconds): the
    /// mean over the peers where this job's tasks have finished, or, before
    /// any has, `est_task_micros` on a machine of the mean power of the
    /// compute peers. Computed once per call; see [`Self::est_micros_on`].
    #[must_use]
    pub fn work_per_task(&self) -> u128 {
        let measured = self.peers.iter().filter_map(|p| {
            p.avg_task_micros
                .filter(|_| p.power > 0)
                .map(|m| u128::from(m) * u128::from(p.power))
        });
        let (n, sum) = measured.fold((0u128, 0u128), |(n, s), w| (n + 1, s.saturating_add(w)));
        if let Some(mean) = sum.checked_div(n) {
            return mean;
        }
        let powers = self.peers.iter().filter(|p| p.compute && p.power > 0);
        let (n, sum) = powers.fold((0u128, 0u128), |(n, s), p| (n + 1, s + u128::from(p.power)));
        match sum.checked_div(n) {
            Some(mean_power) => u128::from(self.est_task_micros) * mean_power,
            None => u128::from(self.est_task_micros),
        }
    }

    /// Expected run time of one task on `peer`, microseconds: measured there
    /// when a task finished there, otherwise `work` (from
    /// [`Self::work_per_task`]) at the peer's power. Before any measurement
    /// a task thus costs the same everywhere (price x work), and faster
    /// nodes are not made to look dearer than slow ones.
    #[must_use]
    pub fn est_micros_on(&self, peer: &PeerView, work: u128) -> u64 {
        match peer.avg_task_micros {
            Some(m) => m,
            None if peer.power == 0 => self.est_task_micros,
            None => u64::try_from(work / u128::from(peer.power))
                .unwrap_or(u64::MAX)
                .max(1),
        }
    }
}

impl PlacementRequest<'_> {
    /// Estimated cost of one task on `peer`, with `work` from
    /// [`Self::work_per_task`]: `charge(price, power, time)` with the time
    /// measured there, or else price x work, the same on every node not yet
    /// measured (no rounding of work / power to tell them apart). The
    /// largest amount when it overflows, so it never fits a budget.
    #[must_use]
    pub fn est_cost_on(&self, peer: &PeerView, work: u128) -> Bounty {
        let cost = match peer.avg_task_micros {
            Some(m) => crate::money::charge(self.price, peer.power, m),
            None if peer.power == 0 => {
                crate::money::charge(self.price, peer.power, self.est_task_micros)
            }
            None => crate::money::charge(self.price, 1, u64::try_from(work).unwrap_or(u64::MAX)),
        };
        cost.unwrap_or(Bounty::from_micros(u64::MAX))
    }
}

/// One decision: run `task` on `node` and send the result to `result_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub task: u64,
    pub node: NodeId,
    pub result_to: NodeId,
    /// What the scheduler expects the task to cost at the current price;
    /// the client commits this much of the budget while the task runs.
    pub est_cost: Bounty,
}

/// Why a task was not placed this round.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unplaced {
    /// No compute node is in the book at all.
    NoComputeNodes,
    /// No compatible compute node has the required architecture.
    NoNodeOfArch(Arch),
    /// No node of the architecture reaches the minimum power.
    BelowMinPower(u64),
    /// Suitable nodes exist, but every slot is taken.
    AllBusy,
    /// The next task would cost more than what is left of the budget.
    BudgetShort { needed: Bounty, left: Bounty },
}

impl fmt::Display for Unplaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unplaced::NoComputeNodes => write!(f, "no compute node in the book"),
            Unplaced::NoNodeOfArch(a) => write!(f, "no idle compatible node of architecture {a}"),
            Unplaced::BelowMinPower(p) => {
                write!(f, "no node reaches the minimum power of {p} MFLOPS")
            }
            Unplaced::AllBusy => write!(f, "every suitable node is busy"),
            Unplaced::BudgetShort { needed, left } => {
                write!(
                    f,
                    "budget short at the current price: next task needs {needed}, {left} left"
                )
            }
        }
    }
}

/// A scheduler's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub placements: Vec<Placement>,
    /// Tasks left pending, with the reason.
    pub unplaced: Vec<(u64, Unplaced)>,
}

/// Decides placements. Pure and synchronous: same request, same plan
/// (state kept between calls, such as a round-robin cursor, is allowed but
/// must not depend on anything outside the requests it has seen).
pub trait Scheduler: Send {
    /// The name this scheduler is registered under.
    fn name(&self) -> &str;
    /// Places as many pending tasks as the request allows.
    fn place(&mut self, request: &PlacementRequest<'_>) -> Plan;
}
