//! Conversions between rows and domain records. Stored text goes back through the domain's
//! parsers, so a corrupt row is an error rather than an invalid value. Column positions are the
//! SQLite store's, so both read the same records the same way.

use std::net::Ipv4Addr;

use basphere_core::model::*;
use basphere_core::validate::{Email, ResourceName, SshPublicKey, Username};
use basphere_core::Result;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{pg, PostgresError};

fn corrupt(table: &'static str, column: &'static str, message: impl ToString) -> basphere_core::Error {
    PostgresError::Corrupt { table, column, message: message.to_string() }.into()
}

/// Reads column `index` and parses it with the domain's parser.
struct Cells<'r> {
    row: &'r Row,
    table: &'static str,
}

impl Cells<'_> {
    fn text(&self, index: usize) -> Result<String> {
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

    fn parse<T>(&self, index: usize, column: &'static str, parse: impl FnOnce(&str) -> Result<T>) -> Result<T> {
        let text = self.text(index)?;
        parse(&text).map_err(|error| corrupt(self.table, column, error))
    }

    fn uuid(&self, index: usize, _column: &'static str) -> Result<Uuid> {
        self.row.try_get(index).map_err(pg)
    }

    fn time(&self, index: usize, _column: &'static str) -> Result<Timestamp> {
        self.row.try_get(index).map_err(pg)
    }

    fn opt_time(&self, index: usize, _column: &'static str) -> Result<Option<Timestamp>> {
        self.row.try_get(index).map_err(pg)
    }

    fn u32(&self, index: usize, column: &'static str) -> Result<u32> {
        let value = self.int(index)?;
        u32::try_from(value).map_err(|_| corrupt(self.table, column, format!("{value} is out of range")))
    }

    fn u64(&self, index: usize, column: &'static str) -> Result<u64> {
        let value = self.int(index)?;
        u64::try_from(value).map_err(|_| corrupt(self.table, column, format!("{value} is out of range")))
    }

    fn opt_ip(&self, index: usize, column: &'static str) -> Result<Option<Ipv4Addr>> {
        match self.opt_int(index)? {
            None => Ok(None),
            Some(value) => u32::try_from(value)
                .map(|v| Some(Ipv4Addr::from(v)))
                .map_err(|_| corrupt(self.table, column, format!("{value} is not an address"))),
        }
    }

    fn ip(&self, index: usize, column: &'static str) -> Result<Ipv4Addr> {
        self.opt_ip(index, column)?.ok_or_else(|| corrupt(self.table, column, "missing address"))
    }
}

/// A count or size as stored (PostgreSQL's integers are signed).
pub(crate) fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn user_row(row: &Row) -> Result<User> {
    let c = Cells { row, table: "users" };
    Ok(User {
        username: c.parse(0, "username", Username::parse)?,
        email: c.parse(1, "email", Email::parse)?,
        team: c.text(2)?,
        ssh_key: c.parse(3, "ssh_key", SshPublicKey::parse)?,
        role: c.parse(4, "role", Role::parse)?,
        status: c.parse(5, "status", UserStatus::parse)?,
        uid: c.opt_int(6)?.map(|uid| uid as u32),
        created_at: c.time(7, "created_at")?,
        updated_at: c.time(8, "updated_at")?,
    })
}

pub(crate) fn registration_row(row: &Row) -> Result<RegistrationRequest> {
    let c = Cells { row, table: "registrations" };
    Ok(RegistrationRequest {
        id: c.uuid(0, "id")?,
        username: c.parse(1, "username", Username::parse)?,
        email: c.parse(2, "email", Email::parse)?,
        team: c.text(3)?,
        ssh_key: c.parse(4, "ssh_key", SshPublicKey::parse)?,
        status: c.parse(5, "status", RequestStatus::parse)?,
        created_at: c.time(6, "created_at")?,
        processed_by: c.opt_text(7)?,
        processed_at: c.opt_time(8, "processed_at")?,
        reject_reason: c.opt_text(9)?,
    })
}

pub(crate) fn key_change_row(row: &Row) -> Result<KeyChangeRequest> {
    let c = Cells { row, table: "key_changes" };
    Ok(KeyChangeRequest {
        id: c.uuid(0, "id")?,
        username: c.parse(1, "username", Username::parse)?,
        email: c.parse(2, "email", Email::parse)?,
        new_ssh_key: c.parse(3, "new_ssh_key", SshPublicKey::parse)?,
        reason: c.text(4)?,
        status: c.parse(5, "status", RequestStatus::parse)?,
        created_at: c.time(6, "created_at")?,
        processed_by: c.opt_text(7)?,
        processed_at: c.opt_time(8, "processed_at")?,
        reject_reason: c.opt_text(9)?,
    })
}

pub(crate) fn token_row(row: &Row) -> Result<ApiToken> {
    let c = Cells { row, table: "tokens" };
    Ok(ApiToken {
        id: c.uuid(0, "id")?,
        owner: c.parse(1, "owner", Username::parse)?,
        name: c.text(2)?,
        scope: c.parse(3, "scope", TokenScope::parse)?,
        secret_hash: c.text(4)?,
        created_at: c.time(5, "created_at")?,
        expires_at: c.opt_time(6, "expires_at")?,
        revoked_at: c.opt_time(7, "revoked_at")?,
        last_used_at: c.opt_time(8, "last_used_at")?,
    })
}

pub(crate) fn web_session_row(row: &Row) -> Result<WebSession> {
    let c = Cells { row, table: "web_sessions" };
    Ok(WebSession {
        id: c.uuid(0, "id")?,
        kind: c.parse(1, "kind", WebSessionKind::parse)?,
        owner: c
            .opt_text(2)?
            .map(|owner| Username::parse(&owner).map_err(|e| corrupt("web_sessions", "owner", e)))
            .transpose()?,
        actor_name: c.text(3)?,
        role: c.parse(4, "role", Role::parse)?,
        secret_hash: c.text(5)?,
        created_at: c.time(6, "created_at")?,
        expires_at: c.time(7, "expires_at")?,
        last_seen_at: c.time(8, "last_seen_at")?,
        ended_at: c.opt_time(9, "ended_at")?,
    })
}

pub(crate) fn vm_row(row: &Row) -> Result<Vm> {
    let c = Cells { row, table: "vms" };
    Ok(Vm {
        id: c.uuid(0, "id")?,
        owner: c.parse(1, "owner", Username::parse)?,
        name: c.parse(2, "name", ResourceName::parse)?,
        os: c.text(3)?,
        spec: c.text(4)?,
        cpu: c.u32(5, "cpu")?,
        memory_mb: c.u64(6, "memory_mb")?,
        disk_gb: c.u64(7, "disk_gb")?,
        ip: c.opt_ip(8, "ip")?,
        state: c.parse(9, "state", VmState::parse)?,
        reason: c.opt_text(10)?,
        backend_id: c.opt_text(11)?,
        created_at: c.time(12, "created_at")?,
        updated_at: c.time(13, "updated_at")?,
    })
}

pub(crate) fn cluster_row(row: &Row) -> Result<Cluster> {
    let c = Cells { row, table: "clusters" };
    let spec = |at: usize, key: String| -> Result<NodeSpec> {
        Ok(NodeSpec {
            key,
            cpu: c.u32(at, "cpu")?,
            memory_mb: c.u64(at + 1, "memory_mb")?,
            disk_gb: c.u64(at + 2, "disk_gb")?,
        })
    };
    let status: String = c.text(18)?;
    Ok(Cluster {
        id: c.uuid(0, "id")?,
        owner: c.parse(1, "owner", Username::parse)?,
        name: c.parse(2, "name", ResourceName::parse)?,
        cluster_type: c.text(3)?,
        kubernetes_version: c.text(4)?,
        control_plane_count: c.u32(5, "control_plane_count")?,
        worker_count: c.u32(6, "worker_count")?,
        control_plane_spec: spec(8, c.text(7)?)?,
        worker_spec: spec(12, c.text(11)?)?,
        control_plane_endpoint: c.opt_ip(15, "control_plane_endpoint")?,
        state: c.parse(16, "state", ClusterState::parse)?,
        reason: c.opt_text(17)?,
        status: serde_json::from_str(&status).map_err(|error| corrupt("clusters", "status", error))?,
        created_at: c.time(19, "created_at")?,
        updated_at: c.time(20, "updated_at")?,
    })
}

pub(crate) fn cluster_status_json(cluster: &Cluster) -> Result<String> {
    serde_json::to_string(&cluster.status).map_err(|error| corrupt("clusters", "status", error))
}

pub(crate) fn operation_json(op: &Operation) -> Result<(String, String)> {
    let steps = serde_json::to_string(&op.steps).map_err(|error| corrupt("operations", "steps", error))?;
    let log_tail = serde_json::to_string(&op.log_tail).map_err(|error| corrupt("operations", "log_tail", error))?;
    Ok((steps, log_tail))
}

pub(crate) fn operation_row(row: &Row) -> Result<Operation> {
    let c = Cells { row, table: "operations" };
    let json = |index, column| -> Result<serde_json::Value> {
        let text = c.text(index)?;
        serde_json::from_str(&text).map_err(|error| corrupt("operations", column, error))
    };
    Ok(Operation {
        id: c.uuid(0, "id")?,
        kind: c.parse(1, "kind", OperationKind::parse)?,
        owner: c.parse(2, "owner", Username::parse)?,
        resource: ResourceRef {
            kind: c.parse(3, "resource_kind", ResourceKind::parse)?,
            id: c.uuid(4, "resource_id")?,
            name: c.text(5)?,
        },
        state: c.parse(6, "state", OperationState::parse)?,
        steps: serde_json::from_value(json(7, "steps")?).map_err(|error| corrupt("operations", "steps", error))?,
        error: c.opt_text(8)?,
        log_tail: serde_json::from_value(json(9, "log_tail")?)
            .map_err(|error| corrupt("operations", "log_tail", error))?,
        requested_by: c.text(10)?,
        created_at: c.time(11, "created_at")?,
        updated_at: c.time(12, "updated_at")?,
    })
}

pub(crate) fn audit_row(row: &Row) -> Result<AuditEvent> {
    let c = Cells { row, table: "audit" };
    Ok(AuditEvent {
        id: c.uuid(0, "id")?,
        at: c.time(1, "at")?,
        actor: c.text(2)?,
        action: c.text(3)?,
        resource: c.text(4)?,
        source: c.text(5)?,
        outcome: c.parse(6, "outcome", Outcome::parse)?,
        details: c.parse(7, "details", |text| {
            serde_json::from_str(text).map_err(|error| basphere_core::Error::invalid("details", error.to_string()))
        })?,
    })
}

pub(crate) fn quota_override_row(row: &Row) -> Result<QuotaOverride> {
    let c = Cells { row, table: "quota_overrides" };
    let v = |index| -> Result<Option<u64>> { Ok(c.opt_int(index)?.map(|v| v as u64)) };
    Ok(QuotaOverride {
        max_vms: v(0)?,
        max_clusters: v(1)?,
        max_nodes_per_cluster: v(2)?,
        max_ips: v(3)?,
        max_vcpus: v(4)?,
        max_memory_mb: v(5)?,
        max_disk_gb: v(6)?,
    })
}

pub(crate) fn block_row(row: &Row) -> Result<IpBlock> {
    let c = Cells { row, table: "ip_blocks" };
    Ok(IpBlock {
        start: c.ip(0, "start")?,
        pool: c.text(1)?,
        size: c.u32(2, "size")?,
        owner: c.parse(3, "owner", Username::parse)?,
        allocated_at: c.time(4, "allocated_at")?,
    })
}

pub(crate) fn lease_row(row: &Row) -> Result<Lease> {
    let c = Cells { row, table: "leases" };
    Ok(Lease {
        address: c.ip(0, "address")?,
        pool: c.text(1)?,
        owner: c.parse(2, "owner", Username::parse)?,
        resource: ResourceRef {
            kind: c.parse(3, "resource_kind", ResourceKind::parse)?,
            id: c.uuid(4, "resource_id")?,
            name: c.text(5)?,
        },
        state: c.parse(6, "state", LeaseState::parse)?,
        created_at: c.time(7, "created_at")?,
    })
}

pub(crate) fn idempotency_row(row: &Row) -> Result<IdempotencyRecord> {
    let c = Cells { row, table: "idempotency_keys" };
    Ok(IdempotencyRecord {
        owner: c.parse(0, "owner", Username::parse)?,
        key: c.text(1)?,
        request_hash: c.text(2)?,
        operations: c.parse(3, "operations", |text| {
            serde_json::from_str(text).map_err(|error| basphere_core::Error::invalid("operations", error.to_string()))
        })?,
        created_at: c.time(4, "created_at")?,
    })
}

/// What the operations table holds of an operation's claims.
pub(crate) struct ClaimRecord {
    /// The last fence handed out (0: never claimed).
    pub fence: u64,
    /// The claim while held; `None` when never claimed or released.
    pub claim: Option<OperationClaim>,
}

/// Reads `claim_worker, claim_fence, claim_expires_at` starting at column `first`.
pub(crate) fn claim_row(row: &Row, first: usize) -> Result<ClaimRecord> {
    let c = Cells { row, table: "operations" };
    let fence = c.u64(first + 1, "claim_fence")?;
    let claim = match (c.opt_text(first)?, c.opt_time(first + 2, "claim_expires_at")?) {
        (Some(worker), Some(expires_at)) => Some(OperationClaim { worker, fence, expires_at }),
        (None, None) => None,
        _ => return Err(corrupt("operations", "claim_worker", "a claim needs both its worker and its expiry")),
    };
    Ok(ClaimRecord { fence, claim })
}

pub(crate) fn idempotency_operations_json(record: &IdempotencyRecord) -> Result<String> {
    serde_json::to_string(&record.operations).map_err(|error| corrupt("idempotency_keys", "operations", error))
}

pub(crate) fn outbox_event_json(event: &NotificationEvent) -> Result<String> {
    serde_json::to_string(event).map_err(|error| corrupt("outbox", "event", error))
}

pub(crate) fn outbox_row(row: &Row) -> Result<OutboxMessage> {
    let c = Cells { row, table: "outbox" };
    Ok(OutboxMessage {
        id: c.uuid(0, "id")?,
        event: c.parse(1, "event", |text| {
            serde_json::from_str(text).map_err(|error| basphere_core::Error::invalid("event", error.to_string()))
        })?,
        state: c.parse(2, "state", OutboxState::parse)?,
        attempts: c.u32(3, "attempts")?,
        next_attempt_at: c.time(4, "next_attempt_at")?,
        last_error: c.opt_text(5)?,
        created_at: c.time(6, "created_at")?,
        delivered_at: c.opt_time(7, "delivered_at")?,
        claimed_by: c.opt_text(8)?,
        channel: c.text(9)?,
    })
}
