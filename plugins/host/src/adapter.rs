//! The node's component traits, implemented by calling into a plugin.
//!
//! Every call goes through the plugin's panic guard (see
//! `lppsp_plugin_abi::ffi`), so a panic arrives here as an error value for
//! that call. The node's traits have no error path for most calls, so each
//! failure becomes the call's harmless answer: an empty plan (the tasks
//! stay pending and the next round tries again), no price proposal, a
//! failed task, the default rendering. Failures are logged with the
//! plugin's name and path, at most once a second per component so that a
//! plugin failing on every tick does not flood the log.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RSlice, RStr};
use lppsp_core::component::{
    Balancer, CancelFlag, Executor, MarketSample, PlacementRequest, Plan, PriceProposal, Scheduler,
    TaskError, TaskLimits, TaskOutput, TaskSpec,
};
use lppsp_core::money::Price;
use lppsp_core::wire::KernelName;
use lppsp_plugin_abi::{BalancerBox, ExecutorBox, FfiCancel, FfiCancel_TO, SchedulerBox};
use tracing::{error, warn};

use crate::convert;
use lppsp_plugin_abi::ffi::PANIC_PREFIX;

/// Who a component is, for log lines.
#[derive(Debug)]
pub struct Origin {
    pub name: String,
    pub path: PathBuf,
}

/// Logs plugin failures, at most one line a second, counting the rest.
#[derive(Debug)]
struct FailureLog {
    origin: Origin,
    state: Mutex<(Option<Instant>, u64)>,
}

impl FailureLog {
    const EVERY: Duration = Duration::from_secs(1);

    fn new(origin: Origin) -> Self {
        Self {
            origin,
            state: Mutex::new((None, 0)),
        }
    }

    fn report(&self, call: &str, message: &str) {
        // A poisoned lock only means another thread panicked while logging;
        // the counter is still usable.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, suppressed) = &mut *state;
        if last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            *suppressed += 1;
            return;
        }
        error!(
            plugin = %self.origin.name,
            path = %self.origin.path.display(),
            call,
            suppressed = *suppressed,
            "plugin call failed: {message}"
        );
        *last = Some(Instant::now());
        *suppressed = 0;
    }
}

/// A scheduler plugin.
pub struct PluginScheduler {
    inner: SchedulerBox,
    log: FailureLog,
}

impl PluginScheduler {
    pub fn new(inner: SchedulerBox, origin: Origin) -> Self {
        Self {
            inner,
            log: FailureLog::new(origin),
        }
    }
}

impl Scheduler for PluginScheduler {
    fn name(&self) -> &str {
        &self.log.origin.name
    }

    fn place(&mut self, request: &PlacementRequest<'_>) -> Plan {
        let parts = convert::RequestParts::new(request);
        let mirrored = parts.request(request);
        match self.inner.place(&mirrored) {
            RResult::ROk(plan) => {
                let (plan, dropped) = convert::plan(plan, request);
                if !dropped.is_empty() {
                    warn!(
                        plugin = %self.log.origin.name,
                        "dropped from the plugin's plan: {}",
                        dropped.join("; ")
                    );
                }
                plan
            }
            RResult::RErr(e) => {
                self.log.report("place", &e);
                Plan::default()
            }
        }
    }
}

/// A balancer plugin.
pub struct PluginBalancer {
    inner: BalancerBox,
    log: FailureLog,
}

impl PluginBalancer {
    pub fn new(inner: BalancerBox, origin: Origin) -> Self {
        Self {
            inner,
            log: FailureLog::new(origin),
        }
    }
}

impl Balancer for PluginBalancer {
    fn name(&self) -> &str {
        &self.log.origin.name
    }

    fn on_sample(&mut self, sample: &MarketSample) -> Option<PriceProposal> {
        match self.inner.on_sample(convert::sample(sample)) {
            RResult::ROk(p) => p.into_option().map(convert::proposal),
            RResult::RErr(e) => {
                self.log.report("on_sample", &e);
                None
            }
        }
    }

    fn on_commit(&mut self, price: Price) {
        if let RResult::RErr(e) = self.inner.on_commit(price.micros()) {
            self.log.report("on_commit", &e);
        }
    }

    fn describe(&self) -> String {
        match self.inner.describe() {
            RResult::ROk(s) if s.is_empty() => self.log.origin.name.clone(),
            RResult::ROk(s) => s.into_string(),
            RResult::RErr(e) => {
                self.log.report("describe", &e);
                format!("{} (describe failed)", self.log.origin.name)
            }
        }
    }
}

/// An executor plugin.
pub struct PluginExecutor {
    inner: ExecutorBox,
    log: FailureLog,
}

impl PluginExecutor {
    pub fn new(inner: ExecutorBox, origin: Origin) -> Self {
        Self {
            inner,
            log: FailureLog::new(origin),
        }
    }
}

/// The node's cancel flag, lent to the plugin for one `run`.
struct HostCancel<'a>(&'a CancelFlag);

impl FfiCancel for HostCancel<'_> {
    fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

impl Executor for PluginExecutor {
    fn name(&self) -> &str {
        &self.log.origin.name
    }

    fn has_kernel(&self, kernel: &KernelName) -> bool {
        match self.inner.has_kernel(RStr::from_str(kernel.as_str())) {
            RResult::ROk(b) => b,
            RResult::RErr(e) => {
                self.log.report("has_kernel", &e);
                false
            }
        }
    }

    fn run(
        &self,
        spec: &TaskSpec<'_>,
        limits: &TaskLimits,
        cancel: &CancelFlag,
    ) -> Result<TaskOutput, TaskError> {
        let host_cancel = HostCancel(cancel);
        let cancel = FfiCancel_TO::from_ptr(&host_cancel, TD_Opaque);
        let mirrored = lppsp_plugin_abi::TaskSpec {
            job: spec.job.0,
            task: spec.task,
            kernel: RStr::from_str(spec.kernel.as_str()),
            input: RSlice::from_slice(spec.input),
        };
        match self.inner.run(mirrored, convert::limits(limits), cancel) {
            RResult::ROk(out) => Ok(convert::output(out)),
            RResult::RErr(e) => {
                let e = convert::task_error(e);
                // A kernel's own failure is the task's business; a panic
                // is the plugin's, and worth a log line.
                if let TaskError::Failed(m) = &e {
                    if m.starts_with(PANIC_PREFIX) {
                        self.log.report("run", m);
                    }
                }
                Err(e)
            }
        }
    }

    fn reduce(&self, kernel: &KernelName, results: &[&[u8]]) -> Result<Vec<u8>, TaskError> {
        let slices: Vec<RSlice<'_, u8>> = results.iter().map(|r| RSlice::from_slice(r)).collect();
        match self
            .inner
            .reduce(RStr::from_str(kernel.as_str()), RSlice::from_slice(&slices))
        {
            RResult::ROk(v) => Ok(v.into_vec()),
            RResult::RErr(e) => {
                let e = convert::task_error(e);
                // A kernel's own failure is the task's business; a panic
                // is the plugin's, and worth a log line.
                if let TaskError::Failed(m) = &e {
                    if m.starts_with(PANIC_PREFIX) {
                        self.log.report("reduce", m);
                    }
                }
                Err(e)
            }
        }
    }

    fn render(&self, kernel: &KernelName, result: &[u8]) -> String {
        match self
            .inner
            .render(RStr::from_str(kernel.as_str()), RSlice::from_slice(result))
        {
            RResult::ROk(s) => s.into_string(),
            RResult::RErr(e) => {
                self.log.report("render", &e);
                match std::str::from_utf8(result) {
                    Ok(s) => s.to_string(),
                    Err(_) => format!("{} bytes", result.len()),
                }
            }
        }
    }
}
