//! The discrete-event loop: virtual time, simulated links, and the nodes
//! that drive the core state machines (book, market, job tracker) and the
//! registry's schedulers and balancers.
//!
//! Approximations, each for speed at thousands of nodes (docs/experiments.md):
//! - Beacons are passed as decoded values ([`VerifiedBeacon`]), unsigned,
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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use bytes::Bytes;
use lppsp_core::beacon::VerifiedBeacon;
use lppsp_core::book::{Book, BookConfig, BookEvent};
use lppsp_core::component::scheduler::Constraints;
use lppsp_core::component::{Balancer, MarketSample, PriceProposal, Scheduler};
use lppsp_core::config::{ComponentSection, ShareSection};
use lppsp_core::job::JobSpec;
use lppsp_core::market::{self, Committed, Market, MarketConfig, MarketOutput};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::node::admission::{Admission, AdmissionConfig, NodeState, TaskOffer};
use lppsp_core::node::beacons::BeaconSchedule;
use lppsp_core::node::beacons::BeaconState;
use lppsp_core::node::client::{self, Client, ClientEvent, ClientJob};
use lppsp_core::node::integrator::{self, Integrator};
use lppsp_core::node::placement::PeerViews;
use lppsp_core::node::sampling::{self, MarketSampler};
use lppsp_core::registry::Registry;
use lppsp_core::splitmix::splitmix64;
use lppsp_core::wire::headers::{ResultHeaders, TaskHeaders};
use lppsp_core::wire::{Arch, Endpoint, Frame, Hand, JobId, KernelName, Message};
use lppsp_core::{NodeId, PROTOCOL_VERSION};
use lppsp_ledger::{Meters, TaskCharge};
use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha8Rng;

use crate::draws::{self, unit};
use crate::money::SharedLedger;
use crate::scenario::{Scenario, Strategy, NO_BALANCER};
use crate::SimError;

/// Receipts are dated from here (2026-01-01T00:00:00Z) plus virtual time.
const SIM_EPOCH_S: u64 = 1_767_225_600;
/// As the node's client: queue about this much work per slot ahead.
/// A node repeats Idle every this many ticks (as the node does).
const SOFTWARE: &str = "lppsp-sim";

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

fn node_id(index: usize) -> NodeId {
    NodeId::from_bytes(splitmix64(index as u64 + 1).to_be_bytes())
}

fn units(micros: i128) -> f64 {
    micros as f64 / 1e6
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

    fn churn_gap(&mut self, per_hour: f64) -> u64 {
        let u = unit(&mut self.churn_rng);
        (-(1.0 - u).ln() / per_hour * 3_600_000.0).ceil() as u64 + 1
    }

    fn add_node(&mut self) -> Result<(), SimError> {
        let index = self.nodes.len();
        let id = node_id(index);
        let pop = &self.sc.population;
        let draws::NodeDraw {
            power,
            arch,
            reserve,
            is_client,
        } = draws::node(&mut self.pop_rng, pop);
        let arch = Arch::new(arch).map_err(SimError::Scenario)?;
        let runs_balancer = pop
            .balancer_nodes
            .is_none_or(|n| (index as u64) < u64::from(n));
        let balancer = if runs_balancer && self.strategy.kind != NO_BALANCER {
            let section = ComponentSection {
                kind: self.strategy.kind.clone(),
                path: self.strategy.path.clone(),
                options: self.strategy.options.clone(),
            };
            Some(
                self.registry
                    .balancer(&section)
                    .map_err(|e| SimError::Component(e.to_string()))?,
            )
        } else {
            None
        };
        // The node's rule (`sampling::balancer_proposes`): an
        // observer-only balancer proposes from the pool's observer, here
        // the first node, and nowhere else; a node whose proposals would
        // be dropped runs none (the same outcome, without the fitting).
        let observer = index == 0;
        let balancer =
            balancer.filter(|b| sampling::balancer_proposes(observer, b.observer_only()));
        let scheduler = if is_client {
            let j = &self.sc.jobs.scheduler;
            let section = ComponentSection {
                kind: j.kind.clone(),
                path: j.path.clone(),
                options: j.options.clone(),
            };
            Some(
                self.registry
                    .scheduler(&section)
                    .map_err(|e| SimError::Component(e.to_string()))?,
            )
        } else {
            None
        };
        let ip = Ipv4Addr::from(0x0A00_0000u32 | (index as u32 & 0x00FF_FFFF));
        let node = SimNode {
            id,
            addr: Endpoint(SocketAddr::V4(SocketAddrV4::new(ip, 7100))),
            power,
            arch,
            reserve,
            is_client,
            alive: true,
            life: 0,
            seq: 0,
            beacons: BeaconSchedule::new(),
            sampler: MarketSampler::new(self.sc.initial_price, self.expiry_ms),
            market: Market::new(MarketConfig {
                me: id,
                initial_price: self.sc.initial_price,
                repeat_ms: self.sc.tick_ms,
                round_timeout_ms: self.expiry_ms.saturating_mul(3),
                max_step_milli: MarketConfig::DEFAULT_MAX_STEP_MILLI,
                // Simulated members are honest and their balancers pace
                // themselves; the interval guards against modified ones.
                min_move_interval_ms: 0,
                reconcile_after_ms: self.expiry_ms.saturating_mul(2),
            }),
            balancer,
            integrator: Integrator::new(),
            admission: Admission::new(AdmissionConfig::from_share(
                &ShareSection {
                    slots: pop.slots,
                    ..ShareSection::default()
                },
                reserve,
            )),
            waiting: VecDeque::new(),
            running: Vec::new(),
            tasks_done: 0,
            tasks_refused: 0,
            scheduler,
            client: Client::new(id, self.expiry_ms),
            job_seq: 0,
            meters: Meters::since(self.now),
            next_receipt: 1,
            schedule_queued: false,
        };
        self.ledger.open_account(id);
        if is_client {
            self.clients.push(index);
        }
        self.index.insert(id, index);
        self.nodes.push(node);
        Ok(())
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

    fn pick_alive(&mut self) -> Option<usize> {
        let alive: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes.get(i).is_some_and(|n| n.alive))
            .collect();
        if alive.len() <= 1 {
            return None;
        }
        let k = (unit(&mut self.churn_rng) * alive.len() as f64) as usize;
        alive.get(k).copied()
    }

    /// Which side of the current partition a node is on.
    fn domain(&self, i: usize) -> usize {
        match self.partition {
            Some(f) if (splitmix64(i as u64 ^ 0x5157) >> 11) as f64 / (1u64 << 53) as f64 <= f => 1,
            _ => 0,
        }
    }

    /// Where a beacon from node `i` is heard.
    fn beacon_domains(&self, i: usize) -> std::ops::Range<usize> {
        if self.partition.is_some() {
            let d = self.domain(i);
            d..d + 1
        } else {
            0..self.books.len()
        }
    }

    fn lost(&mut self) -> bool {
        self.sc.links.loss > 0.0 && unit(&mut self.link_rng) < self.sc.links.loss
    }

    fn latency(&mut self) -> u64 {
        let j = self.sc.links.jitter_ms;
        let extra = if j > 0 {
            self.link_rng.next_u64() % (j + 1)
        } else {
            0
        };
        self.sc.links.latency_ms + extra
    }

    fn beacon(&mut self, i: usize, message: Message) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        n.seq += 1;
        let curve = lppsp_core::curves::SupplyCurve::flat(n.reserve, self.sc.population.slots);
        let state = BeaconState::of(
            &message,
            &n.beacons,
            curve.slots_at(n.market.price()),
            Some(n.reserve),
            n.market.committed(),
        );
        let hand = state.introduces;
        let b = VerifiedBeacon {
            node: n.id,
            seq: n.seq,
            price: n.market.price(),
            cert_der: hand.then(Vec::new),
            protocol: hand.then(|| PROTOCOL_VERSION.to_string()),
            software: hand.then(|| SOFTWARE.to_string()),
            queue: state.queue,
            slots: state.slots,
            reserve: state.reserve,
            epoch: state.epoch,
            message,
        };
        let src = n.addr.0;
        let domains = self.beacon_domains(i);
        let last = domains.end.saturating_sub(1);
        let mut b = Some(b);
        for d in domains {
            if self.lost() {
                continue;
            }
            let beacon = if d == last { b.take() } else { b.clone() };
            if let (Some(book), Some(beacon)) = (self.books.get_mut(d), beacon) {
                let _ = book.handle_beacon(self.now, src, beacon);
            }
        }
    }

    fn remaining(&self, i: usize) -> Bounty {
        let Some(n) = self.nodes.get(i) else {
            return Bounty::ZERO;
        };
        let unsettled = i128::from(n.meters.unsettled().micros());
        let left = self.ledger.balance(&n.id) - unsettled;
        Bounty::from_micros(u64::try_from(left.max(0)).unwrap_or(u64::MAX))
    }

    fn tick(&mut self) -> Result<(), SimError> {
        let now = self.now;
        // Beacons: Hand every tick; Idle on change and every few ticks.
        for i in 0..self.nodes.len() {
            let Some(n) = self.nodes.get_mut(i) else {
                continue;
            };
            if !n.alive {
                continue;
            }
            let load = (n.running.len() + n.waiting.len()) as u64;
            let pending = n.client.pending(n.market.price());
            // Simulated owners never take their machines back.
            let idle_due = n.beacons.on_tick(load, pending, true);
            let idle = n.beacons.idle();
            let hand = Hand {
                addr: n.addr,
                power: n.power,
                arch: n.arch.clone(),
                is_client: n.is_client,
                remaining_bounty: None,
            };
            let is_client = n.is_client;
            let hand = Hand {
                remaining_bounty: is_client.then(|| self.remaining(i)),
                ..hand
            };
            self.beacon(i, Message::Hand(hand));
            if idle_due {
                self.beacon(i, Message::Idle { idle });
            }
        }
        // The books: expiries and what changed.
        let mut claims: Vec<Vec<(NodeId, Committed)>> = vec![Vec::new(); self.books.len()];
        let mut departed: Vec<(usize, NodeId)> = Vec::new();
        for (d, book) in self.books.iter_mut().enumerate() {
            book.handle_timeout(now);
            while let Some(ev) = book.poll_event() {
                match ev {
                    BookEvent::Departed(id, _) => departed.push((d, id)),
                    BookEvent::PeerCommitted(from, state) => {
                        if let Some(c) = claims.get_mut(d) {
                            c.push((from, state));
                        }
                    }
                    _ => {}
                }
            }
            if let Some(s) = self.samples.get_mut(d) {
                // A domain's book lists every node of the domain, the
                // sampling one included: no own share to add. Sampled at
                // the price most of its nodes announce; each node's
                // balancer then reads it at its own price.
                let price = modal_price(book.peers().map(|p| p.price));
                *s = Some(market::sample_book(book, now, price, None));
            }
            if let Some(c) = self.price_counts.get_mut(d) {
                c.clear();
                for p in book.peers() {
                    *c.entry(p.price).or_insert(0) += 1;
                }
            }
            if let Some(l) = self.live.get_mut(d) {
                l.clear();
                l.extend(book.peers().map(|p| p.id));
            }
            if let Some(v) = self.views.get_mut(d) {
                v.rebuild(book);
            }
        }
        for (d, id) in departed {
            for i in 0..self.nodes.len() {
                if self.domain(i) != d {
                    continue;
                }
                if let Some(n) = self.nodes.get_mut(i) {
                    if n.alive && !n.client.is_empty() {
                        n.client.handle_node_lost(id);
                        self.queue_schedule(i, 0);
                    }
                }
            }
        }
        // Hands are fed while a domain's members disagree, and once more
        // after they agree again (so every market sees the agreement).
        let agreed: Vec<bool> = claims
            .iter()
            .map(|c| c.windows(2).all(|w| w[0].1 == w[1].1))
            .collect();
        let feed: Vec<bool> = agreed
            .iter()
            .zip(&self.claims_agreed)
            .map(|(now, before)| !now || !before)
            .collect();
        self.claims_agreed.clone_from(&agreed);
        // Every node: take the Hands' committed states, run timers, sample
        // the market, settle.
        for i in 0..self.nodes.len() {
            let d = self.domain(i);
            let Some(n) = self.nodes.get_mut(i) else {
                continue;
            };
            if !n.alive {
                continue;
            }
            let live = self.live.get(d).map(Vec::as_slice).unwrap_or_default();
            if feed.get(d).copied().unwrap_or(false) {
                for (from, state) in claims.get(d).map(Vec::as_slice).unwrap_or_default() {
                    n.market.on_peer_state(now, *from, *state, live);
                }
            }
            n.client.handle_timeout(now);
            n.integrator.expire(now);
            let timers = n.client.wants_round();
            let domain_sample = self.samples.get(d).copied().flatten().map(|mut s| {
                s.price = n.market.price();
                s
            });
            // Whether some member of the domain still carries another price.
            let behind = self.price_counts.get(d).is_some_and(|c| {
                let at_ours = c.get(&n.market.price()).copied().unwrap_or(0);
                c.values().sum::<usize>() > at_ours
            });
            let sample = domain_sample.and_then(|s| n.sampler.take(now, s, behind));
            if let Some(sample) = sample {
                if let Some(b) = &mut n.balancer {
                    let proposal = b.on_sample(&sample);
                    if self.opts.trace_node == Some(i) {
                        self.out.trace.push(TraceEvent::Sample {
                            sample,
                            proposal: proposal.clone(),
                        });
                    }
                    if let Some(p) = proposal {
                        n.market.propose(now, p.price, p.evidence, live);
                    }
                }
            }
            n.market.handle_timeout(now, live);
            self.flush_market(i, d);
            if timers {
                self.queue_schedule(i, 0);
            }
            self.settle_if_due(i, false)?;
        }
        Ok(())
    }

    fn flush_market(&mut self, i: usize, d: usize) {
        self.flush_market_batching(i, d, None);
    }

    /// As [`Sim::flush_market`]; votes go into `votes` (per proposer) when
    /// given, to travel as one event.
    fn flush_market_batching(
        &mut self,
        i: usize,
        d: usize,
        mut votes: Option<&mut BTreeMap<usize, Vec<(usize, Message)>>>,
    ) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        let outputs = n.market.drain();
        for out in outputs {
            match out {
                MarketOutput::Broadcast(Message::Vote {
                    epoch,
                    proposer,
                    price,
                    yes,
                }) if votes.is_some() => {
                    let to = self.index.get(&proposer).copied();
                    if let (Some(batch), Some(to)) = (votes.as_deref_mut(), to) {
                        let vote = Message::Vote {
                            epoch,
                            proposer,
                            price,
                            yes,
                        };
                        batch.entry(to).or_default().push((i, vote));
                    }
                }
                MarketOutput::Broadcast(message) => {
                    let at = self.now + self.latency();
                    self.push(
                        at,
                        Ev::Round {
                            from: i,
                            domain: d,
                            message: Box::new(message),
                        },
                    );
                }
                // Simulated members are honest: nothing to count.
                MarketOutput::Refused { .. } => {}
                MarketOutput::Committed(c) => {
                    if let Some(n) = self.nodes.get_mut(i) {
                        if let Some(b) = &mut n.balancer {
                            b.on_commit(c.price);
                            if self.opts.trace_node == Some(i) {
                                self.out.trace.push(TraceEvent::Commit(c.price));
                            }
                        }
                    }
                }
            }
        }
    }

    fn on_round(&mut self, from: usize, domain: usize, message: Message) -> Result<(), SimError> {
        let Some(sender) = self.nodes.get(from).map(|n| n.id) else {
            return Ok(());
        };
        // The book passes on round messages from its members only.
        if self
            .books
            .get(domain)
            .and_then(|b| b.peer(&sender))
            .is_none()
        {
            return Ok(());
        }
        let targets = 0..self.nodes.len();
        let mut votes: BTreeMap<usize, Vec<(usize, Message)>> = BTreeMap::new();
        for i in targets {
            if i == from || self.domain(i) != domain || self.lost() {
                continue;
            }
            let now = self.now;
            let Some(n) = self.nodes.get_mut(i) else {
                continue;
            };
            if !n.alive {
                continue;
            }
            let live = self.live.get(domain).map(Vec::as_slice).unwrap_or_default();
            n.market.on_message(now, sender, &message, live);
            self.flush_market_batching(i, domain, Some(&mut votes));
        }
        // The votes this message drew reach each proposer after one latency.
        for (_, batch) in votes {
            let at = self.now + self.latency();
            self.push(
                at,
                Ev::Votes {
                    domain,
                    votes: batch,
                },
            );
        }
        Ok(())
    }

    fn next_arrival(&mut self) {
        if let Some(at) = draws::next_arrival_ms(
            &mut self.arrivals_rng,
            &self.sc.jobs,
            self.sc.duration_s,
            self.now,
        ) {
            self.push(at, Ev::Arrival);
        }
    }

    fn arrival(&mut self) -> Result<(), SimError> {
        let j = &self.sc.jobs;
        let draws::JobDraw {
            works,
            max_price,
            arch,
            client_pick,
        } = draws::job(&mut self.arrivals_rng, j, &self.sc.population);
        let arch = arch.and_then(|n| Arch::new(n).ok());
        let Some(c) = draws::pick_client(client_pick, &self.clients) else {
            return Ok(());
        };
        let budget = j.budget.min(self.remaining(c));
        let (max_attempts, timeout, est) = (j.max_attempts, j.task_timeout_s, j.est_task_ms);
        let Some(n) = self.nodes.get_mut(c) else {
            return Ok(());
        };
        // The node's rule (`curves::buys_at`); a job the price deters is
        // not submitted here, where a node's job would wait.
        if !lppsp_core::curves::buys_at(max_price, n.market.price()) {
            self.deterred += 1;
            return Ok(());
        }
        n.job_seq += 1;
        let id = JobId(((c as u64) << 32) | n.job_seq);
        let spec = JobSpec {
            id,
            client: n.id,
            kernel: KernelName::new("sim").map_err(SimError::Scenario)?,
            inputs: works
                .iter()
                .map(|w| Bytes::copy_from_slice(&w.to_be_bytes()))
                .collect(),
            budget,
            constraints: Constraints { arch, min_power: 0 },
            max_attempts: max_attempts.max(1),
            task_timeout_ms: timeout.saturating_mul(1000).max(1),
            est_task_micros: est.saturating_mul(1000).max(1),
            verify: 1,
        };
        let mut job = ClientJob::new(spec, self.now);
        job.max_price = max_price;
        n.client.submit(job);
        self.submitted += 1;
        self.schedule(c)
    }

    fn queue_schedule(&mut self, i: usize, delay: u64) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if n.schedule_queued || !n.alive {
            return;
        }
        n.schedule_queued = true;
        self.push(self.now + delay, Ev::Schedule(i));
    }

    /// The client's scheduling round: place pending tasks, send commands,
    /// close finished jobs (as the node's client does after each event).
    fn schedule(&mut self, i: usize) -> Result<(), SimError> {
        let now = self.now;
        let d = self.domain(i);
        let Some(n) = self.nodes.get_mut(i) else {
            return Ok(());
        };
        if !n.alive {
            return Ok(());
        }
        let price = n.market.price();
        // The domain's peers as of the last tick (rebuilt every tick): a
        // scale-only approximation, one view shared by a domain's clients.
        let (Some(views), Some(book), Some(scheduler)) = (
            self.views.get_mut(d),
            self.books.get(d),
            n.scheduler.as_mut(),
        ) else {
            return Ok(());
        };
        n.client
            .place(now, price, views, scheduler.as_mut(), |node| {
                book.promise(node)
            });
        let mut sends: Vec<(NodeId, Frame)> = Vec::new();
        while let Some(t) = n.client.poll_transmit() {
            sends.push(t);
        }
        let mut unreachable = Vec::new();
        for (to, frame) in sends {
            if !self.send(i, to, frame) {
                unreachable.push(to);
            }
        }
        if !unreachable.is_empty() {
            if let Some(n) = self.nodes.get_mut(i) {
                for to in unreachable {
                    n.client.handle_link_lost(now, to);
                }
            }
            self.queue_schedule(i, self.sc.jobs.schedule_delay_ms.max(1));
        }
        if self.client_events(i) {
            self.settle_if_due(i, true)?;
        }
        Ok(())
    }

    /// Takes what node `i`'s client reported: charges to meter, jobs that
    /// ended. Returns whether a job ended.
    fn client_events(&mut self, i: usize) -> bool {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(i) else {
            return false;
        };
        let mut ended = false;
        while let Some(event) = n.client.poll_event() {
            match event {
                ClientEvent::Counted {
                    job,
                    payee,
                    granted,
                    ..
                } => n
                    .meters
                    .add(TaskCharge::granted(job, payee, &granted, None)),
                ClientEvent::Finished(job) => {
                    ended = true;
                    if client::succeeded(&job) {
                        self.done += 1;
                        self.latencies.push(now.saturating_sub(job.submitted_ms));
                    } else {
                        self.failed += 1;
                    }
                }
                // Simulated members are honest; refusals and integrators'
                // answers change nothing here beyond the client's state.
                ClientEvent::MemberFault { .. }
                | ClientEvent::Refused { .. }
                | ClientEvent::IntegrationFailed { .. }
                | ClientEvent::Integrating { .. } => {}
            }
        }
        ended
    }

    /// Sends a frame over the link from `from` to `to`; false when the link
    /// cannot be made (the node is gone or across a partition).
    fn send(&mut self, from: usize, to: NodeId, frame: Frame) -> bool {
        let Some(&t) = self.index.get(&to) else {
            return false;
        };
        let reachable =
            self.nodes.get(t).is_some_and(|n| n.alive) && self.domain(t) == self.domain(from);
        if !reachable {
            return false;
        }
        let at = self.now + self.latency();
        self.push(
            at,
            Ev::Frame {
                to: t,
                from,
                frame: Box::new(frame),
            },
        );
        true
    }

    fn on_frame(&mut self, to: usize, from: usize, frame: Frame) -> Result<(), SimError> {
        let now = self.now;
        let d = self.domain(to);
        if self.domain(from) != d {
            return Ok(());
        }
        let Some(sender) = self.nodes.get(from).map(|n| n.id) else {
            return Ok(());
        };
        let Some(n) = self.nodes.get_mut(to) else {
            return Ok(());
        };
        if !n.alive {
            return Ok(());
        }
        match frame.message {
            Message::Task { job, task, .. } => {
                let body = frame.body.map(|b| b.to_bytes()).unwrap_or_default();
                // The node's rules; simulated clients are all in good
                // standing and every node has the simulated kernel.
                let offer = TaskOffer {
                    client: sender,
                    price: frame.price,
                    kernel_known: true,
                    input_bytes: body.len() as u64,
                };
                let state = NodeState {
                    available: true,
                    client_refused: false,
                    load: (n.running.len() + n.waiting.len()) as u64,
                };
                if let Err(refusal) = n.admission.admit(&offer, state) {
                    n.tasks_refused += 1;
                    let reason = refusal.reason();
                    let answer =
                        Frame::new(n.market.price(), Message::Refuse { job, task, reason });
                    self.send(to, sender, answer);
                    return Ok(());
                }
                let mflop = body
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(1);
                let result_to = TaskHeaders::read(&frame.headers)
                    .ok()
                    .and_then(|h| h.result_to);
                n.waiting.push_back(Work {
                    job,
                    task,
                    client: from,
                    client_id: sender,
                    bytes: offer.input_bytes,
                    result_to,
                    mflop,
                });
                self.start_tasks(to);
            }
            Message::Cancel {
                job,
                task: Some(task),
            } => {
                let admission = &mut n.admission;
                n.waiting.retain(|w| {
                    let cancelled = w.job == job && w.task == task && w.client == from;
                    if cancelled {
                        admission.release(w.client_id, w.bytes);
                    }
                    !cancelled
                });
                for r in &mut n.running {
                    if r.work.job == job && r.work.task == task && r.work.client == from {
                        r.cancelled = true;
                    }
                }
            }
            Message::Cancel { job, task: None } => n.integrator.forget(sender, job),
            Message::Result { .. } if ResultHeaders::for_integrator(&frame.headers) => {
                // We integrate for the client: hold the result, tell it.
                if let Some((client, notice)) = n.integrator.on_result(now, sender, frame) {
                    self.send(to, client, notice);
                }
            }
            Message::Integrate { job, tasks, .. } => {
                // The simulated kernel's reduce is empty: the answer says
                // whether every result is held here.
                let outcome = n
                    .integrator
                    .take_for_integration(sender, job, tasks)
                    .map(|_| Vec::new())
                    .map_err(|e| e.to_string());
                let answer = integrator::answer(n.market.price(), job, outcome);
                self.send(to, sender, answer);
            }
            Message::Result { .. } => {
                let book = self.books.get(d);
                n.client.handle_frame(now, sender, frame, |worker| {
                    book.and_then(|b| b.peer(worker)).map_or(0, |p| p.power)
                });
                self.client_events(to);
                self.queue_schedule(to, self.sc.jobs.schedule_delay_ms);
            }
            Message::Integrated { .. } => {
                n.client.handle_frame(now, sender, frame, |_| 0);
                self.client_events(to);
                self.queue_schedule(to, 0);
            }
            _ => {}
        }
        Ok(())
    }

    fn start_tasks(&mut self, i: usize) {
        let slots = self.sc.population.slots as usize;
        loop {
            let Some(n) = self.nodes.get_mut(i) else {
                return;
            };
            if n.running.len() >= slots {
                return;
            }
            let Some(work) = n.waiting.pop_front() else {
                return;
            };
            let micros = work.mflop.saturating_mul(1_000_000) / n.power.max(1);
            self.next_key += 1;
            let key = self.next_key;
            let life = n.life;
            n.running.push(Running {
                work,
                key,
                micros,
                cancelled: false,
            });
            let at = self.now + micros.div_ceil(1000).max(1);
            self.push(at, Ev::TaskDone { node: i, life, key });
        }
    }

    fn on_task_done(&mut self, i: usize, life: u32, key: u64) {
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if !n.alive || n.life != life {
            return;
        }
        let Some(pos) = n.running.iter().position(|r| r.key == key) else {
            return;
        };
        let r = n.running.swap_remove(pos);
        n.admission.release(r.work.client_id, r.work.bytes);
        if !r.cancelled {
            n.tasks_done += 1;
            let price = n.market.price();
            let power = n.power;
            let frame = Frame::new(
                price,
                Message::Result {
                    job: r.work.job,
                    task: r.work.task,
                    ok: true,
                },
            );
            let mut headers = ResultHeaders {
                elapsed_us: Some(r.micros),
                power: Some(power),
                ..ResultHeaders::default()
            };
            let client_id = self.nodes.get(r.work.client).map(|c| c.id);
            let to = match (r.work.result_to, client_id) {
                (Some(integrator), Some(client)) if integrator != client => {
                    headers.client = Some(client);
                    Some(integrator)
                }
                (_, client) => client,
            };
            if let Some(to) = to {
                self.send(i, to, headers.write(frame));
            }
        }
        self.start_tasks(i);
    }

    /// A node goes away: with a Leave beacon, or silently (a crash).
    fn kill(&mut self, i: usize, leave: bool) {
        if leave {
            if let Some(addr) = self.nodes.get(i).map(|n| n.addr) {
                self.beacon(i, Message::Leave { addr });
            }
        }
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        n.alive = false;
        n.life += 1;
        self.clients.retain(|&c| c != i);
        n.waiting.clear();
        n.running.clear();
        n.admission = Admission::new(n.admission.config().clone());
        n.integrator = Integrator::new();
        self.lost += n.client.len() as u64;
        n.client = Client::new(n.id, self.expiry_ms);
        // Unsettled charges die with the payer: no receipt, no money moves.
        n.meters.clear();
        if leave {
            for book in &mut self.books {
                while book.poll_event().is_some() {}
            }
            let id = self.nodes.get(i).map(|n| n.id);
            if let Some(id) = id {
                for c in 0..self.nodes.len() {
                    let Some(n) = self.nodes.get_mut(c) else {
                        continue;
                    };
                    if n.alive && !n.client.is_empty() {
                        n.client.handle_node_lost(id);
                        self.queue_schedule(c, 0);
                    }
                }
            }
        }
    }

    /// Turns open meters into receipts on job end or when the settlement
    /// period has passed.
    fn settle_if_due(&mut self, i: usize, job_ended: bool) -> Result<(), SimError> {
        let now = self.now;
        let every = self.sc.settle_every_s * 1000;
        let Some(n) = self.nodes.get_mut(i) else {
            return Ok(());
        };
        if !(job_ended && !n.meters.is_empty() || n.meters.due(now, every)) {
            return Ok(());
        }
        let market_price = n.market.price();
        let issued = SIM_EPOCH_S + now / 1000;
        for settlement in n.meters.settle(now) {
            let fields = settlement.receipt_fields(n.id, n.next_receipt, issued, market_price);
            n.next_receipt += 1;
            self.ledger.settle(fields)?;
        }
        Ok(())
    }

    fn sample(&mut self) -> Result<(), SimError> {
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

    fn finish(&mut self) {
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

/// The price most often among `prices` (the lowest of those tied), 0 for
/// none.
fn modal_price(prices: impl Iterator<Item = Price>) -> Price {
    let mut counts: BTreeMap<Price, u64> = BTreeMap::new();
    for p in prices {
        *counts.entry(p).or_insert(0) += 1;
    }
    counts
        .iter()
        .max_by_key(|(p, c)| (**c, Reverse(**p)))
        .map(|(p, _)| *p)
        .unwrap_or(Price::ZERO)
}
