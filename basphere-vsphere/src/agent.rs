//! The vSphere API backend in a process of its own: `basphere-vsphere-api`, the agent, runs
//! [`VsphereApiProvisioner`](crate::api::VsphereApiProvisioner), and the server drives it through
//! [`AgentProvisioner`]. The binding of the whole vSphere API (`vim_rs`) is most of a binary that
//! links it, and most deployments never call it: in its own executable, it costs nothing to a
//! server on the simulated or the Terraform backend, and its memory is the agent's.
//!
//! The protocol is JSON lines over the agent's standard input and output. The first line is the
//! [`VsphereApiSettings`] (the credentials included, so they are never in an argument or the
//! environment); every later line is a [`Request`], answered by a [`Response`] with the same id,
//! in any order: calls run concurrently, as the [`Provisioner`] contract allows. The agent logs to
//! its standard error, which it shares with the server. It logs out of vCenter and exits when its
//! standard input closes, so it never outlives the server, even one killed with SIGKILL, and on
//! SIGTERM or SIGINT (systemd stopping the service, Ctrl-C in a terminal).
//!
//! The server starts the agent on the first call and again on the call after it died; a call that
//! was under way when it died fails with a backend error (every call is idempotent, so the
//! operation that made it is simply run again).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use basphere_core::provisioner::*;
use basphere_core::validate::Username;
use basphere_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::config::VsphereApiSettings;

/// The agent's executable name.
pub const AGENT: &str = "basphere-vsphere-api";

const BACKEND: &str = "vsphere-api";

/// One [`Provisioner`] call, as the agent receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    Preflight,
    EnsureFolder { owner: Username },
    CreateVm { request: Box<VmRequest> },
    DestroyVm { vm: VmRef },
    Power { vm: VmRef, action: PowerAction },
    Inventory,
    Adopt { vm: VmRef },
    EnsurePortGroups { spec: TenantPortGroups },
    RemovePortGroups { spec: TenantPortGroups },
}

/// A line to the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub call: Call,
}

/// A line from the agent: the answer to the request with this id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The call's result (`null` for the calls that return nothing).
    Ok(serde_json::Value),
    Error(WireError),
}

/// An [`Error`] as it crosses the pipe. Kinds, fields and messages are kept, so the server
/// reports what the in-process backend would; a backend failure keeps its chain of causes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireError {
    InvalidInput {
        field: String,
        message: String,
    },
    InvalidFields(Vec<WireError>),
    NotFound {
        kind: String,
        name: String,
    },
    AlreadyExists {
        kind: String,
        name: String,
    },
    Conflict(String),
    Exhausted(String),
    Unauthorized(String),
    Forbidden(String),
    NotSupported(String),
    Timeout(String),
    RateLimited {
        message: String,
        retry_after_seconds: u64,
    },
    /// The backend's failure: its message, then each cause's.
    Backend {
        chain: Vec<String>,
        log_tail: Vec<String>,
    },
    /// What a backend never answers (a quota); kept as its message.
    Other(String),
}

/// The kinds of thing the vSphere API backend names in `NotFound` and `AlreadyExists`; another
/// kind arrives as the generic "vsphere object".
const KINDS: &[&str] =
    &["VM", "vm", "folder", "task", "template", "port group", "distributed switch", "vsphere object"];

fn known_kind(kind: &str) -> &'static str {
    KINDS.iter().find(|known| **known == kind).copied().unwrap_or("vsphere object")
}

impl From<&Error> for WireError {
    fn from(error: &Error) -> Self {
        match error {
            Error::InvalidInput { field, message } => {
                WireError::InvalidInput { field: field.clone(), message: message.clone() }
            }
            Error::InvalidFields(errors) => WireError::InvalidFields(errors.iter().map(WireError::from).collect()),
            Error::NotFound { kind, name } => WireError::NotFound { kind: (*kind).to_owned(), name: name.clone() },
            Error::AlreadyExists { kind, name } => {
                WireError::AlreadyExists { kind: (*kind).to_owned(), name: name.clone() }
            }
            Error::Conflict(message) => WireError::Conflict(message.clone()),
            Error::Exhausted(message) => WireError::Exhausted(message.clone()),
            Error::Unauthorized(message) => WireError::Unauthorized(message.clone()),
            Error::Forbidden(message) => WireError::Forbidden(message.clone()),
            Error::NotSupported(message) => WireError::NotSupported(message.clone()),
            Error::Timeout(message) => WireError::Timeout(message.clone()),
            Error::RateLimited { message, retry_after_seconds } => {
                WireError::RateLimited { message: message.clone(), retry_after_seconds: *retry_after_seconds }
            }
            Error::Backend { source, log_tail, .. } => {
                let mut chain = vec![source.to_string()];
                let mut cause = source.source();
                while let Some(next) = cause {
                    chain.push(next.to_string());
                    cause = next.source();
                }
                WireError::Backend { chain, log_tail: log_tail.clone() }
            }
            // A quota, or a kind added later: its message.
            other => WireError::Other(other.to_string()),
        }
    }
}

impl From<WireError> for Error {
    fn from(error: WireError) -> Self {
        match error {
            WireError::InvalidInput { field, message } => Error::InvalidInput { field, message },
            WireError::InvalidFields(errors) => Error::InvalidFields(errors.into_iter().map(Error::from).collect()),
            WireError::NotFound { kind, name } => Error::NotFound { kind: known_kind(&kind), name },
            WireError::AlreadyExists { kind, name } => Error::AlreadyExists { kind: known_kind(&kind), name },
            WireError::Conflict(message) => Error::Conflict(message),
            WireError::Exhausted(message) => Error::Exhausted(message),
            WireError::Unauthorized(message) => Error::Unauthorized(message),
            WireError::Forbidden(message) => Error::Forbidden(message),
            WireError::NotSupported(message) => Error::NotSupported(message),
            WireError::Timeout(message) => Error::Timeout(message),
            WireError::RateLimited { message, retry_after_seconds } => {
                Error::RateLimited { message, retry_after_seconds }
            }
            WireError::Backend { chain, log_tail } => {
                let source = chain
                    .into_iter()
                    .rev()
                    .fold(None, |source, message| Some(Remote { message, source: source.map(Box::new) }))
                    .unwrap_or_else(|| Remote { message: "failed".into(), source: None });
                Error::Backend { backend: BACKEND, source: Box::new(source), log_tail }
            }
            WireError::Other(message) => Error::backend(BACKEND, message),
        }
    }
}

/// A failure reported by the agent, with its causes.
#[derive(Debug)]
struct Remote {
    message: String,
    source: Option<Box<Remote>>,
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Remote {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// Where the agent is installed: next to the running executable (a build's `target/<profile>`),
/// or in `../lib/basphere/` from it (the package's `/usr/bin` and `/usr/lib/basphere`). A test
/// program, which cargo puts in `target/<profile>/deps`, finds the one its build made one level up.
pub fn locate() -> Result<PathBuf> {
    let exe = std::env::current_exe()
        .map_err(|error| Error::invalid("backend.vm", format!("cannot find this program's own path: {error}")))?;
    locate_for(&exe)
}

/// [`locate`] for the program at `exe`.
pub fn locate_for(exe: &Path) -> Result<PathBuf> {
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let mut candidates = vec![dir.join(AGENT), dir.join("../lib/basphere").join(AGENT)];
    if dir.file_name().is_some_and(|name| name == "deps") {
        candidates.push(dir.join("..").join(AGENT));
    }
    candidates.iter().find(|path| path.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|path| path.display().to_string()).collect();
        Error::invalid(
            "backend.vm",
            format!(
                "vsphere-api runs in its own program, {AGENT}, which was looked for at {} and is not there; \
                 it is installed with the basphere package (from a source tree: `cargo build -p basphere-vsphere \
                 --bins`, with the server's profile, such as `--release`), or use `simulated` or `terraform`",
                looked.join(" and "),
            ),
        )
    })
}

/// The vSphere API backend, run by its agent.
pub struct AgentProvisioner {
    program: PathBuf,
    /// The agent's first line.
    settings: String,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    next_id: AtomicU64,
}

/// One running agent. When the last holder drops it, the agent's input closes and it ends.
struct Connection {
    lines: mpsc::UnboundedSender<Vec<u8>>,
    /// What the task reading the answers shares (it holds no sender of `lines`).
    shared: Arc<Shared>,
    pid: Option<u32>,
}

struct Shared {
    /// The calls waiting for their answer; `None` once the agent is gone.
    pending: std::sync::Mutex<Option<HashMap<u64, oneshot::Sender<Outcome>>>>,
    /// How the agent ended, once it has.
    ended: OnceLock<String>,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, Option<HashMap<u64, oneshot::Sender<Outcome>>>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Connection {
    fn running(&self) -> bool {
        self.shared.pending().is_some()
    }

    fn gone(&self, program: &Path) -> Error {
        let how = self.shared.ended.get().map(String::as_str).unwrap_or("its pipe closed");
        Error::backend(
            BACKEND,
            format!(
                "the vSphere API agent {} ended before it answered ({how}); it is started again on the next call",
                program.display()
            ),
        )
    }
}

impl AgentProvisioner {
    /// The backend run by the agent at `program`, which is started on the first call.
    pub fn new(program: PathBuf, settings: &VsphereApiSettings) -> Result<Self> {
        let mut line = serde_json::to_string(settings).map_err(|error| Error::backend(BACKEND, error))?;
        line.push('\n');
        Ok(AgentProvisioner {
            program,
            settings: line,
            connection: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        })
    }

    /// The process id of the agent while one runs (it is started by the first call).
    pub async fn agent_pid(&self) -> Option<u32> {
        let current = self.connection.lock().await;
        let connection = current.as_ref()?;
        if connection.running() {
            connection.pid
        } else {
            None
        }
    }

    /// The running agent, started when there is none.
    async fn connection(&self) -> Result<Arc<Connection>> {
        let mut current = self.connection.lock().await;
        if let Some(connection) = current.as_ref().filter(|connection| connection.running()) {
            return Ok(connection.clone());
        }
        let connection = self.start()?;
        *current = Some(connection.clone());
        Ok(connection)
    }

    fn start(&self) -> Result<Arc<Connection>> {
        let mut child = tokio::process::Command::new(&self.program)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            // Not killed when dropped: its input closes, and it logs out of vCenter and ends.
            .spawn()
            .map_err(|error| {
                Error::backend(
                    BACKEND,
                    format!("cannot start the vSphere API agent {}: {error}", self.program.display()),
                )
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::backend(BACKEND, "the vSphere API agent was started without its pipes"));
        };
        let lines = write_lines(stdin);
        lines.send(self.settings.clone().into_bytes()).expect("the writer is running");
        let shared = Arc::new(Shared { pending: std::sync::Mutex::new(Some(HashMap::new())), ended: OnceLock::new() });
        let connection = Arc::new(Connection { lines, shared: shared.clone(), pid: child.id() });
        tracing::info!(agent = %self.program.display(), pid = child.id(), "started the vSphere API agent");
        let reader = shared;
        let program = self.program.clone();
        tokio::spawn(async move {
            let mut replies = BufReader::new(stdout).lines();
            loop {
                match replies.next_line().await {
                    Ok(Some(line)) => match serde_json::from_str::<Response>(&line) {
                        Ok(response) => {
                            let waiting = reader.pending().as_mut().and_then(|pending| pending.remove(&response.id));
                            // Nobody waits for a call whose caller gave up: its answer is dropped.
                            if let Some(waiting) = waiting {
                                let _ = waiting.send(response.outcome);
                            }
                        }
                        Err(error) => {
                            tracing::error!(%error, "the vSphere API agent wrote a line that is not an answer")
                        }
                    },
                    Ok(None) => break,
                    Err(error) => {
                        tracing::error!(%error, "reading the vSphere API agent's answers failed");
                        break;
                    }
                }
            }
            let _ = child.start_kill();
            let ended = match child.wait().await {
                // Its input closed: the provisioner was dropped.
                Ok(status) if status.success() => {
                    tracing::info!(agent = %program.display(), "the vSphere API agent ended");
                    status.to_string()
                }
                Ok(status) => {
                    tracing::warn!(agent = %program.display(), %status, "the vSphere API agent ended");
                    status.to_string()
                }
                Err(error) => error.to_string(),
            };
            let _ = reader.ended.set(ended);
            // Dropping the senders wakes every waiting call.
            reader.pending().take();
        });
        Ok(connection)
    }

    async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let connection = self.connection().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        match connection.shared.pending().as_mut() {
            Some(pending) => pending.insert(id, answer),
            None => return Err(connection.gone(&self.program)),
        };
        let mut line = serde_json::to_vec(&Request { id, call }).map_err(|error| Error::backend(BACKEND, error))?;
        line.push(b'\n');
        if connection.lines.send(line).is_err() {
            return Err(connection.gone(&self.program));
        }
        match answered.await {
            Ok(Outcome::Ok(value)) => serde_json::from_value(value).map_err(|error| {
                Error::backend(BACKEND, format!("the vSphere API agent's answer is not what was asked for: {error}"))
            }),
            Ok(Outcome::Error(error)) => Err(error.into()),
            Err(_) => Err(connection.gone(&self.program)),
        }
    }
}

#[async_trait]
impl Provisioner for AgentProvisioner {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn preflight(&self) -> Result<()> {
        self.call(Call::Preflight).await
    }

    async fn ensure_folder(&self, owner: &Username) -> Result<()> {
        self.call(Call::EnsureFolder { owner: owner.clone() }).await
    }

    async fn create_vm(&self, request: &VmRequest) -> Result<VmHandle> {
        self.call(Call::CreateVm { request: Box::new(request.clone()) }).await
    }

    async fn destroy_vm(&self, vm: &VmRef) -> Result<()> {
        self.call(Call::DestroyVm { vm: vm.clone() }).await
    }

    async fn power(&self, vm: &VmRef, action: PowerAction) -> Result<PowerState> {
        self.call(Call::Power { vm: vm.clone(), action }).await
    }

    async fn inventory(&self) -> Result<Vec<InventoryVm>> {
        self.call(Call::Inventory).await
    }

    async fn adopt(&self, vm: &VmRef) -> Result<()> {
        self.call(Call::Adopt { vm: vm.clone() }).await
    }

    async fn ensure_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        self.call(Call::EnsurePortGroups { spec: spec.clone() }).await
    }

    async fn remove_port_groups(&self, spec: &TenantPortGroups) -> Result<()> {
        self.call(Call::RemovePortGroups { spec: spec.clone() }).await
    }
}

/// The agent's side: reads the settings, then answers requests until its input closes or
/// `shutdown` completes (a SIGTERM from systemd stopping the service, which reaches the agent with
/// the server). Errors only when the first line is not settings or a later one not a request.
#[cfg(feature = "vsphere-api")]
pub async fn serve(
    input: impl tokio::io::AsyncRead + Unpin,
    output: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(shutdown);
    let mut lines = BufReader::new(input).lines();
    let protocol = |error: String| Error::backend(BACKEND, format!("the vSphere API agent's input: {error}"));
    let settings = match lines.next_line().await.map_err(|error| protocol(error.to_string()))? {
        Some(line) => serde_json::from_str::<VsphereApiSettings>(&line)
            .map_err(|error| protocol(format!("the first line is not the backend's settings: {error}")))?,
        None => return Ok(()),
    };
    let provisioner = Arc::new(crate::api::VsphereApiProvisioner::new(settings));
    let answers = write_lines(output);
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line.map_err(|error| protocol(error.to_string()))?,
            () = &mut shutdown => None,
        };
        let Some(line) = line else { break };
        let request: Request =
            serde_json::from_str(&line).map_err(|error| protocol(format!("a line is not a request: {error}")))?;
        let provisioner = provisioner.clone();
        let answers = answers.clone();
        tokio::spawn(async move {
            let outcome = answer(provisioner.as_ref(), request.call).await;
            let mut line = serde_json::to_vec(&Response { id: request.id, outcome }).expect("an answer serialises");
            line.push(b'\n');
            let _ = answers.send(line);
        });
    }
    // The server is gone or stopping: nobody is left to answer. The session is logged out
    // (bounded: vCenter may be what is unreachable), not left for vCenter to expire.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), provisioner.close()).await;
    Ok(())
}

/// A task writing each line sent to it whole, in turn, to `output` (either side's pipe): a call
/// dropped half-way cannot cut a line. It ends when every sender is gone or the pipe fails.
fn write_lines(mut output: impl tokio::io::AsyncWrite + Unpin + Send + 'static) -> mpsc::UnboundedSender<Vec<u8>> {
    let (lines, mut to_write) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(line) = to_write.recv().await {
            if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });
    lines
}

/// Runs one call on `provisioner`.
pub async fn answer(provisioner: &dyn Provisioner, call: Call) -> Outcome {
    fn outcome<T: Serialize>(result: Result<T>) -> Outcome {
        match result {
            Ok(value) => match serde_json::to_value(value) {
                Ok(value) => Outcome::Ok(value),
                Err(error) => Outcome::Error(WireError::from(&Error::backend(BACKEND, error))),
            },
            Err(error) => Outcome::Error(WireError::from(&error)),
        }
    }
    match call {
        Call::Preflight => outcome(provisioner.preflight().await),
        Call::EnsureFolder { owner } => outcome(provisioner.ensure_folder(&owner).await),
        Call::CreateVm { request } => outcome(provisioner.create_vm(&request).await),
        Call::DestroyVm { vm } => outcome(provisioner.destroy_vm(&vm).await),
        Call::Power { vm, action } => outcome(provisioner.power(&vm, action).await),
        Call::Inventory => outcome(provisioner.inventory().await),
        Call::Adopt { vm } => outcome(provisioner.adopt(&vm).await),
        Call::EnsurePortGroups { spec } => outcome(provisioner.ensure_port_groups(&spec).await),
        Call::RemovePortGroups { spec } => outcome(provisioner.remove_port_groups(&spec).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_the_pipe_with_their_kind_fields_and_causes() {
        #[derive(Debug)]
        struct Cause;
        impl std::fmt::Display for Cause {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connection refused")
            }
        }
        impl std::error::Error for Cause {}
        #[derive(Debug)]
        struct Outer(Cause);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("login to vCenter failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let errors = [
            Error::invalid("vsphere.datastore", "datastore LocalDS_9 is not in vCenter"),
            Error::InvalidFields(vec![Error::invalid("a", "b"), Error::invalid("c", "d")]),
            Error::not_found("vm", "alice-web"),
            Error::already_exists("VM", "alice-web in vCenter"),
            Error::not_found("port group", "basphere-dave-lan1"),
            Error::not_found("distributed switch", "dvs-tenants"),
            Error::already_exists("port group", "basphere-dave-lan1 (not Basphere's)"),
            Error::Conflict("the VM is off".into()),
            Error::NotSupported("no".into()),
            Error::Timeout("the clone task".into()),
            Error::RateLimited { message: "slow down".into(), retry_after_seconds: 3 },
            Error::Backend { backend: BACKEND, source: Box::new(Outer(Cause)), log_tail: vec!["line".into()] },
        ];
        for error in errors {
            let wire = serde_json::to_string(&WireError::from(&error)).unwrap();
            let back = Error::from(serde_json::from_str::<WireError>(&wire).unwrap());
            assert_eq!((back.kind(), back.to_string()), (error.kind(), error.to_string()), "{wire}");
            let chain = |error: &Error| {
                let mut messages = Vec::new();
                let mut cause = std::error::Error::source(error);
                while let Some(next) = cause {
                    messages.push(next.to_string());
                    cause = next.source();
                }
                messages
            };
            assert_eq!(chain(&back), chain(&error));
            if let (Error::Backend { log_tail: a, .. }, Error::Backend { log_tail: b, .. }) = (&back, &error) {
                assert_eq!(a, b);
            }
        }
        // A kind the server does not know arrives as the generic one, with its name.
        let odd = WireError::NotFound { kind: "datastore cluster".into(), name: "x".into() };
        assert_eq!(Error::from(odd).to_string(), "vsphere object not found: x");
    }

    #[test]
    fn requests_are_one_json_line_each() {
        let request = Request { id: 7, call: Call::Inventory };
        let line = serde_json::to_string(&request).unwrap();
        assert_eq!(line, r#"{"id":7,"call":"inventory"}"#);
        let power = Request {
            id: 8,
            call: Call::Power {
                vm: VmRef {
                    id: uuid::Uuid::nil(),
                    owner: Username::parse("alice").unwrap(),
                    vsphere_name: "alice-web".into(),
                    backend_id: Some("vm-42".into()),
                },
                action: PowerAction::Reboot,
            },
        };
        let line = serde_json::to_string(&power).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), power);
        let spec = TenantPortGroups {
            tenant: Username::parse("dave").unwrap(),
            switch: "dvs-tenants".into(),
            port_groups: vec![PortGroupSpec { name: "basphere-dave-lan1".into(), vlan: 2001 }],
        };
        let ensure = Request { id: 9, call: Call::EnsurePortGroups { spec } };
        let line = serde_json::to_string(&ensure).unwrap();
        assert!(line.contains(r#""ensure_port_groups":{"spec":"#), "{line}");
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), ensure);
    }
}
