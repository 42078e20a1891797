//! `lppsp ledger`: the receipts in a running node's ledger and the
//! balances they give, as a table or CSV.

use std::process::ExitCode;

use clap::Args;
use lppsp_core::NodeId;
use lppsp_runtime::control::reply::{LedgerReply, ReceiptEntry};
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

/// One receipt as a CSV row, in the order of [`COLUMNS`].
fn csv_row(r: &ReceiptEntry) -> [String; 11] {
    [
        r.job.clone(),
        r.payer.to_string(),
        r.payee.to_string(),
        r.seq.to_string(),
        r.price.to_string(),
        r.power.to_string(),
        r.tasks.to_string(),
        r.seconds.to_string(),
        r.fuel.map(|f| f.to_string()).unwrap_or_default(),
        r.charge.to_string(),
        r.issued.to_string(),
    ]
}

pub fn run(args: LedgerArgs) -> anyhow::Result<ExitCode> {
    let request = Request::Ledger {
        node: args.node,
        limit: Some(args.limit),
    };
    let reply: LedgerReply = super::ask_node_typed(&args.control.socket()?, &request, "ledger")?;
    let receipts = &reply.receipts;
    if args.csv {
        println!("{}", COLUMNS.join(","));
        for r in receipts {
            println!("{}", csv_row(r).join(","));
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("balances (grant {}):", reply.grant);
    for b in &reply.balances {
        println!("  {}  {:>20}", b.node, b.balance);
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
                r.job,
                r.payer.to_string(),
                r.payee.to_string(),
                r.seq,
                r.price.to_string(),
                r.power,
                r.tasks,
                r.seconds,
                r.charge.to_string(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
