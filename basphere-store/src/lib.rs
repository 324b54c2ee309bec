//! `SqliteStore`: Basphere's durable store on SQLite (bundled), and the only crate that knows SQL.
//!
//! The database runs in WAL mode with `synchronous=FULL`, foreign keys on and a busy timeout.
//! Every write is one `BEGIN IMMEDIATE` transaction, so writers are serialised by SQLite itself,
//! across threads and across processes. The invariants that matter (an address is leased once,
//! a name is unique per owner, one pending request per user) are constraints in the schema,
//! each named, and a violation is mapped onto the domain's error by its name (`constraints`).
//! The store's operations live in `tx`, one module per aggregate like core's store traits.

mod constraints;
pub mod migrations;
mod rows;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use basphere_core::store::{StoreRead, StoreTx};
use basphere_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use tx::SqlTx;

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

    /// Writes a consistent copy of the database to `to` (a new file), while others go on
    /// reading and writing: `VACUUM INTO` reads one snapshot, so the copy holds every transaction
    /// committed before it began and none after.
    pub fn backup(&self, to: &Path) -> Result<()> {
        if to.exists() {
            return Err(basphere_core::Error::AlreadyExists { kind: "backup file", name: to.display().to_string() });
        }
        let target = to.to_str().ok_or_else(|| basphere_core::Error::invalid("backup file", "use a path in UTF-8"))?;
        self.with_reader(|conn| conn.execute("VACUUM INTO ?1", [target]).map(|_| ()).map_err(sql))
    }

    /// Checks that `path` is a whole Basphere database this build can open: SQLite's integrity
    /// check, every foreign key pointing at a row, and a schema version not newer than this one's.
    /// Its schema version.
    pub fn verify(path: &Path) -> Result<usize> {
        Self::check(path).map_err(|error| match error {
            basphere_core::Error::InvalidInput { .. } => error,
            other => basphere_core::Error::invalid(
                "backup file",
                format!("{} is not a Basphere database: {other}", path.display()),
            ),
        })
    }

    fn check(path: &Path) -> Result<usize> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| SqliteError::Open { path: path.to_path_buf(), source })?;
        let integrity: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).map_err(sql)?;
        if integrity != "ok" {
            return Err(basphere_core::Error::invalid(
                "backup file",
                format!("{} is damaged: {integrity}", path.display()),
            ));
        }
        foreign_keys_hold(&conn).map_err(sql)?;
        let version = user_version(&conn)?;
        if version == 0 || version > migrations::LATEST {
            return Err(basphere_core::Error::invalid(
                "backup file",
                format!(
                    "{} has schema version {version}; this build of Basphere reads 1 to {}",
                    path.display(),
                    migrations::LATEST
                ),
            ));
        }
        Ok(version)
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

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 256;

fn configure(conn: &Connection, writer: bool) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    // Every statement the store runs stays prepared (rusqlite keeps 16 by default, fewer than
    // the store's statements, so a busy server would parse some again and again).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if writer {
        // journal_mode answers with the mode; it stays "memory" for in-memory databases.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)).map_err(sql)?;
    } else {
        // Each reader keeps 512 KiB of pages instead of SQLite's 2 MiB: a request reads a few
        // dozen pages, and the eight readers' caches would otherwise fill to 16 MiB, copies of
        // what the system's page cache holds anyway.
        conn.execute_batch("PRAGMA cache_size = -512").map_err(sql)?;
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
///
/// Foreign keys are not enforced while migrations run, as SQLite's documentation prescribes for
/// rebuilding a table (dropping a referenced table would otherwise cascade); each migration
/// checks them (`PRAGMA foreign_key_check`) before it commits instead.
pub fn migrate_to(conn: &Connection, target: usize) -> Result<()> {
    let found = user_version(conn)?;
    if found > migrations::LATEST {
        return Err(SqliteError::NewerSchema { found, supported: migrations::LATEST }.into());
    }
    let target = target.min(migrations::LATEST);
    if found >= target {
        return Ok(());
    }
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |row| row.get(0)).map_err(sql)?;
    conn.execute_batch("PRAGMA foreign_keys = OFF").map_err(sql)?;
    let result = (found..target).try_for_each(|version| apply_migration(conn, version));
    if enforced {
        conn.execute_batch("PRAGMA foreign_keys = ON").map_err(sql)?;
    }
    result
}

/// Moves the schema from `version` to `version + 1` in one transaction.
fn apply_migration(conn: &Connection, version: usize) -> Result<()> {
    let apply = || -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = conn
            .execute_batch(migrations::MIGRATIONS[version])
            .and_then(|()| foreign_keys_hold(conn))
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
    Ok(())
}

/// Fails with the first row whose foreign key points at nothing.
fn foreign_keys_hold(conn: &Connection) -> rusqlite::Result<()> {
    let broken: Option<(String, i64, String)> = conn
        .query_row("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check", [], |row| {
            Ok((row.get(0)?, row.get::<_, Option<i64>>(1)?.unwrap_or_default(), row.get(2)?))
        })
        .optional()?;
    match broken {
        None => Ok(()),
        Some((table, rowid, parent)) => Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
            Some(format!("row {rowid} of {table} refers to a missing row of {parent}")),
        )),
    }
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

    /// File databases read through their own connections (WAL: a write never holds them up).
    fn reads_in_place(&self) -> bool {
        self.readers.is_some()
    }

    /// Writes take turns on the one writer connection (reads run in place): one call writing
    /// and the next one ready.
    fn blocking_calls(&self) -> usize {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_size(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA cache_size", [], |row| row.get(0)).expect("cache_size")
    }

    /// Readers keep 512 KiB of pages each; the writer keeps SQLite's default for its changes.
    #[test]
    fn readers_keep_a_small_page_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("basphere.db")).expect("open");
        assert_eq!(store.with_reader(|conn| Ok(cache_size(conn))).expect("read"), -512);
        assert_eq!(cache_size(&store.writer.lock().expect("writer")), -2000);
    }
}
