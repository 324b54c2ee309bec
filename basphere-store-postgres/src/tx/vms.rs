//! VM records.

use basphere_core::model::*;
use basphere_core::store::{VmFilter, VmsRead, VmsTx};
use basphere_core::validate::{ResourceName, Username};
use basphere_core::Result;
use uuid::Uuid;

use super::{ip, PgTx, Select};
use crate::rows::*;

const VM_COLUMNS: &str =
    "id, owner, name, os, spec, cpu, memory_mb, disk_gb, ip, state, reason, backend_id, created_at, updated_at";

impl VmsRead for PgTx<'_> {
    fn get_vm(&self, id: Uuid) -> Result<Option<Vm>> {
        self.one(&format!("SELECT {VM_COLUMNS} FROM vms WHERE id = $1"), &[&id], vm_row)
    }

    fn vm_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Vm>> {
        self.one(
            &format!("SELECT {VM_COLUMNS} FROM vms WHERE owner = $1 AND name = $2 AND state <> 'deleted'"),
            &[&owner.as_str(), &name.as_str()],
            vm_row,
        )
    }

    fn list_vms(&self, filter: &VmFilter) -> Result<Vec<Vm>> {
        let query = Select::from(format!("SELECT {VM_COLUMNS} FROM vms"))
            .when("owner = ?", filter.owner.as_ref().map(|o| o.to_string()))
            .when("state = ?", filter.state.map(|s| s.as_str().to_owned()))
            .only("state <> 'deleted'", !filter.include_deleted)
            .when("id > ?", filter.after)
            .tail("ORDER BY id", filter.limit);
        self.all(&query.sql, &query.params(), vm_row)
    }
}

impl PgTx<'_> {
    fn write_vm(&self, statement: &str, vm: &Vm, missing: bool) -> Result<()> {
        let params: [super::Param<'_>; 14] = [
            &vm.id,
            &vm.owner.as_str(),
            &vm.name.as_str(),
            &vm.os,
            &vm.spec,
            &i64::from(vm.cpu),
            &int(vm.memory_mb),
            &int(vm.disk_gb),
            &vm.ip.map(ip),
            &vm.state.as_str(),
            &vm.reason,
            &vm.backend_id,
            &vm.created_at,
            &vm.updated_at,
        ];
        let values: super::Values<'_> = &[("id", &vm.id), ("name", &vm.name)];
        if missing {
            self.insert(statement, &params, "vms", values)
        } else {
            self.update(statement, &params, "vm", vm.id, "vms", values)
        }
    }
}

impl VmsTx for PgTx<'_> {
    fn insert_vm(&mut self, vm: &Vm) -> Result<()> {
        self.write_vm(
            &format!(
                "INSERT INTO vms ({VM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            vm,
            true,
        )
    }

    fn update_vm(&mut self, vm: &Vm) -> Result<()> {
        self.write_vm(
            "UPDATE vms SET owner = $2, name = $3, os = $4, spec = $5, cpu = $6, memory_mb = $7, disk_gb = $8, ip = $9, state = $10, reason = $11, backend_id = $12, created_at = $13, updated_at = $14 WHERE id = $1",
            vm,
            false,
        )
    }
}
