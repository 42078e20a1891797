//! The adapters driven in-process (the plugin types are wrapped exactly as
//! the export macros wrap them, without a library in between), and the
//! load errors that need no built plugin. Loading real libraries is tested
//! end to end in the root package's tests/plugins.rs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use abi_stable::sabi_types::VersionNumber;
use lppsp_core::component::{
    Balancer as _, CancelFlag, Constraints, Executor as _, MarketSample, PeerView, PendingTask,
    PlacementRequest, Scheduler as _, TaskError, TaskLimits, TaskSpec,
};
use lppsp_core::money::{Bounty, Price};
use lppsp_core::wire::{Arch, Endpoint, JobId, KernelName};
use lppsp_core::NodeId;
use lppsp_plugin_abi as abi;

use super::*;

fn origin(name: &str) -> Origin {
    Origin {
        name: name.into(),
        path: "/plugins/libtest.so".into(),
    }
}

/// Places every pending task on the first peer; panics on every other call.
struct Flaky {
    calls: u32,
}

impl abi::Scheduler for Flaky {
    fn new(_: &str) -> Result<Self, String> {
        Ok(Self { calls: 0 })
    }
    fn place(&mut self, request: &abi::PlacementRequest<'_>) -> abi::Plan {
        self.calls += 1;
        if self.calls % 2 == 1 {
            panic!("odd call {}", self.calls);
        }
        let peer = &request.peers[0];
        abi::Plan {
            placements: request
                .pending
                .iter()
                .map(|t| abi::Placement {
                    task: t.task,
                    node: peer.id,
                    result_to: request.client,
                    est_cost_micros: request.task_cost(peer),
                })
                .collect(),
            unplaced: Default::default(),
        }
    }
}

fn peer(b: u8) -> PeerView {
    PeerView {
        id: NodeId::from_bytes([b; 8]),
        addr: Endpoint("127.0.0.1:47101".parse().unwrap()),
        power: 100,
        arch: Arch::new("x86_64").unwrap(),
        compute: true,
        compatible: true,
        free_slots: 4,
        queue: 0,
        avg_task_micros: None,
    }
}

#[test]
fn a_panicking_scheduler_call_gives_an_empty_plan_and_the_next_call_works() {
    let mut s = PluginScheduler::new(abi::ffi::scheduler_box(Flaky { calls: 0 }), origin("flaky"));
    assert_eq!(s.name(), "flaky");
    let peers = [peer(1)];
    let pending = [PendingTask {
        task: 3,
        attempts: 0,
        avoid: vec![],
    }];
    let constraints = Constraints::default();
    let request = PlacementRequest {
        client: NodeId::from_bytes([9; 8]),
        peers: &peers,
        price: Price::from_micros(1_000_000),
        budget_left: Bounty::from_micros(u64::MAX),
        est_task_micros: 2_000_000,
        pending: &pending,
        constraints: &constraints,
    };
    assert_eq!(s.place(&request), Default::default());
    let plan = s.place(&request);
    assert_eq!(plan.placements.len(), 1);
    assert_eq!(plan.placements[0].node, peers[0].id);
    assert_eq!(
        plan.placements[0].est_cost,
        Bounty::from_micros(200_000_000)
    );
    assert_eq!(s.place(&request), Default::default());
}

struct Twitchy;

impl abi::Balancer for Twitchy {
    fn new(_: &str) -> Result<Self, String> {
        Ok(Self)
    }
    fn on_sample(&mut self, sample: &abi::MarketSample) -> Option<abi::PriceProposal> {
        if sample.pressure_milli == 666 {
            panic!("the number of the beast");
        }
        Some(abi::PriceProposal {
            price_micros: sample.price_micros + 1,
            evidence: "up".into(),
        })
    }
    fn on_commit(&mut self, _: u64) {
        panic!("commit");
    }
    fn describe(&self) -> String {
        panic!("describe");
    }
}

#[test]
fn a_panicking_balancer_call_proposes_nothing() {
    let mut b = PluginBalancer::new(abi::ffi::balancer_box(Twitchy), origin("twitchy"));
    let mut sample = MarketSample {
        at_ms: 1,
        price: Price::from_micros(5),
        pressure_milli: 0,
        demand_tasks: 0,
        supply_mflops: 0,
        nodes: 1,
    };
    let p = b.on_sample(&sample).unwrap();
    assert_eq!(p.price, Price::from_micros(6));
    assert_eq!(p.evidence, "up");
    sample.pressure_milli = 666;
    assert_eq!(b.on_sample(&sample), None);
    b.on_commit(Price::from_micros(7));
    assert_eq!(b.describe(), "twitchy (describe failed)");
}

/// Echoes its input; counts cancel checks; panics on input "boom".
struct Echo {
    checks: Arc<AtomicU32>,
}

impl abi::Executor for Echo {
    fn new(_: &str) -> Result<Self, String> {
        Ok(Self {
            checks: Arc::default(),
        })
    }
    fn has_kernel(&self, kernel: &str) -> bool {
        kernel == "echo"
    }
    fn run(
        &self,
        spec: &abi::TaskSpec<'_>,
        limits: &abi::TaskLimits,
        cancel: &abi::Cancel<'_>,
    ) -> Result<abi::TaskOutput, abi::TaskError> {
        self.checks.fetch_add(1, Ordering::Relaxed);
        if cancel.is_cancelled() {
            return Err(abi::TaskError::Cancelled);
        }
        if spec.input.as_slice() == b"boom" {
            panic!("boom");
        }
        if spec.input.is_empty() {
            return Err(abi::TaskError::Timeout {
                wall_micros: limits.wall_micros,
            });
        }
        Ok(abi::TaskOutput {
            result: spec.input.to_vec().into(),
            fuel: abi::std_types::ROption::RSome(spec.task),
        })
    }
    fn reduce(&self, _: &str, results: &[&[u8]]) -> Result<Vec<u8>, abi::TaskError> {
        if results.is_empty() {
            panic!("nothing to reduce");
        }
        Ok(results.concat())
    }
}

#[test]
fn executor_calls_cross_and_panics_fail_the_task() {
    let checks = Arc::new(AtomicU32::new(0));
    let e = PluginExecutor::new(
        abi::ffi::executor_box(Echo {
            checks: checks.clone(),
        }),
        origin("echo"),
    );
    let echo = KernelName::new("echo").unwrap();
    assert!(e.has_kernel(&echo));
    assert!(!e.has_kernel(&KernelName::new("other").unwrap()));
    let limits = TaskLimits {
        wall: Duration::from_millis(3),
        ..Default::default()
    };
    let cancel = CancelFlag::new();
    let spec = |input: &'static [u8]| TaskSpec {
        job: JobId(1),
        task: 7,
        kernel: &echo,
        input,
    };
    let out = e.run(&spec(b"hi"), &limits, &cancel).unwrap();
    assert_eq!(out.result, b"hi");
    assert_eq!(out.fuel, Some(7));
    assert_eq!(
        e.run(&spec(b""), &limits, &cancel),
        Err(TaskError::Timeout(Duration::from_millis(3)))
    );
    match e.run(&spec(b"boom"), &limits, &cancel) {
        Err(TaskError::Failed(m)) => assert_eq!(m, "panicked in run: boom"),
        other => panic!("{other:?}"),
    }
    cancel.cancel();
    assert_eq!(
        e.run(&spec(b"hi"), &limits, &cancel),
        Err(TaskError::Cancelled)
    );
    assert_eq!(checks.load(Ordering::Relaxed), 4);
    assert_eq!(e.reduce(&echo, &[b"a", b"b"]).unwrap(), b"ab");
    assert!(
        matches!(e.reduce(&echo, &[]), Err(TaskError::Failed(m)) if m.contains("nothing to reduce"))
    );
    assert_eq!(e.render(&echo, b"text"), "text");
}

#[test]
fn a_missing_file_is_named() {
    let e = load(Path::new("/nonexistent/libnope.so")).unwrap_err();
    assert!(matches!(e, PluginError::NotFound { .. }));
    assert_eq!(e.to_string(), "/nonexistent/libnope.so: no such file");
}

#[test]
fn a_file_that_is_not_a_library_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libfake.so");
    std::fs::write(&path, "this is text, not ELF\n".repeat(100)).unwrap();
    let e = load(&path).unwrap_err();
    assert!(matches!(e, PluginError::NotALibrary { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}: not a loadable library: ", path.display())),
        "{text}"
    );
    let e = load(dir.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: not a loadable library: it is a directory",
            dir.path().display()
        )
    );
}

#[test]
fn version_and_layout_errors_read_well() {
    let path = Path::new("/p/libx.so");
    let e = classify(
        path,
        path,
        LibraryError::IncompatibleVersionNumber {
            library_name: "lppsp-plugin-abi",
            expected_version: VersionNumber {
                major: 0,
                minor: 2,
                patch: 0,
            },
            actual_version: VersionNumber {
                major: 0,
                minor: 1,
                patch: 3,
            },
        },
    );
    assert_eq!(
        e.to_string(),
        "/p/libx.so: version mismatch: built against lppsp-plugin-abi 0.1.3, this node has 0.2.0; \
         rebuild it against lppsp-plugin-abi 0.2.0"
    );
    assert_eq!(summary("a\n  b\tc"), "a b c");
    assert!(summary(&"x ".repeat(1000)).ends_with(" ..."));
}
