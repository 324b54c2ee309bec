//! The catalog: OS images, VM sizes, node sizes and cluster shapes.

use super::*;

/// An OS image from the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsImage {
    pub key: String,
    pub template: String,
    pub description: String,
    /// The guest's network interface for cloud-init (`ens192`, `ens33`).
    pub interface: String,
}

/// A VM size from the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub key: String,
    pub description: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
}

/// A node size for cluster nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub key: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
}

/// A cluster shape from the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterType {
    pub key: String,
    pub description: String,
    pub control_plane_count: u32,
    pub worker_count: u32,
    pub control_plane_spec: String,
    pub worker_spec_default: String,
}
