//! `networks.linux`: where the `linux` router makes its namespaces and what it joins them to, or
//! (`networks.linux.ssh`) the router host that does, and how the server reaches it; every key
//! checked and named in errors.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use basphere_core::error::{Error, Result};
use serde::Deserialize;

use crate::LinuxRouterSettings;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLinux {
    namespace_prefix: Option<String>,
    host_namespace: Option<String>,
    wan_bridge: Option<String>,
    trunk: Option<String>,
    timeout_seconds: Option<u64>,
    ssh: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSsh {
    host: Option<String>,
    port: Option<u64>,
    user: Option<String>,
    identity_file: Option<PathBuf>,
    known_hosts_file: Option<PathBuf>,
    timeout_seconds: Option<u64>,
}

/// Where the tenant routers are, from `networks.linux`.
#[derive(Clone, Debug)]
pub enum RouterSettings {
    /// On this host ([`crate::LinuxRouter`]): no `networks.linux.ssh`.
    Local(LinuxRouterSettings),
    /// On a router host, through its helper over SSH ([`crate::SshRouter`]).
    Ssh(SshRouterSettings),
}

/// How the server reaches the router host's helper (`networks.linux.ssh`).
#[derive(Clone, Debug)]
pub struct SshRouterSettings {
    /// The router host's name or address.
    pub host: String,
    pub port: u16,
    /// The account the key logs in as on the router host (its `authorized_keys` holds the key
    /// with the helper as forced command).
    pub user: String,
    /// The private key the server logs in with: readable by the server's account alone.
    pub identity_file: PathBuf,
    /// The router host's own key, as `ssh-keyscan` prints it (no other host key is accepted).
    pub known_hosts_file: PathBuf,
    /// How long one call (connecting, the helper's work, its answer) may take.
    pub timeout: Duration,
}

impl LinuxRouterSettings {
    /// The prefix of every namespace the router makes, unless `networks.linux.namespace_prefix`
    /// says otherwise.
    pub const DEFAULT_PREFIX: &'static str = "bsp-";
    /// The WAN bridge of the router host, unless `networks.linux.wan_bridge` says otherwise.
    pub const DEFAULT_WAN_BRIDGE: &'static str = "br-wan";

    /// The settings of a router on this host from the `networks.linux` section as written (null
    /// when absent: every default). Unknown keys and bad values are errors naming the key; so is
    /// `ssh` (a router host elsewhere: see [`RouterSettings::from_section`]).
    pub fn from_section(section: &serde_yaml::Value) -> Result<Self> {
        let raw = RawLinux::parse(section)?;
        if raw.ssh.is_some() {
            return Err(Error::invalid(
                "networks.linux.ssh",
                "names a router host reached over SSH, where a router on this host is needed",
            ));
        }
        raw.local()
    }

    /// The router host's own settings, for its helper: the file at `path` (its
    /// `/etc/basphere/router.yaml`), which holds the server's `networks.linux` keys as the
    /// server's file does, under `networks: {linux: {...}}`, without `ssh`.
    pub fn from_helper_file(path: &Path) -> Result<Self> {
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct File {
            networks: Networks,
        }
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct Networks {
            linux: serde_yaml::Value,
        }
        let text = std::fs::read_to_string(path)
            .map_err(|error| Error::invalid("--config", format!("cannot read {}: {error}", path.display())))?;
        let file: File = serde_yaml::from_str(&text).map_err(|error| {
            Error::invalid(
                "--config",
                format!(
                    "{}: {error} (accepted: networks: {{linux: {{namespace_prefix, host_namespace, wan_bridge, \
                     timeout_seconds}}}})",
                    path.display()
                ),
            )
        })?;
        if file.networks.linux.get("ssh").is_some() {
            return Err(Error::invalid(
                "networks.linux.ssh",
                format!(
                    "{}: the helper runs the router on this host; ssh belongs in the server's configuration",
                    path.display()
                ),
            ));
        }
        LinuxRouterSettings::from_section(&file.networks.linux)
    }
}

impl SshRouterSettings {
    /// The SSH port, unless `networks.linux.ssh.port` says otherwise.
    pub const DEFAULT_PORT: u16 = 22;
    /// The account on the router host, unless `networks.linux.ssh.user` says otherwise.
    pub const DEFAULT_USER: &'static str = "root";
    /// How long one call may take, unless `networks.linux.ssh.timeout_seconds` says otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

    fn from_raw(section: serde_yaml::Value) -> Result<Self> {
        let raw: RawSsh = if section.is_null() {
            RawSsh::default()
        } else {
            serde_yaml::from_value(section).map_err(|error| Error::invalid("networks.linux.ssh", error.to_string()))?
        };
        let host = raw.host.ok_or_else(|| {
            Error::invalid("networks.linux.ssh.host", "is required: the router host's name or address")
        })?;
        let host_ok = (1..=253).contains(&host.len())
            && !host.starts_with(['-', '.'])
            && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
        if !host_ok {
            return Err(Error::invalid(
                "networks.linux.ssh.host",
                format!("{host:?} is not a host name or IP address (letters, digits, ., - and :)"),
            ));
        }
        let port = match raw.port {
            None => Self::DEFAULT_PORT,
            Some(port @ 1..=65535) => port as u16,
            Some(other) => {
                return Err(Error::invalid("networks.linux.ssh.port", format!("{other} is not a port (1-65535)")))
            }
        };
        let user = raw.user.unwrap_or_else(|| Self::DEFAULT_USER.into());
        let user_ok = (1..=32).contains(&user.len())
            && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && user.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
        if !user_ok {
            return Err(Error::invalid(
                "networks.linux.ssh.user",
                format!(
                    "{user:?} is not an account name (a lowercase letter or _, then lowercase letters, digits, _ or -)"
                ),
            ));
        }
        // ssh splits its options' values at spaces and expands % and ~ in these paths.
        let file = |key: &str, path: Option<PathBuf>, what: &str| match path {
            Some(path)
                if path.is_absolute()
                    && path.to_str().is_some_and(|text| {
                        !text.chars().any(|c| c.is_whitespace() || c.is_control() || "%\"'~".contains(c))
                    }) =>
            {
                Ok(path)
            }
            Some(path) => Err(Error::invalid(
                key,
                format!("{:?} is not an absolute path without spaces, quotes, % or ~", path.display()),
            )),
            None => Err(Error::invalid(key, format!("is required: {what}"))),
        };
        let identity_file = file(
            "networks.linux.ssh.identity_file",
            raw.identity_file,
            "the private key the server logs in to the router host with",
        )?;
        let known_hosts_file = file(
            "networks.linux.ssh.known_hosts_file",
            raw.known_hosts_file,
            "the router host's key, as `ssh-keyscan <host>` prints it",
        )?;
        let timeout = match raw.timeout_seconds {
            None => Self::DEFAULT_TIMEOUT,
            Some(seconds @ 1..=600) => Duration::from_secs(seconds),
            Some(other) => {
                return Err(Error::invalid(
                    "networks.linux.ssh.timeout_seconds",
                    format!("{other} is not 1 to 600 seconds"),
                ))
            }
        };
        Ok(SshRouterSettings { host, port, user, identity_file, known_hosts_file, timeout })
    }

    /// Whether the files are there as `ssh` needs them: the identity file a regular file this
    /// account can read and no other account can (ssh refuses a key others may read), the known
    /// hosts file a regular file this account can read with at least one key in it.
    pub fn check_files(&self) -> Result<()> {
        let identity = "networks.linux.ssh.identity_file";
        let metadata = regular_file(identity, &self.identity_file)?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::invalid(
                identity,
                format!(
                    "{} may be read by other accounts (mode {mode:04o}); ssh refuses such a key: chmod 600 it",
                    self.identity_file.display()
                ),
            ));
        }
        std::fs::File::open(&self.identity_file).map_err(|error| {
            Error::invalid(
                identity,
                format!(
                    "{} cannot be read by this account (uid {}'s file; {error})",
                    self.identity_file.display(),
                    metadata.uid()
                ),
            )
        })?;
        let known_hosts = "networks.linux.ssh.known_hosts_file";
        regular_file(known_hosts, &self.known_hosts_file)?;
        let text = std::fs::read_to_string(&self.known_hosts_file).map_err(|error| {
            Error::invalid(known_hosts, format!("{} cannot be read: {error}", self.known_hosts_file.display()))
        })?;
        if !text.lines().any(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#')) {
            return Err(Error::invalid(
                known_hosts,
                format!(
                    "{} holds no host key: write the router host's key into it (ssh-keyscan -p {} {})",
                    self.known_hosts_file.display(),
                    self.port,
                    self.host
                ),
            ));
        }
        Ok(())
    }
}

fn regular_file(key: &str, path: &Path) -> Result<std::fs::Metadata> {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_file() => Ok(metadata),
        Ok(_) => Err(Error::invalid(key, format!("{} is not a regular file", path.display()))),
        Err(error) => Err(Error::invalid(key, format!("{}: {error}", path.display()))),
    }
}

impl RouterSettings {
    /// The settings from the `networks.linux` section as written (null when absent: a router on
    /// this host with every default). With `ssh`, the router host's own file holds the router's
    /// settings, and the keys for a router on this host are refused. Unknown keys and bad values
    /// are errors naming the key; the files are not looked at ([`SshRouterSettings::check_files`]).
    pub fn from_section(section: &serde_yaml::Value) -> Result<Self> {
        let raw = RawLinux::parse(section)?;
        match raw.ssh {
            Some(ssh) => {
                let local = [
                    ("namespace_prefix", raw.namespace_prefix.is_some()),
                    ("host_namespace", raw.host_namespace.is_some()),
                    ("wan_bridge", raw.wan_bridge.is_some()),
                    ("trunk", raw.trunk.is_some()),
                    ("timeout_seconds", raw.timeout_seconds.is_some()),
                ];
                if let Some((key, _)) = local.iter().find(|(_, set)| *set) {
                    return Err(Error::invalid(
                        format!("networks.linux.{key}"),
                        "belongs in the router host's own /etc/basphere/router.yaml when networks.linux.ssh is given",
                    ));
                }
                SshRouterSettings::from_raw(ssh).map(RouterSettings::Ssh)
            }
            None => raw.local().map(RouterSettings::Local),
        }
    }
}

impl RawLinux {
    fn parse(section: &serde_yaml::Value) -> Result<Self> {
        if section.is_null() {
            return Ok(RawLinux::default());
        }
        serde_yaml::from_value(section.clone()).map_err(|error| Error::invalid("networks.linux", error.to_string()))
    }

    /// The settings of a router on this host.
    fn local(self) -> Result<LinuxRouterSettings> {
        let timeout = match self.timeout_seconds {
            None => Duration::from_secs(10),
            Some(seconds @ 1..=300) => Duration::from_secs(seconds),
            Some(other) => {
                return Err(Error::invalid(
                    "networks.linux.timeout_seconds",
                    format!("{other} is not 1 to 300 seconds"),
                ))
            }
        };
        let host_namespace = match self.host_namespace {
            Some(name) if name.is_empty() || name.contains('/') || name.len() > 64 => {
                return Err(Error::invalid(
                    "networks.linux.host_namespace",
                    format!("{name:?} is not a namespace name (1 to 64 characters, no /)"),
                ))
            }
            other => other,
        };
        Ok(LinuxRouterSettings {
            namespace_prefix: self.namespace_prefix.unwrap_or_else(|| LinuxRouterSettings::DEFAULT_PREFIX.into()),
            host_namespace,
            wan_bridge: self.wan_bridge.unwrap_or_else(|| LinuxRouterSettings::DEFAULT_WAN_BRIDGE.into()),
            trunk: self.trunk,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LinuxRouter;
    use std::os::unix::fs::PermissionsExt;

    fn parse(yaml: &str) -> Result<LinuxRouter> {
        LinuxRouter::new(LinuxRouterSettings::from_section(&serde_yaml::from_str(yaml).unwrap())?)
    }

    #[test]
    fn every_key_has_a_default_and_a_bad_value_is_named() {
        let router = parse("null").unwrap();
        assert_eq!(router.namespace(&basphere_core::testing::username("alice")), "bsp-alice");
        let custom =
            parse("{namespace_prefix: t-, wan_bridge: wan0, timeout_seconds: 30, host_namespace: edge, trunk: bond0}");
        assert_eq!(custom.unwrap().namespace(&basphere_core::testing::username("bob")), "t-bob");
        for (yaml, key) in [
            ("{wan_bridge: a-very-long-bridge-name}", "networks.linux.wan_bridge"),
            ("{namespace_prefix: 'a b'}", "networks.linux.namespace_prefix"),
            ("{timeout_seconds: 0}", "networks.linux.timeout_seconds"),
            ("{host_namespace: 'a/b'}", "networks.linux.host_namespace"),
            ("{trunk: 'eth0.2000 and more'}", "networks.linux.trunk"),
            ("{bridge: wan}", "networks.linux"),
            ("{ssh: {host: r1, identity_file: /k, known_hosts_file: /h}}", "networks.linux.ssh"),
        ] {
            let error = parse(yaml).err().unwrap_or_else(|| panic!("{yaml} must be refused"));
            assert!(error.to_string().contains(key), "{yaml}: {error}");
        }
    }

    fn ssh(yaml: &str) -> Result<SshRouterSettings> {
        match RouterSettings::from_section(&serde_yaml::from_str(yaml).unwrap())? {
            RouterSettings::Ssh(settings) => Ok(settings),
            RouterSettings::Local(settings) => panic!("{yaml}: a local router {settings:?}"),
        }
    }

    #[test]
    fn the_router_host_over_ssh_has_defaults_and_every_bad_key_is_named() {
        let settings =
            ssh("{ssh: {host: router1.example.org, identity_file: /etc/b/id, known_hosts_file: /etc/b/kh}}").unwrap();
        assert_eq!((settings.port, settings.user.as_str()), (22, "root"));
        assert_eq!(settings.timeout, SshRouterSettings::DEFAULT_TIMEOUT);
        let settings =
            ssh("{ssh: {host: '2001:db8::1', port: 2222, user: basphere, identity_file: /k, known_hosts_file: /h, timeout_seconds: 30}}")
                .unwrap();
        assert_eq!((settings.port, settings.user.as_str(), settings.timeout.as_secs()), (2222, "basphere", 30));
        let good = "identity_file: /k, known_hosts_file: /h";
        for (yaml, key) in [
            (format!("{{ssh: {{{good}}}}}"), "networks.linux.ssh.host"),
            (format!("{{ssh: {{host: -oProxyCommand=x, {good}}}}}"), "networks.linux.ssh.host"),
            (format!("{{ssh: {{host: 'r1 r2', {good}}}}}"), "networks.linux.ssh.host"),
            (format!("{{ssh: {{host: r1, port: 0, {good}}}}}"), "networks.linux.ssh.port"),
            (format!("{{ssh: {{host: r1, port: 65536, {good}}}}}"), "networks.linux.ssh.port"),
            (format!("{{ssh: {{host: r1, user: 'root@x', {good}}}}}"), "networks.linux.ssh.user"),
            (format!("{{ssh: {{host: r1, timeout_seconds: 0, {good}}}}}"), "networks.linux.ssh.timeout_seconds"),
            (format!("{{ssh: {{host: r1, hots: r2, {good}}}}}"), "networks.linux.ssh"),
            ("{ssh: {host: r1, known_hosts_file: /h}}".into(), "networks.linux.ssh.identity_file"),
            ("{ssh: {host: r1, identity_file: key, known_hosts_file: /h}}".into(), "networks.linux.ssh.identity_file"),
            (
                "{ssh: {host: r1, identity_file: '/k%d', known_hosts_file: /h}}".into(),
                "networks.linux.ssh.identity_file",
            ),
            ("{ssh: {host: r1, identity_file: /k}}".into(), "networks.linux.ssh.known_hosts_file"),
            (
                "{ssh: {host: r1, identity_file: /k, known_hosts_file: '/a b'}}".into(),
                "networks.linux.ssh.known_hosts_file",
            ),
            (format!("{{wan_bridge: br0, ssh: {{host: r1, {good}}}}}"), "networks.linux.wan_bridge"),
            (format!("{{timeout_seconds: 5, ssh: {{host: r1, {good}}}}}"), "networks.linux.timeout_seconds"),
        ] {
            let error = ssh(&yaml).err().unwrap_or_else(|| panic!("{yaml} must be refused"));
            assert!(
                matches!(&error, Error::InvalidInput { field, .. } if field == key),
                "{yaml}: {error} (wanted {key})"
            );
        }
    }

    #[test]
    fn the_key_must_be_the_servers_alone_and_the_host_key_known() {
        let dir = tempfile::tempdir().unwrap();
        let (key, known) = (dir.path().join("id"), dir.path().join("known_hosts"));
        let settings = ssh(&format!(
            "{{ssh: {{host: r1, identity_file: {}, known_hosts_file: {}}}}}",
            key.display(),
            known.display()
        ))
        .unwrap();
        let refused = |key: &str, said: &str| {
            let error = settings.check_files().unwrap_err();
            assert!(matches!(&error, Error::InvalidInput { field, .. } if field == key), "{error}");
            assert!(error.to_string().contains(said), "{error}");
        };
        refused("networks.linux.ssh.identity_file", "No such file");
        std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        refused("networks.linux.ssh.identity_file", "mode 0644");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        refused("networks.linux.ssh.known_hosts_file", "No such file");
        std::fs::write(&known, "# nothing yet\n").unwrap();
        refused("networks.linux.ssh.known_hosts_file", "holds no host key");
        std::fs::write(&known, "r1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKe7DQ\n").unwrap();
        settings.check_files().unwrap();
    }

    #[test]
    fn the_helpers_file_holds_the_keys_of_a_router_on_its_host() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("router.yaml");
        std::fs::write(&file, "networks:\n  linux:\n    wan_bridge: wan0\n    namespace_prefix: t-\n").unwrap();
        let settings = LinuxRouterSettings::from_helper_file(&file).unwrap();
        assert_eq!((settings.wan_bridge.as_str(), settings.namespace_prefix.as_str()), ("wan0", "t-"));
        std::fs::write(&file, "").unwrap();
        assert_eq!(LinuxRouterSettings::from_helper_file(&file).unwrap().wan_bridge, "br-wan");
        for (text, said) in [
            ("server: {}\n", "unknown field"),
            ("networks: {linux: {timeout_seconds: 0}}\n", "networks.linux.timeout_seconds"),
            ("networks: {linux: {ssh: {host: r1}}}\n", "ssh belongs in the server's configuration"),
        ] {
            std::fs::write(&file, text).unwrap();
            let error = LinuxRouterSettings::from_helper_file(&file).unwrap_err();
            assert!(error.to_string().contains(said), "{text}: {error}");
        }
    }
}
