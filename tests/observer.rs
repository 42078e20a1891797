//! The ML observer on real processes: `lppsp observe` joins the book of a
//! 3-node pool whose members run `balancer.kind = "ml"` (their FSM off),
//! samples the market under load, and its price proposal is committed by
//! every node.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

/// The observer's balancer options: fast sampling and probing, so that a
/// test-sized load gives it enough to act on within seconds.
const OBSERVER: &str = r#"
[market]
min_move_interval_ms = 1000

[balancer]
kind = "ml"

[balancer.options]
sample_every_ms = 200
min_samples = 3
min_interval_ms = 1500
explore = true
"#;

const MEMBER: &str = "\n[market]\nmin_move_interval_ms = 1000\n\n[balancer]\nkind = \"ml\"\n";

#[test]
fn the_observers_proposal_is_committed_by_every_node() {
    let community = Community::new();
    let nodes = [
        ("client", "client"),
        ("compute-1", "compute"),
        ("compute-2", "compute"),
        ("observer", "observer"),
    ];
    let procs = start_cluster_with(&community, &nodes, |i, _| {
        if i == 3 { OBSERVER } else { MEMBER }.to_string()
    });
    let observer_id = procs[3].id();
    let client = &procs[0];
    wait_for(Duration::from_secs(10), || {
        procs
            .iter()
            .all(|p| p.status()["peers"].as_array().unwrap().len() == 3)
    })
    .expect("every node lists the other three");
    // The observer offers no slots and is no client: nothing is placed on it.
    let seen = client.status();
    let observer_peer = seen["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == observer_id.as_str())
        .expect("the client's book lists the observer")
        .clone();
    assert_eq!(observer_peer["slots"], 0, "{observer_peer}");

    // Load: one single-task job after another, so that one compute node is
    // busy (demand) while the other is idle (supply): the ML balancer fits
    // only samples where both are above zero.
    let control = client.ports.control_addr().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = submit_command(&control)
                    .args(["--kernel", "w2-monte-carlo-pi", "--range", "0..1"])
                    .args(["--extra", "20000000"])
                    .stdout(Stdio::null())
                    .status();
            }
        })
    };

    let agreed = wait_for(Duration::from_secs(60), || {
        let markets: Vec<serde_json::Value> =
            procs.iter().map(|p| p.status()["market"].clone()).collect();
        markets
            .iter()
            .all(|m| m["proposer"] == observer_id.as_str() && m["epoch"].as_u64() >= Some(1))
            && markets
                .iter()
                .all(|m| m["price"] == markets[0]["price"] && m["epoch"] == markets[0]["epoch"])
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.join();
    let dump: Vec<String> = procs
        .iter()
        .map(|p| p.status()["market"].to_string())
        .collect();
    assert!(
        agreed.is_some(),
        "every node commits the observer's price:\n{}\n{}",
        dump.join("\n"),
        procs[3].log_text()
    );

    // Members ran `ml`: they proposed nothing and voted; the observer
    // sampled and says what it concluded.
    for p in &procs[..3] {
        let m = &p.status()["market"];
        assert_eq!(m["balancer_proposes"], false, "{m}");
        assert_eq!(m["rounds"]["rounds_opened"].as_u64().unwrap_or(0), 0, "{m}");
    }
    let m = &procs[3].status()["market"];
    assert_eq!(m["balancer_proposes"], true);
    let state = &m["balancer_state"];
    assert!(state["samples"].as_u64().unwrap() >= 3, "{state}");
    assert!(state["reason"].as_str().is_some(), "{state}");
    assert!(state["last_proposal"].is_object(), "{state}");

    // `lppsp status` prints the observer's state for people.
    let out = lppsp(&[
        "status",
        "--control",
        &procs[3].ports.control_addr().to_string(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("balancer: "), "{text}");
}
