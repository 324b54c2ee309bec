//! VM backends for vSphere.
//!
//! - [`simulated`]: a simulated vCenter whose inventory lives in its own journal file, apart from
//!   Basphere's store, as a real vCenter's would. The server's embedded default.
//! - [`terraform`]: `TerraformProvisioner`, the original's path made safe.
//! - `VsphereApiProvisioner` is not built yet; the server refuses `backend.vm: vsphere-api`
//!   with a message saying so.

pub mod simulated;
pub mod terraform;

/// The backends that are not built yet, for the server's "not available" message.
pub const PLANNED_BACKENDS: &[&str] = &["vsphere-api"];
