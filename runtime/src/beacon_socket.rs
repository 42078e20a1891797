//! The UDP side of discovery: one socket that receives beacons and sends
//! ours by broadcast, multicast or to a static list (DESIGN 4.4).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lppsp_core::config::{Discovery, NetworkSection};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Largest beacon datagram we read; beacons are far smaller.
pub const MAX_DATAGRAM: usize = 8192;

/// Opens the beacon socket as the config says.
///
/// `SO_REUSEADDR`/`SO_REUSEPORT` let several nodes on one host share a
/// broadcast or multicast port (each receives every beacon) and let a node
/// restart at once.
pub fn open(net: &NetworkSection) -> std::io::Result<UdpSocket> {
    let bind = net.beacon_listen;
    let domain = if bind.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    #[cfg(unix)]
    sock.set_reuse_port(true)?;
    sock.set_broadcast(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&bind.into())?;
    if net.discovery == Discovery::Multicast {
        match (net.multicast_group.ip(), net.multicast_interface) {
            (IpAddr::V4(group), iface) => {
                let iface = match iface {
                    Some(IpAddr::V4(i)) => i,
                    _ => Ipv4Addr::UNSPECIFIED,
                };
                sock.join_multicast_v4(&group, &iface)?;
                sock.set_multicast_loop_v4(true)?;
                sock.set_multicast_ttl_v4(1)?;
                if !iface.is_unspecified() {
                    sock.set_multicast_if_v4(&iface)?;
                }
            }
            (IpAddr::V6(group), _) => {
                sock.join_multicast_v6(&group, 0)?;
                sock.set_multicast_loop_v6(true)?;
            }
        }
    }
    UdpSocket::from_std(sock.into())
}

/// Where our beacons go.
pub fn destinations(net: &NetworkSection) -> Vec<SocketAddr> {
    match net.discovery {
        Discovery::Broadcast => vec![net.broadcast_to],
        Discovery::Multicast => vec![net.multicast_group],
        Discovery::Static => net.static_peers.clone(),
    }
}
