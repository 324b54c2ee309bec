//! Idle connections do not lock anyone out: the real server started with a low open-file limit,
//! flooded with more TCP connections that send nothing than it has descriptors.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tests::server::{expect, Launch, Server};

/// Descriptors the flooded servers may open (soft = hard, so the server cannot raise it).
const OPEN_FILES: u64 = 256;
/// More connections than that.
const FLOOD: usize = 300;

/// This process holds the flood's connections: it raises its own soft limit to make room.
fn room_for_the_flood() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    assert!(hard >= 4 * FLOOD as u64, "the tests need an open-file limit of at least {} (ulimit -n)", 4 * FLOOD);
}

fn flood(server: &Server) -> Vec<TcpStream> {
    (0..FLOOD)
        .map(|i| TcpStream::connect(&server.tcp).unwrap_or_else(|error| panic!("connection {i} of the flood: {error}")))
        .collect()
}

fn config(header_read_timeout_seconds: u64) -> String {
    format!(
        "backend:\n  simulated_delays: none\nserver:\n  connections:\n    header_read_timeout_seconds: {header_read_timeout_seconds}\n"
    )
}

/// With the flood held open (a timeout far longer than the test), the TCP listener is at its
/// cap and the administrator on the socket is served all the same.
#[test]
fn a_flood_of_idle_tcp_connections_leaves_the_socket_served() {
    room_for_the_flood();
    let dir = tempfile::tempdir().unwrap();
    let config = config(300);
    let server = Server::launch(
        dir.path(),
        Launch { config: Some(&config), open_files: Some((OPEN_FILES, OPEN_FILES)), ..Launch::default() },
    );
    let flood = flood(&server);
    // Wait until the server has taken all it will: its cap (256 - 64 for the socket - 128 for
    // its own files = 64 connections), or, were it unbounded, every descriptor it has.
    let saturated = || {
        let log = server.log();
        log.contains("the listener holds its maximum of connections") || log.contains("Too many open files")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !saturated() {
        assert!(Instant::now() < deadline, "the server never took the flood in: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    // The administrator on the socket is served, with the flood still held.
    let who = server.cli(&["-o", "json", "whoami"]);
    assert!(!server.log().contains("Too many open files"), "{}", server.log());
    let who: serde_json::Value = serde_json::from_str(&expect(&who, 0)).unwrap();
    assert_eq!(who["role"], "admin", "{who}");
    let users = server.unix("GET", "/api/v1/admin/users", None);
    assert_eq!(users.status, 200, "{}", users.body);
    let held = std::fs::read_dir(format!("/proc/{}/fd", server.pid())).unwrap().count();
    assert!(held < OPEN_FILES as usize - 64, "the server holds {held} descriptors: its own and 64 connections");
    drop(flood);
}

/// With a short header timeout the flood is closed by the server, and a new TCP client waiting
/// behind it is served within a bounded time.
#[test]
fn idle_tcp_connections_are_closed_and_new_clients_get_their_turn() {
    room_for_the_flood();
    let dir = tempfile::tempdir().unwrap();
    let config = config(1);
    let server = Server::launch(
        dir.path(),
        Launch { config: Some(&config), open_files: Some((OPEN_FILES, OPEN_FILES)), ..Launch::default() },
    );
    let mut flood = flood(&server);
    let started = Instant::now();
    // Behind the flood in the kernel's queue: served once the connections ahead of it have
    // been closed, 64 at a time, a second each.
    let health = server.http("GET", "/healthz", None, None);
    assert_eq!(health.status, 200, "{}", health.body);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(60), "a new client waited {waited:?}");
    let who: serde_json::Value = serde_json::from_str(&expect(&server.cli(&["-o", "json", "whoami"]), 0)).unwrap();
    assert_eq!(who["role"], "admin");
    // Every connection of the flood was closed by the server, having sent nothing.
    for (i, connection) in flood.iter_mut().enumerate() {
        connection.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buffer = [0u8; 64];
        match connection.read(&mut buffer) {
            Ok(0) => {}
            Ok(n) => panic!("connection {i} got {n} bytes: {}", String::from_utf8_lossy(&buffer[..n])),
            Err(error) => assert!(
                matches!(error.kind(), std::io::ErrorKind::ConnectionReset),
                "connection {i} was not closed by the server: {error}"
            ),
        }
    }
    assert!(!server.log().contains("Too many open files"), "{}", server.log());
}

/// The server raises its soft open-file limit to the hard one at start.
#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::launch(dir.path(), Launch { open_files: Some((256, 4096)), ..Launch::default() });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits.lines().find(|line| line.starts_with("Max open files")).expect("a Max open files line");
    let values: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(values[3..5], ["4096", "4096"], "{line}");
}
