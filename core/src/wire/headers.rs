//! The headers of the frames between nodes, one type per message's header
//! set: what a `Task` and a `Result` carry beyond their message line.
//! (Beacon headers are `beacon::BeaconHeaders`; receipts' are the ledger's.)
//!
//! Each type reads its set from a frame and writes it onto one, so the
//! header names exist here only. Reading bounds every value: a number
//! that does not parse counts as absent (every number here is a claim
//! the receiver caps anyway), and a node id that does not parse makes the
//! whole set unreadable, since it would route or credit the frame wrongly.

use crate::node_id::NodeId;
use crate::wire::{Frame, Headers};

/// The header names, as written on the wire (read case-insensitively).
pub mod name {
    /// Task: where the result goes when not back to the client.
    pub const RESULT_TO: &str = "Result-To";
    /// Task: the most fuel the client pays for per task.
    pub const FUEL_LIMIT: &str = "Fuel-Limit";
    /// Result: run time the compute node reports, microseconds.
    pub const ELAPSED_US: &str = "Elapsed-Us";
    /// Result: MFLOPS the compute node charges at.
    pub const POWER: &str = "Power";
    /// Result: fuel the task used (WASM).
    pub const FUEL: &str = "Fuel";
    /// Result sent to an integrator: the client the task is for.
    pub const CLIENT: &str = "Client";
    /// Result notice from an integrator: the node that ran the task.
    pub const WORKER: &str = "Worker";
}

/// A node id header was present but is no node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {name}: {value:?} is not a node id")]
pub struct BadNodeHeader {
    pub name: &'static str,
    pub value: String,
}

fn number(h: &Headers, name: &str) -> Option<u64> {
    h.get(name).and_then(|v| v.parse::<u64>().ok())
}

fn node(h: &Headers, name: &'static str) -> Result<Option<NodeId>, BadNodeHeader> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v.parse::<NodeId>().map(Some).map_err(|_| BadNodeHeader {
            name,
            value: v.chars().take(80).collect(),
        }),
    }
}

/// The headers of a `Task` frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskHeaders {
    /// The integrator that takes the result (`None`: the client).
    pub result_to: Option<NodeId>,
    /// The most fuel the client pays for (WASM tasks).
    pub fuel_limit: Option<u64>,
}

impl TaskHeaders {
    /// Reads the set from a task frame's headers.
    pub fn read(h: &Headers) -> Result<Self, BadNodeHeader> {
        Ok(Self {
            result_to: node(h, name::RESULT_TO)?,
            fuel_limit: number(h, name::FUEL_LIMIT),
        })
    }

    /// `frame` with these headers added.
    #[must_use]
    pub fn write(&self, mut frame: Frame) -> Frame {
        if let Some(r) = self.result_to {
            frame = frame.with_header(name::RESULT_TO, r.to_string());
        }
        if let Some(f) = self.fuel_limit {
            frame = frame.with_header(name::FUEL_LIMIT, f.to_string());
        }
        frame
    }
}

/// The headers of a `Result` frame: from the compute node to the client
/// (or to an integrator, with `client`), and from an integrator to the
/// client (with `worker`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultHeaders {
    /// Run time the node reports, microseconds.
    pub elapsed_us: Option<u64>,
    /// MFLOPS the node charges at.
    pub power: Option<u64>,
    /// Fuel the task used.
    pub fuel: Option<u64>,
    /// On a result sent to an integrator: the client it holds it for.
    pub client: Option<NodeId>,
    /// On an integrator's notice: the node that ran the task.
    pub worker: Option<NodeId>,
}

impl ResultHeaders {
    /// Reads the set from a result frame's headers.
    pub fn read(h: &Headers) -> Result<Self, BadNodeHeader> {
        Ok(Self {
            elapsed_us: number(h, name::ELAPSED_US),
            power: number(h, name::POWER),
            fuel: number(h, name::FUEL),
            client: node(h, name::CLIENT)?,
            worker: node(h, name::WORKER)?,
        })
    }

    /// Whether a result frame is for an integrator to hold (it names the
    /// client), rather than for this node's own job.
    #[must_use]
    pub fn for_integrator(h: &Headers) -> bool {
        h.get(name::CLIENT).is_some()
    }

    /// The notice an integrator sends the client for this result: the
    /// worker's claims, and who the worker was.
    #[must_use]
    pub fn notice_from(&self, worker: NodeId) -> Self {
        Self {
            client: None,
            worker: Some(worker),
            ..*self
        }
    }

    /// `frame` with these headers added.
    #[must_use]
    pub fn write(&self, mut frame: Frame) -> Frame {
        let numbers = [
            (name::ELAPSED_US, self.elapsed_us),
            (name::POWER, self.power),
            (name::FUEL, self.fuel),
        ];
        for (n, v) in numbers {
            if let Some(v) = v {
                frame = frame.with_header(n, v.to_string());
            }
        }
        for (n, v) in [(name::CLIENT, self.client), (name::WORKER, self.worker)] {
            if let Some(v) = v {
                frame = frame.with_header(n, v.to_string());
            }
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Price;
    use crate::wire::{JobId, Message};

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 8])
    }

    fn result_frame() -> Frame {
        Frame::new(
            Price::ZERO,
            Message::Result {
                job: JobId(1),
                task: 2,
                ok: true,
            },
        )
    }

    #[test]
    fn result_headers_round_trip() {
        let h = ResultHeaders {
            elapsed_us: Some(1500),
            power: Some(900),
            fuel: Some(7),
            client: Some(id(3)),
            worker: None,
        };
        let frame = h.write(result_frame());
        assert_eq!(ResultHeaders::read(&frame.headers), Ok(h));
        assert!(ResultHeaders::for_integrator(&frame.headers));
        let notice = h.notice_from(id(4));
        assert_eq!(notice.client, None);
        assert_eq!(notice.worker, Some(id(4)));
        assert_eq!(notice.elapsed_us, Some(1500));
    }

    #[test]
    fn a_garbled_number_is_absent_and_a_garbled_node_is_an_error() {
        let frame = result_frame()
            .with_header("elapsed-us", "lots")
            .with_header("Power", "-5");
        let h = ResultHeaders::read(&frame.headers).unwrap_or_default();
        assert_eq!((h.elapsed_us, h.power), (None, None));
        let frame = result_frame().with_header("Worker", "not-a-node");
        assert!(ResultHeaders::read(&frame.headers).is_err());
    }

    #[test]
    fn task_headers_round_trip() {
        let h = TaskHeaders {
            result_to: Some(id(9)),
            fuel_limit: Some(1_000_000),
        };
        let task = Message::Task {
            job: JobId(1),
            task: 0,
            kernel: crate::wire::KernelName::new("w1").expect("a valid kernel name"),
        };
        let frame = h.write(Frame::new(Price::ZERO, task));
        assert_eq!(TaskHeaders::read(&frame.headers), Ok(h));
    }
}
