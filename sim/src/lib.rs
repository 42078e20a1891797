//! lppsp-sim: the deterministic simulator of an LPPSP network, for pricing
//! experiments.
//!
//! It runs the core's own state machines (the information book, the price
//! agreement, the job tracker) and the registry's schedulers and balancers
//! (plugins included) for thousands of simulated nodes, on virtual time,
//! over simulated links with latency, loss and partitions, and writes time
//! series, per-node earnings, plots and a comparison of strategies. One
//! seed gives bit-identical output: no wall clock, no hash-map order, one
//! seeded ChaCha generator per random process. Money moves only through
//! the ledger crate's receipts, and conservation is checked at every
//! sample. See docs/experiments.md.

#![forbid(unsafe_code)]

pub mod draws;
pub mod engine;
pub mod money;
pub mod output;
pub mod plot;
pub mod scenario;

use std::path::{Path, PathBuf};

use lppsp_core::registry::Registry;

pub use engine::{RunOptions, RunOutput, Sim, TraceEvent};
pub use scenario::Scenario;

/// Why a simulation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Load(#[from] scenario::ScenarioError),
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("building a component: {0}")]
    Component(String),
    #[error(transparent)]
    Money(#[from] money::MoneyError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One strategy under one seed.
pub fn run_one(
    sc: &Scenario,
    strategy: usize,
    registry: &Registry,
    opts: RunOptions,
    progress: &dyn Fn(u64),
) -> Result<RunOutput, SimError> {
    let st = sc
        .strategies
        .get(strategy)
        .ok_or_else(|| SimError::Scenario(format!("no strategy number {strategy}")))?;
    Sim::new(sc, st, registry, opts)?.run(progress)
}

/// Progress of a whole experiment: virtual ms simulated so far, of the total.
pub trait Progress: Sync {
    fn advance(&self, ms: u64);
}

impl<F: Fn(u64) + Sync> Progress for F {
    fn advance(&self, ms: u64) {
        self(ms)
    }
}

/// Runs every strategy under every seed (on up to `threads` threads) and
/// writes the outputs into `out`. Returns the files written.
pub fn run_experiment(
    sc: &Scenario,
    registry: &Registry,
    seeds: &[u64],
    out: &Path,
    threads: usize,
    progress: &dyn Progress,
) -> Result<output::Written, SimError> {
    let runs: Vec<(usize, u64)> = (0..sc.strategies.len())
        .flat_map(|s| seeds.iter().map(move |&seed| (s, seed)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, runs.len().max(1)) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(s, seed)) = runs.get(k) else {
                    return;
                };
                let last = std::sync::atomic::AtomicU64::new(0);
                let step = |ms: u64| {
                    let before = last.swap(ms, std::sync::atomic::Ordering::Relaxed);
                    progress.advance(ms.saturating_sub(before));
                };
                let opts = RunOptions {
                    seed,
                    trace_node: None,
                    keep_receipts: false,
                };
                let r = run_one(sc, s, registry, opts, &step);
                if let Ok(mut v) = results.lock() {
                    v.push((s, seed, r));
                }
            });
        }
    });
    let mut done = results.into_inner().unwrap_or_default();
    // Threads finish in any order; outputs follow (strategy, seed).
    done.sort_by_key(|(s, seed, _)| (*s, *seed));
    let mut ok = Vec::new();
    for (s, seed, r) in done {
        ok.push((s, seed, r?));
    }
    output::write_all(sc, seeds, &ok, out)
}
