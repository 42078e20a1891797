//! `lppsp ca`: the community certificate authority.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use lppsp_runtime::control::reply::{CaApproved, CaPending, CaRejected};
use lppsp_runtime::control::Request;

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
    /// List join requests waiting at the local CA-holding node (`lppsp join`).
    Pending {
        #[command(flatten)]
        control: super::ControlArgs,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve join request ID: sign its certificate and send it to the
    /// joiner. First check that its code is the one the joiner shows.
    Approve {
        id: String,
        #[command(flatten)]
        control: super::ControlArgs,
    },
    /// Reject join request ID; the joiner is told.
    Reject {
        id: String,
        /// Why, shown to the joiner.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        control: super::ControlArgs,
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
        CaCommand::Pending { control, json } => {
            let socket = control.socket()?;
            if json {
                let reply = super::ask_node(&socket, &Request::CaPending, "pending list")?;
                println!("{}", serde_json::to_string_pretty(&reply)?);
                return Ok(ExitCode::SUCCESS);
            }
            let reply: CaPending =
                super::ask_node_typed(&socket, &Request::CaPending, "pending list")?;
            let list = &reply.pending;
            if list.is_empty() {
                println!("no join requests waiting");
            } else {
                println!(
                    "{:<4}  {:<20}  {:<16}  {:<21}  {:<20}  {:>7}  CODE",
                    "ID", "NAME", "NODE", "FROM", "REQUESTED (UTC)", "EXPIRES"
                );
            }
            for p in list {
                let at = httpdate::fmt_http_date(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(p.requested_at),
                );
                println!(
                    "{:<4}  {:<20}  {:<16}  {:<21}  {:<20}  {:>6}s  {}",
                    p.id,
                    p.name,
                    p.node,
                    p.source,
                    at.get(5..25).unwrap_or(&at),
                    p.expires_in_s,
                    p.code
                );
            }
        }
        CaCommand::Approve { id, control } => {
            let reply: CaApproved = super::ask_node_typed(
                &control.socket()?,
                &Request::CaApprove { id: id.clone() },
                "answer",
            )?;
            println!(
                "approved request {id}: {} is node {}",
                reply.name, reply.node
            );
        }
        CaCommand::Reject {
            id,
            reason,
            control,
        } => {
            let _: CaRejected = super::ask_node_typed(
                &control.socket()?,
                &Request::CaReject {
                    id: id.clone(),
                    reason,
                },
                "answer",
            )?;
            println!("rejected request {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
