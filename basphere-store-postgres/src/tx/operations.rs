//! Operations and their claims. A claim is three columns of the operation's row
//! (`claim_worker`, `claim_fence`, `claim_expires_at`); `update_operation` never writes them.
//! Claiming locks the claimable rows with `FOR UPDATE SKIP LOCKED`, so replicas claiming at
//! once take different operations.

use basphere_core::model::*;
use basphere_core::store::{claim_lost, OperationFilter, OperationsRead, OperationsTx};
use basphere_core::{Error, Result};
use uuid::Uuid;

use super::{Param, PgTx, Select};
use crate::rows::*;

const OPERATION_COLUMNS: &str = "id, kind, owner, resource_kind, resource_id, resource_name, state, steps, error, log_tail, requested_by, created_at, updated_at";
const CLAIM_COLUMNS: &str = "claim_worker, claim_fence, claim_expires_at";

impl PgTx<'_> {
    /// The operation's claim record, `None` for an unknown operation.
    fn claim_record(&self, id: Uuid) -> Result<Option<ClaimRecord>> {
        self.one(&format!("SELECT {CLAIM_COLUMNS} FROM operations WHERE id = $1"), &[&id], |row| claim_row(row, 0))
    }

    fn write_operation(&self, statement: &str, op: &Operation, missing: bool) -> Result<()> {
        let (steps, log_tail) = operation_json(op)?;
        let params: [Param<'_>; 13] = [
            &op.id,
            &op.kind.as_str(),
            &op.owner.as_str(),
            &op.resource.kind.as_str(),
            &op.resource.id,
            &op.resource.name,
            &op.state.as_str(),
            &steps,
            &op.error,
            &log_tail,
            &op.requested_by,
            &op.created_at,
            &op.updated_at,
        ];
        if missing {
            self.insert(statement, &params, "operations", &[("id", &op.id)])
        } else {
            self.update(statement, &params, "operation", op.id, "operations", &[("id", &op.id)])
        }
    }
}

impl OperationsRead for PgTx<'_> {
    fn get_operation(&self, id: Uuid) -> Result<Option<Operation>> {
        self.one(&format!("SELECT {OPERATION_COLUMNS} FROM operations WHERE id = $1"), &[&id], operation_row)
    }

    fn list_operations(&self, filter: &OperationFilter) -> Result<Vec<Operation>> {
        let query = Select::from(format!("SELECT {OPERATION_COLUMNS} FROM operations"))
            .only("state IN ('queued', 'running')", filter.unfinished)
            .when("owner = ?", filter.owner.as_ref().map(|o| o.to_string()))
            .when("resource_id = ?", filter.resource)
            .when(if filter.newest_first { "id < ?" } else { "id > ?" }, filter.after)
            .tail(if filter.newest_first { "ORDER BY id DESC" } else { "ORDER BY id" }, filter.limit);
        self.all(&query.sql, &query.params(), operation_row)
    }

    fn operation_claim(&self, id: Uuid) -> Result<Option<OperationClaim>> {
        Ok(self.claim_record(id)?.and_then(|record| record.claim))
    }

    fn check_operation_claim(&self, id: Uuid, fence: u64) -> Result<()> {
        let record = self.claim_record(id)?.ok_or_else(|| Error::not_found("operation", id))?;
        match &record.claim {
            Some(claim) if claim.fence == fence => Ok(()),
            claim => Err(claim_lost(id, fence, record.fence, claim.is_none())),
        }
    }
}

impl OperationsTx for PgTx<'_> {
    fn insert_operation(&mut self, op: &Operation) -> Result<()> {
        self.write_operation(
            &format!("INSERT INTO operations ({OPERATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
            op,
            true,
        )
    }

    fn update_operation(&mut self, op: &Operation) -> Result<()> {
        self.write_operation(
            "UPDATE operations SET kind = $2, owner = $3, resource_kind = $4, resource_id = $5, resource_name = $6, state = $7, steps = $8, error = $9, log_tail = $10, requested_by = $11, created_at = $12, updated_at = $13 WHERE id = $1",
            op,
            false,
        )
    }

    fn claim_operations(
        &mut self,
        worker: &str,
        now: Timestamp,
        until: Timestamp,
        only: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<(Operation, OperationClaim)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let query = Select::from(format!("SELECT {OPERATION_COLUMNS}, {CLAIM_COLUMNS} FROM operations"))
            .only("state IN ('queued', 'running')", true)
            .when("(claim_worker IS NULL OR claim_expires_at <= ?)", Some(now))
            .when("id = ?", only)
            .tail("ORDER BY id", Some(limit));
        let claimable = self.all(&format!("{} FOR UPDATE SKIP LOCKED", query.sql), &query.params(), |row| {
            Ok((operation_row(row)?, claim_row(row, 13)?.fence))
        })?;
        let mut claimed = Vec::with_capacity(claimable.len());
        for (operation, fence) in claimable {
            let claim = OperationClaim { worker: worker.to_owned(), fence: fence + 1, expires_at: until };
            self.exec(
                "UPDATE operations SET claim_worker = $2, claim_fence = $3, claim_expires_at = $4 WHERE id = $1",
                &[&operation.id, &claim.worker, &fence_value(claim.fence)?, &until],
            )?;
            claimed.push((operation, claim));
        }
        Ok(claimed)
    }

    fn renew_operation_claim(&mut self, id: Uuid, fence: u64, until: Timestamp) -> Result<()> {
        self.check_operation_claim(id, fence)?;
        self.exec("UPDATE operations SET claim_expires_at = $2 WHERE id = $1", &[&id, &until])?;
        Ok(())
    }

    fn release_operation_claim(&mut self, id: Uuid, fence: u64) -> Result<()> {
        // A fence beyond i64 was never handed out: nothing to release.
        let Ok(fence) = i64::try_from(fence) else {
            return Ok(());
        };
        self.exec(
            "UPDATE operations SET claim_worker = NULL, claim_expires_at = NULL WHERE id = $1 AND claim_fence = $2",
            &[&id, &fence],
        )?;
        Ok(())
    }
}

/// A fence as stored (PostgreSQL's integers are signed).
fn fence_value(fence: u64) -> Result<i64> {
    i64::try_from(fence)
        .map_err(|_| Error::invalid("fence", format!("{fence} is beyond the largest fence, {}", i64::MAX)))
}
