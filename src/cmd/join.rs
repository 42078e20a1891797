//! `lppsp join ADDR`: ask a CA-holding node for a certificate, wait for
//! its operator's approval, write the identity files and start the node.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use lppsp_transport_tls::join::{self as tls_join, NewKey};

#[derive(Args)]
pub struct JoinArgs {
    /// The join endpoint of a node holding the community CA (its `ca.join_listen`).
    addr: SocketAddr,
    /// This node's name (letters, digits, -_.); the host name by default.
    #[arg(long)]
    name: Option<String>,
    /// Folder for node.pem, node.key, ca.pem and node.toml.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Only write the files; do not start the node.
    #[arg(long)]
    no_start: bool,
    /// Longest wait for the operator's decision, seconds.
    #[arg(long, default_value_t = 900)]
    wait: u64,
}

/// The config file the join writes (when missing) and starts.
const CONFIG_FILE: &str = "node.toml";

pub fn run(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let name = match &args.name {
        Some(n) => n.clone(),
        None => host_name(),
    };
    // Refuse before asking anyone: an existing identity is never replaced.
    tls_join::joined_paths(&args.out)?;
    let key = NewKey::generate(&name)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(request(&args, &name, &key))?;
    drop(rt);
    let Some((cert_pem, ca_pem)) = outcome else {
        println!("cancelled; nothing was written");
        return Ok(ExitCode::from(130));
    };
    let files = tls_join::write_joined(&args.out, &key, &cert_pem, &ca_pem)?;
    let config = args.out.join(CONFIG_FILE);
    let wrote_config = write_config_if_missing(&config, &name)?;
    println!(
        "joined: node id {}; files {}, {}, {}",
        files.node,
        files.cert.display(),
        files.key.display(),
        files.ca.display()
    );
    if wrote_config {
        println!(
            "wrote {} (edit it as needed: docs/config.md)",
            config.display()
        );
    } else {
        println!("kept the existing {}", config.display());
    }
    if args.no_start {
        println!(
            "start the node with: lppsp node --config {}",
            config.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("starting the node");
    let _ = std::io::stdout().flush();
    super::node::run(super::node::NodeArgs { config })
}

/// Sends the request, shows the code and waits; `None` on Ctrl-C.
async fn request(
    args: &JoinArgs,
    name: &str,
    key: &NewKey,
) -> anyhow::Result<Option<(String, String)>> {
    let joining = lppsp_runtime::join::send_request(args.addr, name, key)
        .await
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("asking {} for a certificate", args.addr))?;
    println!(
        "request {} sent to {} as {name} (node id {})",
        joining.request_id,
        args.addr,
        key.node_id()
    );
    println!("verification code: {}", joining.code);
    println!(
        "ask the CA operator to run `lppsp ca pending`, check that request {} shows this same code, then `lppsp ca approve {}`",
        joining.request_id, joining.request_id
    );
    println!(
        "waiting for the decision (up to {} s; Ctrl-C cancels)",
        args.wait
    );
    let _ = std::io::stdout().flush();
    let ca_pem = joining.ca_pem.clone();
    tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(args.wait), joining.wait()) => {
            let cert = r
                .map_err(|_| anyhow::anyhow!("no decision within {} s; nothing was written", args.wait))?
                .map_err(anyhow::Error::msg)?;
            Ok(Some((cert, ca_pem)))
        }
        _ = tokio::signal::ctrl_c() => Ok(None),
    }
}

fn write_config_if_missing(path: &Path, name: &str) -> anyhow::Result<bool> {
    let text = format!(
        "# Written by `lppsp join`. Every key, with its default, is in\n\
         # docs/config.md and examples/node.toml.\n\n\
         [node]\nname = \"{name}\"\n\n\
         [identity]\nca_cert = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        tls_join::JOINED_CA_FILE,
        tls_join::JOINED_CERT_FILE,
        tls_join::JOINED_KEY_FILE,
    );
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// The host name made into a node name (letters, digits, -_.).
fn host_name() -> String {
    let raw = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        "lppsp-node".into()
    } else {
        clean
    }
}
