//! What the built-in schedulers share: which peers may take a job's tasks,
//! what a task is expected to cost there, why a task could not be placed,
//! and the placement loop that applies the budget rule.
//!
//! A scheduler only decides *which* candidate takes the next task
//! ([`fill`]'s `pick`); the rest is common:
//!
//! - A peer is *suitable* when it offers computing, speaks a compatible
//!   version, has the job's architecture (if the job names one) and at least
//!   the job's minimum power ([`suitable`]). It can take as many tasks in one
//!   call as it has free slots.
//! - The estimated cost of a task on a peer is
//!   `charge(price, peer.power, time)` ([`task_cost`]), where the time is
//!   the mean measured there, or else the job's work per task at the peer's
//!   power (`PlacementRequest::est_micros_on`); a charge too large for the
//!   money type counts as the largest amount, so it never fits a budget.
//! - Before each placement, that cost must fit in what is left of
//!   `budget_left` after the placements already made in this call. The
//!   first time it does not, placement stops and this task and every later
//!   one is reported as [`Unplaced::BudgetShort`] with the cost it needed
//!   and what was left (DESIGN 4.7).
//! - When no suitable peer has room, the remaining tasks get the most
//!   specific reason ([`no_room_reason`]): no compute node at all, none of the
//!   architecture, none powerful enough, or all busy.
//! - Results go to the request's client.

use lppsp_core::component::{
    Constraints, PeerView, PendingTask, Placement, PlacementRequest, Plan, Unplaced,
};
use lppsp_core::money::Bounty;
use lppsp_core::node_id::NodeId;

/// A compute node that is up, compatible, and speaks a version we use.
pub fn is_compute(peer: &PeerView) -> bool {
    peer.compute && peer.compatible
}

/// Whether `peer` meets the job's constraints (free slots aside).
pub fn suitable(peer: &PeerView, constraints: &Constraints) -> bool {
    is_compute(peer)
        && constraints.arch.as_ref().is_none_or(|a| *a == peer.arch)
        && peer.power >= constraints.min_power
}

/// Estimated cost of one task of the request's job on `peer`, with `work`
/// from [`PlacementRequest::work_per_task`]; saturates at the largest
/// amount when the charge overflows.
pub fn task_cost(request: &PlacementRequest<'_>, peer: &PeerView, work: u128) -> Bounty {
    request.est_cost_on(peer, work)
}

/// Why a task cannot be placed when no suitable peer has a free slot: the
/// most specific of [`Unplaced::NoComputeNodes`], [`Unplaced::NoNodeOfArch`],
/// [`Unplaced::BelowMinPower`] and [`Unplaced::AllBusy`].
pub fn no_room_reason(peers: &[PeerView], constraints: &Constraints) -> Unplaced {
    let mut compute = peers.iter().filter(|p| is_compute(p)).peekable();
    if compute.peek().is_none() {
        return Unplaced::NoComputeNodes;
    }
    let mut of_arch = compute
        .filter(|p| constraints.arch.as_ref().is_none_or(|a| *a == p.arch))
        .peekable();
    if of_arch.peek().is_none() {
        if let Some(arch) = &constraints.arch {
            return Unplaced::NoNodeOfArch(arch.clone());
        }
    }
    if !of_arch.any(|p| p.power >= constraints.min_power) {
        return Unplaced::BelowMinPower(constraints.min_power);
    }
    Unplaced::AllBusy
}

/// A suitable peer with the slots it has left in this call and its
/// estimated cost per task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub peer: &'a PeerView,
    /// Free slots not yet used by this call.
    pub room: u32,
    /// Estimated cost of one task there ([`task_cost`]).
    pub cost: Bounty,
}

impl Candidate<'_> {
    pub fn id(&self) -> NodeId {
        self.peer.id
    }
}

/// The suitable peers of a request with at least one free slot, sorted by
/// NodeId (so that the book's order does not matter), each NodeId once (the
/// first entry wins should a snapshot hold a duplicate).
pub fn candidates<'a>(request: &PlacementRequest<'a>) -> Vec<Candidate<'a>> {
    let work = request.work_per_task();
    let mut out: Vec<Candidate<'a>> = request
        .peers
        .iter()
        .filter(|p| p.free_slots > 0 && suitable(p, request.constraints))
        .map(|peer| Candidate {
            peer,
            room: peer.free_slots,
            cost: task_cost(request, peer, work),
        })
        .collect();
    // Stable: among duplicates the earlier entry stays first.
    out.sort_by_key(Candidate::id);
    out.dedup_by_key(|c| c.id());
    out
}

/// Among the candidates visited in `order`, the first with room that the
/// task does not avoid; failing that, the first with room (the avoid list
/// is a preference, never a reason to leave a task unplaced).
pub fn pick_in_order(
    candidates: &[Candidate<'_>],
    mut order: impl Iterator<Item = usize> + Clone,
    task: &PendingTask,
) -> Option<usize> {
    let has_room = |i: usize| candidates.get(i).is_some_and(|c| c.room > 0);
    let wanted = |i: usize| {
        candidates
            .get(i)
            .is_some_and(|c| c.room > 0 && !task.avoid.contains(&c.peer.id))
    };
    let mut again = order.clone();
    order
        .find(|&i| wanted(i))
        .or_else(|| again.find(|&i| has_room(i)))
}

/// How a scheduler chooses among candidates; [`fill`] does the rest.
pub trait Policy<'a> {
    /// The index of a candidate with room to take `task`, or `None` when
    /// none has room.
    fn pick(&mut self, candidates: &[Candidate<'a>], task: &PendingTask) -> Option<usize>;
    /// Told after `task` was placed on `candidates[index]` (whose room is
    /// already reduced), so that a policy can move a cursor.
    fn placed(&mut self, _candidates: &[Candidate<'a>], _index: usize) {}
}

/// The placement loop: for each pending task in order, the policy names a
/// candidate with room; the budget rule and the reasons for unplaced tasks
/// are applied here, the same for every scheduler.
pub fn fill<'a>(
    request: &PlacementRequest<'a>,
    mut candidates: Vec<Candidate<'a>>,
    policy: &mut impl Policy<'a>,
    integrator: Option<NodeId>,
) -> Plan {
    let result_to = result_to(request, integrator);
    let mut plan = Plan::default();
    let mut left = request.budget_left;
    let mut tasks = request.pending.iter();
    let mut stop: Option<Unplaced> = None;
    for task in tasks.by_ref() {
        let chosen = policy
            .pick(&candidates, task)
            .and_then(|i| candidates.get_mut(i).filter(|c| c.room > 0).map(|c| (i, c)));
        let Some((i, c)) = chosen else {
            let reason = no_room_reason(request.peers, request.constraints);
            plan.unplaced.push((task.task, reason.clone()));
            stop = Some(reason);
            break;
        };
        let Some(rest) = left.checked_sub(c.cost) else {
            let reason = Unplaced::BudgetShort {
                needed: c.cost,
                left,
            };
            plan.unplaced.push((task.task, reason.clone()));
            stop = Some(reason);
            break;
        };
        left = rest;
        c.room -= 1;
        plan.placements.push(Placement {
            task: task.task,
            node: c.peer.id,
            result_to,
            est_cost: c.cost,
        });
        policy.placed(&candidates, i);
    }
    if let Some(reason) = stop {
        plan.unplaced
            .extend(tasks.map(|t| (t.task, reason.clone())));
    }
    plan
}

/// Where results go: the configured integrator while it is live in the
/// book, else the client. A dead integrator would hold results no one can
/// collect, so the client takes over.
pub fn result_to(request: &PlacementRequest<'_>, integrator: Option<NodeId>) -> NodeId {
    integrator
        .filter(|i| *i == request.client || request.peers.iter().any(|p| p.id == *i))
        .unwrap_or(request.client)
}

/// Options both built-in schedulers take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// `integrator = "<node id>"`: send task results to this node, which
    /// integrates them and hands the job result to the client.
    pub integrator: Option<NodeId>,
}

impl SchedulerOptions {
    /// Parses the `[scheduler.options]` table, naming any bad key.
    pub fn parse(options: &lppsp_core::registry::Options) -> Result<Self, String> {
        let mut out = Self::default();
        for (key, value) in options {
            match key.as_str() {
                "integrator" => {
                    let text = value
                        .as_str()
                        .ok_or_else(|| format!("option `{key}`: expected a node id string"))?;
                    let id = text
                        .parse::<NodeId>()
                        .map_err(|e| format!("option `{key}`: {e}"))?;
                    out.integrator = Some(id);
                }
                other => {
                    return Err(format!(
                        "unknown option `{other}` (this scheduler takes `integrator`)"
                    ))
                }
            }
        }
        Ok(out)
    }
}
