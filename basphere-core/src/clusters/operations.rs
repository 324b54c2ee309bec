//! The cluster operation handler (creating, scaling and deleting clusters through the
//! `ClusterProvisioner`) and the status refresh, which turns the backend's observations into
//! each cluster's state, conditions and notifications.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use async_trait::async_trait;

use std::sync::Arc;

use super::Clusters;
use crate::cluster_provisioner::{
    ClusterHealth, ClusterLan, ClusterObservation, ClusterProvisioner, ClusterRef, ClusterRequest, Removal,
};
use crate::error::{Error, Result};
use crate::model::*;
use crate::networks::{guest_lan, network_of_resource};
use crate::runtime::{Commit, OperationContext, OperationHandler, Registry};
use crate::store::{ClusterFilter, OperationFilter, StoreExt};
use crate::vms::operations::{log_tail_of, release_leases};

pub(crate) const STEP_RESERVE: &str = "reserve addresses";
pub(crate) const STEP_APPLY: &str = "apply";
pub(crate) const STEP_DELETE: &str = "delete";
pub(crate) const STEP_WAIT_GONE: &str = "wait until removed";
pub(crate) const STEP_WAIT_WORKERS: &str = "wait for workers to go";
pub(crate) const STEP_SHRINK: &str = "shrink address pool";
pub(crate) const STEP_RELEASE: &str = "release addresses";

/// How often a waiting operation looks again when the backend reports nothing.
const WAIT_POLL: Duration = Duration::from_secs(5);

/// Registers the cluster operations' handlers, each with the cluster backend.
pub(crate) fn register(registry: &mut Registry, clusters: &Arc<dyn ClusterProvisioner>) {
    registry.register(OperationKind::CreateCluster, Create(clusters.clone()));
    registry.register(OperationKind::ScaleCluster, Scale(clusters.clone()));
    registry.register(OperationKind::DeleteCluster, Delete(clusters.clone()));
}

/// `create_cluster`: applies the cluster's objects and waits for it.
struct Create(Arc<dyn ClusterProvisioner>);
/// `scale_cluster`: changes the number of workers.
struct Scale(Arc<dyn ClusterProvisioner>);
/// `delete_cluster`: deletes the cluster, then frees its addresses.
struct Delete(Arc<dyn ClusterProvisioner>);

#[async_trait]
impl OperationHandler for Create {
    async fn run(&self, ctx: &OperationContext<'_>, operation: Operation) -> Result<Operation> {
        create(ctx, &*self.0, operation).await
    }
}

#[async_trait]
impl OperationHandler for Scale {
    async fn run(&self, ctx: &OperationContext<'_>, operation: Operation) -> Result<Operation> {
        scale(ctx, &*self.0, operation).await
    }
}

#[async_trait]
impl OperationHandler for Delete {
    async fn run(&self, ctx: &OperationContext<'_>, operation: Operation) -> Result<Operation> {
        delete(ctx, &*self.0, operation).await
    }
}

pub(crate) fn cluster_ref(cluster: &Cluster) -> ClusterRef {
    ClusterRef { id: cluster.id, owner: cluster.owner.clone(), name: cluster.name.clone() }
}

/// The cluster, its owner and its leases.
/// The cluster, its owner, its leases and the tenant network they are in (none for the flat
/// pools').
struct Loaded {
    cluster: Cluster,
    user: User,
    leases: Vec<Lease>,
    network: Option<Network>,
}

async fn load(ctx: &OperationContext<'_>, operation: &Operation) -> Result<Loaded> {
    let (id, owner) = (operation.resource.id, operation.owner.clone());
    ctx.read(move |tx| {
        let cluster = tx.get_cluster(id)?.ok_or_else(|| Error::not_found("cluster", id))?;
        let user = tx.get_user(&owner)?.ok_or_else(|| Error::not_found("user", &owner))?;
        let network = network_of_resource(tx, id)?;
        Ok(Loaded { cluster, user, leases: tx.leases_of_resource(id)?, network })
    })
    .await
}

fn node_addresses(leases: &[Lease]) -> Vec<Ipv4Addr> {
    let mut addresses: Vec<_> =
        leases.iter().filter(|l| l.resource.kind == ResourceKind::ClusterNode).map(|l| l.address).collect();
    addresses.sort();
    addresses
}

fn request(
    ctx: &OperationContext<'_>,
    cluster: &Cluster,
    user: &User,
    network: Option<&Network>,
    nodes: Vec<Ipv4Addr>,
) -> Result<ClusterRequest> {
    let endpoint = cluster
        .control_plane_endpoint
        .ok_or_else(|| Error::Conflict(format!("cluster {} has no control-plane address", cluster.name)))?;
    let config = ctx.config();
    let (prefix_len, gateway, lan) = match network {
        // On a tenant LAN: its prefix, its gateway (the tenant's router), its port group and MTU.
        Some(network) => {
            let (prefix_len, gateway, mtu, port_group) = guest_lan(&config.networks, network, endpoint)?;
            (prefix_len, gateway, Some(ClusterLan { port_group, mtu }))
        }
        None => {
            let info = ctx
                .ipam()
                .address_info(endpoint)
                .ok_or_else(|| Error::Conflict(format!("{endpoint} is in no configured pool")))?;
            (info.prefix_len, info.gateway, None)
        }
    };
    Ok(ClusterRequest {
        id: cluster.id,
        owner: cluster.owner.clone(),
        name: cluster.name.clone(),
        kubernetes_version: cluster.kubernetes_version.clone(),
        node_template: config.kubernetes.node_template.clone(),
        control_plane_count: cluster.control_plane_count,
        control_plane_spec: cluster.control_plane_spec.clone(),
        worker_count: cluster.worker_count,
        worker_spec: cluster.worker_spec.clone(),
        endpoint,
        node_addresses: nodes,
        prefix_len,
        gateway,
        dns: config.guest_network.dns.clone(),
        lan,
        ssh_key: user.ssh_key.clone(),
    })
}

/// Applies `change` to the stored cluster (read afresh, as the status refresh writes it too)
/// and saves it with the operation.
async fn update<F>(ctx: &OperationContext<'_>, operation: &Operation, mut change: F) -> Result<Cluster>
where
    F: FnMut(&mut Commit<'_>, &mut Cluster) -> Result<()> + Send + 'static,
{
    let id = operation.resource.id;
    ctx.commit(operation, move |commit| {
        let mut cluster = commit.tx.get_cluster(id)?.ok_or_else(|| Error::not_found("cluster", id))?;
        change(commit, &mut cluster)?;
        cluster.updated_at = now();
        commit.tx.update_cluster(&cluster)?;
        Ok(cluster)
    })
    .await
}

async fn create(
    ctx: &OperationContext<'_>,
    clusters: &dyn ClusterProvisioner,
    mut operation: Operation,
) -> Result<Operation> {
    let Loaded { cluster, user, leases, network } = load(ctx, &operation).await?;
    operation.start_step(STEP_APPLY);
    update(ctx, &operation, |_, c| {
        c.state = ClusterState::Provisioning;
        Ok(())
    })
    .await?;
    let outcome = match request(ctx, &cluster, &user, network.as_ref(), node_addresses(&leases)) {
        Ok(request) => clusters.apply(&request).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => {
            operation.finish_step(STEP_APPLY, true);
            operation.append_log(vec![format!("the management cluster accepted {}'s objects", cluster.name)]);
            operation.succeed();
            update(ctx, &operation, |commit, c| {
                for lease in commit.tx.leases_of_resource(c.id)? {
                    commit.tx.set_lease_state(lease.network, lease.address, LeaseState::Active)?;
                }
                Ok(())
            })
            .await?;
            Ok(operation)
        }
        Err(error) => {
            operation.append_log(log_tail_of(&error));
            operation.finish_step(STEP_APPLY, false);
            // Remove whatever was made; the addresses are freed only once nothing is left.
            let (reason, release) = match clusters.delete(&cluster_ref(&cluster)).await {
                Ok(Removal::Gone) => (format!("creation failed: {error}. Its addresses were freed; delete the record and try again"), true),
                Ok(Removal::Waiting(_)) | Err(_) => (
                    format!("creation failed: {error}. What was made is being removed; delete the cluster to free its addresses"),
                    false,
                ),
            };
            operation.fail(reason.clone());
            update(ctx, &operation, move |commit, c| {
                if release {
                    release_all(commit, c.id)?;
                    c.control_plane_endpoint = None;
                }
                mark_failed(commit, c, &reason);
                Ok(())
            })
            .await?;
            Ok(operation)
        }
    }
}

async fn scale(
    ctx: &OperationContext<'_>,
    clusters: &dyn ClusterProvisioner,
    mut operation: Operation,
) -> Result<Operation> {
    let Loaded { cluster, user, leases, network } = load(ctx, &operation).await?;
    let nodes = node_addresses(&leases);
    let target = cluster.worker_count;
    operation.start_step(STEP_APPLY);
    ctx.save(&operation).await?;
    let applied = match request(ctx, &cluster, &user, network.as_ref(), nodes.clone()) {
        Ok(request) => clusters.apply(&request).await,
        Err(error) => Err(error),
    };
    if let Err(error) = applied {
        return fail_step(ctx, operation, STEP_APPLY, format!("scaling failed: {error}"), &error).await;
    }
    operation.finish_step(STEP_APPLY, true);
    let grow = operation.steps.iter().any(|s| s.name == STEP_RESERVE);
    if grow {
        operation.succeed();
        update(ctx, &operation, |commit, c| {
            for lease in commit.tx.leases_of_resource(c.id)? {
                commit.tx.set_lease_state(lease.network, lease.address, LeaseState::Active)?;
            }
            Ok(())
        })
        .await?;
        return Ok(operation);
    }

    // Shrinking: wait until the surplus workers are gone, then keep the addresses the
    // machines hold (plus enough spare for the pool) and free the rest.
    operation.start_step(STEP_WAIT_WORKERS);
    ctx.save(&operation).await?;
    let deadline = tokio::time::Instant::now() + ctx.config().kubernetes.delete_timeout;
    let observation = loop {
        match clusters.observe(&cluster_ref(&cluster)).await {
            Ok(Some(observation)) if observation.worker_machines <= target => break observation,
            Ok(_) | Err(_) if tokio::time::Instant::now() >= deadline => {
                let error = Error::Timeout(format!("the surplus workers of {} are not gone", cluster.name));
                let reason = format!(
                    "scaling down stalled: {error}; its addresses stay reserved. Scale again or delete the cluster"
                );
                return fail_step(ctx, operation, STEP_WAIT_WORKERS, reason, &error).await;
            }
            _ => clusters.changed(WAIT_POLL).await,
        }
    };
    operation.finish_step(STEP_WAIT_WORKERS, true);
    operation.start_step(STEP_SHRINK);
    ctx.save(&operation).await?;
    let keep = keep_addresses(&nodes, &observation.addresses_in_use, cluster.pool_size(target) as usize);
    let shrunk = match request(ctx, &cluster, &user, network.as_ref(), keep.clone()) {
        Ok(request) => clusters.apply(&request).await,
        Err(error) => Err(error),
    };
    if let Err(error) = shrunk {
        let reason = format!("shrinking the address pool failed: {error}; the spare addresses stay reserved");
        return fail_step(ctx, operation, STEP_SHRINK, reason, &error).await;
    }
    operation.finish_step(STEP_SHRINK, true);
    operation.start_step(STEP_RELEASE);
    operation.finish_step(STEP_RELEASE, true);
    operation.succeed();
    let keep: BTreeSet<Ipv4Addr> = keep.into_iter().collect();
    update(ctx, &operation, move |commit, c| {
        for lease in commit.tx.leases_of_resource(c.id)? {
            if lease.resource.kind == ResourceKind::ClusterNode && !keep.contains(&lease.address) {
                commit.ipam.release(commit.tx, lease.network, lease.address)?;
            }
        }
        Ok(())
    })
    .await?;
    Ok(operation)
}

/// The pool after a shrink: every address a machine holds, then the lowest others, `size` in
/// all.
fn keep_addresses(pool: &[Ipv4Addr], in_use: &[Ipv4Addr], size: usize) -> Vec<Ipv4Addr> {
    let mut keep: BTreeSet<Ipv4Addr> = in_use.iter().filter(|a| pool.contains(a)).copied().collect();
    for address in pool {
        if keep.len() >= size {
            break;
        }
        keep.insert(*address);
    }
    keep.into_iter().collect()
}

async fn delete(
    ctx: &OperationContext<'_>,
    clusters: &dyn ClusterProvisioner,
    mut operation: Operation,
) -> Result<Operation> {
    let Loaded { cluster, .. } = load(ctx, &operation).await?;
    let target = cluster_ref(&cluster);
    operation.start_step(STEP_DELETE);
    ctx.save(&operation).await?;
    let deadline = tokio::time::Instant::now() + ctx.config().kubernetes.delete_timeout;
    let mut last_message = None;
    loop {
        match clusters.delete(&target).await {
            Ok(Removal::Gone) => break,
            Ok(Removal::Waiting(message)) => {
                if operation.steps.iter().any(|s| s.name == STEP_DELETE && s.finished_at.is_none()) {
                    operation.finish_step(STEP_DELETE, true);
                    operation.start_step(STEP_WAIT_GONE);
                    ctx.save(&operation).await?;
                }
                if last_message.as_ref() != Some(&message) {
                    let saved = message.clone();
                    update(ctx, &operation, move |_, c| {
                        c.reason = Some(saved.clone());
                        Ok(())
                    })
                    .await?;
                    last_message = Some(message.clone());
                }
                if tokio::time::Instant::now() >= deadline {
                    let reason = format!(
                        "deletion is stuck: {message}. The cluster and its addresses are kept; delete it again once \
                         that is resolved"
                    );
                    let error = Error::Timeout(message);
                    return fail_step(ctx, operation, STEP_WAIT_GONE, reason, &error).await;
                }
            }
            Err(error) if tokio::time::Instant::now() >= deadline => {
                let reason =
                    format!("deletion failed: {error}. The cluster and its addresses are kept; delete it again");
                let step = if operation.steps.iter().any(|s| s.name == STEP_WAIT_GONE && s.started_at.is_some()) {
                    STEP_WAIT_GONE
                } else {
                    STEP_DELETE
                };
                return fail_step(ctx, operation, step, reason, &error).await;
            }
            Err(error) => tracing::warn!(cluster = %cluster.name, %error, "deleting a cluster failed; trying again"),
        }
        clusters.changed(WAIT_POLL).await;
    }
    for step in [STEP_DELETE, STEP_WAIT_GONE] {
        if operation.steps.iter().any(|s| s.name == step && s.finished_at.is_none()) {
            operation.finish_step(step, true);
        }
    }
    operation.start_step(STEP_RELEASE);
    operation.finish_step(STEP_RELEASE, true);
    operation.succeed();
    update(ctx, &operation, |commit, c| {
        release_all(commit, c.id)?;
        c.state = ClusterState::Deleted;
        c.reason = None;
        c.control_plane_endpoint = None;
        Ok(())
    })
    .await?;
    Ok(operation)
}

/// Ends the operation at `step` with `reason`: the cluster is `failed` with that reason and
/// keeps its addresses.
async fn fail_step(
    ctx: &OperationContext<'_>,
    mut operation: Operation,
    step: &str,
    reason: String,
    error: &Error,
) -> Result<Operation> {
    operation.append_log(log_tail_of(error));
    operation.finish_step(step, false);
    operation.fail(reason.clone());
    update(ctx, &operation, move |commit, c| {
        mark_failed(commit, c, &reason);
        Ok(())
    })
    .await?;
    Ok(operation)
}

fn release_all(commit: &mut Commit<'_>, cluster: uuid::Uuid) -> Result<()> {
    release_leases(commit.tx, commit.ipam, cluster)
}

/// The cluster as failed for `reason`, its owner told in the same transaction.
fn mark_failed(commit: &mut Commit<'_>, cluster: &mut Cluster, reason: &str) {
    cluster.state = ClusterState::Failed;
    cluster.reason = Some(reason.to_owned());
    commit.notify(NotificationEvent::ClusterFailed {
        owner: cluster.owner.clone(),
        name: cluster.name.clone(),
        reason: reason.to_owned(),
    });
}

/// What an observation makes of a cluster: its new state and reason, or `None` to leave it.
fn judge(
    cluster: &Cluster,
    observation: Option<&ClusterObservation>,
    busy: bool,
) -> Option<(ClusterState, Option<String>)> {
    if matches!(cluster.state, ClusterState::Pending | ClusterState::Deleting | ClusterState::Deleted) {
        return None;
    }
    // A cluster applied moments ago may not have reached the backend's watch yet.
    let young = cluster.status.observed_at.is_none() && now() - cluster.updated_at < chrono::Duration::minutes(2);
    match observation {
        // Until its creation has applied the objects, a missing cluster is expected.
        None if busy || young || cluster.state == ClusterState::Failed => None,
        None => Some((
            ClusterState::Failed,
            Some("the cluster's objects are gone from the management cluster; delete it to free its addresses".into()),
        )),
        // Scaling and failing operations decide on their own.
        Some(_) if busy => None,
        Some(o) => match o.health {
            ClusterHealth::Ready => Some((ClusterState::Ready, None)),
            ClusterHealth::Failed => Some((ClusterState::Failed, o.reason.clone())),
            ClusterHealth::Progressing
                if cluster.state == ClusterState::Failed && cluster.status.observed_at.is_none() =>
            {
                None
            }
            ClusterHealth::Progressing => Some((ClusterState::Provisioning, o.reason.clone())),
            ClusterHealth::Deleting => None,
        },
    }
}

/// `cluster` brought up to `observation`; returns the notification its new state causes.
fn take_observation(
    cluster: &mut Cluster,
    observation: Option<&ClusterObservation>,
    busy: bool,
) -> Option<NotificationEvent> {
    if let Some(o) = observation {
        let status = ClusterStatus {
            phase: o.phase.clone(),
            conditions: o.conditions.clone(),
            control_plane_ready: o.control_plane_ready,
            workers_ready: o.workers_ready,
            observed_at: cluster.status.observed_at,
        };
        if status != cluster.status {
            cluster.status = ClusterStatus { observed_at: Some(now()), ..status };
        }
    }
    let (state, reason) = judge(cluster, observation, busy)?;
    let event = match state {
        _ if state == cluster.state => None,
        ClusterState::Ready => {
            Some(NotificationEvent::ClusterReady { owner: cluster.owner.clone(), name: cluster.name.clone() })
        }
        ClusterState::Failed => Some(NotificationEvent::ClusterFailed {
            owner: cluster.owner.clone(),
            name: cluster.name.clone(),
            reason: reason.clone().unwrap_or_else(|| "the cluster failed".into()),
        }),
        _ => None,
    };
    cluster.state = state;
    cluster.reason = reason;
    event
}

impl Clusters {
    /// Brings every live cluster's state and conditions up to what the backend observes now,
    /// notifying each change to `ready` or `failed` once. Returns how many clusters changed.
    /// Only a cluster whose record would change costs a write transaction.
    pub async fn refresh_statuses(&self) -> Result<usize> {
        let clusters = self.rt.db(|store, _| store.query(|tx| tx.list_clusters(&ClusterFilter::default()))).await?;
        let mut changed = 0;
        for cluster in clusters {
            if matches!(cluster.state, ClusterState::Pending | ClusterState::Deleted) {
                continue;
            }
            let observation = match self.backend.observe(&cluster_ref(&cluster)).await {
                Ok(observation) => observation,
                Err(error) => {
                    tracing::warn!(cluster = %cluster.name, owner = %cluster.owner, %error, "observing a cluster failed");
                    continue;
                }
            };
            // Whether an operation runs or not, nothing would change: no transaction.
            let unchanged = [false, true].into_iter().all(|busy| {
                let mut probe = cluster.clone();
                take_observation(&mut probe, observation.as_ref(), busy);
                probe == cluster
            });
            if unchanged {
                continue;
            }
            let channels = self.rt.channels();
            let id = cluster.id;
            let wrote = self
                .rt
                .db(move |store, _| {
                    store.transact(|tx| {
                        let Some(mut cluster) = tx.get_cluster(id)? else { return Ok(false) };
                        let busy = !tx
                            .list_operations(&OperationFilter {
                                resource: Some(id),
                                unfinished: true,
                                ..OperationFilter::default()
                            })?
                            .is_empty();
                        let before = cluster.clone();
                        if let Some(event) = take_observation(&mut cluster, observation.as_ref(), busy) {
                            crate::runtime::queue(tx, event, &channels)?;
                        }
                        if cluster == before {
                            return Ok(false);
                        }
                        cluster.updated_at = now();
                        tx.update_cluster(&cluster)?;
                        Ok(true)
                    })
                })
                .await?;
            if wrote {
                changed += 1;
            }
        }
        if changed > 0 {
            self.rt.changed.notify_waiters();
            self.rt.outbox_ready.notify_one();
        }
        Ok(changed)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shrunk_pool_keeps_every_address_in_use() {
        let a = |n: u8| Ipv4Addr::new(10, 0, 0, n);
        let pool = [a(1), a(2), a(3), a(4), a(5), a(6)];
        assert_eq!(keep_addresses(&pool, &[a(6), a(2)], 4), vec![a(1), a(2), a(3), a(6)]);
        assert_eq!(keep_addresses(&pool, &[], 2), vec![a(1), a(2)]);
        // Addresses outside the pool are not Basphere's to keep.
        assert_eq!(keep_addresses(&pool, &[a(9)], 1), vec![a(1)]);
    }

    fn cluster(state: ClusterState) -> Cluster {
        let spec = NodeSpec { key: "medium".into(), cpu: 4, memory_mb: 8192, disk_gb: 100 };
        let at = now() - chrono::Duration::hours(1);
        Cluster {
            id: uuid::Uuid::now_v7(),
            owner: crate::validate::Username::parse("alice").unwrap(),
            name: crate::validate::ResourceName::parse("dev").unwrap(),
            cluster_type: "dev".into(),
            kubernetes_version: "v1.31.4".into(),
            control_plane_count: 1,
            worker_count: 2,
            control_plane_spec: spec.clone(),
            worker_spec: spec,
            control_plane_endpoint: None,
            state,
            reason: None,
            status: ClusterStatus { observed_at: Some(at), ..ClusterStatus::default() },
            created_at: at,
            updated_at: at,
        }
    }

    fn seen(health: ClusterHealth, reason: Option<&str>) -> ClusterObservation {
        ClusterObservation {
            health,
            phase: None,
            conditions: Vec::new(),
            control_plane_ready: 1,
            workers_ready: 2,
            worker_machines: 2,
            addresses_in_use: Vec::new(),
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn a_transition_is_notified_once_and_a_repeat_changes_nothing() {
        let mut c = cluster(ClusterState::Provisioning);
        let ready = seen(ClusterHealth::Ready, None);
        let event = take_observation(&mut c, Some(&ready), false);
        assert!(matches!(event, Some(NotificationEvent::ClusterReady { .. })), "{event:?}");
        assert_eq!(c.state, ClusterState::Ready);
        let before = c.clone();
        assert!(take_observation(&mut c, Some(&ready), false).is_none(), "told once");
        assert_eq!(c, before, "the same observation writes nothing");

        let failed = seen(ClusterHealth::Failed, Some("m: CloningFailed: no template"));
        let event = take_observation(&mut c, Some(&failed), false);
        assert!(
            matches!(&event, Some(NotificationEvent::ClusterFailed { reason, .. }) if reason.contains("CloningFailed"))
        );
        // An operation decides on its own while it runs: only the status is taken.
        let mut busy = cluster(ClusterState::Provisioning);
        assert!(take_observation(&mut busy, Some(&ready), true).is_none());
        assert_eq!((busy.state, busy.status.workers_ready), (ClusterState::Provisioning, 2));
    }

    #[test]
    fn a_cluster_missing_from_the_backend_fails_only_once_it_was_seen_or_is_old() {
        let mut young = cluster(ClusterState::Provisioning);
        young.status.observed_at = None;
        young.updated_at = now();
        assert!(take_observation(&mut young, None, false).is_none(), "applied moments ago");
        let mut gone = cluster(ClusterState::Ready);
        assert!(matches!(take_observation(&mut gone, None, false), Some(NotificationEvent::ClusterFailed { .. })));
        assert!(gone.reason.unwrap().contains("gone from the management cluster"));
    }
}
