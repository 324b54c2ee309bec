//! VM records.

use crate::error::Result;
use crate::model::*;
use crate::validate::{ResourceName, Username};
use uuid::Uuid;

/// Which VMs to list. Results are ordered by id (creation order); `after` is the last id of the
/// previous page.
#[derive(Clone, Debug, Default)]
pub struct VmFilter {
    pub owner: Option<Username>,
    pub state: Option<VmState>,
    /// Include records in state `deleted` (history); off by default.
    pub include_deleted: bool,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// Reads of VM records.
pub trait VmsRead {
    fn get_vm(&self, id: Uuid) -> Result<Option<Vm>>;
    /// The live (not deleted) VM with this name.
    fn vm_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Vm>>;
    fn list_vms(&self, filter: &VmFilter) -> Result<Vec<Vm>>;
}

/// Writes of VM records.
///
/// # Contract
///
/// - `insert_vm`: `AlreadyExists` for a taken id, or when the owner has a live VM of that name
///   (a deleted record keeps its name as history and frees it).
/// - `update_vm`: `NotFound` for an unknown VM; `AlreadyExists` when it would make a second
///   live VM of one name.
pub trait VmsTx: VmsRead {
    fn insert_vm(&mut self, vm: &Vm) -> Result<()>;
    fn update_vm(&mut self, vm: &Vm) -> Result<()>;
}
