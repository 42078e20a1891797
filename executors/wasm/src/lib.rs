//! A sandboxed WASM executor: runs user kernels that untrusted peers send,
//! under fuel, memory and wall-time caps, with nothing but stdin and stdout.
//!
//! [`WasmExecutor`] (named `wasm`) runs WebAssembly modules with
//! wasmtime. A module is loaded once with [`WasmExecutor::load`] (binary
//! `.wasm` or WAT text) and named by the SHA-256 of its bytes as given:
//! [`ModuleId`], kernel name `wasm:<64 hex>` ([`kernel_name`],
//! [`parse_kernel_name`]). The guest ABI is in `docs/wasm.md`; in short:
//!
//! * The module is a WASI preview 1 command: `_start` reads the task input
//!   on stdin (fd 0) and writes the task result on stdout (fd 1). stderr
//!   (fd 2) is kept (bounded) for the error message. `proc_exit(0)` or a
//!   plain return is success; `proc_exit(2)` is bad input
//!   ([`TaskError::BadInput`]); any other code is a failure.
//! * Only the functions of [`host_functions`] in module
//!   `wasi_snapshot_preview1` may be imported; anything else is refused at
//!   load, naming the import. No files, network, clock, args or environment;
//!   `random_get` gives a deterministic stream seeded by job and task.
//! * The module names its reduce in a custom section `lppsp.reduce`
//!   ([`Reducer`]): `concat` (default), `sum-u64`, `w2`, or `guest` (its own
//!   `lppsp_reduce` export, run as a second command).
//!
//! Limits: fuel ([`TaskLimits::fuel`], else [`WasmConfig::default_fuel`],
//! else unmetered) with the fuel used reported in [`TaskOutput::fuel`];
//! linear memory capped at [`TaskLimits::memory_bytes`] (growth past it
//! traps: [`TaskError::MemoryLimit`]); wall time ([`TaskLimits::wall`]) and
//! the [`CancelFlag`] checked on every epoch tick of a per-executor ticker
//! thread ([`WasmConfig::epoch_tick`]); stdout capped at
//! [`WasmConfig::max_output_bytes`].

#![forbid(unsafe_code)]

mod cache;
mod host;
mod id;
mod reduce;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lppsp_core::component::{CancelFlag, Executor, TaskError, TaskLimits, TaskOutput, TaskSpec};
use lppsp_core::wire::KernelName;
use wasmtime::{
    Config, Engine, Error, ExternType, FuncType, InstancePre, Linker, Module, OptLevel, Store,
    Trap, UpdateDeadline, ValType,
};

pub use host::{host_functions, WASI_MODULE};
pub use id::{kernel_name, parse_kernel_name, ModuleId, KERNEL_PREFIX};
pub use reduce::{Reducer, GUEST_REDUCE_EXPORT, REDUCE_SECTION};

use cache::Lru;
use host::{Halt, Host, Limiter, Ty};

/// The name this executor is registered under.
pub const NAME: &str = "wasm";

/// The command export every module must have.
pub const ENTRY_EXPORT: &str = "_start";

/// Exit code meaning "bad input" ([`TaskError::BadInput`]), as in the
/// usage-error convention of POSIX tools.
pub const EXIT_BAD_INPUT: u32 = 2;

/// Elements a guest table may hold (funcref tables of real programs hold a
/// few thousand; each element is a host pointer).
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Executor settings; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmConfig {
    /// Fuel for a task whose [`TaskLimits::fuel`] is `None`; `None` here too
    /// means unmetered (only the wall-time cap stops it). Default `None`.
    pub default_fuel: Option<u64>,
    /// Most stdout bytes a task may write; past it the task fails.
    /// Default 64 MiB.
    pub max_output_bytes: usize,
    /// stderr bytes kept for error messages (the rest is dropped).
    /// Default 4 KiB.
    pub max_stderr_bytes: usize,
    /// Largest module accepted by [`WasmExecutor::load`], bytes as given.
    /// Default 32 MiB.
    pub max_module_bytes: usize,
    /// Compiled modules kept (least recently used evicted first).
    /// Default 64.
    pub cache_modules: usize,
    /// Total bytes (as given to `load`) of the modules kept. Default 256 MiB.
    pub cache_bytes: usize,
    /// How often the ticker thread advances the epoch, which is how often a
    /// running task checks its wall-time limit and cancel flag.
    /// Default 10 ms.
    pub epoch_tick: Duration,
    /// Limits of a `guest` reduce (which has no task limits of its own).
    /// Default: [`TaskLimits::default`].
    pub reduce_limits: TaskLimits,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            default_fuel: None,
            max_output_bytes: 64 << 20,
            max_stderr_bytes: 4 << 10,
            max_module_bytes: 32 << 20,
            cache_modules: 64,
            cache_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(10),
            reduce_limits: TaskLimits::default(),
        }
    }
}

/// Why a module could not be loaded (or the executor built).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WasmError {
    #[error("module is {size} bytes, more than the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("neither a WASM binary nor valid WAT text: {0}")]
    Parse(String),
    #[error("module does not validate or compile: {0}")]
    Compile(String),
    #[error("module imports {module}.{name}, which is outside the host interface: {reason}")]
    ForbiddenImport {
        module: String,
        name: String,
        reason: String,
    },
    #[error("module imports {module}.{name} as {found}, but the host defines it as {expected}")]
    ImportSignature {
        module: String,
        name: String,
        expected: String,
        found: String,
    },
    #[error("export `{name}`: {problem}")]
    Export { name: String, problem: String },
    #[error("custom section `lppsp.reduce`: {0}")]
    Reducer(String),
    #[error("wasm engine: {0}")]
    Engine(String),
}

/// A loaded module: compiled, imports resolved, reducer known.
struct Loaded {
    pre: InstancePre<Host>,
    reducer: Reducer,
}

/// Advances the engine epoch every tick until dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                // Ends when the executor drops the sender.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            // The thread only sleeps and ticks; a panic there is not ours to
            // re-raise in a destructor.
            let _ = t.join();
        }
    }
}

/// The WASM executor. Cheap to share: every method takes `&self`.
pub struct WasmExecutor {
    engine: Engine,
    linker: Linker<Host>,
    config: WasmConfig,
    cache: Mutex<Lru<Loaded>>,
    /// Held while compiling, so that one module is compiled once even when
    /// loaded from several threads at once.
    compile_lock: Mutex<()>,
    compilations: AtomicU64,
    _ticker: Ticker,
}

impl std::fmt::Debug for WasmExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmExecutor")
            .field("config", &self.config)
            .field("modules", &self.len())
            .field("compilations", &self.compilations())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent across a panic elsewhere (every
    // update is a single insert or read), so a poisoned lock is usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn engine_error(e: impl std::fmt::Display) -> WasmError {
    WasmError::Engine(e.to_string())
}

impl WasmExecutor {
    /// An executor with the default [`WasmConfig`].
    pub fn new() -> Result<Self, WasmError> {
        Self::with_config(WasmConfig::default())
    }

    /// An executor with `config`; starts its epoch ticker thread.
    pub fn with_config(config: WasmConfig) -> Result<Self, WasmError> {
        let mut c = Config::new();
        c.cranelift_opt_level(OptLevel::Speed)
            .consume_fuel(true)
            .epoch_interruption(true)
            // One memory per module, so the memory cap is one number.
            .wasm_multi_memory(false)
            // Same results on every peer's CPU.
            .relaxed_simd_deterministic(true);
        let engine = Engine::new(&c).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        host::define(&mut linker).map_err(engine_error)?;
        let ticker = Ticker::start(
            engine.clone(),
            config.epoch_tick.max(Duration::from_millis(1)),
        )
        .map_err(engine_error)?;
        Ok(Self {
            cache: Mutex::new(Lru::new(config.cache_modules, config.cache_bytes)),
            engine,
            linker,
            config,
            compile_lock: Mutex::new(()),
            compilations: AtomicU64::new(0),
            _ticker: ticker,
        })
    }

    /// The settings.
    pub fn config(&self) -> &WasmConfig {
        &self.config
    }

    /// Loads a module (binary or WAT text): checks it against the host
    /// interface, compiles it, and caches it under the SHA-256 of `bytes`
    /// as given. Loading cached bytes again compiles nothing.
    pub fn load(&self, bytes: &[u8]) -> Result<ModuleId, WasmError> {
        if bytes.len() > self.config.max_module_bytes {
            return Err(WasmError::TooLarge {
                size: bytes.len(),
                max: self.config.max_module_bytes,
            });
        }
        let id = ModuleId::of(bytes);
        if lock(&self.cache).get(&id).is_some() {
            return Ok(id);
        }
        let _compiling = lock(&self.compile_lock);
        // Another thread may have compiled it while this one waited.
        if lock(&self.cache).contains(&id) {
            return Ok(id);
        }
        let wasm = wat::parse_bytes(bytes).map_err(|e| WasmError::Parse(e.to_string()))?;
        let reducer = read_reducer(&wasm)?;
        let module = Module::from_binary(&self.engine, &wasm)
            .map_err(|e| WasmError::Compile(format!("{e:#}")))?;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        check_imports(&module)?;
        check_exports(&module, reducer)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| WasmError::Compile(format!("{e:#}")))?;
        lock(&self.cache).insert(id, Arc::new(Loaded { pre, reducer }), bytes.len());
        Ok(id)
    }

    /// Whether module `id` is loaded (and not evicted).
    pub fn contains(&self, id: &ModuleId) -> bool {
        lock(&self.cache).contains(id)
    }

    /// The reducer module `id` named, if it is loaded.
    pub fn reducer(&self, id: &ModuleId) -> Option<Reducer> {
        lock(&self.cache).get(id).map(|l| l.reducer)
    }

    /// Modules loaded now.
    pub fn len(&self) -> usize {
        lock(&self.cache).len()
    }

    /// Whether no module is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Modules compiled since this executor was built (cache hits do not
    /// compile).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    fn loaded(&self, kernel: &KernelName) -> Option<Arc<Loaded>> {
        let id = parse_kernel_name(kernel)?;
        lock(&self.cache).get(&id)
    }

    /// Runs export `entry` of `loaded` as a command on `input`.
    fn execute(
        &self,
        loaded: &Loaded,
        entry: &str,
        input: &[u8],
        seed: u64,
        limits: &TaskLimits,
        cancel: &CancelFlag,
    ) -> Result<TaskOutput, TaskError> {
        if cancel.is_cancelled() {
            return Err(TaskError::Cancelled);
        }
        let limiter = Limiter {
            memory_cap: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            table_cap: MAX_TABLE_ELEMENTS,
            halt: None,
        };
        let host = Host::new(
            input.to_vec(),
            self.config.max_output_bytes,
            self.config.max_stderr_bytes,
            seed,
            limiter,
        );
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        // Unmetered still counts, from 2^64 - 1, so fuel use is reported.
        let fuel = limits.fuel.or(self.config.default_fuel).unwrap_or(u64::MAX);
        store.set_fuel(fuel).map_err(internal)?;

        // Checked on every epoch tick: cancel first, then the wall clock.
        let start = Instant::now();
        let wall = limits.wall;
        let flag = cancel.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let halt = if flag.is_cancelled() {
                Halt::Cancelled
            } else if start.elapsed() >= wall {
                Halt::Timeout
            } else {
                return Ok(UpdateDeadline::Continue(1));
            };
            ctx.data_mut().halt = Some(halt);
            Err(Error::msg(format!("{halt:?}")))
        });

        let outcome = loaded.pre.instantiate(&mut store).and_then(|instance| {
            instance
                .get_typed_func::<(), ()>(&mut store, entry)?
                .call(&mut store, ())
        });
        let used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let host = store.into_data();
        let halt = host.halt();
        let error = match outcome {
            Err(e) if halt != Some(Halt::Exit(0)) => e,
            // A return from the entry point, or proc_exit(0).
            _ => {
                return Ok(TaskOutput {
                    result: host.stdout,
                    fuel: Some(used),
                })
            }
        };
        let text = stderr_text(&host);
        let stderr = text
            .as_deref()
            .map_or_else(String::new, |t| format!("; stderr: {t}"));
        match halt {
            // The kernel's own message is the whole explanation.
            Some(Halt::Exit(EXIT_BAD_INPUT)) => {
                Err(TaskError::BadInput(text.unwrap_or_else(|| {
                    format!("the kernel exited with code {EXIT_BAD_INPUT} (bad input)")
                })))
            }
            Some(Halt::Exit(code)) => Err(TaskError::Failed(format!(
                "exited with code {code}{stderr}"
            ))),
            Some(Halt::Timeout) => Err(TaskError::Timeout(wall)),
            Some(Halt::Cancelled) => Err(TaskError::Cancelled),
            Some(Halt::MemoryLimit) => Err(TaskError::MemoryLimit(limits.memory_bytes)),
            Some(Halt::TableLimit) => Err(TaskError::Failed(format!(
                "table limit of {MAX_TABLE_ELEMENTS} elements exceeded{stderr}"
            ))),
            Some(Halt::OutputLimit) => Err(TaskError::Failed(format!(
                "output limit of {} bytes exceeded on stdout{stderr}",
                self.config.max_output_bytes
            ))),
            None => match error.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => Err(TaskError::FuelExhausted(fuel)),
                Some(trap) => Err(TaskError::Failed(format!("{trap}{stderr}"))),
                None => Err(TaskError::Failed(format!("{error}{stderr}"))),
            },
        }
    }
}

fn internal(e: Error) -> TaskError {
    TaskError::Failed(format!("wasm engine: {e}"))
}

/// What the guest wrote to stderr (lossy UTF-8, trailing space trimmed),
/// if anything.
fn stderr_text(host: &Host) -> Option<String> {
    let text = String::from_utf8_lossy(&host.stderr);
    let text = text.trim_end();
    if text.is_empty() {
        return None;
    }
    let more = if host.stderr_truncated {
        " [truncated]"
    } else {
        ""
    };
    Some(format!("{text}{more}"))
}

/// Reads the module's reducer from its `lppsp.reduce` custom section.
fn read_reducer(wasm: &[u8]) -> Result<Reducer, WasmError> {
    use wasmtime::wasmparser::{Parser, Payload};
    let mut found: Option<Reducer> = None;
    for payload in Parser::new(0).parse_all(wasm) {
        // Malformed modules are left for the compiler to report in full.
        let Ok(Payload::CustomSection(section)) = payload else {
            continue;
        };
        if section.name() != REDUCE_SECTION {
            continue;
        }
        if found.is_some() {
            return Err(WasmError::Reducer("appears more than once".into()));
        }
        let name = std::str::from_utf8(section.data())
            .map_err(|_| WasmError::Reducer("is not UTF-8".into()))?;
        found = Some(name.trim().parse().map_err(WasmError::Reducer)?);
    }
    Ok(found.unwrap_or(Reducer::Concat))
}

fn val_ty(v: &ValType) -> Option<Ty> {
    match v {
        ValType::I32 => Some(Ty::I32),
        ValType::I64 => Some(Ty::I64),
        _ => None,
    }
}

fn render_func_type(ft: &FuncType) -> String {
    let list = |tys: Vec<String>| tys.join(", ");
    format!(
        "({}) -> ({})",
        list(ft.params().map(|t| t.to_string()).collect()),
        list(ft.results().map(|t| t.to_string()).collect())
    )
}

fn kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "function",
        ExternType::Global(_) => "global",
        ExternType::Table(_) => "table",
        ExternType::Memory(_) => "memory",
        ExternType::Tag(_) => "tag",
    }
}

/// Refuses any import outside [`host::HOST_FNS`], or with another type.
fn check_imports(module: &Module) -> Result<(), WasmError> {
    for import in module.imports() {
        let (m, name) = (import.module(), import.name());
        let forbidden = |reason: String| WasmError::ForbiddenImport {
            module: m.to_string(),
            name: name.to_string(),
            reason,
        };
        let allowed = || host_functions().collect::<Vec<_>>().join(", ");
        if m != WASI_MODULE {
            return Err(forbidden(format!(
                "only module {WASI_MODULE} may be imported, and only its functions {}",
                allowed()
            )));
        }
        let Some(def) = host::host_fn(name) else {
            return Err(forbidden(format!(
                "{WASI_MODULE} offers only the functions {}",
                allowed()
            )));
        };
        let ty = import.ty();
        let ExternType::Func(ft) = &ty else {
            return Err(forbidden(format!(
                "it is a {} import; the host offers only functions",
                kind(&ty)
            )));
        };
        let params: Vec<Option<Ty>> = ft.params().map(|t| val_ty(&t)).collect();
        let results: Vec<Option<Ty>> = ft.results().map(|t| val_ty(&t)).collect();
        let same = |got: &[Option<Ty>], want: &[Ty]| {
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| *g == Some(*w))
        };
        if !same(&params, def.params) || !same(&results, def.results) {
            return Err(WasmError::ImportSignature {
                module: m.to_string(),
                name: name.to_string(),
                expected: host::render_sig(def.params, def.results),
                found: render_func_type(ft),
            });
        }
    }
    Ok(())
}

fn check_command_export(module: &Module, name: &str) -> Result<(), WasmError> {
    let problem = match module.get_export(name) {
        None => "missing: a module is a WASI command and must export it".to_string(),
        Some(ExternType::Func(ft)) if ft.params().len() == 0 && ft.results().len() == 0 => {
            return Ok(())
        }
        Some(ExternType::Func(ft)) => format!("is {}, must be () -> ()", render_func_type(&ft)),
        Some(other) => format!("is a {}, must be a function () -> ()", kind(&other)),
    };
    Err(WasmError::Export {
        name: name.to_string(),
        problem,
    })
}

/// Requires the entry point, the memory the host functions need, and the
/// guest reducer when the module names one.
fn check_exports(module: &Module, reducer: Reducer) -> Result<(), WasmError> {
    check_command_export(module, ENTRY_EXPORT)?;
    if reducer == Reducer::Guest {
        check_command_export(module, GUEST_REDUCE_EXPORT)?;
    }
    let needs_memory = module
        .imports()
        .find(|i| host::host_fn(i.name()).is_some_and(|f| f.uses_memory));
    if let Some(user) = needs_memory {
        if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
            return Err(WasmError::Export {
                name: "memory".into(),
                problem: format!(
                    "missing: {} reads or writes guest memory, so the module must export its memory as `memory`",
                    user.name()
                ),
            });
        }
    }
    Ok(())
}

impl Executor for WasmExecutor {
    fn name(&self) -> &str {
        NAME
    }

    fn has_kernel(&self, kernel: &KernelName) -> bool {
        parse_kernel_name(kernel).is_some_and(|id| self.contains(&id))
    }

    fn run(
        &self,
        spec: &TaskSpec<'_>,
        limits: &TaskLimits,
        cancel: &CancelFlag,
    ) -> Result<TaskOutput, TaskError> {
        let loaded = self
            .loaded(spec.kernel)
            .ok_or_else(|| TaskError::unknown_kernel(spec.kernel))?;
        let seed = host::random_seed(spec.job.0, spec.task);
        self.execute(&loaded, ENTRY_EXPORT, spec.input, seed, limits, cancel)
    }

    fn load_module(&self, code: &[u8]) -> Result<KernelName, TaskError> {
        self.load(code)
            .map(|id| kernel_name(&id))
            .map_err(|e| TaskError::Failed(e.to_string()))
    }

    fn takes_modules(&self) -> bool {
        true
    }

    fn reduce(&self, kernel: &KernelName, results: &[&[u8]]) -> Result<Vec<u8>, TaskError> {
        let loaded = self
            .loaded(kernel)
            .ok_or_else(|| TaskError::unknown_kernel(kernel))?;
        let name = kernel.as_str();
        match loaded.reducer {
            Reducer::Concat => Ok(reduce::concat(results)),
            Reducer::SumU64 => reduce::sum_u64(name, results),
            Reducer::W2 => reduce::w2(name, results),
            Reducer::Guest => {
                let input = reduce::guest_input(name, results)?;
                // Reduces are not tasks: a fixed seed (job 0, task 2^64 - 1).
                let seed = host::random_seed(0, u64::MAX);
                let limits = self.config.reduce_limits;
                self.execute(
                    &loaded,
                    GUEST_REDUCE_EXPORT,
                    &input,
                    seed,
                    &limits,
                    &CancelFlag::new(),
                )
                .map(|out| out.result)
            }
        }
    }

    fn render(&self, kernel: &KernelName, result: &[u8]) -> String {
        let reducer = self.loaded(kernel).map_or(Reducer::Concat, |l| l.reducer);
        reduce::render(reducer, result).unwrap_or_else(|| match std::str::from_utf8(result) {
            Ok(s) => s.to_string(),
            Err(_) => format!("{} bytes", result.len()),
        })
    }
}
