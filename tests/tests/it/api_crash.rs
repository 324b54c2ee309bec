//! kill -9 the server at random moments while VMs are provisioning and being deleted, restart
//! it, ten times: every operation ends, vSphere holds exactly what the store records, and no
//! address is leaked or leased twice.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use basphere_core::mock::MockDelays;
use basphere_core::model::{NotificationEvent, OperationKind, OperationState, OutboxState};
use basphere_core::store::VmFilter;
use basphere_core::{Config, StoreExt};
use tests::server::Server;

/// A small deterministic generator; the seed is printed so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn kill_dash_nine_during_provisioning_loses_and_duplicates_nothing() {
    let seed = std::env::var("BASPHERE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("crash test seed: {seed} (BASPHERE_CRASH_SEED={seed} replays it)");
    let mut random = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        Some("backend:\n  simulated_delays: realistic\nserver:\n  workers: 16\n  shutdown_grace_seconds: 1\n"),
    );
    let alice = server.account("alice", 1, false);
    let raise = server.unix(
        "PUT",
        "/api/v1/admin/users/alice/quota",
        Some(r#"{"vms":200,"ips":200,"vcpus":1000,"memory_mb":10000000,"disk_gb":100000}"#),
    );
    assert_eq!(raise.status, 200, "{}", raise.body);

    let mut created = 0;
    for round in 0..10 {
        if round % 3 == 2 {
            // Delete what exists (some of it may still be provisioning: a conflict then).
            let vms = server.http("GET", "/api/v1/vms?limit=1000", Some(&alice), None).json();
            for vm in vms["items"].as_array().unwrap().iter().take(8) {
                let name = vm["name"].as_str().unwrap();
                let response = server.http("DELETE", &format!("/api/v1/vms/{name}"), Some(&alice), None);
                assert!(matches!(response.status, 202 | 409), "{}", response.body);
            }
        } else {
            let body = format!(r#"{{"name":"r{round}","os":"ubuntu-24.04","spec":"tiny","count":10}}"#);
            for user_batch in 0..2 {
                let body = body.replace(&format!("r{round}"), &format!("r{round}b{user_batch}"));
                let response = server.http("POST", "/api/v1/vms", Some(&alice), Some(&body));
                assert_eq!(response.status, 202, "{}", response.body);
                created += 10;
            }
        }
        std::thread::sleep(Duration::from_millis(50 + random.next(2000)));
        server.kill();
        server.restart();
    }
    server.wait_idle();
    // Every queued notification is delivered, however often the server died holding it.
    let mut pending = usize::MAX;
    for _ in 0..500 {
        let page = server.unix("GET", "/api/v1/admin/outbox?state=pending&limit=1000", None).json();
        pending = page["items"].as_array().map_or(usize::MAX, Vec::len);
        if pending == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pending, 0, "notifications still pending after the last restart");
    let log = server.log();
    server.kill();

    // Read both sides with the server stopped.
    let store = basphere_store::SqliteStore::open(server.data_dir.join("basphere.db")).unwrap();
    let (vms, leases, operations, outbox) = store
        .query(|tx| {
            Ok((
                tx.list_vms(&VmFilter::default())?,
                tx.list_leases(None)?,
                tx.list_operations(&Default::default())?,
                tx.list_outbox(&Default::default())?,
            ))
        })
        .unwrap();
    // One readiness notification per VM made, delivered: none lost, none from a second run.
    let mut ready: std::collections::BTreeMap<String, usize> = Default::default();
    for message in &outbox {
        assert_eq!(message.state, OutboxState::Delivered, "{message:?}");
        if let NotificationEvent::VmReady { name, .. } = &message.event {
            *ready.entry(name.to_string()).or_default() += 1;
        }
    }
    let created_ok: BTreeSet<String> = operations
        .iter()
        .filter(|op| op.kind == OperationKind::CreateVm && op.state == OperationState::Succeeded)
        .map(|op| op.resource.name.clone())
        .collect();
    assert_eq!(ready.keys().cloned().collect::<BTreeSet<_>>(), created_ok, "a notification for every VM made");
    assert!(ready.values().all(|count| *count == 1), "no VM announced twice: {ready:?}");
    let unfinished: Vec<_> = operations.iter().filter(|op| !op.state.is_finished()).collect();
    assert!(unfinished.is_empty(), "every operation ends: {unfinished:?}");
    let failed: Vec<_> =
        operations.iter().filter(|op| op.state.as_str() == "failed").map(|op| (op.kind, op.error.clone())).collect();
    assert!(failed.is_empty(), "no operation failed because of a crash: {failed:?}\n{log}");
    let vsphere = basphere_vsphere::simulated::open(
        &server.data_dir.join("simulated-vsphere.jsonl"),
        &Config::default(),
        MockDelays::default(),
    )
    .unwrap();
    let in_vsphere: BTreeSet<(String, Option<uuid::Uuid>)> =
        vsphere.vms().into_iter().map(|vm| (vm.vsphere_name, vm.basphere_id)).collect();
    let in_store: BTreeSet<(String, Option<uuid::Uuid>)> =
        vms.iter().map(|vm| (vm.vsphere_name(), Some(vm.id))).collect();
    assert_eq!(in_vsphere, in_store, "vSphere holds exactly the live VMs of the store: no duplicate, no orphan");
    let leased: BTreeSet<_> = leases.iter().map(|l| l.address).collect();
    let used: BTreeSet<_> = vms.iter().filter_map(|vm| vm.ip).collect();
    assert_eq!(leased.len(), leases.len(), "no address leased twice");
    assert_eq!(leased, used, "no address leaked: leases are exactly the live VMs' addresses");
    assert!(vms.iter().all(|vm| vm.state.as_str() == "running"), "{vms:?}");
    assert!(created >= 60 && !vms.is_empty());
}
