//! One module per subcommand.

pub mod bench;
pub mod ca;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod frame;
pub mod join;
pub mod ledger;
pub mod node;
pub mod observe;
pub mod plugin;
pub mod sim;
pub mod sim_real;
pub mod status;
pub mod submit;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The config the service installed by docs/operations.md reads; the tools
/// find the node's control socket through it when given neither
/// `--control` nor `--config`.
pub const SERVICE_CONFIG: &str = "/etc/lppsp/node.toml";

/// Where a tool finds the local node's control socket.
#[derive(clap::Args, Clone, Debug)]
pub struct ControlArgs {
    /// The node's control socket. Default: `control.socket` of --config,
    /// else of /etc/lppsp/node.toml when it exists, else data/control.sock
    /// (the default data_dir of a node.toml in this folder).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// The node's config file, to find its control socket in.
    #[arg(long, value_name = "FILE", conflicts_with = "control")]
    pub config: Option<PathBuf>,
}

impl ControlArgs {
    /// The socket to talk to.
    pub fn socket(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.control {
            return Ok(path.clone());
        }
        let config = self.config.clone().or_else(|| {
            let service = PathBuf::from(SERVICE_CONFIG);
            service.exists().then_some(service)
        });
        match config {
            Some(file) => {
                let cfg = lppsp_core::config::NodeConfig::load(&file)
                    .context("finding the node's control socket (or pass --control PATH)")?;
                Ok(cfg.control.socket)
            }
            None => Ok(PathBuf::from("data").join("control.sock")),
        }
    }
}

/// The node's answer when it took no request: `{"error": ...}`.
pub fn refusal(reply: &serde_json::Value) -> Option<anyhow::Error> {
    let error = reply.get("error")?;
    // An event line (a job's failure) carries "event" too; it is no refusal.
    if reply.get("event").is_some() {
        return None;
    }
    let text = error
        .as_str()
        .map_or_else(|| error.to_string(), str::to_string);
    Some(anyhow::anyhow!("node: {text}"))
}

/// Sends one request to a running node's control endpoint and returns its
/// single reply, or the node's error.
pub fn ask_node(
    control: &Path,
    request: &lppsp_runtime::control::Request,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let replies = rt
        .block_on(lppsp_runtime::control::call(control, request))
        .context("asking the node")?;
    let reply = replies
        .into_iter()
        .next()
        .with_context(|| format!("the node sent no {what}"))?;
    if let Some(err) = refusal(&reply) {
        return Err(err);
    }
    Ok(reply)
}

/// [`ask_node`], with the reply read into its type: a reply that lacks a
/// field the type needs is an error naming it, never a silent zero.
pub fn ask_node_typed<T: serde::de::DeserializeOwned>(
    control: &Path,
    request: &lppsp_runtime::control::Request,
    what: &str,
) -> anyhow::Result<T> {
    let reply = ask_node(control, request, what)?;
    serde_json::from_value(reply).with_context(|| format!("reading the node's {what} reply"))
}

/// `lppsp kernels`: the built-in kernels and their input layouts.
pub fn kernels() -> anyhow::Result<std::process::ExitCode> {
    for k in lppsp_executor_builtin::KERNELS {
        println!(
            "{}\n    {}\n    input:  {}\n    output: {}\n    reduce: {}\n",
            k.name, k.summary, k.input, k.output, k.reduce
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
