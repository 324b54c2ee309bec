//! Reference backends: the simulated vCenter (`MockProvisioner`), which the server runs as its
//! default VM backend and embedding programs use, and the placeholder kubeconfig of a simulated
//! cluster (basphere-capi's simulated management cluster writes it). Behind the `testing`
//! feature: a fault-injecting decorator for any provisioner (`faults`), and a notifier and a
//! bastion that record (`recording`), and a tenant router that records and checks what it is
//! asked (`router`).

#[cfg(feature = "testing")]
mod faults;
#[cfg(feature = "testing")]
mod recording;
#[cfg(feature = "testing")]
mod router;

#[cfg(feature = "testing")]
pub use faults::{Fault, FaultInjectingProvisioner, Method};
#[cfg(feature = "testing")]
pub use recording::{RecordingBastion, RecordingNotifier};
#[cfg(feature = "testing")]
pub use router::{RecordingRouter, RouterCall};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Message, Result};
use crate::provisioner::*;
use crate::validate::Username;

/// How long the simulated vSphere takes for each kind of task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MockDelays {
    pub clone: Duration,
    pub power: Duration,
    pub destroy: Duration,
}

impl MockDelays {
    /// Task times in the range a real vCenter shows for a small linked clone.
    pub fn realistic() -> Self {
        MockDelays {
            clone: Duration::from_millis(1500),
            power: Duration::from_millis(300),
            destroy: Duration::from_millis(500),
        }
    }
}

/// One VM in the simulated inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "MockVmFields")]
pub struct MockVm {
    pub backend_id: String,
    pub vsphere_name: String,
    pub folder: String,
    pub basphere_id: Option<Uuid>,
    pub power: PowerState,
    /// What it was cloned as (None for VMs planted by a test).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clone: Option<CloneSpec>,
}

/// What vCenter holds of a VM Basphere cloned: the template, the hardware, and what the
/// guest was given (its network, the owner's key line as cloud-init received it). Basphere's
/// own names for the request (catalog keys, descriptions, owner and name again) are not kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneSpec {
    pub template: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
    pub network: GuestNetwork,
    pub ssh_key: String,
}

impl From<&VmRequest> for CloneSpec {
    fn from(request: &VmRequest) -> Self {
        CloneSpec {
            template: request.os.template.clone(),
            cpu: request.spec.cpu,
            memory_mb: request.spec.memory_mb,
            disk_gb: request.spec.disk_gb,
            network: request.network.clone(),
            ssh_key: request.ssh_key.as_str().to_owned(),
        }
    }
}

/// A [`MockVm`] as read from a journal, which may be one written when each VM kept its whole
/// request (`request`): of that, only what a [`CloneSpec`] holds is read, and the key is read
/// as text, not parsed again.
#[derive(Deserialize)]
struct MockVmFields {
    backend_id: String,
    vsphere_name: String,
    folder: String,
    basphere_id: Option<Uuid>,
    power: PowerState,
    clone: Option<CloneSpec>,
    request: Option<EarlierRequest>,
}

#[derive(Deserialize)]
struct EarlierRequest {
    os: EarlierOs,
    spec: EarlierSpec,
    network: GuestNetwork,
    ssh_key: String,
}

#[derive(Deserialize)]
struct EarlierOs {
    template: String,
}

#[derive(Deserialize)]
struct EarlierSpec {
    cpu: u32,
    memory_mb: u64,
    disk_gb: u64,
}

impl From<MockVmFields> for MockVm {
    fn from(fields: MockVmFields) -> Self {
        let MockVmFields { backend_id, vsphere_name, folder, basphere_id, power, clone, request } = fields;
        let clone = clone.or_else(|| {
            request.map(|request| CloneSpec {
                template: request.os.template,
                cpu: request.spec.cpu,
                memory_mb: request.spec.memory_mb,
                disk_gb: request.spec.disk_gb,
                network: request.network,
                ssh_key: request.ssh_key,
            })
        });
        MockVm { backend_id, vsphere_name, folder, basphere_id, power, clone }
    }
}

/// One change to the simulated inventory, as an observer sees it (and a journal replays it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case", try_from = "ChangeFields")]
pub enum InventoryChange {
    Folder {
        path: String,
    },
    Upsert {
        vm: Box<MockVm>,
    },
    Remove {
        name: String,
    },
    /// A distributed port group made or changed.
    PortGroup {
        port_group: MockPortGroup,
    },
    /// A distributed port group destroyed.
    RemovePortGroup {
        name: String,
    },
}

/// A distributed port group in the simulated inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockPortGroup {
    pub name: String,
    pub switch: String,
    pub vlan: u16,
    pub description: Option<String>,
}

/// An [`InventoryChange`] as read: its fields side by side, the tag among them. Read this way
/// a change goes straight into its fields; read as a tagged enum, serde first copies each one
/// into a generic tree to find the tag, which took most of a start with 10,000 simulated VMs.
#[derive(Deserialize)]
struct ChangeFields {
    change: ChangeKind,
    path: Option<String>,
    vm: Option<Box<MockVm>>,
    name: Option<String>,
    port_group: Option<MockPortGroup>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChangeKind {
    Folder,
    Upsert,
    Remove,
    PortGroup,
    RemovePortGroup,
}

impl TryFrom<ChangeFields> for InventoryChange {
    type Error = String;

    fn try_from(fields: ChangeFields) -> std::result::Result<Self, String> {
        let ChangeFields { change, path, vm, name, port_group } = fields;
        let missing = |field: &str| format!("a {change:?} change needs `{field}`");
        match change {
            ChangeKind::Folder => path.map(|path| InventoryChange::Folder { path }).ok_or_else(|| missing("path")),
            ChangeKind::Upsert => vm.map(|vm| InventoryChange::Upsert { vm }).ok_or_else(|| missing("vm")),
            ChangeKind::Remove => name.map(|name| InventoryChange::Remove { name }).ok_or_else(|| missing("name")),
            ChangeKind::PortGroup => port_group
                .map(|port_group| InventoryChange::PortGroup { port_group })
                .ok_or_else(|| missing("port_group")),
            ChangeKind::RemovePortGroup => {
                name.map(|name| InventoryChange::RemovePortGroup { name }).ok_or_else(|| missing("name"))
            }
        }
    }
}

/// Called after every change, while the inventory is locked, so changes arrive in order.
pub type InventoryObserver = Arc<dyn Fn(&InventoryChange) + Send + Sync>;

#[derive(Default)]
struct Inventory {
    folders: BTreeSet<String>,
    vms: BTreeMap<String, MockVm>,
    port_groups: BTreeMap<String, MockPortGroup>,
    next_id: u64,
    calls: Vec<String>,
}

impl Inventory {
    fn apply(&mut self, change: &InventoryChange) {
        match change {
            InventoryChange::Folder { path } => {
                self.folders.insert(path.clone());
            }
            InventoryChange::Upsert { vm } => self.upsert((**vm).clone()),
            InventoryChange::Remove { name } => {
                self.vms.remove(name);
            }
            InventoryChange::PortGroup { port_group } => {
                self.port_groups.insert(port_group.name.clone(), port_group.clone());
            }
            InventoryChange::RemovePortGroup { name } => {
                self.port_groups.remove(name);
            }
        }
    }

    /// [`Inventory::apply`] of a change that is not needed afterwards (a journal's): moved in.
    fn apply_owned(&mut self, change: InventoryChange) {
        match change {
            InventoryChange::Upsert { vm } => self.upsert(*vm),
            change => self.apply(&change),
        }
    }

    fn upsert(&mut self, vm: MockVm) {
        if let Some(n) = vm.backend_id.strip_prefix("vm-").and_then(|n| n.parse::<u64>().ok()) {
            self.next_id = self.next_id.max(n);
        }
        self.vms.insert(vm.vsphere_name.clone(), vm);
    }
}

/// A simulated vSphere with its own inventory, which tests inspect and tamper with.
///
/// It behaves like vCenter where the contract matters: a clone needs the owner's folder, a
/// known template and (on a tenant LAN) its port group, names are unique in a folder, a port
/// group needs its distributed switch, and a destroyed VM is gone.
pub struct MockProvisioner {
    base_folder: String,
    templates: BTreeSet<String>,
    switches: BTreeSet<String>,
    delays: MockDelays,
    inventory: Mutex<Inventory>,
    observer: Option<InventoryObserver>,
}

impl MockProvisioner {
    pub fn new<I, S>(base_folder: &str, templates: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MockProvisioner {
            base_folder: base_folder.to_owned(),
            templates: templates.into_iter().map(Into::into).collect(),
            switches: BTreeSet::new(),
            delays: MockDelays::default(),
            inventory: Mutex::new(Inventory::default()),
            observer: None,
        }
    }

    /// A simulator knowing the default catalog's templates and the test fixtures' distributed
    /// switch (`dvs-tenants`), with no delays.
    pub fn with_default_catalog() -> Self {
        Self::new("basphere-vms", ["ubuntu-noble-24.04-cloudimg", "rocky-10-template"]).with_switch("dvs-tenants")
    }

    /// A distributed switch tenant port groups can be made on.
    pub fn with_switch(mut self, name: &str) -> Self {
        self.switches.insert(name.to_owned());
        self
    }

    pub fn with_delays(mut self, delays: MockDelays) -> Self {
        self.delays = delays;
        self
    }

    /// Calls `observer` after every change (for example to journal the inventory to a file).
    pub fn with_observer(mut self, observer: InventoryObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Applies changes recorded earlier, without telling the observer (restoring a journal).
    pub fn replay<I: IntoIterator<Item = InventoryChange>>(&self, changes: I) {
        let mut inventory = self.lock();
        for change in changes {
            inventory.apply_owned(change);
        }
    }

    fn commit(&self, inventory: &mut Inventory, change: InventoryChange) {
        inventory.apply(&change);
        if let Some(observer) = &self.observer {
            observer(&change);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inventory> {
        self.inventory.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn folder_of(&self, owner: &Username) -> String {
        format!("{}/{}", self.base_folder, owner)
    }

    /// Every VM, ordered by vSphere name.
    pub fn vms(&self) -> Vec<MockVm> {
        self.lock().vms.values().cloned().collect()
    }

    pub fn vm_count(&self) -> usize {
        self.lock().vms.len()
    }

    pub fn vm(&self, vsphere_name: &str) -> Option<MockVm> {
        self.lock().vms.get(vsphere_name).cloned()
    }

    pub fn folders(&self) -> Vec<String> {
        self.lock().folders.iter().cloned().collect()
    }

    /// Every distributed port group, ordered by name.
    pub fn port_groups(&self) -> Vec<MockPortGroup> {
        self.lock().port_groups.values().cloned().collect()
    }

    /// Makes a port group that Basphere did not make, as a vSphere administrator might.
    pub fn plant_port_group(&self, port_group: MockPortGroup) {
        let mut inventory = self.lock();
        self.commit(&mut inventory, InventoryChange::PortGroup { port_group });
    }

    /// The calls received, as `method:vsphere-name`, in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Deletes a VM behind Basphere's back, as an administrator might in the vSphere client.
    pub fn remove_out_of_band(&self, vsphere_name: &str) -> Option<MockVm> {
        let mut inventory = self.lock();
        let vm = inventory.vms.get(vsphere_name).cloned()?;
        self.commit(&mut inventory, InventoryChange::Remove { name: vsphere_name.to_owned() });
        Some(vm)
    }

    /// Creates a VM that Basphere did not make (for reconciliation tests).
    pub fn plant(&self, folder: &str, vsphere_name: &str) {
        let mut inventory = self.lock();
        let backend_id = format!("vm-{}", inventory.next_id + 1);
        let vm = MockVm {
            backend_id,
            vsphere_name: vsphere_name.into(),
            folder: folder.into(),
            basphere_id: None,
            power: PowerState::On,
            clone: None,
        };
        self.commit(&mut inventory, InventoryChange::Upsert { vm: Box::new(vm) });
    }

    fn missing(vm: &VmRef) -> Error {
        Error::not_found("vm", &vm.vsphere_name)
    }
}

#[async_trait]
impl Provisioner for MockProvisioner {
    async fn adopt(&self, vm: &VmRef) -> Result<()> {
        let mut inventory = self.lock();
        inventory.calls.push(format!("adopt:{}", vm.vsphere_name));
        let Some(found) = inventory.vms.get(&vm.vsphere_name).cloned() else { return Err(Self::missing(vm)) };
        match found.basphere_id {
            Some(id) if id == vm.id => Ok(()),
            Some(other) => Err(Error::Conflict(format!("{} carries another Basphere id ({other})", vm.vsphere_name))),
            None if found.folder != self.folder_of(&vm.owner) => Err(Error::Conflict(format!(
                "{} is in {}, not in {}",
                vm.vsphere_name,
                found.folder,
                self.folder_of(&vm.owner)
            ))),
            None => {
                let adopted = MockVm { basphere_id: Some(vm.id), ..found };
                self.commit(&mut inventory, InventoryChange::Upsert { vm: Box::new(adopted) });
                Ok(())
            }
        }
    }

    fn backend_name(&self) -> &'static str {
        "simulated"
    }

    async fn preflight(&self) -> Result<()> {
        Ok(())
    }

    async fn ensure_folder(&self, owner: &Username) -> Result<()> {
        let folder = self.folder_of(owner);
        let mut inventory = self.lock();
        inventory.calls.push(format!("ensure_folder:{owner}"));
        if !inventory.folders.contains(&folder) {
            self.commit(&mut inventory, InventoryChange::Folder { path: folder });
        }
        Ok(())
    }

    async fn create_vm(&self, request: &VmRequest) -> Result<VmHandle> {
        let name = request.vsphere_name();
        let folder = self.folder_of(&request.owner);
        {
            let mut inventory = self.lock();
            inventory.calls.push(format!("create_vm:{name}"));
            if let Some(existing) = inventory.vms.get(&name) {
                return if existing.basphere_id == Some(request.id) {
                    Ok(VmHandle {
                        backend_id: existing.backend_id.clone(),
                        power: existing.power,
                        log_tail: vec![format!("adopted existing {name}")],
                    })
                } else {
                    Err(Error::already_exists("vm", &name))
                };
            }
            if !inventory.folders.contains(&folder) {
                return Err(Error::backend("simulated", Message(format!("folder {folder} not found"))));
            }
            if !self.templates.contains(&request.os.template) {
                return Err(Error::backend(
                    "simulated",
                    Message(format!("template {} not found", request.os.template)),
                ));
            }
            if let Some(port_group) = &request.network.port_group {
                if !inventory.port_groups.contains_key(port_group) {
                    return Err(Error::not_found("port group", port_group));
                }
            }
        }
        tokio::time::sleep(self.delays.clone + self.delays.power).await;
        let mut inventory = self.lock();
        // The name may have been taken while the clone task ran.
        if inventory.vms.contains_key(&name) {
            return Err(Error::already_exists("vm", &name));
        }
        let backend_id = format!("vm-{}", inventory.next_id + 1);
        let vm = MockVm {
            backend_id: backend_id.clone(),
            vsphere_name: name.clone(),
            folder,
            basphere_id: Some(request.id),
            power: PowerState::On,
            clone: Some(CloneSpec::from(request)),
        };
        self.commit(&mut inventory, InventoryChange::Upsert { vm: Box::new(vm) });
        Ok(VmHandle {
            backend_id,
            power: PowerState::On,
            log_tail: vec![format!("cloned {} from {}", name, request.os.template), format!("powered on {name}")],
        })
    }

    async fn destroy_vm(&self, vm: &VmRef) -> Result<()> {
        let present = {
            let mut inventory = self.lock();
            inventory.calls.push(format!("destroy_vm:{}", vm.vsphere_name));
            inventory.vms.contains_key(&vm.vsphere_name)
        };
        if present {
            tokio::time::sleep(self.delays.destroy).await;
            let mut inventory = self.lock();
            if inventory.vms.contains_key(&vm.vsphere_name) {
                self.commit(&mut inventory, InventoryChange::Remove { name: vm.vsphere_name.clone() });
            }
        }
        Ok(())
    }

    async fn power(&self, vm: &VmRef, action: PowerAction) -> Result<PowerState> {
        {
            let mut inventory = self.lock();
            inventory.calls.push(format!("power_{action:?}:{}", vm.vsphere_name).to_lowercase());
            let current = inventory.vms.get(&vm.vsphere_name).ok_or_else(|| Self::missing(vm))?;
            if action == PowerAction::Reboot && current.power == PowerState::Off {
                return Err(Error::Conflict(format!("{} is powered off; start it instead", vm.vsphere_name)));
            }
        }
        tokio::time::sleep(self.delays.power).await;
        let mut inventory = self.lock();
        let mut current = inventory.vms.get(&vm.vsphere_name).cloned().ok_or_else(|| Self::missing(vm))?;
        current.power = match action {
            PowerAction::Start | PowerAction::Reboot => PowerState::On,
            PowerAction::Stop => PowerState::Off,
        };
        let power = current.power;
        self.commit(&mut inventory, InventoryChange::Upsert { vm: Box::new(current) });
        Ok(power)
    }

    async fn ensure_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        let mut inventory = self.lock();
        inventory.calls.push(format!("ensure_port_groups:{}", spec.tenant));
        if !self.switches.contains(&spec.switch) {
            return Err(Error::not_found("distributed switch", &spec.switch));
        }
        let description = spec.description();
        // Every name is checked before anything is made, as a plan would be.
        for wanted in &spec.port_groups {
            if let Some(found) = inventory.port_groups.get(&wanted.name) {
                if found.description.as_deref() != Some(description.as_str()) {
                    return Err(Error::already_exists(
                        "port group",
                        format!("{} (not Basphere's: its description is not {description:?})", wanted.name),
                    ));
                }
            }
        }
        for wanted in &spec.port_groups {
            let port_group = MockPortGroup {
                name: wanted.name.clone(),
                switch: spec.switch.clone(),
                vlan: wanted.vlan,
                description: Some(description.clone()),
            };
            if inventory.port_groups.get(&wanted.name) != Some(&port_group) {
                self.commit(&mut inventory, InventoryChange::PortGroup { port_group });
            }
        }
        Ok(())
    }

    async fn remove_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        let mut inventory = self.lock();
        inventory.calls.push(format!("remove_port_groups:{}", spec.tenant));
        let description = spec.description();
        for wanted in &spec.port_groups {
            let ours = inventory
                .port_groups
                .get(&wanted.name)
                .is_some_and(|found| found.description.as_deref() == Some(description.as_str()));
            if !ours {
                continue;
            }
            if let Some(vm) = inventory.vms.values().find(|vm| {
                vm.clone.as_ref().is_some_and(|clone| clone.network.port_group.as_ref() == Some(&wanted.name))
            }) {
                return Err(Error::Conflict(format!(
                    "the port group {} is in use by {}",
                    wanted.name, vm.vsphere_name
                )));
            }
            self.commit(&mut inventory, InventoryChange::RemovePortGroup { name: wanted.name.clone() });
        }
        Ok(())
    }

    async fn inventory(&self) -> Result<Vec<InventoryVm>> {
        let inventory = self.lock();
        Ok(inventory
            .vms
            .values()
            .map(|vm| InventoryVm {
                vsphere_name: vm.vsphere_name.clone(),
                backend_id: vm.backend_id.clone(),
                folder: vm.folder.clone(),
                basphere_id: vm.basphere_id,
                power: vm.power,
            })
            .collect())
    }
}

/// The admin kubeconfig a simulated cluster `name` gives, its API server at `host`:6443 (the
/// certificates are placeholders: nothing answers there).
pub fn simulated_kubeconfig(name: &str, host: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: https://{host}:6443\n    \
         certificate-authority-data: c2ltdWxhdGVk\ncontexts:\n- name: {name}-admin@{name}\n  context:\n    cluster: {name}\n    \
         user: {name}-admin\ncurrent-context: {name}-admin@{name}\nusers:\n- name: {name}-admin\n  user:\n    \
         client-certificate-data: c2ltdWxhdGVk\n    client-key-data: c2ltdWxhdGVk\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_changes_read_back_as_written_in_any_field_order() {
        let vm = MockVm {
            backend_id: "vm-7".into(),
            vsphere_name: "alice-web".into(),
            folder: "basphere-vms/alice".into(),
            basphere_id: Some(Uuid::now_v7()),
            power: PowerState::On,
            clone: None,
        };
        let changes = [
            InventoryChange::Folder { path: "basphere-vms/alice".into() },
            InventoryChange::Upsert { vm: Box::new(vm) },
            InventoryChange::Remove { name: "alice-web".into() },
        ];
        for change in changes {
            let line = serde_json::to_string(&change).unwrap();
            assert!(line.starts_with("{\"change\":"), "the journal's format is unchanged: {line}");
            assert_eq!(serde_json::from_str::<InventoryChange>(&line).unwrap(), change);
        }
        let reordered: InventoryChange = serde_json::from_str(r#"{"name":"alice-web","change":"remove"}"#).unwrap();
        assert_eq!(reordered, InventoryChange::Remove { name: "alice-web".into() });
        let incomplete = serde_json::from_str::<InventoryChange>(r#"{"change":"upsert"}"#).unwrap_err();
        assert!(incomplete.to_string().contains("needs `vm`"), "{incomplete}");
        assert!(serde_json::from_str::<InventoryChange>(r#"{"change":"rename"}"#).is_err());
    }

    /// A journal written when each VM kept its whole request still opens: the clone is read
    /// out of the request, the rest of it (the key among it) is skipped, and the VM is written
    /// back without it.
    #[test]
    fn a_journal_line_with_the_whole_request_reads_as_the_clone() {
        let earlier = r#"{"change":"upsert","vm":{"backend_id":"vm-100","vsphere_name":"owner-7-vm0-8","folder":"basphere-vms/owner-7","basphere_id":"01a23367-9726-77c8-82ff-73e88505a5ab","power":"on","request":{"id":"01a23367-9726-77c8-82ff-73e88505a5ab","owner":"owner-7","name":"vm0-8","os":{"key":"ubuntu-24.04","template":"ubuntu-noble-24.04-cloudimg","description":"Ubuntu 24.04 LTS (Noble)","interface":"ens192"},"spec":{"key":"tiny","description":"tiny","cpu":2,"memory_mb":4096,"disk_gb":50},"network":{"interface":"ens192","address":"10.0.4.7","prefix_len":16,"gateway":"10.0.0.1","dns":["8.8.8.8"],"mtu":1500},"ssh_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKe7DQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABC test-900007"}}}"#;
        let InventoryChange::Upsert { vm } = serde_json::from_str::<InventoryChange>(earlier).unwrap() else {
            panic!("an upsert")
        };
        let clone = CloneSpec {
            template: "ubuntu-noble-24.04-cloudimg".into(),
            cpu: 2,
            memory_mb: 4096,
            disk_gb: 50,
            network: GuestNetwork {
                interface: "ens192".into(),
                address: [10, 0, 4, 7].into(),
                prefix_len: 16,
                gateway: [10, 0, 0, 1].into(),
                dns: vec![[8, 8, 8, 8].into()],
                mtu: 1500,
                port_group: None,
            },
            ssh_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKe7DQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABC test-900007"
                .into(),
        };
        assert_eq!(vm.clone.as_ref(), Some(&clone));
        assert_eq!(vm.basphere_id, Some("01a23367-9726-77c8-82ff-73e88505a5ab".parse().unwrap()));
        assert_eq!((vm.backend_id.as_str(), vm.power), ("vm-100", PowerState::On));
        let written = serde_json::to_string(&InventoryChange::Upsert { vm: vm.clone() }).unwrap();
        assert!(!written.contains("request") && !written.contains("Noble"), "{written}");
        assert_eq!(serde_json::from_str::<InventoryChange>(&written).unwrap(), InventoryChange::Upsert { vm });
    }
}
