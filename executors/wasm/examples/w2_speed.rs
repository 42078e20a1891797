//! Prints the WASM/native time ratio of W2 (Monte Carlo pi): the same tasks
//! through the builtin executor and through examples/kernels/
//! w2-monte-carlo-pi.wat. A measurement to record, not a test.
//!
//!     cargo run --release -p lppsp-executor-wasm --example w2_speed [tasks] [samples]
//!
//! Defaults: 10 tasks of 1,000,000 samples, best of 5 rounds each way.

use std::time::{Duration, Instant};

use lppsp_core::component::{CancelFlag, Executor, TaskLimits, TaskSpec};
use lppsp_core::wire::{JobId, KernelName};
use lppsp_executor_builtin::{w2_input, BuiltinExecutor, W2_MONTE_CARLO_PI};
use lppsp_executor_wasm::{kernel_name, WasmExecutor};

const W2: &str = include_str!("../../../examples/kernels/w2-monte-carlo-pi.wat");
const ROUNDS: usize = 5;

/// Runs every task serially; returns the time and the results.
fn time(ex: &dyn Executor, kernel: &KernelName, inputs: &[Vec<u8>]) -> (Duration, Vec<Vec<u8>>) {
    let limits = TaskLimits::default();
    let cancel = CancelFlag::new();
    let start = Instant::now();
    let results = inputs
        .iter()
        .enumerate()
        .map(|(task, input)| {
            let spec = TaskSpec {
                job: JobId(1),
                task: task as u64,
                kernel,
                input,
            };
            match ex.run(&spec, &limits, &cancel) {
                Ok(out) => out.result,
                Err(e) => {
                    eprintln!("{} failed task {task}: {e}", ex.name());
                    std::process::exit(1);
                }
            }
        })
        .collect();
    (start.elapsed(), results)
}

fn best(ex: &dyn Executor, kernel: &KernelName, inputs: &[Vec<u8>]) -> (Duration, Vec<Vec<u8>>) {
    let mut best = time(ex, kernel, inputs);
    for _ in 1..ROUNDS {
        let t = time(ex, kernel, inputs);
        if t.0 < best.0 {
            best = t;
        }
    }
    best
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tasks: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    let samples: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let inputs: Vec<Vec<u8>> = (0..tasks).map(|t| w2_input(t, samples)).collect();

    let wasm = WasmExecutor::new()?;
    let compile = Instant::now();
    let id = wasm.load(W2.as_bytes())?;
    let compile = compile.elapsed();
    let wasm_kernel = kernel_name(&id);
    let native_kernel = KernelName::new(W2_MONTE_CARLO_PI)?;

    let (native, native_results) = best(&BuiltinExecutor, &native_kernel, &inputs);
    let (wasm_time, wasm_results) = best(&wasm, &wasm_kernel, &inputs);
    if native_results != wasm_results {
        eprintln!("results differ between native and WASM");
        std::process::exit(1);
    }
    let refs: Vec<&[u8]> = wasm_results.iter().map(Vec::as_slice).collect();
    let job = wasm.reduce(&wasm_kernel, &refs)?;

    println!("W2: {tasks} tasks x {samples} samples, best of {ROUNDS} rounds, serial");
    println!("  {}", wasm.render(&wasm_kernel, &job));
    println!("  native: {:>10.3} ms", native.as_secs_f64() * 1e3);
    println!(
        "  wasm:   {:>10.3} ms  (+ {:.3} ms compile, once)",
        wasm_time.as_secs_f64() * 1e3,
        compile.as_secs_f64() * 1e3
    );
    println!(
        "  wasm/native ratio: {:.2}",
        wasm_time.as_secs_f64() / native.as_secs_f64()
    );
    Ok(())
}
