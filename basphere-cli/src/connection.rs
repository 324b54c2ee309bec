//! Which server to talk to: flags, then environment, then the named context of the config file
//! (`~/.config/basphere/config.yaml`), then the local socket.
//!
//! ```yaml
//! current: prod
//! contexts:
//!   prod: { server: "http://basphere.corp:8080", token_file: "~/.config/basphere/prod.token" }
//!   bastion: { socket: /run/basphere/basphere.sock }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::client::Endpoint;
use crate::exit::CliError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub server: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    /// The certificate authority to trust for an https:// server (PEM).
    pub ca_file: Option<PathBuf>,
}

/// What the flags and environment said.
#[derive(Clone, Debug, Default)]
pub struct Requested {
    pub socket: Option<PathBuf>,
    pub server: Option<String>,
    pub token: Option<String>,
    pub context: Option<String>,
    pub ca_file: Option<PathBuf>,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn expand(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), home()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

pub fn config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BASPHERE_CLI_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| home().map(|h| h.join(".config")))?;
    Some(base.join("basphere/config.yaml"))
}

fn load(path: &Path) -> Result<ConfigFile, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml::from_str(&text)
            .map_err(|error| CliError::usage(format!("{} is not a valid CLI configuration: {error}", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(error) => Err(CliError::other(format!("reading {}: {error}", path.display()))),
    }
}

/// The default socket: the system one on a bastion, else the one `basphere-server` makes in
/// its default data directory.
pub fn default_socket() -> PathBuf {
    let system = PathBuf::from("/run/basphere/basphere.sock");
    if system.exists() {
        system
    } else {
        PathBuf::from(".basphere/basphere.sock")
    }
}

pub fn resolve(requested: &Requested) -> Result<Endpoint, CliError> {
    if let Some(server) = &requested.server {
        return Ok(Endpoint::Tcp {
            base: server.trim_end_matches('/').to_owned(),
            token: requested.token.clone(),
            ca_file: requested.ca_file.clone(),
        });
    }
    if let Some(socket) = &requested.socket {
        return Ok(Endpoint::Socket(socket.clone()));
    }
    let file = match config_path() {
        Some(path) => load(&path)?,
        None => ConfigFile::default(),
    };
    let name = requested.context.clone().or(file.current.clone());
    if let Some(name) = name {
        let context = file.contexts.get(&name).cloned().ok_or_else(|| {
            CliError::usage(format!(
                "no context {name:?} in the CLI configuration; known: {}",
                file.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        if let Some(server) = context.server {
            let token = match (&requested.token, &context.token, &context.token_file) {
                (Some(token), _, _) => Some(token.clone()),
                (None, Some(token), _) => Some(token.clone()),
                (None, None, Some(file)) => {
                    let path = expand(file);
                    Some(
                        std::fs::read_to_string(&path)
                            .map_err(|error| {
                                CliError::usage(format!("reading the token file {}: {error}", path.display()))
                            })?
                            .trim()
                            .to_owned(),
                    )
                }
                (None, None, None) => None,
            };
            let ca_file = requested.ca_file.clone().or_else(|| context.ca_file.as_deref().map(expand));
            return Ok(Endpoint::Tcp { base: server.trim_end_matches('/').to_owned(), token, ca_file });
        }
        if let Some(socket) = context.socket {
            return Ok(Endpoint::Socket(expand(&socket)));
        }
        return Err(CliError::usage(format!("the context {name:?} names neither a server nor a socket")));
    }
    Ok(Endpoint::Socket(default_socket()))
}
