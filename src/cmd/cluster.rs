//! A local cluster on loopback for `lppsp demo` and `lppsp bench`: a
//! community CA in a temp dir, one client node and N compute nodes started
//! as child processes of this binary (`lppsp node`), talking mutual TLS on
//! 127.0.0.1 with static discovery. Each node logs to `<name>.log` in the
//! temp dir, never to the terminal. Dropping the cluster stops the nodes
//! (SIGTERM, so that they say Leave, then SIGKILL after 3 s) and removes
//! the temp dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lppsp_runtime::control::reply::NodeStatus;
use lppsp_runtime::control::{self, Request};

/// One node process.
pub struct Node {
    pub name: String,
    /// The NodeId its certificate proves.
    pub id: String,
    /// Its TLS listen port on 127.0.0.1.
    pub tls: u16,
    /// Its control socket (in its data_dir).
    pub control: PathBuf,
    /// Its web dashboard (docs/dashboard.md).
    pub dashboard: SocketAddr,
    child: Child,
}

impl Node {
    /// The process id of the node.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`...) in KiB;
    /// `None` where there is no procfs or the process is gone.
    pub fn proc_status_kib(&self, field: &str) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().strip_suffix("kB")?.trim().parse().ok()
        })
    }

    /// CPU time the node's threads have run so far, ns (the sum of
    /// `/proc/<pid>/task/*/schedstat`); `None` without procfs.
    pub fn cpu_ns(&self) -> Option<u64> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid())).ok()?;
        let mut total = 0u64;
        for t in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(t.path().join("schedstat")) else {
                continue;
            };
            let ns = text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok());
            total = total.saturating_add(ns.unwrap_or(0));
        }
        Some(total)
    }

    /// Minor and major page faults of the node so far (`/proc/<pid>/stat`
    /// fields 10 and 12); `None` without procfs.
    pub fn page_faults(&self) -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // The fields after the command name, which is in parentheses.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is f[0]: minflt (10) is f[7], majflt (12) is f[9].
        Some((f.get(7)?.parse().ok()?, f.get(9)?.parse().ok()?))
    }

    /// The node's status (`lppsp status`), `None` when it does not answer.
    pub fn status(&self) -> Option<NodeStatus> {
        status(&self.control)
    }

    fn stop(&mut self) {
        // SIGTERM first so the node says Leave; then make sure it is gone.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running local cluster; `nodes[0]` is the client.
pub struct Cluster {
    /// Declared before `dir`: the nodes stop before their files go.
    pub nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

/// A port on 127.0.0.1 free for TCP and UDP when checked, for a node to
/// bind a moment later (`lppsp_runtime::local_ports`).
fn free_port() -> anyhow::Result<u16> {
    use lppsp_runtime::local_ports::{free_port, LOW, SPAN};
    free_port().with_context(|| format!("no free port on 127.0.0.1 in {LOW}..{}", LOW + SPAN))
}

/// One `Status` call to a control socket; `None` when the node does not
/// answer or its reply is no status.
pub fn status(socket: &Path) -> Option<NodeStatus> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let reply = rt
        .block_on(control::call(socket, &Request::Status))
        .ok()?
        .into_iter()
        .next()?;
    serde_json::from_value(reply).ok()
}

/// One node to start: its name, its `[node] role`, the command that runs
/// it (`node`, or `observe` for an observer), lines added to its
/// `[network]` section, and TOML sections appended to its config.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub role: &'static str,
    pub command: &'static str,
    pub network: String,
    pub extra: String,
}

fn write_config(
    dir: &Path,
    spec: &NodeSpec,
    (tls, beacon, dashboard): (u16, u16, u16),
    peers: &[u16],
) -> anyhow::Result<PathBuf> {
    let NodeSpec {
        name,
        role,
        network,
        extra,
        ..
    } = spec;
    let peers: Vec<String> = peers.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    let text = format!(
        "[node]\nname = \"{name}\"\nrole = \"{role}\"\ndata_dir = \"{name}-data\"\n\n\
         [identity]\nca_cert = \"ca/ca.pem\"\ncert = \"{name}.pem\"\nkey = \"{name}.key\"\n\n\
         [network]\nlisten = \"127.0.0.1:{tls}\"\nbeacon_listen = \"127.0.0.1:{beacon}\"\n\
         discovery = \"static\"\nstatic_peers = [{}]\n{network}\n\
         [dashboard]\nlisten = \"127.0.0.1:{dashboard}\"\n\n{extra}",
        peers.join(", ")
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

impl Cluster {
    /// Makes a temp dir (`prefix` + random), a CA named `community` in it,
    /// a certificate and config per node, and starts `client` plus
    /// `compute-1..=compute-N`, each config ending with `extra` (TOML
    /// sections). Returns once every process is spawned; see
    /// [`Cluster::wait_ready`].
    pub fn start(
        compute_nodes: u32,
        prefix: &str,
        community: &str,
        extra: &str,
    ) -> anyhow::Result<Self> {
        let spec = |name: String, role| NodeSpec {
            name,
            role,
            command: "node",
            network: String::new(),
            extra: extra.to_string(),
        };
        let mut specs = vec![spec("client".to_string(), "client")];
        specs.extend((1..=compute_nodes).map(|i| spec(format!("compute-{i}"), "compute")));
        Self::start_nodes(&specs, prefix, community)
    }

    /// As [`Cluster::start`], for any set of nodes; `specs[0]` is the one
    /// [`Cluster::client`] returns.
    pub fn start_nodes(specs: &[NodeSpec], prefix: &str, community: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .context("making a temp dir")?;
        let exe = std::env::current_exe().context("finding the lppsp binary")?;
        let ca = dir.path().join("ca");
        std::fs::create_dir_all(&ca).with_context(|| format!("creating {}", ca.display()))?;
        lppsp_transport_tls::ca::init_ca(&ca, community).context("making the community CA")?;
        let mut ports = Vec::new();
        for _ in specs {
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        let mut cluster = Cluster {
            nodes: Vec::new(),
            dir,
        };
        for (i, spec) in specs.iter().enumerate() {
            let name = &spec.name;
            let dir = cluster.dir.path();
            let id = lppsp_transport_tls::ca::issue(&ca, name, dir)
                .with_context(|| format!("issuing a certificate for {name}"))?;
            let peers: Vec<u16> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| p.1)
                .collect();
            let (tls, _, dashboard) = ports[i];
            let cfg = write_config(dir, spec, ports[i], &peers)?;
            let log_path = dir.join(format!("{name}.log"));
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("creating {}", log_path.display()))?;
            let child = Command::new(&exe)
                .args([spec.command, "--config"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting node {name}"))?;
            cluster.nodes.push(Node {
                name: name.clone(),
                id: id.to_string(),
                tls,
                control: dir.join(format!("{name}-data")).join("control.sock"),
                dashboard: SocketAddr::from(([127, 0, 0, 1], dashboard)),
                child,
            });
        }
        Ok(cluster)
    }

    /// The temp dir holding the CA, configs, certificates and node logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client node.
    pub fn client(&self) -> &Node {
        &self.nodes[0]
    }

    /// Waits until the client's book lists every compute node with a free
    /// slot; fails after `timeout`, or at once when a node process exited.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let t = Instant::now();
        let want = self.nodes.len() - 1;
        loop {
            let ready = self
                .client()
                .status()
                .is_some_and(|s| s.peers.iter().filter(|p| p.slots > 0).count() >= want);
            if ready {
                return Ok(());
            }
            if let Some(why) = self.exited() {
                bail!("{why} during start-up");
            }
            if t.elapsed() > timeout {
                bail!(
                    "the nodes did not find each other within {} s; logs are in {}",
                    timeout.as_secs(),
                    self.dir.path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first node process that has exited, with its exit status and
    /// log file, or `None` while all run.
    pub fn exited(&mut self) -> Option<String> {
        self.nodes.iter_mut().find_map(|n| {
            let exit = n.child.try_wait().ok().flatten()?;
            Some(format!(
                "node {} exited ({exit}); see {}",
                n.name,
                self.dir.path().join(format!("{}.log", n.name)).display()
            ))
        })
    }

    /// Stops every node (each gets SIGTERM at once, then is waited for).
    pub fn stop(&mut self) {
        for n in &self.nodes {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(n.pid().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // Each Drop waits for its own process (the second SIGTERM is harmless).
        self.nodes.clear();
    }

    /// Stops the nodes and keeps the temp dir; returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.stop();
        let Cluster { nodes, dir } = self;
        drop(nodes);
        dir.keep()
    }
}
