//! The server's own configuration: the `server` section's listeners, connections, addresses and
//! data directory, which only this program reads. Core keeps the section unparsed
//! ([`Config::server_section`]) but for `server.workers`, which the platform reads; it is parsed
//! here, once, from the same file, unknown keys refused and every error naming the key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use basphere_core::config::within;
use basphere_core::{Config, Error, Result};
use serde::de::IgnoredAny;
use serde::Deserialize;

/// The configuration file read whole: the platform's configuration and the server's own.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: Config,
    pub server: ServerSettings,
}

impl Settings {
    /// A YAML document parsed and checked by every owner of its sections.
    pub fn from_yaml(text: &str) -> Result<Settings> {
        let config = Config::from_yaml(text)?;
        let server = ServerSettings::from_config(&config)?;
        Ok(Settings { config, server })
    }

    /// The configuration file, or the embedded defaults when there is none.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Settings> {
        match path {
            None => Ok(Settings { config: Config::default(), server: ServerSettings::default() }),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the configuration {}", path.display()))?;
                Settings::from_yaml(&text).with_context(|| format!("the configuration {} is not valid", path.display()))
            }
        }
    }
}

/// The TCP listener's certificate and key (`server.tls.*`), PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The `server` section but `workers` (the platform's, [`basphere_core::config::ServerConfig`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub socket: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub connections: ConnectionConfig,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`server.trusted_proxies`); from
    /// anyone else the header is ignored, so nobody picks the address their limits count against.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The address browsers use to reach the server (`server.public_url`, e.g.
    /// `https://basphere.example.com`), for the links `basphere web` prints and for `Secure`
    /// cookies when it is https. `None`: the TCP listener's own address.
    pub public_url: Option<String>,
    /// HTTPS on the TCP listener (`server.tls.cert_file`, `server.tls.key_file`: PEM files,
    /// read again on SIGHUP); plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// How long a stopping server waits for running operations (`server.shutdown_grace_seconds`).
    pub shutdown_grace_seconds: u64,
}

impl Default for ServerSettings {
    /// What a configuration without a `server` section gives: loopback only.
    fn default() -> Self {
        ServerSettings::from_section(&serde_yaml::Value::Null).expect("the built-in defaults are valid")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    shutdown_grace_seconds: Option<u64>,
    host: Option<String>,
    port: Option<u16>,
    socket: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    /// The platform's, checked by core; named here so that it is a known key.
    #[allow(dead_code)]
    workers: Option<IgnoredAny>,
    connections: RawConnections,
    trusted_proxies: Vec<String>,
    public_url: Option<String>,
    tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConnections {
    max_tcp: Option<usize>,
    max_socket: Option<usize>,
    header_read_timeout_seconds: Option<u64>,
    idle_timeout_seconds: Option<u64>,
}

impl ServerSettings {
    /// The `server` section of `config`, parsed and checked.
    pub fn from_config(config: &Config) -> Result<ServerSettings> {
        ServerSettings::from_section(&config.server_section)
    }

    fn from_section(section: &serde_yaml::Value) -> Result<ServerSettings> {
        let raw: RawServer = if section.is_null() {
            RawServer::default()
        } else {
            serde_path_to_error::deserialize(section).map_err(|error| {
                let path = error.path().to_string();
                let key = if path == "." { "server".to_owned() } else { format!("server.{path}") };
                Error::invalid(key, error.into_inner().to_string())
            })?
        };
        Ok(ServerSettings {
            host: raw.host.unwrap_or_else(|| "127.0.0.1".into()),
            port: raw.port.unwrap_or(8080),
            socket: raw.socket,
            data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from(".basphere")),
            connections: ConnectionConfig::from_raw(raw.connections)?,
            trusted_proxies: raw
                .trusted_proxies
                .iter()
                .map(|address| {
                    address.trim().parse().map_err(|_| {
                        Error::invalid(
                            "server.trusted_proxies",
                            format!("{address:?} is not an IP address (list each proxy's address, e.g. 127.0.0.1)"),
                        )
                    })
                })
                .collect::<Result<_>>()?,
            public_url: raw.public_url.map(|url| public_url(&url)).transpose()?,
            tls: match raw.tls {
                None => None,
                Some(RawTls { cert_file: Some(cert_file), key_file: Some(key_file) }) => {
                    Some(TlsFiles { cert_file, key_file })
                }
                Some(RawTls { cert_file: None, .. }) => {
                    return Err(Error::invalid(
                        "server.tls.cert_file",
                        "is required with server.tls: the certificate chain, PEM",
                    ))
                }
                Some(RawTls { key_file: None, .. }) => {
                    return Err(Error::invalid(
                        "server.tls.key_file",
                        "is required with server.tls: the private key, PEM",
                    ))
                }
            },
            shutdown_grace_seconds: raw.shutdown_grace_seconds.unwrap_or(30),
        })
    }
}

/// `server.public_url`: `http(s)://host[:port]`, without a path (a trailing `/` is dropped).
fn public_url(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Err(Error::invalid(
            "server.public_url",
            format!("{url:?} is not accepted: use http:// or https:// and the host, e.g. https://basphere.example.com"),
        ));
    };
    if rest.is_empty()
        || rest.contains(['/', '?', '#', '@'])
        || rest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(
            "server.public_url",
            format!("{url:?} is not accepted: give the scheme, host and port only (no path, query or user)"),
        ));
    }
    Ok(url.to_owned())
}

// ---- server.connections -----------------------------------------------------------------------

/// How many connections each listener holds and how long an idle one is kept
/// (`server.connections`). Every open connection costs the server a file descriptor, so the TCP
/// listener is held below the process's open-file limit with room left for the Unix socket and
/// the server's own files: a flood of TCP connections never locks the administrator out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// `max_tcp`: connections held at once on the TCP listener. `None` (the default) takes
    /// `DEFAULT_MAX_TCP` or less, whatever the open-file limit leaves (see [`Self::tcp_limit`]).
    pub max_tcp: Option<usize>,
    /// `max_socket` (default 64): connections held at once on the Unix socket.
    pub max_socket: usize,
    /// `header_read_timeout_seconds` (default 10): a request's head must arrive whole within this
    /// time of the server waiting for it, on a new connection or a kept-alive one between
    /// requests; so a connection that sends nothing is closed after it.
    pub header_read_timeout_seconds: u64,
    /// `idle_timeout_seconds` (default 60): a connection with no request in progress on which no
    /// byte moves either way for this long is closed (a client that stopped reading its answer).
    pub idle_timeout_seconds: u64,
}

impl ConnectionConfig {
    /// The TCP listener's cap when `max_tcp` is not set, if the open-file limit allows it.
    pub const DEFAULT_MAX_TCP: usize = 1024;
    /// File descriptors kept for everything but client connections: the listeners, the database
    /// and its write-ahead log, logs, the VM backend's connections and child processes.
    pub const RESERVED_FILES: u64 = 128;

    fn from_raw(raw: RawConnections) -> Result<ConnectionConfig> {
        let max_tcp = match raw.max_tcp {
            None => None,
            Some(value) => Some(within("server.connections.max_tcp", value, 1..=1_000_000)?),
        };
        Ok(ConnectionConfig {
            max_tcp,
            max_socket: within("server.connections.max_socket", raw.max_socket.unwrap_or(64), 1..=10_000)?,
            header_read_timeout_seconds: within(
                "server.connections.header_read_timeout_seconds",
                raw.header_read_timeout_seconds.unwrap_or(10),
                1..=300,
            )?,
            idle_timeout_seconds: within(
                "server.connections.idle_timeout_seconds",
                raw.idle_timeout_seconds.unwrap_or(60),
                1..=3600,
            )?,
        })
    }

    /// The TCP listener's cap for a process allowed `open_files` descriptors: what is left after
    /// the socket's connections and `RESERVED_FILES`, at most `max_tcp` (or `DEFAULT_MAX_TCP`
    /// when unset). A configured `max_tcp` that does not fit is an error naming the key.
    pub fn tcp_limit(&self, open_files: u64) -> Result<usize> {
        let room = open_files.saturating_sub(self.max_socket as u64 + Self::RESERVED_FILES);
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        let fits = |cap: usize| (cap as u64) <= room as u64;
        match self.max_tcp {
            Some(cap) if fits(cap) => Ok(cap),
            Some(cap) => Err(Error::invalid(
                "server.connections.max_tcp",
                format!(
                    "{cap} connections do not fit in this process's open-file limit of {open_files}: \
                     use at most {room} (the limit minus server.connections.max_socket and {} for the server's own \
                     files), or raise the limit (LimitNOFILE= in the systemd unit, ulimit -n)",
                    Self::RESERVED_FILES
                ),
            )),
            None if room == 0 => Err(Error::invalid(
                "server.connections.max_socket",
                format!(
                    "the open-file limit of {open_files} leaves no room for TCP connections after {} socket \
                     connections and {} descriptors for the server's own files: raise the limit \
                     (LimitNOFILE= in the systemd unit, ulimit -n) or lower server.connections.max_socket",
                    self.max_socket,
                    Self::RESERVED_FILES
                ),
            )),
            None => Ok(Self::DEFAULT_MAX_TCP.min(room)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(yaml: &str) -> String {
        match Settings::from_yaml(yaml) {
            Ok(_) => panic!("{yaml} should be refused"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn no_server_section_gives_the_defaults() {
        let settings = Settings::from_yaml("").unwrap();
        assert_eq!(settings.server, ServerSettings::default());
        assert_eq!(settings.server.host, "127.0.0.1", "loopback only by default");
        assert_eq!((settings.server.port, settings.server.shutdown_grace_seconds), (8080, 30));
        assert_eq!(settings.config.server.workers, 16, "core's key of the section");
        let set = Settings::from_yaml("server: {workers: 4, port: 9000, shutdown_grace_seconds: 5}").unwrap();
        assert_eq!((set.config.server.workers, set.server.port, set.server.shutdown_grace_seconds), (4, 9000, 5));
    }

    #[test]
    fn errors_name_the_key_and_what_is_accepted() {
        let cases = [
            ("server: {prot: 80}", "server", "unknown field `prot`"),
            ("server: {port: http}", "server.port", "invalid type"),
            ("server: {workers: 0}", "server.workers", "1-1024"),
            ("server: {trusted_proxies: [nginx]}", "server.trusted_proxies", "IP address"),
            ("server: {public_url: basphere.example.com}", "server.public_url", "https://"),
            ("server: {public_url: 'https://b.example.com/x?y'}", "server.public_url", "no path"),
            ("server: {tls: {cert_file: /c}}", "server.tls.key_file", "required"),
            ("server: [host, port]", "server", "mapping"),
        ];
        for (yaml, key, accepted) in cases {
            let error = error_of(yaml);
            assert!(error.contains(key) && error.contains(accepted), "{yaml}: {error}");
        }
    }

    #[test]
    fn connection_defaults_and_the_tcp_cap_follow_the_open_file_limit() {
        let connections = ServerSettings::default().connections;
        assert_eq!(
            connections,
            ConnectionConfig {
                max_tcp: None,
                max_socket: 64,
                header_read_timeout_seconds: 10,
                idle_timeout_seconds: 60
            }
        );
        // Plenty of descriptors: the default cap. Few: what is left after the socket and the reserve.
        assert_eq!(connections.tcp_limit(1_048_576).unwrap(), 1024);
        assert_eq!(connections.tcp_limit(1024).unwrap(), 1024 - 64 - 128);
        assert_eq!(connections.tcp_limit(256).unwrap(), 256 - 64 - 128);
        let error = connections.tcp_limit(150).unwrap_err().to_string();
        assert!(error.contains("server.connections.max_socket") && error.contains("150"), "{error}");

        let set = Settings::from_yaml("server: {connections: {max_tcp: 500, max_socket: 10}}").unwrap();
        assert_eq!(set.server.connections.tcp_limit(1_000_000).unwrap(), 500, "a configured cap is kept");
        let error = set.server.connections.tcp_limit(600).unwrap_err().to_string();
        assert!(error.contains("server.connections.max_tcp") && error.contains("at most 462"), "{error}");
    }

    #[test]
    fn connection_settings_errors_name_the_key() {
        let cases = [
            ("server: {connections: {max_tcp: 0}}", "server.connections.max_tcp", "1-1000000"),
            ("server: {connections: {max_socket: 0}}", "server.connections.max_socket", "1-10000"),
            (
                "server: {connections: {header_read_timeout_seconds: 0}}",
                "server.connections.header_read_timeout_seconds",
                "1-300",
            ),
            (
                "server: {connections: {idle_timeout_seconds: 7200}}",
                "server.connections.idle_timeout_seconds",
                "1-3600",
            ),
            ("server: {connections: {max_conns: 5}}", "server.connections", "unknown field `max_conns`"),
        ];
        for (yaml, key, accepted) in cases {
            let error = error_of(yaml);
            assert!(error.contains(key) && error.contains(accepted), "{yaml}: {error}");
        }
    }
}
