//! `lppsp observe`: run a dedicated observer node (RFC 1.4 b). It joins the
//! book, computes nothing, submits nothing, samples the market every tick
//! and proposes prices from its balancer (the `ml` balancer by default)
//! through the same agreement rounds as any node. `lppsp status` against
//! it shows its current fit.

use std::process::ExitCode;

use anyhow::bail;
use lppsp_core::config::{NodeConfig, Role};

use super::node::NodeArgs;

pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = NodeConfig::load(&args.config)?;
    observer_config(&mut cfg, &args.config)?;
    tracing::info!(balancer = %cfg.balancer.kind, "starting an observer node");
    super::node::run_config(cfg, &args.config)
}

/// Makes `cfg` an observer's: role `observer`, and the `ml` balancer unless
/// the file names another one than the default `fsm` (a plugin, say).
fn observer_config(cfg: &mut NodeConfig, file: &std::path::Path) -> anyhow::Result<()> {
    cfg.node.role = Role::Observer;
    if cfg.balancer.kind.is_empty() || cfg.balancer.kind == "fsm" {
        if !cfg.balancer.options.is_empty() {
            bail!(
                "{}: key `balancer.kind`: an observer sets prices with the `ml` balancer \
                 (or a plugin), but this file configures `fsm` with options",
                file.display()
            );
        }
        cfg.balancer.kind = "ml".to_string();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observer_runs_ml_by_default_and_refuses_a_configured_fsm() {
        let file = std::path::Path::new("observer.toml");
        let mut cfg = NodeConfig::default();
        observer_config(&mut cfg, file).unwrap();
        assert_eq!(cfg.node.role, Role::Observer);
        assert_eq!(cfg.balancer.kind, "ml");
        assert!(!cfg.node.role.computes() && !cfg.node.role.submits());

        let mut cfg = NodeConfig::default();
        cfg.balancer.kind = "fsm".into();
        cfg.balancer
            .options
            .insert("window_s".into(), toml::Value::Integer(60));
        let err = observer_config(&mut cfg, file).unwrap_err().to_string();
        assert!(
            err.contains("observer.toml") && err.contains("balancer.kind"),
            "{err}"
        );
    }
}
