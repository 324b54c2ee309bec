//! API tokens.

use basphere_core::model::*;
use basphere_core::store::{TokensRead, TokensTx};
use basphere_core::validate::Username;
use basphere_core::Result;
use rusqlite::params;
use uuid::Uuid;

use super::SqlTx;
use crate::rows::*;

const TOKEN_COLUMNS: &str = "id, owner, name, scope, secret_hash, created_at, expires_at, revoked_at, last_used_at";

impl TokensRead for SqlTx<'_> {
    fn get_token(&self, id: Uuid) -> Result<Option<ApiToken>> {
        self.one(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"), [id.to_string()], token_row)
    }

    fn token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiToken>> {
        self.one(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = ?1"), [secret_hash], token_row)
    }

    fn list_tokens(&self, owner: &Username) -> Result<Vec<ApiToken>> {
        self.all(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE owner = ?1 ORDER BY id"),
            [owner.as_str()],
            token_row,
        )
    }
}

impl TokensTx for SqlTx<'_> {
    fn insert_token(&mut self, t: &ApiToken) -> Result<()> {
        self.insert(
            &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                t.id.to_string(),
                t.owner.as_str(),
                t.name,
                t.scope.as_str(),
                t.secret_hash,
                micros(t.created_at),
                t.expires_at.map(micros),
                t.revoked_at.map(micros),
                t.last_used_at.map(micros)
            ],
            "tokens",
            &[("id", &t.id), ("owner", &t.owner), ("scope", &t.scope)],
        )
    }

    fn update_token(&mut self, t: &ApiToken) -> Result<()> {
        self.update(
            "UPDATE tokens SET owner = ?2, name = ?3, scope = ?4, secret_hash = ?5, created_at = ?6, expires_at = ?7, revoked_at = ?8, last_used_at = ?9 WHERE id = ?1",
            params![t.id.to_string(), t.owner.as_str(), t.name, t.scope.as_str(), t.secret_hash, micros(t.created_at), t.expires_at.map(micros), t.revoked_at.map(micros), t.last_used_at.map(micros)],
            "token",
            t.id,
            "tokens",
            &[("id", &t.id), ("owner", &t.owner), ("scope", &t.scope)],
        )
    }
}
