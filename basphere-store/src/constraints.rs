//! Constraint violations mapped onto domain errors by constraint name, in one table.
//!
//! # What SQLite tells about a violated constraint
//!
//! SQLite has no API that names the violated constraint. What it gives is the extended result
//! code (`SQLITE_CONSTRAINT_PRIMARYKEY`, `_UNIQUE`, `_CHECK`, `_FOREIGNKEY`, ...) and a message
//! of the form `"<KIND> constraint failed: <identity>"`, where the identity is:
//!
//! - for a PRIMARY KEY or UNIQUE constraint, or a unique index on plain columns (partial or
//!   not): the columns as `table.column`, joined by `", "` (e.g. `vms.owner, vms.name`), never
//!   the constraint's or index's name (for a column constraint the name is kept only in the
//!   table's SQL; its index is `sqlite_autoindex_<table>_<n>`);
//! - for a unique index on expressions: `index '<name>'` (e.g. `lower(email)`);
//! - for a CHECK constraint: its name when it has one (`CONSTRAINT users_role_valid CHECK ...`),
//!   its expression text otherwise;
//! - for a FOREIGN KEY constraint: nothing at all (`"FOREIGN KEY constraint failed"`). Every table
//!   here has at most one foreign key, so the table the statement writes identifies it.
//!
//! So the schema names every constraint (migration 3), and [`CONSTRAINTS`] maps each name to
//! the identity SQLite reports for it and to the error it means. The column lists are as
//! stable as the schema: a migration that changes a constraint changes its entry, and the
//! tests below violate every constraint and check both the identity and the error, and check
//! that every name in the schema has an entry.

use basphere_core::store::constraint::Meaning;
pub(crate) use basphere_core::store::constraint::Values;
use basphere_core::Error;
use rusqlite::ffi;

use crate::sql;

/// The kind of a constraint, as SQLite's extended result code tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    PrimaryKey,
    Unique,
    Check,
    ForeignKey,
}

impl Kind {
    /// The kind of a constraint violation; `None` for other codes (NOT NULL, a STRICT type
    /// mismatch: bugs of this crate, reported as backend errors).
    fn of(extended_code: i32) -> Option<Kind> {
        match extended_code {
            ffi::SQLITE_CONSTRAINT_PRIMARYKEY => Some(Kind::PrimaryKey),
            ffi::SQLITE_CONSTRAINT_UNIQUE => Some(Kind::Unique),
            ffi::SQLITE_CONSTRAINT_CHECK => Some(Kind::Check),
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Some(Kind::ForeignKey),
            _ => None,
        }
    }
}

/// One named constraint of the schema.
#[derive(Debug)]
pub(crate) struct Constraint {
    /// Its name in the schema (`CONSTRAINT <name>` or `CREATE UNIQUE INDEX <name>`). Primary
    /// keys of tables not rebuilt since migration 3 have no name in the schema; their entries
    /// are named `<table>_pkey` like the others.
    pub name: &'static str,
    pub table: &'static str,
    pub kind: Kind,
    /// The identity SQLite reports for a PRIMARY KEY or UNIQUE violation (see the module
    /// documentation); unused for CHECK (reported by name) and FOREIGN KEY (by table).
    pub reported: &'static str,
    pub meaning: Meaning,
}

const fn exists(kind: &'static str, column: &'static str) -> Meaning {
    Meaning::AlreadyExists { kind, column }
}

const fn primary_key(name: &'static str, table: &'static str, reported: &'static str, meaning: Meaning) -> Constraint {
    Constraint { name, table, kind: Kind::PrimaryKey, reported, meaning }
}

const fn unique(name: &'static str, table: &'static str, reported: &'static str, meaning: Meaning) -> Constraint {
    Constraint { name, table, kind: Kind::Unique, reported, meaning }
}

const fn check(name: &'static str, table: &'static str, column: &'static str, accepted: &'static str) -> Constraint {
    Constraint { name, table, kind: Kind::Check, reported: "", meaning: Meaning::Invalid { column, accepted } }
}

/// A foreign key to `users`: the owner must be an account.
const fn owner_fk(name: &'static str, table: &'static str) -> Constraint {
    Constraint {
        name,
        table,
        kind: Kind::ForeignKey,
        reported: "",
        meaning: Meaning::NotFound { kind: "user", column: "owner" },
    }
}

/// Every constraint of the schema, and what its violation means.
#[rustfmt::skip]
pub(crate) const CONSTRAINTS: &[Constraint] = &[
    primary_key("users_pkey", "users", "users.username", exists("user", "username")),
    unique("users_key_fingerprint_unique", "users", "users.key_fingerprint", exists("ssh key", "key_fingerprint")),
    unique("users_uid_unique", "users", "users.uid", exists("uid", "uid")),
    check("users_role_valid", "users", "role", "user, admin"),
    check("users_status_valid", "users", "status", "active, suspended"),

    primary_key("registrations_pkey", "registrations", "registrations.id", exists("registration", "id")),
    check("registrations_status_valid", "registrations", "status", "pending, approved, rejected"),
    unique("registrations_pending_username", "registrations", "registrations.username", exists("pending registration", "username")),
    unique("registrations_pending_email", "registrations", "index 'registrations_pending_email'", exists("pending registration", "email")),

    primary_key("key_changes_pkey", "key_changes", "key_changes.id", exists("key change", "id")),
    check("key_changes_status_valid", "key_changes", "status", "pending, approved, rejected"),
    unique("key_changes_pending_username", "key_changes", "key_changes.username", exists("pending key change", "username")),

    primary_key("tokens_pkey", "tokens", "tokens.id", exists("token", "id")),
    owner_fk("tokens_owner_fk", "tokens"),
    check("tokens_scope_valid", "tokens", "scope", "user, admin"),
    // Named by the token's id: the hash is a secret's.
    unique("tokens_secret_hash_unique", "tokens", "tokens.secret_hash", exists("token", "id")),

    primary_key("web_sessions_pkey", "web_sessions", "web_sessions.id", exists("web session", "id")),
    owner_fk("web_sessions_owner_fk", "web_sessions"),
    check("web_sessions_kind_valid", "web_sessions", "kind", "link, session"),
    check("web_sessions_role_valid", "web_sessions", "role", "user, admin"),
    // Named by the session's id: the hash is a secret's.
    unique("web_sessions_secret_hash_unique", "web_sessions", "web_sessions.secret_hash", exists("web session", "id")),

    primary_key("quota_overrides_pkey", "quota_overrides", "quota_overrides.owner", exists("quota override", "owner")),
    owner_fk("quota_overrides_owner_fk", "quota_overrides"),

    primary_key("vms_pkey", "vms", "vms.id", exists("vm", "id")),
    unique("vms_live_name", "vms", "vms.owner, vms.name", exists("vm", "name")),

    primary_key("clusters_pkey", "clusters", "clusters.id", exists("cluster", "id")),
    unique("clusters_live_name", "clusters", "clusters.owner, clusters.name", exists("cluster", "name")),
    check("clusters_state_valid", "clusters", "state", "pending, provisioning, ready, failed, deleting, deleted"),

    primary_key("networks_pkey", "networks", "networks.id", exists("network", "id")),
    unique("networks_live_owner", "networks", "networks.owner", exists("network", "owner")),
    unique("networks_live_wan_address", "networks", "networks.wan_address", exists("wan address", "wan_address")),
    check("networks_state_valid", "networks", "state", "pending, ready, failed, deleting, deleted"),
    // The invariant: a VLAN id is held by one live network at most.
    primary_key("network_vlans_pkey", "network_vlans", "network_vlans.vlan", exists("vlan", "vlan")),
    Constraint {
        name: "network_vlans_network_fk",
        table: "network_vlans",
        kind: Kind::ForeignKey,
        reported: "",
        meaning: Meaning::NotFound { kind: "network", column: "network_id" },
    },

    primary_key("operations_pkey", "operations", "operations.id", exists("operation", "id")),

    primary_key("audit_pkey", "audit", "audit.id", exists("audit event", "id")),

    // Overlaps are checked before the insert; the key catches a block inserted twice.
    primary_key("ip_blocks_pkey", "ip_blocks", "ip_blocks.start", Meaning::Conflict { what: "block", column: "start" }),
    check("ip_blocks_range_valid", "ip_blocks", "size", "at least one address"),
    owner_fk("ip_blocks_owner_fk", "ip_blocks"),

    // The invariant: an address is leased at most once in its scope (the flat pools, or one
    // tenant network).
    primary_key("leases_pkey", "leases", "leases.network, leases.address", exists("lease", "address")),
    check("leases_state_valid", "leases", "state", "reserved, active"),
    owner_fk("leases_owner_fk", "leases"),

    primary_key("idempotency_keys_pkey", "idempotency_keys", "idempotency_keys.owner, idempotency_keys.key", exists("idempotency key", "key")),

    primary_key("outbox_pkey", "outbox", "outbox.id", exists("outbox message", "id")),
    check("outbox_state_valid", "outbox", "state", "pending, delivered, dead"),
    check("outbox_attempts_valid", "outbox", "attempts", "zero or more"),

    primary_key("duties_pkey", "duties", "duties.name", exists("duty", "name")),
];

/// The constraint a violation of `kind` with SQLite's `identity` text refers to, for a
/// statement writing `table`.
pub(crate) fn find(kind: Kind, identity: &str, table: &str) -> Option<&'static Constraint> {
    CONSTRAINTS.iter().find(|c| {
        c.kind == kind
            && match kind {
                Kind::PrimaryKey | Kind::Unique => c.reported == identity,
                Kind::Check => c.name == identity,
                Kind::ForeignKey => c.table == table,
            }
    })
}

impl Constraint {
    /// The domain error, or `None` when `values` lacks the column to show (a bug of the caller).
    fn error(&self, values: Values<'_>) -> Option<Error> {
        self.meaning.error(self.name, values)
    }
}

/// Maps an error of a statement writing `table` onto the domain: a violation of a constraint in
/// [`CONSTRAINTS`] becomes its error; anything else is a backend error.
pub(crate) fn violation(error: rusqlite::Error, table: &'static str, values: Values<'_>) -> Error {
    match constraint_of(&error, table) {
        Some(constraint) => constraint.error(values).unwrap_or_else(|| sql(error)),
        None => sql(error),
    }
}

/// Which constraint of [`CONSTRAINTS`] `error` reports as violated, if any.
pub(crate) fn constraint_of(error: &rusqlite::Error, table: &str) -> Option<&'static Constraint> {
    let rusqlite::Error::SqliteFailure(failure, message) = error else {
        return None;
    };
    let kind = Kind::of(failure.extended_code)?;
    let identity = message.as_deref().and_then(|m| m.split_once(": ")).map_or("", |(_, identity)| identity);
    find(kind, identity, table)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rusqlite::Connection;

    use super::*;

    fn database() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        crate::migrate(&conn).unwrap();
        conn.execute_batch(
            "INSERT INTO users (username, email, team, ssh_key, key_fingerprint, role, status, uid, created_at, updated_at)
                 VALUES ('alice', 'alice@example.com', '', 'key', 'fp-alice', 'user', 'active', 1001, 0, 0);
             INSERT INTO registrations (id, username, email, team, ssh_key, status, created_at)
                 VALUES ('r1', 'dave', 'Dave@example.com', '', 'key', 'pending', 0);
             INSERT INTO key_changes (id, username, email, new_ssh_key, reason, status, created_at)
                 VALUES ('k1', 'alice', 'alice@example.com', 'key', 'lost', 'pending', 0);
             INSERT INTO tokens (id, owner, name, scope, secret_hash, created_at) VALUES ('t1', 'alice', 'laptop', 'user', 'h1', 0);
             INSERT INTO quota_overrides (owner) VALUES ('alice');
             INSERT INTO web_sessions (id, kind, owner, actor_name, role, secret_hash, created_at, expires_at, last_seen_at) VALUES ('w1', 'session', 'alice', 'alice', 'user', 'h1', 0, 0, 0);
             INSERT INTO vms (id, owner, name, os, spec, cpu, memory_mb, disk_gb, state, created_at, updated_at)
                 VALUES ('v1', 'alice', 'web', 'ubuntu', 'small', 1, 1, 1, 'running', 0, 0);
             INSERT INTO clusters (id, owner, name, cluster_type, kubernetes_version, control_plane_count, worker_count, control_plane_spec, control_plane_cpu, control_plane_memory_mb, control_plane_disk_gb, worker_spec, worker_cpu, worker_memory_mb, worker_disk_gb, state, status, created_at, updated_at)
                 VALUES ('c1', 'alice', 'dev', 'dev', 'v1', 1, 1, 'small', 2, 4096, 50, 'small', 2, 4096, 50, 'ready', '{}', 0, 0);
             INSERT INTO networks (id, owner, lans, mtu, wan_address, state, created_at, updated_at)
                 VALUES ('n1', 'alice', '[]', 1450, 11, 'ready', 0, 0);
             INSERT INTO network_vlans (vlan, network_id) VALUES (2001, 'n1');
             INSERT INTO operations (id, kind, owner, resource_kind, resource_id, resource_name, state, steps, log_tail, requested_by, created_at, updated_at)
                 VALUES ('o1', 'create_vm', 'alice', 'vm', 'v1', 'web', 'queued', '[]', '[]', 'alice', 0, 0);
             INSERT INTO audit (id, at, actor, action, resource, source, outcome, details) VALUES ('a1', 0, 'alice', 'x', 'y', 'z', 'success', '{}');
             INSERT INTO ip_blocks (start, last, pool, size, owner, allocated_at) VALUES (100, 131, 'default', 32, 'alice', 0);
             INSERT INTO leases (address, pool, owner, resource_kind, resource_id, resource_name, state, created_at)
                 VALUES (101, 'default', 'alice', 'vm', 'v1', 'web', 'active', 0);
             INSERT INTO idempotency_keys (owner, key, request_hash, operations, created_at) VALUES ('alice', 'k', 'h', '[]', 0);
             INSERT INTO outbox (id, event, state, attempts, next_attempt_at, created_at) VALUES ('m1', '{}', 'pending', 0, 0, 0);
             INSERT INTO duties (name, holder, expires_at) VALUES ('reconcile', 'a', 0);",
        )
        .unwrap();
        conn
    }

    /// A statement violating each constraint, and the table it writes.
    #[rustfmt::skip]
    const VIOLATIONS: &[(&str, &str, &str)] = &[
        ("users_pkey", "users", "INSERT INTO users (username, email, team, ssh_key, key_fingerprint, role, status, created_at, updated_at) VALUES ('alice', 'a@x.io', '', 'k', 'fp-2', 'user', 'active', 0, 0)"),
        ("users_key_fingerprint_unique", "users", "INSERT INTO users (username, email, team, ssh_key, key_fingerprint, role, status, created_at, updated_at) VALUES ('bob', 'b@x.io', '', 'k', 'fp-alice', 'user', 'active', 0, 0)"),
        ("users_uid_unique", "users", "INSERT INTO users (username, email, team, ssh_key, key_fingerprint, role, status, uid, created_at, updated_at) VALUES ('bob', 'b@x.io', '', 'k', 'fp-bob', 'user', 'active', 1001, 0, 0)"),
        ("users_role_valid", "users", "UPDATE users SET role = 'root'"),
        ("users_status_valid", "users", "UPDATE users SET status = 'gone'"),
        ("registrations_pkey", "registrations", "INSERT INTO registrations (id, username, email, team, ssh_key, status, created_at) VALUES ('r1', 'erin', 'e@x.io', '', 'k', 'approved', 0)"),
        ("registrations_status_valid", "registrations", "UPDATE registrations SET status = 'maybe'"),
        ("registrations_pending_username", "registrations", "INSERT INTO registrations (id, username, email, team, ssh_key, status, created_at) VALUES ('r2', 'dave', 'other@x.io', '', 'k', 'pending', 0)"),
        ("registrations_pending_email", "registrations", "INSERT INTO registrations (id, username, email, team, ssh_key, status, created_at) VALUES ('r2', 'erin', 'DAVE@example.com', '', 'k', 'pending', 0)"),
        ("key_changes_pkey", "key_changes", "INSERT INTO key_changes (id, username, email, new_ssh_key, reason, status, created_at) VALUES ('k1', 'bob', 'b@x.io', 'k', 'r', 'approved', 0)"),
        ("key_changes_status_valid", "key_changes", "UPDATE key_changes SET status = 'maybe'"),
        ("key_changes_pending_username", "key_changes", "INSERT INTO key_changes (id, username, email, new_ssh_key, reason, status, created_at) VALUES ('k2', 'alice', 'a@x.io', 'k', 'r', 'pending', 0)"),
        ("tokens_pkey", "tokens", "INSERT INTO tokens (id, owner, name, scope, secret_hash, created_at) VALUES ('t1', 'alice', 'n', 'user', 'h2', 0)"),
        ("tokens_owner_fk", "tokens", "INSERT INTO tokens (id, owner, name, scope, secret_hash, created_at) VALUES ('t2', 'ghost', 'n', 'user', 'h2', 0)"),
        ("tokens_scope_valid", "tokens", "UPDATE tokens SET scope = 'root'"),
        ("tokens_secret_hash_unique", "tokens", "INSERT INTO tokens (id, owner, name, scope, secret_hash, created_at) VALUES ('t2', 'alice', 'n', 'user', 'h1', 0)"),
        ("web_sessions_pkey", "web_sessions", "INSERT INTO web_sessions (id, kind, owner, actor_name, role, secret_hash, created_at, expires_at, last_seen_at) VALUES ('w1', 'link', NULL, 'root', 'admin', 'h2', 0, 0, 0)"),
        ("web_sessions_owner_fk", "web_sessions", "INSERT INTO web_sessions (id, kind, owner, actor_name, role, secret_hash, created_at, expires_at, last_seen_at) VALUES ('w2', 'link', 'ghost', 'ghost', 'user', 'h2', 0, 0, 0)"),
        ("web_sessions_kind_valid", "web_sessions", "UPDATE web_sessions SET kind = 'cookie'"),
        ("web_sessions_role_valid", "web_sessions", "UPDATE web_sessions SET role = 'root'"),
        ("web_sessions_secret_hash_unique", "web_sessions", "INSERT INTO web_sessions (id, kind, owner, actor_name, role, secret_hash, created_at, expires_at, last_seen_at) VALUES ('w2', 'link', NULL, 'root', 'admin', 'h1', 0, 0, 0)"),
        ("quota_overrides_pkey", "quota_overrides", "INSERT INTO quota_overrides (owner) VALUES ('alice')"),
        ("quota_overrides_owner_fk", "quota_overrides", "INSERT INTO quota_overrides (owner) VALUES ('ghost')"),
        ("vms_pkey", "vms", "INSERT INTO vms (id, owner, name, os, spec, cpu, memory_mb, disk_gb, state, created_at, updated_at) VALUES ('v1', 'alice', 'db', 'u', 's', 1, 1, 1, 'running', 0, 0)"),
        ("vms_live_name", "vms", "INSERT INTO vms (id, owner, name, os, spec, cpu, memory_mb, disk_gb, state, created_at, updated_at) VALUES ('v2', 'alice', 'web', 'u', 's', 1, 1, 1, 'running', 0, 0)"),
        ("clusters_pkey", "clusters", "INSERT INTO clusters (id, owner, name, cluster_type, kubernetes_version, control_plane_count, worker_count, control_plane_spec, control_plane_cpu, control_plane_memory_mb, control_plane_disk_gb, worker_spec, worker_cpu, worker_memory_mb, worker_disk_gb, state, status, created_at, updated_at) VALUES ('c1', 'alice', 'other', 'dev', 'v1', 1, 1, 's', 1, 1, 1, 's', 1, 1, 1, 'ready', '{}', 0, 0)"),
        ("clusters_state_valid", "clusters", "UPDATE clusters SET state = 'gone'"),
        ("clusters_live_name", "clusters", "INSERT INTO clusters (id, owner, name, cluster_type, kubernetes_version, control_plane_count, worker_count, control_plane_spec, control_plane_cpu, control_plane_memory_mb, control_plane_disk_gb, worker_spec, worker_cpu, worker_memory_mb, worker_disk_gb, state, status, created_at, updated_at) VALUES ('c2', 'alice', 'dev', 'dev', 'v1', 1, 1, 's', 1, 1, 1, 's', 1, 1, 1, 'ready', '{}', 0, 0)"),
        ("networks_pkey", "networks", "INSERT INTO networks (id, owner, lans, mtu, wan_address, state, created_at, updated_at) VALUES ('n1', 'bob', '[]', 1450, 12, 'ready', 0, 0)"),
        ("networks_live_owner", "networks", "INSERT INTO networks (id, owner, lans, mtu, wan_address, state, created_at, updated_at) VALUES ('n2', 'alice', '[]', 1450, 12, 'ready', 0, 0)"),
        ("networks_live_wan_address", "networks", "INSERT INTO networks (id, owner, lans, mtu, wan_address, state, created_at, updated_at) VALUES ('n2', 'bob', '[]', 1450, 11, 'ready', 0, 0)"),
        ("networks_state_valid", "networks", "UPDATE networks SET state = 'gone'"),
        ("network_vlans_pkey", "network_vlans", "INSERT INTO network_vlans (vlan, network_id) VALUES (2001, 'n1')"),
        ("network_vlans_network_fk", "network_vlans", "INSERT INTO network_vlans (vlan, network_id) VALUES (2002, 'ghost')"),
        ("operations_pkey", "operations", "INSERT INTO operations (id, kind, owner, resource_kind, resource_id, resource_name, state, steps, log_tail, requested_by, created_at, updated_at) VALUES ('o1', 'create_vm', 'alice', 'vm', 'v1', 'web', 'queued', '[]', '[]', 'alice', 0, 0)"),
        ("audit_pkey", "audit", "INSERT INTO audit (id, at, actor, action, resource, source, outcome, details) VALUES ('a1', 0, 'a', 'x', 'y', 'z', 'success', '{}')"),
        ("ip_blocks_pkey", "ip_blocks", "INSERT INTO ip_blocks (start, last, pool, size, owner, allocated_at) VALUES (100, 115, 'default', 16, 'alice', 0)"),
        ("ip_blocks_range_valid", "ip_blocks", "INSERT INTO ip_blocks (start, last, pool, size, owner, allocated_at) VALUES (200, 199, 'default', 0, 'alice', 0)"),
        ("ip_blocks_owner_fk", "ip_blocks", "INSERT INTO ip_blocks (start, last, pool, size, owner, allocated_at) VALUES (200, 215, 'default', 16, 'ghost', 0)"),
        ("leases_pkey", "leases", "INSERT INTO leases (address, pool, owner, resource_kind, resource_id, resource_name, state, created_at) VALUES (101, 'default', 'alice', 'vm', 'v2', 'db', 'reserved', 0)"),
        ("leases_state_valid", "leases", "UPDATE leases SET state = 'gone'"),
        ("leases_owner_fk", "leases", "INSERT INTO leases (address, pool, owner, resource_kind, resource_id, resource_name, state, created_at) VALUES (102, 'default', 'ghost', 'vm', 'v2', 'db', 'reserved', 0)"),
        ("idempotency_keys_pkey", "idempotency_keys", "INSERT INTO idempotency_keys (owner, key, request_hash, operations, created_at) VALUES ('alice', 'k', 'h2', '[]', 0)"),
        ("outbox_pkey", "outbox", "INSERT INTO outbox (id, event, state, attempts, next_attempt_at, created_at) VALUES ('m1', '{}', 'pending', 0, 0, 0)"),
        ("outbox_state_valid", "outbox", "UPDATE outbox SET state = 'lost'"),
        ("outbox_attempts_valid", "outbox", "UPDATE outbox SET attempts = -1"),
        ("duties_pkey", "duties", "INSERT INTO duties (name, holder, expires_at) VALUES ('reconcile', 'b', 0)"),
    ];

    /// A value for every column an error may show.
    fn values() -> Vec<(&'static str, &'static dyn std::fmt::Display)> {
        [
            "username",
            "key_fingerprint",
            "uid",
            "role",
            "status",
            "id",
            "email",
            "owner",
            "scope",
            "name",
            "start",
            "size",
            "address",
            "state",
            "key",
            "attempts",
            "kind",
            "vlan",
            "network_id",
            "wan_address",
        ]
        .into_iter()
        .map(|column| (column, &"shown" as &dyn std::fmt::Display))
        .collect()
    }

    #[test]
    fn every_constraint_maps_to_its_error() {
        let conn = database();
        let tested: BTreeSet<&str> = VIOLATIONS.iter().map(|(name, _, _)| *name).collect();
        let all: BTreeSet<&str> = CONSTRAINTS.iter().map(|c| c.name).collect();
        assert_eq!(tested, all, "every constraint has a violation below");
        for (name, table, statement) in VIOLATIONS {
            let error = conn.execute(statement, []).expect_err(name);
            let found = constraint_of(&error, table).unwrap_or_else(|| panic!("{name}: {error} is not in the table"));
            assert_eq!(found.name, *name, "{error}");
            let mapped = violation(error, table, &values());
            let (kind, label) = match found.meaning {
                Meaning::AlreadyExists { kind, .. } => ("already-exists", kind),
                Meaning::NotFound { kind, .. } => ("not-found", kind),
                Meaning::Conflict { what, .. } => ("conflict", what),
                Meaning::Invalid { column, .. } => ("invalid-input", column),
            };
            assert_eq!(mapped.kind(), kind, "{name}: {mapped}");
            let text = mapped.to_string();
            assert!(text.contains(label) && text.contains("shown"), "{name}: {text}");
        }
    }

    #[test]
    fn a_violation_without_the_value_to_show_or_of_another_kind_is_a_backend_error() {
        let conn = database();
        let error = conn.execute(VIOLATIONS[0].2, []).unwrap_err();
        assert_eq!(violation(error, "users", &[]).kind(), "backend");
        let error =
            conn.execute("INSERT INTO duties (name, holder, expires_at) VALUES ('x', NULL, 0)", []).unwrap_err();
        let mapped = violation(error, "duties", &values());
        assert_eq!(mapped.kind(), "backend", "NOT NULL is a bug of this crate: {mapped}");
        assert!(mapped.to_string().contains("NOT NULL constraint failed: duties.holder"), "{mapped}");
    }

    #[test]
    fn every_name_in_the_schema_has_an_entry_and_identities_are_distinct() {
        let conn = database();
        let mut statement = conn.prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_schema").unwrap();
        let rows: Vec<(String, String, String)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut named = BTreeSet::new();
        for (kind, name, sql) in &rows {
            if kind == "index" && sql.starts_with("CREATE UNIQUE INDEX") {
                named.insert(name.clone());
            }
            let mut rest = sql.as_str();
            while let Some(at) = rest.find("CONSTRAINT ") {
                rest = &rest[at + "CONSTRAINT ".len()..];
                named.insert(rest.split_whitespace().next().unwrap().to_owned());
            }
        }
        let entries: BTreeSet<String> = CONSTRAINTS.iter().map(|c| c.name.to_owned()).collect();
        let missing: Vec<_> = named.difference(&entries).collect();
        assert!(missing.is_empty(), "named in the schema but not mapped: {missing:?}");
        for entry in entries.difference(&named) {
            assert!(entry.ends_with("_pkey"), "{entry} is mapped but not in the schema");
        }
        let mut identities = BTreeSet::new();
        for c in CONSTRAINTS {
            let identity = match c.kind {
                Kind::PrimaryKey | Kind::Unique => c.reported,
                Kind::Check => c.name,
                Kind::ForeignKey => c.table,
            };
            assert!(identities.insert((c.kind as u8, identity)), "{} shares its identity", c.name);
            assert!(c.name.starts_with(c.table), "{} belongs to {}", c.name, c.table);
        }
        let mut statement = conn.prepare("SELECT count(*) FROM pragma_foreign_key_list(?1)").unwrap();
        for (kind, table, _) in &rows {
            if kind == "table" {
                let keys: i64 = statement.query_row([table], |row| row.get(0)).unwrap();
                assert!(keys <= 1, "{table} has {keys} foreign keys: a violation would not say which");
            }
        }
    }
}
