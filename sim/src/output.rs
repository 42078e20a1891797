//! Output files: time series (CSV and JSON lines), earnings per node,
//! plots, and the comparison of strategies across seeds (mean and 95%
//! confidence interval). Every number is written in Rust's shortest exact
//! form, so one seed gives the same bytes every time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::engine::{EarningsRow, RunOutput, SeriesRow};
use crate::plot::{self, Chart, Line};
use crate::scenario::Scenario;
use crate::SimError;

/// What was written.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    /// Why plots were not drawn, when they were not.
    pub plot_warning: Option<String>,
    /// The comparison table, Markdown.
    pub summary_md: String,
}

fn write(path: PathBuf, text: &str, files: &mut Vec<PathBuf>) -> Result<(), SimError> {
    std::fs::write(&path, text).map_err(|source| SimError::Write {
        path: path.clone(),
        source,
    })?;
    files.push(path);
    Ok(())
}

const SERIES_HEADER: &str = "time_s,nodes,price,price_max,epoch_max,pressure,demand_tasks,supply_mflops,queue,pending,utilisation,jobs_submitted,jobs_done,jobs_failed,jobs_deterred,jobs_lost,latency_mean_s,tasks_done,receipts,money_total,conserved";

/// The time series as CSV.
pub fn series_csv(rows: &[SeriesRow]) -> String {
    let mut s = String::from(SERIES_HEADER);
    s.push('\n');
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.time_s,
            r.nodes,
            r.price,
            r.price_max,
            r.epoch_max,
            r.pressure,
            r.demand_tasks,
            r.supply_mflops,
            r.queue,
            r.pending,
            r.utilisation,
            r.jobs_submitted,
            r.jobs_done,
            r.jobs_failed,
            r.jobs_deterred,
            r.jobs_lost,
            r.latency_mean_s,
            r.tasks_done,
            r.receipts,
            r.money_total,
            r.conserved
        );
    }
    s
}

/// The time series as JSON lines.
pub fn series_jsonl(rows: &[SeriesRow]) -> String {
    let mut s = String::new();
    for r in rows {
        if let Ok(line) = serde_json::to_string(r) {
            s.push_str(&line);
            s.push('\n');
        }
    }
    s
}

/// Earnings per node as CSV.
pub fn earnings_csv(rows: &[EarningsRow]) -> String {
    let mut s =
        String::from("node,index,power,arch,alive,tasks_done,tasks_refused,earned,balance\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{}",
            r.node,
            r.index,
            r.power,
            r.arch,
            r.alive,
            r.tasks_done,
            r.tasks_refused,
            r.earned,
            r.balance
        );
    }
    s
}

/// One run's headline figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub mean_price: f64,
    pub final_price: f64,
    pub mean_pressure: f64,
    pub mean_utilisation: f64,
    pub jobs_done: f64,
    pub jobs_failed: f64,
    pub jobs_deterred: f64,
    pub mean_latency_s: f64,
    pub p95_latency_s: f64,
    /// Price stability (G-commerce): the standard deviation of ln(price)
    /// over the run's samples; 0 for a price that never moves.
    pub price_log_sd: f64,
    /// Excess demand: tasks of live jobs not placed, per live node, mean
    /// over the samples.
    pub excess_demand: f64,
    /// Excess supply: the share of slots idle, mean over the samples.
    pub excess_supply: f64,
}

impl Figures {
    pub const NAMES: [&'static str; 12] = [
        "mean_price",
        "final_price",
        "mean_pressure",
        "mean_utilisation",
        "jobs_done",
        "jobs_failed",
        "jobs_deterred",
        "mean_latency_s",
        "p95_latency_s",
        "price_log_sd",
        "excess_demand",
        "excess_supply",
    ];

    pub fn of(run: &RunOutput) -> Self {
        let n = run.series.len().max(1) as f64;
        let mean = |f: fn(&SeriesRow) -> f64| run.series.iter().map(f).sum::<f64>() / n;
        let last = run.series.last();
        let mut lat = run.latencies_ms.clone();
        lat.sort_unstable();
        let mean_latency_s = if lat.is_empty() {
            0.0
        } else {
            lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0
        };
        let p95 = lat
            .get((lat.len() * 95 / 100).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |v| *v as f64 / 1000.0);
        let logs: Vec<f64> = run
            .series
            .iter()
            .filter(|r| r.price > 0.0)
            .map(|r| r.price.ln())
            .collect();
        let log_mean = logs.iter().sum::<f64>() / logs.len().max(1) as f64;
        let price_log_sd = (logs.iter().map(|l| (l - log_mean).powi(2)).sum::<f64>()
            / logs.len().max(1) as f64)
            .sqrt();
        Self {
            price_log_sd,
            excess_demand: mean(|r| r.pending as f64 / r.nodes.max(1) as f64),
            excess_supply: mean(|r| 1.0 - r.utilisation),
            mean_price: mean(|r| r.price),
            final_price: last.map_or(0.0, |r| r.price),
            mean_pressure: mean(|r| r.pressure),
            mean_utilisation: mean(|r| r.utilisation),
            jobs_done: last.map_or(0.0, |r| r.jobs_done as f64),
            jobs_failed: last.map_or(0.0, |r| r.jobs_failed as f64),
            jobs_deterred: last.map_or(0.0, |r| r.jobs_deterred as f64),
            mean_latency_s,
            p95_latency_s: p95,
        }
    }

    pub fn values(&self) -> [f64; 12] {
        [
            self.mean_price,
            self.final_price,
            self.mean_pressure,
            self.mean_utilisation,
            self.jobs_done,
            self.jobs_failed,
            self.jobs_deterred,
            self.mean_latency_s,
            self.p95_latency_s,
            self.price_log_sd,
            self.excess_demand,
            self.excess_supply,
        ]
    }
}

/// Two-sided 95% Student t critical values for 1..=30 degrees of freedom.
const T95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Mean and half-width of the 95% confidence interval (0 for one value).
pub fn mean_ci(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T95.get(n - 2).copied().unwrap_or(1.96);
    (mean, t * (var / n as f64).sqrt())
}

fn fmt_num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

/// Writes everything for a finished experiment; `runs` are
/// (strategy index, seed, output), sorted.
pub fn write_all(
    sc: &Scenario,
    seeds: &[u64],
    runs: &[(usize, u64, RunOutput)],
    out: &Path,
) -> Result<Written, SimError> {
    let mut w = Written::default();
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| SimError::Write {
            path: p.to_path_buf(),
            source,
        })
    };
    mkdir(out)?;
    for (s, seed, run) in runs {
        let Some(st) = sc.strategies.get(*s) else {
            continue;
        };
        let dir = out.join(&st.name);
        mkdir(&dir)?;
        write(
            dir.join(format!("series-seed{seed}.csv")),
            &series_csv(&run.series),
            &mut w.files,
        )?;
        write(
            dir.join(format!("series-seed{seed}.jsonl")),
            &series_jsonl(&run.series),
            &mut w.files,
        )?;
        write(
            dir.join(format!("earnings-seed{seed}.csv")),
            &earnings_csv(&run.earnings),
            &mut w.files,
        )?;
    }
    // The comparison across seeds.
    let mut csv = String::from("strategy,metric,mean,ci95,seeds\n");
    let mut md = format!(
        "# {}: strategies compared over {} seed(s)\n\nMean ± half-width of the 95% confidence interval (Student t).\n\n| strategy | {} |\n|---|{}\n",
        sc.name,
        seeds.len(),
        Figures::NAMES.join(" | "),
        "---|".repeat(Figures::NAMES.len())
    );
    for (s, st) in sc.strategies.iter().enumerate() {
        let figs: Vec<Figures> = runs
            .iter()
            .filter(|(k, _, _)| *k == s)
            .map(|(_, _, r)| Figures::of(r))
            .collect();
        let _ = write!(md, "| {} |", st.name);
        for (m, name) in Figures::NAMES.iter().enumerate() {
            let xs: Vec<f64> = figs
                .iter()
                .filter_map(|f| f.values().get(m).copied())
                .collect();
            let (mean, ci) = mean_ci(&xs);
            let _ = writeln!(csv, "{},{name},{mean},{ci},{}", st.name, xs.len());
            let _ = write!(md, " {} ± {} |", fmt_num(mean), fmt_num(ci));
        }
        md.push('\n');
    }
    let states: Vec<String> = runs
        .iter()
        .filter(|(_, seed, _)| seeds.first() == Some(seed))
        .filter_map(|(s, seed, r)| {
            let st = sc.strategies.get(*s)?;
            let d = r.balancer_state.as_deref()?;
            Some(format!("- {} (seed {seed}): `{d}`\n", st.name))
        })
        .collect();
    if !states.is_empty() {
        md.push_str("\nThe first node's balancer at the end:\n\n");
        md.extend(states);
    }
    write(out.join("summary.csv"), &csv, &mut w.files)?;
    write(out.join("summary.md"), &md, &mut w.files)?;
    w.summary_md = md;
    // Plots: the first seed's series per strategy; latency from all seeds.
    let first = seeds.first().copied();
    let series_of = |f: fn(&SeriesRow) -> f64| -> Vec<Line> {
        sc.strategies
            .iter()
            .enumerate()
            .filter_map(|(s, st)| {
                let run = runs
                    .iter()
                    .find(|(k, seed, _)| *k == s && Some(*seed) == first)?;
                let pts = run.2.series.iter().map(|r| (r.time_s, f(r))).collect();
                Some((st.name.clone(), pts))
            })
            .collect()
    };
    let latency: Vec<Line> = sc
        .strategies
        .iter()
        .enumerate()
        .map(|(s, st)| {
            let mut all: Vec<u64> = runs
                .iter()
                .filter(|(k, _, _)| *k == s)
                .flat_map(|(_, _, r)| r.latencies_ms.iter().copied())
                .collect();
            all.sort_unstable();
            let n = all.len().max(1) as f64;
            let pts = all
                .iter()
                .enumerate()
                .map(|(k, ms)| (*ms as f64 / 1000.0, (k + 1) as f64 / n))
                .collect();
            (st.name.clone(), pts)
        })
        .collect();
    let seed_note = first.map_or(String::new(), |s| format!(" (seed {s})"));
    let charts = [
        (
            "price",
            format!("Market price{seed_note}"),
            "price",
            series_of(|r| r.price),
        ),
        (
            "pressure",
            format!("Task queue pressure{seed_note}"),
            "tasks per node",
            series_of(|r| r.pressure),
        ),
        (
            "utilisation",
            format!("Utilisation{seed_note}"),
            "busy slots / slots",
            series_of(|r| r.utilisation),
        ),
    ];
    for (stem, title, y, lines) in &charts {
        let chart = Chart {
            file_stem: stem,
            title,
            x_label: "time (s)",
            y_label: y,
            lines,
        };
        match plot::write(out, &chart) {
            Ok(files) => w.files.extend(files),
            Err(e) => {
                w.plot_warning = Some(e);
                return Ok(w);
            }
        }
    }
    let chart = Chart {
        file_stem: "latency",
        title: "Job latency distribution (all seeds)",
        x_label: "job latency (s)",
        y_label: "share of jobs done within",
        lines: &latency,
    };
    match plot::write(out, &chart) {
        Ok(files) => w.files.extend(files),
        Err(e) => w.plot_warning = Some(e),
    }
    Ok(w)
}
