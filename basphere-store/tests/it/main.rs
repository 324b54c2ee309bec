//! basphere-store's integration tests: the store conformance suite on `:memory:` and on a file,
//! durability across reopening, and migrations.

use std::sync::Arc;

use basphere_core::store::VmFilter;
use basphere_core::testing::{self, store::vm, user};
use basphere_core::{Store, StoreExt};
use basphere_store::{migrate_to, migrations, SqliteStore};

#[test]
fn in_memory_sqlite_passes_the_store_conformance_suite() {
    testing::store::check_all(&|| Arc::new(SqliteStore::open_in_memory().unwrap()) as Arc<dyn Store>);
}

#[test]
fn file_sqlite_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    testing::store::check_all(&|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Arc::new(SqliteStore::open(dir.path().join(format!("store-{n}.db"))).unwrap()) as Arc<dyn Store>
    });
}

#[test]
fn committed_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("basphere.db");
    let alice = user("alice", 1);
    let web = vm(&alice.username, "web");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .transact(|tx| {
                tx.insert_user(&alice)?;
                tx.insert_vm(&web)
            })
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.user(&alice.username).unwrap(), alice);
    assert_eq!(store.query(|tx| tx.list_vms(&VmFilter::default())).unwrap(), vec![web]);
    assert_eq!(store.schema_version().unwrap(), migrations::LATEST);
}

#[test]
fn two_stores_on_one_file_serialise_their_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let first: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let second: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
    let alice = user("alice", 1);
    first.transact(|tx| tx.insert_user(&alice)).unwrap();
    let threads: Vec<_> = [first.clone(), second.clone()]
        .into_iter()
        .enumerate()
        .map(|(index, store)| {
            let owner = alice.username.clone();
            std::thread::spawn(move || {
                let mut created = 0;
                for n in 0..20 {
                    let record = vm(&owner, &format!("s{index}-{n}"));
                    let result = store.transact(|tx| {
                        if tx.usage(&owner)?.vms >= 25 {
                            return Err(basphere_core::Error::Conflict("full".into()));
                        }
                        tx.insert_vm(&record)
                    });
                    created += u32::from(result.is_ok());
                }
                created
            })
        })
        .collect();
    let created: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(created, 25, "the check inside each transaction holds across connections");
    assert_eq!(second.query(|tx| tx.usage(&alice.username)).unwrap().vms, 25);
}

#[test]
fn migrations_run_from_every_earlier_schema() {
    for start in 0..migrations::LATEST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = rusqlite_connection(&path);
            migrate_to(&conn, start).unwrap();
            let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
            assert_eq!(version as usize, start);
            if start >= 1 {
                // Data written by the older schema must survive the later migrations.
                let old = user("olduser", 77);
                conn.execute(
                    "INSERT INTO users (username, email, team, ssh_key, key_fingerprint, role, status, uid, created_at, updated_at) VALUES (?1, ?2, '', ?3, ?4, 'user', 'active', NULL, 0, 0)",
                    rusqlite::params![old.username.as_str(), old.email.as_str(), old.ssh_key.as_str(), old.ssh_key.fingerprint()],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), migrations::LATEST, "from version {start}");
        if start >= 1 {
            assert_eq!(
                store.user(&basphere_core::testing::username("olduser")).unwrap().email.as_str(),
                "olduser@example.com",
                "from version {start}"
            );
        }
        // The migrated database is a complete store.
        let alice = user("alice", 1);
        store.transact(|tx| tx.insert_user(&alice)).unwrap();
        assert_eq!(store.user(&alice.username).unwrap(), alice);
    }
}

#[test]
fn a_newer_schema_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    {
        let conn = rusqlite_connection(&path);
        conn.execute_batch(&format!("PRAGMA user_version = {}", migrations::LATEST + 1)).unwrap();
    }
    let error = SqliteStore::open(&path).err().expect("refused").to_string();
    assert!(error.contains("newer than this build"), "{error}");
}

#[test]
fn corrupt_rows_are_errors_not_invalid_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    let store = SqliteStore::open(&path).unwrap();
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    {
        let conn = rusqlite_connection(&path);
        conn.execute("UPDATE users SET email = 'not an email'", []).unwrap();
    }
    let error = store.query(|tx| tx.get_user(&alice.username)).unwrap_err().to_string();
    assert!(error.contains("corrupt value in users.email"), "{error}");
}

#[test]
fn the_database_is_in_wal_mode_with_full_sync_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pragmas.db");
    let _store = SqliteStore::open(&path).unwrap();
    let conn = rusqlite_connection(&path);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
    // Constraint: an address leased twice is refused by the schema itself.
    let alice = user("alice", 1);
    _store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let insert = "INSERT INTO leases (address, pool, owner, resource_kind, resource_id, resource_name, state, created_at) VALUES (1, 'default', 'alice', 'vm', 'x', 'web', 'reserved', 0)";
    conn.execute(insert, []).unwrap();
    assert!(conn.execute(insert, []).is_err(), "the primary key refuses a second lease of one address");
}

fn rusqlite_connection(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    conn
}
