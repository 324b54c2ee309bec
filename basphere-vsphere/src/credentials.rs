//! The vCenter account both vSphere backends log in with: read from the file that
//! `vsphere.credentials_file` names, never logged, never written anywhere.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use basphere_core::{Error, Result};

/// A vCenter user and password. `Debug` shows the user only. It is serialised only to hand it to
/// the vSphere API agent over its standard input.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

impl Credentials {
    /// Reads `VSPHERE_USER` and `VSPHERE_PASSWORD` from a file of `KEY=value` lines (an optional
    /// `export ` and quotes are accepted, as in the original's `vsphere.env`). The file must not
    /// be readable by group or others.
    pub fn from_file(path: &Path) -> Result<Credentials> {
        let invalid = |message: String| Error::invalid("vsphere.credentials_file", message);
        let meta = std::fs::metadata(path).map_err(|error| invalid(format!("{}: {error}", path.display())))?;
        if meta.mode() & 0o077 != 0 {
            return Err(invalid(format!(
                "{} is readable by others (mode {:o}); chmod 600 it",
                path.display(),
                meta.mode() & 0o777
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|error| invalid(format!("{}: {error}", path.display())))?;
        let mut user = None;
        let mut password = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((key, value)) = line.split_once('=') else { continue };
            let value = value.trim();
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(value);
            match key.trim() {
                "VSPHERE_USER" => user = Some(value.to_owned()),
                "VSPHERE_PASSWORD" => password = Some(value.to_owned()),
                _ => {}
            }
        }
        match (user, password) {
            (Some(user), Some(password)) => Ok(Credentials { user, password }),
            _ => Err(invalid(format!("{} needs VSPHERE_USER and VSPHERE_PASSWORD", path.display()))),
        }
    }
}
