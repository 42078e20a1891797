//! The four component traits (Transport, Scheduler, Balancer, Executor).
//!
//! Implementations live in their own crates and are chosen by name from a
//! node's config through the [`crate::registry::Registry`]. Scheduler and
//! Balancer are synchronous and pure, so that the real node and the
//! simulator call the very same code; Executor runs on worker threads;
//! Transport is async but expressed with std futures only, so that core
//! stays free of any runtime.

pub mod balancer;
pub mod executor;
pub mod scheduler;
pub mod transport;

pub use balancer::{Balancer, MarketSample, PriceProposal};
pub use executor::{
    CancelFlag, Executor, ExecutorStack, TaskError, TaskLimits, TaskOutput, TaskSpec,
};
pub use scheduler::{
    Constraints, PeerView, PendingTask, Placement, PlacementRequest, Plan, Scheduler, Unplaced,
};
pub use transport::{
    BoxFuture, Connection, FrameReader, FrameWriter, PeerIdentity, Transport, TransportError,
};
