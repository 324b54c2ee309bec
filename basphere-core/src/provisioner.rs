//! The `Provisioner` trait: what a VM backend (simulated, Terraform, vSphere API) must do.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Result;
use crate::model::{OsImage, VmSpec};
use crate::validate::{ResourceName, SshPublicKey, Username};

/// The guest's static network configuration, delivered through cloud-init.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestNetwork {
    pub interface: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    pub mtu: u32,
    /// The port group the VM's NIC is on: a tenant LAN's (`networks.mode: tenant`), or `None`
    /// for the backend's configured network (`vsphere.network`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_group: Option<String>,
}

/// One tenant LAN's distributed port group: its name and its VLAN id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortGroupSpec {
    pub name: String,
    pub vlan: u16,
}

/// A tenant's port groups, all on one distributed switch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPortGroups {
    pub tenant: Username,
    /// The distributed switch (`networks.distributed_switch`).
    pub switch: String,
    pub port_groups: Vec<PortGroupSpec>,
}

impl TenantPortGroups {
    /// The description every port group of the tenant's carries: how a backend tells
    /// Basphere's port groups from others of the same name.
    pub fn description(&self) -> String {
        port_group_description(&self.tenant)
    }
}

/// The description of `tenant`'s port groups, Basphere's marker on them.
pub fn port_group_description(tenant: &Username) -> String {
    format!("Basphere tenant network of {tenant}")
}

/// Everything a backend needs to create one VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRequest {
    /// Basphere's id of the VM, stored as a marker on the backend's VM.
    pub id: Uuid,
    pub owner: Username,
    pub name: ResourceName,
    pub os: OsImage,
    pub spec: VmSpec,
    pub network: GuestNetwork,
    /// The owner's login key, injected for the login user named like the owner.
    pub ssh_key: SshPublicKey,
}

impl VmRequest {
    /// `<owner>-<name>`: the VM's name in vSphere.
    pub fn vsphere_name(&self) -> String {
        format!("{}-{}", self.owner, self.name)
    }

    pub fn vm_ref(&self) -> VmRef {
        VmRef { id: self.id, owner: self.owner.clone(), vsphere_name: self.vsphere_name(), backend_id: None }
    }
}

/// How a backend finds an existing VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRef {
    pub id: Uuid,
    pub owner: Username,
    pub vsphere_name: String,
    /// The backend's own id when known; backends fall back to the name and marker.
    pub backend_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    Start,
    Stop,
    Reboot,
}

/// A VM the backend made or found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmHandle {
    pub backend_id: String,
    pub power: PowerState,
    /// The last lines of the backend's log for this call, for the operation's log tail.
    pub log_tail: Vec<String>,
}

/// One VM seen in the backend's inventory (Basphere's folders only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryVm {
    pub vsphere_name: String,
    pub backend_id: String,
    /// The folder it is in (the owner's folder for Basphere's VMs).
    pub folder: String,
    /// The Basphere id marker, when the VM carries one.
    pub basphere_id: Option<Uuid>,
    pub power: PowerState,
}

/// A VM backend.
///
/// # Contract
///
/// - `ensure_folder` creates `<base folder>/<owner>`; calling it again is a no-op.
/// - `create_vm` clones the OS template into the owner's folder, named `<owner>-<name>`, sized
///   by the spec, with the guest network and login delivered through cloud-init, and powers it
///   on. It is idempotent: when a VM of that name already carries this request's id marker
///   (a retry after a crash), it is adopted and returned instead of duplicated. A VM of that name
///   with another or no marker is `AlreadyExists` and is left untouched.
/// - `destroy_vm` powers the VM off and destroys it. A VM that is already gone is success, so a
///   retried destroy converges. Any failure is an error: the caller keeps the VM's address.
/// - `power` on a missing VM is `NotFound`. Starting a running VM or stopping a stopped one is
///   success. `Reboot` of a stopped VM is `Conflict`.
/// - `inventory` lists every VM under the base folder, whoever made it.
/// - `adopt` marks the VM of that name in the owner's folder, which carries no Basphere id, as
///   this record's (a VM the original Basphere made, imported): afterwards every call finds it as
///   Basphere's. Already marked with this id is success; another id is `Conflict`; no such VM is
///   `NotFound`. A backend that cannot is `NotSupported` (the default).
/// - `ensure_port_groups` makes each port group of the spec on its distributed switch with its
///   VLAN id and the tenant's description ([`TenantPortGroups::description`]); one of that name
///   that carries the description is given the VLAN id asked, so a second call changes nothing.
///   A port group of that name without the description is `AlreadyExists` and is left
///   untouched; a missing switch is `NotFound`. A backend that cannot is `NotSupported` (the
///   default).
/// - `remove_port_groups` destroys each port group of the spec that carries the tenant's
///   description; one that is gone, or that is not Basphere's, is left as it is and is success.
///   The platform calls it only when no VM of the tenant's is left.
/// - `create_vm` with `network.port_group` puts the VM's NIC on that port group; a port group
///   that does not exist is `NotFound`.
/// - Calls for different VMs may run concurrently; the platform never runs two calls for the
///   same VM at once.
/// - Failures are `Error::Backend` with the backend's log tail, or `Timeout`.
#[async_trait]
pub trait Provisioner: Send + Sync {
    fn backend_name(&self) -> &'static str;
    /// Checks that every configured object exists; the error names each missing one.
    async fn preflight(&self) -> Result<()>;
    async fn ensure_folder(&self, owner: &Username) -> Result<()>;
    async fn create_vm(&self, request: &VmRequest) -> Result<VmHandle>;
    async fn destroy_vm(&self, vm: &VmRef) -> Result<()>;
    async fn power(&self, vm: &VmRef, action: PowerAction) -> Result<PowerState>;
    async fn inventory(&self) -> Result<Vec<InventoryVm>>;
    async fn ensure_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        let _ = spec;
        Err(crate::Error::NotSupported(format!(
            "the {} backend cannot make tenant port groups (networks.mode: tenant)",
            self.backend_name()
        )))
    }
    async fn remove_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        let _ = spec;
        Err(crate::Error::NotSupported(format!(
            "the {} backend cannot remove tenant port groups (networks.mode: tenant)",
            self.backend_name()
        )))
    }
    async fn adopt(&self, vm: &VmRef) -> Result<()> {
        let _ = vm;
        Err(crate::Error::NotSupported(format!(
            "the {} backend cannot take over a VM it did not make",
            self.backend_name()
        )))
    }
}
