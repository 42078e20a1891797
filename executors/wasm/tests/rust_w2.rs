//! examples/kernels/rust-w2 (W2 in Rust for wasm32-wasip1) against the
//! builtin W2. Needs the `wasm32-wasip1` target; without it the test
//! prints `SKIPPED rust_w2_matches_the_builtin: <why>` and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use lppsp_core::component::{CancelFlag, Executor, TaskError, TaskLimits, TaskSpec};
use lppsp_core::wire::{JobId, KernelName};
use lppsp_executor_builtin::{w2_input, BuiltinExecutor, W2_MONTE_CARLO_PI};
use lppsp_executor_wasm::{kernel_name, Reducer, WasmExecutor};

const TARGET: &str = "wasm32-wasip1";

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Err(e) => Some(format!("cannot run `rustup target list --installed`: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "`rustup target list --installed` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(out) => {
            let installed = String::from_utf8_lossy(&out.stdout);
            if installed.lines().any(|l| l.trim() == TARGET) {
                None
            } else {
                Some(format!(
                    "the {TARGET} target is not installed (`rustup target add {TARGET}`); installed: {}",
                    installed.split_whitespace().collect::<Vec<_>>().join(", ")
                ))
            }
        }
    }
}

/// Builds the crate; returns the .wasm path.
fn build(manifest: &Path) -> PathBuf {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rust-w2");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(manifest)
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .unwrap();
    assert!(status.success(), "building {} failed", manifest.display());
    target_dir.join(TARGET).join("release").join("rust-w2.wasm")
}

#[test]
fn rust_w2_matches_the_builtin() {
    if let Some(reason) = skip_reason() {
        // Past the harness's capture, so that a passing run shows it.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED rust_w2_matches_the_builtin: {reason}"
        );
        return;
    }
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kernels/rust-w2/Cargo.toml");
    let wasm = std::fs::read(build(&manifest)).unwrap();
    let ex = WasmExecutor::new().unwrap();
    let id = ex.load(&wasm).unwrap();
    assert_eq!(ex.reducer(&id), Some(Reducer::W2));
    let kernel = kernel_name(&id);
    let native = KernelName::new(W2_MONTE_CARLO_PI).unwrap();
    let limits = TaskLimits::default();
    let cancel = CancelFlag::new();
    for (task, samples) in [(0, 0), (1, 1000), (7, 100_000), (u64::MAX, 5000)] {
        let input = w2_input(task, samples);
        let spec = |kernel| TaskSpec {
            job: JobId(1),
            task,
            kernel,
            input: &input,
        };
        let want = BuiltinExecutor
            .run(&spec(&native), &limits, &cancel)
            .unwrap();
        let got = ex.run(&spec(&kernel), &limits, &cancel).unwrap();
        assert_eq!(got.result, want.result, "task {task}");
    }
    let spec = TaskSpec {
        job: JobId(1),
        task: 0,
        kernel: &kernel,
        input: b"short",
    };
    assert!(matches!(
        ex.run(&spec, &limits, &cancel),
        Err(TaskError::BadInput(m)) if m.contains("expects 16 bytes")
    ));
}
