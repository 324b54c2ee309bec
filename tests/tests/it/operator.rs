//! The operator's commands of `basphere-server`. `backup` while 50 creates run, and `restore`: the
//! backup is one consistent moment, the restored server finishes what the backup had in flight,
//! and reconciliation reports the VMs made after the backup instead of losing track of them.
//! `check-config`: one report of every part, naming what to fix.

use std::process::Command;
use std::sync::Arc;

use tests::server::{binaries, Server};

const ROOMY: &str = "quotas:\n  default:\n    max_vms: 100\n    max_ips: 100\n    max_vcpus: 1000\n    max_memory_mb: 10000000\n    max_disk_gb: 100000\n";

fn server_command(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(&binaries().server)
        .arg("--config")
        .arg(server.dir.join("config.yaml"))
        .arg("--data-dir")
        .arg(&server.data_dir)
        .arg("--socket")
        .arg(&server.socket)
        .args(args)
        .output()
        .unwrap()
}

fn printed_count(printed: &str, kind: &str) -> usize {
    let line = printed.lines().find(|line| line.trim_start().starts_with(kind)).unwrap_or_else(|| panic!("{printed}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn a_backup_taken_under_load_restores_to_a_consistent_state_that_reconciliation_squares() {
    let dir = tempfile::tempdir().unwrap();
    // Realistic simulated task times: creates are in flight while the backup is taken.
    let server = Arc::new(Server::start(dir.path(), Some(ROOMY)));
    let alice = Arc::new(server.account("alice", 1, false));
    // Five clients create ten VMs each; the backup is taken after the first five of each, while
    // those are being provisioned, and the second five wait for it.
    let halfway = Arc::new(std::sync::Barrier::new(6));
    let backed = Arc::new(std::sync::Barrier::new(6));
    let creating: Vec<_> = (0..5)
        .map(|t| {
            let (alice, server, halfway, backed) = (alice.clone(), server.clone(), halfway.clone(), backed.clone());
            std::thread::spawn(move || {
                for i in 0..10 {
                    if i == 5 {
                        halfway.wait();
                        backed.wait();
                    }
                    let body = format!(r#"{{"name":"vm-{t}-{i}","os":"ubuntu-24.04","spec":"tiny"}}"#);
                    let response = server.http("POST", "/api/v1/vms", Some(&alice), Some(&body));
                    assert_eq!(response.status, 202, "{}", response.body);
                }
            })
        })
        .collect();
    halfway.wait();
    let file = dir.path().join("backup.db");
    let backup = server_command(&server, &["backup", file.to_str().unwrap()]);
    backed.wait();
    let printed = String::from_utf8_lossy(&backup.stdout).to_string();
    assert!(backup.status.success(), "{printed}{}", String::from_utf8_lossy(&backup.stderr));
    for thread in creating {
        thread.join().unwrap();
    }
    let backed_up = printed_count(&printed, "vms");
    assert_eq!(backed_up, 25, "the backup holds what was committed before it: {printed}");
    assert_eq!(printed_count(&printed, "leases"), backed_up, "{printed}");
    // Taken under load: the backup holds creates still being provisioned, which the restored
    // server has to finish.
    let in_flight = {
        use basphere_core::StoreExt;
        let copy = basphere_store::SqliteStore::open(&file).unwrap();
        let filter = basphere_core::store::OperationFilter { unfinished: true, ..Default::default() };
        copy.query(|tx| tx.list_operations(&filter)).unwrap().len()
    };
    assert!(in_flight > 0, "no create was in flight at the backup");
    let mut server = Arc::try_unwrap(server).ok().expect("the creating threads are done");
    server.wait_idle();

    // Not while the server runs; then with it stopped.
    let refused = server_command(&server, &["restore", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("the server is running"), "{refused:?}");
    assert!(server.terminate().success());
    let restored = server_command(&server, &["restore", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&restored.stdout).to_string();
    assert!(restored.status.success(), "{said}{}", String::from_utf8_lossy(&restored.stderr));
    assert!(said.contains("is kept as"), "{said}");

    // The restored server finishes the backup's unfinished creates (adopting what vCenter has)
    // and reports, never deletes, the VMs made after the backup.
    server.restart();
    server.wait_idle();
    let vms = server.http("GET", "/api/v1/vms", Some(&alice), None).json();
    let vms = vms["items"].as_array().cloned().unwrap_or_else(|| vms.as_array().cloned().unwrap_or_default());
    assert_eq!(vms.len(), backed_up, "the backup's VMs, no more");
    assert!(vms.iter().all(|vm| vm["state"] == "running"), "{vms:?}");
    let quota = server.http("GET", "/api/v1/quota", Some(&alice), None).json();
    assert_eq!(quota["usage"]["ips"].as_u64(), Some(backed_up as u64), "one address per VM");
    let reconciled = server.unix("POST", "/api/v1/admin/reconcile", None).json();
    assert_eq!(reconciled["lost"].as_array().unwrap().len(), 0, "{reconciled}");
    assert_eq!(reconciled["strays"].as_array().unwrap().len(), 50 - backed_up, "{reconciled}");
}

#[test]
fn a_damaged_backup_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), Some(tests::server::FAST));
    server.account("alice", 1, false);
    assert!(server.terminate().success());
    let file = dir.path().join("not-a-backup.db");
    std::fs::write(&file, b"this is not a database").unwrap();
    let refused = server_command(&server, &["restore", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("not-a-backup.db"), "{said}");
    server.restart();
    assert_eq!(server.unix("GET", "/api/v1/admin/users/alice", None).status, 200, "the database is untouched");
}

fn check_config(dir: &std::path::Path, config: Option<&str>) -> (i32, String) {
    let mut command = Command::new(&binaries().server);
    command.arg("--data-dir").arg(dir.join("data"));
    if let Some(config) = config {
        std::fs::write(dir.join("check.yaml"), config).unwrap();
        command.arg("--config").arg(dir.join("check.yaml"));
    }
    let output = command.arg("check-config").output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).to_string())
}

#[test]
fn check_config_reports_every_part_and_names_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (code, report) = check_config(dir.path(), None);
    assert_eq!(code, 0, "{report}");
    for part in [
        "ok   configuration",
        "ok   store: SQLite",
        "ok   vm backend: simulated: ready",
        "ok   cluster backend",
        "ok   notifications",
        "ok   recaptcha: off",
        "ok   networks: flat",
    ] {
        assert!(report.contains(part), "{part}: {report}");
    }
    assert!(!dir.path().join("data").exists(), "a check changes nothing: no data directory made");

    // Everything wrong at once: each named, the exit code says so.
    let open = dir.path().join("vsphere.env");
    std::fs::write(&open, "VSPHERE_USER=u\nVSPHERE_PASSWORD=p\n").unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let config = format!(
        "store:\n  url: postgresql://basphere@/nowhere?host=/nonexistent\nbackend:\n  vm: vsphere-api\nvsphere:\n  server: 127.0.0.1:9\n  credentials_file: {}\nrecaptcha:\n  enabled: false\n",
        open.display()
    );
    let (code, report) = check_config(dir.path(), Some(&config));
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("FAIL store: store.url"), "{report}");
    assert!(report.contains("FAIL vm backend") && report.contains("vsphere.env"), "{report}");
    assert!(report.contains("ok   network"), "the rest is still checked: {report}");

    // A database password file others can read is refused, naming the key and the fix.
    let password = dir.path().join("db-password");
    std::fs::write(&password, "secret\n").unwrap();
    std::fs::set_permissions(&password, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let config = format!(
        "store:\n  url: postgresql://basphere@/nowhere?host=/nonexistent\n  password_file: {}\nrecaptcha:\n  enabled: false\n",
        password.display()
    );
    let (code, report) = check_config(dir.path(), Some(&config));
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("FAIL store: store.password_file") && report.contains("chmod 600"), "{report}");

    let (code, report) = check_config(dir.path(), Some("server:\n  prot: 80\n"));
    assert_eq!(code, 1);
    assert!(report.contains("FAIL configuration") && report.contains("prot"), "{report}");

    // Tenant networks: the section is checked key by key, and the router is asked whether it
    // can make routers: this host has no WAN bridge, and the report names the key.
    let tenant = "recaptcha: {enabled: false}\nnetworks:\n  mode: tenant\n  vlan_range: 2001-2999\n  distributed_switch: dvs\n  wan_port_group: wan\n  wan: {cidr: 192.0.2.0/24}\n";
    let (code, report) = check_config(dir.path(), Some(tenant));
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains("FAIL networks") && report.contains("br-wan") && report.contains("networks.linux.wan_bridge"),
        "{report}"
    );
    let (code, report) =
        check_config(dir.path(), Some("recaptcha: {enabled: false}\nnetworks: {mode: tenant, vlan_range: 7-7}\n"));
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("FAIL configuration") && report.contains("networks.vlan_range"), "{report}");
    let bad_router = format!("{tenant}  linux: {{wan_bridge: a-bridge-name-too-long}}\n");
    let (code, report) = check_config(dir.path(), Some(&bad_router));
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("FAIL networks") && report.contains("networks.linux.wan_bridge"), "{report}");
}

/// A certificate authority and a server certificate for localhost and 127.0.0.1 signed by it,
/// made with openssl in `dir` (`ca.crt`, `server.crt`, `server.key`).
fn certificates(dir: &std::path::Path, serial: &str) {
    let openssl = |args: &[&str]| {
        let output =
            Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (apt-get install openssl)");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    if !dir.join("ca.crt").exists() {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Basphere test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    }
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key.new",
        "-out",
        "server.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        serial,
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt.new",
    ]);
    std::fs::rename(dir.join("server.key.new"), dir.join("server.key")).unwrap();
    std::fs::rename(dir.join("server.crt.new"), dir.join("server.crt")).unwrap();
}

/// GET /healthz over HTTPS with Python's ssl module (a client of its own); the status and the
/// serial number of the certificate the server showed, or the client's error.
fn https_get(port: &str, ca: Option<&std::path::Path>) -> Result<(String, String), String> {
    let script = "import ssl, http.client, sys\n\
        ca = sys.argv[2] if len(sys.argv) > 2 else None\n\
        context = ssl.create_default_context(cafile=ca)\n\
        c = http.client.HTTPSConnection('localhost', int(sys.argv[1]), context=context, timeout=10)\n\
        c.request('GET', '/healthz')\n\
        r = c.getresponse()\n\
        print(r.status, c.sock.getpeercert()['serialNumber'])\n";
    let mut command = Command::new("python3");
    command.arg("-c").arg(script).arg(port);
    if let Some(ca) = ca {
        command.arg(ca);
    }
    let output = command.output().unwrap();
    if output.status.success() {
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let (status, serial) = text.split_once(' ').unwrap();
        Ok((status.to_owned(), serial.to_owned()))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).to_string())
    }
}

#[test]
fn https_serves_the_configured_certificate_and_sighup_reloads_it() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path(), "0x1001");
    let config = format!(
        "{}server:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
        tests::server::FAST,
        dir.path().join("server.crt").display(),
        dir.path().join("server.key").display()
    );
    let server = Server::start(dir.path(), Some(&config));
    let port = server.tcp.rsplit(':').next().unwrap().to_owned();
    let ca = dir.path().join("ca.crt");
    assert_eq!(https_get(&port, Some(&ca)).unwrap(), ("200".into(), "1001".into()));
    let refused = https_get(&port, None).unwrap_err();
    assert!(refused.contains("CERTIFICATE_VERIFY_FAILED"), "an unknown authority is refused: {refused}");
    // Plain HTTP on the TLS port gets no answer it could take for one.
    let plain = std::panic::catch_unwind(|| server.http("GET", "/healthz", None, None).status);
    assert!(!matches!(plain, Ok(200)), "plain HTTP is not served on the TLS port");

    // The CLI verifies the server against --ca-file (or a context's ca_file), and says what to
    // do when it cannot.
    let alice = server.account("alice", 1, false);
    let cli = |ca: Option<&std::path::Path>| {
        let mut command = Command::new(&binaries().cli);
        tests::server::cli_env(&mut command);
        command.args(["--server", &format!("https://localhost:{port}"), "--token", &alice, "-o", "json", "quota"]);
        if let Some(ca) = ca {
            command.arg("--ca-file").arg(ca);
        }
        command.output().unwrap()
    };
    let quota = cli(Some(&ca));
    assert!(quota.status.success(), "{}", String::from_utf8_lossy(&quota.stderr));
    assert!(String::from_utf8_lossy(&quota.stdout).contains("\"usage\""));
    let untrusted = cli(None);
    assert_eq!(untrusted.status.code(), Some(7), "unreachable: {untrusted:?}");
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("--ca-file"), "{untrusted:?}");

    // A new certificate, then SIGHUP: new connections see it.
    certificates(dir.path(), "0x1002");
    let hup = |pid: u32| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGHUP).unwrap()
    };
    hup(server.pid());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while https_get(&port, Some(&ca)).unwrap().1 != "1002" {
        assert!(std::time::Instant::now() < deadline, "the new certificate was not served");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A broken key: the reload fails, says so, and the previous pair stays.
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    hup(server.pid());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(https_get(&port, Some(&ca)).unwrap(), ("200".into(), "1002".into()));
    assert!(server.log().contains("the previous certificate stays"), "{}", server.log());
}

/// `import-original` through the binary into a running server's store: the dry run's report, the
/// real run, a second run that changes nothing, the configuration written from the original's
/// files; then alice, by her imported uid, sees her imported VMs through the CLI.
#[test]
fn import_original_reports_imports_once_and_the_running_server_serves_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Some(""));
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../basphere-import/tests/fixtures/broken");
    let fixture = fixture.to_str().unwrap();

    let dry = server_command(&server, &["import-original", "--dry-run", fixture]);
    let printed = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(dry.status.success(), "{printed}{}", String::from_utf8_lossy(&dry.stderr));
    assert!(printed.contains("(dry run: nothing written)") && printed.contains("Would create:"), "{printed}");
    assert!(
        printed.contains("Faults in the source (11)") && printed.contains("two leases for one address"),
        "{printed}"
    );
    let before = server.unix("GET", "/api/v1/admin/users", None).json();
    assert!(!before.to_string().contains("alice"), "a dry run writes nothing: {before}");

    let config_file = dir.path().join("from-original.yaml");
    let real = server_command(&server, &["import-original", fixture, "--write-config", config_file.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&real.stdout).into_owned();
    assert!(real.status.success(), "{printed}{}", String::from_utf8_lossy(&real.stderr));
    assert!(printed.contains("Created:") && printed.contains("reconcile --now"), "{printed}");
    let written = std::fs::read_to_string(&config_file).unwrap();
    assert!(written.contains("cidr: 10.254.0.0/21") && written.contains("allowed_email_domains"), "{written}");

    let again = server_command(&server, &["import-original", fixture]);
    let printed = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.status.success() && printed.contains("Nothing to do"), "{printed}");
    let refused =
        server_command(&server, &["import-original", fixture, "--write-config", config_file.to_str().unwrap()]);
    assert!(!refused.status.success(), "an existing configuration file is never replaced");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("an existing file is never replaced"));

    // The running server serves what was imported.
    let users = server.unix("GET", "/api/v1/admin/users", None).json().to_string();
    assert!(users.contains("\"alice\"") && users.contains("\"bob\"") && !users.contains("\"dave\""), "{users}");
    let listed = if tests::server::can_switch_uid() {
        tests::server::expect(&server.cli_uid(1001, &["-o", "json", "vm", "list"]), 0)
    } else {
        basphere_core::testing::skip_unless_ci(
            "not root: alice lists her VMs with a token over HTTP, not as her imported uid 1001 over the socket",
        );
        let token = server.token("alice", "user");
        tests::server::expect(&server.cli_as(&token, &["-o", "json", "vm", "list"]), 0)
    };
    for vm in ["web", "db", "cache", "api", "big"] {
        assert!(
            listed.contains(&format!("\"name\":\"{vm}\"")) || listed.contains(&format!("\"name\": \"{vm}\"")),
            "{vm}: {listed}"
        );
    }
    assert!(!listed.contains("\"ci\""), "bob's VM is not alice's: {listed}");
}
