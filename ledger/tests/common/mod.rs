//! Test helpers: a keyed-hash signer standing in for Ed25519, and receipt
//! builders.
#![allow(dead_code)]

use lppsp_core::money::{self, Bounty, Price};
use lppsp_core::wire::JobId;
use lppsp_core::NodeId;
use lppsp_ledger::{Receipt, ReceiptFields};
use sha2::{Digest, Sha256};

/// Node `i` of a test community.
pub fn node(i: u8) -> NodeId {
    NodeId::from_bytes([0x5e, 0xed, 0, 0, 0, 0, 0, i])
}

fn key(node: &NodeId) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"lppsp-ledger test key");
    h.update(node.as_bytes());
    h.finalize().to_vec()
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

/// Signs as `payer`.
pub fn signer(payer: NodeId) -> impl Fn(&[u8]) -> Vec<u8> {
    let k = key(&payer);
    move |msg| hmac(&k, msg)
}

/// Checks a signature by `payer`.
pub fn verify(payer: &NodeId, msg: &[u8], sig: &[u8]) -> bool {
    hmac(&key(payer), msg) == sig
}

/// 2026-11-25 09:35:02 GMT.
pub const ISSUED: u64 = 1_795_599_302;

/// Fields settling `task_micros` (one entry per task) at `price` and 2400
/// MFLOPS, charged per task as the client meters them.
pub fn fields_for(
    payer: NodeId,
    payee: NodeId,
    seq: u64,
    price: Price,
    task_micros: &[u64],
) -> ReceiptFields {
    let power = 2400;
    let charge = task_micros
        .iter()
        .map(|&t| money::charge(price, power, t).unwrap())
        .fold(Bounty::ZERO, |a, c| a.checked_add(c).unwrap());
    ReceiptFields {
        job: JobId(0x5d1e_7a39_00c2_b4f8),
        payer,
        payee,
        seq,
        price,
        power,
        tasks: task_micros.len() as u64,
        micros: task_micros.iter().sum(),
        fuel: None,
        charge,
        issued: ISSUED,
        market_price: "2.5".parse().unwrap(),
    }
}

/// A typical receipt: three tasks at 1.5.
pub fn fields(payer: NodeId, payee: NodeId, seq: u64) -> ReceiptFields {
    fields_for(
        payer,
        payee,
        seq,
        "1.5".parse().unwrap(),
        &[183_250, 90_001, 7],
    )
}

pub fn sign(fields: ReceiptFields) -> Receipt {
    let s = signer(fields.payer);
    Receipt::signed(fields, &s).unwrap()
}

pub fn receipt(payer: NodeId, payee: NodeId, seq: u64) -> Receipt {
    sign(fields(payer, payee, seq))
}

/// A temporary directory, on tmpfs when there is one: for tests that make
/// many small ledgers and do not test durability (fsync is free there).
pub fn fast_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}
