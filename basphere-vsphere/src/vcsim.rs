//! The govmomi vCenter simulator (vcsim) as a child process, for tests and benchmarks (feature
//! `vcsim`). [`build`] compiles `vcsim/main.go` from Debian's golang-github-vmware-govmomi-dev
//! sources (GOPATH mode, offline); [`Vcsim::start`] runs it with Basphere's base folder and OS
//! templates already made, and stops it when dropped; [`Vcsim::calls`] says what it was asked.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use basphere_core::{Error, Result};

const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/vcsim/main.go");

fn message(text: String) -> Error {
    Error::backend("vcsim", basphere_core::error::Message(text))
}

/// The workspace's target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// Builds `<target>/vcsim/vcsim` when it is missing or older than its source and returns its
/// path. Safe to call from many threads and processes at once (a file lock serialises builds).
pub fn build() -> Result<PathBuf> {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let _guard = IN_PROCESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = target_dir().join("vcsim");
    std::fs::create_dir_all(out.join("gopath")).map_err(|error| message(format!("{}: {error}", out.display())))?;
    let lock = std::fs::File::create(out.join(".lock")).map_err(|error| message(error.to_string()))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, error)| message(format!("locking {}: {error}", out.display())))?;
    let binary = out.join("vcsim");
    let modified = |path: &Path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    if matches!((modified(&binary), modified(Path::new(SOURCE))), (Some(built), Some(source)) if built >= source) {
        return Ok(binary);
    }
    if !Path::new("/usr/share/gocode/src/github.com/vmware/govmomi/simulator").exists() {
        return Err(message(
            "the govmomi sources are missing: apt-get install golang-go golang-github-vmware-govmomi-dev".into(),
        ));
    }
    let partial = out.join("vcsim.partial");
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&partial)
        .arg(SOURCE)
        .env("GOPATH", format!("{}:/usr/share/gocode", out.join("gopath").display()))
        .env("GO111MODULE", "off")
        .env("GOCACHE", out.join("gocache"))
        .output()
        .map_err(|error| message(format!("running go (apt-get install golang-go): {error}")))?;
    if !output.status.success() {
        return Err(message(format!("building vcsim failed:\n{}", String::from_utf8_lossy(&output.stderr))));
    }
    std::fs::rename(&partial, &binary).map_err(|error| message(error.to_string()))?;
    Ok(binary)
}

/// What a simulator is made with.
#[derive(Clone, Debug)]
pub struct VcsimOptions {
    /// The base folder to make in `DC0/vm`.
    pub folder: String,
    /// Templates to make in `DC0/vm` (clones of `DC0_H0_VM0`).
    pub templates: Vec<String>,
    /// How long the simulator takes to answer some calls, in milliseconds (`CloneVM_Task`, ...).
    pub method_delays: Vec<(String, u64)>,
}

/// A running simulator; killed when dropped.
pub struct Vcsim {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub server: String,
    pub user: String,
    pub password: String,
    /// The methods called so far, in the order their requests arrived.
    calls: Arc<Mutex<Vec<String>>>,
}

impl Vcsim {
    /// Builds (if needed) and starts a simulator with its default inventory (datacenter `DC0`,
    /// cluster `DC0_C0`, datastore `LocalDS_0`, network `VM Network`) plus `options`.
    pub fn start(options: &VcsimOptions) -> Result<Vcsim> {
        let binary = build()?;
        let mut child = Command::new(binary)
            .arg("-folder")
            .arg(&options.folder)
            .arg("-templates")
            .arg(options.templates.join(","))
            .arg("-method-delay")
            .arg(
                options.method_delays.iter().map(|(method, ms)| format!("{method}={ms}")).collect::<Vec<_>>().join(","),
            )
            .stdout(Stdio::piped())
            // Its log is verbose; BASPHERE_VCSIM_LOG=1 shows it.
            .stderr(if std::env::var_os("BASPHERE_VCSIM_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .map_err(|error| message(format!("starting vcsim: {error}")))?;
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        stdout.read_line(&mut line).map_err(|error| message(error.to_string()))?;
        // https://basphere%40vsphere.local:PASSWORD@127.0.0.1:PORT/sdk
        let parsed = line
            .trim()
            .strip_prefix("https://")
            .and_then(|rest| rest.strip_suffix("/sdk"))
            .and_then(|rest| rest.split_once('@'))
            .and_then(|(login, server)| login.split_once(':').map(|(user, password)| (user, password, server)));
        let Some((user, password, server)) = parsed else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(message(format!("vcsim printed {line:?} instead of its URL")));
        };
        // Then `call METHOD` for each request as it arrives, until the simulator ends.
        let calls = Arc::new(Mutex::new(Vec::new()));
        let heard = calls.clone();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if let Some(method) = line.strip_prefix("call ") {
                    heard.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(method.to_owned());
                }
            }
        });
        Ok(Vcsim {
            server: server.to_owned(),
            user: percent_decoded(user),
            password: percent_decoded(password),
            child,
            calls,
        })
    }

    /// The API methods the simulator has been called with so far (`CloneVM_Task`, ...), in the
    /// order their requests arrived: each is here once its request is in, before the simulator
    /// runs the call (and before any of its `method_delays`).
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// `basphere%40vsphere.local` → `basphere@vsphere.local` (URL user info).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
