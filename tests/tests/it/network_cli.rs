//! `basphere network show` and `basphere admin network list|show|create|delete` through the real
//! CLI binary. With tenant networks on, against this process's server: the server binary does
//! not start in tenant mode yet, so the test serves `basphere_server::app` on a platform whose
//! router is core's `RecordingRouter`, through the server's own listeners (this process's uid on
//! the Unix socket is the administrator; a user comes over TCP with a token). With them off,
//! against the real server, whose answers name `networks.mode`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use basphere_core::mock::{MockProvisioner, RecordingNotifier, RecordingRouter};
use basphere_core::router::TenantRouter;
use basphere_core::testing::username;
use basphere_core::{Config, MemoryStore, Platform};
use basphere_server::config::ServerSettings;
use basphere_server::listener::{self, Limits};
use basphere_server::{auth, AppState};
use serde_json::Value;
use tests::block_ipam;
use tests::server::{binaries, cli_env, exchange, expect, stderr, Server, FAST};

const TENANT: &str = "recaptcha: {enabled: false}\n\
    networks: {mode: tenant, vlan_range: \"2001-2999\", distributed_switch: dvs-tenants, \
    wan_port_group: pg-wan, wan: {cidr: 192.0.2.0/24, gateway: 192.0.2.1}}\n";

/// A server in tenant mode in this process, on a Unix socket and a loopback port; it stops when
/// dropped.
struct TenantServer {
    socket: PathBuf,
    tcp: String,
    router: Arc<RecordingRouter>,
    stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl TenantServer {
    async fn start() -> TenantServer {
        let config = Arc::new(Config::from_yaml(TENANT).expect("the tenant configuration is valid"));
        let router = Arc::new(RecordingRouter::new());
        let platform = Platform::builder(
            config.clone(),
            Arc::new(MemoryStore::new()),
            block_ipam(config.pools.clone()),
            Arc::new(MockProvisioner::with_default_catalog()),
            Arc::new(RecordingNotifier::new()),
        )
        .router(router.clone())
        .build();
        // This process's uid on the socket is the server's own: an administrator.
        let uid = nix::unistd::getuid().as_raw();
        let app = basphere_server::app(AppState::new(platform, ServerSettings::default(), uid));
        let dir = tempfile::tempdir().expect("a directory");
        let socket = dir.path().join("basphere.sock");
        let unix = tokio::net::UnixListener::bind(&socket).expect("bind the socket");
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let address = tcp.local_addr().expect("an address").to_string();
        let limits = Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let unix_app = app.clone().layer(axum::middleware::from_fn(auth::unix_transport));
        let tcp_app = app.layer(axum::middleware::from_fn(auth::tcp_transport));
        tokio::spawn(listener::serve(unix, unix_app, limits, stopped.clone()));
        tokio::spawn(listener::serve(tcp, tcp_app, limits, stopped));
        TenantServer { socket, tcp: address, router, stop, _dir: dir }
    }

    /// `basphere ARGS` as the administrator, on the socket.
    async fn admin(&self, args: &[&str]) -> Output {
        let mut command = cli();
        command.arg("--socket").arg(&self.socket).args(args);
        run(command).await
    }

    /// `basphere ARGS` as the holder of `token`, over TCP.
    async fn user(&self, token: &str, args: &[&str]) -> Output {
        let mut command = cli();
        command.args(args).env("BASPHERE_SERVER", format!("http://{}", self.tcp)).env("BASPHERE_TOKEN", token);
        run(command).await
    }

    /// The server's answer to `GET path`, as the holder of `token` over TCP.
    async fn get(&self, token: &str, path: &str) -> Value {
        let (tcp, path, auth) = (self.tcp.clone(), path.to_owned(), format!("Bearer {token}"));
        let answer = tokio::task::spawn_blocking(move || {
            let stream = std::net::TcpStream::connect(tcp).expect("connect");
            exchange(stream, "GET", &path, &[("Authorization", &auth)], b"").expect("an answer")
        })
        .await
        .expect("the request ran");
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()
    }
}

impl Drop for TenantServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The CLI in the clean environment every CLI test uses.
fn cli() -> Command {
    let mut command = Command::new(&binaries().cli);
    cli_env(&mut command);
    command
}

/// Runs the CLI off the runtime's workers.
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run basphere")).await.expect("the CLI ran")
}

/// stderr of a command that ended with `code`.
fn failed(output: &Output, code: i32) -> String {
    expect(output, code);
    stderr(output)
}

/// The `Key: value` lines of a detail, up to the first blank line.
fn fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(": ").map(|(key, value)| (key.to_owned(), value.trim().to_owned())))
        .collect()
}

/// What `-o json` printed: the server's document, pretty-printed as every command prints it.
fn printed(output: &Output, document: &Value) {
    let stdout = expect(output, 0);
    assert_eq!(stdout, format!("{}\n", serde_json::to_string_pretty(document).unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_commands_show_make_and_delete_tenant_networks() {
    let server = TenantServer::start().await;
    for (name, seed) in [("alice", 1), ("bob", 2)] {
        let key = basphere_core::testing::ssh_key(seed);
        let email = format!("{name}@example.com");
        expect(&server.admin(&["admin", "user", "add", name, "--email", &email, "--key", key.as_str()]).await, 0);
        // An account made in tenant mode is given its network; taken away (waiting for it to be
        // made first), the account has none, as one approved before tenant mode.
        let mut state = Value::Null;
        for _ in 0..200 {
            let shown = server.admin(&["-o", "json", "admin", "network", "show", name]).await;
            state = serde_json::from_str::<Value>(&expect(&shown, 0)).unwrap()["state"].clone();
            if state == "ready" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(state, "ready", "{name}'s network is made with the account");
        let dropped = server.admin(&["-y", "admin", "network", "delete", name, "--wait"]).await;
        assert_eq!(expect(&dropped, 0), format!("delete_network {name}: succeeded\n"));
    }
    let created = server.admin(&["-o", "json", "admin", "token", "create", "--user", "alice"]).await;
    let created: Value = serde_json::from_str(&expect(&created, 0)).unwrap();
    let alice = created["secret"].as_str().unwrap().to_owned();

    // No network yet: said, with the exit code of something not found.
    let none = server.user(&alice, &["network", "show"]).await;
    assert!(failed(&none, 3).contains("network not found: alice"), "{}", stderr(&none));

    // Made, waiting for the operation as every operation command does with --wait.
    let made = server.admin(&["admin", "network", "create", "alice", "--wait"]).await;
    assert_eq!(expect(&made, 0), "create_network alice: succeeded\n");
    let again = server.admin(&["admin", "network", "create", "alice"]).await;
    assert!(failed(&again, 4).contains("alice has a network already (ready)"), "{}", stderr(&again));

    // What the developer sees: the VLAN ids, subnets and gateways, MTU, router and WAN address.
    let shown = expect(&server.user(&alice, &["network", "show"]).await, 0);
    let detail = fields(&shown);
    for (key, value) in [
        ("Owner", "alice"),
        ("State", "ready"),
        ("Reason", "-"),
        ("VLANs", "2001, 2002"),
        ("MTU", "1450"),
        ("WAN address", "192.0.2.2/24"),
        ("Router", "in-place (recording)"),
    ] {
        assert_eq!(detail.get(key).map(String::as_str), Some(value), "{key} in:\n{shown}");
    }
    assert!(!detail.contains_key("Router detail"), "nothing differs: {shown}");
    let lans: Vec<Vec<&str>> =
        shown.lines().skip_while(|l| !l.starts_with("LAN")).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lans,
        [
            vec!["LAN", "VLAN", "SUBNET", "GATEWAY"],
            vec!["lan1", "2001", "10.0.1.0/24", "10.0.1.1"],
            vec!["lan2", "2002", "10.0.2.0/24", "10.0.2.1"]
        ],
        "{shown}"
    );
    // -o json is the server's document, as for every command; the administrator's show is the
    // same network.
    let document = server.get(&alice, "/api/v1/network").await;
    printed(&server.user(&alice, &["-o", "json", "network", "show"]).await, &document);
    printed(&server.admin(&["-o", "json", "admin", "network", "show", "alice"]).await, &document);
    let yaml = expect(&server.user(&alice, &["-o", "yaml", "network", "show"]).await, 0);
    assert_eq!(serde_yaml::from_str::<Value>(&yaml).unwrap(), document);

    // The list, without asking the routers.
    let listed = expect(&server.admin(&["admin", "network", "list"]).await, 0);
    let rows: Vec<Vec<&str>> = listed.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["OWNER", "STATE", "VLANS", "WAN", "ADDRESS", "MTU", "CREATED"], "{listed}");
    assert_eq!(rows[1][..6], ["alice", "ready", "2001,", "2002", "192.0.2.2/24", "1450"], "{listed}");
    assert_eq!(rows.len(), 2, "{listed}");
    let items: Value =
        serde_json::from_str(&expect(&server.admin(&["-o", "json", "admin", "network", "list"]).await, 0)).unwrap();
    assert_eq!((items[0]["owner"].as_str(), items[0]["router"].is_null()), (Some("alice"), true), "{items}");
    let wrong = server.admin(&["admin", "network", "list", "--state", "melted"]).await;
    assert!(failed(&wrong, 2).contains("\"melted\" is not one of: pending, ready, failed, deleting, deleted"));
    assert!(failed(&server.admin(&["admin", "network", "show", "nobody"]).await, 3).contains("nobody"));

    // What the router holds is read from it.
    server.router.remove(&username("alice")).await.unwrap();
    let absent = expect(&server.user(&alice, &["network", "show"]).await, 0);
    assert_eq!(fields(&absent)["Router"], "absent (recording)", "{absent}");

    // The administrators' commands are refused to a developer.
    let refused = server.user(&alice, &["admin", "network", "list"]).await;
    failed(&refused, 8);

    // A router that fails: --wait says so with the operation's exit code; asking again makes it.
    server.router.fail_next(1);
    let broken = server.admin(&["admin", "network", "create", "bob", "--wait"]).await;
    assert!(failed(&broken, 9).contains("1 of 1 operation(s) failed"), "{}", stderr(&broken));
    assert!(String::from_utf8_lossy(&broken.stdout).contains("create_network bob: failed"));
    let made = server.admin(&["admin", "network", "create", "bob", "--wait"]).await;
    assert_eq!(expect(&made, 0), "create_network bob: succeeded\n");

    // Deleting asks first: without a terminal, --yes is needed. Without --wait, the operation to
    // follow is named.
    let unasked = server.admin(&["admin", "network", "delete", "alice"]).await;
    assert!(failed(&unasked, 2).contains("add --yes"), "{}", stderr(&unasked));
    let accepted = expect(&server.admin(&["-y", "admin", "network", "delete", "alice"]).await, 0);
    let operation = accepted
        .strip_prefix("delete_network alice accepted: operation ")
        .unwrap_or_else(|| panic!("the operation named: {accepted}"))
        .trim();
    assert_eq!(expect(&server.admin(&["op", "wait", operation]).await, 0), "delete_network alice: succeeded\n");
    let gone = server.user(&alice, &["network", "show"]).await;
    assert!(failed(&gone, 3).contains("network not found: alice"), "{}", stderr(&gone));
    let deleted = expect(&server.admin(&["admin", "network", "list", "--state", "deleted"]).await, 0);
    assert!(deleted.lines().nth(1).is_some_and(|row| row.starts_with("alice") && row.contains("deleted")), "{deleted}");
}

#[test]
fn with_tenant_networks_off_the_network_commands_name_networks_mode() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(FAST));
    let alice = server.account("alice", 1, false);
    let off = "tenant networks are off (networks.mode: flat); set networks.mode: tenant";
    let show = server.cli_as(&alice, &["network", "show"]);
    assert!(failed(&show, 1).contains(off), "{}", stderr(&show));
    for args in [["admin", "network", "show", "alice"], ["admin", "network", "create", "alice"]] {
        let refused = server.cli(&args);
        assert!(failed(&refused, 1).contains(off), "{args:?}: {}", stderr(&refused));
    }
    assert_eq!(expect(&server.cli(&["admin", "network", "list"]), 0), "No tenant networks.\n");
    let none = server.cli(&["-y", "admin", "network", "delete", "alice"]);
    assert!(failed(&none, 3).contains("network not found: alice"), "{}", stderr(&none));
}
