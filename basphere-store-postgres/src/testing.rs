//! A private PostgreSQL server for tests and benchmarks: Debian's `postgresql` binaries, a
//! cluster made with `initdb` in a temporary directory, listening only on a Unix socket in that
//! directory. As root (CI), the server runs as `nobody` through `setpriv`, since PostgreSQL
//! refuses to run as root.
//!
//! The server is a child of a small shell that reads commands on its standard input (`stop`,
//! `start`) and stops the server and removes the directory when that input closes, so the
//! server never outlives the test process, even one killed with SIGKILL.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{PostgresOptions, PostgresStore};

/// The port of a server on its socket only (the socket file's name carries it).
const SOCKET_PORT: u16 = 5432;
const USER: &str = "basphere";

/// A running private PostgreSQL server.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    control: Mutex<ChildStdin>,
    port: u16,
    /// The certificate authority of a server that also listens with TLS on loopback.
    tls: Option<PathBuf>,
    _shell: Child,
    next: AtomicUsize,
}

/// Where the server binaries are: `BASPHERE_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin`, else `initdb` on the `PATH`.
fn bindir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("BASPHERE_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists() && dir.join("postgres").exists())
        .ok_or_else(|| {
            "PostgreSQL's server binaries were not found (install Debian's `postgresql` package, or set BASPHERE_PG_BINDIR)"
                .to_owned()
        })
}

fn is_root() -> bool {
    // The tests' own uid; only root must hand the server to another user.
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

/// `command` as the user the server runs as.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

impl PgCluster {
    /// One server shared by every test of the process, started on first use.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| PgCluster::start().unwrap_or_else(|error| panic!("cannot start PostgreSQL: {error}")))
    }

    /// Makes a new cluster and starts its server, without fsync (tests measure behaviour, not
    /// durability).
    pub fn start() -> Result<PgCluster, String> {
        Self::start_with(false, false)
    }

    /// Makes a new cluster whose server syncs every commit to disk, as a production one does
    /// (benchmarks compare it with SQLite's `synchronous=FULL`).
    pub fn start_durable() -> Result<PgCluster, String> {
        Self::start_with(true, false)
    }

    /// Makes a new cluster whose server also listens on 127.0.0.1 with TLS, with a certificate
    /// for `localhost` and `127.0.0.1` signed by a certificate authority made for it
    /// ([`ca_file`](Self::ca_file)); [`tls_url`](Self::tls_url) reaches it.
    pub fn start_tls() -> Result<PgCluster, String> {
        Self::start_with(false, true)
    }

    fn start_with(durable: bool, tls: bool) -> Result<PgCluster, String> {
        let bin = bindir()?;
        let dir =
            std::env::temp_dir().join(format!("basphere-pg-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
        if is_root() {
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534))
                .map_err(|error| format!("chown {}: {error}", dir.display()))?;
        }
        let data = dir.join("data");
        let output = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("initdb: {error}"))?;
        if !output.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&output.stderr)));
        }
        // Durability is not what the tests measure: no fsync, so a test run is not disk-bound.
        let sync = if durable { "" } else { " -c fsync=off -c synchronous_commit=off -c full_page_writes=off" };
        let (port, listen, ca) = if tls {
            let ca = certificates(&dir, &data)?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|error| format!("no free port: {error}"))?
                .port();
            let listen = format!(
                " -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                quote(&data.join("server.crt").to_string_lossy()),
                quote(&data.join("server.key").to_string_lossy())
            );
            (port, listen, Some(ca))
        } else {
            (SOCKET_PORT, " -c listen_addresses=".to_owned(), None)
        };
        let server = format!(
            "{} -D {} -k {} -p {port}{listen} -c max_connections=400 -c shared_buffers=64MB{sync}",
            quote(&bin.join("postgres").to_string_lossy()),
            quote(&data.to_string_lossy()),
            quote(&dir.to_string_lossy()),
        );
        let script = format!(
            r#"log={log}
start() {{ {server} >>"$log" 2>&1 & pid=$!; }}
stop() {{ kill -INT "$pid" 2>/dev/null; wait "$pid"; }}
start
while read -r command; do
  case "$command" in
    stop) stop ;;
    start) start ;;
    kill) kill -KILL "$pid" 2>/dev/null; wait "$pid" ;;
  esac
done
stop
rm -rf {dir}
"#,
            log = quote(&dir.join("server.log").to_string_lossy()),
            dir = quote(&dir.to_string_lossy()),
        );
        let mut shell = as_server_user(Path::new("/bin/sh"))
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("starting postgres: {error}"))?;
        let control = shell.stdin.take().expect("piped");
        let cluster = PgCluster {
            dir,
            bin,
            control: Mutex::new(control),
            port,
            tls: ca,
            _shell: shell,
            next: AtomicUsize::new(0),
        };
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// The directory holding the socket (the URL's host).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn send(&self, command: &str) {
        let mut control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(control, "{command}");
        let _ = control.flush();
    }

    /// Stops the server (fast shutdown: sessions are ended, nothing committed is lost).
    pub fn stop(&self) {
        self.send("stop");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.is_ready() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again after [`stop`](Self::stop) and waits until it accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        self.send("start");
        self.wait_ready(Duration::from_secs(30))
    }

    fn is_ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .arg("-q")
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", "postgres"])
            .status()
            .map(|status| status.success())
            .unwrap_or(false)
    }

    fn wait_ready(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.is_ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("PostgreSQL did not become ready within {within:?}:\n{}", self.log()))
    }

    /// Runs SQL on the `postgres` database as the superuser, with psql.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_on("postgres", sql)
    }

    /// Runs SQL on `database` as the superuser, with psql; what it printed.
    pub fn psql_on(&self, database: &str, sql: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                database,
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("psql: {error}"))?;
        if !output.status.success() {
            return Err(format!("psql {sql:?}: {}", String::from_utf8_lossy(&output.stderr)));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Makes a login role `role` with `password`, and a database of the same name that it owns,
    /// and has the server ask that role for its password (SCRAM) on the socket, the other roles
    /// trusted as before; the URL of that database as that role, without the password. The new
    /// `pg_hba.conf` is written by the server itself (`COPY ... TO`) and loaded with
    /// `pg_reload_conf()`.
    pub fn require_password(&self, role: &str, password: &str) -> String {
        let database = role;
        assert!(role.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "a plain role name: {role}");
        let hba = [
            format!("local all {role} scram-sha-256"),
            "local all all trust".into(),
            "host all all 127.0.0.1/32 trust".into(),
            "host all all ::1/128 trust".into(),
        ];
        let rows = hba.iter().map(|line| format!("('{line}')")).collect::<Vec<_>>().join(", ");
        let statements = [
            format!(
                "SET password_encryption = 'scram-sha-256'; CREATE ROLE {role} LOGIN PASSWORD '{}'",
                password.replace('\'', "''")
            ),
            format!("CREATE DATABASE {database} OWNER {role}"),
            format!(
                "COPY (SELECT line FROM (VALUES {rows}) AS hba(line)) TO '{}'",
                self.dir.join("data/pg_hba.conf").display()
            ),
            "SELECT pg_reload_conf()".into(),
        ];
        for sql in statements {
            self.psql(&sql).unwrap_or_else(|error| panic!("{error}"));
        }
        // The postmaster loads the file on SIGHUP, asynchronously: wait until it asks for the password.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rules = self
                .psql(&format!("SELECT count(*) FROM pg_hba_file_rules WHERE '{role}' = ANY(user_name)"))
                .unwrap_or_default();
            let asked = Command::new(self.bin.join("psql"))
                .arg("-h")
                .arg(&self.dir)
                .args(["-p", &self.port.to_string(), "-U", role, "-d", database, "-w", "-c", "SELECT 1"])
                .env_remove("PGPASSWORD")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|output| !output.status.success());
            if rules == "1" && asked {
                break;
            }
            assert!(Instant::now() < deadline, "the server does not ask {role} for a password:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        format!("postgresql://{role}@/{database}?host={}&port={}", self.dir.display(), self.port)
    }

    /// The URL of database `database` (a libpq URL with the socket directory as its host).
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://{USER}@/{database}?host={}&port={}", self.dir.display(), self.port)
    }

    /// The certificate authority of a server started with [`start_tls`](Self::start_tls).
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_deref()
    }

    /// The URL of `database` over TCP with TLS required (`start_tls` servers only).
    pub fn tls_url(&self, database: &str) -> String {
        format!("postgresql://{USER}@localhost:{}/{database}?sslmode=require", self.port)
    }

    /// A new, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!("t{}_{}", std::process::id(), self.next.fetch_add(1, Ordering::SeqCst));
        self.psql(&format!("CREATE DATABASE {name}")).unwrap_or_else(|error| panic!("{error}"));
        self.url(&name)
    }

    /// A store on a new, empty schema of the shared test database (cheaper than a database).
    pub fn fresh_store(&self) -> PostgresStore {
        PostgresStore::connect(&self.fresh_schema()).unwrap_or_else(|error| panic!("{error}"))
    }

    /// A new, empty schema of the shared test database; the options of a store on it (connect
    /// several stores with them to play replicas).
    pub fn fresh_schema(&self) -> PostgresOptions {
        static DATABASE: OnceLock<()> = OnceLock::new();
        DATABASE.get_or_init(|| {
            self.psql("CREATE DATABASE conformance").unwrap_or_else(|error| panic!("{error}"));
        });
        let schema = format!("s{}_{}", std::process::id(), self.next.fetch_add(1, Ordering::SeqCst));
        let url = self.url("conformance");
        let mut options = PostgresOptions::new(format!("{url}&options=-c%20search_path%3D{schema}"));
        options.pool_size = 4;
        self.psql_on("conformance", &format!("CREATE SCHEMA {schema}")).unwrap_or_else(|error| panic!("{error}"));
        options
    }
}

/// A certificate authority (`ca.crt` in `dir`) and a server certificate for `localhost` and
/// 127.0.0.1 signed by it (`server.crt`, `server.key` in `data`, the key the server user's
/// alone), made with openssl; the authority's path.
fn certificates(dir: &Path, data: &Path) -> Result<PathBuf, String> {
    let openssl = |args: &[&str]| -> Result<(), String> {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("openssl (apt-get install openssl): {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr)))
        }
    };
    let (crt, key) = (data.join("server.crt"), data.join("server.key"));
    let (crt, key) = (crt.to_string_lossy(), key.to_string_lossy());
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Basphere test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ])?;
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        .map_err(|error| error.to_string())?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &key,
        "-out",
        "server.csr",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        &crt,
    ])?;
    std::fs::set_permissions(data.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|error| error.to_string())?;
    if is_root() {
        for file in ["server.crt", "server.key"] {
            std::os::unix::fs::chown(data.join(file), Some(65534), Some(65534)).map_err(|error| error.to_string())?;
        }
    }
    Ok(dir.join("ca.crt"))
}
