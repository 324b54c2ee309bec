//! Basphere's bastion logins: a Unix account for every approved Basphere account, made and
//! removed with shadow's `useradd`/`userdel`, with the account's SSH key as its only key.
//!
//! [`UnixBastion`] implements [`basphere_core::bastion::Bastion`] for `bastion.logins: unix`;
//! [`from_config`] picks it or the no-op [`NoBastion`]. Logins Basphere made carry the comment
//! (GECOS full name) `Basphere account NAME`; any other login of the same name, such as a
//! system account, is never adopted, rekeyed or removed.
//!
//! With `root = /` the tools run on the host as an administrator would run them. With another
//! root, they get `--root ROOT`, which works on `ROOT/etc/{passwd,group,shadow,gshadow}` and
//! makes homes under `ROOT` (the tests' sandbox). Uids are read back from `ROOT/etc/passwd`.

mod command;
pub mod helper;
mod keys;
mod names;
mod passwd;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use basphere_core::bastion::{Bastion, NoBastion};
use basphere_core::config::BastionLogins;
use basphere_core::error::{Error, Message, Result};
use basphere_core::validate::{SshPublicKey, Username};

use crate::passwd::PasswdEntry;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "bastion";

/// The comment of every login Basphere makes starts with this, followed by the login's name.
const COMMENT_PREFIX: &str = "Basphere account ";

/// How long one useradd/userdel/groupadd may take before it is stopped.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The bastion logins for `logins`: a [`UnixBastion`], the [`helper::HelperBastion`] that asks
/// the root helper to run one, or the no-op [`NoBastion`].
pub fn from_config(logins: &BastionLogins) -> Result<Arc<dyn Bastion>> {
    match logins {
        BastionLogins::None => Ok(Arc::new(NoBastion)),
        BastionLogins::Unix { helper_socket: Some(socket), .. } => Ok(Arc::new(helper::HelperBastion::new(socket))),
        BastionLogins::Unix { .. } => Ok(Arc::new(unix_from_config(logins)?)),
    }
}

/// The [`UnixBastion`] `bastion.*` describes, whether or not the server uses it through the
/// helper (the helper itself runs this one).
pub fn unix_from_config(logins: &BastionLogins) -> Result<UnixBastion> {
    match logins {
        BastionLogins::Unix { group, shell, home, root, .. } => {
            UnixBastion::new(group.clone(), shell.clone(), home.clone(), root.clone())
        }
        BastionLogins::None => {
            Err(Error::invalid("bastion.logins", "is none: set it to unix for the logins the helper makes"))
        }
    }
}

/// Unix logins on this host (or under a root directory), made with `useradd`.
///
/// Each login: primary group `group`, shell `shell`, home `home/NAME`, no password (locked for
/// password logins, so the SSH key is the only way in), comment `Basphere account NAME`, and
/// `~/.ssh/authorized_keys` holding the account's key (0700 directory, 0600 file, the login's).
#[derive(Debug)]
pub struct UnixBastion {
    group: String,
    shell: PathBuf,
    home: PathBuf,
    root: PathBuf,
    timeout: Duration,
    useradd: PathBuf,
    userdel: PathBuf,
    groupadd: PathBuf,
    /// One change at a time from this process (shadow's tools refuse to run while another holds
    /// the passwd lock).
    changes: tokio::sync::Mutex<()>,
}

impl UnixBastion {
    /// Checks the settings, that `root/etc/passwd` and `root/etc/group` exist, and that
    /// useradd, userdel and groupadd are installed.
    pub fn new(
        group: impl Into<String>,
        shell: impl Into<PathBuf>,
        home: impl Into<PathBuf>,
        root: impl Into<PathBuf>,
    ) -> Result<Self> {
        let (group, shell, home, root) = (group.into(), shell.into(), home.into(), root.into());
        names::check_name("bastion.group", &group)?;
        names::check_path("bastion.shell", &shell)?;
        names::check_path("bastion.home", &home)?;
        if !root.is_absolute() {
            return Err(Error::invalid("bastion.root", format!("{} is not an absolute path", root.display())));
        }
        for file in ["passwd", "group"] {
            let path = passwd::etc_file(&root, file);
            if !path.is_file() {
                return Err(Error::invalid("bastion.root", format!("{} does not exist", path.display())));
            }
        }
        let tool = |name: &str| {
            command::find_tool(name).ok_or_else(|| {
                Error::invalid(
                    "bastion.logins",
                    format!("`unix` needs {name} (shadow's tools, the passwd package), which is not installed"),
                )
            })
        };
        Ok(UnixBastion {
            useradd: tool("useradd")?,
            userdel: tool("userdel")?,
            groupadd: tool("groupadd")?,
            group,
            shell,
            home,
            root,
            timeout: DEFAULT_TIMEOUT,
            changes: tokio::sync::Mutex::new(()),
        })
    }

    /// How long each command may run (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The comment (GECOS) Basphere gives the login `login`, by which it recognises its own.
    pub fn comment_for(login: &str) -> String {
        format!("{COMMENT_PREFIX}{login}")
    }

    /// Like [`Bastion::ensure_login`], for a login name that has not been through core's
    /// validation: it is checked here before anything runs.
    pub async fn ensure_named(&self, login: &str, key: &SshPublicKey) -> Result<u32> {
        names::check_name("username", login)?;
        let comment = Self::comment_for(login);
        names::check_text("comment", &comment)?;
        let content = key_file(key)?;
        let _one_at_a_time = self.changes.lock().await;

        if let Some(entry) = passwd::find_user(&self.root, login).await? {
            if !is_ours(&entry) {
                return Err(Error::already_exists(
                    "bastion login",
                    format!("{login} (a login Basphere did not make, such as a system account; it is left untouched)"),
                ));
            }
            self.install_key(&entry, content).await?;
            tracing::info!(login, uid = entry.uid, "bastion login adopted");
            return Ok(entry.uid);
        }

        self.ensure_group().await?;
        let home = self.home.join(login);
        let home_on_host = self.on_host(&home);
        if tokio::fs::symlink_metadata(&home_on_host).await.is_ok() {
            return Err(Error::Conflict(format!(
                "{} exists but there is no login {login}; move it away before approving the account",
                home_on_host.display()
            )));
        }
        let mut args = self.root_args();
        args.extend([
            "--create-home".into(),
            "--home-dir".into(),
            home.clone().into_os_string(),
            "--shell".into(),
            self.shell.clone().into_os_string(),
            "--gid".into(),
            self.group.clone().into(),
            "--comment".into(),
            comment.into(),
            "--".into(),
            login.into(),
        ]);
        command::run_ok(&self.useradd, &args, self.timeout).await?;
        let entry = passwd::find_user(&self.root, login).await?.ok_or_else(|| {
            Error::backend(BACKEND, Message(format!("useradd succeeded but {login} is not in the passwd file")))
        })?;
        self.install_key(&entry, content).await?;
        tracing::info!(login, uid = entry.uid, "bastion login created");
        Ok(entry.uid)
    }

    /// Like [`Bastion::set_key`], for a login name checked here.
    pub async fn set_key_named(&self, login: &str, key: &SshPublicKey) -> Result<()> {
        names::check_name("username", login)?;
        let content = key_file(key)?;
        let _one_at_a_time = self.changes.lock().await;
        let entry =
            passwd::find_user(&self.root, login).await?.ok_or_else(|| Error::not_found("bastion login", login))?;
        if !is_ours(&entry) {
            return Err(Error::Conflict(format!(
                "the login {login} was not made by Basphere; its keys are left alone"
            )));
        }
        self.install_key(&entry, content).await?;
        tracing::info!(login, "bastion login key replaced");
        Ok(())
    }

    /// Like [`Bastion::remove_login`], for a login name checked here.
    pub async fn remove_named(&self, login: &str) -> Result<()> {
        names::check_name("username", login)?;
        let _one_at_a_time = self.changes.lock().await;
        let Some(entry) = passwd::find_user(&self.root, login).await? else {
            return Ok(());
        };
        if !is_ours(&entry) {
            return Err(Error::Conflict(format!("the login {login} was not made by Basphere; it is never removed")));
        }
        let busy = processes_of(entry.uid).await;
        if !busy.is_empty() {
            return Err(busy_error(login, entry.uid, &format!("process(es) {}", list(&busy))));
        }
        let mut args = self.root_args();
        args.extend(["--remove".into(), "--".into(), login.into()]);
        let finished = command::run(&self.userdel, &args, self.timeout).await?;
        if finished.success() {
            tracing::info!(login, uid = entry.uid, "bastion login removed");
            return Ok(());
        }
        // 8: userdel found the login in use (it checks when it works on the host itself).
        if finished.code == Some(8) {
            return Err(busy_error(login, entry.uid, finished.stderr.trim()));
        }
        // 6: gone meanwhile, which is what was asked.
        if finished.code == Some(6) && passwd::find_user(&self.root, login).await?.is_none() {
            return Ok(());
        }
        Err(finished.into_error())
    }

    /// `--root ROOT`, except for `/`: there the tools run as on any host (and userdel then
    /// refuses a login that is in use, a check it skips under `--root`).
    fn root_args(&self) -> Vec<OsString> {
        if self.root == Path::new("/") {
            Vec::new()
        } else {
            vec!["--root".into(), self.root.clone().into_os_string()]
        }
    }

    /// Where a path of the bastion's file system (`/home/alice`) is on this host.
    fn on_host(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    async fn ensure_group(&self) -> Result<()> {
        if passwd::find_group(&self.root, &self.group).await?.is_some() {
            return Ok(());
        }
        let mut args = self.root_args();
        args.extend(["--".into(), self.group.clone().into()]);
        let finished = command::run(&self.groupadd, &args, self.timeout).await?;
        // Another process may have made it meanwhile (groupadd then exits with 9).
        if finished.success() || passwd::find_group(&self.root, &self.group).await?.is_some() {
            tracing::info!(group = %self.group, "bastion group ready");
            Ok(())
        } else {
            Err(finished.into_error())
        }
    }

    async fn install_key(&self, entry: &PasswdEntry, content: String) -> Result<keys::Outcome> {
        let home = self.on_host(Path::new(&entry.home));
        if entry.home.is_empty() || !Path::new(&entry.home).is_absolute() {
            return Err(Error::Conflict(format!("the login {} has no absolute home directory", entry.name)));
        }
        let (login, uid, gid) = (entry.name.clone(), entry.uid, entry.gid);
        tokio::task::spawn_blocking(move || {
            keys::install(&keys::Owner { login: &login, uid, gid, home: &home }, &content)
        })
        .await
        .map_err(|error| Error::backend(BACKEND, Message(format!("writing authorized_keys: {error}"))))?
    }
}

#[async_trait]
impl Bastion for UnixBastion {
    fn backend_name(&self) -> &'static str {
        "unix"
    }

    async fn ensure_login(&self, username: &Username, key: &SshPublicKey) -> Result<Option<u32>> {
        self.ensure_named(username.as_str(), key).await.map(Some)
    }

    async fn set_key(&self, username: &Username, key: &SshPublicKey) -> Result<()> {
        self.set_key_named(username.as_str(), key).await
    }

    async fn remove_login(&self, username: &Username) -> Result<()> {
        self.remove_named(username.as_str()).await
    }
}

fn is_ours(entry: &PasswdEntry) -> bool {
    entry.full_name() == UnixBastion::comment_for(&entry.name)
}

/// The authorized_keys content for `key`: its one line.
fn key_file(key: &SshPublicKey) -> Result<String> {
    let line = key.as_str();
    if line.is_empty() || line.chars().any(char::is_control) {
        return Err(Error::invalid("ssh public key", "must be one line without control characters"));
    }
    Ok(format!("{line}\n"))
}

fn busy_error(login: &str, uid: u32, detail: &str) -> Error {
    Error::Conflict(format!(
        "the bastion login {login} (uid {uid}) is in use ({detail}); Basphere stops no processes: \
         end them, then remove the login again"
    ))
}

fn list(pids: &[u32]) -> String {
    let mut text = pids.iter().take(10).map(u32::to_string).collect::<Vec<_>>().join(", ");
    if pids.len() > 10 {
        text.push_str(&format!(" and {} more", pids.len() - 10));
    }
    text
}

/// The processes on this host whose real, effective, saved or file-system uid is `uid`.
async fn processes_of(uid: u32) -> Vec<u32> {
    tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                // A process that ended meanwhile has no status: it is not in use.
                std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| status_has_uid(&status, uid))
            })
            .collect();
        pids.sort_unstable();
        pids
    })
    .await
    .unwrap_or_default()
}

fn status_has_uid(status: &str, uid: u32) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .is_some_and(|ids| ids.split_whitespace().any(|id| id.parse() == Ok(uid)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_status_uids_are_matched_on_every_column() {
        let status = "Name:\tsleep\nUid:\t0\t1500\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert!(status_has_uid(status, 1500));
        assert!(status_has_uid(status, 0));
        assert!(!status_has_uid(status, 150));
        assert!(!status_has_uid("Name:\tx\n", 0));
    }

    #[test]
    fn only_logins_with_the_basphere_comment_are_ours() {
        let entry = |name: &str, gecos: &str| PasswdEntry {
            name: name.into(),
            uid: 1000,
            gid: 1000,
            gecos: gecos.into(),
            home: "/home/x".into(),
            shell: "/bin/bash".into(),
        };
        assert!(is_ours(&entry("alice", "Basphere account alice")));
        assert!(is_ours(&entry("alice", "Basphere account alice,room 4,,")), "chfn may change the other parts");
        assert!(!is_ours(&entry("alice", "Basphere account bob")));
        assert!(!is_ours(&entry("daemon", "daemon")));
        assert!(!is_ours(&entry("alice", "")));
    }

    #[test]
    fn the_root_maps_bastion_paths_onto_the_host() {
        let host = UnixBastion::new("g", "/bin/sh", "/home", "/").unwrap();
        assert!(host.root_args().is_empty(), "on the host itself, no --root");
        assert_eq!(host.on_host(Path::new("/home/alice")), Path::new("/home/alice"));
    }

    #[test]
    fn bad_settings_are_refused_before_anything_runs() {
        for (group, shell, home, root) in [
            ("bad:group", "/bin/sh", "/home", "/"),
            ("bad,group", "/bin/sh", "/home", "/"),
            ("bad\ngroup", "/bin/sh", "/home", "/"),
            ("-g", "/bin/sh", "/home", "/"),
            ("users", "bin/sh", "/home", "/"),
            ("users", "/bin/sh\n", "/home", "/"),
            ("users", "/bin/sh", "/home:x", "/"),
            ("users", "/bin/sh", "/home", "relative"),
            ("users", "/bin/sh", "/home", "/basphere-no-such-root"),
        ] {
            let error = UnixBastion::new(group, shell, home, root).expect_err(group);
            assert_eq!(error.kind(), "invalid-input", "{group:?} {shell:?} {home:?} {root:?}: {error}");
        }
    }

    #[test]
    fn pid_lists_are_bounded() {
        assert_eq!(list(&[1, 2]), "1, 2");
        assert_eq!(list(&(1..=12).collect::<Vec<_>>()), "1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more");
    }
}
