//! The real binaries end to end: `basphere-server` in a temporary directory, driven by the
//! `basphere` CLI (every command, the original's aliases, every output format) and plain HTTP.

use serde_json::Value;
use tests::server::{binaries, can_switch_uid, expect, stderr, Server, FAST};

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"))
}

#[test]
fn the_cli_drives_every_command_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(FAST));

    // Health, readiness, metrics and the OpenAPI document are public.
    assert_eq!(server.http("GET", "/healthz", None, None).status, 200);
    assert_eq!(server.http("GET", "/readyz", None, None).json()["store"], "ok");
    let openapi = server.http("GET", "/api/v1/openapi.json", None, None).json();
    assert!(openapi["paths"]["/api/v1/vms"]["post"].is_object(), "the document describes the routes");

    // The operator over the socket is the administrator.
    let who = json(&expect(&server.cli(&["-o", "json", "whoami"]), 0));
    assert_eq!((who["role"].as_str(), who["account"].is_null()), (Some("admin"), true));
    let key = basphere_core::testing::ssh_key(1);
    let added = server.cli(&[
        "-o",
        "json",
        "admin",
        "user",
        "add",
        "alice",
        "--email",
        "alice@example.com",
        "--key",
        key.as_str(),
        "--team",
        "payments",
        "--uid",
        "61001",
    ]);
    assert_eq!(json(&expect(&added, 0))["username"], "alice");
    let token = json(&expect(&server.cli(&["-o", "json", "admin", "token", "create", "--user", "alice"]), 0))["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let table = expect(&server.cli(&["admin", "user", "list"]), 0);
    assert!(table.contains("alice") && table.contains("payments"), "{table}");
    let yaml = expect(&server.cli(&["-o", "yaml", "admin", "user", "show", "alice"]), 0);
    assert!(yaml.contains("username: alice"), "{yaml}");

    // On the bastion alice is her uid, over the socket (as root, the tests can be any uid).
    if can_switch_uid() {
        let who = json(&expect(&server.cli_uid(61001, &["-o", "json", "whoami"]), 0));
        assert_eq!((who["name"].as_str(), who["role"].as_str()), (Some("alice"), Some("user")), "{who}");
        vm_journey(&server, Alice::Uid(61001));
    } else {
        basphere_core::testing::skip_unless_ci(
            "not root (the CLI runs as other uids as root): the journey goes over HTTP with a token \
             instead of the socket as uid 61001",
        );
        vm_journey(&server, Alice::Token(&token));
    }

    // Tokens.
    let own = json(&expect(
        &server.cli_as(&token, &["-o", "json", "token", "create", "laptop", "--expires-in-days", "30"]),
        0,
    ));
    let laptop = own["secret"].as_str().unwrap().to_owned();
    let tokens = json(&expect(&server.cli_as(&laptop, &["-o", "json", "token", "list"]), 0));
    assert_eq!(tokens.as_array().unwrap().len(), 2);
    assert!(!tokens.to_string().contains(&laptop), "secrets are never listed");
    let id = own["token"]["id"].as_str().unwrap();
    expect(&server.cli_as(&token, &["token", "revoke", id]), 0);
    assert_eq!(server.cli_as(&laptop, &["vm", "list"]).status.code(), Some(8), "a revoked token is refused");

    // Admin views and quota overrides.
    let all = json(&expect(&server.cli(&["-o", "json", "admin", "vm", "list"]), 0));
    assert_eq!(all.as_array().unwrap().len(), 3);
    let set = json(&expect(&server.cli(&["-o", "json", "admin", "quota", "set", "alice", "--vms", "4"]), 0));
    assert_eq!(set["limits"]["vms"], 4);
    let over =
        server.cli_as(&token, &["vm", "create", "two", "--os", "ubuntu-24.04", "--spec", "small", "--count", "2"]);
    assert_eq!(over.status.code(), Some(5), "quota exceeded: {}", stderr(&over));
    assert!(stderr(&over).contains("quota exceeded"));
    expect(&server.cli(&["admin", "quota", "reset", "alice"]), 0);
    let ops = expect(&server.cli(&["admin", "ops", "--owner", "alice"]), 0);
    assert!(ops.contains("delete_vm"), "{ops}");
    let audit = expect(&server.cli(&["admin", "audit", "--jsonl"]), 0);
    let lines: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).expect("JSON lines")).collect();
    assert!(lines.iter().any(|e| e["action"] == "vm.create" && e["actor"] == "alice"));
    assert!(lines.iter().any(|e| e["action"] == "quota.set"));
    expect(&server.cli(&["-y", "admin", "vm", "delete", "alice", "web-3", "--wait"]), 0);
    let reconciled = json(&expect(&server.cli(&["-o", "json", "admin", "reconcile", "--now"]), 0));
    assert!(reconciled["at"].is_string() && reconciled["lost"].as_array().unwrap().is_empty(), "{reconciled}");
    assert!(expect(&server.cli(&["admin", "reconcile"]), 0).contains("reconciled at"));

    // The outbox: every VM made was announced; only dead notifications are retried.
    let outbox = json(&expect(&server.cli(&["-o", "json", "admin", "outbox", "--state", "delivered"]), 0));
    let ready: Vec<&Value> = outbox.as_array().unwrap().iter().filter(|m| m["event"] == "vm_ready").collect();
    assert!(ready.len() >= 3, "{outbox}");
    let table = expect(&server.cli(&["admin", "outbox"]), 0);
    assert!(table.starts_with("ID") && table.contains("vm_ready") && table.contains("delivered"), "{table}");
    let id = ready[0]["id"].as_str().unwrap();
    let again = server.cli(&["admin", "outbox", "retry", id]);
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    assert!(stderr(&again).contains("only dead notifications are retried"), "{}", stderr(&again));
    let state = server.cli(&["admin", "outbox", "--state", "lost"]);
    assert_eq!(state.status.code(), Some(2), "{}", stderr(&state));
    assert!(stderr(&state).contains("pending, delivered, dead"), "{}", stderr(&state));
    let someone = server.cli_as(&token, &["admin", "outbox"]);
    assert_eq!(someone.status.code(), Some(8), "the outbox is for administrators: {}", stderr(&someone));

    // Exit codes.
    assert_eq!(server.cli_as(&token, &["vm", "show", "nope"]).status.code(), Some(3));
    assert_eq!(
        server.cli_as(&token, &["vm", "create", "web-1", "--os", "ubuntu-24.04", "--spec", "small"]).status.code(),
        Some(4)
    );
    assert_eq!(
        server.cli_as(&token, &["vm", "create", "x", "--os", "windows", "--spec", "small"]).status.code(),
        Some(2)
    );
    assert_eq!(server.cli(&["vm", "list"]).status.code(), Some(8), "the system administrator owns no VMs");
    let unreachable = std::process::Command::new(&binaries().cli)
        .args(["--socket", "/nonexistent/basphere.sock", "vm", "list"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(7));
    assert!(stderr(&unreachable).contains("cannot reach"), "{}", stderr(&unreachable));
    let usage = std::process::Command::new(&binaries().cli).args(["vm", "create"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));

    // Completion scripts.
    for shell in ["bash", "zsh", "fish"] {
        let script =
            expect(&std::process::Command::new(&binaries().cli).args(["completion", shell]).output().unwrap(), 0);
        assert!(script.contains("basphere") && script.len() > 500, "{shell}");
    }
}

/// How alice runs the CLI: over HTTP with her token, or on the bastion as her own uid over the
/// socket.
#[derive(Clone, Copy, Debug)]
enum Alice<'a> {
    Token(&'a str),
    Uid(u32),
}

impl Alice<'_> {
    fn run(self, server: &Server, args: &[&str]) -> std::process::Output {
        match self {
            Alice::Token(token) => server.cli_as(token, args),
            Alice::Uid(uid) => server.cli_uid(uid, args),
        }
    }
}

/// The VM journey of one developer, through the CLI: catalog, create three and wait, list, show,
/// quota, stop/start/reboot, create without waiting and follow the operation, delete. Leaves
/// web-1, web-2 and web-3.
fn vm_journey(server: &Server, alice: Alice<'_>) {
    let catalog = json(&expect(&alice.run(server, &["-o", "json", "catalog"]), 0));
    assert_eq!(catalog["os"].as_array().unwrap().len(), 2);
    let created = alice.run(
        server,
        &["-o", "json", "vm", "create", "web", "--os", "ubuntu-24.04", "--spec", "small", "--count", "3", "--wait"],
    );
    let finished = json(&expect(&created, 0));
    assert_eq!(finished.as_array().unwrap().len(), 3);
    assert!(finished.as_array().unwrap().iter().all(|op| op["state"] == "succeeded"));

    let listed = json(&expect(&alice.run(server, &["-o", "json", "vm", "list"]), 0));
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|vm| vm["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web-1", "web-2", "web-3"]);
    assert_eq!(listed[0]["ip"], "10.254.0.32");
    let table = expect(&alice.run(server, &["vm", "list", "--all"]), 0);
    assert!(table.starts_with("NAME") && table.contains("10.254.0.33") && table.contains("CREATED"), "{table}");
    let yaml = expect(&alice.run(server, &["-o", "yaml", "vm", "show", "web-1"]), 0);
    assert!(yaml.contains("state: running"), "{yaml}");
    let quota = json(&expect(&alice.run(server, &["-o", "json", "quota"]), 0));
    assert_eq!((quota["usage"]["vms"].as_u64(), quota["limits"]["vms"].as_u64()), (Some(3), Some(10)));
    assert!(expect(&alice.run(server, &["quota"]), 0).contains("3/10"));

    let stopped = json(&expect(&alice.run(server, &["-o", "json", "vm", "stop", "web-1", "--wait"]), 0));
    assert_eq!(stopped[0]["state"], "succeeded");
    assert_eq!(json(&expect(&alice.run(server, &["-o", "json", "vm", "show", "web-1"]), 0))["state"], "stopped");
    expect(&alice.run(server, &["vm", "start", "web-1", "--wait"]), 0);
    expect(&alice.run(server, &["vm", "reboot", "web-1", "--wait"]), 0);

    // Without --wait: an operation to follow with `op wait` / `op show`.
    let accepted = json(&expect(
        &alice.run(server, &["-o", "json", "vm", "create", "db", "--os", "rocky-10.1", "--spec", "tiny"]),
        0,
    ));
    let op = accepted["operations"][0]["id"].as_str().unwrap().to_owned();
    expect(&alice.run(server, &["op", "wait", &op]), 0);
    let shown = json(&expect(&alice.run(server, &["-o", "json", "op", "show", &op]), 0));
    assert_eq!(shown["state"], "succeeded");
    assert!(expect(&alice.run(server, &["op", "list"]), 0).contains("create_vm"));

    // Deleting asks first; without a terminal it needs --yes.
    let refused = alice.run(server, &["vm", "delete", "db"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--yes"));
    expect(&alice.run(server, &["vm", "delete", "db", "--yes", "--wait"]), 0);
}

/// The same journey on the vSphere API backend against the vCenter simulator, then what the
/// reconciler makes of a VM deleted behind Basphere's back.
#[test]
fn the_vm_journey_on_the_vsphere_api_backend() {
    let dir = tempfile::tempdir().unwrap();
    let vcsim = tests::vcsim::start();
    let server = Server::start(dir.path(), Some(&tests::vcsim::server_config(&vcsim, dir.path())));
    let ready = server.http("GET", "/readyz", None, None);
    assert_eq!((ready.status, ready.json()["vm_backend"].as_str()), (200, Some("vsphere-api")), "{}", ready.json());
    let token = server.account("alice", 1, false);
    vm_journey(&server, Alice::Token(&token));

    // vCenter holds exactly the three VMs Basphere lists, marked with their ids, powered on.
    let listed = json(&expect(&server.cli_as(&token, &["-o", "json", "vm", "list"]), 0));
    let listed: std::collections::BTreeMap<String, String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| (vm["id"].as_str().unwrap().to_owned(), vm["name"].as_str().unwrap().to_owned()))
        .collect();
    let vsphere = tests::vcsim::provisioner(&vcsim);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let inventory = runtime.block_on(basphere_core::Provisioner::inventory(&vsphere)).unwrap();
    let found: std::collections::BTreeMap<String, String> = inventory
        .iter()
        .map(|vm| {
            (vm.basphere_id.expect("marked").to_string(), vm.vsphere_name.trim_start_matches("alice-").to_owned())
        })
        .collect();
    assert_eq!(found, listed);
    assert!(inventory
        .iter()
        .all(|vm| vm.folder == "basphere-vms/alice" && vm.power == basphere_core::provisioner::PowerState::On));

    // An admin deletes web-2 in vCenter; the reconciler marks it lost and frees nothing silently.
    let web2 = inventory.iter().find(|vm| vm.vsphere_name == "alice-web-2").unwrap();
    let gone = basphere_core::provisioner::VmRef {
        id: web2.basphere_id.unwrap(),
        owner: "alice".parse().unwrap(),
        vsphere_name: web2.vsphere_name.clone(),
        backend_id: None,
    };
    runtime.block_on(basphere_core::Provisioner::destroy_vm(&vsphere, &gone)).unwrap();
    let reconciled = json(&expect(&server.cli(&["-o", "json", "admin", "reconcile", "--now"]), 0));
    assert_eq!(reconciled["lost"].as_array().unwrap().len(), 1, "{reconciled}");
    let shown = json(&expect(&server.cli_as(&token, &["-o", "json", "vm", "show", "web-2"]), 0));
    assert_eq!(shown["state"], "lost");
    expect(&server.cli_as(&token, &["vm", "delete", "web-1", "--yes", "--wait"]), 0);
    let left = runtime.block_on(basphere_core::Provisioner::inventory(&vsphere)).unwrap();
    assert_eq!(left.iter().map(|vm| vm.vsphere_name.as_str()).collect::<Vec<_>>(), ["alice-web-3"]);
}

#[test]
fn the_original_command_names_work_as_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(FAST));
    let token = server.account("alice", 1, false);
    let links = dir.path().join("bin");
    std::fs::create_dir_all(&links).unwrap();
    for name in ["create-vm", "list-vms", "delete-vm", "show-quota", "list-resources"] {
        std::os::unix::fs::symlink(&binaries().cli, links.join(name)).unwrap();
    }
    let run = |name: &str, args: &[&str]| {
        std::process::Command::new(links.join(name))
            .args(args)
            .env("BASPHERE_SERVER", format!("http://{}", server.tcp))
            .env("BASPHERE_TOKEN", &token)
            .env("BASPHERE_CLI_CONFIG", "/nonexistent")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };

    let created = expect(&run("create-vm", &["-n", "web", "-o", "ubuntu-24.04", "-s", "small", "-c", "2"]), 0);
    assert!(created.contains("Created: 2 / 2") && created.contains("web-1: 10.254.0.32 (running)"), "{created}");
    assert!(created.contains("ssh alice@"), "the login is the owner, not ubuntu: {created}");
    let missing = run("create-vm", &["-n", "web"]);
    assert_eq!(missing.status.code(), Some(2), "no terminal to ask on");
    assert!(stderr(&missing).contains("-o OS, -s SPEC"), "{}", stderr(&missing));

    let table = expect(&run("list-vms", &["-a"]), 0);
    assert!(
        table.contains("=== VM list (alice) ===") && table.contains("Total 2 VMs") && table.contains("Quota: 2 / 10"),
        "{table}"
    );
    let listed: Value = serde_json::from_str(&expect(&run("list-vms", &["-j"]), 0)).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "list-vms -j is an array of VMs");

    let quota = expect(&run("show-quota", &[]), 0);
    assert!(quota.contains("=== Quota (alice) ===") && quota.contains("2/10"), "{quota}");
    let quota: Value = serde_json::from_str(&expect(&run("show-quota", &["-j"]), 0)).unwrap();
    assert_eq!(quota["usage"]["ips"], 2);

    let resources: Value = serde_json::from_str(&expect(&run("list-resources", &["-j"]), 0)).unwrap();
    assert_eq!((resources["vms"].as_array().unwrap().len(), resources["clusters"].as_array().unwrap().len()), (2, 0));
    assert!(expect(&run("list-resources", &[]), 0).contains("Total resources: 2 VMs, 0 clusters"));

    let unconfirmed = run("delete-vm", &["web-1"]);
    assert_eq!(unconfirmed.status.code(), Some(2));
    assert!(expect(&run("delete-vm", &["web-1", "-f"]), 0).contains("VM deleted: web-1"));
    assert_eq!(run("delete-vm", &["web-1", "-f"]).status.code(), Some(3));
    let help = expect(&run("create-vm", &["--help"]), 0);
    assert!(help.contains("--name") && help.contains("--count"), "{help}");
}

#[test]
fn contexts_in_the_cli_configuration_choose_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(FAST));
    let token = server.account("alice", 1, false);
    let token_file = dir.path().join("alice.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = dir.path().join("cli.yaml");
    std::fs::write(
        &config,
        format!(
            "current: remote\ncontexts:\n  remote:\n    server: http://{}\n    token_file: {}\n  local:\n    socket: {}\n",
            server.tcp,
            token_file.display(),
            server.socket.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(&binaries().cli)
            .args(args)
            .env("BASPHERE_CLI_CONFIG", &config)
            .env_remove("BASPHERE_SERVER")
            .env_remove("BASPHERE_TOKEN")
            .env_remove("BASPHERE_SOCKET")
            .env_remove("BASPHERE_CONTEXT")
            .output()
            .unwrap()
    };
    let remote = json(&expect(&run(&["-o", "json", "whoami"]), 0));
    assert_eq!(remote["name"], "alice", "the current context: the server with alice's token");
    assert!(remote["source"].as_str().unwrap().starts_with("tcp:"));
    let local = json(&expect(&run(&["--context", "local", "-o", "json", "whoami"]), 0));
    assert_eq!(
        (local["role"].as_str(), local["source"].as_str().map(|s| s.starts_with("unix:"))),
        (Some("admin"), Some(true))
    );
    let unknown = run(&["--context", "nowhere", "whoami"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("known: local, remote"), "{}", stderr(&unknown));
    // Variables set to nothing are unset, not flags without a value.
    let empty = std::process::Command::new(&binaries().cli)
        .args(["-o", "json", "whoami"])
        .env("BASPHERE_CLI_CONFIG", &config)
        .env("BASPHERE_SOCKET", "")
        .env("BASPHERE_SERVER", "")
        .env("BASPHERE_TOKEN", "")
        .env("BASPHERE_CONTEXT", "")
        .output()
        .unwrap();
    assert_eq!(json(&expect(&empty, 0))["name"], "alice", "the current context, as if nothing were set");
}

#[test]
fn create_vm_asks_for_what_is_missing_on_a_terminal() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        basphere_core::testing::skip_unless_ci(
            "`script` (util-linux) is needed to give the CLI a terminal: apt-get install bsdutils",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(FAST));
    let token = server.account("alice", 1, false);
    let link = dir.path().join("create-vm");
    std::os::unix::fs::symlink(&binaries().cli, &link).unwrap();
    // `script` runs the command on a pseudo-terminal and feeds it our answers:
    // name, OS menu item 1, spec menu item 2, count 2, confirm.
    let mut child = std::process::Command::new("script")
        .args(["-qec", &link.display().to_string(), "/dev/null"])
        .env("BASPHERE_SERVER", format!("http://{}", server.tcp))
        .env("BASPHERE_TOKEN", &token)
        .env("BASPHERE_CLI_CONFIG", "/nonexistent")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"web\n1\n2\n2\ny\n").unwrap();
    let output = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    for shown in [
        "? VM name:",
        "? Select OS",
        "[1] rocky-10.1",
        "? Select spec",
        "[1] tiny",
        "? Number of VMs to create [1]:",
        "? Create the VM(s)? [Y/n]",
        "Created: 2 / 2",
    ] {
        assert!(screen.contains(shown), "missing {shown:?} in:\n{screen}");
    }
    let vms = server.http("GET", "/api/v1/vms", Some(&token), None).json();
    let made: Vec<(&str, &str, &str)> = vms["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| (vm["name"].as_str().unwrap(), vm["os"].as_str().unwrap(), vm["spec"].as_str().unwrap()))
        .collect();
    assert_eq!(made, [("web-1", "rocky-10.1", "small"), ("web-2", "rocky-10.1", "small")]);
}

/// Purging on a terminal asks twice: yes/no, then the account's name; a wrong name purges nothing.
#[test]
fn purge_on_a_terminal_needs_the_name_typed() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        basphere_core::testing::skip_unless_ci("`script` (util-linux) is needed: apt-get install bsdutils");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(FAST));
    server.account("alice", 1, false);
    let purge = |answers: &[u8]| {
        let command =
            format!("{} --socket {} admin user purge alice --wait", binaries().cli.display(), server.socket.display());
        let mut child = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("BASPHERE_CLI_CONFIG", "/nonexistent")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), answers).unwrap();
        let output = child.wait_with_output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (code, screen) = purge(b"y\nbob\n");
    assert!(screen.contains("Type the username 'alice' to confirm"), "{screen}");
    assert_eq!(code, Some(2), "a wrong name: {screen}");
    assert!(screen.contains("nothing was purged"), "{screen}");
    assert_eq!(json(&expect(&server.cli(&["-o", "json", "admin", "user", "show", "alice"]), 0))["status"], "active");
    let (code, screen) = purge(b"y\nalice\n");
    assert_eq!(code, Some(0), "{screen}");
    assert_eq!(server.cli(&["admin", "user", "show", "alice"]).status.code(), Some(3), "alice is gone");
}

/// A reader that stops early (`list-vms | head -1`) closes the pipe: the CLI ends as the shell's
/// tools do, with the status of SIGPIPE and no panic. The read end is closed before the CLI
/// starts, so its first write fails.
#[test]
fn a_closed_output_pipe_ends_the_cli_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = std::process::Command::new(&binaries().cli)
        .arg("original-names")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The names the Debian package links to the CLI: each is one the CLI answers to.
    let names = expect(&std::process::Command::new(&binaries().cli).arg("original-names").output().unwrap(), 0);
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names.len(), 11, "{names:?}");
    assert!(names.contains(&"create-vm") && names.contains(&"basphere-admin"), "{names:?}");
}
