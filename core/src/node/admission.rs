//! Whether a compute node takes a task, or why not: the rules of the
//! compute side, in the order a node checks them (sharing, the client's
//! standing, the price, the kernel, the size, the queue, the client's
//! share of the queue). The runtime's compute service and the simulator's
//! compute nodes both ask [`Admission::admit`] and give the room back with
//! [`Admission::release`] when a task ends.

use std::collections::BTreeMap;

use crate::config::ShareSection;
use crate::curves;
use crate::money::Price;
use crate::node_id::NodeId;
use crate::wire::RefuseReason;

/// Tasks accepted beyond the running ones before refusing as busy.
pub const MAX_QUEUE: u64 = 1 << 16;

/// A compute node's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    pub slots: u32,
    /// Tasks accepted beyond the running ones before refusing as busy.
    pub max_queue: u64,
    pub max_input_bytes: u64,
    /// Tasks one client may have queued or running here.
    pub max_tasks_per_client: u64,
    /// Input bytes of all queued or running tasks together.
    pub max_queued_bytes: u64,
    /// Input bytes of one client's queued or running tasks.
    pub max_queued_bytes_per_client: u64,
    /// The owner's reserve price: a task placed below it is refused.
    pub reserve: Price,
}

impl AdmissionConfig {
    /// The limits a node's `[share]` section sets.
    #[must_use]
    pub fn from_share(share: &ShareSection, reserve: Price) -> Self {
        Self {
            slots: share.slots,
            max_queue: MAX_QUEUE,
            max_input_bytes: share.max_input_bytes,
            max_tasks_per_client: share.max_tasks_per_client,
            max_queued_bytes: share.max_queued_bytes,
            max_queued_bytes_per_client: share.max_queued_bytes_per_client,
            reserve,
        }
    }
}

/// A task as the compute node sees it when it arrives.
#[derive(Debug, Clone, Copy)]
pub struct TaskOffer {
    pub client: NodeId,
    /// The price on the task frame: the price it was placed at.
    pub price: Price,
    /// Whether this node's executor has the task's kernel.
    pub kernel_known: bool,
    pub input_bytes: u64,
}

/// What the node knows beside the task.
#[derive(Debug, Clone, Copy)]
pub struct NodeState {
    /// The owner lets the node compute now.
    pub available: bool,
    /// The client is refused work (claims more bounty than it has, or
    /// does not pay for tasks run).
    pub client_refused: bool,
    /// Tasks queued or running here.
    pub load: u64,
}

/// Why a task was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Refused for a reason the client is told.
    Refuse(RefuseReason),
    /// The client passed its share of the queue (named): it is told
    /// `busy`, and the node counts it as a member's fault.
    Quota(&'static str),
}

impl Refusal {
    /// What the client is told.
    #[must_use]
    pub fn reason(self) -> RefuseReason {
        match self {
            Refusal::Refuse(r) => r,
            Refusal::Quota(_) => RefuseReason::Busy,
        }
    }
}

/// The compute node's admission: its limits and each client's share of
/// the queue.
#[derive(Debug, Clone)]
pub struct Admission {
    cfg: AdmissionConfig,
    /// Per client: tasks and input bytes queued or running.
    per_client: BTreeMap<NodeId, (u64, u64)>,
    bytes: u64,
}

impl Admission {
    #[must_use]
    pub fn new(cfg: AdmissionConfig) -> Self {
        Self {
            cfg,
            per_client: BTreeMap::new(),
            bytes: 0,
        }
    }

    #[must_use]
    pub fn config(&self) -> &AdmissionConfig {
        &self.cfg
    }

    /// Takes the task, holding room for it until [`Admission::release`],
    /// or says why not.
    pub fn admit(&mut self, task: &TaskOffer, node: NodeState) -> Result<(), Refusal> {
        let refuse = |r| Err(Refusal::Refuse(r));
        if self.cfg.slots == 0 || !node.available {
            return refuse(RefuseReason::Unavailable);
        }
        if node.client_refused {
            return refuse(RefuseReason::CannotPay);
        }
        if !curves::offers_at(self.cfg.reserve, task.price) {
            return refuse(RefuseReason::BelowReserve);
        }
        if !task.kernel_known {
            return refuse(RefuseReason::UnknownKernel);
        }
        if task.input_bytes > self.cfg.max_input_bytes {
            return refuse(RefuseReason::TooLarge);
        }
        if node.load >= u64::from(self.cfg.slots).saturating_add(self.cfg.max_queue) {
            return refuse(RefuseReason::Busy);
        }
        let bytes = task.input_bytes;
        let (tasks, client_bytes) = self.per_client.get(&task.client).copied().unwrap_or((0, 0));
        if tasks >= self.cfg.max_tasks_per_client {
            return Err(Refusal::Quota("client_task_quota"));
        }
        if client_bytes.saturating_add(bytes) > self.cfg.max_queued_bytes_per_client {
            return Err(Refusal::Quota("client_byte_quota"));
        }
        if self.bytes.saturating_add(bytes) > self.cfg.max_queued_bytes {
            return Err(Refusal::Quota("node_byte_quota"));
        }
        self.per_client.insert(
            task.client,
            (tasks.saturating_add(1), client_bytes.saturating_add(bytes)),
        );
        self.bytes = self.bytes.saturating_add(bytes);
        Ok(())
    }

    /// Gives back the room of a task of `client` with `bytes` of input
    /// that ended (done, failed, cancelled or withdrawn).
    pub fn release(&mut self, client: NodeId, bytes: u64) {
        if let Some((tasks, b)) = self.per_client.get_mut(&client) {
            *tasks = tasks.saturating_sub(1);
            *b = b.saturating_sub(bytes);
            if *tasks == 0 {
                self.per_client.remove(&client);
            }
        }
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AdmissionConfig {
        AdmissionConfig {
            slots: 1,
            max_queue: 2,
            max_input_bytes: 100,
            max_tasks_per_client: 2,
            max_queued_bytes: 1000,
            max_queued_bytes_per_client: 1000,
            reserve: Price::from_micros(2_000_000),
        }
    }

    fn offer(client: u8, price: u64) -> TaskOffer {
        TaskOffer {
            client: NodeId::from_bytes([client; 8]),
            price: Price::from_micros(price),
            kernel_known: true,
            input_bytes: 10,
        }
    }

    const FREE: NodeState = NodeState {
        available: true,
        client_refused: false,
        load: 0,
    };

    #[test]
    fn each_rule_refuses_with_its_reason() {
        let mut a = Admission::new(cfg());
        let reason =
            |a: &mut Admission, t: TaskOffer, n: NodeState| a.admit(&t, n).map_err(Refusal::reason);
        let unavailable = NodeState {
            available: false,
            ..FREE
        };
        assert_eq!(
            reason(&mut a, offer(1, 2_000_000), unavailable),
            Err(RefuseReason::Unavailable)
        );
        let refused = NodeState {
            client_refused: true,
            ..FREE
        };
        assert_eq!(
            reason(&mut a, offer(1, 2_000_000), refused),
            Err(RefuseReason::CannotPay)
        );
        assert_eq!(
            reason(&mut a, offer(1, 1_999_999), FREE),
            Err(RefuseReason::BelowReserve)
        );
        let unknown = TaskOffer {
            kernel_known: false,
            ..offer(1, 2_000_000)
        };
        assert_eq!(
            reason(&mut a, unknown, FREE),
            Err(RefuseReason::UnknownKernel)
        );
        let big = TaskOffer {
            input_bytes: 101,
            ..offer(1, 2_000_000)
        };
        assert_eq!(reason(&mut a, big, FREE), Err(RefuseReason::TooLarge));
        let full = NodeState { load: 3, ..FREE };
        assert_eq!(
            reason(&mut a, offer(1, 2_000_000), full),
            Err(RefuseReason::Busy)
        );
    }

    #[test]
    fn a_client_past_its_share_is_busy_and_room_comes_back() {
        let mut a = Admission::new(cfg());
        assert_eq!(a.admit(&offer(1, 3_000_000), FREE), Ok(()));
        assert_eq!(a.admit(&offer(1, 3_000_000), FREE), Ok(()));
        assert_eq!(
            a.admit(&offer(1, 3_000_000), FREE),
            Err(Refusal::Quota("client_task_quota"))
        );
        // Another client still gets in.
        assert_eq!(a.admit(&offer(2, 3_000_000), FREE), Ok(()));
        a.release(NodeId::from_bytes([1; 8]), 10);
        assert_eq!(a.admit(&offer(1, 3_000_000), FREE), Ok(()));
    }
}
