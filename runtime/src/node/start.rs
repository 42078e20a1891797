//! Node start-up: loads identity and config, opens the sockets, services
//! and ledger, and hands them to the driver's loop.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lppsp_core::book::{Book, BookConfig};
use lppsp_core::config::NodeConfig;
use lppsp_core::market::{Market, MarketConfig};
use lppsp_core::node::beacons::BeaconSchedule;
use lppsp_core::node::integrator::Integrator;
use lppsp_core::node::sampling::MarketSampler;
use lppsp_core::registry::{Registry, TransportParams};
use lppsp_core::wire::{Arch, Endpoint};
use lppsp_transport_tls::identity::Identity;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::accounts::Accounts;
use crate::client::Client;
use crate::compute::{ComputeConfig, ComputeService};
use crate::control::{self, ControlRequest};
use crate::join::JoinService;
use crate::links;
use crate::refusals::MemberRefusals;
use crate::sharing::Sharing;
use crate::{beacon_socket, power, NodeError};

use super::{Driver, SelfInfo, NET_EVENTS_QUEUED};

/// Runs a node until `shutdown` is cancelled, then says Leave and returns.
pub async fn run(
    cfg: NodeConfig,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let (control_tx, control_rx) = control_channel();
    run_with_control(cfg, registry, shutdown, control_tx, control_rx).await
}

/// The channel control requests reach the driver on; in-process users
/// (the dashboard) keep a sender clone and ask as `lppsp status` does.
pub fn control_channel() -> (mpsc::Sender<ControlRequest>, mpsc::Receiver<ControlRequest>) {
    mpsc::channel(64)
}

/// As [`run`], serving control requests from `control_rx` as well as
/// from the control endpoint.
pub async fn run_with_control(
    cfg: NodeConfig,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    control_tx: mpsc::Sender<ControlRequest>,
    control_rx: mpsc::Receiver<ControlRequest>,
) -> Result<(), NodeError> {
    let identity = Identity::load(&cfg.identity).map_err(|e| NodeError::Identity(e.to_string()))?;
    let id = identity.node_id();
    let span = tracing::info_span!("node", id = %id, name = %cfg.node.name);
    run_inner(cfg, registry, identity, shutdown, control_tx, control_rx)
        .instrument(span)
        .await
}

async fn run_inner(
    mut cfg: NodeConfig,
    registry: Arc<Registry>,
    identity: Identity,
    shutdown: CancellationToken,
    control_tx: mpsc::Sender<ControlRequest>,
    control_rx: mpsc::Receiver<ControlRequest>,
) -> Result<(), NodeError> {
    let id = identity.node_id();
    let access =
        control::access_policy(&cfg.control).map_err(|e| NodeError::Startup(e.to_string()))?;
    let control_gid = access.group.as_ref().map(|g| g.gid);
    match crate::private::prepare_data_dir(&cfg.node.data_dir, control_gid) {
        Ok(()) => {}
        // A folder the node cannot change the mode of (not its own): it
        // runs, and the check below says whether others can use it.
        Err(e) if control_gid.is_none() && cfg.node.data_dir.is_dir() => {
            warn!(path = %cfg.node.data_dir.display(), error = %e, "cannot make node.data_dir 0700");
        }
        Err(e) => {
            let hint = if control_gid.is_some() {
                " (with control.group, the node's user must own it and be a member of that group)"
            } else {
                ""
            };
            return Err(NodeError::Startup(format!(
                "node.data_dir {}: {e}{hint}",
                cfg.node.data_dir.display()
            )));
        }
    }
    // Before anything else in it: a second node on the same directory
    // would write its receipts into this node's ledger.
    let _data_lock = crate::data_lock::DataDirLock::acquire(&cfg.node.data_dir)
        .map_err(|e| NodeError::Startup(e.to_string()))?;
    // Files an older version left readable, then what others could read.
    crate::private::tighten(&cfg.node.data_dir, 2);
    warn_if_exposed(&cfg, control_gid.is_some());
    let measured =
        tokio::task::spawn_blocking(|| power::measure_mflops(Duration::from_millis(250)))
            .await
            .map_err(|e| NodeError::Startup(format!("self-benchmark: {e}")))?;
    let offered = power::offered_mflops(measured, cfg.share.max_mflops);
    // The owner's cpu_share_percent scales what this node offers.
    // What the node offers at each price, read before the owner's share
    // scales the slots (the loader checked the curve against them).
    let supply = cfg
        .share
        .supply_curve()
        .map_err(|e| NodeError::Startup(e.to_string()))?;
    let (slots, offered) =
        lppsp_core::sharing::apply_share(cfg.share.slots, offered, cfg.sharing.cpu_share_percent);
    cfg.share.slots = slots;
    let supply = supply.capped(slots);
    let arch = Arch::new(std::env::consts::ARCH).map_err(NodeError::Startup)?;

    let transport = registry
        .transport(
            &cfg.transport,
            TransportParams {
                listen: cfg.network.listen,
                identity: cfg.identity.clone(),
                limits: cfg.limits,
                options: cfg.transport.options.clone(),
            },
        )
        .map_err(|e| NodeError::Startup(e.to_string()))?
        .await
        .map_err(|e| NodeError::Startup(format!("transport on {}: {e}", cfg.network.listen)))?;
    let tls_addr = transport.local_addr();
    let advertised = cfg.network.advertise.unwrap_or(tls_addr);
    let me = SelfInfo {
        id,
        name: cfg.node.name.clone(),
        addr: Endpoint(advertised),
        power: offered,
        arch,
    };

    let udp = beacon_socket::open(&cfg.network).map_err(|e| {
        NodeError::Startup(format!(
            "beacon socket on {}: {e}",
            cfg.network.beacon_listen
        ))
    })?;
    let control_listener = control::ControlListener::bind(&cfg.control.socket, &access)
        .map_err(|e| NodeError::Startup(e.to_string()))?;
    tokio::spawn(
        control::serve(
            control_listener,
            Arc::new(access),
            control_tx,
            shutdown.clone(),
        )
        .in_current_span(),
    );
    let join = match cfg.ca.dir.clone() {
        Some(dir) => Some(
            JoinService::start(&cfg.ca, dir, &identity, shutdown.clone())
                .await
                .map_err(NodeError::Startup)?,
        ),
        None => None,
    };

    let executor = registry
        .executor(&cfg.executor)
        .map_err(|e| NodeError::Startup(e.to_string()))?;
    let (relay_tx, relay_rx) = mpsc::unbounded_channel();
    // Bounded: a connection whose frames the driver has not taken yet
    // waits before reading more (backpressure to the peer).
    let (net_tx, net_rx) = mpsc::channel(NET_EVENTS_QUEUED);
    let refusals = MemberRefusals::default();
    let compute = cfg.node.role.computes().then(|| {
        ComputeService::start(
            ComputeConfig {
                slots: cfg.share.slots,
                power: offered,
                task_timeout: Duration::from_secs(cfg.share.task_timeout_s),
                max_input_bytes: cfg.share.max_input_bytes,
                max_queue: 1 << 16,
                max_tasks_per_client: cfg.share.max_tasks_per_client,
                max_queued_bytes: cfg.share.max_queued_bytes,
                max_queued_bytes_per_client: cfg.share.max_queued_bytes_per_client,
                sharing: true,
                reserve: supply.reserve(),
            },
            executor.clone(),
            relay_tx.clone(),
            refusals.clone(),
        )
    });
    // Incoming connections: clients placing tasks here, compute nodes
    // sending results to integrate, integrators reporting to our jobs.
    {
        let transport = transport.clone();
        let shutdown = shutdown.clone();
        let compute = compute.clone();
        let executor = executor.clone();
        let net_tx = net_tx.clone();
        tokio::spawn(
            async move {
                loop {
                    let conn = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        c = transport.accept() => c,
                    };
                    match conn {
                        Ok(c) => {
                            debug!(peer = %c.peer().node, "peer connected");
                            let serve = links::serve_connection(
                                c,
                                compute.clone(),
                                executor.clone(),
                                net_tx.clone(),
                            );
                            tokio::spawn(serve.in_current_span());
                        }
                        Err(e) => debug!(error = %e, "connection refused"),
                    }
                }
            }
            .in_current_span(),
        );
    }
    let (stored_tx, stored_rx) = mpsc::unbounded_channel();
    let accounts =
        Accounts::open(&cfg.node.data_dir, id, cfg.market.grant, stored_tx).map_err(|e| {
            NodeError::Startup(format!("ledger in {}: {e}", cfg.node.data_dir.display()))
        })?;
    // The state the pool committed before this node stopped, if any.
    let market_file = crate::market_state::MarketStateFile::new(&cfg.node.data_dir);
    let restored = market_file
        .load()
        .map_err(|e| NodeError::Startup(format!("market state: {e}")))?;
    if let Some(c) = restored {
        info!(price = %c.price, epoch = c.epoch, proposer = ?c.proposer.map(|p| p.to_string()), file = %market_file.path().display(), "starting from the stored committed price");
    }
    let scheduler = registry
        .scheduler(&cfg.scheduler)
        .map_err(|e| NodeError::Startup(e.to_string()))?;
    let balancer = registry
        .balancer(&cfg.balancer)
        .map_err(|e| NodeError::Startup(e.to_string()))?;
    let expiry_ms = cfg.network.expiry_ms();
    let mut client = Client::new(
        id,
        transport.clone(),
        scheduler,
        executor.clone(),
        net_tx,
        wall_ms(),
        expiry_ms,
    );
    client.set_refusals(refusals.clone());
    if cfg.node.role.submits() {
        let journal = crate::journal::JobJournal::open(&cfg.node.data_dir)
            .map_err(|e| NodeError::Startup(format!("job journal in node.data_dir: {e}")))?;
        client.set_journal(journal);
    }

    info!(
        tls = %tls_addr, beacons = %cfg.network.beacon_listen, discovery = ?cfg.network.discovery,
        mflops = offered, measured_mflops = measured, arch = %me.arch, control = %cfg.control.socket.display(),
        "node started"
    );

    let sharing = Sharing::new(&cfg.sharing);
    let mut driver = Driver {
        book: Book::new(BookConfig {
            me: id,
            tick: Duration::from_millis(cfg.network.tick_ms),
            expire_ticks: cfg.network.expire_ticks,
            max_skew: Duration::from_secs(cfg.network.max_clock_skew_s),
            protocol_major: 1,
        }),
        destinations: beacon_socket::destinations(&cfg.network),
        seq: wall_ms(),
        market: {
            let market_cfg = MarketConfig {
                me: id,
                initial_price: cfg.market.initial_price,
                repeat_ms: cfg.network.tick_ms,
                round_timeout_ms: expiry_ms.saturating_mul(3),
                max_step_milli: cfg.market.max_step_milli,
                min_move_interval_ms: cfg.market.min_move_interval_ms,
                reconcile_after_ms: expiry_ms.saturating_mul(2),
            };
            match restored {
                Some(state) => Market::resume(market_cfg, state),
                None => Market::new(market_cfg),
            }
        },
        market_file,
        restored,
        balancer,
        sampler: MarketSampler::new(cfg.market.initial_price, expiry_ms),
        started: Instant::now(),
        beacons: BeaconSchedule::new(),
        supply,

        identity,
        me,
        cfg,
        udp,
        transport,
        compute,
        client,
        integrator: Integrator::new(),
        reduce_with: executor,
        relay_tx,
        accounts,
        receipts_waiting: Vec::new(),
        sync_turn: 0,
        join,
        sharing,
        refusals,
    };
    driver
        .run(control_rx, net_rx, relay_rx, stored_rx, shutdown)
        .await
}

/// Warns about the node's key, the CA key and data_dir when other users
/// could read or change them (the config file is checked by its loader,
/// which knows its path).
fn warn_if_exposed(cfg: &NodeConfig, control_group: bool) {
    use crate::private::{warn_if_exposed, Kind};
    warn_if_exposed(
        &cfg.identity.key,
        Kind::Secret,
        "identity.key, the node's private key",
    );
    if let Some(dir) = &cfg.ca.dir {
        warn_if_exposed(
            &dir.join(lppsp_transport_tls::ca::CA_KEY_FILE),
            Kind::Secret,
            "the community CA's key (ca.dir)",
        );
    }
    let allowed = if control_group { 0o010 } else { 0 };
    warn_if_exposed(
        &cfg.node.data_dir,
        Kind::DataDir { allowed },
        "node.data_dir",
    );
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
