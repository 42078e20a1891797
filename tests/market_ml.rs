//! A market that answers to price, on 7 real node processes: 4 compute
//! nodes with different reserve prices and supply curves, 2 clients whose
//! jobs have different maximum prices, and the ML observer
//! (`examples/observer.toml`). The observer fits demand and supply from
//! what the nodes report, proposes the clearing price, and every node
//! commits it; it is within 10% of the clearing price the configured
//! reserve and maximum prices imply.
//!
//! Tasks are held on the compute nodes (the pausing executor) for the
//! whole test, so that supply and demand depend on the price alone and not
//! on how fast the machine runs them.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;
use lppsp_core::Price;

/// Each compute node's supply curve (`[[share.price_slots]]`): from each
/// price on, that many slots. Power is capped to 1 MFLOPS per slot
/// (`max_mflops = 1`), so supply in MFLOPS is the number of slots offered.
/// The curves add up to about 12 x p^2 slots between 0.9 and 1.35.
const CURVES: [&[(&str, u32)]; 4] = [
    &[("0.81", 3), ("1", 4), ("1.155", 5), ("1.291", 6)],
    &[("0.76", 2), ("1.041", 3), ("1.19", 4), ("1.323", 5)],
    &[("0.71", 2), ("0.913", 3), ("1.08", 4), ("1.225", 5)],
    &[("0.66", 2), ("0.957", 3), ("1.118", 4), ("1.258", 5)],
];

/// Each client's jobs: (maximum price, tasks). Demand is about
/// 24 x p^-2 MFLOPS between 0.9 and 1.35.
///
/// Both clients submit the same maximum prices: demand is robust to one
/// outlier (the largest client report counts at most the second largest
/// plus one node's slots; docs/balancers-fsm.md, "Pressure"), so two
/// clients with different volumes at a price would see the larger one
/// cut. Their jobs' maximum prices differ from job to job.
const JOBS: [(Option<&str>, u64); 10] = [
    (None, 600),
    (Some("1.333"), 100),
    (Some("1.247"), 100),
    (Some("1.176"), 100),
    (Some("1.115"), 100),
    (Some("1.064"), 100),
    (Some("1.018"), 100),
    (Some("0.978"), 100),
    (Some("0.943"), 100),
    (Some("0.911"), 100),
];
const CLIENTS: u64 = 2;

/// The demand unit of the test: one task is `TASK_MFLOP` MFLOP to run
/// within `HORIZON_MS`, i.e. 0.01 MFLOPS (the example's 10 000 MFLOP in 60 s
/// would need far more held tasks than a test should start).
const TASK_MFLOP: u64 = 1;
const HORIZON_MS: u64 = 100_000;

fn price(s: &str) -> Price {
    s.parse().unwrap()
}

/// Slots all compute nodes offer at `p`, by their curves.
fn supply_at(p: Price) -> u64 {
    CURVES
        .iter()
        .map(|steps| {
            steps
                .iter()
                .take_while(|(at, _)| price(at) <= p)
                .last()
                .map_or(0, |(_, slots)| u64::from(*slots))
        })
        .sum()
}

/// Demand at `p` in micro-MFLOPS (integers): every task of every job that
/// buys at `p`, and `extra` tasks per client that buy at any price,
/// x TASK_MFLOP / HORIZON.
fn demand_at_micro(p: Price, extra: u64) -> u64 {
    let tasks: u64 = JOBS
        .iter()
        .filter(|(max, _)| max.is_none_or(|m| p <= price(m)))
        .map(|(_, t)| t * CLIENTS)
        .sum::<u64>()
        + extra * CLIENTS;
    tasks * TASK_MFLOP * 1_000 * 1_000_000 / HORIZON_MS
}

/// The demand step: each client submits this many more tasks (3 jobs of
/// 100, no maximum price) once the price has settled.
const STEP_TASKS: u64 = 300;
const STEP_JOBS: u64 = 3;

/// The clearing price the configs imply: the lowest price, in steps of
/// 0.001, at which the power offered (power 1 x slots, by the curves) is at
/// least the demand (every task of the jobs whose maximum is at or above
/// it, in the observer's unit). Both sides are step functions; with these
/// configs supply first reaches demand just above 1.176 (the maximum of a
/// job: 16 MFLOPS offered against 16 demanded).
fn implied_clearing_price(extra: u64) -> Price {
    (500..3000u64)
        .map(|m| Price::from_micros(m * 1000))
        .find(|p| supply_at(*p) * 1_000_000 >= demand_at_micro(*p, extra))
        .expect("the curves cross between 0.5 and 3")
}

/// `examples/observer.toml` with the pacing shortened for a test (a
/// sample per tick, a window of one minute, a proposal per 6 s instead of
/// per minute) and the test's demand unit; every other option is the
/// example's.
fn observer_config() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/observer.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut doc: toml::Table = toml::from_str(&text).unwrap();
    let balancer = doc.remove("balancer").expect("the example has [balancer]");
    let mut balancer = balancer.as_table().unwrap().clone();
    assert_eq!(balancer["kind"].as_str(), Some("ml"));
    let options = balancer
        .get_mut("options")
        .and_then(|o| o.as_table_mut())
        .expect("the example has [balancer.options]");
    for (key, value) in [
        ("sample_every_ms", 0),
        ("window", 60),
        ("min_interval_ms", 6000),
        ("task_mflop", TASK_MFLOP as i64),
        ("horizon_ms", HORIZON_MS as i64),
    ] {
        assert!(options.contains_key(key), "the example sets {key}");
        options.insert(key.into(), toml::Value::Integer(value));
    }
    let mut out = toml::Table::new();
    out.insert("balancer".into(), toml::Value::Table(balancer));
    format!("\n{MARKET}\n{}", toml::to_string(&out).unwrap())
}

/// Every node agrees to a step a second after the last (the default is a
/// minute).
const MARKET: &str = "[market]\nmin_move_interval_ms = 1000\n";

/// A compute node's config: its curve, 1 MFLOPS per slot, tasks held.
fn compute_config(curve: &[(&str, u32)], pause: &Pause, lib: &std::path::Path) -> String {
    let most = curve.iter().map(|(_, s)| *s).max().unwrap();
    let mut text = format!(
        "\n{MARKET}\n[balancer]\nkind = \"ml\"\n\n[share]\nslots = {most}\nmax_mflops = 1\n"
    );
    for (p, slots) in curve {
        text.push_str(&format!(
            "\n[[share.price_slots]]\nprice = \"{p}\"\nslots = {slots}\n"
        ));
    }
    text.push_str(&pause.executor_config(lib));
    text
}

/// `lppsp submit` processes, killed when dropped (a job whose submitter
/// goes away is cancelled, so each one stays for the whole test).
struct Submitters(Vec<Child>);

impl Drop for Submitters {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_observer_finds_and_the_members_commit_the_clearing_price() {
    let implied = implied_clearing_price(0);
    assert_eq!(implied, price("1.177"), "the design of this test");
    // After the demand step, supply (20 slots) first reaches demand (14 +
    // 6 MFLOPS) at 1.291, a step of its curve.
    let stepped = implied_clearing_price(STEP_TASKS);
    assert_eq!(stepped, price("1.291"), "the design of this test");
    let lib = pausing_executor();
    let community = Community::new();
    let pause = Pause::new(&community, "held");
    pause.hold();

    // Members first: the observer joins once every job is in, so that its
    // window holds only samples of the market under test.
    let roles: Vec<(String, &str)> = (0..4)
        .map(|i| (format!("compute-{i}"), "compute"))
        .chain((0..CLIENTS).map(|i| (format!("client-{i}"), "client")))
        .chain([("observer".to_string(), "observer")])
        .collect();
    let ports: Vec<Ports> = roles.iter().map(|_| Ports::free()).collect();
    let mut procs = Vec::new();
    let mut configs = Vec::new();
    for (i, (name, role)) in roles.iter().enumerate() {
        community.issue(name);
        let peers: Vec<Ports> = ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| *p)
            .collect();
        let cfg = write_config(
            community.dir.path(),
            &community.ca_dir(),
            name,
            role,
            ports[i],
            &peers,
        );
        let extra = match *role {
            "compute" => compute_config(CURVES[i], &pause, &lib),
            "client" => format!("\n{MARKET}\n[balancer]\nkind = \"ml\"\n"),
            _ => observer_config(),
        };
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(&extra);
        std::fs::write(&cfg, text).unwrap();
        configs.push(cfg);
    }
    let members = roles.len() - 1;
    for i in 0..members {
        procs.push(NodeProc::start(&configs[i], &roles[i].0, ports[i]));
    }
    for p in &procs {
        p.wait_ready(Duration::from_secs(20));
    }
    wait_for(Duration::from_secs(30), || {
        procs
            .iter()
            .all(|p| p.status()["peers"].as_array().unwrap().len() == members - 1)
    })
    .expect("every member lists the others");
    // Each compute node says its reserve (its curve's first price), and
    // the clients see it in its Hand.
    for (i, p) in procs.iter().take(4).enumerate() {
        let c = &p.status()["compute"];
        assert_eq!(c["reserve"], CURVES[i][0].0, "{c}");
        let id = p.id();
        let seen = procs[4].status()["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["id"] == id.as_str())
            .cloned()
            .unwrap();
        assert_eq!(seen["reserve"], CURVES[i][0].0, "{seen}");
    }

    let mut submitters = Submitters(Vec::new());
    for client in &procs[4..] {
        let control = client.ports.control_addr().to_string();
        for (max, tasks) in JOBS {
            let mut cmd = submit_command(&control);
            cmd.args([
                "--kernel",
                "w1-sum-squares",
                "--range",
                &format!("0..{tasks}"),
            ]);
            if let Some(m) = max {
                cmd.args(["--max-price", m]);
            }
            submitters.0.push(
                cmd.stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
        }
    }
    for client in &procs[4..] {
        wait_for(Duration::from_secs(60), || {
            client.status()["jobs"]["active"].as_u64() == Some(JOBS.len() as u64)
        })
        .unwrap_or_else(|| {
            panic!(
                "{} runs every job: {}",
                client.name,
                client.status()["jobs"]
            )
        });
    }
    // A job whose maximum is below the price says it waits for the price.
    let waiting = submit_command(&procs[4].ports.control_addr().to_string())
        .args([
            "--kernel",
            "w1-sum-squares",
            "--range",
            "0..1",
            "--max-price",
            "0.5",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut waiting = Submitters(vec![waiting]);
    let said = {
        use std::io::BufRead;
        let out = waiting.0[0].stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let line = std::io::BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.contains("\"progress\""));
            let _ = tx.send(line.unwrap_or_default());
        });
        rx.recv_timeout(PATIENCE).unwrap_or_default()
    };
    assert!(said.contains("price 1 > max 0.5"), "{said}");
    drop(waiting);

    let i = members;
    procs.push(NodeProc::start_with(
        &configs[i],
        "observer",
        ports[i],
        "observe",
    ));
    procs[i].wait_ready(Duration::from_secs(20));
    let observer_id = procs[i].id();

    // Converged: the observer's latest proposal was a clearing price (not a
    // probe), it was committed, and the fit now holds the price (its target
    // is within the deadband); every node holds that same state.
    let converged = wait_for(Duration::from_secs(300), || {
        let state = procs[i].status()["market"]["balancer_state"].clone();
        let last = &state["last_proposal"];
        let holding = state["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("holding: target"));
        if !(holding && last["probe"] == false && last["committed"] == true) {
            return false;
        }
        let markets: Vec<serde_json::Value> =
            procs.iter().map(|p| p.status()["market"].clone()).collect();
        markets.iter().all(|m| {
            m["proposer"] == observer_id.as_str()
                && m["price"] == markets[0]["price"]
                && m["epoch"] == markets[0]["epoch"]
                && m["price"] == last["price"]
        })
    });
    let state = procs[i].status()["market"]["balancer_state"].clone();
    let dump: Vec<String> = procs
        .iter()
        .map(|p| format!("{}: {}", p.name, p.status()["market"]))
        .collect();
    assert!(
        converged.is_some(),
        "the observer's clearing price is committed by every node:\n{}\n{}",
        dump.join("\n"),
        procs[i].log_text()
    );
    let committed = price(state["last_proposal"]["price"].as_str().unwrap());
    // The fit of the window, or the last good one when the settled
    // window is too narrow to fit again.
    let fit = if state["fit"].is_object() {
        &state["fit"]
    } else {
        &state["last_good_fit"]["fit"]
    };
    let (rd, rs) = (
        fit["demand_r2"].as_f64().unwrap(),
        fit["supply_r2"].as_f64().unwrap(),
    );
    let min_r2 = 0.8;
    eprintln!(
        "market_ml: committed {committed}, implied {implied}, demand R^2 {rd:.3}, supply R^2 \
         {rs:.3}, fit {fit}, in {:.0} s",
        converged.unwrap().as_secs_f64()
    );
    assert!(rd >= min_r2 && rs >= min_r2, "{state}");
    let off = committed.micros().abs_diff(implied.micros());
    assert!(
        off * 10 <= implied.micros(),
        "committed {committed} is within 10% of the implied clearing price {implied}: {state}"
    );
    // Supply answered to the price: each compute node offers its curve's
    // slots at the committed price. No task reached a node below its
    // reserve: a client places only on nodes whose reserve is at or below
    // its price, the price the task frame carries and the node checks.
    for (n, p) in procs.iter().take(4).enumerate() {
        let c = &p.status()["compute"];
        let want = CURVES[n]
            .iter()
            .take_while(|(at, _)| price(at) <= committed)
            .last()
            .map_or(0, |(_, s)| *s);
        assert_eq!(c["offered_slots"].as_u64(), Some(u64::from(want)), "{c}");
        assert_eq!(c["tasks_refused"], 0, "{c}");
    }

    // A step in demand: each client submits 3 more jobs of 100 tasks that
    // buy at any price. The observer's window turns over (60 samples) and
    // its fits follow; the committed price moves at least halfway from
    // where it was towards the new clearing price, within MAX_WINDOWS of
    // the observer's proposals (one per min_interval_ms).
    const MAX_WINDOWS: u64 = 10;
    let rounds = |p: &NodeProc| {
        p.status()["market"]["rounds"]["rounds_committed"]
            .as_u64()
            .unwrap_or(0)
    };
    let rounds_before = rounds(&procs[i]);
    for client in &procs[4..] {
        let control = client.ports.control_addr().to_string();
        for _ in 0..STEP_JOBS {
            let mut cmd = submit_command(&control);
            cmd.args([
                "--kernel",
                "w1-sum-squares",
                "--range",
                &format!("0..{}", STEP_TASKS / STEP_JOBS),
            ]);
            submitters.0.push(
                cmd.stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
        }
    }
    let halfway = Price::from_micros((committed.micros() + stepped.micros()) / 2);
    let moved = wait_for(Duration::from_secs(600), || {
        let markets: Vec<serde_json::Value> =
            procs.iter().map(|p| p.status()["market"].clone()).collect();
        let agreed = markets.iter().all(|m| {
            m["proposer"] == observer_id.as_str()
                && m["price"] == markets[0]["price"]
                && m["epoch"] == markets[0]["epoch"]
        });
        agreed && price(markets[0]["price"].as_str().unwrap()) >= halfway
    });
    let windows = rounds(&procs[i]).saturating_sub(rounds_before);
    let after = procs[i].status()["market"].clone();
    eprintln!(
        "market_ml: demand step: from {committed} towards {stepped}, at {} after {windows} proposals, {:.0} s",
        after["price"],
        moved.map_or(f64::NAN, |d| d.as_secs_f64())
    );
    assert!(
        moved.is_some(),
        "after the demand step every node commits a price of at least {halfway}: {after}\n{}",
        procs[i].log_text()
    );
    assert!(
        windows <= MAX_WINDOWS,
        "the price reached {halfway} within {MAX_WINDOWS} proposals, not {windows}: {after}"
    );
    pause.release();
    drop(submitters);
}
