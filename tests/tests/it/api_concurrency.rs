//! Many HTTP clients at once against the real server: nothing duplicated, lost or over quota.

use std::collections::HashSet;
use std::sync::Arc;

use tests::server::{Server, FAST};

#[test]
fn two_hundred_concurrent_creates_with_quota_ten_accept_exactly_ten() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path(), Some(FAST)));
    let alice = Arc::new(server.account("alice", 1, false));
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let (server, alice) = (server.clone(), alice.clone());
            std::thread::spawn(move || {
                let body = format!(r#"{{"name":"vm-{i}","os":"ubuntu-24.04","spec":"tiny"}}"#);
                let response = server.http("POST", "/api/v1/vms", Some(&alice), Some(&body));
                (response.status, response.problem())
            })
        })
        .collect();
    let results: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let accepted = results.iter().filter(|(status, _)| *status == 202).count();
    let refused = results.iter().filter(|(status, kind)| *status == 403 && kind == "quota-exceeded").count();
    assert_eq!((accepted, refused), (10, 190), "{results:?}");
    server.wait_idle();
    let quota = server.http("GET", "/api/v1/quota", Some(&alice), None).json();
    assert_eq!((quota["usage"]["vms"].as_u64(), quota["usage"]["ips"].as_u64()), (Some(10), Some(10)));
}

#[test]
fn five_concurrent_creates_of_one_name_make_one_vm_that_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path(), Some(FAST)));
    let alice = Arc::new(server.account("alice", 1, false));
    let threads: Vec<_> = (0..5)
        .map(|_| {
            let (server, alice) = (server.clone(), alice.clone());
            std::thread::spawn(move || {
                server
                    .http(
                        "POST",
                        "/api/v1/vms",
                        Some(&alice),
                        Some(r#"{"name":"same","os":"ubuntu-24.04","spec":"tiny"}"#),
                    )
                    .status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [202, 409, 409, 409, 409]);
    server.wait_idle();
    let quota = server.http("GET", "/api/v1/quota", Some(&alice), None).json();
    assert_eq!(quota["usage"]["ips"], 1, "one address for one VM, none leaked");
    let deleted = server.http("DELETE", "/api/v1/vms/same", Some(&alice), None);
    assert_eq!(deleted.status, 202);
    server.wait_idle();
    let quota = server.http("GET", "/api/v1/quota", Some(&alice), None).json();
    assert_eq!(
        (quota["usage"]["vms"].as_u64(), quota["usage"]["ips"].as_u64()),
        (Some(0), Some(0)),
        "the record was clean and deletable"
    );
}

#[test]
fn twenty_users_creating_at_once_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path(), Some(FAST)));
    let tokens: Vec<String> = (0..20).map(|i| server.account(&format!("user-{i}"), 100 + i, false)).collect();
    let threads: Vec<_> = tokens
        .iter()
        .cloned()
        .map(|token| {
            let server = server.clone();
            std::thread::spawn(move || {
                let response = server.http(
                    "POST",
                    "/api/v1/vms",
                    Some(&token),
                    Some(r#"{"name":"web","os":"ubuntu-24.04","spec":"tiny","count":5}"#),
                );
                assert_eq!(response.status, 202, "{}", response.body);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    server.wait_idle();
    let mut addresses = HashSet::new();
    let mut records = 0;
    for token in &tokens {
        let vms = server.http("GET", "/api/v1/vms", Some(token), None).json();
        let quota = server.http("GET", "/api/v1/quota", Some(token), None).json();
        let items = vms["items"].as_array().unwrap();
        assert_eq!(quota["usage"]["vms"].as_u64(), Some(items.len() as u64), "usage equals records");
        assert_eq!(quota["usage"]["ips"].as_u64(), Some(items.len() as u64));
        for vm in items {
            assert_eq!(vm["state"], "running");
            assert!(addresses.insert(vm["ip"].as_str().unwrap().to_owned()), "address {} handed out twice", vm["ip"]);
            records += 1;
        }
    }
    assert_eq!(records, 100);
}

#[test]
fn concurrent_account_creations_of_one_name_make_one_account() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path(), Some(FAST)));
    let threads: Vec<_> = (0..5u64)
        .map(|seed| {
            let server = server.clone();
            std::thread::spawn(move || {
                let key = basphere_core::testing::ssh_key(300 + seed);
                let body =
                    serde_json::json!({"username": "dana", "email": "dana@example.com", "ssh_key": key.as_str()})
                        .to_string();
                server.unix("POST", "/api/v1/admin/users", Some(&body)).status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409]);
    let blocks = server.http("GET", "/metrics", None, None).body;
    assert!(blocks.contains("basphere_ipam_assigned_blocks 1"), "one IP block for one account");
}
