//! `fastest-first`: an example scheduler plugin for lppsp.
//!
//! **Policy.** Suitable peers (compute, compatible, of the job's
//! architecture if it names one, at least its minimum power) with a free
//! slot are ranked by processing power, highest first, then by shorter
//! reported queue, then by NodeId so the plan does not depend on the order
//! of the book. Each pending task goes to the first ranked peer with room
//! that the task does not avoid (or, failing that, the first with room).
//! So the most powerful node's slots fill first and a job finishes as soon
//! as the hardware allows, whatever it costs per task: the opposite of the
//! built-in `price-aware`, which ranks the cheapest (before any
//! measurement, the least powerful) first, and of `round-robin`, which
//! spreads tasks evenly.
//!
//! **Budget.** As the built-ins do: each task's estimated cost on its node
//! (`charge(price, power, time)`) must fit in what is left of the budget,
//! and the first task that does not fit stops the round with
//! `BudgetShort`.
//!
//! **Options** (`[scheduler.options]`):
//!
//! - `max_nodes = N`: use only the N most powerful suitable peers (with or
//!   without free slots); tasks wait for them rather than go to a slower
//!   node. 0, the default, means no limit.
//!
//! Built as a `cdylib` (`target/<profile>/liblppsp_plugin_fastest_first.so`)
//! and loaded with
//!
//! ```toml
//! [scheduler]
//! kind = "plugin"
//! path = "liblppsp_plugin_fastest_first.so"
//! ```

use std::cmp::Reverse;

use lppsp_plugin_abi::{
    export_scheduler, PeerView, Placement, PlacementRequest, Plan, Scheduler, Unplaced,
    UnplacedTask,
};
use serde::Deserialize;

/// The options, from `[scheduler.options]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// Use only this many of the most powerful suitable peers (0: all).
    pub max_nodes: usize,
}

/// Places each task on the most powerful suitable peer with a free slot.
#[derive(Debug, Clone, Default)]
pub struct FastestFirst {
    options: Options,
}

impl FastestFirst {
    pub fn with_options(options: Options) -> Self {
        Self { options }
    }
}

/// A ranked peer and the slots it has left in this round.
struct Candidate<'a> {
    peer: &'a PeerView,
    room: u32,
    cost: u64,
}

impl Scheduler for FastestFirst {
    fn new(options: &str) -> Result<Self, String> {
        let options: Options = toml::from_str(options).map_err(|e| e.message().to_string())?;
        Ok(Self::with_options(options))
    }

    fn place(&mut self, request: &PlacementRequest<'_>) -> Plan {
        let mut suitable: Vec<&PeerView> = request
            .peers
            .iter()
            .filter(|p| p.is_suitable(&request.constraints))
            .collect();
        suitable.sort_by_key(|p| (Reverse(p.power), p.queue, p.id));
        suitable.dedup_by_key(|p| p.id);
        if self.options.max_nodes > 0 {
            suitable.truncate(self.options.max_nodes);
        }
        let work = request.work_per_task();
        let mut candidates: Vec<Candidate<'_>> = suitable
            .into_iter()
            .filter(|p| p.free_slots > 0)
            .map(|peer| Candidate {
                peer,
                room: peer.free_slots,
                cost: request.task_cost_with(peer, work),
            })
            .collect();

        let mut plan = Plan::default();
        let mut left = request.budget_left_micros;
        let mut stop: Option<Unplaced> = None;
        for task in request.pending.iter() {
            if let Some(reason) = &stop {
                plan.unplaced.push(UnplacedTask {
                    task: task.task,
                    reason: reason.clone(),
                });
                continue;
            }
            let wanted = candidates
                .iter()
                .position(|c| c.room > 0 && !task.avoid.contains(&c.peer.id))
                .or_else(|| candidates.iter().position(|c| c.room > 0));
            let Some(i) = wanted else {
                // With `max_nodes`, peers beyond the limit may be free;
                // the reason is still `AllBusy`, which is what the
                // request's own reasoning gives while suitable peers exist.
                let reason = request.no_room_reason();
                plan.unplaced.push(UnplacedTask {
                    task: task.task,
                    reason: reason.clone(),
                });
                stop = Some(reason);
                continue;
            };
            let c = &mut candidates[i];
            let Some(rest) = left.checked_sub(c.cost) else {
                let reason = Unplaced::BudgetShort {
                    needed_micros: c.cost,
                    left_micros: left,
                };
                plan.unplaced.push(UnplacedTask {
                    task: task.task,
                    reason: reason.clone(),
                });
                stop = Some(reason);
                continue;
            };
            left = rest;
            c.room -= 1;
            plan.placements.push(Placement {
                task: task.task,
                node: c.peer.id,
                result_to: request.client,
                est_cost_micros: c.cost,
            });
        }
        plan
    }
}

export_scheduler!(
    FastestFirst,
    "fastest-first",
    "each task on the most powerful suitable node with a free slot"
);

#[cfg(test)]
mod tests;
