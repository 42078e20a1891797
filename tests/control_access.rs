//! Only the node's owner controls it: the control socket as other users
//! see it, and the modes of everything the node keeps in its data_dir
//! (docs/operations.md, "Who may control a node").
//!
//! The tests that switch users need root, `setpriv` (util-linux) and, for
//! the group, `groupadd`/`groupdel`; elsewhere they print one
//! `SKIPPED <test>: <why>` line and pass.

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// The uid and gid of `nobody`, a user that owns nothing here.
const NOBODY: u32 = 65534;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why users cannot be switched here, if they cannot.
fn cannot_switch_users(need_groupadd: bool) -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("needs root to run commands as another uid".into());
    }
    if !runs("setpriv", "--version") {
        return Some("setpriv (util-linux) is missing".into());
    }
    if need_groupadd && !(runs("groupadd", "--help") && runs("groupdel", "--help")) {
        return Some("groupadd/groupdel are missing".into());
    }
    None
}

/// The lppsp binary where another uid can run it: the build's lives
/// under a home folder others cannot enter.
struct Outsider {
    _dir: tempfile::TempDir,
    exe: PathBuf,
}

impl Outsider {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lppsp-outsider-")
            .tempdir()
            .unwrap();
        chmod(dir.path(), 0o755);
        let exe = dir.path().join("lppsp");
        if std::fs::hard_link(bin(), &exe).is_err() {
            std::fs::copy(bin(), &exe).unwrap();
        }
        chmod(&exe, 0o755);
        Self { _dir: dir, exe }
    }

    /// Runs `lppsp ARGS` as [`NOBODY`] (in `group` or none).
    fn run(&self, group: Option<u32>, args: &[&str]) -> Output {
        as_nobody(group)
            .arg(&self.exe)
            .args(args)
            .env("LPPSP_LOG", "warn")
            .output()
            .unwrap()
    }

    /// Runs `sh -c SCRIPT` as [`NOBODY`] (in `group` or none).
    fn run_shell(&self, group: Option<u32>, script: &str) -> Output {
        as_nobody(group)
            .args(["sh", "-c", script])
            .output()
            .unwrap()
    }
}

/// `setpriv` set to run the command its arguments name as uid and gid
/// [`NOBODY`], in supplementary group `group` or in none, from `/`.
fn as_nobody(group: Option<u32>) -> Command {
    let groups = match group {
        Some(gid) => format!("--groups={gid}"),
        None => "--clear-groups".into(),
    };
    let mut setpriv = Command::new("setpriv");
    setpriv
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg(groups)
        .current_dir("/");
    setpriv
}

/// A system group made for one test, removed after it.
struct TempGroup {
    name: String,
    gid: u32,
}

impl TempGroup {
    fn new() -> Self {
        let name = format!("lppsp-t{}", std::process::id());
        let _ = Command::new("groupdel")
            .arg(&name)
            .stderr(Stdio::null())
            .status();
        let out = Command::new("groupadd").arg(&name).output().unwrap();
        assert!(
            out.status.success(),
            "groupadd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entry = Command::new("getent")
            .args(["group", &name])
            .output()
            .unwrap();
        let gid = String::from_utf8_lossy(&entry.stdout)
            .split(':')
            .nth(2)
            .and_then(|g| g.trim().parse().ok())
            .unwrap_or_else(|| panic!("no gid for {name}"));
        Self { name, gid }
    }
}

impl Drop for TempGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.name).status();
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command failed and said `words`.
#[track_caller]
fn assert_refused(out: &Output, words: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected a refusal ({words}), got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("permission denied") && err.contains(words),
        "expected '{words}' in the error:\n{err}"
    );
}

const W1: [&str; 4] = ["--kernel", "w1-sum-squares", "--range", "0..20"];

/// A client (holding the community CA, so that it takes join requests)
/// and one compute node; `control` is the client's `[control]` keys. The
/// community folder is opened for traversal: the modes of data_dir and
/// the socket decide, as on a real machine.
fn client_with_ca(community: &Community, control: &str) -> Vec<NodeProc> {
    chmod(community.dir.path(), 0o711);
    let join_port = free_tcp_port();
    let ca = community.ca_dir();
    let procs = start_cluster_with(community, &client_and_computes(1), |i, _| {
        if i > 0 {
            return String::new();
        }
        format!(
            "\n[control]\n{control}\n[ca]\ndir = \"{}\"\njoin_listen = \"127.0.0.1:{join_port}\"\n",
            ca.display()
        )
    });
    procs[0]
        .wait_for_compute_peers(1, Duration::from_secs(20))
        .expect("the client sees the compute node");
    procs
}

/// The owner (root here, the node's user) gets status, submit and admin.
fn assert_owner_gets_all(client: &NodeProc) {
    let control = client.ports.control_addr().to_string();
    let status = control_call(client.ports.control_addr(), r#"{"op":"status"}"#);
    assert!(status[0]["balance"]["remaining"].is_string(), "{status:?}");
    let out = submit_command(&control).args(W1).output().unwrap();
    assert!(out.status.success(), "owner's job: {}", stderr(&out));
    assert_eq!(last_event(&out.stdout)["event"], "done");
    let out = Command::new(bin())
        .args(["ca", "pending", "--json", "--control", &control])
        .output()
        .unwrap();
    assert!(out.status.success(), "owner's ca pending: {}", stderr(&out));
}

#[test]
fn another_uid_is_refused_status_submit_and_join_approval() {
    if let Some(why) = cannot_switch_users(false) {
        eprintln!("SKIPPED another_uid_is_refused_status_submit_and_join_approval: {why}");
        return;
    }
    let community = Community::new();
    let procs = client_with_ca(&community, "");
    let client = &procs[0];
    let socket = client.ports.control;
    let data_dir = socket.parent().unwrap();
    assert_eq!(mode(data_dir), 0o700);
    assert_eq!(mode(socket), 0o600);
    let outsider = Outsider::new();
    let sock = socket.to_str().unwrap();

    // The socket's mode keeps another uid from connecting at all.
    let status = outsider.run(None, &["status", "--control", sock]);
    assert_refused(&status, "admits only its owner");
    let mut submit = vec!["submit", "--json", "--control", sock];
    submit.extend(W1);
    assert_refused(&outsider.run(None, &submit), "admits only its owner");
    let approve = ["ca", "approve", "0123456789abcdef", "--control", sock];
    assert_refused(&outsider.run(None, &approve), "admits only its owner");

    // With the modes loosened by hand, the node still refuses each call by
    // the caller's uid, with the grant it lacks.
    chmod(data_dir, 0o711);
    chmod(socket, 0o666);
    let owner_only = "is for the node's owner (uid 0) only";
    let status = outsider.run(None, &["status", "--control", sock]);
    assert_refused(&status, "uid 65534 may not read the status");
    assert!(stderr(&status).contains(owner_only), "{}", stderr(&status));
    let submitted = outsider.run(None, &submit);
    assert_refused(&submitted, "uid 65534 may not submit");
    assert!(
        submitted.stdout.is_empty(),
        "a refused submit prints no event: {}",
        String::from_utf8_lossy(&submitted.stdout)
    );
    let approved = outsider.run(None, &approve);
    assert_refused(&approved, "uid 65534 may not administer the node");
    assert!(
        stderr(&approved).contains(owner_only),
        "{}",
        stderr(&approved)
    );
    let ledger = outsider.run(None, &["ledger", "--control", sock]);
    assert_refused(&ledger, "uid 65534 may not read the status");

    // Nothing of it reached the node: no job ran. The owner gets all.
    let status = control_call(client.ports.control_addr(), r#"{"op":"status"}"#);
    assert_eq!(status[0]["jobs"]["list"], serde_json::json!([]));
    assert_owner_gets_all(client);
}

#[test]
fn a_member_of_the_control_group_may_read_and_submit_but_not_administer() {
    if let Some(why) = cannot_switch_users(true) {
        eprintln!(
            "SKIPPED a_member_of_the_control_group_may_read_and_submit_but_not_administer: {why}"
        );
        return;
    }
    let group = TempGroup::new();
    let community = Community::new();
    let procs = client_with_ca(&community, &format!("group = \"{}\"", group.name));
    let client = &procs[0];
    let socket = client.ports.control;
    let data_dir = socket.parent().unwrap();
    // Members reach the socket through data_dir but cannot list it or
    // read the files in it.
    assert_eq!(mode(data_dir), 0o710);
    assert_eq!(std::fs::metadata(data_dir).unwrap().gid(), group.gid);
    assert_eq!(mode(socket), 0o660);
    assert_eq!(std::fs::metadata(socket).unwrap().gid(), group.gid);
    assert_eq!(mode(&data_dir.join("ledger.sqlite")), 0o600);
    let outsider = Outsider::new();
    let sock = socket.to_str().unwrap();
    let member = Some(group.gid);

    let status = outsider.run(member, &["status", "--json", "--control", sock]);
    assert!(
        status.status.success(),
        "member's status: {}",
        stderr(&status)
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["node"]["name"], "client");

    let mut submit = vec!["submit", "--json", "--control", sock];
    submit.extend(W1);
    let job = outsider.run(member, &submit);
    assert!(job.status.success(), "member's job: {}", stderr(&job));
    assert_eq!(last_event(&job.stdout)["event"], "done");

    let pending = outsider.run(member, &["ca", "pending", "--control", sock]);
    assert_refused(&pending, "uid 65534 may not administer the node");
    assert!(
        stderr(&pending).contains(&format!("group '{}' may use status, submit", group.name)),
        "{}",
        stderr(&pending)
    );
    let approve = ["ca", "approve", "0123456789abcdef", "--control", sock];
    assert_refused(
        &outsider.run(member, &approve),
        "may not administer the node",
    );

    // A member may not have the node read files with its rights.
    let files = [
        "submit",
        "--json",
        "--control",
        sock,
        "--kernel",
        "sha256",
        "--files",
        "/etc/shadow",
    ];
    assert_refused(&outsider.run(member, &files), "may not submit file inputs");

    // The raw files stay closed to members.
    let listing = outsider.run_shell(member, &format!("ls {}", data_dir.display()));
    assert!(!listing.status.success(), "a member listed data_dir");

    // Outside the group: not even a connection.
    let status = outsider.run(None, &["status", "--control", sock]);
    assert_refused(&status, "admits only its owner");
    assert_owner_gets_all(client);
}

/// Starts `lppsp node --config CONFIG` with umask 000, so that only the
/// node's own choices decide the modes of what it creates.
fn start_with_open_umask(config: &Path, name: &str, ports: Ports) -> NodeProc {
    let log = config.with_extension("log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" node --config \"$1\""])
        .arg(bin())
        .arg(config)
        .env("LPPSP_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    NodeProc {
        name: name.into(),
        child: Some(child),
        ports: Ports {
            control: control_socket_of(config),
            ..ports
        },
        log,
    }
}

/// Every entry under `dir` whose mode is not the node's own: folders
/// 0700, files 0600, the control socket 0600. `seen` gets every path.
fn loose_entries(dir: &Path, seen: &mut Vec<PathBuf>) -> Vec<String> {
    let mut loose = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        let got = meta.mode() & 0o7777;
        if got != want {
            loose.push(format!("{} is {got:04o}, not {want:04o}", path.display()));
        }
        seen.push(path.clone());
        if meta.is_dir() {
            loose.extend(loose_entries(&path, seen));
        }
    }
    loose
}

#[test]
fn data_dir_and_every_file_the_node_creates_are_the_owners_only() {
    use std::io::{BufRead as _, BufReader};
    let community = Community::new();
    let dir = community.dir.path();
    let ca = community.ca_dir();
    let (pc, pk) = (Ports::free(), Ports::free());
    community.issue("client");
    community.issue("compute-1");
    let client_cfg = write_config(dir, &ca, "client", "client", pc, &[pk]);
    let compute_cfg = write_config(dir, &ca, "compute-1", "compute", pk, &[pc]);
    // A key and a config others can use: the node says so at start.
    chmod(&dir.join("compute-1.key"), 0o644);
    chmod(&compute_cfg, 0o666);

    // The client alone: a job it takes waits for a compute node, with its
    // journal entry and results file on disk.
    let client = start_with_open_umask(&client_cfg, "client", pc);
    client.wait_ready(Duration::from_secs(20));
    let control = client.ports.control_addr().to_string();
    let mut job = submit_command(&control)
        .args(w2_args(20, 1000))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut events = BufReader::new(job.stdout.take().unwrap()).lines();
    let accepted: serde_json::Value =
        serde_json::from_str(&events.next().unwrap().unwrap()).unwrap();
    assert_eq!(accepted["event"], "accepted", "{accepted}");
    let client_data = dir.join("client-data");
    let mut seen = Vec::new();
    let loose = loose_entries(&client_data, &mut seen);
    assert!(loose.is_empty(), "{loose:#?}");
    let names: Vec<String> = seen
        .iter()
        .map(|p| p.strip_prefix(&client_data).unwrap().display().to_string())
        .collect();
    for expected in ["LOCK", "control.sock", "ledger.sqlite", "jobs"] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} in {names:?}"
        );
    }
    let job_id = accepted["job"].as_str().unwrap();
    for journal in [
        format!("jobs/{job_id}.json"),
        format!("jobs/{job_id}.results"),
    ] {
        assert!(names.contains(&journal), "no {journal} in {names:?}");
    }

    // The compute node comes; the job runs and is paid for.
    let compute = start_with_open_umask(&compute_cfg, "compute-1", pk);
    compute.wait_ready(Duration::from_secs(20));
    let last = events
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .last()
        .unwrap();
    assert!(job.wait().unwrap().success(), "{last}");
    assert_eq!(last["event"], "done", "{last}");

    let log = compute.log_text();
    for (what, path, mode) in [
        ("identity.key", dir.join("compute-1.key"), "0644"),
        ("config file", compute_cfg.clone(), "0666"),
    ] {
        let warned = log.lines().any(|l| {
            l.contains("WARN")
                && l.contains(what)
                && l.contains(&path.display().to_string())
                && l.contains(mode)
        });
        assert!(
            warned,
            "no warning about {} ({mode}):\n{log}",
            path.display()
        );
    }
    // The client's files are in order: no warning naming a mode.
    let client_log = client.log_text();
    assert!(
        !client_log
            .lines()
            .any(|l| l.contains("WARN") && l.contains("mode=")),
        "{client_log}"
    );

    // Both nodes' data_dir after the job, the ledger's WAL files with it.
    for data in [client_data, dir.join("compute-1-data")] {
        assert_eq!(mode(&data), 0o700, "{}", data.display());
        let mut seen = Vec::new();
        let loose = loose_entries(&data, &mut seen);
        assert!(loose.is_empty(), "{loose:#?}");
        for wal in ["ledger.sqlite-wal", "ledger.sqlite-shm"] {
            assert!(seen.contains(&data.join(wal)), "no {wal} in {seen:?}");
        }
    }
}

/// `GET path` on `addr` (HTTP/1.0) with `headers`; the status code.
fn http_status(addr: std::net::SocketAddr, path: &str, headers: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response}"))
}

#[test]
fn a_dashboard_with_a_token_serves_only_requests_that_carry_it() {
    let community = Community::new();
    let dir = community.dir.path();
    community.issue("solo");
    let token = "0123456789abcdef0123456789abcdef";
    std::fs::write(dir.join("dashboard.token"), format!("{token}\n")).unwrap();
    chmod(&dir.join("dashboard.token"), 0o600);
    let ports = Ports::free();
    let cfg = write_config(
        dir,
        &community.ca_dir(),
        "solo",
        "both",
        ports,
        &[Ports::free()],
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replacen(
        "[dashboard]\n",
        "[dashboard]\ntoken_file = \"dashboard.token\"\n",
        1,
    );
    std::fs::write(&cfg, &text).unwrap();
    let node = NodeProc::start(&cfg, "solo", ports);
    node.wait_ready(Duration::from_secs(20));
    let addr = ports.dashboard_addr();
    // The status is sampled once per tick: wait for the first.
    let bearer = format!("Authorization: Bearer {token}\r\n");
    wait_for(Duration::from_secs(20), || {
        http_status(addr, "/api/status", &bearer) == 200
    })
    .expect("the dashboard answers a request with the token");
    for path in ["/", "/api/status", "/api/ledger", "/metrics"] {
        assert_eq!(http_status(addr, path, ""), 401, "{path} without the token");
        let wrong = "Authorization: Bearer 0123456789abcdef0123456789abcdee\r\n";
        assert_eq!(
            http_status(addr, path, wrong),
            401,
            "{path} with another token"
        );
        assert_eq!(
            http_status(addr, path, &bearer),
            200,
            "{path} with the header"
        );
        let query = if path.contains('?') { '&' } else { '?' };
        let with_query = format!("{path}{query}token={token}");
        assert_eq!(http_status(addr, &with_query, ""), 200, "{with_query}");
    }
    drop(node);

    // A token file that cannot be read stops the node, naming the key.
    std::fs::remove_file(dir.join("dashboard.token")).unwrap();
    let out = Command::new(bin())
        .args(["node", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("dashboard.token_file") && err.contains("dashboard.token"),
        "{err}"
    );
    // Beyond loopback a dashboard without a token is a config error.
    let open = text
        .replace("token_file = \"dashboard.token\"\n", "")
        .replace(
            &format!("listen = \"127.0.0.1:{}\"", ports.dashboard),
            "listen = \"0.0.0.0:0\"",
        );
    std::fs::write(&cfg, open).unwrap();
    let out = Command::new(bin())
        .args(["config", "check", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("dashboard.token_file"),
        "{err}"
    );
}
