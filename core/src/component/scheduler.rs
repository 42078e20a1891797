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
