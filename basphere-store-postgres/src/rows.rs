//! Rows as records: core's `store::decode` over PostgreSQL's cells (native `uuid` and
//! `timestamptz`, `bigint` integers), in the SQLite store's column order.

use basphere_core::model::*;
use basphere_core::store::decode;
pub(crate) use basphere_core::store::decode::{
    cluster_status_json, idempotency_operations_json, network_lans_json, operation_json, outbox_event_json, ClaimRecord,
};
use basphere_core::Result;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{pg, PostgresError};

/// A count or size as stored (PostgreSQL's integers are signed).
pub(crate) fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// One row of one table, as core's decoding reads it.
struct Cells<'r> {
    row: &'r Row,
    table: &'static str,
}

impl decode::Cells for Cells<'_> {
    fn corrupt(&self, column: &'static str, message: String) -> basphere_core::Error {
        PostgresError::Corrupt { table: self.table, column, message }.into()
    }

    fn str(&self, index: usize) -> Result<&str> {
        self.row.try_get(index).map_err(pg)
    }

    fn opt_text(&self, index: usize) -> Result<Option<String>> {
        self.row.try_get(index).map_err(pg)
    }

    fn int(&self, index: usize) -> Result<i64> {
        self.row.try_get(index).map_err(pg)
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>> {
        self.row.try_get(index).map_err(pg)
    }

    fn uuid(&self, index: usize, _column: &'static str) -> Result<Uuid> {
        self.row.try_get(index).map_err(pg)
    }

    fn opt_uuid(&self, index: usize, _column: &'static str) -> Result<Option<Uuid>> {
        self.row.try_get(index).map_err(pg)
    }

    fn opt_time(&self, index: usize, _column: &'static str) -> Result<Option<Timestamp>> {
        self.row.try_get(index).map_err(pg)
    }
}

pub(crate) fn user_row(row: &Row) -> Result<User> {
    decode::user(&Cells { row, table: "users" })
}

pub(crate) fn registration_row(row: &Row) -> Result<RegistrationRequest> {
    decode::registration(&Cells { row, table: "registrations" })
}

pub(crate) fn key_change_row(row: &Row) -> Result<KeyChangeRequest> {
    decode::key_change(&Cells { row, table: "key_changes" })
}

pub(crate) fn token_row(row: &Row) -> Result<ApiToken> {
    decode::token(&Cells { row, table: "tokens" })
}

pub(crate) fn web_session_row(row: &Row) -> Result<WebSession> {
    decode::web_session(&Cells { row, table: "web_sessions" })
}

pub(crate) fn vm_row(row: &Row) -> Result<Vm> {
    decode::vm(&Cells { row, table: "vms" })
}

pub(crate) fn cluster_row(row: &Row) -> Result<Cluster> {
    decode::cluster(&Cells { row, table: "clusters" })
}

pub(crate) fn network_row(row: &Row) -> Result<Network> {
    decode::network(&Cells { row, table: "networks" })
}

pub(crate) fn operation_row(row: &Row) -> Result<Operation> {
    decode::operation(&Cells { row, table: "operations" })
}

pub(crate) fn audit_row(row: &Row) -> Result<AuditEvent> {
    decode::audit(&Cells { row, table: "audit" })
}

pub(crate) fn quota_override_row(row: &Row) -> Result<QuotaOverride> {
    decode::quota_override(&Cells { row, table: "quota_overrides" })
}

pub(crate) fn block_row(row: &Row) -> Result<IpBlock> {
    decode::block(&Cells { row, table: "ip_blocks" })
}

pub(crate) fn lease_row(row: &Row) -> Result<Lease> {
    decode::lease(&Cells { row, table: "leases" })
}

pub(crate) fn idempotency_row(row: &Row) -> Result<IdempotencyRecord> {
    decode::idempotency(&Cells { row, table: "idempotency_keys" })
}

pub(crate) fn outbox_row(row: &Row) -> Result<OutboxMessage> {
    decode::outbox(&Cells { row, table: "outbox" })
}

/// Reads `claim_worker, claim_fence, claim_expires_at` starting at column `first`.
pub(crate) fn claim_row(row: &Row, first: usize) -> Result<ClaimRecord> {
    decode::claim(&Cells { row, table: "operations" }, first)
}
