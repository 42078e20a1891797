//! `lppsp demo`: a local LAN on loopback (a CA, one client and two compute
//! nodes as real child processes), one job from submission to result, and
//! what each node earned. Everything lives in a temp dir removed at the end.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use lppsp_core::money::Bounty;
use lppsp_runtime::client::{InputSpec, SubmitRequest};

use super::cluster::Cluster;

#[derive(Args)]
pub struct DemoArgs {
    /// Compute nodes to start.
    #[arg(long, default_value_t = 2)]
    nodes: u32,
    /// Monte Carlo pi tasks.
    #[arg(long, default_value_t = 200)]
    tasks: u64,
    /// Samples per task.
    #[arg(long, default_value_t = 2_000_000)]
    samples: u64,
    /// Keep the temp dir (configs, certificates, logs) for inspection.
    #[arg(long)]
    keep: bool,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut cluster = Cluster::start(args.nodes, "lppsp-demo-", "lppsp demo community", "")?;
    println!(
        "lppsp demo: a LAN of 1 client + {} compute nodes on loopback, in {}",
        args.nodes,
        cluster.dir().display()
    );
    for n in &cluster.nodes {
        println!(
            "  started {:<10} node id {}  tls 127.0.0.1:{}  dashboard http://{}/",
            n.name, n.id, n.tls, n.dashboard
        );
    }

    let t = Instant::now();
    cluster.wait_ready(Duration::from_secs(30))?;
    println!(
        "  the client's book lists {} compute nodes after {:.2} s\n",
        args.nodes,
        t.elapsed().as_secs_f64()
    );
    println!(
        "submitting: Monte Carlo pi, {} tasks x {} samples (kernel w2-monte-carlo-pi)",
        args.tasks, args.samples
    );
    let req = SubmitRequest {
        kernel: "w2-monte-carlo-pi".into(),
        module: None,
        fuel: None,
        inputs: InputSpec::Range {
            start: 0,
            end: args.tasks,
            extra: vec![args.samples],
        },
        budget: None,
        arch: None,
        min_power: 0,
        max_attempts: 3,
        task_timeout_s: 120,
        est_task_ms: 10,
        verify: 1,
        resume: None,
        max_price: None,
    };
    let last = super::submit::follow(&cluster.client().control, req, false)?;
    let code = super::submit::summarize(last.as_ref());

    // The job's charges are settled in signed receipts as it ends; wait
    // (briefly) until every node's ledger holds them all, so the balances
    // below are the ledgers' and agree.
    let settled = |nodes: &[super::cluster::Node]| {
        let counts: Vec<Option<u64>> = nodes
            .iter()
            .map(|n| n.status().map(|st| st.ledger.receipts))
            .collect();
        let client_done = nodes.first().and_then(|n| n.status()).is_some_and(|st| {
            st.balance.unsettled == Bounty::ZERO
                && st.ledger.stats.receipts_acknowledged == st.ledger.stats.receipts_issued
        });
        client_done
            && counts
                .iter()
                .all(|c| c.is_some() && Some(c) == counts.first())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !settled(&cluster.nodes) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    println!("\nbalances from each node's ledger (grant + earned - spent):");
    for n in &cluster.nodes {
        if let Some(st) = n.status() {
            println!(
                "  {:<10} {}  balance {:>16}  receipts {}",
                n.name,
                st.node.id,
                st.balance.ledger.as_deref().unwrap_or("?"),
                st.ledger.receipts
            );
        }
    }
    if args.keep {
        let kept = cluster.keep();
        println!("\nkept {}", kept.display());
    }
    Ok(code)
}
