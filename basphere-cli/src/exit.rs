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

use hyper::StatusCode;
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

    /// Maps a problem document (RFC 9457) to an exit code and a readable message.
    pub fn from_problem(status: StatusCode, body: &Value, text: &str) -> Self {
        let kind = body["type"].as_str().and_then(|t| t.strip_prefix("urn:basphere:problem:")).unwrap_or("");
        let detail = body["detail"].as_str().map(str::to_owned).unwrap_or_else(|| format!("{status}: {}", text.trim()));
        let code = match kind {
            "invalid-input" | "payload-too-large" | "unsupported-media-type" | "method-not-allowed" => USAGE,
            "not-found" => NOT_FOUND,
            "conflict" => CONFLICT,
            "quota-exceeded" => QUOTA,
            "timeout" => TIMEOUT,
            "unauthenticated" | "forbidden" => PERMISSION,
            _ => 1,
        };
        let mut message = detail;
        if let Some(errors) = body["errors"].as_array() {
            if errors.len() > 1 {
                for error in errors.iter().filter_map(Value::as_str) {
                    message.push_str(&format!("\n  - {error}"));
                }
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
