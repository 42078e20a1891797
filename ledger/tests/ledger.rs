//! The SQLite ledger: setup, duplicates and conflicts, queries, corruption.

mod common;

use common::*;
use lppsp_core::money::Bounty;
use lppsp_ledger::{
    Balance, Head, Ledger, LedgerError, Outcome, ReceiptFields, ReceiptFilter, SeqRange,
    APPLICATION_ID, SCHEMA_VERSION,
};

fn grant() -> Bounty {
    Bounty::from_units(1000).unwrap()
}

#[test]
fn open_sets_wal_full_and_schema_version() {
    let dir = fast_dir();
    let path = dir.path().join("l.db");
    let ledger = Ledger::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let q = |sql: &str| -> String {
        conn.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| format!("{v:?}"))
            .unwrap()
    };
    assert_eq!(q("PRAGMA journal_mode"), "Text(\"wal\")");
    assert_eq!(
        q("PRAGMA user_version"),
        format!("Integer({SCHEMA_VERSION})")
    );
    assert_eq!(
        q("PRAGMA application_id"),
        format!("Integer({APPLICATION_ID})")
    );
    ledger.integrity_check().unwrap();
    drop(ledger);
    // Reopening an existing ledger keeps it.
    Ledger::open(&path).unwrap();
}

#[test]
fn duplicate_is_a_no_op_and_conflict_keeps_the_first() {
    let dir = fast_dir();
    let mut l = Ledger::open(dir.path().join("l.db")).unwrap();
    let r = receipt(node(1), node(2), 1);
    assert_eq!(l.insert(&r).unwrap(), Outcome::Inserted);
    assert_eq!(l.insert(&r).unwrap(), Outcome::Duplicate);
    assert_eq!(l.count().unwrap(), 1);

    // Same (payer, seq), another payee: equivocation.
    let other = receipt(node(1), node(3), 1);
    assert!(matches!(
        l.insert(&other),
        Err(LedgerError::Conflict { payer, seq: 1 }) if payer == node(1)
    ));
    assert_eq!(l.count().unwrap(), 1);
    assert_eq!(l.get(node(1), 1).unwrap().unwrap(), r);
    assert_eq!(l.conflicts().unwrap(), vec![other.clone()]);
    // Only the first conflicting receipt is kept as evidence.
    let third = receipt(node(1), node(4), 1);
    assert!(l.insert(&third).is_err());
    assert_eq!(l.conflicts().unwrap(), vec![other]);
    // The balance counts the first only.
    assert_eq!(
        l.balance(node(2), grant()).unwrap().micros(),
        i128::from(grant().micros() + r.charge().micros())
    );
    assert_eq!(l.balance(node(3), grant()).unwrap(), Balance::from(grant()));

    // In one batch: each outcome as if inserted one by one.
    let a = receipt(node(5), node(6), 1);
    let a2 = receipt(node(5), node(7), 1);
    let out = l.insert_batch([&a, &a, &a2, &r]).unwrap();
    assert!(matches!(
        out.as_slice(),
        [
            Ok(Outcome::Inserted),
            Ok(Outcome::Duplicate),
            Err(LedgerError::Conflict { seq: 1, .. }),
            Ok(Outcome::Duplicate)
        ]
    ));
}

#[test]
fn next_seq_survives_reopen() {
    let dir = fast_dir();
    let path = dir.path().join("l.db");
    {
        let mut l = Ledger::open(&path).unwrap();
        assert_eq!(l.next_seq(node(1)).unwrap(), 1);
        for seq in 1..=5 {
            l.insert(&receipt(node(1), node(2), seq)).unwrap();
        }
        l.insert(&receipt(node(2), node(1), 1)).unwrap();
    }
    let l = Ledger::open(&path).unwrap();
    assert_eq!(l.next_seq(node(1)).unwrap(), 6);
    assert_eq!(l.next_seq(node(2)).unwrap(), 2);
    assert_eq!(l.next_seq(node(3)).unwrap(), 1);
    assert!(l.contains(node(1), 5).unwrap());
    assert!(!l.contains(node(1), 6).unwrap());
    assert!(!l.contains(node(1), u64::MAX).unwrap());
}

#[test]
fn heads_missing_and_wanted() {
    let dir = fast_dir();
    let mut a = Ledger::open(dir.path().join("a.db")).unwrap();
    let mut b = Ledger::open(dir.path().join("b.db")).unwrap();
    // A holds node 1's 1..=6 and node 2's 1..=2; B holds 1, 2, 5 of node 1
    // and 3 of node 2.
    for s in 1..=6 {
        a.insert(&receipt(node(1), node(3), s)).unwrap();
    }
    for s in 1..=2 {
        a.insert(&receipt(node(2), node(3), s)).unwrap();
    }
    for s in [1, 2, 5] {
        b.insert(&receipt(node(1), node(3), s)).unwrap();
    }
    b.insert(&receipt(node(2), node(3), 3)).unwrap();

    let ha = a.heads().unwrap();
    let hb = b.heads().unwrap();
    assert_eq!(
        ha,
        vec![
            Head {
                payer: node(1),
                max_seq: 6,
                count: 6
            },
            Head {
                payer: node(2),
                max_seq: 2,
                count: 2
            },
        ]
    );
    assert_eq!(
        hb,
        vec![
            Head {
                payer: node(1),
                max_seq: 5,
                count: 3
            },
            Head {
                payer: node(2),
                max_seq: 3,
                count: 1
            },
        ]
    );
    assert_eq!(b.missing(node(1), 8).unwrap(), vec![3..=4, 6..=8]);
    assert_eq!(b.missing(node(1), 5).unwrap(), vec![3..=4]);
    assert_eq!(b.missing(node(1), 2).unwrap(), vec![]);
    assert_eq!(b.missing(node(9), 2).unwrap(), vec![1..=2]);
    assert_eq!(b.missing(node(9), 0).unwrap(), vec![]);

    // B asks A for what it lacks up to A's heads, and the other way round.
    let b_wants = b.wanted(&ha).unwrap();
    assert_eq!(
        b_wants,
        vec![
            SeqRange {
                payer: node(1),
                seqs: 3..=4
            },
            SeqRange {
                payer: node(1),
                seqs: 6..=6
            },
            SeqRange {
                payer: node(2),
                seqs: 1..=2
            },
        ]
    );
    let a_wants = a.wanted(&hb).unwrap();
    assert_eq!(
        a_wants,
        vec![SeqRange {
            payer: node(2),
            seqs: 3..=3
        }]
    );

    // Exchange: serve each range, and both end up with the same heads.
    for w in &b_wants {
        for r in a.range(w.payer, w.seqs.clone(), 100).unwrap() {
            assert_eq!(b.insert(&r).unwrap(), Outcome::Inserted);
        }
    }
    for w in &a_wants {
        for r in b.range(w.payer, w.seqs.clone(), 100).unwrap() {
            assert_eq!(a.insert(&r).unwrap(), Outcome::Inserted);
        }
    }
    assert_eq!(a.heads().unwrap(), b.heads().unwrap());
    assert_eq!(a.wanted(&b.heads().unwrap()).unwrap(), vec![]);
    // Node 2's seqs are 1..=3 with none missing below the head.
    assert_eq!(
        a.heads().unwrap()[1],
        Head {
            payer: node(2),
            max_seq: 3,
            count: 3
        }
    );
}

#[test]
fn balances_and_filters() {
    let dir = fast_dir();
    let mut l = Ledger::open(dir.path().join("l.db")).unwrap();
    let rs = [
        receipt(node(1), node(2), 1),
        receipt(node(1), node(3), 2),
        receipt(node(2), node(3), 1),
        receipt(node(3), node(1), 1),
        receipt(node(4), node(1), 1),
    ];
    for r in &rs {
        l.insert(r).unwrap();
    }
    let c = rs[0].charge().micros() as i128; // All the same charge.
    let g = grant().micros() as i128;
    let expect = [
        (1, g + 2 * c - 2 * c),
        (2, g + c - c),
        (3, g + 2 * c - c),
        (4, g - c),
    ];
    let all = l.balances(grant()).unwrap();
    assert_eq!(
        all,
        expect
            .iter()
            .map(|&(n, b)| (node(n), Balance::from_micros(b)))
            .collect::<Vec<_>>()
    );
    for (n, b) in expect {
        assert_eq!(l.balance(node(n), grant()).unwrap().micros(), b);
    }
    assert_eq!(l.balance(node(9), grant()).unwrap(), Balance::from(grant()));
    let sum: i128 = all.iter().map(|(_, b)| b.micros()).sum();
    assert_eq!(sum, 4 * g);

    let keys = |f: ReceiptFilter| -> Vec<(u8, u64)> {
        l.receipts(&f)
            .unwrap()
            .iter()
            .map(|r| (r.payer().as_bytes()[7], r.seq()))
            .collect()
    };
    assert_eq!(
        keys(ReceiptFilter::all()),
        vec![(1, 1), (1, 2), (2, 1), (3, 1), (4, 1)]
    );
    assert_eq!(keys(ReceiptFilter::paid_by(node(1))), vec![(1, 1), (1, 2)]);
    assert_eq!(
        keys(ReceiptFilter::paid_by(node(1)).after(node(1), 1)),
        vec![(1, 2)]
    );
    assert_eq!(keys(ReceiptFilter::paid_to(node(1))), vec![(3, 1), (4, 1)]);
    assert_eq!(keys(ReceiptFilter::paid_to(node(3))), vec![(1, 2), (2, 1)]);
    assert_eq!(
        keys(ReceiptFilter::involving(node(3))),
        vec![(1, 2), (2, 1), (3, 1)]
    );
    // Paging through everything two at a time.
    let mut pages = Vec::new();
    let mut f = ReceiptFilter::all().limit(2);
    loop {
        let page = l.receipts(&f).unwrap();
        let Some(last) = page.last() else { break };
        f = f.after(last.payer(), last.seq());
        pages.push(page.len());
    }
    assert_eq!(pages, vec![2, 2, 1]);
    assert_eq!(l.range(node(1), 2..=9, 10).unwrap(), vec![rs[1].clone()]);
    // Stored receipts come back byte for byte and still verify.
    for r in l.receipts(&ReceiptFilter::all()).unwrap() {
        r.verify(&verify).unwrap();
        assert!(rs.contains(&r));
    }
}

#[test]
fn huge_charges_sum_exactly() {
    // Charges near 2^63 overflow SQLite's 64-bit SUM; the ledger sums
    // halves instead.
    let dir = fast_dir();
    let mut l = Ledger::open(dir.path().join("l.db")).unwrap();
    let big = |payer: u8, seq: u64| {
        let f = ReceiptFields {
            price: lppsp_core::money::Price::from_micros(1_000_000),
            power: 1,
            tasks: 1,
            micros: i64::MAX as u64,
            charge: Bounty::from_micros(i64::MAX as u64),
            ..fields(node(payer), node(9), seq)
        };
        sign(f)
    };
    for (p, s) in [(1, 1), (1, 2), (2, 1), (3, 1)] {
        l.insert(&big(p, s)).unwrap();
    }
    let m = i128::from(i64::MAX);
    assert_eq!(l.balance(node(9), Bounty::ZERO).unwrap().micros(), 4 * m);
    assert_eq!(l.balance(node(1), Bounty::ZERO).unwrap().micros(), -2 * m);
    let all = l.balances(Bounty::ZERO).unwrap();
    assert_eq!(all.iter().map(|(_, b)| b.micros()).sum::<i128>(), 0);
}

#[test]
fn reader_sees_commits_and_cannot_write() {
    let dir = fast_dir();
    let path = dir.path().join("l.db");
    assert!(matches!(
        Ledger::open_read_only(&path),
        Err(LedgerError::Sqlite(_))
    ));
    let mut w = Ledger::open(&path).unwrap();
    let mut r = Ledger::open_read_only(&path).unwrap();
    assert_eq!(r.count().unwrap(), 0);
    w.insert(&receipt(node(1), node(2), 1)).unwrap();
    assert_eq!(r.count().unwrap(), 1);
    assert!(matches!(
        r.insert(&receipt(node(1), node(2), 2)),
        Err(LedgerError::ReadOnly)
    ));
}

#[test]
fn refuses_foreign_and_corrupt_files() {
    let dir = fast_dir();
    // Not SQLite at all.
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0xa5u8; 8192]).unwrap();
    assert!(matches!(
        Ledger::open(&garbage),
        Err(LedgerError::Corrupt(_))
    ));

    // SQLite, but someone else's.
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    assert!(matches!(
        Ledger::open(&foreign),
        Err(LedgerError::NotALedger(_))
    ));

    // A ledger from a newer build.
    let newer = dir.path().join("newer.db");
    drop(Ledger::open(&newer).unwrap());
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    assert!(matches!(
        Ledger::open(&newer),
        Err(LedgerError::SchemaTooNew { found: 99 })
    ));

    // A ledger whose pages were overwritten.
    let broken = dir.path().join("broken.db");
    {
        let mut l = Ledger::open(&broken).unwrap();
        for s in 1..=200 {
            l.insert(&receipt(node(1), node(2), s)).unwrap();
        }
    } // Closing the last connection checkpoints the WAL into the file.
    let mut bytes = std::fs::read(&broken).unwrap();
    assert!(bytes.len() > 16 * 4096);
    for b in &mut bytes[4 * 4096..12 * 4096] {
        *b = 0x5a;
    }
    std::fs::write(&broken, &bytes).unwrap();
    assert!(matches!(
        Ledger::open(&broken),
        Err(LedgerError::Corrupt(_))
    ));
}

#[test]
fn tampered_rows_are_reported() {
    let dir = fast_dir();
    let path = dir.path().join("l.db");
    let mut l = Ledger::open(&path).unwrap();
    l.insert(&receipt(node(1), node(2), 1)).unwrap();
    l.insert(&receipt(node(1), node(2), 2)).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    // A charge column that disagrees with the signed frame.
    conn.execute("UPDATE receipts SET charge = charge + 1 WHERE seq = 1", [])
        .unwrap();
    assert!(matches!(l.get(node(1), 1), Err(LedgerError::BadRow { .. })));
    // A frame that is not a receipt.
    conn.execute("UPDATE receipts SET frame = x'00' WHERE seq = 2", [])
        .unwrap();
    assert!(matches!(
        l.receipts(&ReceiptFilter::all()),
        Err(LedgerError::BadRow { .. })
    ));
}
