//! The trait objects that cross the library boundary, and the guards that
//! keep a plugin's panics on its own side.
//!
//! A plugin author never touches these: [`crate::export_scheduler!`] and
//! its siblings wrap the author's [`crate::Scheduler`] (or balancer, or
//! executor) in [`Guarded`], whose methods run the author's code under
//! `catch_unwind` and turn a panic into an error value. That has to happen
//! here, inside the plugin: unwinding across the `extern "C"` functions
//! abi_stable generates is undefined behaviour (abi_stable aborts the
//! process instead), so the host cannot catch a plugin's panic itself.

// `#[sabi_trait]` expands to impls inside a const block, which this lint
// flags; the code is abi_stable's, not ours to restructure.
#![allow(non_local_definitions)]

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::sabi_trait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::sabi_types::RRef;
use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec};
use abi_stable::StableAbi;

use crate::types::*;
use crate::{Balancer, Cancel, Executor, Scheduler};

/// A scheduler behind the library boundary. Errors are panics the plugin
/// caught, as text.
#[sabi_trait]
pub trait FfiScheduler: Send {
    fn place(&mut self, request: &PlacementRequest<'_>) -> RResult<Plan, RString>;
}

/// A balancer behind the library boundary.
#[sabi_trait]
pub trait FfiBalancer: Send {
    fn on_sample(&mut self, sample: MarketSample) -> RResult<ROption<PriceProposal>, RString>;
    fn on_commit(&mut self, price_micros: u64) -> RResult<(), RString>;
    fn describe(&self) -> RResult<RString, RString>;
}

/// An executor behind the library boundary. `run` and `reduce` report a
/// caught panic as [`TaskError::Failed`], the node's own way of saying a
/// kernel failed.
#[sabi_trait]
pub trait FfiExecutor: Send + Sync {
    fn has_kernel(&self, kernel: RStr<'_>) -> RResult<bool, RString>;
    fn run(
        &self,
        spec: TaskSpec<'_>,
        limits: TaskLimits,
        cancel: CancelRef<'_>,
    ) -> RResult<TaskOutput, TaskError>;
    fn reduce(
        &self,
        kernel: RStr<'_>,
        results: RSlice<'_, RSlice<'_, u8>>,
    ) -> RResult<RVec<u8>, TaskError>;
    fn render(&self, kernel: RStr<'_>, result: RSlice<'_, u8>) -> RResult<RString, RString>;
}

/// The node's cancel flag, seen from the plugin. The host implements it.
#[sabi_trait]
pub trait FfiCancel: Send + Sync {
    fn is_cancelled(&self) -> bool;
}

/// An owned scheduler from a plugin.
pub type SchedulerBox = FfiScheduler_TO<'static, RBox<()>>;
/// An owned balancer from a plugin.
pub type BalancerBox = FfiBalancer_TO<'static, RBox<()>>;
/// An owned executor from a plugin.
pub type ExecutorBox = FfiExecutor_TO<'static, RBox<()>>;
/// A borrowed cancel flag, lent to one `run` call.
pub type CancelRef<'a> = FfiCancel_TO<'a, RRef<'a, ()>>;

/// What a plugin's constructor returns; the variant must match the
/// plugin's declared kind.
#[repr(u8)]
#[derive(StableAbi)]
pub enum Component {
    Scheduler(SchedulerBox),
    Balancer(BalancerBox),
    Executor(ExecutorBox),
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

/// How the message of a caught panic starts (`panicked in place: ...`).
pub const PANIC_PREFIX: &str = "panicked in ";

/// Runs `f`, turning a panic into `"panicked in <what>: <message>"`.
///
/// `AssertUnwindSafe`: after a panic the plugin's value may hold a half
/// made change; the host logs the failure and carries on with it, which is
/// what a caught panic means anywhere in Rust.
pub fn guard<R>(what: &str, f: impl FnOnce() -> R) -> Result<R, RString> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| RString::from(format!("{PANIC_PREFIX}{what}: {}", panic_message(&*p))))
}

/// A plugin author's component, behind the panic guard.
pub struct Guarded<T>(pub T);

impl<T: Scheduler> FfiScheduler for Guarded<T> {
    fn place(&mut self, request: &PlacementRequest<'_>) -> RResult<Plan, RString> {
        guard("place", || self.0.place(request)).into()
    }
}

impl<T: Balancer> FfiBalancer for Guarded<T> {
    fn on_sample(&mut self, sample: MarketSample) -> RResult<ROption<PriceProposal>, RString> {
        guard("on_sample", || self.0.on_sample(&sample).into()).into()
    }
    fn on_commit(&mut self, price_micros: u64) -> RResult<(), RString> {
        guard("on_commit", || self.0.on_commit(price_micros)).into()
    }
    fn describe(&self) -> RResult<RString, RString> {
        guard("describe", || RString::from(self.0.describe())).into()
    }
}

fn failed(message: RString) -> TaskError {
    TaskError::Failed(message)
}

impl<T: Executor> FfiExecutor for Guarded<T> {
    fn has_kernel(&self, kernel: RStr<'_>) -> RResult<bool, RString> {
        guard("has_kernel", || self.0.has_kernel(kernel.as_str())).into()
    }
    fn run(
        &self,
        spec: TaskSpec<'_>,
        limits: TaskLimits,
        cancel: CancelRef<'_>,
    ) -> RResult<TaskOutput, TaskError> {
        let cancel = Cancel::new(cancel);
        match guard("run", || self.0.run(&spec, &limits, &cancel)) {
            Ok(result) => result.into(),
            Err(panic) => RResult::RErr(failed(panic)),
        }
    }
    fn reduce(
        &self,
        kernel: RStr<'_>,
        results: RSlice<'_, RSlice<'_, u8>>,
    ) -> RResult<RVec<u8>, TaskError> {
        let slices: Vec<&[u8]> = results.iter().map(|r| r.as_slice()).collect();
        match guard("reduce", || self.0.reduce(kernel.as_str(), &slices)) {
            Ok(result) => result.map(RVec::from).into(),
            Err(panic) => RResult::RErr(failed(panic)),
        }
    }
    fn render(&self, kernel: RStr<'_>, result: RSlice<'_, u8>) -> RResult<RString, RString> {
        guard("render", || {
            RString::from(self.0.render(kernel.as_str(), result.as_slice()))
        })
        .into()
    }
}

/// Wraps a scheduler for the boundary (the export macros use this; hosts
/// and tests may too, to drive a plugin type without loading a library).
pub fn scheduler_box<T: Scheduler>(value: T) -> SchedulerBox {
    FfiScheduler_TO::from_value(Guarded(value), TD_Opaque)
}

/// Wraps a balancer for the boundary.
pub fn balancer_box<T: Balancer>(value: T) -> BalancerBox {
    FfiBalancer_TO::from_value(Guarded(value), TD_Opaque)
}

/// Wraps an executor for the boundary.
pub fn executor_box<T: Executor>(value: T) -> ExecutorBox {
    FfiExecutor_TO::from_value(Guarded(value), TD_Opaque)
}

/// Builds a `T` from its options under the guard.
fn construct<T, F: FnOnce() -> Result<T, String>>(f: F) -> Result<T, RString> {
    match guard("new", f) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(message.into()),
        Err(panic) => Err(panic),
    }
}

/// The constructor a scheduler plugin exports.
pub extern "C" fn new_scheduler<T: Scheduler>(options: RStr<'_>) -> RResult<Component, RString> {
    construct(|| T::new(options.as_str()))
        .map(|s| Component::Scheduler(scheduler_box(s)))
        .into()
}

/// The constructor a balancer plugin exports.
pub extern "C" fn new_balancer<T: Balancer>(options: RStr<'_>) -> RResult<Component, RString> {
    construct(|| T::new(options.as_str()))
        .map(|b| Component::Balancer(balancer_box(b)))
        .into()
}

/// The constructor an executor plugin exports.
pub extern "C" fn new_executor<T: Executor>(options: RStr<'_>) -> RResult<Component, RString> {
    construct(|| T::new(options.as_str()))
        .map(|e| Component::Executor(executor_box(e)))
        .into()
}
