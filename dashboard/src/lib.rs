//! lppsp-dashboard: the operator's view of one node over HTTP.
//!
//! It serves a single self-contained page (no external assets: LANs
//! running lppsp often have no internet), the JSON API the page is built
//! on, and `/metrics` in the Prometheus text format. Every figure comes
//! from the node's own status, asked for once per tick over the same
//! in-process control channel `lppsp status` uses: the driver answers
//! between two events, so the dashboard never holds it up, and however
//! many browsers or scrapers are connected the driver is asked once per
//! tick. The page polls once per tick; `/api/events` streams the same
//! snapshots as server-sent events for other tools. The endpoints are
//! documented in docs/dashboard.md.
//!
//! It is read-only (status and ledger, which every member's ledger holds
//! anyway; no key, token or job input). With `dashboard.token_file` every
//! request must carry the token, as `Authorization: Bearer TOKEN` or
//! `?token=TOKEN`; a dashboard beyond loopback needs one (the config
//! refuses to load otherwise).

mod metrics;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Query, Request as HttpRequest, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lppsp_runtime::control::reply::{LedgerReply, NodeStatus};
use lppsp_runtime::control::{ControlRequest, Request};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::WatchStream;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Samples kept for the charts: an hour at the RFC's one tick per second.
pub const HISTORY_SAMPLES: usize = 3600;

/// Receipts read from the ledger to pick the most recent from.
const LEDGER_SCAN: usize = 2000;

/// The page, with its script and style inline.
const PAGE: &str = include_str!("page.html");

/// A dashboard that could not start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("key `dashboard.listen`: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("key `dashboard.token_file`: {}: {message}", path.display())]
    Token { path: PathBuf, message: String },
}

/// Shortest token accepted, in characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// The access token a dashboard requires.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Reads the token from `path`: one line of at least
    /// [`MIN_TOKEN_LEN`] characters that need no escaping in a URL
    /// (letters, digits, `-._~`), e.g. `openssl rand -hex 32`.
    pub fn load(path: &Path) -> Result<Token, DashboardError> {
        let err = |message: String| DashboardError::Token {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let token = text.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(err(format!(
                "the token must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`)"
            )));
        }
        if !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        {
            return Err(err(
                "the token may hold only letters, digits and -._~ (it goes in URLs)".into(),
            ));
        }
        lppsp_runtime::private::warn_if_exposed(
            path,
            lppsp_runtime::private::Kind::Secret,
            "dashboard.token_file",
        );
        Ok(Token(token.to_string()))
    }

    /// Whether `given` is the token, in time independent of where they differ.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The token a request carries: `Authorization: Bearer TOKEN`, or
/// `token=TOKEN` in the query (for a browser's address bar and
/// EventSource, which cannot set headers).
fn token_of(req: &HttpRequest) -> Option<&str> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    bearer.or_else(|| {
        req.uri()
            .query()?
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
    })
}

async fn require_token(State(token): State<Arc<Token>>, req: HttpRequest, next: Next) -> Response {
    if token_of(&req).is_some_and(|t| token.matches(t)) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({"error": "this dashboard needs its token: Authorization: Bearer TOKEN, or ?token=TOKEN (dashboard.token_file)"})),
    )
        .into_response()
}

/// One point of the market charts, taken from one status.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Wall-clock time, ms since the Unix epoch.
    pub t_ms: u64,
    /// Committed market price (bounty per MFLOPS per second).
    pub price: f64,
    pub epoch: u64,
    /// Pool pressure: tasks waiting per node; `None` before the first tick.
    pub pressure: Option<f64>,
    /// Tasks queued or running in the pool.
    pub queue: Option<u64>,
    /// Idle processing power offered in the pool, MFLOPS.
    pub supply_mflops: Option<u64>,
    /// Peers in the information book.
    pub peers: u64,
}

impl Sample {
    fn from_status(status: &NodeStatus, t_ms: u64) -> Self {
        let market = &status.market;
        Sample {
            t_ms,
            price: money(market.price.micros()),
            epoch: market.epoch,
            pressure: market.pressure,
            queue: market.demand_tasks,
            supply_mflops: market.supply_mflops,
            peers: status.peers.len() as u64,
        }
    }
}

/// A money amount (in micro-units) as a float for charts and metrics.
pub(crate) fn money(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// The latest status with the sample taken from it.
#[derive(Debug)]
struct Snapshot {
    /// The node's line as it sent it, for the page and `/api/status`.
    status: serde_json::Value,
    /// The same, read into its type, for the charts and `/metrics`.
    typed: NodeStatus,
    sample: Sample,
}

struct Shared {
    control: mpsc::Sender<ControlRequest>,
    latest: watch::Receiver<Option<Arc<Snapshot>>>,
    history: Mutex<VecDeque<Sample>>,
    tick: Duration,
}

/// Binds the dashboard's listener; the error names the config key.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, DashboardError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DashboardError::Bind { addr, source })
}

/// Serves the dashboard on `listener` until `shutdown`, asking the node
/// driver behind `control` for its status every `tick`; with `token`,
/// only to requests that carry it.
pub async fn serve(
    listener: TcpListener,
    control: mpsc::Sender<ControlRequest>,
    tick: Duration,
    token: Option<Token>,
    shutdown: CancellationToken,
) {
    let (latest_tx, latest_rx) = watch::channel(None);
    let shared = Arc::new(Shared {
        control,
        latest: latest_rx,
        history: Mutex::new(VecDeque::with_capacity(HISTORY_SAMPLES)),
        tick,
    });
    tokio::spawn(sample(shared.clone(), latest_tx, shutdown.clone()));
    let app = Router::new()
        .route("/", get(page))
        .route("/api/status", get(status))
        .route("/api/history", get(history))
        .route("/api/ledger", get(ledger))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics))
        .with_state(shared);
    let app = match token {
        Some(token) => app.layer(middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        )),
        None => app,
    };
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "dashboard at http://{addr}/");
    }
    let stopped = shutdown.clone();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopped.cancelled().await })
        .await
    {
        warn!(error = %e, "dashboard stopped");
    }
}

/// Asks the driver for its status each tick, keeps the chart history and
/// publishes the snapshot to every reader. Dropping `latest` at shutdown
/// ends the event streams.
async fn sample(
    shared: Arc<Shared>,
    latest: watch::Sender<Option<Arc<Snapshot>>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(shared.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(status) = ask::<serde_json::Value>(&shared, Request::Status).await else {
            continue;
        };
        let typed: NodeStatus = match serde_json::from_value(status.clone()) {
            Ok(t) => t,
            Err(error) => {
                warn!(%error, "the node's status does not parse; the dashboard skips it");
                continue;
            }
        };
        let sample = Sample::from_status(&typed, wall_ms());
        if let Ok(mut h) = shared.history.lock() {
            if h.len() >= HISTORY_SAMPLES {
                h.pop_front();
            }
            h.push_back(sample);
        }
        latest.send_replace(Some(Arc::new(Snapshot {
            status,
            typed,
            sample,
        })));
    }
}

/// One request to the driver, its first reply read as `T`; `None` when the
/// node is stopping, does not answer within a few ticks, or answers with
/// something else.
async fn ask<T: serde::de::DeserializeOwned>(shared: &Shared, request: Request) -> Option<T> {
    let wait = shared.tick.saturating_mul(5).max(Duration::from_secs(2));
    let (reply, mut replies) = mpsc::channel(1);
    let asked =
        tokio::time::timeout(wait, shared.control.send(ControlRequest { request, reply })).await;
    if !matches!(asked, Ok(Ok(()))) {
        debug!("the node did not take the dashboard's request");
        return None;
    }
    let reply = match tokio::time::timeout(wait, replies.recv()).await {
        Ok(v) => v?,
        Err(_) => {
            debug!("the node did not answer the dashboard in time");
            return None;
        }
    };
    serde_json::from_value(reply)
        .inspect_err(|e| warn!(error = %e, "the node's reply to the dashboard does not parse"))
        .ok()
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn latest(shared: &Shared) -> Option<Arc<Snapshot>> {
    shared.latest.borrow().clone()
}

fn not_yet() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": "no status from the node yet; retry after a tick"})),
    )
        .into_response()
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    match latest(&shared) {
        Some(s) => Json(&s.status).into_response(),
        None => not_yet(),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    /// Only samples taken after this wall-clock time, ms since the epoch.
    since: Option<u64>,
}

async fn history(State(shared): State<Arc<Shared>>, Query(q): Query<HistoryQuery>) -> Response {
    let since = q.since.unwrap_or(0);
    let samples: Vec<Sample> = shared
        .history
        .lock()
        .map(|h| h.iter().filter(|s| s.t_ms > since).copied().collect())
        .unwrap_or_default();
    Json(json!({
        "tick_ms": shared.tick.as_millis() as u64,
        "capacity": HISTORY_SAMPLES,
        "samples": samples,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct LedgerQuery {
    limit: Option<usize>,
}

/// Balances and the most recent receipts (by issue time).
async fn ledger(State(shared): State<Arc<Shared>>, Query(q): Query<LedgerQuery>) -> Response {
    let limit = q.limit.unwrap_or(20).min(LEDGER_SCAN);
    let request = Request::Ledger {
        node: None,
        limit: Some(LEDGER_SCAN),
    };
    let Some(mut reply) = ask::<LedgerReply>(&shared, request).await else {
        return not_yet();
    };
    reply.receipts.sort_by_key(|r| std::cmp::Reverse(r.issued));
    reply.receipts.truncate(limit);
    Json(reply).into_response()
}

/// Server-sent events: one `status` event per tick with the status and
/// its chart sample. The page polls instead: a stream that never ends
/// keeps headless browsers (and some proxies) waiting forever.
async fn events(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let stream = WatchStream::new(shared.latest.clone()).filter_map(|snapshot| {
        let s = snapshot?;
        let data = json!({"status": s.status, "sample": s.sample});
        Some(Ok::<_, std::convert::Infallible>(
            Event::default().event("status").data(data.to_string()),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let Some(s) = latest(&shared) else {
        return not_yet();
    };
    match metrics::encode(&s.typed) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
