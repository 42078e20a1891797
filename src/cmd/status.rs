//! `lppsp status`: ask a running local node for its book, market and counters.

use std::process::ExitCode;

use clap::Args;
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
    let status = super::ask_node(&args.control.socket()?, &Request::Status, "status")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_status(&status);
    Ok(ExitCode::SUCCESS)
}

fn s(v: &serde_json::Value, key: &str) -> String {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// The committed round, the one open, the rounds counters, and the state
/// the node started from.
fn print_round(m: &serde_json::Value) {
    let proposer = match m["proposer"].as_str() {
        Some(p) => format!("round of {p}"),
        None => "initial price".into(),
    };
    let r = &m["rounds"];
    println!(
        "committed: {} at epoch {} ({proposer})  rounds opened {} committed {} abandoned {}  \
         votes {}  adopted {}  reconciliations {}",
        s(m, "price"),
        s(m, "epoch"),
        s(r, "rounds_opened"),
        s(r, "rounds_committed"),
        s(r, "rounds_abandoned"),
        s(r, "votes_cast"),
        s(r, "adopted_from_peers"),
        s(r, "reconciliations")
    );
    let open = &m["open_round"];
    if !open.is_null() {
        println!(
            "open round: epoch {} at {}, {} yes vote(s)",
            s(open, "epoch"),
            s(open, "price"),
            s(open, "yes_votes")
        );
    }
    let restored = &m["restored"];
    if !restored.is_null() {
        println!(
            "started from the stored state: epoch {} at {}",
            s(restored, "epoch"),
            s(restored, "price")
        );
    }
}

fn print_status(st: &serde_json::Value) {
    let node = &st["node"];
    println!(
        "node {} ({})  {}  {} MFLOPS  {}  role {}  {}",
        s(node, "id"),
        s(node, "name"),
        s(node, "addr"),
        s(node, "power"),
        s(node, "arch"),
        s(node, "role"),
        s(node, "software")
    );
    let m = &st["market"];
    println!(
        "price {}  epoch {}  pressure {}  balancer {}",
        s(m, "price"),
        s(m, "epoch"),
        s(m, "pressure"),
        s(m, "balancer")
    );
    print_round(m);
    let state = &m["balancer_state"];
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
    if m["balancer_proposes"] == false {
        println!("balancer: proposes nothing here (the ml observer sets prices; this node votes)");
    }
    let b = &st["balance"];
    println!(
        "balance {} (ledger; grant {})  remaining {}  unsettled {}  receipts {}",
        s(b, "ledger"),
        s(b, "grant"),
        s(b, "remaining"),
        s(b, "unsettled"),
        s(&st["ledger"], "receipts")
    );
    let sh = &st["sharing"];
    if sh["policy"].as_bool() == Some(true) {
        match sh["available"].as_bool() {
            Some(false) => println!("sharing: unavailable ({})", s(sh, "reason")),
            _ => println!("sharing: available"),
        }
    }
    let empty = Vec::new();
    let peers = st["peers"].as_array().unwrap_or(&empty);
    println!("\n{} peers", peers.len());
    if !peers.is_empty() {
        println!(
            "{:<16}  {:<21}  {:>8}  {:<8}  {:<6}  {:<5}  {:>5}  {:<13}  {:>9}",
            "ID", "ADDR", "MFLOPS", "ARCH", "CLIENT", "IDLE", "QUEUE", "SOFTWARE", "SEEN (ms)"
        );
        for p in peers {
            let sw = if p["compatible"].as_bool() == Some(false) {
                format!("{} (incompatible)", s(p, "software"))
            } else {
                s(p, "software")
            };
            println!(
                "{:<16}  {:<21}  {:>8}  {:<8}  {:<6}  {:<5}  {:>5}  {:<13}  {:>9}",
                s(p, "id"),
                s(p, "addr"),
                s(p, "power"),
                s(p, "arch"),
                s(p, "is_client"),
                s(p, "idle"),
                s(p, "queue"),
                sw,
                s(p, "last_seen_ms_ago")
            );
        }
    }
    if let Some(drops) = st["dropped_beacons"].as_object() {
        let list: Vec<String> = drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("\ndropped beacons: {}", list.join(", "));
    }
}
