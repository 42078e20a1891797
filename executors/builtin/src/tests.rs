use std::time::Duration;

use lppsp_core::component::{CancelFlag, Executor, TaskError, TaskLimits, TaskOutput, TaskSpec};
use lppsp_core::wire::{JobId, KernelName};

use super::*;

fn k(name: &str) -> KernelName {
    KernelName::new(name).unwrap()
}

fn run_with(
    kernel: &str,
    input: &[u8],
    limits: &TaskLimits,
    cancel: &CancelFlag,
) -> Result<TaskOutput, TaskError> {
    let name = k(kernel);
    let spec = TaskSpec {
        job: JobId(1),
        task: 0,
        kernel: &name,
        input,
    };
    BuiltinExecutor::new().run(&spec, limits, cancel)
}

fn run(kernel: &str, input: &[u8]) -> Result<Vec<u8>, TaskError> {
    run_with(kernel, input, &TaskLimits::default(), &CancelFlag::new()).map(|o| {
        assert_eq!(o.fuel, None);
        o.result
    })
}

fn reduce(kernel: &str, results: &[Vec<u8>]) -> Result<Vec<u8>, TaskError> {
    let refs: Vec<&[u8]> = results.iter().map(Vec::as_slice).collect();
    BuiltinExecutor::new().reduce(&k(kernel), &refs)
}

fn render(kernel: &str, result: &[u8]) -> String {
    BuiltinExecutor::new().render(&k(kernel), result)
}

fn naive_byte_sum(data: &[u8]) -> u64 {
    data.iter().fold(0u64, |s, &b| s.wrapping_add(u64::from(b)))
}

#[test]
fn table_and_names_agree() {
    let ex = BuiltinExecutor::new();
    assert_eq!(ex.name(), "builtin");
    assert_eq!(KERNELS.len(), 5);
    for info in KERNELS {
        assert!(ex.has_kernel(&k(info.name)), "{}", info.name);
        assert_eq!(kernel_info(info.name), Some(info));
        assert!(!info.summary.is_empty() && !info.summary.contains('\n'));
    }
    assert!(!ex.has_kernel(&k("w4-nothing")));
    assert!(kernel_info("w4-nothing").is_none());
}

#[test]
fn unknown_kernel_is_an_error() {
    assert_eq!(
        run("no-such-kernel", &[]),
        Err(TaskError::UnknownKernel("no-such-kernel".into()))
    );
    assert_eq!(
        reduce("no-such-kernel", &[]),
        Err(TaskError::UnknownKernel("no-such-kernel".into()))
    );
    assert_eq!(
        render("no-such-kernel", &[1, 2]),
        "malformed result (2 bytes)"
    );
}

#[test]
fn w1_job_result_matches_the_benchmark() {
    let results: Vec<Vec<u8>> = (0..10_000)
        .map(|i| run(W1_SUM_SQUARES, &w1_input(i)).unwrap())
        .collect();
    let job = reduce(W1_SUM_SQUARES, &results).unwrap();
    assert_eq!(decode_u64(&job), Some(1_291_890_006_563_070_912));
    assert_eq!(render(W1_SUM_SQUARES, &job), "1291890006563070912");
}

#[test]
fn w1_task_values() {
    // Task 0: sum of k^2 for k in 0..=999 = 999*1000*1999/6.
    assert_eq!(w1_value(0), 332_833_500);
    assert_eq!(
        decode_u64(&run(W1_SUM_SQUARES, &w1_input(0)).unwrap()),
        Some(332_833_500)
    );
    // Wrapping, not panicking, for huge indexes.
    let _ = run(W1_SUM_SQUARES, &w1_input(u64::MAX)).unwrap();
}

#[test]
fn w2_matches_an_independent_reference() {
    // Values from a separate Python implementation of the benchmark's
    // SplitMix64 sampling.
    assert_eq!(w2_hits(0, 100_000), 78_600);
    assert_eq!(w2_hits(7, 12_345), 9_746);
    assert_eq!(w2_hits(199, 70_000), 55_109);
    // The kernel (which checks its limits every 64 Ki samples) agrees.
    let out = run(W2_MONTE_CARLO_PI, &w2_input(199, 70_000)).unwrap();
    assert_eq!(decode_w2(&out), Some((55_109, 70_000)));
    assert_eq!(
        decode_w2(&run(W2_MONTE_CARLO_PI, &w2_input(3, 0)).unwrap()),
        Some((0, 0))
    );
}

#[test]
fn w2_estimates_pi() {
    let results: Vec<Vec<u8>> = (0..4)
        .map(|t| run(W2_MONTE_CARLO_PI, &w2_input(t, 100_000)).unwrap())
        .collect();
    let job = reduce(W2_MONTE_CARLO_PI, &results).unwrap();
    let (hits, samples) = decode_w2(&job).unwrap();
    assert_eq!(samples, 400_000);
    let pi = 4.0 * hits as f64 / samples as f64;
    assert!((pi - std::f64::consts::PI).abs() < 1e-2, "{pi}");
    let text = render(W2_MONTE_CARLO_PI, &job);
    assert!(text.starts_with("pi = 3.1"), "{text}");
    assert!(
        text.contains(&format!("{hits} hits of 400000 samples")),
        "{text}"
    );
    assert_eq!(render(W2_MONTE_CARLO_PI, &w2_input(0, 0)), "pi: no samples");
}

#[test]
fn w3_equals_the_naive_sum() {
    let mut data: Vec<u8> = (0..(3 << 20) + 13)
        .map(|i: u64| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    for len in [0, 1, 7, 8, 9, 1023, 1024, 1025, 4096 + 5, data.len()] {
        let slice = &data[..len];
        assert_eq!(byte_sum(slice), naive_byte_sum(slice), "{len}");
        assert_eq!(
            decode_u64(&run(W3_BYTE_SUM, slice).unwrap()),
            Some(naive_byte_sum(slice))
        );
    }
    // All 0xFF: the lane folding must not overflow.
    data.iter_mut().for_each(|b| *b = 0xFF);
    assert_eq!(byte_sum(&data), data.len() as u64 * 255);
}

#[test]
fn w3_and_prime_count_reduce_and_render() {
    let parts = [5u64, u64::MAX, 3].map(|v| v.to_le_bytes().to_vec());
    let job = reduce(W3_BYTE_SUM, &parts).unwrap();
    assert_eq!(decode_u64(&job), Some(7)); // wrapping
    assert_eq!(render(W3_BYTE_SUM, &job), "7");
    // Counts of primes do not wrap: an overflow is an error.
    assert!(matches!(
        reduce(PRIME_COUNT, &parts),
        Err(TaskError::BadInput(_))
    ));
    let parts = [25u64, 21].map(|v| v.to_le_bytes().to_vec());
    let job = reduce(PRIME_COUNT, &parts).unwrap();
    assert_eq!(render(PRIME_COUNT, &job), "46");
    assert_eq!(
        render(PRIME_COUNT, &[1, 2, 3]),
        "malformed result (3 bytes)"
    );
}

#[test]
fn sha256_known_digests() {
    let abc = run(SHA256, b"abc").unwrap();
    assert_eq!(
        hex::encode(&abc),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let empty = run(SHA256, b"").unwrap();
    let job = reduce(SHA256, &[abc, empty]).unwrap();
    assert_eq!(job.len(), 64);
    assert_eq!(
        render(SHA256, &job),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Longer than one limit-check chunk: the same as one update.
    let big = vec![0x5Au8; (1 << 20) * 2 + 3];
    assert_eq!(run(SHA256, &big).unwrap(), Sha256::digest(&big).to_vec());
    assert_eq!(render(SHA256, &[0; 31]), "malformed result (31 bytes)");
}

#[test]
fn prime_counts() {
    let count = |lo, hi| decode_u64(&run(PRIME_COUNT, &prime_input(lo, hi)).unwrap()).unwrap();
    assert_eq!(count(0, 100), 25);
    assert_eq!(count(0, 2), 0);
    assert_eq!(count(7, 7), 0);
    assert_eq!(count(0, 1_000_000), 78_498);
    assert_eq!(count(1_000_000, 1_000_100), 6);
    assert_eq!(count(u64::MAX - 99, u64::MAX), 3);
    // Counted independently with coreutils `factor`.
    assert_eq!(
        count(1_000_000_000_000_000_000, 1_000_000_000_000_020_000),
        494
    );
    assert_eq!(count(u64::MAX - 100_000, u64::MAX), 2_139);
}

#[test]
fn bad_inputs_are_reported_not_panics() {
    for (kernel, bad) in [
        (W1_SUM_SQUARES, vec![]),
        (W1_SUM_SQUARES, vec![0; 7]),
        (W1_SUM_SQUARES, vec![0; 9]),
        (W2_MONTE_CARLO_PI, vec![0; 8]),
        (W2_MONTE_CARLO_PI, vec![0; 17]),
        (PRIME_COUNT, vec![0; 15]),
        (PRIME_COUNT, vec![]),
    ] {
        match run(kernel, &bad) {
            Err(TaskError::BadInput(msg)) => {
                assert!(msg.contains(kernel), "{msg}");
                assert!(msg.contains(&format!("got {}", bad.len())), "{msg}");
            }
            other => panic!("{kernel} on {} bytes: {other:?}", bad.len()),
        }
    }
    // hi below lo, and a range too wide.
    assert!(matches!(
        run(PRIME_COUNT, &prime_input(10, 5)),
        Err(TaskError::BadInput(m)) if m.contains("below")
    ));
    assert!(matches!(
        run(PRIME_COUNT, &prime_input(0, MAX_PRIME_RANGE + 1)),
        Err(TaskError::BadInput(m)) if m.contains("wider")
    ));
    // Bad task results in reduce.
    assert!(matches!(
        reduce(W1_SUM_SQUARES, &[vec![0; 8], vec![0; 3]]),
        Err(TaskError::BadInput(m)) if m.contains("task result 1 is 3 bytes")
    ));
    assert!(matches!(
        reduce(W2_MONTE_CARLO_PI, &[vec![0; 8]]),
        Err(TaskError::BadInput(_))
    ));
    assert!(matches!(
        reduce(W2_MONTE_CARLO_PI, &[w2_input(5, 4)]),
        Err(TaskError::BadInput(m)) if m.contains("5 hits of 4")
    ));
    assert!(matches!(
        reduce(SHA256, &[vec![0; 33]]),
        Err(TaskError::BadInput(_))
    ));
    assert_eq!(decode_u64(&[0; 7]), None);
    assert_eq!(decode_w2(&[0; 15]), None);
}

#[test]
fn reduce_of_no_results() {
    for kernel in [W1_SUM_SQUARES, W3_BYTE_SUM, PRIME_COUNT] {
        let job = reduce(kernel, &[]).unwrap();
        assert_eq!(decode_u64(&job), Some(0));
        assert_eq!(render(kernel, &job), "0");
    }
    assert_eq!(
        decode_w2(&reduce(W2_MONTE_CARLO_PI, &[]).unwrap()),
        Some((0, 0))
    );
    let sha = reduce(SHA256, &[]).unwrap();
    assert!(sha.is_empty());
    assert_eq!(render(SHA256, &sha), "");
}

#[test]
fn a_cancelled_task_stops() {
    let cancel = CancelFlag::new();
    cancel.cancel();
    let limits = TaskLimits::default();
    for (kernel, input) in [
        (W1_SUM_SQUARES, w1_input(1)),
        (W2_MONTE_CARLO_PI, w2_input(1, 10)),
        (W3_BYTE_SUM, vec![1; 10]),
        (SHA256, vec![]),
        (PRIME_COUNT, prime_input(0, 10)),
    ] {
        assert_eq!(
            run_with(kernel, &input, &limits, &cancel),
            Err(TaskError::Cancelled),
            "{kernel}"
        );
    }
}

#[test]
fn cancel_reaches_a_running_task() {
    let cancel = CancelFlag::new();
    let flag = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        flag.cancel();
    });
    // Far more samples than could finish in the test's lifetime.
    let out = run_with(
        W2_MONTE_CARLO_PI,
        &w2_input(0, u64::MAX),
        &TaskLimits::default(),
        &cancel,
    );
    canceller.join().unwrap();
    assert_eq!(out, Err(TaskError::Cancelled));
}

#[test]
fn the_wall_clock_limit_is_enforced() {
    let limits = TaskLimits {
        wall: Duration::from_millis(20),
        ..TaskLimits::default()
    };
    let cancel = CancelFlag::new();
    assert_eq!(
        run_with(W2_MONTE_CARLO_PI, &w2_input(0, u64::MAX), &limits, &cancel),
        Err(TaskError::Timeout(Duration::from_millis(20)))
    );
    // A wide prime range near 2^64 takes far longer than 20 ms.
    assert_eq!(
        run_with(
            PRIME_COUNT,
            &prime_input(u64::MAX - MAX_PRIME_RANGE, u64::MAX),
            &limits,
            &cancel
        ),
        Err(TaskError::Timeout(Duration::from_millis(20)))
    );
}

#[test]
fn the_memory_limit_is_enforced_for_the_sieve() {
    let limits = TaskLimits {
        memory_bytes: 1024,
        ..TaskLimits::default()
    };
    assert_eq!(
        run_with(
            PRIME_COUNT,
            &prime_input(0, 10_000_000),
            &limits,
            &CancelFlag::new()
        ),
        Err(TaskError::MemoryLimit(1024))
    );
}
