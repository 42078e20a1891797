//! Issue: nodes that find and trust each other. Real `lppsp node`
//! processes on loopback, with static discovery (several nodes per host).

mod common;

use std::time::Duration;

use common::*;

fn start_both(community: &Community, names: &[&str]) -> Vec<NodeProc> {
    let nodes: Vec<(&str, &str)> = names.iter().map(|n| (*n, "both")).collect();
    start_cluster(community, &nodes)
}

#[test]
fn three_nodes_discover_expire_and_leave() {
    let community = Community::new();
    let mut nodes = start_both(&community, &["alpha", "beta", "gamma"]);
    let ids: Vec<String> = nodes.iter().map(|n| n.id()).collect();

    // Waits for: each node's book to list the others, then to drop the
    // killed node (expiry), then the one that left (its Leave beacon); the
    // logs say which rule dropped each. The time limits only end a failing
    // test: beacons go once a tick, expiry takes 3 ticks, but a busy
    // machine may take longer, so no verdict rests on the time taken.
    for (i, n) in nodes.iter().enumerate() {
        let took = wait_for(Duration::from_secs(60), || {
            let peers = n.peer_ids();
            peers.len() == 2
                && ids
                    .iter()
                    .enumerate()
                    .all(|(j, id)| j == i || peers.contains(id))
        });
        assert!(
            took.is_some(),
            "{} did not list both peers: {:?}\n{}",
            n.name,
            n.peer_ids(),
            n.log_text()
        );
    }

    // gamma is killed outright: the others drop it when it expires.
    let gamma_id = ids[2].clone();
    nodes[2].signal(SIGKILL);
    for n in &nodes[..2] {
        let took = wait_for(Duration::from_secs(60), || {
            !n.peer_ids().contains(&gamma_id)
        });
        assert!(took.is_some(), "{} still lists killed gamma", n.name);
        assert!(
            logged(n, "peer expired", &gamma_id),
            "{} dropped gamma, but not by expiry:\n{}",
            n.name,
            n.log_text()
        );
    }

    // beta leaves gracefully: alpha drops it on its Leave beacon, without
    // waiting for it to expire.
    let beta_id = ids[1].clone();
    assert!(nodes[0].peer_ids().contains(&beta_id));
    nodes[1].signal(SIGTERM);
    let took = wait_for(Duration::from_secs(60), || {
        !nodes[0].peer_ids().contains(&beta_id)
    });
    assert!(
        took.is_some(),
        "alpha still lists beta after SIGTERM\n{}",
        nodes[0].log_text()
    );
    assert!(
        logged(&nodes[0], "peer left", &beta_id),
        "alpha dropped beta, but not on its Leave beacon:\n{}",
        nodes[0].log_text()
    );
    let exit = nodes[1].wait_exit(Duration::from_secs(60));
    assert!(
        exit.is_some_and(|s| s.success()),
        "beta did not exit cleanly on SIGTERM: {exit:?}"
    );
    assert!(nodes[1].log_text().contains("SIGTERM"));
}

/// Whether `node`'s log has a line with `what` about peer `id`.
fn logged(node: &NodeProc, what: &str, id: &str) -> bool {
    node.log_text()
        .lines()
        .any(|l| l.contains(what) && l.contains(id))
}

#[test]
fn status_shows_book_with_versions_and_counters() {
    let community = Community::new();
    let nodes = start_both(&community, &["one", "two"]);
    let other = nodes[1].id();
    wait_for(Duration::from_secs(60), || nodes[0].peer_ids().len() == 1).expect("discovery");
    let st = nodes[0].status();
    let peer = &st["peers"][0];
    assert_eq!(peer["id"], other.as_str());
    assert_eq!(peer["protocol"], "1.0");
    assert!(peer["software"].as_str().unwrap().starts_with("lppsp/"));
    assert_eq!(peer["compatible"], true);
    assert!(peer["power"].as_u64().unwrap() > 0);
    assert_eq!(
        peer["addr"],
        format!("127.0.0.1:{}", nodes[1].ports.tls).as_str()
    );
    assert!(st["dropped_beacons"]["foreign_ca"].is_u64());

    // The human table names the peer too.
    let out = lppsp(&[
        "status",
        "--control",
        &nodes[0].ports.control_addr().to_string(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&other) && text.contains("1 peers"), "{text}");
}
