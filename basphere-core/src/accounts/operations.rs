//! The account operation handler: approval (IP block, vSphere folder, the tenant network in
//! tenant mode, bastion login, uid, notification), key changes on the bastion, and purges. Every step is idempotent, so an
//! operation that failed part-way finishes when it is run again.

use async_trait::async_trait;

use std::sync::Arc;

use crate::bastion::Bastion;
use crate::cluster_provisioner::{ClusterProvisioner, Removal};
use crate::clusters::operations::cluster_ref;
use crate::error::{Error, Result};
use crate::model::*;
use crate::networks::new_network;
use crate::networks::operations::{make_network, remove_network, tenant_settings, NetworkBackends};
use crate::provisioner::Provisioner;
use crate::runtime::{OperationContext, OperationHandler, Registry};
use crate::store::{ClusterFilter, OperationFilter, VmFilter};
use crate::validate::Username;
use crate::vms::operations::{release_leases, vm_ref};

const STEP_BLOCK: &str = "ip block";
const STEP_FOLDER: &str = "vsphere folder";
const STEP_NETWORK: &str = "tenant network";
const STEP_LOGIN: &str = "bastion login";
const STEP_KEY: &str = "bastion key";
const STEP_CLUSTERS: &str = "destroy clusters";
const STEP_VMS: &str = "destroy vms";
const STEP_REMOVE_NETWORK: &str = "remove tenant network";
const STEP_ADDRESSES: &str = "free addresses";
const STEP_REMOVE_LOGIN: &str = "remove bastion login";
const STEP_ACCOUNT: &str = "remove account";

pub(crate) const CHANGE_KEY_STEPS: &[&str] = &[STEP_KEY];

/// An approval's steps: in tenant mode the account's network instead of a block of the flat
/// pools (its VMs and clusters are leased on its network's LANs).
pub(crate) fn approve_steps(tenant: bool) -> &'static [&'static str] {
    if tenant {
        &[STEP_FOLDER, STEP_NETWORK, STEP_LOGIN]
    } else {
        &[STEP_BLOCK, STEP_FOLDER, STEP_LOGIN]
    }
}

/// A purge's steps: the tenant network's only when the account has one.
pub(crate) fn purge_steps(network: bool) -> &'static [&'static str] {
    if network {
        &[STEP_CLUSTERS, STEP_VMS, STEP_REMOVE_NETWORK, STEP_ADDRESSES, STEP_REMOVE_LOGIN, STEP_ACCOUNT]
    } else {
        &[STEP_CLUSTERS, STEP_VMS, STEP_ADDRESSES, STEP_REMOVE_LOGIN, STEP_ACCOUNT]
    }
}

/// The backends the account operations drive.
#[derive(Clone)]
pub(crate) struct Backends {
    pub provisioner: Arc<dyn Provisioner>,
    pub clusters: Arc<dyn ClusterProvisioner>,
    pub bastion: Arc<dyn Bastion>,
    /// The VM backend and the router again, as a tenant network needs them.
    pub network: NetworkBackends,
}

/// Registers the account operations' handlers.
pub(crate) fn register(registry: &mut Registry, backends: &Backends) {
    registry.register(OperationKind::ApproveAccount, Approve(backends.clone()));
    registry.register(OperationKind::ChangeKey, ChangeKey(backends.bastion.clone()));
    registry.register(OperationKind::PurgeAccount, Purge(backends.clone()));
}

/// `approve_account`: the account's IP block, vSphere folder and bastion login.
struct Approve(Backends);
/// `change_key`: the new key on the bastion.
struct ChangeKey(Arc<dyn Bastion>);
/// `purge_account`: everything the account has, then the account.
struct Purge(Backends);

#[async_trait]
impl OperationHandler for Approve {
    async fn run(&self, ctx: &OperationContext<'_>, operation: Operation) -> Result<Operation> {
        approve(ctx, &self.0, operation).await
    }
}

#[async_trait]
impl OperationHandler for ChangeKey {
    async fn run(&self, ctx: &OperationContext<'_>, operation: Operation) -> Result<Operation> {
        change_key(ctx, &*self.0, operation).await
    }
}

#[async_trait]
impl OperationHandler for Purge {
    async fn run(&self, ctx: &OperationContext<'_>, operation: Operation) -> Result<Operation> {
        purge(ctx, &self.0, operation).await
    }
}

async fn load_user(ctx: &OperationContext<'_>, username: &Username) -> Result<Option<User>> {
    let username = username.clone();
    ctx.read(move |tx| tx.get_user(&username)).await
}

/// Records a failed step and how to finish the work.
async fn failed(
    ctx: &OperationContext<'_>,
    mut operation: Operation,
    step: &str,
    error: &Error,
    again: &str,
) -> Result<Operation> {
    operation.append_log([error.to_string()]);
    operation.finish_step(step, false);
    operation.fail(format!("{step} failed: {error}; {again}"));
    ctx.save(&operation).await?;
    Ok(operation)
}

/// Whether `error` means this process lost the operation: the run stops and the operation
/// stays unfinished for its new holder, rather than being marked failed.
fn is_ours(error: &Error) -> bool {
    matches!(error, Error::ClaimLost(_))
}

async fn approve(ctx: &OperationContext<'_>, backends: &Backends, mut operation: Operation) -> Result<Operation> {
    let name = operation.owner.clone();
    let again = format!("run `basphere admin user approve {name}` again to finish");
    let Some(user) = load_user(ctx, &name).await? else {
        operation.fail(format!("the account {name} no longer exists"));
        ctx.save(&operation).await?;
        return Ok(operation);
    };

    let tenant = tenant_settings(&ctx.config().networks).is_ok();
    if !tenant {
        operation.start_step(STEP_BLOCK);
        let owner = name.clone();
        let assigned =
            ctx.commit(&operation, move |commit| commit.ipam.assign_block(commit.tx, &owner).map(|_| ())).await;
        if let Err(error) = assigned {
            if is_ours(&error) {
                return Err(error);
            }
            return failed(ctx, operation, STEP_BLOCK, &error, &again).await;
        }
        operation.finish_step(STEP_BLOCK, true);
    }

    operation.start_step(STEP_FOLDER);
    ctx.save(&operation).await?;
    if let Err(error) = backends.provisioner.ensure_folder(&name).await {
        return failed(ctx, operation, STEP_FOLDER, &error, &again).await;
    }
    operation.finish_step(STEP_FOLDER, true);

    if let Ok(settings) = tenant_settings(&ctx.config().networks) {
        // The account's network: recorded once (its VLAN ids picked in that transaction), then
        // its router made; a repeated approval finds the record and makes the router again.
        operation.start_step(STEP_NETWORK);
        let (owner, settings) = (name.clone(), settings.clone());
        let recorded = ctx
            .commit(&operation, move |commit| match commit.tx.network_of(&owner)? {
                Some(network) => Ok(network),
                None => {
                    let network = new_network(&*commit.tx, &settings, &owner)?;
                    commit.tx.insert_network(&network)?;
                    Ok(network)
                }
            })
            .await;
        let network = match recorded {
            Ok(network) => network,
            Err(error) if is_ours(&error) => return Err(error),
            Err(error) => return failed(ctx, operation, STEP_NETWORK, &error, &again).await,
        };
        if let Err(reason) = make_network(ctx, &backends.network, &mut operation, network).await? {
            let error = Error::Conflict(reason);
            return failed(ctx, operation, STEP_NETWORK, &error, &again).await;
        }
        operation.finish_step(STEP_NETWORK, true);
    }

    operation.start_step(STEP_LOGIN);
    ctx.save(&operation).await?;
    let uid = match backends.bastion.ensure_login(&name, &user.ssh_key).await {
        Ok(uid) => uid,
        Err(error) => return failed(ctx, operation, STEP_LOGIN, &error, &again).await,
    };
    operation.finish_step(STEP_LOGIN, true);
    operation.succeed();
    let recorded = ctx
        .commit(&operation, move |commit| {
            let mut account = commit.tx.get_user(&name)?.ok_or_else(|| Error::not_found("user", &name))?;
            if uid.is_some() && account.uid != uid {
                account.uid = uid;
                account.updated_at = now();
                commit.tx.update_user(&account)?;
            }
            commit.notify(NotificationEvent::RegistrationApproved {
                username: account.username.clone(),
                email: account.email.clone(),
            });
            Ok(())
        })
        .await;
    match recorded {
        Ok(()) => Ok(operation),
        Err(error) if is_ours(&error) => Err(error),
        Err(error) => failed(ctx, operation, STEP_LOGIN, &error, &again).await,
    }
}

async fn change_key(ctx: &OperationContext<'_>, bastion: &dyn Bastion, mut operation: Operation) -> Result<Operation> {
    let name = operation.owner.clone();
    let again = format!(
        "the account's key is changed in Basphere; fix the bastion and run the operation again ({})",
        operation.id
    );
    let Some(user) = load_user(ctx, &name).await? else {
        operation.fail(format!("the account {name} no longer exists"));
        ctx.save(&operation).await?;
        return Ok(operation);
    };
    operation.start_step(STEP_KEY);
    ctx.save(&operation).await?;
    if let Err(error) = bastion.set_key(&name, &user.ssh_key).await {
        return failed(ctx, operation, STEP_KEY, &error, &again).await;
    }
    operation.finish_step(STEP_KEY, true);
    operation.succeed();
    ctx.commit(&operation, move |commit| {
        commit.notify(NotificationEvent::KeyChangeApproved {
            username: user.username.clone(),
            email: user.email.clone(),
        });
        Ok(())
    })
    .await?;
    Ok(operation)
}

async fn purge(ctx: &OperationContext<'_>, backends: &Backends, mut operation: Operation) -> Result<Operation> {
    let name = operation.owner.clone();
    let again = format!("run `basphere admin user purge {name}` again to finish");
    if load_user(ctx, &name).await?.is_none() {
        // A purge that removed the account and died before recording it.
        operation.succeed();
        ctx.save(&operation).await?;
        return Ok(operation);
    }

    operation.start_step(STEP_CLUSTERS);
    ctx.save(&operation).await?;
    let owner = name.clone();
    let (vms, busy, clusters) = ctx
        .read(move |tx| {
            let vms = tx.list_vms(&VmFilter { owner: Some(owner.clone()), ..VmFilter::default() })?;
            let clusters =
                tx.list_clusters(&ClusterFilter { owner: Some(owner.clone()), ..ClusterFilter::default() })?;
            let busy = tx
                .list_operations(&OperationFilter {
                    owner: Some(owner.clone()),
                    unfinished: true,
                    ..OperationFilter::default()
                })?
                .into_iter()
                .filter(|op| op.resource.kind != ResourceKind::Account)
                .count();
            Ok((vms, busy, clusters))
        })
        .await?;
    if busy > 0 {
        let error = Error::Conflict(format!("{busy} VM or cluster operation(s) of {name} are still running"));
        return failed(ctx, operation, STEP_CLUSTERS, &error, &format!("wait for them, then {again}")).await;
    }
    // Clusters first, through Cluster API; each one's addresses are freed once it is gone.
    for mut cluster in clusters.into_iter().filter(Cluster::is_live) {
        let target = cluster_ref(&cluster);
        let deadline = tokio::time::Instant::now() + ctx.config().kubernetes.delete_timeout;
        loop {
            match backends.clusters.delete(&target).await {
                Ok(Removal::Gone) => break,
                Ok(Removal::Waiting(message)) if tokio::time::Instant::now() >= deadline => {
                    let error = Error::Timeout(format!("the cluster {} is not gone: {message}", cluster.name));
                    return failed(ctx, operation, STEP_CLUSTERS, &error, &again).await;
                }
                Err(error) if tokio::time::Instant::now() >= deadline => {
                    let error = Error::Conflict(format!("deleting the cluster {}: {error}", cluster.name));
                    return failed(ctx, operation, STEP_CLUSTERS, &error, &again).await;
                }
                _ => backends.clusters.changed(std::time::Duration::from_secs(5)).await,
            }
        }
        operation.append_log([format!("deleted the cluster {}", cluster.name)]);
        cluster.state = ClusterState::Deleted;
        cluster.control_plane_endpoint = None;
        cluster.reason = None;
        cluster.updated_at = now();
        ctx.commit(&operation, move |commit| {
            release_leases(commit.tx, commit.ipam, cluster.id)?;
            commit.tx.update_cluster(&cluster)
        })
        .await?;
    }
    operation.finish_step(STEP_CLUSTERS, true);
    operation.start_step(STEP_VMS);
    ctx.save(&operation).await?;
    for mut vm in vms.into_iter().filter(Vm::is_live) {
        if let Err(error) = backends.provisioner.destroy_vm(&vm_ref(&vm)).await {
            let error = Error::Conflict(format!("destroying the VM {}: {error}", vm.name));
            return failed(ctx, operation, STEP_VMS, &error, &again).await;
        }
        operation.append_log([format!("destroyed the VM {}", vm.name)]);
        vm.state = VmState::Deleted;
        vm.ip = None;
        vm.updated_at = now();
        ctx.commit(&operation, move |commit| {
            release_leases(commit.tx, commit.ipam, vm.id)?;
            commit.tx.update_vm(&vm)
        })
        .await?;
    }
    operation.finish_step(STEP_VMS, true);

    let owner = name.clone();
    if let Some(network) = ctx.read(move |tx| tx.network_of(&owner)).await? {
        operation.start_step(STEP_REMOVE_NETWORK);
        if let Err(error) = remove_network(ctx, &backends.network, &mut operation, network).await {
            if is_ours(&error) {
                return Err(error);
            }
            return failed(ctx, operation, STEP_REMOVE_NETWORK, &error, &again).await;
        }
        operation.finish_step(STEP_REMOVE_NETWORK, true);
    }

    operation.start_step(STEP_ADDRESSES);
    let owner = name.clone();
    ctx.commit(&operation, move |commit| {
        // Only this account's leases and blocks (the original's pattern also matched others').
        for lease in commit.tx.list_leases(Some(&owner))? {
            commit.ipam.release(commit.tx, lease.network, lease.address)?;
        }
        commit.ipam.release_blocks(commit.tx, &owner)?;
        Ok(())
    })
    .await?;
    operation.finish_step(STEP_ADDRESSES, true);

    operation.start_step(STEP_REMOVE_LOGIN);
    ctx.save(&operation).await?;
    if let Err(error) = backends.bastion.remove_login(&name).await {
        return failed(ctx, operation, STEP_REMOVE_LOGIN, &error, &again).await;
    }
    operation.finish_step(STEP_REMOVE_LOGIN, true);

    operation.start_step(STEP_ACCOUNT);
    operation.finish_step(STEP_ACCOUNT, true);
    operation.succeed();
    let owner = name.clone();
    ctx.commit(&operation, move |commit| commit.tx.delete_user(&owner)).await?;
    Ok(operation)
}
