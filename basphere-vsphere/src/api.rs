//! `VsphereApiProvisioner`: VMs through the vSphere API itself (SOAP, with the `vim_rs` crate),
//! no Terraform. Clones the OS template into the owner's folder with the spec's CPU and memory
//! and the cloud-init documents in `extraConfig`, grows the clone's disk with a reconfigure,
//! powers VMs on and off, destroys them, and lists Basphere's folders for reconciliation. A
//! create retried after a crash adopts the VM that carries its id in `guestinfo.basphere.id`
//! instead of making another.
//!
//! Compile time shapes this module. Every function that awaits returns a boxed `Send` future
//! (`BoxFuture`), and vim_rs values (rows, faults, specs) never outlive the small functions that
//! talk to vCenter: they are turned into plain data (`VmFacts`, `FolderFacts`) there. The
//! compiler proves each future `Send` by walking every type it holds; a vim_rs type reaches most
//! of vim_rs's thousands of types, and a future that holds another (unboxed) future is walked
//! through it, so before this shape the provisioner's futures took minutes of CPU to check and
//! to compile. A boxed future is `Send` by its type, which stops the walk.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
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

use crate::cloud_init;
pub use crate::config::VsphereApiSettings;

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

/// A VM as Basphere reads it, as plain data.
struct VmFacts {
    moref: ManagedObjectReference,
    name: String,
    power: PowerState,
    /// Its `guestinfo.basphere.id`.
    marker: Option<String>,
    /// The id of the folder it is in.
    parent: Option<String>,
}

impl VmFacts {
    fn of(row: VmRow) -> VmFacts {
        VmFacts {
            marker: marker_of(&row),
            power: if row.power_state == VirtualMachinePowerStateEnum::PoweredOn {
                PowerState::On
            } else {
                PowerState::Off
            },
            parent: row.parent.map(|parent| parent.value),
            name: row.name,
            moref: row.id,
        }
    }
}

/// A folder as Basphere reads it.
struct FolderFacts {
    id: String,
    name: String,
    parent: Option<String>,
}

/// What is in vCenter at a VM's name.
enum Found {
    /// The VM carrying this id.
    Ours(VmFacts),
    /// A VM of the same name without this id: not Basphere's, never touched.
    Foreign,
    Nothing,
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

/// What the retry loop does after a failure.
enum Next {
    LogInAgain,
    /// The connection failed under a read (its error, for the log).
    ReadAgain(String),
    Fail(Error),
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

    /// What to do after this failure: log in again (once), read again (a read, twice at most,
    /// after a lost connection) or give up.
    fn next_step(self, reads_only: bool, logged_in_again: bool, retries: u32) -> Next {
        if self.session_lost() && !logged_in_again {
            return Next::LogInAgain;
        }
        match self.transport().map(|error| with_causes(error)) {
            Some(error) if reads_only && retries < 2 => Next::ReadAgain(error),
            _ => Next::Fail(self.into_error()),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Failure::Call(error) if fault_is(&error, StructType::ManagedObjectNotFound) => {
                Error::not_found("vsphere object", error.to_string())
            }
            Failure::Call(error) => Error::backend("vsphere-api", with_causes(&error)),
            Failure::Collector(error) => {
                let fault = error.task_fault().map(describe_fault);
                Error::Backend {
                    backend: "vsphere-api",
                    source: with_causes(&error).into(),
                    log_tail: fault.into_iter().collect(),
                }
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

    /// Logs out of vCenter, when logged in, so that no session is left for vCenter to expire.
    pub fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let session = self.session.lock().await.take();
            if let Some(session) = session {
                if let Err(error) = session.client.close().await {
                    tracing::debug!(%error, "logging out of vCenter failed");
                }
            }
        })
    }

    fn connect(&self) -> BoxFuture<'_, Result<Arc<Session>>> {
        Box::pin(async move {
            let http = reqwest::Client::builder()
                .cookie_store(true)
                .danger_accept_invalid_certs(self.settings.accept_invalid_certs)
                .danger_accept_invalid_hostnames(self.settings.accept_invalid_certs)
                .timeout(std::time::Duration::from_secs(120))
                .build()
                .map_err(|error| Error::backend("vsphere-api", error))?;
            let built = ClientBuilder::new(&self.settings.server, http)
                .basic_authn(&self.settings.credentials.user, &self.settings.credentials.password)
                .app_details("basphere", env!("CARGO_PKG_VERSION"))
                .transport(TransportMode::Soap)
                .build()
                .await;
            match built {
                Ok(client) => Ok(Arc::new(Session { client })),
                Err(error) => Err(self.login_failure(error)),
            }
        })
    }

    /// A failed login; a refused one names the credentials file and what to check.
    fn login_failure(&self, error: VimError) -> Error {
        if !fault_is(&error, StructType::InvalidLogin) {
            return Failure::Call(error).into_error();
        }
        let file = self.settings.vsphere.credentials_file.as_ref().map_or_else(
            || "the credentials Basphere was given".to_owned(),
            |path| format!("the credentials file {}", path.display()),
        );
        Error::invalid(
            "vsphere.credentials_file",
            format!(
                "vCenter {} refused the login of {:?} (InvalidLogin): check VSPHERE_USER and VSPHERE_PASSWORD in {file} \
                 (the server reads it when it starts), and that the account exists in vCenter and is not locked or \
                 expired",
                self.settings.server, self.settings.credentials.user
            ),
        )
    }

    /// The session, made on first use and made again after vCenter forgot it.
    fn session(&self) -> BoxFuture<'_, Result<Arc<Session>>> {
        Box::pin(async move {
            let mut session = self.session.lock().await;
            if let Some(current) = session.as_ref() {
                return Ok(current.clone());
            }
            let fresh = self.connect().await?;
            *session = Some(fresh.clone());
            Ok(fresh)
        })
    }

    /// Forgets `stale` (if it is still the current session) so the next call logs in again.
    fn forget<'a>(&'a self, stale: &'a Arc<Session>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut session = self.session.lock().await;
            if session.as_ref().is_some_and(|current| Arc::ptr_eq(current, stale)) {
                *session = None;
            }
        })
    }

    /// One vCenter call that changes something, made again once after logging in again if
    /// vCenter forgot the session.
    fn call<'a, T: Send + 'a>(
        &'a self,
        attempt: impl Fn(Arc<Session>) -> BoxFuture<'a, std::result::Result<T, Failure>> + Send + Sync + 'a,
    ) -> BoxFuture<'a, Result<T>> {
        self.call_with(false, Box::new(attempt))
    }

    /// One vCenter call that only reads: as `call`, and also made again (twice at most) when
    /// the connection fails under it. Proxies in front of vCenter drop idle keep-alive
    /// connections, and reading twice does no harm.
    fn read<'a, T: Send + 'a>(
        &'a self,
        attempt: impl Fn(Arc<Session>) -> BoxFuture<'a, std::result::Result<T, Failure>> + Send + Sync + 'a,
    ) -> BoxFuture<'a, Result<T>> {
        self.call_with(true, Box::new(attempt))
    }

    fn call_with<'a, T: Send + 'a>(&'a self, reads_only: bool, attempt: Attempt<'a, T>) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let (mut logged_in_again, mut retries) = (false, 0u32);
            loop {
                let session = self.session().await?;
                let failure = match attempt(session.clone()).await {
                    Ok(value) => return Ok(value),
                    Err(failure) => failure,
                };
                // The failure becomes plain data before the next await: a vim_rs fault held
                // across an await would make the compiler prove it `Send` (see the module's
                // documentation).
                match failure.next_step(reads_only, logged_in_again, retries) {
                    Next::LogInAgain => {
                        tracing::info!(server = %self.settings.server, "the vCenter session expired; logging in again");
                        self.forget(&session).await;
                        logged_in_again = true;
                    }
                    Next::ReadAgain(error) => {
                        retries += 1;
                        tracing::debug!(server = %self.settings.server, %error, "the connection failed; reading again");
                        tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(retries))).await;
                    }
                    Next::Fail(error) => return Err(error),
                }
            }
        })
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

    fn find<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<ManagedObjectReference>>> {
        self.read(move |session| {
            Box::pin(async move {
                let client = &session.client;
                let index = client.service_content().search_index.clone().expect("vCenter has a SearchIndex");
                Ok(SearchIndex::new(client.clone(), &index.value).find_by_inventory_path(path).await?)
            })
        })
    }

    fn require<'a>(&'a self, key: &'a str, path: &'a str) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        Box::pin(async move {
            self.find(path)
                .await?
                .ok_or_else(|| Error::invalid(key, format!("{path} was not found in vCenter {}", self.settings.server)))
        })
    }

    /// The VM's name, power state, marker and folder.
    fn vm<'a>(&'a self, vm: &'a ManagedObjectReference) -> BoxFuture<'a, Result<VmFacts>> {
        self.read(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let row =
                    retriever.retrieve_object::<VmRow>(vm).await?.ok_or_else(|| Error::not_found("vm", &vm.value))?;
                Ok(VmFacts::of(row))
            })
        })
    }

    /// Starts a task with `start`, waits for it to succeed and returns it.
    fn run_task<'a>(
        &'a self,
        start: impl Fn(Arc<Client>) -> BoxFuture<'a, std::result::Result<ManagedObjectReference, VimError>>
            + Send
            + Sync
            + 'a,
    ) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        self.run_boxed_task(Box::new(start))
    }

    fn run_boxed_task<'a>(&'a self, start: TaskStart<'a>) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        Box::pin(async move {
            let start = &start;
            let task = self
                .call(move |session| {
                    let started = start(session.client.clone());
                    Box::pin(async move { Ok(started.await?) })
                })
                .await?;
            self.wait(&task).await?;
            Ok(task)
        })
    }

    /// Polls a task until it ends: after 10 ms at first, each pause half as long again as the
    /// last, up to 500 ms, so a short task is seen done within a third of its time and a long one
    /// costs two calls a second. (Polling keeps each wait independent: one bad update cannot fail
    /// every waiter at once.)
    fn wait<'a>(&'a self, task: &'a ManagedObjectReference) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut pause = std::time::Duration::from_millis(10);
            loop {
                match self.task_state(task).await? {
                    TaskInfoStateEnum::Success => return Ok(()),
                    TaskInfoStateEnum::Error => {
                        let reason = self.task_failure(task).await;
                        return Err(Error::Backend {
                            backend: "vsphere-api",
                            source: Box::new(basphere_core::error::Message(format!(
                                "vCenter task {} failed: {reason}",
                                task.value
                            ))),
                            log_tail: vec![reason],
                        });
                    }
                    _ => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 3 / 2).min(std::time::Duration::from_millis(500));
                    }
                }
            }
        })
    }

    fn task_state<'a>(&'a self, task: &'a ManagedObjectReference) -> BoxFuture<'a, Result<TaskInfoStateEnum>> {
        self.read(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let row = retriever
                    .retrieve_object::<TaskRow>(task)
                    .await?
                    .ok_or_else(|| Error::not_found("task", &task.value))?;
                Ok(row.state)
            })
        })
    }

    /// The object a finished task made (a clone's new VM).
    fn task_result<'a>(&'a self, task: &'a ManagedObjectReference) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        use vim_rs::core::client::{extract_property, VimClient};
        let fetched = self.read(move |session| {
            Box::pin(async move {
                let value = session.client.fetch_property_raw("", "Task", &task.value, "info.result").await?;
                Ok(value.and_then(|value| extract_property::<ManagedObjectReference>(value).ok()))
            })
        });
        Box::pin(async move {
            fetched.await?.ok_or_else(|| {
                Error::backend(
                    "vsphere-api",
                    basphere_core::error::Message(format!(
                        "vCenter task {} succeeded without naming what it made",
                        task.value
                    )),
                )
            })
        })
    }

    /// Why a task failed, in one line. (Read as a raw property: vim_rs's typed path for
    /// `info.error` expects a `MethodFault` where vCenter sends a `LocalizedMethodFault`.)
    fn task_failure<'a>(&'a self, task: &'a ManagedObjectReference) -> BoxFuture<'a, String> {
        use vim_rs::core::client::{PropertyValue, VimClient};
        use vim_rs::types::structs::{LocalizedMethodFault, MethodFault};
        let fetched = self.read(move |session| {
            Box::pin(async move {
                let value = session.client.fetch_property_raw("", "Task", &task.value, "info.error").await?;
                let Some(PropertyValue::Parsed(value)) = value else {
                    return Ok("vCenter gave no reason".to_owned());
                };
                Ok(match value.into_any().downcast::<LocalizedMethodFault>() {
                    Ok(error) => match error.localized_message.as_deref() {
                        Some(message) if !message.is_empty() => {
                            format!("{} ({message})", describe_fault(&error.fault))
                        }
                        _ => describe_fault(&error.fault),
                    },
                    Err(other) => match other.downcast::<MethodFault>() {
                        Ok(fault) => describe_fault(&fault),
                        Err(_) => "vCenter gave a reason Basphere cannot read".to_owned(),
                    },
                })
            })
        });
        Box::pin(async move { fetched.await.unwrap_or_else(|_| "vCenter gave no reason".to_owned()) })
    }

    /// The objects of one type (`VirtualMachine`, `Folder`) anywhere under `container`. (Asking
    /// for the list first also spares an empty retrieval, which the simulator answers in a form
    /// vim_rs cannot read.)
    fn members<'a>(
        &'a self,
        container: &'a ManagedObjectReference,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ManagedObjectReference>>> {
        self.read(move |session| {
            Box::pin(async move {
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
        })
    }

    /// The VMs and folders listed, read in one session.
    fn inventory_of<'a>(
        &'a self,
        vms: &'a [ManagedObjectReference],
        folders: &'a [ManagedObjectReference],
    ) -> BoxFuture<'a, Result<(Vec<VmFacts>, Vec<FolderFacts>)>> {
        self.read(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let vm_rows: Vec<VmRow> = retriever.retrieve_objects_from_list(vms).await?;
                let folder_rows: Vec<FolderRow> =
                    if folders.is_empty() { Vec::new() } else { retriever.retrieve_objects_from_list(folders).await? };
                let folders = folder_rows
                    .into_iter()
                    .map(|row| FolderFacts { id: row.id.value, name: row.name, parent: row.parent.map(|p| p.value) })
                    .collect();
                Ok((vm_rows.into_iter().map(VmFacts::of).collect(), folders))
            })
        })
    }

    /// The VM `<owner>-<name>` in the owner's folder.
    fn existing<'a>(&'a self, owner: &'a Username, vsphere_name: &'a str) -> BoxFuture<'a, Result<Option<VmFacts>>> {
        Box::pin(async move {
            match self.find(&format!("{}/{vsphere_name}", self.user_folder_path(owner))).await? {
                Some(moref) => Ok(Some(self.vm(&moref).await?)),
                None => Ok(None),
            }
        })
    }

    /// What is at `vm`'s name: its own VM (carrying its id), someone else's, or nothing.
    fn lookup<'a>(&'a self, vm: &'a VmRef) -> BoxFuture<'a, Result<Found>> {
        Box::pin(async move {
            Ok(match self.existing(&vm.owner, &vm.vsphere_name).await? {
                Some(facts) if facts.marker.as_deref() == Some(vm.id.to_string().as_str()) => Found::Ours(facts),
                Some(_) => Found::Foreign,
                None => Found::Nothing,
            })
        })
    }

    fn set_power<'a>(&'a self, vm: &'a ManagedObjectReference, on: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.run_task(move |client| {
                let machine = VirtualMachine::new(client, &vm.value);
                Box::pin(async move {
                    if on {
                        machine.power_on_vm_task(None).await
                    } else {
                        machine.power_off_vm_task().await
                    }
                })
            })
            .await?;
            Ok(())
        })
    }

    /// Gives the VM the spec's CPU, memory and disk (a reconfigure, only when something differs),
    /// then powers it on. Used after a clone and when adopting an earlier attempt's VM.
    fn converge<'a>(&'a self, vm: &'a ManagedObjectReference, request: &'a VmRequest) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let annotation = annotation(request);
            if self.hardware_differs(vm, &request.spec, &annotation).await? {
                if self.vm(vm).await?.power == PowerState::On {
                    self.set_power(vm, false).await?;
                }
                self.reconfigure(vm, &request.spec, &annotation).await?;
            }
            if self.vm(vm).await?.power == PowerState::Off {
                self.set_power(vm, true).await?;
            }
            Ok(())
        })
    }

    fn hardware_differs<'a>(
        &'a self,
        vm: &'a ManagedObjectReference,
        spec: &'a basphere_core::model::VmSpec,
        annotation: &'a str,
    ) -> BoxFuture<'a, Result<bool>> {
        self.read(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let row = retriever
                    .retrieve_object::<HardwareRow>(vm)
                    .await?
                    .ok_or_else(|| Error::not_found("vm", &vm.value))?;
                Ok(hardware_changes(row, spec, annotation).is_some())
            })
        })
    }

    /// Reads the VM's hardware again and reconfigures what differs from the spec.
    fn reconfigure<'a>(
        &'a self,
        vm: &'a ManagedObjectReference,
        spec: &'a basphere_core::model::VmSpec,
        annotation: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        let started = self.call(move |session| {
            Box::pin(async move {
                let retriever = ObjectRetriever::new(session.client.clone())?;
                let row = retriever
                    .retrieve_object::<HardwareRow>(vm)
                    .await?
                    .ok_or_else(|| Error::not_found("vm", &vm.value))?;
                let Some(changes) = hardware_changes(row, spec, annotation) else { return Ok(None) };
                Ok(Some(VirtualMachine::new(session.client.clone(), &vm.value).reconfig_vm_task(&changes).await?))
            })
        });
        Box::pin(async move {
            if let Some(task) = started.await? {
                self.wait(&task).await?;
            }
            Ok(())
        })
    }

    fn create_folder<'a>(
        &'a self,
        parent: &'a ManagedObjectReference,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        self.call(move |session| {
            Box::pin(async move {
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
        })
    }

    /// Clones `template` into `folder` as `name`, powered off, with the spec's CPU and memory,
    /// the annotation and the cloud-init documents and marker in `extraConfig`; answers the
    /// new VM.
    fn clone_vm<'a>(
        &'a self,
        template: &'a ManagedObjectReference,
        place: &'a Placement,
        request: &'a VmRequest,
    ) -> BoxFuture<'a, Result<ManagedObjectReference>> {
        Box::pin(async move {
            let cloud_init::Documents { metadata, userdata } = cloud_init::documents(request)?;
            let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            let (metadata, userdata, id, name) =
                (b64(&metadata), b64(&userdata), request.id.to_string(), request.vsphere_name());
            let (metadata, userdata, id, name) = (&metadata, &userdata, &id, &name);
            let task = self
                .run_task(move |client| {
                    let spec = clone_spec(place, request, metadata, userdata, id);
                    let template = VirtualMachine::new(client, &template.value);
                    Box::pin(async move { template.clone_vm_task(&place.folder, name, &spec).await })
                })
                .await?;
            self.task_result(&task).await
        })
    }
}

/// Where a clone goes.
struct Placement {
    folder: ManagedObjectReference,
    datastore: ManagedObjectReference,
    pool: ManagedObjectReference,
}

/// A clone's spec. Powered on only after `converge` has grown its disk (from the clone's own
/// devices) and checked CPU and memory.
fn clone_spec(
    place: &Placement,
    request: &VmRequest,
    metadata: &str,
    userdata: &str,
    id: &str,
) -> VirtualMachineCloneSpec {
    let mut config: VirtualMachineConfigSpec = empty();
    config.num_cp_us = Some(request.spec.cpu as i32);
    config.memory_mb = Some(request.spec.memory_mb as i64);
    config.annotation = Some(annotation(request));
    config.extra_config = Some(vec![
        option("guestinfo.metadata", metadata.to_owned()),
        option("guestinfo.metadata.encoding", "base64".into()),
        option("guestinfo.userdata", userdata.to_owned()),
        option("guestinfo.userdata.encoding", "base64".into()),
        option(MARKER, id.to_owned()),
    ]);
    let mut location: VirtualMachineRelocateSpec = empty();
    location.datastore = Some(place.datastore.clone());
    location.pool = Some(place.pool.clone());
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
        if let Some(facts) = self.existing(&request.owner, &name).await? {
            if facts.marker.as_deref() != Some(request.id.to_string().as_str()) {
                return Err(crate::foreign_vm(&name, &self.user_folder_path(&request.owner)));
            }
            self.converge(&facts.moref, request).await?;
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
        self.converge(&created, request).await?;
        Ok(VmHandle {
            backend_id: created.value,
            power: PowerState::On,
            log_tail: vec![format!("cloned {name} from {}, sized it and powered it on", request.os.template)],
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
