//! The outbox: notifications written in the same transaction as the change that caused them,
//! delivered later by a dispatcher.

use crate::error::Result;
use crate::model::*;
use uuid::Uuid;

/// Which outbox messages to list, ordered by id (creation order).
#[derive(Clone, Debug, Default)]
pub struct OutboxFilter {
    pub state: Option<OutboxState>,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// Reads of the outbox.
pub trait OutboxRead {
    fn get_outbox(&self, id: Uuid) -> Result<Option<OutboxMessage>>;
    fn list_outbox(&self, filter: &OutboxFilter) -> Result<Vec<OutboxMessage>>;
}

/// Writes of the outbox.
///
/// # Contract
///
/// - `insert_outbox`: `AlreadyExists` for a taken id.
/// - `claim_outbox` takes up to `limit` `Pending` messages due at `now`
///   (`next_attempt_at <= now`), the longest due first (by `next_attempt_at`, then id), and sets
///   their `claimed_by` to `worker` and their `next_attempt_at` to `until`, so that a dispatcher that dies holding them leaves them
///   due again at `until`, and no other dispatcher takes them before. Returns them as stored
///   after the claim. `Delivered` and `Dead` messages are never claimed.
/// - `update_outbox` replaces the stored message; `NotFound` when it is absent.
pub trait OutboxTx: OutboxRead {
    fn insert_outbox(&mut self, message: &OutboxMessage) -> Result<()>;
    fn claim_outbox(
        &mut self,
        worker: &str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>>;
    fn update_outbox(&mut self, message: &OutboxMessage) -> Result<()>;
}
