//! The driver's ledger traffic: receipts checked and stored, spread to
//! peers, anti-entropy sync of ledger heads, settling, and checks of
//! clients' bounty claims and arrears.

use lppsp_core::money::Bounty;
use lppsp_core::wire::{Body, Frame, Message};
use lppsp_core::NodeId;
use tracing::{debug, warn};

use crate::accounts::Stored;
use crate::links;

use super::{Driver, MAX_RECEIPTS_WAITING};

impl Driver {
    /// Checks a receipt's signature against its payer's certificate (from
    /// the book, or our own) and stores it.
    pub(super) fn on_receipt(
        &mut self,
        receipt: lppsp_ledger::Receipt,
        reply: Option<links::Outbox>,
    ) {
        let payer = receipt.payer();
        let cert: Option<Vec<u8>> = if payer == self.me.id {
            Some(self.identity.cert_der().to_vec())
        } else {
            self.book.peer(&payer).map(|p| p.cert_der.clone())
        };
        let Some(cert) = cert else {
            // The payer may have placed tasks here before its first Hand
            // reached us: keep the receipt until it joins (bounded).
            if self.receipts_waiting.len() < MAX_RECEIPTS_WAITING {
                debug!(%payer, "receipt from a payer not yet in the book; held");
                self.receipts_waiting.push((receipt, reply));
            } else {
                self.accounts.stats.receipts_rejected += 1;
                debug!(%payer, "receipt from a payer not in the book");
            }
            return;
        };
        let verifier = self.identity.verifier();
        let check =
            |_: &NodeId, msg: &[u8], sig: &[u8]| verifier.verify_signature(&cert, msg, sig).is_ok();
        if let Err(e) = receipt.verify(&check) {
            self.accounts.stats.receipts_rejected += 1;
            warn!(%payer, error = %e, "receipt refused");
            return;
        }
        self.accounts.receive(receipt, reply);
    }

    /// A receipt is on disk: ours goes to its payee and to everyone; a
    /// payee acknowledges by echoing the receipt to the payer.
    pub(super) async fn on_stored(&mut self, stored: Stored) {
        match stored {
            Stored::Issued(r) => self.spread_receipt(&r).await,
            Stored::Received { receipt, reply } => {
                if receipt.payee() == self.me.id {
                    let frame = receipt.to_frame();
                    let sent = reply.is_some_and(|r| r.send(frame.clone()).is_ok());
                    if !sent {
                        let now = self.now_ms();
                        self.client.send_to(now, receipt.payer(), frame, &self.book);
                    }
                }
            }
        }
    }

    pub(super) async fn spread_receipt(&mut self, r: &lppsp_ledger::Receipt) {
        let now = self.now_ms();
        self.client
            .send_to(now, r.payee(), r.to_frame(), &self.book);
        for dest in &self.destinations {
            if let Err(e) = self.udp.send_to(r.as_bytes(), dest).await {
                debug!(%dest, error = %e, "receipt broadcast failed");
            }
        }
    }

    /// Anti-entropy, one step each 10 s: our ledger heads to the next peer.
    pub(super) fn send_heads(&mut self, now: u64) {
        let peers: Vec<NodeId> = self.book.peers().map(|p| p.id).collect();
        if peers.is_empty() {
            return;
        }
        let Some(&peer) = peers.get(self.sync_turn % peers.len()) else {
            return;
        };
        self.sync_turn = self.sync_turn.wrapping_add(1);
        self.send_heads_to(now, peer);
    }

    /// Our ledger heads to `peer`, which answers with `Want` for what it
    /// lacks. Also sent to every peer that joins: a node back from a
    /// restart or a partition missed the datagrams of the receipts made
    /// meanwhile.
    pub(super) fn send_heads_to(&mut self, now: u64, peer: NodeId) {
        let heads = self.accounts.heads();
        if heads.is_empty() {
            return;
        }
        let price = self.market.price();
        let frame = Frame::new(
            price,
            Message::Heads {
                count: heads.len() as u64,
            },
        )
        .with_body(Body::from_bytes(lppsp_ledger::sync::encode_heads(&heads)));
        self.client.send_to(now, peer, frame, &self.book);
    }

    /// A peer's `Heads` (answer with what we lack) or `Want` (send it).
    pub(super) fn on_sync(&mut self, now: u64, peer: NodeId, frame: &Frame) {
        use lppsp_ledger::sync;
        let body = frame
            .body
            .as_ref()
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let price = self.market.price();
        match frame.message {
            Message::Heads { .. } => {
                let theirs = match sync::decode_heads(&body) {
                    Ok(h) => h,
                    Err(e) => return debug!(%peer, error = %e, "heads dropped"),
                };
                let wanted = self.accounts.wanted(&theirs);
                if wanted.is_empty() {
                    return;
                }
                debug!(%peer, ranges = wanted.len(), "asking a peer for receipts we lack");
                let frame = Frame::new(
                    price,
                    Message::Want {
                        count: wanted.len() as u64,
                    },
                )
                .with_body(Body::from_bytes(sync::encode_want(&wanted)));
                self.client.send_to(now, peer, frame, &self.book);
            }
            Message::Want { .. } => {
                let ranges = match sync::decode_want(&body) {
                    Ok(r) => r,
                    Err(e) => return debug!(%peer, error = %e, "want dropped"),
                };
                for r in self
                    .accounts
                    .receipts_in(&ranges, sync::MAX_RECEIPTS_PER_WANT)
                {
                    self.client.send_to(now, peer, r.to_frame(), &self.book);
                }
            }
            _ => {}
        }
    }

    /// Meters the charges the client counted and settles when a job ended
    /// or the settlement period passed.
    pub(super) fn settle(&mut self) {
        let metered = self.client.take_metered();
        if !self.cfg.market.settle {
            return;
        }
        for charge in metered {
            self.accounts.meter(charge);
        }
        let now = self.now_ms();
        if self.client.take_job_ended() || self.accounts.settle_due(now) {
            let identity = &self.identity;
            let price = self.market.price();
            self.accounts.settle(now, price, &|m| identity.sign(m));
        }
    }

    /// Clients whose claimed bounty (in their Hand) exceeds their ledger
    /// balance here, beyond receipts still on their way, get no work.
    pub(super) fn check_claims(&mut self) {
        let Some(compute) = &self.compute else {
            return;
        };
        let grant = self.accounts.grant();
        let tolerance = grant.micros() / 100 + 1_000_000;
        let mut refused = std::collections::HashSet::new();
        for p in self.book.peers().filter(|p| p.is_client) {
            let Some(balance) = self.accounts.balance(p.id) else {
                continue;
            };
            let claimed = p
                .remaining_bounty
                .map(|b| i128::from(b.micros()))
                .unwrap_or(0);
            let over = claimed > balance.micros() + i128::from(tolerance);
            if over || balance.micros() <= 0 {
                warn!(peer = %p.id, claimed = %p.remaining_bounty.unwrap_or(Bounty::ZERO), ledger = %balance, "client refused work: it claims more bounty than it has");
                refused.insert(p.id);
            }
        }
        // Clients that do not pay for tasks run for them (no receipts).
        let charged = compute
            .stats
            .earned
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        let now = self.now_ms();
        for (client, due, paid) in self.accounts.clients_in_arrears(now, &charged) {
            warn!(peer = %client, %due, %paid, "client refused work: it does not pay for tasks run");
            refused.insert(client);
        }
        compute.set_refused_clients(refused);
    }
}
