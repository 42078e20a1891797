//! Running one job through the client node's control socket, and what the
//! bench process measures of the nodes around it (CPU time, page faults,
//! memory).

use std::time::Instant;

use anyhow::{bail, Context};
use lppsp_runtime::client::SubmitRequest;
use lppsp_runtime::control::reply::JobEvent;
use lppsp_runtime::control::{self, Request};
use serde_json::{json, Map, Value};

use super::perf::Perf;
use super::progress::Progress;
use super::record::{round1, round6};
use crate::cmd::cluster::Cluster;

/// What the bench process saw of one job.
pub(super) struct JobRun {
    /// The final event (`done`, `failed` or `rejected`); `None` when the
    /// node closed the connection before one.
    pub(super) last: Option<JobEvent>,
    /// From writing the request to the `done` event (includes making the
    /// task inputs on the client node).
    pub(super) submit_s: f64,
    /// From the `accepted` event (inputs made, job in the client's
    /// scheduler) to the `done` event: the job time.
    pub(super) job_s: Option<f64>,
    /// CPU seconds each node ran from `accepted` to the result.
    pub(super) cpu_s: Map<String, Value>,
    /// Minor page faults of each node over the same time.
    pub(super) faults: Map<String, Value>,
}

/// CPU ns and minor page faults of every node.
fn cpu_snapshot(cluster: &Cluster) -> Vec<(Option<u64>, Option<u64>)> {
    cluster
        .nodes
        .iter()
        .map(|n| (n.cpu_ns(), n.page_faults().map(|f| f.0)))
        .collect()
}

pub(super) fn run_job(
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

/// Memory of every node from `/proc/<pid>/status`, MiB, keyed by node name.
pub(super) fn rss_of(cluster: &Cluster, field: &str) -> Map<String, Value> {
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
