//! Events: the audit log (written in the same transaction as the change it records, or alone
//! for refusals) and notifications to people.

use super::authz::{decide, Action, Actor};
use super::{page, Page, PageRequest, Runtime};
use crate::error::{Error, Result};
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

impl Runtime {
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
    pub(crate) async fn audit(
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

    /// Records a refused request's audit event in its own transaction (the request's own, which
    /// would have held it, did not commit): `denied` for quota and authorization, `failure`
    /// otherwise, with the error in `details` (an object). Accepted requests are audited in
    /// their transaction instead, so `Ok` records nothing here.
    pub(crate) async fn audit_refusal<T>(
        &self,
        actor: &Actor,
        action: &str,
        resource: &str,
        result: &Result<T>,
        mut details: serde_json::Value,
    ) {
        let Err(error) = result else { return };
        let outcome = match error {
            Error::QuotaExceeded { .. } | Error::Forbidden(_) => Outcome::Denied,
            _ => Outcome::Failure,
        };
        details["error"] = serde_json::Value::String(crate::validate::bounded(&error.to_string()));
        self.audit(actor, action, resource, outcome, details).await;
    }
}
