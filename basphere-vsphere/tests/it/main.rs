//! basphere-vsphere's integration tests.

mod simulated;
mod terraform;
#[cfg(feature = "vsphere-api")]
mod vsphere_api;
