//! Ports for nodes started together on one machine (the demo, `lppsp
//! bench`, `lppsp sim --real`, the tests): each on 127.0.0.1, free for
//! both TCP and UDP when checked, for a node to bind a moment later.
//!
//! Taken below the kernel's ephemeral range (32768-60999 on Linux), from
//! an offset that differs between processes, and handed out once per
//! process. A port bound at 0 and released is soon handed out again by
//! the kernel, to the next pick or as the local port of some outgoing
//! connection, and the node that was to listen on it then exits at
//! start-up.

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The lowest port handed out.
pub const LOW: u32 = 20_000;
/// How many ports above [`LOW`] are handed out.
pub const SPAN: u32 = 12_000;

/// A port free on 127.0.0.1 for TCP and UDP now, never handed out before
/// by this process; None when every port of the range is taken.
pub fn free_port() -> Option<u16> {
    static SEED: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = *SEED.get_or_init(|| std::process::id().wrapping_mul(7_919) % SPAN);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(LOW + (seed + n) % SPAN) else {
            continue;
        };
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return Some(port);
        }
    }
    None
}
