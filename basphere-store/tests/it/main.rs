//! basphere-store's integration tests: the store conformance suite on `:memory:` and on a file,
//! claims raced by two stores sharing a file, durability across reopening, and migrations.

use std::sync::Arc;

use basphere_core::model::*;
use basphere_core::store::{OutboxFilter, VmFilter};
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
fn two_stores_on_one_file_never_hold_one_operation_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims.db");
    let stores: Vec<Arc<dyn Store>> =
        (0..3).map(|_| Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn Store>).collect();
    testing::store::check_concurrent_claims(&stores);
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

/// Every kind of row written by schema 2 reads back the same through schema 3, whose tables
/// with named constraints were rebuilt, and the migrated database enforces them.
#[test]
fn migration_from_2_keeps_every_row_and_enforces_the_named_constraints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        let conn = rusqlite_connection(&path);
        migrate_to(&conn, 2).unwrap();
        // Valid keys: the store parses them back. (OpenSSH lines hold no quote.)
        let key = |seed| basphere_core::testing::ssh_key(seed).as_str().to_owned();
        let (a, b, d) = (key(1), key(2), key(4));
        conn.execute_batch(&format!(
            "INSERT INTO users VALUES ('alice', 'alice@example.com', 'platform', '{a}', 'fp-alice', 'admin', 'active', 61001, 1, 2);
             INSERT INTO users VALUES ('bob', 'bob@example.com', '', '{b}', 'fp-bob', 'user', 'suspended', NULL, 3, 4);
             INSERT INTO registrations VALUES ('0190d6c0-0000-7000-8000-000000000001', 'dave', 'Dave@example.com', '', '{d}', 'pending', 5, NULL, NULL, NULL);
             INSERT INTO key_changes VALUES ('0190d6c0-0000-7000-8000-000000000002', 'bob', 'bob@example.com', '{a}', 'lost', 'rejected', 6, 'alice', 7, 'no');
             INSERT INTO tokens VALUES ('0190d6c0-0000-7000-8000-000000000003', 'alice', 'laptop', 'admin', 'hash-1', 8, 9, NULL, 10);
             INSERT INTO quota_overrides (owner, max_vms, max_ips) VALUES ('alice', 20, 64);
             INSERT INTO ip_blocks VALUES (184418304, 184418335, 'default', 32, 'alice', 11);
             INSERT INTO leases VALUES (184418305, 'default', 'alice', 'vm', '0190d6c0-0000-7000-8000-000000000004', 'web', 'active', 12);
             INSERT INTO operations VALUES ('0190d6c0-0000-7000-8000-000000000005', 'create_vm', 'alice', 'vm', '0190d6c0-0000-7000-8000-000000000004', 'web', 'running', '[]', NULL, '[]', 'alice', 13, 14);
             INSERT INTO idempotency_keys VALUES ('alice', 'retry-1', 'h', '[]', 15);"
        ))
        .unwrap();
    }
    let dump = |conn: &rusqlite::Connection, table: &str| -> Vec<String> {
        let mut statement = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1")).unwrap();
        let columns = statement.column_count();
        statement
            .query_map([], |row| {
                Ok((0..columns).map(|i| format!("{:?}", row.get_ref(i).unwrap())).collect::<Vec<_>>().join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let tables = [
        "users",
        "registrations",
        "key_changes",
        "tokens",
        "quota_overrides",
        "ip_blocks",
        "leases",
        "idempotency_keys",
    ];
    let before: Vec<Vec<String>> = {
        let conn = rusqlite_connection(&path);
        tables.iter().map(|table| dump(&conn, table)).collect()
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), migrations::LATEST);
    let conn = rusqlite_connection(&path);
    let mut after: Vec<Vec<String>> = tables.iter().map(|table| dump(&conn, table)).collect();
    // Leases gained their scope, last: the flat pools' ('') for every earlier row.
    let leases = tables.iter().position(|table| *table == "leases").unwrap();
    for row in &mut after[leases] {
        *row = row.strip_suffix("|Text([])").expect("an earlier lease is of the flat pools").to_owned();
    }
    assert_eq!(after, before, "every row of every rebuilt table is kept as it was");
    let claim: (Option<String>, i64) = conn
        .query_row("SELECT claim_worker, claim_fence FROM operations", [], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap();
    assert_eq!(claim, (None, 0), "an operation of an old schema is unclaimed");

    // The store works on the migrated rows, and the rebuilt tables keep their constraints.
    let alice = basphere_core::testing::username("alice");
    let operation = uuid::Uuid::parse_str("0190d6c0-0000-7000-8000-000000000005").unwrap();
    let now = now();
    let claimed = store.transact(|tx| tx.claim_operations("w1", now, now, None, 10)).unwrap();
    assert_eq!(claimed.iter().map(|(op, c)| (op.id, c.fence)).collect::<Vec<_>>(), [(operation, 1)]);
    assert_eq!(store.query(|tx| tx.usage(&alice)).unwrap().ips, 1);
    let mut carol = user("carol", 3);
    carol.uid = Some(61001);
    let error = store.transact(|tx| tx.insert_user(&carol)).unwrap_err();
    assert_eq!(error.to_string(), "uid already exists: 61001");
    let error = store.transact(|tx| tx.delete_user(&alice)).unwrap_err();
    assert_eq!(error.kind(), "conflict", "{error}");
    // The store does not check a lease's owner itself: the foreign key, enforced again after
    // the migration, refuses it.
    let orphan = Lease {
        address: std::net::Ipv4Addr::new(10, 254, 0, 99),
        network: None,
        pool: "default".into(),
        owner: basphere_core::testing::username("ghost"),
        resource: ResourceRef { kind: ResourceKind::Vm, id: uuid::Uuid::now_v7(), name: "stray".into() },
        state: LeaseState::Reserved,
        created_at: now,
    };
    let error = store.transact(|tx| tx.insert_lease(&orphan)).unwrap_err();
    assert_eq!(error.to_string(), "user not found: ghost");
}

#[test]
fn a_corrupt_outbox_event_is_an_error_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let store = SqliteStore::open(&path).unwrap();
    let message = OutboxMessage::new(NotificationEvent::KeyChangeRequested {
        username: basphere_core::testing::username("alice"),
    });
    store.transact(|tx| tx.insert_outbox(&message)).unwrap();
    {
        let conn = rusqlite_connection(&path);
        conn.execute(
            "UPDATE outbox SET event = '{\"event\": \"key_change_requested\", \"username\": \"Not Valid\"}'",
            [],
        )
        .unwrap();
    }
    let error = store.query(|tx| tx.list_outbox(&OutboxFilter::default())).unwrap_err().to_string();
    assert!(error.contains("corrupt value in outbox.event"), "{error}");
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
