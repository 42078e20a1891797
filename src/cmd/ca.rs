//! `lppsp ca`: the community certificate authority.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create a community CA in DIR (ca.pem, ca.key). Keep ca.key offline
    /// or on one trusted machine: whoever holds it admits nodes.
    Init {
        dir: PathBuf,
        /// The community's name, written into the CA certificate.
        #[arg(long, default_value = "lppsp community")]
        name: String,
    },
    /// Issue a node certificate and key (NAME.pem, NAME.key) signed by the CA.
    Issue {
        name: String,
        /// Folder holding ca.pem and ca.key.
        #[arg(long, default_value = ".")]
        ca: PathBuf,
        /// Where to write the node's files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

pub fn run(cmd: CaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCommand::Init { dir, name } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            lppsp_transport_tls::ca::init_ca(&dir, &name)?;
            println!("community CA created in {}", dir.display());
        }
        CaCommand::Issue { name, ca, out } => {
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let id = lppsp_transport_tls::ca::issue(&ca, &name, &out)?;
            println!(
                "issued {name}: node id {id}; files {}, {}",
                out.join(format!("{name}.pem")).display(),
                out.join(format!("{name}.key")).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
