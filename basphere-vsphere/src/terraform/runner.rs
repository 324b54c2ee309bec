//! Running `terraform`: a clean environment with the credentials only in the child, a process
//! group that a timeout or a cancellation kills whole, a log file per run, and a bound on how
//! many runs go at once.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use basphere_core::Error;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

/// What went wrong running Terraform.
#[derive(Debug, thiserror::Error)]
pub enum TerraformError {
    #[error("cannot run {binary}: {source}")]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("terraform {command} exited with {code}")]
    Exit { command: String, code: i32, log_tail: Vec<String> },
    /// Terraform refused to make an object because one of its name exists already (one it has
    /// no state for): told from its output, the one place Terraform says so: vCenter's words when
    /// a name is taken (its `DuplicateName` fault, "The name '...' already exists."), which the
    /// vSphere provider passes on for a VM's clone as for a distributed port group's creation.
    #[error("terraform {command} found an object of the name it was to make already there")]
    Exists { command: String, log_tail: Vec<String> },
    #[error("terraform {command} did not finish within {after:?} and was killed")]
    Timeout { command: String, after: Duration, log_tail: Vec<String> },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl TerraformError {
    pub fn log_tail(&self) -> Vec<String> {
        match self {
            TerraformError::Exit { log_tail, .. }
            | TerraformError::Exists { log_tail, .. }
            | TerraformError::Timeout { log_tail, .. } => log_tail.clone(),
            _ => Vec::new(),
        }
    }

    /// Whether Terraform's output says `words`: how one failure is told from another, when
    /// Terraform exits 1 for all of them.
    pub fn says(&self, words: &str) -> bool {
        self.log_tail().iter().any(|line| line.contains(words))
    }
}

impl From<TerraformError> for Error {
    fn from(error: TerraformError) -> Self {
        match error {
            TerraformError::Timeout { .. } => Error::Timeout(error.to_string()),
            other => {
                let log_tail = other.log_tail();
                Error::Backend { backend: "terraform", source: Box::new(other), log_tail }
            }
        }
    }
}

/// Where Terraform runs and with what.
#[derive(Clone)]
pub struct Runner {
    pub binary: PathBuf,
    /// Variables of the child's environment (credentials included); nothing else is inherited
    /// but `PATH`.
    pub env: Vec<(String, String)>,
    pub permits: Arc<Semaphore>,
}

/// What a finished run printed.
#[derive(Debug)]
pub struct RunOutput {
    pub stdout: String,
    pub log_tail: Vec<String>,
}

const TAIL: usize = 50;

fn tail(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL)..].iter().map(|line| (*line).to_owned()).collect()
}

/// Kills the child's whole process group if the run is abandoned (timeout or cancellation).
struct GroupGuard {
    pid: Option<i32>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Runner {
    /// Runs `terraform <args>` in `dir`, logging everything to `dir/logs/<log_name>.log`.
    pub async fn run(
        &self,
        dir: &Path,
        args: &[&str],
        timeout: Duration,
        log_name: &str,
    ) -> Result<RunOutput, TerraformError> {
        self.run_with(dir, &[], args, timeout, log_name).await
    }

    /// [`run`](Self::run) with `extra_env` added to the child's environment (`TF_WORKSPACE`).
    pub async fn run_with(
        &self,
        dir: &Path,
        extra_env: &[(&str, &str)],
        args: &[&str],
        timeout: Duration,
        log_name: &str,
    ) -> Result<RunOutput, TerraformError> {
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let io = |what: String| move |source| TerraformError::Io { what, source };
        let logs = dir.join("logs");
        super::create_private_dir(&logs).map_err(io(format!("creating {}", logs.display())))?;
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|source| TerraformError::Spawn { binary: self.binary.clone(), source })?;
        let mut guard = GroupGuard { pid: child.id().map(|pid| pid as i32) };
        let command_name = args.first().copied().unwrap_or("").to_owned();
        let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(result) => {
                guard.pid = None; // exited: nothing to kill (its group ends with it)
                result.map_err(io(format!("waiting for terraform {command_name}")))?
            }
            Err(_) => {
                guard.kill();
                let log =
                    format!("terraform {} timed out after {timeout:?}; its process group was killed\n", args.join(" "));
                let _ = write_log(&logs, log_name, &log).await;
                return Err(TerraformError::Timeout { command: command_name, after: timeout, log_tail: tail(&log) });
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let log = format!("$ terraform {}\n{stdout}{stderr}", args.join(" "));
        write_log(&logs, log_name, &log).await.map_err(io(format!("writing the log of terraform {command_name}")))?;
        let log_tail = tail(&format!("{stdout}{stderr}"));
        let exists = |line: &String| line.contains("already exists");
        match output.status.code() {
            Some(0) => Ok(RunOutput { stdout, log_tail }),
            Some(_) if log_tail.iter().any(exists) => Err(TerraformError::Exists { command: command_name, log_tail }),
            code => Err(TerraformError::Exit { command: command_name, code: code.unwrap_or(-1), log_tail }),
        }
    }
}

async fn write_log(logs: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let stamp = basphere_core::model::now().format("%Y%m%dT%H%M%S%.6fZ");
    let path = logs.join(format!("{stamp}-{name}.log"));
    let mut file =
        tokio::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&path).await?;
    file.write_all(text.as_bytes()).await?;
    file.sync_data().await
}
