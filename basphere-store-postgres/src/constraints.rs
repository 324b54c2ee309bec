//! Constraint violations mapped onto domain errors by constraint name, in one table.
//!
//! PostgreSQL names the violated constraint in its error (`constraint`), with the SQLSTATE
//! telling its kind (`23505` unique, `23503` foreign key, `23514` check). The schema names every
//! constraint and unique index as the SQLite store's does, and [`CONSTRAINTS`] maps each name to
//! the error it means; the tests violate every one of them on a real database.

use basphere_core::store::constraint::Meaning;
pub(crate) use basphere_core::store::constraint::Values;
use basphere_core::Error;
use tokio_postgres::error::SqlState;

use crate::pg;

/// One named constraint of the schema.
#[derive(Debug)]
pub(crate) struct Constraint {
    pub name: &'static str,
    pub meaning: Meaning,
}

const fn exists(name: &'static str, kind: &'static str, column: &'static str) -> Constraint {
    Constraint { name, meaning: Meaning::AlreadyExists { kind, column } }
}

const fn check(name: &'static str, column: &'static str, accepted: &'static str) -> Constraint {
    Constraint { name, meaning: Meaning::Invalid { column, accepted } }
}

/// A foreign key to `users`: the owner must be an account.
const fn owner_fk(name: &'static str) -> Constraint {
    Constraint { name, meaning: Meaning::NotFound { kind: "user", column: "owner" } }
}

/// Every constraint of the schema, and what its violation means.
#[rustfmt::skip]
pub(crate) const CONSTRAINTS: &[Constraint] = &[
    exists("users_pkey", "user", "username"),
    exists("users_key_fingerprint_unique", "ssh key", "key_fingerprint"),
    exists("users_uid_unique", "uid", "uid"),
    check("users_role_valid", "role", "user, admin"),
    check("users_status_valid", "status", "active, suspended"),

    exists("registrations_pkey", "registration", "id"),
    check("registrations_status_valid", "status", "pending, approved, rejected"),
    exists("registrations_pending_username", "pending registration", "username"),
    exists("registrations_pending_email", "pending registration", "email"),

    exists("key_changes_pkey", "key change", "id"),
    check("key_changes_status_valid", "status", "pending, approved, rejected"),
    exists("key_changes_pending_username", "pending key change", "username"),

    exists("tokens_pkey", "token", "id"),
    owner_fk("tokens_owner_fk"),
    check("tokens_scope_valid", "scope", "user, admin"),
    // Named by the token's id: the hash is a secret's.
    exists("tokens_secret_hash_unique", "token", "id"),

    exists("web_sessions_pkey", "web session", "id"),
    owner_fk("web_sessions_owner_fk"),
    check("web_sessions_kind_valid", "kind", "link, session"),
    check("web_sessions_role_valid", "role", "user, admin"),
    // Named by the session's id: the hash is a secret's.
    exists("web_sessions_secret_hash_unique", "web session", "id"),

    exists("quota_overrides_pkey", "quota override", "owner"),
    owner_fk("quota_overrides_owner_fk"),

    exists("vms_pkey", "vm", "id"),
    exists("vms_live_name", "vm", "name"),

    exists("clusters_pkey", "cluster", "id"),
    exists("clusters_live_name", "cluster", "name"),
    check("clusters_state_valid", "state", "pending, provisioning, ready, failed, deleting, deleted"),

    exists("networks_pkey", "network", "id"),
    exists("networks_live_owner", "network", "owner"),
    exists("networks_live_wan_address", "wan address", "wan_address"),
    check("networks_state_valid", "state", "pending, ready, failed, deleting, deleted"),
    exists("network_vlans_pkey", "vlan", "vlan"),
    Constraint { name: "network_vlans_network_fk", meaning: Meaning::NotFound { kind: "network", column: "network_id" } },

    exists("operations_pkey", "operation", "id"),

    exists("audit_pkey", "audit event", "id"),

    // Overlaps are checked before the insert; the key catches a block inserted twice.
    Constraint { name: "ip_blocks_pkey", meaning: Meaning::Conflict { what: "block", column: "start" } },
    check("ip_blocks_range_valid", "size", "at least one address"),
    owner_fk("ip_blocks_owner_fk"),

    // The invariant: an address is leased at most once.
    exists("leases_pkey", "lease", "address"),
    check("leases_state_valid", "state", "reserved, active"),
    owner_fk("leases_owner_fk"),

    exists("idempotency_keys_pkey", "idempotency key", "key"),

    exists("outbox_pkey", "outbox message", "id"),
    check("outbox_state_valid", "state", "pending, delivered, dead"),
    check("outbox_attempts_valid", "attempts", "zero or more"),

    exists("duties_pkey", "duty", "name"),
];

impl Constraint {
    /// The domain error, or `None` when `values` lacks the column to show (a bug of the caller).
    fn error(&self, values: Values<'_>) -> Option<Error> {
        self.meaning.error(self.name, values)
    }
}

/// Which constraint of [`CONSTRAINTS`] `error` reports as violated, if any.
pub(crate) fn constraint_of(error: &tokio_postgres::Error) -> Option<&'static Constraint> {
    let code = error.code()?;
    let violation = *code == SqlState::UNIQUE_VIOLATION
        || *code == SqlState::FOREIGN_KEY_VIOLATION
        || *code == SqlState::CHECK_VIOLATION;
    if !violation {
        return None;
    }
    let name = error.as_db_error()?.constraint()?;
    CONSTRAINTS.iter().find(|c| c.name == name)
}

/// Maps an error of a statement writing `table` onto the domain: a violation of a constraint in
/// [`CONSTRAINTS`] becomes its error; anything else is a backend error.
pub(crate) fn violation(error: tokio_postgres::Error, _table: &'static str, values: Values<'_>) -> Error {
    match constraint_of(&error) {
        Some(constraint) => constraint.error(values).unwrap_or_else(|| pg(error)),
        None => pg(error),
    }
}
