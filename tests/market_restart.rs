//! The committed price survives restarts, live: a node killed mid-run
//! starts again from the state it stored in its data_dir and rejoins at the
//! price the pool committed while it was down (without pulling the others
//! back to its older one), and a restart of every node keeps the price and
//! the epoch.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

/// The members agree to a move every second, and the FSM acts on a test
/// job within seconds (as in tests/market.rs).
const FAST_FSM: &str = "\n[market]\nmin_move_interval_ms = 1000\n\n[balancer]\nkind = \"fsm\"\n\n[balancer.options]\nthreshold_milli = 1000\nwindow_ms = 1500\n";

/// A member that votes like the others but whose FSM never starts a raise
/// (its threshold is out of reach): the rounds of the test are the
/// others', so this node's own proposals never hold up its rejoining.
const VOTER: &str = "\n[market]\nmin_move_interval_ms = 1000\n\n[balancer]\nkind = \"fsm\"\n\n[balancer.options]\nthreshold_milli = 1000000000\nwindow_ms = 1500\n";

fn market(node: &NodeProc) -> serde_json::Value {
    node.status()["market"].clone()
}

/// The committed state as the status gives it: (price, epoch, proposer).
fn state(market: &serde_json::Value) -> (String, u64, String) {
    (
        market["price"].as_str().unwrap_or_default().to_string(),
        market["epoch"].as_u64().unwrap_or(0),
        market["proposer"].as_str().unwrap_or_default().to_string(),
    )
}

fn units(price: &str) -> f64 {
    price.parse().unwrap()
}

/// Far more tasks than slots, for as long as the test holds it: load that
/// makes the FSM raise the price. Killing it cancels the job.
fn load(control: &str) -> Child {
    submit_command(control)
        .args(w2_args(3000, 2_000_000))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(mut job: Child) {
    let _ = job.kill();
    let _ = job.wait();
}

/// Waits until every node in `nodes` holds one committed state with the
/// pool quiet: no round open, no demand, every member at that state.
/// Returns the state.
fn wait_for_quiet_agreement(nodes: &[&NodeProc], what: &str) -> (String, u64, String) {
    let mut last = Vec::new();
    let agreed = wait_for(Duration::from_secs(60), || {
        last = nodes.iter().map(|p| market(p)).collect();
        let first = state(&last[0]);
        last.iter().all(|m| {
            state(m) == first
                && m["open_round"].is_null()
                && m["demand_tasks"].as_u64() == Some(0)
                && m["peers_at_other_state"]
                    .as_array()
                    .is_some_and(|a| a.is_empty())
        })
    });
    assert!(agreed.is_some(), "{what}: no quiet agreement: {last:#?}");
    state(&last[0])
}

/// Restarts `node` from its config (same name, ports and data_dir).
fn restart(community: &Community, node: &mut NodeProc) {
    let cfg = community.dir.path().join(format!("{}.toml", node.name));
    let name = node.name.clone();
    let ports = node.ports;
    *node = NodeProc::start(&cfg, &name, ports);
    node.wait_ready(Duration::from_secs(20));
}

fn kill(node: &mut NodeProc) {
    node.signal(SIGKILL);
    assert!(
        node.wait_exit(Duration::from_secs(10)).is_some(),
        "{} did not exit on SIGKILL",
        node.name
    );
}

fn wait_for_peers(procs: &[NodeProc], n: usize) {
    wait_for(Duration::from_secs(10), || {
        procs
            .iter()
            .all(|p| p.status()["peers"].as_array().map_or(0, Vec::len) == n)
    })
    .unwrap_or_else(|| panic!("every node sees {n} others"));
}

#[test]
fn a_node_killed_mid_run_rejoins_at_the_price_the_pool_moved_to() {
    let community = Community::new();
    let nodes = client_and_computes(2);
    // compute-2 is the node killed and started again.
    let mut procs = start_cluster_with(&community, &nodes, |i, _| {
        if i == 2 { VOTER } else { FAST_FSM }.to_string()
    });
    wait_for_peers(&procs, 2);
    let control = procs[0].ports.control_addr().to_string();

    // Load raises the price; compute-2 commits the raise with the others.
    let job = load(&control);
    let raised = wait_for(Duration::from_secs(30), || {
        let first = state(&market(&procs[0]));
        first.1 >= 1 && procs.iter().all(|p| state(&market(p)) == first)
    });
    assert!(
        raised.is_some(),
        "no common raised price: {:#?}",
        procs.iter().map(market).collect::<Vec<_>>()
    );
    let before = state(&market(&procs[2]));

    // compute-2 dies; the others go on raising without it.
    kill(&mut procs[2]);
    let moved = wait_for(Duration::from_secs(60), || {
        let (a, b) = (state(&market(&procs[0])), state(&market(&procs[1])));
        a == b && a.1 > before.1 && units(&a.0) > units(&before.0)
    });
    let pool_now: Vec<_> = procs[..2].iter().map(market).collect();
    stop(job);
    assert!(
        moved.is_some(),
        "the pool never moved past {before:?} without compute-2: {pool_now:#?}"
    );
    let pool = wait_for_quiet_agreement(&[&procs[0], &procs[1]], "the pool after the load");
    assert!(units(&pool.0) > units(&before.0), "{pool:?} vs {before:?}");

    // Started again, compute-2 holds its stored state, behind the pool's.
    restart(&community, &mut procs[2]);
    let rejoined = market(&procs[2]);
    let restored = &rejoined["restored"];
    assert!(
        restored["epoch"].as_u64().unwrap() >= before.1,
        "{rejoined:#}"
    );
    assert!(
        restored["epoch"].as_u64().unwrap() < pool.1
            && units(restored["price"].as_str().unwrap()) < units(&pool.0),
        "it stored a state behind the pool's {pool:?}: {rejoined:#}"
    );

    // Every node ends at the pool's price: compute-2 came up to it, the
    // others were not pulled back to compute-2's older one.
    wait_for_peers(&procs, 2);
    let all: Vec<&NodeProc> = procs.iter().collect();
    let after = wait_for_quiet_agreement(&all, "after compute-2 rejoined");
    assert_eq!(after.0, pool.0, "the pool's price: {after:?} vs {pool:?}");
    assert!(after.1 >= pool.1, "{after:?} vs {pool:?}");
    let rounds = &market(&procs[2])["rounds"];
    assert!(
        rounds["reconciliations"].as_u64().unwrap() >= 1 || after.1 == pool.1,
        "compute-2 reached the pool's state through a round: {rounds}"
    );
}

#[test]
fn a_restart_of_every_node_keeps_the_committed_price_and_epoch() {
    let community = Community::new();
    let nodes = client_and_computes(2);
    let mut procs = start_cluster_with(&community, &nodes, |_, _| FAST_FSM.to_string());
    wait_for_peers(&procs, 2);
    let control = procs[0].ports.control_addr().to_string();

    let job = load(&control);
    let raised = wait_for(Duration::from_secs(30), || {
        let first = state(&market(&procs[0]));
        first.1 >= 1 && procs.iter().all(|p| state(&market(p)) == first)
    });
    stop(job);
    assert!(
        raised.is_some(),
        "no common raised price: {:#?}",
        procs.iter().map(market).collect::<Vec<_>>()
    );
    let all: Vec<&NodeProc> = procs.iter().collect();
    let agreed = wait_for_quiet_agreement(&all, "before the restart");
    assert!(agreed.1 >= 1 && units(&agreed.0) > 1.0, "{agreed:?}");

    // Every node dies at once, without a chance to write anything more.
    for p in procs.iter_mut() {
        kill(p);
    }
    for p in procs.iter_mut() {
        restart(&community, p);
    }
    // Each starts from the state it stored: the price, epoch and round
    // the pool had agreed on, not the configured initial price.
    for p in &procs {
        let m = market(p);
        assert_eq!(state(&m), agreed, "{}: {m:#}", p.name);
        assert_eq!(m["restored"]["epoch"], agreed.1, "{}: {m:#}", p.name);
        assert_eq!(
            m["restored"]["price"],
            agreed.0.as_str(),
            "{}: {m:#}",
            p.name
        );
    }
    // `lppsp status` says so in its human output.
    let control = procs[1].ports.control_addr().to_string();
    let out = lppsp(&["status", "--control", &control]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        format!(
            "committed: {} at epoch {} (round of {})",
            agreed.0, agreed.1, agreed.2
        ),
        format!(
            "started from the stored state: epoch {} at {}",
            agreed.1, agreed.0
        ),
    ] {
        assert!(text.contains(&line), "no `{line}` in:\n{text}");
    }
    // And they hold it together once they see each other again.
    wait_for_peers(&procs, 2);
    let all: Vec<&NodeProc> = procs.iter().collect();
    let again = wait_for_quiet_agreement(&all, "after the restart");
    assert_eq!(again, agreed);
    for p in &procs {
        assert_eq!(
            market(p)["rounds"]["reconciliations"],
            0,
            "{}: nothing to reconcile",
            p.name
        );
    }
}

#[test]
fn a_damaged_stored_state_stops_the_node_with_an_error_naming_the_file() {
    let community = Community::new();
    community.issue("solo");
    let ports = Ports::free();
    let cfg = write_config(
        community.dir.path(),
        &community.ca_dir(),
        "solo",
        "both",
        ports,
        &[Ports::free()],
    );
    let data_dir = community.dir.path().join("solo-data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let file = data_dir.join("market.json");
    std::fs::write(
        &file,
        r#"{"version":1,"epoch":7,"proposer":null,"price":"3"}"#,
    )
    .unwrap();
    let mut node = NodeProc::start(&cfg, "solo", ports);
    let status = node
        .wait_exit(Duration::from_secs(20))
        .expect("the node stops");
    assert!(!status.success());
    let log = node.log_text();
    assert!(
        log.contains(&file.display().to_string())
            && log.contains("not a stored market state")
            && log.contains("no proposer for epoch 7"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // The file is left as it was, for its owner to look at.
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        r#"{"version":1,"epoch":7,"proposer":null,"price":"3"}"#
    );
}
