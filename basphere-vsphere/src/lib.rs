//! VM backends for vSphere: `TerraformProvisioner` and `VsphereApiProvisioner`.
//!
//! Not built yet: the server refuses `backend.vm: terraform` and `vsphere-api` until they are.
//! Until then the simulated backend (`basphere_core::mock::MockProvisioner`) is the only one.

/// The backends this crate will provide, for the server's "not available yet" message.
pub const PLANNED_BACKENDS: &[&str] = &["terraform", "vsphere-api"];
