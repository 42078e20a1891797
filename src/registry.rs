//! The built-in registry: every component linked into this binary, by name.

use std::sync::Arc;

use lppsp_core::component::{Executor, ExecutorStack};
use lppsp_core::registry::{parse_options, Registry};
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
    r.register_executor("wasm", |o| Ok(Arc::new(wasm_executor(o)?)));
    // The default: builtin kernels and user WASM modules side by side.
    r.register_executor("standard", |o| {
        let builtin: Arc<dyn Executor> = Arc::new(lppsp_executor_builtin::BuiltinExecutor::new());
        let wasm: Arc<dyn Executor> = Arc::new(wasm_executor(o)?);
        Ok(Arc::new(ExecutorStack::new(
            "standard",
            vec![builtin, wasm],
        )))
    });
    r
}

/// Options of the `wasm` and `standard` executors (docs/config.md).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WasmOptions {
    /// Fuel per task when the job sets none; unset = unmetered (the
    /// wall-time cap still holds).
    fuel: Option<u64>,
    /// Largest module accepted, MiB.
    max_module_mb: Option<u64>,
    /// Compiled modules kept in memory.
    cache_modules: Option<usize>,
}

fn wasm_executor(
    options: &lppsp_core::registry::Options,
) -> Result<lppsp_executor_wasm::WasmExecutor, String> {
    let o: WasmOptions = parse_options(options, &["fuel", "max_module_mb", "cache_modules"])
        .map_err(|e| e.to_string())?;
    let mut config = lppsp_executor_wasm::WasmConfig {
        default_fuel: o.fuel,
        ..Default::default()
    };
    if let Some(mb) = o.max_module_mb {
        config.max_module_bytes = usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    }
    if let Some(n) = o.cache_modules {
        config.cache_modules = n.max(1);
    }
    lppsp_executor_wasm::WasmExecutor::with_config(config).map_err(|e| e.to_string())
}
