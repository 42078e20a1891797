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
//! follow the drawn work: the runner first times W2 on one core of this
//! machine and sizes tasks so that one of W MFLOP runs W / P seconds there,
//! P the population's mean drawn power, as the simulator times it. The
//! nodes are sampled through their control sockets every `sample_every_s`.
//! Time is real: a scenario of 300 s takes 300 s per strategy and seed.
//!
//! Besides the simulator's files, each run writes `real-seed<S>.json` in
//! its strategy's folder ([`RealRun`]): per node the committed price
//! history, tasks done and refused, refusals by reason, and the receipts'
//! totals, which the simulator's output format has no column for.
//!
//! Not reproduced (a warning names each one the scenario uses): churn,
//! partitions, link latency and loss (loopback has none), architecture
//! constraints, and populations above [`MAX_NODES`].

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use lppsp_core::money::{Bounty, Price};
use lppsp_executor_builtin as builtin;
use lppsp_runtime::control::reply::{LedgerReply, NodeStatus};
use lppsp_runtime::control::{self, Request};
use lppsp_sim::draws::{self, JobDraw, NodeDraw};
use lppsp_sim::engine::{EarningsRow, SeriesRow};
use lppsp_sim::output::Written;
use lppsp_sim::scenario::NO_BALANCER;
use lppsp_sim::{RunOutput, Scenario};
use serde::Serialize;

use super::cluster::{self, Cluster, NodeSpec};

/// Most node processes one run starts (2 cores run them all).
pub const MAX_NODES: u32 = 24;
/// How long the runner times W2 on one core before a run: long enough to
/// average over the scheduler's time slices, short beside any scenario.
const CALIBRATION: Duration = Duration::from_millis(300);
/// W2 samples timed at once during calibration (a few ms each).
const CALIBRATION_CHUNK: u64 = 100_000;
/// Receipts read back from a client's ledger at the end, at most (the
/// node's own cap on one `ledger` request).
const MAX_RECEIPTS: usize = 100_000;

/// Runs every strategy under every seed on real nodes and writes the
/// simulator's outputs into `out`.
pub fn run(sc: &Scenario, seeds: &[u64], out: &Path) -> anyhow::Result<Written> {
    for why in not_reproduced(sc) {
        eprintln!("warning: --real does not reproduce {why}");
    }
    let mut runs = Vec::new();
    let mut extras = Vec::new();
    for (s, strategy) in sc.strategies.iter().enumerate() {
        for &seed in seeds {
            eprintln!(
                "real nodes: strategy {} seed {seed}, {} s",
                strategy.name, sc.duration_s
            );
            let (r, extra) = run_one(sc, s, seed)
                .with_context(|| format!("strategy {} seed {seed}", strategy.name))?;
            runs.push((s, seed, r));
            extras.push((s, seed, extra));
        }
    }
    let mut written = lppsp_sim::output::write_all(sc, seeds, &runs, out)?;
    for (s, seed, extra) in extras {
        let path = out
            .join(&sc.strategies[s].name)
            .join(format!("real-seed{seed}.json"));
        let text = serde_json::to_string_pretty(&extra).context("writing the real run's nodes")?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        written.files.push(path);
    }
    Ok(written)
}

/// What a real run saw beyond the simulator's output format
/// (`real-seed<S>.json`).
#[derive(Debug, Serialize)]
pub struct RealRun {
    /// W2 samples per MFLOP of drawn work in this run's tasks.
    pub samples_per_mflop: u64,
    pub nodes: Vec<RealNode>,
    /// The receipts in the first client's ledger at the end.
    pub receipts: ReceiptTotals,
}

/// One node at the end of a real run.
#[derive(Debug, Serialize)]
pub struct RealNode {
    pub index: usize,
    pub name: String,
    pub id: String,
    /// The drawn reserve price.
    pub reserve: f64,
    /// The power the node offered (its benchmark, capped by the draw).
    pub power: u64,
    pub tasks_done: u64,
    pub tasks_failed: u64,
    /// Tasks this node refused, every reason together (the node counts
    /// no reasons for these).
    pub tasks_refused: u64,
    /// What this node refused from members, by reason.
    pub member_refusals: BTreeMap<String, u64>,
    pub earned: f64,
    pub spent: f64,
    /// Every committed price this node took: (ms on its clock, epoch, price).
    pub history: Vec<(u64, u64, f64)>,
    /// Whether the node answered at the end.
    pub answered: bool,
}

/// Totals over receipts.
#[derive(Debug, Default, Serialize)]
pub struct ReceiptTotals {
    pub count: u64,
    /// The bounty charged.
    pub charge: f64,
    /// Power x time charged for, MFLOP (charge / this is the mean price).
    pub mflop: f64,
}

/// W2 samples one core of this machine draws per second, as it is loaded now.
fn w2_samples_per_second() -> u64 {
    let start = Instant::now();
    let mut samples = 0u64;
    while start.elapsed() < CALIBRATION {
        std::hint::black_box(builtin::w2_hits(samples, CALIBRATION_CHUNK));
        samples = samples.saturating_add(CALIBRATION_CHUNK);
    }
    let micros = u64::try_from(start.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    u64::try_from(u128::from(samples) * 1_000_000 / u128::from(micros))
        .unwrap_or(u64::MAX)
        .max(1)
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
        "[market]\ninitial_price = \"{}\"\ngrant = \"{}\"\nmin_move_interval_ms = 0\n\n[share]\nslots = {}\nmax_mflops = {}\n",
        sc.initial_price,
        sc.grant,
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

fn run_one(sc: &Scenario, s: usize, seed: u64) -> anyhow::Result<(RunOutput, RealRun)> {
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
    if let Err(e) = wait_all_see_each_other(&mut cluster, Duration::from_secs(120)) {
        // The error names a log in the cluster's folder: keep it.
        cluster.keep();
        return Err(e);
    }
    warn_below_draw(&cluster, &nodes);

    let exe = std::env::current_exe().context("finding the lppsp binary")?;
    let jobs = draws::all_jobs(sc, seed);
    // Timed with the nodes up and idle, as loaded as the run will find
    // the machine: a task of W MFLOP then runs W / P s on one core here.
    let mean_power = nodes.iter().map(|n| n.power).sum::<u64>() / u64::from(count);
    let samples_per_mflop = (w2_samples_per_second() / mean_power.max(1)).max(1);
    eprintln!(
        "real nodes: {} nodes ({} clients{}), {} jobs drawn, {samples_per_mflop} W2 samples per MFLOP; logs in {}",
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
            let child = submit(&exe, &cluster.nodes[c].control, sc, job, samples_per_mflop)?;
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
    let real = RealRun {
        samples_per_mflop,
        nodes: real_nodes(&cluster, &nodes),
        receipts: clients
            .first()
            .map(|&c| receipt_totals(&cluster.nodes[c].control))
            .unwrap_or_default(),
    };
    cluster.stop();
    Ok((out, real))
}

/// Each drawn node's counters and price history from its status.
fn real_nodes(cluster: &Cluster, nodes: &[NodeDraw]) -> Vec<RealNode> {
    nodes
        .iter()
        .zip(&cluster.nodes)
        .enumerate()
        .map(|(index, (draw, node))| {
            let st = node.status();
            let compute = st.as_ref().and_then(|s| s.compute).unwrap_or_default();
            RealNode {
                index,
                name: node.name.clone(),
                id: node.id.clone(),
                reserve: money(draw.reserve.micros()),
                power: st.as_ref().map_or(0, |s| s.node.power),
                tasks_done: compute.tasks_done,
                tasks_failed: compute.tasks_failed,
                tasks_refused: compute.tasks_refused,
                member_refusals: st
                    .as_ref()
                    .map(|s| s.member_refusals.clone())
                    .unwrap_or_default(),
                earned: st
                    .as_ref()
                    .map_or(0.0, |s| money(s.balance.earned.micros())),
                spent: st.as_ref().map_or(0.0, |s| money(s.balance.spent.micros())),
                history: st.as_ref().map_or_else(Vec::new, |s| {
                    s.market
                        .history
                        .iter()
                        .map(|r| (r.at_ms, r.state.epoch, money(r.state.price.micros())))
                        .collect()
                }),
                answered: st.is_some(),
            }
        })
        .collect()
}

/// The totals of the receipts in the ledger of the node at `socket`.
fn receipt_totals(socket: &Path) -> ReceiptTotals {
    let ledger = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| {
            rt.block_on(control::call(
                socket,
                &Request::Ledger {
                    node: None,
                    limit: Some(MAX_RECEIPTS),
                },
            ))
            .ok()
        })
        .and_then(|replies| replies.into_iter().next())
        .and_then(|v| serde_json::from_value::<LedgerReply>(v).ok());
    let mut totals = ReceiptTotals::default();
    for r in ledger.iter().flat_map(|l| &l.receipts) {
        totals.count += 1;
        totals.charge += money(r.charge.micros());
        totals.mflop += r.power as f64 * r.seconds;
    }
    totals
}

/// Warns of each node that offers less power than drawn: a node offers at
/// most what its self-benchmark measured (a debug build on a loaded
/// machine measures little), and it charges and counts in supply at that.
fn warn_below_draw(cluster: &Cluster, nodes: &[NodeDraw]) {
    for (node, draw) in cluster.nodes.iter().zip(nodes) {
        let offered = node.status().map_or(0, |s| s.node.power);
        if offered < draw.power {
            eprintln!(
                "warning: {} offers {offered} MFLOPS, below its drawn {} (its self-benchmark)",
                node.name, draw.power
            );
        }
    }
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
        if let Some(why) = cluster.exited() {
            bail!("{why} during start-up");
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

/// `lppsp submit` of one drawn job from the client at `control`, its
/// tasks `samples_per_mflop` W2 samples per MFLOP of the drawn mean work.
fn submit(
    exe: &Path,
    control: &Path,
    sc: &Scenario,
    job: &JobDraw,
    samples_per_mflop: u64,
) -> anyhow::Result<Child> {
    let tasks = job.works.len().max(1) as u64;
    let mean_mflop = job.works.iter().sum::<u64>() / tasks;
    let samples = mean_mflop.saturating_mul(samples_per_mflop).max(1);
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
