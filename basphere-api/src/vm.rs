//! Virtual machines: the view, and the request that creates one or a batch.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::OperationView;

/// A virtual machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VmView {
    pub id: Uuid,
    pub name: String,
    pub owner: String,
    pub os: String,
    pub spec: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "10.254.0.32"))]
    #[serde(serialize_with = "crate::text::opt_ipv4")]
    pub ip: Option<Ipv4Addr>,
    /// pending, provisioning, running, stopped, failed, deleting, deleted or lost.
    pub state: String,
    /// Why the VM failed or was lost.
    pub reason: Option<String>,
    #[serde(serialize_with = "crate::text::time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::text::time")]
    pub updated_at: DateTime<Utc>,
}

/// A request to create one VM, or a batch named `<name>-1 .. <name>-N`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateVmsRequest {
    #[cfg_attr(feature = "openapi", schema(example = "web"))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(example = "ubuntu-24.04"))]
    pub os: String,
    #[cfg_attr(feature = "openapi", schema(example = "small"))]
    pub spec: String,
    /// 1-10; defaults to 1.
    #[serde(default = "one")]
    #[cfg_attr(feature = "openapi", schema(maximum = 10))]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// The VMs accepted and the operations that provision them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateVmsResponse {
    pub vms: Vec<VmView>,
    pub operations: Vec<OperationView>,
}
