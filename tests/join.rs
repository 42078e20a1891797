//! Joining a community with `lppsp join`: real processes, a CA-holding node
//! and a joiner; the operator's `lppsp ca pending / approve / reject`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// A CA-holding node with its join endpoint on a free loopback port.
struct CaNode {
    community: Community,
    node: NodeProc,
    join_port: u16,
}

fn ca_node() -> CaNode {
    ca_node_with("requests_per_minute = 100\n")
}

/// As [`ca_node`], with these `[ca]` keys.
fn ca_node_with(ca_keys: &str) -> CaNode {
    let community = Community::new();
    community.issue("ca-node");
    let ports = Ports::free();
    let join_port = free_tcp_port();
    let cfg = write_config(
        community.dir.path(),
        &community.ca_dir(),
        "ca-node",
        "both",
        ports,
        // Static discovery needs a destination; the joiner is learnt from
        // its own beacons, which it sends here.
        &[Ports::free()],
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[ca]\ndir = \"{}\"\njoin_listen = \"127.0.0.1:{join_port}\"\n{ca_keys}",
        community.ca_dir().display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let node = NodeProc::start(&cfg, "ca-node", ports);
    node.wait_ready(Duration::from_secs(20));
    CaNode {
        community,
        node,
        join_port,
    }
}

/// `lppsp join` as a child process, its stdout read line by line.
struct Joiner {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Joiner {
    fn start(ca: &CaNode, dir: &Path, name: &str, extra: &[&str]) -> Self {
        let addr = format!("127.0.0.1:{}", ca.join_port);
        let mut child = Command::new(bin())
            .args([
                "join",
                &addr,
                "--name",
                name,
                "--out",
                dir.to_str().unwrap(),
            ])
            .args(extra)
            .env("LPPSP_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The rest of the first stdout line starting with `prefix`.
    fn line_after(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Err(_) => panic!("no line {prefix:?}; stdout so far: {:?}", self.seen),
            }
        }
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    }
}

impl Drop for Joiner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ca_cli(ca: &CaNode, args: &[&str]) -> std::process::Output {
    let control = ca.node.ports.control_addr().to_string();
    let mut all = vec!["ca"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--control", &control]);
    Command::new(bin()).args(&all).output().unwrap()
}

fn pending(ca: &CaNode) -> Vec<serde_json::Value> {
    let out = ca_cli(ca, &["pending", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["pending"].as_array().unwrap().clone()
}

/// A node.toml for the joiner: loopback ports, beacons to the CA node.
fn joiner_config(dir: &Path, ca: &CaNode) -> Ports {
    let ports = Ports::free();
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        "[node]\nname = \"laptop\"\n\n[network]\nlisten = \"127.0.0.1:{}\"\nbeacon_listen = \"127.0.0.1:{}\"\ndiscovery = \"static\"\nstatic_peers = [\"127.0.0.1:{}\"]\n",
        ports.tls, ports.beacon, ca.node.ports.beacon
    );
    std::fs::write(dir.join("node.toml"), text).unwrap();
    Ports {
        control: control_socket_of(&dir.join("node.toml")),
        ..ports
    }
}

#[test]
fn an_approved_joiner_gets_a_certificate_starts_and_is_in_the_book() {
    let ca = ca_node();
    let dir = ca.community.dir.path().join("laptop");
    let ports = joiner_config(&dir, &ca);
    let mut joiner = Joiner::start(&ca, &dir, "laptop", &[]);
    let code = joiner.line_after("verification code:");
    assert_eq!(code.len(), 9, "{code}");

    let list = pending(&ca);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        list[0]["code"],
        code.as_str(),
        "both sides show the same code"
    );
    assert_eq!(list[0]["name"], "laptop");
    let id = list[0]["id"].as_str().unwrap().to_string();
    let human = ca_cli(&ca, &["pending"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains(&code));

    let out = ca_cli(&ca, &["approve", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let joined = joiner.line_after("joined: node id");
    let node_id = joined.split(';').next().unwrap().trim().to_string();
    assert_eq!(list[0]["node"], node_id.as_str());
    assert!(pending(&ca).is_empty());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The joiner started as a node and the CA node's book lists it.
    joiner.line_after("starting the node");
    let listed = wait_for(Duration::from_secs(20), || {
        let ids = ca.node.peer_ids();
        ids.contains(&node_id)
    });
    assert!(
        listed.is_some(),
        "CA node's book lacks {node_id}; CA log:\n{}",
        ca.node.log_text()
    );
    let st = control_call(ports.control_addr(), r#"{"op":"status"}"#);
    assert_eq!(st[0]["node"]["id"], node_id.as_str());
}

#[test]
fn a_rejected_joiner_is_told_why_and_writes_nothing() {
    let ca = ca_node();
    let dir = ca.community.dir.path().join("stranger");
    let mut joiner = Joiner::start(&ca, &dir, "stranger", &["--no-start"]);
    joiner.line_after("verification code:");
    let id = pending(&ca)[0]["id"].as_str().unwrap().to_string();
    let out = ca_cli(&ca, &["reject", &id, "--reason", "unknown machine"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = joiner.child.wait().unwrap();
    assert!(!status.success());
    let err = joiner.stderr();
    assert!(
        err.contains("rejected") && err.contains("unknown machine"),
        "{err}"
    );
    assert!(!dir.join("node.key").exists());
    assert!(!dir.join("node.pem").exists());
    // A decision on a request that is gone is a clear error.
    let out = ca_cli(&ca, &["approve", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pending request"));
}

#[test]
fn bad_and_oversized_requests_are_dropped_and_the_listener_keeps_serving() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let ca = ca_node();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", ca.join_port).parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Not TLS at all.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = plain.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "a non-TLS connection is closed");

        // Oversized: 1 MiB without a newline; the listener closes.
        let mut big = lppsp_runtime::join::connect(addr).await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..16 {
            if big.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(15), big.read_to_end(&mut rest)).await;
        assert!(r.is_ok(), "an oversized request is cut off");
        assert!(rest.is_empty(), "no answer to an oversized request");

        // Malformed JSON and a bad certificate request: refused with a reason.
        for body in [
            "not json\n".to_string(),
            "{\"name\":\"x\",\"csr\":\"garbage\"}\n".to_string(),
            "{\"name\":\"../x\",\"csr\":\"\"}\n".to_string(),
        ] {
            let s = lppsp_runtime::join::connect(addr).await.unwrap();
            let (r, mut w) = tokio::io::split(s);
            w.write_all(body.as_bytes()).await.unwrap();
            let mut line = String::new();
            tokio::io::BufReader::new(r)
                .read_line(&mut line)
                .await
                .unwrap();
            let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(reply["status"], "refused", "{body}: {reply}");
        }
    });
    assert!(pending(&ca).is_empty(), "nothing bad was queued");
    // A well-formed request still gets through.
    let dir = ca.community.dir.path().join("after");
    let mut joiner = Joiner::start(&ca, &dir, "after", &["--no-start"]);
    let code = joiner.line_after("verification code:");
    let list = pending(&ca);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["code"], code.as_str());
    // The joiner leaving takes its request with it.
    drop(joiner);
    assert!(
        wait_for(Duration::from_secs(10), || pending(&ca).is_empty()).is_some(),
        "a request whose joiner left is dropped"
    );
    assert!(ca.node.try_status().is_some(), "the CA node still runs");
}

#[test]
fn an_undecided_request_expires_and_the_joiner_is_told() {
    let ca = ca_node_with("requests_per_minute = 100\npending_expiry_s = 1\n");
    let dir = ca.community.dir.path().join("late");
    let mut joiner = Joiner::start(&ca, &dir, "late", &["--no-start"]);
    joiner.line_after("verification code:");
    let status = joiner.child.wait().unwrap();
    assert!(!status.success());
    let err = joiner.stderr();
    assert!(err.contains("expired"), "{err}");
    assert!(!dir.join("node.key").exists());
    assert!(pending(&ca).is_empty());
}

#[test]
fn connections_over_the_rate_limit_are_closed_unanswered() {
    let ca = ca_node_with("requests_per_minute = 2\n");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", ca.join_port).parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Two connections are taken (TLS completes), the third is not.
        let a = lppsp_runtime::join::connect(addr).await;
        let b = lppsp_runtime::join::connect(addr).await;
        assert!(a.is_ok() && b.is_ok());
        let c = lppsp_runtime::join::connect(addr).await;
        assert!(c.is_err(), "the third connection in a minute is refused");
    });
    assert!(ca.node.try_status().is_some(), "the CA node still runs");
}

#[test]
fn ctrl_c_while_waiting_writes_nothing_and_withdraws_the_request() {
    let ca = ca_node();
    let dir = ca.community.dir.path().join("hasty");
    let mut joiner = Joiner::start(&ca, &dir, "hasty", &["--no-start"]);
    joiner.line_after("waiting for the decision");
    assert_eq!(pending(&ca).len(), 1);
    let sent = Command::new("kill")
        .args(["-INT", &joiner.child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = joiner.child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", joiner.stderr());
    joiner.line_after("cancelled; nothing was written");
    for f in ["node.key", "node.pem", "ca.pem", "node.toml"] {
        assert!(!dir.join(f).exists(), "{f} was written");
    }
    assert!(
        wait_for(Duration::from_secs(10), || pending(&ca).is_empty()).is_some(),
        "the request left with its joiner"
    );
}
