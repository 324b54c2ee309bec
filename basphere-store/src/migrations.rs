//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! Each entry moves the schema from version `index` to `index + 1`. Entries are never edited
//! once released; a change is a new entry.

/// The migrations, in order. `MIGRATIONS.len()` is the current schema version.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE users (
        username        TEXT PRIMARY KEY,
        email           TEXT NOT NULL,
        team            TEXT NOT NULL,
        ssh_key         TEXT NOT NULL,
        key_fingerprint TEXT NOT NULL UNIQUE,
        role            TEXT NOT NULL CHECK (role IN ('user', 'admin')),
        status          TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
        uid             INTEGER UNIQUE,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE registrations (
        id            TEXT PRIMARY KEY,
        username      TEXT NOT NULL,
        email         TEXT NOT NULL,
        team          TEXT NOT NULL,
        ssh_key       TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
        created_at    INTEGER NOT NULL,
        processed_by  TEXT,
        processed_at  INTEGER,
        reject_reason TEXT
    ) STRICT;
    CREATE UNIQUE INDEX registrations_pending_username ON registrations (username) WHERE status = 'pending';
    CREATE UNIQUE INDEX registrations_pending_email ON registrations (lower(email)) WHERE status = 'pending';

    CREATE TABLE key_changes (
        id            TEXT PRIMARY KEY,
        username      TEXT NOT NULL,
        email         TEXT NOT NULL,
        new_ssh_key   TEXT NOT NULL,
        reason        TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
        created_at    INTEGER NOT NULL,
        processed_by  TEXT,
        processed_at  INTEGER,
        reject_reason TEXT
    ) STRICT;
    CREATE UNIQUE INDEX key_changes_pending_username ON key_changes (username) WHERE status = 'pending';

    CREATE TABLE tokens (
        id           TEXT PRIMARY KEY,
        owner        TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        scope        TEXT NOT NULL CHECK (scope IN ('user', 'admin')),
        secret_hash  TEXT NOT NULL UNIQUE,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        revoked_at   INTEGER,
        last_used_at INTEGER
    ) STRICT;
    CREATE INDEX tokens_owner ON tokens (owner);

    CREATE TABLE vms (
        id         TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        name       TEXT NOT NULL,
        os         TEXT NOT NULL,
        spec       TEXT NOT NULL,
        cpu        INTEGER NOT NULL,
        memory_mb  INTEGER NOT NULL,
        disk_gb    INTEGER NOT NULL,
        ip         INTEGER,
        state      TEXT NOT NULL,
        reason     TEXT,
        backend_id TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    -- A name is unique per owner among live VMs; deleted records stay as history.
    CREATE UNIQUE INDEX vms_live_name ON vms (owner, name) WHERE state <> 'deleted';
    CREATE INDEX vms_owner ON vms (owner, id);

    CREATE TABLE clusters (
        id                     TEXT PRIMARY KEY,
        owner                  TEXT NOT NULL,
        name                   TEXT NOT NULL,
        cluster_type           TEXT NOT NULL,
        kubernetes_version     TEXT NOT NULL,
        control_plane_count    INTEGER NOT NULL,
        worker_count           INTEGER NOT NULL,
        worker_spec            TEXT NOT NULL,
        control_plane_endpoint INTEGER,
        state                  TEXT NOT NULL,
        reason                 TEXT,
        created_at             INTEGER NOT NULL,
        updated_at             INTEGER NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX clusters_live_name ON clusters (owner, name) WHERE state <> 'deleted';

    CREATE TABLE operations (
        id            TEXT PRIMARY KEY,
        kind          TEXT NOT NULL,
        owner         TEXT NOT NULL,
        resource_kind TEXT NOT NULL,
        resource_id   TEXT NOT NULL,
        resource_name TEXT NOT NULL,
        state         TEXT NOT NULL,
        steps         TEXT NOT NULL,
        error         TEXT,
        log_tail      TEXT NOT NULL,
        requested_by  TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX operations_resource ON operations (resource_id);
    CREATE INDEX operations_owner ON operations (owner, id);
    CREATE INDEX operations_unfinished ON operations (id) WHERE state IN ('queued', 'running');

    CREATE TABLE audit (
        id       TEXT PRIMARY KEY,
        at       INTEGER NOT NULL,
        actor    TEXT NOT NULL,
        action   TEXT NOT NULL,
        resource TEXT NOT NULL,
        source   TEXT NOT NULL,
        outcome  TEXT NOT NULL,
        details  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX audit_actor ON audit (actor, id);

    CREATE TABLE quota_overrides (
        owner                 TEXT PRIMARY KEY REFERENCES users (username) ON DELETE CASCADE,
        max_vms               INTEGER,
        max_clusters          INTEGER,
        max_nodes_per_cluster INTEGER,
        max_ips               INTEGER,
        max_vcpus             INTEGER,
        max_memory_mb         INTEGER,
        max_disk_gb           INTEGER
    ) STRICT;

    -- Addresses are stored as integers so ranges are index range scans.
    CREATE TABLE ip_blocks (
        start        INTEGER PRIMARY KEY,
        last         INTEGER NOT NULL CHECK (last >= start),
        pool         TEXT NOT NULL,
        size         INTEGER NOT NULL,
        owner        TEXT NOT NULL REFERENCES users (username),
        allocated_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX ip_blocks_owner ON ip_blocks (owner, start);

    -- The primary key is the invariant: an address is leased at most once.
    CREATE TABLE leases (
        address       INTEGER PRIMARY KEY,
        pool          TEXT NOT NULL,
        owner         TEXT NOT NULL REFERENCES users (username),
        resource_kind TEXT NOT NULL,
        resource_id   TEXT NOT NULL,
        resource_name TEXT NOT NULL,
        state         TEXT NOT NULL CHECK (state IN ('reserved', 'active')),
        created_at    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX leases_owner ON leases (owner, address);
    CREATE INDEX leases_resource ON leases (resource_id);
    "#,
    // 2: idempotency keys for create requests.
    r#"
    CREATE TABLE idempotency_keys (
        owner        TEXT NOT NULL,
        key          TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        operations   TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (owner, key)
    ) STRICT;
    "#,
];

/// The schema version this build writes.
pub const LATEST: usize = MIGRATIONS.len();
