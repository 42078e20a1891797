//! `lppsp status`: ask a running local node for its book, market and counters.

use std::process::ExitCode;

use clap::Args;
use lppsp_runtime::control::reply::{MarketStatus, NodeStatus};
use lppsp_runtime::control::Request;

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    control: super::ControlArgs,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let socket = args.control.socket()?;
    if args.json {
        // The node's own line, as it sent it.
        let status = super::ask_node(&socket, &Request::Status, "status")?;
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    let status: NodeStatus = super::ask_node_typed(&socket, &Request::Status, "status")?;
    print_status(&status);
    Ok(ExitCode::SUCCESS)
}

/// An optional figure, `-` when absent.
fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A field of the balancer's own status (its shape is the balancer's).
fn s(v: &serde_json::Value, key: &str) -> String {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// The committed round, the one open, the rounds counters, and the state
/// the node started from.
fn print_round(m: &MarketStatus) {
    let proposer = match m.proposer {
        Some(p) => format!("round of {p}"),
        None => "initial price".into(),
    };
    let r = &m.rounds;
    println!(
        "committed: {} at epoch {} ({proposer})  rounds opened {} committed {} abandoned {}  \
         votes {}  adopted {}  reconciliations {}",
        m.price,
        m.epoch,
        r.rounds_opened,
        r.rounds_committed,
        r.rounds_abandoned,
        r.votes_cast,
        r.adopted_from_peers,
        r.reconciliations
    );
    if let Some(open) = &m.open_round {
        println!(
            "open round: epoch {} at {}, {} yes vote(s)",
            open.epoch, open.price, open.yes_votes
        );
    }
    if let Some(restored) = &m.restored {
        println!(
            "started from the stored state: epoch {} at {}",
            restored.epoch, restored.price
        );
    }
}

/// The balancer's own figures, where it reports the ones shown here.
fn print_balancer_state(state: &serde_json::Value) {
    if let (Some(samples), Some(used)) = (
        state.get("samples").and_then(|v| v.as_u64()),
        state.get("usable_samples").and_then(|v| v.as_u64()),
    ) {
        println!(
            "samples: {used} used, {} skipped (zero price, demand or supply), {} distinct price(s)",
            samples.saturating_sub(used),
            s(state, "distinct_prices")
        );
    }
    if let Some(fit) = state.get("fit").filter(|f| !f.is_null()) {
        let num = |k: &str| fit[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "fit: demand elasticity {:.3} (R2 {:.3})  supply elasticity {:.3} (R2 {:.3})  \
             clearing price {:.4}  samples {}",
            num("demand_elasticity"),
            num("demand_r2"),
            num("supply_elasticity"),
            num("supply_r2"),
            num("clearing_price"),
            fit["samples"],
        );
    }
    if let Some(reason) = state.get("reason").and_then(|r| r.as_str()) {
        println!("balancer: {reason}");
    }
    if let Some(last) = state.get("last_proposal").filter(|l| !l.is_null()) {
        println!(
            "last proposal: {} ({}, {})",
            s(last, "price"),
            if last["probe"] == true {
                "probe"
            } else {
                "clearing step"
            },
            if last["committed"] == true {
                "committed"
            } else {
                "not committed"
            }
        );
    }
}

fn print_status(st: &NodeStatus) {
    let node = &st.node;
    println!(
        "node {} ({})  {}  {} MFLOPS  {}  role {}  {}",
        node.id,
        node.name,
        node.addr,
        node.power,
        node.arch,
        serde_json::to_value(node.role)
            .ok()
            .and_then(|r| r.as_str().map(str::to_string))
            .unwrap_or_default(),
        node.software
    );
    let m = &st.market;
    println!(
        "price {}  epoch {}  pressure {}  balancer {}",
        m.price,
        m.epoch,
        opt(m.pressure),
        m.balancer
    );
    print_round(m);
    if let Some(state) = &m.balancer_state {
        print_balancer_state(state);
    }
    if !m.balancer_proposes {
        println!("balancer: proposes nothing here (the ml observer sets prices; this node votes)");
    }
    let b = &st.balance;
    println!(
        "balance {} (ledger; grant {})  remaining {}  unsettled {}  receipts {}",
        b.ledger.as_deref().unwrap_or("-"),
        b.grant,
        b.remaining,
        b.unsettled,
        st.ledger.receipts
    );
    let sh = &st.sharing;
    if sh.policy {
        if sh.available {
            println!("sharing: available");
        } else {
            println!(
                "sharing: unavailable ({})",
                sh.reason.as_deref().unwrap_or("-")
            );
        }
    }
    let peers = &st.peers;
    println!("\n{} peers", peers.len());
    if !peers.is_empty() {
        println!(
            "{:<16}  {:<21}  {:>8}  {:<8}  {:<6}  {:<5}  {:>5}  {:<13}  {:>9}",
            "ID", "ADDR", "MFLOPS", "ARCH", "CLIENT", "IDLE", "QUEUE", "SOFTWARE", "SEEN (ms)"
        );
        for p in peers {
            let sw = if p.compatible {
                p.software.clone()
            } else {
                format!("{} (incompatible)", p.software)
            };
            println!(
                "{:<16}  {:<21}  {:>8}  {:<8}  {:<6}  {:<5}  {:>5}  {:<13}  {:>9}",
                p.id.to_string(),
                p.addr,
                p.power,
                p.arch,
                p.is_client,
                p.idle,
                p.queue,
                sw,
                p.last_seen_ms_ago
            );
        }
    }
    if !st.dropped_beacons.is_empty() {
        let list: Vec<String> = st
            .dropped_beacons
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("\ndropped beacons: {}", list.join(", "));
    }
}
