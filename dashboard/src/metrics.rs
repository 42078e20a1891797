//! `/metrics`: the node's status as Prometheus (OpenMetrics text) metrics.
//!
//! The status already holds running totals, so each scrape builds a
//! fresh registry from the latest status instead of keeping metric
//! objects in step with the driver. Names and meanings are listed in
//! docs/dashboard.md; a test checks that every listed name is served.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use lppsp_runtime::control::reply::{MarketStatus, NodeStatus};
use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::money;

type Labels = Vec<(String, String)>;

/// The metrics of one status, encoded.
pub fn encode(status: &NodeStatus) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("lppsp");
    let node = &status.node;
    let market = &status.market;
    let compute = status.compute.unwrap_or_default();
    let balance = &status.balance;

    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![
        ("id".into(), node.id.to_string()),
        ("name".into(), node.name.clone()),
        ("software".into(), node.software.clone()),
        ("protocol".into(), node.protocol.clone()),
        ("arch".into(), node.arch.clone()),
    ])
    .set(1);
    reg.register("node", "This node (value 1; labels say which)", info);

    let gauge = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let g = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        reg.register(name, help, g);
    };
    let float = |reg: &mut Registry, name: &str, help: &str, v: f64| {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(v);
        reg.register(name, help, g);
    };
    let counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        reg.register(name, help, c);
    };

    gauge(
        &mut reg,
        "peers",
        "Peers in the information book",
        status.peers.len() as u64,
    );
    let idle = status.peers.iter().filter(|p| p.idle).count() as u64;
    gauge(
        &mut reg,
        "peers_idle",
        "Peers whose latest Idle beacon says idle",
        idle,
    );
    gauge(
        &mut reg,
        "uptime_seconds",
        "Seconds since the node started",
        node.uptime_ms / 1000,
    );
    gauge(
        &mut reg,
        "power_mflops",
        "Processing power this node offers, MFLOPS",
        node.power,
    );

    float(
        &mut reg,
        "price",
        "Committed market price, bounty per MFLOPS per second",
        money(market.price.micros()),
    );
    gauge(
        &mut reg,
        "epoch",
        "Epoch of the committed price",
        market.epoch,
    );
    float(
        &mut reg,
        "pressure",
        "Pool pressure: tasks waiting per node (0 before the first tick)",
        market.pressure.unwrap_or(0.0),
    );
    gauge(
        &mut reg,
        "queue_tasks",
        "Tasks queued or running in the whole pool",
        market.demand_tasks.unwrap_or(0),
    );
    gauge(
        &mut reg,
        "supply_mflops",
        "Idle processing power offered in the pool, MFLOPS",
        market.supply_mflops.unwrap_or(0),
    );
    gauge(
        &mut reg,
        "round_open",
        "1 while a price round this node opened is in progress",
        u64::from(market.open_round.is_some()),
    );
    let r = &market.rounds;
    let rounds = Family::<Labels, Counter>::default();
    for (outcome, n) in [
        ("opened", r.rounds_opened),
        ("committed", r.rounds_committed),
        ("abandoned", r.rounds_abandoned),
    ] {
        rounds
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc_by(n);
    }
    reg.register(
        "rounds",
        "Price rounds this node opened, by outcome",
        rounds,
    );
    counter(
        &mut reg,
        "votes_cast",
        "Votes this node cast in other nodes' price rounds",
        r.votes_cast,
    );
    counter(
        &mut reg,
        "rounds_adopted",
        "Other members' rounds this node adopted with the votes behind them",
        r.adopted_from_peers,
    );
    counter(
        &mut reg,
        "reconciliations",
        "Reconciliation rounds this node opened (members held other states)",
        r.reconciliations,
    );
    balancer(&mut reg, market);

    gauge(
        &mut reg,
        "slots",
        "Task slots this node offers",
        u64::from(compute.slots),
    );
    gauge(
        &mut reg,
        "slots_busy",
        "Tasks running or queued on this node's slots",
        compute.load,
    );
    for (name, n, help) in [
        ("tasks_done", compute.tasks_done, "Tasks this node computed"),
        (
            "tasks_failed",
            compute.tasks_failed,
            "Tasks that failed here",
        ),
        (
            "tasks_refused",
            compute.tasks_refused,
            "Tasks refused here (limits, clients without bounty)",
        ),
        (
            "tasks_cancelled",
            compute.tasks_cancelled,
            "Tasks cancelled by their client",
        ),
    ] {
        counter(&mut reg, name, help, n);
    }

    gauge(
        &mut reg,
        "jobs_active",
        "Jobs this node submitted that are running",
        status.jobs.active as u64,
    );
    gauge(
        &mut reg,
        "job_tasks_in_pool",
        "Tasks of this node's jobs queued or running in the pool",
        status.jobs.tasks_in_pool,
    );

    reg.register(
        "beacons_dropped",
        "Beacons dropped, by reason",
        by_reason(&status.dropped_beacons),
    );
    reg.register(
        "member_refusals",
        "Frames, beacons and claims refused from members, by reason",
        by_reason(&status.member_refusals),
    );
    counter(
        &mut reg,
        "connections_refused",
        "Incoming connections refused (failed handshake, certificate not from the CA)",
        status.connections_refused,
    );

    gauge(
        &mut reg,
        "ledger_receipts",
        "Receipts in this node's ledger",
        status.ledger.receipts,
    );
    let stats = &status.ledger.stats;
    let receipts = Family::<Labels, Counter>::default();
    for (event, n) in [
        ("issued", stats.receipts_issued),
        ("received", stats.receipts_received),
        ("rejected", stats.receipts_rejected),
        ("acknowledged", stats.receipts_acknowledged),
    ] {
        receipts
            .get_or_create(&vec![("event".into(), event.into())])
            .inc_by(n);
    }
    reg.register("receipts", "Receipts handled, by event", receipts);
    float(
        &mut reg,
        "balance",
        "Remaining bounty: grant + earned - spent, less unsettled charges",
        money(balance.remaining.micros()),
    );
    float(
        &mut reg,
        "earned",
        "Bounty earned computing for others",
        money(balance.earned.micros()),
    );
    float(
        &mut reg,
        "spent",
        "Bounty spent by this node's finished jobs",
        money(balance.spent.micros()),
    );

    let mut out = String::new();
    text::encode(&mut out, &reg)?;
    Ok(out)
}

/// The committed round's proposer and the balancer: its kind, and what
/// the ml balancer's fit says. A series without a value (no proposer at
/// epoch 0, no fit yet, an fsm balancer) is left out rather than served
/// as 0.
fn balancer(reg: &mut Registry, market: &MarketStatus) {
    if let Some(proposer) = market.proposer {
        let family = Family::<Labels, Gauge>::default();
        family
            .get_or_create(&vec![("proposer".into(), proposer.to_string())])
            .set(1);
        reg.register(
            "market_proposer",
            "The node whose round set the committed price (value 1)",
            family,
        );
    }
    if !market.balancer_kind.is_empty() {
        let family = Family::<Labels, Gauge>::default();
        family
            .get_or_create(&vec![
                ("kind".into(), market.balancer_kind.clone()),
                ("proposes".into(), market.balancer_proposes.to_string()),
            ])
            .set(1);
        reg.register(
            "balancer",
            "This node's balancer (value 1; labels say which and whether it proposes here)",
            family,
        );
    }
    // The balancer's own status: its shape is the balancer's (the ml
    // balancer's names are read here; another's simply has none of them).
    let state = market.balancer_state.as_ref().unwrap_or(&Value::Null);
    let float_gauge = |v: f64| {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(v);
        g
    };
    let by_side = |key: &str| {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let mut any = false;
        for side in ["demand", "supply"] {
            if let Some(v) = state["fit"][format!("{side}_{key}")]
                .as_f64()
                .filter(|v| v.is_finite())
            {
                family
                    .get_or_create(&vec![("side".into(), side.into())])
                    .set(v);
                any = true;
            }
        }
        any.then_some(family)
    };
    if let Some(f) = by_side("r2") {
        reg.register(
            "balancer_fit_r2",
            "R^2 of the ml balancer's fit, by side",
            f,
        );
    }
    if let Some(f) = by_side("elasticity") {
        reg.register(
            "balancer_elasticity",
            "Price elasticity the ml balancer fitted, by side",
            f,
        );
    }
    if let Some(p) = state["fit"]["clearing_price"]
        .as_f64()
        .filter(|v| v.is_finite())
    {
        reg.register(
            "balancer_clearing_price",
            "Where the fitted demand meets the fitted supply, in price units",
            float_gauge(p),
        );
    }
    if let (Some(samples), Some(used)) =
        (state["samples"].as_u64(), state["usable_samples"].as_u64())
    {
        let family = Family::<Labels, Gauge>::default();
        family
            .get_or_create(&vec![("kind".into(), "used".into())])
            .set(i64::try_from(used).unwrap_or(i64::MAX));
        family
            .get_or_create(&vec![("kind".into(), "skipped".into())])
            .set(i64::try_from(samples.saturating_sub(used)).unwrap_or(i64::MAX));
        reg.register(
            "balancer_samples",
            "Samples in the ml balancer's window: used in the fit, or skipped (zero price, demand or supply)",
            family,
        );
    }
    if let Some(price) = state["last_proposal"]["price"]
        .as_str()
        .and_then(|p| p.parse::<f64>().ok())
    {
        reg.register(
            "balancer_proposal_price",
            "The price the balancer last proposed",
            float_gauge(price),
        );
    }
}

/// A counter family labelled `reason` from a status object of counts by
/// reason (absent: no series).
fn by_reason(counts: &BTreeMap<String, u64>) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    for (reason, n) in counts {
        family
            .get_or_create(&vec![("reason".into(), reason.clone())])
            .inc_by(*n);
    }
    family
}

#[cfg(test)]
mod tests {
    use lppsp_runtime::control::reply::{ComputeStatus, PeerStatus};

    use super::*;

    fn peer(idle: bool) -> PeerStatus {
        PeerStatus {
            id: lppsp_runtime::control::reply::NodeInfo::default().id,
            addr: String::new(),
            power: 0,
            arch: String::new(),
            is_client: false,
            remaining_bounty: None,
            idle,
            queue: 0,
            slots: 0,
            protocol: String::new(),
            software: String::new(),
            compatible: true,
            price: Default::default(),
            reserve: Default::default(),
            last_seen_ms: 0,
            last_seen_ms_ago: 0,
        }
    }

    #[test]
    fn a_status_becomes_named_metrics() {
        let mut status = NodeStatus::default();
        status.node.name = "n1".into();
        status.node.uptime_ms = 5000;
        status.node.power = 900;
        status.market.price = "2.5".parse().unwrap();
        status.market.epoch = 3;
        status.market.pressure = Some(1.5);
        status.market.demand_tasks = Some(7);
        status.market.rounds.rounds_opened = 2;
        status.market.rounds.rounds_committed = 1;
        status.compute = Some(ComputeStatus {
            slots: 2,
            load: 1,
            tasks_done: 10,
            ..ComputeStatus::default()
        });
        status.peers = vec![peer(true), peer(false)];
        status.dropped_beacons = [("bad_signature".to_string(), 4)].into();
        status.connections_refused = 2;
        status.balance.remaining = "999.5".parse().unwrap();
        let text = encode(&status).unwrap();
        for line in [
            "lppsp_peers 2",
            "lppsp_peers_idle 1",
            "lppsp_price 2.5",
            "lppsp_epoch 3",
            "lppsp_pressure 1.5",
            "lppsp_queue_tasks 7",
            "lppsp_slots_busy 1",
            "lppsp_tasks_done_total 10",
            "lppsp_beacons_dropped_total{reason=\"bad_signature\"} 4",
            "lppsp_connections_refused_total 2",
            "lppsp_rounds_total{outcome=\"committed\"} 1",
            "lppsp_balance 999.5",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    #[test]
    fn the_ml_fit_becomes_balancer_series() {
        let mut status = NodeStatus::default();
        let m = &mut status.market;
        m.price = "2".parse().unwrap();
        m.epoch = 4;
        m.proposer = Some("0102030405060708".parse().unwrap());
        m.balancer = "ml: proposed 2 -> 2.2".into();
        m.balancer_kind = "ml".into();
        m.balancer_proposes = true;
        m.rounds.adopted_from_peers = 3;
        m.rounds.reconciliations = 1;
        m.balancer_state = Some(serde_json::json!({
            "balancer": "ml", "samples": 40, "usable_samples": 31,
            "fit": {"demand_elasticity": -0.8, "demand_r2": 0.93,
                    "supply_elasticity": 1.25, "supply_r2": 0.875,
                    "clearing_price": 2.5, "samples": 31},
            "last_proposal": {"at_ms": 1000, "price": "2.2", "probe": false,
                              "committed": true}}));
        let text = encode(&status).unwrap();
        for line in [
            "lppsp_market_proposer{proposer=\"0102030405060708\"} 1",
            "lppsp_balancer{kind=\"ml\",proposes=\"true\"} 1",
            "lppsp_balancer_fit_r2{side=\"demand\"} 0.93",
            "lppsp_balancer_fit_r2{side=\"supply\"} 0.875",
            "lppsp_balancer_elasticity{side=\"demand\"} -0.8",
            "lppsp_balancer_elasticity{side=\"supply\"} 1.25",
            "lppsp_balancer_clearing_price 2.5",
            "lppsp_balancer_samples{kind=\"used\"} 31",
            "lppsp_balancer_samples{kind=\"skipped\"} 9",
            "lppsp_balancer_proposal_price 2.2",
            "lppsp_rounds_adopted_total 3",
            "lppsp_reconciliations_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    #[test]
    fn series_without_a_value_are_left_out() {
        // An fsm node at the initial price: no proposer, no fit, no samples.
        let mut status = NodeStatus::default();
        status.market.price = "1".parse().unwrap();
        status.market.balancer = "fsm: idle, raising at pressure >= 2.0".into();
        status.market.balancer_kind = "fsm".into();
        status.market.balancer_proposes = true;
        let text = encode(&status).unwrap();
        assert!(
            text.lines()
                .any(|l| l == "lppsp_balancer{kind=\"fsm\",proposes=\"true\"} 1"),
            "{text}"
        );
        for absent in [
            "lppsp_market_proposer",
            "lppsp_balancer_fit_r2",
            "lppsp_balancer_elasticity",
            "lppsp_balancer_clearing_price",
            "lppsp_balancer_samples",
            "lppsp_balancer_proposal_price",
        ] {
            assert!(
                !text.lines().any(|l| l.starts_with(absent)),
                "{absent} served without a value:\n{text}"
            );
        }
        // An ml balancer without a fit yet serves its samples only.
        let mut status = NodeStatus::default();
        status.market.balancer_kind = "ml".into();
        status.market.balancer_state = Some(serde_json::json!({
            "samples": 3, "usable_samples": 0, "fit": null, "last_proposal": null}));
        let text = encode(&status).unwrap();
        assert!(
            text.lines()
                .any(|l| l == "lppsp_balancer_samples{kind=\"skipped\"} 3"),
            "{text}"
        );
        assert!(!text.contains("lppsp_balancer_fit_r2"), "{text}");
        assert!(!text.contains("lppsp_balancer_clearing_price"), "{text}");
    }

    #[test]
    fn a_status_without_sections_still_encodes() {
        let text = encode(&NodeStatus::default()).unwrap();
        assert!(text.contains("lppsp_peers 0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
