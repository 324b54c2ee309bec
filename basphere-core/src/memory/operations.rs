//! Operations and their claims in memory.

use uuid::Uuid;

use super::{after, page, remember, ReadTx, State, WriteTx};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{claim_lost, OperationFilter, OperationsRead, OperationsTx};

/// What the store remembers of an operation's claims: the last fence handed out, and the
/// holder while the claim is not released.
#[derive(Clone, Debug)]
pub(super) struct ClaimRecord {
    fence: u64,
    /// (worker, expires_at); `None` once released.
    holder: Option<(String, Timestamp)>,
}

impl ClaimRecord {
    fn claim(&self) -> Option<OperationClaim> {
        self.holder.as_ref().map(|(worker, expires_at)| OperationClaim {
            worker: worker.clone(),
            fence: self.fence,
            expires_at: *expires_at,
        })
    }

    /// Whether `fence` holds the operation: current and not released.
    fn holds(&self, fence: u64) -> bool {
        self.fence == fence && self.holder.is_some()
    }
}

fn check_claim(state: &State, id: Uuid, fence: u64) -> Result<()> {
    if !state.operations.contains_key(&id) {
        return Err(Error::not_found("operation", id));
    }
    match state.claims.get(&id) {
        Some(record) if record.holds(fence) => Ok(()),
        Some(record) => Err(claim_lost(id, fence, record.fence, record.holder.is_none())),
        None => Err(claim_lost(id, fence, 0, true)),
    }
}

macro_rules! reads {
    ($ty:ty) => {
        impl OperationsRead for $ty {
            fn get_operation(&self, id: Uuid) -> Result<Option<Operation>> {
                Ok(self.state().operations.get(&id).cloned())
            }
            fn list_operations(&self, filter: &OperationFilter) -> Result<Vec<Operation>> {
                let wanted = |op: &&Operation| {
                    filter.owner.as_ref().is_none_or(|o| op.owner == *o)
                        && filter.resource.is_none_or(|r| op.resource.id == r)
                        && (!filter.unfinished || !op.state.is_finished())
                };
                if filter.newest_first {
                    let operations = &self.state().operations;
                    let older = match filter.after {
                        Some(id) => operations.range(..id),
                        None => operations.range(..),
                    };
                    return Ok(page(older.rev().map(|(_, op)| op).filter(wanted).cloned(), filter.limit));
                }
                Ok(page(after(&self.state().operations, filter.after).filter(wanted).cloned(), filter.limit))
            }
            fn operation_claim(&self, id: Uuid) -> Result<Option<OperationClaim>> {
                Ok(self.state().claims.get(&id).and_then(ClaimRecord::claim))
            }
            fn check_operation_claim(&self, id: Uuid, fence: u64) -> Result<()> {
                check_claim(self.state(), id, fence)
            }
        }
    };
}

reads!(ReadTx<'_>);
reads!(WriteTx<'_>);

impl WriteTx<'_> {
    fn set_claim(&mut self, id: Uuid, record: ClaimRecord) {
        let previous = self.state.claims.insert(id, record);
        remember!(self, claims, id, previous);
    }
}

impl OperationsTx for WriteTx<'_> {
    fn insert_operation(&mut self, operation: &Operation) -> Result<()> {
        if self.state.operations.contains_key(&operation.id) {
            return Err(Error::already_exists("operation", operation.id));
        }
        self.state.operations.insert(operation.id, operation.clone());
        remember!(self, operations, operation.id, None::<Operation>);
        Ok(())
    }

    fn update_operation(&mut self, operation: &Operation) -> Result<()> {
        if !self.state.operations.contains_key(&operation.id) {
            return Err(Error::not_found("operation", operation.id));
        }
        let previous = self.state.operations.insert(operation.id, operation.clone());
        remember!(self, operations, operation.id, previous);
        Ok(())
    }

    fn claim_operations(
        &mut self,
        worker: &str,
        now: Timestamp,
        until: Timestamp,
        only: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<(Operation, OperationClaim)>> {
        let claimable: Vec<(Operation, u64)> = self
            .state
            .operations
            .values()
            .filter(|op| only.is_none_or(|id| op.id == id) && !op.state.is_finished())
            .filter_map(|op| match self.state.claims.get(&op.id) {
                None => Some((op.clone(), 0)),
                Some(record) => match &record.holder {
                    Some((_, expires_at)) if *expires_at > now => None,
                    _ => Some((op.clone(), record.fence)),
                },
            })
            .take(limit)
            .collect();
        let mut claimed = Vec::with_capacity(claimable.len());
        for (operation, fence) in claimable {
            let record = ClaimRecord { fence: fence + 1, holder: Some((worker.to_owned(), until)) };
            let claim = record.claim().expect("just claimed");
            self.set_claim(operation.id, record);
            claimed.push((operation, claim));
        }
        Ok(claimed)
    }

    fn renew_operation_claim(&mut self, id: Uuid, fence: u64, until: Timestamp) -> Result<()> {
        check_claim(self.state, id, fence)?;
        let mut record = self.state.claims[&id].clone();
        if let Some((_, expires_at)) = &mut record.holder {
            *expires_at = until;
        }
        self.set_claim(id, record);
        Ok(())
    }

    fn release_operation_claim(&mut self, id: Uuid, fence: u64) -> Result<()> {
        let Some(record) = self.state.claims.get(&id).filter(|record| record.holds(fence)) else {
            return Ok(());
        };
        let released = ClaimRecord { fence: record.fence, holder: None };
        self.set_claim(id, released);
        Ok(())
    }
}
