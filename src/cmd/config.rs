//! `lppsp config check`: validate a node config before starting a node.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use lppsp_core::config::NodeConfig;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Load FILE with the environment overrides, report the first error
    /// (naming the key and the file), or print the effective config.
    Check {
        file: PathBuf,
        /// Print the effective config as TOML when it is valid.
        #[arg(long)]
        print: bool,
    },
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { file, print } = cmd;
    let cfg = match NodeConfig::load(&file) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let registry = crate::registry::builtin();
    if let Err(e) = registry.check(&cfg) {
        eprintln!("error: {}: {e}", file.display());
        return Ok(ExitCode::FAILURE);
    }
    if let Err(e) = lppsp_runtime::control::access_policy(&cfg.control) {
        eprintln!("error: {}: {e}", file.display());
        return Ok(ExitCode::FAILURE);
    }
    if let Some(path) = cfg
        .dashboard
        .token_file
        .as_ref()
        .filter(|_| cfg.dashboard.enabled)
    {
        if let Err(e) = lppsp_dashboard::Token::load(path) {
            eprintln!("error: {}: {e}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    }
    println!("{}: ok", file.display());
    if print {
        println!("{}", toml::to_string_pretty(&cfg)?);
    }
    Ok(ExitCode::SUCCESS)
}
