//! The join listener of a CA-holding node, and the joiner's side of it.
//!
//! A stranger may do one thing here: leave one certificate request waiting
//! for the operator. Everything else is bounded: connections per source
//! address per minute, connections at once, the request's size, the time
//! to send it, the number of requests waiting and how long they wait.
//!
//! The exchange, JSON lines inside TLS (server-authenticated only):
//! the joiner sends `{"name", "csr"}`; the listener answers
//! `{"status":"pending","id","ca"}` and, once the operator decided,
//! `{"status":"approved","cert"}` or `{"status":"rejected","reason"}`
//! (`"refused"` when the request is not taken at all, `"expired"` when
//! nobody decided in time). A request lives as long as its connection.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use lppsp_core::config::CaSection;
use lppsp_core::NodeId;
use lppsp_transport_tls::join as tls_join;
use lppsp_transport_tls::Identity;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

/// Time a joiner has to finish TLS and send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the joiner sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub name: String,
    pub csr: String,
}

/// What the listener answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum JoinReply {
    /// Waiting for the operator; `ca` is the community CA certificate (PEM).
    Pending {
        id: String,
        ca: String,
    },
    Approved {
        cert: String,
    },
    Rejected {
        reason: String,
    },
    /// Not taken: too many waiting, too many from this address, or malformed.
    Refused {
        reason: String,
    },
    Expired,
}

/// A request as the operator sees it (`lppsp ca pending`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingView {
    pub id: String,
    pub name: String,
    pub node: String,
    pub source: String,
    /// Seconds since the Unix epoch.
    pub requested_at: u64,
    pub expires_in_s: u64,
    pub code: String,
}

/// The operator's answer.
#[derive(Debug)]
enum Decision {
    Approve(String),
    Reject(String),
}

struct Pending {
    view: PendingView,
    csr: String,
    expires: Instant,
    decide: oneshot::Sender<Decision>,
}

#[derive(Default)]
struct State {
    pending: BTreeMap<String, Pending>,
    /// Recent connection times per source address, for the rate limit.
    recent: HashMap<IpAddr, VecDeque<Instant>>,
    next_id: u64,
}

/// What went wrong with an operator's command.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("no pending request {0} (see `lppsp ca pending`)")]
    NoSuchRequest(String),
    #[error("the joiner of request {0} has gone away")]
    JoinerGone(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The join listener of a node that holds the community CA.
pub struct JoinService {
    cfg: CaSection,
    ca_dir: PathBuf,
    ca_pem: String,
    ca_der: Vec<u8>,
    state: Mutex<State>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for JoinService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinService")
            .field("listen", &self.local_addr)
            .finish()
    }
}

impl JoinService {
    /// Binds `cfg.join_listen` and serves join requests until `shutdown`.
    pub async fn start(
        cfg: &CaSection,
        ca_dir: PathBuf,
        identity: &Identity,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, String> {
        let ca_path = ca_dir.join(lppsp_transport_tls::ca::CA_CERT_FILE);
        let ca_pem =
            std::fs::read_to_string(&ca_path).map_err(|e| format!("{}: {e}", ca_path.display()))?;
        let ca_der = tls_join::cert_der_of_pem(&ca_pem)
            .map_err(|e| format!("{}: {e}", ca_path.display()))?
            .to_vec();
        // Refuse to start with a CA key that cannot sign, rather than fail
        // at the first approval.
        let key_path = ca_dir.join(lppsp_transport_tls::ca::CA_KEY_FILE);
        if !key_path.is_file() {
            return Err(format!("{}: no CA key here", key_path.display()));
        }
        if ca_der.as_slice() != identity.verifier().ca_der().as_ref() {
            return Err(format!(
                "{} is not the CA in identity.ca_cert",
                ca_path.display()
            ));
        }
        let tls = tls_join::server_config(identity).map_err(|e| e.to_string())?;
        let listener = TcpListener::bind(cfg.join_listen)
            .await
            .map_err(|e| format!("join listener on {}: {e}", cfg.join_listen))?;
        let local_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let service = Arc::new(Self {
            cfg: cfg.clone(),
            ca_dir,
            ca_pem,
            ca_der,
            state: Mutex::new(State::default()),
            local_addr,
        });
        info!(listen = %local_addr, "taking join requests");
        tokio::spawn(
            service
                .clone()
                .serve(listener, tokio_rustls::TlsAcceptor::from(tls), shutdown)
                .in_current_span(),
        );
        Ok(service)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: tokio_rustls::TlsAcceptor,
        shutdown: CancellationToken,
    ) {
        // Each waiting request holds a connection; a few more may be in
        // their handshake.
        let connections = Arc::new(Semaphore::new(self.cfg.max_pending.saturating_add(8)));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "join accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if !self.admit(peer.ip()) {
                debug!(%peer, "join connection over the rate limit; closed");
                continue;
            }
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                debug!(%peer, "too many join connections; closed");
                continue;
            };
            let this = self.clone();
            let tls = tls.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(
                async move {
                    this.handle(stream, peer, tls, shutdown).await;
                    drop(permit);
                }
                .in_current_span(),
            );
        }
    }

    /// Counts a connection from `ip`; false when it is over the limit.
    fn admit(&self, ip: IpAddr) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let now = Instant::now();
        let window = Duration::from_secs(60);
        // Forget addresses quiet for a minute, so the table stays small.
        state.recent.retain(|_, times| {
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
        let limit = self.cfg.requests_per_minute as usize;
        if state.recent.len() >= 4096 && !state.recent.contains_key(&ip) {
            return false;
        }
        let times = state.recent.entry(ip).or_default();
        if times.len() >= limit {
            return false;
        }
        times.push_back(now);
        true
    }

    async fn handle(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        tls: tokio_rustls::TlsAcceptor,
        shutdown: CancellationToken,
    ) {
        let first = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let stream = tls.accept(stream).await.map_err(|e| e.to_string())?;
            let (read, write) = tokio::io::split(stream);
            let mut reader = BufReader::new(read);
            let line = read_line(&mut reader, self.cfg.max_request_bytes).await?;
            Ok::<_, String>((reader, write, line))
        })
        .await;
        let (mut reader, mut write, line) = match first {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "join connection dropped");
                return;
            }
            Err(_) => {
                debug!(%peer, "join request not sent in time; dropped");
                return;
            }
        };
        let request: JoinRequest = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                debug!(%peer, error = %e, "malformed join request; dropped");
                let reply = JoinReply::Refused {
                    reason: format!("malformed request: {e}"),
                };
                let _ = send(&mut write, &reply).await;
                return;
            }
        };
        let (id, decision) = match self.enqueue(&request, peer) {
            Ok(x) => x,
            Err(reason) => {
                info!(%peer, %reason, "join request refused");
                let _ = send(&mut write, &JoinReply::Refused { reason }).await;
                return;
            }
        };
        let pending = JoinReply::Pending {
            id: id.clone(),
            ca: self.ca_pem.clone(),
        };
        if send(&mut write, &pending).await.is_err() {
            self.remove(&id);
            return;
        }
        let expiry = Duration::from_secs(self.cfg.pending_expiry_s);
        // The joiner sends nothing more; a read that ends means it left.
        let mut scratch = [0u8; 64];
        let reply = tokio::select! {
            d = decision => match d {
                Ok(Decision::Approve(cert)) => JoinReply::Approved { cert },
                Ok(Decision::Reject(reason)) => JoinReply::Rejected { reason },
                Err(_) => JoinReply::Expired,
            },
            _ = tokio::time::sleep(expiry) => {
                info!(%peer, request = %id, "join request expired");
                JoinReply::Expired
            }
            _ = reader.read(&mut scratch) => {
                info!(%peer, request = %id, "joiner went away; request dropped");
                self.remove(&id);
                return;
            }
            _ = shutdown.cancelled() => JoinReply::Rejected { reason: "the CA node is shutting down".into() },
        };
        self.remove(&id);
        let _ = send(&mut write, &reply).await;
        let _ = write.shutdown().await;
    }

    /// Checks a request and adds it to the waiting list.
    fn enqueue(
        &self,
        request: &JoinRequest,
        peer: SocketAddr,
    ) -> Result<(String, oneshot::Receiver<Decision>), String> {
        lppsp_transport_tls::ca::check_node_name(&request.name).map_err(|e| e.to_string())?;
        let checked = tls_join::check_request(&request.csr).map_err(|e| e.to_string())?;
        let code = tls_join::verification_code(&self.ca_der, &checked.public_key_der)
            .map_err(|e| e.to_string())?;
        let mut state = self
            .state
            .lock()
            .map_err(|_| "internal error".to_string())?;
        let now = Instant::now();
        state.pending.retain(|_, p| p.expires > now);
        if state.pending.len() >= self.cfg.max_pending {
            return Err(format!(
                "{} requests are already waiting; try again later",
                state.pending.len()
            ));
        }
        if state
            .pending
            .values()
            .any(|p| p.view.node == checked.node.to_string())
        {
            return Err("a request for this key is already waiting".into());
        }
        state.next_id += 1;
        let id = format!("{}", state.next_id);
        let (tx, rx) = oneshot::channel();
        let requested_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        info!(%peer, request = %id, name = %request.name, node = %checked.node, %code, "join request waiting for approval");
        state.pending.insert(
            id.clone(),
            Pending {
                view: PendingView {
                    id: id.clone(),
                    name: request.name.clone(),
                    node: checked.node.to_string(),
                    source: peer.to_string(),
                    requested_at,
                    expires_in_s: self.cfg.pending_expiry_s,
                    code,
                },
                csr: request.csr.clone(),
                expires: now + Duration::from_secs(self.cfg.pending_expiry_s),
                decide: tx,
            },
        );
        Ok((id, rx))
    }

    fn remove(&self, id: &str) -> Option<Pending> {
        self.state.lock().ok()?.pending.remove(id)
    }

    /// The requests waiting for a decision, oldest first.
    pub fn pending(&self) -> Vec<PendingView> {
        let Ok(mut state) = self.state.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        state
            .pending
            .retain(|_, p| p.expires > now && !p.decide.is_closed());
        let mut list: Vec<PendingView> = state
            .pending
            .values()
            .map(|p| {
                let mut v = p.view.clone();
                v.expires_in_s = p.expires.saturating_duration_since(now).as_secs();
                v
            })
            .collect();
        list.sort_by_key(|v| v.id.parse::<u64>().unwrap_or(u64::MAX));
        list
    }

    /// Signs request `id` and sends the certificate to its joiner.
    pub fn approve(&self, id: &str) -> Result<(String, NodeId), DecisionError> {
        let p = self
            .remove(id)
            .ok_or_else(|| DecisionError::NoSuchRequest(id.to_string()))?;
        if p.decide.is_closed() {
            return Err(DecisionError::JoinerGone(id.to_string()));
        }
        let (cert, node) = tls_join::sign_request(&self.ca_dir, &p.view.name, &p.csr)
            .map_err(|e| DecisionError::Sign(e.to_string()))?;
        p.decide
            .send(Decision::Approve(cert))
            .map_err(|_| DecisionError::JoinerGone(id.to_string()))?;
        info!(request = id, %node, name = %p.view.name, "join request approved");
        Ok((p.view.name, node))
    }

    /// Tells the joiner of request `id` that it was refused.
    pub fn reject(&self, id: &str, reason: &str) -> Result<(), DecisionError> {
        let p = self
            .remove(id)
            .ok_or_else(|| DecisionError::NoSuchRequest(id.to_string()))?;
        info!(request = id, name = %p.view.name, "join request rejected");
        p.decide
            .send(Decision::Reject(reason.to_string()))
            .map_err(|_| DecisionError::JoinerGone(id.to_string()))
    }

    /// Answers a `ca_*` control request.
    pub fn on_control(
        service: Option<&Self>,
        request: &crate::control::Request,
    ) -> serde_json::Value {
        use crate::control::reply::{CaApproved, CaPending, CaRejected};
        use crate::control::{reply_json, ErrorReply, Request};
        let error = |error: String| reply_json(&ErrorReply { error, code: None });
        let Some(service) = service else {
            return error(
                "this node holds no CA: set [ca] dir in its config to take join requests".into(),
            );
        };
        match request {
            Request::CaPending => reply_json(&CaPending {
                pending: service.pending(),
            }),
            Request::CaApprove { id } => match service.approve(id) {
                Ok((name, node)) => reply_json(&CaApproved {
                    approved: id.clone(),
                    name,
                    node,
                }),
                Err(e) => error(e.to_string()),
            },
            Request::CaReject { id, reason } => {
                let reason = reason.as_deref().unwrap_or("the operator rejected it");
                match service.reject(id, reason) {
                    Ok(()) => reply_json(&CaRejected {
                        rejected: id.clone(),
                    }),
                    Err(e) => error(e.to_string()),
                }
            }
            _ => error("not a CA request".into()),
        }
    }
}

/// Reads one line of at most `max` bytes; a longer one is an error.
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    max: usize,
) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let n = (&mut *reader)
        .take(max as u64 + 1)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("closed before a request".into());
    }
    if line.last() != Some(&b'\n') {
        return Err(if n > max {
            format!("request over {max} bytes")
        } else {
            "request not ended by a newline".to_string()
        });
    }
    Ok(line)
}

async fn send<W: AsyncWrite + Unpin, T: Serialize>(write: &mut W, msg: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await
}

/// The joiner's side: a TLS connection that trusts the server on first use.
pub type JoinStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects to a join listener (TLS, server certificate not checked: the
/// verification code is the check).
pub async fn connect(addr: SocketAddr) -> Result<JoinStream, String> {
    let config = tls_join::client_config().map_err(|e| e.to_string())?;
    let name = tls_join::server_name().map_err(|e| e.to_string())?;
    let tcp = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr}: timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| format!("TLS with {addr}: timed out"))?
    .map_err(|e| format!("TLS with {addr}: {e}"))
}

/// A join in progress, after the request was taken.
pub struct Joining {
    reader: BufReader<tokio::io::ReadHalf<JoinStream>>,
    _write: tokio::io::WriteHalf<JoinStream>,
    pub request_id: String,
    pub ca_pem: String,
    /// The code to compare with the operator's.
    pub code: String,
}

/// Sends the request for `key` named `name`; returns once the CA node
/// took it, with the code to show.
pub async fn send_request(
    addr: SocketAddr,
    name: &str,
    key: &tls_join::NewKey,
) -> Result<Joining, String> {
    let stream = connect(addr).await?;
    let (read, mut write) = tokio::io::split(stream);
    let request = JoinRequest {
        name: name.to_string(),
        csr: key.csr_pem().to_string(),
    };
    send(&mut write, &request)
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut reader = BufReader::new(read);
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, read_reply(&mut reader))
        .await
        .map_err(|_| "the CA node did not answer in time".to_string())??;
    match reply {
        JoinReply::Pending { id, ca } => {
            let ca_der = tls_join::cert_der_of_pem(&ca).map_err(|e| e.to_string())?;
            let code = tls_join::verification_code(&ca_der, &key.public_key_der())
                .map_err(|e| e.to_string())?;
            Ok(Joining {
                reader,
                _write: write,
                request_id: id,
                ca_pem: ca,
                code,
            })
        }
        JoinReply::Refused { reason } => Err(format!("the CA node refused the request: {reason}")),
        other => Err(format!("unexpected answer from the CA node: {other:?}")),
    }
}

impl Joining {
    /// Waits for the operator's decision; returns the certificate (PEM).
    pub async fn wait(mut self) -> Result<String, String> {
        match read_reply(&mut self.reader).await? {
            JoinReply::Approved { cert } => Ok(cert),
            JoinReply::Rejected { reason } => Err(format!("the request was rejected: {reason}")),
            JoinReply::Expired => Err("the request expired before the operator decided".into()),
            other => Err(format!("unexpected answer from the CA node: {other:?}")),
        }
    }
}

async fn read_reply<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Result<JoinReply, String> {
    // A certificate chain in PEM is a few KiB.
    let line = read_line(reader, 64 * 1024)
        .await
        .map_err(|e| format!("the CA node closed the connection ({e})"))?;
    serde_json::from_slice(&line).map_err(|e| format!("unreadable answer from the CA node: {e}"))
}
