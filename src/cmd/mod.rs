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
pub mod status;
pub mod submit;

/// Sends one request to a running node's control endpoint and returns its
/// single reply, or the node's error.
pub fn ask_node(
    control: std::net::SocketAddr,
    request: &lppsp_runtime::control::Request,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let replies = rt
        .block_on(lppsp_runtime::control::call(control, request))
        .with_context(|| format!("asking the node at {control} (is it running?)"))?;
    let reply = replies
        .into_iter()
        .next()
        .with_context(|| format!("the node sent no {what}"))?;
    if let Some(err) = reply.get("error") {
        anyhow::bail!("node: {err}");
    }
    Ok(reply)
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
