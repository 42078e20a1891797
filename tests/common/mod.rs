//! Shared harness for integration tests: a community CA in a temp dir and
//! real `lppsp node` processes on loopback.
#![allow(dead_code)]

pub mod rogue;
pub mod rogue_beacon;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lppsp")
}

pub fn lppsp(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run lppsp")
}

/// A port on 127.0.0.1 free for both TCP and UDP when checked, for a node
/// to bind a moment later (`lppsp_runtime::local_ports`).
pub fn free_port() -> u16 {
    lppsp_runtime::local_ports::free_port().expect("a free port on 127.0.0.1")
}

/// The (name, role) list of a client named `client` and compute nodes
/// `compute-1` to `compute-N` (N at most 4), for [`start_cluster`].
pub fn client_and_computes(computes: usize) -> Vec<(&'static str, &'static str)> {
    const COMPUTES: [&str; 4] = ["compute-1", "compute-2", "compute-3", "compute-4"];
    assert!(computes <= COMPUTES.len(), "at most 4 compute nodes");
    std::iter::once(("client", "client"))
        .chain(COMPUTES.iter().take(computes).map(|c| (*c, "compute")))
        .collect()
}

/// A free TCP port on 127.0.0.1 ([`free_port`]).
pub fn free_tcp_port() -> u16 {
    free_port()
}

/// A free UDP port on 127.0.0.1 ([`free_port`]).
pub fn free_udp_port() -> u16 {
    free_port()
}

/// A community: a CA and the folder node files go in.
pub struct Community {
    pub dir: tempfile::TempDir,
}

impl Community {
    /// The folder is removed at the end unless `LPPSP_TEST_KEEP` is set,
    /// which keeps node configs and logs for a look after a failure.
    pub fn new() -> Self {
        let keep = std::env::var_os("LPPSP_TEST_KEEP").is_some();
        let dir = tempfile::Builder::new()
            .prefix("lppsp-test-")
            .disable_cleanup(keep)
            .tempdir()
            .unwrap();
        if keep {
            eprintln!("keeping {}", dir.path().display());
        }
        let out = lppsp(&["ca", "init", dir.path().join("ca").to_str().unwrap()]);
        assert!(
            out.status.success(),
            "ca init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// Issues a certificate for `name` and returns its NodeId.
    pub fn issue(&self, name: &str) -> String {
        let ca = self.ca_dir();
        let out = lppsp(&[
            "ca",
            "issue",
            name,
            "--ca",
            ca.to_str().unwrap(),
            "--out",
            self.dir.path().to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "ca issue: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("node id ")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_string()
    }
}

/// Issues `name` a certificate of `community` and loads it as a node
/// identity: what a member holds, for tests that speak as one.
pub fn member_identity(community: &Community, name: &str) -> lppsp_transport_tls::Identity {
    community.issue(name);
    let dir = community.dir.path();
    lppsp_transport_tls::Identity::load(&lppsp_core::config::IdentitySection {
        ca_cert: community.ca_dir().join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    })
    .expect("load a member's identity")
}

/// Every balance in `node`'s ledger, by node id (the `ledger` control
/// request's figures, as text).
pub fn ledger_balances(node: &NodeProc) -> std::collections::BTreeMap<String, String> {
    let replies = control_call(node.ports.control_addr(), r#"{"op":"ledger"}"#);
    replies[0]["balances"]
        .as_array()
        .expect("a ledger reply lists balances")
        .iter()
        .map(|b| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (text(&b["node"]), text(&b["balance"]))
        })
        .collect()
}

/// Ports of one node, and its control socket.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub tls: u16,
    pub beacon: u16,
    /// The node's control socket (`<data_dir>/control.sock`): empty until
    /// [`NodeProc::start`] reads it from the node's config. A path kept for
    /// the life of the test process, so that `Ports` stays `Copy`.
    pub control: &'static Path,
    /// The web dashboard and `/metrics` (HTTP on 127.0.0.1).
    pub dashboard: u16,
}

/// A node's control socket; prints as its path (for `--control`).
#[derive(Clone, Copy, Debug)]
pub struct ControlPath(pub &'static Path);

impl std::fmt::Display for ControlPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

impl AsRef<Path> for ControlPath {
    fn as_ref(&self) -> &Path {
        self.0
    }
}

/// The control socket the node started from `config` listens on, as the
/// node works it out; empty when the config does not load.
pub fn control_socket_of(config: &Path) -> &'static Path {
    match lppsp_core::config::NodeConfig::load(config) {
        Ok(cfg) => Box::leak(cfg.control.socket.into_boxed_path()),
        Err(_) => Path::new(""),
    }
}

impl Ports {
    pub fn free() -> Self {
        Self {
            tls: free_tcp_port(),
            beacon: free_udp_port(),
            control: Path::new(""),
            dashboard: free_tcp_port(),
        }
    }
    /// The control socket, for [`control_call`] or `--control`.
    pub fn control_addr(&self) -> ControlPath {
        ControlPath(self.control)
    }
    pub fn dashboard_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.dashboard))
    }
}

/// Writes a config for `name` in `role` (compute, client or both) with
/// static discovery to `peers`' beacon ports.
pub fn write_config(
    dir: &Path,
    ca_dir: &Path,
    name: &str,
    role: &str,
    ports: Ports,
    peers: &[Ports],
) -> PathBuf {
    let peer_list: Vec<String> = peers
        .iter()
        .map(|p| format!("\"127.0.0.1:{}\"", p.beacon))
        .collect();
    let text = format!(
        r#"
[node]
name = "{name}"
role = "{role}"
data_dir = "{name}-data"

[identity]
ca_cert = "{ca}"
cert = "{name}.pem"
key = "{name}.key"

[network]
listen = "127.0.0.1:{tls}"
beacon_listen = "127.0.0.1:{beacon}"
discovery = "static"
static_peers = [{peers}]

[dashboard]
listen = "127.0.0.1:{dashboard}"
"#,
        ca = ca_dir.join("ca.pem").display(),
        tls = ports.tls,
        beacon = ports.beacon,
        dashboard = ports.dashboard,
        peers = peer_list.join(", "),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts one node per `(name, role)` of `community`, each beaconing to
/// all the others, and waits until every control endpoint answers.
pub fn start_cluster(community: &Community, nodes: &[(&str, &str)]) -> Vec<NodeProc> {
    start_cluster_with(community, nodes, |_, _| String::new())
}

/// As [`start_cluster`], with config text appended to each node's file:
/// `extra(index, node ids of all nodes)`, the ids in `nodes` order.
pub fn start_cluster_with(
    community: &Community,
    nodes: &[(&str, &str)],
    extra: impl Fn(usize, &[String]) -> String,
) -> Vec<NodeProc> {
    let ports: Vec<Ports> = nodes.iter().map(|_| Ports::free()).collect();
    let ids: Vec<String> = nodes
        .iter()
        .map(|(name, _)| community.issue(name))
        .collect();
    let mut procs = Vec::new();
    for (i, (name, role)) in nodes.iter().enumerate() {
        let peers: Vec<Ports> = ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| *p)
            .collect();
        let cfg = write_config(
            community.dir.path(),
            &community.ca_dir(),
            name,
            role,
            ports[i],
            &peers,
        );
        let more = extra(i, &ids);
        if !more.is_empty() {
            let mut text = std::fs::read_to_string(&cfg).unwrap();
            text.push_str(&more);
            std::fs::write(&cfg, text).unwrap();
        }
        // An observer runs as `lppsp observe`, the command people use.
        let command = if *role == "observer" {
            "observe"
        } else {
            "node"
        };
        procs.push(NodeProc::start_with(&cfg, name, ports[i], command));
    }
    for p in &procs {
        p.wait_ready(Duration::from_secs(20));
    }
    procs
}

/// A running node process; killed when dropped.
pub struct NodeProc {
    pub name: String,
    pub child: Option<Child>,
    pub ports: Ports,
    pub log: PathBuf,
}

impl NodeProc {
    pub fn start(config: &Path, name: &str, ports: Ports) -> Self {
        Self::start_with(config, name, ports, "node")
    }

    /// Starts `lppsp COMMAND --config CONFIG` (`node` or `observe`);
    /// `ports.control` becomes the socket the config names.
    pub fn start_with(config: &Path, name: &str, mut ports: Ports, command: &str) -> Self {
        ports.control = control_socket_of(config);
        let log = config.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin())
            .args([command, "--config", config.to_str().unwrap()])
            .env("LPPSP_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn node");
        Self {
            name: name.into(),
            child: Some(child),
            ports,
            log,
        }
    }

    /// Waits until the control endpoint answers (for `timeout` or
    /// [`PATIENCE`], whichever is longer).
    pub fn wait_ready(&self, timeout: Duration) {
        if wait_for(timeout, || self.try_status().is_some()).is_none() {
            panic!("node {} not ready; log:\n{}", self.name, self.log_text());
        }
    }

    pub fn try_status(&self) -> Option<serde_json::Value> {
        control_call(self.ports.control_addr(), r#"{"op":"status"}"#)
            .into_iter()
            .next()
    }

    pub fn status(&self) -> serde_json::Value {
        self.try_status()
            .unwrap_or_else(|| panic!("status of {} failed; log:\n{}", self.name, self.log_text()))
    }

    /// Peers in this node's book that offer slots (compute nodes).
    pub fn compute_peers(&self) -> usize {
        self.status()["peers"]
            .as_array()
            .map(|peers| {
                peers
                    .iter()
                    .filter(|p| p["slots"].as_u64() > Some(0))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Waits until this node's book lists exactly `n` compute nodes.
    pub fn wait_for_compute_peers(&self, n: usize, timeout: Duration) -> Option<Duration> {
        wait_for(timeout, || self.compute_peers() == n)
    }

    pub fn peer_ids(&self) -> Vec<String> {
        let st = self.status();
        st["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn id(&self) -> String {
        self.status()["node"]["id"].as_str().unwrap().to_string()
    }

    pub fn signal(&mut self, sig: i32) {
        if let Some(c) = &self.child {
            unsafe_kill(c.id(), sig);
        }
    }

    /// Waits until the process exits (for `timeout` or [`PATIENCE`],
    /// whichever is longer).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let timeout = timeout.max(PATIENCE);
        let t = Instant::now();
        while t.elapsed() < timeout {
            if let Some(c) = &mut self.child {
                if let Ok(Some(st)) = c.try_wait() {
                    return Some(st);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// How long a test waits, at least, for something it expects before it
/// calls it missing. Only a failing test waits this out; a passing one goes
/// on as soon as the event is seen. Long, because the machine may be busy
/// (other builds, two CPU burners in `scripts/stress-test`), and no verdict
/// may depend on how fast the machine is.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `f` every 25 ms until it is true, giving up after `timeout` or
/// [`PATIENCE`], whichever is longer (`timeout` says what the caller
/// expects; it is no verdict on speed); returns the time it took.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let timeout = timeout.max(PATIENCE);
    let t = Instant::now();
    loop {
        if f() {
            return Some(t.elapsed());
        }
        if t.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `GET path` on `addr` over plain HTTP/1.0 (so the body is never
/// chunked and ends with the connection); the status code and body,
/// `None` when the server cannot be reached.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Sends one control request line to the control socket `control` and
/// returns the reply lines (none when the node cannot be reached).
pub fn control_call(control: impl AsRef<Path>, request: &str) -> Vec<serde_json::Value> {
    use std::io::{BufRead, BufReader, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(control.as_ref()) else {
        return Vec::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    if stream.write_all(format!("{request}\n").as_bytes()).is_err() {
        return Vec::new();
    }
    BufReader::new(stream)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// `lppsp submit --json --control CONTROL`, for more arguments.
pub fn submit_command(control: &str) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["submit", "--json", "--control", control]);
    cmd
}

/// Tasks done on all nodes together, from a job event's per-node figures
/// (the nodes' counts add up to the tasks when none counted twice).
pub fn tasks_done_by_nodes(ev: &serde_json::Value) -> u64 {
    ev["nodes"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["tasks_done"].as_u64().unwrap())
        .sum()
}

/// Every JSON event line of a `submit --json` run, in order.
pub fn json_events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs `lppsp submit --json --control CONTROL ARGS...`, following its
/// events; once a progress event reports `done_at` tasks done, `act` runs
/// (once). Returns whether it ran, the exit status and the last event.
pub fn submit_acting_at<S: AsRef<std::ffi::OsStr>>(
    control: &str,
    args: &[S],
    done_at: u64,
    mut act: impl FnMut(),
) -> (bool, std::process::ExitStatus, serde_json::Value) {
    use std::io::{BufRead, BufReader};
    let mut child = submit_command(control)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acted = false;
    let mut last = serde_json::Value::Null;
    for line in BufReader::new(stdout).lines() {
        let ev: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if !acted
            && ev["event"] == "progress"
            && ev["progress"]["done"].as_u64().unwrap() >= done_at
        {
            act();
            acted = true;
        }
        last = ev;
    }
    (acted, child.wait().unwrap(), last)
}

/// The `submit` arguments of a W2 job (Monte Carlo pi): tasks `0..tasks`
/// of `samples` samples each.
pub fn w2_args(tasks: u64, samples: u64) -> [String; 6] {
    [
        "--kernel".into(),
        "w2-monte-carlo-pi".into(),
        "--range".into(),
        format!("0..{tasks}"),
        "--extra".into(),
        samples.to_string(),
    ]
}

/// The last JSON event of a `submit --json` run (null when none).
pub fn last_event(stdout: &[u8]) -> serde_json::Value {
    json_events(stdout).pop().unwrap_or_default()
}

/// A W2 job of `tasks` x `samples` succeeded with the exact hit count.
pub fn assert_exact_w2(ok: bool, last: &serde_json::Value, tasks: u64, samples: u64) {
    assert!(ok, "W2 job failed: {last}");
    let hits = w2_hits_total(tasks, samples);
    assert!(
        last["result"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("{hits} hits")),
        "{last}"
    );
    assert_eq!(last["progress"]["done"], tasks, "{last}");
}

/// W2's total hit count over tasks `0..tasks` of `samples` each, as the
/// builtin kernel computes it.
pub fn w2_hits_total(tasks: u64, samples: u64) -> u64 {
    (0..tasks)
        .map(|i| lppsp_executor_builtin::w2_hits(i, samples))
        .sum()
}

/// `target/<profile>`: a test binary is `target/<profile>/deps/<test>-<hash>`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The file name of dynamic library `lib` on this platform.
pub fn lib_file(lib: &str) -> String {
    format!(
        "{}{lib}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Every plugin library of this workspace: (package, library name).
pub const WORKSPACE_PLUGINS: [(&str, &str); 7] = [
    ("lppsp-plugin-fastest-first", "lppsp_plugin_fastest_first"),
    ("lppsp-plugin-proportional", "lppsp_plugin_proportional"),
    (
        "lppsp-plugin-fixture-misbehaving",
        "lppsp_plugin_fixture_misbehaving",
    ),
    (
        "lppsp-plugin-fixture-lying-executor",
        "lppsp_plugin_fixture_lying_executor",
    ),
    (
        "lppsp-plugin-fixture-pausing-executor",
        "lppsp_plugin_fixture_pausing_executor",
    ),
    (
        "lppsp-plugin-fixture-foreign-layout",
        "lppsp_plugin_fixture_foreign_layout",
    ),
    (
        "lppsp-plugin-fixture-not-a-plugin",
        "lppsp_plugin_fixture_not_a_plugin",
    ),
];

/// Builds the plugin libraries, which are cdylibs of this workspace that
/// `cargo test` does not build for a test of another package, with this
/// test's profile; checks that `plugins` (package, library name) are among
/// them and returns their folder. A no-op when they are up to date, and it
/// keeps a library from being stale after its source changed.
///
/// Every test binary builds the same set, [`WORKSPACE_PLUGINS`], once: one
/// set of packages resolves features one way, so their dependencies are
/// compiled once for all test binaries rather than once per set asked for.
pub fn build_plugins(plugins: &[(&str, &str)]) -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = BUILT.get_or_init(|| build_plugins_now(&WORKSPACE_PLUGINS));
    for (package, lib) in plugins {
        assert!(
            WORKSPACE_PLUGINS.contains(&(*package, *lib)),
            "{package} is not in WORKSPACE_PLUGINS"
        );
    }
    dir.clone()
}

fn build_plugins_now(plugins: &[(&str, &str)]) -> PathBuf {
    let dir = profile_dir();
    let profile = dir.file_name().unwrap().to_str().unwrap().to_string();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).arg("build");
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    for (package, _) in plugins {
        cmd.args(["-p", package]);
    }
    // The nodes' target dir is this one: CARGO_TARGET_DIR, when set,
    // is inherited; otherwise the workspace's own `target`.
    let missing: Vec<&str> = plugins
        .iter()
        .filter(|(_, lib)| !dir.join(lib_file(lib)).exists())
        .map(|(p, _)| *p)
        .collect();
    eprintln!(
        "building the plugin libraries into {} ({}): {cmd:?}",
        dir.display(),
        if missing.is_empty() {
            "all present; rebuilt if stale".to_string()
        } else {
            format!("missing: {}", missing.join(", "))
        }
    );
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build of the plugins failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (package, lib) in plugins {
        let f = dir.join(lib_file(lib));
        assert!(
            f.exists(),
            "{package} built, but {} is missing",
            f.display()
        );
    }
    dir
}

// ------------------------------------------------- outside tools and skips

/// Prints `SKIPPED <test>: <why>` for a test that cannot run here and
/// returns at once (it passes). Written to stderr directly, past the test
/// harness's capture of `eprintln!`, so that the line shows in a passing
/// run (`scripts/test` lists these lines at its end).
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// The first of `names` that is an executable file on PATH.
pub fn on_path(names: &[&str]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        names.iter().map(|n| dir.join(n)).find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The outside tool `names` (any of them; from the Debian package
/// `package`) for `test`: its path, or `None` after printing the skip line.
pub fn require_tool(test: &str, names: &[&str], package: &str) -> Option<PathBuf> {
    let found = on_path(names);
    if found.is_none() {
        skipped(
            test,
            &format!(
                "`{}` is not on PATH (install {package}; scripts/test does as root)",
                names.join("` or `")
            ),
        );
    }
    found
}

/// Whether this process runs as root (effective uid 0); when not, prints
/// the skip line for `test`, which needs root `for_what`.
pub fn require_root(test: &str, for_what: &str) -> bool {
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_string))
        });
    let root = euid.as_deref() == Some("0");
    if !root {
        skipped(test, &format!("needs root for {for_what}"));
    }
    root
}

// ------------------------------------------------------------ held tasks

/// The pausing executor fixture (plugins/fixtures/pausing-executor),
/// built: its library.
pub fn pausing_executor() -> PathBuf {
    const LIB: &str = "lppsp_plugin_fixture_pausing_executor";
    build_plugins(&[("lppsp-plugin-fixture-pausing-executor", LIB)]).join(lib_file(LIB))
}

/// A pause file for the pausing executor: while it exists, every task
/// that starts on a node loading it is held before its kernel runs, until
/// the test releases it. Nodes may have one each or share one. This is how a test knows a task is running on a node
/// and decides when it may end, instead of hoping a task is long enough.
pub struct Pause {
    path: PathBuf,
}

impl Pause {
    /// The pause file `name` in `community`'s folder (not created).
    pub fn new(community: &Community, name: &str) -> Self {
        Self {
            path: community.dir.path().join(format!("{name}.pause")),
        }
    }

    /// The `[executor]` section that loads the pausing executor `lib`
    /// with this pause file, for a node's config.
    pub fn executor_config(&self, lib: &Path) -> String {
        format!(
            "\n[executor]\nkind = \"plugin\"\npath = \"{}\"\n\n[executor.options]\npause_file = \"{}\"\n",
            lib.display(),
            self.path.display()
        )
    }

    fn held_marker(&self) -> PathBuf {
        let mut held = self.path.clone().into_os_string();
        held.push(".held");
        PathBuf::from(held)
    }

    /// From now on, tasks that start on the node are held.
    pub fn hold(&self) {
        let _ = std::fs::remove_file(self.held_marker());
        std::fs::write(&self.path, b"").unwrap();
    }

    /// Held tasks go on, and new ones run at once.
    pub fn release(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Exactly one held task goes on (the first to look, on any node
    /// sharing this pause file); the others stay held.
    pub fn release_one(&self) {
        let mut pass = self.path.clone().into_os_string();
        pass.push(".go");
        std::fs::write(PathBuf::from(pass), b"").unwrap();
    }

    /// Waits until a task is held on the node since the last [`Pause::hold`]
    /// (`timeout` only bounds a failing test).
    pub fn wait_until_held(&self, timeout: Duration) -> bool {
        let marker = self.held_marker();
        wait_for(timeout, || marker.exists()).is_some()
    }
}
