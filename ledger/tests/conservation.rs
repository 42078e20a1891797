//! Conservation: however receipts are delivered (any order, duplicated,
//! some not yet), the balances a ledger computes sum to N x grant, and once
//! every receipt is everywhere, every node computes the same balances.

mod common;

use std::collections::HashSet;

use common::*;
use lppsp_core::money::{Bounty, Price};
use lppsp_core::wire::JobId;
use lppsp_core::NodeId;
use lppsp_ledger::{Ledger, Outcome, Receipt, ReceiptFields};
use proptest::prelude::*;
use proptest::sample::Index;

#[derive(Debug, Clone)]
struct Payment {
    payer: usize,
    /// Payee is `(payer + payee_offset) % n`, never the payer.
    payee_offset: usize,
    price: u64,
    task_micros: Vec<u64>,
}

#[derive(Debug, Clone)]
struct History {
    n: usize,
    grant: u64,
    payments: Vec<Payment>,
    /// Per node, the order receipts reach it (indices into the receipts;
    /// repeats are duplicates, absent ones are not yet delivered).
    deliveries: Vec<Vec<Index>>,
}

fn history() -> impl Strategy<Value = History> {
    (2usize..=5).prop_flat_map(|n| {
        let payment = (
            0..n,
            1..n,
            0u64..=3_000_000,
            prop::collection::vec(0u64..=2_000_000, 1..5),
        )
            .prop_map(|(payer, payee_offset, price, task_micros)| Payment {
                payer,
                payee_offset,
                price,
                task_micros,
            });
        (
            0u64..=10_000_000_000,
            prop::collection::vec(payment, 1..25),
            prop::collection::vec(prop::collection::vec(any::<Index>(), 0..40), n),
        )
            .prop_map(move |(grant, payments, deliveries)| History {
                n,
                grant,
                payments,
                deliveries,
            })
    })
}

fn sign_all(h: &History, nodes: &[NodeId]) -> Vec<Receipt> {
    let mut next_seq = vec![1u64; h.n];
    h.payments
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let seq = next_seq[p.payer];
            next_seq[p.payer] += 1;
            let f = ReceiptFields {
                job: JobId(i as u64),
                ..fields_for(
                    nodes[p.payer],
                    nodes[(p.payer + p.payee_offset) % h.n],
                    seq,
                    Price::from_micros(p.price),
                    &p.task_micros,
                )
            };
            sign(f)
        })
        .collect()
}

/// Balances computed directly from a set of receipts.
fn model(n: usize, grant: u64, nodes: &[NodeId], rs: &[&Receipt]) -> Vec<i128> {
    let mut b = vec![i128::from(grant); n];
    for r in rs {
        let c = i128::from(r.charge().micros());
        let payer = nodes.iter().position(|x| *x == r.payer()).unwrap();
        let payee = nodes.iter().position(|x| *x == r.payee()).unwrap();
        b[payer] -= c;
        b[payee] += c;
    }
    b
}

fn check_conserved(l: &Ledger, h: &History, nodes: &[NodeId], expect: &[i128]) {
    let grant = Bounty::from_micros(h.grant);
    let total = h.n as i128 * i128::from(h.grant);
    let each: Vec<i128> = nodes
        .iter()
        .map(|n| l.balance(*n, grant).unwrap().micros())
        .collect();
    assert_eq!(each.iter().sum::<i128>(), total);
    assert_eq!(each, expect);
    // `balances` lists only nodes in some receipt; the others hold the grant.
    let listed = l.balances(grant).unwrap();
    assert!(listed.iter().all(|(n, _)| nodes.contains(n)));
    let unlisted = (h.n - listed.len()) as i128 * i128::from(h.grant);
    assert_eq!(
        listed.iter().map(|(_, b)| b.micros()).sum::<i128>() + unlisted,
        total
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn balances_are_conserved_and_converge(h in history()) {
        let dir = fast_dir();
        let nodes: Vec<NodeId> = (0..h.n as u8).map(node).collect();
        let receipts = sign_all(&h, &nodes);
        let mut ledgers: Vec<Ledger> = (0..h.n)
            .map(|i| Ledger::open(dir.path().join(format!("{i}.db"))).unwrap())
            .collect();
        let mut held: Vec<HashSet<usize>> = vec![HashSet::new(); h.n];

        // Deliveries interleaved across nodes, one receipt at a time.
        let longest = h.deliveries.iter().map(Vec::len).max().unwrap_or(0);
        for step in 0..longest {
            for (i, l) in ledgers.iter_mut().enumerate() {
                let Some(ix) = h.deliveries[i].get(step) else { continue };
                let k = ix.index(receipts.len());
                let fresh = held[i].insert(k);
                let outcome = l.insert(&receipts[k]).unwrap();
                prop_assert_eq!(
                    outcome,
                    if fresh { Outcome::Inserted } else { Outcome::Duplicate }
                );
                let mine: Vec<&Receipt> = held[i].iter().map(|&k| &receipts[k]).collect();
                check_conserved(l, &h, &nodes, &model(h.n, h.grant, &nodes, &mine));
            }
        }

        // Then everything reaches everyone (latest first, for another order).
        let all: Vec<&Receipt> = receipts.iter().collect();
        let expect = model(h.n, h.grant, &nodes, &all);
        for l in &mut ledgers {
            for r in receipts.iter().rev() {
                l.insert(r).unwrap();
            }
            check_conserved(l, &h, &nodes, &expect);
        }
        let grant = Bounty::from_micros(h.grant);
        let first = ledgers[0].balances(grant).unwrap();
        let heads = ledgers[0].heads().unwrap();
        for l in &ledgers[1..] {
            prop_assert_eq!(&l.balances(grant).unwrap(), &first);
            prop_assert_eq!(&l.heads().unwrap(), &heads);
            prop_assert_eq!(l.count().unwrap(), receipts.len() as u64);
        }
    }
}
