//! `lppsp bench` end to end at a small scale: a real cluster, JSON lines on
//! stdout with the documented keys and a correct result. Behaviour only:
//! the benchmark measures time, this test never checks it.

use std::process::Command;

const KEYS: &[&str] = &[
    "workload",
    "nodes",
    "kernel",
    "job_s",
    "figure",
    "unit",
    "result",
    "expected",
    "correct",
    "startup_s",
    "warmup_s",
    "rss_mib",
    "idle_rss_mib",
    "versions",
    "commit",
];

fn bench(args: &[&str]) -> (std::process::Output, Vec<serde_json::Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_lppsp"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run lppsp bench");
    let stdout = String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8");
    let lines = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}"))
        })
        .collect();
    (out, lines)
}

#[test]
fn w1_on_two_nodes_prints_one_correct_json_line() {
    let (out, lines) = bench(&["--workload", "w1", "--nodes", "2", "--scale", "0.02"]);
    assert!(
        out.status.success(),
        "lppsp bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines.len(), 1, "one run, one line");
    let v = &lines[0];
    for k in KEYS {
        assert!(v.get(k).is_some(), "key {k} missing in {v}");
    }
    assert_eq!(v["workload"], "w1");
    assert_eq!(v["nodes"], 2);
    assert_eq!(v["kernel"], "builtin");
    assert_eq!(v["unit"], "tasks/s");
    assert_eq!(v["tasks"], 200);
    assert_eq!(v["correct"], true, "{v}");
    assert_eq!(v["result"], v["expected"]);
    assert!(v["job_s"].as_f64().is_some_and(|s| s > 0.0), "{v}");
    assert!(v["figure"].as_f64().is_some_and(|f| f > 0.0), "{v}");
    for name in ["client", "compute-1", "compute-2"] {
        for k in ["rss_mib", "idle_rss_mib"] {
            // Null only where there is no /proc.
            let m = &v[k][name];
            assert!(
                m.is_null() || m.as_f64().is_some_and(|x| x > 0.0),
                "{k}.{name}: {m}"
            );
        }
    }
    assert!(v["versions"]["lppsp"].is_string());
    assert!(v["commit"].is_string());
}

#[test]
fn wasm_kernel_without_a_wasm_executor_is_a_clear_error() {
    let (out, lines) = bench(&["--workload", "w1", "--kernel", "wasm", "--scale", "0.01"]);
    if out.status.success() {
        // The wasm executor is wired in: then the run must be correct.
        assert!(lines.iter().all(|v| v["correct"] == true), "{lines:?}");
        return;
    }
    assert!(lines.is_empty(), "nothing on stdout: {lines:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wasm"), "{err}");
}
