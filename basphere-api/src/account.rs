//! Accounts: who you are, your limits, the catalog you choose from, and the administrator's
//! requests that create accounts and change their limits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The caller: who the server believes you are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeView {
    /// The account name, or `root` / `uid-N` for the system administrator.
    pub name: String,
    /// user or admin.
    pub role: String,
    /// How the server identified you (`unix:uid=1001,pid=...` or `tcp:127.0.0.1:...`).
    pub source: String,
    pub account: Option<UserView>,
}

/// An account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    pub username: String,
    pub email: String,
    pub team: String,
    /// user or admin.
    pub role: String,
    /// active or suspended.
    pub status: String,
    /// The bastion login's uid, which identifies the account on the Unix socket.
    pub uid: Option<u32>,
    pub ssh_key_fingerprint: String,
    #[serde(serialize_with = "crate::text::time")]
    pub created_at: DateTime<Utc>,
}

/// An account created by an administrator (the approval of a registration, done by hand).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub username: String,
    pub email: String,
    #[serde(default)]
    pub team: String,
    /// One OpenSSH public key line.
    pub ssh_key: String,
    /// The bastion login's uid, so the account is recognised on the Unix socket.
    pub uid: Option<u32>,
    #[serde(default)]
    pub admin: bool,
}

/// Limits and what is used of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaView {
    pub limits: QuotaNumbers,
    pub usage: QuotaNumbers,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaNumbers {
    pub vms: u64,
    pub clusters: u64,
    pub ips: u64,
    pub vcpus: u64,
    pub memory_mb: u64,
    pub disk_gb: u64,
    /// Limits only: nodes per cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes_per_cluster: Option<u64>,
}

/// An administrator's change to one account's limits; absent fields keep the default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrideRequest {
    pub vms: Option<u64>,
    pub clusters: Option<u64>,
    pub nodes_per_cluster: Option<u64>,
    pub ips: Option<u64>,
    pub vcpus: Option<u64>,
    pub memory_mb: Option<u64>,
    pub disk_gb: Option<u64>,
}

/// The catalog: what may be asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogView {
    pub os: Vec<CatalogOs>,
    pub specs: Vec<CatalogSpec>,
    /// Cluster types, and the node specs their workers may use.
    #[serde(default)]
    pub cluster_types: Vec<crate::CatalogClusterType>,
    #[serde(default)]
    pub node_specs: Vec<crate::CatalogNodeSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogOs {
    pub key: String,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogSpec {
    pub key: String,
    pub description: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
}
