//! The public service endpoints: liveness and readiness.

use serde::{Deserialize, Serialize};

/// `GET /healthz`: the process serves requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz`: whether the store and the VM backend can serve. The fields are in the order
/// the server has always sent them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// `ok`, or why the VM backend's preflight failed.
    pub backend: String,
    /// `ok` or `unavailable`.
    pub store: String,
    /// The VM backend in use: simulated, terraform or vsphere-api.
    pub vm_backend: String,
}
