//! Group commit through `LedgerWriter`.

mod common;

use common::*;
use lppsp_ledger::{Ledger, LedgerError, LedgerWriter, Outcome};

#[test]
fn concurrent_appends_are_all_acknowledged_and_stored() {
    let dir = fast_dir();
    let path = dir.path().join("l.db");
    let writer = LedgerWriter::open(&path).unwrap();
    let threads: Vec<_> = (1..=8u8)
        .map(|p| {
            let w = writer.clone();
            std::thread::spawn(move || {
                for seq in 1..=50 {
                    let r = receipt(node(p), node(100), seq);
                    assert_eq!(w.append_blocking(r).unwrap(), Outcome::Inserted);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = writer.stats();
    assert_eq!(stats.receipts, 400);
    assert!(stats.batches >= 1 && stats.batches <= 400);
    let reader = Ledger::open_read_only(&path).unwrap();
    assert_eq!(reader.count().unwrap(), 400);
    for p in 1..=8 {
        assert_eq!(reader.next_seq(node(p)).unwrap(), 51);
    }
}

#[test]
fn pipelined_appends_keep_sequential_outcomes() {
    let dir = fast_dir();
    let writer = LedgerWriter::open(dir.path().join("l.db")).unwrap();
    let a = receipt(node(1), node(2), 1);
    let a_other = receipt(node(1), node(3), 1);
    // Queued without waiting, so they are likely to share a batch; the
    // outcomes are those of one-by-one inserts either way.
    let acks = [
        writer.append(a.clone()),
        writer.append(a.clone()),
        writer.append(a_other),
        writer.append(receipt(node(1), node(2), 2)),
    ];
    let out: Vec<_> = acks.into_iter().map(|a| a.wait()).collect();
    assert!(matches!(
        out.as_slice(),
        [
            Ok(Outcome::Inserted),
            Ok(Outcome::Duplicate),
            Err(LedgerError::Conflict { seq: 1, .. }),
            Ok(Outcome::Inserted)
        ]
    ));
}

#[test]
fn acks_can_be_awaited() {
    let dir = fast_dir();
    let path = dir.path().join("l.db");
    let writer = LedgerWriter::open(&path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let outcomes = rt.block_on(async {
        let acks: Vec<_> = (1..=20)
            .map(|s| writer.append(receipt(node(1), node(2), s)))
            .collect();
        let mut out = Vec::new();
        for a in acks {
            out.push(a.await.unwrap());
        }
        out
    });
    assert!(outcomes.iter().all(|o| *o == Outcome::Inserted));
    assert_eq!(Ledger::open_read_only(&path).unwrap().count().unwrap(), 20);
}

#[test]
fn dropped_acks_still_commit_and_drop_joins_the_thread() {
    let dir = fast_dir();
    let path = dir.path().join("l.db");
    let writer = LedgerWriter::open(&path).unwrap();
    for s in 1..=30 {
        drop(writer.append(receipt(node(1), node(2), s)));
    }
    // Dropping the last handle waits for the queue to be committed.
    drop(writer);
    assert_eq!(Ledger::open(&path).unwrap().count().unwrap(), 30);
}

#[test]
fn read_only_ledger_cannot_back_a_writer() {
    let dir = fast_dir();
    let path = dir.path().join("l.db");
    drop(Ledger::open(&path).unwrap());
    let writer = LedgerWriter::spawn(Ledger::open_read_only(&path).unwrap()).unwrap();
    assert!(matches!(
        writer.append_blocking(receipt(node(1), node(2), 1)),
        Err(LedgerError::ReadOnly)
    ));
}
