//! Faults and adversaries on real node processes: peers holding a valid
//! community certificate that send malformed frames, oversized lines and
//! chunks, a byte at a time, or flood the node with connections. Each is
//! detected, counted in status and refused, while an honest client's job
//! on the same cluster completes with the exact result.
//!
//! Forged, unsigned, replayed and foreign-CA beacons are tests/trust.rs.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TCP connection to `to` from the loopback address `from` (127.0.0.x:
/// each is its own source address to the node's per-address cap).
fn tcp_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(IpAddr::V4(from), 0).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// A peer holding `name`'s community certificate, speaking raw bytes over
/// TLS: it passes the handshake like any member.
struct RawPeer {
    config: Arc<rustls::ClientConfig>,
}

impl RawPeer {
    fn new(community: &Community, name: &str) -> Self {
        let identity = member_identity(community, name);
        let config = lppsp_transport_tls::transport::client_config(&identity).unwrap();
        Self { config }
    }

    /// A TLS session to `to` from `from`, handshake done.
    fn connect(&self, from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TlsStream> {
        let tcp = tcp_from(from, to)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let name = lppsp_transport_tls::transport::server_name().unwrap();
        let conn = rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(std::io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }
}

/// Whether the node closed `stream` within `within` (end of stream or an
/// error other than our read timeout).
fn closed_by_node(stream: &mut TlsStream, within: Duration) -> bool {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    let _ = stream
        .sock
        .set_read_timeout(Some(Duration::from_millis(200)));
    while t.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

fn counter(node: &NodeProc, name: &str) -> u64 {
    node.status()["transport_counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no transport counter {name}"))
}

/// Open file descriptors of a process (sockets included).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

const TRANSPORT_OPTIONS: &str = r#"
[transport]
kind = "tls-tcp"

[transport.options]
frame_timeout_ms = 2000
handshake_timeout_ms = 3000
max_connections_per_ip = 16
max_connections = 200
"#;

/// A W2 job the honest client runs while the adversaries act: (exit
/// status, last event).
fn honest_w2(client: &NodeProc, range: u64, samples: u64) -> (bool, serde_json::Value) {
    let control = client.ports.control_addr().to_string();
    let out = submit_command(&control)
        .args(w2_args(range, samples))
        .output()
        .unwrap();
    (out.status.success(), last_event(&out.stdout))
}

#[test]
fn bad_frames_slow_peers_and_floods_are_refused_while_honest_work_goes_on() {
    let community = Community::new();
    let nodes = client_and_computes(2);
    let procs = start_cluster_with(&community, &nodes, |_, _| TRANSPORT_OPTIONS.into());
    procs[0]
        .wait_for_compute_peers(2, Duration::from_secs(5))
        .expect("client sees both compute nodes");
    let target = &procs[1];
    let target_addr = SocketAddr::from(([127, 0, 0, 1], target.ports.tls));
    let target_pid = target.child.as_ref().unwrap().id();
    let mallory = RawPeer::new(&community, "mallory");
    let local = Ipv4Addr::new(127, 0, 0, 1);

    let (range, samples) = (300u64, 2_000_000u64);
    std::thread::scope(|s| {
        let honest = s.spawn(|| honest_w2(&procs[0], range, samples));

        // A frame that breaks the framing: the connection is closed.
        let mut c = mallory.connect(local, target_addr).unwrap();
        c.write_all(b"HELLO WORLD\r\n\r\n").unwrap();
        c.flush().unwrap();
        assert!(closed_by_node(&mut c, Duration::from_secs(10)), "malformed");
        assert!(counter(target, "malformed") >= 1);

        // A well-framed message the node cannot use: skipped and counted,
        // the connection kept.
        let mut c = mallory.connect(local, target_addr).unwrap();
        c.write_all(b"LPPSP/1\r\nNoSuchMessage/1/2\r\n\r\n")
            .unwrap();
        c.flush().unwrap();
        wait_for(Duration::from_secs(5), || {
            counter(target, "bad_frames") >= 1
        })
        .expect("bad frame counted");
        assert!(!closed_by_node(&mut c, Duration::from_millis(500)));

        // A line over `limits.max_line`.
        let mut c = mallory.connect(local, target_addr).unwrap();
        let mut long = b"LPPSP/1\r\nTask/".to_vec();
        long.extend(std::iter::repeat_n(b'a', 20_000));
        let _ = c.write_all(&long);
        let _ = c.flush();
        assert!(closed_by_node(&mut c, Duration::from_secs(10)), "long line");

        // A chunk over `limits.max_chunk` (0x2000000 = 32 MiB > 16 MiB):
        // refused at its size line, before any of its data is read.
        let mut c = mallory.connect(local, target_addr).unwrap();
        c.write_all(
            b"LPPSP/1\r\nTask/5d1e7a3900c2b4f8/0/w1-sum-squares\r\n\
              Transfer-Encoding: chunked\r\n\r\n2000000\r\n",
        )
        .unwrap();
        c.flush().unwrap();
        assert!(closed_by_node(&mut c, Duration::from_secs(10)), "big chunk");
        wait_for(Duration::from_secs(5), || counter(target, "oversized") >= 2)
            .expect("long line and big chunk counted as oversized");

        // Slowloris: one byte every 200 ms; the frame deadline (2 s) ends it.
        let mut c = mallory.connect(local, target_addr).unwrap();
        let started = Instant::now();
        let mut closed = false;
        for byte in b"LPPSP/1\r\nIdle/1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if c.write_all(&[*byte]).and_then(|_| c.flush()).is_err()
                || closed_by_node(&mut c, Duration::from_millis(200))
            {
                closed = true;
                break;
            }
        }
        let held = started.elapsed();
        assert!(closed, "a slowloris peer kept its connection for {held:?}");
        assert!(counter(target, "slow_frames") >= 1);
        eprintln!("slowloris connection closed after {held:?}");

        // A flood: 150 plain TCP connections from 127.0.0.2 and 40 TLS
        // sessions from 127.0.0.3, all held open.
        let fds_before = open_fds(target_pid);
        let over_before = counter(target, "connections_over_limit");
        let mut held_tcp = Vec::new();
        for _ in 0..150 {
            if let Ok(t) = tcp_from(Ipv4Addr::new(127, 0, 0, 2), target_addr) {
                held_tcp.push(t);
            }
        }
        let mut held_tls = Vec::new();
        for _ in 0..40 {
            if let Ok(t) = mallory.connect(Ipv4Addr::new(127, 0, 0, 3), target_addr) {
                held_tls.push(t);
            }
        }
        wait_for(Duration::from_secs(10), || {
            counter(target, "connections_over_limit") >= over_before + 150 - 16
        })
        .expect("connections over the per-address cap refused");
        let fds_flood = open_fds(target_pid);
        eprintln!(
            "flood: {} TCP and {} TLS connections held; node fds {fds_before} -> {fds_flood}; over limit {}",
            held_tcp.len(),
            held_tls.len(),
            counter(target, "connections_over_limit") - over_before
        );
        assert!(
            fds_flood <= fds_before + 2 * 16 + 8,
            "the node holds at most 16 connections per address: {fds_before} -> {fds_flood}"
        );

        let (ok, last) = honest.join().unwrap();
        assert_exact_w2(ok, &last, range, samples);
        // Both compute nodes took part, the attacked one too.
        let placed = last["nodes"].as_object().unwrap();
        assert_eq!(placed.len(), 2, "{last}");
        drop(held_tcp);
        drop(held_tls);
    });

    // Afterwards the attacked node still serves honest work.
    let (ok, last) = honest_w2(&procs[0], 100, 1_000_000);
    assert_exact_w2(ok, &last, 100, 1_000_000);
    let status = target.status();
    eprintln!("counters: {}", status["transport_counters"]);
}

/// `lppsp ledger --csv` of a node: its receipts, one line each.
fn ledger_lines(node: &NodeProc) -> Vec<String> {
    let control = node.ports.control_addr().to_string();
    let out = Command::new(bin())
        .args(["ledger", "--control", &control, "--csv"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ledger of {}", node.name);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// The receipts in `lines` whose payee (third column) is `payee`.
fn paid_to(lines: &[String], payee: &str) -> std::collections::BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l.split(',').nth(2) == Some(payee))
        .cloned()
        .collect()
}

#[test]
fn compute_nodes_killed_mid_job_lose_nothing_over_20_rounds() {
    const ROUNDS: usize = 20;
    let community = Community::new();
    let nodes = client_and_computes(3);
    let mut procs = start_cluster(&community, &nodes);
    let see_all = |client: &NodeProc| {
        client
            .wait_for_compute_peers(3, Duration::from_secs(15))
            .is_some()
    };
    assert!(see_all(&procs[0]), "client sees the three compute nodes");
    let control = procs[0].ports.control_addr().to_string();
    let (range, samples) = (40u64, 2_000_000u64);
    let hits: u64 = w2_hits_total(range, samples);
    // A task sent just as its node dies can go unnoticed until the task
    // time-out places it again (docs/reliability.md): keep that bounded.
    let mut args = w2_args(range, samples).to_vec();
    args.extend(["--task-timeout".into(), "15".into()]);
    let mut kills = 0;
    for round in 0..ROUNDS {
        let victim = 1 + round % 3;
        let (killed, status, last) =
            submit_acting_at(&control, &args, 5, || procs[victim].signal(SIGKILL));
        kills += usize::from(killed);
        assert!(status.success(), "round {round}: {last}");
        assert!(
            last["result"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("{hits} hits")),
            "round {round}: {last}"
        );
        assert_eq!(last["progress"]["done"], range, "round {round}: {last}");
        // Each task counted once: the nodes' counts add up to the range.
        let counted: u64 = tasks_done_by_nodes(&last);
        assert_eq!(counted, range, "round {round}: {last}");
        // Restart the victim with its data (its ledger) and wait for it.
        procs[victim].wait_exit(Duration::from_secs(5));
        let cfg = community.dir.path().join(format!("compute-{victim}.toml"));
        let ports = procs[victim].ports;
        procs[victim] = NodeProc::start(&cfg, &format!("compute-{victim}"), ports);
        procs[victim].wait_ready(Duration::from_secs(20));
        assert!(see_all(&procs[0]), "round {round}: the victim is back");
    }
    assert!(kills >= ROUNDS / 2, "only {kills} kills landed mid-job");

    // Every receipt on both sides: what the client's ledger says it paid
    // each node is exactly what that node's ledger holds from it (unacked
    // receipts are sent again, so a node killed before it got one gets it
    // after its restart).
    let ids: Vec<String> = procs.iter().map(|p| p.id()).collect();
    let agreed = wait_for(Duration::from_secs(60), || {
        let client = ledger_lines(&procs[0]);
        (1..=3).all(|i| {
            let mine = paid_to(&ledger_lines(&procs[i]), &ids[i]);
            !mine.is_empty() && paid_to(&client, &ids[i]) == mine
        }) && procs[0].status()["balance"]["unsettled"] == "0"
    });
    let client = ledger_lines(&procs[0]);
    for i in 1..=3 {
        eprintln!(
            "compute-{i}: {} receipts at the client, {} at the node",
            paid_to(&client, &ids[i]).len(),
            paid_to(&ledger_lines(&procs[i]), &ids[i]).len()
        );
    }
    assert!(agreed.is_some(), "payer and payee ledgers differ");
    eprintln!(
        "{ROUNDS} rounds, {kills} SIGKILLs mid-job, {} receipts",
        client.len()
    );
}

/// Peak resident memory (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_hundred_thousand_tasks_while_nodes_join_and_leave() {
    use std::io::{BufRead, BufReader};
    const TASKS: u64 = 100_000;
    let community = Community::new();
    let nodes = client_and_computes(4);
    let mut procs = start_cluster(&community, &nodes);
    // compute-4 joins mid-job: stopped before the job starts.
    procs[4].signal(SIGKILL);
    procs[4].wait_exit(Duration::from_secs(5));
    procs[0]
        .wait_for_compute_peers(3, Duration::from_secs(10))
        .expect("client sees compute-1..3");
    let client_pid = procs[0].child.as_ref().unwrap().id();
    let control = procs[0].ports.control_addr().to_string();
    let range = format!("0..{TASKS}");
    let mut child = submit_command(&control)
        .args(["--kernel", "w1-sum-squares", "--range", &range])
        .args(["--task-timeout", "30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // (tasks done, what happens): a join, a graceful leave, a crash.
    let mut plan = vec![
        (20_000u64, "compute-4 joins"),
        (45_000, "compute-2 leaves (SIGTERM)"),
        (70_000, "compute-3 crashes (SIGKILL)"),
    ];
    plan.reverse();
    let mut done_events = Vec::new();
    let mut last = serde_json::Value::Null;
    for line in BufReader::new(stdout).lines() {
        let ev: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let done = ev["progress"]["done"].as_u64().unwrap_or(0);
        while plan.last().is_some_and(|(at, _)| done >= *at) {
            let Some((at, what)) = plan.pop() else { break };
            match at {
                20_000 => {
                    let cfg = community.dir.path().join("compute-4.toml");
                    let ports = procs[4].ports;
                    procs[4] = NodeProc::start(&cfg, "compute-4", ports);
                }
                45_000 => procs[2].signal(SIGTERM),
                _ => procs[3].signal(SIGKILL),
            }
            done_events.push(format!("{what} at {done} done"));
        }
        last = ev;
    }
    let status = child.wait().unwrap();
    let peak_kib = peak_rss_kib(client_pid);
    eprintln!("{}", done_events.join("; "));
    eprintln!(
        "{TASKS} tasks; client node peak RSS {} MiB; nodes {}",
        peak_kib / 1024,
        last["nodes"]
    );
    assert!(status.success(), "{last}\n{}", procs[0].log_text());
    let expected = (0..TASKS).fold(0u64, |a, i| {
        a.wrapping_add(lppsp_executor_builtin::w1_value(i))
    });
    assert_eq!(last["result"], expected.to_string(), "{last}");
    assert_eq!(last["progress"]["done"], TASKS, "{last}");
    // None lost, none counted twice.
    let counted: u64 = tasks_done_by_nodes(&last);
    assert_eq!(counted, TASKS, "{last}");
    assert!(plan.is_empty(), "the job ended before every join and leave");
    assert!(
        peak_kib < 500 * 1024,
        "client node peak RSS {} MiB",
        peak_kib / 1024
    );
}

#[test]
fn a_client_that_never_pays_is_refused_and_honest_clients_still_get_work() {
    let community = Community::new();
    // A small grant, so the tolerance (1% of it plus one unit) is soon
    // exceeded; the deadbeat never settles its charges into receipts.
    let procs = two_clients_two_computes(&community, ["honest", "deadbeat"], |i| {
        let settle = if i == 1 { "settle = false\n" } else { "" };
        format!("grant = \"1000\"\n{settle}")
    });
    let (range, samples) = (100u64, 2_000_000u64);
    // The deadbeat's first job runs: nobody knows yet that it will not pay.
    let (ok, last) = honest_w2(&procs[1], range, samples);
    assert_exact_w2(ok, &last, range, samples);
    // The honest client's jobs are a twentieth of the size: two of them must
    // fit in its grant of 1000 whatever this machine's speed. Charges grow
    // with wall time, and at a quarter of the size a loaded run (two CPU
    // burners beside the whole suite) spent the grant, after which every
    // compute node refused the honest client too.
    let honest_samples = samples / 20;
    let (ok, last) = honest_w2(&procs[0], range, honest_samples);
    assert_exact_w2(ok, &last, range, honest_samples);

    // After the grace period (30 s) both compute nodes refuse it.
    let refused = wait_for(Duration::from_secs(90), || {
        procs[2..]
            .iter()
            .all(|n| n.log_text().contains("it does not pay for tasks run"))
    });
    assert!(
        refused.is_some(),
        "compute nodes did not refuse the deadbeat"
    );
    eprintln!("deadbeat refused {:?} after its job", refused.unwrap());
    assert_next_job_only_refused(&procs[1], &procs[2..]);

    // The honest client still gets work, exactly.
    let (ok, last) = honest_w2(&procs[0], range, honest_samples);
    assert_exact_w2(ok, &last, range, honest_samples);
}

/// Two clients (the names given) and two compute nodes, each with the
/// `[market]` lines `market(i)` gives; returns once both clients see both
/// compute nodes.
fn two_clients_two_computes(
    community: &Community,
    clients: [&str; 2],
    market: impl Fn(usize) -> String,
) -> Vec<NodeProc> {
    let nodes = [
        (clients[0], "client"),
        (clients[1], "client"),
        ("compute-1", "compute"),
        ("compute-2", "compute"),
    ];
    let procs = start_cluster_with(community, &nodes, |i, _| {
        format!("\n[market]\n{}", market(i))
    });
    for client in &procs[..2] {
        client
            .wait_for_compute_peers(2, Duration::from_secs(10))
            .expect("clients see both compute nodes");
    }
    procs
}

/// `client`, refused work, submits a job: every node of `computes` refuses
/// its tasks (`cannot-pay`), none of them runs, and the submit does not
/// succeed (it is stopped once the refusals are seen).
fn assert_next_job_only_refused(client: &NodeProc, computes: &[NodeProc]) {
    let refused = || -> Vec<u64> {
        computes
            .iter()
            .map(|n| n.status()["compute"]["tasks_refused"].as_u64().unwrap())
            .collect()
    };
    let before = refused();
    let control = client.ports.control_addr().to_string();
    let mut job = submit_command(&control)
        .args(["--kernel", "w2-monte-carlo-pi", "--range", "0..20"])
        .args(["--extra", "1000000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let each_refused = wait_for(Duration::from_secs(20), || {
        refused().iter().zip(&before).all(|(now, was)| now > was)
    });
    let finished = job.try_wait().unwrap();
    let _ = job.kill();
    let _ = job.wait();
    assert!(
        each_refused.is_some(),
        "its tasks were not refused by every compute node"
    );
    assert!(
        finished.is_none_or(|s| !s.success()),
        "the refused client's job completed"
    );
    // Nothing of it ran: every placement was refused.
    let jobs = client.status()["jobs"]["list"].clone();
    let running = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["state"] == "running")
        .unwrap_or_else(|| panic!("{jobs}"));
    assert_eq!(running["progress"]["done"], 0, "{running}");
    let placements = running["placements"].as_object().unwrap();
    assert!(
        !placements.is_empty()
            && placements
                .values()
                .all(|p| p["refused"].as_u64() > Some(0) && p["tasks_done"] == 0),
        "{running}"
    );
}

#[test]
fn a_client_claiming_more_bounty_than_the_ledger_shows_gets_no_work() {
    let community = Community::new();
    // The community's grant is 1000; one client's config says 100000, so
    // its Hand claims about 100 times what every ledger gives it.
    let procs = two_clients_two_computes(&community, ["inflated", "honest"], |i| {
        let grant = if i == 0 { "100000" } else { "1000" };
        format!("grant = \"{grant}\"\n")
    });
    let refused = wait_for(Duration::from_secs(15), || {
        procs[2..]
            .iter()
            .all(|n| n.log_text().contains("claims more bounty than it has"))
    });
    assert!(
        refused.is_some(),
        "compute nodes did not refuse the inflated claim"
    );
    assert_next_job_only_refused(&procs[0], &procs[2..]);
    for n in &procs[2..] {
        assert_eq!(
            n.status()["compute"]["tasks_done"],
            0,
            "{} ran a task for it",
            n.name
        );
    }

    // A client whose claim matches the ledger gets its work done, exactly.
    let (range, samples) = (20u64, 500_000u64);
    let (ok, last) = honest_w2(&procs[1], range, samples);
    assert_exact_w2(ok, &last, range, samples);
}

/// A TCP proxy on 127.0.0.1 that forwards to `to`, delaying every byte by
/// `delay` each way (a delay line: latency added, throughput kept).
/// Returns its port; it runs until the test process ends.
fn delaying_proxy(to: SocketAddr, delay: Duration) -> u16 {
    use std::net::TcpListener;
    use std::sync::mpsc;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pipe = move |mut from: TcpStream, mut into: TcpStream| {
        let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0
                    || tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for (due, bytes) in rx {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                if into.write_all(&bytes).is_err() {
                    break;
                }
            }
            let _ = into.shutdown(std::net::Shutdown::Both);
        });
    };
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            let Ok(outbound) = TcpStream::connect(to) else {
                continue;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (Ok(in2), Ok(out2)) = (inbound.try_clone(), outbound.try_clone()) else {
                continue;
            };
            pipe(inbound, out2);
            pipe(outbound, in2);
        }
    });
    port
}

#[test]
fn tasks_and_price_rounds_go_on_with_50_ms_of_added_delay() {
    let community = Community::new();
    let names = [
        ("client", "client"),
        ("compute-1", "compute"),
        ("compute-2", "compute"),
    ];
    let ports: Vec<Ports> = names.iter().map(|_| Ports::free()).collect();
    let delay = Duration::from_millis(50);
    let mut procs = Vec::new();
    for (i, (name, role)) in names.iter().enumerate() {
        community.issue(name);
        let peers: Vec<Ports> = (0..names.len())
            .filter(|j| *j != i)
            .map(|j| ports[j])
            .collect();
        let cfg = write_config(
            community.dir.path(),
            &community.ca_dir(),
            name,
            role,
            ports[i],
            &peers,
        );
        // Every node is reached through a proxy adding 50 ms each way.
        let proxy = delaying_proxy(SocketAddr::from(([127, 0, 0, 1], ports[i].tls)), delay);
        let text = std::fs::read_to_string(&cfg).unwrap().replacen(
            "[network]\n",
            &format!("[network]\nadvertise = \"127.0.0.1:{proxy}\"\n"),
            1,
        );
        std::fs::write(&cfg, text).unwrap();
        procs.push(NodeProc::start(&cfg, name, ports[i]));
    }
    for p in &procs {
        p.wait_ready(Duration::from_secs(20));
    }
    wait_for(Duration::from_secs(10), || {
        procs.iter().all(|p| p.peer_ids().len() == 2)
    })
    .expect("discovery");
    let (range, samples) = (100u64, 2_000_000u64);
    let (ok, last) = honest_w2(&procs[0], range, samples);
    assert_exact_w2(ok, &last, range, samples);
    assert_eq!(
        last["nodes"].as_object().map(|n| n.len()),
        Some(2),
        "{last}"
    );
    // Price rounds went over the delayed links: every node holds one price.
    let one_price = wait_for(Duration::from_secs(30), || {
        let prices: Vec<serde_json::Value> = procs
            .iter()
            .map(|p| p.status()["market"]["price"].clone())
            .collect();
        prices.iter().all(|p| *p == prices[0])
    });
    assert!(one_price.is_some(), "nodes disagree on the price");
    eprintln!(
        "50 ms delay: job exact in {}s, price {}, epoch {}",
        last["elapsed_s"],
        procs[0].status()["market"]["price"],
        procs[0].status()["market"]["epoch"]
    );
}

#[test]
fn verify_outvotes_a_node_returning_wrong_results() {
    let community = Community::new();
    let nodes = [
        ("client", "client"),
        ("compute-1", "compute"),
        ("compute-2", "compute"),
        ("liar", "compute"),
    ];
    // The liar loads a test fixture library: the builtin kernels with a
    // byte of every result moved by one.
    let lying = build_plugins(&[(
        "lppsp-plugin-fixture-lying-executor",
        "lppsp_plugin_fixture_lying_executor",
    )])
    .join(lib_file("lppsp_plugin_fixture_lying_executor"));
    let procs = start_cluster_with(&community, &nodes, |i, _| {
        if i == 3 {
            format!(
                "\n[executor]\nkind = \"plugin\"\npath = \"{}\"\n",
                lying.display()
            )
        } else {
            String::new()
        }
    });
    procs[0]
        .wait_for_compute_peers(3, Duration::from_secs(10))
        .expect("client sees the three compute nodes");
    let liar = procs[3].id();
    let control = procs[0].ports.control_addr().to_string();
    let (range, samples) = (60u64, 1_000_000u64);

    // Without verification the liar's results spoil the job.
    let plain = submit_command(&control)
        .args(w2_args(range, samples))
        .output()
        .unwrap();
    let plain_last = last_event(&plain.stdout);
    let hits: u64 = w2_hits_total(range, samples);
    let liar_ran = plain_last["nodes"][&liar]["tasks_done"]
        .as_u64()
        .unwrap_or(0);
    if liar_ran > 0 {
        assert!(
            !plain_last["result"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("{hits} hits")),
            "the liar ran {liar_ran} tasks yet the result is right: {plain_last}"
        );
    }

    // With --verify 2 the result is exact and the liar is excluded.
    let out = submit_command(&control)
        .args(["--verify", "2"])
        .args(w2_args(range, samples))
        .output()
        .unwrap();
    let last = last_event(&out.stdout);
    assert!(out.status.success(), "{last}\n{}", procs[0].log_text());
    assert!(
        last["result"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("{hits} hits")),
        "{last}"
    );
    let disagreed = last["nodes"][&liar]["disagreed"].as_u64().unwrap_or(0);
    assert!(disagreed >= 1, "the liar was not caught: {last}");
    for honest in [procs[1].id(), procs[2].id()] {
        assert_eq!(last["nodes"][&honest]["disagreed"], 0, "{last}");
    }
    eprintln!(
        "verify 2: exact; liar ran {} replicas, disagreed {disagreed} times; unverified job: liar ran {liar_ran} tasks",
        last["nodes"][&liar]["tasks_done"]
    );
}

fn unfinished_jobs(node: &NodeProc) -> Vec<String> {
    node.status()["jobs"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == "unfinished")
        .map(|j| j["job"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_client_killed_mid_job_lists_it_after_restart_and_resumes_it() {
    let community = Community::new();
    let nodes = client_and_computes(2);
    let mut procs = start_cluster(&community, &nodes);
    let see_both = |client: &NodeProc| {
        client
            .wait_for_compute_peers(2, Duration::from_secs(15))
            .is_some()
    };
    assert!(see_both(&procs[0]));
    let control = procs[0].ports.control_addr().to_string();
    let (range, samples) = (150u64, 2_000_000u64);
    let args = w2_args(range, samples);
    let (killed, status, last) = submit_acting_at(&control, &args, 60, || procs[0].signal(SIGKILL));
    assert!(killed, "the job ended before the kill: {last}");
    assert!(
        !status.success(),
        "submit succeeded without its node: {last}"
    );

    // Started again on the same data, the client lists the job.
    procs[0].wait_exit(Duration::from_secs(5));
    let cfg = community.dir.path().join("client.toml");
    let ports = procs[0].ports;
    procs[0] = NodeProc::start(&cfg, "client", ports);
    procs[0].wait_ready(Duration::from_secs(20));
    let unfinished = unfinished_jobs(&procs[0]);
    assert_eq!(unfinished.len(), 1, "{}", procs[0].status()["jobs"]);
    assert!(see_both(&procs[0]));

    // `lppsp submit --resume JOB` runs it again to the exact result.
    let out = submit_command(&control)
        .args(["--resume", &unfinished[0]])
        .output()
        .unwrap();
    let events: Vec<serde_json::Value> = json_events(&out.stdout);
    let last = events.last().cloned().unwrap_or_default();
    assert!(out.status.success(), "{last}\n{}", procs[0].log_text());
    assert_eq!(
        events[0]["resumed"],
        unfinished[0].as_str(),
        "{}",
        events[0]
    );
    assert_exact_w2(true, &last, range, samples);
    assert!(unfinished_jobs(&procs[0]).is_empty());
    // Results that reached the journal before the kill (it was at 60 done)
    // are not run or paid for again: the nodes ran only the rest.
    let restored = events[0]["restored"].as_u64().unwrap_or_default();
    assert!((1..=range).contains(&restored), "{}", events[0]);
    let ran: u64 = tasks_done_by_nodes(&last);
    assert_eq!(ran, range - restored, "{last}");
    eprintln!("resumed: {restored} results kept, {ran} tasks run again");

    // An unknown job is refused with a reason.
    let out = submit_command(&control)
        .args(["--resume", "00000000000000ff"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no unfinished job"));
}
