//! VM records in memory.

use uuid::Uuid;

use super::{after, page, remember, ReadTx, State, WriteTx};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{VmFilter, VmsRead, VmsTx};
use crate::validate::{ResourceName, Username};

macro_rules! reads {
    ($ty:ty) => {
        impl VmsRead for $ty {
            fn get_vm(&self, id: Uuid) -> Result<Option<Vm>> {
                Ok(self.state().vms.get(&id).cloned())
            }
            fn vm_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Vm>> {
                Ok(self.state().live_vm_named(owner, name).cloned())
            }
            fn list_vms(&self, filter: &VmFilter) -> Result<Vec<Vm>> {
                Ok(page(
                    after(&self.state().vms, filter.after)
                        .filter(|vm| {
                            filter.owner.as_ref().is_none_or(|o| vm.owner == *o)
                                && filter.state.is_none_or(|s| vm.state == s)
                                && (filter.include_deleted || vm.is_live())
                        })
                        .cloned(),
                    filter.limit,
                ))
            }
        }
    };
}

reads!(ReadTx<'_>);
reads!(WriteTx<'_>);

impl VmsTx for WriteTx<'_> {
    fn insert_vm(&mut self, vm: &Vm) -> Result<()> {
        if self.state.vms.contains_key(&vm.id) {
            return Err(Error::already_exists("vm", vm.id));
        }
        if vm.is_live() && self.state.live_vm_named(&vm.owner, &vm.name).is_some() {
            return Err(Error::already_exists("vm", &vm.name));
        }
        self.state.vms.insert(vm.id, vm.clone());
        remember!(self, vms, vm.id, None::<Vm>);
        Ok(())
    }

    fn update_vm(&mut self, vm: &Vm) -> Result<()> {
        if !self.state.vms.contains_key(&vm.id) {
            return Err(Error::not_found("vm", vm.id));
        }
        if vm.is_live() && self.state.live_vm_named(&vm.owner, &vm.name).is_some_and(|other| other.id != vm.id) {
            return Err(Error::already_exists("vm", &vm.name));
        }
        let previous = self.state.vms.insert(vm.id, vm.clone());
        remember!(self, vms, vm.id, previous);
        Ok(())
    }
}
