//! `VsphereApiProvisioner`: VMs through the vSphere API itself (SOAP, with the `vim_rs` crate),
//! no Terraform. Clones the OS template into the owner's folder with the spec's CPU and memory
//! and the cloud-init documents in `extraConfig`, grows the clone's disk with a reconfigure,
//! powers VMs on and off, destroys them, and lists Basphere's folders for reconciliation. A
//! create retried after a crash adopts the VM that carries its id in `guestinfo.basphere.id`
//! instead of making another. Tenant networks' distributed port groups are made, given their
//! VLAN and destroyed on the configured distributed switch, and a VM on a tenant LAN has its NIC
//! put on the LAN's port group.
//!
//! Compile time shapes this module. Every function that awaits returns a boxed `Send` future
//! (`BoxFuture`), and vim_rs values (rows, faults, specs) never outlive the small functions that
//! talk to vCenter: they are turned into plain data (`VmFacts`, `FolderFacts`) there. The
//! compiler proves each future `Send` by walking every type it holds; a vim_rs type reaches most
//! of vim_rs's thousands of types, and a future that holds another (unboxed) future is walked
//! through it, so before this shape the provisioner's futures took minutes of CPU to check and
//! to compile. A boxed future is `Send` by its type, which stops the walk.
//!
//! Here: the provisioner and its `Provisioner` implementation. `session` holds the login and
//! the retry loop every call goes through, `tasks` starts and waits for vCenter tasks,
//! `inventory` reads (and turns what it reads into plain data), `machines` changes VMs and
//! folders, `networks` reads and changes tenant port groups.

mod inventory;
mod machines;
mod networks;
mod session;
mod tasks;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use basphere_core::model::OsImage;
use basphere_core::provisioner::*;
use basphere_core::validate::Username;
use basphere_core::{Error, Result};
use tokio::sync::Mutex;
use vim_rs::core::client::{Client, Error as VimError};
use vim_rs::mo::VirtualMachine;
use vim_rs::types::structs::{ManagedObjectReference, VirtualMachineConfigSpec};

pub use crate::config::VsphereApiSettings;
use inventory::{FolderFacts, Found};
use machines::{empty, option, Placement};
use session::Failure;

/// A boxed future that is `Send` by its type (see the module's documentation).
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One attempt at a vCenter call, given the session; made again by [`VsphereApiProvisioner::call`]
/// and [`VsphereApiProvisioner::read`] when the session or the connection was lost. Boxed, so
/// that the retry loop is compiled once per result type, not once per call site.
type Attempt<'a, T> = Box<dyn Fn(Arc<Session>) -> BoxFuture<'a, std::result::Result<T, Failure>> + Send + Sync + 'a>;

/// Starts a vCenter task with the client and answers the task.
type TaskStart<'a> =
    Box<dyn Fn(Arc<Client>) -> BoxFuture<'a, std::result::Result<ManagedObjectReference, VimError>> + Send + Sync + 'a>;

/// The marker every Basphere VM carries.
const MARKER: &str = "guestinfo.basphere.id";

/// One login to vCenter.
struct Session {
    client: Arc<Client>,
}

/// The vSphere API VM backend.
pub struct VsphereApiProvisioner {
    settings: VsphereApiSettings,
    session: Mutex<Option<Arc<Session>>>,
}

impl VsphereApiProvisioner {
    fn path(&self, rest: &str) -> String {
        format!("{}/{rest}", self.settings.vsphere.datacenter)
    }

    fn base_folder_path(&self) -> String {
        self.path(&format!("vm/{}", self.settings.vsphere.folder))
    }

    fn user_folder_path(&self, owner: &Username) -> String {
        format!("{}/{owner}", self.base_folder_path())
    }

    fn template_path(&self, os: &OsImage) -> String {
        self.path(&format!("vm/{}", os.template))
    }

    fn pool_path(&self) -> String {
        let v = &self.settings.vsphere;
        if v.resource_pool.is_empty() {
            self.path(&format!("host/{}/Resources", v.cluster))
        } else {
            v.resource_pool.trim_start_matches('/').to_owned()
        }
    }
}

#[async_trait]
impl Provisioner for VsphereApiProvisioner {
    fn backend_name(&self) -> &'static str {
        "vsphere-api"
    }

    /// Looks for every configured object and names each one vCenter does not have.
    async fn preflight(&self) -> Result<()> {
        let v = &self.settings.vsphere;
        let mut wanted = vec![
            ("vsphere.datacenter".to_owned(), v.datacenter.clone()),
            ("vsphere.cluster".to_owned(), self.path(&format!("host/{}", v.cluster))),
            ("vsphere.resource_pool".to_owned(), self.pool_path()),
            ("vsphere.datastore".to_owned(), self.path(&format!("datastore/{}", v.datastore))),
            ("vsphere.network".to_owned(), self.path(&format!("network/{}", v.network))),
            ("vsphere.folder".to_owned(), self.base_folder_path()),
        ];
        for (key, os) in &self.settings.os_images {
            wanted.push((format!("templates.os.{key}.template"), self.template_path(os)));
        }
        let mut missing = Vec::new();
        for (key, path) in wanted {
            if self.find(&path).await?.is_none() {
                missing.push(format!("{key} ({path})"));
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(
                "vsphere",
                format!("not found in vCenter {}: {}", self.settings.server, missing.join(", ")),
            ))
        }
    }

    async fn ensure_folder(&self, owner: &Username) -> Result<()> {
        let vm_folder = self.require("vsphere.datacenter", &self.path("vm")).await?;
        let base = match self.find(&self.base_folder_path()).await? {
            Some(base) => base,
            None => self.create_folder(&vm_folder, &self.settings.vsphere.folder).await?,
        };
        if self.find(&self.user_folder_path(owner)).await?.is_none() {
            self.create_folder(&base, owner.as_str()).await?;
        }
        Ok(())
    }

    /// On a tenant LAN (`network.port_group`), the port group is looked up first: a missing one
    /// is `NotFound` and nothing is cloned.
    async fn create_vm(&self, request: &VmRequest) -> Result<VmHandle> {
        let name = request.vsphere_name();
        let existing = self.existing(&request.owner, &name).await?;
        if let Some(facts) = &existing {
            if facts.marker.as_deref() != Some(request.id.to_string().as_str()) {
                return Err(crate::foreign_vm(&name, &self.user_folder_path(&request.owner)));
            }
        }
        let port = match &request.network.port_group {
            Some(port_group) => Some(self.port_connection(port_group).await?),
            None => None,
        };
        if let Some(facts) = existing {
            self.converge(&facts.moref, request, port).await?;
            return Ok(VmHandle {
                backend_id: facts.moref.value,
                power: PowerState::On,
                log_tail: vec![format!("adopted {name}, made by an earlier attempt")],
            });
        }
        let v = &self.settings.vsphere;
        let place = Placement {
            folder: self.require("vsphere.folder", &self.user_folder_path(&request.owner)).await?,
            datastore: self.require("vsphere.datastore", &self.path(&format!("datastore/{}", v.datastore))).await?,
            pool: self.require("vsphere.resource_pool", &self.pool_path()).await?,
        };
        let template = self
            .require(&format!("templates.os.{}.template", request.os.key), &self.template_path(&request.os))
            .await?;
        let created = self.clone_vm(&template, &place, request).await?;
        let on = port.as_ref().map(|port| format!(", put it on the port group {}", port.name)).unwrap_or_default();
        self.converge(&created, request, port).await?;
        Ok(VmHandle {
            backend_id: created.value,
            power: PowerState::On,
            log_tail: vec![format!("cloned {name} from {}, sized it{on} and powered it on", request.os.template)],
        })
    }

    /// Only a VM carrying `vm`'s id is destroyed. Another VM of the same name is not Basphere's
    /// (typically the one that made this VM's create fail): nothing of Basphere's exists, so the
    /// destroy succeeds without touching it, and the record and its address can go.
    async fn destroy_vm(&self, vm: &VmRef) -> Result<()> {
        let facts = match self.lookup(vm).await? {
            Found::Ours(facts) => facts,
            Found::Foreign => {
                tracing::info!(vm = %vm.vsphere_name, id = %vm.id, "a VM of this name in vCenter is not Basphere's; left untouched, nothing to destroy");
                return Ok(());
            }
            Found::Nothing => return Ok(()),
        };
        if facts.power == PowerState::On {
            self.set_power(&facts.moref, false).await?;
        }
        let moref = &facts.moref;
        self.run_task(move |client| {
            Box::pin(async move { VirtualMachine::new(client, &moref.value).destroy_task().await })
        })
        .await?;
        Ok(())
    }

    async fn adopt(&self, vm: &VmRef) -> Result<()> {
        let facts = self
            .existing(&vm.owner, &vm.vsphere_name)
            .await?
            .ok_or_else(|| Error::not_found("vm", &vm.vsphere_name))?;
        match facts.marker.as_deref() {
            Some(marker) if marker == vm.id.to_string() => return Ok(()),
            Some(other) => {
                return Err(Error::Conflict(format!("{} carries another Basphere id ({other})", vm.vsphere_name)))
            }
            None => {}
        }
        let mut changes: VirtualMachineConfigSpec = empty();
        changes.extra_config = Some(vec![option(MARKER, vm.id.to_string())]);
        let moref = &facts.moref;
        let changes = &changes;
        self.run_task(move |client| {
            Box::pin(async move { VirtualMachine::new(client, &moref.value).reconfig_vm_task(changes).await })
        })
        .await?;
        tracing::info!(vm = %vm.vsphere_name, id = %vm.id, "an imported VM is now marked as Basphere's");
        Ok(())
    }

    async fn power(&self, vm: &VmRef, action: PowerAction) -> Result<PowerState> {
        let facts = match self.lookup(vm).await? {
            Found::Ours(facts) => facts,
            Found::Foreign => {
                return Err(Error::Conflict(format!(
                    "{} in vSphere is not Basphere's VM {}; it is left untouched",
                    vm.vsphere_name, vm.id
                )))
            }
            Found::Nothing => return Err(Error::not_found("vm", &vm.vsphere_name)),
        };
        let moref = &facts.moref;
        match (action, facts.power) {
            (PowerAction::Start, PowerState::Off) => self.set_power(moref, true).await?,
            (PowerAction::Stop, PowerState::On) => self.set_power(moref, false).await?,
            (PowerAction::Reboot, PowerState::Off) => {
                return Err(Error::Conflict(format!("{} is powered off; start it instead", vm.vsphere_name)))
            }
            (PowerAction::Reboot, PowerState::On) => {
                self.run_task(move |client| {
                    Box::pin(async move { VirtualMachine::new(client, &moref.value).reset_vm_task().await })
                })
                .await?;
            }
            _ => {}
        }
        Ok(match action {
            PowerAction::Stop => PowerState::Off,
            _ => PowerState::On,
        })
    }

    async fn ensure_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        self.ensure_tenant_port_groups(spec).await
    }

    async fn remove_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        self.remove_tenant_port_groups(spec).await
    }

    async fn inventory(&self) -> Result<Vec<InventoryVm>> {
        let Some(base) = self.find(&self.base_folder_path()).await? else { return Ok(Vec::new()) };
        let members = self.members(&base, "VirtualMachine").await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let folder_members = self.members(&base, "Folder").await?;
        let (vms, folders) = self.inventory_of(&members, &folder_members).await?;
        let by_id: HashMap<&str, &FolderFacts> = folders.iter().map(|folder| (folder.id.as_str(), folder)).collect();
        let base_name = &self.settings.vsphere.folder;
        let folder_of = |parent: &Option<String>| -> String {
            let mut parts = Vec::new();
            let mut current = parent.as_deref();
            while let Some(id) = current {
                if id == base.value {
                    break;
                }
                match by_id.get(id) {
                    Some(folder) => {
                        parts.push(folder.name.clone());
                        current = folder.parent.as_deref();
                    }
                    None => break,
                }
            }
            parts.push(base_name.clone());
            parts.reverse();
            parts.join("/")
        };
        Ok(vms
            .iter()
            .map(|vm| InventoryVm {
                vsphere_name: vm.name.clone(),
                backend_id: vm.moref.value.clone(),
                folder: folder_of(&vm.parent),
                basphere_id: vm.marker.as_deref().and_then(|id| uuid::Uuid::parse_str(id).ok()),
                power: vm.power,
            })
            .collect())
    }
}
