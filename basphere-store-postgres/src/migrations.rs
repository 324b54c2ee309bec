//! The versioned schema. `schema_version` holds one row per applied migration; each migration
//! runs in one transaction together with its row, under an advisory lock, so replicas starting
//! at once apply it once. The schema is the SQLite store's, in PostgreSQL's types: ids are
//! `uuid`, times `timestamptz`, addresses and sizes `bigint` (addresses as integers, so a block's
//! leases are an index range scan), JSON documents `text` exactly as written, and names compared
//! bytewise (`COLLATE "C"`), so listings are ordered as on SQLite.

use basphere_core::Result;

use crate::{block_on, pg, PostgresError};

/// Taken (transaction-scoped) while migrating: one replica migrates, the others wait and see.
const MIGRATION_LOCK: i64 = 0x6261_7370_6865_7265; // "basphere"

pub const MIGRATIONS: &[&str] = &[
    // 1: the whole schema of SQLite's version 8.
    r#"
    CREATE TABLE users (
        username        TEXT COLLATE "C" NOT NULL CONSTRAINT users_pkey PRIMARY KEY,
        email           TEXT NOT NULL,
        team            TEXT NOT NULL,
        ssh_key         TEXT NOT NULL,
        key_fingerprint TEXT NOT NULL CONSTRAINT users_key_fingerprint_unique UNIQUE,
        role            TEXT NOT NULL CONSTRAINT users_role_valid CHECK (role IN ('user', 'admin')),
        status          TEXT NOT NULL CONSTRAINT users_status_valid CHECK (status IN ('active', 'suspended')),
        uid             BIGINT CONSTRAINT users_uid_unique UNIQUE,
        created_at      TIMESTAMPTZ NOT NULL,
        updated_at      TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE registrations (
        id            UUID NOT NULL CONSTRAINT registrations_pkey PRIMARY KEY,
        username      TEXT COLLATE "C" NOT NULL,
        email         TEXT NOT NULL,
        team          TEXT NOT NULL,
        ssh_key       TEXT NOT NULL,
        status        TEXT NOT NULL CONSTRAINT registrations_status_valid CHECK (status IN ('pending', 'approved', 'rejected')),
        created_at    TIMESTAMPTZ NOT NULL,
        processed_by  TEXT,
        processed_at  TIMESTAMPTZ,
        reject_reason TEXT
    );
    CREATE UNIQUE INDEX registrations_pending_username ON registrations (username) WHERE status = 'pending';
    CREATE UNIQUE INDEX registrations_pending_email ON registrations (lower(email)) WHERE status = 'pending';
    CREATE INDEX registrations_by_status ON registrations (status, id);
    CREATE INDEX registrations_by_username ON registrations (username, id);
    CREATE TABLE key_changes (
        id            UUID NOT NULL CONSTRAINT key_changes_pkey PRIMARY KEY,
        username      TEXT COLLATE "C" NOT NULL,
        email         TEXT NOT NULL,
        new_ssh_key   TEXT NOT NULL,
        reason        TEXT NOT NULL,
        status        TEXT NOT NULL CONSTRAINT key_changes_status_valid CHECK (status IN ('pending', 'approved', 'rejected')),
        created_at    TIMESTAMPTZ NOT NULL,
        processed_by  TEXT,
        processed_at  TIMESTAMPTZ,
        reject_reason TEXT
    );
    CREATE UNIQUE INDEX key_changes_pending_username ON key_changes (username) WHERE status = 'pending';
    CREATE INDEX key_changes_by_status ON key_changes (status, id);
    CREATE INDEX key_changes_by_username ON key_changes (username, id);
    CREATE TABLE tokens (
        id           UUID NOT NULL CONSTRAINT tokens_pkey PRIMARY KEY,
        owner        TEXT COLLATE "C" NOT NULL CONSTRAINT tokens_owner_fk REFERENCES users (username) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        scope        TEXT NOT NULL CONSTRAINT tokens_scope_valid CHECK (scope IN ('user', 'admin')),
        secret_hash  TEXT NOT NULL CONSTRAINT tokens_secret_hash_unique UNIQUE,
        created_at   TIMESTAMPTZ NOT NULL,
        expires_at   TIMESTAMPTZ,
        revoked_at   TIMESTAMPTZ,
        last_used_at TIMESTAMPTZ
    );
    CREATE INDEX tokens_owner ON tokens (owner);
    CREATE TABLE quota_overrides (
        owner                 TEXT COLLATE "C" NOT NULL CONSTRAINT quota_overrides_pkey PRIMARY KEY
                              CONSTRAINT quota_overrides_owner_fk REFERENCES users (username) ON DELETE CASCADE,
        max_vms               BIGINT,
        max_clusters          BIGINT,
        max_nodes_per_cluster BIGINT,
        max_ips               BIGINT,
        max_vcpus             BIGINT,
        max_memory_mb         BIGINT,
        max_disk_gb           BIGINT
    );
    CREATE TABLE web_sessions (
        id           UUID NOT NULL CONSTRAINT web_sessions_pkey PRIMARY KEY,
        kind         TEXT NOT NULL CONSTRAINT web_sessions_kind_valid CHECK (kind IN ('link', 'session')),
        owner        TEXT COLLATE "C" CONSTRAINT web_sessions_owner_fk REFERENCES users (username) ON DELETE CASCADE,
        actor_name   TEXT NOT NULL,
        role         TEXT NOT NULL CONSTRAINT web_sessions_role_valid CHECK (role IN ('user', 'admin')),
        secret_hash  TEXT NOT NULL CONSTRAINT web_sessions_secret_hash_unique UNIQUE,
        created_at   TIMESTAMPTZ NOT NULL,
        expires_at   TIMESTAMPTZ NOT NULL,
        last_seen_at TIMESTAMPTZ NOT NULL,
        ended_at     TIMESTAMPTZ
    );
    CREATE INDEX web_sessions_open_by_owner ON web_sessions (owner) WHERE ended_at IS NULL;
    CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
    CREATE TABLE vms (
        id         UUID NOT NULL CONSTRAINT vms_pkey PRIMARY KEY,
        owner      TEXT COLLATE "C" NOT NULL,
        name       TEXT COLLATE "C" NOT NULL,
        os         TEXT NOT NULL,
        spec       TEXT NOT NULL,
        cpu        BIGINT NOT NULL,
        memory_mb  BIGINT NOT NULL,
        disk_gb    BIGINT NOT NULL,
        ip         BIGINT,
        state      TEXT NOT NULL,
        reason     TEXT,
        backend_id TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    );
    CREATE UNIQUE INDEX vms_live_name ON vms (owner, name) WHERE state <> 'deleted';
    CREATE INDEX vms_owner ON vms (owner, id);
    CREATE TABLE clusters (
        id                      UUID NOT NULL CONSTRAINT clusters_pkey PRIMARY KEY,
        owner                   TEXT COLLATE "C" NOT NULL,
        name                    TEXT COLLATE "C" NOT NULL,
        cluster_type            TEXT NOT NULL,
        kubernetes_version      TEXT NOT NULL,
        control_plane_count     BIGINT NOT NULL,
        worker_count            BIGINT NOT NULL,
        control_plane_spec      TEXT NOT NULL,
        control_plane_cpu       BIGINT NOT NULL,
        control_plane_memory_mb BIGINT NOT NULL,
        control_plane_disk_gb   BIGINT NOT NULL,
        worker_spec             TEXT NOT NULL,
        worker_cpu              BIGINT NOT NULL,
        worker_memory_mb        BIGINT NOT NULL,
        worker_disk_gb          BIGINT NOT NULL,
        control_plane_endpoint  BIGINT,
        state                   TEXT NOT NULL CONSTRAINT clusters_state_valid
                                CHECK (state IN ('pending', 'provisioning', 'ready', 'failed', 'deleting', 'deleted')),
        reason                  TEXT,
        status                  TEXT NOT NULL,
        created_at              TIMESTAMPTZ NOT NULL,
        updated_at              TIMESTAMPTZ NOT NULL
    );
    CREATE UNIQUE INDEX clusters_live_name ON clusters (owner, name) WHERE state <> 'deleted';
    CREATE INDEX clusters_owner ON clusters (owner, id);
    CREATE TABLE operations (
        id               UUID NOT NULL CONSTRAINT operations_pkey PRIMARY KEY,
        kind             TEXT NOT NULL,
        owner            TEXT COLLATE "C" NOT NULL,
        resource_kind    TEXT NOT NULL,
        resource_id      UUID NOT NULL,
        resource_name    TEXT NOT NULL,
        state            TEXT NOT NULL,
        steps            TEXT NOT NULL,
        error            TEXT,
        log_tail         TEXT NOT NULL,
        requested_by     TEXT NOT NULL,
        created_at       TIMESTAMPTZ NOT NULL,
        updated_at       TIMESTAMPTZ NOT NULL,
        claim_worker     TEXT,
        claim_fence      BIGINT NOT NULL DEFAULT 0,
        claim_expires_at TIMESTAMPTZ
    );
    CREATE INDEX operations_resource ON operations (resource_id);
    CREATE INDEX operations_owner ON operations (owner, id);
    CREATE INDEX operations_unfinished ON operations (id) WHERE state IN ('queued', 'running');
    CREATE TABLE audit (
        id       UUID NOT NULL CONSTRAINT audit_pkey PRIMARY KEY,
        at       TIMESTAMPTZ NOT NULL,
        actor    TEXT NOT NULL,
        action   TEXT NOT NULL,
        resource TEXT NOT NULL,
        source   TEXT NOT NULL,
        outcome  TEXT NOT NULL,
        details  TEXT NOT NULL
    );
    CREATE INDEX audit_actor ON audit (actor, id);
    CREATE INDEX audit_action ON audit (action, id);
    CREATE TABLE idempotency_keys (
        owner        TEXT COLLATE "C" NOT NULL,
        key          TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        operations   TEXT NOT NULL,
        created_at   TIMESTAMPTZ NOT NULL,
        CONSTRAINT idempotency_keys_pkey PRIMARY KEY (owner, key)
    );
    CREATE TABLE ip_blocks (
        start        BIGINT NOT NULL CONSTRAINT ip_blocks_pkey PRIMARY KEY,
        last         BIGINT NOT NULL,
        pool         TEXT NOT NULL,
        size         BIGINT NOT NULL,
        owner        TEXT COLLATE "C" NOT NULL CONSTRAINT ip_blocks_owner_fk REFERENCES users (username),
        allocated_at TIMESTAMPTZ NOT NULL,
        CONSTRAINT ip_blocks_range_valid CHECK (last >= start)
    );
    CREATE INDEX ip_blocks_owner ON ip_blocks (owner, start);
    CREATE TABLE leases (
        address       BIGINT NOT NULL CONSTRAINT leases_pkey PRIMARY KEY,
        pool          TEXT NOT NULL,
        owner         TEXT COLLATE "C" NOT NULL CONSTRAINT leases_owner_fk REFERENCES users (username),
        resource_kind TEXT NOT NULL,
        resource_id   UUID NOT NULL,
        resource_name TEXT NOT NULL,
        state         TEXT NOT NULL CONSTRAINT leases_state_valid CHECK (state IN ('reserved', 'active')),
        created_at    TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX leases_owner ON leases (owner, address);
    CREATE INDEX leases_resource ON leases (resource_id);
    CREATE TABLE outbox (
        id              UUID NOT NULL CONSTRAINT outbox_pkey PRIMARY KEY,
        event           TEXT NOT NULL,
        state           TEXT NOT NULL CONSTRAINT outbox_state_valid CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts        BIGINT NOT NULL CONSTRAINT outbox_attempts_valid CHECK (attempts >= 0),
        next_attempt_at TIMESTAMPTZ NOT NULL,
        last_error      TEXT,
        created_at      TIMESTAMPTZ NOT NULL,
        delivered_at    TIMESTAMPTZ,
        claimed_by      TEXT,
        channel         TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX outbox_state ON outbox (state, id);
    CREATE TABLE duties (
        name       TEXT NOT NULL CONSTRAINT duties_pkey PRIMARY KEY,
        holder     TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    );
    "#,
    // 2: accounts found by email (one account per address), and the API token a browser session
    // was signed in with (no foreign key: a session whose token is gone is simply over).
    r#"
    CREATE INDEX users_email ON users (lower(email));
    ALTER TABLE web_sessions ADD COLUMN token_id UUID;
    "#,
    // 3: tenant networks, one live network per account. A live network holds its VLAN ids
    // (rows of network_vlans, the id the key: no two live networks hold one) and its router's
    // WAN address (a partial unique index); a deleted one holds neither and stays as history.
    r#"
    CREATE TABLE networks (
        id          UUID NOT NULL CONSTRAINT networks_pkey PRIMARY KEY,
        owner       TEXT COLLATE "C" NOT NULL,
        lans        TEXT NOT NULL,
        mtu         BIGINT NOT NULL,
        wan_address BIGINT NOT NULL,
        state       TEXT NOT NULL CONSTRAINT networks_state_valid
                    CHECK (state IN ('pending', 'ready', 'failed', 'deleting', 'deleted')),
        reason      TEXT,
        created_at  TIMESTAMPTZ NOT NULL,
        updated_at  TIMESTAMPTZ NOT NULL
    );
    CREATE UNIQUE INDEX networks_live_owner ON networks (owner) WHERE state <> 'deleted';
    CREATE UNIQUE INDEX networks_live_wan_address ON networks (wan_address) WHERE state <> 'deleted';
    CREATE TABLE network_vlans (
        vlan       BIGINT NOT NULL CONSTRAINT network_vlans_pkey PRIMARY KEY,
        network_id UUID NOT NULL CONSTRAINT network_vlans_network_fk REFERENCES networks (id)
    );
    CREATE INDEX network_vlans_network ON network_vlans (network_id);
    "#,
    // 4: leases have a scope: the flat pools (the nil id) or a tenant network (its id). An
    // address is leased at most once per scope, so two tenants hold 10.0.1.10 at once.
    r#"
    ALTER TABLE leases ADD COLUMN network UUID NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
    ALTER TABLE leases DROP CONSTRAINT leases_pkey;
    ALTER TABLE leases ADD CONSTRAINT leases_pkey PRIMARY KEY (network, address);
    "#,
];

pub const LATEST: usize = MIGRATIONS.len();

/// The schema version of the database (0: empty).
pub(crate) fn version(client: &tokio_postgres::Client) -> Result<usize> {
    let exists: bool =
        block_on(client.query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])).map_err(pg)?.get(0);
    if !exists {
        return Ok(0);
    }
    let found: i64 = block_on(client.query_one("SELECT coalesce(max(version), 0)::bigint FROM schema_version", &[]))
        .map_err(pg)?
        .get(0);
    Ok(usize::try_from(found).unwrap_or(0))
}

/// Applies the missing migrations up to `target`, each in its own transaction.
pub(crate) fn migrate(client: &tokio_postgres::Client, target: usize) -> Result<()> {
    let target = target.min(LATEST);
    loop {
        block_on(client.batch_execute("BEGIN")).map_err(pg)?;
        let step = (|| -> Result<Option<usize>> {
            block_on(client.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])).map_err(pg)?;
            // "already exists, skipping" is no news on every start.
            block_on(client.batch_execute("SET LOCAL client_min_messages = warning")).map_err(pg)?;
            block_on(client.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            ))
            .map_err(pg)?;
            let found = block_on(client.query_one("SELECT coalesce(max(version), 0)::bigint FROM schema_version", &[]))
                .map_err(pg)?
                .get::<_, i64>(0);
            let found = usize::try_from(found).unwrap_or(0);
            if found > LATEST {
                return Err(PostgresError::NewerSchema { found, supported: LATEST }.into());
            }
            if found >= target {
                return Ok(None);
            }
            block_on(client.batch_execute(MIGRATIONS[found]))
                .map_err(|source| PostgresError::Migration { version: found + 1, source })?;
            let version = i64::try_from(found + 1).unwrap_or(i64::MAX);
            block_on(client.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&version])).map_err(pg)?;
            Ok(Some(found + 1))
        })();
        match step {
            Ok(Some(version)) => {
                block_on(client.batch_execute("COMMIT")).map_err(pg)?;
                tracing::info!(version, "store schema migrated");
            }
            Ok(None) => {
                block_on(client.batch_execute("COMMIT")).map_err(pg)?;
                return Ok(());
            }
            Err(error) => {
                let _ = block_on(client.batch_execute("ROLLBACK"));
                return Err(error);
            }
        }
    }
}
