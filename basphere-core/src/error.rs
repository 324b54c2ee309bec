//! The one error type every Basphere library speaks; backends map their own errors onto it.

use std::fmt;

/// A boxed error from a backend, kept as the `source` of [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, named by what happened rather than by where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input broke a rule; `field` names the offending input, `message` says what is accepted.
    #[error("invalid {field}: {message}")]
    InvalidInput { field: String, message: String },
    /// Several fields of a form broke their rules; each entry is an `InvalidInput`, so a user can
    /// fix them all at once.
    #[error("{}", join_messages(.0))]
    InvalidFields(Vec<Error>),
    /// The thing does not exist (or the caller may not know that it does).
    #[error("{kind} not found: {name}")]
    NotFound { kind: &'static str, name: String },
    /// A thing with this identity exists already.
    #[error("{kind} already exists: {name}")]
    AlreadyExists { kind: &'static str, name: String },
    /// The request conflicts with the current state (an operation in progress, a wrong state).
    #[error("conflict: {0}")]
    Conflict(String),
    /// This process no longer holds the claim on an operation (another took it over, or it was
    /// released): whoever holds it now runs the operation, and this process stops writing.
    #[error("conflict: {0}")]
    ClaimLost(String),
    /// Granting the request would exceed a quota.
    #[error("quota exceeded: {resource} would be {requested} of {limit}")]
    QuotaExceeded { resource: &'static str, used: u64, requested: u64, limit: u64 },
    /// A finite resource (addresses, blocks) has run out.
    #[error("exhausted: {0}")]
    Exhausted(String),
    /// The caller is not authenticated.
    #[error("unauthenticated: {0}")]
    Unauthorized(String),
    /// The caller is authenticated but may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The backend does not support this operation.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Too many requests from one place (or in all) for now; try again after `retry_after_seconds`.
    #[error("too many requests: {message}; try again in {retry_after_seconds} s")]
    RateLimited { message: String, retry_after_seconds: u64 },
    /// A backend failed; `log_tail` carries the last lines of its own log when it has one.
    #[error("{backend} backend failed: {source}")]
    Backend {
        backend: &'static str,
        #[source]
        source: BoxError,
        log_tail: Vec<String>,
    },
}

fn join_messages(errors: &[Error]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Shorthand used across the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput { field: field.into(), message: message.into() }
    }

    pub fn not_found(kind: &'static str, name: impl fmt::Display) -> Self {
        Error::NotFound { kind, name: name.to_string() }
    }

    pub fn already_exists(kind: &'static str, name: impl fmt::Display) -> Self {
        Error::AlreadyExists { kind, name: name.to_string() }
    }

    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Backend { backend, source: source.into(), log_tail: Vec::new() }
    }

    /// A stable, short name for the kind of error, used in problem types, metrics and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidInput { .. } | Error::InvalidFields(_) => "invalid-input",
            Error::NotFound { .. } => "not-found",
            Error::AlreadyExists { .. } => "already-exists",
            Error::Conflict(_) | Error::ClaimLost(_) => "conflict",
            Error::QuotaExceeded { .. } => "quota-exceeded",
            Error::Exhausted(_) => "exhausted",
            Error::Unauthorized(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::NotSupported(_) => "not-supported",
            Error::Timeout(_) => "timeout",
            Error::RateLimited { .. } => "rate-limited",
            Error::Backend { .. } => "backend",
        }
    }

    /// Transient errors that a retry may fix (timeouts and backend failures).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Timeout(_) | Error::Backend { .. })
    }
}

/// An error with a plain message, for backends without a richer error type.
#[derive(Debug)]
pub struct Message(pub String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}
