//! The replies of the control endpoint as types.
//!
//! The node builds these and sends them as JSON lines; `lppsp status`,
//! `lppsp submit`, the dashboard and the tests read them back into the same
//! types, so a field renamed on one side fails to compile (or to parse) on
//! the other instead of silently reading 0. The JSON names are the ones
//! `lppsp status --json` has always printed. Parts that are open-ended by
//! design (a balancer's own status) stay `serde_json::Value`.

use std::collections::BTreeMap;

use lppsp_core::book::Peer;
use lppsp_core::config::Role;
use lppsp_core::market::{CommitRecord, Committed, MarketStats};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::NodeId;
use serde::{Deserialize, Serialize};

use crate::accounts::AccountStats;

/// The reply to `{"op":"status"}`: the node, its book, market and counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: NodeInfo,
    pub market: MarketStatus,
    pub balance: BalanceStatus,
    pub ledger: LedgerStatus,
    /// `None` on a node that does not compute.
    pub compute: Option<ComputeStatus>,
    pub jobs: JobsStatus,
    pub integrator: IntegratorStatus,
    pub peers: Vec<PeerStatus>,
    /// Beacons dropped, by reason (every reason listed, zeros included).
    pub dropped_beacons: BTreeMap<String, u64>,
    pub sharing: SharingStatus,
    /// `None` unless the node takes join requests (`[ca] dir`).
    pub join: Option<JoinStatus>,
    /// TLS connections the transport refused.
    pub connections_refused: u64,
    /// What this node refused from its members, by reason.
    pub member_refusals: BTreeMap<String, u64>,
    /// The transport's own counters, by name.
    pub transport_counters: BTreeMap<String, u64>,
}

/// Who the node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub name: String,
    pub role: Role,
    /// TLS endpoint, `host:port`.
    pub addr: String,
    /// Promised processing power, MFLOPS.
    pub power: u64,
    pub arch: String,
    pub software: String,
    pub protocol: String,
    pub uptime_ms: u64,
    /// The transport's name.
    pub transport: String,
}

/// The market as this node holds it (`status.market`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketStatus {
    /// The committed price.
    pub price: Price,
    pub epoch: u64,
    /// Who proposed the committed price; `None` for the initial price.
    pub proposer: Option<NodeId>,
    /// Task queue pressure of the latest sample (tasks in the pool per node).
    pub pressure: Option<f64>,
    /// Tasks queued or running in the pool at the latest sample.
    pub demand_tasks: Option<u64>,
    /// MFLOPS offered by the idle compute nodes at the latest sample.
    pub supply_mflops: Option<u64>,
    /// The balancer's one-line description.
    pub balancer: String,
    /// The balancer's name (`fsm`, `ml`, ...).
    pub balancer_kind: String,
    /// Whether this node's balancer proposes prices.
    pub balancer_proposes: bool,
    /// The balancer's own status; its shape is the balancer's.
    pub balancer_state: Option<serde_json::Value>,
    pub open_round: Option<OpenRound>,
    /// Why the latest round this node opened was abandoned.
    pub last_abandoned: Option<String>,
    pub rounds: MarketStats,
    /// Peers whose latest frame carried another price.
    pub peers_at_other_price: Vec<NodeId>,
    /// Members whose Hand says they hold another committed state.
    pub peers_at_other_state: Vec<NodeId>,
    /// The latest commits this node took, oldest first.
    pub history: Vec<CommitRecord>,
    /// The state read from the market state file at start.
    pub restored: Option<Committed>,
}

/// The round this node has open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRound {
    pub epoch: u64,
    pub price: Price,
    pub yes_votes: usize,
}

/// What the node holds and owes (`status.balance`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceStatus {
    pub grant: Bounty,
    pub earned: Bounty,
    pub spent: Bounty,
    pub remaining: Bounty,
    /// The balance the ledger gives (may be negative); `None` when the
    /// ledger cannot be read.
    pub ledger: Option<String>,
    /// Charges not yet acknowledged by a receipt.
    pub unsettled: Bounty,
}

/// The ledger's counters (`status.ledger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerStatus {
    pub receipts: u64,
    pub stats: AccountStats,
}

/// The compute side (`status.compute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeStatus {
    pub slots: u32,
    /// Tasks queued or running here.
    pub load: u64,
    pub tasks_done: u64,
    pub tasks_failed: u64,
    pub tasks_refused: u64,
    pub tasks_cancelled: u64,
    pub tasks_withdrawn: u64,
    pub bad_frames: u64,
}

/// This node's jobs as a client (`status.jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsStatus {
    pub active: usize,
    /// Tasks of this node's jobs not yet placed.
    pub tasks_in_pool: u64,
    /// Running jobs, jobs left unfinished by an earlier run, then the
    /// latest finished ones.
    pub list: Vec<serde_json::Value>,
}

/// Results held for jobs this node integrates (`status.integrator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegratorStatus {
    pub jobs: usize,
    pub bytes: u64,
}

/// One peer of the book (`status.peers[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub id: NodeId,
    pub addr: String,
    pub power: u64,
    pub arch: String,
    pub is_client: bool,
    pub remaining_bounty: Option<Bounty>,
    pub idle: bool,
    /// Tasks queued or running there (its Idle beacon).
    pub queue: u64,
    /// Task slots it offers; 0: it does not compute.
    pub slots: u32,
    pub protocol: String,
    pub software: String,
    /// False when it speaks another protocol version.
    pub compatible: bool,
    /// The price in its latest frame header.
    pub price: Price,
    /// Monotonic ms (this node's clock) of its latest valid beacon.
    pub last_seen_ms: u64,
    pub last_seen_ms_ago: u64,
}

impl PeerStatus {
    /// `peer` as seen at `now_ms` (this node's monotonic clock).
    #[must_use]
    pub fn new(peer: &Peer, now_ms: u64) -> Self {
        Self {
            id: peer.id,
            addr: peer.addr.to_string(),
            power: peer.power,
            arch: peer.arch.to_string(),
            is_client: peer.is_client,
            remaining_bounty: peer.remaining_bounty,
            idle: peer.idle,
            queue: peer.queue,
            slots: peer.slots,
            protocol: peer.protocol.clone(),
            software: peer.software.clone(),
            compatible: peer.compatible,
            price: peer.price,
            last_seen_ms: peer.last_seen_ms,
            last_seen_ms_ago: now_ms.saturating_sub(peer.last_seen_ms),
        }
    }
}

/// The sharing policy's verdict (`status.sharing`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharingStatus {
    /// Whether a sharing policy is configured at all.
    pub policy: bool,
    pub available: bool,
    /// Why the node does not share now.
    pub reason: Option<String>,
    /// Seconds since the verdict last changed.
    pub since_s: u64,
    pub since_input_s: Option<f64>,
    pub other_cpu_percent: Option<f64>,
}

/// The join service (`status.join`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinStatus {
    pub listen: String,
    /// Join requests waiting for the operator.
    pub pending: usize,
}

/// The reply to `{"op":"ledger"}`: receipts and every balance the ledger
/// gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerReply {
    /// The bounty every member starts with.
    pub grant: Bounty,
    pub balances: Vec<LedgerBalance>,
    pub receipts: Vec<ReceiptEntry>,
}

/// One member's balance by the ledger (may be negative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerBalance {
    pub node: NodeId,
    pub balance: String,
}

/// One receipt of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptEntry {
    pub job: String,
    pub payer: NodeId,
    pub payee: NodeId,
    pub seq: u64,
    pub price: Price,
    /// MFLOPS charged for.
    pub power: u64,
    pub tasks: u64,
    /// Run time paid for.
    pub seconds: f64,
    pub fuel: Option<u64>,
    pub charge: Bounty,
    /// When the payer signed, seconds since the Unix epoch.
    pub issued: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeStatus {
        let id = NodeId::from_bytes([7; 8]);
        let price: Price = "0.25".parse().unwrap();
        let bounty: Bounty = "100".parse().unwrap();
        NodeStatus {
            node: NodeInfo {
                id,
                name: "n1".into(),
                role: Role::default(),
                addr: "127.0.0.1:7000".into(),
                power: 1000,
                arch: "x86_64".into(),
                software: "lppsp/0.1.0".into(),
                protocol: "LPPSP/1.0".into(),
                uptime_ms: 1234,
                transport: "tls-tcp".into(),
            },
            market: MarketStatus {
                price,
                epoch: 3,
                proposer: Some(id),
                pressure: Some(1.5),
                demand_tasks: Some(12),
                supply_mflops: Some(4000),
                balancer: "fsm".into(),
                balancer_kind: "fsm".into(),
                balancer_proposes: true,
                balancer_state: Some(serde_json::json!({"samples": 4})),
                open_round: Some(OpenRound {
                    epoch: 4,
                    price,
                    yes_votes: 1,
                }),
                last_abandoned: None,
                rounds: MarketStats::default(),
                peers_at_other_price: vec![id],
                peers_at_other_state: Vec::new(),
                history: vec![CommitRecord {
                    at_ms: 10,
                    state: Committed {
                        epoch: 3,
                        proposer: Some(id),
                        price,
                    },
                }],
                restored: None,
            },
            balance: BalanceStatus {
                grant: bounty,
                earned: bounty,
                spent: Bounty::ZERO,
                remaining: bounty,
                ledger: Some("-5.5".into()),
                unsettled: Bounty::ZERO,
            },
            ledger: LedgerStatus {
                receipts: 2,
                stats: AccountStats::default(),
            },
            compute: Some(ComputeStatus {
                slots: 2,
                load: 1,
                tasks_done: 5,
                tasks_failed: 0,
                tasks_refused: 1,
                tasks_cancelled: 0,
                tasks_withdrawn: 0,
                bad_frames: 0,
            }),
            jobs: JobsStatus {
                active: 0,
                tasks_in_pool: 0,
                list: vec![serde_json::json!({"job": "j", "state": "unfinished"})],
            },
            integrator: IntegratorStatus { jobs: 0, bytes: 0 },
            peers: vec![PeerStatus {
                id,
                addr: "127.0.0.1:7001".into(),
                power: 500,
                arch: "aarch64".into(),
                is_client: false,
                remaining_bounty: Some(bounty),
                idle: true,
                queue: 0,
                slots: 1,
                protocol: "LPPSP/1.0".into(),
                software: "lppsp/0.1.0".into(),
                compatible: true,
                price,
                last_seen_ms: 1000,
                last_seen_ms_ago: 234,
            }],
            dropped_beacons: [("bad_signature".to_string(), 1)].into(),
            sharing: SharingStatus {
                policy: false,
                available: true,
                reason: None,
                since_s: 1,
                since_input_s: None,
                other_cpu_percent: Some(12.5),
            },
            join: Some(JoinStatus {
                listen: "127.0.0.1:7100".into(),
                pending: 0,
            }),
            connections_refused: 0,
            member_refusals: BTreeMap::new(),
            transport_counters: [("handshakes".to_string(), 3)].into(),
        }
    }

    #[test]
    fn node_status_round_trips_through_json() {
        let status = sample();
        let text = serde_json::to_string(&status).unwrap();
        let back: NodeStatus = serde_json::from_str(&text).unwrap();
        assert_eq!(back, status);
    }

    /// The names `lppsp status --json`, the dashboard's page and the tests
    /// read (tests/common/mod.rs and tests/*.rs).
    #[test]
    fn node_status_keeps_the_json_names_readers_use() {
        let v = serde_json::to_value(sample()).unwrap();
        for path in [
            "/node/id",
            "/node/name",
            "/node/role",
            "/node/uptime_ms",
            "/market/price",
            "/market/epoch",
            "/market/proposer",
            "/market/pressure",
            "/market/demand_tasks",
            "/market/supply_mflops",
            "/market/balancer",
            "/market/balancer_kind",
            "/market/balancer_proposes",
            "/market/balancer_state",
            "/market/open_round/yes_votes",
            "/market/last_abandoned",
            "/market/rounds/rounds_committed",
            "/market/rounds/votes_cast",
            "/market/peers_at_other_price",
            "/market/peers_at_other_state",
            "/market/history/0/at_ms",
            "/market/history/0/epoch",
            "/market/history/0/price",
            "/market/history/0/proposer",
            "/market/restored",
            "/balance/grant",
            "/balance/earned",
            "/balance/spent",
            "/balance/remaining",
            "/balance/ledger",
            "/balance/unsettled",
            "/ledger/receipts",
            "/ledger/stats/receipts_issued",
            "/ledger/stats/receipts_acknowledged",
            "/compute/slots",
            "/compute/load",
            "/compute/tasks_done",
            "/compute/tasks_refused",
            "/compute/tasks_withdrawn",
            "/jobs/active",
            "/jobs/tasks_in_pool",
            "/jobs/list",
            "/integrator/jobs",
            "/integrator/bytes",
            "/peers/0/id",
            "/peers/0/slots",
            "/peers/0/idle",
            "/peers/0/price",
            "/peers/0/compatible",
            "/peers/0/last_seen_ms_ago",
            "/dropped_beacons",
            "/sharing/available",
            "/sharing/reason",
            "/join/listen",
            "/connections_refused",
            "/member_refusals",
            "/transport_counters",
        ] {
            assert!(v.pointer(path).is_some(), "status has no {path}: {v}");
        }
        // Money stays a decimal string, as the readers parse it.
        assert_eq!(v["market"]["price"], "0.25");
        assert_eq!(v["balance"]["grant"], "100");
    }
}
