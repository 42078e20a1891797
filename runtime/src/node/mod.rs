//! The node driver: one task that owns the core state machines and feeds
//! them datagrams, connections, ticks and control requests. This file
//! holds the driver, its loop and its beacons; start-up is in `start`,
//! the driver's ledger traffic in `receipts`, its side of the price
//! agreement in `pricing`, and its answers to control requests in
//! `requests`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lppsp_core::beacon::{self, BeaconCrypto, BeaconHeaders};
use lppsp_core::book::{Book, BookEvent, Departure};
use lppsp_core::component::Balancer;
use lppsp_core::config::NodeConfig;
use lppsp_core::curves::SupplyCurve;
use lppsp_core::market::{self, Market};
use lppsp_core::money::Bounty;
use lppsp_core::node::beacons::{BeaconSchedule, BeaconState};
use lppsp_core::node::integrator::Integrator;
use lppsp_core::node::sampling::MarketSampler;
use lppsp_core::wire::headers::ResultHeaders;
use lppsp_core::wire::{Arch, Endpoint, Hand, Message};
use lppsp_core::{NodeId, PROTOCOL_VERSION};
use lppsp_transport_tls::identity::{Identity, Verifier};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::accounts::{Accounts, Stored};
use crate::client::Client;
use crate::compute::ComputeService;
use crate::control::ControlRequest;
use crate::integrator;
use crate::join::JoinService;
use crate::links::{self, NetEvent};
use crate::refusals::MemberRefusals;
use crate::sharing::Sharing;
use crate::{beacon_socket, NodeError};

mod pricing;
mod receipts;
mod requests;
mod start;

pub use start::{control_channel, run, run_with_control};

/// The software name and version sent in Hand beacons.
pub const SOFTWARE: &str = concat!("lppsp/", env!("CARGO_PKG_VERSION"));

/// Beacon checks against the community CA.
struct Crypto<'a>(&'a Verifier);

impl BeaconCrypto for Crypto<'_> {
    fn verify_cert(&self, cert_der: &[u8], now: SystemTime) -> Result<NodeId, String> {
        self.0.verify_cert(cert_der, now).map_err(|e| e.to_string())
    }
    fn verify_signature(&self, cert_der: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), String> {
        self.0
            .verify_signature(cert_der, msg, sig)
            .map_err(|e| e.to_string())
    }
}

/// What this node is, as it tells the network.
#[derive(Debug, Clone)]
pub struct SelfInfo {
    pub id: NodeId,
    pub name: String,
    pub addr: Endpoint,
    pub power: u64,
    pub arch: Arch,
}

struct Driver {
    cfg: NodeConfig,
    me: SelfInfo,
    identity: Identity,
    book: Book,
    udp: UdpSocket,
    destinations: Vec<SocketAddr>,
    transport: Arc<dyn lppsp_core::component::Transport>,
    seq: u64,
    market: Market,
    /// Where each committed state is stored before the node acts on it.
    market_file: crate::market_state::MarketStateFile,
    /// The state read from `market_file` at start, for status.
    restored: Option<market::Committed>,
    balancer: Box<dyn Balancer>,
    /// When samples reach the balancer.
    sampler: MarketSampler,
    started: Instant,
    /// Beacon timing, and the idle state and queue Idle announces.
    beacons: BeaconSchedule,
    /// What this node offers at each price (`[share] min_price`,
    /// `price_slots`).
    supply: SupplyCurve,

    compute: Option<Arc<ComputeService>>,
    client: Client,
    /// Results held for other nodes' jobs.
    integrator: Integrator,
    /// The executor whose reduce integrates them.
    reduce_with: Arc<dyn lppsp_core::component::Executor>,
    /// Frames for other nodes from tasks off the driver (results relayed to
    /// an integrator, integrated job results).
    relay_tx: mpsc::UnboundedSender<(NodeId, lppsp_core::wire::Frame)>,
    accounts: Accounts,
    /// Receipts whose payer is not in the book yet.
    receipts_waiting: Vec<(lppsp_ledger::Receipt, Option<links::Outbox>)>,
    /// Which peer gets our ledger heads next (anti-entropy, round robin).
    sync_turn: usize,
    /// The join listener, on a node that holds the community CA.
    join: Option<Arc<JoinService>>,
    /// Whether the owner lets this node compute now.
    sharing: Sharing,
    /// What this node refused from members, by reason.
    refusals: MemberRefusals,
}

/// Network events queued for the driver, at most.
const NET_EVENTS_QUEUED: usize = 8192;

/// Ticks between two checks of clients' bounty claims and arrears.
const CLAIMS_EVERY_TICKS: u64 = 5;

/// Ticks between two anti-entropy steps (our heads to one peer).
const SYNC_EVERY_TICKS: u64 = 10;

/// Receipts held for payers not yet in the book, at most.
const MAX_RECEIPTS_WAITING: usize = 4096;

impl Driver {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn run(
        &mut self,
        mut control_rx: mpsc::Receiver<ControlRequest>,
        mut net_rx: mpsc::Receiver<NetEvent>,
        mut relay_rx: mpsc::UnboundedReceiver<(NodeId, lppsp_core::wire::Frame)>,
        mut stored_rx: mpsc::UnboundedReceiver<Stored>,
        shutdown: CancellationToken,
    ) -> Result<(), NodeError> {
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.network.tick_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; beacon_socket::MAX_DATAGRAM];
        // Say Idle right away so peers learn our state without waiting.
        self.send_hand().await;
        self.send_idle().await;
        loop {
            let deadline = self
                .book
                .poll_timeout()
                .map(|ms| tokio::time::Instant::from_std(self.started + Duration::from_millis(ms)));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.udp.recv_from(&mut buf) => match r {
                    Ok((n, src)) => {
                        let data = buf.get(..n).unwrap_or_default();
                        self.on_datagram(src, data);
                    }
                    Err(e) => warn!(error = %e, "beacon receive failed"),
                },
                _ = tick.tick() => self.on_tick().await,
                _ = sleep_until_opt(deadline) => self.book.handle_timeout(self.now_ms()),
                Some(req) = control_rx.recv() => self.on_control(req).await,
                Some(stored) = stored_rx.recv() => self.on_stored(stored).await,
                Some((node, frame)) = relay_rx.recv() => {
                    self.relay(node, frame);
                    for _ in 0..4096 {
                        match relay_rx.try_recv() {
                            Ok((node, frame)) => self.relay(node, frame),
                            Err(_) => break,
                        }
                    }
                }
                Some(ev) = net_rx.recv() => {
                    self.on_net(ev);
                    // Take what else has arrived, so a burst of results costs one scheduling round.
                    for _ in 0..4096 {
                        match net_rx.try_recv() {
                            Ok(ev) => self.on_net(ev),
                            Err(_) => break,
                        }
                    }
                }
            }
            self.drain_book_events();
            self.flush_market().await;
            self.settle();
            if self.client.active_jobs() > 0 {
                self.client
                    .schedule(self.now_ms(), &self.book, self.market.price())
                    .await;
            }
        }
        self.send_leave().await;
        info!("node stopped");
        Ok(())
    }

    fn on_datagram(&mut self, src: SocketAddr, data: &[u8]) {
        if is_receipt(data) {
            match lppsp_ledger::Receipt::from_bytes(data) {
                Ok(r) => self.on_receipt(r, None),
                Err(e) => {
                    self.accounts.stats.receipts_rejected += 1;
                    debug!(%src, error = %e, "receipt dropped");
                }
            }
            return;
        }
        let now = self.now_ms();
        let crypto = Crypto(self.identity.verifier());
        match self
            .book
            .handle_datagram(now, SystemTime::now(), src, data, &crypto)
        {
            Ok(_) => {}
            Err(reason) => debug!(%src, reason = reason.as_str(), "beacon dropped"),
        }
    }

    fn drain_book_events(&mut self) {
        while let Some(ev) = self.book.poll_event() {
            match ev {
                BookEvent::Joined(id) => {
                    // A fresh Hand is news that the node is back: worth a
                    // new link at once, whatever failed before.
                    self.client.on_peer_joined(id);
                    self.client.links().on_joined(id, &self.book);
                    let now = self.now_ms();
                    self.send_heads_to(now, id);
                    let (now_known, still): (Vec<_>, Vec<_>) =
                        std::mem::take(&mut self.receipts_waiting)
                            .into_iter()
                            .partition(|(r, _)| r.payer() == id);
                    self.receipts_waiting = still;
                    for (r, reply) in now_known {
                        self.on_receipt(r, reply);
                    }
                    if let Some(p) = self.book.peer(&id) {
                        info!(peer = %id, addr = %p.addr, mflops = p.power, arch = %p.arch,
                              software = %p.software, compatible = p.compatible, "peer joined");
                    }
                }
                BookEvent::Departed(id, Departure::Left) => {
                    info!(peer = %id, "peer left");
                    self.client.on_node_lost(id);
                }
                BookEvent::Departed(id, Departure::Expired) => {
                    info!(peer = %id, "peer expired");
                    self.client.on_node_lost(id);
                }
                BookEvent::IdleChanged(id) => debug!(peer = %id, "peer idle state changed"),
                BookEvent::Market(from, message) => {
                    let live = self.live_members();
                    let now = self.now_ms();
                    self.market.on_message(now, from, &message, &live);
                }
                BookEvent::PeerCommitted(from, state) => {
                    let live = self.live_members();
                    let now = self.now_ms();
                    self.market.on_peer_state(now, from, state, &live);
                }
                BookEvent::Refused(peer, reason, what) => self.refuse_member(peer, reason, &what),
            }
        }
    }

    /// Sends a frame made off the driver to `node` (ourselves included: a
    /// compute node may be the integrator it relays to).
    fn relay(&mut self, node: NodeId, frame: lppsp_core::wire::Frame) {
        if node == self.me.id {
            let me = self.me.id;
            return self.on_net(NetEvent::Frame {
                peer: me,
                frame,
                reply: None,
            });
        }
        let now = self.now_ms();
        if !self.client.send_to(now, node, frame, &self.book) {
            warn!(peer = %node, "cannot reach the node to relay a frame to");
        }
    }

    fn on_net(&mut self, ev: NetEvent) {
        let now = self.now_ms();
        match ev {
            NetEvent::Frame { peer, frame, reply } => match &frame.message {
                Message::Result { .. } if ResultHeaders::for_integrator(&frame.headers) => {
                    match self.integrator.on_result(now, peer, frame) {
                        Some((client, notice)) => self.relay(client, notice),
                        None => debug!(%peer, "result for an integrator without a client dropped"),
                    }
                }
                Message::Integrate { job, tasks, kernel } => {
                    let (job, kernel) = (*job, kernel.clone());
                    let results = self.integrator.take_for_integration(peer, job, *tasks);
                    if let Err(why) = &results {
                        self.refusals.refuse(peer, "integrate_incomplete", why);
                    }
                    let executor = self.reduce_with.clone();
                    let price = self.market.price();
                    let relay = self.relay_tx.clone();
                    tokio::spawn(
                        async move {
                            let answer = tokio::task::spawn_blocking(move || {
                                integrator::integrate(
                                    executor.as_ref(),
                                    price,
                                    job,
                                    &kernel,
                                    results,
                                )
                            })
                            .await;
                            let Ok(answer) = answer else { return };
                            match reply {
                                Some(r) => {
                                    let _ = r.send(answer);
                                }
                                None => {
                                    let _ = relay.send((peer, answer));
                                }
                            }
                        }
                        .in_current_span(),
                    );
                }
                Message::Cancel { job, task: None } => self.integrator.forget(peer, *job),
                Message::Heads { .. } | Message::Want { .. } => self.on_sync(now, peer, &frame),
                Message::Receipt { .. } => match lppsp_ledger::Receipt::from_frame(&frame) {
                    Ok(r) => self.on_receipt(r, reply),
                    Err(e) => {
                        self.accounts.stats.receipts_rejected += 1;
                        debug!(%peer, error = %e, "receipt dropped");
                    }
                },
                _ => self.client.on_frame(now, peer, frame, &self.book),
            },
            NetEvent::Incoming { peer, reply } => self.client.links().note_incoming(peer, reply),
            NetEvent::IncomingClosed { peer, reply } => {
                self.client.links().incoming_closed(peer, &reply)
            }
            NetEvent::Closed { peer, link } => {
                if self.client.links().on_closed(peer, link) {
                    let now = self.now_ms();
                    self.client.on_link_lost(peer, now);
                }
            }
        }
    }

    async fn on_tick(&mut self) {
        self.check_sharing();
        self.send_hand().await;
        let load = self.compute.as_ref().map(|c| c.load()).unwrap_or(0);
        let pending = self.client.pending(self.market.price());
        if self
            .beacons
            .on_tick(load, pending, self.sharing.is_available())
        {
            self.send_idle().await;
        }
        let ticks = self.beacons.ticks();
        let now = self.now_ms();
        self.book.handle_timeout(now);
        self.client.handle_timeout(now);
        self.sample_market(now);
        for r in self.accounts.due_for_resend(now) {
            self.spread_receipt(&r).await;
        }
        if ticks.is_multiple_of(CLAIMS_EVERY_TICKS) {
            self.check_claims();
        }
        if ticks.is_multiple_of(SYNC_EVERY_TICKS) {
            self.send_heads(now);
        }
        for (client, job) in self.integrator.expire(now) {
            warn!(%client, %job, "dropping results of a job nobody asked for");
        }
        let expiry = self.cfg.network.expiry_ms();
        self.client
            .links()
            .expire_waiting(now, expiry.saturating_mul(4));
    }

    /// Applies a change of the sharing policy's verdict: when the owner
    /// is back, running tasks go back to their clients to be placed
    /// elsewhere and no new ones are taken.
    fn check_sharing(&mut self) {
        let Some(state) = self.sharing.tick() else {
            return;
        };
        let available = state.is_available();
        if let Some(c) = &self.compute {
            c.set_available(available);
            if !available {
                let n = c.withdraw_all();
                info!(tasks = n, "sharing: tasks withdrawn for the owner");
            }
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    async fn broadcast(&mut self, message: Message) {
        let seq = self.next_seq();
        let reserve = self.cfg.node.role.computes().then(|| self.supply.reserve());
        let state = BeaconState::of(
            &message,
            &self.beacons,
            self.offered_slots(),
            reserve,
            self.market.committed(),
        );
        let hand = state.introduces;
        let headers = BeaconHeaders {
            node: self.me.id,
            seq,
            date: SystemTime::now(),
            cert_der: hand.then_some(self.identity.cert_der()),
            protocol: hand.then_some(PROTOCOL_VERSION),
            software: hand.then_some(SOFTWARE),
            queue: state.queue,
            epoch: state.epoch,
            slots: state.slots,
            reserve: state.reserve,
        };
        let datagram = beacon::build(self.market.price(), message, &headers, |m| {
            self.identity.sign(m)
        });
        for dest in &self.destinations {
            if let Err(e) = self.udp.send_to(&datagram, dest).await {
                debug!(%dest, error = %e, "beacon send failed");
            }
        }
    }

    /// Task slots this node offers now: those its supply curve offers at
    /// the market price, when it computes and its owner lets it.
    fn offered_slots(&self) -> u32 {
        if self.compute.is_some() && self.sharing.is_available() {
            self.supply.slots_at(self.market.price())
        } else {
            0
        }
    }

    async fn send_hand(&mut self) {
        let is_client = self.cfg.node.role.submits();
        let hand = Hand {
            addr: self.me.addr,
            power: self.me.power,
            arch: self.me.arch.clone(),
            is_client,
            remaining_bounty: is_client.then_some(self.remaining_bounty()),
        };
        self.broadcast(Message::Hand(hand)).await;
    }

    async fn send_idle(&mut self) {
        let idle = self.beacons.idle() && self.cfg.node.role.computes();
        self.broadcast(Message::Idle { idle }).await;
    }

    async fn send_leave(&mut self) {
        // Twice: a lost Leave would leave peers waiting for expiry.
        for _ in 0..2 {
            self.broadcast(Message::Leave { addr: self.me.addr }).await;
        }
    }

    /// Grant + earned - spent by the ledger, less charges not yet settled.
    fn remaining_bounty(&self) -> Bounty {
        self.accounts.remaining()
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Whether a datagram is a receipt (second line `Receipt/...`) rather than
/// a beacon.
fn is_receipt(data: &[u8]) -> bool {
    data.windows(2)
        .position(|w| w == b"\r\n")
        .and_then(|i| data.get(i + 2..))
        .is_some_and(|rest| rest.starts_with(b"Receipt/"))
}
