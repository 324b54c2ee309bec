//! `VsphereApiProvisioner`: VMs through the vSphere API itself (SOAP, with the `vim_rs` crate),
//! no Terraform. Clones the OS template into the owner's folder with the spec's CPU and memory
//! and the cloud-init documents in `extraConfig`, powers VMs on and off, destroys them, and
//! lists Basphere's folders for reconciliation. A create retried after a crash adopts the VM
//! that carries its id in `guestinfo.basphere.id` instead of making another.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use basphere_core::config::VsphereConfig;
use basphere_core::provisioner::*;
use basphere_core::validate::Username;
use basphere_core::{Error, Result};
use tokio::sync::Mutex;
use vim_rs::core::client::{Client, ClientBuilder, Error as VimError, TransportMode};
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::core::tasks::TaskTracker;
use vim_rs::mo::{Folder, SearchIndex, VirtualMachine};
use vim_rs::types::boxed_types::ValueElements;
use vim_rs::types::enums::VirtualMachinePowerStateEnum;
use vim_rs::types::struct_enum::StructType;
use vim_rs::types::structs::{
    ManagedObjectReference, OptionValue, VirtualMachineCloneSpec, VirtualMachineConfigSpec, VirtualMachineRelocateSpec,
};
use vim_rs::types::traits::OptionValueTrait;
use vim_rs::types::vim_any::VimAny;
use vim_rs::vim_retrievable;

use crate::terraform::{render, Credentials};

/// The marker every Basphere VM carries.
const MARKER: &str = "guestinfo.basphere.id";

vim_retrievable!(
    struct VmRow: VirtualMachine {
        name = "name",
        power_state = "runtime.power_state",
        extra = "config.extra_config"?,
        parent = "parent"?,
    }
);

vim_retrievable!(
    struct FolderRow: Folder {
        name = "name",
        parent = "parent"?,
    }
);

/// Where the vCenter is and how to reach it.
#[derive(Clone, Debug)]
pub struct VsphereApiSettings {
    /// `host[:port]` of the vCenter (the SDK is at `https://<server>/sdk`).
    pub server: String,
    pub credentials: Credentials,
    pub vsphere: VsphereConfig,
    /// Accept a self-signed certificate (`vsphere.allow_unverified_ssl`).
    pub accept_invalid_certs: bool,
}

/// The vSphere API VM backend.
pub struct VsphereApiProvisioner {
    settings: VsphereApiSettings,
    session: Mutex<Option<Arc<Client>>>,
}

fn vim(error: VimError) -> Error {
    match &error {
        VimError::MethodFault(fault) if fault.type_ == Some(StructType::ManagedObjectNotFound) => {
            Error::not_found("vsphere object", format!("{:?}", fault.fault_message))
        }
        _ => Error::backend("vsphere-api", error),
    }
}

fn task(error: vim_rs::core::Error) -> Error {
    let fault = error.task_fault().map(|fault| format!("{:?} {:?}", fault.type_, fault.fault_message));
    Error::Backend { backend: "vsphere-api", source: Box::new(error), log_tail: fault.into_iter().collect() }
}

fn option(key: &str, value: String) -> Box<dyn OptionValueTrait> {
    Box::new(OptionValue { key: key.to_owned(), value: Some(VimAny::Value(ValueElements::PrimitiveString(value))) })
}

fn marker_of(row: &VmRow) -> Option<String> {
    row.extra.iter().flatten().find(|option| option.key == MARKER).and_then(|option| match &option.value {
        Some(VimAny::Value(ValueElements::PrimitiveString(value))) => Some(value.clone()),
        _ => None,
    })
}

fn power_of(row: &VmRow) -> PowerState {
    if row.power_state == VirtualMachinePowerStateEnum::PoweredOn {
        PowerState::On
    } else {
        PowerState::Off
    }
}

impl VsphereApiProvisioner {
    pub fn new(settings: VsphereApiSettings) -> Self {
        VsphereApiProvisioner { settings, session: Mutex::new(None) }
    }

    async fn connect(&self) -> Result<Arc<Client>> {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .danger_accept_invalid_certs(self.settings.accept_invalid_certs)
            .danger_accept_invalid_hostnames(self.settings.accept_invalid_certs)
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|error| Error::backend("vsphere-api", error))?;
        ClientBuilder::new(&self.settings.server, http)
            .basic_authn(&self.settings.credentials.user, &self.settings.credentials.password)
            .app_details("basphere", env!("CARGO_PKG_VERSION"))
            .transport(TransportMode::Soap)
            .build()
            .await
            .map_err(vim)
    }

    /// The session, made on first use and made again when vCenter no longer knows it.
    async fn client(&self) -> Result<Arc<Client>> {
        let mut session = self.session.lock().await;
        if let Some(client) = session.as_ref() {
            return Ok(client.clone());
        }
        let client = self.connect().await?;
        *session = Some(client.clone());
        Ok(client)
    }

    /// Runs `f` with the session; a session vCenter forgot (NotAuthenticated) is replaced once.
    async fn with_client<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, VimError>>,
    {
        let client = self.client().await?;
        match f(client).await {
            Err(VimError::MethodFault(fault)) if fault.type_ == Some(StructType::NotAuthenticated) => {
                *self.session.lock().await = None;
                let client = self.client().await?;
                f(client).await.map_err(vim)
            }
            other => other.map_err(vim),
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("{}/{rest}", self.settings.vsphere.datacenter)
    }

    fn base_folder_path(&self) -> String {
        self.path(&format!("vm/{}", self.settings.vsphere.folder))
    }

    fn user_folder_path(&self, owner: &Username) -> String {
        format!("{}/{owner}", self.base_folder_path())
    }

    async fn find(&self, path: &str) -> Result<Option<ManagedObjectReference>> {
        let path = path.to_owned();
        self.with_client(|client| {
            let path = path.clone();
            async move {
                let index = client.service_content().search_index.clone().expect("vCenter has a SearchIndex");
                SearchIndex::new(client.clone(), &index.value).find_by_inventory_path(&path).await
            }
        })
        .await
    }

    async fn require(&self, key: &str, path: &str) -> Result<ManagedObjectReference> {
        self.find(path)
            .await?
            .ok_or_else(|| Error::invalid(key, format!("{path} was not found in vCenter {}", self.settings.server)))
    }

    async fn row(&self, vm: &ManagedObjectReference) -> Result<VmRow> {
        let client = self.client().await?;
        let retriever = ObjectRetriever::new(client).map_err(|error| Error::backend("vsphere-api", error))?;
        retriever
            .retrieve_object::<VmRow>(vm)
            .await
            .map_err(|error| Error::backend("vsphere-api", error))?
            .ok_or_else(|| Error::not_found("vm", &vm.value))
    }

    async fn wait(&self, task_ref: ManagedObjectReference) -> Result<Option<ManagedObjectReference>> {
        let client = self.client().await?;
        let tracker = TaskTracker::new(client);
        let result = tracker.wait_any(task_ref).await.map_err(task);
        tracker.shutdown().await;
        match result? {
            Some(any) => Ok(any.into_any().downcast::<ManagedObjectReference>().ok().map(|moref| *moref)),
            None => Ok(None),
        }
    }

    /// The VM `<owner>-<name>` in the owner's folder, with its row.
    async fn existing(&self, owner: &Username, vsphere_name: &str) -> Result<Option<(ManagedObjectReference, VmRow)>> {
        match self.find(&format!("{}/{vsphere_name}", self.user_folder_path(owner))).await? {
            Some(moref) => {
                let row = self.row(&moref).await?;
                Ok(Some((moref, row)))
            }
            None => Ok(None),
        }
    }

    /// A VM that is ours: found by name, carrying this id.
    async fn ours(&self, vm: &VmRef) -> Result<Option<(ManagedObjectReference, VmRow)>> {
        match self.existing(&vm.owner, &vm.vsphere_name).await? {
            Some((moref, row)) if marker_of(&row).as_deref() == Some(vm.id.to_string().as_str()) => {
                Ok(Some((moref, row)))
            }
            Some(_) => Err(Error::Conflict(format!(
                "{} in vSphere is not Basphere's VM {}; it is left untouched",
                vm.vsphere_name, vm.id
            ))),
            None => Ok(None),
        }
    }

    async fn set_power(&self, vm: &ManagedObjectReference, on: bool) -> Result<()> {
        let id = vm.value.clone();
        let task_ref = self
            .with_client(|client| {
                let id = id.clone();
                async move {
                    let machine = VirtualMachine::new(client, &id);
                    if on {
                        machine.power_on_vm_task(None).await
                    } else {
                        machine.power_off_vm_task().await
                    }
                }
            })
            .await?;
        self.wait(task_ref).await?;
        Ok(())
    }
}

#[async_trait]
impl Provisioner for VsphereApiProvisioner {
    fn backend_name(&self) -> &'static str {
        "vsphere-api"
    }

    async fn preflight(&self) -> Result<()> {
        let v = &self.settings.vsphere;
        let mut wanted = vec![
            ("vsphere.datacenter", v.datacenter.clone()),
            ("vsphere.cluster", self.path(&format!("host/{}", v.cluster))),
            ("vsphere.datastore", self.path(&format!("datastore/{}", v.datastore))),
            ("vsphere.network", self.path(&format!("network/{}", v.network))),
        ];
        if !v.resource_pool.is_empty() {
            wanted.push(("vsphere.resource_pool", v.resource_pool.trim_start_matches('/').to_owned()));
        }
        let mut missing = Vec::new();
        for (key, path) in wanted {
            if self.find(&path).await?.is_none() {
                missing.push(format!("{key}: {path}"));
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(
                "vsphere",
                format!("not found in vCenter {}: {}", self.settings.server, missing.join("; ")),
            ))
        }
    }

    async fn ensure_folder(&self, owner: &Username) -> Result<()> {
        let vm_folder = self.require("vsphere.datacenter", &self.path("vm")).await?;
        let base = match self.find(&self.base_folder_path()).await? {
            Some(base) => base,
            None => create_folder(self, &vm_folder, &self.settings.vsphere.folder).await?,
        };
        if self.find(&self.user_folder_path(owner)).await?.is_none() {
            create_folder(self, &base, owner.as_str()).await?;
        }
        Ok(())
    }

    async fn create_vm(&self, request: &VmRequest) -> Result<VmHandle> {
        let name = request.vsphere_name();
        if let Some((moref, row)) = self.existing(&request.owner, &name).await? {
            return if marker_of(&row).as_deref() == Some(request.id.to_string().as_str()) {
                if power_of(&row) == PowerState::Off {
                    self.set_power(&moref, true).await?;
                }
                Ok(VmHandle {
                    backend_id: moref.value,
                    power: PowerState::On,
                    log_tail: vec![format!("adopted {name}, made by an earlier attempt")],
                })
            } else {
                Err(Error::already_exists("vm", &name))
            };
        }
        let v = &self.settings.vsphere;
        let folder = self.require("vsphere.folder", &self.user_folder_path(&request.owner)).await?;
        let template = self
            .require(
                &format!("templates.os.{}.template", request.os.key),
                &self.path(&format!("vm/{}", request.os.template)),
            )
            .await?;
        let datastore = self.require("vsphere.datastore", &self.path(&format!("datastore/{}", v.datastore))).await?;
        let pool_path = if v.resource_pool.is_empty() {
            self.path(&format!("host/{}/Resources", v.cluster))
        } else {
            v.resource_pool.trim_start_matches('/').to_owned()
        };
        let pool = self.require("vsphere.resource_pool", &pool_path).await?;
        let (metadata, userdata) = render::cloud_init(request)?;
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
        let (metadata, userdata) = (b64(&metadata), b64(&userdata));
        let (cpu, memory, id, annotation) =
            (request.spec.cpu, request.spec.memory_mb, request.id.to_string(), format!("basphere-id={}", request.id));
        let task_ref = self
            .with_client(|client| {
                let (template, folder, datastore, pool) =
                    (template.clone(), folder.clone(), datastore.clone(), pool.clone());
                let (name, metadata, userdata, id, annotation) =
                    (name.clone(), metadata.clone(), userdata.clone(), id.clone(), annotation.clone());
                async move {
                    // Without vim_rs's `defaults` feature, an empty spec comes from "{}".
                    let mut config: VirtualMachineConfigSpec =
                        miniserde::json::from_str("{}").expect("every field is optional");
                    config.num_cp_us = Some(cpu as i32);
                    config.memory_mb = Some(memory as i64);
                    config.annotation = Some(annotation);
                    config.extra_config = Some(vec![
                        option("guestinfo.metadata", metadata),
                        option("guestinfo.metadata.encoding", "base64".into()),
                        option("guestinfo.userdata", userdata),
                        option("guestinfo.userdata.encoding", "base64".into()),
                        option(MARKER, id),
                    ]);
                    let mut location: VirtualMachineRelocateSpec =
                        miniserde::json::from_str("{}").expect("every field is optional");
                    location.datastore = Some(datastore);
                    location.pool = Some(pool);
                    let spec = VirtualMachineCloneSpec {
                        location,
                        template: false,
                        config: Some(config),
                        customization: None,
                        power_on: true,
                        snapshot: None,
                        memory: None,
                        tpm_provision_policy: None,
                    };
                    VirtualMachine::new(client, &template.value).clone_vm_task(&folder, &name, &spec).await
                }
            })
            .await?;
        let created = self.wait(task_ref).await?.ok_or_else(|| {
            Error::backend("vsphere-api", basphere_core::error::Message("the clone task returned no VM".into()))
        })?;
        let row = self.row(&created).await?;
        if power_of(&row) == PowerState::Off {
            self.set_power(&created, true).await?;
        }
        Ok(VmHandle {
            backend_id: created.value,
            power: PowerState::On,
            log_tail: vec![format!("cloned {name} from {} and powered it on", request.os.template)],
        })
    }

    async fn destroy_vm(&self, vm: &VmRef) -> Result<()> {
        let Some((moref, row)) = self.ours(vm).await? else { return Ok(()) };
        if power_of(&row) == PowerState::On {
            self.set_power(&moref, false).await?;
        }
        let id = moref.value.clone();
        let task_ref = self
            .with_client(|client| {
                let id = id.clone();
                async move { VirtualMachine::new(client, &id).destroy_task().await }
            })
            .await?;
        self.wait(task_ref).await?;
        Ok(())
    }

    async fn power(&self, vm: &VmRef, action: PowerAction) -> Result<PowerState> {
        let (moref, row) = self.ours(vm).await?.ok_or_else(|| Error::not_found("vm", &vm.vsphere_name))?;
        let current = power_of(&row);
        match (action, current) {
            (PowerAction::Start, PowerState::Off) => self.set_power(&moref, true).await?,
            (PowerAction::Stop, PowerState::On) => self.set_power(&moref, false).await?,
            (PowerAction::Reboot, PowerState::Off) => {
                return Err(Error::Conflict(format!("{} is powered off; start it instead", vm.vsphere_name)))
            }
            (PowerAction::Reboot, PowerState::On) => {
                let id = moref.value.clone();
                let task_ref = self
                    .with_client(|client| {
                        let id = id.clone();
                        async move { VirtualMachine::new(client, &id).reset_vm_task().await }
                    })
                    .await?;
                self.wait(task_ref).await?;
            }
            _ => {}
        }
        Ok(match action {
            PowerAction::Stop => PowerState::Off,
            _ => PowerState::On,
        })
    }

    async fn inventory(&self) -> Result<Vec<InventoryVm>> {
        let Some(base) = self.find(&self.base_folder_path()).await? else { return Ok(Vec::new()) };
        let client = self.client().await?;
        let retriever = ObjectRetriever::new(client).map_err(|error| Error::backend("vsphere-api", error))?;
        let vms: Vec<VmRow> = retriever
            .retrieve_objects_from_container(&base)
            .await
            .map_err(|error| Error::backend("vsphere-api", error))?;
        let folders: Vec<FolderRow> = retriever
            .retrieve_objects_from_container(&base)
            .await
            .map_err(|error| Error::backend("vsphere-api", error))?;
        let by_id: HashMap<String, &FolderRow> =
            folders.iter().map(|folder| (folder.id.value.clone(), folder)).collect();
        let base_name = self.settings.vsphere.folder.clone();
        let folder_of = |parent: &Option<ManagedObjectReference>| -> String {
            let mut parts = Vec::new();
            let mut current = parent.clone();
            while let Some(moref) = current {
                if moref.value == base.value {
                    break;
                }
                match by_id.get(&moref.value) {
                    Some(folder) => {
                        parts.push(folder.name.clone());
                        current = folder.parent.clone();
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
            .map(|row| InventoryVm {
                vsphere_name: row.name.clone(),
                backend_id: row.id.value.clone(),
                folder: folder_of(&row.parent),
                basphere_id: marker_of(row).and_then(|id| uuid::Uuid::parse_str(&id).ok()),
                power: power_of(row),
            })
            .collect())
    }
}

async fn create_folder(
    provisioner: &VsphereApiProvisioner,
    parent: &ManagedObjectReference,
    name: &str,
) -> Result<ManagedObjectReference> {
    let (parent_id, name_owned) = (parent.value.clone(), name.to_owned());
    let created = provisioner.client().await?;
    match Folder::new(created, &parent_id).create_folder(&name_owned).await {
        Ok(folder) => Ok(folder),
        // Made by someone else meanwhile: fine, it exists.
        Err(VimError::MethodFault(fault)) if fault.type_ == Some(StructType::DuplicateName) => {
            let client = provisioner.client().await?;
            let index = client.service_content().search_index.clone().expect("vCenter has a SearchIndex");
            SearchIndex::new(client.clone(), &index.value)
                .find_child(parent, name)
                .await
                .map_err(vim)?
                .ok_or_else(|| Error::not_found("folder", name))
        }
        Err(error) => Err(vim(error)),
    }
}
