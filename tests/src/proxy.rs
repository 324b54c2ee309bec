//! A recording HTTP proxy in front of a [`Server`]: the CLI talks to it (over TCP or its own Unix
//! socket), it forwards each request to the server and keeps what the server answered, so a test
//! can compare what the CLI printed with the documents it was given for the same requests.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::server::{binaries, cli_env, exchange, Response, Server};

/// One request the CLI made and what the server answered.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// Listens on a loopback port and on `<dir>/proxy.sock`; forwards to the server's TCP port and
/// Unix socket respectively. Requests through the socket reach the server as this process's uid.
/// Its listeners stop when it is dropped.
pub struct RecordingProxy {
    pub tcp: String,
    pub socket: PathBuf,
    dir: PathBuf,
    log: Arc<Mutex<Vec<Exchange>>>,
    stop: Arc<AtomicBool>,
}

impl RecordingProxy {
    pub fn start(server: &Server, dir: &Path) -> RecordingProxy {
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy's port");
        let address = tcp.local_addr().expect("address").to_string();
        let upstream = server.tcp.clone();
        let (tcp_log, tcp_stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in tcp.incoming().map_while(Result::ok) {
                if tcp_stop.load(Ordering::SeqCst) {
                    return;
                }
                let (upstream, log) = (upstream.clone(), tcp_log.clone());
                std::thread::spawn(move || {
                    forward(stream, &log, || {
                        std::net::TcpStream::connect(&upstream).map(|s| {
                            s.set_read_timeout(Some(Duration::from_secs(60))).ok();
                            Box::new(s) as Box<dyn ReadWrite>
                        })
                    })
                });
            }
        });
        let socket = dir.join("proxy.sock");
        let unix = UnixListener::bind(&socket).expect("bind the proxy's socket");
        let upstream = server.socket.clone();
        let (unix_log, unix_stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in unix.incoming().map_while(Result::ok) {
                if unix_stop.load(Ordering::SeqCst) {
                    return;
                }
                let (upstream, log) = (upstream.clone(), unix_log.clone());
                std::thread::spawn(move || {
                    forward(stream, &log, || {
                        UnixStream::connect(&upstream).map(|s| {
                            s.set_read_timeout(Some(Duration::from_secs(60))).ok();
                            Box::new(s) as Box<dyn ReadWrite>
                        })
                    })
                });
            }
        });
        RecordingProxy { tcp: address, socket, dir: dir.to_path_buf(), log, stop }
    }

    /// The exchanges recorded since the last call, oldest first.
    pub fn take(&self) -> Vec<Exchange> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `basphere` through the proxy's socket (as this process's uid: root or the server's
    /// own user, so the administrator).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&binaries().cli);
        cli_env(&mut command);
        command.arg("--socket").arg(&self.socket).args(args).output().expect("run basphere")
    }

    /// Runs `basphere` through the proxy's port with a token.
    pub fn cli_as(&self, token: &str, args: &[&str]) -> Output {
        let mut command = Command::new(&binaries().cli);
        cli_env(&mut command);
        command
            .args(args)
            .env("BASPHERE_SERVER", format!("http://{}", self.tcp))
            .env("BASPHERE_TOKEN", token)
            .output()
            .expect("run basphere")
    }

    /// Runs one of the original command names (`list-vms`...) through the proxy's port.
    pub fn alias_as(&self, token: &str, name: &str, args: &[&str]) -> Output {
        let link = self.dir.join("bin").join(name);
        if !link.exists() {
            std::fs::create_dir_all(link.parent().expect("bin")).expect("bin dir");
            std::os::unix::fs::symlink(&binaries().cli, &link).expect("symlink the alias");
        }
        let mut command = Command::new(&link);
        cli_env(&mut command);
        command
            .args(args)
            .env("BASPHERE_SERVER", format!("http://{}", self.tcp))
            .env("BASPHERE_TOKEN", token)
            .output()
            .expect("run the alias")
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        // Each listener sees the flag at its next connection: make one.
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(&self.tcp);
        let _ = UnixStream::connect(&self.socket);
    }
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// Serves one request on `client`: reads it whole, sends it upstream, records the answer and
/// writes it back with `Connection: close`.
fn forward<C: Read + Write>(
    mut client: C,
    log: &Mutex<Vec<Exchange>>,
    upstream: impl FnOnce() -> std::io::Result<Box<dyn ReadWrite>>,
) {
    let Some((method, path, headers, body)) = read_request(&mut client) else { return };
    let passed: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(name, _)| !["host", "connection", "content-length"].contains(&name.to_ascii_lowercase().as_str()))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let response: Response = match upstream().and_then(|stream| exchange(stream, &method, &path, &passed, &body)) {
        Ok(response) => response,
        Err(error) => panic!("the proxy could not reach the server for {method} {path}: {error}"),
    };
    log.lock().unwrap_or_else(|p| p.into_inner()).push(Exchange {
        method: method.clone(),
        path: path.clone(),
        status: response.status,
        content_type: response.header("content-type").map(str::to_owned),
        body: response.body.clone(),
    });
    let mut head = format!("HTTP/1.1 {} Proxied\r\n", response.status);
    for (name, value) in &response.headers {
        if !["transfer-encoding", "content-length", "connection"].contains(&name.to_ascii_lowercase().as_str()) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", response.body.len()));
    let _ = client.write_all(head.as_bytes()).and_then(|()| client.write_all(response.body.as_bytes()));
    let _ = client.flush();
}

type Request = (String, String, Vec<(String, String)>, Vec<u8>);

fn read_request<C: Read>(client: &mut C) -> Option<Request> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    let split = loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break split;
        }
        let n = client.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next()?.split_whitespace();
    let (method, path) = (request_line.next()?.to_owned(), request_line.next()?.to_owned());
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))).collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    while body.len() < length {
        let n = client.read(&mut buffer).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buffer[..n]);
    }
    Some((method, path, headers, body))
}
