//! Scenario files: what network to simulate, what load to put on it, and
//! which balancers to compare. TOML, every key documented in
//! docs/experiments.md; unknown keys are errors that name the key and file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lppsp_core::config::{MarketSection, NetworkSection};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::node::defaults;
use serde::Deserialize;

/// A scenario that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: key `{key}`: {message}")]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// One scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in plots and the summary.
    #[serde(default = "default_name")]
    pub name: String,
    /// Simulated time, seconds.
    pub duration_s: u64,
    /// One row of the time series every this many simulated seconds.
    #[serde(default = "default_sample_every")]
    pub sample_every_s: u64,
    /// The node tick (beacons, balancer samples), ms; the node's `network.tick_ms`.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// A peer leaves the book after this many ticks without a beacon.
    #[serde(default = "default_expire_ticks")]
    pub expire_ticks: u32,
    /// The committed price at start (epoch 0).
    #[serde(default = "default_price")]
    pub initial_price: Price,
    /// The community grant every node starts with.
    #[serde(default = "default_grant")]
    pub grant: Bounty,
    /// Open meters are settled into receipts at least this often, s.
    #[serde(default = "default_settle")]
    pub settle_every_s: u64,
    pub population: Population,
    #[serde(default)]
    pub links: Links,
    pub jobs: Jobs,
    /// The balancers to compare; each runs the whole scenario once per seed.
    pub strategies: Vec<Strategy>,
}

fn default_name() -> String {
    "scenario".into()
}
fn default_sample_every() -> u64 {
    10
}
fn default_tick_ms() -> u64 {
    NetworkSection::default().tick_ms
}
fn default_expire_ticks() -> u32 {
    NetworkSection::default().expire_ticks
}
fn default_price() -> Price {
    MarketSection::default().initial_price
}
fn default_grant() -> Bounty {
    Bounty::from_micros(1_000_000_000)
}
fn default_settle() -> u64 {
    defaults::SETTLE_EVERY_MS / 1000
}

/// A distribution of a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "distribution", rename_all = "lowercase")]
pub enum Dist {
    Fixed {
        value: f64,
    },
    Uniform {
        min: f64,
        max: f64,
    },
    /// exp(N(ln median, sigma)).
    Lognormal {
        median: f64,
        sigma: f64,
    },
}

impl Dist {
    fn check(&self, key: &str) -> Result<(), (String, String)> {
        let bad = |m: &str| Err((key.to_string(), m.to_string()));
        match *self {
            Dist::Fixed { value } if !(value.is_finite() && value >= 0.0) => {
                bad("value must be a finite number >= 0")
            }
            Dist::Uniform { min, max }
                if !(min.is_finite() && max.is_finite() && 0.0 <= min && min <= max) =>
            {
                bad("need 0 <= min <= max")
            }
            Dist::Lognormal { median, sigma }
                if !(median > 0.0 && median.is_finite() && (0.0..10.0).contains(&sigma)) =>
            {
                bad("need median > 0 and 0 <= sigma < 10")
            }
            _ => Ok(()),
        }
    }
}

/// An architecture and how common it is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchShare {
    pub name: String,
    pub weight: u32,
}

/// The nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// Nodes at start.
    pub count: u32,
    /// Offered processing power, MFLOPS.
    pub power: Dist,
    /// Task slots per node.
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Fraction of nodes that also submit jobs (all nodes compute).
    #[serde(default = "default_clients")]
    pub clients: f64,
    #[serde(default = "default_arches")]
    pub architectures: Vec<ArchShare>,
    /// The lowest price at which a node offers its slots (its Hand says 0
    /// slots below it): the supply curve. Default: always offers.
    #[serde(default)]
    pub reserve_price: Option<Dist>,
    /// New nodes per simulated hour (Poisson).
    #[serde(default)]
    pub join_per_hour: f64,
    /// Nodes leaving with a Leave beacon, per hour.
    #[serde(default)]
    pub leave_per_hour: f64,
    /// Nodes crashing (no Leave; they expire from books), per hour.
    #[serde(default)]
    pub fail_per_hour: f64,
    /// How many nodes run the strategy's balancer (the first ones, by
    /// index); the rest vote in price rounds but never propose. Default:
    /// all. Every node proposing at once costs N x N deliveries a round.
    #[serde(default)]
    pub balancer_nodes: Option<u32>,
}

fn default_slots() -> u32 {
    2
}
fn default_clients() -> f64 {
    0.1
}
fn default_arches() -> Vec<ArchShare> {
    vec![ArchShare {
        name: "x86_64".into(),
        weight: 1,
    }]
}

/// A network partition: for a while, nodes are split in two groups that do
/// not hear each other.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub at_s: u64,
    pub until_s: u64,
    /// Share of nodes on the minority side (by node index hash).
    pub fraction: f64,
}

/// Simulated links.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// One-way latency of a message, ms.
    #[serde(default = "default_latency")]
    pub latency_ms: u64,
    /// Uniform extra latency in `0..=jitter_ms`.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Probability that a datagram (beacon, price round message) is lost.
    #[serde(default)]
    pub loss: f64,
    #[serde(default)]
    pub partitions: Vec<Partition>,
}

impl Default for Links {
    fn default() -> Self {
        Self {
            latency_ms: default_latency(),
            jitter_ms: 0,
            loss: 0.0,
            partitions: Vec::new(),
        }
    }
}

fn default_latency() -> u64 {
    1
}

/// A burst: `jobs` jobs arriving at once at `at_s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub at_s: u64,
    pub jobs: u32,
}

/// A demand surge: the arrival rate is multiplied by `factor` from `at_s`
/// to `until_s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Surge {
    pub at_s: u64,
    pub until_s: u64,
    pub factor: f64,
}

/// A component section, as in the node config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub kind: String,
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
}

/// The load.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jobs {
    /// Poisson arrivals per simulated second, over the whole network.
    pub rate_per_s: f64,
    /// Tasks per job.
    pub tasks: Dist,
    /// Work of one task, MFLOP (run time = work / power).
    pub task_mflop: Dist,
    /// Budget of one job; capped by the client's balance.
    pub budget: Bounty,
    /// The most a job's submitter will pay per unit of price: above this
    /// market price the job is not submitted (the demand curve). Default:
    /// any price.
    #[serde(default)]
    pub max_price: Option<Dist>,
    /// Share of jobs that require one architecture (picked like nodes').
    #[serde(default)]
    pub arch_constrained: f64,
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "defaults::task_timeout_s")]
    pub task_timeout_s: u64,
    #[serde(default = "defaults::est_task_ms")]
    pub est_task_ms: u64,
    #[serde(default)]
    pub bursts: Vec<Burst>,
    #[serde(default)]
    pub surge: Option<Surge>,
    /// The scheduler every client runs (from the registry).
    #[serde(default = "default_scheduler")]
    pub scheduler: Component,
    /// Results arriving at a client are batched into one scheduling round
    /// per this many ms (the node batches a burst of results likewise).
    #[serde(default = "default_schedule_delay")]
    pub schedule_delay_ms: u64,
}

fn default_scheduler() -> Component {
    Component {
        kind: "price-aware".into(),
        path: None,
        options: BTreeMap::new(),
    }
}
fn default_schedule_delay() -> u64 {
    50
}

/// One balancer to compare: `kind` is a registry name (`fsm`, `ml`,
/// `plugin` with `path`) or `none` (the price never moves).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
}

/// `kind` of the strategy with no balancer.
pub const NO_BALANCER: &str = "none";

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut s = Self::parse(&text).map_err(|(key, message)| ScenarioError::Key {
            path: path.to_path_buf(),
            key,
            message,
        })?;
        // Plugin paths are relative to the scenario file.
        let base = path.parent().unwrap_or(Path::new("."));
        for st in &mut s.strategies {
            if let Some(p) = &mut st.path {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        Ok(s)
    }

    /// Parses and checks scenario text; the error is (key, message).
    pub fn parse(text: &str) -> Result<Self, (String, String)> {
        let de = toml::Deserializer::new(text);
        let s: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            (key, e.into_inner().message().to_string())
        })?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if self.duration_s == 0 {
            return bad("duration_s", "must be above 0");
        }
        if self.sample_every_s == 0 {
            return bad("sample_every_s", "must be above 0");
        }
        if self.tick_ms == 0 {
            return bad("tick_ms", "must be above 0");
        }
        if self.expire_ticks == 0 {
            return bad("expire_ticks", "must be above 0");
        }
        if self.settle_every_s == 0 {
            return bad("settle_every_s", "must be above 0");
        }
        let p = &self.population;
        if p.count == 0 {
            return bad("population.count", "must be above 0");
        }
        if p.slots == 0 {
            return bad("population.slots", "must be above 0");
        }
        if !(0.0..=1.0).contains(&p.clients) {
            return bad("population.clients", "must be in 0..=1");
        }
        if p.architectures.is_empty() || p.architectures.iter().all(|a| a.weight == 0) {
            return bad("population.architectures", "needs one with weight > 0");
        }
        for a in &p.architectures {
            if lppsp_core::wire::Arch::new(a.name.clone()).is_err() {
                return bad("population.architectures.name", "not an architecture name");
            }
        }
        for (k, v) in [
            ("population.join_per_hour", p.join_per_hour),
            ("population.leave_per_hour", p.leave_per_hour),
            ("population.fail_per_hour", p.fail_per_hour),
            ("jobs.rate_per_s", self.jobs.rate_per_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(k, "must be a finite number >= 0");
            }
        }
        p.power.check("population.power")?;
        if let Some(d) = &p.reserve_price {
            d.check("population.reserve_price")?;
        }
        self.jobs.tasks.check("jobs.tasks")?;
        self.jobs.task_mflop.check("jobs.task_mflop")?;
        if let Some(d) = &self.jobs.max_price {
            d.check("jobs.max_price")?;
        }
        if !(0.0..=1.0).contains(&self.jobs.arch_constrained) {
            return bad("jobs.arch_constrained", "must be in 0..=1");
        }
        if !(0.0..1.0).contains(&self.links.loss) {
            return bad("links.loss", "must be in 0..1");
        }
        for part in &self.links.partitions {
            if part.until_s <= part.at_s || !(0.0..1.0).contains(&part.fraction) {
                return bad(
                    "links.partitions",
                    "need at_s < until_s and 0 <= fraction < 1",
                );
            }
        }
        let mut parts: Vec<&Partition> = self.links.partitions.iter().collect();
        parts.sort_by_key(|p| p.at_s);
        if parts.windows(2).any(|w| w[0].until_s > w[1].at_s) {
            return bad("links.partitions", "partitions must not overlap");
        }
        if let Some(s) = &self.jobs.surge {
            if s.until_s <= s.at_s || !(s.factor.is_finite() && s.factor >= 0.0) {
                return bad("jobs.surge", "need at_s < until_s and factor >= 0");
            }
        }
        if self.strategies.is_empty() {
            return bad("strategies", "list at least one");
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &self.strategies {
            if !names.insert(s.name.as_str()) {
                return bad("strategies.name", &format!("{:?} is listed twice", s.name));
            }
            let safe = !s.name.is_empty()
                && s.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !safe {
                return bad(
                    "strategies.name",
                    "use letters, digits, - and _ (it names a directory)",
                );
            }
        }
        Ok(())
    }
}
