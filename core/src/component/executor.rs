//! The Executor trait: runs one task's kernel on its input, under limits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::wire::{JobId, KernelName};

/// One task to run.
#[derive(Debug, Clone, Copy)]
pub struct TaskSpec<'a> {
    pub job: JobId,
    pub task: u64,
    pub kernel: &'a KernelName,
    pub input: &'a [u8],
}

/// Limits on one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimits {
    /// Wall-clock time allowed.
    pub wall: Duration,
    /// Memory the task may use, bytes (where the executor can enforce it).
    pub memory_bytes: u64,
    /// Metered work allowed (WASM fuel), where the executor meters work.
    pub fuel: Option<u64>,
}

impl Default for TaskLimits {
    fn default() -> Self {
        Self {
            wall: Duration::from_secs(600),
            memory_bytes: 256 * 1024 * 1024,
            fuel: None,
        }
    }
}

/// A finished task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutput {
    pub result: Vec<u8>,
    /// Metered work used, where the executor meters work.
    pub fuel: Option<u64>,
}

/// Why a task failed; sent back to the client as the task's cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("unknown kernel {0}")]
    UnknownKernel(String),
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("time limit of {0:?} exceeded")]
    Timeout(Duration),
    #[error("memory limit of {0} bytes exceeded")]
    MemoryLimit(u64),
    #[error("fuel limit of {0} exhausted")]
    FuelExhausted(u64),
    #[error("cancelled")]
    Cancelled,
    #[error("kernel failed: {0}")]
    Failed(String),
}

impl TaskError {
    /// The executor has no kernel of that name.
    pub fn unknown_kernel(kernel: &KernelName) -> Self {
        TaskError::UnknownKernel(kernel.as_str().to_string())
    }
}

/// A flag the node raises to ask a running task to stop (Cancel frame, time
/// limit). Kernels check it between units of work.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs kernels. Called from worker threads, never from the async reactor.
pub trait Executor: Send + Sync {
    /// The name this executor is registered under.
    fn name(&self) -> &str;
    /// Whether this executor can run `kernel`.
    fn has_kernel(&self, kernel: &KernelName) -> bool;
    /// Runs one task to completion, failure, or cancellation.
    fn run(
        &self,
        spec: &TaskSpec<'_>,
        limits: &TaskLimits,
        cancel: &CancelFlag,
    ) -> Result<TaskOutput, TaskError>;
    /// Loads user code (a WASM module) sent with a job, and returns the
    /// kernel name its tasks use. Content-addressed: loading the same
    /// bytes again is cheap and gives the same name. Executors that run
    /// only their own kernels refuse.
    fn load_module(&self, _code: &[u8]) -> Result<KernelName, TaskError> {
        Err(TaskError::Failed(format!(
            "the {} executor runs no user modules",
            self.name()
        )))
    }
    /// Whether [`Executor::load_module`] can succeed at all.
    fn takes_modules(&self) -> bool {
        false
    }
    /// Integrates task results (ordered by task index) into the job result.
    fn reduce(&self, kernel: &KernelName, results: &[&[u8]]) -> Result<Vec<u8>, TaskError>;
    /// Renders a job result for people (`lppsp submit` prints it).
    fn render(&self, _kernel: &KernelName, result: &[u8]) -> String {
        match std::str::from_utf8(result) {
            Ok(s) => s.to_string(),
            Err(_) => format!("{} bytes", result.len()),
        }
    }
}

/// Several executors as one: a kernel runs on the first executor that has
/// it, and user modules go to the first executor that accepts them. This
/// is how a node runs builtin kernels and WASM modules side by side.
pub struct ExecutorStack {
    name: String,
    executors: Vec<Arc<dyn Executor>>,
}

impl ExecutorStack {
    pub fn new(name: impl Into<String>, executors: Vec<Arc<dyn Executor>>) -> Self {
        Self {
            name: name.into(),
            executors,
        }
    }

    fn for_kernel(&self, kernel: &KernelName) -> Result<&Arc<dyn Executor>, TaskError> {
        self.executors
            .iter()
            .find(|e| e.has_kernel(kernel))
            .ok_or_else(|| TaskError::unknown_kernel(kernel))
    }
}

impl Executor for ExecutorStack {
    fn name(&self) -> &str {
        &self.name
    }
    fn has_kernel(&self, kernel: &KernelName) -> bool {
        self.executors.iter().any(|e| e.has_kernel(kernel))
    }
    fn run(
        &self,
        spec: &TaskSpec<'_>,
        limits: &TaskLimits,
        cancel: &CancelFlag,
    ) -> Result<TaskOutput, TaskError> {
        self.for_kernel(spec.kernel)?.run(spec, limits, cancel)
    }
    fn load_module(&self, code: &[u8]) -> Result<KernelName, TaskError> {
        let mut last = None;
        for e in self.executors.iter().filter(|e| e.takes_modules()) {
            match e.load_module(code) {
                Ok(kernel) => return Ok(kernel),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            TaskError::Failed(format!("the {} executor runs no user modules", self.name))
        }))
    }
    fn takes_modules(&self) -> bool {
        self.executors.iter().any(|e| e.takes_modules())
    }
    fn reduce(&self, kernel: &KernelName, results: &[&[u8]]) -> Result<Vec<u8>, TaskError> {
        self.for_kernel(kernel)?.reduce(kernel, results)
    }
    fn render(&self, kernel: &KernelName, result: &[u8]) -> String {
        match self.for_kernel(kernel) {
            Ok(e) => e.render(kernel, result),
            Err(_) => format!("{} bytes", result.len()),
        }
    }
}
