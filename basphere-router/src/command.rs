//! Running `ip` and `nft`: one argv entry per argument, no shell, a fixed environment, input on
//! standard input when given, a timeout, and what the tool printed kept for the error message.

use std::process::Stdio;
use std::time::Duration;

use basphere_core::error::{Error, Message, Result};
use tokio::io::AsyncWriteExt;

use crate::BACKEND;

/// Where the tools are looked for; the server's own PATH may lack the sbin directories.
const SEARCH_PATH: &str = "/usr/sbin:/sbin:/usr/bin:/bin";

/// At most this many characters of a tool's output go into an error message.
const MAX_OUTPUT: usize = 2000;

/// What a finished tool printed, or why it failed.
pub(crate) struct Outcome {
    pub line: String,
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn into_result(self) -> Result<String> {
        if self.ok {
            return Ok(self.stdout);
        }
        let said = if self.stderr.trim().is_empty() { self.stdout.trim() } else { self.stderr.trim() };
        let said: String = said.chars().take(MAX_OUTPUT).collect();
        Err(Error::backend(BACKEND, Message(format!("`{}` failed: {said}", self.line))))
    }
}

/// Runs `words` (the program first) with `input` on its standard input, for at most `timeout`.
pub(crate) async fn run(words: &[String], input: Option<&str>, timeout: Duration) -> Result<Outcome> {
    let line = words.join(" ");
    tracing::debug!(command = %line, "running");
    let (program, args) = words.split_first().expect("a program");
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", SEARCH_PATH)
        .env("LC_ALL", "C")
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| Error::backend(BACKEND, Message(format!("`{line}` could not be started: {error}"))))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|error| Error::backend(BACKEND, Message(format!("`{line}` did not take its input: {error}"))))?;
    }
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => Ok(Outcome {
            line,
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        Ok(Err(error)) => Err(Error::backend(BACKEND, Message(format!("`{line}` could not be waited for: {error}")))),
        // Dropping the future drops the child, which kills it (kill_on_drop).
        Err(_) => Err(Error::Timeout(format!("`{line}` did not finish within {timeout:?} and was stopped"))),
    }
}
