//! The registry: maps a component name from the config to an implementation.
//!
//! Core defines the registry but registers nothing: the binary fills it with
//! the built-in crates (and, later, loaded plugins), so core depends on no
//! implementation.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::component::{Balancer, BoxFuture, Executor, Scheduler, Transport, TransportError};
use crate::config::ComponentSection;

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

/// Named factories for each kind of component.
#[derive(Default)]
pub struct Registry {
    schedulers: BTreeMap<String, Factory<Box<dyn Scheduler>>>,
    balancers: BTreeMap<String, Factory<Box<dyn Balancer>>>,
    executors: BTreeMap<String, Factory<Arc<dyn Executor>>>,
    transports: BTreeMap<String, TransportFactory>,
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

    pub fn scheduler(
        &self,
        section: &ComponentSection,
    ) -> Result<Box<dyn Scheduler>, RegistryError> {
        build("scheduler", &self.schedulers, section)
    }
    pub fn balancer(&self, section: &ComponentSection) -> Result<Box<dyn Balancer>, RegistryError> {
        build("balancer", &self.balancers, section)
    }
    pub fn executor(&self, section: &ComponentSection) -> Result<Arc<dyn Executor>, RegistryError> {
        build("executor", &self.executors, section)
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

    /// Checks that every component a config names is registered.
    pub fn check(&self, cfg: &crate::config::NodeConfig) -> Result<(), RegistryError> {
        if !self.transports.contains_key(&cfg.transport.kind) {
            return Err(unknown("transport", &cfg.transport.kind, &self.transports));
        }
        if !self.schedulers.contains_key(&cfg.scheduler.kind) {
            return Err(unknown("scheduler", &cfg.scheduler.kind, &self.schedulers));
        }
        if !self.balancers.contains_key(&cfg.balancer.kind) {
            return Err(unknown("balancer", &cfg.balancer.kind, &self.balancers));
        }
        if !self.executors.contains_key(&cfg.executor.kind) {
            return Err(unknown("executor", &cfg.executor.kind, &self.executors));
        }
        Ok(())
    }

    /// Registered names, per kind of component.
    pub fn names(&self) -> Vec<(&'static str, Vec<String>)> {
        vec![
            ("transport", self.transports.keys().cloned().collect()),
            ("scheduler", self.schedulers.keys().cloned().collect()),
            ("balancer", self.balancers.keys().cloned().collect()),
            ("executor", self.executors.keys().cloned().collect()),
        ]
    }
}
