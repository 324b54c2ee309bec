//! Kubernetes clusters: the view with its conditions, and the requests that create and scale
//! one.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::OperationView;

/// A Kubernetes cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterView {
    pub id: Uuid,
    pub name: String,
    pub owner: String,
    /// The cluster type (`dev`, `standard`, ...).
    #[serde(rename = "type")]
    pub cluster_type: String,
    pub kubernetes_version: String,
    pub control_plane_count: u32,
    pub control_plane_spec: String,
    pub worker_count: u32,
    pub worker_spec: String,
    /// The control-plane endpoint (a VIP, never a node's address).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10.254.0.40"))]
    #[serde(serialize_with = "crate::text::opt_ipv4")]
    pub control_plane_ip: Option<Ipv4Addr>,
    /// pending, provisioning, ready, failed, deleting or deleted.
    pub state: String,
    /// Why it failed, or what it waits for.
    pub reason: Option<String>,
    /// The management cluster's phase, for display (the state comes from the conditions).
    pub phase: Option<String>,
    pub conditions: Vec<ClusterConditionView>,
    pub control_plane_ready: u32,
    pub workers_ready: u32,
    /// The node addresses the cluster holds (every node plus the rollout surge).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub node_addresses: Vec<Ipv4Addr>,
    #[serde(serialize_with = "crate::text::time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::text::time")]
    pub updated_at: DateTime<Utc>,
}

/// A Kubernetes-style condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterConditionView {
    #[serde(rename = "type")]
    pub kind: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    #[serde(serialize_with = "crate::text::opt_time")]
    pub since: Option<DateTime<Utc>>,
}

/// A request to create a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateClusterRequest {
    #[cfg_attr(feature = "openapi", schema(example = "dev"))]
    pub name: String,
    /// A cluster type from the catalog (`development` and `production` stand for `dev` and
    /// `standard`).
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(example = "dev"))]
    pub cluster_type: String,
    /// A node spec for the workers; the type's default when absent.
    #[serde(default)]
    pub worker_spec: Option<String>,
    /// How many workers; the type's count when absent.
    #[serde(default)]
    pub workers: Option<u32>,
}

/// The cluster accepted and the operation that builds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateClusterResponse {
    pub cluster: ClusterView,
    pub operation: OperationView,
}

/// A new worker count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScaleClusterRequest {
    #[cfg_attr(feature = "openapi", schema(example = 3))]
    pub workers: u32,
}

/// A cluster's admin kubeconfig.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KubeconfigView {
    pub cluster: String,
    /// The kubeconfig YAML; keep it like a password (mode 600).
    pub kubeconfig: String,
}

/// A cluster type of the catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogClusterType {
    pub key: String,
    pub description: String,
    pub control_plane_count: u32,
    pub worker_count: u32,
    pub control_plane_spec: String,
    pub worker_spec: String,
}

/// A node spec of the catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogNodeSpec {
    pub key: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
}
