//! A member running modified software, for attack tests. It holds a real
//! community certificate, issued like any node's, and sends whatever the
//! test tells it to: signed UDP beacons (its [`RogueBeacon`] side) and
//! frames of its own making over mutual TLS, through the product's own
//! codec and TLS transport. It answers nothing by itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lppsp_core::component::{FrameReader, FrameWriter};
use lppsp_core::money::Bounty;
use lppsp_core::wire::{Frame, Limits};
use lppsp_core::NodeId;
use lppsp_transport_tls::transport::{TlsFrameReader, TlsFrameWriter, TlsOptions};
use lppsp_transport_tls::TlsTransport;

use super::rogue_beacon::{KeepAlive, RogueBeacon};
use super::{free_port, Community};

/// The modified member.
pub struct Rogue {
    pub id: NodeId,
    /// Its signed UDP side, to the beacon ports given at creation.
    pub beacons: Arc<RogueBeacon>,
    transport: Arc<TlsTransport>,
    /// Where the rogue's TLS listener is (its Hand's address).
    pub tls_addr: SocketAddr,
    rt: tokio::runtime::Runtime,
}

/// One TLS connection of the rogue.
pub struct RogueConn {
    pub peer: NodeId,
    reader: TlsFrameReader,
    writer: TlsFrameWriter,
}

impl Rogue {
    /// A member named `name` of `community`, beaconing to the beacon ports
    /// `to` and listening for TLS on a free loopback port.
    pub fn new(community: &Community, name: &str, to: &[u16]) -> Self {
        let beacons = RogueBeacon::new(community, name, to);
        let identity = beacons.identity();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let transport = rt
            .block_on(TlsTransport::bind_with(
                listen,
                identity,
                Limits::default(),
                TlsOptions::default(),
            ))
            .expect("bind the rogue's TLS listener");
        Self {
            id: beacons.id,
            beacons,
            transport,
            tls_addr: listen,
            rt,
        }
    }

    /// Announces itself as an idle compute node promising `power` MFLOPS
    /// on `slots` slots every 250 ms, like a live node, until the returned
    /// guard is dropped.
    pub fn keep_announcing_compute(&self, power: u64, slots: u32) -> KeepAlive {
        let addr = self.tls_addr;
        self.beacons.repeat(Duration::from_millis(250), move |b| {
            b.announce(addr, power, slots, None)
        })
    }

    /// Announces itself as a client with `bounty` left.
    pub fn announce_client(&self, bounty: Bounty) {
        self.beacons.announce(self.tls_addr, 0, 0, Some(bounty));
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
