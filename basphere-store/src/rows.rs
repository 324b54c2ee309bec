//! Rows as records: core's `store::decode` over SQLite's cells (ids as text, times as
//! microseconds since the epoch, integers signed).

use basphere_core::model::*;
use basphere_core::store::decode;
pub(crate) use basphere_core::store::decode::{
    cluster_status_json, idempotency_operations_json, network_lans_json, operation_json, outbox_event_json, ClaimRecord,
};
use basphere_core::Result;
use chrono::DateTime;
use rusqlite::Row;
use uuid::Uuid;

use crate::{sql, SqliteError};

pub(crate) fn micros(at: Timestamp) -> i64 {
    at.timestamp_micros()
}

/// One row of one table, as core's decoding reads it.
struct Cells<'r, 's> {
    row: &'r Row<'s>,
    table: &'static str,
}

impl decode::Cells for Cells<'_, '_> {
    fn corrupt(&self, column: &'static str, message: String) -> basphere_core::Error {
        SqliteError::Corrupt { table: self.table, column, message }.into()
    }

    fn str(&self, index: usize) -> Result<&str> {
        let value = self.row.get_ref(index).map_err(sql)?;
        value
            .as_str()
            .map_err(|error| sql(rusqlite::Error::FromSqlConversionFailure(index, value.data_type(), Box::new(error))))
    }

    fn opt_text(&self, index: usize) -> Result<Option<String>> {
        self.row.get(index).map_err(sql)
    }

    fn int(&self, index: usize) -> Result<i64> {
        self.row.get(index).map_err(sql)
    }

    fn opt_int(&self, index: usize) -> Result<Option<i64>> {
        self.row.get(index).map_err(sql)
    }

    fn uuid(&self, index: usize, column: &'static str) -> Result<Uuid> {
        Uuid::parse_str(self.str(index)?).map_err(|error| self.corrupt(column, error.to_string()))
    }

    fn opt_uuid(&self, index: usize, column: &'static str) -> Result<Option<Uuid>> {
        self.opt_text(index)?
            .map(|text| Uuid::parse_str(&text).map_err(|error| self.corrupt(column, error.to_string())))
            .transpose()
    }

    fn opt_time(&self, index: usize, column: &'static str) -> Result<Option<Timestamp>> {
        match self.opt_int(index)? {
            None => Ok(None),
            Some(value) => DateTime::from_timestamp_micros(value)
                .map(Some)
                .ok_or_else(|| self.corrupt(column, format!("{value} is not a timestamp"))),
        }
    }
}

pub(crate) fn user_row(row: &Row<'_>) -> Result<User> {
    decode::user(&Cells { row, table: "users" })
}

pub(crate) fn registration_row(row: &Row<'_>) -> Result<RegistrationRequest> {
    decode::registration(&Cells { row, table: "registrations" })
}

pub(crate) fn key_change_row(row: &Row<'_>) -> Result<KeyChangeRequest> {
    decode::key_change(&Cells { row, table: "key_changes" })
}

pub(crate) fn token_row(row: &Row<'_>) -> Result<ApiToken> {
    decode::token(&Cells { row, table: "tokens" })
}

pub(crate) fn web_session_row(row: &Row<'_>) -> Result<WebSession> {
    decode::web_session(&Cells { row, table: "web_sessions" })
}

pub(crate) fn vm_row(row: &Row<'_>) -> Result<Vm> {
    decode::vm(&Cells { row, table: "vms" })
}

pub(crate) fn cluster_row(row: &Row<'_>) -> Result<Cluster> {
    decode::cluster(&Cells { row, table: "clusters" })
}

pub(crate) fn network_row(row: &Row<'_>) -> Result<Network> {
    decode::network(&Cells { row, table: "networks" })
}

pub(crate) fn operation_row(row: &Row<'_>) -> Result<Operation> {
    decode::operation(&Cells { row, table: "operations" })
}

pub(crate) fn audit_row(row: &Row<'_>) -> Result<AuditEvent> {
    decode::audit(&Cells { row, table: "audit" })
}

pub(crate) fn quota_override_row(row: &Row<'_>) -> Result<QuotaOverride> {
    decode::quota_override(&Cells { row, table: "quota_overrides" })
}

pub(crate) fn block_row(row: &Row<'_>) -> Result<IpBlock> {
    decode::block(&Cells { row, table: "ip_blocks" })
}

pub(crate) fn lease_row(row: &Row<'_>) -> Result<Lease> {
    decode::lease(&Cells { row, table: "leases" })
}

pub(crate) fn idempotency_row(row: &Row<'_>) -> Result<IdempotencyRecord> {
    decode::idempotency(&Cells { row, table: "idempotency_keys" })
}

pub(crate) fn outbox_row(row: &Row<'_>) -> Result<OutboxMessage> {
    decode::outbox(&Cells { row, table: "outbox" })
}

/// Reads `claim_worker, claim_fence, claim_expires_at` starting at column `first`.
pub(crate) fn claim_row(row: &Row<'_>, first: usize) -> Result<ClaimRecord> {
    decode::claim(&Cells { row, table: "operations" }, first)
}
