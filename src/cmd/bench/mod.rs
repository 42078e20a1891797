//! `lppsp bench`: the benchmark workloads W1-W3 of shared/BENCHMARKS.md on a
//! real local cluster (1 client + N compute nodes as child processes,
//! mutual TLS on loopback), one JSON object per run on stdout.
//!
//! Each run starts its own cluster (so that its start-up time, idle and
//! peak memory belong to that run alone), opens the client's links with a
//! small warm-up job, times one job from the moment the client node has
//! accepted it (task inputs made) to the moment its integrated result is in
//! this process's hand, reads every node's peak RSS, stops the cluster and
//! checks the result against a value computed here without the framework.
//! See docs/performance.md for the fields and how to read them.

mod job;
mod perf;
mod progress;
mod record;
mod reference;
mod workload;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use lppsp_executor_builtin as builtin;
use lppsp_runtime::control::reply::JobEvent;
use serde_json::{json, Map, Value};

use super::cluster::Cluster;
use job::{rss_of, run_job};
use perf::Perf;
use progress::Progress;
use record::{
    commit, from_hex, round1, round6, sum_f64, sum_mib, summary_line, unix_time, versions,
};
use reference::{w1_expected, w2_serial, w3_expected, Expected};
use workload::{submit_request, wasm_module, Sizes, Workload, W3_SEED};

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadArg {
    W1,
    W2,
    W3,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelArg {
    /// The native kernels of the builtin executor.
    Builtin,
    /// The WAT kernels of examples/kernels on the wasm executor.
    Wasm,
}

impl KernelArg {
    fn as_str(self) -> &'static str {
        match self {
            KernelArg::Builtin => "builtin",
            KernelArg::Wasm => "wasm",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LedgerArg {
    On,
    Off,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Workload to run (shared/BENCHMARKS.md).
    #[arg(long, value_enum, default_value = "all")]
    workload: WorkloadArg,
    /// Compute nodes to start (each runs one task at a time).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    nodes: u32,
    /// Kernels to run the workloads with.
    #[arg(long, value_enum, default_value = "builtin")]
    kernel: KernelArg,
    /// Settle charges into signed, durable receipts (`on`, as nodes do), or
    /// meter and drop them (`off`), to measure what the ledger costs.
    #[arg(long, value_enum, default_value = "on")]
    ledger: LedgerArg,
    /// Runs of each workload, each on a fresh cluster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Keep every run's temp dir (configs, certificates, node logs).
    #[arg(long)]
    keep: bool,
    /// Size factor for quick checks: scales W1's task count, W2's samples
    /// per task and W3's bytes per task. Figures at another scale are not
    /// comparable with BENCHMARKS.md.
    #[arg(long, default_value_t = 1.0, hide = true)]
    scale: f64,
    /// Profile the nodes during each timed job with `perf record -g` into
    /// DIR/<workload>-<run>.data (one file, one process per node; see
    /// docs/performance.md). Recording is on from the `accepted` event to
    /// the result, so making the task inputs is not in the profile.
    #[arg(long, value_name = "DIR")]
    perf: Option<std::path::PathBuf>,
    /// With --perf: perf's `--call-graph` mode (`fp` is `-g`; `dwarf`
    /// gives full stacks through code built without frame pointers).
    #[arg(long, default_value = "fp", hide = true)]
    perf_call_graph: String,
}

/// One workload run on a fresh cluster; returns its JSON object.
fn run_one(
    args: &BenchArgs,
    w: Workload,
    run: u32,
    w3_cache: &mut Option<(Sizes, u64)>,
    progress: &Progress,
) -> anyhow::Result<Value> {
    let sizes = Sizes::of(w, args.scale);
    let prefix = format!("{} {}/{}", w.name(), run, args.repeat);
    let mut out = Map::new();
    out.insert("workload".into(), json!(w.name()));
    out.insert("nodes".into(), json!(args.nodes));
    out.insert("kernel".into(), json!(args.kernel.as_str()));
    out.insert("ledger".into(), json!(args.ledger == LedgerArg::On));
    out.insert("run".into(), json!(run));
    out.insert("tasks".into(), json!(sizes.tasks));
    if args.scale != 1.0 {
        out.insert("scale".into(), json!(args.scale));
    }

    // The reference result, before any node runs (W2's serial time must
    // have the machine to itself).
    let expected = match w {
        Workload::W1 => Expected::U64(w1_expected(sizes.tasks)),
        Workload::W2 => {
            progress.phase(&prefix, "serial baseline (plain loop of w2_hits)");
            let (hits, serial_s) = w2_serial(sizes.tasks, sizes.samples);
            out.insert("serial_s".into(), json!(round6(serial_s)));
            Expected::Hits {
                hits,
                samples: sizes.tasks * sizes.samples,
            }
        }
        Workload::W3 => {
            let sum = match w3_cache {
                Some((s, sum)) if s.tasks == sizes.tasks && s.bytes == sizes.bytes => *sum,
                _ => {
                    progress.phase(&prefix, "computing the expected byte sum");
                    let sum = w3_expected(sizes.tasks, sizes.bytes, W3_SEED);
                    *w3_cache = Some((sizes, sum));
                    sum
                }
            };
            out.insert("bytes".into(), json!(sizes.tasks * sizes.bytes));
            Expected::U64(sum)
        }
    };

    progress.phase(
        &prefix,
        &format!("starting 1 client + {} compute nodes", args.nodes),
    );
    let t = Instant::now();
    let mut cluster = Cluster::start(
        args.nodes,
        "lppsp-bench-",
        "lppsp bench community",
        match args.ledger {
            LedgerArg::On => "",
            LedgerArg::Off => "[market]\nsettle = false\n",
        },
    )?;
    let ready = cluster.wait_ready(Duration::from_secs(60));
    let startup_s = t.elapsed().as_secs_f64();
    if let Err(e) = ready {
        let kept = cluster.keep();
        return Err(e.context(format!("node logs kept in {}", kept.display())));
    }
    out.insert("startup_s".into(), json!(round6(startup_s)));
    let idle = rss_of(&cluster, "VmRSS");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let kernel = w.kernel().to_string();
    let module = match args.kernel {
        KernelArg::Builtin => None,
        KernelArg::Wasm => Some(wasm_module(w)?),
    };

    // Warm-up: a few tasks per node, so that the client's TLS links to the
    // compute nodes are open before the timed job.
    progress.phase(&prefix, "warm-up job (opens the client's links)");
    let warm_sizes = Sizes {
        tasks: u64::from(args.nodes) * 4,
        samples: 1000,
        bytes: 1024,
    };
    let warm = run_job(
        &rt,
        &cluster,
        submit_request(w, &kernel, module.as_ref(), &warm_sizes),
        None,
        None,
    )?;
    if !matches!(warm.last, Some(JobEvent::Done(_))) {
        let kept = cluster.keep();
        bail!(
            "the warm-up job did not finish: {:?}; node logs kept in {}",
            warm.last,
            kept.display()
        );
    }
    out.insert("warmup_s".into(), json!(round6(warm.submit_s)));

    let mut perf = match &args.perf {
        Some(dir) => {
            let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.pid()).collect();
            let name = format!("{}-{run}", w.name());
            Some(Perf::start(dir, &name, &pids, &args.perf_call_graph)?)
        }
        None => None,
    };
    let job = run_job(
        &rt,
        &cluster,
        submit_request(w, &kernel, module.as_ref(), &sizes),
        Some((progress, &prefix)),
        perf.as_mut(),
    )?;
    if let Some(p) = perf {
        p.finish()?;
        for n in &cluster.nodes {
            out.insert(format!("pid_{}", n.name), json!(n.pid()));
        }
    }
    progress.phase(&prefix, "stopping the nodes");
    let peak = rss_of(&cluster, "VmHWM");

    let last = job.last.as_ref();
    let done = match last {
        Some(JobEvent::Done(d)) => Some(d),
        _ => None,
    };
    let ok = done.is_some();
    let result = from_hex(done.map_or("", |d| d.result_hex.as_str()));
    let correct = ok
        && match (&expected, &result) {
            (Expected::U64(want), Some(r)) => {
                let got = builtin::decode_u64(r);
                out.insert("result".into(), got.map_or(Value::Null, |v| json!(v)));
                out.insert("expected".into(), json!(want));
                got == Some(*want)
            }
            (Expected::Hits { hits, samples }, Some(r)) => {
                let got = builtin::decode_w2(r);
                let pi = |h: u64, s: u64| 4.0 * h as f64 / s.max(1) as f64;
                out.insert(
                    "result".into(),
                    got.map_or(Value::Null, |(h, s)| json!(pi(h, s))),
                );
                out.insert("hits".into(), got.map_or(Value::Null, |(h, _)| json!(h)));
                out.insert("expected_hits".into(), json!(hits));
                out.insert("expected".into(), json!(pi(*hits, *samples)));
                got == Some((*hits, *samples))
            }
            (_, None) => false,
        };
    if !ok {
        out.insert("result".into(), Value::Null);
        out.insert(
            "error".into(),
            json!(match last {
                Some(JobEvent::Failed(f)) => format!("job failed: {}", f.error),
                Some(JobEvent::Rejected { error }) => format!("job rejected: {error}"),
                _ => "job lost: the node closed the connection".to_string(),
            }),
        );
    }
    let job_s = job.job_s.unwrap_or(f64::NAN);
    let (figure, unit) = match w {
        Workload::W1 => (sizes.tasks as f64 / job_s, "tasks/s"),
        Workload::W2 => (job_s, "s"),
        Workload::W3 => ((sizes.tasks * sizes.bytes) as f64 / MIB / job_s, "MiB/s"),
    };
    if ok {
        out.insert("job_s".into(), json!(round6(job_s)));
        let figure = if unit == "s" {
            round6(figure)
        } else {
            round1(figure)
        };
        out.insert("figure".into(), json!(figure));
    } else {
        out.insert("job_s".into(), Value::Null);
        out.insert("figure".into(), Value::Null);
    }
    out.insert("unit".into(), json!(unit));
    out.insert("correct".into(), json!(correct));
    if let (Workload::W2, Some(serial)) = (w, out.get("serial_s").and_then(Value::as_f64)) {
        if ok {
            let eff = serial / (f64::from(args.nodes) * job_s);
            out.insert("efficiency".into(), json!((eff * 1e4).round() / 1e4));
        }
    }
    out.insert("submit_s".into(), json!(round6(job.submit_s)));
    out.insert(
        "node_job_s".into(),
        done.map_or(Value::Null, |d| json!(round6(d.elapsed_s))),
    );
    out.insert(
        "retries".into(),
        match last {
            Some(JobEvent::Done(d)) => json!(d.progress.retries),
            Some(JobEvent::Failed(f)) => json!(f.progress.retries),
            _ => Value::Null,
        },
    );
    // The run time of the task bodies as the compute nodes measured them.
    let nodes = match last {
        Some(JobEvent::Done(d)) => Some(&d.nodes),
        Some(JobEvent::Failed(f)) => Some(&f.nodes),
        _ => None,
    };
    if let Some(nodes) = nodes {
        let micros: u64 = nodes.values().map(|t| t.micros).sum();
        out.insert("task_s".into(), json!(round6(micros as f64 / 1e6)));
    }
    out.insert("cpu_sum_s".into(), json!(round6(sum_f64(&job.cpu_s))));
    out.insert("cpu_s".into(), Value::Object(job.cpu_s));
    out.insert("page_faults".into(), Value::Object(job.faults));
    out.insert("rss_sum_mib".into(), json!(sum_mib(&peak)));
    out.insert("rss_mib".into(), Value::Object(peak));
    out.insert("idle_rss_mib".into(), Value::Object(idle));
    out.insert("versions".into(), versions());
    out.insert("commit".into(), json!(commit()));
    out.insert("unix_time".into(), json!(unix_time()));

    if args.keep || !correct {
        let kept = cluster.keep();
        out.insert("logs".into(), json!(kept.display().to_string()));
    } else {
        cluster.stop();
    }
    Ok(Value::Object(out))
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if !(args.scale > 0.0 && args.scale <= 16.0) {
        bail!("--scale must be in (0, 16]");
    }
    let workloads: &[Workload] = match args.workload {
        WorkloadArg::W1 => &[Workload::W1],
        WorkloadArg::W2 => &[Workload::W2],
        WorkloadArg::W3 => &[Workload::W3],
        WorkloadArg::All => &[Workload::W1, Workload::W2, Workload::W3],
    };
    let progress = Progress::new();
    let mut w3_cache = None;
    let mut all_correct = true;
    let stdout = std::io::stdout();
    for &w in workloads {
        for run in 1..=args.repeat {
            let v = run_one(&args, w, run, &mut w3_cache, &progress)?;
            all_correct &= v["correct"].as_bool() == Some(true);
            progress.note(&summary_line(&v));
            let mut out = stdout.lock();
            writeln!(out, "{v}").context("writing to stdout")?;
            out.flush().context("writing to stdout")?;
        }
    }
    progress.finish();
    if !all_correct {
        eprintln!("error: a benchmark result was wrong or its job failed (see `correct`)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
