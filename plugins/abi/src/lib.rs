//! The stable plugin interface of lppsp (LPPSP/1.0 nodes).
//!
//! A scheduler, balancer or executor can live in a dynamic library (a Rust
//! `cdylib`) that a node loads at start from its config:
//!
//! ```toml
//! [scheduler]
//! kind = "plugin"
//! path = "plugins/libfastest_first.so"
//! ```
//!
//! This crate is everything a plugin author depends on: it does not depend
//! on any other crate of the node, so a plugin builds against a small,
//! versioned surface. It holds
//!
//! - FFI-safe mirrors of the node's component types ([`PlacementRequest`],
//!   [`Plan`], [`MarketSample`], [`TaskSpec`], ...), made of abi_stable's
//!   `R*` types;
//! - the traits an author implements: [`Scheduler`], [`Balancer`],
//!   [`Executor`], plain Rust with those types;
//! - the root module [`PluginMod`] a plugin exports: [`ABI_VERSION`], the
//!   plugin's name, version, kind and description, and its constructor;
//! - the macros that export it: [`export_scheduler!`],
//!   [`export_balancer!`], [`export_executor!`].
//!
//! The conversions to and from the node's own types live in the host crate
//! (`lppsp-plugin-host`), which depends on both; keeping them out of here is
//! what lets a plugin build without the node.
//!
//! **Versions and checks.** When a node loads a plugin, abi_stable checks
//! that the library was built against a compatible version of this crate
//! (same major version; while it is 0.x, a minor version at least the
//! node's) and that the layout of every type reachable from [`PluginMod`]
//! is the one the node expects.
//! Then the node checks [`ABI_VERSION`], which this crate bumps whenever the
//! meaning of the interface changes without its layout changing (units,
//! rules), and the plugin's kind.
//!
//! **Panics.** The macros wrap the author's type so that every call from
//! the node runs under `catch_unwind` inside the plugin; a panic comes back
//! as an error for that one call (an empty plan, no proposal, a failed
//! task) and the node keeps running. Plugins must therefore be built with
//! `panic = "unwind"` (the default).
//!
//! See docs/plugins.md for a step-by-step guide and a template crate.

// `PluginMod_Ref` and `Ffi*_TO` are abi_stable's names for the types its
// macros generate; the lint cannot be silenced on the generated items alone.
#![allow(non_camel_case_types)]

pub mod ffi;
pub mod types;

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RResult, RStr, RString};
use abi_stable::StableAbi;

pub use abi_stable::std_types;
pub use ffi::{
    BalancerBox, CancelRef, Component, ExecutorBox, FfiBalancer, FfiBalancer_TO, FfiCancel,
    FfiCancel_TO, FfiExecutor, FfiExecutor_TO, FfiScheduler, FfiScheduler_TO, SchedulerBox,
};
pub use types::*;

/// The version of the plugin interface's meaning. A node loads only
/// plugins that declare the same number.
pub const ABI_VERSION: u32 = 1;

/// The version of this crate, which abi_stable compares at load time.
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a plugin provides.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Scheduler,
    Balancer,
    Executor,
}

impl PluginKind {
    /// The config section the kind goes in: `scheduler`, `balancer`, `executor`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Scheduler => "scheduler",
            PluginKind::Balancer => "balancer",
            PluginKind::Executor => "executor",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The root module a plugin exports.
///
/// A prefix type: later versions of this crate may add fields after
/// `new` without breaking plugins built against this one.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginMod_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The [`ABI_VERSION`] the plugin was built with.
    pub abi_version: u32,
    pub kind: PluginKind,
    /// The plugin's name, shown in the node's status and logs.
    pub name: RStr<'static>,
    /// The plugin's own version (its crate version).
    pub version: RStr<'static>,
    /// One line on what it does.
    pub description: RStr<'static>,
    /// Builds one instance from its `[<section>.options]` table, given as
    /// TOML text (empty when there are no options). Returns the component
    /// of the plugin's kind, or a message saying what is wrong.
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(options: RStr<'_>) -> RResult<Component, RString>,
}

impl RootModule for PluginMod_Ref {
    abi_stable::declare_root_module_statics! {PluginMod_Ref}
    const BASE_NAME: &'static str = "lppsp_plugin";
    const NAME: &'static str = "lppsp-plugin-abi";
    const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
}

/// A plugin's name, version and description, for the export macros.
#[derive(Debug, Clone, Copy)]
pub struct PluginInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
}

impl PluginMod {
    fn with(kind: PluginKind, info: PluginInfo, new: NewFn) -> Self {
        Self {
            abi_version: ABI_VERSION,
            kind,
            name: RStr::from_str(info.name),
            version: RStr::from_str(info.version),
            description: RStr::from_str(info.description),
            new,
        }
    }
    /// The root module of a scheduler plugin.
    pub fn scheduler<T: Scheduler>(info: PluginInfo) -> Self {
        Self::with(PluginKind::Scheduler, info, ffi::new_scheduler::<T>)
    }
    /// The root module of a balancer plugin.
    pub fn balancer<T: Balancer>(info: PluginInfo) -> Self {
        Self::with(PluginKind::Balancer, info, ffi::new_balancer::<T>)
    }
    /// The root module of an executor plugin.
    pub fn executor<T: Executor>(info: PluginInfo) -> Self {
        Self::with(PluginKind::Executor, info, ffi::new_executor::<T>)
    }
}

type NewFn = extern "C" fn(RStr<'_>) -> RResult<Component, RString>;

/// Decides where a job's tasks run. Same contract as the node's own
/// `Scheduler`: synchronous, and the plan should depend only on the
/// requests seen.
pub trait Scheduler: Send + 'static {
    /// Builds the scheduler from its `[scheduler.options]`, as TOML text.
    fn new(options: &str) -> Result<Self, String>
    where
        Self: Sized;
    /// Places as many pending tasks as the request allows. Placements must
    /// name pending tasks and the request's peers; the host drops others.
    fn place(&mut self, request: &PlacementRequest<'_>) -> Plan;
}

/// Watches the market and proposes prices. Same contract as the node's
/// own `Balancer`.
pub trait Balancer: Send + 'static {
    /// Builds the balancer from its `[balancer.options]`, as TOML text.
    fn new(options: &str) -> Result<Self, String>
    where
        Self: Sized;
    /// Takes one sample; returns a proposal when the price should change.
    fn on_sample(&mut self, sample: &MarketSample) -> Option<PriceProposal>;
    /// A price was committed by the network.
    fn on_commit(&mut self, _price_micros: u64) {}
    /// One line on the balancer's state, for status output (empty: the
    /// node shows the plugin's name).
    fn describe(&self) -> String {
        String::new()
    }
}

/// Runs kernels. Same contract as the node's own `Executor`: called from
/// worker threads, several tasks at once.
pub trait Executor: Send + Sync + 'static {
    /// Builds the executor from its `[executor.options]`, as TOML text.
    fn new(options: &str) -> Result<Self, String>
    where
        Self: Sized;
    /// Whether this executor can run `kernel`.
    fn has_kernel(&self, kernel: &str) -> bool;
    /// Runs one task; check `cancel` between units of work.
    fn run(
        &self,
        spec: &TaskSpec<'_>,
        limits: &TaskLimits,
        cancel: &Cancel<'_>,
    ) -> Result<TaskOutput, TaskError>;
    /// Integrates task results (ordered by task index) into the job result.
    fn reduce(&self, kernel: &str, results: &[&[u8]]) -> Result<Vec<u8>, TaskError>;
    /// Renders a job result for people.
    fn render(&self, _kernel: &str, result: &[u8]) -> String {
        match std::str::from_utf8(result) {
            Ok(s) => s.to_string(),
            Err(_) => format!("{} bytes", result.len()),
        }
    }
}

/// The node's request to stop a running task (Cancel frame, time limit).
pub struct Cancel<'a>(CancelRef<'a>);

impl<'a> Cancel<'a> {
    pub fn new(flag: CancelRef<'a>) -> Self {
        Self(flag)
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// Exports `$module`, an expression of type [`PluginMod`] evaluated once
/// when the library is loaded, as the library's root module.
///
/// This is what `#[abi_stable::export_root_module]` generates, written
/// out so that a plugin needs no direct dependency on abi_stable (the
/// attribute's expansion names `::abi_stable`). The static's name is the
/// one abi_stable looks up; a compile-time check in this crate keeps the
/// two equal.
#[macro_export]
macro_rules! export_plugin_module {
    ($module:expr) => {
        #[doc(hidden)]
        fn __lppsp_plugin_root_module() -> $crate::PluginMod_Ref {
            $crate::__private::leak($module)
        }

        #[doc(hidden)]
        #[unsafe(no_mangle)]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn erased() -> $crate::__private::RootModuleResult {
                $crate::__private::call_root_module_loader(__lppsp_plugin_root_module)
            }
            $crate::__private::header(erased)
        };
    };
}

/// Exports a [`Scheduler`] type as the library's plugin.
///
/// ```ignore
/// lppsp_plugin_abi::export_scheduler!(FastestFirst, "fastest-first", "highest power first");
/// ```
#[macro_export]
macro_rules! export_scheduler {
    ($ty:ty, $name:expr, $description:expr $(,)?) => {
        $crate::export_plugin_module!($crate::PluginMod::scheduler::<$ty>($crate::PluginInfo {
            name: $name,
            version: env!("CARGO_PKG_VERSION"),
            description: $description,
        }));
    };
}

/// Exports a [`Balancer`] type as the library's plugin.
#[macro_export]
macro_rules! export_balancer {
    ($ty:ty, $name:expr, $description:expr $(,)?) => {
        $crate::export_plugin_module!($crate::PluginMod::balancer::<$ty>($crate::PluginInfo {
            name: $name,
            version: env!("CARGO_PKG_VERSION"),
            description: $description,
        }));
    };
}

/// Exports an [`Executor`] type as the library's plugin.
#[macro_export]
macro_rules! export_executor {
    ($ty:ty, $name:expr, $description:expr $(,)?) => {
        $crate::export_plugin_module!($crate::PluginMod::executor::<$ty>($crate::PluginInfo {
            name: $name,
            version: env!("CARGO_PKG_VERSION"),
            description: $description,
        }));
    };
}

/// What the export macros expand to; not part of the stable interface.
#[doc(hidden)]
pub mod __private {
    use abi_stable::library::CheckTypeLayout;
    pub use abi_stable::library::{LibHeader, RootModuleResult};
    use abi_stable::prefix_type::PrefixTypeTrait;

    use crate::{PluginMod, PluginMod_Ref};

    /// The symbol abi_stable looks up; `export_plugin_module!` spells it out.
    const EXPORTED: &str = "_1as_0lib_1header_0root_bmodule_bloader";

    const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    // Should a new abi_stable rename its symbol, this crate stops building
    // rather than produce plugins no node can find.
    const _: () = assert!(same(abi_stable::library::ROOT_MODULE_LOADER_NAME, EXPORTED));

    pub fn leak(module: PluginMod) -> PluginMod_Ref {
        module.leak_into_prefix()
    }

    pub fn call_root_module_loader(f: fn() -> PluginMod_Ref) -> RootModuleResult {
        abi_stable::library::__call_root_module_loader(f)
    }

    /// The library header, with the layout of [`PluginMod`] recorded so
    /// that the node can check it.
    pub const fn header(constructor: extern "C" fn() -> RootModuleResult) -> LibHeader {
        // SAFETY: `constructor` returns the module built by
        // `call_root_module_loader` from a `PluginMod_Ref`, which is what
        // `from_constructor::<PluginMod_Ref>` requires.
        unsafe { LibHeader::from_constructor::<PluginMod_Ref>(constructor, CheckTypeLayout::Yes) }
    }
}
