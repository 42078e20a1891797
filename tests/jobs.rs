//! Issue: jobs end to end through a real 3-process cluster (1 client + 2
//! compute nodes, mutual TLS on loopback).

mod common;

use std::time::Duration;

use common::*;

struct Cluster {
    _community: Community,
    client: NodeProc,
    computes: Vec<NodeProc>,
}

fn cluster(computes: usize) -> Cluster {
    cluster_with(computes, |_, _| String::new())
}

/// As [`cluster`], with config text `extra(community, i)` appended to
/// compute node `compute-{i + 1}`'s file.
fn cluster_with(computes: usize, extra: impl Fn(&Community, usize) -> String) -> Cluster {
    let community = Community::new();
    let names: Vec<String> = (1..=computes).map(|i| format!("compute-{i}")).collect();
    let mut nodes = vec![("client", "client")];
    nodes.extend(names.iter().map(|n| (n.as_str(), "compute")));
    let mut procs = start_cluster_with(&community, &nodes, |i, _| match i {
        0 => String::new(),
        _ => extra(&community, i - 1),
    });
    let client = procs.remove(0);
    client
        .wait_for_compute_peers(computes, Duration::from_secs(5))
        .expect("client sees every compute node");
    Cluster {
        _community: community,
        client,
        computes: procs,
    }
}

/// Runs `lppsp submit --json` and returns (exit code, every event).
fn submit(client: &NodeProc, args: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let control = client.ports.control_addr().to_string();
    let out = submit_command(&control).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), json_events(&out.stdout))
}

#[test]
fn w1_and_w2_give_the_reference_results() {
    let c = cluster(2);
    let (code, events) = submit(
        &c.client,
        &["--kernel", "w1-sum-squares", "--range", "0..10000"],
    );
    let last = events.last().unwrap();
    assert_eq!(code, 0, "{last}\n{}", c.client.log_text());
    assert_eq!(last["event"], "done");
    assert_eq!(last["result"], "1291890006563070912");
    assert_eq!(tasks_done_by_nodes(last), 10_000);
    // Both compute nodes took part.
    assert!(last["nodes"]
        .as_object()
        .unwrap()
        .values()
        .all(|t| t["tasks_done"].as_u64().unwrap() > 0));

    let (code, events) = submit(
        &c.client,
        &[
            "--kernel",
            "w2-monte-carlo-pi",
            "--range",
            "0..200",
            "--extra",
            "5000000",
        ],
    );
    let last = events.last().unwrap();
    assert_eq!(code, 0, "{last}");
    let hits: u64 = w2_hits_total(200, 5_000_000);
    let result = last["result"].as_str().unwrap();
    assert!(
        result.contains(&format!("{hits} hits")),
        "{result} vs {hits} hits"
    );
    let pi = 4.0 * hits as f64 / 1e9;
    assert!((pi - std::f64::consts::PI).abs() < 1e-3, "pi = {pi}");

    // The compute nodes were paid what the client was charged.
    let spent = last["progress"]["spent"].as_str().unwrap().to_string();
    let client_status = c.client.status();
    assert!(
        client_status["balance"]["spent"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            >= spent.parse::<f64>().unwrap()
    );
    let earned: f64 = c
        .computes
        .iter()
        .map(|n| {
            n.status()["balance"]["earned"]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        })
        .sum();
    assert!(earned > 0.0);
}

#[test]
fn inline_inputs_and_files_reach_the_kernel() {
    let c = cluster(2);
    let (code, events) = submit(
        &c.client,
        &["--kernel", "sha256", "--input", "abc", "--input", ""],
    );
    let last = events.last().unwrap();
    assert_eq!(code, 0, "{last}");
    let lines: Vec<&str> = last["result"].as_str().unwrap().lines().collect();
    assert_eq!(
        lines,
        [
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("data.bin");
    std::fs::write(&f, [1u8, 2, 3, 250]).unwrap();
    let (code, events) = submit(
        &c.client,
        &["--kernel", "w3-byte-sum", "--files", f.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{:?}", events.last());
    assert_eq!(events.last().unwrap()["result"], "256");
    // An unknown kernel is rejected with its own exit code and a reason.
    let (code, events) = submit(&c.client, &["--kernel", "no-such-kernel", "--input", "x"]);
    assert_eq!(code, 5);
    assert!(events.last().unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("unknown kernel"));
}

/// A cluster of 2 compute nodes running the pausing executor, compute
/// node `i` (from 0) with pause file `pause_name(i)`; the pause files, one
/// per name (none is held yet).
fn pausing_cluster(pause_name: impl Fn(usize) -> String) -> (Cluster, Vec<Pause>) {
    let lib = pausing_executor();
    let c = cluster_with(2, |community, i| {
        Pause::new(community, &pause_name(i)).executor_config(&lib)
    });
    let mut names: Vec<String> = (0..2).map(&pause_name).collect();
    names.dedup();
    let pauses = names.iter().map(|n| Pause::new(&c._community, n)).collect();
    (c, pauses)
}

// Waits for: 20 tasks done (progress events), then a task held on
// compute-1 (its pause file's marker), which the kill then loses for sure.
#[test]
fn a_compute_node_killed_mid_job_loses_nothing_and_counts_nothing_twice() {
    let (mut c, pauses) = pausing_cluster(|i| format!("compute-{}", i + 1));
    let control = c.client.ports.control_addr().to_string();
    let samples = 4_000_000u64;
    let args = w2_args(200, samples);
    let (killed, status, last) = submit_acting_at(&control, &args, 20, || {
        // compute-1 has run tasks; the next one it starts is held there,
        // so the kill lands while it holds a task of the job.
        pauses[0].hold();
        assert!(
            pauses[0].wait_until_held(Duration::from_secs(120)),
            "no task reached compute-1 after the pause"
        );
        c.computes[0].signal(SIGKILL)
    });
    assert!(killed, "the job ended before the kill");
    assert!(status.success(), "{last}\n{}", c.client.log_text());
    assert_eq!(last["event"], "done");
    let hits: u64 = w2_hits_total(200, samples);
    assert!(
        last["result"]
            .as_str()
            .unwrap()
            .contains(&format!("{hits} hits")),
        "{last}"
    );
    // Every task counted exactly once across the nodes.
    assert_eq!(tasks_done_by_nodes(&last), 200, "{last}");
    assert_eq!(last["progress"]["done"], 200);
    assert!(
        last["progress"]["retries"].as_u64().unwrap() >= 1,
        "the killed node's held task was placed again: {last}"
    );
}

// Waits for: a task held on each compute node (their pause files'
// markers) or the job's end, then the job's end, then the cancel count.
// The one sleep only makes the released tasks cost more; a slower machine
// holds them longer still.
#[test]
fn running_out_of_bounty_stops_the_job_and_cancels_running_tasks() {
    let (c, pauses) = pausing_cluster(|i| format!("compute-{}", i + 1));
    // Every task that starts is held until the test lets it go.
    for p in &pauses {
        p.hold();
    }
    let power = c.client.status()["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["power"].as_u64().unwrap())
        .max()
        .unwrap();
    // Enough for about ten tasks at the scheduler's first estimate (10 ms
    // at price 1, at most the highest power): 0.1 s x power, in micro-units.
    let budget = power * 100_000;
    let budget = format!("{}.{:06}", budget / 1_000_000, budget % 1_000_000);
    let control = c.client.ports.control_addr().to_string();
    let mut job = submit_command(&control)
        .args(w2_args(200, 1_000_000))
        .args(["--budget", &budget])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first plan fills both nodes' pipelines, and every task is held.
    // (Should it already find the budget short, the job ends at once and
    // cancels what it placed.)
    let placed = wait_for(Duration::from_secs(120), || {
        pauses.iter().all(|p| p.wait_until_held(Duration::ZERO))
            || job.try_wait().unwrap().is_some()
    });
    assert!(
        placed.is_some(),
        "the job runs but not both compute nodes hold a task"
    );
    if job.try_wait().unwrap().is_none() {
        // compute-1's tasks, held at least 2 s, cost at least its power x
        // 2 s each, 20 times the budget at the highest power: once their
        // results are in, compute-1 has a free slot and no task fits.
        // compute-2's tasks are still held: running when the job stops.
        std::thread::sleep(Duration::from_secs(2));
        pauses[0].release();
    }
    let ended = wait_for(Duration::from_secs(180), || {
        job.try_wait().unwrap().is_some()
    });
    if ended.is_none() {
        let _ = job.kill();
    }
    let out = job.wait_with_output().unwrap();
    assert!(
        ended.is_some(),
        "the job did not stop: {}",
        last_event(&out.stdout)
    );
    let code = out.status.code().unwrap_or(-1);
    let last = last_event(&out.stdout);
    assert_eq!(
        code, 3,
        "distinct exit code for insufficient bounty: {last}"
    );
    assert_eq!(last["code"], "insufficient_bounty");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("insufficient bounty"),
        "{last}"
    );
    assert!(last["progress"]["done"].as_u64().unwrap() < 200);
    // The client's Cancel reaches the tasks still held.
    let cancelled = || -> u64 {
        c.computes
            .iter()
            .map(|n| {
                n.status()["compute"]["tasks_cancelled"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum()
    };
    let seen = wait_for(Duration::from_secs(60), || cancelled() >= 1);
    for p in &pauses {
        p.release();
    }
    assert!(seen.is_some(), "no running task was cancelled: {last}");
}
