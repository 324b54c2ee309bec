//! The VM operation handler: provisioning, destroying and powering VMs through the
//! `Provisioner`, and committing each outcome with the VM's new state, its address and the
//! notifications it causes.

use async_trait::async_trait;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ipam::Ipam;
use crate::model::*;
use crate::networks::{guest_lan, network_of_resource};
use crate::provisioner::Provisioner;
use crate::provisioner::{GuestNetwork, PowerAction, PowerState, VmRef, VmRequest};
use crate::runtime::{Commit, OperationContext, OperationHandler, Registry};
use crate::store::StoreTx;

pub(crate) const STEP_RESERVE: &str = "reserve address";
pub(crate) const STEP_PROVISION: &str = "provision";
pub(crate) const STEP_DESTROY: &str = "destroy";
pub(crate) const STEP_RELEASE: &str = "release address";
pub(crate) const STEP_POWER: &str = "power";

/// Registers the VM operations' handlers, each with the VM backend.
pub(crate) fn register(registry: &mut Registry, provisioner: &Arc<dyn Provisioner>) {
    registry.register(OperationKind::CreateVm, Create(provisioner.clone()));
    registry.register(OperationKind::DeleteVm, Delete(provisioner.clone()));
    registry.register(OperationKind::StartVm, Power(provisioner.clone(), PowerAction::Start));
    registry.register(OperationKind::StopVm, Power(provisioner.clone(), PowerAction::Stop));
    registry.register(OperationKind::RebootVm, Power(provisioner.clone(), PowerAction::Reboot));
}

/// `create_vm`: provisions the VM at its reserved address.
struct Create(Arc<dyn Provisioner>);
/// `delete_vm`: destroys the VM, then frees its address.
struct Delete(Arc<dyn Provisioner>);
/// `start_vm`, `stop_vm` and `reboot_vm`.
struct Power(Arc<dyn Provisioner>, PowerAction);

#[async_trait]
impl OperationHandler for Create {
    async fn run(&self, ctx: &OperationContext<'_>, operation: Operation) -> Result<Operation> {
        create(ctx, &*self.0, operation).await
    }
}

#[async_trait]
impl OperationHandler for Delete {
    async fn run(&self, ctx: &OperationContext<'_>, operation: Operation) -> Result<Operation> {
        delete(ctx, &*self.0, operation).await
    }
}

#[async_trait]
impl OperationHandler for Power {
    async fn run(&self, ctx: &OperationContext<'_>, operation: Operation) -> Result<Operation> {
        power(ctx, &*self.0, operation, self.1).await
    }
}

async fn load(ctx: &OperationContext<'_>, operation: &Operation) -> Result<(Vm, User)> {
    let (id, owner) = (operation.resource.id, operation.owner.clone());
    ctx.read(move |tx| {
        let vm = tx.get_vm(id)?.ok_or_else(|| Error::not_found("vm", id))?;
        let user = tx.get_user(&owner)?.ok_or_else(|| Error::not_found("user", &owner))?;
        Ok((vm, user))
    })
    .await
}

/// The tenant network `vm`'s address was leased in; `None` for an address of the flat pools.
async fn network_of_vm(ctx: &OperationContext<'_>, vm: &Vm) -> Result<Option<Network>> {
    let id = vm.id;
    ctx.read(move |tx| network_of_resource(tx, id)).await
}

fn request(ctx: &OperationContext<'_>, vm: &Vm, user: &User, network: Option<&Network>) -> Result<VmRequest> {
    let address = vm.ip.ok_or_else(|| Error::Conflict(format!("vm {} has no address", vm.name)))?;
    let config = ctx.config();
    let os = config.os_image(&vm.os)?.clone();
    let guest = match network {
        // On a tenant LAN: its prefix and gateway (the tenant's router), the network's MTU, the
        // LAN's port group.
        Some(network) => {
            let (prefix_len, gateway, mtu, port_group) = guest_lan(&config.networks, network, address)?;
            GuestNetwork {
                interface: os.interface.clone(),
                address,
                prefix_len,
                gateway,
                dns: config.guest_network.dns.clone(),
                mtu,
                port_group: Some(port_group),
            }
        }
        None => {
            let info = ctx
                .ipam()
                .address_info(address)
                .ok_or_else(|| Error::Conflict(format!("{address} is in no configured pool")))?;
            GuestNetwork {
                interface: os.interface.clone(),
                address,
                prefix_len: info.prefix_len,
                gateway: info.gateway,
                dns: config.guest_network.dns.clone(),
                mtu: config.guest_network.mtu,
                port_group: None,
            }
        }
    };
    let spec = VmSpec {
        key: vm.spec.clone(),
        description: vm.spec.clone(),
        cpu: vm.cpu,
        memory_mb: vm.memory_mb,
        disk_gb: vm.disk_gb,
    };
    Ok(VmRequest {
        id: vm.id,
        owner: vm.owner.clone(),
        name: vm.name.clone(),
        network: guest,
        os,
        spec,
        ssh_key: user.ssh_key.clone(),
    })
}

pub(crate) fn vm_ref(vm: &Vm) -> VmRef {
    VmRef { id: vm.id, owner: vm.owner.clone(), vsphere_name: vm.vsphere_name(), backend_id: vm.backend_id.clone() }
}

/// Saves the VM with the operation.
fn put_vm(vm: &Vm) -> impl FnMut(&mut Commit<'_>) -> Result<()> + Send + 'static {
    let vm = vm.clone();
    move |commit| commit.tx.update_vm(&vm)
}

async fn create(
    ctx: &OperationContext<'_>,
    provisioner: &dyn Provisioner,
    mut operation: Operation,
) -> Result<Operation> {
    let (mut vm, user) = load(ctx, &operation).await?;
    operation.start_step(STEP_PROVISION);
    vm.state = VmState::Provisioning;
    vm.updated_at = now();
    ctx.commit(&operation, put_vm(&vm)).await?;
    let outcome = match network_of_vm(ctx, &vm).await {
        Ok(network) => match request(ctx, &vm, &user, network.as_ref()) {
            Ok(request) => provisioner.create_vm(&request).await,
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    match outcome {
        Ok(handle) => {
            operation.append_log(handle.log_tail);
            operation.finish_step(STEP_PROVISION, true);
            operation.succeed();
            vm.state = if handle.power == PowerState::On { VmState::Running } else { VmState::Stopped };
            vm.backend_id = Some(handle.backend_id);
            vm.reason = None;
            vm.updated_at = now();
            let saved = vm.clone();
            ctx.commit(&operation, move |commit| {
                for lease in commit.tx.leases_of_resource(saved.id)? {
                    commit.tx.set_lease_state(lease.network, lease.address, LeaseState::Active)?;
                }
                commit.tx.update_vm(&saved)?;
                commit.notify(NotificationEvent::VmReady {
                    owner: saved.owner.clone(),
                    name: saved.name.clone(),
                    ip: saved.ip,
                });
                Ok(())
            })
            .await?;
            Ok(operation)
        }
        Err(error) => {
            operation.append_log(log_tail_of(&error));
            operation.finish_step(STEP_PROVISION, false);
            let (reason, release) = if let Error::AlreadyExists { .. } = error {
                // The backend found a VM of this name that is not Basphere's and made nothing:
                // there is nothing to remove, and the foreign VM is never touched.
                (
                    format!(
                        "creation failed: {error}. A VM named {} already exists in vCenter and is not \
                         Basphere's, so nothing was created and the address was freed; delete this record \
                         and choose another name",
                        vm.vsphere_name()
                    ),
                    true,
                )
            } else {
                // Remove whatever the backend may have made, and free the address only once
                // the backend confirms the VM is gone.
                match provisioner.destroy_vm(&vm_ref(&vm)).await {
                    Ok(()) => (format!("creation failed: {error}"), true),
                    Err(cleanup_error) => (
                        format!(
                            "creation failed: {error}; removing the partial VM also failed ({cleanup_error}), \
                             so its address stays reserved"
                        ),
                        false,
                    ),
                }
            };
            operation.fail(reason.clone());
            vm.state = VmState::Failed;
            vm.reason = Some(reason.clone());
            vm.updated_at = now();
            if release {
                vm.ip = None;
            }
            let saved = vm.clone();
            ctx.commit(&operation, move |commit| {
                if release {
                    release_leases(commit.tx, commit.ipam, saved.id)?;
                }
                commit.tx.update_vm(&saved)?;
                commit.notify(NotificationEvent::VmFailed {
                    owner: saved.owner.clone(),
                    name: saved.name.clone(),
                    reason: reason.clone(),
                });
                Ok(())
            })
            .await?;
            Ok(operation)
        }
    }
}

async fn delete(
    ctx: &OperationContext<'_>,
    provisioner: &dyn Provisioner,
    mut operation: Operation,
) -> Result<Operation> {
    let (mut vm, _) = load(ctx, &operation).await?;
    operation.start_step(STEP_DESTROY);
    ctx.save(&operation).await?;
    match provisioner.destroy_vm(&vm_ref(&vm)).await {
        Ok(()) => {
            operation.finish_step(STEP_DESTROY, true);
            operation.start_step(STEP_RELEASE);
            operation.finish_step(STEP_RELEASE, true);
            operation.succeed();
            vm.state = VmState::Deleted;
            vm.ip = None;
            vm.updated_at = now();
            let saved = vm.clone();
            ctx.commit(&operation, move |commit| {
                release_leases(commit.tx, commit.ipam, saved.id)?;
                commit.tx.update_vm(&saved)
            })
            .await?;
            Ok(operation)
        }
        Err(error) => {
            // The VM may still exist: keep it and its address (unlike the original, which
            // freed both and let the address be handed out again).
            operation.append_log(log_tail_of(&error));
            operation.finish_step(STEP_DESTROY, false);
            let reason = format!("deletion failed, the VM and its address are kept: {error}");
            operation.fail(reason.clone());
            vm.state = VmState::Failed;
            vm.reason = Some(reason);
            vm.updated_at = now();
            ctx.commit(&operation, put_vm(&vm)).await?;
            Ok(operation)
        }
    }
}

async fn power(
    ctx: &OperationContext<'_>,
    provisioner: &dyn Provisioner,
    mut operation: Operation,
    action: PowerAction,
) -> Result<Operation> {
    let (mut vm, _) = load(ctx, &operation).await?;
    operation.start_step(STEP_POWER);
    ctx.save(&operation).await?;
    match provisioner.power(&vm_ref(&vm), action).await {
        Ok(power) => {
            operation.finish_step(STEP_POWER, true);
            operation.succeed();
            vm.state = if power == PowerState::On { VmState::Running } else { VmState::Stopped };
            vm.updated_at = now();
            ctx.commit(&operation, put_vm(&vm)).await?;
            Ok(operation)
        }
        Err(error) => {
            operation.append_log(log_tail_of(&error));
            operation.finish_step(STEP_POWER, false);
            operation.fail(format!("{} failed: {error}", format!("{action:?}").to_lowercase()));
            if let Error::NotFound { .. } = error {
                vm.state = VmState::Lost;
                vm.reason = Some("the VM is no longer in vSphere".into());
                vm.updated_at = now();
                ctx.commit(&operation, put_vm(&vm)).await?;
            } else {
                ctx.save(&operation).await?;
            }
            Ok(operation)
        }
    }
}

/// The resources that `extra` takes from below 80 % of their limit to 80 % or more: each
/// crossing is notified once, by the request that makes it.
pub(crate) fn crossings(
    owner: &crate::validate::Username,
    quota: &Quota,
    before: &Usage,
    extra: &Usage,
) -> Vec<NotificationEvent> {
    let nearly = |used: u64, limit: u64| limit > 0 && used * 5 >= limit * 4;
    [
        ("vms", before.vms, extra.vms, quota.max_vms),
        ("ips", before.ips, extra.ips, quota.max_ips),
        ("vcpus", before.vcpus, extra.vcpus, quota.max_vcpus),
    ]
    .into_iter()
    .filter(|(_, used, more, limit)| !nearly(*used, *limit) && nearly(used + more, *limit))
    .map(|(resource, used, more, limit)| NotificationEvent::QuotaNearlyUsed {
        owner: owner.clone(),
        resource: resource.into(),
        used: used + more,
        limit,
    })
    .collect()
}

pub(crate) fn release_leases(tx: &mut dyn StoreTx, ipam: &dyn Ipam, resource: uuid::Uuid) -> Result<()> {
    for lease in tx.leases_of_resource(resource)? {
        ipam.release(tx, lease.network, lease.address)?;
    }
    Ok(())
}

pub(crate) fn log_tail_of(error: &Error) -> Vec<String> {
    match error {
        Error::Backend { log_tail, .. } if !log_tail.is_empty() => log_tail.clone(),
        other => vec![other.to_string()],
    }
}
