//! Throughput of group commit against one transaction per receipt, on the
//! real disk. Prints figures; asserts nothing about time.
//!
//! `CARGO_TARGET_DIR=/work/targets/ledger cargo test -p lppsp-ledger --test bench -- --ignored --nocapture`

mod common;

use std::time::Instant;

use common::*;
use lppsp_ledger::{Ledger, LedgerError, LedgerWriter, Outcome, Receipt};

fn receipts(payer: u8, n: u64) -> Vec<Receipt> {
    (1..=n)
        .map(|s| receipt(node(payer), node(200), s))
        .collect()
}

fn rate(n: usize, start: Instant) -> f64 {
    n as f64 / start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn group_commit_vs_one_transaction_per_receipt() {
    let dir = tempfile::tempdir().unwrap();
    println!("ledger in {}", dir.path().display());

    // One transaction, one fsync, per receipt.
    let rs = receipts(1, 1000);
    let mut l = Ledger::open(dir.path().join("single.db")).unwrap();
    let t = Instant::now();
    for r in &rs {
        assert_eq!(l.insert(r).unwrap(), Outcome::Inserted);
    }
    println!(
        "one transaction per receipt (Ledger::insert): {:8.0} receipts/s",
        rate(rs.len(), t)
    );

    // One transaction per receipt from 16 threads, a connection each: they
    // take turns on SQLite's write lock, whose busy handler sleeps and
    // retries, unfairly: some time out (SQLITE_BUSY after BUSY_TIMEOUT).
    let path = dir.path().join("single16.db");
    drop(Ledger::open(&path).unwrap());
    let t = Instant::now();
    let threads: Vec<_> = (1..=16u8)
        .map(|p| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut l = Ledger::open(&path).unwrap();
                let mut busy = 0;
                for r in receipts(p, 125) {
                    match l.insert(&r) {
                        Ok(o) => assert_eq!(o, Outcome::Inserted),
                        Err(LedgerError::Sqlite(_)) => busy += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                busy
            })
        })
        .collect();
    let busy: usize = threads.into_iter().map(|th| th.join().unwrap()).sum();
    println!(
        "one transaction per receipt, 16 threads:      {:8.0} receipts/s ({busy} of 2000 failed: database is locked)",
        rate(2000 - busy, t)
    );

    // Group commit, `p` threads each waiting for every ack before the next
    // append (a node settling with p peers at once).
    for producers in [1u8, 4, 16, 64] {
        let per = 4000 / u64::from(producers);
        let batches: Vec<Vec<Receipt>> = (1..=producers).map(|p| receipts(p, per)).collect();
        let w = LedgerWriter::open(dir.path().join(format!("group{producers}.db"))).unwrap();
        let t = Instant::now();
        let threads: Vec<_> = batches
            .into_iter()
            .map(|rs| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for r in rs {
                        assert_eq!(w.append_blocking(r).unwrap(), Outcome::Inserted);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let s = w.stats();
        println!(
            "group commit, {producers:2} producers, append_blocking: {:8.0} receipts/s ({} transactions, {:.1} receipts each)",
            rate(s.receipts as usize, t),
            s.batches,
            s.receipts as f64 / s.batches as f64
        );
    }

    // Group commit, one producer queueing everything then awaiting the acks.
    let rs = receipts(1, 20_000);
    let w = LedgerWriter::open(dir.path().join("pipelined.db")).unwrap();
    let t = Instant::now();
    let acks: Vec<_> = rs.into_iter().map(|r| w.append(r)).collect();
    for a in acks {
        assert_eq!(a.wait().unwrap(), Outcome::Inserted);
    }
    let s = w.stats();
    println!(
        "group commit, 1 producer, 20000 queued:        {:8.0} receipts/s ({} transactions, {:.1} receipts each)",
        rate(s.receipts as usize, t),
        s.batches,
        s.receipts as f64 / s.batches as f64
    );
}
