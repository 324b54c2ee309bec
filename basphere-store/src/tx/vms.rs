//! VM records.

use basphere_core::model::*;
use basphere_core::store::{VmFilter, VmsRead, VmsTx};
use basphere_core::validate::{ResourceName, Username};
use basphere_core::Result;
use rusqlite::params;
use uuid::Uuid;

use super::{ip, Select, SqlTx};
use crate::rows::*;

const VM_COLUMNS: &str =
    "id, owner, name, os, spec, cpu, memory_mb, disk_gb, ip, state, reason, backend_id, created_at, updated_at";

impl VmsRead for SqlTx<'_> {
    fn get_vm(&self, id: Uuid) -> Result<Option<Vm>> {
        self.one(&format!("SELECT {VM_COLUMNS} FROM vms WHERE id = ?1"), [id.to_string()], vm_row)
    }

    fn vm_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Vm>> {
        self.one(
            &format!("SELECT {VM_COLUMNS} FROM vms WHERE owner = ?1 AND name = ?2 AND state <> 'deleted'"),
            [owner.as_str(), name.as_str()],
            vm_row,
        )
    }

    fn list_vms(&self, filter: &VmFilter) -> Result<Vec<Vm>> {
        let (query, values) = Select::from(format!("SELECT {VM_COLUMNS} FROM vms"))
            .when("owner = ?", filter.owner.as_ref().map(|o| o.to_string()))
            .when("state = ?", filter.state.map(|s| s.as_str().to_owned()))
            .only("state <> 'deleted'", !filter.include_deleted)
            .when("id > ?", filter.after.map(|id| id.to_string()))
            .tail("ORDER BY id", filter.limit);
        // A page's worth at most up front; an unlimited list (the reconciler's) grows as read.
        let expected = filter.limit.map_or(0, |limit| limit.min(1000));
        self.all_sized(&query, rusqlite::params_from_iter(values), vm_row, expected)
    }
}

impl VmsTx for SqlTx<'_> {
    fn insert_vm(&mut self, vm: &Vm) -> Result<()> {
        self.insert(
            &format!(
                "INSERT INTO vms ({VM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ),
            params![
                vm.id.to_string(),
                vm.owner.as_str(),
                vm.name.as_str(),
                vm.os,
                vm.spec,
                vm.cpu,
                vm.memory_mb as i64,
                vm.disk_gb as i64,
                vm.ip.map(ip),
                vm.state.as_str(),
                vm.reason,
                vm.backend_id,
                micros(vm.created_at),
                micros(vm.updated_at)
            ],
            "vms",
            &[("id", &vm.id), ("name", &vm.name)],
        )
    }

    fn update_vm(&mut self, vm: &Vm) -> Result<()> {
        self.update(
            "UPDATE vms SET owner = ?2, name = ?3, os = ?4, spec = ?5, cpu = ?6, memory_mb = ?7, disk_gb = ?8, ip = ?9, state = ?10, reason = ?11, backend_id = ?12, created_at = ?13, updated_at = ?14 WHERE id = ?1",
            params![vm.id.to_string(), vm.owner.as_str(), vm.name.as_str(), vm.os, vm.spec, vm.cpu, vm.memory_mb as i64, vm.disk_gb as i64, vm.ip.map(ip), vm.state.as_str(), vm.reason, vm.backend_id, micros(vm.created_at), micros(vm.updated_at)],
            "vm",
            vm.id,
            "vms",
            &[("id", &vm.id), ("name", &vm.name)],
        )
    }
}
