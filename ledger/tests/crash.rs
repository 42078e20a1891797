//! Crash durability: a real child process appends through `LedgerWriter`
//! and prints each receipt once acknowledged; the parent SIGKILLs it at a
//! random moment, 20 times, and after each kill checks the file and that
//! every acknowledged receipt is there, byte for byte.

mod common;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use lppsp_core::NodeId;
use lppsp_ledger::{Ledger, LedgerWriter, Outcome};

/// Set in the child's environment: the ledger to append to.
const DB_ENV: &str = "LPPSP_LEDGER_CRASH_DB";
const PRODUCERS: u8 = 6;
const ROUNDS: usize = 20;

/// The child: appends from several threads (so commits are grouped) until
/// killed, printing `ACK <payer> <seq> <frame hex>` after each ack.
#[test]
#[ignore = "the child process of crash_durability; does nothing without its environment"]
fn crash_child() {
    let Some(path) = std::env::var_os(DB_ENV) else {
        return;
    };
    let ledger = Ledger::open(&path).unwrap();
    let starts: Vec<u64> = (1..=PRODUCERS)
        .map(|p| ledger.next_seq(node(p)).unwrap())
        .collect();
    let writer = LedgerWriter::spawn(ledger).unwrap();
    // In case the parent is gone and nobody kills us.
    let deadline = Instant::now() + Duration::from_secs(60);
    let threads: Vec<_> = (1..=PRODUCERS)
        .zip(starts)
        .map(|(p, start)| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                let mut seq = start;
                while Instant::now() < deadline {
                    let r = receipt(node(p), node(100 + p), seq);
                    let outcome = writer.append_blocking(r.clone()).unwrap();
                    assert_eq!(outcome, Outcome::Inserted);
                    let line = format!("ACK {} {} {}\n", r.payer(), seq, hex::encode(r.as_bytes()));
                    // Straight to fd 1 (not the test harness's capture),
                    // whole line, flushed before the next append.
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).unwrap();
                    out.flush().unwrap();
                    seq += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// xorshift64*, seeded per run.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        Self(RandomState::new().hash_one(Instant::now()) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

struct Ack {
    payer: NodeId,
    seq: u64,
    frame: Vec<u8>,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.trim_end().strip_prefix("ACK ")?.split(' ');
    Some(Ack {
        payer: parts.next()?.parse().ok()?,
        seq: parts.next()?.parse().ok()?,
        frame: hex::decode(parts.next()?).ok()?,
    })
}

#[test]
fn crash_durability() {
    // On the real disk, not tmpfs: this is about what reaches the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut rng = Rng::new();
    let mut all: Vec<Ack> = Vec::new();

    for round in 1..=ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DB_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let acks = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (lines, acks) = (Arc::clone(&lines), Arc::clone(&acks));
            std::thread::spawn(move || {
                let mut r = BufReader::new(stdout);
                let mut line = String::new();
                // Only whole lines: the kill may cut the last one short.
                while r.read_line(&mut line).is_ok_and(|n| n > 0) && line.ends_with('\n') {
                    // The harness may have written "test crash_child ... "
                    // on the same line first.
                    if let Some(at) = line.find("ACK ") {
                        acks.fetch_add(1, Ordering::Relaxed);
                        lines.lock().unwrap().push(line[at..].to_string());
                    }
                    line.clear();
                }
            })
        };

        // Every fourth round the kill may land while the child is still
        // starting (opening, creating the schema); the others wait for the
        // first ack so that most kills land among commits.
        if round % 4 == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(40)));
        } else {
            while acks.load(Ordering::Relaxed) == 0 {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "child never acked"
                );
                assert!(child.try_wait().unwrap().is_none(), "child exited early");
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(rng.below(250)));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "child exited before the kill"
        );
        child.kill().unwrap(); // SIGKILL
        let killed_after = started.elapsed();
        child.wait().unwrap();
        reader.join().unwrap();

        let round_acks: Vec<Ack> = lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| parse_ack(l).unwrap_or_else(|| panic!("bad line {l:?}")))
            .collect();
        let n = round_acks.len();
        all.extend(round_acks);

        let ledger = Ledger::open(&path).unwrap(); // runs quick_check
        ledger.integrity_check().unwrap();
        for a in &all {
            let stored = ledger.get(a.payer, a.seq).unwrap();
            let stored = stored.unwrap_or_else(|| {
                panic!("round {round}: acknowledged ({}, {}) lost", a.payer, a.seq)
            });
            assert_eq!(stored.as_bytes(), a.frame.as_slice());
        }
        // Each producer appends in order, so its seqs have no holes.
        for h in ledger.heads().unwrap() {
            assert_eq!(h.count, h.max_seq, "{h:?}");
        }
        let count = ledger.count().unwrap();
        println!(
            "round {round:2}: killed after {:4} ms, {n:4} receipts acknowledged, {count:5} in ledger ({} acknowledged in all)",
            killed_after.as_millis(),
            all.len()
        );
        assert!(count >= all.len() as u64);
    }
    assert!(!all.is_empty());
}
