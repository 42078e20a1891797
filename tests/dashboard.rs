//! The dashboard of real nodes: the page in headless Chromium lists the
//! peers and the price, `/metrics` serves every documented metric, and a
//! dashboard whose port is taken does not stop the node.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NODES: [(&str, &str); 3] = [("alpha", "both"), ("beta", "compute"), ("gamma", "compute")];

/// Starts three nodes and waits until the first one's dashboard serves a
/// status listing both others.
fn cluster(community: &Community) -> Vec<NodeProc> {
    let procs = start_cluster(community, &NODES);
    let seen = wait_for(Duration::from_secs(15), || {
        http_get(procs[0].ports.dashboard_addr(), "/api/status").is_some_and(|(code, body)| {
            code == 200
                && serde_json::from_str::<serde_json::Value>(&body)
                    .is_ok_and(|v| v["peers"].as_array().is_some_and(|p| p.len() == 2))
        })
    });
    assert!(
        seen.is_some(),
        "alpha's dashboard never listed two peers; log:\n{}",
        procs[0].log_text()
    );
    procs
}

/// Runs headless Chromium with `args` on `url`; its stdout, or a panic
/// with its stderr when it fails or hangs.
fn run_chromium(browser: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let out_path = profile.join("stdout");
    let err_path = profile.join("stderr");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "chromium failed ({status}); stderr:\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    std::fs::read_to_string(&out_path).unwrap_or_default()
}

/// `target/test-artifacts`, beside the cargo-made temp dir of tests.
fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("test-artifacts"))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_page_in_a_browser_lists_the_peers_and_the_price() {
    let Some(browser) = require_tool(
        "the_page_in_a_browser_lists_the_peers_and_the_price",
        &["chromium", "chromium-browser"],
        "chromium",
    ) else {
        return;
    };
    let community = Community::new();
    let procs = cluster(&community);
    let others: Vec<String> = procs[1..].iter().map(NodeProc::id).collect();

    // A finished job, so the jobs and ledger sections have something to show.
    let control = procs[0].ports.control_addr().to_string();
    let out = submit_command(&control)
        .args([
            "--kernel",
            "w2-monte-carlo-pi",
            "--range",
            "0..12",
            "--extra",
            "20000",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The dashboard refreshes its snapshot once a tick: wait until it has
    // the job before the browser (which runs on virtual time) loads it.
    wait_for(Duration::from_secs(10), || {
        http_get(procs[0].ports.dashboard_addr(), "/api/status")
            .is_some_and(|(_, body)| body.contains("w2-monte-carlo-pi"))
    })
    .expect("the dashboard's snapshot has the finished job");
    let price = procs[0].status()["market"]["price"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("http://{}/", procs[0].ports.dashboard_addr());
    let profile = tempfile::tempdir().unwrap();
    let dom = run_chromium(
        &browser,
        profile.path(),
        &["--virtual-time-budget=5000", "--dump-dom"],
        &url,
    );
    for id in &others {
        assert!(
            dom.contains(id.as_str()),
            "peer {id} not on the page:\n{dom}"
        );
    }
    assert!(
        dom.contains(&format!("id=\"price\">{price}<")),
        "price {price} not shown:\n{dom}"
    );
    assert!(
        dom.contains("w2-monte-carlo-pi"),
        "the finished job is not listed:\n{dom}"
    );

    let shot = artifacts_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &browser,
        profile.path(),
        &[
            "--virtual-time-budget=5000",
            "--window-size=1280,900",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    println!("dashboard screenshot: {}", shot.display());
}

/// The metric names docs/dashboard.md lists (each written `lppsp_...`
/// in its metrics section).
fn documented_metrics() -> Vec<String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.md"))
            .expect("docs/dashboard.md");
    let section = doc.split("## Metrics").nth(1).expect("a Metrics section");
    let mut names: Vec<String> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("lppsp_"))
        .map(|s| s.split('{').next().unwrap_or(s).to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_serve_every_documented_name() {
    let community = Community::new();
    let procs = cluster(&community);
    let addr = procs[0].ports.dashboard_addr();

    // A connection that fails its TLS handshake is a refused connection.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", procs[0].ports.tls)).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    }
    let mut text = String::new();
    let counted = wait_for(Duration::from_secs(10), || {
        let Some((200, body)) = http_get(addr, "/metrics") else {
            return false;
        };
        text = body;
        metric_value(&text, "lppsp_connections_refused_total").is_some_and(|v| v >= 1.0)
    });
    assert!(counted.is_some(), "refused connection not counted:\n{text}");

    let names = documented_metrics();
    assert!(names.len() >= 20, "too few documented metrics: {names:?}");
    for name in &names {
        assert!(
            text.lines().any(|l| l
                .strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))),
            "documented metric {name} not served:\n{text}"
        );
    }
    assert_eq!(metric_value(&text, "lppsp_peers"), Some(2.0), "{text}");
    assert_eq!(metric_value(&text, "lppsp_price"), Some(1.0), "{text}");

    // The other endpoints the page uses answer too.
    let (code, page) = http_get(addr, "/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<svg id=\"chart\""));
    let (code, history) = http_get(addr, "/api/history").unwrap();
    assert_eq!(code, 200);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert!(
        !history["samples"].as_array().unwrap().is_empty(),
        "{history}"
    );
    let (code, ledger) = http_get(addr, "/api/ledger").unwrap();
    assert_eq!(code, 200);
    let ledger: serde_json::Value = serde_json::from_str(&ledger).unwrap();
    assert!(ledger["receipts"].is_array(), "{ledger}");
    let event = first_event(addr);
    assert!(event.contains("event: status"), "{event}");
    assert!(event.contains("\"peers\""), "{event}");
}

/// Reads `/api/events` until its first event has arrived.
fn first_event(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/events HTTP/1.0\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\n\n") || got.len() < 200 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn a_taken_dashboard_port_leaves_the_node_running() {
    let community = Community::new();
    community.issue("solo");
    let ports = Ports::free();
    let _squatter = std::net::TcpListener::bind(ports.dashboard_addr()).unwrap();
    let cfg = write_config(
        community.dir.path(),
        &community.ca_dir(),
        "solo",
        "both",
        ports,
        &[Ports::free()],
    );
    let node = NodeProc::start(&cfg, "solo", ports);
    node.wait_ready(Duration::from_secs(20));
    let log = node.log_text();
    assert!(
        log.contains("dashboard.listen") && log.contains("running without the dashboard"),
        "{log}"
    );
}
