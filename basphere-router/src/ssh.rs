//! [`SshRouter`]: the tenant routers of a router host, reached with the system's `ssh` client and
//! the helper that is the forced command of the server's key there ([`crate::helper`]). Each
//! call is one `ssh` run: the request on its standard input, the answer on its standard output,
//! the whole of it within `networks.linux.ssh.timeout_seconds` (the client is killed past it).

use std::process::Stdio;

use async_trait::async_trait;
use basphere_core::error::{Error, Message, Result};
use basphere_core::router::{RouterStatus, TenantRouter, TenantRouterSpec};
use basphere_core::validate::Username;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::settings::SshRouterSettings;
use crate::wire::{Request, Response, WireError, WireSpec};

/// The backend name in errors.
const BACKEND: &str = "router host";

/// Where the `ssh` client is looked for; the server's own PATH may be anything.
const SEARCH_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";

/// What the client asks to run. The helper is the key's forced command and never reads it; a
/// key without one runs this, which is not in the PATH: the request is never read by a shell.
const REMOTE_COMMAND: &str = "basphere-router-helper";

/// The longest answer read (a status is a few hundred bytes).
const MAX_ANSWER: u64 = 1024 * 1024;

/// At most this many characters of what `ssh` said go into an error message.
const MAX_SAID: usize = 2000;

/// The `linux` router of a router host, through its helper over SSH (`networks.linux.ssh`).
pub struct SshRouter {
    settings: SshRouterSettings,
}

/// What one `ssh` run left.
struct Finished {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

async fn read_bounded<R: AsyncRead + Unpin>(reader: Option<R>, limit: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(reader) = reader {
        // A read error leaves what was read: the answer is judged on that.
        let _ = reader.take(limit).read_to_end(&mut bytes).await;
    }
    bytes
}

impl SshRouter {
    /// The router host `settings` names, once its files are as `ssh` needs them
    /// ([`SshRouterSettings::check_files`]).
    pub fn new(settings: SshRouterSettings) -> Result<SshRouter> {
        settings.check_files()?;
        Ok(SshRouter { settings })
    }

    pub fn settings(&self) -> &SshRouterSettings {
        &self.settings
    }

    /// `user@host:port`, in messages.
    fn destination(&self) -> String {
        format!("{}@{}:{}", self.settings.user, self.settings.host, self.settings.port)
    }

    /// The `ssh` command line, one word per entry (no shell): no configuration file but these
    /// options, no agent, no password or other prompt, the router host's key from the known
    /// hosts file alone, the one identity file.
    pub fn command(&self) -> Vec<String> {
        let settings = &self.settings;
        let connect = settings.timeout.as_secs().clamp(1, 15);
        let mut words: Vec<String> = ["ssh", "-T", "-F", "/dev/null"].map(String::from).into();
        for option in [
            "BatchMode=yes".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
            format!("UserKnownHostsFile={}", settings.known_hosts_file.display()),
            "GlobalKnownHostsFile=/dev/null".to_owned(),
            "UpdateHostKeys=no".to_owned(),
            "IdentitiesOnly=yes".to_owned(),
            "IdentityAgent=none".to_owned(),
            "ClearAllForwardings=yes".to_owned(),
            format!("ConnectTimeout={connect}"),
            "LogLevel=ERROR".to_owned(),
        ] {
            words.extend(["-o".to_owned(), option]);
        }
        words.extend(["-i".to_owned(), settings.identity_file.display().to_string()]);
        words.extend(["-p".to_owned(), settings.port.to_string()]);
        words.push(format!("{}@{}", settings.user, settings.host));
        words.push(REMOTE_COMMAND.to_owned());
        words
    }

    /// Whether the helper answers and the router host's own settings hold (its WAN bridge is
    /// there): the helper's version, for `check-config`.
    pub async fn ping(&self) -> Result<String> {
        let response = self.call(&Request::Ping).await?;
        let helper = response.helper.ok_or_else(|| self.not_understood("no version in the answer to ping"))?;
        Ok(format!("{helper} on {}", self.destination()))
    }

    async fn run(&self, input: &[u8]) -> Result<Finished> {
        let words = self.command();
        let (program, args) = words.split_first().expect("a program");
        tracing::debug!(command = %words.join(" "), "calling the router host");
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", SEARCH_PATH)
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| Error::backend(BACKEND, Message(format!("`ssh` could not be started: {error}"))))?;
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let exchange = async {
            let write = async move {
                if let Some(mut stdin) = stdin {
                    // The helper may answer (a refusal) before it read everything: the answer
                    // is read whether or not the request was all written.
                    let _ = stdin.write_all(input).await;
                    let _ = stdin.shutdown().await;
                }
            };
            let ((), stdout, stderr) =
                tokio::join!(write, read_bounded(stdout, MAX_ANSWER), read_bounded(stderr, MAX_ANSWER));
            let status = child
                .wait()
                .await
                .map_err(|error| Error::backend(BACKEND, Message(format!("`ssh` could not be waited for: {error}"))))?;
            Ok(Finished { code: status.code(), stdout, stderr: String::from_utf8_lossy(&stderr).into_owned() })
        };
        // Past the timeout the future, and with it the child, is dropped: the client is killed.
        tokio::time::timeout(self.settings.timeout, exchange).await.map_err(|_| {
            Error::Timeout(format!(
                "the router host {} did not answer within {:?}; the ssh client was stopped \
                 (networks.linux.ssh.timeout_seconds)",
                self.destination(),
                self.settings.timeout
            ))
        })?
    }

    /// Sends `request`; the helper's answer, or its error with its kind.
    async fn call(&self, request: &Request) -> Result<Response> {
        let mut line = serde_json::to_vec(request).expect("requests serialise");
        line.push(b'\n');
        let finished = self.run(&line).await?;
        let text = String::from_utf8_lossy(&finished.stdout);
        let answer = text.lines().find(|line| !line.trim().is_empty());
        if let Some(response) = answer.and_then(|line| serde_json::from_str::<Response>(line).ok()) {
            return match response.error {
                None => Ok(response),
                Some(error) => Err(self.helper_error(error)),
            };
        }
        Err(self.no_answer(&finished, answer))
    }

    /// The helper's error as core's, keeping its kind.
    fn helper_error(&self, error: WireError) -> Error {
        let WireError { kind, field, message } = error;
        let on_host = |message: String| format!("on the router host {}: {message}", self.destination());
        match kind.as_str() {
            "invalid-input" => Error::invalid(field.unwrap_or_else(|| "router request".into()), message),
            "not-found" => Error::NotFound { kind: "tenant router", name: message },
            "already-exists" => Error::AlreadyExists { kind: "tenant router", name: message },
            "conflict" => Error::Conflict(on_host(message)),
            "exhausted" => Error::Exhausted(on_host(message)),
            "forbidden" => Error::Forbidden(on_host(message)),
            "not-supported" => Error::NotSupported(on_host(message)),
            "timeout" => Error::Timeout(on_host(message)),
            _ => Error::backend(BACKEND, Message(on_host(message))),
        }
    }

    fn not_understood(&self, what: &str) -> Error {
        Error::backend(
            BACKEND,
            Message(format!("the router helper on {} is not understood: {what}", self.destination())),
        )
    }

    /// Why `ssh` brought no answer, naming the setting to look at.
    fn no_answer(&self, finished: &Finished, stdout: Option<&str>) -> Error {
        // ssh's lines in one, without the banners of its warnings.
        let said: String = finished
            .stderr
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.chars().all(|c| c == '@'))
            .collect::<Vec<_>>()
            .join(" / ")
            .chars()
            .take(MAX_SAID)
            .collect();
        let settings = &self.settings;
        let destination = self.destination();
        let message = match finished.code {
            // ssh's own failures: connecting, the host's key, logging in.
            Some(255) | None => {
                let has = |words: &[&str]| words.iter().any(|word| said.contains(word));
                if has(&["Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED"]) {
                    format!(
                        "the router host {destination} did not show the key networks.linux.ssh.known_hosts_file \
                         ({}) holds for it; check that file (ssh said: {said})",
                        settings.known_hosts_file.display()
                    )
                } else if has(&["Permission denied", "Too many authentication failures"]) {
                    format!(
                        "the router host {destination} refused the key networks.linux.ssh.identity_file ({}); \
                         check that its public key is in {}'s authorized_keys there, with the helper as forced \
                         command (ssh said: {said})",
                        settings.identity_file.display(),
                        settings.user
                    )
                } else if has(&["Load key", "UNPROTECTED", "bad permissions", "invalid format", "no such identity"]) {
                    format!(
                        "ssh cannot use the key networks.linux.ssh.identity_file ({}); check that file \
                         (ssh said: {said})",
                        settings.identity_file.display()
                    )
                } else {
                    format!(
                        "cannot reach the router host {destination}; check networks.linux.ssh.host and \
                         networks.linux.ssh.port, and that sshd runs there (ssh said: {said})"
                    )
                }
            }
            // The key was taken but ran what the client asked: it has no forced command.
            Some(127) if said.contains(REMOTE_COMMAND) => format!(
                "the router host {destination} took the key networks.linux.ssh.identity_file ({}) but did not \
                 run the helper: its line in {}'s authorized_keys needs \
                 command=\"/usr/lib/basphere/basphere-router-helper --config /etc/basphere/router.yaml\",restrict",
                settings.identity_file.display(),
                settings.user
            ),
            Some(code) => {
                let printed: String = stdout.unwrap_or("").chars().take(MAX_SAID).collect();
                format!(
                    "the router helper on {destination} gave no answer (exit status {code}; it printed \
                     {printed:?}; said: {said})"
                )
            }
        };
        Error::backend(BACKEND, Message(message))
    }
}

#[async_trait]
impl TenantRouter for SshRouter {
    fn backend_name(&self) -> &'static str {
        "linux-ssh"
    }

    async fn ensure(&self, spec: &TenantRouterSpec) -> Result<RouterStatus> {
        let response = self.call(&Request::Ensure { spec: WireSpec::from(spec) }).await?;
        let status = response.status.ok_or_else(|| self.not_understood("no status in the answer to ensure"))?;
        tracing::info!(tenant = %spec.tenant, host = %self.settings.host, "tenant router in place on the router host");
        Ok(status.into())
    }

    async fn status(&self, tenant: &Username) -> Result<Option<RouterStatus>> {
        let response = self.call(&Request::Status { tenant: tenant.to_string() }).await?;
        Ok(response.status.map(Into::into))
    }

    async fn remove(&self, tenant: &Username) -> Result<()> {
        self.call(&Request::Remove { tenant: tenant.to_string() }).await?;
        tracing::info!(%tenant, host = %self.settings.host, "tenant router removed from the router host");
        Ok(())
    }
}
