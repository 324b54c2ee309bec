//! Kubernetes clusters, their conditions and their status.

use super::*;

string_enum!(
    /// Lifecycle of a Kubernetes cluster.
    ClusterState {
        Pending => "pending",
        Provisioning => "provisioning",
        Ready => "ready",
        Failed => "failed",
        Deleting => "deleting",
        Deleted => "deleted",
    }
);

/// A Kubernetes cluster owned by a user.
///
/// Its addresses are leases of the cluster's id: one `ClusterEndpoint` (the control-plane VIP,
/// never a node's address) and `ClusterNode` leases for the node pool (every node plus
/// [`CLUSTER_SURGE`] for rolling updates).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: Uuid,
    pub owner: Username,
    pub name: ResourceName,
    pub cluster_type: String,
    pub kubernetes_version: String,
    pub control_plane_count: u32,
    pub worker_count: u32,
    /// The node size of the control-plane nodes.
    pub control_plane_spec: NodeSpec,
    /// The node size of the workers.
    pub worker_spec: NodeSpec,
    /// The control-plane VIP.
    pub control_plane_endpoint: Option<Ipv4Addr>,
    pub state: ClusterState,
    /// Human-readable reason when `state` is `failed`, or what a deletion waits for.
    pub reason: Option<String>,
    /// What the backend last reported.
    pub status: ClusterStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Spare node addresses a cluster's pool holds for rolling updates: one for the control plane's
/// and one for the workers' surge machine.
pub const CLUSTER_SURGE: u32 = 2;

impl Cluster {
    pub fn is_live(&self) -> bool {
        self.state != ClusterState::Deleted
    }

    pub fn nodes(&self) -> u32 {
        self.control_plane_count + self.worker_count
    }

    /// How many node addresses the cluster's pool holds with `workers` workers.
    pub fn pool_size(&self, workers: u32) -> u32 {
        self.control_plane_count + workers + CLUSTER_SURGE
    }

    /// What the cluster's nodes take from the owner's quota (addresses are counted as leases).
    pub fn usage(&self) -> Usage {
        let (cp, workers) = (u64::from(self.control_plane_count), u64::from(self.worker_count));
        let (a, b) = (&self.control_plane_spec, &self.worker_spec);
        Usage {
            vms: 0,
            clusters: 1,
            ips: 0,
            vcpus: cp * u64::from(a.cpu) + workers * u64::from(b.cpu),
            memory_mb: cp * a.memory_mb + workers * b.memory_mb,
            disk_gb: cp * a.disk_gb + workers * b.disk_gb,
        }
    }
}

/// A Kubernetes-style condition of a cluster, as the backend reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCondition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}

impl ClusterCondition {
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// What the backend last reported about a cluster: the conditions, how many nodes are ready,
/// and the backend's phase (shown, never used alone to decide).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default)]
    pub conditions: Vec<ClusterCondition>,
    #[serde(default)]
    pub control_plane_ready: u32,
    #[serde(default)]
    pub workers_ready: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Timestamp>,
}
