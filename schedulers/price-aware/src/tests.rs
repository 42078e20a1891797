use lppsp_core::component::{
    Constraints, PeerView, PendingTask, PlacementRequest, Plan, Scheduler, Unplaced,
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

/// A node of `power` MFLOPS whose tasks took `micros` on average.
fn timed(n: u8, power: u64, micros: Option<u64>, slots: u32) -> PeerView {
    PeerView {
        power,
        avg_task_micros: micros,
        free_slots: slots,
        ..peer(n)
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

/// Price 1, one second per task by default: a task costs power x seconds.
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
    PriceAware::new().place(&request(peers, &tasks(n), c, rich()))
}

#[test]
fn cheapest_node_slots_fill_first() {
    let peers = [
        timed(1, 1000, Some(2_000_000), 2), // 2000 per task
        timed(2, 2000, Some(500_000), 2),   // 1000 per task
        // Not measured: the mean work of the others (1.5e9 MFLOPS x us)
        // takes 3 s at 500 MFLOPS, 1500 per task.
        timed(3, 500, None, 2),
    ];
    let plan = place(&peers, 7, &Constraints::default());
    assert_eq!(nodes(&plan), [2, 2, 3, 3, 1, 1]);
    assert_eq!(
        plan.placements
            .iter()
            .map(|p| p.est_cost)
            .collect::<Vec<_>>(),
        [1000, 1000, 1500, 1500, 2000, 2000].map(units)
    );
    assert!(plan.placements.iter().all(|p| p.result_to == id(CLIENT)));
    assert_eq!(plan.unplaced, vec![(6, Unplaced::AllBusy)]);
}

/// The ids of `peers` (last byte) in `client`'s order of equals.
fn spread_order(client: u8, peers: &[u8]) -> Vec<u8> {
    let mut order = peers.to_vec();
    order.sort_by_key(|&n| spread(id(client), id(n)));
    order
}

#[test]
fn ties_go_to_queue_then_the_clients_own_order() {
    let equal_cost = vec![
        timed(1, 1000, Some(1_000_000), 1), // 1000
        timed(2, 2000, Some(500_000), 1),   // 1000
        timed(3, 4000, Some(250_000), 1),   // 1000
    ];
    // (case, peers, expected ranking)
    let cases: Vec<(&str, Vec<PeerView>, Vec<u8>)> = vec![
        (
            "same cost and queue: the client's order, not power",
            equal_cost,
            spread_order(CLIENT, &[1, 2, 3]),
        ),
        (
            "same cost: the shorter queue first",
            vec![
                with(1, |p| p.queue = 5),
                with(2, |p| p.queue = 0),
                with(3, |p| p.queue = 2),
            ],
            vec![2, 3, 1],
        ),
        (
            "same cost: a shorter queue beats more power",
            vec![
                with(1, |p| {
                    p.power = 4000;
                    p.avg_task_micros = Some(250_000); // 1000
                    p.queue = 3;
                }),
                timed(2, 1000, Some(1_000_000), 1), // 1000, queue 0
            ],
            vec![2, 1],
        ),
        (
            "all equal: the client's order",
            vec![peer(9), peer(4), peer(6)],
            spread_order(CLIENT, &[4, 6, 9]),
        ),
        (
            "cost beats power and queue",
            vec![
                timed(1, 8000, Some(1_000_000), 1), // 8000
                with(2, |p| {
                    p.queue = 50;
                    p.avg_task_micros = Some(1_000_000); // 1000
                }),
                timed(3, 1000, Some(1_500_000), 1), // 1500
            ],
            vec![2, 3, 1],
        ),
    ];
    for (case, peers, want) in cases {
        let c = Constraints::default();
        let pending = tasks(0);
        let req = request(&peers, &pending, &c, rich());
        let ranked: Vec<u8> = rank(&req).iter().map(|c| c.id().as_bytes()[7]).collect();
        assert_eq!(ranked, want, "{case}");
        assert_eq!(nodes(&place(&peers, 3, &c)), want, "{case}");
    }
}

#[test]
fn clients_rank_a_pool_of_equals_differently_so_they_spread_over_it() {
    let pool: Vec<u8> = (1..=16).collect();
    let peers: Vec<PeerView> = pool.iter().map(|&n| peer(n)).collect();
    let c = Constraints::default();
    let pending = tasks(1);
    // The first choice of each of 64 clients placing one task at once.
    let mut first_choices = std::collections::BTreeSet::new();
    for client in 100..164u8 {
        let mut req = request(&peers, &pending, &c, rich());
        req.client = id(client);
        let plan = PriceAware::new().place(&req);
        first_choices.insert(nodes(&plan)[0]);
        // One client always ranks the pool the same way.
        assert_eq!(PriceAware::new().place(&req), plan);
    }
    assert!(
        first_choices.len() >= 12,
        "64 clients chose only {first_choices:?} of 16 equal nodes"
    );
}

#[test]
fn before_any_measurement_a_task_costs_the_same_everywhere() {
    // The job's estimate (1 s) at the mean power (2500 MFLOPS) is the work
    // of a task: 0.625 s on node 1, 2.5 s on node 2, 2500 on either.
    let peers = [timed(2, 1000, None, 1), timed(1, 4000, None, 1)];
    let c = Constraints::default();
    let pending = tasks(2);
    let req = request(&peers, &pending, &c, rich());
    let costs: Vec<Bounty> = rank(&req).iter().map(|c| c.cost).collect();
    assert_eq!(costs, [units(2500), units(2500)]);
    assert_eq!(nodes(&place(&peers, 2, &c)), spread_order(CLIENT, &[1, 2]));
}

#[test]
fn a_node_not_yet_measured_is_expected_to_do_the_measured_work_at_its_power() {
    // Two nodes measured: 1000 MFLOPS x 4 s and 2000 MFLOPS x 3 s, a mean
    // work of 5e9 MFLOPS x us. Node 3 (4000 MFLOPS), not measured, is
    // expected to take 1.25 s: 5000, between the two.
    let peers = [
        timed(1, 1000, Some(4_000_000), 1),
        timed(2, 2000, Some(3_000_000), 1),
        timed(3, 4000, None, 1),
    ];
    let c = Constraints::default();
    let pending = tasks(0);
    let req = request(&peers, &pending, &c, rich());
    assert_eq!(req.est_micros_on(&peers[2], req.work_per_task()), 1_250_000);
    let ranked: Vec<(u8, Bounty)> = rank(&req)
        .iter()
        .map(|c| (c.id().as_bytes()[7], c.cost))
        .collect();
    assert_eq!(
        ranked,
        [(1, units(4000)), (3, units(5000)), (2, units(6000))]
    );
}

#[test]
fn suitability_and_reasons_table() {
    let arm = || Arch::new("aarch64").unwrap();
    let riscv = || Arch::new("riscv64").unwrap();
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
            "only non-compute or incompatible nodes",
            vec![
                with(1, |p| p.compute = false),
                with(2, |p| p.compatible = false),
            ],
            Constraints::default(),
            vec![],
            Some(Unplaced::NoComputeNodes),
        ),
        (
            "arch constraint: the cheap node of the wrong arch is not used",
            vec![
                timed(1, 10, None, 2),
                with(2, |p| {
                    p.arch = arm();
                    p.free_slots = 2;
                }),
            ],
            Constraints {
                arch: Some(arm()),
                min_power: 0,
            },
            vec![2, 2],
            Some(Unplaced::AllBusy),
        ),
        (
            "no node of the arch",
            vec![peer(1)],
            Constraints {
                arch: Some(riscv()),
                min_power: 0,
            },
            vec![],
            Some(Unplaced::NoNodeOfArch(riscv())),
        ),
        (
            "min power: the cheap weak node is not used",
            vec![timed(1, 10, None, 3), timed(2, 3000, None, 1)],
            Constraints {
                arch: None,
                min_power: 2000,
            },
            vec![2],
            Some(Unplaced::AllBusy),
        ),
        (
            "below min power",
            vec![peer(1)],
            Constraints {
                arch: None,
                min_power: 1500,
            },
            vec![],
            Some(Unplaced::BelowMinPower(1500)),
        ),
        (
            "busy cheap node skipped",
            vec![timed(1, 10, None, 0), timed(2, 1000, None, 1)],
            Constraints::default(),
            vec![2],
            Some(Unplaced::AllBusy),
        ),
        (
            "all busy",
            vec![timed(1, 10, None, 0), timed(2, 1000, None, 0)],
            Constraints::default(),
            vec![],
            Some(Unplaced::AllBusy),
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
    let peers = [
        timed(1, 100, Some(1_000_000), 2), // cheapest
        timed(2, 200, Some(1_000_000), 1), // next
        timed(3, 300, Some(1_000_000), 1), // dearest
    ];
    let c = Constraints::default();
    let mut pending = tasks(4);
    pending[0].avoid = vec![id(1)];
    pending[1].avoid = vec![id(1), id(2), id(3)];
    pending[2].avoid = vec![id(1)];
    // Task 0 skips 1 for 2; task 1 avoids everything, so it takes the
    // cheapest with room (1); task 2 avoids 1 and 2 is full, so it takes 3;
    // task 3 takes 1's last slot.
    let plan = PriceAware::new().place(&request(&peers, &pending, &c, rich()));
    assert_eq!(nodes(&plan), [2, 1, 3, 1]);
    assert!(plan.unplaced.is_empty());
}

#[test]
fn stops_when_the_budget_is_short() {
    let peers = [
        timed(1, 500, Some(1_000_000), 2),  // 500 per task
        timed(2, 1000, Some(1_000_000), 2), // 1000 per task
    ];
    let c = Constraints::default();
    let pending = tasks(5);
    // 500 + 500 + 1000 = 2000, then node 2 needs 1000 of the 800 left.
    let plan = PriceAware::new().place(&request(&peers, &pending, &c, units(2800)));
    assert_eq!(nodes(&plan), [1, 1, 2]);
    let short = Unplaced::BudgetShort {
        needed: units(1000),
        left: units(800),
    };
    assert_eq!(plan.unplaced, vec![(3, short.clone()), (4, short)]);

    // Fractional amounts are exact: price 0.000001, 1 MFLOPS, 1 s = 0.000001.
    let peers = [timed(1, 1, None, 3)];
    let pending = tasks(3);
    let mut req = request(&peers, &pending, &c, Bounty::from_micros(2));
    req.price = Price::from_micros(1);
    let plan = PriceAware::new().place(&req);
    assert_eq!(plan.placements.len(), 2);
    assert_eq!(
        plan.unplaced,
        vec![(
            2,
            Unplaced::BudgetShort {
                needed: Bounty::from_micros(1),
                left: Bounty::ZERO
            }
        )]
    );
}

#[test]
fn output_is_deterministic_and_ignores_book_order() {
    let peers = [
        timed(4, 1000, Some(900_000), 2), // 900
        timed(2, 1000, Some(800_000), 1), // 800
        timed(9, 700, None, 2),           // the mean work: 850
        with(1, |p| p.compute = false),
    ];
    let mut reversed = peers.clone();
    reversed.reverse();
    let c = Constraints::default();
    let pending = tasks(6);
    let mut s = PriceAware::new();
    let a = s.place(&request(&peers, &pending, &c, rich()));
    let b = s.place(&request(&reversed, &pending, &c, rich()));
    let again = s.place(&request(&peers, &pending, &c, rich()));
    assert_eq!(a, b);
    assert_eq!(a, again);
    assert_eq!(nodes(&a), [2, 9, 9, 4, 4]);
    assert_eq!(a.unplaced, vec![(5, Unplaced::AllBusy)]);
    assert_eq!(s.name(), "price-aware");
}
