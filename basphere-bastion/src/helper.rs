//! The bastion helper: the only part of Basphere that runs as root, so that the server does not.
//!
//! Making a login needs root (`useradd` writes `/etc/passwd` and `/etc/shadow`, makes a home and
//! chowns it). The server runs as its own unprivileged user under `NoNewPrivileges`, which rules
//! out sudo and setuid tools; so `basphere-server bastion-helper`, a separate root service, owns
//! a Unix socket that only the server's user may use, and does exactly three things over it:
//! ensure a login with a key, replace a login's key, remove a login. It checks every name and key
//! again itself (core's rules), runs the same [`UnixBastion`] code, and never touches a login
//! Basphere did not make.
//!
//! One JSON request per connection, one JSON answer:
//! `{"op":"ensure_login","username":"alice","key":"ssh-ed25519 ..."}` →
//! `{"uid":1001}` or `{"error":{"kind":"already-exists","message":"..."}}`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use basphere_core::bastion::Bastion;
use basphere_core::error::{Error, Message, Result};
use basphere_core::validate::{SshPublicKey, Username};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::UnixBastion;

/// The backend name in errors.
const BACKEND: &str = "bastion helper";

/// The longest request accepted (a key line is well under this).
const MAX_REQUEST: usize = 16 * 1024;

/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    EnsureLogin {
        username: String,
        key: String,
    },
    SetKey {
        username: String,
        key: String,
    },
    RemoveLogin {
        username: String,
    },
    /// Whether the helper answers (check-config).
    Ping,
}

/// An error as it crosses the socket.
#[derive(Debug, Serialize, Deserialize)]
struct WireError {
    kind: String,
    message: String,
}

/// One answer.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<WireError>,
}

/// The server's side: logins made by the helper listening on `socket`.
#[derive(Debug, Clone)]
pub struct HelperBastion {
    socket: PathBuf,
    timeout: Duration,
}

impl HelperBastion {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        // useradd may wait for the passwd lock; the helper's own commands time out at 30 s.
        HelperBastion { socket: socket.into(), timeout: Duration::from_secs(75) }
    }

    /// Whether the helper answers this account on its socket (for `check-config`).
    pub async fn ping(&self) -> Result<()> {
        self.call(&Request::Ping).await.map(drop)
    }

    async fn call(&self, request: &Request) -> Result<Option<u32>> {
        let unreachable = |error: std::io::Error| {
            Error::backend(
                BACKEND,
                Message(format!(
                    "cannot reach the bastion helper at {} ({error}); is basphere-bastion-helper.service running? (bastion.helper_socket)",
                    self.socket.display()
                )),
            )
        };
        let exchange = async {
            let mut stream = UnixStream::connect(&self.socket).await.map_err(unreachable)?;
            let mut line = serde_json::to_vec(request).expect("requests serialise");
            line.push(b'\n');
            // The helper may answer (a refusal) and close before reading: read its answer even
            // when the write failed.
            let written = stream.write_all(&line).await;
            let mut answer = String::new();
            let read = BufReader::new(stream).take(MAX_REQUEST as u64).read_line(&mut answer).await;
            if answer.is_empty() {
                written.and(read).map_err(unreachable)?;
            }
            let response: Response = serde_json::from_str(&answer).map_err(|error| {
                Error::backend(BACKEND, Message(format!("the bastion helper's answer is not understood ({error})")))
            })?;
            match response.error {
                None => Ok(response.uid),
                Some(error) => Err(match error.kind.as_str() {
                    "invalid-input" => Error::invalid("bastion login", error.message),
                    "already-exists" => Error::AlreadyExists { kind: "bastion login", name: error.message },
                    "not-found" => Error::NotFound { kind: "bastion login", name: error.message },
                    "forbidden" => Error::Forbidden(error.message),
                    _ => Error::backend(BACKEND, Message(error.message)),
                }),
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::Timeout(format!("the bastion helper did not answer within {:?}", self.timeout)))?
    }
}

#[async_trait]
impl Bastion for HelperBastion {
    fn backend_name(&self) -> &'static str {
        "helper"
    }

    async fn ensure_login(&self, username: &Username, key: &SshPublicKey) -> Result<Option<u32>> {
        let request = Request::EnsureLogin { username: username.to_string(), key: key.as_str().to_owned() };
        let uid = self.call(&request).await?;
        uid.map(Some).ok_or_else(|| Error::backend(BACKEND, Message("the bastion helper sent no uid".into())))
    }

    async fn set_key(&self, username: &Username, key: &SshPublicKey) -> Result<()> {
        self.call(&Request::SetKey { username: username.to_string(), key: key.as_str().to_owned() }).await.map(drop)
    }

    async fn remove_login(&self, username: &Username) -> Result<()> {
        self.call(&Request::RemoveLogin { username: username.to_string() }).await.map(drop)
    }
}

/// Binds the helper's socket at `path` for the account `allowed_uid` alone: mode 0600, owned by
/// that account (a stale socket file is replaced).
pub fn bind(path: &Path, allowed_uid: u32) -> std::io::Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(allowed_uid)), None)
        .map_err(|errno| std::io::Error::from_raw_os_error(errno as i32))?;
    Ok(listener)
}

/// Serves requests from `allowed_uid` (the server's account) until the listener fails. Each
/// connection is one request; others' connections are answered `forbidden` and closed.
pub async fn serve(listener: UnixListener, bastion: Arc<UnixBastion>, allowed_uid: u32) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let bastion = bastion.clone();
        tokio::spawn(async move {
            if let Err(error) = answer(stream, &bastion, allowed_uid).await {
                tracing::warn!(%error, "bastion helper: a connection failed");
            }
        });
    }
}

async fn answer(stream: UnixStream, bastion: &UnixBastion, allowed_uid: u32) -> std::io::Result<()> {
    let peer = stream.peer_cred()?.uid();
    let (reader, mut writer) = stream.into_split();
    let response = if peer != allowed_uid {
        tracing::warn!(peer, "bastion helper: refused a connection from an account that is not the server's");
        Response {
            error: Some(WireError {
                kind: "forbidden".into(),
                message: format!("uid {peer} may not use the bastion helper"),
            }),
            ..Response::default()
        }
    } else {
        let mut line = String::new();
        let read =
            tokio::time::timeout(REQUEST_TIMEOUT, BufReader::new(reader).take(MAX_REQUEST as u64).read_line(&mut line))
                .await;
        match read {
            Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
                Ok(request) => perform(bastion, request).await,
                Err(error) => failure(Error::invalid("request", format!("not a bastion helper request ({error})"))),
            },
            Ok(Err(error)) => return Err(error),
            Err(_) => failure(Error::Timeout("no request within 10 s".into())),
        }
    };
    let mut line = serde_json::to_vec(&response).expect("responses serialise");
    line.push(b'\n');
    writer.write_all(&line).await
}

fn failure(error: Error) -> Response {
    Response {
        error: Some(WireError { kind: error.kind().to_owned(), message: error.to_string() }),
        ..Response::default()
    }
}

/// Runs one request after checking its name and key by core's rules.
async fn perform(bastion: &UnixBastion, request: Request) -> Response {
    let outcome = async {
        match request {
            Request::EnsureLogin { username, key } => {
                let (username, key) = (Username::parse(&username)?, SshPublicKey::parse(&key)?);
                let uid = bastion.ensure_login(&username, &key).await?;
                tracing::info!(%username, ?uid, "bastion helper: login ensured");
                Ok(uid)
            }
            Request::SetKey { username, key } => {
                let (username, key) = (Username::parse(&username)?, SshPublicKey::parse(&key)?);
                bastion.set_key(&username, &key).await?;
                tracing::info!(%username, "bastion helper: key replaced");
                Ok(None)
            }
            Request::Ping => Ok(None),
            Request::RemoveLogin { username } => {
                let username = Username::parse(&username)?;
                bastion.remove_login(&username).await?;
                tracing::info!(%username, "bastion helper: login removed");
                Ok(None)
            }
        }
    };
    match outcome.await {
        Ok(uid) => Response { uid, error: None },
        Err(error) => failure(error),
    }
}
