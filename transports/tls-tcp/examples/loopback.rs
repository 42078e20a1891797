//! Rough loopback throughput of the tls-tcp transport (not a benchmark of
//! record; see shared/BENCHMARKS.md for those). Run with
//! `cargo run --release -p lppsp-transport-tls --example loopback`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use lppsp_core::component::Transport;
use lppsp_core::config::IdentitySection;
use lppsp_core::registry::{Options, TransportParams};
use lppsp_core::wire::{Body, Frame, JobId, KernelName, Limits, Message};
use lppsp_core::Price;
use lppsp_transport_tls::{ca, TlsTransport};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Process CPU seconds (user + system) on Linux, for a figure that holds
/// up when the machine is busy with other work; 0 elsewhere.
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based, pid first); 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

async fn bind(dir: &std::path::Path, name: &str) -> Result<Arc<TlsTransport>, Error> {
    ca::issue(dir, name, dir)?;
    Ok(TlsTransport::bind(TransportParams {
        listen: "127.0.0.1:0".parse()?,
        identity: IdentitySection {
            ca_cert: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        },
        limits: Limits::default(),
        options: Options::new(),
    })
    .await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let tmp = tempfile::tempdir()?;
    ca::init_ca(tmp.path(), "bench")?;
    let a = bind(tmp.path(), "a").await?;
    let b = bind(tmp.path(), "b").await?;
    let (c, s) = tokio::join!(a.connect(b.local_addr()), b.accept());
    let (mut w, _r) = c?.split();
    let (_w2, mut r) = s?.split();

    // Large bodies.
    let body = Bytes::from(vec![0x5au8; 16 << 20]);
    let big = Frame::new(
        Price::ZERO,
        Message::Task {
            job: JobId(1),
            task: 0,
            kernel: KernelName::new("sum")?,
        },
    )
    .with_body(Body::from_bytes(body));
    let n = 64;
    let reader = tokio::spawn(async move {
        for _ in 0..n {
            r.read_frame().await?.ok_or("closed")?;
        }
        Ok::<_, Error>(r)
    });
    let t = Instant::now();
    let cpu = cpu_secs();
    for _ in 0..n {
        w.write_frames(std::slice::from_ref(&big)).await?;
    }
    let mut r = reader.await??;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu;
    println!(
        "16 MiB bodies: {:.0} MiB/s; {:.2} CPU s per GiB (both ends)",
        (n * 16) as f64 / secs,
        cpu * 1024.0 / (n * 16) as f64
    );

    // Tiny frames, batched 1000 per write.
    let tiny: Vec<Frame> = (0..1000)
        .map(|i| {
            Frame::new(
                Price::ZERO,
                Message::Accept {
                    job: JobId(1),
                    task: i,
                },
            )
        })
        .collect();
    let rounds = 200;
    let reader = tokio::spawn(async move {
        for _ in 0..rounds * 1000 {
            r.read_frame().await?.ok_or("closed")?;
        }
        Ok::<_, Error>(())
    });
    let t = Instant::now();
    let cpu = cpu_secs();
    for _ in 0..rounds {
        w.write_frames(&tiny).await?;
    }
    reader.await??;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu;
    println!(
        "tiny frames: {:.0} frames/s; {:.2} CPU us per frame (both ends)",
        (rounds * 1000) as f64 / secs,
        cpu * 1e6 / (rounds * 1000) as f64
    );
    Ok(())
}
