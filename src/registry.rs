//! The built-in registry: every component linked into this binary, by name.

use std::sync::Arc;

use lppsp_core::registry::Registry;
use lppsp_scheduler_price_aware::PriceAware;
use lppsp_scheduler_round_robin::suitability::SchedulerOptions;
use lppsp_scheduler_round_robin::RoundRobin;

/// Rejects options for components that take none, naming the first key.
fn no_options(options: &lppsp_core::registry::Options) -> Result<(), String> {
    match options.keys().next() {
        Some(k) => Err(format!(
            "unknown option `{k}` (this component takes no options)"
        )),
        None => Ok(()),
    }
}

/// A registry holding the built-in components.
pub fn builtin() -> Registry {
    let mut r = Registry::new();
    // `kind = "plugin"` for schedulers, balancers and executors.
    lppsp_plugin_host::register(&mut r);
    lppsp_transport_tls::register(&mut r);
    r.register_scheduler("round-robin", |o| {
        let options = SchedulerOptions::parse(o)?;
        Ok(Box::new(RoundRobin::with_options(options)))
    });
    r.register_scheduler("price-aware", |o| {
        let options = SchedulerOptions::parse(o)?;
        Ok(Box::new(PriceAware::with_options(options)))
    });
    r.register_balancer("fsm", lppsp_balancer_fsm::FsmBalancer::build);
    r.register_balancer("ml", lppsp_balancer_ml::MlBalancer::build);
    r.register_executor("builtin", |o| {
        no_options(o)?;
        Ok(Arc::new(lppsp_executor_builtin::BuiltinExecutor::new()))
    });
    r
}
