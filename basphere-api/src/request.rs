//! Registration and SSH key change requests: what the public submits, and what administrators
//! see and decide.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A request for an account (public; JSON or form-encoded). Field names also accept the
/// original's (`public_key`, `g-recaptcha-response`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3-32 characters: a lowercase letter, then lowercase letters, digits and single hyphens.
    pub username: String,
    pub email: String,
    #[serde(default)]
    pub team: String,
    /// One OpenSSH public key line.
    #[serde(alias = "public_key")]
    pub ssh_key: String,
    /// The bot check's response token, when the server asks for one.
    #[serde(default, alias = "g-recaptcha-response", skip_serializing_if = "Option::is_none")]
    pub recaptcha_response: Option<String>,
}

/// A request to replace an account's SSH key (public; JSON or form-encoded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyChangeRequestBody {
    pub username: String,
    /// The account's registered email address.
    pub email: String,
    /// The new OpenSSH public key line.
    #[serde(alias = "new_public_key")]
    pub ssh_key: String,
    /// Why (lost key, rotation, ...).
    #[serde(default)]
    pub reason: String,
    #[serde(default, alias = "g-recaptcha-response", skip_serializing_if = "Option::is_none")]
    pub recaptcha_response: Option<String>,
}

/// The answer to every accepted submission, whatever became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmittedView {
    /// Always `received`.
    pub status: String,
    pub message: String,
}

/// A registration request, for administrators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationView {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub team: String,
    pub ssh_key: String,
    pub ssh_key_fingerprint: String,
    /// pending, approved or rejected.
    pub status: String,
    #[serde(serialize_with = "crate::text::time")]
    pub created_at: DateTime<Utc>,
    pub processed_by: Option<String>,
    #[serde(serialize_with = "crate::text::opt_time")]
    pub processed_at: Option<DateTime<Utc>>,
    pub reject_reason: Option<String>,
}

/// A key change request, for administrators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyChangeView {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub ssh_key: String,
    pub ssh_key_fingerprint: String,
    pub reason: String,
    /// pending, approved or rejected.
    pub status: String,
    #[serde(serialize_with = "crate::text::time")]
    pub created_at: DateTime<Utc>,
    pub processed_by: Option<String>,
    #[serde(serialize_with = "crate::text::opt_time")]
    pub processed_at: Option<DateTime<Utc>>,
    pub reject_reason: Option<String>,
}

/// Why a request is rejected; the applicant is told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    pub reason: String,
}
