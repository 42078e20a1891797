//! Discovery between real hosts: three network namespaces on a bridge,
//! with UDP broadcast and then multicast beacons. Needs root and `ip`
//! (iproute2); prints why it skips where it cannot create namespaces.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
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
}

impl Drop for Lan {
    fn drop(&mut self) {
        for h in self.hosts.iter().chain(std::iter::once(&self.bridge_ns)) {
            let _ = ip(&["netns", "del", h]);
        }
    }
}

fn status_in(ns: &str) -> Option<serde_json::Value> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            bin(),
            "status",
            "--json",
            "--control",
            "127.0.0.1:47102",
        ])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn run_discovery(lan: &Lan, community: &Community, mode: &str) {
    let mut nodes = Vec::new();
    for (i, h) in lan.hosts.iter().enumerate() {
        let n = i + 1;
        let name = format!("{mode}-h{n}");
        community.issue(&name);
        let cfg = community.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[node]\nname = \"{name}\"\n[identity]\nca_cert = \"{ca}\"\ncert = \"{name}.pem\"\nkey = \"{name}.key\"\n\
                 [network]\nlisten = \"10.71.0.{n}:47101\"\nbeacon_listen = \"0.0.0.0:47100\"\ndiscovery = \"{mode}\"\n\
                 broadcast_to = \"10.71.0.255:47100\"\nmulticast_group = \"239.255.71.100:47100\"\n\
                 multicast_interface = \"10.71.0.{n}\"\n",
                ca = community.ca_dir().join("ca.pem").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(cfg.with_extension("log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                h,
                bin(),
                "node",
                "--config",
                cfg.to_str().unwrap(),
            ])
            .stderr(log)
            .spawn()
            .unwrap();
        nodes.push(ChildGuard(child));
    }
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
    let tag = format!("{}", std::process::id() % 100_000);
    let lan = match Lan::create(&tag) {
        Ok(lan) => lan,
        Err(e) => {
            eprintln!("SKIPPED broadcast_and_multicast_discovery_between_namespaces: cannot create network namespaces ({e}); run as root with iproute2");
            return;
        }
    };
    let community = Community::new();
    run_discovery(&lan, &community, "broadcast");
    run_discovery(&lan, &community, "multicast");
}
