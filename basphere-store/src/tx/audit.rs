//! The audit log.

use basphere_core::model::*;
use basphere_core::store::{AuditFilter, AuditRead, AuditTx};
use basphere_core::Result;
use rusqlite::params;

use super::{Select, SqlTx};
use crate::rows::*;

const AUDIT_COLUMNS: &str = "id, at, actor, action, resource, source, outcome, details";

impl AuditRead for SqlTx<'_> {
    fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let (query, values) = Select::from(format!("SELECT {AUDIT_COLUMNS} FROM audit"))
            .when("actor = ?", filter.actor.clone())
            .when("action = ?", filter.action.clone())
            .when(if filter.newest_first { "id < ?" } else { "id > ?" }, filter.after.map(|id| id.to_string()))
            .tail(if filter.newest_first { "ORDER BY id DESC" } else { "ORDER BY id" }, filter.limit);
        self.all(&query, rusqlite::params_from_iter(values), audit_row)
    }
}

impl AuditTx for SqlTx<'_> {
    fn append_audit(&mut self, e: &AuditEvent) -> Result<()> {
        self.insert(
            &format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                e.id.to_string(),
                micros(e.at),
                e.actor,
                e.action,
                e.resource,
                e.source,
                e.outcome.as_str(),
                e.details.to_string()
            ],
            "audit",
            &[("id", &e.id)],
        )
    }
}
