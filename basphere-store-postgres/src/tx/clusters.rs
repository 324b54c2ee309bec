//! Cluster records.

use basphere_core::model::*;
use basphere_core::store::{ClusterFilter, ClustersRead, ClustersTx};
use basphere_core::validate::{ResourceName, Username};
use basphere_core::Result;
use uuid::Uuid;

use super::{ip, Param, PgTx, Select};
use crate::rows::*;

const CLUSTER_COLUMNS: &str = "id, owner, name, cluster_type, kubernetes_version, control_plane_count, worker_count, \
    control_plane_spec, control_plane_cpu, control_plane_memory_mb, control_plane_disk_gb, \
    worker_spec, worker_cpu, worker_memory_mb, worker_disk_gb, control_plane_endpoint, state, reason, status, created_at, updated_at";

impl ClustersRead for PgTx<'_> {
    fn get_cluster(&self, id: Uuid) -> Result<Option<Cluster>> {
        self.one(&format!("SELECT {CLUSTER_COLUMNS} FROM clusters WHERE id = $1"), &[&id], cluster_row)
    }

    fn cluster_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Cluster>> {
        self.one(
            &format!("SELECT {CLUSTER_COLUMNS} FROM clusters WHERE owner = $1 AND name = $2 AND state <> 'deleted'"),
            &[&owner.as_str(), &name.as_str()],
            cluster_row,
        )
    }

    fn list_clusters(&self, filter: &ClusterFilter) -> Result<Vec<Cluster>> {
        let query = Select::from(format!("SELECT {CLUSTER_COLUMNS} FROM clusters"))
            .when("owner = ?", filter.owner.as_ref().map(|o| o.to_string()))
            .only("state <> 'deleted'", !filter.include_deleted)
            .when("id > ?", filter.after)
            .tail("ORDER BY id", filter.limit);
        self.all(&query.sql, &query.params(), cluster_row)
    }
}

impl PgTx<'_> {
    fn write_cluster(&self, statement: &str, c: &Cluster, missing: bool) -> Result<()> {
        let status = cluster_status_json(c)?;
        let (a, b) = (&c.control_plane_spec, &c.worker_spec);
        let params: [Param<'_>; 21] = [
            &c.id,
            &c.owner.as_str(),
            &c.name.as_str(),
            &c.cluster_type,
            &c.kubernetes_version,
            &i64::from(c.control_plane_count),
            &i64::from(c.worker_count),
            &a.key,
            &i64::from(a.cpu),
            &int(a.memory_mb),
            &int(a.disk_gb),
            &b.key,
            &i64::from(b.cpu),
            &int(b.memory_mb),
            &int(b.disk_gb),
            &c.control_plane_endpoint.map(ip),
            &c.state.as_str(),
            &c.reason,
            &status,
            &c.created_at,
            &c.updated_at,
        ];
        let values: super::Values<'_> = &[("id", &c.id), ("name", &c.name), ("state", &c.state)];
        if missing {
            self.insert(statement, &params, "clusters", values)
        } else {
            self.update(statement, &params, "cluster", c.id, "clusters", values)
        }
    }
}

impl ClustersTx for PgTx<'_> {
    fn insert_cluster(&mut self, c: &Cluster) -> Result<()> {
        self.write_cluster(
            &format!("INSERT INTO clusters ({CLUSTER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"),
            c,
            true,
        )
    }

    fn update_cluster(&mut self, c: &Cluster) -> Result<()> {
        self.write_cluster(
            "UPDATE clusters SET owner = $2, name = $3, cluster_type = $4, kubernetes_version = $5, control_plane_count = $6, worker_count = $7, \
             control_plane_spec = $8, control_plane_cpu = $9, control_plane_memory_mb = $10, control_plane_disk_gb = $11, \
             worker_spec = $12, worker_cpu = $13, worker_memory_mb = $14, worker_disk_gb = $15, control_plane_endpoint = $16, \
             state = $17, reason = $18, status = $19, created_at = $20, updated_at = $21 WHERE id = $1",
            c,
            false,
        )
    }
}
