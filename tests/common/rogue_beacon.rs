//! A member running modified software on the signed UDP channel, for the
//! market attack tests: it holds a real community certificate (issued like
//! any node's), builds beacons and price-round messages with the product's
//! codec (`beacon::build`) and signs them with its own key, so every
//! datagram passes the receivers' signature, certificate and replay checks.
//! What it says is up to the test. It keeps itself in the nodes' books by
//! repeating a plain Hand from a background thread, and answers nothing.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lppsp_core::beacon::{self, BeaconHeaders};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::wire::{Arch, Endpoint, Hand, Message};
use lppsp_core::{NodeId, PROTOCOL_VERSION};
use lppsp_transport_tls::Identity;

use super::Community;

/// Hand-only headers of a beacon: slots offered and the committed state
/// `(epoch, proposer)` it claims.
#[derive(Debug, Clone, Copy)]
pub struct HandClaims {
    pub slots: u32,
    pub epoch: (u64, Option<NodeId>),
}

/// The modified member's beacon side.
pub struct RogueBeacon {
    pub id: NodeId,
    identity: Arc<Identity>,
    udp: UdpSocket,
    /// Beacon ports of the nodes it talks to.
    to: Vec<u16>,
    seq: AtomicU64,
}

impl RogueBeacon {
    /// A member named `name` of `community`, sending to the beacon ports `to`.
    pub fn new(community: &Community, name: &str, to: &[u16]) -> Arc<Self> {
        let identity = Arc::new(super::member_identity(community, name));
        // Like a node: sequence numbers from the wall clock in ms.
        let seq = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        Arc::new(Self {
            id: identity.node_id(),
            identity,
            udp: UdpSocket::bind("127.0.0.1:0").unwrap(),
            to: to.to_vec(),
            seq: AtomicU64::new(seq),
        })
    }

    /// Sends one signed datagram carrying `message` at `price`; `hand` adds
    /// the Hand-only headers, `queue` the Idle one.
    pub fn send(
        &self,
        price: Price,
        message: Message,
        hand: Option<HandClaims>,
        queue: Option<u64>,
    ) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let headers = BeaconHeaders {
            node: self.id,
            seq,
            date: SystemTime::now(),
            cert_der: hand.map(|_| self.identity.cert_der()),
            protocol: hand.map(|_| PROTOCOL_VERSION),
            software: hand.map(|_| "lppsp/modified"),
            queue,
            slots: hand.map(|h| h.slots),
            reserve: None,
            epoch: hand.map(|h| h.epoch),
        };
        let datagram = beacon::build(price, message, &headers, |m| self.identity.sign(m));
        for port in &self.to {
            // A lost datagram is what UDP does; the test waits for effects.
            let _ = self.udp.send_to(&datagram, ("127.0.0.1", *port));
        }
    }

    /// The member's identity (certificate and key), for its TLS side.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity.clone()
    }

    /// A client Hand (no slots, so nothing is ever placed on it) at
    /// `price`, claiming the committed state `epoch`.
    pub fn hand(&self, price: Price, epoch: (u64, Option<NodeId>)) {
        let hand = Hand {
            // Nobody connects to it: no slots, and it pays no one.
            addr: Endpoint(std::net::SocketAddr::from(([127, 0, 0, 1], 9))),
            power: 0,
            arch: Arch::new(std::env::consts::ARCH).unwrap(),
            is_client: true,
            remaining_bounty: Some(Bounty::from_micros(0)),
        };
        self.send(
            price,
            Message::Hand(hand),
            Some(HandClaims { slots: 0, epoch }),
            None,
        );
    }

    /// A Hand and an Idle at the initial price and epoch, as a live node
    /// sends them: an idle compute node at `addr` promising `power` MFLOPS
    /// on `slots` slots, or, with `bounty`, a client.
    pub fn announce(&self, addr: SocketAddr, power: u64, slots: u32, bounty: Option<Bounty>) {
        let hand = Hand {
            addr: Endpoint(addr),
            power,
            arch: Arch::new(std::env::consts::ARCH).unwrap(),
            is_client: bounty.is_some(),
            remaining_bounty: bounty,
        };
        let price = Price::from_units(1).unwrap();
        let claims = HandClaims {
            slots,
            epoch: (0, None),
        };
        let idle = Message::Idle {
            idle: bounty.is_none(),
        };
        self.send(price, Message::Hand(hand), Some(claims), None);
        self.send(price, idle, None, Some(0));
    }

    /// Keeps the rogue in the nodes' books: a plain Hand at the initial
    /// price and epoch every `every`, until the returned guard is dropped.
    pub fn keep_alive(self: &Arc<Self>, every: Duration) -> KeepAlive {
        self.repeat(every, |me| {
            me.hand(Price::from_units(1).unwrap(), (0, None))
        })
    }

    /// Calls `say` every `every` from a thread of its own, until the
    /// returned guard is dropped.
    pub fn repeat(
        self: &Arc<Self>,
        every: Duration,
        say: impl Fn(&RogueBeacon) + Send + 'static,
    ) -> KeepAlive {
        let stop = Arc::new(AtomicBool::new(false));
        let (me, flag) = (self.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                say(&me);
                std::thread::sleep(every);
            }
        });
        KeepAlive {
            stop,
            thread: Some(thread),
        }
    }
}

/// Stops the keep-alive Hands when dropped.
pub struct KeepAlive {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
