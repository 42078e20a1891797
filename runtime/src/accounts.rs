//! The node's accounts: charges metered per task, settled in receipts
//! signed by the payer (per job, payee, price and power; on job end and
//! periodically), stored durably before anyone is told, spread to every
//! node, and balances computed from the ledger (DESIGN 4.8).
//!
//! A receipt goes: payer signs -> payer's ledger commits (group commit) ->
//! payer sends it to the payee over TLS and broadcasts it on the beacon
//! channel -> each node verifies the payer's signature with the certificate
//! in its book and commits it -> the payee echoes the receipt back, which is
//! its acknowledgement; the payer sends unacknowledged receipts again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use lppsp_core::arrears::{self, Arrears};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::NodeId;
use lppsp_ledger::{
    unix_secs, Balance, Ledger, LedgerError, LedgerWriter, Meters, Receipt, ReceiptFilter,
    TaskCharge,
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Settle open meters at least this often, so a long job's payees are not
/// owed an unbounded amount (Golem's debit notes do the same).
pub use lppsp_core::node::defaults::SETTLE_EVERY_MS;
/// Send an unacknowledged receipt again after this long.
pub const RESEND_AFTER_MS: u64 = 5_000;

/// What the driver must do once a receipt is on disk.
#[derive(Debug)]
pub enum Stored {
    /// Our own receipt: send it to the payee and spread it.
    Issued(Receipt),
    /// Someone else's, received and verified: acknowledge it if we are
    /// the payee and it came over a connection.
    Received {
        receipt: Receipt,
        reply: Option<crate::links::Outbox>,
    },
}

/// Counters for status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AccountStats {
    pub receipts_issued: u64,
    pub receipts_received: u64,
    pub receipts_rejected: u64,
    pub receipts_acknowledged: u64,
}

/// The node's ledger and its unsettled charges.
pub struct Accounts {
    me: NodeId,
    grant: Bounty,
    writer: LedgerWriter,
    reader: Ledger,
    next_seq: u64,
    meters: Meters,
    unacked: BTreeMap<u64, (Receipt, u64)>,
    /// What clients owe this node for tasks run, against their receipts.
    arrears: Arrears,
    stored_tx: mpsc::UnboundedSender<Stored>,
    pub stats: AccountStats,
}

impl Accounts {
    /// Opens (or creates) `<data_dir>/ledger.sqlite`.
    pub fn open(
        data_dir: &Path,
        me: NodeId,
        grant: Bounty,
        stored_tx: mpsc::UnboundedSender<Stored>,
    ) -> Result<Self, LedgerError> {
        std::fs::create_dir_all(data_dir).map_err(|e| LedgerError::Spawn(e.to_string()))?;
        let path = data_dir.join("ledger.sqlite");
        // SQLite gives the -wal and -shm files the database file's mode.
        crate::private::precreate(&path).map_err(|e| LedgerError::Spawn(e.to_string()))?;
        let writer = LedgerWriter::open(&path)?;
        let reader = Ledger::open_read_only(&path)?;
        let next_seq = reader.next_seq(me)?;
        Ok(Self {
            me,
            grant,
            writer,
            reader,
            next_seq,
            meters: Meters::new(),
            unacked: BTreeMap::new(),
            arrears: Arrears::new(
                arrears::DEFAULT_GRACE_MS,
                Bounty::from_micros(grant.micros() / 100 + 1_000_000),
            ),
            stored_tx,
            stats: AccountStats::default(),
        })
    }

    /// One task's charge, owed by this node to its payee.
    pub fn meter(&mut self, charge: TaskCharge) {
        self.meters.add(charge);
    }

    /// Charges metered but not yet in a receipt.
    pub fn unsettled(&self) -> Bounty {
        self.meters.unsettled()
    }

    /// Whether periodic settlement is due.
    pub fn settle_due(&self, now_ms: u64) -> bool {
        self.meters.due(now_ms, SETTLE_EVERY_MS)
    }

    /// Turns every open meter into a signed receipt and hands it to the
    /// ledger writer; once committed, the driver gets `Stored::Issued`.
    pub fn settle(&mut self, now_ms: u64, market_price: Price, sign: &dyn Fn(&[u8]) -> Vec<u8>) {
        let issued = unix_secs(SystemTime::now());
        for settlement in self.meters.settle(now_ms) {
            let (job, payee) = (settlement.job, settlement.payee);
            let fields = settlement.receipt_fields(self.me, self.next_seq, issued, market_price);
            let receipt = match Receipt::signed(fields, &sign) {
                Ok(r) => r,
                Err(e) => {
                    warn!(%job, %payee, error = %e, "cannot issue a receipt");
                    continue;
                }
            };
            self.next_seq += 1;
            self.stats.receipts_issued += 1;
            self.unacked
                .insert(receipt.seq(), (receipt.clone(), now_ms));
            let ack = self.writer.append(receipt.clone());
            let tx = self.stored_tx.clone();
            tokio::spawn(async move {
                match ack.await {
                    Ok(_) => {
                        let _ = tx.send(Stored::Issued(receipt));
                    }
                    Err(e) => warn!(error = %e, "receipt not stored; it will be issued again"),
                }
            });
        }
    }

    /// A receipt from the network, its signature already checked: stores it.
    pub fn receive(&mut self, receipt: Receipt, reply: Option<crate::links::Outbox>) {
        if receipt.payer() == self.me {
            // The payee echoed our receipt: it is on its disk too.
            if self.unacked.remove(&receipt.seq()).is_some() {
                self.stats.receipts_acknowledged += 1;
            }
            return;
        }
        self.stats.receipts_received += 1;
        let ack = self.writer.append(receipt.clone());
        let tx = self.stored_tx.clone();
        tokio::spawn(async move {
            match ack.await {
                Ok(_) => {
                    let _ = tx.send(Stored::Received { receipt, reply });
                }
                Err(e) => debug!(error = %e, "receipt not stored"),
            }
        });
    }

    /// Our receipts the payee has not acknowledged for a while.
    pub fn due_for_resend(&mut self, now_ms: u64) -> Vec<Receipt> {
        self.unacked
            .values_mut()
            .filter(|(_, sent)| now_ms.saturating_sub(*sent) >= RESEND_AFTER_MS)
            .map(|(r, sent)| {
                *sent = now_ms;
                r.clone()
            })
            .collect()
    }

    /// Clients that owe this node, beyond the grace period and a tolerance
    /// of 1% of the grant plus one unit, for tasks it ran for them:
    /// `charged` is what it charged each so far (the compute service's
    /// count), compared with the receipts each paid it.
    pub fn clients_in_arrears(
        &mut self,
        now_ms: u64,
        charged: &BTreeMap<NodeId, Bounty>,
    ) -> Vec<(NodeId, Bounty, Bounty)> {
        for (client, total) in charged {
            self.arrears.record(now_ms, *client, *total);
        }
        let clients: Vec<NodeId> = self.arrears.clients().copied().collect();
        clients
            .into_iter()
            .filter_map(|client| {
                let paid = self.paid_to_me_by(client);
                self.arrears
                    .in_arrears(now_ms, &client, paid)
                    .then(|| (client, self.arrears.due(now_ms, &client), paid))
            })
            .collect()
    }

    /// What `payer`'s receipts to this node add up to.
    fn paid_to_me_by(&self, payer: NodeId) -> Bounty {
        let mut total = Bounty::ZERO;
        let mut filter = ReceiptFilter::paid_by(payer);
        loop {
            let Ok(page) = self.reader.receipts(&filter) else {
                return total;
            };
            for r in page.iter().filter(|r| r.payee() == self.me) {
                total = total.checked_add(r.charge()).unwrap_or(total);
            }
            match page.last() {
                Some(last) if page.len() == filter.limit => {
                    filter = filter.after(payer, last.seq());
                }
                _ => return total,
            }
        }
    }

    /// `node`'s balance as this node's ledger knows it: grant + earned - spent.
    pub fn balance(&self, node: NodeId) -> Option<Balance> {
        self.reader.balance(node, self.grant).ok()
    }

    /// What this node may still spend: its ledger balance less what it owes
    /// in charges not yet settled.
    pub fn remaining(&self) -> Bounty {
        let settled = self
            .balance(self.me)
            .and_then(|b| b.to_bounty())
            .unwrap_or(Bounty::ZERO);
        settled.saturating_sub(self.unsettled())
    }

    pub fn grant(&self) -> Bounty {
        self.grant
    }

    /// Our ledger heads, for a `Heads` frame.
    pub fn heads(&self) -> Vec<lppsp_ledger::Head> {
        self.reader.heads().unwrap_or_default()
    }

    /// The seq ranges a peer with `theirs` holds that we lack.
    pub fn wanted(&self, theirs: &[lppsp_ledger::Head]) -> Vec<lppsp_ledger::SeqRange> {
        self.reader.wanted(theirs).unwrap_or_default()
    }

    /// The receipts in `ranges` we hold, at most `limit`.
    pub fn receipts_in(&self, ranges: &[lppsp_ledger::SeqRange], limit: usize) -> Vec<Receipt> {
        let mut out = Vec::new();
        for r in ranges {
            let room = limit.saturating_sub(out.len());
            if room == 0 {
                break;
            }
            out.extend(
                self.reader
                    .range(r.payer, r.seqs.clone(), room)
                    .unwrap_or_default(),
            );
        }
        out
    }

    pub fn receipt_count(&self) -> u64 {
        self.reader.count().unwrap_or(0)
    }

    /// Receipts naming `node` (as payer or payee), or all; at most `limit`.
    pub fn receipts(&self, node: Option<NodeId>, limit: usize) -> Vec<Receipt> {
        let filter = match node {
            Some(n) => ReceiptFilter::involving(n),
            None => ReceiptFilter::all(),
        };
        self.reader
            .receipts(&filter.limit(limit))
            .unwrap_or_default()
    }

    /// Every node's balance the ledger knows of.
    pub fn balances(&self) -> Vec<(NodeId, Balance)> {
        self.reader.balances(self.grant).unwrap_or_default()
    }

    /// Recent receipts involving this node, newest last.
    pub fn recent(&self, limit: usize) -> Vec<Receipt> {
        self.reader
            .receipts(&ReceiptFilter::involving(self.me).limit(limit))
            .unwrap_or_default()
    }
}
