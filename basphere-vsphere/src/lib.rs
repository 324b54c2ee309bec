//! VM backends for vSphere.
//!
//! - [`simulated`]: a simulated vCenter whose inventory lives in its own journal file, apart from
//!   Basphere's store, as a real vCenter's would. The server's embedded default.
//! - [`terraform`]: `TerraformProvisioner`, the original's path made safe.
//! - [`api`] (feature `vsphere-api`): `VsphereApiProvisioner` through the vSphere API with
//!   `vim_rs`, no Terraform.
//! - [`vcsim`]: the govmomi vCenter simulator as a child process, for tests and benchmarks.

#[cfg(feature = "vsphere-api")]
pub mod api;
pub mod simulated;
pub mod terraform;
pub mod vcsim;

