//! When a node says Hand and Idle, and what its beacons carry: Hand every
//! tick; Idle when its idle state or queue changed, and every
//! [`IDLE_REPEAT_TICKS`] ticks besides, since a lost datagram would
//! otherwise leave peers with a stale state until the next change.

use crate::market::Committed;
use crate::money::Price;
use crate::node_id::NodeId;
use crate::wire::Message;

/// Idle is repeated this often, in ticks, even when nothing changed.
pub const IDLE_REPEAT_TICKS: u64 = 5;

/// A node's beacon timing and the state its Idle beacons announce.
#[derive(Debug, Clone)]
pub struct BeaconSchedule {
    ticks: u64,
    idle: bool,
    queue: u64,
}

impl Default for BeaconSchedule {
    fn default() -> Self {
        Self::new()
    }
}

impl BeaconSchedule {
    /// A node starts idle with nothing queued (and says so at once, with
    /// an Idle beacon of its own).
    #[must_use]
    pub fn new() -> Self {
        Self {
            ticks: 0,
            idle: true,
            queue: 0,
        }
    }

    /// One tick, with the tasks queued or running here (`load`), this
    /// node's own tasks not yet placed that buy at the price (`pending`),
    /// and whether its owner lets it compute. The Queue header counts
    /// both, so that every node computes the same pool pressure. Returns
    /// whether an Idle beacon is due (besides the tick's Hand).
    pub fn on_tick(&mut self, load: u64, pending: u64, available: bool) -> bool {
        self.ticks = self.ticks.wrapping_add(1);
        let idle = load == 0 && available;
        let queue = load.saturating_add(pending);
        let changed = idle != self.idle || queue != self.queue;
        self.idle = idle;
        self.queue = queue;
        changed || self.ticks.is_multiple_of(IDLE_REPEAT_TICKS)
    }

    /// Ticks so far.
    #[must_use]
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Whether the node is idle (nothing queued or running, and allowed
    /// to compute), as of the last tick.
    #[must_use]
    pub fn idle(&self) -> bool {
        self.idle
    }

    /// The Queue header of the next Idle beacon.
    #[must_use]
    pub fn queue(&self) -> u64 {
        self.queue
    }
}

/// The node-state headers of one beacon; the driver adds what it signs
/// with (node, sequence number, date, certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BeaconState {
    /// Idle only.
    pub queue: Option<u64>,
    /// Hand only: slots offered at the price.
    pub slots: Option<u32>,
    /// Hand only, on a node that computes: its reserve price.
    pub reserve: Option<Price>,
    /// Hand only: the round that set the committed price.
    pub epoch: Option<(u64, Option<NodeId>)>,
    /// Hand only: the certificate, protocol and software go with it.
    pub introduces: bool,
}

impl BeaconState {
    /// What a beacon with `message` carries, from the node's state.
    #[must_use]
    pub fn of(
        message: &Message,
        schedule: &BeaconSchedule,
        slots: u32,
        reserve: Option<Price>,
        committed: Committed,
    ) -> Self {
        let hand = matches!(message, Message::Hand(_));
        Self {
            queue: matches!(message, Message::Idle { .. }).then_some(schedule.queue()),
            slots: hand.then_some(slots),
            reserve: reserve.filter(|_| hand),
            epoch: hand.then_some((committed.epoch, committed.proposer)),
            introduces: hand,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_goes_out_on_change_and_every_few_ticks() {
        let mut s = BeaconSchedule::new();
        let due: Vec<bool> = (0..10).map(|_| s.on_tick(0, 0, true)).collect();
        assert!(s.idle());
        // Nothing changed: repeated at ticks 5 and 10 only.
        assert_eq!(
            due,
            [false, false, false, false, true, false, false, false, false, true]
        );
        // A change is due at once: the queue counts load and pending.
        assert!(s.on_tick(2, 3, true));
        assert!(!s.idle());
        assert_eq!(s.queue(), 5);
        // An owner at the machine makes it not idle, whatever its load.
        let mut s = BeaconSchedule::new();
        s.on_tick(0, 0, false);
        assert!(!s.idle());
    }
}
