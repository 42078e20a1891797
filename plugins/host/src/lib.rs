//! Loads lppsp plugins and adapts them to the node's component traits.
//!
//! A section with `kind = "plugin"` names a dynamic library built against
//! `lppsp-plugin-abi`. [`load`] opens it and checks, in this order, each
//! failure being its own [`PluginError`] that names the path:
//!
//! 1. the file exists ([`PluginError::NotFound`]) and is a library the
//!    system can load ([`PluginError::NotALibrary`]);
//! 2. it exports an abi_stable root module ([`PluginError::NotAPlugin`]);
//! 3. abi_stable's checks: the library's abi_stable is compatible
//!    ([`PluginError::AbiStable`]), it was built against a compatible
//!    version of `lppsp-plugin-abi` ([`PluginError::VersionMismatch`]) and
//!    the layout of every type it exchanges with the node is the one the
//!    node expects ([`PluginError::LayoutMismatch`]);
//! 4. its declared [`lppsp_plugin_abi::ABI_VERSION`] is the node's
//!    ([`PluginError::AbiVersion`]);
//!
//! and, when a component is built from it, that it is of the kind the
//! section wants ([`PluginError::WrongKind`]) and that its constructor
//! accepts the options ([`PluginError::Build`]).
//!
//! [`register`] makes a [`Registry`] load plugins through this crate.
//!
//! Libraries are never unloaded: abi_stable leaks them on purpose, since
//! code and statics of a plugin may be referenced for as long as the
//! process lives. Loading the same file again is cheap (the system loader
//! returns the same handle). A plugin is native code running with the
//! node's rights; only load libraries you would run as programs.

mod adapter;
mod convert;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::std_types::{RResult, RStr};
use lppsp_core::component::{Balancer, Executor, Scheduler};
use lppsp_core::registry::{Options, PluginLoader, Registry};
use lppsp_plugin_abi::{Component, PluginKind, PluginMod_Ref, ABI_VERSION, CRATE_VERSION};
use tracing::{debug, info};

pub use adapter::{Origin, PluginBalancer, PluginExecutor, PluginScheduler};
pub use lppsp_plugin_abi as abi;

/// A plugin that could not be loaded or built. Every message starts with
/// the library's path.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{}: no such file", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: cannot read it: {message}", path.display())]
    Unreadable { path: PathBuf, message: String },
    #[error("{}: not a loadable library: {message}", path.display())]
    NotALibrary { path: PathBuf, message: String },
    #[error(
        "{}: not an lppsp plugin: the library exports no plugin root module \
         (a plugin exports one with lppsp_plugin_abi::export_scheduler!, \
         export_balancer! or export_executor!)",
        path.display()
    )]
    NotAPlugin { path: PathBuf },
    #[error(
        "{}: built with an abi_stable this node cannot check; \
         rebuild it against lppsp-plugin-abi {host}",
        path.display()
    )]
    AbiStable { path: PathBuf, host: String },
    #[error(
        "{}: version mismatch: built against lppsp-plugin-abi {plugin}, \
         this node has {host}; rebuild it against lppsp-plugin-abi {host}",
        path.display()
    )]
    VersionMismatch {
        path: PathBuf,
        plugin: String,
        host: String,
    },
    #[error(
        "{}: layout mismatch: the types it exchanges with the node differ from \
         this node's lppsp-plugin-abi {host}; rebuild it against that version \
         ({detail})",
        path.display()
    )]
    LayoutMismatch {
        path: PathBuf,
        host: String,
        detail: String,
    },
    #[error(
        "{}: plugin ABI version mismatch: the plugin declares ABI version {plugin}, \
         this node speaks ABI version {host}; rebuild it against lppsp-plugin-abi {crate_version}",
        path.display()
    )]
    AbiVersion {
        path: PathBuf,
        plugin: u32,
        host: u32,
        crate_version: String,
    },
    #[error("{}: the plugin failed to load: {message}", path.display())]
    Init { path: PathBuf, message: String },
    #[error(
        "{}: plugin {name:?} is a {actual} plugin, not a {expected} plugin",
        path.display()
    )]
    WrongKind {
        path: PathBuf,
        name: String,
        expected: PluginKind,
        actual: PluginKind,
    },
    #[error("{}: plugin {name:?} could not be built: {message}", path.display())]
    Build {
        path: PathBuf,
        name: String,
        message: String,
    },
}

/// What a loaded plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The library, as loaded (absolute).
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub description: String,
    /// The [`ABI_VERSION`] it declares.
    pub abi_version: u32,
    /// The `lppsp-plugin-abi` version it was built against.
    pub interface_version: String,
}

impl fmt::Display for PluginInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "path:        {}", self.path.display())?;
        writeln!(f, "name:        {}", self.name)?;
        writeln!(f, "version:     {}", self.version)?;
        writeln!(f, "kind:        {}", self.kind)?;
        writeln!(f, "description: {}", self.description)?;
        write!(
            f,
            "abi:         version {} (lppsp-plugin-abi {})",
            self.abi_version, self.interface_version
        )
    }
}

/// A loaded plugin library.
#[derive(Clone)]
pub struct Plugin {
    info: PluginInfo,
    module: PluginMod_Ref,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin").field("info", &self.info).finish()
    }
}

/// The first lines of abi_stable's layout report, on one line: enough to
/// see which type differs; the whole report goes to the debug log.
fn summary(report: &str) -> String {
    const MAX: usize = 400;
    let mut s = report.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" ...");
    }
    s
}

/// `path` as given (for the message), `opened` as handed to the system
/// loader (absolute), whose messages start with it.
fn classify(path: &Path, opened: &Path, e: LibraryError) -> PluginError {
    let path = path.to_path_buf();
    let host = CRATE_VERSION.to_string();
    match e {
        LibraryError::OpenError { err, .. } => {
            // dlerror() starts with the path; it is in our message already.
            let text = err.to_string();
            let prefix = format!("{}: ", opened.display());
            let message = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
            PluginError::NotALibrary { path, message }
        }
        LibraryError::GetSymbolError { .. } => PluginError::NotAPlugin { path },
        LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => {
            PluginError::AbiStable { path, host }
        }
        LibraryError::ParseVersionError(e) => PluginError::VersionMismatch {
            path,
            plugin: format!("(unreadable: {e})"),
            host,
        },
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => PluginError::VersionMismatch {
            path,
            plugin: actual_version.to_string(),
            host: expected_version.to_string(),
        },
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            debug!(path = %path.display(), "layout mismatch:\n{report}");
            // The report lists both layouts in full, then what differs,
            // each difference starting with "Error:"; that part is the one
            // a person needs.
            let differences = report.find("Error:").map_or(&report[..], |i| &report[i..]);
            PluginError::LayoutMismatch {
                path,
                host,
                detail: summary(differences),
            }
        }
        LibraryError::RootModule { err, .. } => PluginError::Init {
            path,
            message: summary(&err.to_string()),
        },
        LibraryError::Many(list) => match list.into_iter().next() {
            Some(first) => classify(&path, opened, first),
            None => PluginError::Init {
                path,
                message: "unknown error".into(),
            },
        },
        // LibraryError is not exhaustive across abi_stable versions.
        #[allow(unreachable_patterns)]
        other => PluginError::Init {
            path,
            message: summary(&other.to_string()),
        },
    }
}

/// Loads the plugin library at `path` and checks it (see the crate docs).
pub fn load(path: &Path) -> Result<Plugin, PluginError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PluginError::NotFound {
            path: path.to_path_buf(),
        },
        _ => PluginError::Unreadable {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    })?;
    if meta.is_dir() {
        return Err(PluginError::NotALibrary {
            path: path.to_path_buf(),
            message: "it is a directory".into(),
        });
    }
    // dlopen searches the library path for a name without a slash; an
    // absolute path makes it open exactly this file.
    let abs = std::fs::canonicalize(path).map_err(|e| PluginError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let header = lib_header_from_path(&abs).map_err(|e| classify(path, &abs, e))?;
    let interface_version = header.version_strings().to_string();
    let module = header
        .init_root_module::<PluginMod_Ref>()
        .map_err(|e| classify(path, &abs, e))?;
    let abi_version = module.abi_version();
    if abi_version != ABI_VERSION {
        return Err(PluginError::AbiVersion {
            path: path.to_path_buf(),
            plugin: abi_version,
            host: ABI_VERSION,
            crate_version: CRATE_VERSION.to_string(),
        });
    }
    let info = PluginInfo {
        path: abs,
        name: module.name().to_string(),
        version: module.version().to_string(),
        kind: module.kind(),
        description: module.description().to_string(),
        abi_version,
        interface_version,
    };
    debug!(plugin = %info.name, path = %info.path.display(), "plugin library loaded");
    Ok(Plugin { info, module })
}

impl Plugin {
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn origin(&self) -> Origin {
        Origin {
            name: self.info.name.clone(),
            path: self.info.path.clone(),
        }
    }

    fn error(&self, message: String) -> PluginError {
        PluginError::Build {
            path: self.info.path.clone(),
            name: self.info.name.clone(),
            message,
        }
    }

    /// Calls the plugin's constructor for a component of kind `want`.
    fn build(&self, want: PluginKind, options: &Options) -> Result<Component, PluginError> {
        if self.info.kind != want {
            return Err(PluginError::WrongKind {
                path: self.info.path.clone(),
                name: self.info.name.clone(),
                expected: want,
                actual: self.info.kind,
            });
        }
        // Options cross as TOML text, so the interface needs no value type
        // of its own and an author parses them with any TOML reader.
        let text = toml::to_string(options)
            .map_err(|e| self.error(format!("options cannot be written as TOML: {e}")))?;
        match (self.module.new())(RStr::from_str(&text)) {
            RResult::ROk(c) => {
                info!(
                    plugin = %self.info.name, version = %self.info.version, kind = %want,
                    path = %self.info.path.display(), "plugin component built"
                );
                Ok(c)
            }
            RResult::RErr(message) => Err(self.error(message.into_string())),
        }
    }

    fn mismatch(&self, want: PluginKind) -> PluginError {
        self.error(format!(
            "its constructor returned a component other than a {want}"
        ))
    }

    /// Builds the plugin's scheduler with `options`.
    pub fn scheduler(&self, options: &Options) -> Result<Box<dyn Scheduler>, PluginError> {
        match self.build(PluginKind::Scheduler, options)? {
            Component::Scheduler(s) => Ok(Box::new(PluginScheduler::new(s, self.origin()))),
            _ => Err(self.mismatch(PluginKind::Scheduler)),
        }
    }

    /// Builds the plugin's balancer with `options`.
    pub fn balancer(&self, options: &Options) -> Result<Box<dyn Balancer>, PluginError> {
        match self.build(PluginKind::Balancer, options)? {
            Component::Balancer(b) => Ok(Box::new(PluginBalancer::new(b, self.origin()))),
            _ => Err(self.mismatch(PluginKind::Balancer)),
        }
    }

    /// Builds the plugin's executor with `options`.
    pub fn executor(&self, options: &Options) -> Result<Arc<dyn Executor>, PluginError> {
        match self.build(PluginKind::Executor, options)? {
            Component::Executor(e) => Ok(Arc::new(PluginExecutor::new(e, self.origin()))),
            _ => Err(self.mismatch(PluginKind::Executor)),
        }
    }
}

/// The [`PluginLoader`] the node's registry uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Loader;

impl PluginLoader for Loader {
    fn scheduler(&self, path: &Path, options: &Options) -> Result<Box<dyn Scheduler>, String> {
        load(path)
            .and_then(|p| p.scheduler(options))
            .map_err(|e| e.to_string())
    }
    fn balancer(&self, path: &Path, options: &Options) -> Result<Box<dyn Balancer>, String> {
        load(path)
            .and_then(|p| p.balancer(options))
            .map_err(|e| e.to_string())
    }
    fn executor(&self, path: &Path, options: &Options) -> Result<Arc<dyn Executor>, String> {
        load(path)
            .and_then(|p| p.executor(options))
            .map_err(|e| e.to_string())
    }
}

/// Lets `registry` build `kind = "plugin"` components through this crate.
pub fn register(registry: &mut Registry) {
    registry.set_plugin_loader(Loader);
}

#[cfg(test)]
mod tests;
