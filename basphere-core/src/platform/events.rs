//! Events: the audit log (written in the same transaction as the change it records, or alone
//! for refusals) and notifications to people.

use super::authz::{decide, Action, Actor};
use super::{page, Page, PageRequest, Platform};
use crate::error::Result;
use crate::model::*;
use crate::store::{AuditFilter, StoreExt};

/// Which audit events to list: one actor's, one action's, and a page (oldest first, or newest
/// first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub newest_first: bool,
    pub page: PageRequest,
}

impl Platform {
    /// The audit log, oldest first (administrators).
    pub async fn audit_log(&self, actor: &Actor, query: AuditQuery) -> Result<Page<AuditEvent>> {
        decide(actor, Action::Administer, None, "audit", &"")?;
        let limit = query.page.limit(PageRequest::AUDIT)?;
        let filter = AuditFilter {
            actor: query.actor,
            action: query.action,
            newest_first: query.newest_first,
            after: query.page.after,
            limit: Some(limit + 1),
        };
        let events = self.read(move |store| store.query(|tx| tx.list_audit(&filter))).await?;
        Ok(page(events, limit, |event| event.id))
    }

    /// Records an audit event in its own transaction; failures are logged, not returned.
    pub(super) async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        resource: &str,
        outcome: Outcome,
        details: serde_json::Value,
    ) {
        let event = AuditEvent::new(&actor.name, action, resource, &actor.source, outcome, details);
        if let Err(error) = self.db(move |store, _| store.write(&mut |tx| tx.append_audit(&event))).await {
            tracing::error!(%error, "audit event could not be recorded");
        }
    }
}
