//! Results to the node the scheduler names: a compute node integrates the
//! job and hands the result to the client; when it dies, the client takes
//! over and nothing is lost or counted twice.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// A client whose scheduler sends results to `compute-2`, and two compute nodes.
fn cluster() -> (Community, Vec<NodeProc>, String) {
    let community = Community::new();
    let nodes = client_and_computes(2);
    let procs = start_cluster_with(&community, &nodes, |i, ids| {
        if i == 0 {
            format!(
                "\n[scheduler]\nkind = \"round-robin\"\n\n[scheduler.options]\nintegrator = \"{}\"\n",
                ids[2]
            )
        } else {
            String::new()
        }
    });
    let integrator = procs[2].id();
    procs[0]
        .wait_for_compute_peers(2, Duration::from_secs(5))
        .expect("client sees both compute nodes");
    (community, procs, integrator)
}

fn submit_args(control: &str, kernel: &str, range: &str) -> Vec<String> {
    [
        "submit",
        "--json",
        "--control",
        control,
        "--kernel",
        kernel,
        "--range",
        range,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn the_named_node_integrates_and_hands_the_result_to_the_client() {
    let (_community, procs, integrator) = cluster();
    let control = procs[0].ports.control_addr().to_string();
    let out = Command::new(bin())
        .args(submit_args(&control, "w1-sum-squares", "0..10000"))
        .output()
        .unwrap();
    let events: Vec<serde_json::Value> = json_events(&out.stdout);
    let last = events.last().unwrap();
    assert!(out.status.success(), "{last}\n{}", procs[0].log_text());
    assert_eq!(last["result"], "1291890006563070912");
    assert_eq!(last["integrated_by"], integrator.as_str(), "{last}");
    assert_eq!(last["progress"]["done"], 10_000);
    // Both compute nodes ran tasks; the integrator holds nothing afterwards.
    let nodes = last["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 2, "{last}");
    assert!(nodes
        .values()
        .all(|t| t["tasks_done"].as_u64().unwrap() > 0));
    let held = procs[2].status()["integrator"].clone();
    assert_eq!(held["jobs"], 0, "{held}");
    assert!(procs[2].log_text().contains("peer connected"));
}

#[test]
fn when_the_integrator_dies_the_client_integrates_and_loses_nothing() {
    let (_community, mut procs, _integrator) = cluster();
    let control = procs[0].ports.control_addr().to_string();
    let samples = 3_000_000u64;
    let args = w2_args(200, samples);
    let (killed, status, last) = submit_acting_at(&control, &args, 30, || procs[2].signal(SIGKILL));
    assert!(killed, "the job ended before the kill");
    assert!(status.success(), "{last}\n{}", procs[0].log_text());
    let hits: u64 = w2_hits_total(200, samples);
    assert!(
        last["result"]
            .as_str()
            .unwrap()
            .contains(&format!("{hits} hits")),
        "{last}"
    );
    assert_eq!(last["progress"]["done"], 200, "{last}");
    // Integrated at the client, not by the dead node.
    assert!(last["integrated_by"].is_null(), "{last}");
}
