//! A task's result as a compute node (or the integrator holding it)
//! reported it, read from a `Result` frame before the tracker bounds it.

use bytes::Bytes;

use crate::node_id::NodeId;
use crate::wire::headers::ResultHeaders;
use crate::wire::Frame;

/// A task's result as a compute node reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReport {
    pub node: NodeId,
    pub task: u64,
    /// `true`: `body` is the output; `false`: `body` is the error text.
    pub ok: bool,
    pub body: Bytes,
    /// Run time the node reports, microseconds.
    pub micros: u64,
    /// MFLOPS the node charges at.
    pub power: u64,
    /// `Some(integrator)`: the result went to that node, which holds it
    /// (`body` is then empty); `None`: `body` is the result itself.
    pub held_by: Option<NodeId>,
}

impl TaskReport {
    /// Reads the `Result/job/task/status` frame `frame` from `sender`. The
    /// worker is the node named by `Worker` when an integrator holds the
    /// result (the frame then comes from the integrator), else the sender.
    /// The power is the frame's `Power` as claimed (`promised(worker)`, what
    /// the node promised in its Hand, when absent); the tracker pays at most
    /// the promise made at placement. Returns the report and the fuel
    /// the task used (`Fuel`), or None when `Worker` is not a node id.
    pub fn from_result_frame(
        sender: NodeId,
        task: u64,
        ok: bool,
        frame: Frame,
        promised: impl FnOnce(&NodeId) -> u64,
    ) -> Option<(TaskReport, Option<u64>)> {
        let headers = ResultHeaders::read(&frame.headers).ok()?;
        let (node, held_by) = match headers.worker {
            Some(w) => (w, Some(sender)),
            None => (sender, None),
        };
        let micros = headers.elapsed_us.unwrap_or(0);
        // The claim as made: the tracker caps it at the promise the node
        // made when the task was placed, and counts a claim above it.
        let power = headers.power.unwrap_or_else(|| promised(&node));
        let fuel = headers.fuel;
        let body = frame.body.map(|b| b.to_bytes()).unwrap_or_default();
        let report = TaskReport {
            node,
            task,
            ok,
            body,
            micros,
            power,
            held_by,
        };
        Some((report, fuel))
    }
}
