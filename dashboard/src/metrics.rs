//! `/metrics`: the node's status as Prometheus (OpenMetrics text) metrics.
//!
//! The status already holds running totals, so each scrape builds a
//! fresh registry from the latest status instead of keeping metric
//! objects in step with the driver. Names and meanings are listed in
//! docs/dashboard.md; a test checks that every listed name is served.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::money;

type Labels = Vec<(String, String)>;

/// The metrics of one status, encoded.
pub fn encode(status: &Value) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("lppsp");
    let node = &status["node"];
    let market = &status["market"];
    let compute = &status["compute"];
    let balance = &status["balance"];

    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![
        ("id".into(), text_of(&node["id"])),
        ("name".into(), text_of(&node["name"])),
        ("software".into(), text_of(&node["software"])),
        ("protocol".into(), text_of(&node["protocol"])),
        ("arch".into(), text_of(&node["arch"])),
    ])
    .set(1);
    reg.register("node", "This node (value 1; labels say which)", info);

    let uint = |v: &Value| v.as_u64().unwrap_or(0);
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

    let peers = status["peers"].as_array().map_or(0, |p| p.len() as u64);
    gauge(&mut reg, "peers", "Peers in the information book", peers);
    let idle = status["peers"]
        .as_array()
        .map_or(0, |p| p.iter().filter(|p| p["idle"] == true).count() as u64);
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
        uint(&node["uptime_ms"]) / 1000,
    );
    gauge(
        &mut reg,
        "power_mflops",
        "Processing power this node offers, MFLOPS",
        uint(&node["power"]),
    );

    float(
        &mut reg,
        "price",
        "Committed market price, bounty per MFLOPS per second",
        money(&market["price"]),
    );
    gauge(
        &mut reg,
        "epoch",
        "Epoch of the committed price",
        uint(&market["epoch"]),
    );
    float(
        &mut reg,
        "pressure",
        "Pool pressure: tasks waiting per node (0 before the first tick)",
        market["pressure"].as_f64().unwrap_or(0.0),
    );
    gauge(
        &mut reg,
        "queue_tasks",
        "Tasks queued or running in the whole pool",
        uint(&market["demand_tasks"]),
    );
    gauge(
        &mut reg,
        "supply_mflops",
        "Idle processing power offered in the pool, MFLOPS",
        uint(&market["supply_mflops"]),
    );
    gauge(
        &mut reg,
        "round_open",
        "1 while a price round this node opened is in progress",
        u64::from(!market["open_round"].is_null()),
    );
    let rounds = Family::<Labels, Counter>::default();
    for (outcome, key) in [
        ("opened", "rounds_opened"),
        ("committed", "rounds_committed"),
        ("abandoned", "rounds_abandoned"),
    ] {
        rounds
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc_by(uint(&market["rounds"][key]));
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
        uint(&market["rounds"]["votes_cast"]),
    );
    counter(
        &mut reg,
        "rounds_adopted",
        "Other members' rounds this node adopted with the votes behind them",
        uint(&market["rounds"]["adopted_from_peers"]),
    );
    counter(
        &mut reg,
        "reconciliations",
        "Reconciliation rounds this node opened (members held other states)",
        uint(&market["rounds"]["reconciliations"]),
    );
    balancer(&mut reg, market);

    gauge(
        &mut reg,
        "slots",
        "Task slots this node offers",
        uint(&compute["slots"]),
    );
    gauge(
        &mut reg,
        "slots_busy",
        "Tasks running or queued on this node's slots",
        uint(&compute["load"]),
    );
    for (name, key, help) in [
        ("tasks_done", "tasks_done", "Tasks this node computed"),
        ("tasks_failed", "tasks_failed", "Tasks that failed here"),
        (
            "tasks_refused",
            "tasks_refused",
            "Tasks refused here (limits, clients without bounty)",
        ),
        (
            "tasks_cancelled",
            "tasks_cancelled",
            "Tasks cancelled by their client",
        ),
    ] {
        counter(&mut reg, name, help, uint(&compute[key]));
    }

    gauge(
        &mut reg,
        "jobs_active",
        "Jobs this node submitted that are running",
        uint(&status["jobs"]["active"]),
    );
    gauge(
        &mut reg,
        "job_tasks_in_pool",
        "Tasks of this node's jobs queued or running in the pool",
        uint(&status["jobs"]["tasks_in_pool"]),
    );

    reg.register(
        "beacons_dropped",
        "Beacons dropped, by reason",
        by_reason(&status["dropped_beacons"]),
    );
    reg.register(
        "member_refusals",
        "Frames, beacons and claims refused from members, by reason",
        by_reason(&status["member_refusals"]),
    );
    counter(
        &mut reg,
        "connections_refused",
        "Incoming connections refused (failed handshake, certificate not from the CA)",
        uint(&status["connections_refused"]),
    );

    gauge(
        &mut reg,
        "ledger_receipts",
        "Receipts in this node's ledger",
        uint(&status["ledger"]["receipts"]),
    );
    let receipts = Family::<Labels, Counter>::default();
    for (event, key) in [
        ("issued", "receipts_issued"),
        ("received", "receipts_received"),
        ("rejected", "receipts_rejected"),
        ("acknowledged", "receipts_acknowledged"),
    ] {
        receipts
            .get_or_create(&vec![("event".into(), event.into())])
            .inc_by(uint(&status["ledger"]["stats"][key]));
    }
    reg.register("receipts", "Receipts handled, by event", receipts);
    float(
        &mut reg,
        "balance",
        "Remaining bounty: grant + earned - spent, less unsettled charges",
        money(&balance["remaining"]),
    );
    float(
        &mut reg,
        "earned",
        "Bounty earned computing for others",
        money(&balance["earned"]),
    );
    float(
        &mut reg,
        "spent",
        "Bounty spent by this node's finished jobs",
        money(&balance["spent"]),
    );

    let mut out = String::new();
    text::encode(&mut out, &reg)?;
    Ok(out)
}

/// The committed round's proposer and the balancer: its kind, and what
/// the ml balancer's fit says. A series without a value (no proposer at
/// epoch 0, no fit yet, an fsm balancer) is left out rather than served
/// as 0.
fn balancer(reg: &mut Registry, market: &Value) {
    if let Some(proposer) = market["proposer"].as_str() {
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
    let kind = market["balancer_kind"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            // Older status: the kind leads its description ("fsm: ...").
            market["balancer"]
                .as_str()
                .and_then(|d| d.split(':').next())
                .map(str::to_string)
        });
    if let Some(kind) = kind {
        let family = Family::<Labels, Gauge>::default();
        family
            .get_or_create(&vec![
                ("kind".into(), kind),
                (
                    "proposes".into(),
                    (market["balancer_proposes"] != false).to_string(),
                ),
            ])
            .set(1);
        reg.register(
            "balancer",
            "This node's balancer (value 1; labels say which and whether it proposes here)",
            family,
        );
    }
    let state = &market["balancer_state"];
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

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A counter family labelled `reason` from a status object of counts by
/// reason (absent: no series).
fn by_reason(counts: &serde_json::Value) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    for (reason, n) in counts.as_object().into_iter().flatten() {
        family
            .get_or_create(&vec![("reason".into(), reason.clone())])
            .inc_by(n.as_u64().unwrap_or(0));
    }
    family
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_becomes_named_metrics() {
        let status = serde_json::json!({
            "node": {"id": "abc", "name": "n1", "uptime_ms": 5000, "power": 900},
            "market": {"price": "2.5", "epoch": 3, "pressure": 1.5, "demand_tasks": 7,
                       "rounds": {"rounds_opened": 2, "rounds_committed": 1}},
            "compute": {"slots": 2, "load": 1, "tasks_done": 10},
            "peers": [{"idle": true}, {"idle": false}],
            "dropped_beacons": {"bad_signature": 4},
            "connections_refused": 2,
            "balance": {"remaining": "999.5"},
        });
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
        let status = serde_json::json!({
            "market": {"price": "2", "epoch": 4, "proposer": "0102030405060708",
                       "balancer": "ml: proposed 2 -> 2.2", "balancer_kind": "ml",
                       "balancer_proposes": true,
                       "rounds": {"adopted_from_peers": 3, "reconciliations": 1},
                       "balancer_state": {
                           "balancer": "ml", "samples": 40, "usable_samples": 31,
                           "fit": {"demand_elasticity": -0.8, "demand_r2": 0.93,
                                   "supply_elasticity": 1.25, "supply_r2": 0.875,
                                   "clearing_price": 2.5, "samples": 31},
                           "last_proposal": {"at_ms": 1000, "price": "2.2", "probe": false,
                                             "committed": true}}},
        });
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
        let status = serde_json::json!({
            "market": {"price": "1", "epoch": 0, "proposer": null,
                       "balancer": "fsm: idle, raising at pressure >= 2.0",
                       "balancer_kind": "fsm", "balancer_proposes": true,
                       "balancer_state": null},
        });
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
        let status = serde_json::json!({
            "market": {"balancer_kind": "ml", "balancer_proposes": false,
                       "balancer_state": {"samples": 3, "usable_samples": 0, "fit": null,
                                          "last_proposal": null}},
        });
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
        let text = encode(&serde_json::json!({})).unwrap();
        assert!(text.contains("lppsp_peers 0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
