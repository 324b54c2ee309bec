//! Operations, and the claims by which workers (in one process or several) take them on.

use crate::error::Result;
use crate::model::*;
use crate::validate::Username;
use uuid::Uuid;

/// Which operations to list, ordered by id (creation order).
#[derive(Clone, Debug, Default)]
pub struct OperationFilter {
    pub owner: Option<Username>,
    pub resource: Option<Uuid>,
    /// Only operations not yet succeeded or failed.
    pub unfinished: bool,
    /// Newest first: `after` then means "older than".
    pub newest_first: bool,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// Reads of operations and their claims.
pub trait OperationsRead {
    fn get_operation(&self, id: Uuid) -> Result<Option<Operation>>;
    fn list_operations(&self, filter: &OperationFilter) -> Result<Vec<Operation>>;

    /// The operation's current claim. `None`: never claimed, or released (also for an unknown
    /// operation).
    fn operation_claim(&self, id: Uuid) -> Result<Option<OperationClaim>>;
    /// `Ok(())` when `fence` is the operation's current fence and the claim is not released
    /// (even if its time expired: nobody took it over); `ClaimLost` ("... claim on operation X
    /// was taken over ...") otherwise; `NotFound` for an unknown operation.
    fn check_operation_claim(&self, id: Uuid, fence: u64) -> Result<()>;
}

/// Writes of operations and their claims.
///
/// # Contract
///
/// - `insert_operation`: `AlreadyExists` for a taken id. A new operation has no claim.
/// - `update_operation`: `NotFound` for an unknown operation. It never changes the claim: a
///   worker checks its fence ([`OperationsRead::check_operation_claim`]) in the same
///   transaction as the update, so a worker whose claim was taken over cannot write.
/// - A claim is a worker's name, a fence and an expiry. Fences grow by one with every claim of an
///   operation and are never reused, not even after a release, so an old fence never becomes
///   current again.
/// - `claim_operations` claims up to `limit` unfinished (queued or running) operations that have
///   no claim or whose claim expired at `now` (`expires_at <= now`), oldest (smallest id) first;
///   with `only`, just that operation, if it is claimable (otherwise, or when it is unknown,
///   nothing). Each claimed operation gets `worker`, `expires_at = until`, and its previous fence
///   plus one. Operations held by an unexpired claim, the caller's own included, are skipped,
///   never waited for (the holder extends its claim with `renew_operation_claim`). Finished
///   operations are never claimed. Returns the operations with their new claims. (Shaped so
///   that PostgreSQL can do it with `FOR UPDATE SKIP LOCKED`.)
/// - `renew_operation_claim` extends the claim to `until` when `fence` is still current and not
///   released (even after it expired, if nobody took it over); `Conflict` otherwise; `NotFound`
///   for an unknown operation.
/// - `release_operation_claim` releases the claim when `fence` is current (the fence counter
///   stays); a no-op otherwise.
pub trait OperationsTx: OperationsRead {
    fn insert_operation(&mut self, operation: &Operation) -> Result<()>;
    fn update_operation(&mut self, operation: &Operation) -> Result<()>;

    fn claim_operations(
        &mut self,
        worker: &str,
        now: Timestamp,
        until: Timestamp,
        only: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<(Operation, OperationClaim)>>;
    fn renew_operation_claim(&mut self, id: Uuid, fence: u64, until: Timestamp) -> Result<()>;
    fn release_operation_claim(&mut self, id: Uuid, fence: u64) -> Result<()>;
}

/// The [`ClaimLost`](crate::Error::ClaimLost) a backend returns when `fence` no longer holds operation `id`: a newer claim
/// took it over (`current` is its fence), or the claim was released.
pub fn claim_lost(id: Uuid, fence: u64, current: u64, released: bool) -> crate::Error {
    if current != fence {
        crate::Error::ClaimLost(format!(
            "the claim on operation {id} was taken over: fence {fence} is stale, the current fence is {current}"
        ))
    } else if released {
        crate::Error::ClaimLost(format!(
            "the claim on operation {id} was taken over or released: fence {fence} no longer holds it"
        ))
    } else {
        crate::Error::ClaimLost(format!("the claim on operation {id} was taken over"))
    }
}
