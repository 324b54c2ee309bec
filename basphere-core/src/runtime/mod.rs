//! The shared runtime every resource module runs on: the store's threads, the operation runner
//! with its claims and leases, the handler registry, the outbox, the audit log, and the one
//! primitive that starts an operation on a resource ([`start`]).
//!
//! A resource module (VMs, clusters, accounts, ...) owns its use cases, its operation handlers
//! and its store aggregate; it reaches the store only through `Runtime::db` and
//! `Runtime::read`, records background work with [`start::record_operation`], and registers one
//! handler per operation kind in the [`Registry`]. Nothing here knows a resource kind.

pub mod authz;
mod events;
mod operations;
mod outbox;
pub mod start;
pub(crate) mod store_threads;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ipam::Ipam;
use crate::model::OperationKind;
use crate::notifier::Notifier;
use crate::store::Store;

pub use authz::{Action, Actor};
pub use events::AuditQuery;
pub use operations::{Commit, OperationContext, OperationHandler};
pub(crate) use outbox::queue;
pub use outbox::{retry_delay, OutboxQuery};

/// One page of a list ordered by creation; `next` is the `after` of the following page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Uuid>,
}

/// `limit` and `after` of a list request, checked against the list's bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: Option<usize>,
    pub after: Option<Uuid>,
}

impl PageRequest {
    /// Lists of resources: 1-1000 items a page, 100 by default.
    pub const RESOURCES: (usize, usize) = (100, 1000);
    /// The audit log: 1-100000 events a page, 1000 by default (it is exported in pages).
    pub const AUDIT: (usize, usize) = (1000, 100_000);

    /// The page size, or why it is not accepted.
    pub fn limit(&self, (default, max): (usize, usize)) -> Result<usize> {
        match self.limit {
            None => Ok(default),
            Some(limit) if (1..=max).contains(&limit) => Ok(limit),
            Some(limit) => Err(Error::invalid("limit", format!("{limit} is not accepted: use 1-{max}"))),
        }
    }
}

/// Cuts the extra item fetched to know whether there is a next page.
pub(crate) fn page<T>(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> Uuid) -> Page<T> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(id)
    } else {
        None
    };
    Page { items, next }
}

/// The instance part of a worker name (`<instance>/<boot id>`).
pub(crate) fn worker_instance(worker: &str) -> &str {
    worker.rsplit_once('/').map_or(worker, |(instance, _)| instance)
}

/// The handler of each operation kind: every resource module registers its own, one kind each,
/// and the runner looks the kind up once.
#[derive(Default)]
pub struct Registry {
    handlers: HashMap<OperationKind, Arc<dyn OperationHandler>>,
}

impl Registry {
    /// Runs `kind` with `handler`; a later registration of a kind replaces an earlier one.
    pub fn register(&mut self, kind: OperationKind, handler: impl OperationHandler + 'static) {
        self.handlers.insert(kind, Arc::new(handler));
    }

    fn get(&self, kind: OperationKind) -> Option<Arc<dyn OperationHandler>> {
        self.handlers.get(&kind).cloned()
    }
}

/// The shared runtime. Cheap to share as `Arc<Runtime>`; the resource modules each hold one.
pub struct Runtime {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ipam: Arc<dyn Ipam>,
    notifier: Arc<dyn Notifier>,
    handlers: Registry,
    workers: Arc<Semaphore>,
    /// Where store calls run ([`Store::blocking_calls`] threads of its own).
    store_threads: Arc<store_threads::StoreThreads>,
    /// This server among the replicas sharing the store (`work.instance`).
    instance: String,
    /// This process: `<instance>/<boot id>`, the holder of its claims and duties.
    worker: String,
    /// Operations this process started and has not finished (waiting for a worker or running).
    running: Mutex<HashSet<Uuid>>,
    draining: AtomicBool,
    /// Wakes whoever waits for an operation or a cluster to change.
    pub(crate) changed: Notify,
    /// Wakes the outbox dispatcher when a commit queued notifications.
    pub(crate) outbox_ready: Notify,
}

/// What the runtime is made of: the parts every resource module shares.
pub(crate) struct Parts {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub ipam: Arc<dyn Ipam>,
    pub notifier: Arc<dyn Notifier>,
    pub handlers: Registry,
    pub instance: Option<String>,
    pub on_thread_idle: Option<store_threads::IdleHook>,
}

impl Runtime {
    pub(crate) fn start(parts: Parts) -> Arc<Runtime> {
        let workers = Arc::new(Semaphore::new(parts.config.server.workers));
        let instance =
            parts.instance.or_else(|| parts.config.work.instance.clone()).unwrap_or_else(|| "local".to_owned());
        let worker = format!("{instance}/{}", Uuid::new_v4().simple());
        let store_threads =
            Arc::new(store_threads::StoreThreads::start(parts.store.blocking_calls(), parts.on_thread_idle));
        Arc::new(Runtime {
            config: parts.config,
            store: parts.store,
            ipam: parts.ipam,
            notifier: parts.notifier,
            handlers: parts.handlers,
            workers,
            store_threads,
            instance,
            worker,
            running: Mutex::new(HashSet::new()),
            draining: AtomicBool::new(false),
            changed: Notify::new(),
            outbox_ready: Notify::new(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This process's name in claims and duties (`<instance>/<boot id>`).
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Runs store work off the async executor (stores may block on disk).
    pub(crate) async fn db<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>, Arc<dyn Ipam>) -> Result<T> + Send + 'static,
    {
        let (store, ipam) = (self.store.clone(), self.ipam.clone());
        self.store_threads.run(move || f(store, ipam)).await?
    }

    /// A read of the store: in place when the store's reads are brief local work
    /// ([`Store::reads_in_place`]), otherwise on the store's threads like [`Runtime::db`].
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    {
        if self.store.reads_in_place() {
            return f(&*self.store);
        }
        self.db(move |store, _| f(&*store)).await
    }

    /// Holds (or takes) the duty `name` for `hold` from now: whether this process is on duty.
    /// One replica at a time does a duty; a holder that stops renewing loses it after `hold`.
    pub(crate) async fn claim_duty(&self, name: &'static str, hold: chrono::Duration) -> Result<bool> {
        let worker = self.worker.clone();
        self.db(move |store, _| {
            let mut held = false;
            store.write(&mut |tx| {
                let at = crate::model::now();
                held = tx.claim_duty(name, &worker, at, at + hold)?;
                Ok(())
            })?;
            Ok(held)
        })
        .await
    }
}
