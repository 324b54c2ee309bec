//! API tokens.

use crate::error::Result;
use crate::model::*;
use crate::validate::Username;
use uuid::Uuid;

/// Reads of API tokens.
pub trait TokensRead {
    fn get_token(&self, id: Uuid) -> Result<Option<ApiToken>>;
    fn token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiToken>>;
    /// The owner's tokens ordered by id.
    fn list_tokens(&self, owner: &Username) -> Result<Vec<ApiToken>>;
}

/// Writes of API tokens.
///
/// # Contract
///
/// - `insert_token`: `AlreadyExists` for a taken id or a duplicate secret hash (the error names
///   the token's id, never its hash); `NotFound` when the owner is not an account.
/// - `update_token`: `NotFound` for an unknown token; the same hash uniqueness.
/// - Tokens go with their account (`AccountsTx::delete_user`).
pub trait TokensTx: TokensRead {
    fn insert_token(&mut self, token: &ApiToken) -> Result<()>;
    fn update_token(&mut self, token: &ApiToken) -> Result<()>;
}
