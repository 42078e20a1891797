//! The node's own state machines, sans-IO: what a node does with the book,
//! the market and its jobs, written once and driven both by the tokio
//! runtime (`lppsp-runtime`) and by the simulator (`lppsp-sim`).
//!
//! - [`client`]: the jobs this node submitted, their placement rounds and
//!   what the compute nodes answer;
//! - [`placement`]: the peers as a scheduler sees them, and how many
//!   tasks each can take from one client;
//! - [`admission`]: whether a compute node takes a task, or why not;
//! - [`defaults`]: the defaults of a submitted job.
//!
//! Each takes `(now, input)` and returns or queues outputs; none opens a
//! socket, reads a clock or draws a random number.

pub mod admission;
pub mod client;
pub mod defaults;
pub mod placement;
