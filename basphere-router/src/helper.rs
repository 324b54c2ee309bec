//! The router host's helper, `basphere-router-helper`: the forced command of the server's key in
//! root's `authorized_keys` on the router host. One SSH session is one run: it reads ONE JSON
//! request on standard input ([`crate::wire`]; at most [`MAX_REQUEST`] bytes, within
//! [`REQUEST_TIMEOUT`]), checks every field again by core's rules, runs the [`LinuxRouter`] of
//! this host with the settings of its own file (`--config`, never from the request), writes ONE
//! JSON answer on standard output and exits.
//!
//! What the client asked to run (`SSH_ORIGINAL_COMMAND`) is never read: whatever command a
//! client sends, this is what runs, and all it takes is the request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use basphere_core::error::{Error, Result};
use basphere_core::router::TenantRouter;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::wire::{self, Request, Response};
use crate::{LinuxRouter, LinuxRouterSettings};

/// The helper's configuration unless `--config` names another.
pub const DEFAULT_CONFIG: &str = "/etc/basphere/router.yaml";

/// The longest request accepted (a spec of [`wire::MAX_LANS`] LANs is well under this).
pub const MAX_REQUEST: usize = 64 * 1024;

/// How long a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the helper says of itself when pinged.
pub const VERSION: &str = concat!("basphere-router-helper ", env!("CARGO_PKG_VERSION"));

/// The configuration file `args` (the command line after the program) name: `--config PATH`,
/// `--config=PATH`, or none for [`DEFAULT_CONFIG`].
pub fn config_path(args: &[String]) -> Result<PathBuf> {
    let usage = || {
        Error::invalid(
            "command line",
            format!("{args:?} is not accepted: basphere-router-helper [--config PATH] (default {DEFAULT_CONFIG})"),
        )
    };
    match args {
        [] => Ok(DEFAULT_CONFIG.into()),
        [flag, path] if flag == "--config" && !path.is_empty() => Ok(path.into()),
        [one] => one.strip_prefix("--config=").filter(|path| !path.is_empty()).map(Into::into).ok_or_else(usage),
        _ => Err(usage()),
    }
}

/// Reads one request from `input`: one line (or everything up to the end) of at most
/// [`MAX_REQUEST`] bytes, within [`REQUEST_TIMEOUT`].
pub async fn read_request<R: AsyncRead + Unpin>(input: R) -> Result<Request> {
    let mut bytes = Vec::new();
    let mut reader = BufReader::new(input).take(MAX_REQUEST as u64 + 1);
    let read = reader.read_until(b'\n', &mut bytes);
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(Error::invalid("request", format!("could not be read: {error}"))),
        Err(_) => return Err(Error::Timeout(format!("no request within {REQUEST_TIMEOUT:?}"))),
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if body.len() > MAX_REQUEST {
        return Err(Error::invalid("request", format!("longer than {MAX_REQUEST} bytes")));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid(
            "request",
            r#"none on standard input: one JSON request is expected, like {"op":"ping"} or {"op":"status","tenant":"alice"}"#,
        ));
    }
    serde_json::from_slice(body).map_err(|error| {
        Error::invalid(
            "request",
            format!("not a router helper request ({error}); accepted ops: ensure, status, remove, ping"),
        )
    })
}

/// The router of this host, from the helper's own file; an error there is the router host's
/// problem (a backend error), not the caller's input.
fn local_router(config: &Path) -> Result<LinuxRouter> {
    LinuxRouterSettings::from_helper_file(config).and_then(LinuxRouter::new).map_err(|error| {
        Error::backend(
            crate::BACKEND,
            basphere_core::error::Message(format!(
                "the router helper's configuration {} is not usable: {error}",
                config.display()
            )),
        )
    })
}

/// Runs one checked request with the router of this host.
pub async fn perform(router: &LinuxRouter, request: Request) -> Result<Response> {
    match request {
        Request::Ensure { spec } => {
            let spec = spec.check()?;
            let status = router.ensure(&spec).await?;
            Ok(Response { status: Some(status.into()), ..Response::default() })
        }
        Request::Status { tenant } => {
            let tenant = wire::tenant("tenant", &tenant)?;
            let status = router.status(&tenant).await?;
            Ok(Response { status: status.map(Into::into), ..Response::default() })
        }
        Request::Remove { tenant } => {
            let tenant = wire::tenant("tenant", &tenant)?;
            router.remove(&tenant).await?;
            Ok(Response::default())
        }
        Request::Ping => {
            router.check().await?;
            Ok(Response { helper: Some(VERSION.into()), ..Response::default() })
        }
    }
}

/// One run of the helper: `args` is its command line after the program, `input` and `output`
/// its standard input and output. Answers every failure (a bad command line, configuration or
/// request, the router's own errors) as a JSON error; whether the request succeeded.
pub async fn run<R, W>(args: &[String], input: R, mut output: W) -> bool
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let outcome = async {
        let config = config_path(args)?;
        let request = read_request(input).await?;
        let router = local_router(&config)?;
        perform(&router, request).await
    };
    let response = outcome.await.unwrap_or_else(|error| Response::failure(&error));
    let mut line = serde_json::to_vec(&response).expect("answers serialise");
    line.push(b'\n');
    // Nothing is left to tell if the client is gone.
    let _ = output.write_all(&line).await;
    let _ = output.flush().await;
    response.error.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn the_command_line_names_the_configuration_and_nothing_else() {
        assert_eq!(config_path(&[]).unwrap(), PathBuf::from(DEFAULT_CONFIG));
        assert_eq!(config_path(&args(&["--config", "/etc/r.yaml"])).unwrap(), PathBuf::from("/etc/r.yaml"));
        assert_eq!(config_path(&args(&["--config=/etc/r.yaml"])).unwrap(), PathBuf::from("/etc/r.yaml"));
        for bad in [&["rm", "-rf", "/"][..], &["--config"], &["--config="], &["--config", "a", "b"]] {
            let error = config_path(&args(bad)).unwrap_err();
            assert!(error.to_string().contains("basphere-router-helper [--config PATH]"), "{bad:?}: {error}");
        }
    }

    #[tokio::test]
    async fn a_request_is_one_bounded_line_of_json() {
        let ping = read_request(&b"{\"op\":\"ping\"}\n{\"op\":\"remove\",\"tenant\":\"alice\"}\n"[..]).await.unwrap();
        assert!(matches!(ping, Request::Ping), "only the first line is read: {ping:?}");
        let status = read_request(&br#"{"op":"status","tenant":"alice"}"#[..]).await.unwrap();
        assert!(matches!(status, Request::Status { tenant } if tenant == "alice"));
        for (input, said) in [
            (Vec::new(), "none on standard input"),
            (b"rm -rf /\n".to_vec(), "not a router helper request"),
            (br#"{"op":"reboot"}"#.to_vec(), "not a router helper request"),
            (br#"{"op":"status","tenant":"alice","shell":"sh"}"#.to_vec(), "not a router helper request"),
            (vec![b' '; MAX_REQUEST + 10], "longer than"),
            (b"\xff\xfe\n".to_vec(), "not a router helper request"),
        ] {
            let error = read_request(&input[..]).await.unwrap_err();
            assert!(matches!(error, Error::InvalidInput { ref field, .. } if field == "request"), "{error}");
            assert!(error.to_string().contains(said), "{said}: {error}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_is_answered_in_bounded_time() {
        let (_client, helper) = tokio::io::duplex(64);
        let error = read_request(helper).await.unwrap_err();
        assert!(matches!(error, Error::Timeout(_)), "{error}");
    }

    #[tokio::test]
    async fn a_bad_configuration_is_the_router_hosts_problem_and_answered() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("router.yaml");
        std::fs::write(&config, "networks: {linux: {wan_bridge: a-very-long-bridge-name}}\n").unwrap();
        let mut out = Vec::new();
        let ok = run(&args(&["--config", config.to_str().unwrap()]), &b"{\"op\":\"ping\"}\n"[..], &mut out).await;
        assert!(!ok);
        let answer: Response = serde_json::from_slice(&out).unwrap();
        let error = answer.error.unwrap();
        assert_eq!(error.kind, "backend");
        assert!(
            error.message.contains("networks.linux.wan_bridge") && error.message.contains("router.yaml"),
            "{error:?}"
        );

        std::fs::write(&config, "networks: {linux: {ssh: {host: elsewhere}}}\n").unwrap();
        let mut out = Vec::new();
        run(&args(&["--config", config.to_str().unwrap()]), &b"{\"op\":\"ping\"}\n"[..], &mut out).await;
        let answer: Response = serde_json::from_slice(&out).unwrap();
        assert!(answer.error.unwrap().message.contains("ssh belongs in the server's configuration"));

        let mut out = Vec::new();
        run(&args(&["--config", "/nonexistent/router.yaml"]), &b"{\"op\":\"ping\"}\n"[..], &mut out).await;
        let answer: Response = serde_json::from_slice(&out).unwrap();
        assert!(answer.error.unwrap().message.contains("cannot read /nonexistent/router.yaml"));
    }
}
