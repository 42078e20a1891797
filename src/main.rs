//! `lppsp`: the one binary. It parses the command line, sets up logging and
//! wires the registry; everything else lives in the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod registry;

/// LAN Processing Power Share Protocol (LPPSP/1.0): share idle CPU on a LAN.
#[derive(Parser)]
#[command(name = "lppsp", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect LPPSP frames.
    #[command(subcommand)]
    Frame(cmd::frame::FrameCommand),
    /// Check node configuration files.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Manage the community certificate authority.
    #[command(subcommand)]
    Ca(cmd::ca::CaCommand),
    /// Run a node in the foreground.
    Node(cmd::node::NodeArgs),
    /// Run a dedicated observer node: no compute, no jobs; it samples the
    /// market and proposes prices from fitted supply and demand (docs/balancers.md).
    Observe(cmd::node::NodeArgs),
    /// Ask a CA-holding node for a certificate, then start this node (docs/joining.md).
    Join(cmd::join::JoinArgs),
    /// Show a running local node's book, market and counters.
    Status(cmd::status::StatusArgs),
    /// Submit a job to the local node and follow it to its result.
    Submit(Box<cmd::submit::SubmitArgs>),
    /// Start a local LAN of nodes on loopback, run a job, show the result and earnings.
    Demo(cmd::demo::DemoArgs),
    /// Run the benchmark workloads W1-W3 on a local cluster; JSON lines on stdout.
    Bench(cmd::bench::BenchArgs),
    /// List the receipts in a running node's ledger and the balances they give.
    Ledger(cmd::ledger::LedgerArgs),
    /// Inspect plugin libraries (docs/plugins.md).
    #[command(subcommand)]
    Plugin(cmd::plugin::PluginCommand),
    /// List the built-in kernels.
    Kernels,
    /// Simulate a network from a scenario file and compare pricing strategies.
    Sim(cmd::sim::SimArgs),
}

/// Logs go to stderr; `LPPSP_LOG` (e.g. `debug`) overrides the level.
/// A node logs at info by default; the interactive tools only warn.
fn init_logging(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LPPSP_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(
        if matches!(
            cli.command,
            Command::Node(_) | Command::Observe(_) | Command::Join(_)
        ) {
            "info"
        } else {
            "warn"
        },
    );
    let result = match cli.command {
        Command::Frame(c) => cmd::frame::run(c),
        Command::Config(c) => cmd::config::run(c),
        Command::Ca(c) => cmd::ca::run(c),
        Command::Node(a) => cmd::node::run(a),
        Command::Observe(a) => cmd::observe::run(a),
        Command::Join(a) => cmd::join::run(a),
        Command::Status(a) => cmd::status::run(a),
        Command::Submit(a) => cmd::submit::run(*a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Ledger(a) => cmd::ledger::run(a),
        Command::Plugin(c) => cmd::plugin::run(c),
        Command::Kernels => cmd::kernels(),
        Command::Sim(a) => cmd::sim::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
