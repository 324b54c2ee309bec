//! Browsers' sign-in links and sessions.

use basphere_core::model::*;
use basphere_core::store::{WebSessionsRead, WebSessionsTx};
use basphere_core::validate::Username;
use basphere_core::Result;

use super::{Param, PgTx};
use crate::rows::*;

const COLUMNS: &str =
    "id, kind, owner, actor_name, role, secret_hash, created_at, expires_at, last_seen_at, ended_at, token_id";

impl WebSessionsRead for PgTx<'_> {
    fn web_session_by_hash(&self, secret_hash: &str) -> Result<Option<WebSession>> {
        self.one(
            &format!("SELECT {COLUMNS} FROM web_sessions WHERE secret_hash = $1"),
            &[&secret_hash],
            web_session_row,
        )
    }
}

impl PgTx<'_> {
    fn write_web_session(&self, statement: &str, s: &WebSession, missing: bool) -> Result<()> {
        let owner = s.owner.as_ref().map(|owner| owner.to_string()).unwrap_or_default();
        let params: [Param<'_>; 11] = [
            &s.id,
            &s.kind.as_str(),
            &s.owner.as_ref().map(Username::as_str),
            &s.actor_name,
            &s.role.as_str(),
            &s.secret_hash,
            &s.created_at,
            &s.expires_at,
            &s.last_seen_at,
            &s.ended_at,
            &s.token_id,
        ];
        let values: super::Values<'_> = &[("id", &s.id), ("owner", &owner), ("kind", &s.kind), ("role", &s.role)];
        if missing {
            self.insert(statement, &params, "web_sessions", values)
        } else {
            self.update(statement, &params, "web session", s.id, "web_sessions", values)
        }
    }
}

impl WebSessionsTx for PgTx<'_> {
    fn insert_web_session(&mut self, s: &WebSession) -> Result<()> {
        self.write_web_session(
            &format!("INSERT INTO web_sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
            s,
            true,
        )
    }

    fn update_web_session(&mut self, s: &WebSession) -> Result<()> {
        self.write_web_session(
            "UPDATE web_sessions SET kind = $2, owner = $3, actor_name = $4, role = $5, secret_hash = $6, created_at = $7, expires_at = $8, last_seen_at = $9, ended_at = $10, token_id = $11 WHERE id = $1",
            s,
            false,
        )
    }

    fn end_web_sessions_of(&mut self, owner: &Username, at: Timestamp) -> Result<usize> {
        self.exec(
            "UPDATE web_sessions SET ended_at = $2 WHERE owner = $1 AND ended_at IS NULL",
            &[&owner.as_str(), &at],
        )
    }

    fn delete_web_sessions_before(&mut self, before: Timestamp) -> Result<usize> {
        self.exec("DELETE FROM web_sessions WHERE expires_at < $1 OR ended_at < $1", &[&before])
    }
}
