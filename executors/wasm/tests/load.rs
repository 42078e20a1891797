//! Loading: content addressing, the compile cache, and refusal of modules
//! outside the host interface.

mod common;

use std::sync::Arc;

use common::*;
use lppsp_core::component::{Executor, TaskError};
use lppsp_core::wire::KernelName;
use lppsp_executor_wasm::{
    kernel_name, parse_kernel_name, ModuleId, Reducer, WasmConfig, WasmError, WasmExecutor,
};

fn forbidden(err: WasmError) -> (String, String) {
    match err {
        WasmError::ForbiddenImport { module, name, .. } => (module, name),
        other => panic!("expected ForbiddenImport, got {other:?}"),
    }
}

#[test]
fn env_import_is_refused_and_named() {
    let ex = WasmExecutor::new().unwrap();
    let wat = r#"(module
        (import "env" "system" (func (param i32) (result i32)))
        (func (export "_start")))"#;
    let err = ex.load(wat.as_bytes()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("env.system"), "{msg}");
    assert_eq!(forbidden(err), ("env".into(), "system".into()));
    assert!(ex.is_empty());
    still_serves(&ex);
}

#[test]
fn wasi_path_open_is_refused_and_named() {
    let ex = WasmExecutor::new().unwrap();
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "path_open"
          (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start")))"#;
    let err = ex.load(wat.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("wasi_snapshot_preview1.path_open"),
        "{err}"
    );
    assert_eq!(
        forbidden(err),
        ("wasi_snapshot_preview1".into(), "path_open".into())
    );
}

#[test]
fn clock_and_socket_imports_are_refused() {
    let ex = WasmExecutor::new().unwrap();
    for (name, sig) in [
        ("clock_time_get", "(param i32 i64 i32) (result i32)"),
        ("sock_accept", "(param i32 i32 i32) (result i32)"),
        ("poll_oneoff", "(param i32 i32 i32 i32) (result i32)"),
    ] {
        let wat = format!(
            r#"(module (import "wasi_snapshot_preview1" "{name}" (func {sig}))
                (memory (export "memory") 1) (func (export "_start")))"#
        );
        let (_, got) = forbidden(ex.load(wat.as_bytes()).unwrap_err());
        assert_eq!(got, name);
    }
}

#[test]
fn imported_memory_and_globals_are_refused() {
    let ex = WasmExecutor::new().unwrap();
    let wat = r#"(module (import "env" "memory" (memory 1)) (func (export "_start")))"#;
    assert_eq!(
        forbidden(ex.load(wat.as_bytes()).unwrap_err()),
        ("env".into(), "memory".into())
    );
    let wat = r#"(module (import "wasi_snapshot_preview1" "fd_write" (global i32))
        (func (export "_start")))"#;
    let err = ex.load(wat.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("global"), "{err}");
    assert_eq!(forbidden(err).1, "fd_write");
}

#[test]
fn wrong_signature_is_refused_with_both_types() {
    let ex = WasmExecutor::new().unwrap();
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "_start")))"#;
    match ex.load(wat.as_bytes()).unwrap_err() {
        WasmError::ImportSignature {
            module,
            name,
            expected,
            found,
        } => {
            assert_eq!(
                (module.as_str(), name.as_str()),
                ("wasi_snapshot_preview1", "fd_write")
            );
            assert_eq!(expected, "(i32, i32, i32, i32) -> (i32)");
            assert_eq!(found, "(i32, i32) -> (i32)");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_host_function_links() {
    // One module importing the whole interface loads and runs.
    let ex = WasmExecutor::new().unwrap();
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "args_get" (func (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "args_sizes_get" (func (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "environ_get" (func (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "environ_sizes_get" (func (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_close" (func (param i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_fdstat_get" (func (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_prestat_get" (func (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func (param i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_seek" (func (param i32 i64 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
        (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))
        (memory (export "memory") 1)
        (func (export "_start")))"#;
    let id = ex.load(wat.as_bytes()).unwrap();
    assert_eq!(run(&ex, &id, b"", &limits()).unwrap().result, b"");
    assert_eq!(lppsp_executor_wasm::host_functions().count(), 14);
}

#[test]
fn a_module_must_be_a_command_with_its_memory_exported() {
    let ex = WasmExecutor::new().unwrap();
    let err = ex.load(b"(module (func (export \"main\")))").unwrap_err();
    assert!(
        matches!(&err, WasmError::Export { name, .. } if name == "_start"),
        "{err}"
    );
    let err = ex
        .load(b"(module (func (export \"_start\") (param i32)))")
        .unwrap_err();
    assert!(err.to_string().contains("must be () -> ()"), "{err}");
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (memory 1)
        (func (export "_start")))"#;
    let err = ex.load(wat.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, WasmError::Export { name, .. } if name == "memory"),
        "{err}"
    );
    // proc_exit touches no memory: no export needed.
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
        (func (export "_start")))"#;
    ex.load(wat.as_bytes()).unwrap();
}

#[test]
fn garbage_and_invalid_modules_are_errors() {
    let ex = WasmExecutor::new().unwrap();
    assert!(matches!(
        ex.load(b"(module (func"),
        Err(WasmError::Parse(_))
    ));
    assert!(matches!(
        ex.load(&[0xff, 0, 1, 2]),
        Err(WasmError::Parse(_))
    ));
    // Binary magic, then nonsense.
    let err = ex.load(b"\0asm\x01\0\0\0\x01\xff\xff").unwrap_err();
    assert!(matches!(err, WasmError::Compile(_)), "{err:?}");
    // Well-formed but ill-typed.
    let err = ex
        .load(b"(module (func (export \"_start\") (i32.add (i32.const 1))))")
        .unwrap_err();
    assert!(matches!(err, WasmError::Compile(_)), "{err:?}");
    still_serves(&ex);
}

#[test]
fn reducer_section_is_read_and_checked() {
    let ex = WasmExecutor::new().unwrap();
    let id = ex.load(W1.as_bytes()).unwrap();
    assert_eq!(ex.reducer(&id), Some(Reducer::SumU64));
    let id = ex.load(W2.as_bytes()).unwrap();
    assert_eq!(ex.reducer(&id), Some(Reducer::W2));
    let id = ex.load(SPIN.as_bytes()).unwrap();
    assert_eq!(ex.reducer(&id), Some(Reducer::Concat));

    let bad = r#"(module (@custom "lppsp.reduce" "median") (func (export "_start")))"#;
    let err = ex.load(bad.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, WasmError::Reducer(m) if m.contains("median")),
        "{err}"
    );
    let twice = r#"(module (@custom "lppsp.reduce" "concat") (@custom "lppsp.reduce" "w2")
        (func (export "_start")))"#;
    assert!(matches!(
        ex.load(twice.as_bytes()),
        Err(WasmError::Reducer(_))
    ));
    // `guest` needs the reduce export.
    let guest = r#"(module (@custom "lppsp.reduce" "guest") (func (export "_start")))"#;
    let err = ex.load(guest.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, WasmError::Export { name, .. } if name == "lppsp_reduce"),
        "{err}"
    );
}

#[test]
fn same_bytes_same_id_compiled_once() {
    let ex = WasmExecutor::new().unwrap();
    let a = ex.load(W2.as_bytes()).unwrap();
    let b = ex.load(W2.as_bytes()).unwrap();
    assert_eq!(a, b);
    assert_eq!(ex.compilations(), 1);
    assert_eq!(ex.len(), 1);
    // The id is the SHA-256 of the bytes as given (here the WAT text).
    assert_eq!(a, ModuleId::of(W2.as_bytes()));
    // The same program as a binary is other bytes, so another module.
    let binary = wat::parse_str(W2).unwrap();
    let c = ex.load(&binary).unwrap();
    assert_ne!(a, c);
    assert_eq!(c, ModuleId::of(&binary));
    assert_eq!(ex.compilations(), 2);
}

#[test]
fn concurrent_loads_compile_once() {
    let ex = Arc::new(WasmExecutor::new().unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let ex = Arc::clone(&ex);
            std::thread::spawn(move || ex.load(W3.as_bytes()).unwrap())
        })
        .collect();
    let ids: Vec<ModuleId> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(ex.compilations(), 1);
}

#[test]
fn has_kernel_only_for_loaded_modules() {
    let ex = WasmExecutor::new().unwrap();
    let id = ModuleId::of(W1.as_bytes());
    assert!(!ex.has_kernel(&kernel_name(&id)));
    assert!(!ex.contains(&id));
    ex.load(W1.as_bytes()).unwrap();
    let name = kernel_name(&id);
    assert_eq!(name.as_str(), format!("wasm:{id}"));
    assert_eq!(parse_kernel_name(&name), Some(id));
    assert!(ex.has_kernel(&name));
    assert!(ex.contains(&id));
    for other in ["w1-sum-squares", "sha256", "wasm:nothex"] {
        assert!(!ex.has_kernel(&KernelName::new(other).unwrap()));
    }
    assert_eq!(ex.name(), "wasm");
    // Running an unknown kernel is UnknownKernel, not a panic.
    let unknown = ModuleId::of(b"never loaded");
    assert!(matches!(
        run(&ex, &unknown, b"", &limits()),
        Err(TaskError::UnknownKernel(k)) if k == kernel_name(&unknown).as_str()
    ));
}

#[test]
fn the_cache_is_bounded_least_recently_used_first() {
    let ex = WasmExecutor::with_config(WasmConfig {
        cache_modules: 2,
        ..WasmConfig::default()
    })
    .unwrap();
    let w1 = ex.load(W1.as_bytes()).unwrap();
    let w2 = ex.load(W2.as_bytes()).unwrap();
    // Use W1, so that W2 is the least recently used.
    run(&ex, &w1, &0u64.to_le_bytes(), &limits()).unwrap();
    let w3 = ex.load(W3.as_bytes()).unwrap();
    assert!(ex.contains(&w1) && ex.contains(&w3));
    assert!(!ex.contains(&w2));
    assert!(!ex.has_kernel(&kernel_name(&w2)));
    assert!(matches!(
        run(&ex, &w2, &[0; 16], &limits()),
        Err(TaskError::UnknownKernel(_))
    ));
    // Loading it again brings it back (compiled again).
    ex.load(W2.as_bytes()).unwrap();
    assert!(ex.contains(&w2));
    assert_eq!(ex.compilations(), 4);
}

#[test]
fn oversized_modules_are_refused_before_parsing() {
    let ex = WasmExecutor::with_config(WasmConfig {
        max_module_bytes: 100,
        ..WasmConfig::default()
    })
    .unwrap();
    let err = ex.load(W1.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        WasmError::TooLarge {
            size: W1.len(),
            max: 100
        }
    );
}
