//! Writing `~/.ssh/authorized_keys` as root inside a directory the login owns.
//!
//! The login could replace `.ssh` or `authorized_keys` with a symlink to a system file, so every
//! step works on file descriptors: the home and `.ssh` are opened without following symlinks,
//! the new file is made next to the old one with `O_EXCL | O_NOFOLLOW`, its owner and mode set
//! through its descriptor, synced, and renamed over the old one (which replaces a symlink instead
//! of following it). A reader sees the old file or the new one, never a partial one.

use std::fs::{File, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use basphere_core::error::{Error, Message, Result};
use nix::errno::Errno;
use nix::fcntl::{open, openat, renameat, OFlag};
use nix::sys::stat::{mkdirat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

const SSH_DIR: &str = ".ssh";
const KEYS_FILE: &str = "authorized_keys";
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Whom the files belong to and where.
pub(crate) struct Owner<'a> {
    pub login: &'a str,
    pub uid: u32,
    pub gid: u32,
    /// The home directory as the host sees it (under the configured root).
    pub home: &'a Path,
}

/// Whether the file had to be written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Written,
    Unchanged,
}

/// Makes `home/.ssh/authorized_keys` hold exactly `content`, owned by the login, modes 0700/0600.
/// Creates the home (0700) when it is missing. Leaves a file that is already right untouched.
pub(crate) fn install(owner: &Owner<'_>, content: &str) -> Result<Outcome> {
    let home = open_home(owner)?;
    let ssh = open_ssh_dir(owner, &home)?;
    if is_current(owner, &ssh, content) {
        return Ok(Outcome::Unchanged);
    }
    replace(owner, ssh, content)?;
    Ok(Outcome::Written)
}

fn failed(owner: &Owner<'_>, what: &str, path: &Path, error: impl std::fmt::Display) -> Error {
    Error::backend(crate::BACKEND, Message(format!("{what} {} for the login {}: {error}", path.display(), owner.login)))
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn open_home(owner: &Owner<'_>) -> Result<File> {
    let path = owner.home;
    match open(path, dir_flags(), Mode::empty()) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::ENOENT) => {
            // The login exists but its home went missing: make it again, the login's own.
            std::fs::DirBuilder::new()
                .mode(DIR_MODE)
                .create(path)
                .map_err(|error| failed(owner, "creating the missing home", path, error))?;
            let home =
                File::from(open(path, dir_flags(), Mode::empty()).map_err(|e| failed(owner, "opening", path, e))?);
            std::os::unix::fs::fchown(&home, Some(owner.uid), Some(owner.gid))
                .map_err(|error| failed(owner, "giving", path, error))?;
            home.set_permissions(Permissions::from_mode(DIR_MODE))
                .map_err(|error| failed(owner, "setting the mode of", path, error))?;
            Ok(home)
        }
        Err(Errno::ELOOP | Errno::ENOTDIR) => Err(Error::Conflict(format!(
            "the home {} of the login {} is not a directory (a symlink?); fix it by hand",
            path.display(),
            owner.login
        ))),
        Err(error) => Err(failed(owner, "opening the home", path, error)),
    }
}

fn open_ssh_dir(owner: &Owner<'_>, home: &File) -> Result<File> {
    let path = owner.home.join(SSH_DIR);
    match mkdirat(home, SSH_DIR, Mode::from_bits_truncate(DIR_MODE)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(error) => return Err(failed(owner, "creating", &path, error)),
    }
    let ssh = match openat(home, SSH_DIR, dir_flags(), Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            return Err(Error::Conflict(format!(
                "{} of the login {} is not a directory (a symlink?); Basphere does not write through it",
                path.display(),
                owner.login
            )))
        }
        Err(error) => return Err(failed(owner, "opening", &path, error)),
    };
    let meta = ssh.metadata().map_err(|error| failed(owner, "inspecting", &path, error))?;
    if (meta.uid(), meta.gid()) != (owner.uid, owner.gid) {
        std::os::unix::fs::fchown(&ssh, Some(owner.uid), Some(owner.gid))
            .map_err(|error| failed(owner, "giving", &path, error))?;
    }
    if meta.mode() & 0o7777 != DIR_MODE {
        ssh.set_permissions(Permissions::from_mode(DIR_MODE))
            .map_err(|error| failed(owner, "setting the mode of", &path, error))?;
    }
    Ok(ssh)
}

/// Whether `authorized_keys` is already a regular file with this content, owner and mode.
fn is_current(owner: &Owner<'_>, ssh: &File, content: &str) -> bool {
    // O_NONBLOCK: a FIFO planted by the login must not hang the server.
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let Ok(fd) = openat(ssh, KEYS_FILE, flags, Mode::empty()) else {
        return false;
    };
    let file = File::from(fd);
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if !meta.is_file()
        || (meta.uid(), meta.gid()) != (owner.uid, owner.gid)
        || meta.mode() & 0o7777 != FILE_MODE
        || meta.len() != content.len() as u64
    {
        return false;
    }
    let mut present = Vec::with_capacity(content.len());
    match file.take(content.len() as u64 + 1).read_to_end(&mut present) {
        Ok(_) => present == content.as_bytes(),
        Err(_) => false,
    }
}

fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!(".{KEYS_FILE}.basphere-{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn replace(owner: &Owner<'_>, ssh: File, content: &str) -> Result<()> {
    let final_path = owner.home.join(SSH_DIR).join(KEYS_FILE);
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let (name, fd) = loop {
        let name = temp_name();
        match openat(&ssh, name.as_str(), flags, Mode::from_bits_truncate(FILE_MODE)) {
            Ok(fd) => break (name, fd),
            Err(Errno::EEXIST) => continue,
            Err(error) => return Err(failed(owner, "creating a new", &final_path, error)),
        }
    };
    let temp_path: PathBuf = owner.home.join(SSH_DIR).join(&name);
    let written = write_temp(owner, fd, content).and_then(|()| {
        renameat(&ssh, name.as_str(), &ssh, KEYS_FILE).map_err(|error| std::io::Error::from_raw_os_error(error as i32))
    });
    if let Err(error) = written {
        let _ = unlinkat(&ssh, name.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(failed(owner, "writing", &temp_path, error));
    }
    // The rename itself is durable once the directory is synced.
    if let Err(error) = ssh.sync_all() {
        if error.kind() != ErrorKind::InvalidInput {
            return Err(failed(owner, "syncing the directory of", &final_path, error));
        }
    }
    Ok(())
}

fn write_temp(owner: &Owner<'_>, fd: OwnedFd, content: &str) -> std::io::Result<()> {
    let mut file = File::from(fd);
    file.write_all(content.as_bytes())?;
    std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    file.sync_all()
}
