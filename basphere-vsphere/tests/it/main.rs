//! basphere-vsphere's integration tests.

#[cfg(feature = "vsphere-api")]
mod agent;
mod backend;
mod cloud_init;
mod simulated;
mod terraform;
#[cfg(feature = "vsphere-api")]
mod vsphere_api;
