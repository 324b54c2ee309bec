//! The `ClusterProvisioner` trait: what a Kubernetes cluster backend (Cluster API, simulated)
//! must do.

use std::net::Ipv4Addr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Result;
use crate::model::{ClusterCondition, NodeSpec};
use crate::validate::{ResourceName, SshPublicKey, Username};

/// Everything a backend needs to create a cluster or bring it to a new size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRequest {
    /// Basphere's id of the cluster, carried as a label by every object the backend makes.
    pub id: Uuid,
    pub owner: Username,
    pub name: ResourceName,
    pub kubernetes_version: String,
    /// The VM template the nodes are cloned from.
    pub node_template: String,
    pub control_plane_count: u32,
    pub control_plane_spec: NodeSpec,
    pub worker_count: u32,
    pub worker_spec: NodeSpec,
    /// The control-plane VIP, served by the control-plane nodes; never a node address.
    pub endpoint: Ipv4Addr,
    /// The node addresses the cluster may use: every node plus the rollout surge, in order.
    pub node_addresses: Vec<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    /// The port group and MTU of the tenant LAN the nodes are on (`networks.mode: tenant`);
    /// `None` for the backend's configured network.
    pub lan: Option<ClusterLan>,
    /// The owner's login key on every node.
    pub ssh_key: SshPublicKey,
}

/// The tenant LAN a cluster's nodes are on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterLan {
    pub port_group: String,
    pub mtu: u32,
}

impl ClusterRequest {
    pub fn cluster_ref(&self) -> ClusterRef {
        ClusterRef { id: self.id, owner: self.owner.clone(), name: self.name.clone() }
    }
}

/// How a backend finds a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterRef {
    pub id: Uuid,
    pub owner: Username,
    pub name: ResourceName,
}

/// Where a cluster stands, as the backend decided from its conditions (never from a phase
/// alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterHealth {
    /// Still being built or changed.
    Progressing,
    /// The control plane and every worker are available.
    Ready,
    /// It cannot become ready without someone's help; the observation's `reason` says why.
    Failed,
    /// Its deletion has started.
    Deleting,
}

/// What the backend sees of one cluster now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterObservation {
    pub health: ClusterHealth,
    /// The backend's own phase, for display.
    pub phase: Option<String>,
    pub conditions: Vec<ClusterCondition>,
    pub control_plane_ready: u32,
    pub workers_ready: u32,
    /// Worker machines that exist, including those being removed.
    pub worker_machines: u32,
    /// Node addresses the cluster's machines hold now.
    pub addresses_in_use: Vec<Ipv4Addr>,
    /// Why it failed or what it waits for, in words for its owner.
    pub reason: Option<String>,
}

/// The answer to a delete request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Nothing of the cluster is left.
    Gone,
    /// The deletion is under way; the message says what it waits for.
    Waiting(String),
}

/// A Kubernetes cluster backend.
///
/// # Contract
///
/// - `apply` creates or updates every object of the cluster so that it matches the request; it
///   is idempotent and may be repeated after a crash. It grows the node address pool before it
///   raises the worker count. A request that shrinks the pool must only drop addresses that no
///   machine holds (the caller waits for `worker_machines` and `addresses_in_use` first); one
///   that drops a held address is refused (`Error::Backend`). A cluster of the same owner and
///   name under another id is never touched: `apply` answers `AlreadyExists`.
/// - `observe` reports a cluster the backend holds, or `None` when none carries this id. It may
///   answer from a cache kept current by watches, so calling it often costs the management
///   cluster nothing.
/// - `kubeconfig` is the cluster's admin kubeconfig once its control plane is initialised, else
///   `None`.
/// - `delete` asks for the cluster's deletion through its top object only (the controllers
///   remove the rest) and answers `Gone` once nothing of it is left (at once for a cluster it
///   never had); repeating it is harmless.
/// - `changed` returns when something may have changed for any cluster, or after `timeout`.
/// - Failures are `Error::Backend` (with what the management cluster said), or `Timeout`.
#[async_trait]
pub trait ClusterProvisioner: Send + Sync {
    fn backend_name(&self) -> &'static str;
    /// Checks that the management cluster serves every API Basphere needs; the error names each
    /// missing one.
    async fn preflight(&self) -> Result<()>;
    async fn apply(&self, request: &ClusterRequest) -> Result<()>;
    async fn observe(&self, cluster: &ClusterRef) -> Result<Option<ClusterObservation>>;
    async fn kubeconfig(&self, cluster: &ClusterRef) -> Result<Option<String>>;
    async fn delete(&self, cluster: &ClusterRef) -> Result<Removal>;
    async fn changed(&self, timeout: Duration);
}

/// The backend of a server that offers no clusters: every call says so.
pub struct NoClusters;

#[async_trait]
impl ClusterProvisioner for NoClusters {
    fn backend_name(&self) -> &'static str {
        "none"
    }

    async fn preflight(&self) -> Result<()> {
        Ok(())
    }

    async fn apply(&self, _: &ClusterRequest) -> Result<()> {
        Err(no_clusters())
    }

    async fn observe(&self, _: &ClusterRef) -> Result<Option<ClusterObservation>> {
        Err(no_clusters())
    }

    async fn kubeconfig(&self, _: &ClusterRef) -> Result<Option<String>> {
        Err(no_clusters())
    }

    async fn delete(&self, _: &ClusterRef) -> Result<Removal> {
        Err(no_clusters())
    }

    async fn changed(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await;
    }
}

fn no_clusters() -> crate::Error {
    crate::Error::NotSupported("this server offers no Kubernetes clusters (no management cluster is configured)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// A server without a management cluster passes its preflight and refuses every cluster call
    /// as not supported, and `changed` still returns by its timeout.
    #[tokio::test]
    async fn no_clusters_refuses_every_call_as_not_supported() {
        let request = crate::testing::clusters::request("alice", "dev", 1, 1);
        let cluster = request.cluster_ref();
        NoClusters.preflight().await.expect("nothing to check");
        let refused = [
            NoClusters.apply(&request).await.err(),
            NoClusters.observe(&cluster).await.err(),
            NoClusters.kubeconfig(&cluster).await.err(),
            NoClusters.delete(&cluster).await.err(),
        ];
        for error in refused {
            assert!(matches!(error, Some(Error::NotSupported(_))), "{error:?}");
        }
        let returned =
            tokio::time::timeout(Duration::from_secs(5), NoClusters.changed(Duration::from_millis(10))).await;
        assert!(returned.is_ok(), "changed returns by its timeout");
    }
}
