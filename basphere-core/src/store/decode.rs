//! Records from the cells of a stored row, for the SQL stores: one decoding of every record,
//! whichever database holds it. Stored text goes back through the domain's parsers, so a corrupt
//! row is an error rather than an invalid value. A store implements [`Cells`] over its row type
//! (how it keeps ids, times and integers is its own) and calls these functions with the
//! columns in the order each one's documentation of the SQL stores gives.

use std::net::Ipv4Addr;

use crate::error::{Error, Message, Result};
use crate::model::*;
use crate::validate::{Email, ResourceName, SshPublicKey, Username};

/// The cells of one row of one table.
pub trait Cells {
    /// A cell that does not hold what the record needs (`column`: its name).
    fn corrupt(&self, column: &'static str, message: String) -> Error;
    /// A text cell, borrowed from the row: records parse it without a copy of their own.
    fn str(&self, index: usize) -> Result<&str>;
    fn text(&self, index: usize) -> Result<String> {
        self.str(index).map(str::to_owned)
    }
    fn opt_text(&self, index: usize) -> Result<Option<String>>;
    fn int(&self, index: usize) -> Result<i64>;
    fn opt_int(&self, index: usize) -> Result<Option<i64>>;
    fn uuid(&self, index: usize, column: &'static str) -> Result<Uuid>;
    fn opt_uuid(&self, index: usize, column: &'static str) -> Result<Option<Uuid>>;
    fn opt_time(&self, index: usize, column: &'static str) -> Result<Option<Timestamp>>;

    fn time(&self, index: usize, column: &'static str) -> Result<Timestamp> {
        self.opt_time(index, column)?.ok_or_else(|| self.corrupt(column, "missing time".into()))
    }

    fn u32(&self, index: usize, column: &'static str) -> Result<u32> {
        let value = self.int(index)?;
        u32::try_from(value).map_err(|_| self.corrupt(column, format!("{value} is out of range")))
    }

    fn u64(&self, index: usize, column: &'static str) -> Result<u64> {
        let value = self.int(index)?;
        u64::try_from(value).map_err(|_| self.corrupt(column, format!("{value} is out of range")))
    }

    fn opt_ip(&self, index: usize, column: &'static str) -> Result<Option<Ipv4Addr>> {
        match self.opt_int(index)? {
            None => Ok(None),
            Some(value) => u32::try_from(value)
                .map(|v| Some(Ipv4Addr::from(v)))
                .map_err(|_| self.corrupt(column, format!("{value} is not an address"))),
        }
    }

    fn ip(&self, index: usize, column: &'static str) -> Result<Ipv4Addr> {
        self.opt_ip(index, column)?.ok_or_else(|| self.corrupt(column, "missing address".into()))
    }
}

/// A value the store cannot write as JSON (never expected of the model's types).
fn unencodable(what: &str, error: serde_json::Error) -> Error {
    Error::backend("store", Message(format!("{what} cannot be written as JSON: {error}")))
}

/// Parses with the domain's parser inside `Cells` used as a trait object.
fn parse<T>(c: &dyn Cells, index: usize, column: &'static str, parse: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    parse(c.str(index)?).map_err(|error| c.corrupt(column, error.to_string()))
}

pub fn user(c: &dyn Cells) -> Result<User> {
    Ok(User {
        username: parse(c, 0, "username", Username::stored)?,
        email: parse(c, 1, "email", Email::parse)?,
        team: c.text(2)?,
        ssh_key: parse(c, 3, "ssh_key", SshPublicKey::parse)?,
        role: parse(c, 4, "role", Role::parse)?,
        status: parse(c, 5, "status", UserStatus::parse)?,
        uid: c.opt_int(6)?.map(|uid| uid as u32),
        created_at: c.time(7, "created_at")?,
        updated_at: c.time(8, "updated_at")?,
    })
}

pub fn registration(c: &dyn Cells) -> Result<RegistrationRequest> {
    Ok(RegistrationRequest {
        id: c.uuid(0, "id")?,
        username: parse(c, 1, "username", Username::stored)?,
        email: parse(c, 2, "email", Email::parse)?,
        team: c.text(3)?,
        ssh_key: parse(c, 4, "ssh_key", SshPublicKey::parse)?,
        status: parse(c, 5, "status", RequestStatus::parse)?,
        created_at: c.time(6, "created_at")?,
        processed_by: c.opt_text(7)?,
        processed_at: c.opt_time(8, "processed_at")?,
        reject_reason: c.opt_text(9)?,
    })
}

pub fn key_change(c: &dyn Cells) -> Result<KeyChangeRequest> {
    Ok(KeyChangeRequest {
        id: c.uuid(0, "id")?,
        username: parse(c, 1, "username", Username::stored)?,
        email: parse(c, 2, "email", Email::parse)?,
        new_ssh_key: parse(c, 3, "new_ssh_key", SshPublicKey::parse)?,
        reason: c.text(4)?,
        status: parse(c, 5, "status", RequestStatus::parse)?,
        created_at: c.time(6, "created_at")?,
        processed_by: c.opt_text(7)?,
        processed_at: c.opt_time(8, "processed_at")?,
        reject_reason: c.opt_text(9)?,
    })
}

pub fn token(c: &dyn Cells) -> Result<ApiToken> {
    Ok(ApiToken {
        id: c.uuid(0, "id")?,
        owner: parse(c, 1, "owner", Username::stored)?,
        name: c.text(2)?,
        scope: parse(c, 3, "scope", TokenScope::parse)?,
        secret_hash: c.text(4)?,
        created_at: c.time(5, "created_at")?,
        expires_at: c.opt_time(6, "expires_at")?,
        revoked_at: c.opt_time(7, "revoked_at")?,
        last_used_at: c.opt_time(8, "last_used_at")?,
    })
}

pub fn web_session(c: &dyn Cells) -> Result<WebSession> {
    Ok(WebSession {
        id: c.uuid(0, "id")?,
        kind: parse(c, 1, "kind", WebSessionKind::parse)?,
        owner: c
            .opt_text(2)?
            .map(|owner| Username::stored(&owner).map_err(|e| c.corrupt("owner", e.to_string())))
            .transpose()?,
        actor_name: c.text(3)?,
        role: parse(c, 4, "role", Role::parse)?,
        secret_hash: c.text(5)?,
        created_at: c.time(6, "created_at")?,
        expires_at: c.time(7, "expires_at")?,
        last_seen_at: c.time(8, "last_seen_at")?,
        ended_at: c.opt_time(9, "ended_at")?,
        token_id: c.opt_uuid(10, "token_id")?,
    })
}

pub fn vm(c: &dyn Cells) -> Result<Vm> {
    Ok(Vm {
        id: c.uuid(0, "id")?,
        owner: parse(c, 1, "owner", Username::stored)?,
        name: parse(c, 2, "name", ResourceName::parse)?,
        os: c.text(3)?,
        spec: c.text(4)?,
        cpu: c.u32(5, "cpu")?,
        memory_mb: c.u64(6, "memory_mb")?,
        disk_gb: c.u64(7, "disk_gb")?,
        ip: c.opt_ip(8, "ip")?,
        state: parse(c, 9, "state", VmState::parse)?,
        reason: c.opt_text(10)?,
        backend_id: c.opt_text(11)?,
        created_at: c.time(12, "created_at")?,
        updated_at: c.time(13, "updated_at")?,
    })
}

pub fn cluster(c: &dyn Cells) -> Result<Cluster> {
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
        owner: parse(c, 1, "owner", Username::stored)?,
        name: parse(c, 2, "name", ResourceName::parse)?,
        cluster_type: c.text(3)?,
        kubernetes_version: c.text(4)?,
        control_plane_count: c.u32(5, "control_plane_count")?,
        worker_count: c.u32(6, "worker_count")?,
        control_plane_spec: spec(8, c.text(7)?)?,
        worker_spec: spec(12, c.text(11)?)?,
        control_plane_endpoint: c.opt_ip(15, "control_plane_endpoint")?,
        state: parse(c, 16, "state", ClusterState::parse)?,
        reason: c.opt_text(17)?,
        status: serde_json::from_str(&status).map_err(|error| c.corrupt("status", error.to_string()))?,
        created_at: c.time(19, "created_at")?,
        updated_at: c.time(20, "updated_at")?,
    })
}

pub fn cluster_status_json(cluster: &Cluster) -> Result<String> {
    serde_json::to_string(&cluster.status).map_err(|error| unencodable("clusters.status", error))
}

/// A network from `id, owner, lans, mtu, wan_address, state, reason, created_at, updated_at`
/// (`lans` as JSON: each LAN's name, VLAN id, subnet and gateway).
pub fn network(c: &dyn Cells) -> Result<Network> {
    let lans: Vec<NetworkLan> =
        serde_json::from_str(c.str(2)?).map_err(|error| c.corrupt("lans", error.to_string()))?;
    let mtu = c.int(3)?;
    Ok(Network {
        id: c.uuid(0, "id")?,
        owner: parse(c, 1, "owner", Username::stored)?,
        lans,
        mtu: u16::try_from(mtu).map_err(|_| c.corrupt("mtu", format!("{mtu} is out of range")))?,
        wan_address: c.ip(4, "wan_address")?,
        state: parse(c, 5, "state", NetworkState::parse)?,
        reason: c.opt_text(6)?,
        created_at: c.time(7, "created_at")?,
        updated_at: c.time(8, "updated_at")?,
    })
}

pub fn network_lans_json(network: &Network) -> Result<String> {
    serde_json::to_string(&network.lans).map_err(|error| unencodable("networks.lans", error))
}

pub fn operation_json(op: &Operation) -> Result<(String, String)> {
    let steps = serde_json::to_string(&op.steps).map_err(|error| unencodable("operations.steps", error))?;
    let log_tail = serde_json::to_string(&op.log_tail).map_err(|error| unencodable("operations.log_tail", error))?;
    Ok((steps, log_tail))
}

pub fn operation(c: &dyn Cells) -> Result<Operation> {
    let json = |index, column| -> Result<serde_json::Value> {
        let text = c.text(index)?;
        serde_json::from_str(&text).map_err(|error| c.corrupt(column, error.to_string()))
    };
    Ok(Operation {
        id: c.uuid(0, "id")?,
        kind: parse(c, 1, "kind", OperationKind::parse)?,
        owner: parse(c, 2, "owner", Username::stored)?,
        resource: ResourceRef {
            kind: parse(c, 3, "resource_kind", ResourceKind::parse)?,
            id: c.uuid(4, "resource_id")?,
            name: c.text(5)?,
        },
        state: parse(c, 6, "state", OperationState::parse)?,
        steps: serde_json::from_value(json(7, "steps")?).map_err(|error| c.corrupt("steps", error.to_string()))?,
        error: c.opt_text(8)?,
        log_tail: serde_json::from_value(json(9, "log_tail")?)
            .map_err(|error| c.corrupt("log_tail", error.to_string()))?,
        requested_by: c.text(10)?,
        created_at: c.time(11, "created_at")?,
        updated_at: c.time(12, "updated_at")?,
    })
}

pub fn audit(c: &dyn Cells) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: c.uuid(0, "id")?,
        at: c.time(1, "at")?,
        actor: c.text(2)?,
        action: c.text(3)?,
        resource: c.text(4)?,
        source: c.text(5)?,
        outcome: parse(c, 6, "outcome", Outcome::parse)?,
        details: parse(c, 7, "details", |text| {
            serde_json::from_str(text).map_err(|error| Error::invalid("details", error.to_string()))
        })?,
    })
}

pub fn quota_override(c: &dyn Cells) -> Result<QuotaOverride> {
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

pub fn block(c: &dyn Cells) -> Result<IpBlock> {
    Ok(IpBlock {
        start: c.ip(0, "start")?,
        pool: c.text(1)?,
        size: c.u32(2, "size")?,
        owner: parse(c, 3, "owner", Username::stored)?,
        allocated_at: c.time(4, "allocated_at")?,
    })
}

/// A lease from `address, pool, owner, resource_kind, resource_id, resource_name, state,
/// created_at, network` (the network null for the flat pools).
pub fn lease(c: &dyn Cells) -> Result<Lease> {
    Ok(Lease {
        address: c.ip(0, "address")?,
        network: c.opt_uuid(8, "network")?,
        pool: c.text(1)?,
        owner: parse(c, 2, "owner", Username::stored)?,
        resource: ResourceRef {
            kind: parse(c, 3, "resource_kind", ResourceKind::parse)?,
            id: c.uuid(4, "resource_id")?,
            name: c.text(5)?,
        },
        state: parse(c, 6, "state", LeaseState::parse)?,
        created_at: c.time(7, "created_at")?,
    })
}

pub fn idempotency(c: &dyn Cells) -> Result<IdempotencyRecord> {
    Ok(IdempotencyRecord {
        owner: parse(c, 0, "owner", Username::stored)?,
        key: c.text(1)?,
        request_hash: c.text(2)?,
        operations: parse(c, 3, "operations", |text| {
            serde_json::from_str(text).map_err(|error| Error::invalid("operations", error.to_string()))
        })?,
        created_at: c.time(4, "created_at")?,
    })
}

/// What the operations table holds of an operation's claims.
pub struct ClaimRecord {
    /// The last fence handed out (0: never claimed).
    pub fence: u64,
    /// The claim while held; `None` when never claimed or released.
    pub claim: Option<OperationClaim>,
}

/// Reads `claim_worker, claim_fence, claim_expires_at` starting at column `first`.
pub fn claim(c: &dyn Cells, first: usize) -> Result<ClaimRecord> {
    let fence = c.u64(first + 1, "claim_fence")?;
    let claim = match (c.opt_text(first)?, c.opt_time(first + 2, "claim_expires_at")?) {
        (Some(worker), Some(expires_at)) => Some(OperationClaim { worker, fence, expires_at }),
        (None, None) => None,
        _ => return Err(c.corrupt("claim_worker", "a claim needs both its worker and its expiry".into())),
    };
    Ok(ClaimRecord { fence, claim })
}

pub fn idempotency_operations_json(record: &IdempotencyRecord) -> Result<String> {
    serde_json::to_string(&record.operations).map_err(|error| unencodable("idempotency_keys.operations", error))
}

pub fn outbox_event_json(event: &NotificationEvent) -> Result<String> {
    serde_json::to_string(event).map_err(|error| unencodable("outbox.event", error))
}

pub fn outbox(c: &dyn Cells) -> Result<OutboxMessage> {
    Ok(OutboxMessage {
        id: c.uuid(0, "id")?,
        event: parse(c, 1, "event", |text| {
            serde_json::from_str(text).map_err(|error| Error::invalid("event", error.to_string()))
        })?,
        state: parse(c, 2, "state", OutboxState::parse)?,
        attempts: c.u32(3, "attempts")?,
        next_attempt_at: c.time(4, "next_attempt_at")?,
        last_error: c.opt_text(5)?,
        created_at: c.time(6, "created_at")?,
        delivered_at: c.opt_time(7, "delivered_at")?,
        claimed_by: c.opt_text(8)?,
        channel: c.text(9)?,
    })
}
