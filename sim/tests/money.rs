//! Money is conserved across a simulated run with churn, crashes, a
//! partition and lossy links: every receipt follows the ledger's rules, and
//! the balances of all nodes that ever joined sum to nodes x grant.

mod common;

use std::collections::BTreeMap;

use lppsp_core::NodeId;

#[test]
fn money_is_conserved_through_churn_and_failures() {
    let sc = common::small(420, &["fsm"]);
    let reg = common::registry();
    let opts = lppsp_sim::RunOptions {
        seed: 3,
        trace_node: None,
        keep_receipts: true,
    };
    // The run itself fails if conservation breaks at any sample.
    let out = lppsp_sim::run_one(&sc, 0, &reg, opts, &|_| {}).unwrap();
    let last = out.series.last().unwrap();
    assert!(out.series.iter().all(|r| r.conserved));
    assert!(last.jobs_done > 0 && last.receipts > 0, "{last:?}");
    // Churn and failures really happened.
    let departed = out.earnings.iter().filter(|e| !e.alive).count();
    assert!(departed > 0, "no node left or failed");
    assert!(
        out.earnings.len() > sc.population.count as usize,
        "no node joined"
    );

    // Balances again, from the receipts alone.
    let grant = i128::from(sc.grant.micros());
    let mut balances: BTreeMap<String, i128> = out
        .earnings
        .iter()
        .map(|e| (e.node.clone(), grant))
        .collect();
    let verify = |p: &NodeId, m: &[u8], s: &[u8]| lppsp_sim::money::test_sign(*p, m) == s;
    for r in &out.receipts {
        r.verify(&verify).unwrap();
        let f = r.fields();
        let range = lppsp_ledger::metered_range(f.price, f.power, f.tasks, f.micros).unwrap();
        assert!(range.contains(&f.charge), "{f:?}");
        let c = i128::from(f.charge.micros());
        *balances.get_mut(&f.payer.to_string()).unwrap() -= c;
        *balances.get_mut(&f.payee.to_string()).unwrap() += c;
    }
    let total: i128 = balances.values().sum();
    assert_eq!(total, grant * out.earnings.len() as i128);
    for e in &out.earnings {
        let b = balances[&e.node];
        assert_eq!((b as f64) / 1e6, e.balance, "node {}", e.node);
    }
    let sum: f64 = out.earnings.iter().map(|e| e.balance).sum();
    assert!((sum - last.money_total).abs() < 1e-3);
}
