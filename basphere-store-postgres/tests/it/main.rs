//! basphere-store-postgres's integration tests, on a private PostgreSQL server: the store
//! conformance suite, claims raced by three stores on one database (three replicas), writers
//! serialised across stores, a server restarted under a live store, and migrations.

use std::sync::Arc;

use basphere_core::model::now;
use basphere_core::model::*;
use basphere_core::store::VmFilter;
use basphere_core::testing::{self, store::vm, user};
use basphere_core::validate::ResourceName;
use basphere_core::{Store, StoreExt};
use basphere_store_postgres::testing::PgCluster;
use basphere_store_postgres::{migrations, PostgresStore};

#[test]
fn postgres_passes_the_store_conformance_suite() {
    let cluster = PgCluster::shared();
    testing::store::check_all(&|| Arc::new(cluster.fresh_store()) as Arc<dyn Store>);
}

fn replicas(n: usize) -> Vec<Arc<dyn Store>> {
    let options = PgCluster::shared().fresh_schema();
    (0..n).map(|_| Arc::new(PostgresStore::connect(&options).unwrap()) as Arc<dyn Store>).collect()
}

#[test]
fn three_stores_on_one_database_claim_each_operation_once() {
    testing::store::check_concurrent_claims(&replicas(3));
}

#[test]
fn concurrent_writers_on_three_stores_each_see_every_earlier_commit() {
    let stores = replicas(3);
    let alice = user("alice", 1);
    stores[0].transact(|tx| tx.insert_user(&alice)).unwrap();
    // 60 writers look for the first free name, as the platform checks a name, and take it: every
    // transaction reads what the others write, so only writers that see each other's commits
    // (serialised ones) all succeed with names 0..60.
    let threads: Vec<_> = (0..60)
        .map(|i| {
            let (store, owner) = (stores[i % 3].clone(), alice.username.clone());
            std::thread::spawn(move || {
                store
                    .transact(|tx| {
                        let mut n = 0;
                        while tx.vm_by_name(&owner, &ResourceName::parse(&format!("vm-{n}"))?)?.is_some() {
                            n += 1;
                        }
                        tx.insert_vm(&vm(&owner, &format!("vm-{n}")))
                    })
                    .expect("each writer sees the names taken before it")
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let names: std::collections::BTreeSet<_> = stores[1]
        .query(|tx| tx.list_vms(&VmFilter::default()))
        .unwrap()
        .into_iter()
        .map(|vm| vm.name.to_string())
        .collect();
    let expected: std::collections::BTreeSet<_> = (0..60).map(|n| format!("vm-{n}")).collect();
    assert_eq!(names, expected, "each writer saw every earlier commit: names 0..60, none twice");
}

#[test]
fn a_store_recovers_by_itself_when_the_server_comes_back() {
    let cluster = PgCluster::start().unwrap();
    let store =
        PostgresStore::connect(&basphere_store_postgres::PostgresOptions::new(cluster.fresh_database())).unwrap();
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    cluster.stop();
    let refused = store.query(|tx| tx.get_user(&alice.username));
    assert_eq!(refused.unwrap_err().kind(), "backend", "no database: a backend error, not a hang");
    assert!(store.ping().is_err());
    cluster.start_again().unwrap();
    // The pool drops the dead connections and makes new ones.
    let mut recovered = None;
    for _ in 0..50 {
        match store.query(|tx| tx.get_user(&alice.username)) {
            Ok(found) => {
                recovered = found;
                break;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    assert_eq!(recovered, Some(alice), "what was committed before the restart is there");
    store.ping().unwrap();
}

#[test]
fn committed_data_is_seen_by_a_store_connected_later() {
    let options = PgCluster::shared().fresh_schema();
    let alice = user("alice", 1);
    let web = vm(&alice.username, "web");
    {
        let store = PostgresStore::connect(&options).unwrap();
        store
            .transact(|tx| {
                tx.insert_user(&alice)?;
                tx.insert_vm(&web)
            })
            .unwrap();
    }
    let store = PostgresStore::connect(&options).unwrap();
    assert_eq!(store.user(&alice.username).unwrap(), alice);
    assert_eq!(store.query(|tx| tx.list_vms(&VmFilter::default())).unwrap(), vec![web]);
    assert_eq!(store.schema_version().unwrap(), migrations::LATEST);
    assert_eq!(store.backend_name(), "postgres");
}

/// Four replicas start on an empty database at the same moment. An event trigger (made by the
/// test before they start) logs every object each DDL statement creates or changes, with the
/// session that ran it: each object of the schema must have been made by one session (one
/// replica), and each migration recorded once.
#[test]
fn replicas_starting_at_once_migrate_the_schema_once() {
    let cluster = PgCluster::shared();
    let url = cluster.fresh_database();
    let database = url.split('/').nth(3).and_then(|rest| rest.split('?').next()).unwrap().to_owned();
    cluster
        .psql_on(
            &database,
            "CREATE SCHEMA ddl_watch; \
             CREATE TABLE ddl_watch.log (command_tag text NOT NULL, object_identity text, pid int NOT NULL DEFAULT pg_backend_pid()); \
             CREATE FUNCTION ddl_watch.record() RETURNS event_trigger LANGUAGE plpgsql AS $$ \
             BEGIN INSERT INTO ddl_watch.log (command_tag, object_identity) \
               SELECT command_tag, object_identity FROM pg_event_trigger_ddl_commands() \
               WHERE schema_name IS DISTINCT FROM 'ddl_watch'; END $$; \
             CREATE EVENT TRIGGER ddl_watch ON ddl_command_end EXECUTE FUNCTION ddl_watch.record();",
        )
        .unwrap();
    let options = basphere_store_postgres::PostgresOptions::new(url);
    let start = std::sync::Arc::new(std::sync::Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (options, start) = (options.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                PostgresStore::connect(&options).map(|store| store.schema_version().unwrap())
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap().unwrap(), migrations::LATEST);
    }
    let query = |sql: &str| cluster.psql_on(&database, sql).unwrap();
    let made_again = query(
        "SELECT string_agg(object_identity || ' by ' || sessions || ' sessions', ', ') FROM \
         (SELECT object_identity, count(DISTINCT pid) AS sessions FROM ddl_watch.log \
          WHERE command_tag LIKE 'CREATE %' AND object_identity NOT LIKE 'public.schema_version%' \
          GROUP BY object_identity HAVING count(DISTINCT pid) > 1) AS twice",
    );
    assert_eq!(
        made_again,
        "",
        "objects made by more than one replica (sessions {})",
        query("SELECT string_agg(DISTINCT pid::text, ', ') FROM ddl_watch.log")
    );
    assert_eq!(
        query("SELECT count(*) FROM ddl_watch.log WHERE command_tag = 'CREATE TABLE' AND object_identity = 'public.users'"),
        "1",
        "the log sees the migrations: {}",
        query("SELECT string_agg(command_tag || ' ' || coalesce(object_identity, '-'), ', ') FROM ddl_watch.log")
    );
    assert_eq!(query("SELECT count(*) FROM schema_version"), migrations::LATEST.to_string());
}

#[test]
fn a_database_from_a_newer_basphere_is_refused() {
    let cluster = PgCluster::shared();
    let url = cluster.fresh_database();
    let options = basphere_store_postgres::PostgresOptions::new(url.clone());
    drop(PostgresStore::connect(&options).unwrap());
    let database = url.split('/').nth(3).and_then(|rest| rest.split('?').next()).unwrap().to_owned();
    cluster
        .psql_on(&database, &format!("INSERT INTO schema_version (version) VALUES ({})", migrations::LATEST + 1))
        .unwrap();
    let error = PostgresStore::connect(&options).err().expect("refused");
    assert!(error.to_string().contains("newer than this build"), "{error}");
}

#[test]
fn every_named_constraint_exists_in_the_schema() {
    let cluster = PgCluster::shared();
    let url = cluster.fresh_database();
    drop(PostgresStore::connect(&basphere_store_postgres::PostgresOptions::new(url.clone())).unwrap());
    let database = url.split('/').nth(3).and_then(|rest| rest.split('?').next()).unwrap().to_owned();
    let names = cluster
        .psql_on(
            &database,
            "SELECT conname FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'u', 'f', 'c')
             UNION SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexdef LIKE 'CREATE UNIQUE%'",
        )
        .unwrap();
    let names: std::collections::BTreeSet<&str> = names.lines().collect();
    let mapped: std::collections::BTreeSet<&str> = basphere_store_postgres::constraint_names().collect();
    let unmapped: Vec<_> =
        names.iter().filter(|name| !mapped.contains(*name) && **name != "schema_version_pkey").collect();
    assert!(unmapped.is_empty(), "constraints without a meaning: {unmapped:?}");
    let missing: Vec<_> = mapped.iter().filter(|name| !names.contains(*name)).collect();
    assert!(missing.is_empty(), "mapped constraints the schema lacks: {missing:?}");
    // A violation of each kind is its domain error.
    let store = PostgresStore::connect(&basphere_store_postgres::PostgresOptions::new(url)).unwrap();
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let again = store.transact(|tx| tx.insert_user(&alice)).unwrap_err();
    assert_eq!(again.kind(), "already-exists", "{again}");
    let orphan = ApiToken {
        id: uuid::Uuid::now_v7(),
        owner: user("carol", 2).username,
        name: "laptop".into(),
        scope: TokenScope::User,
        secret_hash: ApiToken::hash_secret("bsp_orphan"),
        created_at: now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    let error = store.transact(|tx| tx.insert_token(&orphan)).unwrap_err();
    assert_eq!(error.kind(), "not-found", "{error}");
    // The transaction goes on after a violation, as on SQLite: the second insert is committed.
    let bob = user("bob", 3);
    store
        .transact(|tx| {
            assert_eq!(tx.insert_user(&alice).unwrap_err().kind(), "already-exists");
            tx.insert_user(&bob)
        })
        .unwrap();
    assert_eq!(store.user(&bob.username).unwrap(), bob);
}

#[test]
fn tls_to_the_database_is_verified_against_the_configured_authority() {
    let cluster = PgCluster::start_tls().unwrap();
    cluster.psql("CREATE DATABASE tls").unwrap();
    let mut options = basphere_store_postgres::PostgresOptions::new(cluster.tls_url("tls"));
    options.ca_file = Some(cluster.ca_file().unwrap().to_path_buf());
    let store = PostgresStore::connect(&options).unwrap();
    assert!(store.uses_tls().unwrap(), "the connection is encrypted");
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    assert_eq!(store.user(&alice.username).unwrap(), alice);

    // Without the authority (the system's roots only), the server's certificate is refused.
    let untrusted = PostgresStore::connect(&basphere_store_postgres::PostgresOptions::new(cluster.tls_url("tls")));
    let error = untrusted.err().expect("an unknown authority is refused").to_string();
    assert!(error.to_lowercase().contains("certificate") || error.contains("cannot reach"), "{error}");
    // A missing authority file is named.
    let mut missing = basphere_store_postgres::PostgresOptions::new(cluster.tls_url("tls"));
    missing.ca_file = Some("/nonexistent/ca.pem".into());
    let error = PostgresStore::connect(&missing).err().expect("refused").to_string();
    assert!(error.contains("store.ca_file") && error.contains("/nonexistent/ca.pem"), "{error}");
}

#[test]
fn a_writer_stopped_inside_its_transaction_does_not_stop_the_others_for_long() {
    // A transaction holding the writers' lock, left idle as a frozen replica would leave it: the
    // server ends it, and the others go on.
    let cluster = PgCluster::shared();
    let url = cluster.fresh_database();
    let store = PostgresStore::connect(&basphere_store_postgres::PostgresOptions::new(url.clone())).unwrap();
    let database = url.split('/').nth(3).and_then(|rest| rest.split('?').next()).unwrap().to_owned();
    let frozen = std::thread::spawn({
        let cluster_dir = cluster.socket_dir().to_path_buf();
        let database = database.clone();
        move || {
            // psql keeps the transaction open, idle, with the lock, then sleeps past the timeout.
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{{ echo \"BEGIN; SET LOCAL idle_in_transaction_session_timeout = '8s'; SELECT pg_advisory_xact_lock(7450753787098509426);\"; sleep 14; echo 'COMMIT;'; }} | psql -h {} -U basphere -d {database} -q",
                    cluster_dir.display()
                ))
                .output()
                .unwrap()
        }
    });
    // Until psql holds the lock (its start can take a while on a busy machine; the holder is
    // ended 8 s after it took the lock, so a slow look still finds it held: with 4 s, a loaded
    // machine's psql once saw it held just before it was ended).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let held = std::process::Command::new("psql")
            .args(["-h", &cluster.socket_dir().display().to_string(), "-U", "basphere", "-d", &database, "-tAc"])
            // This database's only: pg_locks lists the whole server's, and the other tests'
            // writers take the same advisory lock in databases of their own at the same time.
            .arg(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .output()
            .unwrap();
        if String::from_utf8_lossy(&held.stdout).trim().parse::<u32>().is_ok_and(|count| count > 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "psql never took the lock: {held:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let started = std::time::Instant::now();
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).expect("the write goes through once the idle holder is ended");
    let waited = started.elapsed();
    assert!(waited > std::time::Duration::from_millis(500), "the write waited for the lock: {waited:?}");
    assert!(waited < std::time::Duration::from_secs(15), "waited {waited:?}");
    frozen.join().unwrap();
}
