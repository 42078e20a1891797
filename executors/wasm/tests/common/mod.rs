//! Shared helpers and guest modules for the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use lppsp_core::component::{CancelFlag, Executor, TaskError, TaskLimits, TaskOutput, TaskSpec};
use lppsp_core::wire::JobId;
use lppsp_executor_wasm::{kernel_name, ModuleId, WasmExecutor};

pub const W1: &str = include_str!("../../../../examples/kernels/w1-sum-squares.wat");
pub const W2: &str = include_str!("../../../../examples/kernels/w2-monte-carlo-pi.wat");
pub const W3: &str = include_str!("../../../../examples/kernels/w3-byte-sum.wat");

/// The WASI imports and helpers most test modules share, spliced into a
/// module's text: `$read_all(buf, cap) -> n`, `$write(fd, buf, len) -> errno`.
pub const PRELUDE: &str = r#"
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func $read_all (param $buf i32) (param $cap i32) (result i32)
    (local $total i32) (local $n i32)
    (block $done
      (loop $more
        (br_if $done (i32.ge_u (local.get $total) (local.get $cap)))
        (i32.store (i32.const 0) (i32.add (local.get $buf) (local.get $total)))
        (i32.store (i32.const 4) (i32.sub (local.get $cap) (local.get $total)))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $total (i32.add (local.get $total) (local.get $n)))
        (br $more)))
    (local.get $total))
  (func $write (param $fd i32) (param $buf i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (local.get $buf))
    (i32.store (i32.const 4) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
"#;

/// A module: the prelude, then `body`.
pub fn module(body: &str) -> String {
    format!("(module {PRELUDE} {body})")
}

/// Echoes stdin (up to 60 KiB) to stdout, ASCII letters upper-cased.
pub fn uppercase() -> String {
    module(
        r#"
  (func (export "_start")
    (local $n i32) (local $i i32) (local $c i32)
    (local.set $n (call $read_all (i32.const 1024) (i32.const 61440)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $c (i32.load8_u (i32.add (i32.const 1024) (local.get $i))))
        (if (i32.and (i32.ge_u (local.get $c) (i32.const 97))
                     (i32.le_u (local.get $c) (i32.const 122)))
          (then (i32.store8 (i32.add (i32.const 1024) (local.get $i))
                            (i32.sub (local.get $c) (i32.const 32)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (drop (call $write (i32.const 1) (i32.const 1024) (local.get $n))))
"#,
    )
}

/// Spins forever.
pub const SPIN: &str = r#"(module (func (export "_start") (loop $l (br $l))))"#;

pub fn limits() -> TaskLimits {
    TaskLimits {
        wall: Duration::from_secs(30),
        memory_bytes: 64 << 20,
        fuel: None,
    }
}

pub fn run_with(
    ex: &WasmExecutor,
    id: &ModuleId,
    task: u64,
    input: &[u8],
    limits: &TaskLimits,
    cancel: &CancelFlag,
) -> Result<TaskOutput, TaskError> {
    let kernel = kernel_name(id);
    let spec = TaskSpec {
        job: JobId(0x1234),
        task,
        kernel: &kernel,
        input,
    };
    ex.run(&spec, limits, cancel)
}

pub fn run(
    ex: &WasmExecutor,
    id: &ModuleId,
    input: &[u8],
    limits: &TaskLimits,
) -> Result<TaskOutput, TaskError> {
    run_with(ex, id, 0, input, limits, &CancelFlag::new())
}

/// Asserts the executor still runs a good task.
pub fn still_serves(ex: &WasmExecutor) {
    let id = ex.load(uppercase().as_bytes()).unwrap();
    let out = run(ex, &id, b"still here", &limits()).unwrap();
    assert_eq!(out.result, b"STILL HERE");
}
