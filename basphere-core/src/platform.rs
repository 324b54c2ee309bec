//! `Platform`: the orchestration that composes store, IPAM, provisioner and notifier.
//!
//! Requests are validated, checked against quota, given addresses and recorded in one store
//! transaction; the backend work then runs as an operation on a bounded set of background
//! workers. Both binaries and embedding programs drive Basphere through this type.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ipam::Ipam;
use crate::model::*;
use crate::notifier::Notifier;
use crate::provisioner::{GuestNetwork, InventoryVm, PowerAction, PowerState, Provisioner, VmRef, VmRequest};
use crate::store::{OperationFilter, Store, StoreExt, StoreTx, VmFilter};
use crate::validate::{free_text, ResourceName, Username};

/// Who is asking, as established by the caller's authentication (never by the request body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The account name, or `system` for the platform's own work.
    pub name: String,
    pub role: Role,
    /// Where the request came from, for the audit log.
    pub source: String,
}

impl Actor {
    pub fn user(username: &Username, source: &str) -> Self {
        Actor { name: username.to_string(), role: Role::User, source: source.to_owned() }
    }

    pub fn admin(name: &str, source: &str) -> Self {
        Actor { name: name.to_owned(), role: Role::Admin, source: source.to_owned() }
    }

    pub fn system() -> Self {
        Actor { name: "system".into(), role: Role::Admin, source: "system".into() }
    }

    /// Whether this actor may act on resources of `owner`.
    pub fn may_act_for(&self, owner: &Username) -> bool {
        self.role == Role::Admin || self.name == owner.as_str()
    }
}

/// A request to create one VM or a batch of up to ten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateVms {
    pub name: String,
    pub os: String,
    pub spec: String,
    pub count: u32,
}

/// A VM record and the operation that provisions it.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub vm: Vm,
    pub operation: Operation,
}

/// The answer to a create request: what was accepted, and whether this is the stored answer
/// to an earlier request with the same `Idempotency-Key`.
#[derive(Clone, Debug)]
pub struct CreateOutcome {
    pub accepted: Vec<Accepted>,
    pub replayed: bool,
}

/// A token as created: the record, and the secret that is shown once and never stored.
#[derive(Clone)]
pub struct NewToken {
    pub token: ApiToken,
    pub secret: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken").field("token", &self.token).field("secret", &"<redacted>").finish()
    }
}

/// What one reconciliation found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub at: Option<Timestamp>,
    /// VMs that vanished from vSphere, now `lost` (`owner/name`).
    pub lost: Vec<String>,
    /// VMs whose power state changed outside Basphere, with their new state.
    pub power_changed: Vec<(String, VmState)>,
    /// Lost VMs that are back in vSphere.
    pub found: Vec<String>,
    /// VMs in Basphere's folders that Basphere does not know: reported, never deleted.
    pub strays: Vec<InventoryVm>,
}

/// Limits and usage of one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaReport {
    pub quota: Quota,
    pub usage: Usage,
}

/// Most VMs in one create request.
pub const MAX_BATCH: u32 = 10;

const STEP_RESERVE: &str = "reserve address";
const STEP_PROVISION: &str = "provision";
const STEP_DESTROY: &str = "destroy";
const STEP_RELEASE: &str = "release address";
const STEP_POWER: &str = "power";

/// How long an authenticated token is trusted without reading the store again.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
const TOKEN_CACHE_MAX: usize = 10_000;

/// The composed platform. Cheap to share as `Arc<Platform>`.
pub struct Platform {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    ipam: Arc<dyn Ipam>,
    provisioner: Arc<dyn Provisioner>,
    notifier: Arc<dyn Notifier>,
    workers: Arc<Semaphore>,
    running: Mutex<HashSet<Uuid>>,
    draining: AtomicBool,
    changed: Notify,
    /// Recently authenticated tokens by secret hash, so a request costs no store read for its
    /// identity. Entries live `TOKEN_CACHE_TTL` at most; revocation here removes them at once.
    token_cache: Mutex<HashMap<String, (User, ApiToken, tokio::time::Instant)>>,
    /// Strays already reported, so each is audited once.
    known_strays: Mutex<HashSet<String>>,
    notification_retry: Duration,
}

impl Platform {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        ipam: Arc<dyn Ipam>,
        provisioner: Arc<dyn Provisioner>,
        notifier: Arc<dyn Notifier>,
    ) -> Arc<Self> {
        let workers = Arc::new(Semaphore::new(config.server.workers));
        Arc::new(Platform {
            config,
            store,
            ipam,
            provisioner,
            notifier,
            workers,
            running: Mutex::new(HashSet::new()),
            draining: AtomicBool::new(false),
            changed: Notify::new(),
            token_cache: Mutex::new(HashMap::new()),
            known_strays: Mutex::new(HashSet::new()),
            notification_retry: Duration::from_millis(500),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn ipam(&self) -> &Arc<dyn Ipam> {
        &self.ipam
    }

    pub fn provisioner(&self) -> &Arc<dyn Provisioner> {
        &self.provisioner
    }

    /// Runs store work off the async executor (stores may block on disk).
    async fn db<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>, Arc<dyn Ipam>) -> Result<T> + Send + 'static,
    {
        let (store, ipam) = (self.store.clone(), self.ipam.clone());
        match tokio::task::spawn_blocking(move || f(store, ipam)).await {
            Ok(result) => result,
            Err(join) => Err(Error::backend("store", join)),
        }
    }

    /// Creates or completes an account: the user record, an IP block, and the owner's folder in
    /// the VM backend. Every step is idempotent, so a half-done call can simply be repeated.
    pub async fn provision_account(&self, user: User) -> Result<User> {
        let stored = self
            .db(move |store, ipam| {
                store.transact(|tx| {
                    let stored = match tx.get_user(&user.username)? {
                        Some(existing) => existing,
                        None => {
                            tx.insert_user(&user)?;
                            user.clone()
                        }
                    };
                    ipam.assign_block(tx, &stored.username)?;
                    Ok(stored)
                })
            })
            .await?;
        self.provisioner.ensure_folder(&stored.username).await?;
        Ok(stored)
    }

    /// The account's limits (defaults with its override) and what it uses now.
    pub async fn quota(&self, owner: &Username) -> Result<QuotaReport> {
        let owner = owner.clone();
        let default = self.config.default_quota;
        self.db(move |store, _| {
            store.query(|tx| {
                let quota = default.with_override(&tx.quota_override(&owner)?.unwrap_or_default());
                Ok(QuotaReport { quota, usage: tx.usage(&owner)? })
            })
        })
        .await
    }

    /// Validates, checks quota, leases addresses and records the VMs and their operations in one
    /// transaction, then starts provisioning in the background. With an idempotency key, a
    /// repeated request returns the first answer instead of creating again.
    pub async fn create_vms(
        self: &Arc<Self>,
        actor: &Actor,
        owner: &Username,
        request: CreateVms,
        idempotency_key: Option<&str>,
    ) -> Result<CreateOutcome> {
        let result = self.create_vms_inner(actor, owner, request.clone(), idempotency_key.map(str::to_owned)).await;
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(Error::QuotaExceeded { .. } | Error::Forbidden(_)) => Outcome::Denied,
            Err(_) => Outcome::Failure,
        };
        if outcome != Outcome::Success {
            let error = result.as_ref().err().map(ToString::to_string);
            let details = json!({"os": request.os, "spec": request.spec, "count": request.count, "error": error});
            self.audit(actor, "vm.create", &format!("vm/{owner}/{}", request.name), outcome, details).await;
        }
        let outcome = result?;
        if !outcome.replayed {
            for item in &outcome.accepted {
                self.spawn_operation(item.operation.id);
            }
        }
        Ok(outcome)
    }

    async fn create_vms_inner(
        &self,
        actor: &Actor,
        owner: &Username,
        request: CreateVms,
        idempotency_key: Option<String>,
    ) -> Result<CreateOutcome> {
        if !actor.may_act_for(owner) {
            return Err(Error::Forbidden(format!("{} may not create VMs for {owner}", actor.name)));
        }
        if let Some(key) = &idempotency_key {
            if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::invalid("Idempotency-Key", "use 1-255 visible ASCII characters, such as a UUID"));
            }
        }
        if request.count == 0 || request.count > MAX_BATCH {
            return Err(Error::invalid(
                "count",
                format!("{} is not accepted: create 1-{MAX_BATCH} VMs per request", request.count),
            ));
        }
        let base = ResourceName::parse(&request.name)?;
        let names = base.batch(request.count)?;
        let os = self.config.os_image(&request.os)?.clone();
        let spec = self.config.vm_spec(&request.spec)?.clone();
        let request_hash = ApiToken::hash_secret(&format!(
            "create-vms\n{}\n{}\n{}\n{}",
            request.name, request.os, request.spec, request.count
        ));
        let default_quota = self.config.default_quota;
        let (owner, actor) = (owner.clone(), actor.clone());
        self.db(move |store, ipam| {
            store.transact(|tx| {
                if let Some(key) = &idempotency_key {
                    if let Some(record) = tx.get_idempotency(&owner, key)? {
                        if record.request_hash != request_hash {
                            return Err(Error::Conflict(format!("the Idempotency-Key {key:?} was already used for a different request")));
                        }
                        return replay(tx, &record.operations);
                    }
                }
                let user = active_user(tx, &owner)?;
                let quota = default_quota.with_override(&tx.quota_override(&owner)?.unwrap_or_default());
                let count = names.len() as u64;
                let extra = Usage {
                    vms: count,
                    ips: count,
                    vcpus: count * u64::from(spec.cpu),
                    memory_mb: count * spec.memory_mb,
                    disk_gb: count * spec.disk_gb,
                    clusters: 0,
                };
                quota.check(&tx.usage(&owner)?, &extra)?;
                let mut accepted = Vec::with_capacity(names.len());
                for name in &names {
                    if tx.vm_by_name(&owner, name)?.is_some() {
                        return Err(Error::already_exists("vm", name));
                    }
                    let at = now();
                    let id = Uuid::now_v7();
                    let resource = ResourceRef { kind: ResourceKind::Vm, id, name: name.to_string() };
                    let lease = ipam.lease(tx, &user.username, &resource, quota.max_ips)?;
                    let vm = Vm {
                        id,
                        owner: owner.clone(),
                        name: name.clone(),
                        os: os.key.clone(),
                        spec: spec.key.clone(),
                        cpu: spec.cpu,
                        memory_mb: spec.memory_mb,
                        disk_gb: spec.disk_gb,
                        ip: Some(lease.address),
                        state: VmState::Pending,
                        reason: None,
                        backend_id: None,
                        created_at: at,
                        updated_at: at,
                    };
                    tx.insert_vm(&vm)?;
                    let mut operation = Operation::new(OperationKind::CreateVm, owner.clone(), resource, &actor.name, &[STEP_RESERVE, STEP_PROVISION]);
                    operation.finish_step(STEP_RESERVE, true);
                    tx.insert_operation(&operation)?;
                    let details = json!({"os": vm.os, "spec": vm.spec, "ip": lease.address.to_string(), "operation": operation.id});
                    tx.append_audit(&AuditEvent::new(&actor.name, "vm.create", &format!("vm/{owner}/{name}"), &actor.source, Outcome::Success, details))?;
                    accepted.push(Accepted { vm, operation });
                }
                if let Some(key) = &idempotency_key {
                    let operations = accepted.iter().map(|a| a.operation.id).collect();
                    tx.insert_idempotency(&IdempotencyRecord { owner: owner.clone(), key: key.clone(), request_hash: request_hash.clone(), operations, created_at: now() })?;
                }
                Ok(CreateOutcome { accepted, replayed: false })
            })
        })
        .await
    }

    /// Marks the VM `deleting` and starts destroying it in the background.
    pub async fn delete_vm(
        self: &Arc<Self>,
        actor: &Actor,
        owner: &Username,
        name: &ResourceName,
    ) -> Result<Operation> {
        let operation = self
            .start_vm_operation(actor, owner, name, OperationKind::DeleteVm, &[STEP_DESTROY, STEP_RELEASE], |vm| {
                match vm.state {
                    VmState::Deleting | VmState::Deleted => {
                        Err(Error::Conflict(format!("vm {} is already being deleted", vm.name)))
                    }
                    _ => {
                        vm.state = VmState::Deleting;
                        Ok(())
                    }
                }
            })
            .await?;
        self.spawn_operation(operation.id);
        Ok(operation)
    }

    /// Starts, stops or reboots a VM in the background.
    pub async fn power_vm(
        self: &Arc<Self>,
        actor: &Actor,
        owner: &Username,
        name: &ResourceName,
        action: PowerAction,
    ) -> Result<Operation> {
        let kind = match action {
            PowerAction::Start => OperationKind::StartVm,
            PowerAction::Stop => OperationKind::StopVm,
            PowerAction::Reboot => OperationKind::RebootVm,
        };
        let operation = self
            .start_vm_operation(actor, owner, name, kind, &[STEP_POWER], move |vm| {
                let allowed = match action {
                    PowerAction::Start => matches!(vm.state, VmState::Stopped | VmState::Running),
                    PowerAction::Stop => matches!(vm.state, VmState::Running | VmState::Stopped),
                    PowerAction::Reboot => vm.state == VmState::Running,
                };
                if allowed {
                    Ok(())
                } else {
                    let needs = if action == PowerAction::Reboot { "running" } else { "running or stopped" };
                    Err(Error::Conflict(format!(
                        "vm {} is {}; {} needs it {needs}",
                        vm.name,
                        vm.state,
                        format!("{action:?}").to_lowercase()
                    )))
                }
            })
            .await?;
        self.spawn_operation(operation.id);
        Ok(operation)
    }

    async fn start_vm_operation<F>(
        &self,
        actor: &Actor,
        owner: &Username,
        name: &ResourceName,
        kind: OperationKind,
        steps: &'static [&'static str],
        mut transition: F,
    ) -> Result<Operation>
    where
        F: FnMut(&mut Vm) -> Result<()> + Send + 'static,
    {
        if !actor.may_act_for(owner) {
            // Same answer as for a missing VM: other users' resources are not disclosed.
            return Err(Error::not_found("vm", name));
        }
        let (owner, name, actor) = (owner.clone(), name.clone(), actor.clone());
        self.db(move |store, _| {
            store.transact(|tx| {
                let mut vm = tx.vm_by_name(&owner, &name)?.ok_or_else(|| Error::not_found("vm", &name))?;
                let busy = tx.list_operations(&OperationFilter {
                    resource: Some(vm.id),
                    unfinished: true,
                    ..OperationFilter::default()
                })?;
                if let Some(busy) = busy.first() {
                    return Err(Error::Conflict(format!(
                        "vm {name} has an operation in progress ({} {})",
                        busy.kind, busy.id
                    )));
                }
                transition(&mut vm)?;
                vm.updated_at = now();
                tx.update_vm(&vm)?;
                let resource = ResourceRef { kind: ResourceKind::Vm, id: vm.id, name: vm.name.to_string() };
                let operation = Operation::new(kind, owner.clone(), resource, &actor.name, steps);
                tx.insert_operation(&operation)?;
                tx.append_audit(&AuditEvent::new(
                    &actor.name,
                    kind.as_str(),
                    &format!("vm/{owner}/{name}"),
                    &actor.source,
                    Outcome::Success,
                    json!({"operation": operation.id}),
                ))?;
                Ok(operation)
            })
        })
        .await
    }

    /// Runs an operation in the background on a bounded worker pool. Running the same
    /// operation twice at once is prevented; a finished operation is left alone.
    pub fn spawn_operation(self: &Arc<Self>, id: Uuid) {
        let platform = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = platform.workers.clone().acquire_owned().await else {
                return;
            };
            if let Err(error) = platform.run_operation(id).await {
                tracing::error!(operation = %id, %error, "operation could not be run");
            }
        });
    }

    /// Runs an operation to its end and returns it. Safe to call for an operation that was
    /// interrupted (by a crash or shutdown): every step is idempotent.
    pub async fn run_operation(&self, id: Uuid) -> Result<Operation> {
        if !self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id) {
            return Err(Error::Conflict(format!("operation {id} is already running")));
        }
        let result = self.run_operation_inner(id).await;
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.changed.notify_waiters();
        result
    }

    async fn run_operation_inner(&self, id: Uuid) -> Result<Operation> {
        let operation = self.db(move |store, _| store.operation(id)).await?;
        if operation.state.is_finished() {
            return Ok(operation);
        }
        match operation.kind {
            OperationKind::CreateVm => self.run_create_vm(operation).await,
            OperationKind::DeleteVm => self.run_delete_vm(operation).await,
            OperationKind::StartVm => self.run_power_vm(operation, PowerAction::Start).await,
            OperationKind::StopVm => self.run_power_vm(operation, PowerAction::Stop).await,
            OperationKind::RebootVm => self.run_power_vm(operation, PowerAction::Reboot).await,
            OperationKind::CreateCluster | OperationKind::DeleteCluster => {
                Err(Error::NotSupported(format!("{} operations need a cluster backend", operation.kind)))
            }
        }
    }

    /// Saves the operation and VM together.
    async fn save(&self, operation: Operation, vm: Option<Vm>) -> Result<Operation> {
        let saved = self
            .db(move |store, _| {
                store.transact(|tx| {
                    if let Some(vm) = &vm {
                        tx.update_vm(vm)?;
                    }
                    tx.update_operation(&operation)?;
                    Ok(operation.clone())
                })
            })
            .await?;
        self.changed.notify_waiters();
        Ok(saved)
    }

    async fn load_vm(&self, operation: &Operation) -> Result<(Vm, User)> {
        let (id, owner) = (operation.resource.id, operation.owner.clone());
        self.db(move |store, _| {
            store.query(|tx| {
                let vm = tx.get_vm(id)?.ok_or_else(|| Error::not_found("vm", id))?;
                let user = tx.get_user(&owner)?.ok_or_else(|| Error::not_found("user", &owner))?;
                Ok((vm, user))
            })
        })
        .await
    }

    fn vm_request(&self, vm: &Vm, user: &User) -> Result<VmRequest> {
        let address = vm.ip.ok_or_else(|| Error::Conflict(format!("vm {} has no address", vm.name)))?;
        let info = self
            .ipam
            .address_info(address)
            .ok_or_else(|| Error::Conflict(format!("{address} is in no configured pool")))?;
        let os = self.config.os_image(&vm.os)?.clone();
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
            network: GuestNetwork {
                interface: os.interface.clone(),
                address,
                prefix_len: info.prefix_len,
                gateway: info.gateway,
                dns: self.config.guest_network.dns.clone(),
                mtu: self.config.guest_network.mtu,
            },
            os,
            spec,
            ssh_key: user.ssh_key.clone(),
        })
    }

    fn vm_ref(vm: &Vm) -> VmRef {
        VmRef { id: vm.id, owner: vm.owner.clone(), vsphere_name: vm.vsphere_name(), backend_id: vm.backend_id.clone() }
    }

    async fn run_create_vm(&self, mut operation: Operation) -> Result<Operation> {
        let (mut vm, user) = self.load_vm(&operation).await?;
        operation.start_step(STEP_PROVISION);
        vm.state = VmState::Provisioning;
        vm.updated_at = now();
        let mut operation = self.save(operation, Some(vm.clone())).await?;
        let outcome = match self.vm_request(&vm, &user) {
            Ok(request) => self.provisioner.create_vm(&request).await,
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
                let (vm_saved, op_saved, address) = (vm.clone(), operation.clone(), vm.ip);
                let operation = self
                    .db(move |store, _| {
                        store.transact(|tx| {
                            if let Some(address) = address {
                                tx.set_lease_state(address, LeaseState::Active)?;
                            }
                            tx.update_vm(&vm_saved)?;
                            tx.update_operation(&op_saved)?;
                            Ok(op_saved.clone())
                        })
                    })
                    .await?;
                self.changed.notify_waiters();
                self.notify(NotificationEvent::VmReady { owner: vm.owner.clone(), name: vm.name.clone(), ip: vm.ip });
                self.warn_quota(&vm.owner).await;
                Ok(operation)
            }
            Err(error) => {
                operation.append_log(log_tail_of(&error));
                operation.finish_step(STEP_PROVISION, false);
                // Remove whatever the backend may have made, and free the address only once
                // the backend confirms the VM is gone.
                let cleanup = self.provisioner.destroy_vm(&Self::vm_ref(&vm)).await;
                let reason = match &cleanup {
                    Ok(()) => format!("creation failed: {error}"),
                    Err(cleanup_error) => format!("creation failed: {error}; removing the partial VM also failed ({cleanup_error}), so its address stays reserved"),
                };
                operation.fail(reason.clone());
                vm.state = VmState::Failed;
                vm.reason = Some(reason.clone());
                vm.updated_at = now();
                let release = cleanup.is_ok();
                if release {
                    vm.ip = None;
                }
                let (vm_saved, op_saved) = (vm.clone(), operation.clone());
                let operation = self
                    .db(move |store, ipam| {
                        store.transact(|tx| {
                            if release {
                                release_leases(tx, &*ipam, vm_saved.id)?;
                            }
                            tx.update_vm(&vm_saved)?;
                            tx.update_operation(&op_saved)?;
                            Ok(op_saved.clone())
                        })
                    })
                    .await?;
                self.changed.notify_waiters();
                self.notify(NotificationEvent::VmFailed { owner: vm.owner.clone(), name: vm.name.clone(), reason });
                Ok(operation)
            }
        }
    }

    async fn run_delete_vm(&self, mut operation: Operation) -> Result<Operation> {
        let (mut vm, _) = self.load_vm(&operation).await?;
        operation.start_step(STEP_DESTROY);
        let mut operation = self.save(operation, None).await?;
        match self.provisioner.destroy_vm(&Self::vm_ref(&vm)).await {
            Ok(()) => {
                operation.finish_step(STEP_DESTROY, true);
                operation.start_step(STEP_RELEASE);
                operation.finish_step(STEP_RELEASE, true);
                operation.succeed();
                vm.state = VmState::Deleted;
                vm.ip = None;
                vm.updated_at = now();
                let (vm_saved, op_saved) = (vm, operation);
                let operation = self
                    .db(move |store, ipam| {
                        store.transact(|tx| {
                            release_leases(tx, &*ipam, vm_saved.id)?;
                            tx.update_vm(&vm_saved)?;
                            tx.update_operation(&op_saved)?;
                            Ok(op_saved.clone())
                        })
                    })
                    .await?;
                self.changed.notify_waiters();
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
                self.save(operation, Some(vm)).await
            }
        }
    }

    async fn run_power_vm(&self, mut operation: Operation, action: PowerAction) -> Result<Operation> {
        let (mut vm, _) = self.load_vm(&operation).await?;
        operation.start_step(STEP_POWER);
        let mut operation = self.save(operation, None).await?;
        match self.provisioner.power(&Self::vm_ref(&vm), action).await {
            Ok(power) => {
                operation.finish_step(STEP_POWER, true);
                operation.succeed();
                vm.state = if power == PowerState::On { VmState::Running } else { VmState::Stopped };
                vm.updated_at = now();
                self.save(operation, Some(vm)).await
            }
            Err(error) => {
                operation.append_log(log_tail_of(&error));
                operation.finish_step(STEP_POWER, false);
                operation.fail(format!("{} failed: {error}", format!("{action:?}").to_lowercase()));
                if let Error::NotFound { .. } = error {
                    vm.state = VmState::Lost;
                    vm.reason = Some("the VM is no longer in vSphere".into());
                    vm.updated_at = now();
                    return self.save(operation, Some(vm)).await;
                }
                self.save(operation, None).await
            }
        }
    }

    /// Stops starting operations and waits up to `grace` for the running ones to finish.
    /// Returns how many were still running; they are resumed on the next start.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.changed.notified();
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).len();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                return running;
            }
            let wake = std::cmp::min(deadline, tokio::time::Instant::now() + Duration::from_millis(50));
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }

    /// How many operations are running right now.
    pub fn running_operations(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Creates an API token for `owner`. The secret is returned once; only its hash is stored.
    /// An admin-scoped token needs an admin account, created by an admin.
    pub async fn create_token(
        &self,
        actor: &Actor,
        owner: &Username,
        name: &str,
        scope: TokenScope,
        expires_at: Option<Timestamp>,
    ) -> Result<NewToken> {
        if !actor.may_act_for(owner) {
            return Err(Error::Forbidden(format!("{} may not create tokens for {owner}", actor.name)));
        }
        let name = free_text("name", name, 64)?;
        if name.is_empty() {
            return Err(Error::invalid(
                "name",
                "a token needs a name (1-64 characters), such as the machine it is for",
            ));
        }
        if expires_at.is_some_and(|at| at <= now()) {
            return Err(Error::invalid("expires_at", "the expiry must be in the future"));
        }
        if scope == TokenScope::Admin && actor.role != Role::Admin {
            return Err(Error::Forbidden("only an administrator may create admin tokens".into()));
        }
        let secret = format!("bsp_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let token = ApiToken {
            id: Uuid::now_v7(),
            owner: owner.clone(),
            name,
            scope,
            secret_hash: ApiToken::hash_secret(&secret),
            created_at: now(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let (saved, actor) = (token.clone(), actor.clone());
        self.db(move |store, _| {
            store.transact(|tx| {
                let user = tx.get_user(&saved.owner)?.ok_or_else(|| Error::not_found("user", &saved.owner))?;
                if saved.scope == TokenScope::Admin && user.role != Role::Admin {
                    return Err(Error::Forbidden(format!(
                        "{} is not an administrator; admin tokens are for admin accounts",
                        user.username
                    )));
                }
                tx.insert_token(&saved)?;
                tx.append_audit(&AuditEvent::new(
                    &actor.name,
                    "token.create",
                    &format!("token/{}/{}", saved.owner, saved.id),
                    &actor.source,
                    Outcome::Success,
                    json!({"scope": saved.scope, "name": saved.name}),
                ))
            })
        })
        .await?;
        Ok(NewToken { token, secret })
    }

    /// Revokes a token of the actor's own (or any, for an admin). Others' tokens are `NotFound`.
    pub async fn revoke_token(&self, actor: &Actor, id: Uuid) -> Result<ApiToken> {
        let actor = actor.clone();
        let revoked = self
            .db(move |store, _| {
                store.transact(|tx| {
                    let mut token = tx
                        .get_token(id)?
                        .filter(|t| actor.may_act_for(&t.owner))
                        .ok_or_else(|| Error::not_found("token", id))?;
                    if token.revoked_at.is_none() {
                        token.revoked_at = Some(now());
                        tx.update_token(&token)?;
                        tx.append_audit(&AuditEvent::new(
                            &actor.name,
                            "token.revoke",
                            &format!("token/{}/{}", token.owner, token.id),
                            &actor.source,
                            Outcome::Success,
                            serde_json::Value::Null,
                        ))?;
                    }
                    Ok(token)
                })
            })
            .await?;
        self.token_cache.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, (_, token, _)| token.id != id);
        Ok(revoked)
    }

    /// The account and token behind a bearer secret. Every failure is the same `Unauthorized`,
    /// so a caller learns nothing about which part was wrong.
    pub async fn authenticate_token(&self, secret: &str) -> Result<(User, ApiToken)> {
        let hash = ApiToken::hash_secret(secret);
        let cached = self.token_cache.lock().unwrap_or_else(|p| p.into_inner()).get(&hash).cloned();
        if let Some((user, token, at)) = cached {
            if at.elapsed() < TOKEN_CACHE_TTL && token.is_valid_at(now()) {
                return Ok((user, token));
            }
        }
        let key = hash.clone();
        let found = self
            .db(move |store, _| {
                store.query(|tx| {
                    let Some(token) = tx.token_by_hash(&hash)? else {
                        return Ok(None);
                    };
                    Ok(tx.get_user(&token.owner)?.map(|user| (user, token)))
                })
            })
            .await?;
        match found {
            Some((user, token)) if token.is_valid_at(now()) && user.status == UserStatus::Active => {
                let mut cache = self.token_cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= TOKEN_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key, (user.clone(), token.clone(), tokio::time::Instant::now()));
                Ok((user, token))
            }
            _ => Err(Error::Unauthorized("the token is unknown, revoked or expired".into())),
        }
    }

    /// Sets (or with `None` removes) an account's quota override. Administrators only.
    pub async fn set_quota_override(
        &self,
        actor: &Actor,
        owner: &Username,
        quota: Option<QuotaOverride>,
    ) -> Result<QuotaReport> {
        if actor.role != Role::Admin {
            return Err(Error::Forbidden("only an administrator may change quotas".into()));
        }
        let (owner_saved, actor) = (owner.clone(), actor.clone());
        self.db(move |store, _| {
            store.transact(|tx| {
                tx.set_quota_override(&owner_saved, quota.as_ref())?;
                tx.append_audit(&AuditEvent::new(
                    &actor.name,
                    "quota.set",
                    &format!("user/{owner_saved}"),
                    &actor.source,
                    Outcome::Success,
                    json!(quota),
                ))
            })
        })
        .await?;
        self.quota(owner).await
    }

    /// Compares the store with the backend's inventory: a VM gone from vSphere becomes `lost`,
    /// power changes made outside Basphere are taken over, a lost VM that is back is found
    /// again, and VMs in Basphere's folders that Basphere does not know are reported (and
    /// audited once), never deleted. VMs with an operation in flight are left alone.
    pub async fn reconcile(&self) -> Result<ReconcileReport> {
        let inventory = self.provisioner.inventory().await?;
        let base = format!("{}/", self.config.vsphere.folder);
        let inventory_by_name: HashMap<String, InventoryVm> =
            inventory.iter().map(|vm| (vm.vsphere_name.clone(), vm.clone())).collect();
        let vms = self.db(|store, _| store.query(|tx| tx.list_vms(&VmFilter::default()))).await?;
        let known_ids: HashSet<Uuid> = vms.iter().map(|vm| vm.id).collect();
        let mut report = ReconcileReport { at: Some(now()), ..ReconcileReport::default() };
        let mut changes: Vec<(Uuid, VmState, VmState, Option<String>)> = Vec::new();
        for vm in &vms {
            let seen = inventory_by_name
                .get(&vm.vsphere_name())
                .filter(|found| found.basphere_id.is_none_or(|id| id == vm.id));
            let next = match (vm.state, seen) {
                (VmState::Running | VmState::Stopped, None) => Some((
                    VmState::Lost,
                    Some(format!(
                        "{} is no longer in vSphere (noticed {})",
                        vm.vsphere_name(),
                        now().format("%Y-%m-%d %H:%M UTC")
                    )),
                )),
                (VmState::Running, Some(found)) if found.power == PowerState::Off => Some((VmState::Stopped, None)),
                (VmState::Stopped, Some(found)) if found.power == PowerState::On => Some((VmState::Running, None)),
                (VmState::Lost, Some(found)) => {
                    Some((if found.power == PowerState::On { VmState::Running } else { VmState::Stopped }, None))
                }
                _ => None,
            };
            if let Some((state, reason)) = next {
                changes.push((vm.id, vm.state, state, reason));
            }
        }
        for (id, expected, state, reason) in changes {
            let applied = self
                .db(move |store, _| {
                    store.transact(|tx| {
                        let Some(mut vm) = tx.get_vm(id)? else { return Ok(None) };
                        let busy = !tx
                            .list_operations(&OperationFilter {
                                resource: Some(id),
                                unfinished: true,
                                limit: Some(1),
                                ..OperationFilter::default()
                            })?
                            .is_empty();
                        if busy || vm.state != expected {
                            return Ok(None); // something else is changing it: look again next time
                        }
                        vm.state = state;
                        vm.reason = reason.clone();
                        vm.updated_at = now();
                        tx.update_vm(&vm)?;
                        let details = json!({"from": expected.as_str(), "to": state.as_str(), "reason": reason});
                        tx.append_audit(&AuditEvent::new(
                            "system",
                            "vm.reconcile",
                            &format!("vm/{}/{}", vm.owner, vm.name),
                            "reconciler",
                            Outcome::Success,
                            details,
                        ))?;
                        Ok(Some(format!("{}/{}", vm.owner, vm.name)))
                    })
                })
                .await?;
            if let Some(name) = applied {
                match (expected, state) {
                    (_, VmState::Lost) => report.lost.push(name),
                    (VmState::Lost, _) => report.found.push(name),
                    _ => report.power_changed.push((name, state)),
                }
            }
        }
        for vm in inventory {
            let ours = vm.basphere_id.is_some_and(|id| known_ids.contains(&id));
            if vm.folder.starts_with(&base) && !ours {
                let new = self.known_strays.lock().unwrap_or_else(|p| p.into_inner()).insert(vm.vsphere_name.clone());
                if new {
                    tracing::warn!(vm = %vm.vsphere_name, folder = %vm.folder, "a VM in Basphere's folders that Basphere does not know");
                    let details = json!({"folder": vm.folder, "backend_id": vm.backend_id});
                    self.audit(
                        &Actor::system(),
                        "vm.stray",
                        &format!("vsphere/{}", vm.vsphere_name),
                        Outcome::Success,
                        details,
                    )
                    .await;
                }
                report.strays.push(vm);
            }
        }
        Ok(report)
    }

    /// Resumes every operation that was interrupted (after a crash or restart). Returns their ids.
    pub async fn resume_unfinished(self: &Arc<Self>) -> Result<Vec<Uuid>> {
        let unfinished = self
            .db(|store, _| {
                store
                    .query(|tx| tx.list_operations(&OperationFilter { unfinished: true, ..OperationFilter::default() }))
            })
            .await?;
        let ids: Vec<Uuid> = unfinished.iter().map(|op| op.id).collect();
        for id in &ids {
            self.spawn_operation(*id);
        }
        Ok(ids)
    }

    /// Waits until the operation has finished, or `timeout` passes.
    pub async fn wait_operation(&self, id: Uuid, timeout: Duration) -> Result<Operation> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let operation = self.db(move |store, _| store.operation(id)).await?;
            if operation.state.is_finished() {
                return Ok(operation);
            }
            let poll = Duration::from_millis(200);
            let wake = std::cmp::min(deadline, tokio::time::Instant::now() + poll);
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!("operation {id} still {} after {timeout:?}", operation.state)));
            }
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }

    /// Waits until no operation is running or queued, or `timeout` passes.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let unfinished = self
                .db(|store, _| {
                    store.query(|tx| {
                        tx.list_operations(&OperationFilter {
                            unfinished: true,
                            limit: Some(1),
                            ..OperationFilter::default()
                        })
                    })
                })
                .await?;
            if unfinished.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!("operations still running after {timeout:?}")));
            }
            let wake = std::cmp::min(deadline, tokio::time::Instant::now() + Duration::from_millis(200));
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }

    /// Records an audit event in its own transaction; failures are logged, not returned.
    async fn audit(&self, actor: &Actor, action: &str, resource: &str, outcome: Outcome, details: serde_json::Value) {
        let event = AuditEvent::new(&actor.name, action, resource, &actor.source, outcome, details);
        if let Err(error) = self.db(move |store, _| store.write(&mut |tx| tx.append_audit(&event))).await {
            tracing::error!(%error, "audit event could not be recorded");
        }
    }

    /// Delivers an event in the background, retrying a few times; never fails the caller.
    pub fn notify(&self, event: NotificationEvent) {
        let notifier = self.notifier.clone();
        let retry = self.notification_retry;
        tokio::spawn(async move {
            for attempt in 0..5u32 {
                match notifier.notify(&event).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(event = event.name(), attempt, %error, "notification delivery failed");
                        tokio::time::sleep(retry * 2u32.pow(attempt)).await;
                    }
                }
            }
            tracing::error!(event = event.name(), "notification dropped after 5 attempts");
        });
    }

    /// Sends `QuotaNearlyUsed` when a limit is at 80% or more.
    async fn warn_quota(&self, owner: &Username) {
        let Ok(report) = self.quota(owner).await else {
            return;
        };
        let (quota, usage) = (report.quota, report.usage);
        for (resource, used, limit) in [
            ("vms", usage.vms, quota.max_vms),
            ("ips", usage.ips, quota.max_ips),
            ("vcpus", usage.vcpus, quota.max_vcpus),
        ] {
            if limit > 0 && used * 5 >= limit * 4 {
                self.notify(NotificationEvent::QuotaNearlyUsed {
                    owner: owner.clone(),
                    resource: resource.into(),
                    used,
                    limit,
                });
            }
        }
    }
}

fn active_user(tx: &dyn StoreTx, owner: &Username) -> Result<User> {
    let user = tx.get_user(owner)?.ok_or_else(|| Error::not_found("user", owner))?;
    if user.status != UserStatus::Active {
        return Err(Error::Forbidden(format!("account {owner} is suspended")));
    }
    Ok(user)
}

/// The stored answer of an idempotent create: its VMs and operations, in the original order.
fn replay(tx: &dyn StoreTx, operations: &[Uuid]) -> Result<CreateOutcome> {
    let mut accepted = Vec::with_capacity(operations.len());
    for id in operations {
        let operation = tx.get_operation(*id)?.ok_or_else(|| Error::not_found("operation", id))?;
        let vm = tx.get_vm(operation.resource.id)?.ok_or_else(|| Error::not_found("vm", operation.resource.id))?;
        accepted.push(Accepted { vm, operation });
    }
    Ok(CreateOutcome { accepted, replayed: true })
}

fn release_leases(tx: &mut dyn StoreTx, ipam: &dyn Ipam, resource: Uuid) -> Result<Vec<Ipv4Addr>> {
    let mut released = Vec::new();
    for lease in tx.leases_of_resource(resource)? {
        ipam.release(tx, lease.address)?;
        released.push(lease.address);
    }
    Ok(released)
}

fn log_tail_of(error: &Error) -> Vec<String> {
    match error {
        Error::Backend { log_tail, .. } if !log_tail.is_empty() => log_tail.clone(),
        other => vec![other.to_string()],
    }
}
