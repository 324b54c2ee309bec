//! Reconciliation: the store compared with the VM backend's inventory.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use uuid::Uuid;

use super::Vms;
use crate::error::Result;
use crate::model::*;
use crate::provisioner::{InventoryVm, PowerState};
use crate::runtime::authz::{decide, Action, Actor};
use crate::store::{OperationFilter, StoreExt, VmFilter};

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
    /// VMs imported from the original Basphere whose vSphere VM is now marked as Basphere's.
    pub adopted: Vec<String>,
}

/// What reconciliation compares of a VM record with vSphere.
struct Record {
    id: Uuid,
    state: VmState,
    vsphere_name: Box<str>,
}

/// How many records are read at a time.
const RECORDS_PER_PAGE: usize = 500;

/// The live VM records (the filter's default leaves deleted ones out) as reconciliation needs
/// them, and whole those awaiting adoption, read in one transaction a page at a time: whole,
/// 10,000 records took 7 MiB at once, more than anything else a start-up holds.
fn read_records(tx: &dyn crate::store::StoreRead) -> Result<(Vec<Record>, Vec<Vm>)> {
    let (mut records, mut awaiting) = (Vec::new(), Vec::new());
    let mut filter = VmFilter { limit: Some(RECORDS_PER_PAGE), ..VmFilter::default() };
    loop {
        let page = tx.list_vms(&filter)?;
        let full = page.len() == RECORDS_PER_PAGE;
        filter.after = page.last().map(|vm| vm.id);
        for vm in page {
            records.push(Record { id: vm.id, state: vm.state, vsphere_name: vm.vsphere_name().into() });
            if vm.awaits_adoption() {
                awaiting.push(vm);
            }
        }
        if !full {
            return Ok((records, awaiting));
        }
    }
}

impl Vms {
    /// Reconciles now, for an administrator (see [`Vms::reconcile`]).
    pub async fn reconcile_now(&self, actor: &Actor) -> Result<ReconcileReport> {
        decide(actor, Action::Administer, None, "reconcile", &"")?;
        self.reconcile().await
    }

    /// The latest reconciliation this process made (`None` before the first, or when another
    /// replica holds the reconcile duty).
    pub fn last_reconcile(&self) -> Option<ReconcileReport> {
        self.last_reconcile.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The latest reconciliation this process made, for an administrator.
    pub fn last_reconcile_for(&self, actor: &Actor) -> Result<Option<ReconcileReport>> {
        decide(actor, Action::Administer, None, "reconcile", &"")?;
        Ok(self.last_reconcile())
    }

    /// audited once), never deleted. VMs with an operation in flight are left alone.
    pub async fn reconcile(&self) -> Result<ReconcileReport> {
        // The records first, then vSphere: a VM made and recorded while vSphere's answer is on
        // its way is not among the records read, so it cannot look missing from vSphere. (In the
        // other order a create finishing in between was marked lost.) Every change below is
        // applied only if its record is still as read.
        let (records, awaiting) = self.rt.read(|store| store.query(read_records)).await?;
        let inventory = self.provisioner.inventory().await?;
        let base = format!("{}/", self.rt.config.vsphere.folder);
        let inventory_by_name: HashMap<&str, &InventoryVm> =
            inventory.iter().map(|vm| (vm.vsphere_name.as_str(), vm)).collect();
        let known_ids: HashSet<Uuid> = records.iter().map(|vm| vm.id).collect();
        // A VM Basphere did not make (one imported from the original) carries no Basphere id:
        // its name says whose it is, as it does when the records are compared above.
        let known_names: HashSet<&str> = records.iter().map(|vm| &*vm.vsphere_name).collect();
        let mut report = ReconcileReport { at: Some(now()), ..ReconcileReport::default() };
        // Imported VMs: marked as Basphere's when vSphere has them unmarked; when vSphere has no
        // VM of the name at all there is nothing to take over, and the record is freed to be
        // deleted like any other. One marked with another id stays as it is (logged).
        for vm in &awaiting {
            match inventory_by_name.get(vm.vsphere_name().as_str()).copied() {
                Some(found) if found.basphere_id.is_none() => {
                    if let Some(name) = self.adopt(vm, Some(found)).await {
                        report.adopted.push(name);
                    }
                }
                Some(found) => tracing::warn!(
                    vm = %vm.vsphere_name(),
                    marker = ?found.basphere_id,
                    "an imported VM's name is taken in vSphere by another Basphere VM; left as it is"
                ),
                None => {
                    self.adopt(vm, None).await;
                }
            }
        }
        let mut changes: Vec<(Uuid, VmState, VmState, Option<String>)> = Vec::new();
        for vm in &records {
            let seen =
                inventory_by_name.get(&*vm.vsphere_name).filter(|found| found.basphere_id.is_none_or(|id| id == vm.id));
            let next = match (vm.state, seen) {
                (VmState::Running | VmState::Stopped, None) => Some((
                    VmState::Lost,
                    Some(format!(
                        "{} is no longer in vSphere (noticed {})",
                        vm.vsphere_name,
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
        // Not kept while the changes are written.
        drop(inventory_by_name);
        for (id, expected, state, reason) in changes {
            let applied = self
                .rt
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
                        tx.append_audit(&reconciler_event("vm.reconcile", &vm, details))?;
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
            let ours = match vm.basphere_id {
                Some(id) => known_ids.contains(&id),
                None => known_names.contains(vm.vsphere_name.as_str()),
            };
            if vm.folder.starts_with(&base) && !ours {
                let new = self.known_strays.lock().unwrap_or_else(|p| p.into_inner()).insert(vm.vsphere_name.clone());
                if new {
                    tracing::warn!(vm = %vm.vsphere_name, folder = %vm.folder, "a VM in Basphere's folders that Basphere does not know");
                    let details = json!({"folder": vm.folder, "backend_id": vm.backend_id});
                    self.rt
                        .audit(
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
        *self.last_reconcile.lock().unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
        Ok(report)
    }

    /// Marks an imported VM's vSphere VM as Basphere's, then records the backend's id for it (so
    /// the record no longer awaits adoption). Failures are logged and tried again next time.
    async fn adopt(&self, vm: &Vm, found: Option<&InventoryVm>) -> Option<String> {
        let reference = super::operations::vm_ref(vm);
        if found.is_some() {
            if let Err(error) = self.provisioner.adopt(&reference).await {
                tracing::warn!(vm = %reference.vsphere_name, %error, "an imported VM could not be marked as Basphere's");
                return None;
            }
        }
        let (id, backend_id) = (vm.id, found.map(|found| found.backend_id.clone()));
        let adopted = self
            .rt
            .db(move |store, _| {
                store.transact(|tx| {
                    let Some(mut vm) = tx.get_vm(id)? else { return Ok(None) };
                    if !vm.awaits_adoption() {
                        return Ok(None);
                    }
                    vm.backend_id = backend_id.clone();
                    vm.updated_at = now();
                    tx.update_vm(&vm)?;
                    let details = json!({"backend_id": backend_id, "in_vsphere": backend_id.is_some()});
                    tx.append_audit(&reconciler_event("vm.adopt", &vm, details))?;
                    Ok(Some(format!("{}/{}", vm.owner, vm.name)))
                })
            })
            .await;
        match adopted {
            Ok(name) => name,
            Err(error) => {
                tracing::warn!(%error, "recording an adopted VM failed; it is tried again next time");
                None
            }
        }
    }
}

/// The audit event of a change the reconciler made to a VM's record.
fn reconciler_event(action: &str, vm: &Vm, details: serde_json::Value) -> AuditEvent {
    AuditEvent::new("system", action, &format!("vm/{}/{}", vm.owner, vm.name), "reconciler", Outcome::Success, details)
}
