//! FFI-safe mirrors of the node's component types.
//!
//! Each type here has a twin in `lppsp-core` (`component::scheduler`,
//! `component::balancer`, `component::executor`); `lppsp-plugin-host`
//! converts between the two. The mirrors use abi_stable's `R*` types and
//! `#[repr(C)]`, so that their layout is fixed and checked when a plugin
//! loads. Money travels as `u64` micro-units (the node's `Price` and
//! `Bounty` are the same integers), node ids as their 8 raw bytes.

use std::fmt;
use std::time::Duration;

use abi_stable::std_types::{ROption, RSlice, RStr, RString, RVec};
use abi_stable::StableAbi;

/// One whole unit of money (price or bounty), in micro-units.
pub const UNIT: u64 = 1_000_000;

/// A node's identity: the 8 bytes the node shows as 16 hex digits.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 8]);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// Bounty owed for `power` MFLOPS used for `micros` microseconds at
/// `price_micros` per MFLOPS-second: the node's own rule (RFC 1.3, bounty =
/// price x power x time), rounded down to the micro-unit. `None` when the
/// charge does not fit in 64 bits.
pub fn charge(price_micros: u64, power: u64, micros: u64) -> Option<u64> {
    let v = u128::from(price_micros)
        .checked_mul(u128::from(power))?
        .checked_mul(u128::from(micros))?
        / u128::from(UNIT);
    u64::try_from(v).ok()
}

// ---------------------------------------------------------------- scheduler

/// What a scheduler knows of one peer (mirror of `PeerView`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub id: NodeId,
    /// TLS endpoint, `ip:port` (IPv6 in brackets).
    pub addr: RString,
    /// Promised processing power, MFLOPS.
    pub power: u64,
    /// Processor architecture (`x86_64`, `aarch64`).
    pub arch: RString,
    /// The peer offers computing now.
    pub compute: bool,
    /// Speaks a protocol version this node works with.
    pub compatible: bool,
    /// Task slots free there, as far as this client knows.
    pub free_slots: u32,
    /// Tasks queued or running there, as it reported in its Idle beacon.
    pub queue: u32,
    /// Mean run time of this job's tasks on that node so far, microseconds.
    pub avg_task_micros: ROption<u64>,
}

impl PeerView {
    /// A compute node, compatible, of the job's architecture (if it names
    /// one) and at least the job's minimum power: the rule the built-in
    /// schedulers apply (free slots aside).
    pub fn is_suitable(&self, constraints: &Constraints) -> bool {
        self.compute
            && self.compatible
            && match &constraints.arch {
                ROption::RSome(a) => *a == self.arch,
                ROption::RNone => true,
            }
            && self.power >= constraints.min_power
    }
}

/// A task waiting to be placed (mirror of `PendingTask`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PendingTask {
    pub task: u64,
    /// Placements tried so far.
    pub attempts: u32,
    /// Nodes that refused or lost this task; avoid them while others exist.
    pub avoid: RVec<NodeId>,
}

/// A job's placement constraints (mirror of `Constraints`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct Constraints {
    /// Run only on this architecture.
    pub arch: ROption<RString>,
    /// Run only on nodes with at least this many MFLOPS.
    pub min_power: u64,
}

/// Everything a scheduler may look at (mirror of `PlacementRequest`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PlacementRequest<'a> {
    /// The node that submitted the job.
    pub client: NodeId,
    pub peers: RSlice<'a, PeerView>,
    /// The market price, micro-units per MFLOPS-second.
    pub price_micros: u64,
    /// Budget not yet spent or committed, micro-units.
    pub budget_left_micros: u64,
    /// Expected run time of one task, microseconds.
    pub est_task_micros: u64,
    pub pending: RSlice<'a, PendingTask>,
    pub constraints: Constraints,
}

impl PlacementRequest<'_> {
    /// The work of one task, power x time (MFLOPS x microseconds): the mean
    /// over peers where this job's tasks finished, or before any did,
    /// `est_task_micros` at the mean power of the compute peers (as the
    /// built-in schedulers reckon it).
    pub fn work_per_task(&self) -> u128 {
        let (n, sum) = self
            .peers
            .iter()
            .filter(|p| p.power > 0)
            .filter_map(|p| match p.avg_task_micros {
                ROption::RSome(m) => Some(u128::from(m) * u128::from(p.power)),
                ROption::RNone => None,
            })
            .fold((0u128, 0u128), |(n, s), w| (n + 1, s.saturating_add(w)));
        if let Some(mean) = sum.checked_div(n) {
            return mean;
        }
        let (n, sum) = self
            .peers
            .iter()
            .filter(|p| p.compute && p.power > 0)
            .fold((0u128, 0u128), |(n, s), p| (n + 1, s + u128::from(p.power)));
        match sum.checked_div(n) {
            Some(mean_power) => u128::from(self.est_task_micros) * mean_power,
            None => u128::from(self.est_task_micros),
        }
    }

    /// Estimated cost of one task on `peer`, with `work` from
    /// [`Self::work_per_task`]: `charge(price, power, time)` with the task
    /// time measured there, or else `work` at the peer's power; the largest
    /// amount when it overflows (so it never fits a budget).
    pub fn task_cost_with(&self, peer: &PeerView, work: u128) -> u64 {
        let cost = match peer.avg_task_micros {
            ROption::RSome(m) => charge(self.price_micros, peer.power, m),
            ROption::RNone if peer.power == 0 => {
                charge(self.price_micros, peer.power, self.est_task_micros)
            }
            // price x work: the same on every node not yet measured.
            ROption::RNone => charge(
                self.price_micros,
                1,
                u64::try_from(work).unwrap_or(u64::MAX),
            ),
        };
        cost.unwrap_or(u64::MAX)
    }

    /// [`Self::task_cost_with`] for one peer (reckons the work each call;
    /// a plugin ranking many peers calls `work_per_task` once instead).
    pub fn task_cost(&self, peer: &PeerView) -> u64 {
        self.task_cost_with(peer, self.work_per_task())
    }

    /// Why a task cannot be placed when no suitable peer has a free slot,
    /// the most specific reason first (as the built-in schedulers say it).
    pub fn no_room_reason(&self) -> Unplaced {
        let compute: Vec<&PeerView> = self
            .peers
            .iter()
            .filter(|p| p.compute && p.compatible)
            .collect();
        if compute.is_empty() {
            return Unplaced::NoComputeNodes;
        }
        let of_arch: Vec<&&PeerView> = compute
            .iter()
            .filter(|p| match &self.constraints.arch {
                ROption::RSome(a) => *a == p.arch,
                ROption::RNone => true,
            })
            .collect();
        if let (true, ROption::RSome(arch)) = (of_arch.is_empty(), &self.constraints.arch) {
            return Unplaced::NoNodeOfArch(arch.clone());
        }
        if !of_arch
            .iter()
            .any(|p| p.power >= self.constraints.min_power)
        {
            return Unplaced::BelowMinPower(self.constraints.min_power);
        }
        Unplaced::AllBusy
    }
}

/// One decision: run `task` on `node`, send the result to `result_to`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub task: u64,
    /// One of the request's peers.
    pub node: NodeId,
    /// The request's client, or one of its peers (an integrator).
    pub result_to: NodeId,
    /// Expected cost at the current price, micro-units; the client commits
    /// this much of the budget while the task runs.
    pub est_cost_micros: u64,
}

/// Why a task was not placed this round (mirror of `Unplaced`).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum Unplaced {
    NoComputeNodes,
    NoNodeOfArch(RString),
    BelowMinPower(u64),
    AllBusy,
    BudgetShort {
        needed_micros: u64,
        left_micros: u64,
    },
}

/// A task left pending, with the reason.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct UnplacedTask {
    pub task: u64,
    pub reason: Unplaced,
}

/// A scheduler's answer (mirror of `Plan`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub placements: RVec<Placement>,
    pub unplaced: RVec<UnplacedTask>,
}

// ----------------------------------------------------------------- balancer

/// One observation of the market (mirror of `MarketSample`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketSample {
    /// Milliseconds since the node started.
    pub at_ms: u64,
    /// The committed price, micro-units.
    pub price_micros: u64,
    /// Task queue pressure x 1000: tasks queued or running per node.
    pub pressure_milli: u64,
    /// Tasks queued or running in the pool.
    pub demand_tasks: u64,
    /// Processing power of idle compute nodes, MFLOPS.
    pub supply_mflops: u64,
    /// Live nodes in the book, this one included.
    pub nodes: u32,
}

/// A price the balancer wants the network to agree on.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PriceProposal {
    pub price_micros: u64,
    /// Why, in words: carried as evidence in the Propose frame.
    pub evidence: RString,
}

// ----------------------------------------------------------------- executor

/// One task to run (mirror of `TaskSpec`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct TaskSpec<'a> {
    pub job: u64,
    pub task: u64,
    pub kernel: RStr<'a>,
    pub input: RSlice<'a, u8>,
}

/// Limits on one task (mirror of `TaskLimits`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimits {
    /// Wall-clock time allowed, microseconds.
    pub wall_micros: u64,
    /// Memory the task may use, bytes (where the executor can enforce it).
    pub memory_bytes: u64,
    /// Metered work allowed, where the executor meters work.
    pub fuel: ROption<u64>,
}

impl TaskLimits {
    pub fn wall(&self) -> Duration {
        Duration::from_micros(self.wall_micros)
    }
}

/// A finished task (mirror of `TaskOutput`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct TaskOutput {
    pub result: RVec<u8>,
    /// Metered work used, where the executor meters work.
    pub fuel: ROption<u64>,
}

/// Why a task failed (mirror of `TaskError`).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    UnknownKernel(RString),
    BadInput(RString),
    Timeout { wall_micros: u64 },
    MemoryLimit(u64),
    FuelExhausted(u64),
    Cancelled,
    Failed(RString),
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::UnknownKernel(k) => write!(f, "unknown kernel {k}"),
            TaskError::BadInput(m) => write!(f, "bad input: {m}"),
            TaskError::Timeout { wall_micros } => write!(
                f,
                "time limit of {:?} exceeded",
                Duration::from_micros(*wall_micros)
            ),
            TaskError::MemoryLimit(b) => write!(f, "memory limit of {b} bytes exceeded"),
            TaskError::FuelExhausted(n) => write!(f, "fuel limit of {n} exhausted"),
            TaskError::Cancelled => write!(f, "cancelled"),
            TaskError::Failed(m) => write!(f, "kernel failed: {m}"),
        }
    }
}

impl std::error::Error for TaskError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u8, power: u64, arch: &str) -> PeerView {
        PeerView {
            id: NodeId([id; 8]),
            addr: "127.0.0.1:1".into(),
            power,
            arch: arch.into(),
            compute: true,
            compatible: true,
            free_slots: 1,
            queue: 0,
            avg_task_micros: ROption::RNone,
        }
    }

    #[test]
    fn node_ids_print_as_hex() {
        let id = NodeId([0, 1, 2, 0xab, 0xcd, 0xef, 0x10, 0xff]);
        assert_eq!(id.to_string(), "000102abcdef10ff");
    }

    #[test]
    fn charge_is_price_times_power_times_seconds() {
        assert_eq!(charge(UNIT, 100, 2_000_000), Some(200 * UNIT));
        assert_eq!(charge(1, 1, 1), Some(0));
        assert_eq!(charge(u64::MAX, u64::MAX, u64::MAX), None);
    }

    #[test]
    fn no_room_reasons_go_from_general_to_specific() {
        let peers = [peer(1, 10, "x86_64")];
        let mut request = PlacementRequest {
            client: NodeId([9; 8]),
            peers: RSlice::from_slice(&[]),
            price_micros: UNIT,
            budget_left_micros: 0,
            est_task_micros: 1,
            pending: RSlice::from_slice(&[]),
            constraints: Constraints::default(),
        };
        assert_eq!(request.no_room_reason(), Unplaced::NoComputeNodes);
        request.peers = RSlice::from_slice(&peers);
        request.constraints.arch = ROption::RSome("aarch64".into());
        assert_eq!(
            request.no_room_reason(),
            Unplaced::NoNodeOfArch("aarch64".into())
        );
        request.constraints.arch = ROption::RNone;
        request.constraints.min_power = 11;
        assert_eq!(request.no_room_reason(), Unplaced::BelowMinPower(11));
        request.constraints.min_power = 10;
        assert_eq!(request.no_room_reason(), Unplaced::AllBusy);
        assert!(peers[0].is_suitable(&request.constraints));
    }
}
