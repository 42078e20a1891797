//! User WASM kernels through real node processes: a job carries its module,
//! compute nodes load it once and run it sandboxed, and every way a module
//! can misbehave fails that job with its cause while the nodes keep serving.

mod common;
#[path = "../executors/wasm/tests/common/mod.rs"]
mod kernels;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// Runs `lppsp submit --json ARGS` at the client; (exit code, last event).
fn submit(client: &NodeProc, args: &[&str]) -> (i32, serde_json::Value) {
    let control = client.ports.control_addr().to_string();
    let out = submit_command(&control).args(args).output().unwrap();
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no events; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (out.status.code().unwrap_or(-1), last)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A small W2 through the WASM kernel gives the builtin kernel's exact
/// result, and both compute nodes still answer.
fn assert_still_serving(client: &NodeProc, computes: &[NodeProc], w2: &str) {
    let (code, last) = submit(
        client,
        &["--wasm", w2, "--range", "0..8", "--extra", "1000"],
    );
    assert_eq!(code, 0, "{last}");
    assert_eq!(last["event"], "done", "{last}");
    for c in computes {
        assert!(c.try_status().is_some(), "{} stopped answering", c.id());
    }
}

#[test]
fn wasm_jobs_run_sandboxed_and_failures_leave_the_nodes_serving() {
    let community = Community::new();
    // A 2 s wall-time cap on every task, so the time-cap case is quick.
    let procs = start_cluster_with(
        &community,
        &[
            ("client", "client"),
            ("compute-1", "compute"),
            ("compute-2", "compute"),
        ],
        |_, _| "\n[share]\ntask_timeout_s = 2\n".to_string(),
    );
    let mut procs = procs.into_iter();
    let client = procs.next().unwrap();
    let computes: Vec<NodeProc> = procs.collect();
    client
        .wait_for_compute_peers(2, Duration::from_secs(5))
        .expect("client sees both compute nodes");
    let dir = tempfile::tempdir().unwrap();
    let w2 = write(dir.path(), "w2.wat", kernels::W2);

    // W2 via WASM: exactly the native hit count.
    let job = ["--range", "0..64", "--extra", "200000"];
    let (code, native) = submit(
        &client,
        &[&["--kernel", "w2-monte-carlo-pi"][..], &job[..]].concat(),
    );
    assert_eq!(code, 0, "{native}");
    let (code, wasm) = submit(&client, &[&["--wasm", w2.as_str()][..], &job[..]].concat());
    assert_eq!(code, 0, "{wasm}\n{}", client.log_text());
    assert_eq!(wasm["event"], "done");
    assert_eq!(wasm["result_hex"], native["result_hex"], "{wasm}\n{native}");
    assert_eq!(wasm["result"], native["result"]);
    let ran_on = wasm["nodes"].as_object().unwrap();
    assert_eq!(ran_on.len(), 2, "both compute nodes ran WASM tasks: {wasm}");
    // The fuel the tasks burned is kept with the charge, in the receipts.
    let job_id = wasm["job"].as_str().unwrap().to_string();
    let request = r#"{"op":"ledger"}"#;
    let fueled = wait_for(Duration::from_secs(20), || {
        let replies = control_call(client.ports.control_addr(), request);
        let Some(ledger) = replies.first() else {
            return false;
        };
        let receipts = ledger["receipts"].as_array().unwrap();
        let of_job: Vec<_> = receipts.iter().filter(|r| r["job"] == job_id).collect();
        of_job.len() >= 2 && of_job.iter().all(|r| r["fuel"].as_u64() > Some(0))
    });
    assert!(fueled.is_some(), "receipts of the WASM job carry its fuel");

    // WASI stdin -> stdout.
    let upper = write(dir.path(), "upper.wat", &kernels::uppercase());
    let (code, last) = submit(
        &client,
        &["--wasm", &upper, "--input", "hello ", "--input", "lan"],
    );
    assert_eq!(code, 0, "{last}");
    assert_eq!(last["result"], "HELLO LAN", "{last}");

    // An endless loop, stopped by fuel.
    let spin = write(dir.path(), "spin.wat", kernels::SPIN);
    let (code, last) = submit(
        &client,
        &[
            "--wasm",
            &spin,
            "--input",
            "x",
            "--fuel",
            "5000000",
            "--attempts",
            "1",
        ],
    );
    assert_eq!(code, 4, "{last}");
    assert_eq!(last["event"], "failed");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("fuel limit of 5000000 exhausted"), "{error}");
    assert_still_serving(&client, &computes, &w2);

    // The same loop without fuel: the node's 2 s wall-time cap.
    let (code, last) = submit(
        &client,
        &["--wasm", &spin, "--input", "x", "--attempts", "1"],
    );
    assert_eq!(code, 4, "{last}");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("time limit of 2s exceeded"), "{error}");
    assert_still_serving(&client, &computes, &w2);

    // A memory bomb: grows until the per-task cap.
    let bomb = write(
        dir.path(),
        "bomb.wat",
        r#"(module (memory 1)
             (func (export "_start")
               (loop $grow
                 (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
               unreachable))"#,
    );
    let (code, last) = submit(
        &client,
        &["--wasm", &bomb, "--input", "x", "--attempts", "1"],
    );
    assert_eq!(code, 4, "{last}");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("memory limit of"), "{error}");
    assert_still_serving(&client, &computes, &w2);

    // An import outside the host interface: refused at submit, by name.
    let socket = write(
        dir.path(),
        "socket.wat",
        r#"(module (import "env" "socket" (func $socket (result i32)))
             (func (export "_start") (drop (call $socket))))"#,
    );
    let (code, last) = submit(&client, &["--wasm", &socket, "--input", "x"]);
    assert_eq!(code, 5, "{last}");
    assert_eq!(last["event"], "rejected");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("env.socket"), "{error}");
    assert_still_serving(&client, &computes, &w2);

    // Not a module at all: the magic number, then junk.
    let junk = write(dir.path(), "junk.wasm", "\0asm\x01junk");
    let (code, last) = submit(&client, &["--wasm", &junk, "--input", "x"]);
    assert_eq!(code, 5, "{last}");
    let error = last["error"].as_str().unwrap();
    assert!(error.starts_with("module rejected: "), "{error}");
    assert_still_serving(&client, &computes, &w2);
}
