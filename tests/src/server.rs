//! A harness that runs the real `basphere-server` and `basphere` binaries: builds them once,
//! starts servers in temporary directories, and speaks plain HTTP to them over TCP and the Unix
//! socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace's binaries, built once per test process with the test's own cargo.
pub struct Binaries {
    pub server: PathBuf,
    pub cli: PathBuf,
}

pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf();
        // The whole workspace with all its targets, as `cargo test --workspace` builds it: the
        // features are unified the same way (dev-dependencies included), so this is a no-op after
        // the test build and no dependency (vim_rs above all) is compiled a second time with
        // another feature set.
        let build = Command::new(env!("CARGO"))
            .args(["build", "--workspace", "--all-targets", "--quiet"])
            .current_dir(&workspace)
            .stdin(Stdio::null())
            .output()
            .expect("running cargo build for the binaries");
        // Every test that needs the binaries fails the same way: say why, once, in each.
        assert!(
            build.status.success(),
            "building basphere-server and basphere failed ({}):\n{}{}",
            build.status,
            String::from_utf8_lossy(&build.stdout),
            String::from_utf8_lossy(&build.stderr)
        );
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
        let dir = target.join("debug");
        Binaries { server: dir.join("basphere-server"), cli: dir.join("basphere") }
    })
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The problem type's short kind (`quota-exceeded`), for problem documents.
    pub fn problem(&self) -> String {
        self.json()["type"].as_str().unwrap_or("").trim_start_matches("urn:basphere:problem:").to_owned()
    }
}

/// One HTTP/1.1 exchange with `Connection: close` over any stream.
pub fn exchange<S: Read + Write>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    // A server may answer and close before reading a body it refuses (413): keep the answer.
    let sent = stream.write_all(request.as_bytes()).and_then(|()| stream.write_all(body)).and_then(|()| stream.flush());
    if let Err(error) = &sent {
        if !matches!(error.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) {
            return Err(std::io::Error::new(error.kind(), error.to_string()));
        }
    }
    let mut raw = Vec::new();
    if let Err(error) = stream.read_to_end(&mut raw) {
        if raw.is_empty() || error.kind() != std::io::ErrorKind::ConnectionReset {
            return Err(error);
        }
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))).collect();
    let mut payload = raw[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        payload = dechunk(&payload);
    }
    Ok(Response { status, headers, body: String::from_utf8_lossy(&payload).into_owned() })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// A running `basphere-server`, killed when dropped.
pub struct Server {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub tcp: String,
    /// The directory the test gave; 0755, so that other uids can reach the socket in it.
    pub dir: PathBuf,
    config: Option<PathBuf>,
    log: PathBuf,
    log_level: String,
    default_socket: bool,
    open_files: Option<(u64, u64)>,
}

/// Embedded defaults, but with instant simulated vSphere tasks.
pub const FAST: &str = "backend:\n  simulated_delays: none\n";

/// How to start a server, beyond its configuration.
#[derive(Clone, Debug)]
pub struct Launch<'a> {
    /// The configuration text; embedded defaults when `None`.
    pub config: Option<&'a str>,
    /// `BASPHERE_LOG`.
    pub log_level: &'a str,
    /// No `--socket`: the socket where the server puts it by default (in the data directory).
    pub default_socket: bool,
    /// The open-file limit (soft, hard) the server starts with, set with `prlimit`.
    pub open_files: Option<(u64, u64)>,
}

impl Default for Launch<'_> {
    fn default() -> Self {
        Launch { config: Some(FAST), log_level: "warn", default_socket: false, open_files: None }
    }
}

impl Server {
    /// Starts a server in `dir` (data in `dir/data`, socket `dir/run/basphere.sock`) with the
    /// given configuration text, or embedded defaults when `None`.
    pub fn start(dir: &Path, config: Option<&str>) -> Server {
        Self::launch(dir, Launch { config, ..Launch::default() })
    }

    /// Like `start`, with `BASPHERE_LOG` set to `level`.
    pub fn start_with_log_level(dir: &Path, config: Option<&str>, level: &str) -> Server {
        Self::launch(dir, Launch { config, log_level: level, ..Launch::default() })
    }

    /// Starts a server in `dir` as `launch` says. `dir` is made 0755, as a bastion's directories
    /// are, so that the CLI run as other uids (`cli_uid`) can reach the socket.
    pub fn launch(dir: &Path, launch: Launch<'_>) -> Server {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod the test directory");
        let config = launch.config.map(|text| {
            let path = dir.join("config.yaml");
            std::fs::write(&path, text).expect("write config");
            path
        });
        let data_dir = dir.join("data");
        let socket = if launch.default_socket { data_dir.join("basphere.sock") } else { dir.join("run/basphere.sock") };
        let mut server = Server {
            child: None,
            data_dir,
            socket,
            tcp: String::new(),
            dir: dir.to_path_buf(),
            config,
            log: dir.join("server.log"),
            log_level: launch.log_level.to_owned(),
            default_socket: launch.default_socket,
            open_files: launch.open_files,
        };
        server.restart();
        server
    }

    /// (Re)starts the process on the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        let mut command = match self.open_files {
            // prlimit sets the limit on itself and then executes the server: same process.
            Some((soft, hard)) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={soft}:{hard}")).arg("--").arg(&binaries().server);
                command
            }
            None => Command::new(&binaries().server),
        };
        command.arg("--data-dir").arg(&self.data_dir).arg("--listen").arg("127.0.0.1:0");
        if !self.default_socket {
            command.arg("--socket").arg(&self.socket);
        }
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let mut child = command
            .env("BASPHERE_LOG", &self.log_level)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start basphere-server");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        // A deadline, not a wait: the line comes as soon as the server listens.
        let line = receiver.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
            panic!("the server did not start; log: {}", std::fs::read_to_string(&self.log).unwrap_or_default())
        });
        assert!(line.starts_with("basphere-server ready"), "unexpected first line: {line}");
        let start = line.find("://").expect("tcp address") + "://".len();
        self.tcp = line[start..].split_whitespace().next().expect("address").to_owned();
        self.child = Some(child);
    }

    /// SIGKILL: no cleanup, no draining.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the process to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
            .expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// HTTP over TCP, with a bearer token when given.
    pub fn http(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        self.http_raw(method, path, &headers, body.unwrap_or("").as_bytes())
    }

    pub fn http_raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let stream = std::net::TcpStream::connect(&self.tcp).expect("connect tcp");
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        exchange(stream, method, path, headers, body).expect("http exchange")
    }

    /// HTTP over the Unix socket, as whoever this process runs as.
    pub fn unix(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let stream = std::os::unix::net::UnixStream::connect(&self.socket).expect("connect socket");
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let headers: Vec<(&str, &str)> =
            if body.is_some() { vec![("Content-Type", "application/json")] } else { vec![] };
        exchange(stream, method, path, &headers, body.unwrap_or("").as_bytes()).expect("unix exchange")
    }

    /// Runs `basphere` against this server over the socket.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&binaries().cli);
        command.arg("--socket").arg(&self.socket).args(args);
        cli_env(&mut command);
        command.output().expect("run basphere")
    }

    /// Runs `basphere` against this server over the socket as `uid` (group `uid`, no
    /// supplementary groups), as a bastion user would: with `setpriv` from util-linux. Needs root.
    pub fn cli_uid(&self, uid: u32, args: &[&str]) -> Output {
        assert!(
            can_switch_uid(),
            "running the CLI as uid {uid} needs root (CI runs the tests as root); \
             check can_switch_uid() first where the test can do without"
        );
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg(&binaries().cli)
            .arg("--socket")
            .arg(&self.socket)
            .args(args);
        cli_env(&mut command);
        command.env("HOME", &self.dir);
        command.output().expect("run basphere with setpriv (util-linux)")
    }

    /// Runs `basphere` against this server over HTTP with a token (through the environment).
    pub fn cli_as(&self, token: &str, args: &[&str]) -> Output {
        let mut command = Command::new(&binaries().cli);
        cli_env(&mut command);
        command.args(args).env("BASPHERE_SERVER", format!("http://{}", self.tcp)).env("BASPHERE_TOKEN", token);
        command.output().expect("run basphere")
    }

    /// Creates an account through the admin API and returns a user token for it.
    pub fn account(&self, name: &str, seed: u64, admin: bool) -> String {
        let key = basphere_core::testing::ssh_key(seed);
        let body = serde_json::json!({"username": name, "email": format!("{name}@example.com"), "ssh_key": key.as_str(), "admin": admin}).to_string();
        let created = self.unix("POST", "/api/v1/admin/users", Some(&body));
        assert_eq!(created.status, 201, "{}", created.body);
        self.token(name, "user")
    }

    pub fn token(&self, name: &str, scope: &str) -> String {
        let body = serde_json::json!({"name": format!("{scope}-token"), "scope": scope}).to_string();
        let token = self.unix("POST", &format!("/api/v1/admin/users/{name}/tokens"), Some(&body));
        assert_eq!(token.status, 201, "{}", token.body);
        token.json()["secret"].as_str().expect("secret").to_owned()
    }

    /// Polls until no operation is queued or running.
    pub fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ops = self.unix("GET", "/api/v1/admin/operations?limit=1000", None).json();
            let busy = ops["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|op| op["state"] == "queued" || op["state"] == "running");
            let more = !ops["next"].is_null();
            if !busy && !more {
                return;
            }
            assert!(Instant::now() < deadline, "operations still running");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether this process may run commands as other uids (it is root).
pub fn can_switch_uid() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `command` as `uid` with `setpriv`, as `cli_uid` runs the CLI (for example `ls` or `cat`,
/// to see what another user can read). Needs root.
pub fn as_uid(uid: u32, command: &[&str]) -> Output {
    Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .args(command)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux)")
}

/// A clean environment for `basphere`: no ambient server, token, context or configuration.
pub fn cli_env(command: &mut Command) {
    // A clean environment: no ambient server, token or config from the machine.
    command
        .env_remove("BASPHERE_SERVER")
        .env_remove("BASPHERE_TOKEN")
        .env_remove("BASPHERE_CONTEXT")
        .env_remove("BASPHERE_SOCKET")
        .env_remove("BASPHERE_CA_FILE");
    command.env("BASPHERE_CLI_CONFIG", "/nonexistent/basphere-cli.yaml").stdin(Stdio::null());
}

/// stdout of a finished command, asserting its exit code.
pub fn expect(output: &Output, code: i32) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "stdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
