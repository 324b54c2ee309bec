//! basphere-vsphere's integration tests.

mod simulated;
mod terraform;
