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

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lppsp_executor_builtin as builtin;
use lppsp_runtime::client::{InputSpec, SubmitRequest};
use lppsp_runtime::control::reply::JobEvent;
use lppsp_runtime::control::{self, Request};
use serde_json::{json, Map, Value};

use super::cluster::Cluster;

/// W1's job result for 10,000 tasks, as every system prints it.
pub const W1_EXPECTED: u64 = 1_291_890_006_563_070_912;
/// W1: number of tasks.
const W1_TASKS: u64 = 10_000;
/// W2: number of tasks and samples per task.
const W2_TASKS: u64 = 200;
const W2_SAMPLES: u64 = 5_000_000;
/// W3: number of tasks and input bytes per task.
const W3_TASKS: u64 = 64;
const W3_BYTES: u64 = 16 << 20;
/// Seed of W3's generated inputs (`InputSpec::Random`).
const W3_SEED: u64 = 1;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    W1,
    W2,
    W3,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
        }
    }

    fn kernel(self) -> &'static str {
        match self {
            Workload::W1 => builtin::W1_SUM_SQUARES,
            Workload::W2 => builtin::W2_MONTE_CARLO_PI,
            Workload::W3 => builtin::W3_BYTE_SUM,
        }
    }
}

/// The sizes of one workload run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    tasks: u64,
    /// W2: samples per task.
    samples: u64,
    /// W3: input bytes per task.
    bytes: u64,
}

fn scaled(n: u64, scale: f64) -> u64 {
    ((n as f64 * scale).round() as u64).max(1)
}

impl Sizes {
    fn of(w: Workload, scale: f64) -> Self {
        match w {
            Workload::W1 => Sizes {
                tasks: scaled(W1_TASKS, scale),
                samples: 0,
                bytes: 0,
            },
            Workload::W2 => Sizes {
                tasks: W2_TASKS,
                samples: scaled(W2_SAMPLES, scale),
                bytes: 0,
            },
            Workload::W3 => Sizes {
                tasks: W3_TASKS,
                samples: 0,
                bytes: scaled(W3_BYTES, scale),
            },
        }
    }

    fn inputs(&self, w: Workload) -> InputSpec {
        match w {
            Workload::W1 => InputSpec::Range {
                start: 0,
                end: self.tasks,
                extra: vec![],
            },
            Workload::W2 => InputSpec::Range {
                start: 0,
                end: self.tasks,
                extra: vec![self.samples],
            },
            Workload::W3 => InputSpec::Random {
                count: self.tasks,
                size: self.bytes,
                seed: W3_SEED,
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Expected results, computed here in plain loops (no framework).

/// W1's job result: the wrapping sum over tasks of the wrapping sum of
/// `(i*1000+k)^2`, `k` in `0..=999`.
fn w1_expected(tasks: u64) -> u64 {
    if tasks == W1_TASKS {
        return W1_EXPECTED;
    }
    let mut total = 0u64;
    for i in 0..tasks {
        for k in 0..1000u64 {
            let v = i.wrapping_mul(1000).wrapping_add(k);
            total = total.wrapping_add(v.wrapping_mul(v));
        }
    }
    total
}

/// W3's job result: the wrapping byte sum of the inputs `InputSpec::Random`
/// makes (one SplitMix64 stream from the seed, 8 bytes LE per draw, each
/// task's input cut to `size` bytes), generated word by word.
fn w3_expected(count: u64, size: u64, seed: u64) -> u64 {
    let mut words = lppsp_core::splitmix::SplitMix64::new(seed);
    let mut total = 0u64;
    for _ in 0..count {
        let mut left = size;
        while left > 0 {
            let z = words.next_u64();
            let take = left.min(8) as usize;
            let sum: u64 = z.to_le_bytes()[..take].iter().map(|&b| u64::from(b)).sum();
            total = total.wrapping_add(sum);
            left -= take as u64;
        }
    }
    total
}

/// W2 without the framework: the same task bodies in one plain loop.
/// Returns (hits, seconds).
fn w2_serial(tasks: u64, samples: u64) -> (u64, f64) {
    let t = Instant::now();
    let mut hits = 0u64;
    for i in 0..tasks {
        hits += builtin::w2_hits(std::hint::black_box(i), samples);
    }
    (hits, t.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------
// Output helpers.

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn os_version() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut v = std::env::consts::OS.to_string();
    if !release.is_empty() {
        v.push(' ');
        v.push_str(&release);
    }
    v.push(' ');
    v.push_str(std::env::consts::ARCH);
    v
}

fn versions() -> Value {
    json!({
        "lppsp": env!("CARGO_PKG_VERSION"),
        "rustc": option_env!("LPPSP_RUSTC_VERSION").unwrap_or("unknown"),
        "os": os_version(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    })
}

fn commit() -> &'static str {
    option_env!("LPPSP_GIT_COMMIT").unwrap_or("unknown")
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Decodes the `result_hex` of a `done` event.
fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Memory of every node from `/proc/<pid>/status`, MiB, keyed by node name.
fn rss_of(cluster: &Cluster, field: &str) -> Map<String, Value> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            let v = n
                .proc_status_kib(field)
                .map_or(Value::Null, |kib| json!(round1(kib as f64 / 1024.0)));
            (n.name.clone(), v)
        })
        .collect()
}

fn sum_f64(m: &Map<String, Value>) -> f64 {
    m.values().filter_map(Value::as_f64).sum()
}

fn sum_mib(m: &Map<String, Value>) -> f64 {
    round1(sum_f64(m))
}

/// The progress line on a terminal (stderr); hidden otherwise.
struct Progress {
    bar: ProgressBar,
    shown: bool,
}

impl Progress {
    fn new() -> Self {
        let shown = std::io::stderr().is_terminal();
        let bar = if shown {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        Self { bar, shown }
    }

    fn phase(&self, prefix: &str, msg: &str) {
        self.bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        self.bar.set_prefix(prefix.to_string());
        self.bar.set_message(msg.to_string());
        self.bar.reset_elapsed();
        self.bar.enable_steady_tick(Duration::from_millis(100));
    }

    fn tasks(&self, prefix: &str, total: u64) {
        self.bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix} {bar:30} {pos}/{len} tasks {per_sec} [{elapsed}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar.set_prefix(prefix.to_string());
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.reset_elapsed();
    }

    /// A line for people, above the progress line (stderr, terminal only).
    fn note(&self, line: &str) {
        if self.shown {
            self.bar.println(line);
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

// ---------------------------------------------------------------------------
// Profiling with perf.

/// `perf record -g` attached to the node processes, started with its
/// events off and switched on and off through its control FIFOs.
struct Perf {
    child: std::process::Child,
    ctl: std::fs::File,
    acks: std::sync::mpsc::Receiver<String>,
}

impl Perf {
    fn start(
        dir: &std::path::Path,
        name: &str,
        pids: &[u32],
        call_graph: &str,
    ) -> anyhow::Result<Self> {
        use std::io::BufRead;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ctl_path = dir.join(format!("{name}.ctl"));
        let ack_path = dir.join(format!("{name}.ack"));
        for p in [&ctl_path, &ack_path] {
            let _ = std::fs::remove_file(p);
            let made = std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .context("running mkfifo")?;
            if !made.success() {
                bail!("mkfifo {} failed", p.display());
            }
        }
        // Read-write opens of a FIFO do not wait for the other end.
        let open = |p: &std::path::Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))
        };
        let ctl = open(&ctl_path)?;
        let ack = open(&ack_path)?;
        let log_path = dir.join(format!("{name}.perf.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        let child = std::process::Command::new("perf")
            .args([
                "record",
                "--call-graph",
                call_graph,
                "-D",
                "-1",
                "--control",
            ])
            .arg(format!(
                "fifo:{},{}",
                ctl_path.display(),
                ack_path.display()
            ))
            .arg("-p")
            .arg(pids.join(","))
            .arg("-o")
            .arg(dir.join(format!("{name}.data")))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().context("perf log")?)
            .stderr(log)
            .spawn()
            .context("starting perf (is it installed?)")?;
        let (tx, acks) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(ack).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut perf = Self { child, ctl, acks };
        // Answered once perf is attached and listening.
        perf.command("disable")?;
        Ok(perf)
    }

    /// Sends a control command and waits for perf's ack.
    fn command(&mut self, cmd: &str) -> anyhow::Result<()> {
        writeln!(self.ctl, "{cmd}").context("writing to perf's control FIFO")?;
        match self.acks.recv_timeout(Duration::from_secs(10)) {
            Ok(_) => Ok(()),
            Err(_) => bail!("perf did not acknowledge `{cmd}` within 10 s"),
        }
    }

    /// Stops perf (SIGINT, as at the terminal) and waits for it to write.
    fn finish(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().context("waiting for perf")?;
        // perf ends by re-raising the SIGINT once its file is written.
        #[cfg(unix)]
        let interrupted = {
            use std::os::unix::process::ExitStatusExt;
            status.signal() == Some(2) || status.code() == Some(130)
        };
        #[cfg(not(unix))]
        let interrupted = false;
        if !status.success() && !interrupted {
            bail!("perf record exited with {status}");
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Running a job.

/// What the bench process saw of one job.
struct JobRun {
    /// The final event (`done`, `failed` or `rejected`); `None` when the
    /// node closed the connection before one.
    last: Option<JobEvent>,
    /// From writing the request to the `done` event (includes making the
    /// task inputs on the client node).
    submit_s: f64,
    /// From the `accepted` event (inputs made, job in the client's
    /// scheduler) to the `done` event: the job time.
    job_s: Option<f64>,
    /// CPU seconds each node ran from `accepted` to the result.
    cpu_s: Map<String, Value>,
    /// Minor page faults of each node over the same time.
    faults: Map<String, Value>,
}

/// The workload's WAT kernel from examples/kernels, compiled, in base64:
/// what `lppsp submit --wasm` sends.
fn wasm_module(w: Workload) -> anyhow::Result<String> {
    use base64::Engine as _;
    let text = match w {
        Workload::W1 => include_str!("../../examples/kernels/w1-sum-squares.wat"),
        Workload::W2 => include_str!("../../examples/kernels/w2-monte-carlo-pi.wat"),
        Workload::W3 => include_str!("../../examples/kernels/w3-byte-sum.wat"),
    };
    let binary = wat::parse_str(text).with_context(|| format!("{} WAT kernel", w.name()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(binary))
}

fn submit_request(
    w: Workload,
    kernel: &str,
    module: Option<&String>,
    sizes: &Sizes,
) -> SubmitRequest {
    // A hint for the pipeline depth before the first task has finished.
    let est_task_ms = match w {
        Workload::W1 => 1,
        Workload::W2 | Workload::W3 => 10,
    };
    SubmitRequest {
        kernel: if module.is_some() {
            String::new()
        } else {
            kernel.to_string()
        },
        module: module.cloned(),
        fuel: None,
        inputs: sizes.inputs(w),
        budget: None,
        arch: None,
        min_power: 0,
        max_attempts: 3,
        task_timeout_s: 300,
        est_task_ms,
        verify: 1,
        resume: None,
        max_price: None,
    }
}

/// CPU ns and minor page faults of every node.
fn cpu_snapshot(cluster: &Cluster) -> Vec<(Option<u64>, Option<u64>)> {
    cluster
        .nodes
        .iter()
        .map(|n| (n.cpu_ns(), n.page_faults().map(|f| f.0)))
        .collect()
}

fn run_job(
    rt: &tokio::runtime::Runtime,
    cluster: &Cluster,
    req: SubmitRequest,
    progress: Option<(&Progress, &str)>,
    mut perf: Option<&mut Perf>,
) -> anyhow::Result<JobRun> {
    let control_path = &cluster.client().control;
    let mut perf_error = None;
    let mut cpu_at_accept = Vec::new();
    let mut cpu_at_done = Vec::new();
    let mut last: Option<JobEvent> = None;
    let mut bad_event = None;
    let mut accepted: Option<Instant> = None;
    let mut done: Option<Instant> = None;
    let sent = Instant::now();
    rt.block_on(control::call_streaming(
        control_path,
        &Request::Submit(req),
        |v| {
            let event: JobEvent = match serde_json::from_value(v) {
                Ok(e) => e,
                Err(e) => {
                    bad_event.get_or_insert(e);
                    return;
                }
            };
            match &event {
                JobEvent::Accepted(a) => {
                    if let Some(p) = perf.as_deref_mut() {
                        perf_error = p.command("enable").err();
                    }
                    accepted = Some(Instant::now());
                    cpu_at_accept = cpu_snapshot(cluster);
                    if let Some((p, prefix)) = progress {
                        p.tasks(prefix, a.tasks);
                    }
                }
                JobEvent::Progress(e) => {
                    if let Some((p, _)) = progress {
                        p.bar.set_position(e.progress.done);
                    }
                }
                JobEvent::Done(_) => {
                    done = Some(Instant::now());
                    cpu_at_done = cpu_snapshot(cluster);
                }
                JobEvent::Rejected { .. } | JobEvent::Failed(_) => {}
            }
            if event.is_final() {
                if let Some(p) = perf.as_deref_mut() {
                    perf_error = perf_error.take().or(p.command("disable").err());
                }
            }
            last = Some(event);
        },
    ))
    .context("talking to the client node")?;
    if let Some(e) = bad_event {
        bail!("the client node sent a job event that does not parse: {e}");
    }
    if let Some(e) = perf_error {
        return Err(e);
    }
    let end = done.unwrap_or_else(Instant::now);
    let mut cpu_s = Map::new();
    let mut faults = Map::new();
    for (n, (a, d)) in cluster
        .nodes
        .iter()
        .zip(cpu_at_accept.iter().zip(&cpu_at_done))
    {
        let delta = |a: Option<u64>, d: Option<u64>| Some(d?.saturating_sub(a?));
        let cpu = delta(a.0, d.0).map_or(Value::Null, |ns| json!(round6(ns as f64 / 1e9)));
        let flt = delta(a.1, d.1).map_or(Value::Null, |f| json!(f));
        cpu_s.insert(n.name.clone(), cpu);
        faults.insert(n.name.clone(), flt);
    }
    Ok(JobRun {
        cpu_s,
        faults,
        last,
        submit_s: end.duration_since(sent).as_secs_f64(),
        job_s: accepted
            .filter(|_| done.is_some())
            .map(|a| end.duration_since(a).as_secs_f64()),
    })
}

/// What a workload run is checked against.
enum Expected {
    U64(u64),
    /// W2: hits of `samples` in all.
    Hits {
        hits: u64,
        samples: u64,
    },
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

fn summary_line(v: &Value) -> String {
    let mut s = format!(
        "{} run {}: {} {} (job {} s, start-up {} s)",
        v["workload"].as_str().unwrap_or("?"),
        v["run"],
        v["figure"],
        v["unit"].as_str().unwrap_or(""),
        v["job_s"],
        v["startup_s"],
    );
    if let Some(e) = v["efficiency"].as_f64() {
        s.push_str(&format!(", efficiency {e}"));
    }
    s.push_str(if v["correct"].as_bool() == Some(true) {
        ", result correct"
    } else {
        ", RESULT WRONG"
    });
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w1_reference_matches_benchmarks_md() {
        // The plain loop at full size gives the published value.
        let mut total = 0u64;
        for i in 0..W1_TASKS {
            total = total.wrapping_add(builtin::w1_value(i));
        }
        assert_eq!(total, W1_EXPECTED);
        assert_eq!(w1_expected(W1_TASKS), W1_EXPECTED);
        assert_eq!(
            w1_expected(7),
            (0..7).fold(0u64, |a, i| a.wrapping_add(builtin::w1_value(i)))
        );
    }

    #[test]
    fn w3_reference_matches_the_node_inputs() {
        for (count, size) in [(3u64, 1000u64), (2, 13), (4, 4096)] {
            let inputs = InputSpec::Random {
                count,
                size,
                seed: W3_SEED,
            }
            .materialize()
            .unwrap();
            let want = inputs
                .iter()
                .fold(0u64, |a, i| a.wrapping_add(builtin::byte_sum(i)));
            assert_eq!(w3_expected(count, size, W3_SEED), want, "{count}x{size}");
        }
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(from_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
