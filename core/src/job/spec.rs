//! What a job is and how it ends: the spec the client submits, the
//! commands the tracker hands the runtime (and the frames that carry
//! them), and the job's outcome or failure.

use bytes::Bytes;

use crate::component::scheduler::Constraints;
use crate::money::{Bounty, Price};
use crate::node_id::NodeId;
use crate::wire::headers::TaskHeaders;
use crate::wire::{Body, Frame, JobId, KernelName, Message};

/// What a job is.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub id: JobId,
    /// The node that submitted the job and pays for it.
    pub client: NodeId,
    pub kernel: KernelName,
    /// One input per task, in task order.
    pub inputs: Vec<Bytes>,
    /// The most this job may spend.
    pub budget: Bounty,
    pub constraints: Constraints,
    /// Placements a task may fail (error, lost node, timeout) before the job fails.
    pub max_attempts: u32,
    /// A placed task with no result after this long is placed again.
    pub task_timeout_ms: u64,
    /// Expected run time of one task before any has finished, microseconds.
    pub est_task_micros: u64,
    /// Nodes that must agree on each input's result (1: no verification).
    pub verify: u32,
}

/// Something the runtime must do for the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCommand {
    /// Send task `task` with `input` to `node`; the result goes to
    /// `result_to` (`None`: back to the client).
    Place {
        node: NodeId,
        task: u64,
        input: Bytes,
        result_to: Option<NodeId>,
    },
    /// Tell `node` to stop `task`.
    Cancel { node: NodeId, task: u64 },
    /// Ask the integrator `node`, which holds the results, to integrate
    /// tasks `0..tasks` and send back the job result.
    Integrate { node: NodeId, tasks: u64 },
    /// Tell the integrator `node` to drop what it holds of the job.
    Forget { node: NodeId },
}

impl JobCommand {
    /// The node this command is for, and the frame that carries it, at
    /// `price`; a task carries the job's `fuel_limit`, if it has one.
    pub fn into_frame(
        self,
        job: JobId,
        kernel: &KernelName,
        price: Price,
        fuel_limit: Option<u64>,
    ) -> (NodeId, Frame) {
        match self {
            JobCommand::Place {
                node,
                task,
                input,
                result_to,
            } => {
                let message = Message::Task {
                    job,
                    task,
                    kernel: kernel.clone(),
                };
                let frame = Frame::new(price, message).with_body(Body::from_bytes(input));
                let headers = TaskHeaders {
                    result_to,
                    fuel_limit,
                };
                (node, headers.write(frame))
            }
            JobCommand::Cancel { node, task } => (
                node,
                Frame::new(
                    price,
                    Message::Cancel {
                        job,
                        task: Some(task),
                    },
                ),
            ),
            JobCommand::Integrate { node, tasks } => {
                let message = Message::Integrate {
                    job,
                    tasks,
                    kernel: kernel.clone(),
                };
                (node, Frame::new(price, message))
            }
            JobCommand::Forget { node } => {
                (node, Frame::new(price, Message::Cancel { job, task: None }))
            }
        }
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobFailure {
    #[error("insufficient bounty: the next task needs {needed} at the current price, {left} left of the budget")]
    InsufficientBounty { needed: Bounty, left: Bounty },
    #[error("task {task} failed {attempts} times; last cause: {cause}")]
    TaskFailed {
        task: u64,
        attempts: u32,
        cause: String,
    },
    #[error("cancelled: {0}")]
    Cancelled(String),
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Every task's result, in task order, for the client to integrate.
    Done(Vec<Bytes>),
    /// The job result, integrated by the node the scheduler named.
    Integrated(Bytes),
    Failed(JobFailure),
}
