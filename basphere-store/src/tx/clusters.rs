//! Cluster records.

use basphere_core::model::*;
use basphere_core::store::{ClusterFilter, ClustersRead, ClustersTx};
use basphere_core::validate::{ResourceName, Username};
use basphere_core::Result;
use rusqlite::params;
use uuid::Uuid;

use super::{ip, Select, SqlTx};
use crate::rows::*;

const CLUSTER_COLUMNS: &str = "id, owner, name, cluster_type, kubernetes_version, control_plane_count, worker_count, \
    control_plane_spec, control_plane_cpu, control_plane_memory_mb, control_plane_disk_gb, \
    worker_spec, worker_cpu, worker_memory_mb, worker_disk_gb, control_plane_endpoint, state, reason, status, created_at, updated_at";

impl ClustersRead for SqlTx<'_> {
    fn get_cluster(&self, id: Uuid) -> Result<Option<Cluster>> {
        self.one(&format!("SELECT {CLUSTER_COLUMNS} FROM clusters WHERE id = ?1"), [id.to_string()], cluster_row)
    }

    fn cluster_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Cluster>> {
        self.one(
            &format!("SELECT {CLUSTER_COLUMNS} FROM clusters WHERE owner = ?1 AND name = ?2 AND state <> 'deleted'"),
            [owner.as_str(), name.as_str()],
            cluster_row,
        )
    }

    fn list_clusters(&self, filter: &ClusterFilter) -> Result<Vec<Cluster>> {
        let (query, values) = Select::from(format!("SELECT {CLUSTER_COLUMNS} FROM clusters"))
            .when("owner = ?", filter.owner.as_ref().map(|o| o.to_string()))
            .only("state <> 'deleted'", !filter.include_deleted)
            .when("id > ?", filter.after.map(|id| id.to_string()))
            .tail("ORDER BY id", filter.limit);
        self.all(&query, rusqlite::params_from_iter(values), cluster_row)
    }
}

impl ClustersTx for SqlTx<'_> {
    fn insert_cluster(&mut self, c: &Cluster) -> Result<()> {
        let status = cluster_status_json(c)?;
        let (a, b) = (&c.control_plane_spec, &c.worker_spec);
        self.insert(
            &format!("INSERT INTO clusters ({CLUSTER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"),
            params![c.id.to_string(), c.owner.as_str(), c.name.as_str(), c.cluster_type, c.kubernetes_version, c.control_plane_count, c.worker_count, a.key, a.cpu, a.memory_mb as i64, a.disk_gb as i64, b.key, b.cpu, b.memory_mb as i64, b.disk_gb as i64, c.control_plane_endpoint.map(ip), c.state.as_str(), c.reason, status, micros(c.created_at), micros(c.updated_at)],
            "clusters",
            &[("id", &c.id), ("name", &c.name), ("state", &c.state)],
        )
    }

    fn update_cluster(&mut self, c: &Cluster) -> Result<()> {
        let status = cluster_status_json(c)?;
        let (a, b) = (&c.control_plane_spec, &c.worker_spec);
        self.update(
            "UPDATE clusters SET owner = ?2, name = ?3, cluster_type = ?4, kubernetes_version = ?5, control_plane_count = ?6, worker_count = ?7, \
             control_plane_spec = ?8, control_plane_cpu = ?9, control_plane_memory_mb = ?10, control_plane_disk_gb = ?11, \
             worker_spec = ?12, worker_cpu = ?13, worker_memory_mb = ?14, worker_disk_gb = ?15, control_plane_endpoint = ?16, \
             state = ?17, reason = ?18, status = ?19, created_at = ?20, updated_at = ?21 WHERE id = ?1",
            params![c.id.to_string(), c.owner.as_str(), c.name.as_str(), c.cluster_type, c.kubernetes_version, c.control_plane_count, c.worker_count, a.key, a.cpu, a.memory_mb as i64, a.disk_gb as i64, b.key, b.cpu, b.memory_mb as i64, b.disk_gb as i64, c.control_plane_endpoint.map(ip), c.state.as_str(), c.reason, status, micros(c.created_at), micros(c.updated_at)],
            "cluster",
            c.id,
            "clusters",
            &[("id", &c.id), ("name", &c.name), ("state", &c.state)],
        )
    }
}
