//! The server as an operator runs it: graceful shutdown, restart safety, identities on the
//! socket for other Unix users (run as their uids with `setpriv`), the data directory's modes,
//! metrics, and logs without secrets.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use tests::server::{as_uid, can_switch_uid, expect, stderr, Launch, Server, FAST};

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
    // Stop while operations run: wait until the two workers have taken theirs.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ops = server.unix("GET", "/api/v1/admin/operations", None).json();
        let running = ops["items"].as_array().unwrap().iter().filter(|op| op["state"] == "running").count();
        if running == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the operations never ran: {ops}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "a clean exit after SIGTERM: {status:?}\n{}", server.log());
    // The server waits shutdown_grace_seconds (10) for operations and 5 s for connections at
    // most; twice that is a bound no healthy machine reaches.
    assert!(started.elapsed() < Duration::from_secs(30), "draining is bounded: {:?}", started.elapsed());
    let log = server.log();
    assert!(log.contains("left to resume at the next start"), "{log}");
    // Two workers: the running VMs finished, the queued ones waited for the next start.
    server.restart();
    server.wait_idle();
    let vms = server.http("GET", "/api/v1/vms", Some(&alice), None).json();
    let states: Vec<&str> = vms["items"].as_array().unwrap().iter().map(|vm| vm["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["running"; 4]);
}

/// The issue's reproduction: a 0755 directory, the socket in `DIR/run` (made by the server),
/// alice registered with `--uid`, and the CLI run as her uid with `setpriv`.
#[test]
fn other_unix_users_are_identified_by_the_kernel() {
    if !can_switch_uid() {
        basphere_core::testing::skip_unless_ci("this test needs root, to run the CLI as other uids");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(FAST));
    let key = basphere_core::testing::ssh_key(1);
    let added = server.cli(&[
        "admin",
        "user",
        "add",
        "alice",
        "--email",
        "alice@example.com",
        "--key",
        key.as_str(),
        "--uid",
        "61001",
    ]);
    expect(&added, 0);
    let me: serde_json::Value =
        serde_json::from_str(&expect(&server.cli_uid(61001, &["-o", "json", "whoami"]), 0)).unwrap();
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some("alice"), Some("user")));
    assert!(me["source"].as_str().unwrap().starts_with("unix:uid=61001"));
    let created: serde_json::Value = serde_json::from_str(&expect(
        &server
            .cli_uid(61001, &["-o", "json", "vm", "create", "web", "--os", "ubuntu-24.04", "--spec", "tiny", "--wait"]),
        0,
    ))
    .unwrap();
    assert_eq!(created[0]["state"], "succeeded");
    let vms = server.unix("GET", "/api/v1/admin/vms?owner=alice", None).json();
    assert_eq!(vms["items"][0]["name"], "web", "the VM belongs to the uid's account");
    let stranger = server.cli_uid(61002, &["vm", "list"]);
    assert_eq!(stranger.status.code(), Some(8));
    assert!(stderr(&stranger).contains("uid 61002 is not a Basphere account"), "{}", stderr(&stranger));
    assert_eq!(
        server.cli_uid(61001, &["admin", "user", "list"]).status.code(),
        Some(8),
        "a user is no admin on the socket"
    );
    // The directory the server made for the socket lets users through without listing it.
    let run = std::fs::metadata(dir.path().join("run")).unwrap().permissions().mode() & 0o777;
    assert_eq!(run, 0o711, "{run:o}");
    assert_eq!(std::fs::metadata(&server.socket).unwrap().permissions().mode() & 0o777, 0o666);
    // The data directory is not on the way to this socket: it stays the server's alone.
    assert_eq!(std::fs::metadata(&server.data_dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(!as_uid(61001, &["ls", server.data_dir.to_str().unwrap()]).status.success());
}

/// With no `--socket` the socket is in the data directory (`<data dir>/basphere.sock`): users
/// reach it, and cannot list the directory or read anything in it.
#[test]
fn the_default_layout_lets_users_reach_the_socket_and_keeps_the_data_private() {
    if !can_switch_uid() {
        basphere_core::testing::skip_unless_ci("this test needs root, to run the CLI as other uids");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::launch(dir.path(), Launch { default_socket: true, ..Launch::default() });
    assert_eq!(server.socket, server.data_dir.join("basphere.sock"));
    let key = basphere_core::testing::ssh_key(1);
    let body =
        serde_json::json!({"username": "alice", "email": "alice@example.com", "ssh_key": key.as_str(), "uid": 61001})
            .to_string();
    assert_eq!(server.unix("POST", "/api/v1/admin/users", Some(&body)).status, 201);
    let me: serde_json::Value =
        serde_json::from_str(&expect(&server.cli_uid(61001, &["-o", "json", "whoami"]), 0)).unwrap();
    assert_eq!(me["name"], "alice");
    expect(&server.cli_uid(61001, &["vm", "create", "web", "--os", "ubuntu-24.04", "--spec", "tiny", "--wait"]), 0);

    // The directory can be passed through, not listed; everything in it but the socket is the
    // server's alone, and another user can read none of it.
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.data_dir), 0o711, "{:o}", mode(&server.data_dir));
    let data = server.data_dir.to_str().unwrap();
    assert!(!as_uid(61001, &["ls", data]).status.success(), "others cannot list the data directory");
    let mut files = 0;
    for entry in std::fs::read_dir(&server.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path == server.socket {
            assert_eq!(mode(&path), 0o666);
            continue;
        }
        files += 1;
        assert_eq!(mode(&path) & 0o077, 0, "{} is {:o}", path.display(), mode(&path));
        let read = as_uid(61001, &["cat", path.to_str().unwrap()]);
        assert!(!read.status.success(), "{} is readable by another user", path.display());
    }
    assert!(files >= 2, "the database and the simulated inventory are there");

    // An older server's data directory (0700, a file left readable) is put right at start.
    drop(server);
    std::fs::set_permissions(dir.path().join("data"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let stray = dir.path().join("data/notes.txt");
    std::fs::write(&stray, "operator notes").unwrap();
    std::fs::set_permissions(&stray, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::launch(dir.path(), Launch { default_socket: true, ..Launch::default() });
    assert_eq!(mode(&server.data_dir), 0o711);
    assert_eq!(mode(&stray), 0o600);
    let me: serde_json::Value =
        serde_json::from_str(&expect(&server.cli_uid(61001, &["-o", "json", "whoami"]), 0)).unwrap();
    assert_eq!(me["name"], "alice", "the same account after a restart");
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
