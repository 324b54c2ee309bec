//! A process that the crash tests kill with SIGKILL while it holds an open write transaction.
//!
//! Usage: `crash-child DB_PATH`. It commits one user (`committed`), then opens a transaction that
//! writes a block, a lease, a VM and a second user, prints `holding` on stdout, and sleeps
//! inside the transaction until it is killed.

use std::io::Write;
use std::net::Ipv4Addr;
use std::time::Duration;

use basphere_core::model::{now, IpBlock, Lease, LeaseState, ResourceKind, ResourceRef};
use basphere_core::testing::{store::vm, user};
use basphere_core::StoreExt;
use basphere_store::SqliteStore;

fn main() {
    let path = std::env::args().nth(1).expect("usage: crash-child DB_PATH");
    let store = SqliteStore::open(&path).expect("open store");
    let committed = user("committed", 1);
    store.transact(|tx| tx.insert_user(&committed)).expect("commit the first user");
    let _ = store.transact(|tx| {
        let doomed = user("doomed", 2);
        tx.insert_user(&doomed)?;
        tx.insert_block(&IpBlock {
            pool: "default".into(),
            start: Ipv4Addr::new(10, 254, 0, 32),
            size: 32,
            owner: doomed.username.clone(),
            allocated_at: now(),
        })?;
        let record = vm(&doomed.username, "web");
        tx.insert_vm(&record)?;
        tx.insert_lease(&Lease {
            address: Ipv4Addr::new(10, 254, 0, 33),
            network: None,
            pool: "default".into(),
            owner: doomed.username.clone(),
            resource: ResourceRef { kind: ResourceKind::Vm, id: record.id, name: "web".into() },
            state: LeaseState::Reserved,
            created_at: now(),
        })?;
        println!("holding");
        std::io::stdout().flush().expect("flush");
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
        #[allow(unreachable_code)]
        Ok(())
    });
}
