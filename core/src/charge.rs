//! What a client pays for one task: a charge bounded by what the client
//! itself observed and agreed, never by what the worker writes.
//!
//! A compute node reports its run time (`Elapsed-Us`) and power (`Power`)
//! in its Result frame, and a member running modified software can write
//! anything there. The client therefore fixes the terms of each placement
//! when it places the task ([`PlacementTerms`]: the market price then, the
//! power the node promised in its Hand then, and a reservation of the
//! job's budget) and grants, for the result:
//!
//! - **price**: the price in force at placement (the frame's price line is
//!   ignored);
//! - **power**: the reported power, at most the promise at placement;
//! - **time**: the reported run time, at most the time the client saw the
//!   task on the node, per slot ([`SlotClocks`]): tasks pipelined onto a
//!   node with S slots are granted at most S x the wall time between their
//!   dispatch and their results, however long each claims it ran;
//! - **tolerance**: the placement reserves the scheduler's estimate of its
//!   cost; the charge is at most `RESERVE_PERCENT` of the larger of that
//!   reservation and the job's reference work per task (the lower median
//!   over the nodes that ran its tasks of each node's mean granted work,
//!   this result's node included), at the placement's price;
//! - **budget**: the charge never takes the job's spend past its budget,
//!   counting what the tasks still in flight have reserved.
//!
//! What a liar can still gain is then bounded per task: the time it held
//! the task, at the power it promised, and no more than twice the median
//! work of the job's other nodes once any other node has run a task.

use std::collections::BTreeMap;

use crate::money::{self, Bounty, Price};
use crate::node_id::NodeId;

/// A result may be paid up to this percentage of its placement's
/// reservation (the scheduler's estimate) or of the job's reference work,
/// from budget no other task has reserved: tasks of one job vary in
/// length, so an honest node whose task ran up to twice the estimate is
/// still paid in full.
pub const RESERVE_PERCENT: u64 = 200;

/// Slot clocks kept per node, at most: a node claiming more slots in its
/// Hand is granted time as if it had this many.
pub const MAX_SLOT_CLOCKS: u32 = 256;

/// The client's clock counts whole milliseconds; a result is granted one
/// more millisecond than the client saw, so a task shorter than the tick
/// is not paid zero.
pub const CLOCK_SLACK_MS: u64 = 1;

/// What a node promised in its Hand, as the client's book holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promise {
    /// MFLOPS the node charges at.
    pub power: u64,
    /// Tasks it runs at once.
    pub slots: u32,
}

/// The terms of one placement of a task, fixed when it was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementTerms {
    pub node: NodeId,
    pub placed_ms: u64,
    /// The market price when the task was placed.
    pub price: Price,
    /// The node's promise when the task was placed.
    pub promise: Promise,
    /// Budget reserved for this placement while it runs.
    pub reserved: Bounty,
}

/// Which bound cut a claim down (several may).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cuts {
    /// The reported power was above the node's promise.
    pub power: bool,
    /// The reported run time was longer than the client saw (per slot).
    pub time: bool,
    /// The charge was above the tolerance (reservation, reference work).
    pub tolerance: bool,
    /// The charge did not fit in what was left of the budget.
    pub budget: bool,
}

impl Cuts {
    /// The reasons, as counter names.
    pub fn reasons(&self) -> impl Iterator<Item = &'static str> {
        [
            (self.power, "claimed_power_over_promise"),
            (self.time, "claimed_time_over_observed"),
            (self.tolerance, "charge_over_tolerance"),
            (self.budget, "charge_over_budget"),
        ]
        .into_iter()
        .filter_map(|(cut, name)| cut.then_some(name))
    }
}

/// The charge granted for one result, with the values it was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub charge: Bounty,
    pub price: Price,
    pub power: u64,
    pub micros: u64,
    pub cuts: Cuts,
}

/// Per node, when each of its slots is next free, in microseconds of the
/// client's clock, as far as the results granted so far account for.
#[derive(Debug, Clone, Default)]
pub struct SlotClocks {
    free_at_us: BTreeMap<NodeId, Vec<u64>>,
}

impl SlotClocks {
    /// Grants run time to a task placed on `node` at `placed_ms` whose
    /// result arrived at `now_ms`, which claims `claimed_us`: at most the
    /// time from when a slot of the node was free (and the task placed) to
    /// the result. Advances that slot by the time granted.
    pub fn grant(
        &mut self,
        node: NodeId,
        slots: u32,
        placed_ms: u64,
        now_ms: u64,
        claimed_us: u64,
    ) -> u64 {
        let n = slots.clamp(1, MAX_SLOT_CLOCKS) as usize;
        let clocks = self.free_at_us.entry(node).or_default();
        if clocks.len() < n {
            clocks.resize(n, 0);
        }
        let Some(slot) = clocks.iter_mut().min() else {
            return 0;
        };
        let start = (*slot).max(placed_ms.saturating_mul(1000));
        let end = now_ms.saturating_add(CLOCK_SLACK_MS).saturating_mul(1000);
        let granted = claimed_us.min(end.saturating_sub(start));
        *slot = start.saturating_add(granted);
        granted
    }
}

/// A fraction `RESERVE_PERCENT` of `amount`, saturating.
#[must_use]
pub fn with_tolerance(amount: Bounty) -> Bounty {
    let micros = u128::from(amount.micros()) * u128::from(RESERVE_PERCENT) / 100;
    Bounty::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// The lower median of `values` (empty: `None`).
#[must_use]
pub fn lower_median(mut values: Vec<u64>) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    values.get((values.len() - 1) / 2).copied()
}

/// Each node's mean granted work in one job (MFLOPS x microseconds per
/// task), kept in order: the job's reference work is asked for on every
/// counted result, and answering it from this costs a binary search (an
/// update, a shift of the entries above it) instead of collecting and
/// sorting every node's mean into a new vector.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkMeans {
    /// One entry per node with a counted result, ascending.
    sorted: Vec<u64>,
}

impl WorkMeans {
    /// What [`lower_median`] returns for the kept means with one entry
    /// equal to `old` replaced by `new` (`old` absent or not kept: `new`
    /// added): the reference work while a node's result is weighed, with
    /// that node's mean counting the result.
    pub(crate) fn lower_median_replacing(&self, old: Option<u64>, new: u64) -> u64 {
        // The other nodes' means are `sorted` without the entry at `skip`
        // (equal entries are interchangeable, so any one of them will do).
        let skip = old.and_then(|o| self.sorted.binary_search(&o).ok());
        let others = self.sorted.len() - usize::from(skip.is_some());
        let other = |i: usize| {
            let at = match skip {
                Some(s) if i >= s => i + 1,
                _ => i,
            };
            self.sorted.get(at).copied()
        };
        // The lower median of `others + 1` values sits at index
        // `others / 2`: `new` itself, unless the others' values around that
        // index push it up or down.
        let k = others / 2;
        let mut median = new;
        if k < others {
            if let Some(above) = other(k) {
                median = median.min(above);
            }
        }
        if let Some(below) = k.checked_sub(1).and_then(other) {
            median = median.max(below);
        }
        median
    }

    /// A node's mean changed from `old` (`None`: its first result) to `new`.
    pub(crate) fn replace(&mut self, old: Option<u64>, new: u64) {
        if let Some(at) = old.and_then(|o| self.sorted.binary_search(&o).ok()) {
            self.sorted.remove(at);
        }
        let at = self.sorted.partition_point(|&m| m < new);
        self.sorted.insert(at, new);
    }
}

/// The charge for a result under `terms`: see the module doc. `claimed`
/// is the report's (power, micros); `granted_us` the time the slot clocks
/// allowed; `reference_work` the job's median work per task (MFLOPS x
/// microseconds), if measured; `available` what the budget has left for
/// this result.
#[must_use]
pub fn grant(
    terms: &PlacementTerms,
    claimed_power: u64,
    claimed_us: u64,
    granted_us: u64,
    reference_work: Option<u64>,
    available: Bounty,
) -> Granted {
    let mut cuts = Cuts::default();
    let power = claimed_power.min(terms.promise.power);
    cuts.power = claimed_power > terms.promise.power;
    let micros = claimed_us.min(granted_us);
    cuts.time = claimed_us > granted_us;
    let metered =
        money::charge(terms.price, power, micros).unwrap_or(Bounty::from_micros(u64::MAX));
    let by_reference = reference_work
        .and_then(|w| money::charge(terms.price, 1, w).ok())
        .map(with_tolerance)
        .unwrap_or(Bounty::ZERO);
    let allowed = with_tolerance(terms.reserved).max(by_reference);
    let mut cap = metered;
    if cap > allowed {
        cap = allowed;
        cuts.tolerance = true;
    }
    if cap > available {
        cap = available;
        cuts.budget = true;
    }
    // A cut charge pays for less time, so that the receipt's price, power,
    // time and charge still agree (the ledger checks them against each
    // other): the longest time whose charge fits under the cap.
    let micros = if cap < metered {
        micros_within(cap, terms.price, power).min(micros)
    } else {
        micros
    };
    let charge = money::charge(terms.price, power, micros).unwrap_or(Bounty::ZERO);
    Granted {
        charge,
        price: terms.price,
        power,
        micros,
        cuts,
    }
}

/// The longest time, in microseconds, that `power` MFLOPS at `price` can
/// run for without costing more than `cap`.
fn micros_within(cap: Bounty, price: Price, power: u64) -> u64 {
    let per_micro = u128::from(price.micros()) * u128::from(power);
    (u128::from(cap.micros()) * u128::from(money::UNIT))
        .checked_div(per_micro)
        .map_or(u64::MAX, |m| u64::try_from(m).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> NodeId {
        NodeId::from_bytes([n; 8])
    }

    #[test]
    fn pipelined_tasks_share_the_slot_time_they_were_seen_in() {
        let mut clocks = SlotClocks::default();
        // Two tasks placed at once on a one-slot node, results at 10 ms,
        // each claiming 10 s: together they get the 11 ms the client saw.
        let a = clocks.grant(node(1), 1, 0, 10, 10_000_000);
        let b = clocks.grant(node(1), 1, 0, 10, 10_000_000);
        assert_eq!(a + b, 11_000);
        // An honest node: 5 ms each, one after the other, fully granted.
        let c = clocks.grant(node(2), 1, 0, 5, 5_000);
        let d = clocks.grant(node(2), 1, 0, 10, 5_000);
        assert_eq!((c, d), (5_000, 5_000));
        // Two slots run two tasks side by side.
        let e = clocks.grant(node(3), 2, 0, 10, 10_000);
        let f = clocks.grant(node(3), 2, 0, 10, 10_000);
        assert_eq!((e, f), (10_000, 10_000));
    }

    #[test]
    fn claims_are_cut_to_the_promise_the_time_seen_and_the_tolerance() {
        let terms = PlacementTerms {
            node: node(1),
            placed_ms: 0,
            price: Price::from_units(1).unwrap(),
            promise: Promise {
                power: 100,
                slots: 1,
            },
            reserved: Bounty::from_units(1).unwrap(),
        };
        let g = grant(
            &terms,
            1_000,
            1_000_000_000,
            5_000,
            None,
            Bounty::from_units(10).unwrap(),
        );
        assert_eq!((g.power, g.micros), (100, 5_000));
        assert!(g.cuts.power && g.cuts.time);
        // A day claimed and seen: cut to the tolerance, then to the budget.
        let long_claim =
            |available| grant(&terms, 100, 86_400_000_000, 86_400_000_000, None, available);
        let g = long_claim(Bounty::from_units(1000).unwrap());
        assert_eq!(g.charge, with_tolerance(terms.reserved));
        assert_eq!(g.micros, 20_000);
        assert!(g.cuts.tolerance);
        // 100 MFLOPS at price 1 cost 100 micro-units a microsecond.
        let g = long_claim(Bounty::from_micros(250));
        assert_eq!((g.micros, g.charge), (2, Bounty::from_micros(200)));
        assert_eq!(money::charge(g.price, g.power, g.micros).unwrap(), g.charge);
        assert!(g.cuts.budget);
    }

    #[test]
    fn lower_median_ignores_one_outlier() {
        assert_eq!(lower_median(vec![]), None);
        assert_eq!(lower_median(vec![7]), Some(7));
        assert_eq!(lower_median(vec![5, u64::MAX]), Some(5));
        assert_eq!(lower_median(vec![5, 6, u64::MAX]), Some(6));
    }
}
