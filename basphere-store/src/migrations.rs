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
    // 3: every UNIQUE, CHECK and FOREIGN KEY constraint named, so that a violation is mapped
    // by name (`constraints.rs`); claims on operations; the outbox; duties.
    //
    // SQLite cannot name or change a constraint in place, so the tables that had unnamed ones
    // are rebuilt: create the new table, copy, drop the old one, rename the new one, create
    // its indexes again. `migrate_to` runs migrations with foreign key enforcement off (else
    // dropping `users` would cascade into `tokens`) and checks the foreign keys before commit.
    r#"
    CREATE TABLE users_v3 (
        username        TEXT NOT NULL CONSTRAINT users_pkey PRIMARY KEY,
        email           TEXT NOT NULL,
        team            TEXT NOT NULL,
        ssh_key         TEXT NOT NULL,
        key_fingerprint TEXT NOT NULL CONSTRAINT users_key_fingerprint_unique UNIQUE,
        role            TEXT NOT NULL CONSTRAINT users_role_valid CHECK (role IN ('user', 'admin')),
        status          TEXT NOT NULL CONSTRAINT users_status_valid CHECK (status IN ('active', 'suspended')),
        uid             INTEGER CONSTRAINT users_uid_unique UNIQUE,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    ) STRICT;
    INSERT INTO users_v3 (username, email, team, ssh_key, key_fingerprint, role, status, uid, created_at, updated_at)
        SELECT username, email, team, ssh_key, key_fingerprint, role, status, uid, created_at, updated_at FROM users;
    DROP TABLE users;
    ALTER TABLE users_v3 RENAME TO users;

    CREATE TABLE registrations_v3 (
        id            TEXT NOT NULL CONSTRAINT registrations_pkey PRIMARY KEY,
        username      TEXT NOT NULL,
        email         TEXT NOT NULL,
        team          TEXT NOT NULL,
        ssh_key       TEXT NOT NULL,
        status        TEXT NOT NULL CONSTRAINT registrations_status_valid CHECK (status IN ('pending', 'approved', 'rejected')),
        created_at    INTEGER NOT NULL,
        processed_by  TEXT,
        processed_at  INTEGER,
        reject_reason TEXT
    ) STRICT;
    INSERT INTO registrations_v3 (id, username, email, team, ssh_key, status, created_at, processed_by, processed_at, reject_reason)
        SELECT id, username, email, team, ssh_key, status, created_at, processed_by, processed_at, reject_reason FROM registrations;
    DROP TABLE registrations;
    ALTER TABLE registrations_v3 RENAME TO registrations;
    CREATE UNIQUE INDEX registrations_pending_username ON registrations (username) WHERE status = 'pending';
    CREATE UNIQUE INDEX registrations_pending_email ON registrations (lower(email)) WHERE status = 'pending';

    CREATE TABLE key_changes_v3 (
        id            TEXT NOT NULL CONSTRAINT key_changes_pkey PRIMARY KEY,
        username      TEXT NOT NULL,
        email         TEXT NOT NULL,
        new_ssh_key   TEXT NOT NULL,
        reason        TEXT NOT NULL,
        status        TEXT NOT NULL CONSTRAINT key_changes_status_valid CHECK (status IN ('pending', 'approved', 'rejected')),
        created_at    INTEGER NOT NULL,
        processed_by  TEXT,
        processed_at  INTEGER,
        reject_reason TEXT
    ) STRICT;
    INSERT INTO key_changes_v3 (id, username, email, new_ssh_key, reason, status, created_at, processed_by, processed_at, reject_reason)
        SELECT id, username, email, new_ssh_key, reason, status, created_at, processed_by, processed_at, reject_reason FROM key_changes;
    DROP TABLE key_changes;
    ALTER TABLE key_changes_v3 RENAME TO key_changes;
    CREATE UNIQUE INDEX key_changes_pending_username ON key_changes (username) WHERE status = 'pending';

    CREATE TABLE tokens_v3 (
        id           TEXT NOT NULL CONSTRAINT tokens_pkey PRIMARY KEY,
        owner        TEXT NOT NULL CONSTRAINT tokens_owner_fk REFERENCES users (username) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        scope        TEXT NOT NULL CONSTRAINT tokens_scope_valid CHECK (scope IN ('user', 'admin')),
        secret_hash  TEXT NOT NULL CONSTRAINT tokens_secret_hash_unique UNIQUE,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        revoked_at   INTEGER,
        last_used_at INTEGER
    ) STRICT;
    INSERT INTO tokens_v3 (id, owner, name, scope, secret_hash, created_at, expires_at, revoked_at, last_used_at)
        SELECT id, owner, name, scope, secret_hash, created_at, expires_at, revoked_at, last_used_at FROM tokens;
    DROP TABLE tokens;
    ALTER TABLE tokens_v3 RENAME TO tokens;
    CREATE INDEX tokens_owner ON tokens (owner);

    CREATE TABLE quota_overrides_v3 (
        owner                 TEXT NOT NULL CONSTRAINT quota_overrides_pkey PRIMARY KEY
                              CONSTRAINT quota_overrides_owner_fk REFERENCES users (username) ON DELETE CASCADE,
        max_vms               INTEGER,
        max_clusters          INTEGER,
        max_nodes_per_cluster INTEGER,
        max_ips               INTEGER,
        max_vcpus             INTEGER,
        max_memory_mb         INTEGER,
        max_disk_gb           INTEGER
    ) STRICT;
    INSERT INTO quota_overrides_v3 (owner, max_vms, max_clusters, max_nodes_per_cluster, max_ips, max_vcpus, max_memory_mb, max_disk_gb)
        SELECT owner, max_vms, max_clusters, max_nodes_per_cluster, max_ips, max_vcpus, max_memory_mb, max_disk_gb FROM quota_overrides;
    DROP TABLE quota_overrides;
    ALTER TABLE quota_overrides_v3 RENAME TO quota_overrides;

    CREATE TABLE ip_blocks_v3 (
        start        INTEGER CONSTRAINT ip_blocks_pkey PRIMARY KEY,
        last         INTEGER NOT NULL,
        pool         TEXT NOT NULL,
        size         INTEGER NOT NULL,
        owner        TEXT NOT NULL CONSTRAINT ip_blocks_owner_fk REFERENCES users (username),
        allocated_at INTEGER NOT NULL,
        CONSTRAINT ip_blocks_range_valid CHECK (last >= start)
    ) STRICT;
    INSERT INTO ip_blocks_v3 (start, last, pool, size, owner, allocated_at)
        SELECT start, last, pool, size, owner, allocated_at FROM ip_blocks;
    DROP TABLE ip_blocks;
    ALTER TABLE ip_blocks_v3 RENAME TO ip_blocks;
    CREATE INDEX ip_blocks_owner ON ip_blocks (owner, start);

    CREATE TABLE leases_v3 (
        address       INTEGER CONSTRAINT leases_pkey PRIMARY KEY,
        pool          TEXT NOT NULL,
        owner         TEXT NOT NULL CONSTRAINT leases_owner_fk REFERENCES users (username),
        resource_kind TEXT NOT NULL,
        resource_id   TEXT NOT NULL,
        resource_name TEXT NOT NULL,
        state         TEXT NOT NULL CONSTRAINT leases_state_valid CHECK (state IN ('reserved', 'active')),
        created_at    INTEGER NOT NULL
    ) STRICT;
    INSERT INTO leases_v3 (address, pool, owner, resource_kind, resource_id, resource_name, state, created_at)
        SELECT address, pool, owner, resource_kind, resource_id, resource_name, state, created_at FROM leases;
    DROP TABLE leases;
    ALTER TABLE leases_v3 RENAME TO leases;
    CREATE INDEX leases_owner ON leases (owner, address);
    CREATE INDEX leases_resource ON leases (resource_id);

    -- A claim: the worker and its expiry while held (both NULL when never claimed or released),
    -- and the last fence handed out, which only grows. Claimable operations are found through
    -- operations_unfinished.
    ALTER TABLE operations ADD COLUMN claim_worker TEXT;
    ALTER TABLE operations ADD COLUMN claim_fence INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE operations ADD COLUMN claim_expires_at INTEGER;

    CREATE TABLE outbox (
        id              TEXT NOT NULL CONSTRAINT outbox_pkey PRIMARY KEY,
        -- The NotificationEvent as JSON.
        event           TEXT NOT NULL,
        state           TEXT NOT NULL CONSTRAINT outbox_state_valid CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts        INTEGER NOT NULL CONSTRAINT outbox_attempts_valid CHECK (attempts >= 0),
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        delivered_at    INTEGER
    ) STRICT;
    -- The dispatcher's question: pending messages due now, the longest due first.
    CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'pending';
    -- The admin view by state.
    CREATE INDEX outbox_state ON outbox (state, id);

    -- Named singleton leases: one process of several does the job while it holds the duty.
    CREATE TABLE duties (
        name       TEXT NOT NULL CONSTRAINT duties_pkey PRIMARY KEY,
        holder     TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;
    "#,
    // 4: who holds an outbox message's claim, so that a restarted instance takes back at once
    // what an earlier boot of it held (as with operations), instead of after the claim window.
    r#"
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    "#,
    // 5: requests are listed a page at a time, by status or by username, oldest first.
    r#"
    CREATE INDEX registrations_by_status ON registrations (status, id);
    CREATE INDEX registrations_by_username ON registrations (username, id);
    CREATE INDEX key_changes_by_status ON key_changes (status, id);
    CREATE INDEX key_changes_by_username ON key_changes (username, id);
    "#,
    // 6: a notification is queued once per notifier channel, so that one channel's failures are
    // retried without sending again on the others. Empty: every channel at once (older rows).
    r#"
    ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT '';
    "#,
    // 7: browsers' sign-in links and sessions. The owner is NULL for the system administrator,
    // who has no account; an account's go with it.
    r#"
    CREATE TABLE web_sessions (
        id           TEXT NOT NULL CONSTRAINT web_sessions_pkey PRIMARY KEY,
        kind         TEXT NOT NULL CONSTRAINT web_sessions_kind_valid CHECK (kind IN ('link', 'session')),
        owner        TEXT CONSTRAINT web_sessions_owner_fk REFERENCES users (username) ON DELETE CASCADE,
        actor_name   TEXT NOT NULL,
        role         TEXT NOT NULL CONSTRAINT web_sessions_role_valid CHECK (role IN ('user', 'admin')),
        secret_hash  TEXT NOT NULL CONSTRAINT web_sessions_secret_hash_unique UNIQUE,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        ended_at     INTEGER
    ) STRICT;
    -- Suspension ends an account's open sessions; the hourly clean-up removes old ones.
    CREATE INDEX web_sessions_open_by_owner ON web_sessions (owner) WHERE ended_at IS NULL;
    CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
    -- The console's audit log filters by action.
    CREATE INDEX audit_action ON audit (action, id);
    "#,
    // 8: clusters keep both node sizes (their usage is counted with the VMs') and the status the
    // backend last reported (JSON). No earlier release wrote clusters; any row keeps zero sizes.
    r#"
    CREATE TABLE clusters_v8 (
        id                      TEXT NOT NULL CONSTRAINT clusters_pkey PRIMARY KEY,
        owner                   TEXT NOT NULL,
        name                    TEXT NOT NULL,
        cluster_type            TEXT NOT NULL,
        kubernetes_version      TEXT NOT NULL,
        control_plane_count     INTEGER NOT NULL,
        worker_count            INTEGER NOT NULL,
        control_plane_spec      TEXT NOT NULL,
        control_plane_cpu       INTEGER NOT NULL,
        control_plane_memory_mb INTEGER NOT NULL,
        control_plane_disk_gb   INTEGER NOT NULL,
        worker_spec             TEXT NOT NULL,
        worker_cpu              INTEGER NOT NULL,
        worker_memory_mb        INTEGER NOT NULL,
        worker_disk_gb          INTEGER NOT NULL,
        control_plane_endpoint  INTEGER,
        state                   TEXT NOT NULL CONSTRAINT clusters_state_valid
                                CHECK (state IN ('pending', 'provisioning', 'ready', 'failed', 'deleting', 'deleted')),
        reason                  TEXT,
        status                  TEXT NOT NULL,
        created_at              INTEGER NOT NULL,
        updated_at              INTEGER NOT NULL
    ) STRICT;
    INSERT INTO clusters_v8 (id, owner, name, cluster_type, kubernetes_version, control_plane_count, worker_count,
            control_plane_spec, control_plane_cpu, control_plane_memory_mb, control_plane_disk_gb,
            worker_spec, worker_cpu, worker_memory_mb, worker_disk_gb, control_plane_endpoint, state, reason, status,
            created_at, updated_at)
        SELECT id, owner, name, cluster_type, kubernetes_version, control_plane_count, worker_count,
            '', 0, 0, 0, worker_spec, 0, 0, 0, control_plane_endpoint, state, reason, '{}', created_at, updated_at
        FROM clusters;
    DROP TABLE clusters;
    ALTER TABLE clusters_v8 RENAME TO clusters;
    CREATE UNIQUE INDEX clusters_live_name ON clusters (owner, name) WHERE state <> 'deleted';
    CREATE INDEX clusters_owner ON clusters (owner, id);
    "#,
    // 9: accounts found by email (one account per address), and the API token a browser session
    // was signed in with (no foreign key: a session whose token is gone is simply over).
    r#"
    CREATE INDEX users_email ON users (lower(email));
    ALTER TABLE web_sessions ADD COLUMN token_id TEXT;
    "#,
    // 10: tenant networks, one live network per account. A live network holds its VLAN ids
    // (rows of network_vlans, the id the key: no two live networks hold one) and its router's
    // WAN address (a partial unique index); a deleted one holds neither and stays as history.
    r#"
    CREATE TABLE networks (
        id          TEXT NOT NULL CONSTRAINT networks_pkey PRIMARY KEY,
        owner       TEXT NOT NULL,
        -- The LANs as JSON: each one's name, VLAN id, subnet and gateway.
        lans        TEXT NOT NULL,
        mtu         INTEGER NOT NULL,
        wan_address INTEGER NOT NULL,
        state       TEXT NOT NULL CONSTRAINT networks_state_valid
                    CHECK (state IN ('pending', 'ready', 'failed', 'deleting', 'deleted')),
        reason      TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;
    CREATE UNIQUE INDEX networks_live_owner ON networks (owner) WHERE state <> 'deleted';
    CREATE UNIQUE INDEX networks_live_wan_address ON networks (wan_address) WHERE state <> 'deleted';
    CREATE TABLE network_vlans (
        vlan       INTEGER NOT NULL CONSTRAINT network_vlans_pkey PRIMARY KEY,
        network_id TEXT NOT NULL CONSTRAINT network_vlans_network_fk REFERENCES networks (id)
    ) STRICT;
    CREATE INDEX network_vlans_network ON network_vlans (network_id);
    "#,
    // 11: leases have a scope: the flat pools ('') or a tenant network (its id). An address is
    // leased at most once per scope, so two tenants hold 10.0.1.10 at once.
    r#"
    CREATE TABLE leases_v11 (
        address       INTEGER NOT NULL,
        pool          TEXT NOT NULL,
        owner         TEXT NOT NULL CONSTRAINT leases_owner_fk REFERENCES users (username),
        resource_kind TEXT NOT NULL,
        resource_id   TEXT NOT NULL,
        resource_name TEXT NOT NULL,
        state         TEXT NOT NULL CONSTRAINT leases_state_valid CHECK (state IN ('reserved', 'active')),
        created_at    INTEGER NOT NULL,
        network       TEXT NOT NULL DEFAULT '',
        CONSTRAINT leases_pkey PRIMARY KEY (network, address)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO leases_v11 (address, pool, owner, resource_kind, resource_id, resource_name, state, created_at, network)
        SELECT address, pool, owner, resource_kind, resource_id, resource_name, state, created_at, '' FROM leases;
    DROP TABLE leases;
    ALTER TABLE leases_v11 RENAME TO leases;
    CREATE INDEX leases_owner ON leases (owner, network, address);
    CREATE INDEX leases_resource ON leases (resource_id);
    "#,
];

/// The schema version this build writes.
pub const LATEST: usize = MIGRATIONS.len();
