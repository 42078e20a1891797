//! `least-loaded`: a template scheduler plugin for lppsp.
//!
//! Each task goes to the suitable peer with the fewest tasks queued or
//! running there (as it reported in its Idle beacon, plus what this round
//! already placed on it), so that work lands where it will start soonest.
//! Ties go to the more powerful peer, then to the lower NodeId, so the same
//! request always gives the same plan.
//!
//! Change `place` to your policy, the names in `export_scheduler!` to yours,
//! and build with `cargo build --release`; see docs/plugins.md.

use lppsp_plugin_abi::{
    export_scheduler, Placement, PlacementRequest, Plan, Scheduler, Unplaced, UnplacedTask,
};

pub struct LeastLoaded;

impl Scheduler for LeastLoaded {
    /// `options` is the `[scheduler.options]` table as TOML text, empty
    /// when there is none. This scheduler takes no options, so anything
    /// there is a mistake worth reporting (the node shows the message and
    /// does not start).
    fn new(options: &str) -> Result<Self, String> {
        if options.trim().is_empty() {
            Ok(LeastLoaded)
        } else {
            Err(format!("takes no options, got: {}", options.trim()))
        }
    }

    fn place(&mut self, request: &PlacementRequest<'_>) -> Plan {
        // (index into request.peers, free slots left, load) of the
        // suitable peers with a free slot.
        let mut room: Vec<(usize, u32, u32)> = request
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.free_slots > 0 && p.is_suitable(&request.constraints))
            .map(|(i, p)| (i, p.free_slots, p.queue))
            .collect();
        let mut plan = Plan::default();
        let mut budget = request.budget_left_micros;
        // Reckoned once: it goes over every peer.
        let work = request.work_per_task();
        let mut tasks = request.pending.iter();
        for task in tasks.by_ref() {
            let best =
                room.iter_mut()
                    .filter(|(_, free, _)| *free > 0)
                    .min_by_key(|(i, _, load)| {
                        let p = &request.peers[*i];
                        (*load, std::cmp::Reverse(p.power), p.id)
                    });
            let Some((i, free, load)) = best else {
                // Nowhere to go this round: say why, for this task and the
                // rest, and let the next round try again.
                let reason = request.no_room_reason();
                plan.unplaced.push(UnplacedTask {
                    task: task.task,
                    reason: reason.clone(),
                });
                plan.unplaced.extend(tasks.map(|t| UnplacedTask {
                    task: t.task,
                    reason: reason.clone(),
                }));
                break;
            };
            let peer = &request.peers[*i];
            // The client commits `est_cost_micros` of the job's budget while
            // the task runs; a task that does not fit must wait.
            let cost = request.task_cost_with(peer, work);
            let Some(left) = budget.checked_sub(cost) else {
                let reason = Unplaced::BudgetShort {
                    needed_micros: cost,
                    left_micros: budget,
                };
                plan.unplaced.push(UnplacedTask {
                    task: task.task,
                    reason: reason.clone(),
                });
                plan.unplaced.extend(tasks.map(|t| UnplacedTask {
                    task: t.task,
                    reason: reason.clone(),
                }));
                break;
            };
            budget = left;
            *free -= 1;
            *load += 1;
            plan.placements.push(Placement {
                task: task.task,
                node: peer.id,
                result_to: request.client,
                est_cost_micros: cost,
            });
        }
        plan
    }
}

// The plugin's root module: its name (shown in logs), version (this
// crate's) and one line on what it does.
export_scheduler!(
    LeastLoaded,
    "least-loaded",
    "each task on the suitable node with the fewest tasks queued"
);

#[cfg(test)]
mod tests {
    use super::*;
    use lppsp_plugin_abi::std_types::{ROption, RSlice};
    use lppsp_plugin_abi::{Constraints, NodeId, PeerView, PendingTask, UNIT};

    fn peer(id: u8, queue: u32) -> PeerView {
        PeerView {
            id: NodeId([id; 8]),
            addr: "127.0.0.1:47101".into(),
            power: 100,
            arch: "x86_64".into(),
            compute: true,
            compatible: true,
            free_slots: 2,
            queue,
            avg_task_micros: ROption::RNone,
        }
    }

    #[test]
    fn tasks_go_where_the_queue_is_shortest() {
        let peers = [peer(1, 3), peer(2, 0)];
        let pending: Vec<PendingTask> = (0..3)
            .map(|task| PendingTask {
                task,
                attempts: 0,
                avoid: Default::default(),
            })
            .collect();
        let request = PlacementRequest {
            client: NodeId([9; 8]),
            peers: RSlice::from_slice(&peers),
            price_micros: UNIT,
            budget_left_micros: u64::MAX,
            est_task_micros: 1000,
            pending: RSlice::from_slice(&pending),
            constraints: Constraints::default(),
        };
        let plan = LeastLoaded.place(&request);
        let nodes: Vec<u8> = plan.placements.iter().map(|p| p.node.0[0]).collect();
        // Node 2 (queue 0) takes two tasks, its slots; node 1 the third.
        assert_eq!(nodes, [2, 2, 1]);
    }
}
