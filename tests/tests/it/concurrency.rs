//! Many writers at once on one SQLite file or one PostgreSQL database: nothing duplicated, lost or over quota.

use std::collections::HashSet;
use std::sync::Arc;

use basphere_core::testing::ipam::{pool, resource};
use basphere_core::testing::user;
use basphere_core::{Store, StoreExt};
use basphere_store::SqliteStore;
use basphere_store_postgres::testing::PgCluster;
use basphere_store_postgres::PostgresStore;
use tests::block_ipam;

#[test]
fn sixty_four_users_allocating_at_once_get_6400_distinct_leases() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("ipam.db")).unwrap());
    sixty_four_users_allocate_at_once(&[store]);
}

/// The same on PostgreSQL, through three stores on one database as three replicas would be:
/// their transactions conflict, are retried, and still hand out every address once.
#[test]
fn sixty_four_users_allocating_at_once_through_three_postgres_stores_get_6400_distinct_leases() {
    let options = PgCluster::shared().fresh_schema();
    let stores: Vec<Arc<dyn Store>> =
        (0..3).map(|_| Arc::new(PostgresStore::connect(&options).unwrap()) as Arc<dyn Store>).collect();
    sixty_four_users_allocate_at_once(&stores);
}

fn sixty_four_users_allocate_at_once(stores: &[Arc<dyn Store>]) {
    let store = stores[0].clone();
    // A /18 in blocks of 128: the first block is infrastructure, 127 are assignable.
    let ipam = block_ipam(vec![pool("default", "10.64.0.0/18", 128, &[])]);
    let users: Vec<_> = (0..64)
        .map(|i| {
            let record = user(&format!("user-{i}"), 10_000 + i);
            store.transact(|tx| tx.insert_user(&record)).unwrap();
            record.username
        })
        .collect();
    let threads: Vec<_> = users
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, owner)| {
            let (store, ipam) = (stores[i % stores.len()].clone(), ipam.clone());
            std::thread::spawn(move || {
                (0..100)
                    .map(|n| {
                        store
                            .transact(|tx| ipam.lease(tx, &owner, &resource(&format!("vm-{n}")), 128))
                            .expect("allocation")
                            .address
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let handed_out: Vec<_> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
    let distinct: HashSet<_> = handed_out.iter().collect();
    assert_eq!(handed_out.len(), 6400);
    assert_eq!(distinct.len(), 6400, "no address handed out twice");
    let (leases, blocks) = store.query(|tx| Ok((tx.list_leases(None)?, tx.list_blocks(None)?))).unwrap();
    assert_eq!(leases.len(), 6400, "no lease lost");
    assert_eq!(blocks.len(), 64, "one block of 128 per user");
    for lease in &leases {
        assert!(
            blocks.iter().any(|b| b.owner == lease.owner && b.contains(lease.address)),
            "{} outside its owner's block",
            lease.address
        );
    }
}
