//! The node's own state machines, sans-IO: what a node does with the book,
//! the market and its jobs, written once and driven both by the tokio
//! runtime (`lppsp-runtime`) and by the simulator (`lppsp-sim`).
//!
//! - [`client`]: the jobs this node submitted, their placement rounds and
//!   what the compute nodes answer;
//! - [`placement`]: the peers as a scheduler sees them, and how many
//!   tasks each can take from one client;
//! - [`beacons`]: when a node says Hand and Idle, and what they carry;
//! - [`sampling`]: when a market sample reaches the balancer, and whether
//!   its proposals go to the price agreement;
//! - [`admission`]: whether a compute node takes a task, or why not;
//! - [`integrator`]: the results a node holds for other nodes' jobs;
//! - [`defaults`]: the defaults of a submitted job.
//!
//! Each takes `(now, input)` and returns or queues outputs; none opens a
//! socket, reads a clock or draws a random number.

pub mod admission;
pub mod beacons;
pub mod client;
pub mod defaults;
pub mod integrator;
pub mod placement;
pub mod sampling;
