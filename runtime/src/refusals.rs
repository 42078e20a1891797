//! What this node refused from its members, counted per reason.
//!
//! A member with a valid certificate can still send anything. Every time
//! the node refuses something a member sent (a result for a task it never
//! placed, a price commit without the votes behind it, a queue length it
//! could not hold, ...) it counts the refusal here under a short reason
//! name. `lppsp status` shows the counts as `member_refusals` and
//! `/metrics` as `lppsp_member_refusals_total{reason}`. The first refusal
//! of each (peer, reason) pair is logged with the peer's id; later ones are
//! only counted, so a member cannot flood the log.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use lppsp_core::NodeId;

/// Distinct (peer, reason) pairs remembered for log-once; past this the
/// node stops logging new pairs (it still counts them).
const MAX_LOGGED_PAIRS: usize = 4096;

/// Refusal counters shared by the node's parts (driver, compute service).
#[derive(Debug, Clone, Default)]
pub struct MemberRefusals {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    counts: BTreeMap<&'static str, u64>,
    logged: HashSet<(NodeId, &'static str)>,
}

impl MemberRefusals {
    /// Counts one refusal of something `peer` sent; `what` says what it was,
    /// for the log line.
    pub fn refuse(&self, peer: NodeId, reason: &'static str, what: &dyn std::fmt::Display) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let n = inner.counts.entry(reason).or_insert(0);
        *n = n.saturating_add(1);
        if inner.logged.len() < MAX_LOGGED_PAIRS && inner.logged.insert((peer, reason)) {
            tracing::warn!(%peer, reason, %what, "refused from a member (later ones counted, not logged)");
        }
    }

    /// The counts so far, by reason.
    #[must_use]
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counts
            .clone()
    }

    /// The count for one reason.
    #[must_use]
    pub fn count(&self, reason: &str) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counts
            .get(reason)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_refusal_and_remembers_each_pair_once() {
        let r = MemberRefusals::default();
        let a = NodeId::from_bytes([1; 8]);
        let b = NodeId::from_bytes([2; 8]);
        r.refuse(a, "result_not_placed", &"task 3");
        r.refuse(a, "result_not_placed", &"task 4");
        r.refuse(b, "result_not_placed", &"task 5");
        r.refuse(b, "epoch_jump", &"epoch 99");
        assert_eq!(r.count("result_not_placed"), 3);
        assert_eq!(r.count("epoch_jump"), 1);
        assert_eq!(r.count("other"), 0);
        let inner = r.inner.lock().unwrap();
        assert_eq!(inner.logged.len(), 3);
    }
}
