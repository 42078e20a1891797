//! `lppsp demo`: a local LAN on loopback (a CA, one client and two compute
//! nodes as real child processes), one job from submission to result, and
//! what each node earned. Everything lives in a temp dir removed at the end.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use lppsp_runtime::client::{InputSpec, SubmitRequest};
use lppsp_runtime::control::{self, Request};

#[derive(Args)]
pub struct DemoArgs {
    /// Compute nodes to start.
    #[arg(long, default_value_t = 2)]
    nodes: u32,
    /// Monte Carlo pi tasks.
    #[arg(long, default_value_t = 200)]
    tasks: u64,
    /// Samples per task.
    #[arg(long, default_value_t = 2_000_000)]
    samples: u64,
    /// Keep the temp dir (configs, certificates, logs) for inspection.
    #[arg(long)]
    keep: bool,
}

struct Node {
    name: String,
    child: Child,
    control: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGTERM first so the node says Leave; then make sure it is gone.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port_tcp() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
fn free_port_udp() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn status(addr: SocketAddr) -> Option<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(control::call(addr, &Request::Status))
        .ok()?
        .into_iter()
        .next()
}

#[allow(clippy::too_many_arguments)]
fn write_config(
    dir: &Path,
    name: &str,
    role: &str,
    tls: u16,
    beacon: u16,
    control: u16,
    peers: &[u16],
) -> anyhow::Result<std::path::PathBuf> {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let text = format!(
        "[node]\nname = \"{name}\"\nrole = \"{role}\"\ndata_dir = \"{name}-data\"\n\n\
         [identity]\nca_cert = \"ca/ca.pem\"\ncert = \"{name}.pem\"\nkey = \"{name}.key\"\n\n\
         [network]\nlisten = \"127.0.0.1:{tls}\"\nbeacon_listen = \"127.0.0.1:{beacon}\"\n\
         discovery = \"static\"\nstatic_peers = [{}]\n\n[control]\nlisten = \"127.0.0.1:{control}\"\n",
        peers.join(", ")
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::Builder::new().prefix("lppsp-demo-").tempdir()?;
    let dir = tmp.path();
    let exe = std::env::current_exe().context("finding the lppsp binary")?;
    println!(
        "lppsp demo: a LAN of 1 client + {} compute nodes on loopback, in {}",
        args.nodes,
        dir.display()
    );

    let ca = dir.join("ca");
    std::fs::create_dir_all(&ca)?;
    lppsp_transport_tls::ca::init_ca(&ca, "lppsp demo community")?;
    let mut names = vec!["client".to_string()];
    names.extend((1..=args.nodes).map(|i| format!("compute-{i}")));
    let mut ports = Vec::new();
    for _ in &names {
        ports.push((free_port_tcp()?, free_port_udp()?, free_port_tcp()?));
    }
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let id = lppsp_transport_tls::ca::issue(&ca, name, dir)?;
        let peers: Vec<u16> = ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| p.1)
            .collect();
        let role = if i == 0 { "client" } else { "compute" };
        let (tls, beacon, control) = ports[i];
        let cfg = write_config(dir, name, role, tls, beacon, control, &peers)?;
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(&exe)
            .args(["node", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {name}"))?;
        println!("  started {name:<10} node id {id}  tls 127.0.0.1:{tls}");
        nodes.push(Node {
            name: name.clone(),
            child,
            control: SocketAddr::from(([127, 0, 0, 1], control)),
        });
    }

    let t = Instant::now();
    let want = args.nodes as usize;
    loop {
        let ready = status(nodes[0].control).is_some_and(|s| {
            s["peers"]
                .as_array()
                .is_some_and(|p| p.iter().filter(|p| p["slots"].as_u64() > Some(0)).count() >= want)
        });
        if ready {
            break;
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!(
                "the nodes did not find each other within 30 s; logs are in {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "  the client's book lists {want} compute nodes after {:.2} s\n",
        t.elapsed().as_secs_f64()
    );

    println!(
        "submitting: Monte Carlo pi, {} tasks x {} samples (kernel w2-monte-carlo-pi)",
        args.tasks, args.samples
    );
    let req = SubmitRequest {
        kernel: "w2-monte-carlo-pi".into(),
        inputs: InputSpec::Range {
            start: 0,
            end: args.tasks,
            extra: vec![args.samples],
        },
        budget: None,
        arch: None,
        min_power: 0,
        max_attempts: 3,
        task_timeout_s: 120,
        est_task_ms: 10,
    };
    let last = super::submit::follow(nodes[0].control, req, false)?;
    let code = super::submit::summarize(&last);

    println!("\nbalances (grant + earned - spent):");
    for n in &nodes {
        if let Some(st) = status(n.control) {
            let b = &st["balance"];
            println!(
                "  {:<10} {}  earned {:>14}  spent {:>14}  remaining {:>16}",
                n.name,
                st["node"]["id"].as_str().unwrap_or("?"),
                b["earned"].as_str().unwrap_or("?"),
                b["spent"].as_str().unwrap_or("?"),
                b["remaining"].as_str().unwrap_or("?")
            );
        }
    }
    drop(nodes);
    if args.keep {
        let kept = tmp.keep();
        println!("\nkept {}", kept.display());
    }
    Ok(code)
}
