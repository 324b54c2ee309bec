//! API tokens.

use basphere_core::model::*;
use basphere_core::store::{TokensRead, TokensTx};
use basphere_core::validate::Username;
use basphere_core::Result;
use uuid::Uuid;

use super::{Param, PgTx};
use crate::rows::*;

const TOKEN_COLUMNS: &str = "id, owner, name, scope, secret_hash, created_at, expires_at, revoked_at, last_used_at";

impl TokensRead for PgTx<'_> {
    fn get_token(&self, id: Uuid) -> Result<Option<ApiToken>> {
        self.one(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"), &[&id], token_row)
    }

    fn token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiToken>> {
        self.one(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = $1"), &[&secret_hash], token_row)
    }

    fn list_tokens(&self, owner: &Username) -> Result<Vec<ApiToken>> {
        self.all(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE owner = $1 ORDER BY id"),
            &[&owner.as_str()],
            token_row,
        )
    }
}

impl PgTx<'_> {
    fn write_token(&self, statement: &str, t: &ApiToken, missing: bool) -> Result<()> {
        let params: [Param<'_>; 9] = [
            &t.id,
            &t.owner.as_str(),
            &t.name,
            &t.scope.as_str(),
            &t.secret_hash,
            &t.created_at,
            &t.expires_at,
            &t.revoked_at,
            &t.last_used_at,
        ];
        let values: super::Values<'_> = &[("id", &t.id), ("owner", &t.owner), ("scope", &t.scope)];
        if missing {
            self.insert(statement, &params, "tokens", values)
        } else {
            self.update(statement, &params, "token", t.id, "tokens", values)
        }
    }
}

impl TokensTx for PgTx<'_> {
    fn insert_token(&mut self, t: &ApiToken) -> Result<()> {
        self.write_token(
            &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            t,
            true,
        )
    }

    fn update_token(&mut self, t: &ApiToken) -> Result<()> {
        self.write_token(
            "UPDATE tokens SET owner = $2, name = $3, scope = $4, secret_hash = $5, created_at = $6, expires_at = $7, revoked_at = $8, last_used_at = $9 WHERE id = $1",
            t,
            false,
        )
    }
}
