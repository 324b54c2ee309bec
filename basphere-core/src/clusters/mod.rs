//! Kubernetes clusters: create (validate, quota, VIP and node pool leases, record, in one
//! transaction), list, show, watch, kubeconfig, scale and delete. The backend work runs as
//! operations (see `cluster_operations`); the status comes from the backend's observations
//! (see [`Clusters::refresh_statuses`]).

pub(crate) mod operations;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use self::operations::{
    cluster_ref, STEP_APPLY, STEP_DELETE, STEP_RELEASE, STEP_RESERVE, STEP_SHRINK, STEP_WAIT_GONE, STEP_WAIT_WORKERS,
};
use crate::cluster_provisioner::ClusterProvisioner;
use crate::error::{Error, Result};
use crate::model::*;
use crate::networks::Scope;
use crate::runtime::authz::{decide, Action, Actor};
use crate::runtime::start::{ensure_idle, on_resource, record_operation};
use crate::runtime::{page, Page, PageRequest, Runtime};
use crate::store::{ClusterFilter, StoreExt, StoreTx};
use crate::validate::bounded;
use crate::validate::{ResourceName, Username};
use crate::vms::check_idempotency_key;

/// Most workers a cluster may have (further limited by the owner's nodes-per-cluster quota).
pub const MAX_CLUSTER_WORKERS: u32 = 100;

/// A request to create a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateCluster {
    pub name: String,
    /// A cluster type key (`dev`, `standard`; `development` and `production` are accepted).
    pub cluster_type: String,
    /// A node spec key for the workers; the type's default when `None`.
    pub worker_spec: Option<String>,
    /// How many workers; the type's count when `None`.
    pub workers: Option<u32>,
}

/// Which clusters to list: one state (`deleted` shows the history), and a page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterQuery {
    pub state: Option<String>,
    pub page: PageRequest,
}

/// A cluster name from a request path: one that breaks the rule cannot exist. The rule is the
/// resource names', not the shorter one new clusters get, so a cluster made before that limit
/// can still be read and deleted.
pub fn lookup_cluster_name(value: &str) -> Result<ResourceName> {
    ResourceName::parse(value).map_err(|_| Error::not_found("cluster", bounded(value)))
}

fn check_workers(workers: u32) -> Result<u32> {
    if workers == 0 || workers > MAX_CLUSTER_WORKERS {
        return Err(Error::invalid(
            "workers",
            format!("{workers} is not accepted: a cluster has 1-{MAX_CLUSTER_WORKERS} workers"),
        ));
    }
    Ok(workers)
}

fn nodes_allowed(quota: &Quota, nodes: u32) -> Result<()> {
    if u64::from(nodes) > quota.max_nodes_per_cluster {
        return Err(Error::QuotaExceeded {
            resource: "nodes_per_cluster",
            used: 0,
            requested: u64::from(nodes),
            limit: quota.max_nodes_per_cluster,
        });
    }
    Ok(())
}

/// Leases `count` more node addresses for `cluster`, numbered after `first`.
fn lease_nodes(
    tx: &mut dyn StoreTx,
    ipam: &dyn crate::ipam::Ipam,
    scope: &Scope,
    cluster: &Cluster,
    first: u32,
    count: u32,
) -> Result<()> {
    for index in first..first + count {
        let resource = ResourceRef {
            kind: ResourceKind::ClusterNode,
            id: cluster.id,
            name: format!("{}-node-{index}", cluster.name),
        };
        scope.lease(tx, ipam, &cluster.owner, &resource)?;
    }
    Ok(())
}

/// The clusters' use cases. Every one takes the [`Actor`], asks [`decide`] and audits what it
/// changes.
pub struct Clusters {
    rt: Arc<Runtime>,
    /// The Kubernetes cluster backend.
    backend: Arc<dyn ClusterProvisioner>,
}

impl Clusters {
    pub(crate) fn new(rt: Arc<Runtime>, backend: Arc<dyn ClusterProvisioner>) -> Self {
        Clusters { rt, backend }
    }

    /// Validates, checks the quota, leases the VIP and the node pool, records the cluster and
    /// its operation in one transaction, and starts building it in the background. A repeated
    /// request with the same `idempotency_key` returns the first answer.
    pub async fn create(
        &self,
        actor: &Actor,
        owner: &Username,
        request: CreateCluster,
        idempotency_key: Option<&str>,
    ) -> Result<(Cluster, Operation, bool)> {
        let result = self.create_inner(actor, owner, request.clone(), idempotency_key.map(str::to_owned)).await;
        let details = json!({
            "type": bounded(&request.cluster_type),
            "worker_spec": request.worker_spec.as_deref().map(bounded),
            "workers": request.workers,
        });
        let resource = format!("cluster/{owner}/{}", bounded(&request.name));
        self.rt.audit_refusal(actor, "cluster.create", &resource, &result, details).await;
        let (cluster, operation, replayed) = result?;
        self.rt.outbox_ready.notify_one();
        if !replayed {
            self.rt.spawn_operation(operation.id);
        }
        Ok((cluster, operation, replayed))
    }

    async fn create_inner(
        &self,
        actor: &Actor,
        owner: &Username,
        request: CreateCluster,
        idempotency_key: Option<String>,
    ) -> Result<(Cluster, Operation, bool)> {
        decide(actor, Action::Create, Some(owner), "cluster", &bounded(&request.name))?;
        if let Some(key) = &idempotency_key {
            check_idempotency_key(key)?;
        }
        let name = ResourceName::cluster(&request.name)?;
        let cluster_type = self.rt.config.cluster_type(&request.cluster_type)?.clone();
        let worker_spec = self
            .rt
            .config
            .node_spec(request.worker_spec.as_deref().unwrap_or(&cluster_type.worker_spec_default))?
            .clone();
        let control_plane_spec = self.rt.config.node_spec(&cluster_type.control_plane_spec)?.clone();
        let workers = check_workers(request.workers.unwrap_or(cluster_type.worker_count))?;
        let request_hash = ApiToken::hash_secret(&format!(
            "create-cluster\n{}\n{}\n{:?}\n{:?}",
            request.name, request.cluster_type, request.worker_spec, request.workers
        ));
        let version = self.rt.config.kubernetes.version.clone();
        let default_quota = self.rt.config.default_quota;
        let networks = self.rt.config.networks.clone();
        let channels = self.rt.channels();
        let (owner, actor) = (owner.clone(), actor.clone());
        self.rt
            .db(move |store, ipam| {
                store.transact(|tx| {
                    if let Some(key) = &idempotency_key {
                        if let Some(record) = tx.get_idempotency(&owner, key)? {
                            if record.request_hash != request_hash {
                                return Err(Error::Conflict(format!(
                                    "the Idempotency-Key {key:?} was already used for a different request"
                                )));
                            }
                            let id =
                                record.operations.first().copied().ok_or_else(|| Error::not_found("operation", key))?;
                            let operation = tx.get_operation(id)?.ok_or_else(|| Error::not_found("operation", id))?;
                            let cluster = tx
                                .get_cluster(operation.resource.id)?
                                .ok_or_else(|| Error::not_found("cluster", operation.resource.id))?;
                            return Ok((cluster, operation, true));
                        }
                    }
                    let user = tx.get_user(&owner)?.ok_or_else(|| Error::not_found("user", &owner))?;
                    if user.status != UserStatus::Active {
                        return Err(Error::Forbidden(format!("account {owner} is suspended")));
                    }
                    if tx.cluster_by_name(&owner, &name)?.is_some() {
                        return Err(Error::already_exists("cluster", &name));
                    }
                    let quota = default_quota.with_override(&tx.quota_override(&owner)?.unwrap_or_default());
                    let at = now();
                    let mut cluster = Cluster {
                        id: Uuid::now_v7(),
                        owner: owner.clone(),
                        name: name.clone(),
                        cluster_type: cluster_type.key.clone(),
                        kubernetes_version: version.clone(),
                        control_plane_count: cluster_type.control_plane_count,
                        worker_count: workers,
                        control_plane_spec: control_plane_spec.clone(),
                        worker_spec: worker_spec.clone(),
                        control_plane_endpoint: None,
                        state: ClusterState::Pending,
                        reason: None,
                        status: ClusterStatus::default(),
                        created_at: at,
                        updated_at: at,
                    };
                    nodes_allowed(&quota, cluster.nodes())?;
                    let mut extra = cluster.usage();
                    extra.ips = 1 + u64::from(cluster.pool_size(workers));
                    let before = tx.usage(&owner)?;
                    quota.check(&before, &extra)?;
                    let vip = ResourceRef {
                        kind: ResourceKind::ClusterEndpoint,
                        id: cluster.id,
                        name: format!("{name}-vip"),
                    };
                    // In tenant mode the cluster goes on the owner's network, its first LAN.
                    let scope = Scope::for_new(&*tx, &networks, &owner, quota.max_ips)?;
                    cluster.control_plane_endpoint = Some(scope.lease(tx, &*ipam, &owner, &vip)?.address);
                    tx.insert_cluster(&cluster)?;
                    lease_nodes(tx, &*ipam, &scope, &cluster, 1, cluster.pool_size(workers))?;
                    let mut operation = Operation::new(
                        OperationKind::CreateCluster,
                        owner.clone(),
                        cluster_resource(&cluster),
                        &actor.name,
                        &[STEP_RESERVE, STEP_APPLY],
                    );
                    operation.finish_step(STEP_RESERVE, true);
                    let details = json!({
                        "type": cluster.cluster_type,
                        "workers": workers,
                        "worker_spec": worker_spec.key,
                        "endpoint": cluster.control_plane_endpoint.map(|a| a.to_string()),
                        "operation": operation.id,
                    });
                    record_operation(
                        tx,
                        &actor,
                        &operation,
                        "cluster.create",
                        &format!("cluster/{owner}/{name}"),
                        details,
                    )?;
                    for event in crate::vms::operations::crossings(&owner, &quota, &before, &extra) {
                        crate::runtime::queue(tx, event, &channels)?;
                    }
                    if let Some(key) = &idempotency_key {
                        tx.insert_idempotency(&IdempotencyRecord {
                            owner: owner.clone(),
                            key: key.clone(),
                            request_hash: request_hash.clone(),
                            operations: vec![operation.id],
                            created_at: now(),
                        })?;
                    }
                    Ok((cluster, operation, false))
                })
            })
            .await
    }

    /// The clusters of `owner`, or of every account (`None`, administrators), oldest first.
    pub async fn list(&self, actor: &Actor, owner: Option<&Username>, query: ClusterQuery) -> Result<Page<Cluster>> {
        match owner {
            Some(owner) => decide(actor, Action::View, Some(owner), "user", owner)?,
            None => decide(actor, Action::Administer, None, "cluster", &"")?,
        }
        let limit = query.page.limit(PageRequest::RESOURCES)?;
        let state = query.state.as_deref().map(ClusterState::parse).transpose()?;
        let filter = ClusterFilter {
            owner: owner.cloned(),
            include_deleted: state == Some(ClusterState::Deleted),
            after: query.page.after,
            limit: Some(limit + 1),
        };
        let mut clusters = self.rt.read(move |store| store.query(|tx| tx.list_clusters(&filter))).await?;
        if let Some(state) = state {
            clusters.retain(|c| c.state == state);
        }
        Ok(page(clusters, limit, |c| c.id))
    }

    /// One live cluster of `owner`, by name.
    pub async fn get(&self, actor: &Actor, owner: &Username, name: &str) -> Result<Cluster> {
        let name = lookup_cluster_name(name)?;
        decide(actor, Action::View, Some(owner), "cluster", &name)?;
        let owner = owner.clone();
        let found = name.clone();
        self.rt
            .read(move |store| store.query(|tx| tx.cluster_by_name(&owner, &found)))
            .await?
            .ok_or_else(|| Error::not_found("cluster", &name))
    }

    /// The node addresses each of `clusters` holds (for clusters the caller was allowed to see).
    pub async fn node_addresses(
        &self,
        clusters: &[Cluster],
    ) -> Result<std::collections::HashMap<Uuid, Vec<std::net::Ipv4Addr>>> {
        let ids: Vec<Uuid> = clusters.iter().map(|c| c.id).collect();
        self.rt
            .db(move |store, _| {
                store.query(|tx| {
                    let mut found = std::collections::HashMap::new();
                    for id in &ids {
                        let mut nodes: Vec<_> = tx
                            .leases_of_resource(*id)?
                            .into_iter()
                            .filter(|l| l.resource.kind == ResourceKind::ClusterNode)
                            .map(|l| l.address)
                            .collect();
                        nodes.sort();
                        found.insert(*id, nodes);
                    }
                    Ok(found)
                })
            })
            .await
    }

    /// The cluster once it changed after `since` (its `updated_at`), or as it is when `timeout`
    /// passes: a long poll that costs a store read per change or second, never a call to the
    /// management cluster.
    pub async fn watch(
        &self,
        actor: &Actor,
        owner: &Username,
        name: &str,
        since: Option<Timestamp>,
        timeout: Duration,
    ) -> Result<Cluster> {
        let deadline = tokio::time::Instant::now() + timeout;
        let id = self.get(actor, owner, name).await?.id;
        loop {
            let changed = self.rt.changed.notified();
            let cluster = self
                .rt
                .db(move |store, _| store.query(|tx| tx.get_cluster(id)))
                .await?
                .ok_or_else(|| Error::not_found("cluster", name.to_owned()))?;
            if since.is_none_or(|since| cluster.updated_at > since) || tokio::time::Instant::now() >= deadline {
                return Ok(cluster);
            }
            // Another replica's changes are seen within a second.
            let _ =
                tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + Duration::from_secs(1)), changed)
                    .await;
        }
    }

    /// The cluster's admin kubeconfig, once its control plane is initialised.
    pub async fn kubeconfig(&self, actor: &Actor, owner: &Username, name: &str) -> Result<String> {
        let cluster = self.get(actor, owner, name).await?;
        if matches!(cluster.state, ClusterState::Deleting | ClusterState::Deleted | ClusterState::Pending) {
            return Err(Error::Conflict(format!(
                "cluster {} is {}; it has no kubeconfig",
                cluster.name, cluster.state
            )));
        }
        let kubeconfig = self.backend.kubeconfig(&cluster_ref(&cluster)).await?;
        let resource = format!("cluster/{owner}/{}", cluster.name);
        match kubeconfig {
            Some(kubeconfig) => {
                self.rt.audit(actor, "cluster.kubeconfig", &resource, Outcome::Success, json!({})).await;
                Ok(kubeconfig)
            }
            None => Err(Error::Conflict(format!(
                "cluster {} has no kubeconfig yet: its control plane is not initialised. Follow it with `basphere cluster watch {}`",
                cluster.name, cluster.name
            ))),
        }
    }

    /// Marks the cluster `deleting` and deletes it in the background; its addresses are freed
    /// once Cluster API has removed everything.
    pub async fn delete(&self, actor: &Actor, owner: &Username, name: &str) -> Result<Operation> {
        let name = lookup_cluster_name(name)?;
        let operation = self
            .start_cluster_operation(actor, owner, &name, OperationKind::DeleteCluster, |_, _, cluster| {
                if cluster.state == ClusterState::Deleting {
                    return Err(Error::Conflict(format!("cluster {} is already being deleted", cluster.name)));
                }
                cluster.state = ClusterState::Deleting;
                Ok(&[STEP_DELETE, STEP_WAIT_GONE, STEP_RELEASE])
            })
            .await?;
        self.rt.spawn_operation(operation.id);
        Ok(operation)
    }

    /// Changes the number of workers. Growing leases the new addresses at once (within the
    /// quota); shrinking frees them once the machines are gone.
    pub async fn scale(&self, actor: &Actor, owner: &Username, name: &str, workers: u32) -> Result<Operation> {
        let name = lookup_cluster_name(name)?;
        let workers = check_workers(workers)?;
        let default_quota = self.rt.config.default_quota;
        let networks = self.rt.config.networks.clone();
        let operation = self
            .start_cluster_operation(actor, owner, &name, OperationKind::ScaleCluster, move |tx, ipam, cluster| {
                if !matches!(cluster.state, ClusterState::Ready | ClusterState::Provisioning) {
                    return Err(Error::Conflict(format!(
                        "cluster {} is {}; scaling needs it ready or provisioning",
                        cluster.name, cluster.state
                    )));
                }
                if workers == cluster.worker_count {
                    return Err(Error::Conflict(format!("cluster {} already has {workers} workers", cluster.name)));
                }
                let quota = default_quota.with_override(&tx.quota_override(&cluster.owner)?.unwrap_or_default());
                let mut resized = cluster.clone();
                resized.worker_count = workers;
                nodes_allowed(&quota, resized.nodes())?;
                let grow = workers > cluster.worker_count;
                if grow {
                    let held = tx
                        .leases_of_resource(cluster.id)?
                        .iter()
                        .filter(|l| l.resource.kind == ResourceKind::ClusterNode)
                        .count() as u32;
                    let more = resized.pool_size(workers).saturating_sub(held);
                    let before = tx.usage(&cluster.owner)?;
                    let (now_usage, then) = (cluster.usage(), resized.usage());
                    let extra = Usage {
                        ips: u64::from(more),
                        vcpus: then.vcpus - now_usage.vcpus,
                        memory_mb: then.memory_mb - now_usage.memory_mb,
                        disk_gb: then.disk_gb - now_usage.disk_gb,
                        ..Usage::default()
                    };
                    quota.check(&before, &extra)?;
                    let first = next_node_index(tx, cluster)?;
                    // More addresses where the cluster's are, whatever the mode is now.
                    let scope = match Scope::of_resource(&*tx, cluster.id, quota.max_ips)? {
                        Some(scope) => scope,
                        None => Scope::for_new(&*tx, &networks, &cluster.owner, quota.max_ips)?,
                    };
                    lease_nodes(tx, ipam, &scope, cluster, first, more)?;
                }
                cluster.worker_count = workers;
                Ok(if grow {
                    &[STEP_RESERVE, STEP_APPLY]
                } else {
                    &[STEP_APPLY, STEP_WAIT_WORKERS, STEP_SHRINK, STEP_RELEASE]
                })
            })
            .await?;
        self.rt.spawn_operation(operation.id);
        Ok(operation)
    }

    async fn start_cluster_operation<F>(
        &self,
        actor: &Actor,
        owner: &Username,
        name: &ResourceName,
        kind: OperationKind,
        mut transition: F,
    ) -> Result<Operation>
    where
        F: FnMut(&mut dyn StoreTx, &dyn crate::ipam::Ipam, &mut Cluster) -> Result<&'static [&'static str]>
            + Send
            + 'static,
    {
        decide(actor, Action::Change, Some(owner), "cluster", name)?;
        let (owner, name, actor) = (owner.clone(), name.clone(), actor.clone());
        let result = self
            .rt
            .db(move |store, ipam| {
                store.transact(|tx| {
                    let mut cluster =
                        tx.cluster_by_name(&owner, &name)?.ok_or_else(|| Error::not_found("cluster", &name))?;
                    ensure_idle(&*tx, on_resource(cluster.id), format_args!("cluster {name}"))?;
                    let steps = transition(tx, &*ipam, &mut cluster)?;
                    cluster.updated_at = now();
                    tx.update_cluster(&cluster)?;
                    let mut operation =
                        Operation::new(kind, owner.clone(), cluster_resource(&cluster), &actor.name, steps);
                    if steps.contains(&STEP_RESERVE) {
                        operation.finish_step(STEP_RESERVE, true);
                    }
                    let audited = format!("cluster/{owner}/{name}");
                    let details = json!({"operation": operation.id, "workers": cluster.worker_count});
                    record_operation(tx, &actor, &operation, kind.as_str(), &audited, details)?;
                    Ok(operation)
                })
            })
            .await;
        self.rt.changed.notify_waiters();
        result
    }
}

/// The operation's view of a cluster.
pub(super) fn cluster_resource(cluster: &Cluster) -> ResourceRef {
    ResourceRef { kind: ResourceKind::Cluster, id: cluster.id, name: cluster.name.to_string() }
}

/// The number after the highest `<cluster>-node-<n>` lease the cluster holds.
fn next_node_index(tx: &dyn StoreTx, cluster: &Cluster) -> Result<u32> {
    let prefix = format!("{}-node-", cluster.name);
    Ok(tx
        .leases_of_resource(cluster.id)?
        .iter()
        .filter_map(|l| l.resource.name.strip_prefix(&prefix).and_then(|n| n.parse::<u32>().ok()))
        .max()
        .unwrap_or(0)
        + 1)
}
