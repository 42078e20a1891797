//! `lppsp ledger`: the receipts in a running node's ledger and the
//! balances they give, as a table or CSV.

use std::process::ExitCode;

use clap::Args;
use lppsp_core::NodeId;
use lppsp_runtime::control::Request;

#[derive(Args)]
pub struct LedgerArgs {
    #[command(flatten)]
    control: super::ControlArgs,
    /// Only receipts naming this node as payer or payee.
    #[arg(long)]
    node: Option<NodeId>,
    /// Most receipts to list.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Receipts as CSV (a header line, then one line per receipt).
    #[arg(long)]
    csv: bool,
}

const COLUMNS: [&str; 11] = [
    "job", "payer", "payee", "seq", "price", "power", "tasks", "seconds", "fuel", "charge",
    "issued",
];

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn run(args: LedgerArgs) -> anyhow::Result<ExitCode> {
    let request = Request::Ledger {
        node: args.node,
        limit: Some(args.limit),
    };
    let reply = super::ask_node(&args.control.socket()?, &request, "ledger")?;
    let empty = Vec::new();
    let receipts = reply["receipts"].as_array().unwrap_or(&empty);
    if args.csv {
        println!("{}", COLUMNS.join(","));
        for r in receipts {
            let row: Vec<String> = COLUMNS.iter().map(|c| cell(&r[*c])).collect();
            println!("{}", row.join(","));
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("balances (grant {}):", cell(&reply["grant"]));
    for b in reply["balances"].as_array().unwrap_or(&empty) {
        println!("  {}  {:>20}", cell(&b["node"]), cell(&b["balance"]));
    }
    println!("\n{} receipts", receipts.len());
    if !receipts.is_empty() {
        println!(
            "{:<16}  {:<16}  {:<16}  {:>5}  {:>8}  {:>7}  {:>6}  {:>10}  {:>14}",
            "JOB", "PAYER", "PAYEE", "SEQ", "PRICE", "MFLOPS", "TASKS", "SECONDS", "CHARGE"
        );
        for r in receipts {
            println!(
                "{:<16}  {:<16}  {:<16}  {:>5}  {:>8}  {:>7}  {:>6}  {:>10.3}  {:>14}",
                cell(&r["job"]),
                cell(&r["payer"]),
                cell(&r["payee"]),
                cell(&r["seq"]),
                cell(&r["price"]),
                cell(&r["power"]),
                cell(&r["tasks"]),
                r["seconds"].as_f64().unwrap_or(0.0),
                cell(&r["charge"]),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
