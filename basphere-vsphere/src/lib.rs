//! VM backends for vSphere.
//!
//! - [`simulated`]: a simulated vCenter whose inventory lives in its own journal file, apart from
//!   Basphere's store, as a real vCenter's would. The server's embedded default.
//! - [`terraform`]: `TerraformProvisioner`, the original's path made safe.
//! - [`api`] (feature `vsphere-api`, off by default): `VsphereApiProvisioner` through the
//!   vSphere API with `vim_rs`. It compiles but is not yet tested against the vCenter
//!   simulator, so nothing composes it: the server refuses `backend.vm: vsphere-api`.

#[cfg(feature = "vsphere-api")]
pub mod api;
pub mod simulated;
pub mod terraform;

/// The backends that are not built yet, for the server's "not available" message.
pub const PLANNED_BACKENDS: &[&str] = &["vsphere-api"];
