//! Running shadow's tools (useradd, userdel, groupadd): one argv entry per argument, no shell, a
//! fixed environment, a timeout, and the output kept for the error message.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use basphere_core::error::{Error, Message, Result};

/// Where the tools are looked for; the server's own PATH may lack the sbin directories.
const SEARCH_PATH: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// At most this much of a tool's output goes into an error message.
const MAX_OUTPUT: usize = 2000;

/// The first executable `name` in the sbin and bin directories.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    SEARCH_PATH.iter().map(|dir| Path::new(dir).join(name)).find(|path| {
        path.metadata().map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

/// A finished command.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The command line, for messages.
    pub line: String,
    /// The exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// A backend error quoting the command, its exit status and what it printed.
    pub fn into_error(self) -> Error {
        let status = match self.code {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_owned(),
        };
        let mut output = self.stderr.trim().to_owned();
        if output.is_empty() {
            output = self.stdout.trim().to_owned();
        }
        if output.is_empty() {
            output = "(no output)".to_owned();
        }
        Error::backend(crate::BACKEND, Message(format!("`{}` {status}: {}", self.line, clip(&output))))
    }
}

/// Runs `program args...` and waits at most `timeout` (the process is killed after that).
/// `Err` when it cannot start or does not finish in time; a non-zero exit is a `Finished`.
pub(crate) async fn run(program: &Path, args: &[OsString], timeout: Duration) -> Result<Finished> {
    let line = command_line(program, args);
    tracing::debug!(command = %line, "running");
    let child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", SEARCH_PATH.join(":"))
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| Error::backend(crate::BACKEND, Message(format!("`{line}` could not be started: {error}"))))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => {
            return Err(Error::backend(crate::BACKEND, Message(format!("`{line}` could not be waited for: {error}"))))
        }
        // Dropping the future drops the child, which kills it (kill_on_drop).
        Err(_) => return Err(Error::Timeout(format!("`{line}` did not finish within {timeout:?} and was stopped"))),
    };
    Ok(Finished {
        line,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Runs the command and turns a non-zero exit into an error.
pub(crate) async fn run_ok(program: &Path, args: &[OsString], timeout: Duration) -> Result<Finished> {
    let finished = run(program, args, timeout).await?;
    if finished.success() {
        Ok(finished)
    } else {
        Err(finished.into_error())
    }
}

fn command_line(program: &Path, args: &[OsString]) -> String {
    let mut words = vec![quote(program.as_os_str())];
    words.extend(args.iter().map(|arg| quote(arg)));
    words.join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=+@%".contains(c)) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(MAX_OUTPUT) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[tokio::test]
    async fn a_failure_carries_the_command_and_its_stderr() {
        let ls = find_tool("ls").expect("ls is installed");
        let error = run_ok(&ls, &args(&["/basphere-does-not-exist"]), Duration::from_secs(10)).await.unwrap_err();
        let text = error.to_string();
        assert_eq!(error.kind(), "backend");
        assert!(text.contains("/basphere-does-not-exist") && text.contains("No such file"), "{text}");
        assert!(text.contains("exited with status 2"), "{text}");
    }

    #[tokio::test]
    async fn arguments_are_not_interpreted_by_a_shell() {
        let echo = find_tool("echo").expect("echo is installed");
        let finished = run_ok(&echo, &args(&["$HOME; rm -rf /", "a b"]), Duration::from_secs(10)).await.unwrap();
        assert_eq!(finished.stdout, "$HOME; rm -rf / a b\n");
        assert_eq!(finished.line, format!("{} '$HOME; rm -rf /' 'a b'", echo.display()));
    }

    #[tokio::test]
    async fn a_command_that_hangs_is_stopped_at_the_timeout() {
        let sleep = find_tool("sleep").expect("sleep is installed");
        let started = std::time::Instant::now();
        let error = run(&sleep, &args(&["30"]), Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(error.kind(), "timeout", "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn long_output_is_clipped() {
        assert_eq!(clip(&"x".repeat(5000)).len(), MAX_OUTPUT);
        assert_eq!(clip("short"), "short");
    }
}
