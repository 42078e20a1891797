//! What a run reports: a time-series row at every sample, and each
//! node's money and work at the end.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use lppsp_core::money::Price;

use crate::SimError;

use super::Sim;

/// One row of the time series.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesRow {
    pub time_s: f64,
    pub nodes: u64,
    /// The price most live nodes hold.
    pub price: f64,
    pub price_max: f64,
    pub epoch_max: u64,
    pub pressure: f64,
    pub demand_tasks: u64,
    pub supply_mflops: u64,
    /// Tasks queued or running on compute nodes.
    pub queue: u64,
    /// Tasks of live jobs not yet placed.
    pub pending: u64,
    /// Busy slots / slots of live nodes.
    pub utilisation: f64,
    pub jobs_submitted: u64,
    pub jobs_done: u64,
    pub jobs_failed: u64,
    /// Not submitted: the market price was above what the submitter pays.
    pub jobs_deterred: u64,
    /// Lost with their client (crash or leave).
    pub jobs_lost: u64,
    /// Mean latency of the jobs done since the previous row, s.
    pub latency_mean_s: f64,
    pub tasks_done: u64,
    pub receipts: u64,
    pub money_total: f64,
    pub conserved: bool,
}

/// One node's money at the end.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EarningsRow {
    pub node: String,
    pub index: usize,
    pub power: u64,
    pub arch: String,
    pub alive: bool,
    pub tasks_done: u64,
    /// Tasks this node refused (busy, below its reserve, ...).
    pub tasks_refused: u64,
    pub earned: f64,
    pub balance: f64,
}

fn units(micros: i128) -> f64 {
    micros as f64 / 1e6
}

impl Sim<'_> {
    pub(super) fn sample(&mut self) -> Result<(), SimError> {
        self.ledger.check_conservation()?;
        let mut prices: BTreeMap<Price, u64> = BTreeMap::new();
        let (mut alive, mut busy, mut queue, mut pending, mut epoch_max) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut tasks_done = 0u64;
        for n in &self.nodes {
            tasks_done += n.tasks_done;
            if !n.alive {
                continue;
            }
            alive += 1;
            *prices.entry(n.market.price()).or_insert(0) += 1;
            busy += n.running.len() as u64;
            queue += (n.running.len() + n.waiting.len()) as u64;
            pending += n
                .client
                .jobs()
                .map(|(_, j)| j.tracker.pending_count())
                .sum::<u64>();
            epoch_max = epoch_max.max(n.market.committed().epoch);
        }
        let modal = prices
            .iter()
            .max_by_key(|(p, c)| (**c, Reverse(**p)))
            .map(|(p, _)| *p)
            .unwrap_or(Price::ZERO);
        let price_max = prices.keys().next_back().copied().unwrap_or(Price::ZERO);
        let s = self.samples.first().copied().flatten();
        let fresh = self.latencies.get(self.latency_mark..).unwrap_or_default();
        let latency_mean_s = if fresh.is_empty() {
            0.0
        } else {
            fresh.iter().sum::<u64>() as f64 / fresh.len() as f64 / 1000.0
        };
        self.latency_mark = self.latencies.len();
        let slots = alive * u64::from(self.sc.population.slots);
        self.out.series.push(SeriesRow {
            time_s: self.now as f64 / 1000.0,
            nodes: alive,
            price: units(i128::from(modal.micros())),
            price_max: units(i128::from(price_max.micros())),
            epoch_max,
            pressure: s.map_or(0.0, |s| s.pressure_milli as f64 / 1000.0),
            demand_tasks: s.map_or(0, |s| s.demand_tasks),
            supply_mflops: s.map_or(0, |s| s.supply_mflops),
            queue,
            pending,
            utilisation: if slots == 0 {
                0.0
            } else {
                busy as f64 / slots as f64
            },
            jobs_submitted: self.submitted,
            jobs_done: self.done,
            jobs_failed: self.failed,
            jobs_deterred: self.deterred,
            jobs_lost: self.lost,
            latency_mean_s,
            tasks_done,
            receipts: self.ledger.receipts(),
            money_total: units(self.ledger.total()),
            conserved: true,
        });
        Ok(())
    }

    pub(super) fn finish(&mut self) {
        self.out.latencies_ms = std::mem::take(&mut self.latencies);
        self.out.earnings = self
            .nodes
            .iter()
            .enumerate()
            .map(|(index, n)| EarningsRow {
                node: n.id.to_string(),
                index,
                power: n.power,
                arch: n.arch.to_string(),
                alive: n.alive,
                tasks_done: n.tasks_done,
                tasks_refused: n.tasks_refused,
                earned: units(self.ledger.earned(&n.id)),
                balance: units(self.ledger.balance(&n.id)),
            })
            .collect();
        self.out.receipts = self.ledger.kept().to_vec();
        self.out.balancer_state = self
            .nodes
            .iter()
            .find_map(|n| n.balancer.as_ref().map(|b| b.describe()));
    }
}
