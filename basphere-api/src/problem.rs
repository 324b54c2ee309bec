//! The problem document (RFC 9457, `application/problem+json`) every error is answered with.

use serde::{Deserialize, Serialize};

/// What every problem `type` starts with; the rest is the kind (`quota-exceeded`).
pub const PROBLEM_TYPE_PREFIX: &str = "urn:basphere:problem:";

/// The media type of problem documents.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Every kind of problem and its title. Clients decide by kind (an exit code, a retry), so a
/// kind is never renamed; new kinds may be added.
pub const PROBLEM_KINDS: &[(&str, &str)] = &[
    ("invalid-input", "Invalid input"),
    ("not-found", "Not found"),
    ("conflict", "Conflict"),
    ("quota-exceeded", "Quota exceeded"),
    ("forbidden", "Forbidden"),
    ("unauthenticated", "Unauthenticated"),
    ("unavailable", "Unavailable"),
    ("payload-too-large", "Payload too large"),
    ("unsupported-media-type", "Unsupported media type"),
    ("method-not-allowed", "Method not allowed"),
    ("timeout", "Timed out"),
    ("rate-limited", "Too many requests"),
    ("internal", "Internal error"),
];

/// The problem document sent for every error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A stable identifier of the kind of problem, e.g. `urn:basphere:problem:quota-exceeded`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every problem found, for requests with several invalid fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Problem {
    /// A problem of `kind` (one of `PROBLEM_KINDS`), titled after it.
    pub fn new(kind: &str, status: u16, detail: impl Into<String>) -> Self {
        Problem {
            problem_type: format!("{PROBLEM_TYPE_PREFIX}{kind}"),
            title: title(kind).to_owned(),
            status,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// The kind (`quota-exceeded`), or `None` for a type that is not Basphere's.
    pub fn kind(&self) -> Option<&str> {
        self.problem_type.strip_prefix(PROBLEM_TYPE_PREFIX)
    }
}

/// The title of a kind of problem (`Error` for a kind this version does not know).
pub fn title(kind: &str) -> &'static str {
    PROBLEM_KINDS.iter().find(|(k, _)| *k == kind).map_or("Error", |(_, title)| title)
}
