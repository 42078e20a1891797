//! `lppsp sim`: run a simulation scenario (docs/experiments.md) with the
//! built-in registry, plugins included, and write its series and plots.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Args)]
pub struct SimArgs {
    /// The scenario file (TOML; see examples/scenarios/).
    pub scenario: PathBuf,
    /// Seeds to run each strategy with: `1..10` (inclusive), `3`, or `1,5,9`.
    #[arg(long, default_value = "1")]
    pub seeds: String,
    /// Directory for the series, earnings, plots and summary.
    #[arg(long)]
    pub out: PathBuf,
    /// Runs simulated at once.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Run the scenario on real node processes on loopback instead, in
    /// real time, with the same population and jobs (docs/experiments.md).
    #[arg(long)]
    pub real: bool,
}

/// `1..10`, `1..=10`, `4` or `1,2,3`.
pub fn parse_seeds(s: &str) -> anyhow::Result<Vec<u64>> {
    let s = s.trim();
    let num = |v: &str| {
        v.trim()
            .parse::<u64>()
            .with_context(|| format!("--seeds: {v:?} is not a whole number"))
    };
    let seeds: Vec<u64> = if let Some((a, b)) = s.split_once("..") {
        let (a, b) = (num(a)?, num(b.trim_start_matches('='))?);
        anyhow::ensure!(a <= b, "--seeds: {a}..{b} is empty");
        anyhow::ensure!(b - a < 10_000, "--seeds: at most 10000 seeds");
        (a..=b).collect()
    } else {
        s.split(',').map(num).collect::<anyhow::Result<_>>()?
    };
    anyhow::ensure!(!seeds.is_empty(), "--seeds: no seed given");
    Ok(seeds)
}

pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let seeds = parse_seeds(&args.seeds)?;
    let scenario = lppsp_sim::Scenario::load(&args.scenario)?;
    if args.real {
        let written = super::sim_real::run(&scenario, &seeds, &args.out)
            .with_context(|| format!("running {} on real nodes", args.scenario.display()))?;
        println!("{}", written.summary_md);
        println!("{} files in {}", written.files.len(), args.out.display());
        return Ok(ExitCode::SUCCESS);
    }
    let registry = crate::registry::builtin();
    let runs = (scenario.strategies.len() * seeds.len()) as u64;
    let total_ms = runs * scenario.duration_s * 1000;
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(total_ms / 1000), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} simulated s, {elapsed} ({eta} left) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{runs} run(s)"));
    let done = std::sync::atomic::AtomicU64::new(0);
    let progress = |ms: u64| {
        let all = done.fetch_add(ms, std::sync::atomic::Ordering::Relaxed) + ms;
        bar.set_position(all / 1000);
    };
    let written = lppsp_sim::run_experiment(
        &scenario,
        &registry,
        &seeds,
        &args.out,
        args.threads,
        &progress,
    )
    .with_context(|| format!("simulating {}", args.scenario.display()))?;
    bar.finish_and_clear();
    if let Some(w) = &written.plot_warning {
        eprintln!("warning: plots not drawn: {w}");
    }
    println!("{}", written.summary_md);
    println!(
        "{} files in {} (series per strategy and seed, earnings, summary.csv/md{})",
        written.files.len(),
        args.out.display(),
        if written.plot_warning.is_none() {
            ", plots as SVG and PNG"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
