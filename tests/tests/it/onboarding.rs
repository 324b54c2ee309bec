//! From registration to the first VM on the real binaries, with real Unix logins made by
//! `useradd` in a sandbox root: a newcomer registers over HTTP without an account, an
//! administrator approves on the socket, the new login's uid is that user on the socket at once
//! (the CLI run with `setpriv` as that uid), a key change reaches `authorized_keys`, and after a
//! purge the uid is nobody.

use std::process::Command;

use serde_json::Value;
use tests::server::{binaries, can_switch_uid, cli_env, expect, stderr, Server, FAST};

/// A root for `useradd --root`: the account files of a small system, and a uid range of its own.
fn sandbox(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("home")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join("etc").join(name), text).unwrap();
    write("passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n");
    write("group", "root:x:0:\ndaemon:x:1:\n");
    write("shadow", "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n");
    write("gshadow", "root:*::\ndaemon:*::\n");
    write("login.defs", "UID_MIN 64000\nUID_MAX 64099\nGID_MIN 64000\nGID_MAX 64099\n");
}

fn uid_of(root: &std::path::Path, name: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    passwd.lines().map(|line| line.split(':').collect::<Vec<_>>()).find(|f| f[0] == name).map(|f| f[2].parse().unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

/// `basphere` over HTTP with no token at all, as a newcomer runs it.
fn anonymous(server: &Server, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(&binaries().cli);
    cli_env(&mut command);
    command.arg("--server").arg(format!("http://{}", server.tcp)).args(args);
    command.output().expect("run basphere")
}

#[test]
fn a_newcomer_registers_is_approved_and_uses_the_bastion_login() {
    if !can_switch_uid() {
        basphere_core::testing::skip_unless_ci("the onboarding test runs useradd and setpriv, which need root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bastion-root");
    sandbox(&root);
    let config = format!(
        "{FAST}recaptcha: {{enabled: false}}\nbastion: {{address: bastion.example.com, port: 2222, logins: unix, root: {}}}\n",
        root.display()
    );
    let server = Server::start(dir.path(), Some(&config));
    let key = basphere_core::testing::ssh_key(1);
    let new_key = basphere_core::testing::ssh_key(2);
    std::fs::write(dir.path().join("alice.pub"), format!("{}\n", key.as_str())).unwrap();
    std::fs::write(dir.path().join("new.pub"), new_key.as_str()).unwrap();
    let key_file = dir.path().join("alice.pub");
    let new_key_file = dir.path().join("new.pub");

    // The newcomer: no account, no token.
    let submitted = expect(
        &anonymous(
            &server,
            &[
                "register",
                "alice",
                "--email",
                "alice@example.com",
                "--team",
                "payments",
                "--key-file",
                key_file.to_str().unwrap(),
            ],
        ),
        0,
    );
    assert!(submitted.contains("administrator reviews"), "{submitted}");
    // Submitting again, or for a taken name, says the same and changes nothing.
    let again = expect(
        &anonymous(&server, &["register", "alice", "--email", "other@example.com", "--key", new_key.as_str()]),
        0,
    );
    assert_eq!(again, submitted);

    // The administrator on the socket.
    let pending = expect(&server.cli(&["admin", "user", "pending"]), 0);
    assert!(pending.starts_with("USERNAME") && pending.contains("alice") && pending.contains("payments"), "{pending}");
    let detail = json(&expect(&server.cli(&["-o", "json", "admin", "user", "pending", "alice"]), 0));
    assert_eq!((detail["status"].as_str(), detail["ssh_key"].as_str()), (Some("pending"), Some(key.as_str())));
    let approved = json(&expect(&server.cli(&["-o", "json", "admin", "user", "approve", "alice", "--wait"]), 0));
    assert_eq!(approved[0]["state"], "succeeded", "{approved}");
    assert_eq!(expect(&server.cli(&["admin", "user", "pending"]), 0).trim(), "No pending registration requests");
    // A rejection, told with its reason; the applicant gets no login.
    expect(&anonymous(&server, &["register", "bob", "--email", "bob@example.com", "--key", new_key.as_str()]), 0);
    let unasked = server.cli(&["admin", "user", "reject", "bob", "--reason", "unknown team"]);
    assert_eq!(unasked.status.code(), Some(2), "rejecting asks first; --yes off a terminal: {}", stderr(&unasked));
    let rejected = expect(&server.cli(&["-y", "admin", "user", "reject", "bob", "--reason", "unknown team"]), 0);
    assert!(rejected.contains("rejected") && rejected.contains("unknown team"), "{rejected}");
    assert_eq!(uid_of(&root, "bob"), None);

    // A real login: passwd, no password, the key, owned by alice, private.
    let uid = uid_of(&root, "alice").expect("useradd made alice");
    assert!((64000..64100).contains(&uid), "{uid}");
    let shadow = std::fs::read_to_string(root.join("etc/shadow")).unwrap();
    assert!(shadow.lines().any(|l| l.starts_with("alice:!") || l.starts_with("alice:*")), "{shadow}");
    let keys = root.join("home/alice/.ssh/authorized_keys");
    assert_eq!(std::fs::read_to_string(&keys).unwrap().trim(), key.as_str());
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(&keys).unwrap();
    assert_eq!((metadata.uid(), metadata.mode() & 0o777), (uid, 0o600));

    // On the bastion, as that uid, alice is herself at once.
    let me = json(&expect(&server.cli_uid(uid, &["-o", "json", "whoami"]), 0));
    assert_eq!((me["name"].as_str(), me["role"].as_str()), (Some("alice"), Some("user")), "{me}");
    let user = json(&expect(&server.cli(&["-o", "json", "admin", "user", "show", "alice"]), 0));
    assert_eq!(user["uid"].as_u64(), Some(u64::from(uid)));
    let created = json(&expect(
        &server
            .cli_uid(uid, &["-o", "json", "vm", "create", "web", "--os", "ubuntu-24.04", "--spec", "tiny", "--wait"]),
        0,
    ));
    assert_eq!(created[0]["state"], "succeeded", "{created}");

    // A key change with the registered email reaches authorized_keys once approved.
    expect(
        &anonymous(
            &server,
            &[
                "key-change",
                "alice",
                "--email",
                "alice@example.com",
                "--key-file",
                new_key_file.to_str().unwrap(),
                "--reason",
                "laptop lost",
            ],
        ),
        0,
    );
    let changes = expect(&server.cli(&["admin", "key", "pending"]), 0);
    assert!(changes.contains("alice") && changes.contains("laptop lost"), "{changes}");
    expect(&server.cli(&["admin", "key", "approve", "alice", "--wait"]), 0);
    assert_eq!(std::fs::read_to_string(&keys).unwrap().trim(), new_key.as_str());

    // Purge: the VM, the login and the account go; the uid is nobody.
    let refused = server.cli(&["admin", "user", "purge", "alice"]);
    assert_eq!(refused.status.code(), Some(2), "purge without a terminal needs --yes: {}", stderr(&refused));
    let purged = json(&expect(&server.cli(&["-y", "-o", "json", "admin", "user", "purge", "alice", "--wait"]), 0));
    assert_eq!(purged[0]["state"], "succeeded", "{purged}");
    assert_eq!(uid_of(&root, "alice"), None);
    assert!(!root.join("home/alice").exists());
    let nobody = server.cli_uid(uid, &["whoami"]);
    assert_eq!(nobody.status.code(), Some(8), "{}", stderr(&nobody));

    // The original's admin command name.
    let link = dir.path().join("basphere-admin");
    std::os::unix::fs::symlink(&binaries().cli, &link).unwrap();
    let mut command = Command::new(&link);
    cli_env(&mut command);
    let listed = command.arg("--socket").arg(&server.socket).args(["user", "list"]).output().unwrap();
    assert!(expect(&listed, 0).starts_with("USERNAME"));
    let version = Command::new(&link).arg("-v").output().unwrap();
    assert!(expect(&version, 0).starts_with("basphere-admin version "), "the original's -v");
}
