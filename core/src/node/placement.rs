//! The peers as a client's scheduler sees them: [`PeerViews`], built from
//! the book, and how many of one client's tasks each may hold
//! ([`pipeline_depth`]).
//!
//! A client keeps a few tasks queued per slot of a compute node, so that a
//! slot never waits for the round trip of its next task, but no more than
//! about [`QUEUED_WORK_PER_SLOT_MICROS`] of work: a deeper queue would only
//! strand tasks on a node that turns out slow or leaves.

use std::collections::BTreeMap;

use crate::book::Book;
use crate::component::scheduler::PeerView;
use crate::curves;
use crate::job::JobTracker;
use crate::money::Price;
use crate::node_id::NodeId;

/// Work queued per slot of a compute node, at most, microseconds.
pub const QUEUED_WORK_PER_SLOT_MICROS: u64 = 20_000;
/// Tasks queued per slot, at most, however short they are.
pub const MAX_PIPELINE_PER_SLOT: u64 = 512;

/// Tasks one client may have on a node with `slots` slots, when a task
/// takes `per_task_micros` there.
#[must_use]
pub fn pipeline_capacity(slots: u32, per_task_micros: u64) -> u64 {
    let depth =
        (QUEUED_WORK_PER_SLOT_MICROS / per_task_micros.max(1)).clamp(1, MAX_PIPELINE_PER_SLOT);
    u64::from(slots).saturating_mul(depth)
}

/// Tasks per slot a client keeps on a node (see the module doc).
#[must_use]
pub fn pipeline_depth(per_task_micros: u64) -> u64 {
    pipeline_capacity(1, per_task_micros)
}

/// The book's peers as schedulers see them, sorted by id, with what each
/// offers (slots and reserve) beside them. Each placement round sets
/// every view's room for the job at hand ([`PeerViews::fit_to_job`]).
#[derive(Debug, Clone, Default)]
pub struct PeerViews {
    views: Vec<PeerView>,
    offers: Vec<Offer>,
}

/// What a peer offers, from its Hand.
#[derive(Debug, Clone, Copy)]
struct Offer {
    slots: u32,
    reserve: Price,
}

/// What the client knows of the nodes beyond the book, for one job's
/// round.
pub struct ClientKnowledge<'a> {
    /// This node (never placed on).
    pub me: NodeId,
    /// The job: its estimate, measured times and tallies per node.
    pub job: &'a JobTracker,
    /// Tasks of this client (all its jobs) in flight on each node.
    pub in_flight: &'a BTreeMap<NodeId, u64>,
    /// Nodes held out of placement until the given time (link failed,
    /// refused this client lately).
    pub held_out: &'a BTreeMap<NodeId, u64>,
}

impl PeerViews {
    /// Views of every peer in `book`.
    #[must_use]
    pub fn from_book(book: &Book) -> Self {
        let mut views = Self::default();
        views.rebuild(book);
        views
    }

    /// Rebuilds the views from `book`, keeping the allocations.
    pub fn rebuild(&mut self, book: &Book) {
        self.views.clear();
        self.offers.clear();
        for p in book.peers() {
            self.views.push(PeerView {
                id: p.id,
                addr: p.addr,
                power: p.power,
                arch: p.arch.clone(),
                compute: p.slots > 0,
                compatible: p.compatible,
                free_slots: 0,
                queue: u32::try_from(p.queue).unwrap_or(u32::MAX),
                avg_task_micros: None,
            });
            self.offers.push(Offer {
                slots: p.slots,
                reserve: p.reserve,
            });
        }
    }

    /// Views of the given peers, each with the slots it offers and its
    /// reserve price (for a driver without a book, and for tests).
    #[must_use]
    pub fn from_peers(peers: impl IntoIterator<Item = (PeerView, u32, Price)>) -> Self {
        let mut peers: Vec<_> = peers.into_iter().collect();
        peers.sort_by_key(|(v, _, _)| v.id);
        let mut views = Self::default();
        for (view, slots, reserve) in peers {
            views.views.push(view);
            views.offers.push(Offer { slots, reserve });
        }
        views
    }

    /// The views, sorted by id.
    #[must_use]
    pub fn views(&self) -> &[PeerView] {
        &self.views
    }

    /// Total room over every view.
    #[must_use]
    pub fn free_slots(&self) -> u64 {
        self.views.iter().map(|v| u64::from(v.free_slots)).sum()
    }

    /// Sets every view's room and measured time for one job at `price`:
    /// each peer at the job's estimate, then the few this client knows
    /// more of (measured times, tasks in flight, nodes held out, itself,
    /// which get no room). A node whose reserve is above `price` would
    /// refuse, so it offers nothing here.
    pub fn fit_to_job(&mut self, price: Price, known: ClientKnowledge<'_>) {
        let est = known.job.est_task_micros();
        let fresh = pipeline_capacity(1, est);
        for (v, offer) in self.views.iter_mut().zip(&self.offers) {
            v.compute = offer.slots > 0 && curves::offers_at(offer.reserve, price);
            let room = u64::from(offer.slots).saturating_mul(fresh);
            v.free_slots = u32::try_from(room).unwrap_or(u32::MAX);
            v.avg_task_micros = None;
        }
        let special = known
            .job
            .tallies()
            .keys()
            .chain(known.in_flight.keys())
            .chain(known.held_out.keys())
            .chain(std::iter::once(&known.me));
        for node in special {
            let Ok(k) = self.views.binary_search_by(|v| v.id.cmp(node)) else {
                continue;
            };
            let (Some(v), Some(offer)) = (self.views.get_mut(k), self.offers.get(k)) else {
                continue;
            };
            let avg = known.job.avg_micros_on(node);
            let in_use = known.in_flight.get(node).copied().unwrap_or(0);
            let excluded = *node == known.me || known.held_out.contains_key(node);
            let room = if excluded {
                0
            } else {
                let per_task = avg.unwrap_or(est);
                pipeline_capacity(offer.slots, per_task).saturating_sub(in_use)
            };
            v.free_slots = u32::try_from(room).unwrap_or(u32::MAX);
            v.avg_task_micros = avg;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tasks_queue_deeper_but_never_past_the_cap() {
        assert_eq!(pipeline_depth(20_000), 1);
        assert_eq!(pipeline_depth(1_000_000), 1);
        assert_eq!(pipeline_depth(1_000), 20);
        assert_eq!(pipeline_depth(1), MAX_PIPELINE_PER_SLOT);
        assert_eq!(pipeline_depth(0), MAX_PIPELINE_PER_SLOT);
        assert_eq!(pipeline_capacity(4, 1_000), 80);
    }
}
