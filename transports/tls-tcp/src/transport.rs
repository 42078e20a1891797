//! The `tls-tcp` transport: TCP, TLS 1.3 only, mutual authentication
//! against the community CA.
//!
//! Both sides present a node certificate; the server requires one. The
//! server name asked for is always [`crate::ca::SERVER_NAME`]: TLS proves
//! "a member of this community", and the peer's NodeId comes from the
//! public key of the certificate it proved. Session resumption is off, so
//! every connection checks the certificate afresh.
//!
//! Incoming handshakes run in their own tasks, each under a timeout and a
//! cap on how many may be pending, so a silent or slow peer holds one slot
//! for at most the timeout and never delays other peers; [`Transport::accept`]
//! yields only connections whose handshake succeeded.
//!
//! Every connection also counts against a cap per source address and a
//! cap in total (`max_connections_per_ip`, `max_connections`): past them a
//! new TCP connection is closed at once, before any TLS work, so a flood
//! from one machine costs the node a socket for an instant and never
//! starves other peers. Once a frame has started, it must be complete
//! within `frame_timeout_ms`, so a peer sending a byte at a time
//! (slowloris) loses its connection instead of holding it.
//!
//! Note on TLS 1.3: a client finishes its handshake before the server has
//! checked the client's certificate. A server that refuses us is therefore
//! seen by [`Transport::connect`]'s caller as a connection whose first read
//! fails (with the server's alert) or ends; the server side never delivers
//! anything from such a peer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lppsp_core::component::{
    BoxFuture, Connection, FrameReader, FrameWriter, PeerIdentity, Transport, TransportError,
};
use lppsp_core::registry::{Options, Registry, TransportParams};
use lppsp_core::wire::{Frame, Limits};
use rustls::client::Resumption;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{BufReader, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::ca::SERVER_NAME;
use crate::framing::{FrameSink, FrameSource};
use crate::identity::{node_id_of_cert, Identity};

/// What a TLS session runs on: TCP with a read buffer, so that rustls's
/// small record reads do not each cost a system call.
type Io = BufReader<TcpStream>;
type Stream = TlsStream<Io>;

/// Socket read buffer under TLS.
const SOCKET_READ_BUF: usize = 256 * 1024;
/// rustls's limit on buffered outgoing data: a large body goes out in
/// vectored writes of up to this much. Not more: rustls allocates every
/// record, and freeing 1 MiB of them at once made glibc give the memory
/// back to the kernel and fault it in again for the next write, some 50,000
/// page faults and a fifth of the sender's CPU per GiB sent (W3). At 128 KiB
/// a GiB costs a few hundred faults.
const TLS_BUFFER_LIMIT: usize = 128 * 1024;

/// The name this transport is registered under.
pub const NAME: &str = "tls-tcp";
/// The ALPN protocol both sides ask for.
pub const ALPN: &[u8] = b"lppsp/1.0";
/// Default limit on one handshake (TCP connect included, for outgoing).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on incoming handshakes in progress (and accepted
/// connections not yet taken by [`Transport::accept`]).
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 256;

/// Largest `max_pending_handshakes` accepted.
pub const MAX_PENDING_HANDSHAKES_LIMIT: usize = 65_536;
/// Default longest time from a frame's first byte to its last: a 64 MiB
/// body (the default `limits.max_body`) arrives well within it on any LAN.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// Default cap on open incoming connections (handshaking or served).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default cap on open incoming connections from one IP address: a peer
/// needs one or two; more leaves room for several nodes behind one NAT.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;

/// Options from the `[transport]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsOptions {
    /// `handshake_timeout_ms`
    pub handshake_timeout: Duration,
    /// `max_pending_handshakes`
    pub max_pending_handshakes: usize,
    /// `frame_timeout_ms`
    pub frame_timeout: Duration,
    /// `max_connections`
    pub max_connections: usize,
    /// `max_connections_per_ip`
    pub max_connections_per_ip: usize,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
        }
    }
}

impl TlsOptions {
    /// Reads the options; an unknown key or a bad value is an error that
    /// names the key.
    pub fn from_options(options: &Options) -> Result<Self, TransportError> {
        let mut out = Self::default();
        for (key, value) in options {
            let positive = || -> Result<u64, TransportError> {
                value
                    .as_integer()
                    .and_then(|v| u64::try_from(v).ok())
                    .filter(|&v| v > 0)
                    .ok_or_else(|| {
                        TransportError::Config(format!(
                            "transport.{key}: expected a positive integer, got {value}"
                        ))
                    })
            };
            match key.as_str() {
                "handshake_timeout_ms" => {
                    out.handshake_timeout = Duration::from_millis(positive()?);
                }
                "max_pending_handshakes" => {
                    let n = positive()?;
                    if n > MAX_PENDING_HANDSHAKES_LIMIT as u64 {
                        return Err(TransportError::Config(format!(
                            "transport.{key}: at most {MAX_PENDING_HANDSHAKES_LIMIT}, got {n}"
                        )));
                    }
                    // Bounded just above, so it fits.
                    out.max_pending_handshakes = n as usize;
                }
                "frame_timeout_ms" => out.frame_timeout = Duration::from_millis(positive()?),
                "max_connections" | "max_connections_per_ip" => {
                    let n = usize::try_from(positive()?).unwrap_or(usize::MAX);
                    if key == "max_connections" {
                        out.max_connections = n;
                    } else {
                        out.max_connections_per_ip = n;
                    }
                }
                other => {
                    return Err(TransportError::Config(format!(
                        "transport.{other}: unknown option of the {NAME} transport \
                         (known: handshake_timeout_ms, max_pending_handshakes, \
                         frame_timeout_ms, max_connections, max_connections_per_ip)"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// ring's provider with AES-128-GCM preferred: ample for a LAN, and
/// markedly faster than AES-256 on large task bodies.
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> TransportError {
    TransportError::Config(format!("{what}: {e}"))
}

/// The server side's TLS configuration: TLS 1.3, a client certificate from
/// the community CA required, no resumption.
pub fn server_config(identity: &Identity) -> Result<Arc<ServerConfig>, TransportError> {
    let provider = provider();
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(identity.verifier().roots(), provider.clone())
            .build()
            .map_err(|e| tls_err("client verifier", e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS versions", e))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(vec![identity.certificate().clone()], identity.private_key())
        .map_err(|e| tls_err("node certificate", e))?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The client side's TLS configuration: TLS 1.3, the server's chain checked
/// against the community CA, our certificate presented, no resumption.
pub fn client_config(identity: &Identity) -> Result<Arc<ClientConfig>, TransportError> {
    let provider = provider();
    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(identity.verifier().roots(), provider.clone())
            .build()
            .map_err(|e| tls_err("server verifier", e))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS versions", e))?
        .with_webpki_verifier(server_verifier)
        .with_client_auth_cert(vec![identity.certificate().clone()], identity.private_key())
        .map_err(|e| tls_err("node certificate", e))?;
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The TLS server name used for every node ([`SERVER_NAME`]).
pub fn server_name() -> Result<ServerName<'static>, TransportError> {
    ServerName::try_from(SERVER_NAME).map_err(|e| tls_err("server name", e))
}

#[derive(Debug, Default)]
struct Stats {
    refused: AtomicU64,
    accepted: AtomicU64,
    /// Connections closed at once for being over a connection cap.
    over_limit: AtomicU64,
    /// Frames skipped as unusable, the connection kept.
    bad_frames: AtomicU64,
    /// Connections closed for bytes that break the framing.
    malformed: AtomicU64,
    /// Connections closed for a line, chunk, body or count over `[limits]`.
    oversized: AtomicU64,
    /// Connections closed for a frame not complete within the deadline.
    slow_frames: AtomicU64,
}

impl Stats {
    /// Counts why a peer's frame was refused.
    fn count_read_error(&self, e: &TransportError) {
        use lppsp_core::wire::DecodeErrorKind as K;
        let counter = match e {
            TransportError::BadFrame(_) => &self.bad_frames,
            TransportError::Protocol(d) => match d.kind {
                K::LineTooLong { .. }
                | K::TooManyHeaders { .. }
                | K::ChunkTooLarge { .. }
                | K::BodyTooLarge { .. }
                | K::TooManyChunks { .. } => &self.oversized,
                _ => &self.malformed,
            },
            TransportError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                &self.slow_frames
            }
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Open incoming connections, per source address and in total.
#[derive(Debug, Default)]
struct ConnTable {
    per_ip: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

impl ConnTable {
    /// A slot for one more connection from `ip`, or `None` when a cap is
    /// reached.
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Option<ConnSlot> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = per_ip.values().sum();
        let mine = per_ip.get(&ip).copied().unwrap_or(0);
        if total >= max_total || mine >= max_per_ip {
            return None;
        }
        per_ip.insert(ip, mine + 1);
        Some(ConnSlot {
            table: self.clone(),
            ip,
        })
    }
}

/// One admitted connection; its slot is freed when this is dropped (with
/// the connection's reading half, or when its handshake fails).
#[derive(Debug)]
struct ConnSlot {
    table: Arc<ConnTable>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut per_ip = self.table.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// The TLS-over-TCP transport.
pub struct TlsTransport {
    local_addr: SocketAddr,
    identity: Arc<Identity>,
    connector: TlsConnector,
    server_name: ServerName<'static>,
    limits: Limits,
    options: TlsOptions,
    incoming: Mutex<mpsc::Receiver<TlsConnection>>,
    stats: Arc<Stats>,
    accept_task: JoinHandle<()>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("local_addr", &self.local_addr)
            .field("node", &self.identity.node_id())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Drop for TlsTransport {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl TlsTransport {
    /// Loads the identity named in `params`, listens on `params.listen` and
    /// starts accepting. Needs a tokio runtime.
    pub async fn bind(params: TransportParams) -> Result<Arc<Self>, TransportError> {
        let options = TlsOptions::from_options(&params.options)?;
        let identity = Identity::load(&params.identity)
            .map_err(|e| TransportError::Config(format!("identity: {e}")))?;
        Self::bind_with(params.listen, Arc::new(identity), params.limits, options).await
    }

    /// Like [`TlsTransport::bind`], with an identity already loaded (the
    /// runtime shares one with its beacons).
    pub async fn bind_with(
        listen: SocketAddr,
        identity: Arc<Identity>,
        limits: Limits,
        options: TlsOptions,
    ) -> Result<Arc<Self>, TransportError> {
        let acceptor = TlsAcceptor::from(server_config(&identity)?);
        let connector = TlsConnector::from(client_config(&identity)?);
        let server_name = server_name()?;
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let pending = options.max_pending_handshakes.max(1);
        let (tx, rx) = mpsc::channel(pending);
        let stats = Arc::new(Stats::default());
        let accept_task = tokio::spawn(accept_loop(AcceptLoop {
            listener,
            acceptor,
            tx,
            limits,
            options,
            permits: Arc::new(Semaphore::new(pending)),
            stats: stats.clone(),
            table: Arc::new(ConnTable::default()),
        }));
        tracing::info!(addr = %local_addr, node = %identity.node_id(), "tls-tcp transport listening");
        Ok(Arc::new(Self {
            local_addr,
            identity,
            connector,
            server_name,
            limits,
            options,
            incoming: Mutex::new(rx),
            stats,
            accept_task,
        }))
    }

    /// Incoming handshakes that failed or timed out so far.
    pub fn refused_handshakes(&self) -> u64 {
        self.stats.refused.load(Ordering::Relaxed)
    }

    /// Incoming connections that completed their handshake so far.
    pub fn accepted_handshakes(&self) -> u64 {
        self.stats.accepted.load(Ordering::Relaxed)
    }

    /// This node's identity.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// Connects and returns the concrete connection type.
    pub async fn connect_tls(&self, addr: SocketAddr) -> Result<TlsConnection, TransportError> {
        let handshake = async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            keep_alive(&tcp)?;
            let io = BufReader::with_capacity(SOCKET_READ_BUF, tcp);
            let mut tls = self
                .connector
                .connect(self.server_name.clone(), io)
                .await
                .map_err(|e| TransportError::Handshake {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
            tls.get_mut().1.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
            let peer = peer_identity(tls.get_ref().1.peer_certificates()).map_err(|reason| {
                TransportError::Handshake {
                    addr: addr.to_string(),
                    reason,
                }
            })?;
            Ok(TlsConnection {
                stream: TlsStream::Client(tls),
                peer,
                remote: addr,
                limits: self.limits,
                frame_timeout: self.options.frame_timeout,
                stats: self.stats.clone(),
                slot: None,
            })
        };
        match tokio::time::timeout(self.options.handshake_timeout, handshake).await {
            Ok(Ok(conn)) => {
                tracing::debug!(%addr, peer = %conn.peer.node, "tls-tcp connected");
                Ok(conn)
            }
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "tls-tcp connect failed");
                Err(e)
            }
            Err(_) => Err(TransportError::Handshake {
                addr: addr.to_string(),
                reason: format!(
                    "timed out after {} ms",
                    self.options.handshake_timeout.as_millis()
                ),
            }),
        }
    }

    /// Waits for the next authenticated incoming connection, concrete type.
    pub async fn accept_tls(&self) -> Result<TlsConnection, TransportError> {
        self.incoming
            .lock()
            .await
            .recv()
            .await
            .ok_or(TransportError::Closed)
    }
}

/// Registers this transport as `tls-tcp`.
pub fn register(registry: &mut Registry) {
    registry.register_transport(NAME, |params| {
        Box::pin(async move {
            let t: Arc<dyn Transport> = TlsTransport::bind(params).await?;
            Ok(t)
        })
    });
}

impl Transport for TlsTransport {
    fn name(&self) -> &str {
        NAME
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let conn = self.accept_tls().await?;
            Ok(Box::new(conn) as Box<dyn Connection>)
        })
    }

    fn connect(
        &self,
        addr: SocketAddr,
    ) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let conn = self.connect_tls(addr).await?;
            Ok(Box::new(conn) as Box<dyn Connection>)
        })
    }

    fn refused_connections(&self) -> u64 {
        self.refused_handshakes()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("handshakes_accepted", get(&s.accepted)),
            ("handshakes_refused", get(&s.refused)),
            ("connections_over_limit", get(&s.over_limit)),
            ("bad_frames", get(&s.bad_frames)),
            ("malformed", get(&s.malformed)),
            ("oversized", get(&s.oversized)),
            ("slow_frames", get(&s.slow_frames)),
        ]
    }
}

fn peer_identity(
    certs: Option<&[rustls_pki_types::CertificateDer<'static>]>,
) -> Result<PeerIdentity, String> {
    let cert = certs
        .and_then(|c| c.first())
        .ok_or_else(|| "peer presented no certificate".to_string())?;
    let node = node_id_of_cert(cert).map_err(|e| e.to_string())?;
    Ok(PeerIdentity {
        node,
        cert_der: cert.to_vec(),
    })
}

struct AcceptLoop {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<TlsConnection>,
    limits: Limits,
    options: TlsOptions,
    permits: Arc<Semaphore>,
    stats: Arc<Stats>,
    table: Arc<ConnTable>,
}

async fn accept_loop(l: AcceptLoop) {
    loop {
        // A permit per handshake in progress: past the cap, new peers wait
        // in the kernel's backlog.
        let Ok(permit) = l.permits.clone().acquire_owned().await else {
            return;
        };
        let (tcp, addr) = match l.listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %e, "tls-tcp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if l.tx.is_closed() {
            return;
        }
        let Some(slot) = l.table.admit(
            addr.ip(),
            l.options.max_connections,
            l.options.max_connections_per_ip,
        ) else {
            // Dropping the socket closes it: no TLS work for a flood.
            l.stats.over_limit.fetch_add(1, Ordering::Relaxed);
            l.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %addr, "tls-tcp connection over the limit closed");
            continue;
        };
        let acceptor = l.acceptor.clone();
        let tx = l.tx.clone();
        let stats = l.stats.clone();
        let limits = l.limits;
        let timeout = l.options.handshake_timeout;
        let frame_timeout = l.options.frame_timeout;
        tokio::spawn(async move {
            let result =
                tokio::time::timeout(timeout, server_handshake(&acceptor, tcp, addr)).await;
            let conn = match result {
                Ok(Ok((stream, peer))) => TlsConnection {
                    stream,
                    peer,
                    remote: addr,
                    limits,
                    frame_timeout,
                    stats: stats.clone(),
                    slot: Some(slot),
                },
                Ok(Err(reason)) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = %addr, %reason, "tls-tcp refused a handshake");
                    return;
                }
                Err(_) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        peer = %addr,
                        timeout_ms = timeout.as_millis() as u64,
                        "tls-tcp handshake timed out"
                    );
                    return;
                }
            };
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %addr, node = %conn.peer.node, "tls-tcp accepted");
            // The permit is held until the connection is handed over.
            let _ = tx.send(conn).await;
            drop(permit);
        });
    }
}

/// TCP keep-alive on every connection: a peer that vanished without closing
/// (powered off, cable pulled) is noticed within about a minute even on a
/// connection with nothing to send, instead of holding its connection
/// slot and its reader for hours.
fn keep_alive(tcp: &TcpStream) -> std::io::Result<()> {
    let probes = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    socket2::SockRef::from(tcp).set_tcp_keepalive(&probes)
}

async fn server_handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Result<(Stream, PeerIdentity), String> {
    tcp.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY on {addr}: {e}"))?;
    keep_alive(&tcp).map_err(|e| format!("TCP keep-alive on {addr}: {e}"))?;
    let io = BufReader::with_capacity(SOCKET_READ_BUF, tcp);
    let mut tls = acceptor.accept(io).await.map_err(|e| e.to_string())?;
    tls.get_mut().1.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
    let peer = peer_identity(tls.get_ref().1.peer_certificates())?;
    Ok((TlsStream::Server(tls), peer))
}

/// One authenticated TLS connection.
pub struct TlsConnection {
    stream: Stream,
    peer: PeerIdentity,
    remote: SocketAddr,
    limits: Limits,
    frame_timeout: Duration,
    stats: Arc<Stats>,
    /// Incoming only: this connection's place under the connection caps.
    slot: Option<ConnSlot>,
}

impl std::fmt::Debug for TlsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnection")
            .field("peer", &self.peer.node)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl TlsConnection {
    /// Splits into the concrete halves.
    pub fn split_tls(self) -> (TlsFrameWriter, TlsFrameReader) {
        let (r, w) = tokio::io::split(self.stream);
        let source = FrameSource::new(r, self.limits).with_frame_deadline(self.frame_timeout);
        (
            TlsFrameWriter(FrameSink::new(w)),
            TlsFrameReader {
                source,
                stats: self.stats,
                _slot: self.slot,
            },
        )
    }
}

impl Connection for TlsConnection {
    fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    fn split(self: Box<Self>) -> (Box<dyn FrameWriter>, Box<dyn FrameReader>) {
        let (w, r) = (*self).split_tls();
        (Box::new(w), Box::new(r))
    }
}

/// The receiving half of a [`TlsConnection`].
#[derive(Debug)]
pub struct TlsFrameReader {
    source: FrameSource<ReadHalf<Stream>>,
    stats: Arc<Stats>,
    /// Held while the connection is read: the caps count it until then.
    _slot: Option<ConnSlot>,
}

/// The sending half of a [`TlsConnection`].
#[derive(Debug)]
pub struct TlsFrameWriter(FrameSink<WriteHalf<Stream>>);

impl FrameReader for TlsFrameReader {
    /// Cancel-safe (see [`FrameSource::read_frame`]).
    fn read_frame(&mut self) -> BoxFuture<'_, Result<Option<Frame>, TransportError>> {
        Box::pin(async move {
            let result = self.source.read_frame().await;
            if let Err(e) = &result {
                self.stats.count_read_error(e);
            }
            result
        })
    }
}

impl FrameWriter for TlsFrameWriter {
    fn write_frames<'a>(
        &'a mut self,
        frames: &'a [Frame],
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            self.0
                .write_frames(frames)
                .await
                .map_err(TransportError::Io)
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move { self.0.close().await.map_err(TransportError::Io) })
    }
}
