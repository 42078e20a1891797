//! `lppsp node`: run a node in the foreground.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use lppsp_core::config::NodeConfig;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct NodeArgs {
    /// The node's config file (TOML; see docs/config.md).
    #[arg(long, short)]
    pub config: PathBuf,
}

pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let cfg = NodeConfig::load(&args.config)?;
    run_config(cfg, &args.config)
}

/// Runs a node from a loaded config (`file` names it in errors).
pub fn run_config(cfg: NodeConfig, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let registry = Arc::new(crate::registry::builtin());
    registry
        .check(&cfg)
        .with_context(|| format!("{}", file.display()))?;
    // Whatever the node creates is its owner's, whatever umask it got.
    lppsp_runtime::private::restrict_umask();
    lppsp_runtime::private::warn_if_exposed(
        file,
        lppsp_runtime::private::Kind::Config,
        "the node's config file",
    );
    // Config errors the runtime would find later, named with the file now.
    lppsp_runtime::control::access_policy(&cfg.control)
        .with_context(|| format!("{}", file.display()))?;
    let token = dashboard_token(&cfg, file)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone());
        let (control_tx, control_rx) = lppsp_runtime::node::control_channel();
        if cfg.dashboard.enabled {
            start_dashboard(&cfg, file, token, control_tx.clone(), shutdown.clone()).await;
        }
        lppsp_runtime::node::run_with_control(cfg, registry, shutdown, control_tx, control_rx).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The dashboard's token, read from `dashboard.token_file`; a file that
/// cannot be read or holds no usable token stops the node (the config
/// asked for a token, so serving without one would be wrong).
fn dashboard_token(
    cfg: &NodeConfig,
    file: &std::path::Path,
) -> anyhow::Result<Option<lppsp_dashboard::Token>> {
    match &cfg.dashboard.token_file {
        Some(path) if cfg.dashboard.enabled => Ok(Some(
            lppsp_dashboard::Token::load(path).with_context(|| format!("{}", file.display()))?,
        )),
        _ => Ok(None),
    }
}

/// Starts the dashboard (docs/dashboard.md). It is a view, not part of
/// sharing: when its address is taken the node says why and runs without it.
async fn start_dashboard(
    cfg: &NodeConfig,
    file: &std::path::Path,
    token: Option<lppsp_dashboard::Token>,
    control: tokio::sync::mpsc::Sender<lppsp_runtime::control::ControlRequest>,
    shutdown: CancellationToken,
) {
    match lppsp_dashboard::bind(cfg.dashboard.listen).await {
        Ok(listener) => {
            let tick = std::time::Duration::from_millis(cfg.network.tick_ms);
            tokio::spawn(lppsp_dashboard::serve(listener, control, tick, token, shutdown));
        }
        Err(e) => tracing::error!(
            "{}: {e}; running without the dashboard (set another dashboard.listen, or dashboard.enabled = false)",
            file.display()
        ),
    }
}

/// SIGINT and SIGTERM stop the node gracefully (it sends Leave first).
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::warn!("cannot install signal handlers; stop the node with SIGKILL");
                return;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: leaving"),
                _ = int.recv() => tracing::info!("SIGINT: leaving"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        shutdown.cancel();
    });
}
