//! Members running modified software, against real node processes. The
//! attacker (tests/common/rogue.rs) holds a real community certificate
//! and speaks raw frames over mutual TLS and signed UDP. For each attack:
//! it is refused and counted in `member_refusals`, the attacked node keeps
//! answering `lppsp status` within a second, an honest job beside it gives
//! the exact result, and the honest nodes' ledgers agree and add up to the
//! grants. docs/reliability.md ("Modified members") says what each attack
//! tried and what a liar can still gain.
//!
//! Each test holds the job open through the rogue itself: tasks placed on
//! the rogue stay unanswered until the test has made its attack, so no
//! verdict depends on how fast the machine is.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::rogue::{Rogue, RogueConn};
use common::*;
use lppsp_core::component::{CancelFlag, Executor, TaskLimits, TaskSpec};
use lppsp_core::money::Price;
use lppsp_core::wire::{Body, Frame, JobId, KernelName, Message};

/// Generous bound for the cluster to notice things; a wait, never a verdict.
const WAIT: Duration = Duration::from_secs(60);

fn units(v: &serde_json::Value) -> f64 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .parse()
        .unwrap()
}

/// `status` answers within a second (the node is not stalled).
fn answers_within_a_second(node: &NodeProc) -> serde_json::Value {
    let t = Instant::now();
    let st = node.try_status();
    let took = t.elapsed();
    let st = st.unwrap_or_else(|| panic!("{} did not answer status", node.name));
    assert!(
        took < Duration::from_secs(1),
        "{} took {took:?} to answer status",
        node.name
    );
    st
}

fn refusals(node: &NodeProc, reason: &str) -> u64 {
    node.status()["member_refusals"][reason]
        .as_u64()
        .unwrap_or(0)
}

/// Every balance in `node`'s ledger, by node id, in units.
fn balances(node: &NodeProc) -> BTreeMap<String, f64> {
    ledger_balances(node)
        .into_iter()
        .map(|(id, b)| (id, b.parse().expect("a balance in units")))
        .collect()
}

/// The honest nodes hold the same receipts, and the balances they give
/// add up to one grant per node in the ledger.
fn ledgers_agree(honest: &[&NodeProc]) -> BTreeMap<String, f64> {
    let agreed = wait_for(WAIT, || {
        let st: Vec<serde_json::Value> = honest.iter().map(|p| p.status()).collect();
        let n = st[0]["ledger"]["receipts"].as_u64().unwrap_or(0);
        n >= 1
            && st.iter().all(|s| {
                s["ledger"]["receipts"].as_u64() == Some(n) && s["balance"]["unsettled"] == "0"
            })
    });
    assert!(agreed.is_some(), "the honest ledgers did not converge");
    let first = balances(honest[0]);
    for p in &honest[1..] {
        assert_eq!(
            balances(p),
            first,
            "{} and {} disagree",
            p.name,
            honest[0].name
        );
    }
    let grant = units(&honest[0].status()["balance"]["grant"]);
    let total: f64 = first.values().sum();
    assert!(
        (total - grant * first.len() as f64).abs() < 1e-6,
        "balances {first:?} do not add up to {} grants of {grant}",
        first.len()
    );
    first
}

/// Starts `lppsp submit --json ARGS` on `client`; its events come on stdout.
fn submit(client: &NodeProc, args: &[String]) -> Child {
    let control = client.ports.control_addr().to_string();
    submit_command(&control)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a submit to end; its success and last event.
fn finish(mut child: Child) -> (bool, serde_json::Value) {
    let stdout = child.stdout.take().unwrap();
    let mut last = serde_json::Value::Null;
    for line in BufReader::new(stdout).lines() {
        if let Ok(ev) = serde_json::from_str(&line.unwrap()) {
            last = ev;
        }
    }
    (child.wait().unwrap().success(), last)
}

/// A task the client placed on the rogue.
struct Placed {
    job: JobId,
    task: u64,
    kernel: KernelName,
    input: Bytes,
}

/// Waits for the client to connect to the rogue and place at least `want`
/// tasks there; accepts each (and never answers them by itself).
fn take_tasks(rogue: &Rogue, want: usize) -> (RogueConn, Vec<Placed>) {
    let mut conn = rogue
        .accept(WAIT)
        .expect("the client never connected to the rogue");
    let start = Instant::now();
    let mut placed = Vec::new();
    while placed.len() < want {
        assert!(start.elapsed() < WAIT, "no tasks came to the rogue");
        let Some(frame) = rogue.recv(&mut conn, Duration::from_millis(300)) else {
            continue;
        };
        if let Some(p) = accept_task(rogue, &mut conn, frame) {
            placed.push(p);
        }
    }
    (conn, placed)
}

/// Accepts a Task frame as any node would; other frames are ignored.
fn accept_task(rogue: &Rogue, conn: &mut RogueConn, frame: Frame) -> Option<Placed> {
    let Message::Task { job, task, kernel } = frame.message else {
        return None;
    };
    rogue.send(
        conn,
        &[Frame::new(frame.price, Message::Accept { job, task })],
    );
    Some(Placed {
        job,
        task,
        kernel,
        input: frame.body.map(|b| b.to_bytes()).unwrap_or_default(),
    })
}

/// A client (round-robin, so tasks go to every compute node in turn) and
/// one honest compute node, with `rogue` announced as a compute node that
/// promises `power` MFLOPS and listed in the client's book.
fn cluster_with_rogue_compute(
    community: &Community,
    rogue_name: &str,
    power: u64,
) -> (Vec<NodeProc>, Rogue, common::rogue_beacon::KeepAlive) {
    let procs = start_cluster_with(community, &client_and_computes(1), |i, _| {
        if i == 0 {
            "\n[scheduler]\nkind = \"round-robin\"\n".to_string()
        } else {
            String::new()
        }
    });
    let rogue = Rogue::new(community, rogue_name, &[procs[0].ports.beacon]);
    let announcing = rogue.keep_announcing_compute(power, 1);
    procs[0]
        .wait_for_compute_peers(2, WAIT)
        .expect("the client lists the rogue as a compute node");
    (procs, rogue, announcing)
}

/// The correct output of a placed task, as an honest node computes it.
fn correct_output(p: &Placed) -> Vec<u8> {
    let exec = lppsp_executor_builtin::BuiltinExecutor::new();
    let spec = TaskSpec {
        job: p.job,
        task: p.task,
        kernel: &p.kernel,
        input: &p.input,
    };
    exec.run(&spec, &TaskLimits::default(), &CancelFlag::new())
        .expect("the builtin kernel runs")
        .result
}

fn result_frame(p: &Placed, price: Price, micros: &str, power: &str) -> Frame {
    Frame::new(
        price,
        Message::Result {
            job: p.job,
            task: p.task,
            ok: true,
        },
    )
    .with_header("Elapsed-Us", micros)
    .with_header("Power", power)
    .with_body(Body::from_bytes(Bytes::from(correct_output(p))))
}

fn w1_args(tasks: u64, budget: &str) -> Vec<String> {
    [
        "--kernel",
        "w1-sum-squares",
        "--range",
        &format!("0..{tasks}"),
        "--budget",
        budget,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A W1 job of `tasks` tasks succeeded with the exact result.
fn assert_exact_w1(ok: bool, last: &serde_json::Value, tasks: u64) {
    assert!(ok, "{last}");
    let want = w1_sum(tasks).to_string();
    assert!(
        last["result"].as_str().unwrap_or_default().contains(&want),
        "{last}"
    );
}

/// An honest W1 job of `tasks` tasks on `client` gives the exact result.
fn honest_w1_job(client: &NodeProc, tasks: u64) {
    let (ok, last) = finish(submit(client, &w1_args(tasks, "1000")));
    assert_exact_w1(ok, &last, tasks);
}

/// W1's exact result over tasks 0..n.
fn w1_sum(n: u64) -> u64 {
    (0..n)
        .map(lppsp_executor_builtin::w1_value)
        .fold(0u64, u64::wrapping_add)
}

#[test]
fn a_member_claiming_any_run_time_power_and_price_is_paid_only_what_the_client_saw() {
    let community = Community::new();
    const PROMISED: u64 = 100;
    const TASKS: u64 = 40;
    let (procs, rogue, _announcing) = cluster_with_rogue_compute(&community, "liar", PROMISED);
    let (client, honest) = (&procs[0], &procs[1]);

    let started = Instant::now();
    let job = submit(client, &w1_args(TASKS, "1000"));
    let (mut conn, placed) = take_tasks(&rogue, 2);
    // The attack: correct results, a run time of 11.5 days, a billion
    // MFLOPS and a price of 1000 in every frame.
    let price = Price::from_units(1000).unwrap();
    let forge = |p: &Placed| result_frame(p, price, "1000000000000", "1000000000");
    let forged: Vec<Frame> = placed.iter().map(forge).collect();
    rogue.send(&mut conn, &forged);
    // Tasks placed later are answered the same way until the job ends.
    loop {
        if let Some(frame) = rogue.recv(&mut conn, Duration::from_millis(200)) {
            if let Some(p) = accept_task(&rogue, &mut conn, frame) {
                rogue.send(&mut conn, &[forge(&p)]);
            }
            continue;
        }
        if client.status()["jobs"]["active"] == 0 {
            break;
        }
    }
    let (ok, last) = finish(job);
    let wall = started.elapsed();
    assert_exact_w1(ok, &last, TASKS);
    let st = answers_within_a_second(client);
    answers_within_a_second(honest);
    assert!(
        refusals(client, "claimed_time_over_observed") >= 1,
        "{}",
        st["member_refusals"]
    );
    assert!(
        refusals(client, "claimed_power_over_promise") >= 1,
        "{}",
        st["member_refusals"]
    );

    let balances = ledgers_agree(&[client, honest]);
    let grant = units(&st["balance"]["grant"]);
    let liar_earned = balances
        .get(&rogue.id.to_string())
        .copied()
        .unwrap_or(grant)
        - grant;
    let client_spent = grant - balances[&client.id()];
    assert!(
        client_spent <= 1000.0,
        "the job's budget was 1000; it spent {client_spent}"
    );
    // At most the promised power for the time the client saw, at price 1.
    let bound = PROMISED as f64 * wall.as_secs_f64();
    assert!(
        liar_earned <= bound,
        "the liar earned {liar_earned} for {} tasks; {PROMISED} MFLOPS x {wall:?} allows {bound}",
        placed.len()
    );
}

#[test]
fn a_result_for_a_task_never_placed_on_a_member_is_refused() {
    let community = Community::new();
    const TASKS: u64 = 30;
    let (procs, rogue, _announcing) = cluster_with_rogue_compute(&community, "claimant", 100);
    let (client, honest) = (&procs[0], &procs[1]);

    let job = submit(client, &w1_args(TASKS, "1000"));
    // The rogue holds the tasks placed on it: the job cannot end before
    // the test answers them.
    let (mut conn, placed) = take_tasks(&rogue, 1);
    let mine: BTreeSet<u64> = placed.iter().map(|p| p.task).collect();
    let p0 = &placed[0];
    // Claims for every other task of the job, and for one past its end.
    let claims: Vec<Frame> = (0..=TASKS)
        .filter(|t| !mine.contains(t))
        .map(|task| {
            let p = Placed {
                job: p0.job,
                task,
                kernel: p0.kernel.clone(),
                input: Bytes::from(lppsp_executor_builtin::w1_input(task)),
            };
            result_frame(&p, Price::from_units(1).unwrap(), "1000", "100")
        })
        .collect();
    rogue.send(&mut conn, &claims);
    let refused = wait_for(WAIT, || {
        refusals(client, "result_not_placed_there") + refusals(client, "result_for_unknown_task")
            >= 1
    });
    assert!(refused.is_some(), "{}", client.status()["member_refusals"]);
    answers_within_a_second(client);
    // Now the rogue answers its own tasks honestly, and those placed on it
    // later, until the job ends.
    let honest_answer = |p: &Placed| result_frame(p, Price::from_units(1).unwrap(), "1000", "100");
    let answers: Vec<Frame> = placed.iter().map(honest_answer).collect();
    rogue.send(&mut conn, &answers);
    let mut given = mine;
    loop {
        if let Some(frame) = rogue.recv(&mut conn, Duration::from_millis(200)) {
            if let Some(p) = accept_task(&rogue, &mut conn, frame) {
                given.insert(p.task);
                rogue.send(&mut conn, &[honest_answer(&p)]);
            }
            continue;
        }
        if client.status()["jobs"]["active"] == 0 {
            break;
        }
    }
    let (ok, last) = finish(job);
    assert_exact_w1(ok, &last, TASKS);
    let by_node = &last["nodes"];
    let rogue_done = by_node[rogue.id.to_string()]["tasks_done"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        rogue_done <= given.len() as u64,
        "only tasks placed on it count: {rogue_done} done, {} placed; {by_node}",
        given.len()
    );
    ledgers_agree(&[client, honest]);
}

#[test]
fn an_integrate_for_every_task_there_could_be_does_not_stall_the_node() {
    let community = Community::new();
    let procs = start_cluster(&community, &client_and_computes(1));
    let (client, victim) = (&procs[0], &procs[1]);
    let rogue = Rogue::new(&community, "staller", &[victim.ports.beacon]);
    rogue.announce_client(lppsp_core::money::Bounty::ZERO);
    let mut conn = rogue.connect(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        victim.ports.tls,
    )));
    let job = JobId(77);
    // One result held for the rogue itself, then: integrate 2^64 - 1 tasks.
    let held = Frame::new(
        Price::from_units(1).unwrap(),
        Message::Result {
            job,
            task: 0,
            ok: true,
        },
    )
    .with_header("Client", rogue.id.to_string())
    .with_header("Elapsed-Us", "1")
    .with_header("Power", "1")
    .with_body(Body::from_bytes(Bytes::from_static(&[0; 8])));
    let integrate = Frame::new(
        Price::from_units(1).unwrap(),
        Message::Integrate {
            job,
            tasks: u64::MAX,
            kernel: KernelName::new("w1-sum-squares").unwrap(),
        },
    );
    rogue.send(&mut conn, &[held, integrate]);
    // The node answers the rogue (a failure) instead of counting forever.
    let answer = (0..50).find_map(|_| {
        let f = rogue.recv(&mut conn, Duration::from_millis(500))?;
        matches!(f.message, Message::Integrated { ok: false, .. }).then_some(f)
    });
    assert!(answer.is_some(), "no Integrated answer came back");
    answers_within_a_second(victim);
    assert!(refusals(victim, "integrate_incomplete") >= 1);
    // Honest work beside it.
    honest_w1_job(client, 50);
    ledgers_agree(&[client, victim]);
}

#[test]
fn a_member_flooding_a_node_with_tasks_gets_only_its_share() {
    let community = Community::new();
    // The victim runs two tasks at once and gives each client one of them.
    let procs = start_cluster_with(&community, &client_and_computes(1), |i, _| {
        if i == 1 {
            "[share]\nslots = 2\nmax_tasks_per_client = 1\n".to_string()
        } else {
            String::new()
        }
    });
    let (client, victim) = (&procs[0], &procs[1]);
    let rogue = Rogue::new(&community, "flooder", &[victim.ports.beacon]);
    let grant = lppsp_core::money::Bounty::from_units(1_000_000).unwrap();
    rogue.announce_client(grant);
    wait_for(WAIT, || {
        victim.status()["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == rogue.id.to_string()))
    })
    .expect("the victim lists the flooder");
    let mut conn = rogue.connect(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        victim.ports.tls,
    )));
    // A first task that runs for minutes holds the flooder's one place;
    // then a thousand more, answers never read.
    const FLOOD: u64 = 1000;
    let kernel = KernelName::new("w2-monte-carlo-pi").unwrap();
    let task = |t: u64, samples: u64| {
        Frame::new(
            Price::from_units(1).unwrap(),
            Message::Task {
                job: JobId(5),
                task: t,
                kernel: kernel.clone(),
            },
        )
        .with_body(Body::from_bytes(Bytes::from(
            lppsp_executor_builtin::w2_input(t, samples),
        )))
    };
    rogue.send(&mut conn, &[task(0, 1 << 40)]);
    let flood: Vec<Frame> = (1..=FLOOD).map(|t| task(t, 1000)).collect();
    rogue.send(&mut conn, &flood);
    let refused = wait_for(WAIT, || refusals(victim, "client_task_quota") >= FLOOD);
    assert!(refused.is_some(), "{}", victim.status()["member_refusals"]);
    let st = answers_within_a_second(victim);
    assert!(
        st["compute"]["load"].as_u64().unwrap() <= 2,
        "{}",
        st["compute"]
    );
    // The honest client gets the other slot while the flooder holds its own.
    honest_w1_job(client, 50);
    drop(conn);
    ledgers_agree(&[client, victim]);
}
