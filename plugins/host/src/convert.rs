//! Conversions between the node's component types (`lppsp-core`) and their
//! FFI-safe mirrors (`lppsp-plugin-abi`).
//!
//! They live here, not in the interface crate, so that a plugin author's
//! only dependency stays free of the node. What comes back from a plugin is
//! checked on the way in: a plan may name only pending tasks and the
//! request's peers, so a buggy plugin cannot make the client send a task
//! nowhere or twice.

use std::collections::HashSet;
use std::time::Duration;

use abi_stable::std_types::{RSlice, RString};
use lppsp_core::component::{
    Constraints, MarketSample, PeerView, PendingTask, Placement, PlacementRequest, Plan,
    PriceProposal, TaskError, TaskLimits, TaskOutput, Unplaced,
};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::wire::Arch;
use lppsp_core::NodeId;
use lppsp_plugin_abi as abi;

pub fn node_id(id: NodeId) -> abi::NodeId {
    abi::NodeId(*id.as_bytes())
}

pub fn node_id_back(id: abi::NodeId) -> NodeId {
    NodeId::from_bytes(id.0)
}

pub fn peer(p: &PeerView) -> abi::PeerView {
    abi::PeerView {
        id: node_id(p.id),
        addr: RString::from(p.addr.to_string()),
        power: p.power,
        arch: RString::from(p.arch.as_str()),
        compute: p.compute,
        compatible: p.compatible,
        free_slots: p.free_slots,
        queue: p.queue,
        avg_task_micros: p.avg_task_micros.into(),
    }
}

pub fn pending(t: &PendingTask) -> abi::PendingTask {
    abi::PendingTask {
        task: t.task,
        attempts: t.attempts,
        avoid: t.avoid.iter().copied().map(node_id).collect(),
    }
}

pub fn constraints(c: &Constraints) -> abi::Constraints {
    abi::Constraints {
        arch: c.arch.as_ref().map(|a| RString::from(a.as_str())).into(),
        min_power: c.min_power,
    }
}

/// The mirrored request borrows these vectors, so they are built first.
pub struct RequestParts {
    pub peers: Vec<abi::PeerView>,
    pub pending: Vec<abi::PendingTask>,
}

impl RequestParts {
    pub fn new(request: &PlacementRequest<'_>) -> Self {
        Self {
            peers: request.peers.iter().map(peer).collect(),
            pending: request.pending.iter().map(pending).collect(),
        }
    }

    pub fn request<'a>(&'a self, request: &PlacementRequest<'_>) -> abi::PlacementRequest<'a> {
        abi::PlacementRequest {
            client: node_id(request.client),
            peers: RSlice::from_slice(&self.peers),
            price_micros: request.price.micros(),
            budget_left_micros: request.budget_left.micros(),
            est_task_micros: request.est_task_micros,
            pending: RSlice::from_slice(&self.pending),
            constraints: constraints(request.constraints),
        }
    }
}

pub fn unplaced(u: abi::Unplaced) -> Unplaced {
    match u {
        abi::Unplaced::NoComputeNodes => Unplaced::NoComputeNodes,
        // An architecture name the node would not accept cannot be one of
        // its peers' either; all that is left to say is that none is free.
        abi::Unplaced::NoNodeOfArch(a) => Arch::new(a.as_str())
            .map(Unplaced::NoNodeOfArch)
            .unwrap_or(Unplaced::AllBusy),
        abi::Unplaced::BelowMinPower(p) => Unplaced::BelowMinPower(p),
        abi::Unplaced::AllBusy => Unplaced::AllBusy,
        abi::Unplaced::BudgetShort {
            needed_micros,
            left_micros,
        } => Unplaced::BudgetShort {
            needed: Bounty::from_micros(needed_micros),
            left: Bounty::from_micros(left_micros),
        },
    }
}

/// A plugin's plan, checked against the request: returns the plan the
/// node may act on and what was dropped from it, in words.
pub fn plan(plan: abi::Plan, request: &PlacementRequest<'_>) -> (Plan, Vec<String>) {
    let pending: HashSet<u64> = request.pending.iter().map(|t| t.task).collect();
    let peers: HashSet<NodeId> = request.peers.iter().map(|p| p.id).collect();
    let mut placed = HashSet::new();
    let mut dropped = Vec::new();
    let mut out = Plan::default();
    for p in plan.placements {
        let node = node_id_back(p.node);
        let mut result_to = node_id_back(p.result_to);
        if !pending.contains(&p.task) {
            dropped.push(format!("task {} is not pending", p.task));
            continue;
        }
        if !peers.contains(&node) {
            dropped.push(format!("task {} placed on {node}, not a peer", p.task));
            continue;
        }
        if !placed.insert(p.task) {
            dropped.push(format!("task {} placed twice", p.task));
            continue;
        }
        if result_to != request.client && !peers.contains(&result_to) {
            dropped.push(format!(
                "task {}: results to {result_to}, not a peer; sent to the client",
                p.task
            ));
            result_to = request.client;
        }
        out.placements.push(Placement {
            task: p.task,
            node,
            result_to,
            est_cost: Bounty::from_micros(p.est_cost_micros),
        });
    }
    for u in plan.unplaced {
        if pending.contains(&u.task) && !placed.contains(&u.task) {
            out.unplaced.push((u.task, unplaced(u.reason)));
        }
    }
    (out, dropped)
}

pub fn sample(s: &MarketSample) -> abi::MarketSample {
    abi::MarketSample {
        at_ms: s.at_ms,
        price_micros: s.price.micros(),
        pressure_milli: s.pressure_milli,
        demand_tasks: s.demand_tasks,
        supply_mflops: s.supply_mflops,
        nodes: s.nodes,
    }
}

pub fn proposal(p: abi::PriceProposal) -> PriceProposal {
    PriceProposal {
        price: Price::from_micros(p.price_micros),
        evidence: p.evidence.into_string(),
    }
}

pub fn limits(l: &TaskLimits) -> abi::TaskLimits {
    abi::TaskLimits {
        wall_micros: u64::try_from(l.wall.as_micros()).unwrap_or(u64::MAX),
        memory_bytes: l.memory_bytes,
        fuel: l.fuel.into(),
    }
}

pub fn output(o: abi::TaskOutput) -> TaskOutput {
    TaskOutput {
        result: o.result.into_vec(),
        fuel: o.fuel.into_option(),
    }
}

pub fn task_error(e: abi::TaskError) -> TaskError {
    match e {
        abi::TaskError::UnknownKernel(k) => TaskError::UnknownKernel(k.into_string()),
        abi::TaskError::BadInput(m) => TaskError::BadInput(m.into_string()),
        abi::TaskError::Timeout { wall_micros } => {
            TaskError::Timeout(Duration::from_micros(wall_micros))
        }
        abi::TaskError::MemoryLimit(b) => TaskError::MemoryLimit(b),
        abi::TaskError::FuelExhausted(n) => TaskError::FuelExhausted(n),
        abi::TaskError::Cancelled => TaskError::Cancelled,
        abi::TaskError::Failed(m) => TaskError::Failed(m.into_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::ROption;
    use lppsp_core::wire::Endpoint;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 8])
    }

    fn view(b: u8) -> PeerView {
        PeerView {
            id: id(b),
            addr: Endpoint("127.0.0.1:47101".parse().unwrap()),
            power: 100,
            arch: Arch::new("x86_64").unwrap(),
            compute: true,
            compatible: true,
            free_slots: 2,
            queue: 0,
            avg_task_micros: Some(5),
        }
    }

    fn placement(task: u64, node: u8, result_to: u8) -> abi::Placement {
        abi::Placement {
            task,
            node: node_id(id(node)),
            result_to: node_id(id(result_to)),
            est_cost_micros: 7,
        }
    }

    #[test]
    fn peers_cross_unchanged() {
        let p = peer(&view(3));
        assert_eq!(p.id.to_string(), id(3).to_string());
        assert_eq!(p.addr.as_str(), "127.0.0.1:47101");
        assert_eq!(p.arch.as_str(), "x86_64");
        assert_eq!(p.avg_task_micros, ROption::RSome(5));
        assert_eq!(node_id_back(p.id), id(3));
    }

    #[test]
    fn plans_keep_only_pending_tasks_on_peers() {
        let peers = [view(1), view(2)];
        let pending = [
            PendingTask {
                task: 0,
                attempts: 0,
                avoid: vec![],
            },
            PendingTask {
                task: 1,
                attempts: 0,
                avoid: vec![],
            },
            PendingTask {
                task: 2,
                attempts: 0,
                avoid: vec![],
            },
        ];
        let constraints = Constraints::default();
        let request = PlacementRequest {
            client: id(9),
            peers: &peers,
            price: Price::from_micros(1),
            budget_left: Bounty::from_micros(100),
            est_task_micros: 1,
            pending: &pending,
            constraints: &constraints,
        };
        let plugin_plan = abi::Plan {
            placements: vec![
                placement(0, 1, 9),
                placement(0, 2, 9), // twice
                placement(1, 7, 9), // not a peer
                placement(5, 1, 9), // not pending
                placement(2, 2, 8), // results to a stranger
            ]
            .into(),
            unplaced: vec![
                abi::UnplacedTask {
                    task: 1,
                    reason: abi::Unplaced::AllBusy,
                },
                abi::UnplacedTask {
                    task: 0,
                    reason: abi::Unplaced::AllBusy,
                },
            ]
            .into(),
        };
        let (plan, dropped) = plan(plugin_plan, &request);
        assert_eq!(
            plan.placements
                .iter()
                .map(|p| (p.task, p.node, p.result_to))
                .collect::<Vec<_>>(),
            vec![(0, id(1), id(9)), (2, id(2), id(9))]
        );
        assert_eq!(plan.placements[0].est_cost, Bounty::from_micros(7));
        assert_eq!(plan.unplaced, vec![(1, Unplaced::AllBusy)]);
        assert_eq!(dropped.len(), 4, "{dropped:?}");
    }

    #[test]
    fn errors_and_reasons_map_to_the_node_types() {
        assert_eq!(
            task_error(abi::TaskError::Timeout { wall_micros: 2_000 }),
            TaskError::Timeout(Duration::from_millis(2))
        );
        assert_eq!(
            task_error(abi::TaskError::Failed("x".into())),
            TaskError::Failed("x".into())
        );
        assert_eq!(
            unplaced(abi::Unplaced::NoNodeOfArch("not an arch!".into())),
            Unplaced::AllBusy
        );
        assert_eq!(
            unplaced(abi::Unplaced::BudgetShort {
                needed_micros: 2,
                left_micros: 1
            }),
            Unplaced::BudgetShort {
                needed: Bounty::from_micros(2),
                left: Bounty::from_micros(1)
            }
        );
    }
}
