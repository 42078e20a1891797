//! Running: the WASI subset, limits (fuel, memory, time, cancel, output),
//! and failures that leave the executor serving.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lppsp_core::component::{CancelFlag, Executor, TaskError, TaskLimits};
use lppsp_executor_wasm::{kernel_name, WasmConfig, WasmExecutor};

#[test]
fn stdin_to_stdout_works_and_meters_fuel() {
    let ex = WasmExecutor::new().unwrap();
    let id = ex.load(uppercase().as_bytes()).unwrap();
    let out = run(&ex, &id, b"hello, wasm!", &limits()).unwrap();
    assert_eq!(out.result, b"HELLO, WASM!");
    let fuel = out.fuel.unwrap();
    assert!(fuel > 0);
    // More input, more work.
    let long = run(&ex, &id, &[b'a'; 4000], &limits()).unwrap();
    assert_eq!(long.result, vec![b'A'; 4000]);
    assert!(long.fuel.unwrap() > fuel);
    // Empty input is fine.
    assert_eq!(run(&ex, &id, b"", &limits()).unwrap().result, b"");
}

#[test]
fn fuel_stops_an_infinite_loop() {
    let ex = WasmExecutor::new().unwrap();
    let id = ex.load(SPIN.as_bytes()).unwrap();
    let l = TaskLimits {
        fuel: Some(1_000_000),
        ..limits()
    };
    assert_eq!(
        run(&ex, &id, b"", &l),
        Err(TaskError::FuelExhausted(1_000_000))
    );
    still_serves(&ex);
}

#[test]
fn the_executor_default_fuel_applies_when_the_task_sets_none() {
    let ex = WasmExecutor::with_config(WasmConfig {
        default_fuel: Some(500_000),
        ..WasmConfig::default()
    })
    .unwrap();
    let id = ex.load(SPIN.as_bytes()).unwrap();
    assert_eq!(
        run(&ex, &id, b"", &limits()),
        Err(TaskError::FuelExhausted(500_000))
    );
    // The task's own fuel wins.
    let l = TaskLimits {
        fuel: Some(2_000),
        ..limits()
    };
    assert_eq!(run(&ex, &id, b"", &l), Err(TaskError::FuelExhausted(2_000)));
}

#[test]
fn the_time_cap_stops_an_unmetered_infinite_loop() {
    let ex = WasmExecutor::new().unwrap();
    let id = ex.load(SPIN.as_bytes()).unwrap();
    let wall = Duration::from_millis(200);
    let l = TaskLimits {
        wall,
        fuel: None,
        ..limits()
    };
    let start = Instant::now();
    let err = run(&ex, &id, b"", &l).unwrap_err();
    assert_eq!(err, TaskError::Timeout(wall));
    assert_eq!(err.to_string(), "time limit of 200ms exceeded");
    let took = start.elapsed();
    assert!(took >= wall, "{took:?}");
    // Generous: the point is that it stops, not how precisely.
    assert!(took < Duration::from_secs(10), "{took:?}");
    // Huge fuel behaves the same: time, not fuel, ends it.
    let l = TaskLimits {
        fuel: Some(u64::MAX / 2),
        ..l
    };
    assert_eq!(run(&ex, &id, b"", &l), Err(TaskError::Timeout(wall)));
    still_serves(&ex);
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let ex = WasmExecutor::new().unwrap();
    // Grows one page at a time until growth fails, then traps.
    let bomb = r#"(module (memory 1)
        (func (export "_start")
          (loop $grow
            (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
          unreachable))"#;
    let id = ex.load(bomb.as_bytes()).unwrap();
    let l = TaskLimits {
        memory_bytes: 16 << 20,
        ..limits()
    };
    let err = run(&ex, &id, b"", &l).unwrap_err();
    assert_eq!(err, TaskError::MemoryLimit(16 << 20));
    assert_eq!(err.to_string(), "memory limit of 16777216 bytes exceeded");
    still_serves(&ex);
}

#[test]
fn one_huge_grow_and_a_huge_initial_memory_hit_the_cap() {
    let ex = WasmExecutor::new().unwrap();
    let l = TaskLimits {
        memory_bytes: 8 << 20,
        ..limits()
    };
    let grow = r#"(module (memory 1)
        (func (export "_start") (drop (memory.grow (i32.const 60000)))))"#;
    let id = ex.load(grow.as_bytes()).unwrap();
    assert_eq!(run(&ex, &id, b"", &l), Err(TaskError::MemoryLimit(8 << 20)));
    // 1000 pages (62.5 MiB) at instantiation.
    let big = r#"(module (memory 1000) (func (export "_start")))"#;
    let id = ex.load(big.as_bytes()).unwrap();
    assert_eq!(run(&ex, &id, b"", &l), Err(TaskError::MemoryLimit(8 << 20)));
    // Within the cap it runs.
    let ok = TaskLimits {
        memory_bytes: 64 << 20,
        ..l
    };
    assert!(run(&ex, &id, b"", &ok).is_ok());
    still_serves(&ex);
}

#[test]
fn growth_within_the_cap_succeeds() {
    let ex = WasmExecutor::new().unwrap();
    // Grows to 4 MiB and writes 0 to stdout? No: exits 0 if growth worked.
    let wat = r#"(module (memory 1)
        (func (export "_start")
          (if (i32.eq (memory.grow (i32.const 63)) (i32.const -1)) (then unreachable))
          (i32.store (i32.const 4194300) (i32.const 7))))"#;
    let id = ex.load(wat.as_bytes()).unwrap();
    let l = TaskLimits {
        memory_bytes: 4 << 20,
        ..limits()
    };
    assert!(run(&ex, &id, b"", &l).is_ok());
}

#[test]
fn the_cancel_flag_stops_a_running_task() {
    let ex = WasmExecutor::new().unwrap();
    let id = ex.load(SPIN.as_bytes()).unwrap();
    let cancel = CancelFlag::new();
    let raiser = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            cancel.cancel();
        })
    };
    let l = TaskLimits {
        wall: Duration::from_secs(60),
        ..limits()
    };
    let start = Instant::now();
    assert_eq!(
        run_with(&ex, &id, 0, b"", &l, &cancel),
        Err(TaskError::Cancelled)
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    raiser.join().unwrap();
    // Already cancelled: does not start.
    assert_eq!(
        run_with(&ex, &id, 0, b"", &l, &cancel),
        Err(TaskError::Cancelled)
    );
    still_serves(&ex);
}

#[test]
fn traps_are_failures_with_the_trap_message() {
    let ex = WasmExecutor::new().unwrap();
    let id = ex
        .load(br#"(module (func (export "_start") unreachable))"#)
        .unwrap();
    match run(&ex, &id, b"", &limits()) {
        Err(TaskError::Failed(m)) => assert!(m.contains("unreachable"), "{m}"),
        other => panic!("{other:?}"),
    }
    let id = ex
        .load(br#"(module (func $f (export "_start") (call $f)))"#)
        .unwrap();
    match run(&ex, &id, b"", &limits()) {
        Err(TaskError::Failed(m)) => assert!(m.contains("stack"), "{m}"),
        other => panic!("{other:?}"),
    }
    let id = ex
        .load(
            br#"(module (memory 1) (func (export "_start") (drop (i32.load (i32.const 70000)))))"#,
        )
        .unwrap();
    match run(&ex, &id, b"", &limits()) {
        Err(TaskError::Failed(m)) => assert!(m.contains("out of bounds"), "{m}"),
        other => panic!("{other:?}"),
    }
    still_serves(&ex);
}

#[test]
fn exit_codes_and_stderr() {
    let ex = WasmExecutor::new().unwrap();
    let exit_with = |code: i32| {
        module(&format!(
            r#"(data (i32.const 512) "something went wrong\n")
            (func (export "_start")
              (drop (call $write (i32.const 1) (i32.const 512) (i32.const 4)))
              (drop (call $write (i32.const 2) (i32.const 512) (i32.const 21)))
              (call $proc_exit (i32.const {code}))
              unreachable)"#
        ))
    };
    let id = ex.load(exit_with(3).as_bytes()).unwrap();
    assert_eq!(
        run(&ex, &id, b"", &limits()),
        Err(TaskError::Failed(
            "exited with code 3; stderr: something went wrong".into()
        ))
    );
    let id = ex.load(exit_with(2).as_bytes()).unwrap();
    assert_eq!(
        run(&ex, &id, b"", &limits()),
        Err(TaskError::BadInput("something went wrong".into()))
    );
    // proc_exit(0) is success, with what was written so far.
    let id = ex.load(exit_with(0).as_bytes()).unwrap();
    assert_eq!(run(&ex, &id, b"", &limits()).unwrap().result, b"some");
    still_serves(&ex);
}

#[test]
fn stderr_is_bounded() {
    let ex = WasmExecutor::with_config(WasmConfig {
        max_stderr_bytes: 10,
        ..WasmConfig::default()
    })
    .unwrap();
    let wat = module(
        r#"(data (i32.const 512) "0123456789abcdefghij")
        (func (export "_start")
          (drop (call $write (i32.const 2) (i32.const 512) (i32.const 20)))
          (drop (call $write (i32.const 2) (i32.const 512) (i32.const 20)))
          ;; All 20 bytes reported written.
          (if (i32.ne (i32.load (i32.const 8)) (i32.const 20)) (then (call $proc_exit (i32.const 9))))
          (call $proc_exit (i32.const 1)))"#,
    );
    let id = ex.load(wat.as_bytes()).unwrap();
    assert_eq!(
        run(&ex, &id, b"", &limits()),
        Err(TaskError::Failed(
            "exited with code 1; stderr: 0123456789 [truncated]".into()
        ))
    );
}

#[test]
fn stdout_is_capped() {
    let ex = WasmExecutor::with_config(WasmConfig {
        max_output_bytes: 1000,
        ..WasmConfig::default()
    })
    .unwrap();
    let wat = module(
        r#"(func (export "_start")
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 600)))
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 600))))"#,
    );
    let id = ex.load(wat.as_bytes()).unwrap();
    match run(&ex, &id, b"", &limits()) {
        Err(TaskError::Failed(m)) => {
            assert!(m.contains("output limit of 1000 bytes"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    still_serves(&ex);
}

#[test]
fn hostile_pointers_get_efault_not_a_host_panic() {
    let ex = WasmExecutor::new().unwrap();
    // Exits with the errno of each call, so the test sees what came back.
    let wat = module(
        r#"(func (export "_start")
          (local $e i32)
          ;; iovec array beyond memory
          (local.set $e (call $fd_write (i32.const 1) (i32.const 65532) (i32.const 1) (i32.const 8)))
          (if (i32.ne (local.get $e) (i32.const 21)) (then (call $proc_exit (i32.const 100))))
          ;; iovec whose buffer runs past the end
          (i32.store (i32.const 0) (i32.const 65000))
          (i32.store (i32.const 4) (i32.const 10000))
          (local.set $e (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
          (if (i32.ne (local.get $e) (i32.const 21)) (then (call $proc_exit (i32.const 101))))
          ;; read into a buffer at -1 (4 GiB - 1)
          (i32.store (i32.const 0) (i32.const -1))
          (i32.store (i32.const 4) (i32.const 4))
          (local.set $e (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
          (if (i32.ne (local.get $e) (i32.const 21)) (then (call $proc_exit (i32.const 102))))
          ;; too many iovecs
          (local.set $e (call $fd_read (i32.const 0) (i32.const 0) (i32.const -1) (i32.const 8)))
          (if (i32.ne (local.get $e) (i32.const 28)) (then (call $proc_exit (i32.const 103))))
          ;; other descriptors
          (local.set $e (call $fd_write (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 8)))
          (if (i32.ne (local.get $e) (i32.const 8)) (then (call $proc_exit (i32.const 104))))
          (local.set $e (call $fd_read (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
          (if (i32.ne (local.get $e) (i32.const 8)) (then (call $proc_exit (i32.const 105)))))"#,
    );
    let id = ex.load(wat.as_bytes()).unwrap();
    assert_eq!(run(&ex, &id, b"input", &limits()).unwrap().result, b"");
}

#[test]
fn random_get_is_deterministic_per_task() {
    let ex = WasmExecutor::new().unwrap();
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start")
          (drop (call $random (i32.const 100) (i32.const 13)))
          (i32.store (i32.const 0) (i32.const 100))
          (i32.store (i32.const 4) (i32.const 13))
          (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
    let id = ex.load(wat.as_bytes()).unwrap();
    let cancel = CancelFlag::new();
    let a = run_with(&ex, &id, 1, b"", &limits(), &cancel)
        .unwrap()
        .result;
    let b = run_with(&ex, &id, 1, b"", &limits(), &cancel)
        .unwrap()
        .result;
    let c = run_with(&ex, &id, 2, b"", &limits(), &cancel)
        .unwrap()
        .result;
    assert_eq!(a.len(), 13);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn args_and_environment_are_empty() {
    let ex = WasmExecutor::new().unwrap();
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 100) "\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff\ff")
        (func (export "_start")
          (drop (call $args (i32.const 100) (i32.const 104)))
          (drop (call $env (i32.const 108) (i32.const 112)))
          (i32.store (i32.const 0) (i32.const 100))
          (i32.store (i32.const 4) (i32.const 16))
          (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
    let id = ex.load(wat.as_bytes()).unwrap();
    assert_eq!(run(&ex, &id, b"", &limits()).unwrap().result, [0u8; 16]);
}

#[test]
fn a_guest_reducer_sees_framed_results() {
    let ex = WasmExecutor::new().unwrap();
    // `_start` is unused here; lppsp_reduce echoes its stdin.
    let wat = format!(
        r#"(module (@custom "lppsp.reduce" "guest") {PRELUDE}
          (func (export "_start"))
          (func (export "lppsp_reduce")
            (local $n i32)
            (local.set $n (call $read_all (i32.const 1024) (i32.const 60000)))
            (drop (call $write (i32.const 1) (i32.const 1024) (local.get $n)))))"#
    );
    let id = ex.load(wat.as_bytes()).unwrap();
    let out = ex
        .reduce(&kernel_name(&id), &[b"ab".as_slice(), b"", b"xyz"])
        .unwrap();
    assert_eq!(
        out,
        [&[2, 0, 0, 0][..], b"ab", &[0; 4], &[3, 0, 0, 0], b"xyz"].concat()
    );
    // Concat is the default reducer; render falls back to text.
    let echo = ex.load(uppercase().as_bytes()).unwrap();
    let k = kernel_name(&echo);
    assert_eq!(ex.reduce(&k, &[b"AB".as_slice(), b"C"]).unwrap(), b"ABC");
    assert_eq!(ex.render(&k, b"ABC"), "ABC");
    assert_eq!(ex.render(&k, &[0xff, 0xfe]), "2 bytes");
}

#[test]
fn many_tasks_in_parallel() {
    let ex = std::sync::Arc::new(WasmExecutor::new().unwrap());
    let id = ex.load(uppercase().as_bytes()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let ex = std::sync::Arc::clone(&ex);
            std::thread::spawn(move || {
                for i in 0..20 {
                    let input = format!("task {t} {i}");
                    let out = run(&ex, &id, input.as_bytes(), &limits()).unwrap();
                    assert_eq!(out.result, input.to_uppercase().as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
