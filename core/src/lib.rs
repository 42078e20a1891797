//! lppsp-core: the sans-IO heart of LPPSP/1.0.
//!
//! This crate holds the protocol as data and state machines: the wire codec
//! ([`wire`]), exact money ([`money`]), node identity, the four component
//! traits ([`component`]), the config model and the registry. It is
//! deterministic: it never opens a socket, reads a clock, spawns a thread or
//! draws a random number. Time comes in as arguments. The tokio runtime
//! (`lppsp-runtime`) and the simulator drive the same code.

#![forbid(unsafe_code)]

pub mod access;
pub mod arrears;
pub mod beacon;
pub mod book;
pub mod charge;
pub mod component;
pub mod config;
pub mod curves;
pub mod job;
pub mod market;
pub mod money;
pub mod node;
pub mod node_id;
pub mod registry;
pub mod sharing;
pub mod splitmix;
pub mod wire;

pub use money::{Bounty, Price};
pub use node_id::NodeId;

/// The protocol version this implementation speaks (RFC: LPPSP/1.0).
pub const PROTOCOL_VERSION: &str = "1.0";
