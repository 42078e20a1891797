//! A member running modified software, for attack tests. It holds a real
//! community certificate, issued like any node's, and sends whatever the
//! test tells it to: signed UDP beacons with any headers, and frames of
//! its own making over mutual TLS, through the product's own codec and
//! TLS transport. It answers nothing by itself.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lppsp_core::beacon::{self, BeaconHeaders};
use lppsp_core::component::{FrameReader, FrameWriter};
use lppsp_core::config::IdentitySection;
use lppsp_core::money::{Bounty, Price};
use lppsp_core::wire::{Arch, Endpoint, Frame, Hand, Limits, Message};
use lppsp_core::{NodeId, PROTOCOL_VERSION};
use lppsp_transport_tls::transport::{TlsFrameReader, TlsFrameWriter, TlsOptions};
use lppsp_transport_tls::{Identity, TlsTransport};

use super::{free_port, Community};

/// The modified member.
pub struct Rogue {
    pub id: NodeId,
    beacons: Arc<Beacons>,
    transport: Arc<TlsTransport>,
    /// Where the rogue's TLS listener is (its Hand's address).
    pub tls_addr: SocketAddr,
    rt: tokio::runtime::Runtime,
}

/// The rogue's signed UDP side, usable from a thread of its own.
struct Beacons {
    id: NodeId,
    identity: Arc<Identity>,
    udp: UdpSocket,
    seq: AtomicU64,
    tls_addr: SocketAddr,
}

/// Stops a [`Rogue::keep_announcing_compute`] thread when dropped.
pub struct Announcing {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Announcing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One TLS connection of the rogue.
pub struct RogueConn {
    pub peer: NodeId,
    reader: TlsFrameReader,
    writer: TlsFrameWriter,
}

impl Rogue {
    /// A member named `name` of `community`, listening for TLS on a free
    /// loopback port.
    pub fn new(community: &Community, name: &str) -> Self {
        community.issue(name);
        let dir = community.dir.path();
        let identity = Arc::new(
            Identity::load(&IdentitySection {
                ca_cert: community.ca_dir().join("ca.pem"),
                cert: dir.join(format!("{name}.pem")),
                key: dir.join(format!("{name}.key")),
            })
            .expect("load the rogue's identity"),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let transport = rt
            .block_on(TlsTransport::bind_with(
                listen,
                identity.clone(),
                Limits::default(),
                TlsOptions::default(),
            ))
            .expect("bind the rogue's TLS listener");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let seq = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        Self {
            id: identity.node_id(),
            beacons: Arc::new(Beacons {
                id: identity.node_id(),
                identity,
                udp,
                seq: AtomicU64::new(seq),
                tls_addr: listen,
            }),
            transport,
            tls_addr: listen,
            rt,
        }
    }

    /// Sends one signed beacon; see [`Beacons::send`].
    pub fn beacon(
        &self,
        to: &[u16],
        price: Price,
        message: Message,
        hand: Option<(u32, (u64, Option<NodeId>))>,
        queue: Option<u64>,
    ) {
        self.beacons.send(to, price, message, hand, queue);
    }

    /// Announces itself to `to` as an idle compute node promising `power`
    /// MFLOPS on `slots` slots, at the initial price and epoch.
    pub fn announce_compute(&self, to: &[u16], power: u64, slots: u32) {
        self.beacons.announce_compute(to, power, slots);
    }

    /// Announces itself as a compute node every 250 ms, like a live node,
    /// until the returned guard is dropped.
    pub fn keep_announcing_compute(&self, to: &[u16], power: u64, slots: u32) -> Announcing {
        let stop = Arc::new(AtomicBool::new(false));
        let (beacons, to, flag) = (self.beacons.clone(), to.to_vec(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                beacons.announce_compute(&to, power, slots);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Announcing {
            stop,
            thread: Some(thread),
        }
    }

    /// Announces itself to `to` as a client with `bounty` left.
    pub fn announce_client(&self, to: &[u16], bounty: Bounty) {
        self.beacons.announce(to, 0, 0, Some(bounty));
    }

    /// Waits up to `within` for a node to connect to the rogue.
    pub fn accept(&self, within: Duration) -> Option<RogueConn> {
        let transport = self.transport.clone();
        self.rt.block_on(async move {
            let conn = tokio::time::timeout(within, transport.accept_tls())
                .await
                .ok()?
                .ok()?;
            let peer = lppsp_core::component::Connection::peer(&conn).node;
            let (writer, reader) = conn.split_tls();
            Some(RogueConn {
                peer,
                reader,
                writer,
            })
        })
    }

    /// Connects to a node's TLS port.
    pub fn connect(&self, to: SocketAddr) -> RogueConn {
        let transport = self.transport.clone();
        self.rt.block_on(async move {
            let conn = transport.connect_tls(to).await.expect("rogue connects");
            let peer = lppsp_core::component::Connection::peer(&conn).node;
            let (writer, reader) = conn.split_tls();
            RogueConn {
                peer,
                reader,
                writer,
            }
        })
    }

    /// Sends `frames` on `conn`.
    pub fn send(&self, conn: &mut RogueConn, frames: &[Frame]) -> bool {
        self.rt.block_on(conn.writer.write_frames(frames)).is_ok()
    }

    /// The next frame on `conn`, waiting up to `within`; `None` when none
    /// came or the connection ended.
    pub fn recv(&self, conn: &mut RogueConn, within: Duration) -> Option<Frame> {
        self.rt.block_on(async {
            tokio::time::timeout(within, conn.reader.read_frame())
                .await
                .ok()?
                .ok()?
        })
    }
}

impl Beacons {
    /// Sends one signed beacon carrying `message` at `price` to the beacon
    /// ports `to`; `hand` adds the Hand-only headers (slots, epoch),
    /// `queue` the Idle one.
    fn send(
        &self,
        to: &[u16],
        price: Price,
        message: Message,
        hand: Option<(u32, (u64, Option<NodeId>))>,
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
            slots: hand.map(|(slots, _)| slots),
            epoch: hand.map(|(_, epoch)| epoch),
        };
        let datagram = beacon::build(price, message, &headers, |m| self.identity.sign(m));
        for port in to {
            let _ = self.udp.send_to(&datagram, ("127.0.0.1", *port));
        }
    }

    fn announce_compute(&self, to: &[u16], power: u64, slots: u32) {
        self.announce(to, power, slots, None);
    }

    /// A Hand and an Idle at the initial price and epoch: an idle compute
    /// node promising `power` on `slots`, or, with `bounty`, a client.
    fn announce(&self, to: &[u16], power: u64, slots: u32, bounty: Option<Bounty>) {
        let hand = Hand {
            addr: Endpoint(self.tls_addr),
            power,
            arch: Arch::new(std::env::consts::ARCH).unwrap(),
            is_client: bounty.is_some(),
            remaining_bounty: bounty,
        };
        let price = Price::from_units(1).unwrap();
        let idle = Message::Idle {
            idle: bounty.is_none(),
        };
        let hand_headers = Some((slots, (0, None)));
        self.send(to, price, Message::Hand(hand), hand_headers, None);
        self.send(to, price, idle, None, Some(0));
    }
}
