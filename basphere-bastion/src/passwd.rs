//! Reading `ROOT/etc/passwd` and `ROOT/etc/group` directly: `getent` and `id` would read the
//! host's databases (and NSS), not the root Basphere was configured with.

use std::path::{Path, PathBuf};

use basphere_core::error::{Error, Message, Result};

/// One line of a passwd file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

impl PasswdEntry {
    /// The full-name part of the GECOS field (before the first `,`; users may be allowed to
    /// change the other parts with chfn).
    pub fn full_name(&self) -> &str {
        self.gecos.split(',').next().unwrap_or_default()
    }
}

/// The entries of a passwd file; comments, NIS markers (`+`/`-`) and malformed lines are skipped.
pub(crate) fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|line| !line.starts_with(['#', '+', '-']))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let [name, _password, uid, gid, gecos, home, shell] = fields.as_slice() else {
                return None;
            };
            Some(PasswdEntry {
                name: (*name).to_owned(),
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                gecos: (*gecos).to_owned(),
                home: (*home).to_owned(),
                shell: (*shell).to_owned(),
            })
        })
        .filter(|entry| !entry.name.is_empty())
        .collect()
}

/// `(name, gid)` of every line of a group file.
pub(crate) fn parse_group(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter(|line| !line.starts_with(['#', '+', '-']))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let [name, _password, gid, _members] = fields.as_slice() else {
                return None;
            };
            Some(((*name).to_owned(), gid.parse().ok()?))
        })
        .filter(|(name, _)| !name.is_empty())
        .collect()
}

/// `ROOT/etc/NAME`.
pub(crate) fn etc_file(root: &Path, name: &str) -> PathBuf {
    root.join("etc").join(name)
}

async fn read(path: &Path) -> Result<String> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|error| Error::backend(crate::BACKEND, Message(format!("reading {}: {error}", path.display()))))
}

/// The passwd entry of `name` under `root`, if any.
pub(crate) async fn find_user(root: &Path, name: &str) -> Result<Option<PasswdEntry>> {
    let text = read(&etc_file(root, "passwd")).await?;
    Ok(parse_passwd(&text).into_iter().find(|entry| entry.name == name))
}

/// The gid of the group `name` under `root`, if it exists.
pub(crate) async fn find_group(root: &Path, name: &str) -> Result<Option<u32>> {
    let text = read(&etc_file(root, "group")).await?;
    Ok(parse_group(&text).into_iter().find(|(group, _)| group == name).map(|(_, gid)| gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_are_parsed_and_odd_ones_skipped() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    # a comment\n\
                    +nisuser::::::\n\
                    broken:x:1\n\
                    baduid:x:abc:1::/:/bin/sh\n\
                    alice:x:1000:1001:Basphere account alice,room 4,,:/home/alice:/bin/bash\n\
                    \n";
        let entries = parse_passwd(text);
        assert_eq!(entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["root", "alice"]);
        let alice = &entries[1];
        assert_eq!((alice.uid, alice.gid, alice.home.as_str()), (1000, 1001, "/home/alice"));
        assert_eq!(alice.full_name(), "Basphere account alice");
        assert_eq!(alice.shell, "/bin/bash");
    }

    #[test]
    fn group_lines_are_parsed() {
        let groups = parse_group("root:x:0:\nbasphere-users:x:1001:alice,bob\nbroken:x\n");
        assert_eq!(groups, [("root".to_owned(), 0), ("basphere-users".to_owned(), 1001)]);
    }
}
