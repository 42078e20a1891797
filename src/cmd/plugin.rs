//! `lppsp plugin check`: load a plugin library and show what it is.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Load the plugin library at PATH, run the node's checks on it (file,
    /// library, root module, interface version and layout, ABI version) and
    /// print its name, version, kind and description.
    Check { path: PathBuf },
}

pub fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    let PluginCommand::Check { path } = cmd;
    match lppsp_plugin_host::load(&path) {
        Ok(plugin) => {
            println!("{}", plugin.info());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
