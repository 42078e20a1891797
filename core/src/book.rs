//! The information book (RFC 1.3): every live peer's latest Hand and Idle.
//!
//! A sans-IO state machine. Input: datagrams with the time they arrived
//! ([`Book::handle_datagram`]) and timer expiries ([`Book::handle_timeout`]).
//! Output: events ([`Book::poll_event`]) and the next deadline
//! ([`Book::poll_timeout`]). A peer enters on a valid signed Hand, is
//! updated by Hand and Idle, leaves at once on a signed Leave, and expires
//! after `expire_ticks` ticks without a valid beacon.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::beacon::{self, BeaconCrypto, DropReason, VerifiedBeacon};
use crate::money::{Bounty, Price};
use crate::node_id::NodeId;
use crate::wire::{Arch, Endpoint, Message};

/// Settings of the book.
#[derive(Debug, Clone)]
pub struct BookConfig {
    /// This node: its own beacons, looped back by broadcast, are ignored.
    pub me: NodeId,
    pub tick: Duration,
    pub expire_ticks: u32,
    /// Beacons dated further than this from our clock are dropped.
    pub max_skew: Duration,
    /// The protocol major version we speak.
    pub protocol_major: u32,
}

/// One peer as the book knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Peer {
    pub id: NodeId,
    /// TLS endpoint.
    #[serde(serialize_with = "ser_display")]
    pub addr: Endpoint,
    pub power: u64,
    #[serde(serialize_with = "ser_display")]
    pub arch: Arch,
    pub is_client: bool,
    pub remaining_bounty: Option<Bounty>,
    /// From the latest Idle beacon; a new peer counts as idle until it says otherwise.
    pub idle: bool,
    /// Tasks queued or running there (Idle beacon's Queue header).
    pub queue: u64,
    /// Task slots it offers at the price of its latest Hand (Hand's Slots
    /// header); 0: it does not compute, or not at that price.
    pub slots: u32,
    /// The lowest price at which it offers any slot (Hand's Reserve
    /// header; 0 when absent). Only what we place on it depends on this,
    /// so any amount is taken as it is.
    pub reserve: Price,
    /// Protocol version the peer speaks (`Protocol` header of its Hand).
    pub protocol: String,
    /// Software name and version (`Software` header of its Hand).
    pub software: String,
    /// False when its protocol version is not ours: it is listed, never sent work.
    pub compatible: bool,
    /// The market price in its latest frame header.
    pub price: Price,
    /// Monotonic ms of the latest valid beacon.
    pub last_seen_ms: u64,
    #[serde(skip)]
    pub last_seq: u64,
    #[serde(skip)]
    pub cert_der: Vec<u8>,
}

fn ser_display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Why a peer left the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// It sent a Leave beacon.
    Left,
    /// Its beacons stopped.
    Expired,
}

/// Something that changed in the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookEvent {
    Joined(NodeId),
    Departed(NodeId, Departure),
    /// Idle flag or queue changed.
    IdleChanged(NodeId),
    /// A verified price agreement message (Propose, Vote, Commit) from a
    /// member of the book.
    Market(NodeId, Message),
    /// A member's Hand said which round set the price it holds.
    PeerCommitted(NodeId, crate::market::Committed),
    /// A member's beacon carried a value past its bound; the book kept the
    /// bounded value. The node counts it.
    Refused(NodeId, crate::market::MemberRefusal, String),
}

/// Most task slots a Hand may claim; more is counted as this many.
pub const MAX_SLOTS: u32 = 1024;
/// Most tasks one slot may have queued or running at a compute node, as
/// counted in its Idle `Queue`.
pub const MAX_QUEUE_PER_SLOT: u64 = 64;
/// Most tasks a client may report waiting (its jobs' tasks not yet placed):
/// above the most tasks a job may have.
pub const MAX_CLIENT_QUEUE: u64 = 1 << 24;

/// The largest Idle `Queue` a peer can hold: what its slots can hold, and
/// for a client what its jobs can have waiting.
pub fn max_queue_report(slots: u32, is_client: bool) -> u64 {
    let computing = u64::from(slots.min(MAX_SLOTS)).saturating_mul(MAX_QUEUE_PER_SLOT);
    if is_client {
        computing.saturating_add(MAX_CLIENT_QUEUE)
    } else {
        computing
    }
}

/// The information book.
#[derive(Debug)]
pub struct Book {
    cfg: BookConfig,
    peers: BTreeMap<NodeId, Peer>,
    /// Last sequence number of peers that left, so their old beacons cannot
    /// be replayed to bring them back; kept for twice the allowed clock skew.
    departed: BTreeMap<NodeId, (u64, u64)>,
    drops: BTreeMap<DropReason, u64>,
    events: VecDeque<BookEvent>,
}

impl Book {
    pub fn new(cfg: BookConfig) -> Self {
        Self {
            cfg,
            peers: BTreeMap::new(),
            departed: BTreeMap::new(),
            drops: BTreeMap::new(),
            events: VecDeque::new(),
        }
    }

    pub fn me(&self) -> NodeId {
        self.cfg.me
    }

    /// Live peers, by id.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    pub fn peer(&self, id: &NodeId) -> Option<&Peer> {
        self.peers.get(id)
    }

    /// What `id` promised in its latest Hand: nothing (zero power and
    /// slots, so nothing is paid) when it is not in the book.
    pub fn promise(&self, id: &NodeId) -> crate::charge::Promise {
        self.peers
            .get(id)
            .map_or(crate::charge::Promise { power: 0, slots: 0 }, |p| {
                crate::charge::Promise {
                    power: p.power,
                    slots: p.slots,
                }
            })
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Dropped beacons, per reason.
    pub fn drops(&self) -> &BTreeMap<DropReason, u64> {
        &self.drops
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<BookEvent> {
        self.events.pop_front()
    }

    fn expire_after_ms(&self) -> u64 {
        let ms = self
            .cfg
            .tick
            .as_millis()
            .saturating_mul(u128::from(self.cfg.expire_ticks));
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    /// When [`Book::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        let after = self.expire_after_ms();
        self.peers
            .values()
            .map(|p| p.last_seen_ms.saturating_add(after).saturating_add(1))
            .min()
    }

    /// Expires peers whose beacons stopped. Extra calls are harmless.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let after = self.expire_after_ms();
        let expired: Vec<NodeId> = self
            .peers
            .values()
            .filter(|p| now_ms.saturating_sub(p.last_seen_ms) > after)
            .map(|p| p.id)
            .collect();
        for id in expired {
            self.remove(id, now_ms, Departure::Expired);
        }
        let keep_ms =
            u64::try_from(self.cfg.max_skew.as_millis().saturating_mul(2)).unwrap_or(u64::MAX);
        self.departed
            .retain(|_, (_, at)| now_ms.saturating_sub(*at) <= keep_ms);
    }

    fn remove(&mut self, id: NodeId, now_ms: u64, why: Departure) {
        if let Some(p) = self.peers.remove(&id) {
            self.departed.insert(id, (p.last_seq, now_ms));
            self.events.push_back(BookEvent::Departed(id, why));
        }
    }

    fn drop_beacon(&mut self, why: DropReason) -> DropReason {
        *self.drops.entry(why).or_insert(0) += 1;
        why
    }

    /// Takes one datagram received from `src` at `now_ms` (monotonic) and
    /// `wall` (our clock, for the Date check and certificate validity).
    ///
    /// Returns the sender's id when the beacon was accepted, `Ok(None)` for
    /// our own beacon, and the reason when it was dropped (also counted).
    pub fn handle_datagram(
        &mut self,
        now_ms: u64,
        wall: SystemTime,
        src: SocketAddr,
        datagram: &[u8],
        crypto: &dyn BeaconCrypto,
    ) -> Result<Option<NodeId>, DropReason> {
        let parsed = beacon::parse(datagram).map_err(|r| self.drop_beacon(r))?;
        if parsed.node == self.cfg.me {
            return Ok(None);
        }
        if self.is_replay(&parsed.node, parsed.seq) {
            return Err(self.drop_beacon(DropReason::Replayed));
        }
        let sender = parsed.node;
        let known_cert = self.peers.get(&sender).map(|p| p.cert_der.as_slice());
        let verified = parsed.verify(crypto, known_cert, wall, self.cfg.max_skew);
        let beacon = verified.map_err(|r| self.drop_beacon(r))?;
        let id = beacon.node;
        self.apply(now_ms, src, beacon);
        Ok(Some(id))
    }

    /// Takes a beacon already decoded and verified, as a value: the
    /// simulator passes beacons this way (no bytes, no signatures); the
    /// node uses [`Book::handle_datagram`]. Same replay check, same effect.
    pub fn handle_beacon(
        &mut self,
        now_ms: u64,
        src: SocketAddr,
        beacon: VerifiedBeacon,
    ) -> Result<Option<NodeId>, DropReason> {
        if beacon.node == self.cfg.me {
            return Ok(None);
        }
        if self.is_replay(&beacon.node, beacon.seq) {
            return Err(self.drop_beacon(DropReason::Replayed));
        }
        let id = beacon.node;
        self.apply(now_ms, src, beacon);
        Ok(Some(id))
    }

    /// A sequence number not above the last one seen from `node` (live, or
    /// departed recently).
    fn is_replay(&self, node: &NodeId, seq: u64) -> bool {
        let last_seq = self
            .peers
            .get(node)
            .map(|p| p.last_seq)
            .or_else(|| self.departed.get(node).map(|d| d.0));
        last_seq.is_some_and(|last| seq <= last)
    }

    fn apply(&mut self, now_ms: u64, src: SocketAddr, b: VerifiedBeacon) {
        let id = b.node;
        match b.message {
            Message::Hand(hand) => {
                if let Some((epoch, proposer)) = b.epoch {
                    let state = crate::market::Committed {
                        epoch,
                        proposer,
                        price: b.price,
                    };
                    self.events.push_back(BookEvent::PeerCommitted(id, state));
                }
                // A Hand without an address to reach it names the unspecified
                // address: the datagram's source is then the best we know.
                let mut addr = hand.addr;
                if addr.0.ip().is_unspecified() {
                    addr = Endpoint(SocketAddr::new(src.ip(), addr.0.port()));
                }
                let claimed_slots = b.slots.unwrap_or(0);
                if claimed_slots > MAX_SLOTS {
                    self.events.push_back(BookEvent::Refused(
                        id,
                        crate::market::MemberRefusal::SlotsBound,
                        format!("Hand Slots {claimed_slots}, at most {MAX_SLOTS}"),
                    ));
                }
                let slots = claimed_slots.min(MAX_SLOTS);
                let reserve = b.reserve.unwrap_or(Price::ZERO);
                let protocol = b.protocol.unwrap_or_default();
                let compatible = protocol_major(&protocol) == Some(self.cfg.protocol_major);
                let cert_der = b.cert_der.unwrap_or_default();
                match self.peers.get_mut(&id) {
                    Some(p) => {
                        p.addr = addr;
                        p.power = hand.power;
                        p.arch = hand.arch;
                        p.is_client = hand.is_client;
                        p.remaining_bounty = hand.remaining_bounty;
                        p.slots = slots;
                        p.reserve = reserve;
                        p.queue = p.queue.min(max_queue_report(slots, hand.is_client));
                        p.protocol = protocol;
                        p.software = b.software.unwrap_or_default();
                        p.compatible = compatible;
                        p.price = b.price;
                        p.last_seen_ms = now_ms;
                        p.last_seq = b.seq;
                        p.cert_der = cert_der;
                    }
                    None => {
                        self.departed.remove(&id);
                        self.peers.insert(
                            id,
                            Peer {
                                id,
                                addr,
                                power: hand.power,
                                arch: hand.arch,
                                is_client: hand.is_client,
                                remaining_bounty: hand.remaining_bounty,
                                idle: true,
                                queue: 0,
                                slots,
                                reserve,
                                protocol,
                                software: b.software.unwrap_or_default(),
                                compatible,
                                price: b.price,
                                last_seen_ms: now_ms,
                                last_seq: b.seq,
                                cert_der,
                            },
                        );
                        self.events.push_back(BookEvent::Joined(id));
                    }
                }
            }
            Message::Idle { idle } => {
                if let Some(p) = self.peers.get_mut(&id) {
                    let cap = max_queue_report(p.slots, p.is_client);
                    let claimed = b.queue.unwrap_or(p.queue);
                    if claimed > cap {
                        self.events.push_back(BookEvent::Refused(
                            id,
                            crate::market::MemberRefusal::QueueBound,
                            format!(
                                "Idle Queue {claimed}, at most {cap} for {} slots{}",
                                p.slots,
                                if p.is_client { " and a client" } else { "" }
                            ),
                        ));
                    }
                    let queue = claimed.min(cap);
                    let changed = p.idle != idle || p.queue != queue;
                    p.idle = idle;
                    p.queue = queue;
                    p.price = b.price;
                    p.last_seen_ms = now_ms;
                    p.last_seq = b.seq;
                    if changed {
                        self.events.push_back(BookEvent::IdleChanged(id));
                    }
                }
            }
            Message::Leave { .. } => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.last_seq = b.seq;
                }
                self.remove(id, now_ms, Departure::Left);
            }
            Message::Propose { .. } | Message::Vote { .. } | Message::Commit { .. } => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.last_seen_ms = now_ms;
                    p.last_seq = b.seq;
                    self.events.push_back(BookEvent::Market(id, b.message));
                }
            }
            // beacon::parse admits no other kind.
            _ => {}
        }
    }
}

/// `"1.0"` -> 1.
fn protocol_major(v: &str) -> Option<u32> {
    v.split('.').next().and_then(|m| m.parse().ok())
}
