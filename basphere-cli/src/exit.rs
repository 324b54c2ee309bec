//! Errors and the exit codes they map to. The codes are part of the CLI's contract:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other error |
//! | 2 | usage error, or input the server refused as invalid |
//! | 3 | not found |
//! | 4 | conflict (exists already, operation in progress, wrong state) |
//! | 5 | quota exceeded |
//! | 6 | timed out (including `--wait`) |
//! | 7 | server unreachable |
//! | 8 | not authenticated or not allowed |
//! | 9 | the awaited operation failed |

use basphere_api::Problem;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::Value;

pub const USAGE: i32 = 2;
pub const NOT_FOUND: i32 = 3;
pub const CONFLICT: i32 = 4;
pub const QUOTA: i32 = 5;
pub const TIMEOUT: i32 = 6;
pub const UNREACHABLE: i32 = 7;
pub const PERMISSION: i32 = 8;
pub const OPERATION_FAILED: i32 = 9;

/// An error with the exit code it ends the program with.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError { code, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(TIMEOUT, message)
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(UNREACHABLE, message)
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self::new(1, message)
    }

    /// Maps a problem document (RFC 9457) to an exit code and a readable message; an answer
    /// that is not one (a proxy's error page, say) keeps its status and text.
    pub fn from_problem(status: StatusCode, body: &Value, text: &str) -> Self {
        let Ok(problem) = Problem::deserialize(body) else {
            return CliError::new(1, format!("{status}: {}", text.trim()));
        };
        let code = match problem.kind().unwrap_or("") {
            "invalid-input" | "payload-too-large" | "unsupported-media-type" | "method-not-allowed" => USAGE,
            "not-found" => NOT_FOUND,
            "conflict" => CONFLICT,
            "quota-exceeded" => QUOTA,
            "timeout" => TIMEOUT,
            "unauthenticated" | "forbidden" => PERMISSION,
            _ => 1,
        };
        let mut message = problem.detail;
        if problem.errors.len() > 1 {
            for error in &problem.errors {
                message.push_str(&format!("\n  - {error}"));
            }
        }
        CliError::new(code, message)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        CliError::other(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_map_to_exit_codes_and_keep_every_message() {
        let body = serde_json::json!({
            "type": "urn:basphere:problem:invalid-input", "title": "Invalid input", "status": 400,
            "detail": "two problems", "errors": ["name: too long", "os: unknown"],
        });
        let error = CliError::from_problem(StatusCode::BAD_REQUEST, &body, &body.to_string());
        assert_eq!(error.code, USAGE);
        assert_eq!(error.message, "two problems\n  - name: too long\n  - os: unknown");
        let quota = serde_json::json!({
            "type": "urn:basphere:problem:quota-exceeded", "title": "Quota exceeded", "status": 403, "detail": "vms 10/10",
        });
        assert_eq!(CliError::from_problem(StatusCode::FORBIDDEN, &quota, "").code, QUOTA);
    }

    #[test]
    fn an_answer_that_is_not_a_problem_keeps_its_status_and_text() {
        let error = CliError::from_problem(StatusCode::BAD_GATEWAY, &Value::Null, "<html>bad gateway</html>\n");
        assert_eq!((error.code, error.message.as_str()), (1, "502 Bad Gateway: <html>bad gateway</html>"));
    }
}
