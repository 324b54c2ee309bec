//! `Platform`: the one boundary every binary and embedding program drives Basphere through.
//!
//! It composes the resource modules over the shared [`Runtime`] and hands them out: VMs
//! ([`Platform::vms`]), clusters ([`Platform::clusters`]), accounts ([`Platform::accounts`]),
//! credentials ([`Platform::credentials`]) and tenant networks ([`Platform::networks`]); operations, the outbox and the audit log are the
//! runtime's ([`Platform::runtime`]). The façade holds no use case of its own: each resource
//! module's methods take the [`Actor`], ask [`authz`] and write their audit event.
//!
//! Adding a resource kind adds a module with its service and its handlers, one field here and
//! one registration line in [`PlatformBuilder::build`].

mod background;

use std::sync::Arc;

pub use crate::accounts::{
    lookup_username, token_expiry, token_scope, AccountQuery, Accounts, Credentials, NewAccount, NewToken,
    NewWebSession, QuotaReport, RequestQuery, Submission, MAX_TOKEN_DAYS, SIGN_IN_LINK_MINUTES, SUBMITTED,
    TOKEN_CACHE_TTL,
};
pub use crate::clusters::{lookup_cluster_name, ClusterQuery, Clusters, CreateCluster, MAX_CLUSTER_WORKERS};
pub use crate::networks::{NetworkChange, NetworkReport, Networks, RouterState};
pub use crate::runtime::authz;
pub use crate::runtime::{
    retry_delay, Action, Actor, AuditQuery, Commit, OperationContext, OperationHandler, OutboxQuery, Page, PageRequest,
    Registry, Runtime,
};
pub use crate::validate::bounded;
pub use crate::vms::{
    check_idempotency_key, lookup_vm_name, Accepted, CreateOutcome, CreateVms, ReconcileReport, VmQuery, Vms, MAX_BATCH,
};
pub use background::{Background, CLUSTER_STATUS_DUTY, RECONCILE_DUTY};

use crate::accounts::operations::Backends;
use crate::bastion::{Bastion, NoBastion};
use crate::cluster_provisioner::{ClusterProvisioner, NoClusters};
use crate::config::Config;
use crate::error::Result;
use crate::human::HumanCheck;
use crate::ipam::Ipam;
use crate::networks::operations::NetworkBackends;
use crate::notifier::Notifier;
use crate::provisioner::Provisioner;
use crate::router::{NoRouter, TenantRouter};
use crate::runtime::{store_threads, Parts};
use crate::store::Store;

/// Figures for monitoring (`/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    pub queued_operations: u64,
    pub running_operations: u64,
    pub leased_addresses: u64,
    pub assigned_blocks: u64,
    pub pool_addresses: u64,
}

/// The composed platform. Cheap to share as `Arc<Platform>`.
pub struct Platform {
    rt: Arc<Runtime>,
    vms: Vms,
    clusters: Clusters,
    accounts: Accounts,
    credentials: Credentials,
    networks: Networks,
    /// The cluster backend, whose changes wake the cluster-status duty.
    cluster_backend: Arc<dyn ClusterProvisioner>,
}

/// Assembles a [`Platform`]: the backends and the instance name.
pub struct PlatformBuilder {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    ipam: Arc<dyn Ipam>,
    provisioner: Arc<dyn Provisioner>,
    notifier: Arc<dyn Notifier>,
    instance: Option<String>,
    bastion: Option<Arc<dyn Bastion>>,
    human_check: Option<Arc<dyn HumanCheck>>,
    clusters: Option<Arc<dyn ClusterProvisioner>>,
    router: Option<Arc<dyn TenantRouter>>,
    on_thread_idle: Option<store_threads::IdleHook>,
}

impl PlatformBuilder {
    /// The Kubernetes cluster backend (default: none, and cluster requests say so).
    pub fn clusters(mut self, clusters: Arc<dyn ClusterProvisioner>) -> Self {
        self.clusters = Some(clusters);
        self
    }

    /// The tenant networks' router (default: none, for `networks.mode: flat`).
    pub fn router(mut self, router: Arc<dyn TenantRouter>) -> Self {
        self.router = Some(router);
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
        let cluster_backend = self.clusters.unwrap_or_else(|| Arc::new(NoClusters));
        let router = self.router.unwrap_or_else(|| Arc::new(NoRouter));
        let network_backends = NetworkBackends { provisioner: self.provisioner.clone(), router: router.clone() };
        let backends = Backends {
            provisioner: self.provisioner.clone(),
            clusters: cluster_backend.clone(),
            bastion: self.bastion.unwrap_or_else(|| Arc::new(NoBastion)),
            network: network_backends.clone(),
        };
        // Each resource module registers the handlers of its operation kinds.
        let mut handlers = Registry::default();
        crate::vms::operations::register(&mut handlers, &self.provisioner);
        crate::clusters::operations::register(&mut handlers, &cluster_backend);
        crate::accounts::operations::register(&mut handlers, &backends);
        crate::networks::operations::register(&mut handlers, &network_backends);
        let rt = Runtime::start(Parts {
            config: self.config,
            store: self.store,
            ipam: self.ipam,
            notifier: self.notifier,
            handlers,
            instance: self.instance,
            on_thread_idle: self.on_thread_idle,
        });
        let tokens = Arc::default();
        Arc::new(Platform {
            vms: Vms::new(rt.clone(), self.provisioner),
            clusters: Clusters::new(rt.clone(), cluster_backend.clone()),
            accounts: Accounts::new(rt.clone(), backends, self.human_check, Arc::clone(&tokens)),
            credentials: Credentials::new(rt.clone(), tokens),
            networks: Networks::new(rt.clone(), router),
            cluster_backend,
            rt,
        })
    }
}

impl Platform {
    /// The platform with the VM backend and no cluster backend, bastion or bot check.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        ipam: Arc<dyn Ipam>,
        provisioner: Arc<dyn Provisioner>,
        notifier: Arc<dyn Notifier>,
    ) -> Arc<Self> {
        Self::builder(config, store, ipam, provisioner, notifier).build()
    }

    /// Assembles a platform with further backends or an instance name.
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
            instance: None,
            clusters: None,
            router: None,
            bastion: None,
            human_check: None,
            on_thread_idle: None,
        }
    }

    /// VMs: create, delete, power, list, show, and reconciliation with the VM backend.
    pub fn vms(&self) -> &Vms {
        &self.vms
    }

    /// Kubernetes clusters.
    pub fn clusters(&self) -> &Clusters {
        &self.clusters
    }

    /// Accounts, registration and key-change requests, approval, quotas.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// API tokens and browser sessions.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Tenant networks (`networks.mode: tenant`).
    pub fn networks(&self) -> &Networks {
        &self.networks
    }

    /// The shared runtime: operations, the outbox, the audit log.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    pub fn config(&self) -> &Config {
        &self.rt.config
    }

    /// This process's name in claims and duties (`<instance>/<boot id>`).
    pub fn worker(&self) -> &str {
        self.rt.worker()
    }

    /// The store, for tests and tools that inspect state directly. Servers and programs that
    /// act for users go through the use cases instead.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.rt.store
    }

    pub fn ipam(&self) -> &Arc<dyn Ipam> {
        &self.rt.ipam
    }

    /// Whether `actor` may perform `action` where no particular owner is concerned (the admin
    /// API as a whole, say).
    pub fn authorize(&self, actor: &Actor, action: Action) -> Result<()> {
        authz::decide(actor, action, None, "route", &"")
    }

    /// Figures for monitoring: unfinished operations and address use.
    pub async fn gauges(&self) -> Result<Gauges> {
        let pool_addresses = self.rt.config.pools.iter().map(|pool| pool.cidr.size()).sum();
        self.rt
            .db(move |store, _| {
                crate::store::StoreExt::query(&*store, |tx| {
                    let filter = crate::store::OperationFilter { unfinished: true, ..Default::default() };
                    let unfinished = tx.list_operations(&filter)?;
                    let queued =
                        unfinished.iter().filter(|op| op.state == crate::model::OperationState::Queued).count();
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
        self.rt.db(|store, _| crate::store::StoreExt::query(&*store, |tx| tx.list_blocks(Some("")).map(|_| ()))).await
    }
}
