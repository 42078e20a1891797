//! In-process LPPSP transport for tests and the simulator
//!
//! A [`MemoryNetwork`] is a hub of addresses inside one process. A node
//! binds a [`MemoryTransport`] to an address under a NodeId it is given
//! (there is no handshake to prove it: everything in the process is
//! trusted); connecting to a bound address gives both ends a connection
//! whose [`Connection::peer`] is the other side's NodeId. Frames pass as
//! [`Frame`] values over bounded tokio channels, so there is no encoding,
//! and a slow reader pushes back on its writer as a real socket would.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use lppsp_core::component::{
    BoxFuture, Connection, FrameReader, FrameWriter, PeerIdentity, Transport, TransportError,
};
use lppsp_core::wire::Frame;
use lppsp_core::NodeId;
use tokio::sync::mpsc;

/// The name this transport is registered under.
pub const NAME: &str = "memory";
/// Frames in flight per direction of a connection before the writer waits.
pub const CONNECTION_CAPACITY: usize = 1024;
/// Connections not yet accepted before `connect` waits.
pub const BACKLOG: usize = 128;
/// First port handed out when binding port 0.
const EPHEMERAL_FIRST: u16 = 49152;

struct Listener {
    node: NodeId,
    /// Tells this binding from a later one at the same address.
    serial: u64,
    tx: mpsc::Sender<MemoryConnection>,
}

#[derive(Default)]
struct Hub {
    listeners: HashMap<SocketAddr, Listener>,
    next_serial: u64,
    next_port: u16,
}

/// A hub of in-process addresses. Cheap to clone; clones share the hub.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    hub: Arc<Mutex<Hub>>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNetwork")
            .field("bound", &self.lock().listeners.len())
            .finish()
    }
}

impl MemoryNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Hub> {
        // The hub holds plain data that no panic leaves half-updated.
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds `addr` for `node`. Port 0 picks a free port. The address is
    /// free again when the transport is dropped.
    pub fn bind(
        &self,
        addr: SocketAddr,
        node: NodeId,
    ) -> Result<Arc<MemoryTransport>, TransportError> {
        let mut hub = self.lock();
        let mut addr = addr;
        if addr.port() == 0 {
            let mut tries = 0u32;
            loop {
                if hub.next_port < EPHEMERAL_FIRST {
                    hub.next_port = EPHEMERAL_FIRST;
                }
                let candidate = SocketAddr::new(addr.ip(), hub.next_port);
                hub.next_port = hub.next_port.wrapping_add(1);
                if !hub.listeners.contains_key(&candidate) {
                    addr = candidate;
                    break;
                }
                tries += 1;
                if tries > u32::from(u16::MAX - EPHEMERAL_FIRST) {
                    return Err(TransportError::Io(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("no free port left on {}", addr.ip()),
                    )));
                }
            }
        } else if hub.listeners.contains_key(&addr) {
            return Err(TransportError::Io(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is already bound"),
            )));
        }
        let (tx, rx) = mpsc::channel(BACKLOG);
        let serial = hub.next_serial;
        hub.next_serial += 1;
        hub.listeners.insert(addr, Listener { node, serial, tx });
        drop(hub);
        Ok(Arc::new(MemoryTransport {
            net: self.clone(),
            addr,
            node,
            serial,
            incoming: tokio::sync::Mutex::new(rx),
        }))
    }

    /// True when a transport is bound at `addr`.
    pub fn is_bound(&self, addr: SocketAddr) -> bool {
        self.lock().listeners.contains_key(&addr)
    }

    /// The node bound at `addr`, if any.
    pub fn node_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.lock().listeners.get(&addr).map(|l| l.node)
    }
}

/// One node's end of a [`MemoryNetwork`].
pub struct MemoryTransport {
    net: MemoryNetwork,
    addr: SocketAddr,
    node: NodeId,
    serial: u64,
    incoming: tokio::sync::Mutex<mpsc::Receiver<MemoryConnection>>,
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("addr", &self.addr)
            .field("node", &self.node)
            .finish()
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        let mut hub = self.net.lock();
        if hub
            .listeners
            .get(&self.addr)
            .is_some_and(|l| l.serial == self.serial)
        {
            hub.listeners.remove(&self.addr);
        }
    }
}

impl MemoryTransport {
    /// The NodeId this transport was bound with.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Connects and returns the concrete connection type.
    pub async fn connect_memory(
        &self,
        addr: SocketAddr,
    ) -> Result<MemoryConnection, TransportError> {
        let (listener_tx, server_node) = {
            let hub = self.net.lock();
            match hub.listeners.get(&addr) {
                Some(l) => (l.tx.clone(), l.node),
                None => return Err(refused(addr)),
            }
        };
        let (to_server, from_client) = mpsc::channel(CONNECTION_CAPACITY);
        let (to_client, from_server) = mpsc::channel(CONNECTION_CAPACITY);
        let server_side = MemoryConnection {
            peer: peer(self.node),
            remote: self.addr,
            tx: to_client,
            rx: from_client,
        };
        listener_tx
            .send(server_side)
            .await
            .map_err(|_| refused(addr))?;
        tracing::trace!(from = %self.addr, to = %addr, "memory connection");
        Ok(MemoryConnection {
            peer: peer(server_node),
            remote: addr,
            tx: to_server,
            rx: from_server,
        })
    }

    /// Waits for the next incoming connection, concrete type.
    pub async fn accept_memory(&self) -> Result<MemoryConnection, TransportError> {
        self.incoming
            .lock()
            .await
            .recv()
            .await
            .ok_or(TransportError::Closed)
    }
}

fn refused(addr: SocketAddr) -> TransportError {
    TransportError::Io(io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("nothing is bound at {addr}"),
    ))
}

fn peer(node: NodeId) -> PeerIdentity {
    PeerIdentity {
        node,
        // No certificates in memory.
        cert_der: Vec::new(),
    }
}

impl Transport for MemoryTransport {
    fn name(&self) -> &str {
        NAME
    }

    fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let c = self.accept_memory().await?;
            Ok(Box::new(c) as Box<dyn Connection>)
        })
    }

    fn connect(
        &self,
        addr: SocketAddr,
    ) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let c = self.connect_memory(addr).await?;
            Ok(Box::new(c) as Box<dyn Connection>)
        })
    }
}

/// One in-process connection.
#[derive(Debug)]
pub struct MemoryConnection {
    peer: PeerIdentity,
    remote: SocketAddr,
    tx: mpsc::Sender<Frame>,
    rx: mpsc::Receiver<Frame>,
}

impl MemoryConnection {
    /// Splits into the concrete halves.
    pub fn split_memory(self) -> (MemoryFrameWriter, MemoryFrameReader) {
        (
            MemoryFrameWriter { tx: Some(self.tx) },
            MemoryFrameReader { rx: self.rx },
        )
    }
}

impl Connection for MemoryConnection {
    fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    fn split(self: Box<Self>) -> (Box<dyn FrameWriter>, Box<dyn FrameReader>) {
        let (w, r) = (*self).split_memory();
        (Box::new(w), Box::new(r))
    }
}

/// The sending half of a [`MemoryConnection`].
#[derive(Debug)]
pub struct MemoryFrameWriter {
    tx: Option<mpsc::Sender<Frame>>,
}

/// The receiving half of a [`MemoryConnection`].
#[derive(Debug)]
pub struct MemoryFrameReader {
    rx: mpsc::Receiver<Frame>,
}

impl FrameWriter for MemoryFrameWriter {
    /// Frames are cloned (bodies are reference-counted, so this is cheap).
    /// `Closed` after [`FrameWriter::close`] or once the peer's reader is gone.
    fn write_frames<'a>(
        &'a mut self,
        frames: &'a [Frame],
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let tx = self.tx.as_ref().ok_or(TransportError::Closed)?;
            for f in frames {
                tx.send(f.clone())
                    .await
                    .map_err(|_| TransportError::Closed)?;
            }
            Ok(())
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        self.tx = None;
        Box::pin(async { Ok(()) })
    }
}

impl FrameReader for MemoryFrameReader {
    /// `Ok(None)` once the peer closed its writer or dropped the
    /// connection. Cancel-safe.
    fn read_frame(&mut self) -> BoxFuture<'_, Result<Option<Frame>, TransportError>> {
        Box::pin(async move { Ok(self.rx.recv().await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lppsp_core::wire::{Body, JobId, KernelName, Message};
    use lppsp_core::Price;

    fn node(n: u8) -> NodeId {
        NodeId::from_bytes([n; 8])
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn frame(i: u64) -> Frame {
        Frame::new(
            Price::from_micros(i),
            Message::Accept {
                job: JobId(1),
                task: i,
            },
        )
    }

    #[tokio::test]
    async fn connect_accept_exchange() {
        let net = MemoryNetwork::new();
        let a = net.bind(addr("10.0.0.1:47101"), node(1)).unwrap();
        let b = net.bind(addr("10.0.0.2:47101"), node(2)).unwrap();
        assert_eq!(a.name(), "memory");
        assert_eq!(net.node_at(b.local_addr()), Some(node(2)));

        let (ca, cb) = tokio::join!(a.connect(b.local_addr()), b.accept());
        let (ca, cb) = (ca.unwrap(), cb.unwrap());
        assert_eq!(ca.peer().node, node(2));
        assert_eq!(cb.peer().node, node(1));
        assert_eq!(ca.remote_addr(), b.local_addr());
        assert_eq!(cb.remote_addr(), a.local_addr());

        let (mut aw, mut ar) = ca.split();
        let (mut bw, mut br) = cb.split();
        let body = bytes::Bytes::from(vec![9u8; 1 << 20]);
        let task = Frame::new(
            Price::ZERO,
            Message::Task {
                job: JobId(3),
                task: 0,
                kernel: KernelName::new("sum").unwrap(),
            },
        )
        .with_body(Body::from_bytes(body.clone()));
        aw.write_frames(&[frame(1), task.clone(), frame(2)])
            .await
            .unwrap();
        assert_eq!(br.read_frame().await.unwrap(), Some(frame(1)));
        let got = br.read_frame().await.unwrap().unwrap();
        assert_eq!(got, task);
        // No copy: the very same buffer arrives.
        assert_eq!(got.body.unwrap().chunks[0].data.as_ptr(), body.as_ptr());
        assert_eq!(br.read_frame().await.unwrap(), Some(frame(2)));

        bw.write_frames(&[frame(3)]).await.unwrap();
        assert_eq!(ar.read_frame().await.unwrap(), Some(frame(3)));

        // Close: the other side reads the end; writing after close fails.
        aw.close().await.unwrap();
        assert_eq!(br.read_frame().await.unwrap(), None);
        assert!(matches!(
            aw.write_frames(&[frame(4)]).await,
            Err(TransportError::Closed)
        ));
        // Dropping a reader makes the peer's writes fail.
        drop(ar);
        assert!(matches!(
            bw.write_frames(&[frame(5)]).await,
            Err(TransportError::Closed)
        ));
    }

    #[tokio::test]
    async fn unbound_address_is_refused() {
        let net = MemoryNetwork::new();
        let a = net.bind(addr("10.0.0.1:1"), node(1)).unwrap();
        let err = match a.connect(addr("10.0.0.9:1")).await {
            Ok(_) => panic!("connected to nothing"),
            Err(e) => e,
        };
        match err {
            TransportError::Io(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            other => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn bind_rules() {
        let net = MemoryNetwork::new();
        let a = net.bind(addr("10.0.0.1:7"), node(1)).unwrap();
        assert!(matches!(
            net.bind(addr("10.0.0.1:7"), node(2)),
            Err(TransportError::Io(e)) if e.kind() == io::ErrorKind::AddrInUse
        ));
        // Port 0 picks distinct free ports.
        let p = net.bind(addr("10.0.0.1:0"), node(3)).unwrap();
        let q = net.bind(addr("10.0.0.1:0"), node(4)).unwrap();
        assert_ne!(p.local_addr().port(), 0);
        assert_ne!(p.local_addr(), q.local_addr());
        // Dropping frees the address; a connection to it is refused.
        drop(a);
        assert!(!net.is_bound(addr("10.0.0.1:7")));
        assert!(p.connect(addr("10.0.0.1:7")).await.is_err());
        let again = net.bind(addr("10.0.0.1:7"), node(5)).unwrap();
        let (c, s) = tokio::join!(p.connect(again.local_addr()), again.accept());
        assert_eq!(c.unwrap().peer().node, node(5));
        assert_eq!(s.unwrap().peer().node, node(3));
    }

    #[tokio::test]
    async fn separate_networks_do_not_meet() {
        let one = MemoryNetwork::new();
        let two = MemoryNetwork::new();
        let a = one.bind(addr("10.0.0.1:1"), node(1)).unwrap();
        let _b = two.bind(addr("10.0.0.2:1"), node(2)).unwrap();
        assert!(a.connect(addr("10.0.0.2:1")).await.is_err());
    }
}
