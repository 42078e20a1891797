//! The ledger, live: a job's charges become signed receipts that reach
//! every node, balances agree everywhere and add up to the grants, and a
//! node killed with SIGKILL restarts with its receipts.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn units(v: &serde_json::Value) -> f64 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .parse()
        .unwrap()
}

#[test]
fn receipts_spread_balances_agree_and_survive_sigkill() {
    let community = Community::new();
    let nodes = client_and_computes(2);
    let mut procs = start_cluster_with(&community, &nodes, |_, _| String::new());
    wait_for(Duration::from_secs(5), || {
        procs
            .iter()
            .all(|p| p.status()["peers"].as_array().unwrap().len() == 2)
    })
    .expect("every node sees the two others");
    let control = procs[0].ports.control_addr().to_string();
    let out = submit_command(&control)
        .args([
            "--kernel",
            "w2-monte-carlo-pi",
            "--range",
            "0..100",
            "--extra",
            "1000000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", procs[0].log_text());

    // Settled at the job's end: every node holds every receipt, and the
    // payees have acknowledged theirs.
    let settled = wait_for(Duration::from_secs(10), || {
        let st: Vec<serde_json::Value> = procs.iter().map(|p| p.status()).collect();
        let n = st[0]["ledger"]["receipts"].as_u64().unwrap_or(0);
        n >= 2
            && st
                .iter()
                .all(|s| s["ledger"]["receipts"].as_u64() == Some(n))
            && st[0]["ledger"]["stats"]["receipts_acknowledged"].as_u64() == Some(n)
    });
    let st: Vec<serde_json::Value> = procs.iter().map(|p| p.status()).collect();
    assert!(
        settled.is_some(),
        "receipts did not spread: {:#?}",
        st.iter().map(|s| s["ledger"].clone()).collect::<Vec<_>>()
    );

    // Balances from the ledgers: the client paid what the nodes earned, and
    // the total is the grants.
    let grant = units(&st[0]["balance"]["grant"]);
    let ledger: Vec<f64> = st.iter().map(|s| units(&s["balance"]["ledger"])).collect();
    assert!(ledger[0] < grant, "the client paid: {ledger:?}");
    assert!(
        ledger[1] > grant && ledger[2] > grant,
        "both nodes earned: {ledger:?}"
    );
    let total: f64 = ledger.iter().sum();
    assert!(
        (total - 3.0 * grant).abs() < 1e-6,
        "money is conserved: {ledger:?}"
    );
    assert_eq!(st[0]["balance"]["unsettled"], "0");
    let receipts = st[1]["ledger"]["receipts"].as_u64().unwrap();

    // `lppsp ledger --csv` lists them, one line each after the header.
    let control1 = procs[1].ports.control_addr().to_string();
    let csv = Command::new(bin())
        .args(["ledger", "--control", &control1, "--csv"])
        .output()
        .unwrap();
    assert!(csv.status.success());
    let text = String::from_utf8_lossy(&csv.stdout);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("job,payer,payee,seq,price,power,tasks,seconds,fuel,charge,issued")
    );
    assert_eq!(lines.count() as u64, receipts, "{text}");
    let table = Command::new(bin())
        .args(["ledger", "--control", &control1])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("balances (grant"));

    // SIGKILL a compute node and start it again: its receipts are there.
    let cfg = community.dir.path().join("compute-1.toml");
    procs[1].signal(SIGKILL);
    procs[1].wait_exit(Duration::from_secs(5));
    let ports = procs[1].ports;
    procs[1] = NodeProc::start(&cfg, "compute-1", ports);
    procs[1].wait_ready(Duration::from_secs(20));
    let after = procs[1].status();
    assert_eq!(after["ledger"]["receipts"].as_u64(), Some(receipts));
    assert_eq!(units(&after["balance"]["ledger"]), ledger[1]);
}

/// A node that was down while a job was settled, so that it heard none of
/// the receipts' datagrams and is no payee, catches up by anti-entropy
/// (`Heads` / `Want`) once it is back: its ledger then holds every receipt
/// and gives the same balances as the others.
#[test]
fn a_node_that_missed_the_receipts_catches_up_by_anti_entropy() {
    let community = Community::new();
    let nodes = [
        ("client", "client"),
        ("compute-1", "compute"),
        ("compute-2", "compute"),
        ("bystander", "client"),
    ];
    let mut procs = start_cluster_with(&community, &nodes, |_, _| String::new());
    wait_for(Duration::from_secs(5), || {
        procs
            .iter()
            .all(|p| p.status()["peers"].as_array().unwrap().len() == 3)
    })
    .expect("every node sees the three others");
    let bystander_id = procs[3].id();
    procs[3].signal(SIGKILL);
    procs[3].wait_exit(Duration::from_secs(5));
    wait_for(Duration::from_secs(10), || {
        procs[..3]
            .iter()
            .all(|p| !p.peer_ids().contains(&bystander_id))
    })
    .expect("the others expire the bystander");

    let control = procs[0].ports.control_addr().to_string();
    let out = submit_command(&control)
        .args(["--kernel", "w1-sum-squares", "--range", "0..2000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", procs[0].log_text());
    let receipts = wait_for(Duration::from_secs(10), || {
        let n: Vec<u64> = procs[..3]
            .iter()
            .map(|p| p.status()["ledger"]["receipts"].as_u64().unwrap_or(0))
            .collect();
        n[0] >= 2 && n.iter().all(|&x| x == n[0])
    });
    assert!(receipts.is_some(), "the three live nodes hold the receipts");
    let want = procs[0].status()["ledger"]["receipts"].as_u64().unwrap();

    let cfg = community.dir.path().join("bystander.toml");
    let ports = procs[3].ports;
    procs[3] = NodeProc::start(&cfg, "bystander", ports);
    procs[3].wait_ready(Duration::from_secs(20));
    let caught_up = wait_for(Duration::from_secs(15), || {
        procs[3].status()["ledger"]["receipts"].as_u64() == Some(want)
    });
    assert!(
        caught_up.is_some(),
        "the bystander fetched the {want} receipts it missed:\n{}",
        procs[3].log_text()
    );
    assert_eq!(ledger_balances(&procs[3]), ledger_balances(&procs[0]));
}
