//! Discovery between real hosts: three network namespaces on a bridge,
//! with UDP broadcast and then multicast beacons, then loss and a healed
//! partition. Needs root, `ip` (iproute2) and, for the faults, `nft`
//! (nftables); without them each test prints `SKIPPED <test>: <why>` and
//! passes.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// `Ok` when the command that gave `out` succeeded, else `what` and its
/// stderr.
fn succeeded(out: &Output, what: &str) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    succeeded(&out, &format!("ip {}", args.join(" ")))
}

/// `ip netns exec NS`, to which the caller adds the command to run in
/// namespace `ns`.
fn in_ns(ns: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    cmd
}

/// Three hosts 10.71.0.1-3/24 on a bridge that lives in a fourth namespace.
struct Lan {
    bridge_ns: String,
    hosts: Vec<String>,
}

impl Lan {
    fn create(tag: &str) -> Result<Lan, String> {
        let lan = Lan {
            bridge_ns: format!("lppsp-{tag}-br"),
            hosts: (1..=3).map(|i| format!("lppsp-{tag}-h{i}")).collect(),
        };
        ip(&["netns", "add", &lan.bridge_ns])?;
        ip(&["-n", &lan.bridge_ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &lan.bridge_ns, "link", "set", "br0", "up"])?;
        for (i, h) in lan.hosts.iter().enumerate() {
            let n = i + 1;
            let (v, p) = (format!("l{tag}v{n}"), format!("l{tag}p{n}"));
            ip(&["netns", "add", h])?;
            ip(&["link", "add", &v, "type", "veth", "peer", "name", &p])?;
            ip(&["link", "set", &v, "netns", h])?;
            ip(&["link", "set", &p, "netns", &lan.bridge_ns])?;
            ip(&["-n", &lan.bridge_ns, "link", "set", &p, "master", "br0"])?;
            ip(&["-n", &lan.bridge_ns, "link", "set", &p, "up"])?;
            ip(&[
                "-n",
                h,
                "addr",
                "add",
                &format!("10.71.0.{n}/24"),
                "dev",
                &v,
            ])?;
            ip(&["-n", h, "link", "set", &v, "up"])?;
            ip(&["-n", h, "link", "set", "lo", "up"])?;
            ip(&["-n", h, "route", "add", "224.0.0.0/4", "dev", &v])?;
        }
        Ok(lan)
    }

    /// Starts a node on every host n (1-based): `{prefix}-h{n}`, listening
    /// on 10.71.0.n and sending beacons to the LAN's broadcast address,
    /// with the lines `node_keys(n)` and `network_keys(n)` added to its
    /// `[node]` and `[network]` sections. Its log is `{prefix}-h{n}.log`
    /// in the community's folder.
    fn start_nodes(
        &self,
        community: &Community,
        prefix: &str,
        node_keys: impl Fn(usize) -> String,
        network_keys: impl Fn(usize) -> String,
    ) -> Vec<ChildGuard> {
        let mut nodes = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let n = i + 1;
            let name = format!("{prefix}-h{n}");
            community.issue(&name);
            let cfg = community.dir.path().join(format!("{name}.toml"));
            std::fs::write(
                &cfg,
                format!(
                    "[node]\nname = \"{name}\"\ndata_dir = \"{name}-data\"\n{node}[identity]\nca_cert = \"{ca}\"\ncert = \"{name}.pem\"\nkey = \"{name}.key\"\n\
                     [network]\nlisten = \"10.71.0.{n}:47101\"\nbeacon_listen = \"0.0.0.0:47100\"\n\
                     broadcast_to = \"10.71.0.255:47100\"\n{network}{control}",
                    node = node_keys(n),
                    network = network_keys(n),
                    ca = community.ca_dir().join("ca.pem").display(),
                    control = control_section(h),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(cfg.with_extension("log")).unwrap();
            let child = in_ns(h)
                .arg(bin())
                .arg("node")
                .arg("--config")
                .arg(&cfg)
                .stderr(log)
                .spawn()
                .unwrap();
            nodes.push(ChildGuard(child));
        }
        nodes
    }
}

/// The test LAN tagged `tag`, or `None` after printing why `test` skips:
/// not root, no `ip`, or namespaces cannot be made here (a container
/// without the right).
fn lan_or_skip(test: &str, tag: &str) -> Option<Lan> {
    if !require_root(test, "network namespaces")
        || require_tool(test, &["ip"], "iproute2").is_none()
    {
        return None;
    }
    match Lan::create(tag) {
        Ok(lan) => Some(lan),
        Err(e) => {
            skipped(test, &format!("cannot create network namespaces ({e})"));
            None
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for h in self.hosts.iter().chain(std::iter::once(&self.bridge_ns)) {
            let _ = ip(&["netns", "del", h]);
            let _ = std::fs::remove_file(socket_of(h));
        }
    }
}

/// The control socket of the node in namespace `ns` (namespaces share the
/// file system, so each node's socket has its own path).
fn socket_of(ns: &str) -> String {
    std::env::temp_dir()
        .join(format!("lppsp-{ns}.sock"))
        .display()
        .to_string()
}

/// The `[control]` section of the node in namespace `ns`.
fn control_section(ns: &str) -> String {
    format!("[control]\nsocket = \"{}\"\n", socket_of(ns))
}

fn status_in(ns: &str) -> Option<serde_json::Value> {
    let out = in_ns(ns)
        .arg(bin())
        .args(["status", "--json", "--control", &socket_of(ns)])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn run_discovery(lan: &Lan, community: &Community, mode: &str) {
    let _nodes = lan.start_nodes(
        community,
        mode,
        |_| String::new(),
        |n| {
            format!(
                "discovery = \"{mode}\"\nmulticast_group = \"239.255.71.100:47100\"\n\
                 multicast_interface = \"10.71.0.{n}\"\n"
            )
        },
    );
    for (i, h) in lan.hosts.iter().enumerate() {
        let found = wait_for(Duration::from_secs(10), || {
            status_in(h).is_some_and(|s| {
                let peers = s["peers"].as_array().cloned().unwrap_or_default();
                peers.len() == 2
                    && peers.iter().all(|p| {
                        p["addr"]
                            .as_str()
                            .is_some_and(|a| a.starts_with("10.71.0."))
                    })
            })
        });
        let log =
            std::fs::read_to_string(community.dir.path().join(format!("{mode}-h{}.log", i + 1)))
                .unwrap_or_default();
        assert!(
            found.is_some(),
            "{mode}: host {h} did not find both others: {:?}\n{log}",
            status_in(h)
        );
    }
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn broadcast_and_multicast_discovery_between_namespaces() {
    const TEST: &str = "broadcast_and_multicast_discovery_between_namespaces";
    let Some(lan) = lan_or_skip(TEST, &format!("{}", std::process::id() % 100_000)) else {
        return;
    };
    let community = Community::new();
    run_discovery(&lan, &community, "broadcast");
    run_discovery(&lan, &community, "multicast");
}

/// Whether `nft` runs in host namespace `ns` (it needs the kernel's
/// nf_tables too).
fn nft_usable(ns: &str) -> Result<(), String> {
    let out = in_ns(ns)
        .args(["nft", "list", "ruleset"])
        .output()
        .map_err(|e| format!("ip netns exec {ns} nft: {e}"))?;
    succeeded(&out, "nft list ruleset")
}

/// Loads an nftables ruleset into host namespace `ns` (replacing our table).
fn nft(ns: &str, rules: &str) -> Result<(), String> {
    use std::io::Write;
    let _ = in_ns(ns)
        .args(["nft", "delete", "table", "inet", "lppspfault"])
        .stderr(std::process::Stdio::null())
        .status();
    if rules.is_empty() {
        return Ok(());
    }
    let mut child = in_ns(ns)
        .args(["nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    let text = format!(
        "table inet lppspfault {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n{rules}\n }}\n}}\n"
    );
    child
        .stdin
        .take()
        .ok_or("nft: no stdin")?
        .write_all(text.as_bytes())
        .map_err(|e| format!("nft: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    succeeded(&out, "nft")
}

fn peer_count(ns: &str) -> usize {
    status_in(ns)
        .and_then(|s| s["peers"].as_array().map(|p| p.len()))
        .unwrap_or(0)
}

fn price_in(ns: &str) -> Option<String> {
    status_in(ns).and_then(|s| s["market"]["price"].as_str().map(str::to_string))
}

/// A W2 job submitted on host `ns`: (success, last event).
fn w2_in(ns: &str, range: u64, samples: u64) -> (bool, serde_json::Value) {
    let out = in_ns(ns)
        .arg(bin())
        .args(["submit", "--json"])
        .args(["--control", &socket_of(ns)])
        .args(w2_args(range, samples))
        .output()
        .unwrap();
    (out.status.success(), last_event(&out.stdout))
}

#[test]
fn loss_and_a_healed_partition_between_namespaces() {
    const TEST: &str = "loss_and_a_healed_partition_between_namespaces";
    if require_tool(TEST, &["nft"], "nftables").is_none() {
        return;
    }
    let Some(lan) = lan_or_skip(TEST, &format!("f{}", std::process::id() % 100_000)) else {
        return;
    };
    if let Err(e) = nft_usable(&lan.hosts[0]) {
        skipped(TEST, &format!("nftables unusable in a namespace ({e})"));
        return;
    }
    let community = Community::new();
    let roles = ["client", "compute", "compute"];
    let _nodes = lan.start_nodes(
        &community,
        "fault",
        |n| format!("role = \"{}\"\n", roles[n - 1]),
        |_| "discovery = \"broadcast\"\n".into(),
    );
    let hosts = &lan.hosts;
    let all_see_all = |within: u64| {
        wait_for(Duration::from_secs(within), || {
            hosts.iter().all(|h| peer_count(h) == 2)
        })
    };
    assert!(all_see_all(15).is_some(), "discovery before the faults");

    // 10% of every packet into each host dropped (not loopback, where
    // the control endpoint is).
    for h in hosts {
        nft(h, "  iifname != \"lo\" numgen random mod 10 0 drop").unwrap();
    }
    let (range, samples) = (100u64, 2_000_000u64);
    let (ok, last) = w2_in(&hosts[0], range, samples);
    assert_exact_w2(ok, &last, range, samples);
    assert!(all_see_all(10).is_some(), "discovery under 10% loss");
    eprintln!("10% loss: job exact, discovery holds");

    // Partition host 3 from hosts 1 and 2 (and loss stays on).
    let loss = "  iifname != \"lo\" numgen random mod 10 0 drop";
    nft(&hosts[0], &format!("{loss}\n  ip saddr 10.71.0.3 drop")).unwrap();
    nft(&hosts[1], &format!("{loss}\n  ip saddr 10.71.0.3 drop")).unwrap();
    nft(
        &hosts[2],
        &format!("{loss}\n  ip saddr {{ 10.71.0.1, 10.71.0.2 }} drop"),
    )
    .unwrap();
    let split = wait_for(Duration::from_secs(15), || {
        peer_count(&hosts[0]) == 1 && peer_count(&hosts[2]) == 0
    });
    assert!(split.is_some(), "the partition shows in the books");
    // Work goes on on the majority side.
    let (ok, last) = w2_in(&hosts[0], 50, samples);
    assert!(ok, "job during the partition: {last}");
    assert_eq!(
        last["nodes"].as_object().map(|n| n.len()),
        Some(1),
        "{last}"
    );

    // Heal: every rule gone; all see all and hold one price.
    for h in hosts {
        nft(h, "").unwrap();
    }
    let healed = all_see_all(20);
    assert!(healed.is_some(), "discovery after healing");
    let one_price = wait_for(Duration::from_secs(30), || {
        let prices: Vec<Option<String>> = hosts.iter().map(|h| price_in(h)).collect();
        prices[0].is_some() && prices.iter().all(|p| *p == prices[0])
    });
    let prices: Vec<Option<String>> = hosts.iter().map(|h| price_in(h)).collect();
    assert!(one_price.is_some(), "prices after healing: {prices:?}");
    eprintln!(
        "partition healed: all see all after {:?}, one price {:?}",
        healed.unwrap(),
        prices[0]
    );
    let (ok, last) = w2_in(&hosts[0], range, samples);
    assert!(ok, "job after healing: {last}");
    assert_eq!(
        last["nodes"].as_object().map(|n| n.len()),
        Some(2),
        "{last}"
    );
}
