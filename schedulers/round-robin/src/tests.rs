use lppsp_core::component::{
    Constraints, PeerView, PendingTask, Placement, PlacementRequest, Plan, Scheduler, Unplaced,
};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::node_id::NodeId;
use lppsp_core::wire::Arch;

use super::*;

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([0, 0, 0, 0, 0, 0, 0, n])
}

const CLIENT: u8 = 0xCC;

/// A suitable x86_64 compute node of 1000 MFLOPS with one free slot.
fn peer(n: u8) -> PeerView {
    PeerView {
        id: id(n),
        addr: "127.0.0.1:47101".parse().unwrap(),
        power: 1000,
        arch: Arch::new("x86_64").unwrap(),
        compute: true,
        compatible: true,
        free_slots: 1,
        queue: 0,
        avg_task_micros: None,
    }
}

fn with(n: u8, f: impl FnOnce(&mut PeerView)) -> PeerView {
    let mut p = peer(n);
    f(&mut p);
    p
}

fn tasks(n: u64) -> Vec<PendingTask> {
    (0..n)
        .map(|task| PendingTask {
            task,
            attempts: 0,
            avoid: Vec::new(),
        })
        .collect()
}

fn units(n: u64) -> Bounty {
    Bounty::from_units(n).unwrap()
}

/// Price 1, one second per task: a task costs `power` units.
fn request<'a>(
    peers: &'a [PeerView],
    pending: &'a [PendingTask],
    constraints: &'a Constraints,
    budget: Bounty,
) -> PlacementRequest<'a> {
    PlacementRequest {
        client: id(CLIENT),
        peers,
        price: Price::from_units(1).unwrap(),
        budget_left: budget,
        est_task_micros: 1_000_000,
        pending,
        constraints,
    }
}

fn rich() -> Bounty {
    units(1_000_000_000)
}

fn nodes(plan: &Plan) -> Vec<u8> {
    plan.placements
        .iter()
        .map(|p| p.node.as_bytes()[7])
        .collect()
}

fn place(peers: &[PeerView], n: u64, c: &Constraints) -> Plan {
    RoundRobin::new().place(&request(peers, &tasks(n), c, rich()))
}

#[test]
fn spreads_tasks_one_per_node_per_round() {
    let peers = [
        with(3, |p| p.free_slots = 2),
        with(1, |p| p.free_slots = 2),
        with(2, |p| p.free_slots = 1),
    ];
    let plan = place(&peers, 5, &Constraints::default());
    // NodeId order, one per visit, a full node skipped.
    assert_eq!(nodes(&plan), [1, 2, 3, 1, 3]);
    assert!(plan.unplaced.is_empty());
    for (i, p) in plan.placements.iter().enumerate() {
        assert_eq!(p.task, i as u64);
        assert_eq!(p.result_to, id(CLIENT));
        assert_eq!(p.est_cost, units(1000));
    }
}

#[test]
fn keeps_its_cursor_between_calls() {
    let peers = [peer(1), peer(2), peer(3)];
    let c = Constraints::default();
    let one = tasks(1);
    let mut rr = RoundRobin::new();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.extend(nodes(&rr.place(&request(&peers, &one, &c, rich()))));
    }
    assert_eq!(seen, [1, 2, 3, 1]);
    assert_eq!(rr.cursor(), Some(id(1)));
    // The cursor is a NodeId: when node 2 leaves, the ring carries on at 3.
    let fewer = [peer(1), peer(3)];
    assert_eq!(nodes(&rr.place(&request(&fewer, &one, &c, rich()))), [3]);
    // A call that places nothing leaves the cursor alone.
    let none: [PeerView; 0] = [];
    rr.place(&request(&none, &one, &c, rich()));
    assert_eq!(rr.cursor(), Some(id(3)));
}

/// Suitability and reasons: (case, peers, constraints, expected nodes,
/// expected reason for the unplaced tasks).
#[test]
fn suitability_and_reasons_table() {
    let arm = || Arch::new("aarch64").unwrap();
    let x86 = || Arch::new("x86_64").unwrap();
    let riscv = || Arch::new("riscv64").unwrap();
    let only = |arch: Arch, min_power: u64| Constraints {
        arch: Some(arch),
        min_power,
    };
    let min = |min_power| Constraints {
        arch: None,
        min_power,
    };
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Vec<PeerView>, Constraints, Vec<u8>, Option<Unplaced>)> = vec![
        (
            "empty book",
            vec![],
            Constraints::default(),
            vec![],
            Some(Unplaced::NoComputeNodes),
        ),
        (
            "no compute nodes",
            vec![
                with(1, |p| p.compute = false),
                with(2, |p| p.compatible = false),
            ],
            Constraints::default(),
            vec![],
            Some(Unplaced::NoComputeNodes),
        ),
        (
            "arch constraint picks the matching node",
            vec![peer(1), with(2, |p| p.arch = arm()), peer(3)],
            only(arm(), 0),
            vec![2],
            Some(Unplaced::AllBusy),
        ),
        (
            "no node of the arch",
            vec![peer(1), with(2, |p| p.arch = arm())],
            only(riscv(), 0),
            vec![],
            Some(Unplaced::NoNodeOfArch(riscv())),
        ),
        (
            "incompatible node of the arch does not count",
            vec![
                peer(1),
                with(2, |p| {
                    p.arch = riscv();
                    p.compatible = false;
                }),
            ],
            only(riscv(), 0),
            vec![],
            Some(Unplaced::NoNodeOfArch(riscv())),
        ),
        (
            "min power picks the strong node",
            vec![peer(1), with(2, |p| p.power = 5000)],
            min(2000),
            vec![2],
            Some(Unplaced::AllBusy),
        ),
        (
            "min power exactly met",
            vec![peer(1)],
            min(1000),
            vec![1],
            Some(Unplaced::AllBusy),
        ),
        (
            "below min power",
            vec![peer(1), peer(2)],
            min(1001),
            vec![],
            Some(Unplaced::BelowMinPower(1001)),
        ),
        (
            "strong node of the wrong arch: below min power among the arch",
            vec![
                peer(1),
                with(2, |p| {
                    p.arch = arm();
                    p.power = 9000;
                }),
            ],
            only(x86(), 2000),
            vec![],
            Some(Unplaced::BelowMinPower(2000)),
        ),
        (
            "all busy",
            vec![with(1, |p| p.free_slots = 0), with(2, |p| p.free_slots = 0)],
            Constraints::default(),
            vec![],
            Some(Unplaced::AllBusy),
        ),
        (
            "busy node skipped",
            vec![with(1, |p| p.free_slots = 0), with(2, |p| p.free_slots = 3)],
            Constraints::default(),
            vec![2, 2, 2],
            None,
        ),
    ];
    for (case, peers, c, want_nodes, want_reason) in cases {
        let plan = place(&peers, 3, &c);
        assert_eq!(nodes(&plan), want_nodes, "{case}");
        let placed = want_nodes.len();
        assert_eq!(plan.unplaced.len(), 3 - placed, "{case}");
        for (i, (task, reason)) in plan.unplaced.iter().enumerate() {
            assert_eq!(*task, (placed + i) as u64, "{case}");
            assert_eq!(Some(reason), want_reason.as_ref(), "{case}");
        }
    }
}

#[test]
fn avoid_list_is_honoured_but_never_blocks() {
    let peers = [peer(1), peer(2), peer(3)];
    let c = Constraints::default();
    let mut pending = tasks(3);
    pending[0].avoid = vec![id(1)];
    pending[1].avoid = vec![id(1), id(3)];
    // Task 0 skips node 1 and takes 2; task 1 avoids 1 and 3 but 2 is full,
    // so it takes the next avoided node with room rather than wait; task 2
    // gets what is left.
    let plan = RoundRobin::new().place(&request(&peers, &pending, &c, rich()));
    assert_eq!(nodes(&plan), [2, 3, 1]);
    assert!(plan.unplaced.is_empty());

    // Avoiding the only node still places the task there.
    let lone = [peer(7)];
    let mut pending = tasks(1);
    pending[0].avoid = vec![id(7)];
    let plan = RoundRobin::new().place(&request(&lone, &pending, &c, rich()));
    assert_eq!(nodes(&plan), [7]);
}

#[test]
fn stops_when_the_budget_is_short() {
    let peers = [
        with(1, |p| {
            p.free_slots = 5;
            p.avg_task_micros = Some(1_000_000); // 1000 units per task here
        }),
        with(2, |p| {
            p.free_slots = 5;
            p.avg_task_micros = Some(500_000); // 500 units per task here
        }),
    ];
    let c = Constraints::default();
    let pending = tasks(6);
    // 1000 + 500 + 1000 = 2500, then node 2 needs 500 of the 200 left.
    let plan = RoundRobin::new().place(&request(&peers, &pending, &c, units(2700)));
    assert_eq!(nodes(&plan), [1, 2, 1]);
    assert_eq!(
        plan.placements
            .iter()
            .map(|p| p.est_cost)
            .collect::<Vec<_>>(),
        [units(1000), units(500), units(1000)]
    );
    let short = Unplaced::BudgetShort {
        needed: units(500),
        left: units(200),
    };
    assert_eq!(
        plan.unplaced,
        vec![(3, short.clone()), (4, short.clone()), (5, short)]
    );

    // Exactly enough is enough.
    let plan = RoundRobin::new().place(&request(&peers, &tasks(2), &c, units(1500)));
    assert_eq!(plan.placements.len(), 2);
    assert!(plan.unplaced.is_empty());

    // No budget at all: nothing placed, the first task's need reported.
    let plan = RoundRobin::new().place(&request(&peers, &tasks(2), &c, Bounty::ZERO));
    assert!(plan.placements.is_empty());
    assert_eq!(
        plan.unplaced[0].1,
        Unplaced::BudgetShort {
            needed: units(1000),
            left: Bounty::ZERO
        }
    );
}

#[test]
fn a_charge_that_overflows_never_fits() {
    let peers = [with(1, |p| p.power = u64::MAX)];
    let c = Constraints::default();
    let pending = tasks(1);
    let mut req = request(&peers, &pending, &c, Bounty::from_micros(u64::MAX - 1));
    req.price = Price::from_micros(u64::MAX);
    let plan = RoundRobin::new().place(&req);
    assert!(plan.placements.is_empty());
    assert_eq!(
        plan.unplaced,
        vec![(
            0,
            Unplaced::BudgetShort {
                needed: Bounty::from_micros(u64::MAX),
                left: Bounty::from_micros(u64::MAX - 1)
            }
        )]
    );
}

#[test]
fn a_free_price_places_everything_that_fits() {
    let peers = [with(1, |p| p.free_slots = 2)];
    let c = Constraints::default();
    let pending = tasks(3);
    let mut req = request(&peers, &pending, &c, Bounty::ZERO);
    req.price = Price::ZERO;
    let plan = RoundRobin::new().place(&req);
    assert_eq!(
        plan.placements[0],
        Placement {
            task: 0,
            node: id(1),
            result_to: id(CLIENT),
            est_cost: Bounty::ZERO
        }
    );
    assert_eq!(plan.placements.len(), 2);
    assert_eq!(plan.unplaced, vec![(2, Unplaced::AllBusy)]);
}

#[test]
fn output_is_deterministic_and_ignores_book_order() {
    let peers = [
        with(4, |p| p.free_slots = 2),
        with(2, |p| p.free_slots = 3),
        with(9, |p| p.free_slots = 1),
        with(1, |p| p.compute = false),
    ];
    let mut reversed = peers.clone();
    reversed.reverse();
    let c = Constraints::default();
    let pending = tasks(8);
    let a = RoundRobin::new().place(&request(&peers, &pending, &c, rich()));
    let b = RoundRobin::new().place(&request(&reversed, &pending, &c, rich()));
    let again = RoundRobin::new().place(&request(&peers, &pending, &c, rich()));
    assert_eq!(a, b);
    assert_eq!(a, again);
    assert_eq!(nodes(&a), [2, 4, 9, 2, 4, 2]);
    assert_eq!(
        a.unplaced,
        vec![(6, Unplaced::AllBusy), (7, Unplaced::AllBusy)]
    );
}

#[test]
fn a_duplicated_peer_counts_once() {
    let peers = [peer(1), with(1, |p| p.free_slots = 9)];
    let plan = place(&peers, 2, &Constraints::default());
    assert_eq!(nodes(&plan), [1]);
    assert_eq!(plan.unplaced, vec![(1, Unplaced::AllBusy)]);
}

#[test]
fn nothing_pending_is_an_empty_plan() {
    let peers = [peer(1)];
    assert_eq!(place(&peers, 0, &Constraints::default()), Plan::default());
    assert_eq!(RoundRobin::new().name(), "round-robin");
}

#[test]
fn results_go_to_a_live_integrator_and_to_the_client_when_it_is_gone() {
    let peers = [peer(1), peer(2)];
    let c = Constraints::default();
    let opts = SchedulerOptions {
        integrator: Some(id(2)),
    };
    let plan = RoundRobin::with_options(opts).place(&request(&peers, &tasks(2), &c, rich()));
    assert_eq!(plan.placements.len(), 2);
    assert!(plan.placements.iter().all(|p| p.result_to == id(2)));

    // The integrator is not in the book (left or expired): the client integrates.
    let opts = SchedulerOptions {
        integrator: Some(id(9)),
    };
    let plan = RoundRobin::with_options(opts).place(&request(&peers, &tasks(2), &c, rich()));
    assert!(plan.placements.iter().all(|p| p.result_to == id(CLIENT)));
}

#[test]
fn scheduler_options_name_the_bad_key() {
    let mut o = lppsp_core::registry::Options::new();
    o.insert(
        "integrator".into(),
        toml::Value::String("00000000000000ab".into()),
    );
    let parsed = SchedulerOptions::parse(&o).unwrap();
    assert_eq!(parsed.integrator, Some(id(0xab)));

    o.insert("integrator".into(), toml::Value::Integer(3));
    assert!(SchedulerOptions::parse(&o)
        .unwrap_err()
        .contains("`integrator`"));
    o.insert("integrator".into(), toml::Value::String("nope".into()));
    assert!(SchedulerOptions::parse(&o)
        .unwrap_err()
        .contains("`integrator`"));

    let mut o = lppsp_core::registry::Options::new();
    o.insert("cursor".into(), toml::Value::Boolean(true));
    assert!(SchedulerOptions::parse(&o)
        .unwrap_err()
        .contains("`cursor`"));
}
