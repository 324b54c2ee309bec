//! Cluster records.

use crate::error::Result;
use crate::model::*;
use crate::validate::{ResourceName, Username};
use uuid::Uuid;

/// Which clusters to list, like [`VmFilter`](super::VmFilter).
#[derive(Clone, Debug, Default)]
pub struct ClusterFilter {
    pub owner: Option<Username>,
    pub include_deleted: bool,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// Reads of cluster records.
pub trait ClustersRead {
    fn get_cluster(&self, id: Uuid) -> Result<Option<Cluster>>;
    /// The live (not deleted) cluster with this name.
    fn cluster_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Cluster>>;
    fn list_clusters(&self, filter: &ClusterFilter) -> Result<Vec<Cluster>>;
}

/// Writes of cluster records.
///
/// # Contract
///
/// - `insert_cluster`: `AlreadyExists` for a taken id, or when the owner has a live cluster of
///   that name.
/// - `update_cluster`: `NotFound` for an unknown cluster; the same name uniqueness.
pub trait ClustersTx: ClustersRead {
    fn insert_cluster(&mut self, cluster: &Cluster) -> Result<()>;
    fn update_cluster(&mut self, cluster: &Cluster) -> Result<()>;
}
