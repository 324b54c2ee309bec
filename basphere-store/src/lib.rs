//! `SqliteStore`: Basphere's durable store on SQLite (bundled), and the only crate that knows SQL.
//!
//! The database runs in WAL mode with `synchronous=FULL`, foreign keys on and a busy timeout.
//! Every write is one `BEGIN IMMEDIATE` transaction, so writers are serialised by SQLite itself,
//! across threads and across processes. The invariants that matter (an address is leased once,
//! a name is unique per owner, one pending request per user) are constraints in the schema.

pub mod migrations;
mod rows;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use basphere_core::model::*;
use basphere_core::store::*;
use basphere_core::validate::{ResourceName, Username};
use basphere_core::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use uuid::Uuid;

use rows::*;

/// What can go wrong inside the SQLite store, before it is mapped onto [`basphere_core::Error`].
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt value in {table}.{column}: {message}")]
    Corrupt { table: &'static str, column: &'static str, message: String },
    #[error("migration to schema version {version} failed: {source}")]
    Migration {
        version: usize,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the database has schema version {found}, newer than this build of Basphere supports ({supported}); upgrade Basphere")]
    NewerSchema { found: usize, supported: usize },
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

impl From<SqliteError> for Error {
    fn from(error: SqliteError) -> Self {
        Error::backend("sqlite", error)
    }
}

fn sql(error: rusqlite::Error) -> Error {
    SqliteError::Sqlite(error).into()
}

/// The SQLite store. `Send + Sync`; share it as `Arc<SqliteStore>`.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    /// Read-only connections for file databases (WAL lets them read while a write commits).
    readers: Option<ReaderPool>,
    path: Option<PathBuf>,
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const READERS: usize = 8;

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates it to the latest schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let open = |path: &Path| {
            Connection::open(path).map_err(|source| SqliteError::Open { path: path.to_path_buf(), source })
        };
        let writer = open(&path)?;
        configure(&writer, true)?;
        migrate(&writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = open(&path)?;
            configure(&reader, false)?;
            readers.push(reader);
        }
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            readers: Some(ReaderPool { connections: Mutex::new(readers), available: std::sync::Condvar::new() }),
            path: Some(path),
        })
    }

    /// A private in-memory database (one connection), for tests and demos.
    pub fn open_in_memory() -> Result<Self> {
        let writer = Connection::open_in_memory().map_err(sql)?;
        configure(&writer, true)?;
        migrate(&writer)?;
        Ok(SqliteStore { writer: Mutex::new(writer), readers: None, path: None })
    }

    /// The database file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<usize> {
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        user_version(&conn)
    }

    fn with_reader<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let Some(pool) = &self.readers else {
            let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            return f(&mut conn);
        };
        // A fixed pool: callers wait for a free connection instead of opening new ones, so
        // statement caches stay warm and memory stays bounded under load.
        let mut conn = {
            let mut free = pool.connections.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(conn) = free.pop() {
                    break conn;
                }
                free = pool.available.wait(free).unwrap_or_else(|p| p.into_inner());
            }
        };
        let result = f(&mut conn);
        pool.connections.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        pool.available.notify_one();
        result
    }
}

/// Read-only connections shared by readers.
struct ReaderPool {
    connections: Mutex<Vec<Connection>>,
    available: std::sync::Condvar,
}

fn configure(conn: &Connection, writer: bool) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    if writer {
        // journal_mode answers with the mode; it stays "memory" for in-memory databases.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)).map_err(sql)?;
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(sql)?;
    Ok(())
}

fn user_version(conn: &Connection) -> Result<usize> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(sql)?;
    Ok(version as usize)
}

/// Applies the missing migrations, each in its own transaction together with its version bump.
pub fn migrate(conn: &Connection) -> Result<()> {
    migrate_to(conn, migrations::LATEST)
}

/// Applies migrations up to `target` (used by tests that build an older schema).
pub fn migrate_to(conn: &Connection, target: usize) -> Result<()> {
    let found = user_version(conn)?;
    if found > migrations::LATEST {
        return Err(SqliteError::NewerSchema { found, supported: migrations::LATEST }.into());
    }
    for version in found..target.min(migrations::LATEST) {
        let apply = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let result = conn
                .execute_batch(migrations::MIGRATIONS[version])
                .and_then(|()| conn.execute_batch(&format!("PRAGMA user_version = {}", version + 1)));
            match result {
                Ok(()) => conn.execute_batch("COMMIT"),
                Err(error) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(error)
                }
            }
        };
        apply().map_err(|source| SqliteError::Migration { version: version + 1, source })?;
        tracing::info!(version = version + 1, "store schema migrated");
    }
    Ok(())
}

impl basphere_core::Store for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    fn read(&self, f: &mut dyn FnMut(&dyn StoreRead) -> Result<()>) -> Result<()> {
        self.with_reader(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(sql)?;
            let result = f(&SqlTx { conn: &tx });
            tx.finish().map_err(sql)?;
            result
        })
    }

    fn write(&self, f: &mut dyn FnMut(&mut dyn StoreTx) -> Result<()>) -> Result<()> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let result = f(&mut SqlTx { conn: &tx });
        match result {
            Ok(()) => tx.commit().map_err(sql),
            Err(error) => {
                tx.rollback().map_err(sql)?;
                Err(error)
            }
        }
    }
}

/// A read or write transaction.
struct SqlTx<'c> {
    conn: &'c Connection,
}

/// Maps a constraint violation to the domain error; anything else is a backend error.
fn constraint(error: rusqlite::Error, on_violation: impl FnOnce(&str) -> Error) -> Error {
    match &error {
        rusqlite::Error::SqliteFailure(code, message) if code.code == rusqlite::ErrorCode::ConstraintViolation => {
            on_violation(message.as_deref().unwrap_or(""))
        }
        _ => sql(error),
    }
}

fn ip(address: Ipv4Addr) -> i64 {
    i64::from(u32::from(address))
}

impl SqlTx<'_> {
    fn one<T>(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        map: fn(&rusqlite::Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut statement = self.conn.prepare_cached(query).map_err(sql)?;
        let mut rows = statement.query(params).map_err(sql)?;
        match rows.next().map_err(sql)? {
            Some(row) => Ok(Some(map(row)?)),
            None => Ok(None),
        }
    }

    fn all<T>(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        map: fn(&rusqlite::Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut statement = self.conn.prepare_cached(query).map_err(sql)?;
        let mut rows = statement.query(params).map_err(sql)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sql)? {
            out.push(map(row)?);
        }
        Ok(out)
    }

    fn exec(&self, query: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(query)?.execute(params)
    }

    /// Runs an UPDATE and turns "no row" into `NotFound`.
    fn update(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        kind: &'static str,
        name: impl std::fmt::Display,
        on_violation: impl FnOnce(&str) -> Error,
    ) -> Result<()> {
        match self.exec(query, params) {
            Ok(0) => Err(Error::not_found(kind, name)),
            Ok(_) => Ok(()),
            Err(error) => Err(constraint(error, on_violation)),
        }
    }

    fn user_violation(user: &User) -> impl FnOnce(&str) -> Error + '_ {
        move |message| {
            if message.contains("key_fingerprint") {
                Error::already_exists("ssh key", user.ssh_key.fingerprint())
            } else if message.contains("users.uid") {
                Error::already_exists("uid", user.uid.unwrap_or_default())
            } else {
                Error::already_exists("user", &user.username)
            }
        }
    }
}

const USER_COLUMNS: &str = "username, email, team, ssh_key, role, status, uid, created_at, updated_at";
const REGISTRATION_COLUMNS: &str =
    "id, username, email, team, ssh_key, status, created_at, processed_by, processed_at, reject_reason";
const KEY_CHANGE_COLUMNS: &str =
    "id, username, email, new_ssh_key, reason, status, created_at, processed_by, processed_at, reject_reason";
const TOKEN_COLUMNS: &str = "id, owner, name, scope, secret_hash, created_at, expires_at, revoked_at, last_used_at";
const VM_COLUMNS: &str =
    "id, owner, name, os, spec, cpu, memory_mb, disk_gb, ip, state, reason, backend_id, created_at, updated_at";
const CLUSTER_COLUMNS: &str = "id, owner, name, cluster_type, kubernetes_version, control_plane_count, worker_count, worker_spec, control_plane_endpoint, state, reason, created_at, updated_at";
const OPERATION_COLUMNS: &str = "id, kind, owner, resource_kind, resource_id, resource_name, state, steps, error, log_tail, requested_by, created_at, updated_at";
const AUDIT_COLUMNS: &str = "id, at, actor, action, resource, source, outcome, details";
const BLOCK_COLUMNS: &str = "start, pool, size, owner, allocated_at";
const LEASE_COLUMNS: &str = "address, pool, owner, resource_kind, resource_id, resource_name, state, created_at";

/// A SELECT whose WHERE clause holds only the filters in use, so SQLite can use its indexes
/// (a `?1 IS NULL OR col = ?1` pattern would make it scan).
struct Select {
    sql: String,
    clauses: Vec<&'static str>,
    values: Vec<rusqlite::types::Value>,
}

impl Select {
    fn from(sql: String) -> Self {
        Select { sql, clauses: Vec::new(), values: Vec::new() }
    }

    /// Adds `clause` (with one `?`) when `value` is present.
    fn when<V: Into<rusqlite::types::Value>>(mut self, clause: &'static str, value: Option<V>) -> Self {
        if let Some(value) = value {
            self.clauses.push(clause);
            self.values.push(value.into());
        }
        self
    }

    /// Adds a clause without a parameter.
    fn only(mut self, clause: &'static str, apply: bool) -> Self {
        if apply {
            self.clauses.push(clause);
        }
        self
    }

    fn tail(mut self, tail: &str, limit: Option<usize>) -> (String, Vec<rusqlite::types::Value>) {
        if !self.clauses.is_empty() {
            self.sql.push_str(" WHERE ");
            self.sql.push_str(&self.clauses.join(" AND "));
        }
        self.sql.push(' ');
        self.sql.push_str(tail);
        if let Some(limit) = limit {
            self.sql.push_str(" LIMIT ?");
            self.values.push((limit as i64).into());
        }
        (self.sql, self.values)
    }
}

impl StoreRead for SqlTx<'_> {
    fn get_user(&self, username: &Username) -> Result<Option<User>> {
        self.one(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"), [username.as_str()], user_row)
    }

    fn user_by_uid(&self, uid: u32) -> Result<Option<User>> {
        self.one(&format!("SELECT {USER_COLUMNS} FROM users WHERE uid = ?1"), [uid], user_row)
    }

    fn user_by_key_fingerprint(&self, fingerprint: &str) -> Result<Option<User>> {
        self.one(&format!("SELECT {USER_COLUMNS} FROM users WHERE key_fingerprint = ?1"), [fingerprint], user_row)
    }

    fn list_users(&self) -> Result<Vec<User>> {
        self.all(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"), [], user_row)
    }

    fn get_registration(&self, id: Uuid) -> Result<Option<RegistrationRequest>> {
        self.one(
            &format!("SELECT {REGISTRATION_COLUMNS} FROM registrations WHERE id = ?1"),
            [id.to_string()],
            registration_row,
        )
    }

    fn list_registrations(&self, status: Option<RequestStatus>) -> Result<Vec<RegistrationRequest>> {
        let (query, values) = Select::from(format!("SELECT {REGISTRATION_COLUMNS} FROM registrations"))
            .when("status = ?", status.map(|s| s.as_str().to_owned()))
            .tail("ORDER BY id DESC", None);
        self.all(&query, rusqlite::params_from_iter(values), registration_row)
    }

    fn get_key_change(&self, id: Uuid) -> Result<Option<KeyChangeRequest>> {
        self.one(
            &format!("SELECT {KEY_CHANGE_COLUMNS} FROM key_changes WHERE id = ?1"),
            [id.to_string()],
            key_change_row,
        )
    }

    fn list_key_changes(&self, status: Option<RequestStatus>) -> Result<Vec<KeyChangeRequest>> {
        let (query, values) = Select::from(format!("SELECT {KEY_CHANGE_COLUMNS} FROM key_changes"))
            .when("status = ?", status.map(|s| s.as_str().to_owned()))
            .tail("ORDER BY id DESC", None);
        self.all(&query, rusqlite::params_from_iter(values), key_change_row)
    }

    fn get_token(&self, id: Uuid) -> Result<Option<ApiToken>> {
        self.one(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"), [id.to_string()], token_row)
    }

    fn token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiToken>> {
        self.one(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = ?1"), [secret_hash], token_row)
    }

    fn list_tokens(&self, owner: &Username) -> Result<Vec<ApiToken>> {
        self.all(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE owner = ?1 ORDER BY id"),
            [owner.as_str()],
            token_row,
        )
    }

    fn get_vm(&self, id: Uuid) -> Result<Option<Vm>> {
        self.one(&format!("SELECT {VM_COLUMNS} FROM vms WHERE id = ?1"), [id.to_string()], vm_row)
    }

    fn vm_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Vm>> {
        self.one(
            &format!("SELECT {VM_COLUMNS} FROM vms WHERE owner = ?1 AND name = ?2 AND state <> 'deleted'"),
            [owner.as_str(), name.as_str()],
            vm_row,
        )
    }

    fn list_vms(&self, filter: &VmFilter) -> Result<Vec<Vm>> {
        let (query, values) = Select::from(format!("SELECT {VM_COLUMNS} FROM vms"))
            .when("owner = ?", filter.owner.as_ref().map(|o| o.to_string()))
            .when("state = ?", filter.state.map(|s| s.as_str().to_owned()))
            .only("state <> 'deleted'", !filter.include_deleted)
            .when("id > ?", filter.after.map(|id| id.to_string()))
            .tail("ORDER BY id", filter.limit);
        self.all(&query, rusqlite::params_from_iter(values), vm_row)
    }

    fn get_cluster(&self, id: Uuid) -> Result<Option<Cluster>> {
        self.one(&format!("SELECT {CLUSTER_COLUMNS} FROM clusters WHERE id = ?1"), [id.to_string()], cluster_row)
    }

    fn cluster_by_name(&self, owner: &Username, name: &ResourceName) -> Result<Option<Cluster>> {
        self.one(
            &format!("SELECT {CLUSTER_COLUMNS} FROM clusters WHERE owner = ?1 AND name = ?2 AND state <> 'deleted'"),
            [owner.as_str(), name.as_str()],
            cluster_row,
        )
    }

    fn list_clusters(&self, filter: &ClusterFilter) -> Result<Vec<Cluster>> {
        let (query, values) = Select::from(format!("SELECT {CLUSTER_COLUMNS} FROM clusters"))
            .when("owner = ?", filter.owner.as_ref().map(|o| o.to_string()))
            .only("state <> 'deleted'", !filter.include_deleted)
            .when("id > ?", filter.after.map(|id| id.to_string()))
            .tail("ORDER BY id", filter.limit);
        self.all(&query, rusqlite::params_from_iter(values), cluster_row)
    }

    fn get_operation(&self, id: Uuid) -> Result<Option<Operation>> {
        self.one(&format!("SELECT {OPERATION_COLUMNS} FROM operations WHERE id = ?1"), [id.to_string()], operation_row)
    }

    fn list_operations(&self, filter: &OperationFilter) -> Result<Vec<Operation>> {
        let (query, values) = Select::from(format!("SELECT {OPERATION_COLUMNS} FROM operations"))
            .only("state IN ('queued', 'running')", filter.unfinished)
            .when("owner = ?", filter.owner.as_ref().map(|o| o.to_string()))
            .when("resource_id = ?", filter.resource.map(|id| id.to_string()))
            .when("id > ?", filter.after.map(|id| id.to_string()))
            .tail("ORDER BY id", filter.limit);
        self.all(&query, rusqlite::params_from_iter(values), operation_row)
    }

    fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let (query, values) = Select::from(format!("SELECT {AUDIT_COLUMNS} FROM audit"))
            .when("actor = ?", filter.actor.clone())
            .when("id > ?", filter.after.map(|id| id.to_string()))
            .tail("ORDER BY id", filter.limit);
        self.all(&query, rusqlite::params_from_iter(values), audit_row)
    }

    fn quota_override(&self, owner: &Username) -> Result<Option<QuotaOverride>> {
        self.one(
            "SELECT max_vms, max_clusters, max_nodes_per_cluster, max_ips, max_vcpus, max_memory_mb, max_disk_gb FROM quota_overrides WHERE owner = ?1",
            [owner.as_str()],
            quota_override_row,
        )
    }

    fn usage(&self, owner: &Username) -> Result<Usage> {
        let mut usage = self
            .one(
                "SELECT count(*), coalesce(sum(cpu), 0), coalesce(sum(memory_mb), 0), coalesce(sum(disk_gb), 0) FROM vms WHERE owner = ?1 AND state <> 'deleted'",
                [owner.as_str()],
                |row| {
                    let get = |index| row.get::<_, i64>(index).map(|v| v as u64).map_err(sql);
                    Ok(Usage { vms: get(0)?, vcpus: get(1)?, memory_mb: get(2)?, disk_gb: get(3)?, ..Usage::default() })
                },
            )?
            .unwrap_or_default();
        let count = |query: &str| -> Result<u64> {
            Ok(self.one(query, [owner.as_str()], |row| row.get::<_, i64>(0).map_err(sql))?.unwrap_or(0) as u64)
        };
        usage.clusters = count("SELECT count(*) FROM clusters WHERE owner = ?1 AND state <> 'deleted'")?;
        usage.ips = count("SELECT count(*) FROM leases WHERE owner = ?1")?;
        Ok(usage)
    }

    fn list_blocks(&self, pool: Option<&str>) -> Result<Vec<IpBlock>> {
        let (query, values) = Select::from(format!("SELECT {BLOCK_COLUMNS} FROM ip_blocks"))
            .when("pool = ?", pool.map(str::to_owned))
            .tail("ORDER BY start", None);
        self.all(&query, rusqlite::params_from_iter(values), block_row)
    }

    fn blocks_of(&self, owner: &Username) -> Result<Vec<IpBlock>> {
        self.all(
            &format!("SELECT {BLOCK_COLUMNS} FROM ip_blocks WHERE owner = ?1 ORDER BY start"),
            [owner.as_str()],
            block_row,
        )
    }

    fn get_lease(&self, address: Ipv4Addr) -> Result<Option<Lease>> {
        self.one(&format!("SELECT {LEASE_COLUMNS} FROM leases WHERE address = ?1"), [ip(address)], lease_row)
    }

    fn list_leases(&self, owner: Option<&Username>) -> Result<Vec<Lease>> {
        let (query, values) = Select::from(format!("SELECT {LEASE_COLUMNS} FROM leases"))
            .when("owner = ?", owner.map(|o| o.to_string()))
            .tail("ORDER BY address", None);
        self.all(&query, rusqlite::params_from_iter(values), lease_row)
    }

    fn leases_of_resource(&self, resource: Uuid) -> Result<Vec<Lease>> {
        self.all(
            &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE resource_id = ?1 ORDER BY address"),
            [resource.to_string()],
            lease_row,
        )
    }

    fn get_idempotency(&self, owner: &Username, key: &str) -> Result<Option<IdempotencyRecord>> {
        self.one("SELECT owner, key, request_hash, operations, created_at FROM idempotency_keys WHERE owner = ?1 AND key = ?2", [owner.as_str(), key], idempotency_row)
    }

    fn occupancy(&self, block: &IpBlock) -> Result<Occupancy> {
        let start = u32::from(block.start);
        let mut statement =
            self.conn.prepare_cached("SELECT address FROM leases WHERE address BETWEEN ?1 AND ?2").map_err(sql)?;
        let mut rows = statement.query([ip(block.start), ip(block.end())]).map_err(sql)?;
        let mut occupancy = Occupancy::new(block.size);
        while let Some(row) = rows.next().map_err(sql)? {
            let address: i64 = row.get(0).map_err(sql)?;
            occupancy.set(address as u32 - start);
        }
        Ok(occupancy)
    }
}

impl StoreTx for SqlTx<'_> {
    fn insert_user(&mut self, user: &User) -> Result<()> {
        self.exec(
            "INSERT INTO users (username, email, team, ssh_key, key_fingerprint, role, status, uid, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![user.username.as_str(), user.email.as_str(), user.team, user.ssh_key.as_str(), user.ssh_key.fingerprint(), user.role.as_str(), user.status.as_str(), user.uid, micros(user.created_at), micros(user.updated_at)],
        )
        .map_err(|error| constraint(error, Self::user_violation(user)))?;
        Ok(())
    }

    fn update_user(&mut self, user: &User) -> Result<()> {
        self.update(
            "UPDATE users SET email = ?2, team = ?3, ssh_key = ?4, key_fingerprint = ?5, role = ?6, status = ?7, uid = ?8, created_at = ?9, updated_at = ?10 WHERE username = ?1",
            params![user.username.as_str(), user.email.as_str(), user.team, user.ssh_key.as_str(), user.ssh_key.fingerprint(), user.role.as_str(), user.status.as_str(), user.uid, micros(user.created_at), micros(user.updated_at)],
            "user",
            &user.username,
            Self::user_violation(user),
        )
    }

    fn delete_user(&mut self, username: &Username) -> Result<()> {
        let holds: i64 = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM vms WHERE owner = ?1 AND state <> 'deleted') + (SELECT count(*) FROM clusters WHERE owner = ?1 AND state <> 'deleted')
                      + (SELECT count(*) FROM ip_blocks WHERE owner = ?1) + (SELECT count(*) FROM leases WHERE owner = ?1)",
                [username.as_str()],
                |row| row.get(0),
            )
            .map_err(sql)?;
        if self.get_user(username)?.is_none() {
            return Err(Error::not_found("user", username));
        }
        if holds > 0 {
            return Err(Error::Conflict(format!("user {username} still owns VMs, clusters or addresses")));
        }
        self.exec("DELETE FROM users WHERE username = ?1", [username.as_str()]).map_err(sql)?;
        Ok(())
    }

    fn insert_registration(&mut self, r: &RegistrationRequest) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO registrations ({REGISTRATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            params![
                r.id.to_string(),
                r.username.as_str(),
                r.email.as_str(),
                r.team,
                r.ssh_key.as_str(),
                r.status.as_str(),
                micros(r.created_at),
                r.processed_by.as_ref().map(Username::as_str),
                r.processed_at.map(micros),
                r.reject_reason
            ],
        )
        .map_err(|error| {
            constraint(error, |message| {
                if message.contains("registrations.id") {
                    Error::already_exists("registration", r.id)
                } else {
                    Error::already_exists("pending registration", &r.username)
                }
            })
        })?;
        Ok(())
    }

    fn update_registration(&mut self, r: &RegistrationRequest) -> Result<()> {
        self.update(
            "UPDATE registrations SET username = ?2, email = ?3, team = ?4, ssh_key = ?5, status = ?6, created_at = ?7, processed_by = ?8, processed_at = ?9, reject_reason = ?10 WHERE id = ?1",
            params![r.id.to_string(), r.username.as_str(), r.email.as_str(), r.team, r.ssh_key.as_str(), r.status.as_str(), micros(r.created_at), r.processed_by.as_ref().map(Username::as_str), r.processed_at.map(micros), r.reject_reason],
            "registration",
            r.id,
            |_| Error::already_exists("pending registration", &r.username),
        )
    }

    fn insert_key_change(&mut self, r: &KeyChangeRequest) -> Result<()> {
        self.exec(
            &format!("INSERT INTO key_changes ({KEY_CHANGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                r.id.to_string(),
                r.username.as_str(),
                r.email.as_str(),
                r.new_ssh_key.as_str(),
                r.reason,
                r.status.as_str(),
                micros(r.created_at),
                r.processed_by.as_ref().map(Username::as_str),
                r.processed_at.map(micros),
                r.reject_reason
            ],
        )
        .map_err(|error| {
            constraint(error, |message| {
                if message.contains("key_changes.id") {
                    Error::already_exists("key change", r.id)
                } else {
                    Error::already_exists("pending key change", &r.username)
                }
            })
        })?;
        Ok(())
    }

    fn update_key_change(&mut self, r: &KeyChangeRequest) -> Result<()> {
        self.update(
            "UPDATE key_changes SET username = ?2, email = ?3, new_ssh_key = ?4, reason = ?5, status = ?6, created_at = ?7, processed_by = ?8, processed_at = ?9, reject_reason = ?10 WHERE id = ?1",
            params![r.id.to_string(), r.username.as_str(), r.email.as_str(), r.new_ssh_key.as_str(), r.reason, r.status.as_str(), micros(r.created_at), r.processed_by.as_ref().map(Username::as_str), r.processed_at.map(micros), r.reject_reason],
            "key change",
            r.id,
            |_| Error::already_exists("pending key change", &r.username),
        )
    }

    fn insert_token(&mut self, t: &ApiToken) -> Result<()> {
        self.exec(
            &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                t.id.to_string(),
                t.owner.as_str(),
                t.name,
                t.scope.as_str(),
                t.secret_hash,
                micros(t.created_at),
                t.expires_at.map(micros),
                t.revoked_at.map(micros),
                t.last_used_at.map(micros)
            ],
        )
        .map_err(|error| {
            constraint(error, |message| {
                if message.contains("FOREIGN KEY") {
                    Error::not_found("user", &t.owner)
                } else {
                    Error::already_exists("token", t.id)
                }
            })
        })?;
        Ok(())
    }

    fn update_token(&mut self, t: &ApiToken) -> Result<()> {
        self.update(
            "UPDATE tokens SET owner = ?2, name = ?3, scope = ?4, secret_hash = ?5, created_at = ?6, expires_at = ?7, revoked_at = ?8, last_used_at = ?9 WHERE id = ?1",
            params![t.id.to_string(), t.owner.as_str(), t.name, t.scope.as_str(), t.secret_hash, micros(t.created_at), t.expires_at.map(micros), t.revoked_at.map(micros), t.last_used_at.map(micros)],
            "token",
            t.id,
            |_| Error::already_exists("token", t.id),
        )
    }

    fn insert_vm(&mut self, vm: &Vm) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO vms ({VM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ),
            params![
                vm.id.to_string(),
                vm.owner.as_str(),
                vm.name.as_str(),
                vm.os,
                vm.spec,
                vm.cpu,
                vm.memory_mb as i64,
                vm.disk_gb as i64,
                vm.ip.map(ip),
                vm.state.as_str(),
                vm.reason,
                vm.backend_id,
                micros(vm.created_at),
                micros(vm.updated_at)
            ],
        )
        .map_err(|error| {
            constraint(error, |message| {
                if message.contains("vms.id") {
                    Error::already_exists("vm", vm.id)
                } else {
                    Error::already_exists("vm", &vm.name)
                }
            })
        })?;
        Ok(())
    }

    fn update_vm(&mut self, vm: &Vm) -> Result<()> {
        self.update(
            "UPDATE vms SET owner = ?2, name = ?3, os = ?4, spec = ?5, cpu = ?6, memory_mb = ?7, disk_gb = ?8, ip = ?9, state = ?10, reason = ?11, backend_id = ?12, created_at = ?13, updated_at = ?14 WHERE id = ?1",
            params![vm.id.to_string(), vm.owner.as_str(), vm.name.as_str(), vm.os, vm.spec, vm.cpu, vm.memory_mb as i64, vm.disk_gb as i64, vm.ip.map(ip), vm.state.as_str(), vm.reason, vm.backend_id, micros(vm.created_at), micros(vm.updated_at)],
            "vm",
            vm.id,
            |_| Error::already_exists("vm", &vm.name),
        )
    }

    fn insert_cluster(&mut self, c: &Cluster) -> Result<()> {
        self.exec(
            &format!("INSERT INTO clusters ({CLUSTER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
            params![c.id.to_string(), c.owner.as_str(), c.name.as_str(), c.cluster_type, c.kubernetes_version, c.control_plane_count, c.worker_count, c.worker_spec, c.control_plane_endpoint.map(ip), c.state.as_str(), c.reason, micros(c.created_at), micros(c.updated_at)],
        )
        .map_err(|error| constraint(error, |message| if message.contains("clusters.id") { Error::already_exists("cluster", c.id) } else { Error::already_exists("cluster", &c.name) }))?;
        Ok(())
    }

    fn update_cluster(&mut self, c: &Cluster) -> Result<()> {
        self.update(
            "UPDATE clusters SET owner = ?2, name = ?3, cluster_type = ?4, kubernetes_version = ?5, control_plane_count = ?6, worker_count = ?7, worker_spec = ?8, control_plane_endpoint = ?9, state = ?10, reason = ?11, created_at = ?12, updated_at = ?13 WHERE id = ?1",
            params![c.id.to_string(), c.owner.as_str(), c.name.as_str(), c.cluster_type, c.kubernetes_version, c.control_plane_count, c.worker_count, c.worker_spec, c.control_plane_endpoint.map(ip), c.state.as_str(), c.reason, micros(c.created_at), micros(c.updated_at)],
            "cluster",
            c.id,
            |_| Error::already_exists("cluster", &c.name),
        )
    }

    fn insert_operation(&mut self, op: &Operation) -> Result<()> {
        let (steps, log_tail) = operation_json(op)?;
        self.exec(
            &format!("INSERT INTO operations ({OPERATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
            params![op.id.to_string(), op.kind.as_str(), op.owner.as_str(), op.resource.kind.as_str(), op.resource.id.to_string(), op.resource.name, op.state.as_str(), steps, op.error, log_tail, op.requested_by, micros(op.created_at), micros(op.updated_at)],
        )
        .map_err(|error| constraint(error, |_| Error::already_exists("operation", op.id)))?;
        Ok(())
    }

    fn update_operation(&mut self, op: &Operation) -> Result<()> {
        let (steps, log_tail) = operation_json(op)?;
        self.update(
            "UPDATE operations SET kind = ?2, owner = ?3, resource_kind = ?4, resource_id = ?5, resource_name = ?6, state = ?7, steps = ?8, error = ?9, log_tail = ?10, requested_by = ?11, created_at = ?12, updated_at = ?13 WHERE id = ?1",
            params![op.id.to_string(), op.kind.as_str(), op.owner.as_str(), op.resource.kind.as_str(), op.resource.id.to_string(), op.resource.name, op.state.as_str(), steps, op.error, log_tail, op.requested_by, micros(op.created_at), micros(op.updated_at)],
            "operation",
            op.id,
            |_| Error::already_exists("operation", op.id),
        )
    }

    fn append_audit(&mut self, e: &AuditEvent) -> Result<()> {
        self.exec(
            &format!("INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                e.id.to_string(),
                micros(e.at),
                e.actor,
                e.action,
                e.resource,
                e.source,
                e.outcome.as_str(),
                e.details.to_string()
            ],
        )
        .map_err(|error| constraint(error, |_| Error::already_exists("audit event", e.id)))?;
        Ok(())
    }

    fn set_quota_override(&mut self, owner: &Username, quota: Option<&QuotaOverride>) -> Result<()> {
        if self.get_user(owner)?.is_none() {
            return Err(Error::not_found("user", owner));
        }
        let result = match quota {
            None => self.exec("DELETE FROM quota_overrides WHERE owner = ?1", [owner.as_str()]),
            Some(q) => {
                let v = |value: Option<u64>| value.map(|v| v as i64);
                self.exec(
                    "INSERT INTO quota_overrides (owner, max_vms, max_clusters, max_nodes_per_cluster, max_ips, max_vcpus, max_memory_mb, max_disk_gb) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (owner) DO UPDATE SET max_vms = ?2, max_clusters = ?3, max_nodes_per_cluster = ?4, max_ips = ?5, max_vcpus = ?6, max_memory_mb = ?7, max_disk_gb = ?8",
                    params![owner.as_str(), v(q.max_vms), v(q.max_clusters), v(q.max_nodes_per_cluster), v(q.max_ips), v(q.max_vcpus), v(q.max_memory_mb), v(q.max_disk_gb)],
                )
            }
        };
        result.map_err(sql)?;
        Ok(())
    }

    fn insert_block(&mut self, block: &IpBlock) -> Result<()> {
        let (start, last) = (ip(block.start), ip(block.end()));
        let overlapping = self.one(
            &format!("SELECT {BLOCK_COLUMNS}, last FROM ip_blocks WHERE start <= ?1 ORDER BY start DESC LIMIT 1"),
            [last],
            |row| Ok((block_row(row)?, row.get::<_, i64>(5).map_err(sql)?)),
        )?;
        if let Some((other, other_last)) = overlapping.filter(|(_, other_last)| *other_last >= start) {
            let _ = other_last;
            return Err(Error::Conflict(format!(
                "block {}/{} overlaps the block at {} of {}",
                block.start, block.size, other.start, other.owner
            )));
        }
        self.exec(
            "INSERT INTO ip_blocks (start, last, pool, size, owner, allocated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![start, last, block.pool, block.size, block.owner.as_str(), micros(block.allocated_at)],
        )
        .map_err(|error| {
            constraint(error, |message| {
                if message.contains("FOREIGN KEY") {
                    Error::not_found("user", &block.owner)
                } else {
                    Error::Conflict(format!("block {} exists", block.start))
                }
            })
        })?;
        Ok(())
    }

    fn delete_block(&mut self, start: Ipv4Addr) -> Result<()> {
        let last: Option<i64> = self
            .conn
            .query_row("SELECT last FROM ip_blocks WHERE start = ?1", [ip(start)], |row| row.get(0))
            .optional()
            .map_err(sql)?;
        let Some(last) = last else {
            return Err(Error::not_found("block", start));
        };
        let leased: i64 = self
            .conn
            .query_row("SELECT count(*) FROM leases WHERE address BETWEEN ?1 AND ?2", [ip(start), last], |row| {
                row.get(0)
            })
            .map_err(sql)?;
        if leased > 0 {
            return Err(Error::Conflict(format!("block {start} still has leased addresses")));
        }
        self.exec("DELETE FROM ip_blocks WHERE start = ?1", [ip(start)]).map_err(sql)?;
        Ok(())
    }

    fn insert_lease(&mut self, l: &Lease) -> Result<()> {
        self.exec(
            &format!("INSERT INTO leases ({LEASE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                ip(l.address),
                l.pool,
                l.owner.as_str(),
                l.resource.kind.as_str(),
                l.resource.id.to_string(),
                l.resource.name,
                l.state.as_str(),
                micros(l.created_at)
            ],
        )
        .map_err(|error| {
            constraint(error, |message| {
                if message.contains("FOREIGN KEY") {
                    Error::not_found("user", &l.owner)
                } else {
                    Error::already_exists("lease", l.address)
                }
            })
        })?;
        Ok(())
    }

    fn set_lease_state(&mut self, address: Ipv4Addr, state: LeaseState) -> Result<()> {
        self.update(
            "UPDATE leases SET state = ?2 WHERE address = ?1",
            params![ip(address), state.as_str()],
            "lease",
            address,
            |_| Error::Conflict(format!("lease {address}")),
        )
    }

    fn insert_idempotency(&mut self, record: &IdempotencyRecord) -> Result<()> {
        let operations = serde_json::to_string(&record.operations).map_err(|error| SqliteError::Corrupt {
            table: "idempotency_keys",
            column: "operations",
            message: error.to_string(),
        })?;
        self.exec(
            "INSERT INTO idempotency_keys (owner, key, request_hash, operations, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![record.owner.as_str(), record.key, record.request_hash, operations, micros(record.created_at)],
        )
        .map_err(|error| constraint(error, |_| Error::already_exists("idempotency key", &record.key)))?;
        Ok(())
    }

    fn delete_lease(&mut self, address: Ipv4Addr) -> Result<()> {
        match self.exec("DELETE FROM leases WHERE address = ?1", [ip(address)]).map_err(sql)? {
            0 => Err(Error::not_found("lease", address)),
            _ => Ok(()),
        }
    }
}
