//! A member running modified software against the market, on real node
//! processes: it holds a real community certificate and sends signed
//! beacons and round messages of its own making (tests/common/rogue_beacon).
//! Each attack is refused and counted (`member_refusals` in status), the
//! attacked node keeps answering, an honest job beside it gives the exact
//! result, the honest nodes' price is what honest rounds give, and their
//! ledgers agree and add up to the grants.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::rogue_beacon::RogueBeacon;
use common::*;
use lppsp_core::money::Price;
use lppsp_core::wire::Message;

/// The honest job beside each attack: W2, 40 tasks.
const TASKS: u64 = 40;
const SAMPLES: u64 = 200_000;

fn refusals(node: &NodeProc, reason: &str) -> u64 {
    node.status()["member_refusals"][reason]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until every honest node lists the other honest ones and the rogue.
fn wait_for_books(procs: &[NodeProc], rogue: &RogueBeacon) {
    let rogue_id = rogue.id.to_string();
    let listed = wait_for(Duration::from_secs(30), || {
        procs.iter().all(|p| {
            let st = p.status();
            let peers = st["peers"].as_array().unwrap();
            peers.len() == procs.len() && peers.iter().any(|x| x["id"] == rogue_id.as_str())
        })
    });
    assert!(
        listed.is_some(),
        "every honest node lists the others and the rogue:\n{}",
        procs[0].log_text()
    );
}

/// The attacked node answers `status` within a second, several times over.
fn assert_answers_at_once(node: &NodeProc) {
    for _ in 0..5 {
        let t = Instant::now();
        let st = node.try_status();
        let took = t.elapsed();
        assert!(st.is_some(), "{} stopped answering", node.name);
        assert!(
            took < Duration::from_secs(1),
            "{} took {took:?} to answer status",
            node.name
        );
    }
}

/// Starts the honest W2 job on the client.
fn start_job(client: &NodeProc) -> std::process::Child {
    submit_command(&client.ports.control_addr().to_string())
        .args(w2_args(TASKS, SAMPLES))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The job ended with the exact result.
fn assert_job_exact(job: std::process::Child) {
    let out = job.wait_with_output().unwrap();
    assert_exact_w2(
        out.status.success(),
        &last_event(&out.stdout),
        TASKS,
        SAMPLES,
    );
}

fn units(v: &serde_json::Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

/// Receipts have spread to every honest node, the ledgers list the same
/// balances, and the balances add up to the grants.
fn assert_ledgers_agree(procs: &[NodeProc]) {
    let settled = wait_for(Duration::from_secs(30), || {
        let st: Vec<serde_json::Value> = procs.iter().map(|p| p.status()).collect();
        let n = st[0]["ledger"]["receipts"].as_u64().unwrap_or(0);
        n >= 1
            && st
                .iter()
                .all(|s| s["ledger"]["receipts"].as_u64() == Some(n))
            && st[0]["balance"]["unsettled"] == "0"
    });
    let st: Vec<serde_json::Value> = procs.iter().map(|p| p.status()).collect();
    assert!(
        settled.is_some(),
        "receipts did not spread: {:#?}",
        st.iter().map(|s| s["ledger"].clone()).collect::<Vec<_>>()
    );
    let first = ledger_balances(&procs[0]);
    for p in &procs[1..] {
        assert_eq!(ledger_balances(p), first, "{} holds other balances", p.name);
    }
    let grant = units(&st[0]["balance"]["grant"]);
    // A node with no receipt yet holds its grant.
    let total: f64 = st
        .iter()
        .map(|s| {
            let b = &s["balance"]["ledger"];
            if b.is_null() {
                grant
            } else {
                units(b)
            }
        })
        .sum();
    assert!(
        (total - grant * procs.len() as f64).abs() < 1e-6,
        "balances add up to the grants: {total} for {} nodes of {grant}",
        procs.len()
    );
}

/// Every honest node holds `price` at `epoch`.
fn assert_price(procs: &[NodeProc], price: &str, epoch: u64) {
    for p in procs {
        let m = p.status()["market"].clone();
        assert_eq!(m["price"], price, "{}: {m}", p.name);
        assert_eq!(m["epoch"], epoch, "{}: {m}", p.name);
    }
}

#[test]
fn a_member_cannot_freeze_or_set_the_price() {
    let community = Community::new();
    let procs = start_cluster(&community, &client_and_computes(2));
    let ports: Vec<u16> = procs.iter().map(|p| p.ports.beacon).collect();
    let rogue = RogueBeacon::new(&community, "rogue", &ports);
    let _alive = rogue.keep_alive(Duration::from_millis(300));
    wait_for_books(&procs, &rogue);
    let job = start_job(&procs[0]);

    // The attack of the issue: a Hand at price 1000 claiming the last
    // epoch there is, a Commit with no round or votes behind it, and
    // Proposes at a far epoch and at a far price, again and again.
    let frozen = Price::from_units(1000).unwrap();
    let attacked = &procs[1];
    let reasons = ["epoch_jump", "unbacked_commit", "price_step"];
    let refused = wait_for(Duration::from_secs(60), || {
        rogue.hand(frozen, (u64::MAX, Some(rogue.id)));
        let round = |epoch| Message::Commit {
            epoch,
            price: frozen,
            proposer: rogue.id,
        };
        rogue.send(frozen, round(1), None, None);
        rogue.send(
            frozen,
            Message::Propose {
                epoch: u64::MAX,
                price: frozen,
                proposer: rogue.id,
            },
            None,
            None,
        );
        rogue.send(
            frozen,
            Message::Propose {
                epoch: 1,
                price: frozen,
                proposer: rogue.id,
            },
            None,
            None,
        );
        procs
            .iter()
            .all(|p| reasons.iter().all(|r| refusals(p, r) >= 1))
    });
    assert!(
        refused.is_some(),
        "every attack refused and counted: {}\n{}",
        attacked.status()["member_refusals"],
        attacked.log_text()
    );
    assert_answers_at_once(attacked);
    // Also in /metrics, per reason, once the dashboard has taken a fresh
    // status.
    let lines: Vec<String> = reasons
        .iter()
        .map(|r| format!("lppsp_member_refusals_total{{reason=\"{r}\"}}"))
        .collect();
    let mut metrics = String::new();
    let exported = wait_for(Duration::from_secs(30), || {
        metrics = http_get(attacked.ports.dashboard_addr(), "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        lines.iter().all(|l| metrics.contains(l.as_str()))
    });
    assert!(exported.is_some(), "{lines:?} missing:\n{metrics}");
    // Logged once per (peer, reason), with the peer's id.
    let log = attacked.log_text();
    assert!(log.contains(&rogue.id.to_string()), "{log}");

    // Honest work went on, and no honest round moved the price (the rogue,
    // a member, never votes, so none can commit): it is the initial one.
    assert_job_exact(job);
    assert_price(&procs, "1", 0);
    assert_ledgers_agree(&procs);
    assert_answers_at_once(attacked);
}

#[test]
fn a_member_cannot_pin_the_pressure() {
    let community = Community::new();
    // A low threshold and a short window: pinned pressure would make the
    // FSM propose within a few ticks.
    let fsm = "\n[balancer]\nkind = \"fsm\"\n\n[balancer.options]\nthreshold_milli = 500\nwindow_ms = 1500\n";
    let procs = start_cluster_with(&community, &client_and_computes(2), |_, _| fsm.to_string());
    let ports: Vec<u16> = procs.iter().map(|p| p.ports.beacon).collect();
    let rogue = RogueBeacon::new(&community, "rogue", &ports);
    let _alive = rogue.keep_alive(Duration::from_millis(300));
    wait_for_books(&procs, &rogue);

    // The rogue says its queue is the largest number there is, every
    // 100 ms, for at least five of the nodes' ticks (sampling included).
    let attacked = &procs[1];
    let pinned = |rogue: &RogueBeacon| {
        rogue.send(
            Price::from_units(1).unwrap(),
            Message::Idle { idle: false },
            None,
            Some(u64::MAX),
        );
    };
    let refused = wait_for(Duration::from_secs(60), || {
        pinned(&rogue);
        std::thread::sleep(Duration::from_millis(100));
        procs.iter().all(|p| refusals(p, "queue_bound") >= 1)
    });
    assert!(
        refused.is_some(),
        "the queue refused and counted: {}\n{}",
        attacked.status()["member_refusals"],
        attacked.log_text()
    );
    // Go on until every node's own clock has run three ticks (1 s each)
    // past that, so each has sampled the market under the attack.
    let uptime = |p: &NodeProc| p.status()["node"]["uptime_ms"].as_u64().unwrap();
    let since: Vec<u64> = procs.iter().map(uptime).collect();
    let sampled = wait_for(Duration::from_secs(60), || {
        pinned(&rogue);
        std::thread::sleep(Duration::from_millis(100));
        procs
            .iter()
            .zip(&since)
            .all(|(p, t)| uptime(p) >= t + 3_500)
    });
    assert!(sampled.is_some());
    // The queue counted is the bounded one, and as the largest report it
    // counts for little: the pressure stays under the threshold, and no
    // FSM proposes.
    for p in &procs {
        let st = p.status();
        let rogue_peer = st["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == rogue.id.to_string().as_str())
            .cloned()
            .unwrap();
        assert!(
            rogue_peer["queue"].as_u64().unwrap() <= 1 << 24,
            "{rogue_peer}"
        );
        // Idle honest nodes report nothing: the rogue's report counts as
        // at most the next largest (0) plus the most slots another node
        // offers (1), over four nodes.
        let m = &st["market"];
        assert!(m["demand_tasks"].as_u64().unwrap() <= 1, "{}: {m}", p.name);
        assert!(m["pressure"].as_f64().unwrap() <= 0.25, "{}: {m}", p.name);
        assert_eq!(m["rounds"]["rounds_opened"], 0, "{}: {m}", p.name);
    }
    assert_answers_at_once(attacked);

    // Honest work beside the attack.
    let job = start_job(&procs[0]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attack = {
        let (rogue, stop) = (rogue.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                pinned(&rogue);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    assert_job_exact(job);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    attack.join().unwrap();
    // No round could commit without the rogue's vote: the initial price.
    assert_price(&procs, "1", 0);
    assert_ledgers_agree(&procs);
    assert_answers_at_once(attacked);
}
