//! `lppsp sim SCENARIO --real`: the scenario run by real node processes on
//! loopback instead of the simulator, written in the simulator's output
//! format, so the two can be put side by side (docs/experiments.md, "Real
//! nodes and the simulator").
//!
//! The population and the jobs are the simulator's own draws
//! (`lppsp_sim::draws`, same seed, same streams): each node gets the drawn
//! power (as `[share] max_mflops`), slots and reserve price (`[share]
//! min_price`); clients run as `both`, the others as `compute`; each job is
//! submitted by `lppsp submit` at its time, from its client, with its max
//! price, as a W2 (Monte Carlo) job of the drawn task count whose samples
//! follow the drawn work. The nodes are sampled through their control
//! sockets every `sample_every_s`. Time is real: a scenario of 300 s takes
//! 300 s per strategy and seed.
//!
//! Not reproduced (a warning names each one the scenario uses): churn,
//! partitions, link latency and loss (loopback has none), architecture
//! constraints, and populations above [`MAX_NODES`].

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use lppsp_core::money::{Bounty, Price};
use lppsp_runtime::control::reply::NodeStatus;
use lppsp_sim::draws::{self, JobDraw, NodeDraw};
use lppsp_sim::engine::{EarningsRow, SeriesRow};
use lppsp_sim::output::Written;
use lppsp_sim::scenario::NO_BALANCER;
use lppsp_sim::{RunOutput, Scenario};

use super::cluster::{self, Cluster, NodeSpec};

/// Most node processes one run starts (2 cores run them all).
pub const MAX_NODES: u32 = 24;
/// W2 samples per MFLOP of drawn task work (a sample is about 20 flop).
const SAMPLES_PER_MFLOP: u64 = 50_000;

/// Runs every strategy under every seed on real nodes and writes the
/// simulator's outputs into `out`.
pub fn run(sc: &Scenario, seeds: &[u64], out: &Path) -> anyhow::Result<Written> {
    for why in not_reproduced(sc) {
        eprintln!("warning: --real does not reproduce {why}");
    }
    let mut runs = Vec::new();
    for (s, strategy) in sc.strategies.iter().enumerate() {
        for &seed in seeds {
            eprintln!(
                "real nodes: strategy {} seed {seed}, {} s",
                strategy.name, sc.duration_s
            );
            let r = run_one(sc, s, seed)
                .with_context(|| format!("strategy {} seed {seed}", strategy.name))?;
            runs.push((s, seed, r));
        }
    }
    Ok(lppsp_sim::output::write_all(sc, seeds, &runs, out)?)
}

/// What of the scenario real nodes on loopback leave out.
fn not_reproduced(sc: &Scenario) -> Vec<String> {
    let mut out = Vec::new();
    let pop = &sc.population;
    if pop.join_per_hour > 0.0 || pop.leave_per_hour > 0.0 || pop.fail_per_hour > 0.0 {
        out.push("churn (population.join/leave/fail_per_hour)".to_string());
    }
    if !sc.links.partitions.is_empty() {
        out.push("partitions (links.partitions)".to_string());
    }
    if sc.links.latency_ms > 0 || sc.links.jitter_ms > 0 || sc.links.loss > 0.0 {
        out.push("link latency, jitter and loss (loopback has none)".to_string());
    }
    if sc.jobs.arch_constrained > 0.0 {
        out.push("architecture constraints (jobs.arch_constrained)".to_string());
    }
    out
}

/// A node's config sections for strategy `s`.
fn node_spec(sc: &Scenario, s: usize, index: usize, node: &NodeDraw) -> anyhow::Result<NodeSpec> {
    let mut extra = format!(
        "[market]\ninitial_price = \"{}\"\nmin_move_interval_ms = 0\n\n[share]\nslots = {}\nmax_mflops = {}\n",
        sc.initial_price,
        sc.population.slots.max(1),
        node.power,
    );
    if node.reserve > Price::ZERO {
        extra.push_str(&format!("min_price = \"{}\"\n", node.reserve));
    }
    extra.push('\n');
    extra.push_str(&balancer_section(sc, s)?);
    Ok(NodeSpec {
        name: format!("node-{index:02}"),
        role: if node.is_client { "both" } else { "compute" },
        command: "node",
        network: network_lines(sc),
        extra,
    })
}

fn network_lines(sc: &Scenario) -> String {
    format!(
        "tick_ms = {}\nexpire_ticks = {}\n",
        sc.tick_ms, sc.expire_ticks
    )
}

/// The `[balancer]` section of strategy `s`. The FSM is mandatory on a
/// real node, so `none` is the FSM with a threshold no pool reaches.
fn balancer_section(sc: &Scenario, s: usize) -> anyhow::Result<String> {
    let st = &sc.strategies[s];
    let mut balancer = toml::Table::new();
    let mut options: toml::Table = st.options.clone().into_iter().collect();
    if st.kind == NO_BALANCER {
        balancer.insert("kind".into(), "fsm".into());
        options = toml::Table::new();
        options.insert("threshold_milli".into(), toml::Value::Integer(i64::MAX));
    } else {
        balancer.insert("kind".into(), st.kind.clone().into());
        if let Some(p) = &st.path {
            balancer.insert("path".into(), p.display().to_string().into());
        }
    }
    balancer.insert("options".into(), toml::Value::Table(options));
    let mut doc = toml::Table::new();
    doc.insert("balancer".into(), toml::Value::Table(balancer));
    toml::to_string(&doc).context("writing the balancer section")
}

/// One job in flight: its `lppsp submit` process.
struct Submitted {
    child: Child,
    at: Instant,
}

/// What the runner counts of the jobs.
#[derive(Default)]
struct JobCounts {
    submitted: u64,
    done: u64,
    failed: u64,
    latencies_ms: Vec<u64>,
    latency_mark: usize,
}

fn run_one(sc: &Scenario, s: usize, seed: u64) -> anyhow::Result<RunOutput> {
    let count = sc.population.count;
    if !(2..=MAX_NODES).contains(&count) {
        bail!("population.count is {count}; --real runs 2 to {MAX_NODES} nodes");
    }
    let mut pop_rng = draws::stream(seed, draws::POPULATION_STREAM);
    let nodes: Vec<NodeDraw> = (0..count)
        .map(|_| draws::node(&mut pop_rng, &sc.population))
        .collect();
    let mut specs = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| node_spec(sc, s, i, n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // An observer balancer (ml) proposes from its own node, as on a LAN.
    let observer = sc.strategies[s].kind == "ml";
    if observer {
        specs.push(NodeSpec {
            name: "observer".into(),
            role: "observer",
            command: "observe",
            network: network_lines(sc),
            extra: balancer_section(sc, s)?,
        });
    }
    let clients: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].is_client).collect();
    let mut cluster = Cluster::start_nodes(&specs, "lppsp-real-", "lppsp real-run community")?;
    wait_all_see_each_other(&mut cluster, Duration::from_secs(120))?;

    let exe = std::env::current_exe().context("finding the lppsp binary")?;
    let jobs = draws::all_jobs(sc, seed);
    eprintln!(
        "real nodes: {} nodes ({} clients{}), {} jobs drawn; logs in {}",
        nodes.len(),
        clients.len(),
        if observer { ", an observer" } else { "" },
        jobs.len(),
        cluster.dir().display()
    );
    let mut next_job = jobs.iter().peekable();
    let mut running: Vec<Submitted> = Vec::new();
    let mut counts = JobCounts::default();
    let mut out = RunOutput {
        series: Vec::new(),
        earnings: Vec::new(),
        latencies_ms: Vec::new(),
        trace: Vec::new(),
        receipts: Vec::new(),
        balancer_state: None,
    };
    let start = Instant::now();
    let end = Duration::from_secs(sc.duration_s);
    let every = Duration::from_secs(sc.sample_every_s.max(1));
    let mut next_sample = every;
    // Until the last sample, at the scenario's end (as the simulator's).
    while next_sample <= end {
        let now = start.elapsed();
        while let Some((_, job)) = next_job.next_if(|(at, _)| Duration::from_millis(*at) <= now) {
            let Some(c) = draws::pick_client(job.client_pick, &clients) else {
                continue;
            };
            let child = submit(&exe, &cluster.nodes[c].control, sc, job)?;
            running.push(Submitted {
                child,
                at: Instant::now(),
            });
            counts.submitted += 1;
        }
        reap(&mut running, &mut counts);
        if now >= next_sample {
            next_sample += every;
            out.series.push(sample_row(&cluster, now, &mut counts));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reap(&mut running, &mut counts);
    for mut r in running {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
    out.latencies_ms = counts.latencies_ms.clone();
    out.earnings = earnings(&cluster, &nodes);
    out.balancer_state = cluster.nodes[specs.len() - 1]
        .status()
        .map(|st| st.market.balancer);
    cluster.stop();
    Ok(out)
}

/// Waits until every node's book lists every other node.
fn wait_all_see_each_other(cluster: &mut Cluster, timeout: Duration) -> anyhow::Result<()> {
    let t = Instant::now();
    let want = cluster.nodes.len() - 1;
    loop {
        let ready = cluster
            .nodes
            .iter()
            .all(|n| n.status().is_some_and(|s| s.peers.len() >= want));
        if ready {
            return Ok(());
        }
        if t.elapsed() > timeout {
            bail!(
                "the nodes did not find each other within {} s; logs are in {}",
                timeout.as_secs(),
                cluster.dir().display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `lppsp submit` of one drawn job from the client at `control`.
fn submit(exe: &Path, control: &Path, sc: &Scenario, job: &JobDraw) -> anyhow::Result<Child> {
    let tasks = job.works.len().max(1) as u64;
    let mean_mflop = job.works.iter().sum::<u64>() / tasks;
    let samples = mean_mflop.saturating_mul(SAMPLES_PER_MFLOP).max(1);
    let budget = Bounty::from_micros(sc.jobs.budget.micros());
    let mut cmd = Command::new(exe);
    cmd.arg("submit")
        .arg("--control")
        .arg(control)
        .args(["--kernel", "w2-monte-carlo-pi"])
        .args(["--range", &format!("0..{tasks}")])
        .args(["--extra", &samples.to_string()])
        .args(["--budget", &budget.to_string()])
        .args(["--attempts", &sc.jobs.max_attempts.max(1).to_string()])
        .args(["--task-timeout", &sc.jobs.task_timeout_s.max(1).to_string()])
        .arg("--json");
    if let Some(p) = job.max_price {
        cmd.args(["--max-price", &p.to_string()]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting lppsp submit")
}

/// Counts the submit processes that ended: exit 0 is a job done.
fn reap(running: &mut Vec<Submitted>, counts: &mut JobCounts) {
    running.retain_mut(|r| match r.child.try_wait() {
        Ok(Some(status)) => {
            if status.success() {
                counts.done += 1;
                counts
                    .latencies_ms
                    .push(r.at.elapsed().as_millis().try_into().unwrap_or(u64::MAX));
            } else {
                counts.failed += 1;
            }
            false
        }
        Ok(None) => true,
        Err(_) => false,
    });
}

/// An amount of money as a number for the series.
fn money(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// One series row from every node's status.
fn sample_row(cluster: &Cluster, now: Duration, counts: &mut JobCounts) -> SeriesRow {
    let statuses: Vec<NodeStatus> = cluster
        .nodes
        .iter()
        .filter_map(cluster::Node::status)
        .collect();
    let prices: Vec<f64> = statuses
        .iter()
        .map(|s| money(s.market.price.micros()))
        .collect();
    // The price most nodes hold.
    let mut price = 0.0;
    let mut best = 0;
    for p in &prices {
        let n = prices.iter().filter(|q| *q == p).count();
        if n > best {
            best = n;
            price = *p;
        }
    }
    let first = statuses.first();
    let market = first.map(|s| &s.market);
    let mut slots = 0u64;
    let mut busy = 0u64;
    let mut tasks_done = 0u64;
    let mut pending = 0u64;
    for s in &statuses {
        if let Some(c) = &s.compute {
            let n = u64::from(c.slots);
            slots += n;
            busy += c.load.min(n);
            tasks_done += c.tasks_done;
        }
        // Tasks of live jobs not yet placed, as the simulator counts them.
        pending += s
            .jobs
            .list
            .iter()
            .filter_map(|j| j.progress.as_ref().map(|p| p.pending))
            .sum::<u64>();
    }
    let new = &counts.latencies_ms[counts.latency_mark..];
    let latency_mean_s = if new.is_empty() {
        0.0
    } else {
        new.iter().sum::<u64>() as f64 / new.len() as f64 / 1000.0
    };
    counts.latency_mark = counts.latencies_ms.len();
    SeriesRow {
        time_s: now.as_secs_f64().round(),
        nodes: statuses.len() as u64,
        price,
        price_max: prices.iter().copied().fold(0.0, f64::max),
        epoch_max: statuses.iter().map(|s| s.market.epoch).max().unwrap_or(0),
        pressure: market.and_then(|m| m.pressure).unwrap_or(0.0),
        demand_tasks: market.and_then(|m| m.demand_tasks).unwrap_or(0),
        supply_mflops: market.and_then(|m| m.supply_mflops).unwrap_or(0),
        queue: busy,
        pending,
        utilisation: if slots == 0 {
            0.0
        } else {
            busy as f64 / slots as f64
        },
        jobs_submitted: counts.submitted,
        jobs_done: counts.done,
        jobs_failed: counts.failed,
        jobs_deterred: 0,
        jobs_lost: 0,
        latency_mean_s,
        tasks_done,
        receipts: statuses
            .iter()
            .map(|s| s.ledger.receipts)
            .max()
            .unwrap_or(0),
        money_total: 0.0,
        conserved: true,
    }
}

/// Each node's earnings from its status at the end.
fn earnings(cluster: &Cluster, nodes: &[NodeDraw]) -> Vec<EarningsRow> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let st = cluster.nodes.get(i).and_then(cluster::Node::status);
            let st = st.as_ref();
            EarningsRow {
                node: cluster
                    .nodes
                    .get(i)
                    .map_or_else(String::new, |c| c.id.clone()),
                index: i,
                power: n.power,
                arch: n.arch.clone(),
                alive: st.is_some(),
                tasks_done: st.and_then(|s| s.compute).map_or(0, |c| c.tasks_done),
                tasks_refused: st.and_then(|s| s.compute).map_or(0, |c| c.tasks_refused),
                earned: st.map_or(0.0, |s| money(s.balance.earned.micros())),
                balance: st
                    .and_then(|s| s.balance.ledger.as_deref())
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(0.0),
            }
        })
        .collect()
}
