use lppsp_plugin_abi::std_types::{ROption, RSlice};
use lppsp_plugin_abi::{Constraints, NodeId, PendingTask, UNIT};

use super::*;

fn peer(id: u8, power: u64, free_slots: u32) -> PeerView {
    PeerView {
        id: NodeId([id; 8]),
        addr: "127.0.0.1:1".into(),
        power,
        arch: "x86_64".into(),
        compute: true,
        compatible: true,
        free_slots,
        queue: 0,
        avg_task_micros: ROption::RNone,
    }
}

fn tasks(n: u64) -> Vec<PendingTask> {
    (0..n)
        .map(|task| PendingTask {
            task,
            attempts: 0,
            avoid: Default::default(),
        })
        .collect()
}

fn request<'a>(peers: &'a [PeerView], pending: &'a [PendingTask]) -> PlacementRequest<'a> {
    PlacementRequest {
        client: NodeId([9; 8]),
        peers: RSlice::from_slice(peers),
        price_micros: UNIT,
        budget_left_micros: u64::MAX,
        est_task_micros: 1_000,
        pending: RSlice::from_slice(pending),
        constraints: Constraints::default(),
    }
}

fn nodes(plan: &Plan) -> Vec<u8> {
    plan.placements.iter().map(|p| p.node.0[0]).collect()
}

#[test]
fn the_most_powerful_node_fills_first() {
    let peers = [peer(1, 10, 4), peer(2, 1000, 2), peer(3, 100, 4)];
    let pending = tasks(5);
    let plan = FastestFirst::default().place(&request(&peers, &pending));
    assert_eq!(nodes(&plan), [2, 2, 3, 3, 3]);
    assert!(plan.unplaced.is_empty());
    // Before any measurement a task's cost is price x work, the job's
    // estimate (1 ms) at the pool's mean power (370 MFLOPS), on any node.
    assert_eq!(plan.placements[0].est_cost_micros, 370 * 1_000);
}

#[test]
fn max_nodes_keeps_tasks_for_the_fastest() {
    let peers = [peer(1, 10, 4), peer(2, 1000, 2)];
    let pending = tasks(3);
    let mut s = FastestFirst::new("max_nodes = 1").unwrap();
    let plan = s.place(&request(&peers, &pending));
    assert_eq!(nodes(&plan), [2, 2]);
    assert_eq!(plan.unplaced.len(), 1);
    assert_eq!(plan.unplaced[0].reason, Unplaced::AllBusy);
}

#[test]
fn avoided_nodes_are_skipped_while_others_have_room() {
    let peers = [peer(1, 10, 4), peer(2, 1000, 2)];
    let mut pending = tasks(1);
    pending[0].avoid = vec![NodeId([2; 8])].into();
    let plan = FastestFirst::default().place(&request(&peers, &pending));
    assert_eq!(nodes(&plan), [1]);
}

#[test]
fn the_budget_stops_the_round() {
    let peers = [peer(2, 1000, 8)];
    let pending = tasks(3);
    let mut r = request(&peers, &pending);
    r.budget_left_micros = 2_500_000;
    let plan = FastestFirst::default().place(&r);
    assert_eq!(nodes(&plan), [2, 2]);
    assert_eq!(
        plan.unplaced[0].reason,
        Unplaced::BudgetShort {
            needed_micros: 1_000_000,
            left_micros: 500_000
        }
    );
}

#[test]
fn unsuitable_peers_and_bad_options_are_refused() {
    let mut weak = peer(1, 10, 4);
    weak.compatible = false;
    let peers = [weak];
    let pending = tasks(1);
    let plan = FastestFirst::default().place(&request(&peers, &pending));
    assert_eq!(plan.unplaced[0].reason, Unplaced::NoComputeNodes);
    let err = FastestFirst::new("max_node = 1").unwrap_err();
    assert!(err.contains("max_node"), "{err}");
}
