//! Times one simulation run in release without building the whole `lppsp`
//! binary (built-in schedulers and balancers only, no plugin loader):
//!
//! ```text
//! cargo run --release -p lppsp-sim --example bench -- examples/scenarios/scale-10k.toml [seed] [strategy]
//! ```
//!
//! Prints the wall time and the last row of the series.

use std::time::Instant;

use lppsp_core::registry::Registry;
use lppsp_scheduler_price_aware::PriceAware;
use lppsp_scheduler_round_robin::suitability::SchedulerOptions;
use lppsp_scheduler_round_robin::RoundRobin;

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_scheduler("round-robin", |o| {
        Ok(Box::new(RoundRobin::with_options(SchedulerOptions::parse(
            o,
        )?)))
    });
    r.register_scheduler("price-aware", |o| {
        Ok(Box::new(PriceAware::with_options(SchedulerOptions::parse(
            o,
        )?)))
    });
    r.register_balancer("fsm", lppsp_balancer_fsm::FsmBalancer::build);
    r.register_balancer("ml", lppsp_balancer_ml::MlBalancer::build);
    r
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: bench SCENARIO [seed] [strategy index]")?;
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let strategy: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let sc = lppsp_sim::Scenario::load(std::path::Path::new(&path))?;
    let reg = registry();
    let opts = lppsp_sim::RunOptions {
        seed,
        trace_node: None,
        keep_receipts: false,
    };
    let started = Instant::now();
    let out = lppsp_sim::run_one(&sc, strategy, &reg, opts, &|_| {})?;
    let wall = started.elapsed();
    println!(
        "scenario {} strategy {strategy} seed {seed}: {} simulated s in {:.1} s wall",
        sc.name,
        sc.duration_s,
        wall.as_secs_f64()
    );
    if let Some(last) = out.series.last() {
        println!("{last:?}");
    }
    Ok(())
}
