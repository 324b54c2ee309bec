//! Errors as RFC 9457 problem details (`application/problem+json`), one stable `type` per kind.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
pub use basphere_api::Problem;
use basphere_api::PROBLEM_CONTENT_TYPE;
use basphere_core::Error;

/// An error answered with a problem document. Internal details never reach the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub detail: String,
    pub errors: Vec<String>,
    /// Seconds until a rate-limited caller may try again (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, kind, detail: detail.into(), errors: Vec::new(), retry_after: None }
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

/// Every kind and its title (the wire crate's list, which clients share).
pub use basphere_api::PROBLEM_KINDS as KINDS;

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let (status, kind) = match &error {
            Error::InvalidInput { .. } | Error::InvalidFields(_) => (StatusCode::BAD_REQUEST, "invalid-input"),
            Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found"),
            Error::AlreadyExists { .. } | Error::Conflict(_) | Error::ClaimLost(_) => {
                (StatusCode::CONFLICT, "conflict")
            }
            Error::QuotaExceeded { .. } => (StatusCode::FORBIDDEN, "quota-exceeded"),
            Error::Exhausted(_) => (StatusCode::CONFLICT, "conflict"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::NotSupported(_) => (StatusCode::NOT_IMPLEMENTED, "unavailable"),
            Error::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate-limited"),
            Error::Backend { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let detail = if let Error::NotSupported(_) = &error {
            // What this server does not offer, as Basphere words it (`networks.mode: flat`): the
            // detail names what would change that, and nothing failed.
            error.to_string()
        } else if status.is_server_error() {
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
        match &error {
            Error::InvalidFields(errors) => answer.errors = errors.iter().map(ToString::to_string).collect(),
            Error::RateLimited { retry_after_seconds, .. } => answer.retry_after = Some(*retry_after_seconds),
            _ => {}
        }
        answer
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem { errors: self.errors, ..Problem::new(self.kind, self.status.as_u16(), self.detail) };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"basphere\""));
        }
        response
    }
}

/// Middleware (`map_response`): an error answered without a body by a layer rather than a
/// handler (the request timeout's 504) becomes a problem document like every other error.
pub async fn bodiless_errors_as_problems(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let (kind, detail) = match status {
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => {
            ("timeout", "the request took longer than 30 seconds; work it started goes on (see /api/v1/operations)")
        }
        status if status.is_server_error() => {
            ("internal", "an internal error occurred; it was logged for the operator")
        }
        _ => ("invalid-input", "the request was refused"),
    };
    ApiError::new(status, kind, detail).into_response()
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};

    use super::*;

    async fn problem_of(response: Response) -> (StatusCode, Option<String>, Problem) {
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = to_bytes(response.into_body(), 64 * 1024).await.expect("body");
        (status, content_type, serde_json::from_slice(&body).expect("a problem document"))
    }

    #[tokio::test]
    async fn the_request_timeout_is_answered_with_a_problem_document() {
        let timed_out = (StatusCode::GATEWAY_TIMEOUT, Body::empty()).into_response();
        let (status, content_type, problem) = problem_of(bodiless_errors_as_problems(timed_out).await).await;
        assert_eq!((status, content_type.as_deref()), (StatusCode::GATEWAY_TIMEOUT, Some(PROBLEM_CONTENT_TYPE)));
        assert_eq!((problem.kind(), problem.status), (Some("timeout"), 504));
        assert!(problem.detail.contains("30 seconds"), "{}", problem.detail);
    }

    #[tokio::test]
    async fn what_the_server_does_not_offer_is_said_and_a_backend_s_failure_is_not() {
        let off = Error::NotSupported("tenant networks are off (networks.mode: flat)".into());
        let (status, _, problem) = problem_of(ApiError::from(off).into_response()).await;
        assert_eq!((status, problem.kind()), (StatusCode::NOT_IMPLEMENTED, Some("unavailable")));
        assert_eq!(problem.detail, "not supported: tenant networks are off (networks.mode: flat)");
        let failed = Error::backend("linux", "`ip netns add` on host-7: permission denied".to_owned());
        let (status, _, problem) = problem_of(ApiError::from(failed).into_response()).await;
        assert_eq!((status, problem.kind()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")));
        assert!(!problem.detail.contains("host-7"), "{}", problem.detail);
    }

    #[tokio::test]
    async fn answers_with_a_body_or_without_an_error_are_left_alone() {
        let problem = ApiError::not_found("vm not found: web").into_response();
        let (status, _, kept) = problem_of(bodiless_errors_as_problems(problem).await).await;
        assert_eq!((status, kept.detail.as_str()), (StatusCode::NOT_FOUND, "vm not found: web"));
        let accepted = bodiless_errors_as_problems((StatusCode::ACCEPTED, Body::empty()).into_response()).await;
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
        assert!(accepted.headers().get(header::CONTENT_TYPE).is_none());
    }
}
