//! The market, live: three real nodes under load raise the price through
//! the FSM balancer, and all three commit the same price in the same round.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

/// A short observation window and a low threshold, so that a test job
/// is "load" and the FSM acts within seconds.
/// The members agree to a move every second (the FSM's window is longer).
const FAST_FSM: &str = "\n[market]\nmin_move_interval_ms = 1000\n\n[balancer]\nkind = \"fsm\"\n\n[balancer.options]\nthreshold_milli = 1000\nwindow_ms = 1500\n";

fn market(node: &NodeProc) -> serde_json::Value {
    node.status()["market"].clone()
}

#[test]
fn load_raises_the_price_and_every_node_commits_the_same_one() {
    let community = Community::new();
    let nodes = client_and_computes(2);
    let procs = start_cluster_with(&community, &nodes, |_, _| FAST_FSM.to_string());
    wait_for(Duration::from_secs(5), || {
        procs
            .iter()
            .all(|p| p.status()["peers"].as_array().unwrap().len() == 2)
    })
    .expect("every node sees the two others");
    for p in &procs {
        assert_eq!(market(p)["price"], "1");
        assert_eq!(market(p)["epoch"], 0);
    }

    // Load: far more tasks than slots, for several seconds.
    let control = procs[0].ports.control_addr().to_string();
    let mut job = submit_command(&control)
        .args([
            "--kernel",
            "w2-monte-carlo-pi",
            "--range",
            "0..3000",
            "--extra",
            "2000000",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let raised = wait_for(Duration::from_secs(30), || {
        let states: Vec<serde_json::Value> = procs.iter().map(market).collect();
        let first = &states[0];
        first["epoch"].as_u64().unwrap_or(0) >= 1
            && states
                .iter()
                .all(|s| s["price"] == first["price"] && s["epoch"] == first["epoch"])
            // Concurrent rounds of one epoch may both commit; every node
            // then adopts the greater proposer from the next Hands.
            && states.iter().all(|s| s["proposer"] == first["proposer"])
    });
    let states: Vec<serde_json::Value> = procs.iter().map(market).collect();
    let _ = job.kill();
    let _ = job.wait();
    assert!(
        raised.is_some(),
        "no common raised price: {states:#?}\n{}",
        procs[0].log_text()
    );
    let price: f64 = states[0]["price"].as_str().unwrap().parse().unwrap();
    assert!(price >= 2.0, "the FSM raises by whole units: {states:#?}");
    // The round that set it is the same on every node.
    assert!(states
        .iter()
        .all(|s| s["proposer"] == states[0]["proposer"]));
    // One node opened the round and committed it; the others voted for it.
    let committed: u64 = states
        .iter()
        .map(|s| s["rounds"]["rounds_committed"].as_u64().unwrap())
        .sum();
    assert!(committed >= 1, "{states:#?}");
    assert!(states
        .iter()
        .all(|s| s["rounds"]["votes_cast"].as_u64().unwrap() >= 1
            || s["rounds"]["rounds_committed"].as_u64().unwrap() >= 1));
    // And the price travels in every frame: no node sees a peer at another price
    // once the Hands of the next tick have gone round.
    wait_for(Duration::from_secs(5), || {
        procs.iter().all(|p| {
            market(p)["peers_at_other_price"]
                .as_array()
                .unwrap()
                .is_empty()
        })
    })
    .expect("every peer's frames carry the committed price");
}
