//! The replies of the control endpoint as types.
//!
//! The node builds these and sends them as JSON lines; `lppsp status`,
//! `lppsp submit`, the dashboard and the tests read them back into the same
//! types, so a field renamed on one side fails to compile (or to parse) on
//! the other instead of silently reading 0. The JSON names are the ones
//! `lppsp status --json` has always printed. Parts that are open-ended by
//! design (a balancer's own status) stay `serde_json::Value`.
//!
//! A reader takes a status with sections missing (a node of another
//! version, a test's stand-in node): the status types read an absent field
//! as its default. Money, ids and job events are read strictly.

use std::collections::BTreeMap;

use lppsp_core::book::Peer;
use lppsp_core::config::Role;
use lppsp_core::job::{NodeTally, Progress};
use lppsp_core::market::{CommitRecord, Committed, MarketStats};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::NodeId;
use serde::{Deserialize, Serialize};

use crate::accounts::AccountStats;
pub use crate::join::PendingView;

/// The reply to `{"op":"status"}`: the node, its book, market and counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
#[serde(default)]
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

impl Default for NodeInfo {
    /// A node with the all-zero id and nothing else set (for tests and
    /// readers that fill in what they know).
    fn default() -> Self {
        Self {
            id: NodeId::from_bytes([0; 8]),
            name: String::new(),
            role: Role::default(),
            addr: String::new(),
            power: 0,
            arch: String::new(),
            software: String::new(),
            protocol: String::new(),
            uptime_ms: 0,
            transport: String::new(),
        }
    }
}

/// The market as this node holds it (`status.market`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LedgerStatus {
    pub receipts: u64,
    pub stats: AccountStats,
}

/// The compute side (`status.compute`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComputeStatus {
    pub slots: u32,
    /// Slots offered at the market price now (the supply curve).
    pub offered_slots: u32,
    /// The owner's reserve price: below it the node offers nothing.
    pub reserve: Price,
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobsStatus {
    pub active: usize,
    /// Tasks of this node's jobs not yet placed.
    pub tasks_in_pool: u64,
    /// Running jobs, jobs left unfinished by an earlier run, then the
    /// latest finished ones.
    pub list: Vec<JobSummary>,
}

/// Results held for jobs this node integrates (`status.integrator`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
    /// Its owner's reserve price (its Hand's `Reserve`; 0 when absent).
    pub reserve: Price,
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
            reserve: peer.reserve,
            last_seen_ms: peer.last_seen_ms,
            last_seen_ms_ago: now_ms.saturating_sub(peer.last_seen_ms),
        }
    }
}

/// The sharing policy's verdict (`status.sharing`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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

/// The reply to `{"op":"ca_pending"}`: join requests waiting for the
/// operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaPending {
    pub pending: Vec<PendingView>,
}

/// The reply to `{"op":"ca_approve"}`: the request signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaApproved {
    /// The request's id.
    pub approved: String,
    /// The joiner's node name.
    pub name: String,
    /// The joiner's node id.
    pub node: NodeId,
}

/// The reply to `{"op":"ca_reject"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRejected {
    /// The request's id.
    pub rejected: String,
}

/// One reply line to `{"op":"submit"}`: `accepted` (or `rejected`), then
/// `progress` lines, then `done` or `failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent {
    Accepted(JobAccepted),
    /// The node did not take the job.
    Rejected {
        error: String,
    },
    Progress(JobProgress),
    Done(JobDone),
    Failed(JobFailed),
}

impl JobEvent {
    /// Whether this is the job's last event.
    #[must_use]
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobEvent::Rejected { .. } | JobEvent::Done(_) | JobEvent::Failed(_)
        )
    }
}

/// The node took the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAccepted {
    pub job: String,
    pub tasks: u64,
    pub budget: Bounty,
    /// The earlier job this one resumes (`--resume`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<String>,
    /// Task results kept from the earlier run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<u64>,
    /// The most the job pays (`--max-price`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<Price>,
}

/// How far the job is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    pub job: String,
    pub progress: Progress,
    pub elapsed_s: f64,
    /// Why tasks wait unplaced, if they do.
    pub waiting: Vec<String>,
}

/// The job's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDone {
    pub job: String,
    /// The result as the executor renders it for people.
    pub result: String,
    /// The first bytes of the result, hex.
    pub result_hex: String,
    pub elapsed_s: f64,
    pub progress: Progress,
    /// What each node did and was paid, by node.
    pub nodes: BTreeMap<NodeId, NodeTally>,
    /// The node that integrated the results, when the scheduler chose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrated_by: Option<NodeId>,
}

/// Why a job failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobFailCode {
    /// The budget or the node's remaining bounty ran out.
    InsufficientBounty,
    /// A task failed on every attempt.
    TaskFailed,
    Cancelled,
    /// The results could not be integrated.
    ReduceFailed,
}

/// The job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFailed {
    pub job: String,
    pub code: JobFailCode,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
    pub progress: Progress,
    pub nodes: BTreeMap<NodeId, NodeTally>,
}

/// One job in `status.jobs.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub job: String,
    pub state: JobState,
    /// The fields below are absent for a job left `unfinished` by an
    /// earlier run of the node (only its id is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placements: Option<BTreeMap<NodeId, NodeTally>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
    /// The most the job pays (`--max-price`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<Price>,
}

/// Where a job in `status.jobs.list` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    /// Journaled by an earlier run of the node and not running now.
    Unfinished,
    Done,
    Failed,
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
                offered_slots: 2,
                reserve: price,
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
                list: vec![JobSummary {
                    job: "00000000000000aa".into(),
                    state: JobState::Unfinished,
                    kernel: None,
                    progress: None,
                    placements: None,
                    elapsed_s: None,
                    max_price: None,
                }],
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
                reserve: price,
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
        assert_eq!(
            v["jobs"]["list"][0],
            serde_json::json!({"job": "00000000000000aa", "state": "unfinished"})
        );
        // Money stays a decimal string, as the readers parse it.
        assert_eq!(v["market"]["price"], "0.25");
        assert_eq!(v["balance"]["grant"], "100");
    }

    fn progress() -> Progress {
        Progress {
            total: 4,
            done: 4,
            in_flight: 0,
            pending: 0,
            spent: "1.5".parse().unwrap(),
            budget: "10".parse().unwrap(),
            retries: 1,
            duplicates: 0,
        }
    }

    #[test]
    fn job_events_round_trip_with_their_event_names() {
        let node = NodeId::from_bytes([9; 8]);
        let nodes: BTreeMap<NodeId, NodeTally> = [(node, NodeTally::default())].into();
        let events = [
            JobEvent::Accepted(JobAccepted {
                job: "j".into(),
                tasks: 4,
                budget: "10".parse().unwrap(),
                resumed: None,
                restored: None,
                max_price: Some("1.5".parse().unwrap()),
            }),
            JobEvent::Rejected { error: "no".into() },
            JobEvent::Progress(JobProgress {
                job: "j".into(),
                progress: progress(),
                elapsed_s: 0.5,
                waiting: vec!["no idle node".into()],
            }),
            JobEvent::Done(JobDone {
                job: "j".into(),
                result: "42".into(),
                result_hex: "2a".into(),
                elapsed_s: 1.25,
                progress: progress(),
                nodes: nodes.clone(),
                integrated_by: Some(node),
            }),
            JobEvent::Failed(JobFailed {
                job: "j".into(),
                code: JobFailCode::InsufficientBounty,
                error: "out of bounty".into(),
                elapsed_s: None,
                progress: progress(),
                nodes,
            }),
        ];
        let names = ["accepted", "rejected", "progress", "done", "failed"];
        for (event, name) in events.iter().zip(names) {
            let v = serde_json::to_value(event).unwrap();
            assert_eq!(v["event"], name, "{v}");
            let back: JobEvent = serde_json::from_value(v).unwrap();
            assert_eq!(&back, event);
        }
        let done = serde_json::to_value(&events[3]).unwrap();
        for path in [
            "/job",
            "/result",
            "/result_hex",
            "/elapsed_s",
            "/progress/done",
            "/progress/spent",
            "/progress/retries",
            "/nodes/0909090909090909/tasks_done",
            "/nodes/0909090909090909/charged",
            "/integrated_by",
        ] {
            assert!(done.pointer(path).is_some(), "done has no {path}: {done}");
        }
        let failed = serde_json::to_value(&events[4]).unwrap();
        assert_eq!(failed["code"], "insufficient_bounty");
    }
}
