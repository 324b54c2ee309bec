//! What only administrators read: the audit log, the notification outbox and the
//! reconciliation with vSphere.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One audit event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditView {
    pub id: Uuid,
    #[serde(serialize_with = "crate::text::time")]
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub source: String,
    /// success, failure or denied.
    pub outcome: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

/// A notification in the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutboxView {
    pub id: Uuid,
    /// The event's name, e.g. `vm_ready`.
    pub event: String,
    /// The event as delivered.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: serde_json::Value,
    /// pending, delivered or dead.
    pub state: String,
    pub attempts: u32,
    #[serde(serialize_with = "crate::text::time")]
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::text::time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::text::opt_time")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// The notifier channel it is for (`log`, `webhook`, `email`); empty: every channel.
    #[serde(default)]
    pub channel: String,
}

/// The last reconciliation of the store with vSphere.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReconcileView {
    #[serde(serialize_with = "crate::text::opt_time")]
    pub at: Option<DateTime<Utc>>,
    /// `owner/name` of VMs that vanished from vSphere (now `lost`).
    pub lost: Vec<String>,
    /// `owner/name` of lost VMs that are back.
    pub found: Vec<String>,
    /// VMs whose power state was changed outside Basphere.
    pub power_changed: Vec<PowerChangeView>,
    /// VMs in Basphere's folders that Basphere does not know: reported, never deleted.
    pub strays: Vec<StrayView>,
    /// `owner/name` of VMs imported from the original Basphere whose vSphere VM is now marked as
    /// Basphere's (absent in answers of older servers).
    #[serde(default)]
    pub adopted: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PowerChangeView {
    pub vm: String,
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StrayView {
    pub vsphere_name: String,
    pub folder: String,
    pub backend_id: String,
}
