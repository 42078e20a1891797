//! The WAT kernels in examples/kernels/ against the builtin executor: the
//! same inputs give the same task results, job results and renderings.

mod common;

use common::*;
use lppsp_core::component::{CancelFlag, Executor, TaskError, TaskLimits, TaskSpec};
use lppsp_core::wire::{JobId, KernelName};
use lppsp_executor_builtin::{w1_input, w2_input, BuiltinExecutor};
use lppsp_executor_wasm::{kernel_name, WasmExecutor};

fn builtin(kernel: &str, input: &[u8]) -> Result<Vec<u8>, TaskError> {
    let kernel = KernelName::new(kernel).unwrap();
    let spec = TaskSpec {
        job: JobId(1),
        task: 0,
        kernel: &kernel,
        input,
    };
    BuiltinExecutor
        .run(&spec, &TaskLimits::default(), &CancelFlag::new())
        .map(|o| o.result)
}

/// Runs `wat` and the builtin `kernel` on every input; asserts equal task
/// results, then equal reduces and renderings of them all.
fn same_as_builtin(wat: &str, kernel: &str, inputs: &[Vec<u8>]) {
    let ex = WasmExecutor::new().unwrap();
    let id = ex.load(wat.as_bytes()).unwrap();
    let mut results = Vec::new();
    for (task, input) in inputs.iter().enumerate() {
        let native = builtin(kernel, input).unwrap();
        let l = TaskLimits::default();
        let out = run_with(&ex, &id, task as u64, input, &l, &CancelFlag::new()).unwrap();
        assert_eq!(out.result, native, "{kernel}, input {task}");
        assert!(out.fuel.is_some());
        results.push(native);
    }
    let refs: Vec<&[u8]> = results.iter().map(Vec::as_slice).collect();
    let name = KernelName::new(kernel).unwrap();
    let native_job = BuiltinExecutor.reduce(&name, &refs).unwrap();
    let wasm_job = ex.reduce(&kernel_name(&id), &refs).unwrap();
    assert_eq!(wasm_job, native_job, "{kernel} reduce");
    assert_eq!(
        ex.render(&kernel_name(&id), &wasm_job),
        BuiltinExecutor.render(&name, &native_job)
    );
}

#[test]
fn w1_matches_the_builtin() {
    let inputs: Vec<Vec<u8>> = [0, 1, 2, 7, 999, 123_456_789, u64::MAX / 1000 + 5, u64::MAX]
        .into_iter()
        .map(w1_input)
        .collect();
    same_as_builtin(W1, "w1-sum-squares", &inputs);
}

#[test]
fn w2_matches_the_builtin() {
    let inputs: Vec<Vec<u8>> = [
        (0, 0),
        (0, 1),
        (1, 1000),
        (7, 100_000),
        (3, 1_000_003),
        (u64::MAX, 5000),
        (0x9E37_79B9_7F4A_7C15, 65_537),
    ]
    .into_iter()
    .map(|(t, s)| w2_input(t, s))
    .collect();
    same_as_builtin(W2, "w2-monte-carlo-pi", &inputs);
}

#[test]
fn w3_matches_the_builtin() {
    // A fixed pseudo-random fill, plus edge sizes around words, blocks and
    // the kernel's 64 KiB reads.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..300_001)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut inputs = vec![
        vec![],
        vec![200],
        vec![255; 7],
        vec![255; 8],
        vec![255; 1023],
        vec![255; 1024],
        vec![255; 1025],
        vec![255; 65_536],
        vec![255; 65_537 + 3],
        vec![255; 1 << 20],
    ];
    inputs.push(noise.clone());
    inputs.push(noise[3..200_000].to_vec());
    same_as_builtin(W3, "w3-byte-sum", &inputs);
}

#[test]
fn bad_inputs_are_bad_input_errors() {
    let ex = WasmExecutor::new().unwrap();
    let w1 = ex.load(W1.as_bytes()).unwrap();
    let w2 = ex.load(W2.as_bytes()).unwrap();
    let l = TaskLimits::default();
    for input in [&[][..], &[0; 7], &[0; 9], &[0; 16]] {
        assert!(matches!(
            builtin("w1-sum-squares", input),
            Err(TaskError::BadInput(_))
        ));
        match run(&ex, &w1, input, &l) {
            Err(TaskError::BadInput(m)) => assert!(m.contains("expects 8 bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    for input in [&[][..], &[0; 8], &[0; 15], &[0; 17]] {
        assert!(matches!(
            builtin("w2-monte-carlo-pi", input),
            Err(TaskError::BadInput(_))
        ));
        match run(&ex, &w2, input, &l) {
            Err(TaskError::BadInput(m)) => assert!(m.contains("expects 16 bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // Bad task results given to reduce are bad input too.
    let k = kernel_name(&w2);
    assert!(matches!(
        ex.reduce(&k, &[&[0; 15]]),
        Err(TaskError::BadInput(_))
    ));
    let mut liar = w2_input(5, 4);
    assert!(matches!(
        ex.reduce(&k, &[&liar]),
        Err(TaskError::BadInput(_))
    ));
    liar = w1_input(1);
    assert!(matches!(
        ex.reduce(&kernel_name(&w1), &[&liar, &[1]]),
        Err(TaskError::BadInput(_))
    ));
    still_serves(&ex);
}

#[test]
fn w2_is_stopped_by_fuel_and_time() {
    let ex = WasmExecutor::new().unwrap();
    let id = ex.load(W2.as_bytes()).unwrap();
    let input = w2_input(1, u64::MAX);
    let l = TaskLimits {
        fuel: Some(10_000_000),
        ..TaskLimits::default()
    };
    assert_eq!(
        run(&ex, &id, &input, &l),
        Err(TaskError::FuelExhausted(10_000_000))
    );
    let l = TaskLimits {
        wall: std::time::Duration::from_millis(100),
        ..TaskLimits::default()
    };
    assert!(matches!(
        run(&ex, &id, &input, &l),
        Err(TaskError::Timeout(_))
    ));
    // Fuel use is deterministic: the same task costs the same.
    let small = w2_input(9, 10_000);
    let a = run(&ex, &id, &small, &TaskLimits::default()).unwrap().fuel;
    let b = run(&ex, &id, &small, &TaskLimits::default()).unwrap().fuel;
    assert_eq!(a, b);
}
