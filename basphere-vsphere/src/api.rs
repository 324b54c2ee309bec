//! `VsphereApiProvisioner`: VMs through the vSphere API itself (SOAP, with the `vim_rs` crate),
//! no Terraform. Clones the OS template into the owner's folder with the spec's CPU and memory
//! and the cloud-init documents in `extraConfig`, powers VMs on and off, destroys them, and
//! lists Basphere's folders for reconciliation. A create retried after a crash adopts the VM
//! that carries its id in `guestinfo.basphere.id` instead of making another.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use basphere_core::config::VsphereConfig;
use basphere_core::model::OsImage;
use basphere_core::provisioner::*;
use basphere_core::validate::Username;
use basphere_core::{Error, Result};
use tokio::sync::Mutex;
use vim_rs::core::client::{Client, ClientBuilder, Error as VimError, TransportMode};
use vim_rs::core::pc_retrieve::ObjectRetriever;
use vim_rs::mo::{ContainerView, Folder, SearchIndex, ViewManager, VirtualMachine};
use vim_rs::types::boxed_types::ValueElements;
use vim_rs::types::enums::{TaskInfoStateEnum, VirtualDeviceConfigSpecOperationEnum, VirtualMachinePowerStateEnum};
use vim_rs::types::struct_enum::StructType;
use vim_rs::types::structs::{
    ManagedObjectReference, OptionValue, VirtualDeviceConfigSpec, VirtualDisk, VirtualMachineCloneSpec,
    VirtualMachineConfigSpec, VirtualMachineRelocateSpec,
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
    struct HardwareRow: VirtualMachine {
        cpu = "config.hardware.num_cpu"?,
        memory_mb = "config.hardware.memory_mb"?,
        devices = "config.hardware.device"?,
        annotation = "config.annotation"?,
    }
);

vim_retrievable!(
    struct TaskRow: Task {
        state = "info.state",
    }
);

vim_retrievable!(
    struct FolderRow: Folder {
        name = "name",
        parent = "parent"?,
    }
);

/// Where the vCenter is, how to reach it and what to find there.
#[derive(Clone, Debug)]
pub struct VsphereApiSettings {
    /// `host[:port]` of the vCenter (the SDK is at `https://<server>/sdk`).
    pub server: String,
    pub credentials: Credentials,
    pub vsphere: VsphereConfig,
    /// The OS catalog, whose templates preflight looks for.
    pub os_images: BTreeMap<String, OsImage>,
    /// Accept a self-signed certificate (`vsphere.allow_unverified_ssl`).
    pub accept_invalid_certs: bool,
}

/// One login to vCenter.
struct Session {
    client: Arc<Client>,
}

/// The vSphere API VM backend.
pub struct VsphereApiProvisioner {
    settings: VsphereApiSettings,
    session: Mutex<Option<Arc<Session>>>,
}

/// What a call to vCenter can fail with: a SOAP call or a property collector/task wait.
enum Failure {
    Call(VimError),
    Collector(vim_rs::core::Error),
    Basphere(Error),
}

impl From<VimError> for Failure {
    fn from(error: VimError) -> Self {
        Failure::Call(error)
    }
}

impl From<vim_rs::core::Error> for Failure {
    fn from(error: vim_rs::core::Error) -> Self {
        Failure::Collector(error)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Basphere(error)
    }
}

fn fault_is(error: &VimError, kind: StructType) -> bool {
    matches!(error, VimError::MethodFault(fault) if fault.type_ == Some(kind))
}

impl Failure {
    /// vCenter no longer knows the session (expired, or vCenter restarted).
    fn session_lost(&self) -> bool {
        match self {
            Failure::Call(error) => fault_is(error, StructType::NotAuthenticated),
            Failure::Collector(error) => {
                error.client_error().is_some_and(|error| fault_is(error, StructType::NotAuthenticated))
            }
            Failure::Basphere(_) => false,
        }
    }

    /// The connection failed (no answer from vCenter): the transport's error.
    fn transport(&self) -> Option<&VimError> {
        let error = match self {
            Failure::Call(error) => error,
            Failure::Collector(error) => error.client_error()?,
            Failure::Basphere(_) => return None,
        };
        matches!(error, VimError::ReqwestError(inner) if inner.is_request() || inner.is_connect()).then_some(error)
    }

    fn into_error(self) -> Error {
        match self {
            Failure::Call(error) if fault_is(&error, StructType::ManagedObjectNotFound) => {
                Error::not_found("vsphere object", error.to_string())
            }
            Failure::Call(error) => Error::backend("vsphere-api", with_causes(&error)),
            Failure::Collector(error) => {
                let fault = error.task_fault().map(describe_fault);
                Error::Backend { backend: "vsphere-api", source: with_causes(&error).into(), log_tail: fault.into_iter().collect() }
            }
            Failure::Basphere(error) => error,
        }
    }
}

/// An error and every cause under it on one line ("error sending request: connection refused"),
/// as the transport's own messages stop at the first level.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = inner.source();
    }
    line
}

/// A fault as one line: its type, its messages and its fields (vcsim sends no messages).
fn describe_fault(fault: &vim_rs::types::structs::MethodFault) -> String {
    let kind = fault.type_.as_ref().map_or_else(|| "MethodFault".to_owned(), |kind| format!("{kind:?}"));
    let messages = fault.fault_message.iter().flatten().map(|m| m.message.clone().unwrap_or_else(|| m.key.clone()));
    let fields = fault.extra_fields_.iter().map(|(key, value)| format!("{key}={}", miniserde::json::to_string(value)));
    let details: Vec<String> = messages.chain(fields).collect();
    if details.is_empty() {
        kind
    } else {
        format!("{kind}: {}", details.join("; "))
    }
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

/// An empty data object: without vim_rs's `defaults` feature, `Default` comes from "{}".
fn empty<T: miniserde::Deserialize>() -> T {
    miniserde::json::from_str("{}").expect("every field of the type is optional")
}

/// The changes that give a VM the spec's CPU, memory and (grown, never shrunk) first disk, and
/// Basphere's annotation.
fn hardware_changes(
    row: HardwareRow,
    spec: &basphere_core::model::VmSpec,
    annotation: &str,
) -> Option<VirtualMachineConfigSpec> {
    let mut config: VirtualMachineConfigSpec = empty();
    let mut changed = false;
    if row.annotation.as_deref() != Some(annotation) {
        config.annotation = Some(annotation.to_owned());
        changed = true;
    }
    if row.cpu != Some(spec.cpu as i32) {
        config.num_cp_us = Some(spec.cpu as i32);
        changed = true;
    }
    if row.memory_mb != Some(spec.memory_mb as i32) {
        config.memory_mb = Some(spec.memory_mb as i64);
        changed = true;
    }
    let wanted_kb = spec.disk_gb as i64 * 1024 * 1024;
    let disk = row.devices.into_iter().flatten().find_map(|device| device.as_any_box().downcast::<VirtualDisk>().ok());
    if let Some(mut disk) = disk {
        let current_kb = disk.capacity_in_bytes.map_or(disk.capacity_in_kb, |bytes| bytes / 1024);
        if current_kb < wanted_kb {
            disk.capacity_in_kb = wanted_kb;
            disk.capacity_in_bytes = Some(wanted_kb * 1024);
            config.device_change = Some(vec![Box::new(VirtualDeviceConfigSpec {
                operation: Some(VirtualDeviceConfigSpecOperationEnum::Edit),
                file_operation: None,
                device: disk,
                profile: None,
                backing: None,
                filter_spec: None,
                change_mode: None,
            })]);
            changed = true;
        }
    }
    changed.then_some(config)
}

/// The note on every Basphere VM, for vSphere's administrators.
fn annotation(request: &VmRequest) -> String {
    format!("Basphere VM {} of {} (basphere-id={})", request.name, request.owner, request.id)
}

impl VsphereApiProvisioner {
    pub fn new(settings: VsphereApiSettings) -> Self {
        VsphereApiProvisioner { settings, session: Mutex::new(None) }
    }

    async fn connect(&self) -> Result<Arc<Session>> {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .danger_accept_invalid_certs(self.settings.accept_invalid_certs)
            .danger_accept_invalid_hostnames(self.settings.accept_invalid_certs)
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|error| Error::backend("vsphere-api", error))?;
        let client = ClientBuilder::new(&self.settings.server, http)
            .basic_authn(&self.settings.credentials.user, &self.settings.credentials.password)
            .app_details("basphere", env!("CARGO_PKG_VERSION"))
            .transport(TransportMode::Soap)
            .build()
            .await
            .map_err(|error| Failure::Call(error).into_error())?;
        Ok(Arc::new(Session { client }))
    }

    /// The session, made on first use and made again after vCenter forgot it.
    async fn session(&self) -> Result<Arc<Session>> {
        let mut session = self.session.lock().await;
        if let Some(current) = session.as_ref() {
            return Ok(current.clone());
        }
        let fresh = self.connect().await?;
        *session = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets `stale` (if it is still the current session) so the next call logs in again.
    async fn forget(&self, stale: &Arc<Session>) {
        let mut session = self.session.lock().await;
        if session.as_ref().is_some_and(|current| Arc::ptr_eq(current, stale)) {
            *session = None;
        }
    }

    /// Runs `f` with the session; when vCenter no longer knows the session (NotAuthenticated),
    /// logs in again and runs `f` once more.
    /// One vCenter call that changes something, made again once after logging in again if
    /// vCenter forgot the session.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = std::result::Result<T, Failure>>,
    {
        self.call_with(false, f).await
    }

    /// One vCenter call that only reads: as `call`, and also made again (twice at most) when
    /// the connection fails under it. Proxies in front of vCenter drop idle keep-alive
    /// connections, and reading twice does no harm.
    async fn read<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = std::result::Result<T, Failure>>,
    {
        self.call_with(true, f).await
    }

    async fn call_with<T, F, Fut>(&self, reads_only: bool, f: F) -> Result<T>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = std::result::Result<T, Failure>>,
    {
        let (mut logged_in_again, mut retries) = (false, 0u32);
        loop {
            let session = self.session().await?;
            match f(session.clone()).await {
                Ok(value) => return Ok(value),
                Err(failure) if failure.session_lost() && !logged_in_again => {
                    tracing::info!(server = %self.settings.server, "the vCenter session expired; logging in again");
                    self.forget(&session).await;
                    logged_in_again = true;
                }
                Err(failure) if reads_only && retries < 2 && failure.transport().is_some() => {
                    retries += 1;
                    let error = failure.transport().map(|error| with_causes(error)).unwrap_or_default();
                    tracing::debug!(server = %self.settings.server, %error, "the connection failed; reading again");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(retries))).await;
                }
                Err(failure) => return Err(failure.into_error()),
            }
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

    async fn find(&self, path: &str) -> Result<Option<ManagedObjectReference>> {
        self.read(|session| async move {
            let client = &session.client;
            let index = client.service_content().search_index.clone().expect("vCenter has a SearchIndex");
            Ok(SearchIndex::new(client.clone(), &index.value).find_by_inventory_path(path).await?)
        })
        .await
    }

    async fn require(&self, key: &str, path: &str) -> Result<ManagedObjectReference> {
        self.find(path)
            .await?
            .ok_or_else(|| Error::invalid(key, format!("{path} was not found in vCenter {}", self.settings.server)))
    }

    async fn row(&self, vm: &ManagedObjectReference) -> Result<VmRow> {
        self.read(|session| async move {
            let retriever = ObjectRetriever::new(session.client.clone())?;
            Ok(retriever.retrieve_object::<VmRow>(vm).await?.ok_or_else(|| Error::not_found("vm", &vm.value))?)
        })
        .await
    }

    /// Starts a task with `start`, waits for it to succeed and returns it.
    async fn run_task<F, Fut>(&self, start: F) -> Result<ManagedObjectReference>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = std::result::Result<ManagedObjectReference, VimError>>,
    {
        let task = self
            .call(|session| {
                let started = start(session.client.clone());
                async move { Ok(started.await?) }
            })
            .await?;
        self.wait(&task).await?;
        Ok(task)
    }

    /// Polls a task until it ends: after 10 ms at first, each pause half as long again as the
    /// last, up to 500 ms, so a short task is seen done within a third of its time and a long one
    /// costs two calls a second. (Polling keeps each wait independent: one bad update cannot fail
    /// every waiter at once.)
    async fn wait(&self, task: &ManagedObjectReference) -> Result<()> {
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            let row = self
                .read(|session| async move {
                    let retriever = ObjectRetriever::new(session.client.clone())?;
                    Ok(retriever.retrieve_object::<TaskRow>(task).await?.ok_or_else(|| Error::not_found("task", &task.value))?)
                })
                .await?;
            match row.state {
                TaskInfoStateEnum::Success => return Ok(()),
                TaskInfoStateEnum::Error => {
                    let reason = self.task_failure(task).await;
                    return Err(Error::Backend {
                        backend: "vsphere-api",
                        source: Box::new(basphere_core::error::Message(format!("vCenter task {} failed: {reason}", task.value))),
                        log_tail: vec![reason],
                    });
                }
                _ => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 3 / 2).min(std::time::Duration::from_millis(500));
                }
            }
        }
    }

    /// The object a finished task made (a clone's new VM).
    async fn task_result(&self, task: &ManagedObjectReference) -> Result<ManagedObjectReference> {
        use vim_rs::core::client::{extract_property, VimClient};
        let fetched = self
            .read(|session| async move {
                Ok(session.client.fetch_property_raw("", "Task", &task.value, "info.result").await?)
            })
            .await?;
        fetched.and_then(|value| extract_property::<ManagedObjectReference>(value).ok()).ok_or_else(|| {
            Error::backend(
                "vsphere-api",
                basphere_core::error::Message(format!("vCenter task {} succeeded without naming what it made", task.value)),
            )
        })
    }

    /// Why a task failed, in one line. (Read as a raw property: vim_rs's typed path for
    /// `info.error` expects a `MethodFault` where vCenter sends a `LocalizedMethodFault`.)
    async fn task_failure(&self, task: &ManagedObjectReference) -> String {
        use vim_rs::core::client::{PropertyValue, VimClient};
        use vim_rs::types::structs::{LocalizedMethodFault, MethodFault};
        let fetched = self
            .read(|session| async move {
                Ok(session.client.fetch_property_raw("", "Task", &task.value, "info.error").await?)
            })
            .await;
        let Ok(Some(PropertyValue::Parsed(value))) = fetched else {
            return "vCenter gave no reason".to_owned();
        };
        match value.into_any().downcast::<LocalizedMethodFault>() {
            Ok(error) => match error.localized_message.as_deref() {
                Some(message) if !message.is_empty() => format!("{} ({message})", describe_fault(&error.fault)),
                _ => describe_fault(&error.fault),
            },
            Err(other) => match other.downcast::<MethodFault>() {
                Ok(fault) => describe_fault(&fault),
                Err(_) => "vCenter gave a reason Basphere cannot read".to_owned(),
            },
        }
    }

    /// The objects of one type (`VirtualMachine`, `Folder`) anywhere under `container`. (Asking
    /// for the list first also spares an empty retrieval, which the simulator answers in a form
    /// vim_rs cannot read.)
    async fn members(&self, container: &ManagedObjectReference, kind: &str) -> Result<Vec<ManagedObjectReference>> {
        self.read(|session| async move {
            let client = &session.client;
            let manager = client.service_content().view_manager.clone().expect("vCenter has a ViewManager");
            let view = ViewManager::new(client.clone(), &manager.value)
                .create_container_view(container, Some(&[kind.to_owned()]), true)
                .await?;
            let view = ContainerView::new(client.clone(), &view.value);
            let members = view.view().await;
            let _ = view.destroy_view().await;
            Ok(members?.unwrap_or_default())
        })
        .await
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
        self.run_task(|client| {
            let machine = VirtualMachine::new(client, &vm.value);
            async move {
                if on {
                    machine.power_on_vm_task(None).await
                } else {
                    machine.power_off_vm_task().await
                }
            }
        })
        .await?;
        Ok(())
    }

    /// Gives the VM the spec's CPU, memory and disk (a reconfigure, only when something differs),
    /// then powers it on. Used after a clone and when adopting an earlier attempt's VM.
    async fn converge(&self, vm: &ManagedObjectReference, request: &VmRequest) -> Result<()> {
        if let Some(changes) = hardware_changes(self.hardware(vm).await?, &request.spec, &annotation(request)) {
            if power_of(&self.row(vm).await?) == PowerState::On {
                self.set_power(vm, false).await?;
            }
            let changes = &changes;
            self.run_task(|client| async move { VirtualMachine::new(client, &vm.value).reconfig_vm_task(changes).await })
                .await?;
        }
        if power_of(&self.row(vm).await?) == PowerState::Off {
            self.set_power(vm, true).await?;
        }
        Ok(())
    }

    async fn hardware(&self, vm: &ManagedObjectReference) -> Result<HardwareRow> {
        self.read(|session| async move {
            let retriever = ObjectRetriever::new(session.client.clone())?;
            Ok(retriever.retrieve_object::<HardwareRow>(vm).await?.ok_or_else(|| Error::not_found("vm", &vm.value))?)
        })
        .await
    }

    async fn create_folder(&self, parent: &ManagedObjectReference, name: &str) -> Result<ManagedObjectReference> {
        self.call(|session| async move {
            let client = &session.client;
            match Folder::new(client.clone(), &parent.value).create_folder(name).await {
                Ok(folder) => Ok(folder),
                // Made by someone else meanwhile: fine, it exists.
                Err(error) if fault_is(&error, StructType::DuplicateName) => {
                    let index = client.service_content().search_index.clone().expect("vCenter has a SearchIndex");
                    Ok(SearchIndex::new(client.clone(), &index.value)
                        .find_child(parent, name)
                        .await?
                        .ok_or_else(|| Error::not_found("folder", name))?)
                }
                Err(error) => Err(error.into()),
            }
        })
        .await
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

    async fn create_vm(&self, request: &VmRequest) -> Result<VmHandle> {
        let name = request.vsphere_name();
        if let Some((moref, row)) = self.existing(&request.owner, &name).await? {
            if marker_of(&row).as_deref() != Some(request.id.to_string().as_str()) {
                return Err(Error::already_exists("vm", &name));
            }
            self.converge(&moref, request).await?;
            return Ok(VmHandle {
                backend_id: moref.value,
                power: PowerState::On,
                log_tail: vec![format!("adopted {name}, made by an earlier attempt")],
            });
        }
        let v = &self.settings.vsphere;
        let folder = self.require("vsphere.folder", &self.user_folder_path(&request.owner)).await?;
        let template =
            self.require(&format!("templates.os.{}.template", request.os.key), &self.template_path(&request.os)).await?;
        let datastore = self.require("vsphere.datastore", &self.path(&format!("datastore/{}", v.datastore))).await?;
        let pool = self.require("vsphere.resource_pool", &self.pool_path()).await?;
        let (metadata, userdata) = render::cloud_init(request)?;
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
        let (metadata, userdata) = (b64(&metadata), b64(&userdata));
        let id = request.id.to_string();
        let spec = || {
            let mut config: VirtualMachineConfigSpec = empty();
            config.num_cp_us = Some(request.spec.cpu as i32);
            config.memory_mb = Some(request.spec.memory_mb as i64);
            config.annotation = Some(annotation(request));
            config.extra_config = Some(vec![
                option("guestinfo.metadata", metadata.clone()),
                option("guestinfo.metadata.encoding", "base64".into()),
                option("guestinfo.userdata", userdata.clone()),
                option("guestinfo.userdata.encoding", "base64".into()),
                option(MARKER, id.clone()),
            ]);
            let mut location: VirtualMachineRelocateSpec = empty();
            location.datastore = Some(datastore.clone());
            location.pool = Some(pool.clone());
            // Powered on only after `converge` has grown its disk (from the clone's own devices) and
            // checked CPU and memory.
            VirtualMachineCloneSpec {
                location,
                template: false,
                config: Some(config),
                customization: None,
                power_on: false,
                snapshot: None,
                memory: None,
                tpm_provision_policy: None,
            }
        };
        let (folder, name_ref) = (&folder, name.as_str());
        let clone = self
            .run_task(|client| {
                let spec = spec();
                let template = VirtualMachine::new(client, &template.value);
                async move { template.clone_vm_task(folder, name_ref, &spec).await }
            })
            .await?;
        let created = self.task_result(&clone).await?;
        self.converge(&created, request).await?;
        Ok(VmHandle {
            backend_id: created.value,
            power: PowerState::On,
            log_tail: vec![format!("cloned {name} from {}, sized it and powered it on", request.os.template)],
        })
    }

    async fn destroy_vm(&self, vm: &VmRef) -> Result<()> {
        let Some((moref, row)) = self.ours(vm).await? else { return Ok(()) };
        if power_of(&row) == PowerState::On {
            self.set_power(&moref, false).await?;
        }
        let moref = &moref;
        self.run_task(|client| async move { VirtualMachine::new(client, &moref.value).destroy_task().await }).await?;
        Ok(())
    }

    async fn power(&self, vm: &VmRef, action: PowerAction) -> Result<PowerState> {
        let (moref, row) = self.ours(vm).await?.ok_or_else(|| Error::not_found("vm", &vm.vsphere_name))?;
        match (action, power_of(&row)) {
            (PowerAction::Start, PowerState::Off) => self.set_power(&moref, true).await?,
            (PowerAction::Stop, PowerState::On) => self.set_power(&moref, false).await?,
            (PowerAction::Reboot, PowerState::Off) => {
                return Err(Error::Conflict(format!("{} is powered off; start it instead", vm.vsphere_name)))
            }
            (PowerAction::Reboot, PowerState::On) => {
                let moref = &moref;
                self.run_task(|client| async move { VirtualMachine::new(client, &moref.value).reset_vm_task().await })
                    .await?;
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
        let members = self.members(&base, "VirtualMachine").await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let folder_members = self.members(&base, "Folder").await?;
        let (members, folder_members) = (&members, &folder_members);
        let (vms, folders) = self
            .read(|session| async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let vms: Vec<VmRow> = retriever.retrieve_objects_from_list(members).await?;
                let folders: Vec<FolderRow> = if folder_members.is_empty() {
                    Vec::new()
                } else {
                    retriever.retrieve_objects_from_list(folder_members).await?
                };
                Ok((vms, folders))
            })
            .await?;
        let base = &base;
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
