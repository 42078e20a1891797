//! The dashboard of real nodes: the page in headless Chromium lists the
//! peers and the price and its balancer panel shows the node's balancer
//! (the FSM's state, the ml balancer's samples and reasoning), `/metrics`
//! serves every documented metric, and a dashboard whose port is taken
//! does not stop the node.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NODES: [(&str, &str); 3] = [("alpha", "both"), ("beta", "compute"), ("gamma", "compute")];

/// gamma runs the ml balancer (as a member: it fits, and proposes
/// nothing), keeping every sample; alpha and beta the default FSM.
const GAMMA_ML: &str = "\n[balancer]\nkind = \"ml\"\n\n[balancer.options]\nsample_every_ms = 0\n";

/// Series served only when they have a value (docs/dashboard.md): the
/// committed round's proposer (none at epoch 0) and the ml balancer's.
const ONLY_WITH_A_VALUE: [&str; 6] = [
    "lppsp_market_proposer",
    "lppsp_balancer_samples",
    "lppsp_balancer_fit_r2",
    "lppsp_balancer_elasticity",
    "lppsp_balancer_clearing_price",
    "lppsp_balancer_proposal_price",
];

/// Starts three nodes and waits until the first one's dashboard serves a
/// status listing both others.
fn cluster(community: &Community) -> Vec<NodeProc> {
    let procs = start_cluster_with(community, &NODES, |i, _| {
        if i == 2 {
            GAMMA_ML.to_string()
        } else {
            String::new()
        }
    });
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

/// `text` as a dumped DOM writes a text node.
fn html_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
    // The job's pressure may have made the FSMs propose a raise: wait
    // until no round is open and every node holds one state, so that the
    // page and the status below agree.
    wait_for(Duration::from_secs(30), || {
        let states: Vec<serde_json::Value> =
            procs.iter().map(|p| p.status()["market"].clone()).collect();
        states.iter().all(|m| {
            m["open_round"].is_null()
                && m["demand_tasks"].as_u64() == Some(0)
                && m["epoch"] == states[0]["epoch"]
                && m["proposer"] == states[0]["proposer"]
        })
    })
    .expect("the pool is quiet after the job");
    let market = procs[0].status()["market"].clone();
    wait_for(Duration::from_secs(10), || {
        http_get(procs[0].ports.dashboard_addr(), "/api/status").is_some_and(|(_, body)| {
            serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| {
                v["market"]["epoch"] == market["epoch"]
                    && v["market"]["balancer"] == market["balancer"]
            })
        })
    })
    .expect("the dashboard's snapshot has the quiet state");
    let price = market["price"].as_str().unwrap().to_string();
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

    // The balancer panel shows alpha's committed round and its FSM's own
    // account of its state, as the status had them when the page loaded
    // (the pool was quiet: nothing moves them).
    for (id, value) in [
        ("balancer-kind", "fsm".to_string()),
        ("committed-price", price.clone()),
        ("committed-epoch", market["epoch"].to_string()),
        (
            "committed-proposer",
            market["proposer"]
                .as_str()
                .unwrap_or("none (initial price)")
                .to_string(),
        ),
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\">{value}<")),
            "balancer panel: {id} is not {value}:\n{dom}"
        );
    }
    let describe = market["balancer"].as_str().unwrap();
    let fsm_state = describe.split(';').next().unwrap();
    assert!(fsm_state.starts_with("fsm: "), "{describe}");
    assert!(
        dom.contains(&format!(
            "id=\"balancer-describe\">{}",
            html_text(fsm_state)
        )),
        "the FSM's state ({fsm_state}) is not shown:\n{dom}"
    );
    assert!(dom.contains("id=\"restored\">no (initial price)<"), "{dom}");

    // gamma's panel: the ml balancer, which proposes nothing on a member,
    // with its samples and why it holds. Wait until its window has
    // samples, so that the page shows figures rather than dashes.
    let gamma = procs[2].ports.dashboard_addr();
    wait_for(Duration::from_secs(10), || {
        http_get(gamma, "/api/status").is_some_and(|(_, body)| {
            serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| {
                v["market"]["balancer_state"]["samples"]
                    .as_u64()
                    .is_some_and(|n| n >= 1)
            })
        })
    })
    .expect("gamma's ml balancer has samples");
    let dom = run_chromium(
        &browser,
        profile.path(),
        &["--virtual-time-budget=5000", "--dump-dom"],
        &format!("http://{gamma}/"),
    );
    assert!(dom.contains("id=\"balancer-kind\">ml<"), "{dom}");
    assert!(
        dom.contains("proposes nothing here"),
        "gamma's ml balancer proposes on a member:\n{dom}"
    );
    let figure = |id: &str| -> Option<u64> {
        dom.split(&format!("id=\"{id}\">"))
            .nth(1)?
            .split('<')
            .next()?
            .parse()
            .ok()
    };
    let (used, skipped) = (figure("fit-used"), figure("fit-skipped"));
    assert!(
        used.zip(skipped).is_some_and(|(u, s)| u + s >= 1),
        "samples used / skipped not shown ({used:?} / {skipped:?}):\n{dom}"
    );
    // One price all along: too few to fit, and the page says why.
    assert!(dom.contains("id=\"fit-clearing\">-<"), "{dom}");
    assert!(dom.contains("id=\"fit-reason\">"), "{dom}");
    assert!(dom.contains("no fit on the current window"), "{dom}");

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
    for name in ONLY_WITH_A_VALUE {
        assert!(names.iter().any(|n| n == name), "{name} is not documented");
    }
    for name in names
        .iter()
        .filter(|n| !ONLY_WITH_A_VALUE.contains(&n.as_str()))
    {
        assert!(
            text.lines().any(|l| l
                .strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))),
            "documented metric {name} not served:\n{text}"
        );
    }
    assert_eq!(metric_value(&text, "lppsp_peers"), Some(2.0), "{text}");
    assert_eq!(metric_value(&text, "lppsp_price"), Some(1.0), "{text}");
    // alpha's balancer: the FSM, which has no fit; at epoch 0 no round
    // set the price. Those series are left out, not served as 0.
    assert_eq!(
        metric_value(&text, "lppsp_balancer{kind=\"fsm\",proposes=\"true\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "lppsp_reconciliations_total"),
        Some(0.0)
    );
    for name in ONLY_WITH_A_VALUE {
        assert!(
            !text.lines().any(|l| l.starts_with(name)),
            "{name} served without a value:\n{text}"
        );
    }
    // gamma's: the ml balancer, serving its samples (used + skipped is
    // the window it keeps) but no fit while every sample has one price.
    let gamma = procs[2].ports.dashboard_addr();
    let mut ml = String::new();
    let sampled = wait_for(Duration::from_secs(10), || {
        let Some((200, body)) = http_get(gamma, "/metrics") else {
            return false;
        };
        ml = body;
        let used = metric_value(&ml, "lppsp_balancer_samples{kind=\"used\"}");
        let skipped = metric_value(&ml, "lppsp_balancer_samples{kind=\"skipped\"}");
        used.zip(skipped).is_some_and(|(u, s)| u + s >= 1.0)
    });
    assert!(sampled.is_some(), "gamma serves no ml samples:\n{ml}");
    assert_eq!(
        metric_value(&ml, "lppsp_balancer{kind=\"ml\",proposes=\"false\"}"),
        Some(1.0),
        "{ml}"
    );
    assert!(!ml.contains("lppsp_balancer_fit_r2"), "{ml}");
    assert!(!ml.contains("lppsp_balancer_clearing_price"), "{ml}");

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

/// An ml balancer fed samples whose demand falls and supply rises with the
/// price (demand ~ 1/p, supply ~ p), a few with no supply: it has a fit,
/// skipped samples, and a proposal.
fn fitted_ml_balancer() -> lppsp_balancer_ml::MlBalancer {
    use lppsp_core::component::{Balancer as _, MarketSample};
    use lppsp_core::money::Price;
    let mut ml = lppsp_balancer_ml::MlBalancer::new(lppsp_balancer_ml::MlConfig::default());
    let prices_milli = [1000u64, 1250, 1500, 1750, 2000, 2250, 2500];
    for i in 0..40u64 {
        let p = prices_milli[(i % 7) as usize];
        let supply = if i % 10 == 3 { 0 } else { 2 * p };
        ml.on_sample(&MarketSample {
            at_ms: i * 5_000,
            price: Price::from_micros(p * 1000),
            pressure_milli: 0,
            demand_tasks: 6_000_000 / p,
            supply_mflops: supply,
            nodes: 4,
        });
    }
    ml
}

/// The balancer panel of an ml node with a fit, checked in the browser
/// and on `/metrics`. The dashboard here asks a stand-in for the node
/// driver, which answers every status request with one fixed status
/// holding a real ml balancer's state (no pool of real nodes gives a
/// fit in test time: nothing on them answers to price).
#[test]
fn the_balancer_panel_shows_the_ml_fit() {
    let Some(browser) = require_tool(
        "the_balancer_panel_shows_the_ml_fit",
        &["chromium", "chromium-browser"],
        "chromium",
    ) else {
        return;
    };
    use lppsp_core::component::Balancer as _;
    let ml = fitted_ml_balancer();
    let state: serde_json::Value = serde_json::from_str(&ml.status_json().unwrap()).unwrap();
    let fit = state["fit"].clone();
    assert!(fit.is_object(), "the samples give a fit: {state:#}");
    let status = serde_json::json!({
        "node": {"id": "0102030405060708", "name": "observer", "role": "observer"},
        "market": {
            "price": "2", "epoch": 5, "proposer": "a1b2c3d4e5f60708",
            "balancer": ml.describe(), "balancer_kind": "ml", "balancer_proposes": true,
            "balancer_state": state,
            "open_round": null, "last_abandoned": null, "restored": {"epoch": 4, "price": "1.9"},
            "rounds": {"rounds_opened": 3, "rounds_committed": 2, "rounds_abandoned": 1,
                       "votes_cast": 7, "adopted_from_peers": 2, "reconciliations": 1},
            "peers_at_other_state": [],
            "history": [
                {"at_ms": 60_000, "epoch": 4, "price": "1.9", "proposer": "a1b2c3d4e5f60708"},
                {"at_ms": 90_000, "epoch": 5, "price": "2", "proposer": "a1b2c3d4e5f60708"},
            ],
        },
        "peers": [],
    });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (control_tx, mut control_rx) = lppsp_runtime::node::control_channel();
    let answer = status.clone();
    runtime.spawn(async move {
        while let Some(req) = control_rx.recv().await {
            let reply = match req.request {
                lppsp_runtime::control::Request::Status => answer.clone(),
                _ => serde_json::json!({"grant": "1000000", "balances": [], "receipts": []}),
            };
            let _ = req.reply.send(reply).await;
        }
    });
    let listener = runtime
        .block_on(lppsp_dashboard::bind("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(lppsp_dashboard::serve(
        listener,
        control_tx,
        Duration::from_millis(200),
        None,
        shutdown.clone(),
    ));
    wait_for(Duration::from_secs(10), || {
        http_get(addr, "/api/status").is_some_and(|(code, _)| code == 200)
    })
    .expect("the dashboard serves the status");

    let profile = tempfile::tempdir().unwrap();
    let dom = run_chromium(
        &browser,
        profile.path(),
        &["--virtual-time-budget=3000", "--dump-dom"],
        &format!("http://{addr}/"),
    );
    let f = |k: &str| fit[k].as_f64().unwrap();
    let used = state["usable_samples"].as_u64().unwrap();
    let skipped = state["samples"].as_u64().unwrap() - used;
    assert!(skipped >= 1, "{state:#}");
    for (id, value) in [
        ("balancer-kind", "ml".to_string()),
        ("committed-price", "2".to_string()),
        ("committed-epoch", "5".to_string()),
        ("committed-proposer", "a1b2c3d4e5f60708".to_string()),
        ("votes-cast", "7".to_string()),
        ("rounds-adopted", "2 / 1".to_string()),
        ("fit-clearing", format!("{:.4}", f("clearing_price"))),
        ("fit-used", used.to_string()),
        ("fit-skipped", skipped.to_string()),
        ("fit-distinct", state["distinct_prices"].to_string()),
        ("fit-reason", html_text(state["reason"].as_str().unwrap())),
        ("restored", "epoch 4 at 1.9".to_string()),
        (
            "commits",
            "epoch 5 at 2 (t=90 s), epoch 4 at 1.9 (t=60 s)".to_string(),
        ),
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\">{value}<")),
            "balancer panel: {id} is not {value}:\n{dom}"
        );
    }
    for side in ["demand", "supply"] {
        let row = format!(
            "<td>{side}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td>",
            f(&format!("{side}_elasticity")),
            f(&format!("{side}_r2"))
        );
        assert!(dom.contains(&row), "no {row} in:\n{dom}");
    }
    if let Some(price) = state["last_proposal"]["price"].as_str() {
        assert!(
            dom.contains(&format!("id=\"fit-proposal\">{price}<")),
            "{dom}"
        );
    }
    assert!(
        dom.contains(&format!(
            "id=\"balancer-describe\">{}<",
            html_text(&ml.describe())
        )),
        "{dom}"
    );

    let shot = artifacts_dir().join("dashboard-ml.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &browser,
        profile.path(),
        &[
            "--virtual-time-budget=3000",
            "--window-size=1280,900",
            &format!("--screenshot={}", shot.display()),
        ],
        &format!("http://{addr}/"),
    );
    assert!(std::fs::read(&shot).is_ok_and(|png| png.starts_with(b"\x89PNG")));
    println!("balancer panel screenshot: {}", shot.display());

    // /metrics serves the same figures.
    let (code, text) = http_get(addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    for (series, value) in [
        ("lppsp_balancer_fit_r2{side=\"demand\"}", f("demand_r2")),
        ("lppsp_balancer_fit_r2{side=\"supply\"}", f("supply_r2")),
        (
            "lppsp_balancer_elasticity{side=\"demand\"}",
            f("demand_elasticity"),
        ),
        (
            "lppsp_balancer_elasticity{side=\"supply\"}",
            f("supply_elasticity"),
        ),
        ("lppsp_balancer_clearing_price", f("clearing_price")),
        ("lppsp_balancer_samples{kind=\"used\"}", used as f64),
        ("lppsp_balancer_samples{kind=\"skipped\"}", skipped as f64),
        ("lppsp_epoch", 5.0),
        ("lppsp_market_proposer{proposer=\"a1b2c3d4e5f60708\"}", 1.0),
        ("lppsp_reconciliations_total", 1.0),
    ] {
        assert_eq!(
            metric_value(&text, series),
            Some(value),
            "{series}:\n{text}"
        );
    }
    shutdown.cancel();
}
