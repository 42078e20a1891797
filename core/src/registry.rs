//! The registry: maps a component name from the config to an implementation.
//!
//! Core defines the registry but registers nothing: the binary fills it with
//! the built-in crates, and with a [`PluginLoader`] for `kind = "plugin"`
//! (a component loaded from the library at the section's `path`), so core
//! depends on no implementation and links no loader.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::component::{Balancer, BoxFuture, Executor, Scheduler, Transport, TransportError};
use crate::config::{ComponentSection, PLUGIN_KIND};

/// A component that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no {what} named {name:?}; known: {known}")]
    Unknown {
        what: &'static str,
        name: String,
        known: String,
    },
    #[error("{what} {name:?}: {message}")]
    Build {
        what: &'static str,
        name: String,
        message: String,
    },
    /// A `kind = "plugin"` component that could not be loaded or built; the
    /// loader's message starts with the library's path.
    #[error("{what} plugin {message}")]
    Plugin { what: &'static str, message: String },
}

/// Options of one component, as given in its config section.
pub type Options = BTreeMap<String, toml::Value>;

/// What a transport is built from.
#[derive(Debug, Clone)]
pub struct TransportParams {
    pub listen: std::net::SocketAddr,
    pub identity: crate::config::IdentitySection,
    pub limits: crate::wire::Limits,
    pub options: Options,
}

type Factory<T> = Box<dyn Fn(&Options) -> Result<T, String> + Send + Sync>;
/// A transport being started.
pub type TransportStart = BoxFuture<'static, Result<Arc<dyn Transport>, TransportError>>;
type TransportFactory = Box<dyn Fn(TransportParams) -> TransportStart + Send + Sync>;

/// Builds schedulers, balancers and executors from dynamic libraries, for
/// sections with `kind = "plugin"`. Errors are one line that names the
/// library's path. (Transports are async and cannot be plugins; see
/// docs/plugins.md.)
pub trait PluginLoader: Send + Sync {
    fn scheduler(&self, path: &Path, options: &Options) -> Result<Box<dyn Scheduler>, String>;
    fn balancer(&self, path: &Path, options: &Options) -> Result<Box<dyn Balancer>, String>;
    fn executor(&self, path: &Path, options: &Options) -> Result<Arc<dyn Executor>, String>;
}

/// Named factories for each kind of component.
#[derive(Default)]
pub struct Registry {
    schedulers: BTreeMap<String, Factory<Box<dyn Scheduler>>>,
    balancers: BTreeMap<String, Factory<Box<dyn Balancer>>>,
    executors: BTreeMap<String, Factory<Arc<dyn Executor>>>,
    transports: BTreeMap<String, TransportFactory>,
    plugins: Option<Box<dyn PluginLoader>>,
}

fn unknown<T>(what: &'static str, name: &str, map: &BTreeMap<String, T>) -> RegistryError {
    RegistryError::Unknown {
        what,
        name: name.to_string(),
        known: map.keys().cloned().collect::<Vec<_>>().join(", "),
    }
}

fn build<T>(
    what: &'static str,
    map: &BTreeMap<String, Factory<T>>,
    section: &ComponentSection,
) -> Result<T, RegistryError> {
    let factory = map
        .get(&section.kind)
        .ok_or_else(|| unknown(what, &section.kind, map))?;
    factory(&section.options).map_err(|message| RegistryError::Build {
        what,
        name: section.kind.clone(),
        message,
    })
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register_scheduler(
        &mut self,
        name: &str,
        f: impl Fn(&Options) -> Result<Box<dyn Scheduler>, String> + Send + Sync + 'static,
    ) {
        self.schedulers.insert(name.to_string(), Box::new(f));
    }
    pub fn register_balancer(
        &mut self,
        name: &str,
        f: impl Fn(&Options) -> Result<Box<dyn Balancer>, String> + Send + Sync + 'static,
    ) {
        self.balancers.insert(name.to_string(), Box::new(f));
    }
    pub fn register_executor(
        &mut self,
        name: &str,
        f: impl Fn(&Options) -> Result<Arc<dyn Executor>, String> + Send + Sync + 'static,
    ) {
        self.executors.insert(name.to_string(), Box::new(f));
    }
    pub fn register_transport(
        &mut self,
        name: &str,
        f: impl Fn(TransportParams) -> BoxFuture<'static, Result<Arc<dyn Transport>, TransportError>>
            + Send
            + Sync
            + 'static,
    ) {
        self.transports.insert(name.to_string(), Box::new(f));
    }

    /// Lets sections with `kind = "plugin"` load their component from `path`.
    pub fn set_plugin_loader(&mut self, loader: impl PluginLoader + 'static) {
        self.plugins = Some(Box::new(loader));
    }

    /// Adds `plugin` to the known names of an unknown-kind error when
    /// plugins can be loaded.
    fn listing_plugin<T>(&self, result: Result<T, RegistryError>) -> Result<T, RegistryError> {
        result.map_err(|e| match e {
            RegistryError::Unknown { what, name, known } if self.plugins.is_some() => {
                let known = format!("{known}, {PLUGIN_KIND}");
                RegistryError::Unknown { what, name, known }
            }
            e => e,
        })
    }

    /// Builds a component: from the registered factory, or for
    /// `kind = "plugin"` with `load` from the library at `path`.
    fn component<T>(
        &self,
        what: &'static str,
        map: &BTreeMap<String, Factory<T>>,
        section: &ComponentSection,
        load: impl FnOnce(&dyn PluginLoader, &Path, &Options) -> Result<T, String>,
    ) -> Result<T, RegistryError> {
        if section.kind != PLUGIN_KIND {
            return self.listing_plugin(build(what, map, section));
        }
        let message = |m: &str| RegistryError::Build {
            what,
            name: section.kind.clone(),
            message: m.to_string(),
        };
        let loader = self
            .plugins
            .as_deref()
            .ok_or_else(|| message("this program cannot load plugins"))?;
        let path = section
            .path
            .as_deref()
            .ok_or_else(|| message("kind = \"plugin\" needs `path`, the plugin library"))?;
        load(loader, path, &section.options)
            .map_err(|message| RegistryError::Plugin { what, message })
    }

    pub fn scheduler(
        &self,
        section: &ComponentSection,
    ) -> Result<Box<dyn Scheduler>, RegistryError> {
        self.component("scheduler", &self.schedulers, section, |l, p, o| {
            l.scheduler(p, o)
        })
    }
    pub fn balancer(&self, section: &ComponentSection) -> Result<Box<dyn Balancer>, RegistryError> {
        self.component("balancer", &self.balancers, section, |l, p, o| {
            l.balancer(p, o)
        })
    }
    pub fn executor(&self, section: &ComponentSection) -> Result<Arc<dyn Executor>, RegistryError> {
        self.component("executor", &self.executors, section, |l, p, o| {
            l.executor(p, o)
        })
    }
    /// Starts the named transport.
    pub fn transport(
        &self,
        section: &ComponentSection,
        params: TransportParams,
    ) -> Result<TransportStart, RegistryError> {
        let f = self
            .transports
            .get(&section.kind)
            .ok_or_else(|| unknown("transport", &section.kind, &self.transports))?;
        Ok(f(params))
    }

    /// Checks that every component a config names is registered. Plugin
    /// components are loaded and built (then dropped), so that a bad
    /// library is reported before the node starts.
    pub fn check(&self, cfg: &crate::config::NodeConfig) -> Result<(), RegistryError> {
        if !self.transports.contains_key(&cfg.transport.kind) {
            return Err(unknown("transport", &cfg.transport.kind, &self.transports));
        }
        if cfg.scheduler.kind == PLUGIN_KIND {
            self.scheduler(&cfg.scheduler)?;
        } else if !self.schedulers.contains_key(&cfg.scheduler.kind) {
            let e = unknown("scheduler", &cfg.scheduler.kind, &self.schedulers);
            return self.listing_plugin(Err(e));
        }
        if cfg.balancer.kind == PLUGIN_KIND {
            self.balancer(&cfg.balancer)?;
        } else if !self.balancers.contains_key(&cfg.balancer.kind) {
            let e = unknown("balancer", &cfg.balancer.kind, &self.balancers);
            return self.listing_plugin(Err(e));
        }
        if cfg.executor.kind == PLUGIN_KIND {
            self.executor(&cfg.executor)?;
        } else if !self.executors.contains_key(&cfg.executor.kind) {
            let e = unknown("executor", &cfg.executor.kind, &self.executors);
            return self.listing_plugin(Err(e));
        }
        Ok(())
    }

    /// Registered names, per kind of component.
    pub fn names(&self) -> Vec<(&'static str, Vec<String>)> {
        let with_plugin = |map_keys: Vec<String>| {
            let mut names = map_keys;
            if self.plugins.is_some() {
                names.push(PLUGIN_KIND.to_string());
            }
            names
        };
        vec![
            ("transport", self.transports.keys().cloned().collect()),
            (
                "scheduler",
                with_plugin(self.schedulers.keys().cloned().collect()),
            ),
            (
                "balancer",
                with_plugin(self.balancers.keys().cloned().collect()),
            ),
            (
                "executor",
                with_plugin(self.executors.keys().cloned().collect()),
            ),
        ]
    }
}

/// A bad component option: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("option `{key}`: {message}")]
pub struct OptionError {
    /// The option's name, as written in the config.
    pub key: String,
    pub message: String,
}

impl OptionError {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Reads a component's `options` table into `T`, refusing keys not in
/// `known`; the error names the bad key.
pub fn parse_options<T: serde::de::DeserializeOwned>(
    options: &Options,
    known: &[&str],
) -> Result<T, OptionError> {
    // Unknown keys first, by name: serde's own message for them does not
    // always carry the key in its path.
    if let Some(key) = options.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(OptionError::new(
            key,
            format!("unknown option; known: {}", known.join(", ")),
        ));
    }
    let table: toml::Table = options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| OptionError {
        key: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}
