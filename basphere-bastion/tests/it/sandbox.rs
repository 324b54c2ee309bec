//! A throwaway root for the real useradd/userdel/groupadd (`--root DIR`): `etc/passwd` with root,
//! a `daemon` system account and `carol`, a person's login an administrator made by hand; the
//! matching group, shadow and gshadow files; `etc/login.defs` giving each sandbox its own uid
//! range (so the busy check, which looks at this host's processes, never sees another test's);
//! and a home directory.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use basphere_bastion::UnixBastion;

/// Every test finishes within this, or fails.
const TEST_BUDGET: Duration = Duration::from_secs(120);

/// The programs the tests run for real.
const TOOLS: &[&str] = &["useradd", "userdel", "groupadd", "setpriv"];

pub const GROUP: &str = "basphere-users";
pub const SHELL: &str = "/bin/bash";

pub struct Sandbox {
    dir: tempfile::TempDir,
    pub uid_min: u32,
}

/// Runs `test`, failing it when it takes longer than the budget.
pub async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_BUDGET, test).await.expect("the test took longer than its time budget")
}

fn find_tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().map(|dir| Path::new(dir).join(name)).find(|path| path.is_file())
}

fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("these tests run useradd, which needs root (run them as root, as CI does)".into());
    }
    let missing: Vec<&str> = TOOLS.iter().copied().filter(|tool| find_tool(tool).is_none()).collect();
    if !missing.is_empty() {
        return Some(format!("{} not installed (Debian packages passwd and util-linux)", missing.join(", ")));
    }
    None
}

impl Sandbox {
    /// A fresh sandbox, or `None` (after a printed note) when the host cannot run the tests.
    /// Under CI (`CI` set) a missing prerequisite fails the test instead.
    pub fn new() -> Option<Sandbox> {
        if let Some(why) = missing_prerequisite() {
            basphere_core::testing::skip_unless_ci(&format!("basphere-bastion integration tests cannot run: {why}"));
            return None;
        }
        static NEXT_RANGE: AtomicU32 = AtomicU32::new(0);
        let uid_min = 42000 + 100 * NEXT_RANGE.fetch_add(1, Ordering::Relaxed);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("home/carol/.ssh")).unwrap();
        let write = |name: &str, text: String| std::fs::write(root.join("etc").join(name), text).unwrap();
        write(
            "passwd",
            "root:x:0:0:root:/root:/bin/bash\n\
             daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
             carol:x:1001:1001:Carol Local:/home/carol:/bin/bash\n"
                .into(),
        );
        write("group", "root:x:0:\ndaemon:x:1:\ncarol:x:1001:\n".into());
        write("shadow", "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\ncarol:!:19000:0:99999:7:::\n".into());
        write("gshadow", "root:*::\ndaemon:*::\ncarol:!::\n".into());
        write(
            "login.defs",
            format!("UID_MIN {uid_min}\nUID_MAX {}\nGID_MIN {uid_min}\nGID_MAX {}\n", uid_min + 99, uid_min + 99),
        );
        std::fs::write(root.join("home/carol/.ssh/authorized_keys"), "ssh-ed25519 AAAA carol's own key\n").unwrap();
        Some(Sandbox { dir, uid_min })
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn bastion(&self) -> UnixBastion {
        UnixBastion::new(GROUP, SHELL, "/home", self.root()).expect("a bastion over the sandbox")
    }

    pub fn etc(&self, name: &str) -> String {
        std::fs::read_to_string(self.root().join("etc").join(name)).unwrap()
    }

    /// The line of `name` in the sandbox's `etc/FILE`, split on `:`.
    pub fn entry(&self, file: &str, name: &str) -> Option<Vec<String>> {
        self.etc(file)
            .lines()
            .map(|line| line.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|fields| fields[0] == name)
    }

    /// The home of `name` on this host, from the sandbox's passwd file.
    pub fn home_of(&self, name: &str) -> Option<PathBuf> {
        let home = self.entry("passwd", name)?[5].clone();
        Some(self.root().join(home.trim_start_matches('/')))
    }

    /// The authorized keys of `name`; `None` when there is no such login.
    pub fn keys(&self, name: &str) -> Option<String> {
        let home = self.home_of(name)?;
        Some(std::fs::read_to_string(home.join(".ssh/authorized_keys")).unwrap_or_default())
    }

    /// Every file of `etc` and every path under `home` with its owner, mode, inode and times: to
    /// show that a call changed nothing.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let mut state = BTreeMap::new();
        for name in ["passwd", "group", "shadow", "gshadow"] {
            state.insert(format!("etc/{name}"), self.etc(name));
        }
        let mut stack = vec![self.root().join("home")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let content =
                    if meta.is_file() { std::fs::read_to_string(&path).unwrap_or_default() } else { String::new() };
                state.insert(
                    path.strip_prefix(self.root()).unwrap().display().to_string(),
                    format!(
                        "uid={} gid={} mode={:o} ino={} mtime={}.{} ctime={}.{} {content:?}",
                        meta.uid(),
                        meta.gid(),
                        meta.mode(),
                        meta.ino(),
                        meta.mtime(),
                        meta.mtime_nsec(),
                        meta.ctime(),
                        meta.ctime_nsec()
                    ),
                );
                if meta.is_dir() {
                    stack.push(path);
                }
            }
        }
        state
    }
}

/// `let sandbox = sandbox!();` — a sandbox, or return from the test after a note.
macro_rules! sandbox {
    () => {
        match $crate::sandbox::Sandbox::new() {
            Some(sandbox) => sandbox,
            None => return,
        }
    };
}
pub(crate) use sandbox;
