//! lppsp-runtime: the tokio runtime of an LPPSP node.
//!
//! It owns everything that touches the outside world (UDP beacon sockets,
//! the TLS transport, the local control endpoint, clocks, worker threads)
//! and drives the sans-IO state machines of `lppsp-core` with it. The
//! simulator drives the same state machines with virtual time instead.

pub mod accounts;
pub mod beacon_socket;
pub mod client;
pub mod compute;
pub mod control;
pub mod data_lock;
pub mod integrator;
pub mod join;
pub mod journal;
pub mod links;
pub mod local_ports;
pub mod market_state;
pub mod node;
pub mod power;
pub mod private;
pub mod refusals;
pub mod sharing;

/// A node that could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("identity: {0}")]
    Identity(String),
    #[error("startup: {0}")]
    Startup(String),
}
