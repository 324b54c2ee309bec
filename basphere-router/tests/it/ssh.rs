//! The router host over SSH: a real sshd on loopback (its own port, host key, authorized_keys and
//! configuration in a temporary directory, stopped on drop) whose one key has the built
//! `basphere-router-helper` as forced command, with the helper's file pointing at a [`Lab`]'s
//! host namespace and WAN bridge. The conformance suite through [`SshRouter`], the namespaces
//! seen on the host side, and what a client cannot do: choose the command, send a bad request,
//! log in with another key, talk to another host key.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use basphere_core::error::Error;
use basphere_core::router::TenantRouter;
use basphere_core::testing::{self, router::spec};
use basphere_router::wire::Response;
use basphere_router::{SshRouter, SshRouterSettings};

use crate::lab::{self, Lab};

const SSHD: &str = "/usr/sbin/sshd";

/// The helper as cargo built it for these tests.
const HELPER: &str = env!("CARGO_BIN_EXE_basphere-router-helper");

/// Whether this machine can run the tests: the lab's needs, sshd, ssh and ssh-keygen.
fn can_run() -> bool {
    let missing = lab::missing().or_else(|| {
        if !Path::new(SSHD).exists() {
            return Some(format!("the router host tests need {SSHD} (openssh-server)"));
        }
        ["ssh", "ssh-keygen", "timeout"]
            .into_iter()
            .find(|tool| !lab::succeeds(&["sh", "-c", &format!("command -v {tool}")]))
            .map(|tool| format!("the router host tests need `{tool}` (openssh-client, coreutils)"))
    });
    match missing {
        Some(missing) => {
            testing::skip_unless_ci(&missing);
            false
        }
        None => true,
    }
}

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// A new ed25519 key pair at `path` (and `path.pub`), mode 0600.
fn keygen(path: &Path, comment: &str) {
    lab::run(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path.to_str().expect("a path")]);
}

fn public_key(path: &Path) -> String {
    std::fs::read_to_string(path.with_extension("pub")).expect("the public key").trim().to_owned()
}

/// The router host: sshd on 127.0.0.1 with the helper as the forced command of the client key.
struct RouterHost {
    dir: tempfile::TempDir,
    port: u16,
    sshd: Child,
}

impl RouterHost {
    fn start(lab: &Lab) -> RouterHost {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = |name: &str| dir.path().join(name);
        keygen(&path("host_key"), "router-host");
        keygen(&path("client_key"), "basphere-server");
        keygen(&path("other_key"), "someone-else");
        std::fs::write(
            path("router.yaml"),
            format!(
                "networks:\n  linux:\n    namespace_prefix: {}r-\n    host_namespace: {}\n    wan_bridge: wan\n    timeout_seconds: 20\n",
                lab.prefix, lab.host
            ),
        )
        .expect("the helper's file");
        std::fs::write(
            path("authorized_keys"),
            format!(
                "command=\"{HELPER} --config {}\",restrict {}\n",
                path("router.yaml").display(),
                public_key(&path("client_key"))
            ),
        )
        .expect("authorized_keys");
        let port = free_port();
        std::fs::write(
            path("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                 PermitRootLogin forced-commands-only\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowUsers root\nLogLevel VERBOSE\n",
                path("host_key").display(),
                path("authorized_keys").display(),
                path("sshd.pid").display()
            ),
        )
        .expect("sshd_config");
        std::fs::write(path("known_hosts"), format!("[127.0.0.1]:{port} {}\n", public_key(&path("host_key"))))
            .expect("known_hosts");
        // sshd's privilege separation directory, which a host without a running sshd may lack.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let log = std::fs::File::create(path("sshd.log")).expect("sshd's log");
        let sshd = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        let mut host = RouterHost { dir, port, sshd };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !host.log().contains("Server listening on 127.0.0.1") {
            if let Ok(Some(status)) = host.sshd.try_wait() {
                panic!("sshd stopped ({status}): {}", host.log());
            }
            assert!(Instant::now() < deadline, "sshd did not listen within 10 s: {}", host.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        host
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }

    /// `networks.linux` as the server's file would hold it, with `key` as the identity.
    fn section(&self, key: &str) -> serde_yaml::Value {
        serde_yaml::from_str(&format!(
            "ssh: {{host: 127.0.0.1, port: {}, identity_file: {}, known_hosts_file: {}, timeout_seconds: 60}}",
            self.port,
            self.path(key).display(),
            self.path("known_hosts").display()
        ))
        .expect("YAML")
    }

    fn settings(&self, key: &str) -> SshRouterSettings {
        SshRouterSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "root".into(),
            identity_file: self.path(key),
            known_hosts_file: self.path("known_hosts"),
            timeout: Duration::from_secs(60),
        }
    }

    fn router(&self) -> SshRouter {
        SshRouter::new(self.settings("client_key")).expect("the router host's settings")
    }

    /// Runs `ssh` as [`SshRouter`] does but asking for `remote` (within 30 s), with `input` on
    /// its standard input: what the helper answered, parsed, and ssh's exit code.
    fn raw(&self, remote: &[&str], input: &[u8]) -> (Response, Option<i32>) {
        let mut words = self.router().command();
        words.pop();
        words.extend(remote.iter().map(|word| (*word).to_owned()));
        let mut child = Command::new("timeout")
            .arg("30")
            .args(&words)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh starts");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        // The helper may answer before reading all of a long request: write on the side.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("ssh runs");
        let _ = writer.join();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let response = serde_json::from_str(stdout.trim()).unwrap_or_else(|error| {
            panic!(
                "{remote:?}: not a helper's answer ({error}): {stdout:?}, ssh said {:?}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (response, output.status.code())
    }
}

impl Drop for RouterHost {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

/// The invalid input `response` carries: its field and message.
fn refusal(response: &Response) -> (&str, &str) {
    let error = response.error.as_ref().unwrap_or_else(|| panic!("an error, not {response:?}"));
    assert_eq!(error.kind, "invalid-input", "{error:?}");
    (error.field.as_deref().unwrap_or(""), error.message.as_str())
}

#[tokio::test]
async fn the_ssh_router_passes_the_conformance_suite_through_the_helper() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("s");
    let host = RouterHost::start(&lab);
    let router = basphere_router::router(&host.section("client_key")).expect("the router the section names");
    assert_eq!(router.backend_name(), "linux-ssh");
    let checked = basphere_router::check(&host.section("client_key")).await.expect("the helper answers");
    assert!(checked.starts_with("basphere-router-helper ") && checked.contains("127.0.0.1"), "{checked}");

    testing::router::check_all(router.as_ref(), ["192.0.2.21/24", "192.0.2.22/24", "192.0.2.23/24"]).await;
    let routers = format!("{}r-", lab.prefix);
    assert_eq!(lab::namespaces(&routers), Vec::<String>::new(), "no router namespace left");

    // What the helper made is on the host, as the router on the host itself reads it.
    let alice = spec("alice", [2001, 2002], "192.0.2.11/24");
    let made = router.ensure(&alice).await.expect("alice's router through the helper");
    assert!(made.matches(&alice), "{made:?}");
    assert_eq!(lab::namespaces(&routers), vec![format!("{routers}alice")]);
    assert_eq!(lab.router().status(&alice.tenant).await.unwrap(), Some(made));
    let ports = lab::run(&["ip", "-n", &lab.host, "-o", "link", "show", "master", "wan"]);
    assert!(ports.contains(&lab.router().wan_port(&alice.tenant)), "alice's WAN port is on the WAN bridge: {ports}");
    router.remove(&alice.tenant).await.expect("remove through the helper");
    assert_eq!(lab::namespaces(&routers), Vec::<String>::new(), "alice's namespace is gone");
    let ports = lab::run(&["ip", "-n", &lab.host, "-o", "link", "show"]);
    assert!(!ports.contains(" bw"), "no WAN port left on the WAN bridge: {ports}");
}

#[tokio::test]
async fn a_client_cannot_choose_the_command_and_a_bad_request_is_refused() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("k");
    let host = RouterHost::start(&lab);
    let victim = host.path("victim");
    std::fs::write(&victim, "still here").unwrap();
    let marker = host.path("marker");

    // Whatever the client asks to run, the helper runs, reads its request and answers.
    let (answer, code) = host.raw(&["rm", "-rf", victim.to_str().unwrap()], b"");
    let (field, message) = refusal(&answer);
    assert_eq!(field, "request");
    assert!(message.contains("none on standard input"), "{message}");
    assert_eq!(code, Some(1), "the helper's own exit status for a refusal");
    assert!(victim.exists(), "rm did not run");
    let (answer, _) = host.raw(&["touch", marker.to_str().unwrap(), ";", "sh"], b"{\"op\":\"ping\"}\n");
    assert!(answer.helper.as_deref().is_some_and(|helper| helper.starts_with("basphere-router-helper ")), "{answer:?}");
    assert!(!marker.exists(), "touch did not run");

    // A request that is not one, too long, or with a field out of its rules.
    let (answer, _) = host.raw(&[], b"ensure alice\n");
    assert!(refusal(&answer).1.contains("not a router helper request"), "{answer:?}");
    let (answer, _) = host.raw(&[], br#"{"op":"exec","command":"rm -rf /"}"#);
    assert!(refusal(&answer).1.contains("not a router helper request"), "{answer:?}");
    let long = format!("{{\"op\":\"status\",\"tenant\":\"{}\"}}\n", "a".repeat(200_000));
    let (answer, _) = host.raw(&[], long.as_bytes());
    assert!(refusal(&answer).1.contains("longer than 65536 bytes"), "{answer:?}");
    let (answer, _) = host.raw(&[], br#"{"op":"remove","tenant":"../../etc"}"#);
    assert_eq!(refusal(&answer).0, "tenant");
    let mut bad =
        serde_json::to_value(basphere_router::wire::WireSpec::from(&spec("alice", [2001, 2002], "192.0.2.11/24")))
            .unwrap();
    bad["lans"][0]["vlan"] = 5000.into();
    let (answer, _) = host.raw(&[], format!("{}\n", serde_json::json!({"op": "ensure", "spec": bad})).as_bytes());
    assert_eq!(refusal(&answer), ("spec.lans[0].vlan", "5000 is not a VLAN id (1-4094)"));
    assert_eq!(lab::namespaces(&format!("{}r-", lab.prefix)), Vec::<String>::new(), "nothing was made");

    // Through the router, the helper's refusal keeps its kind and field.
    let mut tiny = spec("alice", [2001, 2002], "192.0.2.11/24");
    tiny.mtu = 100;
    match host.router().ensure(&tiny).await {
        Err(Error::InvalidInput { field, message }) => {
            assert_eq!(field, "spec.mtu");
            assert!(message.contains("576-9000"), "{message}");
        }
        other => panic!("the MTU must be refused as invalid input, got {other:?}"),
    }
    assert!(victim.exists());
}

#[tokio::test]
async fn a_wrong_key_host_key_or_port_names_the_setting_to_check() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("w");
    let host = RouterHost::start(&lab);
    let tenant = testing::username("alice");
    let failure = |error: Error| match error {
        Error::Backend { .. } => error.to_string(),
        other => panic!("a backend error, got {other:?}"),
    };

    let stranger = SshRouter::new(host.settings("other_key")).unwrap();
    let said = failure(stranger.status(&tenant).await.unwrap_err());
    assert!(said.contains("refused the key networks.linux.ssh.identity_file"), "{said}");
    assert!(said.contains(&host.path("other_key").display().to_string()), "{said}");

    let mut impostor = host.settings("client_key");
    impostor.known_hosts_file = host.path("impostor_known_hosts");
    std::fs::write(
        &impostor.known_hosts_file,
        format!("[127.0.0.1]:{} {}\n", host.port, public_key(&host.path("other_key"))),
    )
    .unwrap();
    let said = failure(SshRouter::new(impostor).unwrap().status(&tenant).await.unwrap_err());
    assert!(said.contains("networks.linux.ssh.known_hosts_file"), "{said}");

    let mut elsewhere = host.settings("client_key");
    elsewhere.port = free_port();
    let said = failure(SshRouter::new(elsewhere).unwrap().ping().await.unwrap_err());
    assert!(said.contains("cannot reach the router host") && said.contains("networks.linux.ssh.port"), "{said}");

    // A key others may read is refused before ssh is run.
    std::fs::copy(host.path("client_key"), host.path("open_key")).unwrap();
    std::fs::set_permissions(host.path("open_key"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let error = basphere_router::router(&host.section("open_key")).err().expect("an open key is refused");
    assert!(
        matches!(&error, Error::InvalidInput { field, .. } if field == "networks.linux.ssh.identity_file"),
        "{error}"
    );

    // The right key still works, and nothing was made on the way.
    assert_eq!(host.router().status(&tenant).await.unwrap(), None);
    assert_eq!(lab::namespaces(&format!("{}r-", lab.prefix)), Vec::<String>::new());
}

#[tokio::test]
async fn a_router_host_that_does_not_answer_is_given_up_in_time() {
    if !can_run() {
        return;
    }
    let lab = Lab::new("t");
    let host = RouterHost::start(&lab);
    // A listener that takes the connection, says it speaks SSH and then nothing more (past
    // ssh's own connect timeout, which covers the greeting).
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let listener = silent.try_clone().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(b"SSH-2.0-Silent\r\n");
            // Until the client is gone.
            let _ = std::io::copy(&mut stream, &mut std::io::sink());
        }
    });
    let mut settings = host.settings("client_key");
    settings.port = silent.local_addr().unwrap().port();
    settings.timeout = Duration::from_secs(2);
    settings.known_hosts_file = host.path("silent_known_hosts");
    std::fs::write(
        &settings.known_hosts_file,
        format!("[127.0.0.1]:{} {}\n", settings.port, public_key(&host.path("host_key"))),
    )
    .unwrap();
    let marker = settings.known_hosts_file.display().to_string();
    let started = Instant::now();
    let error = SshRouter::new(settings).unwrap().status(&testing::username("alice")).await.unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error}");
    assert!(error.to_string().contains("networks.linux.ssh.timeout_seconds"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "given up after {:?}", started.elapsed());
    // The ssh client was stopped with the call.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let running = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
            .any(|cmdline| String::from_utf8_lossy(&cmdline).contains(&marker));
        if !running {
            break;
        }
        assert!(Instant::now() < deadline, "an ssh client is still running after the timeout");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(silent);
}
