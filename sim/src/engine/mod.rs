//! The discrete-event loop: virtual time, simulated links, and the nodes
//! that drive the core state machines (book, market, job tracker) and the
//! registry's schedulers and balancers.
//!
//! Approximations, each for speed at thousands of nodes (docs/experiments.md):
//! - Beacons are passed as decoded values ([`VerifiedBeacon`](lppsp_core::beacon::VerifiedBeacon)), unsigned,
//!   to [`Book::handle_beacon`]; other messages are real [`Frame`]s and
//!   [`Message`]s, never encoded to bytes.
//! - One book per broadcast domain: every node of a domain hears the same
//!   beacons, so they share one real [`Book`] (its `me` is no node, so it
//!   lists every node). A partition makes two domains.
//! - Node ticks are aligned; beacons reach the book at the tick.
//! - A price-round message is one broadcast delivered to every node of the
//!   domain after one drawn latency; the votes one message draws travel
//!   together (every node hears every vote: they are the evidence a node
//!   needs to adopt another's round).
//! - Committed states carried by Hands are applied once per tick, and only
//!   while the domain's members hold different states (and the tick after):
//!   while they all agree the Hands have nothing to add, and feeding every
//!   Hand to every node each tick would cost nodes squared.
//!
//! This file holds the simulation's state, its event queue and the loop
//! that pops it; each kind of event is handled in its own file:
//! `population` (joins, leaves, crashes), `links` (domains, loss, latency,
//! beacons, frames), `tick`, `rounds` (price rounds), `clients` (jobs,
//! scheduling, settlement), `frames` (frames reaching a node), `compute`
//! (tasks run) and `series` (what a run reports).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use lppsp_core::book::{Book, BookConfig};
use lppsp_core::component::{Balancer, MarketSample, PriceProposal, Scheduler};
use lppsp_core::market::Market;
use lppsp_core::money::Price;
use lppsp_core::node::admission::Admission;
use lppsp_core::node::beacons::BeaconSchedule;
use lppsp_core::node::client::Client;
use lppsp_core::node::integrator::Integrator;
use lppsp_core::node::placement::PeerViews;
use lppsp_core::node::sampling::MarketSampler;
use lppsp_core::registry::Registry;
use lppsp_core::wire::{Arch, Endpoint, Frame, JobId, Message};
use lppsp_core::NodeId;
use lppsp_ledger::Meters;
use rand_chacha::ChaCha8Rng;

use crate::draws;
use crate::money::SharedLedger;
use crate::scenario::{Scenario, Strategy};
use crate::SimError;

mod clients;
mod compute;
mod frames;
mod links;
mod population;
mod rounds;
mod series;
mod tick;

pub use series::{EarningsRow, SeriesRow};

/// What the traced node's balancer saw and did.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceEvent {
    Sample {
        sample: MarketSample,
        proposal: Option<PriceProposal>,
    },
    Commit(Price),
}

/// Everything one run produces.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub series: Vec<SeriesRow>,
    pub earnings: Vec<EarningsRow>,
    /// Latency of every job done, ms, in completion order.
    pub latencies_ms: Vec<u64>,
    pub trace: Vec<TraceEvent>,
    pub receipts: Vec<lppsp_ledger::Receipt>,
    /// The first node's balancer at the end, in its own words.
    pub balancer_state: Option<String>,
}

/// Options of one run besides the scenario.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub seed: u64,
    /// Record this node's balancer inputs and outputs.
    pub trace_node: Option<usize>,
    /// Keep every receipt in the output (small runs).
    pub keep_receipts: bool,
}

#[derive(Debug)]
enum Ev {
    Tick,
    Sample,
    Arrival,
    Burst(u32),
    Join,
    Leave,
    Fail,
    PartitionStart(f64),
    PartitionEnd,
    /// A frame on the TLS link from `from` to `to`.
    Frame {
        to: usize,
        from: usize,
        frame: Box<Frame>,
    },
    /// A price-round message broadcast by `from` in `domain`.
    Round {
        from: usize,
        domain: usize,
        message: Box<Message>,
    },
    /// The votes a broadcast round message drew, on their way to one
    /// proposer together: (voter, Vote).
    Votes {
        domain: usize,
        votes: Vec<(usize, Message)>,
    },
    TaskDone {
        node: usize,
        life: u32,
        key: u64,
    },
    Schedule(usize),
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Work {
    job: JobId,
    task: u64,
    client: usize,
    /// The client's id and the task's input bytes, held in the node's
    /// admission until the task ends.
    client_id: NodeId,
    bytes: u64,
    result_to: Option<NodeId>,
    mflop: u64,
}

struct Running {
    work: Work,
    key: u64,
    micros: u64,
    cancelled: bool,
}

struct SimNode {
    id: NodeId,
    addr: Endpoint,
    power: u64,
    arch: Arch,
    reserve: Price,
    is_client: bool,
    alive: bool,
    /// Bumped at each death so that its pending completions are void.
    life: u32,
    seq: u64,
    beacons: BeaconSchedule,
    sampler: MarketSampler,
    market: Market,
    balancer: Option<Box<dyn Balancer>>,
    // Compute.
    admission: Admission,
    /// Results held for other nodes' jobs.
    integrator: Integrator,
    waiting: VecDeque<Work>,
    running: Vec<Running>,
    tasks_done: u64,
    tasks_refused: u64,
    // Client: the node's own client state machine.
    scheduler: Option<Box<dyn Scheduler>>,
    client: Client,
    job_seq: u64,
    meters: Meters,
    next_receipt: u64,
    schedule_queued: bool,
}

/// The simulation of one strategy under one seed.
pub struct Sim<'a> {
    sc: &'a Scenario,
    strategy: &'a Strategy,
    registry: &'a Registry,
    opts: RunOptions,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    nodes: Vec<SimNode>,
    index: BTreeMap<NodeId, usize>,
    books: Vec<Book>,
    /// Other members of each domain's book, for price rounds (per tick).
    live: Vec<Vec<NodeId>>,
    samples: Vec<Option<MarketSample>>,
    /// How many members of each domain's book carry each price.
    price_counts: Vec<BTreeMap<Price, usize>>,
    /// Whether each domain's Hands carried one committed state at the last
    /// tick.
    claims_agreed: Vec<bool>,
    /// Each domain's peers for schedulers, as of the last tick.
    views: Vec<PeerViews>,
    partition: Option<f64>,
    ledger: SharedLedger,
    arrivals_rng: ChaCha8Rng,
    churn_rng: ChaCha8Rng,
    link_rng: ChaCha8Rng,
    pop_rng: ChaCha8Rng,
    /// Live clients, by index.
    clients: Vec<usize>,
    next_key: u64,
    // Counters.
    submitted: u64,
    done: u64,
    failed: u64,
    deterred: u64,
    lost: u64,
    latencies: Vec<u64>,
    latency_mark: usize,
    out: RunOutput,
    expiry_ms: u64,
}

impl<'a> Sim<'a> {
    pub fn new(
        sc: &'a Scenario,
        strategy: &'a Strategy,
        registry: &'a Registry,
        opts: RunOptions,
    ) -> Result<Self, SimError> {
        let rng = |s: u64| draws::stream(opts.seed, s);
        let domains = if sc.links.partitions.is_empty() { 1 } else { 2 };
        let observer = NodeId::from_bytes([0; 8]);
        let books = (0..domains)
            .map(|_| {
                Book::new(BookConfig {
                    me: observer,
                    tick: std::time::Duration::from_millis(sc.tick_ms),
                    expire_ticks: sc.expire_ticks,
                    max_skew: std::time::Duration::from_secs(30),
                    protocol_major: 1,
                })
            })
            .collect();
        let mut sim = Self {
            sc,
            strategy,
            registry,
            opts,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            index: BTreeMap::new(),
            books,
            live: vec![Vec::new(); domains],
            samples: vec![None; domains],
            price_counts: vec![BTreeMap::new(); domains],
            claims_agreed: vec![true; domains],
            views: vec![PeerViews::default(); domains],
            partition: None,
            ledger: SharedLedger::new(sc.grant, opts.keep_receipts),
            arrivals_rng: rng(draws::ARRIVALS_STREAM),
            churn_rng: rng(draws::CHURN_STREAM),
            link_rng: rng(draws::LINKS_STREAM),
            pop_rng: rng(draws::POPULATION_STREAM),
            clients: Vec::new(),
            next_key: 0,
            submitted: 0,
            done: 0,
            failed: 0,
            deterred: 0,
            lost: 0,
            latencies: Vec::new(),
            latency_mark: 0,
            out: RunOutput {
                series: Vec::new(),
                earnings: Vec::new(),
                latencies_ms: Vec::new(),
                trace: Vec::new(),
                receipts: Vec::new(),
                balancer_state: None,
            },
            expiry_ms: sc.tick_ms.saturating_mul(u64::from(sc.expire_ticks) + 1),
        };
        for _ in 0..sc.population.count {
            sim.add_node()?;
        }
        sim.push(0, Ev::Tick);
        sim.push(sc.sample_every_s * 1000, Ev::Sample);
        sim.next_arrival();
        for b in &sc.jobs.bursts {
            sim.push(b.at_s * 1000, Ev::Burst(b.jobs));
        }
        for p in &sc.links.partitions {
            sim.push(p.at_s * 1000, Ev::PartitionStart(p.fraction));
            sim.push(p.until_s * 1000, Ev::PartitionEnd);
        }
        let pop = &sc.population;
        for (rate, ev) in [
            (pop.join_per_hour, Ev::Join),
            (pop.leave_per_hour, Ev::Leave),
            (pop.fail_per_hour, Ev::Fail),
        ] {
            if rate > 0.0 {
                let gap = sim.churn_gap(rate);
                sim.push(gap, ev);
            }
        }
        Ok(sim)
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            ev,
        }));
    }

    /// Runs to the end of the scenario; `progress(virtual ms)` is called
    /// at every sample.
    pub fn run(mut self, progress: &dyn Fn(u64)) -> Result<RunOutput, SimError> {
        let end = self.sc.duration_s.saturating_mul(1000);
        while let Some(Reverse(q)) = self.queue.pop() {
            if q.at > end {
                break;
            }
            self.now = q.at;
            match q.ev {
                Ev::Tick => {
                    self.tick()?;
                    self.push(self.now + self.sc.tick_ms, Ev::Tick);
                }
                Ev::Sample => {
                    self.sample()?;
                    progress(self.now);
                    self.push(self.now + self.sc.sample_every_s * 1000, Ev::Sample);
                }
                Ev::Arrival => {
                    self.arrival()?;
                    self.next_arrival();
                }
                Ev::Burst(n) => {
                    for _ in 0..n {
                        self.arrival()?;
                    }
                }
                Ev::Join => {
                    self.add_node()?;
                    let gap = self.churn_gap(self.sc.population.join_per_hour);
                    self.push(self.now + gap, Ev::Join);
                }
                Ev::Leave => {
                    if let Some(i) = self.pick_alive() {
                        self.kill(i, true);
                    }
                    let gap = self.churn_gap(self.sc.population.leave_per_hour);
                    self.push(self.now + gap, Ev::Leave);
                }
                Ev::Fail => {
                    if let Some(i) = self.pick_alive() {
                        self.kill(i, false);
                    }
                    let gap = self.churn_gap(self.sc.population.fail_per_hour);
                    self.push(self.now + gap, Ev::Fail);
                }
                Ev::PartitionStart(f) => self.partition = Some(f),
                Ev::PartitionEnd => self.partition = None,
                Ev::Frame { to, from, frame } => self.on_frame(to, from, *frame)?,
                Ev::Round {
                    from,
                    domain,
                    message,
                } => self.on_round(from, domain, *message)?,
                Ev::Votes { domain, votes } => {
                    for (from, vote) in votes {
                        self.on_round(from, domain, vote)?;
                    }
                }
                Ev::TaskDone { node, life, key } => self.on_task_done(node, life, key),
                Ev::Schedule(i) => {
                    if let Some(n) = self.nodes.get_mut(i) {
                        n.schedule_queued = false;
                    }
                    self.schedule(i)?;
                }
            }
        }
        self.finish();
        Ok(self.out)
    }
}
