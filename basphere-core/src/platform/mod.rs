//! `Platform`: the one boundary every binary and embedding program drives Basphere through.
//!
//! Every use case is a method taking the [`Actor`]; [`authz`] decides who may do what to whose
//! resource, in one table. Requests are validated by core's rules, checked against quota, given
//! addresses and recorded together with their audit event in one store transaction; backend work
//! then runs as an operation, by the handler registered for its kind ([`OperationHandler`]).
//!
//! The use cases are split by subject: `accounts` (identity and direct creation),
//! `registration` (public submissions and their limits in `limits`), `account_admin`
//! (approval, rejection, suspension, deletion, purge), `account_operations` (their handler),
//! `tokens`, `vms`, `quota`, `operations` (the runner), `vm_operations` (the VM handler),
//! `reconcile`, and `events` (audit and notifications).

mod account_admin;
mod account_operations;
mod accounts;
pub mod authz;
mod background;
mod cluster_operations;
mod clusters;
mod events;
mod limits;
mod operations;
mod outbox;
mod quota;
mod reconcile;
mod registration;
mod sessions;
mod store_threads;
mod tokens;
mod vm_operations;
mod vms;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::bastion::{Bastion, NoBastion};
use crate::cluster_provisioner::{ClusterProvisioner, NoClusters};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::human::HumanCheck;
use crate::ipam::Ipam;
use crate::model::{ApiToken, OperationKind, User};
use crate::notifier::Notifier;
use crate::provisioner::Provisioner;
use crate::store::Store;

pub use account_admin::RequestQuery;
pub use accounts::{bounded, lookup_username, AccountQuery, NewAccount};
pub use authz::{Action, Actor};
pub use background::{Background, CLUSTER_STATUS_DUTY, RECONCILE_DUTY};
pub use clusters::{lookup_cluster_name, ClusterQuery, CreateCluster, MAX_CLUSTER_WORKERS};
pub use events::AuditQuery;
pub use operations::{Commit, OperationContext, OperationHandler};
pub use outbox::{retry_delay, OutboxQuery};
pub use quota::QuotaReport;
pub use reconcile::ReconcileReport;
pub use registration::{Submission, SUBMITTED};
pub use sessions::{NewWebSession, SIGN_IN_LINK_MINUTES};
pub use tokens::{token_expiry, token_scope, NewToken, MAX_TOKEN_DAYS};
pub use vms::{check_idempotency_key, lookup_vm_name, Accepted, CreateOutcome, CreateVms, VmQuery, MAX_BATCH};

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
fn page<T>(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> Uuid) -> Page<T> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(id)
    } else {
        None
    };
    Page { items, next }
}

/// Figures for monitoring (`/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    pub queued_operations: u64,
    pub running_operations: u64,
    pub leased_addresses: u64,
    pub assigned_blocks: u64,
    pub pool_addresses: u64,
}

/// How long an authenticated token is trusted without reading the store again: a token
/// revoked anywhere (another process, another replica, the database itself) stops working in
/// every process within this time; revoked through this process, at once.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
const TOKEN_CACHE_MAX: usize = 10_000;

/// The composed platform. Cheap to share as `Arc<Platform>`.
pub struct Platform {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    ipam: Arc<dyn Ipam>,
    provisioner: Arc<dyn Provisioner>,
    /// The Kubernetes cluster backend (none by default).
    clusters: Arc<dyn ClusterProvisioner>,
    notifier: Arc<dyn Notifier>,
    /// Makes, rekeys and removes the accounts' bastion logins.
    bastion: Arc<dyn Bastion>,
    /// The bot check on public submissions, when `recaptcha.enabled` is true.
    human_check: Option<Arc<dyn HumanCheck>>,
    /// Recent public submissions, for the abuse limits (`registration.*`).
    submissions: limits::Submissions,
    /// The handler of every operation kind.
    handlers: HashMap<OperationKind, Arc<dyn OperationHandler>>,
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
    changed: Notify,
    /// Wakes the outbox dispatcher when a commit queued notifications.
    outbox_ready: Notify,
    /// The latest reconciliation this process made.
    last_reconcile: Mutex<Option<ReconcileReport>>,
    /// Recently authenticated tokens by secret hash, so a request costs no store read for its
    /// identity. Entries live `TOKEN_CACHE_TTL` at most; revocation here removes them at once.
    token_cache: Mutex<HashMap<String, (User, ApiToken, tokio::time::Instant)>>,
    /// Strays already reported by this process, so each is audited once per process.
    known_strays: Mutex<HashSet<String>>,
}

/// Assembles a [`Platform`]: the backends, further operation handlers, and the instance name.
pub struct PlatformBuilder {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    ipam: Arc<dyn Ipam>,
    provisioner: Arc<dyn Provisioner>,
    notifier: Arc<dyn Notifier>,
    handlers: Vec<Arc<dyn OperationHandler>>,
    instance: Option<String>,
    bastion: Option<Arc<dyn Bastion>>,
    human_check: Option<Arc<dyn HumanCheck>>,
    clusters: Option<Arc<dyn ClusterProvisioner>>,
    on_thread_idle: Option<store_threads::IdleHook>,
}

impl PlatformBuilder {
    /// The Kubernetes cluster backend (default: none, and cluster requests say so).
    pub fn clusters(mut self, clusters: Arc<dyn ClusterProvisioner>) -> Self {
        self.clusters = Some(clusters);
        self
    }

    /// Adds a handler for further operation kinds (clusters, networks, ...); a handler added
    /// later replaces an earlier one (or a built-in one) for the same kind.
    pub fn handler(mut self, handler: Arc<dyn OperationHandler>) -> Self {
        self.handlers.push(handler);
        self
    }

    /// Names this server among the replicas sharing the store (default: `work.instance`, or
    /// `local`). Two running processes must never share a name: a starting instance takes back
    /// the claims of its earlier life at once.
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = Some(name.into());
        self
    }

    /// Makes the accounts' bastion logins (default: none).
    pub fn bastion(mut self, bastion: Arc<dyn Bastion>) -> Self {
        self.bastion = Some(bastion);
        self
    }

    /// The bot check for public submissions; needed when `recaptcha.enabled` is true.
    pub fn human_check(mut self, check: Arc<dyn HumanCheck>) -> Self {
        self.human_check = Some(check);
        self
    }

    /// Runs `hook` on each of the platform's own threads (those of store calls) when it runs
    /// out of work, before it waits for more. The server hands its allocator's free memory
    /// back there: an idle thread keeps its allocator caches otherwise.
    pub fn on_thread_idle(mut self, hook: fn()) -> Self {
        self.on_thread_idle = Some(hook);
        self
    }

    pub fn build(self) -> Arc<Platform> {
        let workers = Arc::new(Semaphore::new(self.config.server.workers));
        let mut handlers: HashMap<OperationKind, Arc<dyn OperationHandler>> = HashMap::new();
        let builtin: Vec<Arc<dyn OperationHandler>> = vec![
            Arc::new(vm_operations::VmOperations),
            Arc::new(account_operations::AccountOperations),
            Arc::new(cluster_operations::ClusterOperations),
        ];
        for handler in builtin.into_iter().chain(self.handlers) {
            for kind in handler.kinds() {
                handlers.insert(*kind, handler.clone());
            }
        }
        let instance =
            self.instance.or_else(|| self.config.work.instance.clone()).unwrap_or_else(|| "local".to_owned());
        let worker = format!("{instance}/{}", Uuid::new_v4().simple());
        let store_threads =
            Arc::new(store_threads::StoreThreads::start(self.store.blocking_calls(), self.on_thread_idle));
        Arc::new(Platform {
            config: self.config,
            store_threads,
            store: self.store,
            ipam: self.ipam,
            provisioner: self.provisioner,
            clusters: self.clusters.unwrap_or_else(|| Arc::new(NoClusters)),
            notifier: self.notifier,
            bastion: self.bastion.unwrap_or_else(|| Arc::new(NoBastion)),
            human_check: self.human_check,
            submissions: limits::Submissions::default(),
            handlers,
            workers,
            instance,
            worker,
            running: Mutex::new(HashSet::new()),
            draining: AtomicBool::new(false),
            changed: Notify::new(),
            outbox_ready: Notify::new(),
            last_reconcile: Mutex::new(None),
            token_cache: Mutex::new(HashMap::new()),
            known_strays: Mutex::new(HashSet::new()),
        })
    }
}

impl Platform {
    /// The platform with the built-in operation handlers (VMs).
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        ipam: Arc<dyn Ipam>,
        provisioner: Arc<dyn Provisioner>,
        notifier: Arc<dyn Notifier>,
    ) -> Arc<Self> {
        Self::builder(config, store, ipam, provisioner, notifier).build()
    }

    /// Assembles a platform with further handlers or an instance name.
    pub fn builder(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        ipam: Arc<dyn Ipam>,
        provisioner: Arc<dyn Provisioner>,
        notifier: Arc<dyn Notifier>,
    ) -> PlatformBuilder {
        PlatformBuilder {
            config,
            store,
            ipam,
            provisioner,
            notifier,
            handlers: Vec::new(),
            instance: None,
            clusters: None,
            bastion: None,
            human_check: None,
            on_thread_idle: None,
        }
    }

    /// This process's name in claims and duties (`<instance>/<boot id>`).
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// The latest reconciliation this process made (`None` before the first, or when another
    /// replica holds the reconcile duty).
    pub fn last_reconcile(&self) -> Option<ReconcileReport> {
        self.last_reconcile.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store, for tests and tools that inspect state directly. Servers and programs that
    /// act for users go through the use cases instead.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn ipam(&self) -> &Arc<dyn Ipam> {
        &self.ipam
    }

    pub fn provisioner(&self) -> &Arc<dyn Provisioner> {
        &self.provisioner
    }

    /// Runs store work off the async executor (stores may block on disk).
    async fn db<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>, Arc<dyn Ipam>) -> Result<T> + Send + 'static,
    {
        let (store, ipam) = (self.store.clone(), self.ipam.clone());
        self.store_threads.run(move || f(store, ipam)).await?
    }

    /// A read of the store: in place when the store's reads are brief local work
    /// ([`Store::reads_in_place`]), otherwise on the store's threads like [`Platform::db`].
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T> + Send + 'static,
    {
        if self.store.reads_in_place() {
            return f(&*self.store);
        }
        self.db(move |store, _| f(&*store)).await
    }

    /// Whether `actor` may perform `action` where no particular owner is concerned (the admin
    /// API as a whole, say).
    pub fn authorize(&self, actor: &Actor, action: Action) -> Result<()> {
        authz::decide(actor, action, None, "route", &"")
    }

    /// Figures for monitoring: unfinished operations and address use.
    pub async fn gauges(&self) -> Result<Gauges> {
        let pool_addresses = self.config.pools.iter().map(|pool| pool.cidr.size()).sum();
        self.db(move |store, _| {
            crate::store::StoreExt::query(&*store, |tx| {
                let filter = crate::store::OperationFilter { unfinished: true, ..Default::default() };
                let unfinished = tx.list_operations(&filter)?;
                let queued = unfinished.iter().filter(|op| op.state == crate::model::OperationState::Queued).count();
                Ok(Gauges {
                    queued_operations: queued as u64,
                    running_operations: (unfinished.len() - queued) as u64,
                    leased_addresses: tx.list_leases(None)?.len() as u64,
                    assigned_blocks: tx.list_blocks(None)?.len() as u64,
                    pool_addresses,
                })
            })
        })
        .await
    }

    /// Whether the store answers, for readiness checks.
    pub async fn store_ready(&self) -> Result<()> {
        self.db(|store, _| crate::store::StoreExt::query(&*store, |tx| tx.list_blocks(Some("")).map(|_| ()))).await
    }
}
