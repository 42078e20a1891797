//! Connections between nodes: outgoing links opened on demand, incoming
//! connections served, and every frame routed to whoever handles it (tasks
//! to the compute service, everything else to the node driver).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lppsp_core::book::Book;
use lppsp_core::component::{
    Connection, Executor, FrameReader, FrameWriter, Transport, TransportError,
};
use lppsp_core::wire::{Body, Frame, JobId, KernelName, Message, RefuseReason};
use lppsp_core::NodeId;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn, Instrument};

use crate::compute::ComputeService;

/// Frames to one peer; the connection's writer sends them in batches.
pub type Outbox = mpsc::UnboundedSender<Frame>;

/// Events from peer connections to the node driver.
#[derive(Debug)]
pub enum NetEvent {
    /// A frame for the driver; `reply` answers on the connection it came
    /// by (`None`: it came on one of our own links, answer through it).
    Frame {
        peer: NodeId,
        frame: Frame,
        reply: Option<Outbox>,
    },
    /// One of our outgoing links failed or closed. `link` tells which:
    /// a link dropped long ago may report its end after a new one to the
    /// same peer is up ([`Links::on_closed`]).
    Closed { peer: NodeId, link: LinkSerial },
    /// A peer connected to us; frames for it may go back this way.
    Incoming { peer: NodeId, reply: Outbox },
    /// A connection a peer opened to us ended; `reply` was its way back.
    IncomingClosed { peer: NodeId, reply: Outbox },
}

/// Which of the outgoing links to one peer, in the order they were opened.
pub type LinkSerial = u64;

/// An outgoing link: its serial and the frames waiting for its writer.
struct Link {
    serial: LinkSerial,
    outbox: Outbox,
}

/// Frames held for a node not yet in the book, at most this many per node:
/// a peer may connect to us before its first Hand reaches us.
const MAX_WAITING_FRAMES: usize = 65_536;

struct Waiting {
    since_ms: u64,
    frames: Vec<Frame>,
}

/// Our outgoing links, one per peer, opened when first needed.
pub struct Links {
    links: HashMap<NodeId, Link>,
    next_serial: LinkSerial,
    /// Connections peers opened to us, usable the other way.
    incoming: HashMap<NodeId, Outbox>,
    waiting: HashMap<NodeId, Waiting>,
    transport: Arc<dyn Transport>,
    events: mpsc::Sender<NetEvent>,
}

impl Links {
    pub fn new(transport: Arc<dyn Transport>, events: mpsc::Sender<NetEvent>) -> Self {
        Self {
            links: HashMap::new(),
            next_serial: 0,
            incoming: HashMap::new(),
            waiting: HashMap::new(),
            transport,
            events,
        }
    }

    /// Sends `frame` to `node`: over our link to it, else over a connection
    /// it opened to us, else over a new link to its book address. Returns
    /// false when the node is not in the book or its link is gone (the
    /// caller treats the node as lost).
    pub fn send(&mut self, node: NodeId, frame: Frame, book: &Book) -> bool {
        // Work for a compute node must arrive on a connection it accepted:
        // only those feed its compute service (`serve_connection`); a
        // connection it opened to us delivers to its driver, which runs no
        // tasks.
        let for_compute = matches!(
            frame.message,
            Message::Task { .. } | Message::Cancel { .. } | Message::Module { .. }
        );
        let frame = match self.incoming.get(&node) {
            Some(back) if !for_compute && !self.links.contains_key(&node) => match back.send(frame)
            {
                Ok(()) => return true,
                Err(e) => {
                    self.incoming.remove(&node);
                    e.0
                }
            },
            _ => frame,
        };
        let link = match self.links.get(&node) {
            Some(l) => l,
            None => {
                let Some(peer) = book.peer(&node) else {
                    return false;
                };
                self.next_serial += 1;
                let serial = self.next_serial;
                let outbox = open_link(
                    self.transport.clone(),
                    node,
                    serial,
                    peer.addr.0,
                    self.events.clone(),
                );
                self.links.entry(node).or_insert(Link { serial, outbox })
            }
        };
        if link.outbox.send(frame).is_err() {
            self.links.remove(&node);
            return false;
        }
        true
    }

    /// As [`Links::send`], but a node not yet in the book gets the frame
    /// when it joins (see [`Links::on_joined`]) instead of being lost.
    pub fn send_or_hold(&mut self, now_ms: u64, node: NodeId, frame: Frame, book: &Book) -> bool {
        let known = book.peer(&node).is_some()
            || self.links.contains_key(&node)
            || self.incoming.contains_key(&node);
        if known {
            return self.send(node, frame, book);
        }
        let w = self.waiting.entry(node).or_insert(Waiting {
            since_ms: now_ms,
            frames: Vec::new(),
        });
        if w.frames.len() >= MAX_WAITING_FRAMES {
            return false;
        }
        w.frames.push(frame);
        true
    }

    /// `node` joined the book: sends what was held for it.
    pub fn on_joined(&mut self, node: NodeId, book: &Book) {
        if let Some(w) = self.waiting.remove(&node) {
            for frame in w.frames {
                if !self.send(node, frame, book) {
                    break;
                }
            }
        }
    }

    /// Drops frames held longer than `max_ms` for nodes that never joined.
    pub fn expire_waiting(&mut self, now_ms: u64, max_ms: u64) {
        self.waiting.retain(|node, w| {
            let keep = now_ms.saturating_sub(w.since_ms) < max_ms;
            if !keep {
                warn!(peer = %node, frames = w.frames.len(), "dropping frames for a node that never joined");
            }
            keep
        });
    }

    /// A peer connected to us.
    pub fn note_incoming(&mut self, node: NodeId, reply: Outbox) {
        self.incoming.insert(node, reply);
    }

    /// A connection `node` opened to us ended: frames for `node` no longer
    /// go that way (unless a newer connection replaced it already).
    pub fn incoming_closed(&mut self, node: NodeId, reply: &Outbox) {
        if self
            .incoming
            .get(&node)
            .is_some_and(|back| back.same_channel(reply))
        {
            self.incoming.remove(&node);
        }
    }

    /// Forgets every way to `node` (its link closed, or the node left).
    pub fn drop_link(&mut self, node: &NodeId) {
        self.links.remove(node);
        self.incoming.remove(node);
    }

    /// Outgoing link `serial` to `node` ended. True when it was the current
    /// link (now forgotten); false for one already dropped or replaced,
    /// whose end says nothing about the peer now.
    pub fn on_closed(&mut self, node: NodeId, serial: LinkSerial) -> bool {
        let current = self.links.get(&node).is_some_and(|l| l.serial == serial);
        if current {
            self.links.remove(&node);
        }
        current
    }
}

/// Opens a connection to `node` in the background; frames sent before it
/// is up wait in the channel. The peer must prove it is `node`.
fn open_link(
    transport: Arc<dyn Transport>,
    node: NodeId,
    serial: LinkSerial,
    addr: SocketAddr,
    events: mpsc::Sender<NetEvent>,
) -> Outbox {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        async move {
            let conn = match transport.connect(addr).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(peer = %node, %addr, error = %e, "cannot connect");
                    let _ = events.send(NetEvent::Closed {
                        peer: node,
                        link: serial,
                    }).await;
                    return;
                }
            };
            if conn.peer().node != node {
                warn!(expected = %node, got = %conn.peer().node, %addr, "peer is not who the book says");
                let _ = events.send(NetEvent::Closed {
                        peer: node,
                        link: serial,
                    }).await;
                return;
            }
            let (writer, reader) = conn.split();
            tokio::spawn(write_batches(writer, rx, None).in_current_span());
            forward_frames(node, reader, &events, None).await;
            let _ = events.send(NetEvent::Closed {
                        peer: node,
                        link: serial,
                    }).await;
        }
        .in_current_span(),
    );
    tx
}

/// Hands each frame to the node driver until the connection ends.
async fn forward_frames(
    peer: NodeId,
    mut reader: Box<dyn FrameReader>,
    events: &mpsc::Sender<NetEvent>,
    reply: Option<&Outbox>,
) {
    loop {
        match reader.read_frame().await {
            Ok(Some(frame)) => {
                let ev = NetEvent::Frame {
                    peer,
                    frame,
                    reply: reply.cloned(),
                };
                if events.send(ev).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(TransportError::BadFrame(e)) => debug!(%peer, error = %e, "bad frame skipped"),
            Err(e) => {
                debug!(%peer, error = %e, "connection lost");
                return;
            }
        }
    }
}

/// Serves one incoming, authenticated connection until it closes: tasks
/// and cancels go to the compute service (or are refused when this node
/// does not compute), every other frame to the node driver.
pub async fn serve_connection(
    conn: Box<dyn Connection>,
    compute: Option<Arc<ComputeService>>,
    executor: Arc<dyn Executor>,
    events: mpsc::Sender<NetEvent>,
) {
    let peer = conn.peer().node;
    let (writer, mut reader) = conn.split();
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let backlog = Arc::new(Backlog::default());
    let writer_task =
        tokio::spawn(write_batches(writer, reply_rx, Some(backlog.clone())).in_current_span());
    let _ = events
        .send(NetEvent::Incoming {
            peer,
            reply: reply_tx.clone(),
        })
        .await;
    // Whether the peer broke the framing (or was too slow): then the
    // connection is closed at once, both ways, not kept for replies.
    let mut violated = false;
    loop {
        // A peer that sends without reading our answers waits here, so
        // answers owed to it cannot pile up in this node's memory.
        backlog.wait_below(MAX_REPLY_BACKLOG).await;
        let frame = match reader.read_frame().await {
            Ok(Some(frame)) => {
                // Every Task is answered here (accepted or refused).
                if matches!(frame.message, Message::Task { .. }) {
                    backlog.read.fetch_add(1, Ordering::Relaxed);
                }
                frame
            }
            Ok(None) => break,
            Err(TransportError::BadFrame(e)) => {
                if let Some(c) = &compute {
                    c.count_bad_frame();
                }
                debug!(%peer, error = %e, "bad frame skipped");
                continue;
            }
            Err(e) => {
                if let Some(c) = &compute {
                    c.count_bad_frame();
                }
                violated = match &e {
                    TransportError::Io(io) => io.kind() == std::io::ErrorKind::TimedOut,
                    TransportError::Closed => false,
                    _ => true,
                };
                if violated {
                    warn!(%peer, error = %e, "closing a connection that broke the protocol");
                } else {
                    debug!(%peer, error = %e, "connection closed");
                }
                break;
            }
        };
        let to_driver = |frame: Frame| NetEvent::Frame {
            peer,
            frame,
            reply: Some(reply_tx.clone()),
        };
        match (&frame.message, &compute) {
            // Loaded here, before the next frame is read, so that the
            // job's tasks that follow on this connection find it.
            (Message::Module { job, kernel }, _) => {
                load_module(&executor, peer, *job, kernel, frame.body.clone()).await
            }
            // Cancel of a whole job is also for an integrator holding its results.
            (Message::Cancel { task: None, .. }, Some(c)) => {
                c.on_frame(peer, frame.clone(), &reply_tx);
                if events.send(to_driver(frame)).await.is_err() {
                    break;
                }
            }
            (Message::Task { .. } | Message::Cancel { .. }, Some(c)) => {
                c.on_frame(peer, frame, &reply_tx)
            }
            (Message::Task { job, task, .. }, None) => {
                let refuse = Message::Refuse {
                    job: *job,
                    task: *task,
                    reason: RefuseReason::Unavailable,
                };
                let _ = reply_tx.send(Frame::new(frame.price, refuse));
            }
            _ => {
                if events.send(to_driver(frame)).await.is_err() {
                    break;
                }
            }
        }
    }
    // Frees the connection's place under the transport's caps.
    drop(reader);
    if let Some(c) = &compute {
        // The connection is gone: the tasks that came by it are not wanted
        // (the client places them again on its next link).
        c.cancel_all_of(peer, &reply_tx);
    }
    // The driver drops its copy of `reply_tx`, which lets the writer
    // finish (and the connection close) once the queued answers are out.
    let _ = events
        .send(NetEvent::IncomingClosed {
            peer,
            reply: reply_tx.clone(),
        })
        .await;
    drop(reply_tx);
    if violated {
        writer_task.abort();
    } else {
        let _ = writer_task.await;
    }
}

/// Compiles (or finds cached) a job's module, off the reactor threads.
async fn load_module(
    executor: &Arc<dyn Executor>,
    peer: NodeId,
    job: JobId,
    kernel: &KernelName,
    body: Option<Body>,
) {
    let code = body.map(|b| b.to_bytes()).unwrap_or_default();
    let size = code.len();
    let exec = executor.clone();
    match tokio::task::spawn_blocking(move || exec.load_module(&code)).await {
        Ok(Ok(loaded)) if loaded == *kernel => {
            debug!(%peer, %job, %kernel, size, "module loaded")
        }
        // Its tasks name `kernel`, which is still unknown here, so they are
        // refused as unknown-kernel and placed elsewhere.
        Ok(Ok(loaded)) => {
            warn!(%peer, %job, %kernel, %loaded, "module dropped: its bytes do not hash to its name")
        }
        Ok(Err(e)) => warn!(%peer, %job, %kernel, error = %e, "module refused"),
        Err(e) => warn!(%peer, %job, error = %e, "module load did not finish"),
    }
}

/// Tasks read from a connection whose answer may still be owed: each Task
/// is answered at once (accepted or refused), so reading waits while more
/// than this many Tasks were read than frames were written back.
const MAX_REPLY_BACKLOG: u64 = 1 << 16;

/// Frames read from and written to one incoming connection.
#[derive(Debug, Default)]
pub struct Backlog {
    read: AtomicU64,
    written: AtomicU64,
    progress: Notify,
}

impl Backlog {
    /// Waits until fewer than `max` frames read are unanswered.
    async fn wait_below(&self, max: u64) {
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let owed = self
                .read
                .load(Ordering::Relaxed)
                .saturating_sub(self.written.load(Ordering::Relaxed));
            if owed < max {
                return;
            }
            progress.await;
        }
    }

    fn wrote(&self, frames: usize) {
        self.written.fetch_add(frames as u64, Ordering::Relaxed);
        self.progress.notify_waiters();
    }
}

/// Writes frames from `rx` in batches: whatever is queued goes in one
/// write. `backlog`, on an incoming connection, learns of each write.
pub async fn write_batches(
    mut writer: Box<dyn FrameWriter>,
    mut rx: mpsc::UnboundedReceiver<Frame>,
    backlog: Option<Arc<Backlog>>,
) {
    let mut batch = Vec::with_capacity(256);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        if let Err(e) = writer.write_frames(&batch).await {
            debug!(error = %e, "write failed; connection done");
            return;
        }
        if let Some(b) = &backlog {
            b.wrote(batch.len());
        }
        batch.clear();
    }
    let _ = writer.close().await;
}
