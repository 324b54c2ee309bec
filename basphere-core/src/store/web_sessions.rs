//! Browsers' sign-in links and sessions.

use crate::error::Result;
use crate::model::*;
use crate::validate::Username;

/// Reads of sign-in links and sessions.
pub trait WebSessionsRead {
    fn web_session_by_hash(&self, secret_hash: &str) -> Result<Option<WebSession>>;
}

/// Writes of sign-in links and sessions.
///
/// # Contract
///
/// - `insert_web_session`: `AlreadyExists` for a taken id or a duplicate secret hash (the error
///   names the id, never the hash); `NotFound` when the owner is not an account.
/// - `update_web_session`: `NotFound` for an unknown id.
/// - `end_web_sessions_of`: ends (sets `ended_at` of) every unended link and session of `owner`,
///   returning how many.
/// - `delete_web_sessions_before`: removes links and sessions whose absolute expiry is before
///   `before`, or that ended before it, returning how many.
/// - Links and sessions go with their account (`AccountsTx::delete_user`).
pub trait WebSessionsTx: WebSessionsRead {
    fn insert_web_session(&mut self, session: &WebSession) -> Result<()>;
    fn update_web_session(&mut self, session: &WebSession) -> Result<()>;
    fn end_web_sessions_of(&mut self, owner: &Username, at: Timestamp) -> Result<usize>;
    fn delete_web_sessions_before(&mut self, before: Timestamp) -> Result<usize>;
}
