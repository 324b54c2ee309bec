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

/// Runs `words`, failing the test when it fails; its standard output.
fn sh(words: &[&str]) -> String {
    let output = Command::new(words[0]).args(&words[1..]).output().expect("the command starts");
    assert!(output.status.success(), "{words:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The namespaces whose names start with `prefix`.
fn namespaces(prefix: &str) -> Vec<String> {
    sh(&["ip", "netns", "list"])
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Removes the round's namespaces however the round ends.
struct Namespaces(String);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in namespaces(&self.0) {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// Why this machine cannot make namespaces and nftables tables, if it cannot.
fn router_missing() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| status.lines().find(|line| line.starts_with("Uid:")).map(str::to_owned))
        .is_some_and(|line| line.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Some("the network crash test needs root (network namespaces)".into());
    }
    ["ip", "nft"]
        .into_iter()
        .find(|tool| {
            !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
        })
        .map(|tool| format!("the network crash test needs `{tool}`"))
}

/// SIGKILL at several moments of an approval that makes an account's network with the real
/// `linux` router; the next start finishes it with exactly one namespace, one nftables table
/// and one pair of VLAN ids, and purge then leaves nothing of it.
#[test]
fn sigkill_while_a_network_is_made_finishes_it_once_on_restart() {
    use basphere_core::model::{NetworkState, OperationState};
    use basphere_core::store::{NetworkFilter, OperationFilter};
    if let Some(missing) = router_missing() {
        basphere_core::testing::skip_unless_ci(&missing);
        return;
    }
    let child = |db: &std::path::Path, host: &str, prefix: &str, mode: &str| {
        Command::new(env!("CARGO_BIN_EXE_network-child"))
            .args([db.to_str().unwrap(), host, prefix, mode, "alice"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start network-child")
    };
    let finish = |db: &std::path::Path, host: &str, prefix: &str, mode: &str| {
        let output = child(db, host, prefix, mode).wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{mode}: {text}");
        text
    };
    let mut interrupted = 0;
    for (round, delay_ms) in [0u64, 25, 60, 150, 400].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("basphere.db");
        let prefix = format!("bk{}x{round}-", std::process::id() % 10_000);
        let _cleanup = Namespaces(prefix.clone());
        let host = format!("{prefix}host");
        sh(&["ip", "netns", "add", &host]);
        sh(&["ip", "-n", &host, "link", "add", "wan", "type", "bridge"]);
        sh(&["ip", "-n", &host, "link", "set", "wan", "up"]);

        let mut approving = child(&db, &host, &prefix, "approve");
        let mut line = String::new();
        // Kept open until the child is gone: one that finished first still prints its end.
        let mut output = BufReader::new(approving.stdout.take().unwrap());
        output.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "approving", "round {round}");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        approving.kill().expect("SIGKILL");
        approving.wait().unwrap();
        drop(output);

        let finished = finish(&db, &host, &prefix, "finish");
        assert!(finished.contains("done succeeded") || finished.contains("done nothing"), "round {round}: {finished}");
        interrupted += usize::from(finished.contains("done succeeded"));
        let routers = namespaces(&format!("{prefix}r-"));
        assert_eq!(routers, [format!("{prefix}r-alice")], "round {round}: exactly one namespace");
        let tables = sh(&["ip", "netns", "exec", &routers[0], "nft", "list", "tables"]);
        assert_eq!(tables.trim(), "table inet basphere", "round {round}: exactly one table");
        let store = SqliteStore::open(&db).unwrap();
        let (networks, approvals) = store
            .query(|tx| {
                Ok((
                    tx.list_networks(&NetworkFilter { include_deleted: true, ..NetworkFilter::default() })?,
                    tx.list_operations(&OperationFilter::default())?,
                ))
            })
            .unwrap();
        assert_eq!(networks.len(), 1, "round {round}: one network record: {networks:?}");
        assert_eq!(networks[0].state, NetworkState::Ready, "round {round}: {:?}", networks[0].reason);
        assert_eq!(networks[0].vlans().collect::<Vec<_>>(), [2001, 2002], "round {round}: one pair of VLAN ids");
        assert!(approvals.iter().all(|op| op.state == OperationState::Succeeded), "round {round}: {approvals:?}");
        drop(store);

        let purged = finish(&db, &host, &prefix, "purge");
        assert!(purged.contains("done succeeded"), "round {round}: {purged}");
        assert!(namespaces(&format!("{prefix}r-")).is_empty(), "round {round}: purge leaves no namespace");
        let store = SqliteStore::open(&db).unwrap();
        let left = store.query(|tx| tx.list_networks(&NetworkFilter::default())).unwrap();
        assert!(left.is_empty(), "round {round}: no live network after purge: {left:?}");
        assert!(sh(&["ip", "-n", &host, "link", "show", "master", "wan"]).trim().is_empty(), "no WAN port left");
    }
    assert!(interrupted > 0, "at least one kill must land while the network was being made");
}
