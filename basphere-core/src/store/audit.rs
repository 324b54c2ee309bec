//! The audit log.

use crate::error::Result;
use crate::model::*;
use uuid::Uuid;

/// Which audit events to list, ordered by id (time order).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Only events of this action (`vm.create`).
    pub action: Option<String>,
    /// Newest first: `after` then means "older than".
    pub newest_first: bool,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// Reads of the audit log.
pub trait AuditRead {
    fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>>;
}

/// Appends to the audit log.
///
/// # Contract
///
/// - `append_audit`: `AlreadyExists` for a taken id. Events are never changed or removed.
pub trait AuditTx: AuditRead {
    fn append_audit(&mut self, event: &AuditEvent) -> Result<()>;
}
