//! Issue: only members get in. Forged, unsigned, replayed and foreign-CA
//! beacons never enter a book and are counted; a foreign-CA node cannot
//! open a TLS connection to a member.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

fn drops(n: &NodeProc, reason: &str) -> u64 {
    n.status()["dropped_beacons"][reason].as_u64().unwrap()
}

/// Receives datagrams until one starts with `LPPSP/` and holds `kind/`.
fn capture(sock: &UdpSocket, kind: &str) -> Vec<u8> {
    let mut buf = [0u8; 8192];
    for _ in 0..50 {
        let (n, _) = sock
            .recv_from(&mut buf)
            .expect("a beacon within the timeout");
        let d = buf[..n].to_vec();
        if String::from_utf8_lossy(&d).contains(&format!("\r\n{kind}/")) {
            return d;
        }
    }
    panic!("no {kind} beacon captured");
}

#[test]
fn replayed_forged_and_unsigned_beacons_are_dropped_and_counted() {
    let community = Community::new();
    community.issue("alice");
    community.issue("bob");
    let (pa, pb) = (Ports::free(), Ports::free());
    // A listener that alice also beacons to, to capture real beacons.
    let spy = UdpSocket::bind("127.0.0.1:0").unwrap();
    spy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let spy_port = spy.local_addr().unwrap().port();
    let spy_ports = Ports {
        tls: 1,
        beacon: spy_port,
        control: std::path::Path::new(""),
        dashboard: 1,
    };
    let dir = community.dir.path();
    let ca = community.ca_dir();
    let cfg_a = write_config(dir, &ca, "alice", "both", pa, &[pb, spy_ports]);
    let cfg_b = write_config(dir, &ca, "bob", "both", pb, &[pa]);
    let mut alice = NodeProc::start(&cfg_a, "alice", pa);
    let bob = NodeProc::start(&cfg_b, "bob", pb);
    alice.wait_ready(Duration::from_secs(20));
    bob.wait_ready(Duration::from_secs(20));
    let alice_id = alice.id();
    wait_for(Duration::from_secs(3), || {
        bob.peer_ids().contains(&alice_id)
    })
    .expect("bob sees alice");

    let hand = capture(&spy, "Hand");
    let bob_beacons = format!("127.0.0.1:{}", pb.beacon);

    // Replay while alice is alive: its sequence number is old.
    let before = drops(&bob, "replayed");
    spy.send_to(&hand, &bob_beacons).unwrap();
    wait_for(Duration::from_secs(2), || drops(&bob, "replayed") > before).expect("replay counted");

    // Forged: change one digit of the processing power in the signed part.
    let text = String::from_utf8(hand.clone()).unwrap();
    let line = text.lines().nth(1).unwrap().to_string();
    let mut fields: Vec<String> = line.split('/').map(str::to_string).collect();
    fields[2] = format!("{}", fields[2].parse::<u64>().unwrap() + 1);
    let forged = text.replacen(&line, &fields.join("/"), 1);
    // Also bump Seq so it is not dropped as a replay first.
    let seq_line = text
        .lines()
        .find(|l| l.starts_with("Seq: "))
        .unwrap()
        .to_string();
    let seq: u64 = seq_line[5..].parse().unwrap();
    let forged = forged.replacen(&seq_line, &format!("Seq: {}", seq + 1_000_000), 1);
    let before = drops(&bob, "bad_signature");
    spy.send_to(forged.as_bytes(), &bob_beacons).unwrap();
    wait_for(Duration::from_secs(2), || {
        drops(&bob, "bad_signature") > before
    })
    .expect("forgery counted");

    // Unsigned: the Sig line removed.
    let unsigned: String = text
        .split("\r\n")
        .filter(|l| !l.starts_with("Sig: "))
        .collect::<Vec<_>>()
        .join("\r\n");
    let before = drops(&bob, "unsigned");
    spy.send_to(unsigned.as_bytes(), &bob_beacons).unwrap();
    wait_for(Duration::from_secs(2), || drops(&bob, "unsigned") > before)
        .expect("unsigned counted");

    // Garbage.
    let before = drops(&bob, "malformed");
    spy.send_to(b"\x00\xffnot a frame at all", &bob_beacons)
        .unwrap();
    wait_for(Duration::from_secs(2), || drops(&bob, "malformed") > before)
        .expect("malformed counted");

    // After alice leaves, her captured Hand must not bring her back.
    alice.signal(SIGTERM);
    wait_for(Duration::from_secs(2), || {
        !bob.peer_ids().contains(&alice_id)
    })
    .expect("alice left");
    alice.wait_exit(Duration::from_secs(5));
    let before = drops(&bob, "replayed");
    spy.send_to(&hand, &bob_beacons).unwrap();
    wait_for(Duration::from_secs(2), || drops(&bob, "replayed") > before)
        .expect("replay after leave counted");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !bob.peer_ids().contains(&alice_id),
        "a replayed Hand brought alice back"
    );
    // Bob is still healthy.
    assert!(bob.status()["node"]["id"].is_string());
}

#[test]
fn foreign_ca_node_never_enters_a_book() {
    let members = Community::new();
    let outsiders = Community::new();
    members.issue("member");
    outsiders.issue("intruder");
    let (pm, pi) = (Ports::free(), Ports::free());
    let cfg_m = write_config(
        members.dir.path(),
        &members.ca_dir(),
        "member",
        "both",
        pm,
        &[pi],
    );
    let cfg_i = write_config(
        outsiders.dir.path(),
        &outsiders.ca_dir(),
        "intruder",
        "both",
        pi,
        &[pm],
    );
    let member = NodeProc::start(&cfg_m, "member", pm);
    let intruder = NodeProc::start(&cfg_i, "intruder", pi);
    member.wait_ready(Duration::from_secs(20));
    intruder.wait_ready(Duration::from_secs(20));
    wait_for(Duration::from_secs(4), || drops(&member, "foreign_ca") >= 2)
        .expect("foreign beacons counted");
    assert!(
        member.peer_ids().is_empty(),
        "intruder entered the book: {:?}",
        member.peer_ids()
    );
    assert!(
        intruder.peer_ids().is_empty(),
        "member entered the intruder's book"
    );
}
