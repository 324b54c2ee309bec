//! Operations: background work on one resource, step by step.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One step of an operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepView {
    pub name: String,
    /// pending, running, done or failed.
    pub state: String,
    #[serde(serialize_with = "crate::text::opt_time")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::text::opt_time")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// What an operation is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResourceView {
    pub kind: String,
    pub id: Uuid,
    pub name: String,
}

/// Background work on one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperationView {
    pub id: Uuid,
    /// create_vm, delete_vm, start_vm, stop_vm or reboot_vm.
    pub kind: String,
    /// queued, running, succeeded or failed.
    pub state: String,
    pub owner: String,
    pub resource: ResourceView,
    pub steps: Vec<StepView>,
    pub error: Option<String>,
    /// The last lines of the backend's log.
    pub log_tail: Vec<String>,
    pub requested_by: String,
    #[serde(serialize_with = "crate::text::time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::text::time")]
    pub updated_at: DateTime<Utc>,
}

impl OperationView {
    /// Whether the operation has ended (`succeeded` or `failed`): its document no longer changes.
    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed")
    }

    /// The step running now, else the next one to run.
    pub fn current_step(&self) -> Option<&StepView> {
        self.steps.iter().find(|s| s.state == "running").or_else(|| self.steps.iter().find(|s| s.state == "pending"))
    }
}
