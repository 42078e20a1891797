//! The three workloads of shared/BENCHMARKS.md: their sizes, the task
//! inputs and kernel of each, and the job request that submits one.

use anyhow::Context;
use lppsp_executor_builtin as builtin;
use lppsp_runtime::client::{InputSpec, SubmitRequest};

/// W1: number of tasks.
pub(super) const W1_TASKS: u64 = 10_000;
/// W2: number of tasks and samples per task.
const W2_TASKS: u64 = 200;
const W2_SAMPLES: u64 = 5_000_000;
/// W3: number of tasks and input bytes per task.
const W3_TASKS: u64 = 64;
const W3_BYTES: u64 = 16 << 20;
/// Seed of W3's generated inputs (`InputSpec::Random`).
pub(super) const W3_SEED: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Workload {
    W1,
    W2,
    W3,
}

impl Workload {
    pub(super) fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
        }
    }

    pub(super) fn kernel(self) -> &'static str {
        match self {
            Workload::W1 => builtin::W1_SUM_SQUARES,
            Workload::W2 => builtin::W2_MONTE_CARLO_PI,
            Workload::W3 => builtin::W3_BYTE_SUM,
        }
    }
}

/// The sizes of one workload run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    pub(super) tasks: u64,
    /// W2: samples per task.
    pub(super) samples: u64,
    /// W3: input bytes per task.
    pub(super) bytes: u64,
}

fn scaled(n: u64, scale: f64) -> u64 {
    ((n as f64 * scale).round() as u64).max(1)
}

impl Sizes {
    pub(super) fn of(w: Workload, scale: f64) -> Self {
        match w {
            Workload::W1 => Sizes {
                tasks: scaled(W1_TASKS, scale),
                samples: 0,
                bytes: 0,
            },
            Workload::W2 => Sizes {
                tasks: W2_TASKS,
                samples: scaled(W2_SAMPLES, scale),
                bytes: 0,
            },
            Workload::W3 => Sizes {
                tasks: W3_TASKS,
                samples: 0,
                bytes: scaled(W3_BYTES, scale),
            },
        }
    }

    pub(super) fn inputs(&self, w: Workload) -> InputSpec {
        match w {
            Workload::W1 => InputSpec::Range {
                start: 0,
                end: self.tasks,
                extra: vec![],
            },
            Workload::W2 => InputSpec::Range {
                start: 0,
                end: self.tasks,
                extra: vec![self.samples],
            },
            Workload::W3 => InputSpec::Random {
                count: self.tasks,
                size: self.bytes,
                seed: W3_SEED,
            },
        }
    }
}

/// The workload's WAT kernel from examples/kernels, compiled, in base64:
/// what `lppsp submit --wasm` sends.
pub(super) fn wasm_module(w: Workload) -> anyhow::Result<String> {
    use base64::Engine as _;
    let text = match w {
        Workload::W1 => include_str!("../../../examples/kernels/w1-sum-squares.wat"),
        Workload::W2 => include_str!("../../../examples/kernels/w2-monte-carlo-pi.wat"),
        Workload::W3 => include_str!("../../../examples/kernels/w3-byte-sum.wat"),
    };
    let binary = wat::parse_str(text).with_context(|| format!("{} WAT kernel", w.name()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(binary))
}

pub(super) fn submit_request(
    w: Workload,
    kernel: &str,
    module: Option<&String>,
    sizes: &Sizes,
) -> SubmitRequest {
    // A hint for the pipeline depth before the first task has finished.
    let est_task_ms = match w {
        Workload::W1 => 1,
        Workload::W2 | Workload::W3 => 10,
    };
    SubmitRequest {
        kernel: if module.is_some() {
            String::new()
        } else {
            kernel.to_string()
        },
        module: module.cloned(),
        fuel: None,
        inputs: sizes.inputs(w),
        budget: None,
        arch: None,
        min_power: 0,
        max_attempts: 3,
        task_timeout_s: 300,
        est_task_ms,
        verify: 1,
        resume: None,
        max_price: None,
    }
}
