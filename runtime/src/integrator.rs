//! The integrator's reduce step: the node holds the results
//! (`lppsp_core::node::integrator`), and when a client asks, this runs the
//! kernel's reduce on a blocking thread, since a reduce may be long.

use bytes::Bytes;
use lppsp_core::component::Executor;
use lppsp_core::node::integrator::{self, IntegrateError};
use lppsp_core::wire::{Frame, JobId, KernelName};

/// Reduces `results` with `kernel` and builds the `Integrated` answer.
pub fn integrate(
    executor: &dyn Executor,
    price: lppsp_core::money::Price,
    job: JobId,
    kernel: &KernelName,
    results: Result<Vec<Bytes>, IntegrateError>,
) -> Frame {
    let outcome = results.map_err(|e| e.to_string()).and_then(|results| {
        let refs: Vec<&[u8]> = results.iter().map(|r| r.as_ref()).collect();
        executor.reduce(kernel, &refs).map_err(|e| e.to_string())
    });
    integrator::answer(price, job, outcome)
}
