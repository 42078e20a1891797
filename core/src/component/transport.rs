//! The Transport trait: authenticated, framed connections between nodes.
//!
//! Expressed with boxed std futures so that core needs no async runtime;
//! implementations (tls-tcp, memory) bring their own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::node_id::NodeId;
use crate::wire::{DecodeError, Frame};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who is at the other end, as proven by the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node: NodeId,
    /// The peer's certificate, DER.
    pub cert_der: Vec<u8>,
}

/// Transport failures.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake with {addr}: {reason}")]
    Handshake { addr: String, reason: String },
    /// The peer sent a frame that could not be used; the connection is
    /// still good (see [`DecodeError::is_recoverable`]).
    #[error("bad frame from peer: {0}")]
    BadFrame(DecodeError),
    /// The peer's bytes broke the framing; the connection is closed.
    #[error("protocol violation from peer, connection closed: {0}")]
    Protocol(DecodeError),
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Config(String),
}

/// Receives frames from one connection.
pub trait FrameReader: Send {
    /// The next frame; `Ok(None)` at a clean end of stream.
    fn read_frame(&mut self) -> BoxFuture<'_, Result<Option<Frame>, TransportError>>;
}

/// Sends frames on one connection.
pub trait FrameWriter: Send {
    /// Writes the frames in order and flushes once: batching many small
    /// frames into one call is how per-task overhead stays small.
    fn write_frames<'a>(
        &'a mut self,
        frames: &'a [Frame],
    ) -> BoxFuture<'a, Result<(), TransportError>>;
    /// Closes the sending half.
    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>>;
}

/// One authenticated connection.
pub trait Connection: Send {
    fn peer(&self) -> &PeerIdentity;
    fn remote_addr(&self) -> SocketAddr;
    /// Splits into halves that can be driven by separate tasks.
    fn split(self: Box<Self>) -> (Box<dyn FrameWriter>, Box<dyn FrameReader>);
}

/// Opens and accepts connections.
pub trait Transport: Send + Sync {
    /// The name this transport is registered under.
    fn name(&self) -> &str;
    /// Where this transport accepts connections.
    fn local_addr(&self) -> SocketAddr;
    /// Waits for the next authenticated incoming connection.
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>>;
    /// Connects to a peer's endpoint and authenticates it.
    fn connect(
        &self,
        addr: SocketAddr,
    ) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>>;
    /// Incoming connections refused so far (failed or timed-out
    /// handshakes, peers not certified by the community CA), for status.
    fn refused_connections(&self) -> u64 {
        0
    }

    /// Named counters of what the transport refused and why (malformed or
    /// oversized frames, slow peers, connections over a cap), for status.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}
