//! VMs: create (validate, quota, lease, record, in one transaction), delete, power, list and
//! show. The backend work runs as operations (see `operations`), through the VM backend
//! ([`Provisioner`]).

pub(crate) mod operations;
mod reconcile;

pub use reconcile::ReconcileReport;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::json;
use uuid::Uuid;

use self::operations::{STEP_DESTROY, STEP_POWER, STEP_PROVISION, STEP_RELEASE, STEP_RESERVE};
use crate::error::{Error, Result};
use crate::model::*;
use crate::networks::Scope;
use crate::provisioner::{PowerAction, Provisioner};
use crate::runtime::authz::{decide, Action, Actor};
use crate::runtime::start::{ensure_idle, on_resource, record_operation};
use crate::runtime::{page, Page, PageRequest, Runtime};
use crate::store::{StoreExt, StoreTx, VmFilter};
use crate::validate::bounded;
use crate::validate::{ResourceName, Username};

/// Most VMs in one create request.
pub const MAX_BATCH: u32 = 10;

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

/// Which VMs to list: one state (`deleted` shows the history), and a page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmQuery {
    pub state: Option<String>,
    pub page: PageRequest,
}

/// The rule for `Idempotency-Key`: 1-255 visible ASCII characters.
pub fn check_idempotency_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid("Idempotency-Key", "use 1-255 visible ASCII characters, such as a UUID"));
    }
    Ok(())
}

/// A resource name from a request path: one that breaks the rule cannot exist, so it is
/// answered like a missing VM.
pub fn lookup_vm_name(value: &str) -> Result<ResourceName> {
    ResourceName::parse(value).map_err(|_| Error::not_found("vm", bounded(value)))
}

/// The VMs' use cases. Every one takes the [`Actor`], asks [`decide`] and audits what it changes.
pub struct Vms {
    rt: Arc<Runtime>,
    /// The VM backend, whose inventory reconciliation compares with the records.
    provisioner: Arc<dyn Provisioner>,
    /// The latest reconciliation this process made.
    last_reconcile: Mutex<Option<ReconcileReport>>,
    /// Strays already reported by this process, so each is audited once per process.
    known_strays: Mutex<HashSet<String>>,
}

impl Vms {
    pub(crate) fn new(rt: Arc<Runtime>, provisioner: Arc<dyn Provisioner>) -> Self {
        Vms { rt, provisioner, last_reconcile: Mutex::new(None), known_strays: Mutex::new(HashSet::new()) }
    }

    /// The VM backend.
    pub fn provisioner(&self) -> &Arc<dyn Provisioner> {
        &self.provisioner
    }

    /// Validates, checks the quota, leases the addresses, records the VMs and their operations
    /// in one transaction, and starts building them in the background. A repeated request with
    /// the same `idempotency_key` returns the first answer instead of creating again.
    pub async fn create(
        &self,
        actor: &Actor,
        owner: &Username,
        request: CreateVms,
        idempotency_key: Option<&str>,
    ) -> Result<CreateOutcome> {
        let result = self.create_inner(actor, owner, request.clone(), idempotency_key.map(str::to_owned)).await;
        let details = json!({"os": bounded(&request.os), "spec": bounded(&request.spec), "count": request.count});
        let resource = format!("vm/{owner}/{}", bounded(&request.name));
        self.rt.audit_refusal(actor, "vm.create", &resource, &result, details).await;
        let outcome = result?;
        // A quota crossing may have queued a notification.
        self.rt.outbox_ready.notify_one();
        if !outcome.replayed {
            for item in &outcome.accepted {
                self.rt.spawn_operation(item.operation.id);
            }
        }
        Ok(outcome)
    }

    async fn create_inner(
        &self,
        actor: &Actor,
        owner: &Username,
        request: CreateVms,
        idempotency_key: Option<String>,
    ) -> Result<CreateOutcome> {
        decide(actor, Action::Create, Some(owner), "vm", &bounded(&request.name))?;
        if let Some(key) = &idempotency_key {
            check_idempotency_key(key)?;
        }
        if request.count == 0 || request.count > MAX_BATCH {
            return Err(Error::invalid(
                "count",
                format!("{} is not accepted: create 1-{MAX_BATCH} VMs per request", request.count),
            ));
        }
        let base = ResourceName::parse(&request.name)?;
        let names = base.batch(request.count)?;
        let os = self.rt.config.os_image(&request.os)?.clone();
        let spec = self.rt.config.vm_spec(&request.spec)?.clone();
        let request_hash = ApiToken::hash_secret(&format!(
            "create-vms\n{}\n{}\n{}\n{}",
            request.name, request.os, request.spec, request.count
        ));
        let default_quota = self.rt.config.default_quota;
        let networks = self.rt.config.networks.clone();
        let channels = self.rt.channels();
        let (owner, actor) = (owner.clone(), actor.clone());
        self.rt.db(move |store, ipam| {
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
                let before = tx.usage(&owner)?;
                quota.check(&before, &extra)?;
                // In tenant mode the VMs go on the owner's network, its first LAN.
                let scope = Scope::for_new(&*tx, &networks, &owner, quota.max_ips)?;
                let mut accepted = Vec::with_capacity(names.len());
                for name in &names {
                    if tx.vm_by_name(&owner, name)?.is_some() {
                        return Err(Error::already_exists("vm", name));
                    }
                    let at = now();
                    let id = Uuid::now_v7();
                    let resource = ResourceRef { kind: ResourceKind::Vm, id, name: name.to_string() };
                    let lease = scope.lease(tx, &*ipam, &user.username, &resource)?;
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
                    let details = json!({"os": vm.os, "spec": vm.spec, "ip": lease.address.to_string(), "operation": operation.id});
                    record_operation(tx, &actor, &operation, "vm.create", &format!("vm/{owner}/{name}"), details)?;
                    accepted.push(Accepted { vm, operation });
                }
                // Told once per crossing: only the request that takes a resource past 80 % of
                // its limit notifies (requests are serialised by the transaction).
                for event in operations::crossings(&owner, &quota, &before, &extra) {
                    crate::runtime::queue(tx, event, &channels)?;
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
    pub async fn delete(&self, actor: &Actor, owner: &Username, name: &ResourceName) -> Result<Operation> {
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
        self.rt.spawn_operation(operation.id);
        Ok(operation)
    }

    /// Starts, stops or reboots a VM in the background.
    pub async fn power(
        &self,
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
        self.rt.spawn_operation(operation.id);
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
        decide(actor, Action::Change, Some(owner), "vm", name)?;
        let (owner, name, actor) = (owner.clone(), name.clone(), actor.clone());
        self.rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let mut vm = tx.vm_by_name(&owner, &name)?.ok_or_else(|| Error::not_found("vm", &name))?;
                    ensure_idle(&*tx, on_resource(vm.id), format_args!("vm {name}"))?;
                    if vm.awaits_adoption() && !(kind == OperationKind::DeleteVm && vm.state == VmState::Lost) {
                        return Err(Error::Conflict(format!(
                            "vm {name} was imported from the original Basphere and its vSphere VM is not marked as \
                         Basphere's yet; reconciliation marks it (`basphere admin reconcile --now`), then try again"
                        )));
                    }
                    transition(&mut vm)?;
                    vm.updated_at = now();
                    tx.update_vm(&vm)?;
                    let resource = ResourceRef { kind: ResourceKind::Vm, id: vm.id, name: vm.name.to_string() };
                    let operation = Operation::new(kind, owner.clone(), resource, &actor.name, steps);
                    let audited = format!("vm/{owner}/{name}");
                    record_operation(
                        tx,
                        &actor,
                        &operation,
                        kind.as_str(),
                        &audited,
                        json!({"operation": operation.id}),
                    )?;
                    Ok(operation)
                })
            })
            .await
    }

    /// The VMs of `owner`, or of every account (`None`, administrators), ordered by creation.
    pub async fn list(&self, actor: &Actor, owner: Option<&Username>, query: VmQuery) -> Result<Page<Vm>> {
        match owner {
            Some(owner) => decide(actor, Action::View, Some(owner), "user", owner)?,
            None => decide(actor, Action::Administer, None, "vm", &"")?,
        }
        let limit = query.page.limit(PageRequest::RESOURCES)?;
        let state = query.state.as_deref().map(VmState::parse).transpose()?;
        let filter = VmFilter {
            owner: owner.cloned(),
            state,
            include_deleted: state == Some(VmState::Deleted),
            after: query.page.after,
            limit: Some(limit + 1),
        };
        let vms = self.rt.read(move |store| store.query(|tx| tx.list_vms(&filter))).await?;
        Ok(page(vms, limit, |vm| vm.id))
    }

    /// One live VM of `owner`, by name.
    pub async fn get(&self, actor: &Actor, owner: &Username, name: &str) -> Result<Vm> {
        let name = lookup_vm_name(name)?;
        decide(actor, Action::View, Some(owner), "vm", &name)?;
        let owner = owner.clone();
        self.rt.read(move |store| store.vm(&owner, &name)).await
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
