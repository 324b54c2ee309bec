//! The audit log.

use basphere_core::model::*;
use basphere_core::store::{AuditFilter, AuditRead, AuditTx};
use basphere_core::Result;

use super::{PgTx, Select};
use crate::rows::*;

const AUDIT_COLUMNS: &str = "id, at, actor, action, resource, source, outcome, details";

impl AuditRead for PgTx<'_> {
    fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let query = Select::from(format!("SELECT {AUDIT_COLUMNS} FROM audit"))
            .when("actor = ?", filter.actor.clone())
            .when("action = ?", filter.action.clone())
            .when(if filter.newest_first { "id < ?" } else { "id > ?" }, filter.after)
            .tail(if filter.newest_first { "ORDER BY id DESC" } else { "ORDER BY id" }, filter.limit);
        self.all(&query.sql, &query.params(), audit_row)
    }
}

impl AuditTx for PgTx<'_> {
    fn append_audit(&mut self, e: &AuditEvent) -> Result<()> {
        self.insert(
            &format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
            &[&e.id, &e.at, &e.actor, &e.action, &e.resource, &e.source, &e.outcome.as_str(), &e.details.to_string()],
            "audit",
            &[("id", &e.id)],
        )
    }
}
