//! One module per subcommand.

pub mod bench;
pub mod ca;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod frame;
pub mod ledger;
pub mod node;
pub mod plugin;
pub mod status;
pub mod submit;

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
