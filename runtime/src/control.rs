//! The local control endpoint: JSON lines over TCP on 127.0.0.1.
//!
//! A client (`lppsp status`, `lppsp submit`) sends one request line and
//! reads reply lines until the node closes the connection. Only local
//! processes should reach it: it binds to loopback by default.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest request line accepted: a submit carries its WASM module in
/// base64 (the wasm executor's default module limit is 32 MiB).
const MAX_REQUEST: usize = 48 << 20;

/// A request from a local tool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The node, its book, market and counters.
    Status,
    /// Run a job; replies stream progress, then the result or the failure.
    Submit(crate::client::SubmitRequest),
    /// Receipts in this node's ledger (all, or those naming `node` as payer
    /// or payee) and every balance the ledger gives.
    Ledger {
        #[serde(default)]
        node: Option<lppsp_core::NodeId>,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Join requests waiting for the operator (a node with `[ca] dir`).
    CaPending,
    /// Sign join request `id` and send the certificate to its joiner.
    CaApprove { id: String },
    /// Refuse join request `id`.
    CaReject {
        id: String,
        #[serde(default)]
        reason: Option<String>,
    },
}

/// A request on its way to the node driver, with where replies go.
#[derive(Debug)]
pub struct ControlRequest {
    pub request: Request,
    pub reply: mpsc::Sender<serde_json::Value>,
}

/// Accepts control connections until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    to_driver: mpsc::Sender<ControlRequest>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(handle(stream, peer, to_driver.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(stream: TcpStream, peer: SocketAddr, to_driver: mpsc::Sender<ControlRequest>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let n = match tokio::io::AsyncReadExt::take(&mut reader, MAX_REQUEST as u64)
        .read_until(b'\n', &mut line)
        .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "control read failed");
            return;
        }
    };
    if n == 0 {
        return;
    }
    let request: Request = match serde_json::from_slice(&line) {
        Ok(r) => r,
        Err(e) => {
            let reply = serde_json::json!({"error": format!("bad request: {e}")});
            let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel(64);
    if to_driver
        .send(ControlRequest { request, reply: tx })
        .await
        .is_err()
    {
        let _ = write
            .write_all(b"{\"error\":\"node is shutting down\"}\n")
            .await;
        return;
    }
    while let Some(v) = rx.recv().await {
        if write.write_all(format!("{v}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Sends `request` to the node at `addr` and returns every reply line.
pub async fn call(addr: SocketAddr, request: &Request) -> std::io::Result<Vec<serde_json::Value>> {
    let mut replies = Vec::new();
    call_streaming(addr, request, |v| replies.push(v)).await?;
    Ok(replies)
}

/// Sends `request` and hands each reply line to `on_reply` as it arrives.
pub async fn call_streaming(
    addr: SocketAddr,
    request: &Request,
    mut on_reply: impl FnMut(serde_json::Value),
) -> std::io::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(l) = lines.next_line().await? {
        let v = serde_json::from_str(&l).map_err(std::io::Error::other)?;
        on_reply(v);
    }
    Ok(())
}
