//! Charges metered per task and summed until settlement: the part of the
//! accounts that decides what each receipt covers. The node and the
//! simulator both meter through [`Meters`], so a simulated pool settles
//! exactly as a real one.
//!
//! Tasks are summed per `(job, payee, price, power)`: a receipt states one
//! price and one power, so tasks that ran at another price (the market
//! moved) or were charged at another power go into another receipt.

use std::collections::BTreeMap;

use lppsp_core::charge::Granted;
use lppsp_core::money::{Bounty, Price};
use lppsp_core::wire::JobId;
use lppsp_core::NodeId;

use crate::receipt::ReceiptFields;

/// One finished task's charge, owed by the node that metered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCharge {
    pub job: JobId,
    pub payee: NodeId,
    /// The price the task ran at.
    pub price: Price,
    /// The power it was charged at, MFLOPS.
    pub power: u64,
    pub micros: u64,
    pub charge: Bounty,
    /// WASM fuel it used, where known.
    pub fuel: Option<u64>,
}

impl TaskCharge {
    /// The charge the job tracker granted for `payee`'s result of a task
    /// of `job` (price, power and time as granted, not as reported).
    #[must_use]
    pub fn granted(job: JobId, payee: NodeId, granted: &Granted, fuel: Option<u64>) -> Self {
        Self {
            job,
            payee,
            price: granted.price,
            power: granted.power,
            micros: granted.micros,
            charge: granted.charge,
            fuel,
        }
    }
}

/// Metered charges ready for one receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub job: JobId,
    pub payee: NodeId,
    pub price: Price,
    pub power: u64,
    pub tasks: u64,
    pub micros: u64,
    pub charge: Bounty,
    pub fuel: Option<u64>,
}

impl Settlement {
    /// The receipt's fields, for `payer`'s receipt number `seq`.
    #[must_use]
    pub fn receipt_fields(
        &self,
        payer: NodeId,
        seq: u64,
        issued: u64,
        market_price: Price,
    ) -> ReceiptFields {
        ReceiptFields {
            job: self.job,
            payer,
            payee: self.payee,
            seq,
            price: self.price,
            power: self.power,
            tasks: self.tasks,
            micros: self.micros,
            fuel: self.fuel,
            charge: self.charge,
            issued,
            market_price,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Sum {
    tasks: u64,
    micros: u64,
    charge: Bounty,
    fuel: Option<u64>,
}

/// Open meters of one payer.
#[derive(Debug, Default, Clone)]
pub struct Meters {
    open: BTreeMap<(JobId, NodeId, Price, u64), Sum>,
    last_settle_ms: u64,
}

impl Meters {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Meters whose first periodic settlement falls `every_ms` after
    /// `now_ms` (a node that starts at `now_ms`).
    #[must_use]
    pub fn since(now_ms: u64) -> Self {
        Self {
            open: BTreeMap::new(),
            last_settle_ms: now_ms,
        }
    }

    /// Adds one task's charge to its meter.
    pub fn add(&mut self, c: TaskCharge) {
        let m = self
            .open
            .entry((c.job, c.payee, c.price, c.power))
            .or_default();
        m.tasks += 1;
        m.micros = m.micros.saturating_add(c.micros);
        m.charge = m.charge.checked_add(c.charge).unwrap_or(m.charge);
        if let Some(f) = c.fuel {
            m.fuel = Some(m.fuel.unwrap_or(0).saturating_add(f));
        }
    }

    /// Charges metered and not yet settled.
    #[must_use]
    pub fn unsettled(&self) -> Bounty {
        self.open
            .values()
            .fold(Bounty::ZERO, |a, m| a.checked_add(m.charge).unwrap_or(a))
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Whether meters are open and `every_ms` passed since the last
    /// settlement (a long job's payees are not owed without bound).
    #[must_use]
    pub fn due(&self, now_ms: u64, every_ms: u64) -> bool {
        !self.open.is_empty() && now_ms.saturating_sub(self.last_settle_ms) >= every_ms
    }

    /// Closes every meter: one settlement each, in key order, leaving out
    /// meters with neither charge nor time (nothing to sign for).
    pub fn settle(&mut self, now_ms: u64) -> Vec<Settlement> {
        self.last_settle_ms = now_ms;
        std::mem::take(&mut self.open)
            .into_iter()
            .filter(|(_, m)| m.charge != Bounty::ZERO || m.micros != 0)
            .map(|((job, payee, price, power), m)| Settlement {
                job,
                payee,
                price,
                power,
                tasks: m.tasks,
                micros: m.micros,
                charge: m.charge,
                fuel: m.fuel,
            })
            .collect()
    }

    /// Drops every open meter (the payer died before settling: no receipt,
    /// no money moves).
    pub fn clear(&mut self) {
        self.open.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> NodeId {
        NodeId::from_bytes([0, 0, 0, 0, 0, 0, 0, n])
    }

    fn charge(job: u64, payee: u8, price: u64, micros: u64, fuel: Option<u64>) -> TaskCharge {
        TaskCharge {
            job: JobId(job),
            payee: node(payee),
            price: Price::from_micros(price),
            power: 100,
            micros,
            charge: Bounty::from_micros(micros),
            fuel,
        }
    }

    #[test]
    fn tasks_are_summed_per_job_payee_price_and_power_and_settled_once() {
        let mut m = Meters::new();
        m.add(charge(1, 2, 5, 10, Some(3)));
        m.add(charge(1, 2, 5, 20, None));
        m.add(charge(1, 2, 6, 40, None)); // the price moved: another receipt
        m.add(charge(1, 3, 5, 80, None));
        assert_eq!(m.unsettled(), Bounty::from_micros(150));
        assert!(!m.due(5_000, 10_000));
        assert!(m.due(10_000, 10_000));

        let s = m.settle(10_000);
        let summary: Vec<(u8, u64, u64, u64, Option<u64>)> = s
            .iter()
            .map(|s| {
                let payee = s.payee.as_bytes()[7];
                (payee, s.price.micros(), s.tasks, s.micros, s.fuel)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (2, 5, 2, 30, Some(3)),
                (2, 6, 1, 40, None),
                (3, 5, 1, 80, None)
            ]
        );
        assert!(m.is_empty());
        assert_eq!(m.unsettled(), Bounty::ZERO);
        assert!(!m.due(15_000, 10_000), "nothing open");

        let f = s[0].receipt_fields(node(1), 7, 1_700_000_000, Price::from_micros(9));
        assert_eq!((f.payer, f.payee, f.seq, f.tasks), (node(1), node(2), 7, 2));
        assert_eq!(f.charge, Bounty::from_micros(30));
    }

    #[test]
    fn a_meter_with_neither_charge_nor_time_gives_no_settlement() {
        let mut m = Meters::new();
        m.add(charge(1, 2, 5, 0, None));
        assert!(m.settle(1).is_empty());
    }
}
