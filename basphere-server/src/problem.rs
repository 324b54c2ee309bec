//! Errors as RFC 9457 problem details (`application/problem+json`), one stable `type` per kind.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use basphere_core::Error;
use serde::Serialize;
use utoipa::ToSchema;

/// The problem document sent for every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable identifier of the kind of problem, e.g. `urn:basphere:problem:quota-exceeded`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every problem found, for requests with several invalid fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// An error answered with a problem document. Internal details never reach the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub detail: String,
    pub errors: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, kind, detail: detail.into(), errors: Vec::new() }
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-input", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }
}

/// Every kind and its title, as the OpenAPI document lists them.
pub const KINDS: &[(&str, &str)] = &[
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
    ("internal", "Internal error"),
];

fn title(kind: &str) -> &'static str {
    KINDS.iter().find(|(k, _)| *k == kind).map_or("Error", |(_, title)| title)
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let (status, kind) = match &error {
            Error::InvalidInput { .. } | Error::InvalidFields(_) => (StatusCode::BAD_REQUEST, "invalid-input"),
            Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found"),
            Error::AlreadyExists { .. } | Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::QuotaExceeded { .. } => (StatusCode::FORBIDDEN, "quota-exceeded"),
            Error::Exhausted(_) => (StatusCode::CONFLICT, "conflict"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::NotSupported(_) => (StatusCode::NOT_IMPLEMENTED, "unavailable"),
            Error::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Error::Backend { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let detail = if status.is_server_error() {
            // Backend errors may carry paths or internals: log them, send a summary.
            tracing::error!(%error, "request failed");
            match kind {
                "unavailable" => "a backend is unavailable; the error was logged for the operator".to_owned(),
                "timeout" => error.to_string(),
                _ => "an internal error occurred; it was logged for the operator".to_owned(),
            }
        } else {
            error.to_string()
        };
        let mut answer = ApiError::new(status, kind, detail);
        if let Error::InvalidFields(errors) = &error {
            answer.errors = errors.iter().map(ToString::to_string).collect();
        }
        answer
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            problem_type: format!("urn:basphere:problem:{}", self.kind),
            title: title(self.kind).to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"basphere\""));
        }
        response
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;
