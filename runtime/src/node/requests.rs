//! Answers to control-socket requests, and the node status they report.

use lppsp_core::beacon;
use lppsp_core::money::Bounty;
use lppsp_core::PROTOCOL_VERSION;

use crate::control::reply::{
    BalanceStatus, ComputeStatus, IntegratorStatus, JobEvent, JobsStatus, JoinStatus,
    LedgerBalance, LedgerReply, LedgerStatus, NodeInfo, NodeStatus, PeerStatus, ReceiptEntry,
};
use crate::control::{reply_json, ControlRequest, Request};
use crate::join::JoinService;

use super::{Driver, SOFTWARE};

impl Driver {
    pub(super) async fn on_control(&mut self, req: ControlRequest) {
        match req.request {
            Request::Status => {
                let _ = req.reply.send(reply_json(&self.status())).await;
            }
            Request::Ledger { node, limit } => {
                let receipts = self
                    .accounts
                    .receipts(node, limit.unwrap_or(1000).min(100_000))
                    .iter()
                    .map(|r| {
                        let f = r.fields();
                        ReceiptEntry {
                            job: f.job.to_string(),
                            payer: f.payer,
                            payee: f.payee,
                            seq: f.seq,
                            price: f.price,
                            power: f.power,
                            tasks: f.tasks,
                            seconds: f.micros as f64 / 1e6,
                            fuel: f.fuel,
                            charge: f.charge,
                            issued: f.issued,
                        }
                    })
                    .collect();
                let balances = self
                    .accounts
                    .balances()
                    .iter()
                    .map(|(n, b)| LedgerBalance {
                        node: *n,
                        balance: b.to_string(),
                    })
                    .collect();
                let reply = LedgerReply {
                    grant: self.accounts.grant(),
                    balances,
                    receipts,
                };
                let _ = req.reply.send(reply_json(&reply)).await;
            }
            Request::CaPending | Request::CaApprove { .. } | Request::CaReject { .. } => {
                let answer = JoinService::on_control(self.join.as_deref(), &req.request);
                let _ = req.reply.send(answer).await;
            }
            Request::Submit(submit) => {
                if !self.cfg.node.role.submits() {
                    let rejected = JobEvent::Rejected {
                        error: "this node's role does not submit jobs".into(),
                    };
                    let _ = req.reply.send(reply_json(&rejected)).await;
                    return;
                }
                let balance = self.remaining_bounty();
                let now = self.now_ms();
                self.client.submit(now, submit, req.reply, balance).await;
            }
        }
    }

    pub(super) fn status(&self) -> NodeStatus {
        let now = self.now_ms();
        let dropped_beacons = beacon::DropReason::ALL
            .iter()
            .map(|r| {
                let count = self.book.drops().get(r).copied().unwrap_or(0);
                (r.as_str().to_string(), count)
            })
            .collect();
        let (held_jobs, held_bytes) = self.integrator.held();
        NodeStatus {
            node: NodeInfo {
                id: self.me.id,
                name: self.me.name.clone(),
                role: self.cfg.node.role,
                addr: self.me.addr.to_string(),
                power: self.me.power,
                arch: self.me.arch.to_string(),
                software: SOFTWARE.to_string(),
                protocol: PROTOCOL_VERSION.to_string(),
                uptime_ms: now,
                transport: self.transport.name().to_string(),
            },
            market: self.market_status(),
            balance: BalanceStatus {
                grant: self.cfg.market.grant,
                earned: self.earned_total(),
                spent: self.client.spent,
                remaining: self.remaining_bounty(),
                ledger: self.accounts.balance(self.me.id).map(|b| b.to_string()),
                unsettled: self.accounts.unsettled(),
            },
            ledger: LedgerStatus {
                receipts: self.accounts.receipt_count(),
                stats: self.accounts.stats,
            },
            compute: self.compute.as_ref().map(|c| {
                use std::sync::atomic::Ordering::Relaxed;
                ComputeStatus {
                    slots: self.cfg.share.slots,
                    offered_slots: self.offered_slots(),
                    reserve: self.supply.reserve(),
                    load: c.load(),
                    tasks_done: c.stats.tasks_done.load(Relaxed),
                    tasks_failed: c.stats.tasks_failed.load(Relaxed),
                    tasks_refused: c.stats.tasks_refused.load(Relaxed),
                    tasks_cancelled: c.stats.tasks_cancelled.load(Relaxed),
                    tasks_withdrawn: c.stats.tasks_withdrawn.load(Relaxed),
                    bad_frames: c.stats.bad_frames.load(Relaxed),
                }
            }),
            jobs: JobsStatus {
                active: self.client.active_jobs(),
                tasks_in_pool: self.client.in_pool(),
                list: self.client.jobs_status(),
            },
            integrator: IntegratorStatus {
                jobs: held_jobs,
                bytes: held_bytes,
            },
            peers: self.book.peers().map(|p| PeerStatus::new(p, now)).collect(),
            dropped_beacons,
            sharing: self.sharing.status(),
            join: self.join.as_ref().map(|j| JoinStatus {
                listen: j.local_addr().to_string(),
                pending: j.pending().len(),
            }),
            connections_refused: self.transport.refused_connections(),
            member_refusals: self
                .refusals
                .counts()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            transport_counters: self
                .transport
                .counters()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    /// Bounty earned by this node's compute service, for status.
    fn earned_total(&self) -> Bounty {
        let Some(c) = &self.compute else {
            return Bounty::ZERO;
        };
        let Ok(earned) = c.stats.earned.lock() else {
            return Bounty::ZERO;
        };
        earned
            .values()
            .fold(Bounty::ZERO, |a, b| a.checked_add(*b).unwrap_or(a))
    }
}
