//! The server as an operator runs it: graceful shutdown, restart safety, identities on the
//! socket for other Unix users, metrics, and logs without secrets.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use tests::server::{binaries, expect, stderr, Server, FAST};

#[test]
fn sigterm_drains_running_operations_and_a_restart_finishes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        Some("backend:\n  simulated_delays: realistic\nserver:\n  workers: 2\n  shutdown_grace_seconds: 10\n"),
    );
    let alice = server.account("alice", 1, false);
    let created = server.http(
        "POST",
        "/api/v1/vms",
        Some(&alice),
        Some(r#"{"name":"web","os":"ubuntu-24.04","spec":"tiny","count":4}"#),
    );
    assert_eq!(created.status, 202);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "a clean exit after SIGTERM: {status:?}\n{}", server.log());
    assert!(started.elapsed() < Duration::from_secs(10), "draining is bounded");
    let log = server.log();
    assert!(log.contains("left to resume at the next start"), "{log}");
    // Two workers: the two running VMs finished, the two queued wait for the next start.
    server.restart();
    server.wait_idle();
    let vms = server.http("GET", "/api/v1/vms", Some(&alice), None).json();
    let states: Vec<&str> = vms["items"].as_array().unwrap().iter().map(|vm| vm["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["running"; 4]);
}

#[test]
fn other_unix_users_are_identified_by_the_kernel() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var("CI").is_err(), "this test needs root (to run the CLI as other uids); CI runs as root");
        eprintln!("skipped: needs root to run the CLI as another uid");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start(dir.path(), Some(FAST));
    std::fs::set_permissions(dir.path().join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = basphere_core::testing::ssh_key(1);
    let body =
        serde_json::json!({"username": "alice", "email": "alice@example.com", "ssh_key": key.as_str(), "uid": 4242})
            .to_string();
    assert_eq!(server.unix("POST", "/api/v1/admin/users", Some(&body)).status, 201);
    let as_uid = |uid: u32, args: &[&str]| {
        std::process::Command::new(&binaries().cli)
            .arg("--socket")
            .arg(&server.socket)
            .args(args)
            .uid(uid)
            .gid(uid)
            .env("HOME", "/tmp")
            .env("BASPHERE_CLI_CONFIG", "/nonexistent")
            .env_remove("BASPHERE_SERVER")
            .env_remove("BASPHERE_TOKEN")
            .output()
            .unwrap()
    };
    let me: serde_json::Value = serde_json::from_str(&expect(&as_uid(4242, &["-o", "json", "whoami"]), 0)).unwrap();
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some("alice"), Some("user")));
    assert!(me["source"].as_str().unwrap().starts_with("unix:uid=4242"));
    let created: serde_json::Value = serde_json::from_str(&expect(
        &as_uid(4242, &["-o", "json", "vm", "create", "web", "--os", "ubuntu-24.04", "--spec", "tiny", "--wait"]),
        0,
    ))
    .unwrap();
    assert_eq!(created[0]["state"], "succeeded");
    let vms = server.unix("GET", "/api/v1/admin/vms?owner=alice", None).json();
    assert_eq!(vms["items"][0]["name"], "web", "the VM belongs to the uid's account");
    let stranger = as_uid(4343, &["vm", "list"]);
    assert_eq!(stranger.status.code(), Some(8));
    assert!(stderr(&stranger).contains("uid 4343 is not a Basphere account"), "{}", stderr(&stranger));
    assert_eq!(as_uid(4242, &["admin", "user", "list"]).status.code(), Some(8), "a user is no admin on the socket");
}

#[test]
fn metrics_describe_requests_operations_and_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(FAST));
    let alice = server.account("alice", 1, false);
    server.http(
        "POST",
        "/api/v1/vms",
        Some(&alice),
        Some(r#"{"name":"web","os":"ubuntu-24.04","spec":"tiny","count":2}"#),
    );
    server.wait_idle();
    server.http("GET", "/api/v1/vms/web-1", Some(&alice), None);
    let metrics = server.http("GET", "/metrics", None, None).body;
    assert!(
        metrics.contains(r#"basphere_http_requests_total{method="GET",route="/api/v1/vms/{name}",status="200"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("basphere_http_request_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("basphere_ipam_leased_addresses 2"), "{metrics}");
    assert!(metrics.contains("basphere_ipam_pool_addresses 2048"), "{metrics}");
    assert!(metrics.contains(r#"basphere_operations{state="running"} 0"#), "{metrics}");
}

#[test]
fn logs_never_contain_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_log_level(dir.path(), Some(FAST), "debug");
    let alice = server.account("alice", 1, false);
    for path in ["/api/v1/me", "/api/v1/vms", "/api/v1/tokens"] {
        assert_eq!(server.http("GET", path, Some(&alice), None).status, 200);
    }
    server.http("GET", "/api/v1/me", Some("bsp_wrong_secret_value"), None);
    let created = server.http("POST", "/api/v1/tokens", Some(&alice), Some(r#"{"name":"x"}"#)).json();
    let secret = created["secret"].as_str().unwrap();
    let log = server.log();
    assert!(log.len() > 100, "debug logging is on: {log}");
    for leaked in [alice.as_str(), secret, "bsp_wrong_secret_value", &alice[4..20]] {
        assert!(!log.contains(leaked), "the log contains a secret: {leaked}");
    }
}
