//! A process killed in the middle of a transaction leaves nothing half-written.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use basphere_core::store::VmFilter;
use basphere_core::testing::username;
use basphere_core::StoreExt;
use basphere_store::SqliteStore;

#[test]
fn sigkill_during_a_transaction_leaves_only_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    for round in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-child"))
            .arg(&path)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start crash-child");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "holding", "round {round}: the child holds its transaction");
        child.kill().expect("SIGKILL");
        child.wait().unwrap();

        let store = SqliteStore::open(&path).expect("reopens after a crash");
        let (users, vms, blocks, leases) = store
            .query(|tx| {
                Ok((
                    tx.list_users()?,
                    tx.list_vms(&VmFilter { include_deleted: true, ..VmFilter::default() })?,
                    tx.list_blocks(None)?,
                    tx.list_leases(None)?,
                ))
            })
            .unwrap();
        let names: Vec<String> = users.iter().map(|u| u.username.to_string()).collect();
        assert_eq!(names, ["committed"], "round {round}: the committed user is there, the doomed one is not");
        assert!(
            vms.is_empty() && blocks.is_empty() && leases.is_empty(),
            "round {round}: nothing of the open transaction"
        );
        // Clear the committed user so the next round's child can commit it again.
        store.transact(|tx| tx.delete_user(&username("committed"))).unwrap();
    }
}
