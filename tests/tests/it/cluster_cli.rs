//! Clusters end to end: `basphere-server` with its simulated management cluster (reached over
//! loopback by the real Cluster API client), driven by the `basphere` CLI and the original's
//! command names. The address accounting is checked at each step; the server is killed in the
//! middle of a create and of a delete, and finishes both after a restart.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use serde_json::Value;
use tests::server::{binaries, expect, stderr, Server};

/// Instant simulated vSphere, and simulated clusters that take 0.2 s per condition.
const CONFIG: &str = "backend:\n  simulated_delays: none\nmanagement_cluster:\n  simulated_step_seconds: 0.2\n";

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"))
}

fn ips(server: &Server, token: &str) -> u64 {
    json(&expect(&server.cli_as(token, &["-o", "json", "quota"]), 0))["usage"]["ips"].as_u64().unwrap()
}

fn show(server: &Server, token: &str, name: &str) -> Value {
    json(&expect(&server.cli_as(token, &["-o", "json", "cluster", "show", name]), 0))
}

#[test]
fn clusters_are_created_watched_scaled_and_deleted_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(CONFIG));
    let token = server.account("alice", 1, false);
    let run = |args: &[&str]| server.cli_as(&token, args);

    let catalog = expect(&run(&["catalog"]), 0);
    assert!(catalog.contains("cluster type") && catalog.contains("standard"), "{catalog}");

    let created = json(&expect(&run(&["-o", "json", "cluster", "create", "dev1", "--type", "dev"]), 0));
    let vip = created["cluster"]["control_plane_ip"].as_str().unwrap().to_owned();
    assert_eq!(created["operation"]["kind"], "create_cluster");
    assert_eq!(ips(&server, &token), 1 + 3 + 2, "the VIP, three nodes and the surge, leased at once");

    // The watch a user sees: progress lines until ready, exit 0.
    let watched = expect(&run(&["cluster", "watch", "dev1"]), 0);
    assert!(watched.contains("Following cluster dev1") && watched.contains("The cluster is ready."), "{watched}");
    assert!(watched.contains("ready") && watched.contains("workers 2/2"), "{watched}");
    let shown = show(&server, &token, "dev1");
    assert_eq!(shown["state"], "ready");
    assert_eq!(shown["node_addresses"].as_array().unwrap().len(), 5);
    assert!(!shown["node_addresses"].as_array().unwrap().contains(&Value::String(vip.clone())));
    assert!(shown["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Available" && c["status"] == "True"));

    let path = dir.path().join("dev1.yaml");
    expect(&run(&["cluster", "kubeconfig", "dev1", "-f", path.to_str().unwrap()]), 0);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the kubeconfig is a credential");
    assert!(std::fs::read_to_string(&path).unwrap().contains(&format!("server: https://{vip}:6443")));

    // The roadmap's name, a chosen worker spec, and --wait.
    let prod =
        expect(&run(&["cluster", "create", "prod", "--type", "production", "--worker-spec", "small", "--wait"]), 0);
    assert!(prod.contains("The cluster is ready."), "{prod}");
    assert_eq!(show(&server, &token, "prod")["type"], "standard");
    assert_eq!(ips(&server, &token), 6 + (1 + 6 + 2));

    // Scale up and down; the addresses follow.
    expect(&run(&["cluster", "scale", "dev1", "--workers", "3", "--wait"]), 0);
    assert_eq!(ips(&server, &token), 16);
    let grown = show(&server, &token, "dev1");
    assert_eq!((grown["worker_count"].as_u64(), grown["node_addresses"].as_array().unwrap().len()), (Some(3), 6));
    expect(&run(&["cluster", "scale", "dev1", "--workers", "1", "--wait"]), 0);
    assert_eq!(ips(&server, &token), 14);

    // Over quota: refused with the quota exit code, nothing leased.
    let refused = run(&["cluster", "create", "huge", "--type", "standard", "--workers", "20"]);
    assert_eq!(refused.status.code(), Some(5), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("nodes_per_cluster"), "{}", stderr(&refused));
    assert_eq!(ips(&server, &token), 14);

    // Another user sees none of it.
    let bob = server.account("bob", 2, false);
    assert_eq!(server.cli_as(&bob, &["cluster", "show", "dev1"]).status.code(), Some(3));
    assert_eq!(server.cli_as(&bob, &["cluster", "kubeconfig", "dev1"]).status.code(), Some(3));

    let listed = expect(&run(&["cluster", "list"]), 0);
    assert!(listed.contains("dev1") && listed.contains("prod") && listed.contains(&vip), "{listed}");
    for name in ["dev1", "prod"] {
        expect(&run(&["cluster", "delete", name, "--yes", "--wait"]), 0);
    }
    assert_eq!(ips(&server, &token), 0, "every address freed once Cluster API removed everything");
    let left = json(&expect(&run(&["-o", "json", "cluster", "list"]), 0));
    assert!(left.as_array().unwrap().is_empty());
}

#[test]
fn a_crash_during_create_scale_or_delete_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), Some(CONFIG));
    let token = server.account("alice", 1, false);

    // Killed right after the create was accepted: the operation is resumed, the objects are
    // applied once, and the cluster becomes ready.
    expect(&server.cli_as(&token, &["cluster", "create", "dev1"]), 0);
    server.kill();
    server.restart();
    let watched = expect(&server.cli_as(&token, &["cluster", "watch", "dev1", "--timeout", "120"]), 0);
    assert!(watched.contains("The cluster is ready."), "{watched}");
    assert_eq!(ips(&server, &token), 6);

    // Killed right after a scale was accepted: it finishes after the restart, with the pool and
    // the leases of the new size.
    expect(&server.cli_as(&token, &["cluster", "scale", "dev1", "--workers", "4"]), 0);
    server.kill();
    server.restart();
    server.wait_idle();
    assert_eq!(ips(&server, &token), 1 + 5 + 2);
    // Ready is said as soon as the control plane and a worker are up; the new workers come after
    // it, so the watch is asked again (bounded) until all four are there.
    let mut watched = String::new();
    for _ in 0..20 {
        watched = expect(&server.cli_as(&token, &["cluster", "watch", "dev1", "--timeout", "120"]), 0);
        if watched.contains("workers 4/4") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(watched.contains("workers 4/4"), "{watched}");
    expect(&server.cli_as(&token, &["cluster", "scale", "dev1", "--workers", "2"]), 0);
    server.kill();
    server.restart();
    server.wait_idle();
    assert_eq!(ips(&server, &token), 1 + 3 + 2, "the spare addresses of the smaller pool are freed");

    // Killed in the middle of the deletion: it finishes after the restart, and frees everything.
    expect(&server.cli_as(&token, &["cluster", "delete", "dev1", "--yes"]), 0);
    server.kill();
    server.restart();
    server.wait_idle();
    assert_eq!(ips(&server, &token), 0);
    let shown = server.cli_as(&token, &["cluster", "show", "dev1"]);
    assert_eq!(shown.status.code(), Some(3), "gone");
    // The simulated management cluster kept its objects across the restarts and has none left.
    let journal = std::fs::read_to_string(server.data_dir.join("simulated-management-cluster.json")).unwrap();
    assert!(!journal.contains("\"dev1\""), "{journal}");
}

#[test]
fn the_original_cluster_commands_work_as_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(CONFIG));
    let token = server.account("alice", 1, false);
    let links = dir.path().join("bin");
    std::fs::create_dir_all(&links).unwrap();
    for name in
        ["create-cluster", "list-clusters", "watch-cluster", "get-kubeconfig", "delete-cluster", "list-resources"]
    {
        std::os::unix::fs::symlink(&binaries().cli, links.join(name)).unwrap();
    }
    let run = |name: &str, args: &[&str]| -> Output {
        std::process::Command::new(links.join(name))
            .args(args)
            .env("BASPHERE_SERVER", format!("http://{}", server.tcp))
            .env("BASPHERE_TOKEN", &token)
            .env("BASPHERE_CLI_CONFIG", "/nonexistent")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let missing = run("create-cluster", &["-n", "web"]);
    assert_eq!(missing.status.code(), Some(2), "no terminal to ask on");
    assert!(stderr(&missing).contains("-t TYPE"), "{}", stderr(&missing));
    let created = expect(&run("create-cluster", &["-n", "web", "-t", "development", "-w", "small"]), 0);
    assert!(
        created.contains("Cluster creation request completed") && created.contains("watch-cluster web"),
        "{created}"
    );
    let early = run("get-kubeconfig", &["web"]);
    if early.status.code() != Some(0) {
        assert!(stderr(&early).contains("watch-cluster web"), "{}", stderr(&early));
    }
    let watched = expect(&run("watch-cluster", &["web", "-w", "-i", "1"]), 0);
    assert!(watched.contains("The cluster is ready."), "{watched}");
    let once = expect(&run("watch-cluster", &["web"]), 0);
    assert!(once.contains("Cluster status: web") && once.contains("The cluster is ready!"), "{once}");
    let listed: Value = serde_json::from_str(&expect(&run("list-clusters", &["-j"]), 0)).unwrap();
    assert_eq!(listed[0]["worker_spec"], "small");
    let table = expect(&run("list-clusters", &[]), 0);
    assert!(table.contains("Total: 1 cluster(s)"), "{table}");
    let resources = expect(&run("list-resources", &[]), 0);
    assert!(resources.contains("0 VMs, 1 clusters"), "{resources}");
    let file = dir.path().join("web.yaml");
    let saved = expect(&run("get-kubeconfig", &["web", "-o", file.to_str().unwrap()]), 0);
    assert!(saved.contains("kubeconfig saved") && saved.contains("export KUBECONFIG="), "{saved}");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let asks = run("delete-cluster", &["web"]);
    assert_eq!(asks.status.code(), Some(2), "asks for -f when not on a terminal");
    let deleted = expect(&run("delete-cluster", &["web", "-f"]), 0);
    assert!(deleted.contains("Cluster deleted: web"), "{deleted}");
}
