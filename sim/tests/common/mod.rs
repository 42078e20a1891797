//! Helpers shared by the simulator's tests.
#![allow(dead_code)]

use lppsp_core::registry::Registry;
use lppsp_scheduler_price_aware::PriceAware;
use lppsp_scheduler_round_robin::suitability::SchedulerOptions;
use lppsp_scheduler_round_robin::RoundRobin;

/// The built-in schedulers and balancers, as the binary registers them.
pub fn registry() -> Registry {
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

/// The small scenario cut to `secs` simulated seconds and the strategies
/// whose names are listed.
pub fn small(secs: u64, strategies: &[&str]) -> lppsp_sim::Scenario {
    let mut sc = lppsp_sim::Scenario::parse(SMALL).expect("the test scenario parses");
    sc.duration_s = secs;
    sc.strategies
        .retain(|s| strategies.contains(&s.name.as_str()));
    sc
}

/// A small scenario: 40 nodes, 10 simulated minutes, churn and failures,
/// a surge, every kind of strategy.
pub const SMALL: &str = r#"
name = "small"
duration_s = 600
sample_every_s = 10
initial_price = "1"
grant = "10000000"

[population]
count = 40
power = { distribution = "lognormal", median = 1000, sigma = 0.4 }
slots = 2
clients = 0.25
architectures = [{ name = "x86_64", weight = 3 }, { name = "aarch64", weight = 1 }]
reserve_price = { distribution = "uniform", min = 0.5, max = 3 }
join_per_hour = 30
leave_per_hour = 20
fail_per_hour = 20

[links]
latency_ms = 1
jitter_ms = 3
loss = 0.01

[[links.partitions]]
at_s = 300
until_s = 360
fraction = 0.3

[jobs]
rate_per_s = 0.2
tasks = { distribution = "uniform", min = 5, max = 30 }
task_mflop = { distribution = "lognormal", median = 8000, sigma = 0.5 }
budget = "300000"
max_price = { distribution = "uniform", min = 1, max = 6 }
arch_constrained = 0.1
task_timeout_s = 120

[[jobs.bursts]]
at_s = 100
jobs = 10

[jobs.surge]
at_s = 200
until_s = 400
factor = 4

[[strategies]]
name = "fsm"
kind = "fsm"
options = { window_ms = 30000, threshold_milli = 1500, decay = true }

[[strategies]]
name = "ml"
kind = "ml"
options = { sample_every_ms = 5000, min_interval_ms = 20000 }

[[strategies]]
name = "none"
kind = "none"
"#;
