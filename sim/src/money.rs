//! The simulated ledger: one in-memory book of receipts that every
//! simulated node reads. It stands for the receipts spreading to every
//! node's SQLite ledger (a per-node file is too heavy for thousands of
//! nodes). Receipts are the ledger crate's own [`Receipt`]s, built and
//! checked by its rules (fields, `metered_range`, charge =
//! `core::money::charge`), signed by a cheap test signer.

use std::collections::{BTreeMap, BTreeSet};

use lppsp_core::money::Bounty;
use lppsp_core::NodeId;
use lppsp_ledger::{Receipt, ReceiptFields};

/// The test signature: a 64-bit FNV-1a hash of the payer and the bytes.
/// Not cryptography; it catches a receipt changed after signing.
pub fn test_sign(payer: NodeId, msg: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in payer.as_bytes().iter().chain(msg) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.to_be_bytes().to_vec()
}

/// Money that does not add up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("receipt refused: {0}")]
    Receipt(String),
    #[error("balances sum to {sum} micro-units, not {nodes} nodes x grant = {expected}")]
    NotConserved {
        sum: i128,
        nodes: u64,
        expected: i128,
    },
}

/// Every receipt issued in the run and the balances they make.
#[derive(Debug)]
pub struct SharedLedger {
    grant: Bounty,
    /// Every node that ever existed has a balance, departed ones too.
    balances: BTreeMap<NodeId, i128>,
    earned: BTreeMap<NodeId, i128>,
    seen: BTreeSet<(NodeId, u64)>,
    receipts: u64,
    /// The receipts themselves, when kept (small runs, tests).
    kept: Option<Vec<Receipt>>,
}

impl SharedLedger {
    pub fn new(grant: Bounty, keep_receipts: bool) -> Self {
        Self {
            grant,
            balances: BTreeMap::new(),
            earned: BTreeMap::new(),
            seen: BTreeSet::new(),
            receipts: 0,
            kept: keep_receipts.then(Vec::new),
        }
    }

    /// A node joins the community with the grant.
    pub fn open_account(&mut self, node: NodeId) {
        self.balances
            .entry(node)
            .or_insert(i128::from(self.grant.micros()));
    }

    /// Signs, checks and records one receipt.
    pub fn settle(&mut self, fields: ReceiptFields) -> Result<(), MoneyError> {
        let payer = fields.payer;
        let sign = move |m: &[u8]| test_sign(payer, m);
        let receipt =
            Receipt::signed(fields, &sign).map_err(|e| MoneyError::Receipt(e.to_string()))?;
        let verify = |p: &NodeId, m: &[u8], s: &[u8]| test_sign(*p, m) == s;
        receipt
            .verify(&verify)
            .map_err(|e| MoneyError::Receipt(e.to_string()))?;
        let f = receipt.fields();
        if !self.seen.insert((f.payer, f.seq)) {
            return Err(MoneyError::Receipt(format!(
                "({}, {}) issued twice",
                f.payer, f.seq
            )));
        }
        let charge = i128::from(f.charge.micros());
        *self.balances.entry(f.payer).or_insert(0) -= charge;
        *self.balances.entry(f.payee).or_insert(0) += charge;
        *self.earned.entry(f.payee).or_insert(0) += charge;
        self.receipts += 1;
        if let Some(k) = &mut self.kept {
            k.push(receipt);
        }
        Ok(())
    }

    pub fn balance(&self, node: &NodeId) -> i128 {
        self.balances.get(node).copied().unwrap_or(0)
    }

    pub fn earned(&self, node: &NodeId) -> i128 {
        self.earned.get(node).copied().unwrap_or(0)
    }

    pub fn receipts(&self) -> u64 {
        self.receipts
    }

    pub fn kept(&self) -> &[Receipt] {
        self.kept.as_deref().unwrap_or_default()
    }

    /// Sum of all balances.
    pub fn total(&self) -> i128 {
        self.balances.values().sum()
    }

    /// Sum of balances == accounts x grant.
    pub fn check_conservation(&self) -> Result<(), MoneyError> {
        let nodes = self.balances.len() as u64;
        let expected = i128::from(self.grant.micros()) * i128::from(nodes);
        let sum = self.total();
        if sum == expected {
            Ok(())
        } else {
            Err(MoneyError::NotConserved {
                sum,
                nodes,
                expected,
            })
        }
    }
}
