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

/// The FSM's window in the five-node test, ms.
const WINDOW_MS: u64 = 2500;

/// Every node runs the FSM; the voters accept a step every 0.5 s, far
/// more often than the window, so only the balancers keep the pace.
fn five_fsm_config() -> String {
    format!(
        "\n[market]\nmin_move_interval_ms = 500\n\n[balancer]\nkind = \"fsm\"\n\n[balancer.options]\nthreshold_milli = 1000\nwindow_ms = {WINDOW_MS}\n"
    )
}

/// Five nodes (a client and four compute nodes), every one running the
/// FSM on the same pressure, raise the pool's price by one step per
/// window, not five. The compute nodes hold every task, so the pressure
/// stays where the job puts it for as long as the test looks.
///
/// What is checked does not depend on the machine's speed: each commit
/// raises the price by exactly one unit; every node took the same price
/// at each epoch; and on the node that proposed a raise, its own clock
/// shows at least a window between taking the previous price and
/// committing the raise (the balancer proposes only a window after it saw
/// the pool's last move, and a round needs the previous epoch first).
#[test]
fn five_fsm_nodes_raise_the_price_one_step_per_window() {
    let community = Community::new();
    let lib = pausing_executor();
    let pause = Pause::new(&community, "held");
    pause.hold();
    let nodes = client_and_computes(4);
    let procs = start_cluster_with(&community, &nodes, |i, _| {
        let executor = if i == 0 {
            String::new()
        } else {
            pause.executor_config(&lib)
        };
        format!("{}{executor}", five_fsm_config())
    });
    wait_for(PATIENCE, || procs.iter().all(|p| p.compute_peers() >= 3))
        .expect("every node sees the compute nodes");

    let control = procs[0].ports.control_addr().to_string();
    let mut job = submit_command(&control)
        .args(w2_args(400, 1000))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(pause.wait_until_held(PATIENCE), "no task is held");

    // Three raises: the price reaches 4 on every node.
    let raised = wait_for(Duration::from_secs(120), || {
        procs.iter().all(|p| market(p)["epoch"].as_u64() >= Some(3))
    });
    let histories: Vec<Vec<serde_json::Value>> = procs
        .iter()
        .map(|p| market(p)["history"].as_array().cloned().unwrap_or_default())
        .collect();
    let ids: Vec<String> = procs.iter().map(NodeProc::id).collect();
    pause.release();
    let _ = job.kill();
    let _ = job.wait();
    assert!(
        raised.is_some(),
        "the pool did not raise three times: {histories:#?}\n{}",
        procs[1].log_text()
    );

    // epoch -> (price, proposer) as the first history lists it.
    let mut path: std::collections::BTreeMap<u64, (String, String)> = Default::default();
    for h in &histories {
        for r in h {
            let epoch = r["epoch"].as_u64().unwrap();
            let entry = (
                r["price"].as_str().unwrap().to_string(),
                r["proposer"].as_str().unwrap_or("").to_string(),
            );
            // Concurrent rounds of one epoch may both commit for a moment
            // (the greater proposer then wins everywhere), at one price.
            let kept = path.entry(epoch).or_insert_with(|| entry.clone());
            assert_eq!(
                kept.0, entry.0,
                "epoch {epoch} at two prices: {histories:#?}"
            );
        }
    }
    for (epoch, (price, _)) in &path {
        assert_eq!(
            price.parse::<u64>().ok(),
            Some(1 + epoch),
            "each raise is one unit: {path:?}"
        );
    }
    // On the proposer of each raise: a window between taking the previous
    // epoch and committing this one.
    let mut checked = 0;
    for (node, history) in histories.iter().enumerate() {
        let at = |epoch: u64, by: Option<&str>| {
            history
                .iter()
                .filter(|r| r["epoch"].as_u64() == Some(epoch))
                .filter(|r| by.is_none_or(|b| r["proposer"].as_str() == Some(b)))
                .map(|r| r["at_ms"].as_u64().unwrap())
                .next()
        };
        for epoch in 2..=3 {
            let (Some(this), Some(before)) = (at(epoch, Some(&ids[node])), at(epoch - 1, None))
            else {
                continue;
            };
            checked += 1;
            assert!(
                this.saturating_sub(before) >= WINDOW_MS,
                "node {node} raised to epoch {epoch} {} ms after epoch {} (window {WINDOW_MS} ms): {histories:#?}",
                this.saturating_sub(before),
                epoch - 1
            );
        }
    }
    assert!(
        checked >= 2,
        "raises 2 and 3 each have a proposer that recorded both epochs: {histories:#?}"
    );
    // Each raise had a proposer among the nodes, and its own history has it.
    for epoch in 1..=3 {
        let proposers: Vec<&str> = histories
            .iter()
            .flat_map(|h| h.iter())
            .filter(|r| r["epoch"].as_u64() == Some(epoch))
            .filter_map(|r| r["proposer"].as_str())
            .collect();
        assert!(
            proposers.iter().all(|p| ids.iter().any(|id| id == p)),
            "epoch {epoch}: {proposers:?}"
        );
    }
}
