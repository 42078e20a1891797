//! Node configuration: TOML, then `LPPSP_SECTION__KEY` environment overrides.
//!
//! Every key is documented in docs/config.md with its default. Unknown keys
//! are errors, and every error names the key and the file, because a typo in
//! a config file should never silently fall back to a default.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::access::{Grant, Grants};
use crate::money::{Bounty, Price};
use crate::wire::Limits;

/// Environment variables that override config keys start with this, and
/// use `__` between section and key: `LPPSP_NETWORK__LISTEN=0.0.0.0:47101`.
pub const ENV_PREFIX: &str = "LPPSP_";

/// The component `kind` that loads a scheduler, balancer or executor from
/// the dynamic library at the section's `path` (docs/plugins.md).
pub const PLUGIN_KIND: &str = "plugin";

/// A config that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Read { file: PathBuf, message: String },
    #[error("{file}: key `{key}`: {message}")]
    Key {
        file: PathBuf,
        key: String,
        message: String,
    },
}

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Offers its processing power.
    Compute,
    /// Submits jobs only.
    Client,
    /// Both (the usual case on a shared LAN).
    #[default]
    Both,
    /// Neither: joins the book, samples the market and proposes prices
    /// from its balancer (the ML observer of RFC 1.4 b, `lppsp observe`).
    Observer,
}

impl Role {
    pub fn computes(self) -> bool {
        matches!(self, Role::Compute | Role::Both)
    }
    pub fn submits(self) -> bool {
        matches!(self, Role::Client | Role::Both)
    }
}

/// How beacons reach other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// UDP broadcast to `network.broadcast_to` (the LAN's broadcast address).
    #[default]
    Broadcast,
    /// UDP multicast to `network.multicast_group`.
    Multicast,
    /// UDP unicast to each of `network.static_peers`.
    Static,
}

/// The whole node config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub identity: IdentitySection,
    pub network: NetworkSection,
    pub share: ShareSection,
    pub market: MarketSection,
    pub control: ControlSection,
    pub dashboard: DashboardSection,
    pub limits: Limits,
    pub transport: ComponentSection,
    pub scheduler: ComponentSection,
    pub balancer: ComponentSection,
    pub executor: ComponentSection,
    pub sharing: crate::sharing::SharingSection,
    pub ca: CaSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// A label for people; logs and status show it beside the NodeId.
    pub name: String,
    pub role: Role,
    /// Where the node keeps its durable state (jobs, ledger).
    pub data_dir: PathBuf,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            name: "lppsp-node".into(),
            role: Role::Both,
            data_dir: PathBuf::from("data"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySection {
    /// The community CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// This node's certificate (PEM), issued by the community CA.
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

impl Default for IdentitySection {
    fn default() -> Self {
        Self {
            ca_cert: "ca.pem".into(),
            cert: "node.pem".into(),
            key: "node.key".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// TLS endpoint for tasks and market rounds.
    pub listen: SocketAddr,
    /// The address other nodes should connect to (the Hand beacon's `IP`);
    /// by default the address beacons are sent from, with `listen`'s port.
    pub advertise: Option<SocketAddr>,
    /// UDP address beacons are received on.
    pub beacon_listen: SocketAddr,
    pub discovery: Discovery,
    /// Broadcast destination for `discovery = "broadcast"`.
    pub broadcast_to: SocketAddr,
    /// Group for `discovery = "multicast"`.
    pub multicast_group: SocketAddr,
    /// Local interface address to join the multicast group on.
    pub multicast_interface: Option<IpAddr>,
    /// Beacon destinations for `discovery = "static"`.
    pub static_peers: Vec<SocketAddr>,
    /// Beacon period (RFC 1.4: 1 s).
    pub tick_ms: u64,
    /// A peer is dropped after this many ticks without a beacon.
    pub expire_ticks: u32,
    /// Beacons dated further than this from our clock are dropped.
    pub max_clock_skew_s: u64,
}

impl NetworkSection {
    /// How long a silent peer stays in the book: the expiry period that
    /// also bounds waits for a peer (missed ticks, plus the current one).
    pub fn expiry_ms(&self) -> u64 {
        self.tick_ms
            .saturating_mul(u64::from(self.expire_ticks) + 1)
    }
}

impl Default for NetworkSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], crate::wire::DEFAULT_TLS_PORT)),
            advertise: None,
            beacon_listen: SocketAddr::from(([0, 0, 0, 0], crate::wire::DEFAULT_BEACON_PORT)),
            discovery: Discovery::Broadcast,
            broadcast_to: SocketAddr::from((
                [255, 255, 255, 255],
                crate::wire::DEFAULT_BEACON_PORT,
            )),
            multicast_group: SocketAddr::from((
                [239, 255, 71, 100],
                crate::wire::DEFAULT_BEACON_PORT,
            )),
            multicast_interface: None,
            static_peers: Vec::new(),
            tick_ms: 1000,
            expire_ticks: 3,
            max_clock_skew_s: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShareSection {
    /// Tasks this node runs at once.
    pub slots: u32,
    /// Cap on the processing power offered (and charged), MFLOPS; the
    /// self-benchmark's figure is used when lower or when unset.
    pub max_mflops: Option<u64>,
    /// Longest a task may run here, seconds.
    pub task_timeout_s: u64,
    /// Largest task input accepted, bytes.
    pub max_input_bytes: u64,
    /// Tasks one client may have queued or running here; more are refused
    /// as busy, so one client cannot take the whole queue.
    pub max_tasks_per_client: u64,
    /// Input bytes of all queued or running tasks together.
    pub max_queued_bytes: u64,
    /// Input bytes of one client's queued or running tasks.
    pub max_queued_bytes_per_client: u64,
    /// The owner's reserve price: below it the node offers no slot and
    /// refuses tasks (`below-reserve`). 0: any price.
    pub min_price: Price,
    /// Optional supply curve: from each step's price on, the node offers
    /// that step's slots (prices and slots rising, none above `slots`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub price_slots: Vec<crate::curves::PriceSlots>,
}

impl ShareSection {
    /// What the node offers at each price (checked when the config loads).
    pub fn supply_curve(&self) -> Result<crate::curves::SupplyCurve, crate::curves::CurveError> {
        crate::curves::SupplyCurve::new(self.min_price, self.slots, &self.price_slots)
    }
}

impl Default for ShareSection {
    fn default() -> Self {
        Self {
            slots: 1,
            max_mflops: None,
            task_timeout_s: 600,
            max_input_bytes: 64 * 1024 * 1024,
            max_tasks_per_client: 16384,
            max_queued_bytes: 1 << 30,
            max_queued_bytes_per_client: 256 * 1024 * 1024,
            min_price: Price::ZERO,
            price_slots: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketSection {
    /// The price a new network starts at, before any round commits.
    pub initial_price: Price,
    /// Bounty every member starts with (the community grant).
    pub grant: Bounty,
    /// Settle metered charges into signed, durable receipts. Off only to
    /// measure what settlement costs (`lppsp bench --ledger off`): charges
    /// are then metered and dropped, and no balance ever moves.
    pub settle: bool,
    /// Largest price move this node votes yes on in one round, per mille of
    /// its price (never less than one whole unit, the FSM's step).
    pub max_step_milli: u64,
    /// Least time between two moves of the price this node agrees to, ms.
    pub min_move_interval_ms: u64,
}

impl Default for MarketSection {
    fn default() -> Self {
        Self {
            initial_price: Price::from_micros(crate::money::UNIT),
            grant: Bounty::from_micros(1_000_000_000_000),
            settle: true,
            max_step_milli: crate::market::MarketConfig::DEFAULT_MAX_STEP_MILLI,
            min_move_interval_ms: crate::market::MarketConfig::DEFAULT_MIN_MOVE_INTERVAL_MS,
        }
    }
}

/// `[control]`: the local control endpoint `lppsp status`, `submit`,
/// `ledger` and `ca` talk to, a Unix socket whose callers the kernel
/// identifies (docs/operations.md, "Who may control a node").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// The socket's path; a relative path is relative to `node.data_dir`.
    pub socket: PathBuf,
    /// A group whose members get `group_may`; unset: only the node's
    /// owner (and root) may use the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// What the group's members may do; unset: status and submit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_may: Option<Vec<Grant>>,
    /// The TCP address of earlier versions; only read to say that it is
    /// gone (the endpoint is `socket` now).
    #[serde(skip_serializing)]
    pub listen: Option<toml::Value>,
}

impl Default for ControlSection {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("control.sock"),
            group: None,
            group_may: None,
            listen: None,
        }
    }
}

impl ControlSection {
    /// What members of `group` may do.
    pub fn group_grants(&self) -> Grants {
        match &self.group_may {
            Some(list) => Grants::of(list),
            None => Grants::of(&[Grant::Status, Grant::Submit]),
        }
    }
}

/// `[ca]`: a node holding the community CA lets new nodes ask for a
/// certificate (`lppsp join`); its operator approves them (`lppsp ca approve`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaSection {
    /// Folder with ca.pem and ca.key; unset: this node takes no join requests.
    pub dir: Option<PathBuf>,
    /// Where join requests are accepted (TLS, server-authenticated only).
    pub join_listen: SocketAddr,
    /// Requests waiting for a decision, at most; more are refused.
    pub max_pending: usize,
    /// A request not decided within this many seconds is dropped.
    pub pending_expiry_s: u64,
    /// Join connections accepted per source address per minute.
    pub requests_per_minute: u32,
    /// Largest join request, bytes.
    pub max_request_bytes: usize,
}

impl Default for CaSection {
    fn default() -> Self {
        Self {
            dir: None,
            join_listen: SocketAddr::from(([0, 0, 0, 0], 47103)),
            max_pending: 16,
            pending_expiry_s: 900,
            requests_per_minute: 6,
            max_request_bytes: 16 * 1024,
        }
    }
}

/// The web dashboard and Prometheus `/metrics` (docs/dashboard.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardSection {
    /// Serve the dashboard; `false` turns it off.
    pub enabled: bool,
    /// HTTP endpoint of the dashboard and `/metrics`. When the address is
    /// taken, the node logs an error naming this key and runs without a
    /// dashboard. Beyond loopback it needs `token_file`.
    pub listen: SocketAddr,
    /// A file holding the token every request must carry (`Authorization:
    /// Bearer TOKEN` or `?token=TOKEN`); required when `listen` is not a
    /// loopback address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl Default for DashboardSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 47180)),
            token_file: None,
        }
    }
}

/// Which implementation of a component to use, and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ComponentSection {
    /// A registered name (`lppsp config check` lists them), or `"plugin"`.
    pub kind: String,
    /// The plugin library, with `kind = "plugin"` only. Before `options`:
    /// TOML writes plain keys before tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Implementation-specific options.
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
}

impl NodeConfig {
    /// Fills component kinds left empty with the built-in defaults.
    fn apply_component_defaults(&mut self) {
        for (section, default) in [
            (&mut self.transport, "tls-tcp"),
            (&mut self.scheduler, "price-aware"),
            (&mut self.balancer, "fsm"),
            (&mut self.executor, "standard"),
        ] {
            if section.kind.is_empty() {
                section.kind = default.to_string();
            }
        }
    }

    /// Makes relative paths relative to the config file's folder, so a node
    /// behaves the same whatever directory it is started from.
    fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.identity.ca_cert,
            &mut self.identity.cert,
            &mut self.identity.key,
            &mut self.node.data_dir,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(p) = self.ca.dir.as_mut().filter(|p| p.is_relative()) {
            *p = base.join(&*p);
        }
        if let Some(p) = self
            .dashboard
            .token_file
            .as_mut()
            .filter(|p| p.is_relative())
        {
            *p = base.join(&*p);
        }
        // After data_dir, which it is relative to.
        if self.control.socket.is_relative() {
            self.control.socket = self.node.data_dir.join(&self.control.socket);
        }
        for section in [&mut self.scheduler, &mut self.balancer, &mut self.executor] {
            if let Some(p) = section.path.as_mut().filter(|p| p.is_relative()) {
                *p = base.join(&*p);
            }
        }
    }

    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let key_err = |key: &str, message: &str| ConfigError::Key {
            file: file.to_path_buf(),
            key: key.to_string(),
            message: message.to_string(),
        };
        if self.network.tick_ms == 0 {
            return Err(key_err("network.tick_ms", "must be at least 1"));
        }
        if self.network.expire_ticks == 0 {
            return Err(key_err("network.expire_ticks", "must be at least 1"));
        }
        if !(1..=1000).contains(&self.market.max_step_milli) {
            return Err(key_err("market.max_step_milli", "must be in 1..=1000"));
        }
        if self.share.slots == 0 && self.node.role.computes() {
            return Err(key_err(
                "share.slots",
                "a compute node needs at least 1 slot",
            ));
        }
        self.share
            .supply_curve()
            .map_err(|e| key_err(e.key, &e.message))?;
        if self.network.discovery == Discovery::Static && self.network.static_peers.is_empty() {
            return Err(key_err(
                "network.static_peers",
                "discovery = \"static\" needs at least one peer",
            ));
        }
        if !self.network.multicast_group.ip().is_multicast() {
            return Err(key_err(
                "network.multicast_group",
                "is not a multicast address",
            ));
        }
        for (name, section) in [
            ("transport", &self.transport),
            ("scheduler", &self.scheduler),
            ("balancer", &self.balancer),
            ("executor", &self.executor),
        ] {
            let plugin = section.kind == PLUGIN_KIND;
            if name == "transport" && (plugin || section.path.is_some()) {
                let key = if plugin {
                    "transport.kind"
                } else {
                    "transport.path"
                };
                return Err(key_err(
                    key,
                    "a transport cannot be a plugin (it is async; see docs/plugins.md)",
                ));
            }
            let key = format!("{name}.path");
            match &section.path {
                None if plugin => {
                    return Err(key_err(
                        &key,
                        "kind = \"plugin\" needs the path of the plugin library",
                    ))
                }
                Some(_) if !plugin => {
                    return Err(key_err(&key, "only used with kind = \"plugin\""));
                }
                Some(p) if p.as_os_str().is_empty() => {
                    return Err(key_err(&key, "must not be empty"));
                }
                _ => {}
            }
        }
        crate::sharing::Policy::from_section(&self.sharing)
            .map_err(|(key, message)| key_err(key, &message))?;
        if self.ca.max_pending == 0 || self.ca.requests_per_minute == 0 {
            return Err(key_err(
                "ca.max_pending",
                "ca.max_pending and ca.requests_per_minute must be at least 1",
            ));
        }
        if self.control.listen.is_some() {
            return Err(key_err(
                "control.listen",
                "the control endpoint is a Unix socket now: remove control.listen \
                 (control.socket sets the socket's path; docs/operations.md)",
            ));
        }
        if self.control.socket.as_os_str().is_empty() {
            return Err(key_err("control.socket", "must not be empty"));
        }
        match &self.control.group {
            Some(name) if name.is_empty() || name.contains(['/', ':', '\n', '\0']) => {
                return Err(key_err("control.group", "is not a group name"));
            }
            None if self.control.group_may.is_some() => {
                return Err(key_err(
                    "control.group_may",
                    "only used with control.group (the group it is for)",
                ));
            }
            _ => {}
        }
        if self.dashboard.enabled
            && !self.dashboard.listen.ip().is_loopback()
            && self.dashboard.token_file.is_none()
        {
            return Err(key_err(
                "dashboard.token_file",
                &format!(
                    "dashboard.listen ({}) is reachable from other machines: set \
                     dashboard.token_file to a file holding the token requests must carry \
                     (docs/dashboard.md)",
                    self.dashboard.listen
                ),
            ));
        }
        if self.limits.max_line < 256 {
            return Err(key_err("limits.max_line", "must be at least 256"));
        }
        if self.limits.max_chunk == 0 || self.limits.max_body < self.limits.max_chunk {
            return Err(key_err(
                "limits.max_body",
                "must be at least limits.max_chunk, which must be above 0",
            ));
        }
        Ok(())
    }

    /// Loads `file` (TOML) and then `LPPSP_SECTION__KEY` overrides from the
    /// process environment.
    pub fn load(file: &Path) -> Result<NodeConfig, ConfigError> {
        // vars() would panic on a variable that is not Unicode; such a
        // variable cannot be an override anyway.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::load_with_env(file, env)
    }

    /// As [`NodeConfig::load`], with the environment given (for tests).
    pub fn load_with_env(
        file: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<NodeConfig, ConfigError> {
        let read_err = |message: String| ConfigError::Read {
            file: file.to_path_buf(),
            message,
        };
        // Read it ourselves first: the config crate's message for a missing
        // file does not say which.
        let text = std::fs::read_to_string(file).map_err(|e| read_err(e.to_string()))?;
        // Only LPPSP_X__Y names are overrides; LPPSP_LOG and the like are not config.
        // Values of typed keys stay strings and are converted by the key's
        // type, so that "0.5" reaches a price as text (not as a float it
        // would reject) and "007" stays "007". Component options have no
        // type here, so their values are read as bool, integer, float or
        // string, as TOML would. The list keys are split at commas.
        let mut plain = config::Map::new();
        let mut options = config::Map::new();
        let mut lists = config::Map::new();
        for (k, v) in env {
            if !(k.starts_with(ENV_PREFIX) && k.contains("__")) {
                continue;
            }
            let upper = k.to_ascii_uppercase();
            if upper == "LPPSP_NETWORK__STATIC_PEERS" || upper == "LPPSP_CONTROL__GROUP_MAY" {
                lists.insert(k, v);
            } else if upper.contains("__OPTIONS__") {
                options.insert(k, v);
            } else {
                plain.insert(k, v);
            }
        }
        let env_source = |vars: config::Map<String, String>| {
            config::Environment::with_prefix("LPPSP")
                // Without this the prefix separator defaults to "__" as
                // well, and LPPSP_NETWORK__LISTEN would never match.
                .prefix_separator("_")
                .separator("__")
                .source(Some(vars))
        };
        let built = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .add_source(env_source(plain))
            .add_source(env_source(options).try_parsing(true))
            .add_source(
                env_source(lists)
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("network.static_peers")
                    .with_list_parse_key("control.group_may"),
            )
            .build()
            .map_err(|e| read_err(e.to_string()))?;
        let mut cfg: NodeConfig = serde_path_to_error::deserialize(built).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key {
                file: file.to_path_buf(),
                key,
                message: e.into_inner().to_string(),
            }
        })?;
        cfg.apply_component_defaults();
        cfg.validate(file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        Ok(cfg)
    }
}
