//! Virtual machines.

use super::*;

string_enum!(
    /// Lifecycle of a VM. `Deleted` records are kept for history and free their name.
    VmState {
        Pending => "pending",
        Provisioning => "provisioning",
        Running => "running",
        Stopped => "stopped",
        Failed => "failed",
        Deleting => "deleting",
        Deleted => "deleted",
        Lost => "lost",
    }
);

/// A virtual machine owned by a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    pub id: Uuid,
    pub owner: Username,
    pub name: ResourceName,
    pub os: String,
    pub spec: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
    pub ip: Option<Ipv4Addr>,
    pub state: VmState,
    /// Human-readable reason when `state` is `failed` or `lost`.
    pub reason: Option<String>,
    /// The backend's identifier (a vSphere managed object id, a Terraform directory...).
    pub backend_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Vm {
    /// The `backend_id` of a VM imported from the original Basphere until reconciliation has
    /// marked its vSphere VM as Basphere's (`Provisioner::adopt`).
    pub const IMPORTED: &'static str = "imported-from-original";

    /// Imported, and not yet marked as Basphere's in vSphere: nothing may change it there yet.
    pub fn awaits_adoption(&self) -> bool {
        self.backend_id.as_deref() == Some(Self::IMPORTED)
    }

    /// The VM's name in vSphere: `<owner>-<name>`.
    pub fn vsphere_name(&self) -> String {
        format!("{}-{}", self.owner, self.name)
    }

    /// Whether the record still holds resources (counted in usage, holds its name).
    pub fn is_live(&self) -> bool {
        self.state != VmState::Deleted
    }
}
