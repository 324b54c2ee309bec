//! basphere-bastion against the real useradd, userdel and groupadd, in a sandbox root.

mod sandbox;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use basphere_bastion::{from_config, UnixBastion};
use basphere_core::bastion::Bastion;
use basphere_core::config::BastionLogins;
use basphere_core::testing::{ssh_key, username};
use basphere_core::Error;

use sandbox::{bounded, sandbox, GROUP, SHELL};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_login_has_its_passwd_line_no_password_and_its_key_file() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = sandbox.bastion();
        let key = ssh_key(1);
        assert!(sandbox.entry("group", GROUP).is_none(), "the group is made on first use");
        let uid = bastion.ensure_login(&username("alice"), &key).await.unwrap().expect("a uid");

        let line = sandbox.entry("passwd", "alice").expect("a passwd line");
        let gid: u32 = sandbox.entry("group", GROUP).expect("the group was made")[2].parse().unwrap();
        assert_eq!(line[0], "alice");
        assert_eq!(line[2], uid.to_string(), "the uid returned is the one in passwd");
        assert!(uid >= 1000 && uid >= sandbox.uid_min, "a regular uid: {uid}");
        assert_eq!(line[3], gid.to_string(), "primary group {GROUP}");
        assert_eq!(line[4], "Basphere account alice");
        assert_eq!((line[5].as_str(), line[6].as_str()), ("/home/alice", SHELL));

        let shadow = sandbox.entry("shadow", "alice").expect("a shadow line");
        assert!(shadow[1].starts_with('!') || shadow[1].starts_with('*'), "no usable password: {:?}", shadow[1]);

        let home = sandbox.root().join("home/alice");
        assert_eq!(std::fs::metadata(&home).unwrap().uid(), uid, "the home is under the root and the login's");
        let ssh = home.join(".ssh");
        let file = ssh.join("authorized_keys");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{}\n", key.as_str()));
        for path in [&ssh, &file] {
            let meta = std::fs::symlink_metadata(path).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{} belongs to the login", path.display());
        }
        assert!(std::fs::symlink_metadata(&ssh).unwrap().is_dir());
        assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
        assert_eq!((mode(&ssh), mode(&file)), (0o700, 0o600));
        let names: Vec<_> = std::fs::read_dir(&ssh).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["authorized_keys"], "no temporary file is left behind");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensuring_a_login_again_returns_its_uid_and_changes_nothing() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = sandbox.bastion();
        let (alice, key) = (username("alice"), ssh_key(1));
        let uid = bastion.ensure_login(&alice, &key).await.unwrap();
        let before = sandbox.snapshot();
        assert_eq!(bastion.ensure_login(&alice, &key).await.unwrap(), uid);
        assert_eq!(sandbox.snapshot(), before, "no file was rewritten, re-owned or re-moded");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_repairs_the_key_file_and_a_missing_home() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = sandbox.bastion();
        let (alice, key) = (username("alice"), ssh_key(1));
        let uid = bastion.ensure_login(&alice, &key).await.unwrap().unwrap();
        let ssh = sandbox.root().join("home/alice/.ssh");
        std::fs::write(ssh.join("authorized_keys"), "ssh-ed25519 AAAA someone else\n").unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(bastion.ensure_login(&alice, &key).await.unwrap(), Some(uid));
        assert_eq!(sandbox.keys("alice").unwrap(), format!("{}\n", key.as_str()));
        assert_eq!((mode(&ssh), mode(&ssh.join("authorized_keys"))), (0o700, 0o600));

        std::fs::remove_dir_all(sandbox.root().join("home/alice")).unwrap();
        assert_eq!(bastion.ensure_login(&alice, &key).await.unwrap(), Some(uid), "a half-done state is repeated");
        let home = sandbox.root().join("home/alice");
        assert_eq!((std::fs::metadata(&home).unwrap().uid(), mode(&home)), (uid, 0o700));
        assert_eq!(sandbox.keys("alice").unwrap(), format!("{}\n", key.as_str()));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_key_replaces_the_key_and_a_reader_never_sees_a_partial_file() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = sandbox.bastion();
        let alice = username("alice");
        let keys: Vec<_> = (0..50).map(|seed| ssh_key(100 + seed)).collect();
        let uid = bastion.ensure_login(&alice, &ssh_key(1)).await.unwrap().unwrap();
        let mut valid: Vec<String> = keys.iter().map(|key| format!("{}\n", key.as_str())).collect();
        valid.push(format!("{}\n", ssh_key(1).as_str()));

        let file = sandbox.root().join("home/alice/.ssh/authorized_keys");
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (file, stop, valid) = (file.clone(), stop.clone(), valid.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let content = std::fs::read_to_string(&file).expect("the file is always there");
                    assert!(valid.contains(&content), "a reader saw {content:?}");
                    reads += 1;
                }
                reads
            })
        };
        for key in &keys {
            bastion.set_key(&alice, key).await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let reads = reader.join().expect("the reader saw only whole files");
        assert!(reads > 0);

        assert_eq!(sandbox.keys("alice").unwrap(), valid[49], "the last key wins");
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!((meta.uid(), mode(&file)), (uid, 0o600));
        let names: Vec<_> =
            std::fs::read_dir(file.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["authorized_keys"], "no temporary file is left behind");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_key_of_a_missing_login_is_not_found() {
    let sandbox = sandbox!();
    bounded(async {
        let before = sandbox.snapshot();
        let error = sandbox.bastion().set_key(&username("nobody-here"), &ssh_key(1)).await.unwrap_err();
        assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
        assert_eq!(sandbox.snapshot(), before);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_login_removes_the_passwd_line_and_the_home_and_again_succeeds() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = sandbox.bastion();
        let alice = username("alice");
        bastion.ensure_login(&alice, &ssh_key(1)).await.unwrap();
        bastion.ensure_login(&username("bob"), &ssh_key(2)).await.unwrap();
        bastion.remove_login(&alice).await.unwrap();
        assert!(sandbox.entry("passwd", "alice").is_none());
        assert!(sandbox.entry("shadow", "alice").is_none());
        assert!(!sandbox.root().join("home/alice").exists(), "the home went with the login");
        bastion.remove_login(&alice).await.expect("removing a login that is gone succeeds");
        assert!(sandbox.entry("passwd", "bob").is_some() && sandbox.root().join("home/bob").is_dir(), "bob stays");
        assert!(sandbox.entry("group", GROUP).is_some(), "the shared group stays");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_basphere_did_not_make_are_never_adopted_rekeyed_or_removed() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = sandbox.bastion();
        let before = sandbox.snapshot();

        // `daemon` is reserved in core, so it can only come by the unchecked entry points.
        let error = bastion.ensure_named("daemon", &ssh_key(1)).await.unwrap_err();
        assert!(matches!(error, Error::AlreadyExists { .. }), "{error:?}");
        assert!(error.to_string().contains("daemon") && error.to_string().contains("did not make"), "{error}");
        assert!(bastion.set_key_named("daemon", &ssh_key(1)).await.is_err());
        assert!(bastion.remove_named("daemon").await.is_err());

        let carol = username("carol");
        let error = bastion.ensure_login(&carol, &ssh_key(1)).await.unwrap_err();
        assert!(matches!(error, Error::AlreadyExists { .. }), "{error:?}");
        let error = bastion.set_key(&carol, &ssh_key(1)).await.unwrap_err();
        assert!(matches!(error, Error::Conflict(_)) && error.to_string().contains("carol"), "{error:?}");
        let error = bastion.remove_login(&carol).await.unwrap_err();
        assert!(matches!(error, Error::Conflict(_)) && error.to_string().contains("never removed"), "{error:?}");

        assert_eq!(sandbox.snapshot(), before, "daemon and carol are untouched, and no group was made");
        assert!(!sandbox.root().join("usr").exists(), "nothing was written at daemon's home");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_names_are_refused_before_any_command_runs() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = sandbox.bastion();
        let before = sandbox.snapshot();
        for bad in ["bad:name", "bad\nname", "bad,name", "bad\rname", "-rf", "a/b", "x\u{1b}[31m"] {
            let errors = [
                bastion.ensure_named(bad, &ssh_key(1)).await.unwrap_err(),
                bastion.set_key_named(bad, &ssh_key(1)).await.unwrap_err(),
                bastion.remove_named(bad).await.unwrap_err(),
            ];
            for error in errors {
                assert_eq!(error.kind(), "invalid-input", "{bad:?}: {error}");
            }
        }
        // A valid name would have made the group first (groupadd): it is still missing.
        assert_eq!(sandbox.snapshot(), before, "no command ran");
        for bad in ["bad:group", "bad,group", "bad\ngroup"] {
            let error = UnixBastion::new(bad, SHELL, "/home", sandbox.root()).unwrap_err();
            assert_eq!(error.kind(), "invalid-input", "{bad:?}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_logins_get_two_uids() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = sandbox.bastion();
        let a = bastion.ensure_login(&username("alice"), &ssh_key(1)).await.unwrap().unwrap();
        let b = bastion.ensure_login(&username("bob"), &ssh_key(2)).await.unwrap().unwrap();
        assert_ne!(a, b);
        assert_eq!(sandbox.keys("bob").unwrap(), format!("{}\n", ssh_key(2).as_str()));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_approvals_in_one_process_all_succeed() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = Arc::new(sandbox.bastion());
        let tasks: Vec<_> = ["ann", "ben", "cat", "dan"]
            .into_iter()
            .enumerate()
            .map(|(seed, name)| {
                let bastion = bastion.clone();
                tokio::spawn(async move { bastion.ensure_login(&username(name), &ssh_key(seed as u64)).await })
            })
            .collect();
        let mut uids = Vec::new();
        for task in tasks {
            uids.push(task.await.unwrap().unwrap().unwrap());
        }
        uids.sort_unstable();
        uids.dedup();
        assert_eq!(uids.len(), 4, "four logins, four uids");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_with_running_processes_is_not_removed_and_nothing_is_killed() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = sandbox.bastion();
        let alice = username("alice");
        let uid = bastion.ensure_login(&alice, &ssh_key(1)).await.unwrap().unwrap();
        let gid = sandbox.entry("passwd", "alice").unwrap()[3].clone();
        let mut session = tokio::process::Command::new("setpriv")
            .args([format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into()])
            .args(["sleep", "60"])
            .kill_on_drop(true)
            .spawn()
            .expect("setpriv starts");
        let pid = session.id().unwrap();
        // setpriv changes its uid, then becomes sleep.
        for _ in 0..100 {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if status.lines().any(|line| line.starts_with("Uid:") && line.contains(&uid.to_string())) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let error = bastion.remove_login(&alice).await.unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, Error::Conflict(_)), "{error:?}");
        assert!(text.contains("alice") && text.contains(&pid.to_string()), "{text}");
        assert!(session.try_wait().unwrap().is_none(), "the process was not killed");
        assert!(sandbox.entry("passwd", "alice").is_some(), "the login stays");

        session.kill().await.unwrap();
        bastion.remove_login(&alice).await.expect("removed once its processes ended");
        assert!(sandbox.entry("passwd", "alice").is_none());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_planted_by_the_login_are_not_followed() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = sandbox.bastion();
        let alice = username("alice");
        bastion.ensure_login(&alice, &ssh_key(1)).await.unwrap();
        let target = sandbox.root().join("etc/precious");
        std::fs::write(&target, "root's file\n").unwrap();
        let ssh = sandbox.root().join("home/alice/.ssh");

        // authorized_keys as a symlink: replaced, the target untouched.
        std::fs::remove_file(ssh.join("authorized_keys")).unwrap();
        std::os::unix::fs::symlink(&target, ssh.join("authorized_keys")).unwrap();
        bastion.set_key(&alice, &ssh_key(2)).await.unwrap();
        assert!(std::fs::symlink_metadata(ssh.join("authorized_keys")).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root's file\n");
        assert_eq!(std::fs::metadata(&target).unwrap().uid(), 0);

        // .ssh as a symlink to a root directory: refused, nothing written there.
        std::fs::remove_dir_all(&ssh).unwrap();
        std::os::unix::fs::symlink(sandbox.root().join("etc"), &ssh).unwrap();
        let before = sandbox.etc("passwd");
        let error = bastion.set_key(&alice, &ssh_key(3)).await.unwrap_err();
        assert!(matches!(error, Error::Conflict(_)) && error.to_string().contains("symlink"), "{error:?}");
        assert!(!sandbox.root().join("etc/authorized_keys").exists());
        assert_eq!(sandbox.etc("passwd"), before);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_home_without_a_login_is_not_taken_over() {
    let sandbox = sandbox!();
    bounded(async {
        std::fs::create_dir_all(sandbox.root().join("home/dave")).unwrap();
        let error = sandbox.bastion().ensure_login(&username("dave"), &ssh_key(1)).await.unwrap_err();
        assert!(matches!(error, Error::Conflict(_)) && error.to_string().contains("home/dave"), "{error:?}");
        assert!(sandbox.entry("passwd", "dave").is_none());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_config_picks_the_no_op_or_unix_logins() {
    let none = from_config(&BastionLogins::None).unwrap();
    assert_eq!(none.backend_name(), "none");
    assert_eq!(none.ensure_login(&username("alice"), &ssh_key(1)).await.unwrap(), None);
    none.set_key(&username("alice"), &ssh_key(1)).await.unwrap();
    none.remove_login(&username("alice")).await.unwrap();

    let empty = tempfile::tempdir().unwrap();
    let unix = |root: &std::path::Path| BastionLogins::Unix {
        group: GROUP.into(),
        shell: SHELL.into(),
        home: "/home".into(),
        root: root.to_owned(),
        helper_socket: None,
    };
    let error = from_config(&unix(empty.path())).err().expect("a root without etc/passwd is refused");
    assert!(error.to_string().contains("etc/passwd"), "{error}");

    let sandbox = sandbox!();
    bounded(async {
        let bastion = from_config(&unix(sandbox.root())).unwrap();
        assert_eq!(bastion.backend_name(), "unix");
        assert!(bastion.ensure_login(&username("alice"), &ssh_key(1)).await.unwrap().is_some());
        assert!(sandbox.entry("passwd", "alice").is_some());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_bastion_contract_holds() {
    let sandbox = sandbox!();
    bounded(async {
        let bastion = sandbox.bastion();
        let keys = |name: &basphere_core::validate::Username| sandbox.keys(name.as_str());
        basphere_core::testing::bastion::check_all(&bastion, &keys, &username("carol")).await;
    })
    .await
}

/// The root helper on its socket, and the server's side that talks to it: the same logins as
/// `UnixBastion` makes, only for the allowed account, with every name and key checked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_makes_logins_for_the_server_account_only() {
    use basphere_bastion::helper::{bind, serve, HelperBastion};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    let sandbox = sandbox!();
    let sockets = tempfile::tempdir().unwrap();
    bounded(async {
        let me = nix::unistd::getuid().as_raw();
        let path = sockets.path().join("helper.sock");
        let listener = bind(&path, me).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.permissions().mode() & 0o777, meta.uid()), (0o600, me), "only the allowed account");
        let server = tokio::spawn(serve(listener, Arc::new(sandbox.bastion()), me));

        let helper = HelperBastion::new(&path);
        assert_eq!(helper.backend_name(), "helper");
        helper.ping().await.expect("the helper answers its account");
        let uid = helper.ensure_login(&username("alice"), &ssh_key(1)).await.unwrap().expect("a uid");
        let line = sandbox.entry("passwd", "alice").expect("useradd ran through the helper");
        assert_eq!(line[2].parse::<u32>().unwrap(), uid);
        assert_eq!(helper.ensure_login(&username("alice"), &ssh_key(1)).await.unwrap(), Some(uid), "idempotent");
        helper.set_key(&username("alice"), &ssh_key(2)).await.unwrap();
        assert!(sandbox.keys("alice").unwrap().contains(ssh_key(2).as_str()));
        // A login Basphere did not make is refused, as UnixBastion refuses it.
        let error = helper.ensure_login(&username("carol"), &ssh_key(3)).await.unwrap_err();
        assert_eq!(error.kind(), "already-exists", "{error}");
        helper.remove_login(&username("alice")).await.unwrap();
        assert!(sandbox.entry("passwd", "alice").is_none());

        // A request that did not come through core's validation is checked again.
        let raw = |request: &'static str| {
            let path = path.clone();
            async move {
                let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
                stream.write_all(request.as_bytes()).await.unwrap();
                let mut answer = String::new();
                tokio::io::BufReader::new(stream).read_line(&mut answer).await.unwrap();
                answer
            }
        };
        let answer = raw("{\"op\":\"ensure_login\",\"username\":\"../root\",\"key\":\"ssh-ed25519 AAAA\"}\n").await;
        assert!(answer.contains("invalid-input") && answer.contains("username"), "{answer}");
        let answer = raw("{\"op\":\"run\",\"command\":\"sh\"}\n").await;
        assert!(answer.contains("not a bastion helper request"), "{answer}");
        assert!(sandbox.entry("passwd", "..").is_none());
        server.abort();

        // Any other account is refused before its request is read.
        let other = sockets.path().join("other.sock");
        let listener = bind(&other, me + 4242).unwrap();
        let server = tokio::spawn(serve(listener, Arc::new(sandbox.bastion()), me + 4242));
        let error = HelperBastion::new(&other).ensure_login(&username("dave"), &ssh_key(4)).await.unwrap_err();
        assert_eq!(error.kind(), "forbidden", "{error}");
        assert!(sandbox.entry("passwd", "dave").is_none());
        server.abort();

        // No helper: the error names the socket and the setting.
        let error = HelperBastion::new(sockets.path().join("absent.sock"))
            .ensure_login(&username("erin"), &ssh_key(5))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("bastion.helper_socket"), "{error}");
    })
    .await
}
