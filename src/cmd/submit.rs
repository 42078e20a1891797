//! `lppsp submit`: send a job to the local node, follow it, print the result.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lppsp_core::money::{Bounty, Price};
use lppsp_runtime::client::{InputSpec, SubmitRequest};
use lppsp_runtime::control::reply::{JobEvent, JobFailCode};
use lppsp_runtime::control::{self, Request};

/// Exit code when the budget ran out (DESIGN 4.7).
pub const EXIT_INSUFFICIENT_BOUNTY: u8 = 3;
/// Exit code when a task kept failing.
pub const EXIT_TASK_FAILED: u8 = 4;
/// Exit code when the node refused the job as submitted.
pub const EXIT_REJECTED: u8 = 5;

#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub control: super::ControlArgs,
    /// Kernel to run (`lppsp kernels` lists the built-in ones).
    #[arg(long, required_unless_present_any = ["wasm", "resume"], conflicts_with = "wasm")]
    pub kernel: Option<String>,
    /// Run your own kernel: a WASM module (`.wasm`, or `.wat` text compiled
    /// here), for wasm32-wasip1 with the ABI of docs/wasm.md. It is sent
    /// once to each node that runs the job's tasks.
    #[arg(long, value_name = "FILE")]
    pub wasm: Option<PathBuf>,
    /// With --wasm: fuel (metered WASM instructions) each task may burn.
    #[arg(long, requires = "wasm")]
    pub fuel: Option<u64>,
    /// Run each task on K different nodes and accept a result only when
    /// K of them return the same bytes; a node that disagrees is excluded
    /// from the job (docs/reliability.md).
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub verify: u32,
    /// Finish an unfinished job of the node (one `lppsp status` lists as
    /// unfinished: the node was stopped or killed while it ran); results
    /// the node kept are used, and only the other tasks run again.
    #[arg(long, value_name = "JOB", conflicts_with_all = ["kernel", "wasm"])]
    pub resume: Option<String>,
    /// Tasks START..END: task i gets i (u64 LE) as input.
    #[arg(long, value_name = "START..END", conflicts_with_all = ["spans", "files", "random", "input"])]
    pub range: Option<String>,
    /// With --range: u64 values appended to every task's input (e.g. the
    /// sample count of w2-monte-carlo-pi).
    #[arg(long, value_name = "U64")]
    pub extra: Vec<u64>,
    /// Tasks covering START..END in spans of STEP: each gets lo and hi.
    #[arg(long, value_name = "START..END/STEP", conflicts_with_all = ["files", "random", "input"])]
    pub spans: Option<String>,
    /// One task per file, the file's bytes as input.
    #[arg(long, num_args = 1.., conflicts_with_all = ["random", "input"])]
    pub files: Vec<PathBuf>,
    /// COUNT tasks of SIZE pseudo-random bytes each.
    #[arg(long, value_name = "COUNTxSIZE", conflicts_with = "input")]
    pub random: Option<String>,
    /// One task per --input, the text's bytes as input (repeat it).
    #[arg(long, value_name = "TEXT")]
    pub input: Vec<String>,
    /// Most bounty the job may spend (default: all the node has).
    #[arg(long)]
    pub budget: Option<Bounty>,
    /// The most the job pays per unit of price: while the market price is
    /// above it, its tasks wait (`waiting: price 1.2 > max 1.0`) and
    /// count as no demand; they are placed once the price is at or below
    /// it. Default: any price.
    #[arg(long, value_name = "PRICE")]
    pub max_price: Option<Price>,
    /// Run only on this architecture.
    #[arg(long)]
    pub arch: Option<String>,
    /// Run only on nodes of at least this many MFLOPS.
    #[arg(long, default_value_t = 0)]
    pub min_power: u64,
    /// Placements a task may fail before the job fails.
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
    /// Seconds a task may run before it is placed elsewhere.
    #[arg(long, default_value_t = 600)]
    pub task_timeout: u64,
    /// Print JSON lines (every event) instead of a progress bar and summary.
    #[arg(long)]
    pub json: bool,
}

fn parse_range(s: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = s.split_once("..").context("expected START..END")?;
    Ok((
        a.trim().parse().context("START")?,
        b.trim().parse().context("END")?,
    ))
}

impl SubmitArgs {
    pub fn request(&self) -> anyhow::Result<SubmitRequest> {
        let inputs = if self.resume.is_some() {
            // The node runs the job as its journal recorded it.
            InputSpec::Inline { inputs: Vec::new() }
        } else if let Some(r) = &self.range {
            let (start, end) = parse_range(r).with_context(|| format!("--range {r}"))?;
            InputSpec::Range {
                start,
                end,
                extra: self.extra.clone(),
            }
        } else if let Some(s) = &self.spans {
            let (range, step) = s
                .split_once('/')
                .with_context(|| format!("--spans {s}: expected START..END/STEP"))?;
            let (start, end) = parse_range(range).with_context(|| format!("--spans {s}"))?;
            InputSpec::Spans {
                start,
                end,
                step: step.parse().with_context(|| format!("--spans {s}: STEP"))?,
            }
        } else if !self.files.is_empty() {
            let paths = self
                .files
                .iter()
                .map(|p| std::path::absolute(p).with_context(|| format!("{}", p.display())))
                .collect::<anyhow::Result<_>>()?;
            InputSpec::Files { paths }
        } else if let Some(r) = &self.random {
            let (count, size) = r
                .split_once('x')
                .with_context(|| format!("--random {r}: expected COUNTxSIZE"))?;
            InputSpec::Random {
                count: count.parse()?,
                size: size.parse()?,
                seed: 1,
            }
        } else if !self.input.is_empty() {
            InputSpec::Inline {
                inputs: self.input.clone(),
            }
        } else {
            bail!("give the task inputs: --range, --spans, --files, --random or --input");
        };
        let module = self.wasm.as_deref().map(read_module).transpose()?;
        Ok(SubmitRequest {
            kernel: self.kernel.clone().unwrap_or_default(),
            inputs,
            module,
            fuel: self.fuel,
            budget: self.budget,
            arch: self.arch.clone(),
            min_power: self.min_power,
            max_attempts: self.attempts,
            task_timeout_s: self.task_timeout,
            est_task_ms: 10,
            verify: self.verify,
            resume: self.resume.clone(),
            max_price: self.max_price,
        })
    }
}

/// Reads a module for a submit request: WAT text is compiled to binary
/// here, so the content address is that of the binary every node runs.
pub fn read_module(path: &std::path::Path) -> anyhow::Result<String> {
    use base64::Engine as _;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let binary = wat::parse_bytes(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .into_owned();
    Ok(base64::engine::general_purpose::STANDARD.encode(binary))
}

/// Submits `req` and follows it; returns the final event (`None` when the
/// node closed the connection before sending one).
pub fn follow(
    control: &std::path::Path,
    req: SubmitRequest,
    json: bool,
) -> anyhow::Result<Option<JobEvent>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let show_bar = !json && std::io::stderr().is_terminal();
    let bar = ProgressBar::hidden();
    if show_bar {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tasks  {per_sec}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    }
    let mut last = None;
    let mut refused = None;
    rt.block_on(control::call_streaming(
        control,
        &Request::Submit(req),
        |v| {
            if let Some(err) = super::refusal(&v) {
                refused = Some(err);
                return;
            }
            if json {
                println!("{v}");
            }
            let event: JobEvent = match serde_json::from_value(v) {
                Ok(e) => e,
                Err(e) => {
                    refused
                        .get_or_insert(anyhow::anyhow!("the node's job event does not parse: {e}"));
                    return;
                }
            };
            match &event {
                JobEvent::Accepted(a) => bar.set_length(a.tasks),
                JobEvent::Progress(p) => {
                    bar.set_position(p.progress.done);
                    let mut msg = format!("spent {}", p.progress.spent);
                    if let (Some(why), 0) = (p.waiting.first(), p.progress.in_flight) {
                        msg = format!("waiting: {why}");
                    }
                    bar.set_message(msg);
                }
                _ => {}
            }
            last = Some(event);
        },
    ))
    .context("talking to the node")?;
    bar.finish_and_clear();
    match refused {
        Some(err) => Err(err),
        None => Ok(last),
    }
}

/// Prints the final event for people; returns the exit code.
pub fn summarize(last: Option<&JobEvent>) -> ExitCode {
    match last {
        Some(JobEvent::Done(done)) => {
            let p = &done.progress;
            println!("job {} done in {:.2} s", done.job, done.elapsed_s);
            println!("result: {}", done.result);
            println!(
                "tasks: {} (retried {}, duplicates ignored {}); spent {} of {}",
                p.total, p.retries, p.duplicates, p.spent, p.budget
            );
            for (id, t) in &done.nodes {
                println!("  node {id}: {} tasks, charged {}", t.tasks_done, t.charged);
            }
            ExitCode::SUCCESS
        }
        Some(JobEvent::Failed(failed)) => {
            eprintln!("job failed: {}", failed.error);
            summarize_code(last)
        }
        Some(JobEvent::Rejected { error }) => {
            eprintln!("job rejected: {error}");
            summarize_code(last)
        }
        _ => {
            eprintln!("the node closed the connection before the job ended");
            summarize_code(last)
        }
    }
}

pub fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let req = args.request()?;
    let last = follow(&args.control.socket()?, req, args.json)?;
    if args.json {
        // The events are printed; the exit code still tells the outcome.
        let code = summarize_code(last.as_ref());
        return Ok(code);
    }
    Ok(summarize(last.as_ref()))
}

fn summarize_code(last: Option<&JobEvent>) -> ExitCode {
    match last {
        Some(JobEvent::Done(_)) => ExitCode::SUCCESS,
        Some(JobEvent::Failed(f)) => match f.code {
            JobFailCode::InsufficientBounty => ExitCode::from(EXIT_INSUFFICIENT_BOUNTY),
            JobFailCode::TaskFailed => ExitCode::from(EXIT_TASK_FAILED),
            JobFailCode::Cancelled | JobFailCode::ReduceFailed => ExitCode::FAILURE,
        },
        Some(JobEvent::Rejected { .. }) => ExitCode::from(EXIT_REJECTED),
        _ => ExitCode::FAILURE,
    }
}
