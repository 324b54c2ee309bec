//! Starting an operation on a resource: the busy check, the operation record and its audit
//! event, written in the caller's transaction together with the resource's new state. Every
//! resource module starts its background work here, so "one thing at a time per resource" and
//! "every accepted change is audited" hold for each kind alike.

use std::fmt::Display;

use serde_json::Value;

use super::authz::Actor;
use crate::error::{Error, Result};
use crate::model::{AuditEvent, Operation, Outcome};
use crate::store::{OperationFilter, StoreRead, StoreTx};

/// Which unfinished operations make a resource busy: those `filter` lists (it is narrowed to
/// unfinished ones) that `concerns` keeps.
pub struct Busy<F: Fn(&Operation) -> bool> {
    pub filter: OperationFilter,
    pub concerns: F,
}

/// The unfinished operations on one resource (by its id).
pub fn on_resource(id: uuid::Uuid) -> Busy<fn(&Operation) -> bool> {
    Busy { filter: OperationFilter { resource: Some(id), ..OperationFilter::default() }, concerns: |_| true }
}

/// Refuses when the resource has an unfinished operation: `Conflict` naming `what` (`vm web`,
/// `the account alice`) and the operation in progress.
pub fn ensure_idle<F: Fn(&Operation) -> bool>(tx: &dyn StoreRead, busy: Busy<F>, what: impl Display) -> Result<()> {
    let filter = OperationFilter { unfinished: true, ..busy.filter };
    let unfinished = tx.list_operations(&filter)?;
    match unfinished.iter().find(|operation| (busy.concerns)(operation)) {
        Some(operation) => {
            Err(Error::Conflict(format!("{what} has an operation in progress ({} {})", operation.kind, operation.id)))
        }
        None => Ok(()),
    }
}

/// Records `operation` and its audit event (`action` on `resource`, by `actor`) in `tx`.
pub fn record_operation(
    tx: &mut dyn StoreTx,
    actor: &Actor,
    operation: &Operation,
    action: &str,
    resource: &str,
    details: Value,
) -> Result<()> {
    tx.insert_operation(operation)?;
    tx.append_audit(&AuditEvent::new(&actor.name, action, resource, &actor.source, Outcome::Success, details))
}

/// Records an audit event of `actor`'s in `tx` (a change that starts no operation).
pub fn audit_in(tx: &mut dyn StoreTx, actor: &Actor, action: &str, resource: &str, details: Value) -> Result<()> {
    tx.append_audit(&AuditEvent::new(&actor.name, action, resource, &actor.source, Outcome::Success, details))
}
