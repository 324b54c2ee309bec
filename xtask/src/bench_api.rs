//! `cargo xtask bench api`: the release `basphere-server` on loopback under a load generator of
//! our own (keep-alive HTTP/1.1 connections on tokio): list latency and throughput for a user
//! with 100 VMs in a store of 10,000, VM creation throughput on a zero-delay simulated backend,
//! start-up time, idle and peak memory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const CONFIG: &str =
    "backend:\n  simulated_delays: none\nnetwork:\n  cidr: 10.0.0.0/16\n  block_size: 128\nserver:\n  workers: 64\n";

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) tcp: String,
    pub(crate) socket: PathBuf,
    pub(crate) ready: Duration,
}

impl Drop for Server {
    /// Stopped as systemd stops it (SIGTERM, so it ends cleanly and whatever prints at exit
    /// does), killed after 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the server and the vSphere API backend's agent as they are packaged (the `dist`
/// profile; the server starts the agent from its own directory); answers the server's path.
/// `BASPHERE_BENCH_BINARY` names a server built otherwise to measure instead (another profile's
/// or another commit's), and nothing is built.
pub(crate) fn build(root: &Path) -> Result<PathBuf> {
    if let Some(binary) = std::env::var_os("BASPHERE_BENCH_BINARY") {
        return Ok(PathBuf::from(binary));
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "--profile", "dist", "-p", "basphere-server", "-p", "basphere-vsphere", "--bins"])
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("building the server (profile dist) failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    Ok(target.join("dist/basphere-server"))
}

/// Starts the server in `dir` with the bench's configuration, under the command that
/// `BASPHERE_BENCH_WRAPPER` names when it is set (`heaptrack`, say, to see where the C
/// libraries' allocations go; the figures are then the wrapper's too).
fn start(binary: &Path, dir: &Path) -> Result<Server> {
    let wrapper = std::env::var("BASPHERE_BENCH_WRAPPER").unwrap_or_default();
    let wrapper: Vec<&str> = wrapper.split_whitespace().collect();
    start_under(&wrapper, binary, dir, CONFIG)
}

/// Starts the server in `dir` with the configuration `config`.
pub(crate) fn start_with(binary: &Path, dir: &Path, config: &str) -> Result<Server> {
    start_under(&[], binary, dir, config)
}

/// [`start_with`], the server run by `wrapper` (a command and its arguments) when not empty.
fn start_under(wrapper: &[&str], binary: &Path, dir: &Path, config: &str) -> Result<Server> {
    std::fs::write(dir.join("config.yaml"), config)?;
    let socket = dir.join("basphere.sock");
    let started = Instant::now();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    let mut child = command
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--socket")
        .arg(&socket)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("BASPHERE_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(stderr_to()?)
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let ready = started.elapsed();
    let start = line.find("http://").context("ready line")? + "http://".len();
    let tcp = line[start..].split_whitespace().next().context("address")?.to_owned();
    Ok(Server { child, tcp, socket, ready })
}

/// Where a server's standard error goes: appended to the file `BASPHERE_BENCH_STDERR` names
/// (to read what it logs, or what an allocator prints at exit with `MIMALLOC_SHOW_STATS=1`),
/// or nowhere.
fn stderr_to() -> Result<Stdio> {
    match std::env::var_os("BASPHERE_BENCH_STDERR") {
        Some(path) => Ok(std::fs::OpenOptions::new().create(true).append(true).open(path)?.into()),
        None => Ok(Stdio::null()),
    }
}

/// VmRSS and VmHWM (peak) of a process, in KiB.
pub(crate) fn memory(pid: u32) -> (u64, u64) {
    let [rss, peak] = status_kib(pid, ["VmRSS:", "VmHWM:"]);
    (rss, peak)
}

/// Fields of `/proc/<pid>/status` given in KiB (0 for one that is missing).
fn status_kib<const N: usize>(pid: u32, names: [&str; N]) -> [u64; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    names.map(|name| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub(crate) async fn connect(address: &str) -> Result<Sender> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

pub(crate) async fn connect_unix(path: &Path) -> Result<Sender> {
    let stream = tokio::net::UnixStream::connect(path).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

pub(crate) async fn call(
    sender: &mut Sender,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Bytes)> {
    sender.ready().await?;
    let mut request = hyper::Request::builder().method(method).uri(path).header("host", "localhost");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let payload = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(body)?)
        }
        None => Bytes::new(),
    };
    let response = sender.send_request(request.body(Full::new(payload))?).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// Creates `users` accounts with a quota for `vms` VMs each and returns their tokens.
pub(crate) async fn accounts(server: &Server, prefix: &str, users: usize, vms: u64, seed: u64) -> Result<Vec<String>> {
    let mut admin = connect_unix(&server.socket).await?;
    let mut tokens = Vec::new();
    for index in 0..users {
        let name = format!("{prefix}-{index}");
        let key = basphere_core::testing::ssh_key(seed + index as u64);
        let (status, body) = call(
            &mut admin,
            "POST",
            "/api/v1/admin/users",
            None,
            Some(&json!({"username": name, "email": format!("{name}@example.com"), "ssh_key": key.as_str()})),
        )
        .await?;
        anyhow::ensure!(status == 201, "creating {name}: {}", String::from_utf8_lossy(&body));
        let quota =
            json!({"vms": vms, "ips": vms.max(128), "vcpus": vms * 2, "memory_mb": vms * 4096, "disk_gb": vms * 50});
        let (status, _) =
            call(&mut admin, "PUT", &format!("/api/v1/admin/users/{name}/quota"), None, Some(&quota)).await?;
        anyhow::ensure!(status == 200, "quota of {name}");
        let (status, body) = call(
            &mut admin,
            "POST",
            &format!("/api/v1/admin/users/{name}/tokens"),
            None,
            Some(&json!({"name": "bench"})),
        )
        .await?;
        anyhow::ensure!(status == 201, "token of {name}");
        let created: Value = serde_json::from_slice(&body)?;
        tokens.push(created["secret"].as_str().context("secret")?.to_owned());
    }
    Ok(tokens)
}

pub(crate) async fn wait_idle(server: &Server) -> Result<()> {
    let mut admin = connect_unix(&server.socket).await?;
    loop {
        let (_, body) = call(&mut admin, "GET", "/metrics", None, None).await?;
        let text = String::from_utf8_lossy(&body);
        let busy = text.lines().filter(|l| l.starts_with("basphere_operations{")).any(|l| !l.ends_with(" 0"));
        if !busy {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Load {
    requests: usize,
    ok: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Load {
    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        self.latencies.get(((self.latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
    }
}

/// `connections` keep-alive connections, each sending requests back to back for `duration`,
/// spread over `addresses` (several replicas) in turn.
async fn load<F>(addresses: &[String], connections: usize, duration: Duration, request: F) -> Result<Load>
where
    F: Fn(usize, usize) -> (String, String, Option<Value>, String) + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (address, request) = (addresses[connection % addresses.len()].clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&address).await?;
            let (mut latencies, mut ok, mut n) = (Vec::new(), 0usize, 0usize);
            while Instant::now() < deadline {
                let (method, path, body, token) = request(connection, n);
                let t0 = Instant::now();
                let (status, _) = call(&mut sender, &method, &path, Some(&token), body.as_ref()).await?;
                latencies.push(t0.elapsed());
                ok += usize::from((200..300).contains(&status));
                n += 1;
            }
            anyhow::Ok((latencies, ok))
        }));
    }
    let mut total = Load { requests: 0, ok: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
    for task in tasks {
        let (latencies, ok) = task.await??;
        total.requests += latencies.len();
        total.ok += ok;
        total.latencies.extend(latencies);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The api bench's data directory, and whether it is kept: `BASPHERE_BENCH_DATA` keeps it
/// there (it must not exist yet), with the configuration and the lister's token in
/// `lister.token`, to measure a server on it by hand; otherwise a temporary one.
fn data_dir() -> Result<(tempfile::TempDir, bool)> {
    let Some(path) = std::env::var_os("BASPHERE_BENCH_DATA").map(PathBuf::from) else {
        return Ok((tempfile::tempdir()?, false));
    };
    std::fs::create_dir(&path)
        .with_context(|| format!("BASPHERE_BENCH_DATA {}: must name a directory to create", path.display()))?;
    let mut dir = tempfile::TempDir::with_prefix_in("bench-", &path)?;
    dir.disable_cleanup(true);
    Ok((dir, true))
}

pub fn api(scale: f64, connections: usize) -> Result<()> {
    let root = super::tidy::workspace_root();
    let binary = build(&root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (dir, kept) = data_dir()?;
    let seconds = Duration::from_secs_f64((10.0 * scale).max(1.0));

    // Start-up on an empty data directory, and idle memory.
    let server = start(&binary, dir.path())?;
    std::thread::sleep(Duration::from_millis(300));
    let (idle_rss, _) = memory(server.child.id());
    let ready_empty = server.ready;

    let report = runtime.block_on(async {
        // A store of 10,000 VMs: 100 users with 100 each, created through the API.
        let seeding = Instant::now();
        let tokens = accounts(&server, "owner", 100, 100, 900_000).await?;
        let mut seeders = Vec::new();
        for (index, token) in tokens.iter().enumerate() {
            let (address, token) = (server.tcp.clone(), token.clone());
            seeders.push(tokio::spawn(async move {
                let mut sender = connect(&address).await?;
                for batch in 0..10 {
                    let body = json!({"name": format!("vm{batch}"), "os": "ubuntu-24.04", "spec": "tiny", "count": 10});
                    let (status, body) = call(&mut sender, "POST", "/api/v1/vms", Some(&token), Some(&body)).await?;
                    anyhow::ensure!(status == 202, "seeding user {index}: {}", String::from_utf8_lossy(&body));
                }
                anyhow::Ok(())
            }));
        }
        for seeder in seeders {
            seeder.await??;
        }
        wait_idle(&server).await?;
        let seeded_in = seeding.elapsed();

        // GET /api/v1/vms for one user with 100 VMs.
        let lister = tokens[7].clone();
        let mut list = load(std::slice::from_ref(&server.tcp), connections, seconds, move |_, _| ("GET".into(), "/api/v1/vms".into(), None, lister.clone())).await?;
        anyhow::ensure!(list.ok == list.requests, "{} of {} list requests failed", list.requests - list.ok, list.requests);

        // Creates: 50 fresh users, one VM per request, zero-delay backend.
        let creators = Arc::new(accounts(&server, "maker", 50, 100_000, 800_000).await?);
        let creators_for_load = creators.clone();
        let mut create = load(std::slice::from_ref(&server.tcp), connections, seconds, move |connection, n| {
            let token = creators_for_load[(connection + n * 7) % creators_for_load.len()].clone();
            ("POST".into(), "/api/v1/vms".into(), Some(json!({"name": format!("c{connection}-{n}"), "os": "ubuntu-24.04", "spec": "tiny"})), token)
        })
        .await?;
        anyhow::ensure!(create.ok == create.requests, "{} of {} creates were refused", create.requests - create.ok, create.requests);
        wait_idle(&server).await?;

        anyhow::Ok(json!({
            "seed_10000_vms_seconds": seeded_in.as_secs_f64(),
            "list": {"requests": list.requests, "per_second": list.requests as f64 / list.elapsed.as_secs_f64(), "p50_ms": ms(list.percentile(0.5)), "p99_ms": ms(list.percentile(0.99))},
            "create": {"accepted": create.ok, "per_second": create.ok as f64 / create.elapsed.as_secs_f64(), "p50_ms": ms(create.percentile(0.5)), "p99_ms": ms(create.percentile(0.99))},
            "lister": tokens[7],
            "creators": creators.as_slice(),
        }))
    })?;
    drop(server);

    // Start-up with the populated store (10,000+ VMs), then the memory a running server takes:
    // through the list runs (with wrk, when installed, the load generator the original was
    // measured with, and the ceiling of wrk and loopback here: a trivial endpoint in the same
    // run), through 200 concurrent creates, and idle after them.
    let restarted = start(&binary, dir.path())?;
    let ready_full = restarted.ready;
    std::thread::sleep(Duration::from_millis(300));
    let lister = report["lister"].as_str().context("lister")?.to_owned();
    if kept {
        std::fs::write(dir.path().join("lister.token"), &lister)?;
        eprintln!("data directory kept: {}", dir.path().display());
    }
    let creators: Vec<String> = serde_json::from_value(report["creators"].clone())?;
    let pid = restarted.child.id();
    let (started_rss, started_peak) = memory(pid);
    let (address, wrk_seconds) = (restarted.tcp.clone(), seconds.as_secs().max(1));
    let cpu_before = cpu_seconds(pid);
    let list_wrk = wrk(&format!("http://{address}/api/v1/vms"), Some(&lister), wrk_seconds)?;
    let cpu_list = cpu_seconds(pid) - cpu_before;
    let ceiling_wrk = wrk(&format!("http://{address}/healthz"), None, wrk_seconds)?;
    let cpu_ceiling = cpu_seconds(pid) - cpu_before - cpu_list;
    let wrk_figures = list_wrk.zip(ceiling_wrk).map(|(list, ceiling)| {
        let per_request = |cpu: f64, figures: &Value| {
            let requests = figures["per_second"].as_f64().unwrap_or(0.0) * wrk_seconds as f64;
            if requests > 0.0 { cpu / requests * 1e6 } else { 0.0 }
        };
        let (list_us, ceiling_us) = (per_request(cpu_list, &list), per_request(cpu_ceiling, &ceiling));
        json!({
            "list": list,
            "healthz": ceiling,
            "list_to_ceiling": list["per_second"].as_f64().unwrap_or(0.0) / ceiling["per_second"].as_f64().unwrap_or(1.0),
            "server_cpu_us_per_list": list_us,
            "server_cpu_us_per_healthz": ceiling_us,
            "server_cpu_us_per_listed_vm": (list_us - ceiling_us) / 100.0,
        })
    });
    // The peak so far: the start and the list runs; the creates' own comes after.
    let peak_after_lists = memory(pid).1;
    let burst = runtime.block_on(concurrent_creates(&restarted, &creators, 200))?;
    runtime.block_on(wait_idle(&restarted))?;
    // The server hands free heap pages back every 10 s.
    std::thread::sleep(Duration::from_secs(11));
    let (settled_rss, peak_rss) = memory(pid);
    let (anon, file) = rss_parts(pid);
    let by_mapping = resident_by_mapping(pid);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map(|tasks| tasks.count()).unwrap_or(0);
    drop(restarted);
    // Four starts more: the ready figure is the median of five, one start being at the mercy
    // of whatever else the machine does.
    let mut starts = vec![ready_full];
    for _ in 0..4 {
        starts.push(start(&binary, dir.path())?.ready);
    }
    starts.sort();
    let ready_full = starts[starts.len() / 2];
    let simulation = runtime.block_on(simulation_memory(dir.path()))?;

    // Instructions per request, which repeat whatever else the machine is doing.
    let instructions = callgrind(&binary, dir.path(), &runtime, &lister)?;

    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut report = report;
    if let Some(object) = report.as_object_mut() {
        object.remove("lister");
        object.remove("creators");
    }
    report["wrk"] = wrk_figures.unwrap_or(Value::Null);
    report["burst_of_200_creates"] = burst;
    report["ready_empty_ms"] = json!(ms(ready_empty));
    report["ready_full_ms"] = json!(ms(ready_full));
    report["ready_full_ms_of_each_start"] = starts.iter().map(|ready| json!(ms(*ready))).collect();
    report["simulated_vsphere_opened_ms"] = json!(ms(simulation.2));
    report["memory_kib"] = json!({
        "idle_empty": idle_rss,
        "idle_after_start_10000_vms": started_rss,
        "peak_through_start": started_peak,
        "peak_through_lists": peak_after_lists,
        "peak": peak_rss,
        "idle_after_load": settled_rss,
        "idle_after_load_anonymous": anon,
        "idle_after_load_file_backed": file,
        "simulated_vsphere_10000_vms_in_bench_process": simulation.0,
        "simulated_management_cluster_in_bench_process": simulation.1,
    });
    report["threads_after_load"] = json!(threads);
    report["memory_kib"]["idle_after_load_by_mapping"] = by_mapping
        .iter()
        .take(8)
        .map(|(name, rss, anon)| json!({"mapping": name, "resident": rss, "anonymous": anon}))
        .collect();
    report["instructions"] = instructions.unwrap_or(Value::Null);
    let binary_bytes = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    let stripped_bytes = stripped_size(&binary).unwrap_or(0);
    // The vSphere API backend's agent, the other program a deployment may run.
    let agent = binary.with_file_name(basphere_vsphere::agent::AGENT);
    let agent_bytes = std::fs::metadata(&agent).map(|m| m.len()).unwrap_or(0);
    let agent_stripped = stripped_size(&agent).unwrap_or(0);
    report["binary_bytes"] = json!({"as_built": binary_bytes, "stripped": stripped_bytes});
    report["agent_binary_bytes"] = json!({"as_built": agent_bytes, "stripped": agent_stripped});

    let figure = |path: &[&str]| path.iter().fold(&report, |value, key| &value[*key]).as_f64().unwrap_or(0.0);
    println!("api benchmark: release basphere-server, load generator with {connections} keep-alive connections on loopback, {} s per run, 2 cores shared", seconds.as_secs());
    println!(
        "  seeding 10,000 VMs through the API (100 users x 10 batches of 10) and provisioning them: {:.1} s",
        figure(&["seed_10000_vms_seconds"])
    );
    println!(
        "  own load generator: GET /api/v1/vms (100 VMs of 10,000) {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; POST /api/v1/vms (1 VM each, zero-delay backend) {:.0} accepted/s, p50 {:.2} ms, p99 {:.2} ms",
        figure(&["list", "per_second"]), figure(&["list", "p50_ms"]), figure(&["list", "p99_ms"]),
        figure(&["create", "per_second"]), figure(&["create", "p50_ms"]), figure(&["create", "p99_ms"]),
    );
    let have_wrk = report["wrk"].is_object();
    if have_wrk {
        println!(
            "  wrk -t2 -c32 on a restarted server: GET /api/v1/vms {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms; /healthz {:.0} req/s (the ceiling here); list/ceiling {:.3}",
            figure(&["wrk", "list", "per_second"]), figure(&["wrk", "list", "p50_ms"]), figure(&["wrk", "list", "p99_ms"]),
            figure(&["wrk", "healthz", "per_second"]), figure(&["wrk", "list_to_ceiling"]),
        );
        println!(
            "  server CPU per request: list {:.1} us, /healthz {:.1} us; {:.2} us per listed VM",
            figure(&["wrk", "server_cpu_us_per_list"]),
            figure(&["wrk", "server_cpu_us_per_healthz"]),
            figure(&["wrk", "server_cpu_us_per_listed_vm"]),
        );
    } else {
        println!("  (wrk is not installed: apt-get install wrk for the figures comparable with the original's)");
    }
    println!(
        "  200 concurrent creates (one connection each): {} accepted in {:.0} ms",
        report["burst_of_200_creates"]["accepted"],
        figure(&["burst_of_200_creates", "ms"])
    );
    match report["instructions"].is_object() {
        true => println!(
            "  instructions per request (callgrind): GET /api/v1/vms {:.0}, /healthz {:.0}; {:.0} per listed VM",
            figure(&["instructions", "list"]),
            figure(&["instructions", "healthz"]),
            figure(&["instructions", "per_listed_vm"]),
        ),
        false => println!("  (valgrind is not installed: apt-get install valgrind for instruction counts)"),
    }
    println!(
        "  ready: {:.1} ms on an empty data directory, {:.1} ms with 10,000+ VMs (median of 5 starts, {:.1} to {:.1}); the simulated vSphere alone opens its journal of 10,000+ VMs in {:.1} ms",
        ms(ready_empty),
        ms(ready_full),
        ms(starts[0]),
        ms(starts[starts.len() - 1]),
        ms(simulation.2),
    );
    println!(
        "  memory (RSS): idle {:.1} MiB empty, {:.1} MiB after a start with 10,000 VMs; peak {:.1} MiB through the start, {:.1} through the list runs, {:.1} through the creates; idle {:.1} MiB after them ({:.1} anonymous, {:.1} file-backed: the binary's pages)",
        mib(idle_rss), mib(started_rss), mib(started_peak), mib(peak_after_lists), mib(peak_rss), mib(settled_rss), mib(anon), mib(file),
    );
    println!(
        "  idle after them, {threads} threads; by mapping: {}",
        by_mapping
            .iter()
            .take(5)
            .map(|(name, rss, anon)| {
                let name = Path::new(name).file_name().map_or(name.clone(), |n| n.to_string_lossy().into_owned());
                format!("{name} {:.1} MiB ({:.1} anonymous)", mib(*rss), mib(*anon))
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  the simulated backends opened on the same data in this benchmark's own process (not the server's; its figures above include them): vSphere with 10,000 VMs {:.1} MiB anonymous, management cluster {:.1} MiB",
        mib(simulation.0), mib(simulation.1),
    );
    println!(
        "  binary: {:.1} MB as built, {:.1} MB as packaged (stripped; symbols and lines in basphere-dbgsym); the vSphere API agent {:.1} MB as built, {:.1} MB as packaged",
        binary_bytes as f64 / 1e6,
        stripped_bytes as f64 / 1e6,
        agent_bytes as f64 / 1e6,
        agent_stripped as f64 / 1e6,
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    if have_wrk {
        println!(
            "target: list >= 10,000 req/s with p99 <= 10 ms (wrk): {} / {}; <= 1.5 us per listed VM: {}",
            verdict(figure(&["wrk", "list", "per_second"]) >= 10_000.0),
            verdict(figure(&["wrk", "list", "p99_ms"]) <= 10.0),
            verdict(figure(&["wrk", "server_cpu_us_per_listed_vm"]) <= 1.5),
        );
    }
    println!(
        "target: the server's peak RSS <= 30 MiB, idle <= 25 MiB (as measured, its simulated backends included): {} ({:.1}) / {} ({:.1})",
        verdict(mib(peak_rss) <= 30.0),
        mib(peak_rss),
        verdict(mib(settled_rss) <= 25.0),
        mib(settled_rss),
    );
    println!("target: ready <= 100 ms with 10,000 VMs: {}", verdict(ready_full <= Duration::from_millis(100)));
    println!(
        "target: packaged binaries <= 40 MB each: server {} / vSphere API agent {}",
        verdict(stripped_bytes > 0 && stripped_bytes <= 40_000_000),
        verdict(agent_stripped > 0 && agent_stripped <= 40_000_000),
    );
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("api.json"), serde_json::to_string_pretty(&report)?)?;
    println!("figures written to target/bench/api.json");
    Ok(())
}

/// The CPU time `pid` has used, user and system, in seconds (`/proc/<pid>/stat`, in the kernel's
/// fixed 100 ticks per second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are the 14th and 15th fields: 12th and 13th after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The anonymous and file-backed parts of `pid`'s resident memory, in KiB.
fn rss_parts(pid: u32) -> (u64, u64) {
    let [anonymous, file] = status_kib(pid, ["RssAnon:", "RssFile:"]);
    (anonymous, file)
}

/// Where `pid`'s resident memory is, from `/proc/<pid>/smaps`: per mapped file, `[heap]`,
/// `[stack]` or `[anonymous]` (every other private mapping: mimalloc's arenas, threads' stacks),
/// its resident and its anonymous KiB, largest first.
fn resident_by_mapping(pid: u32) -> Vec<(String, u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut totals: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut current = String::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let kib = || fields.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match fields.first() {
            // A mapping's first line: address range, permissions, offset, device, inode, name.
            Some(range) if range.contains('-') && !range.ends_with(':') => {
                current = fields
                    .get(5..)
                    .map(|name| name.join(" "))
                    .filter(|name| !name.is_empty())
                    .unwrap_or_else(|| "[anonymous]".into());
            }
            Some(&"Rss:") => totals.entry(current.clone()).or_default().0 += kib(),
            Some(&"Anonymous:") => totals.entry(current.clone()).or_default().1 += kib(),
            _ => {}
        }
    }
    let mut list: Vec<(String, u64, u64)> = totals.into_iter().map(|(name, (rss, anon))| (name, rss, anon)).collect();
    list.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    list
}

/// `count` creates at once, each on a connection of its own, spread over `tokens`.
async fn concurrent_creates(server: &Server, tokens: &[String], count: usize) -> Result<Value> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..count {
        let (address, token) = (server.tcp.clone(), tokens[index % tokens.len()].clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&address).await?;
            let body = json!({"name": format!("burst-{index}"), "os": "ubuntu-24.04", "spec": "tiny"});
            let (status, body) = call(&mut sender, "POST", "/api/v1/vms", Some(&token), Some(&body)).await?;
            anyhow::ensure!(status == 202, "create {index}: {status} {}", String::from_utf8_lossy(&body));
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(json!({"accepted": count, "ms": ms(started.elapsed())}))
}

/// What the simulated backends hold for the store in `dir`, in KiB, measured in this process (the
/// benchmark's, not the server's, whose allocator and timing differ): this process's resident
/// anonymous memory grown by opening each from its journal (the simulated vSphere's inventory of 10,000
/// VMs; the simulated management cluster with its CRD schemas). About: what parsing freed stays
/// counted. Also how long the simulated vSphere took to open (its journal's replay).
async fn simulation_memory(dir: &Path) -> Result<(u64, u64, Duration)> {
    let config = basphere_core::Config::from_yaml(CONFIG)?;
    let data = dir.join("data");
    // Anonymous memory only: the code each runs is counted in this program's binary instead.
    let anonymous = || rss_parts(std::process::id()).0;
    let before = anonymous();
    let opening = Instant::now();
    let backend = basphere_vsphere::config::BackendConfig::from_config(&config)?;
    // The configuration has no `vsphere` section: the cluster backend's placement is its own.
    let site = basphere_capi::VsphereSite {
        simulated_vms: backend.vm == basphere_vsphere::config::VmBackendKind::Simulated,
        ..basphere_capi::VsphereSite::default()
    };
    let vsphere = basphere_vsphere::open_vm_backend(backend, &config, &data)?;
    let opened_in = opening.elapsed();
    let with_vsphere = anonymous();
    let clusters = basphere_capi::cluster_backend(&config, &site, &data).await?;
    let with_clusters = anonymous();
    drop((vsphere, clusters));
    Ok((with_vsphere.saturating_sub(before), with_clusters.saturating_sub(with_vsphere), opened_in))
}

/// The size of `binary` stripped whole (binutils' `strip --strip-all`), as packaged: its
/// symbols and line tables go to the `basphere-dbgsym` package.
fn stripped_size(binary: &Path) -> Option<u64> {
    let out = tempfile::NamedTempFile::new().ok()?;
    let status = Command::new("strip").arg("--strip-all").arg("-o").arg(out.path()).arg(binary).status().ok()?;
    status.success().then(|| std::fs::metadata(out.path()).map(|m| m.len()).ok()).flatten()
}

/// Requests sent one after another on one connection while callgrind counts; what each costs.
const COUNTED_REQUESTS: usize = 200;

/// The server's instructions per list request (100 VMs of the 10,000 in `dir`'s store), per
/// `/healthz`, and per listed VM, counted by callgrind: unlike times, the counts repeat run
/// after run on a shared machine. `None` when valgrind is not installed.
fn callgrind(binary: &Path, dir: &Path, runtime: &tokio::runtime::Runtime, token: &str) -> Result<Option<Value>> {
    if Command::new("valgrind").arg("--version").output().is_err() {
        return Ok(None);
    }
    let out = dir.join("callgrind");
    std::fs::create_dir_all(&out)?;
    let out_file = format!("--callgrind-out-file={}/callgrind.out", out.display());
    let server = start_under(&["valgrind", "--tool=callgrind", "--quiet", &out_file], binary, dir, CONFIG)?;
    let pid = server.child.id().to_string();
    // The start-up reconcile (10,000 VMs, slow under valgrind) must not fall in a counted window.
    runtime.block_on(async {
        let mut admin = connect_unix(&server.socket).await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (status, body) = call(&mut admin, "GET", "/api/v1/admin/reconcile", None, None).await?;
            let report: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if status == 200 && !report["at"].is_null() {
                return anyhow::Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "the start-up reconcile did not finish under callgrind");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })?;
    let count = |label: &str, path: &'static str, token: Option<&str>| -> Result<f64> {
        runtime.block_on(async {
            let mut sender = connect(&server.tcp).await?;
            // Warm: the first requests fill caches (the token's, the statement cache).
            for _ in 0..20 {
                let (status, _) = call(&mut sender, "GET", path, token, None).await?;
                anyhow::ensure!(status == 200, "{path} answered {status}");
            }
            zeroed(&pid)?;
            for _ in 0..COUNTED_REQUESTS {
                call(&mut sender, "GET", path, token, None).await?;
            }
            anyhow::Ok(())
        })?;
        let dumped = Command::new("callgrind_control").arg(format!("--dump={label}")).arg(&pid).output()?;
        anyhow::ensure!(
            dumped.status.success(),
            "callgrind_control --dump: {}",
            String::from_utf8_lossy(&dumped.stderr)
        );
        let total = dumped_total(&out, label)?;
        Ok(total as f64 / COUNTED_REQUESTS as f64)
    };
    let list = count("list", "/api/v1/vms", Some(token))?;
    let healthz = count("healthz", "/healthz", None)?;
    drop(server);
    Ok(Some(
        json!({"list": list, "healthz": healthz, "per_listed_vm": (list - healthz) / 100.0, "requests_counted": COUNTED_REQUESTS}),
    ))
}

fn zeroed(pid: &str) -> Result<()> {
    let zeroed = Command::new("callgrind_control").arg("--zero").arg(pid).output()?;
    anyhow::ensure!(zeroed.status.success(), "callgrind_control --zero: {}", String::from_utf8_lossy(&zeroed.stderr));
    Ok(())
}

/// The instruction total of the dump whose trigger names `label`.
fn dumped_total(dir: &Path, label: &str) -> Result<u64> {
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        // callgrind names what made a dump: `desc: Trigger: dump <label>`.
        if !text.lines().any(|line| line.starts_with("desc: Trigger:") && line.ends_with(&format!(" {label}"))) {
            continue;
        }
        let total = text
            .lines()
            .find_map(|line| line.strip_prefix("summary:").or_else(|| line.strip_prefix("totals:")))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok());
        return total.with_context(|| format!("no total in the callgrind dump for {label}"));
    }
    bail!("callgrind wrote no dump for {label} in {}", dir.display())
}

/// `cargo xtask bench api --store postgres --replicas N`: in one run, the same API load against
/// SQLite with one server, PostgreSQL with one, and PostgreSQL with N replicas (a durable
/// private server). The replicas share one vCenter simulator, as they would share a vCenter (a
/// per-process simulated one cannot be shared), so every configuration runs on it. The 10,000
/// VMs the list runs against are records written into the store before the servers start
/// (provisioning 10,000 clones three times would be most of the run); creates go through the API.
pub fn replicas(scale: f64, connections: usize, replicas: usize) -> Result<()> {
    use basphere_core::{Store, StoreExt};
    let root = super::tidy::workspace_root();
    let binary = build(&root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let seconds = Duration::from_secs_f64((10.0 * scale).max(1.0));
    let templates: Vec<String> = (0..replicas).map(|i| format!("replica-{i}-template")).collect();
    let defaults = basphere_core::Config::default();
    let vcsim = basphere_vsphere::vcsim::Vcsim::start(&basphere_vsphere::vcsim::VcsimOptions {
        folder: defaults.vsphere.folder.clone(),
        templates: templates.clone(),
        method_delays: Vec::new(),
    })?;
    let credentials = dir.path().join("vsphere.env");
    std::fs::write(&credentials, format!("VSPHERE_USER={}\nVSPHERE_PASSWORD={}\n", vcsim.user, vcsim.password))?;
    std::fs::set_permissions(&credentials, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let cluster = basphere_store_postgres::testing::PgCluster::start_durable().map_err(anyhow::Error::msg)?;

    let mut rows = Vec::new();
    for (store_kind, count) in [("sqlite", 1), ("postgres", 1), ("postgres", replicas)] {
        let home = dir.path().join(format!("{store_kind}-{count}"));
        std::fs::create_dir_all(home.join("data"))?;
        let url = match store_kind {
            "sqlite" => format!("sqlite:{}", home.join("data/basphere.db").display()),
            _ => cluster.fresh_database(),
        };
        // 100 owners with 100 VM records each, and one token to list with.
        let store: std::sync::Arc<dyn Store> = match store_kind {
            "sqlite" => std::sync::Arc::new(basphere_store::SqliteStore::open(home.join("data/basphere.db"))?),
            _ => std::sync::Arc::new(basphere_store_postgres::PostgresStore::connect(
                &basphere_store_postgres::PostgresOptions::new(&url),
            )?),
        };
        let secret = "bsp_benchmarklister0000000000000000000000";
        for owner in 0..100u64 {
            let account = basphere_core::testing::user(&format!("owner-{owner}"), 700_000 + owner);
            store.transact(|tx| {
                tx.insert_user(&account)?;
                for n in 0..100 {
                    let mut vm = basphere_core::testing::store::vm(&account.username, &format!("vm-{n}"));
                    vm.state = basphere_core::model::VmState::Running;
                    tx.insert_vm(&vm)?;
                }
                if owner == 7 {
                    let now = basphere_core::model::now();
                    tx.insert_token(&basphere_core::model::ApiToken {
                        id: basphere_core::model::Uuid::now_v7(),
                        owner: account.username.clone(),
                        name: "bench".into(),
                        scope: basphere_core::model::TokenScope::User,
                        secret_hash: basphere_core::model::ApiToken::hash_secret(secret),
                        created_at: now,
                        expires_at: None,
                        revoked_at: None,
                        last_used_at: None,
                    })?;
                }
                Ok(())
            })?;
        }
        drop(store);
        let servers: Vec<Server> = (0..count)
            .map(|i| {
                let replica = home.join(format!("replica-{i}"));
                std::fs::create_dir_all(&replica)?;
                let config = format!(
                    "store:\n  url: \"{url}\"\nserver:\n  workers: 1\nnetwork:\n  cidr: 10.0.0.0/16\n  block_size: 128\nbackend:\n  vm: vsphere-api\nvsphere:\n  server: \"{}\"\n  datacenter: DC0\n  cluster: DC0_C0\n  datastore: LocalDS_0\n  network: \"VM Network\"\n  folder: {}\n  credentials_file: {}\n  allow_unverified_ssl: true\ntemplates:\n  os:\n    ubuntu-24.04:\n      template: {}\n      interface: ens192\n",
                    vcsim.server,
                    defaults.vsphere.folder,
                    credentials.display(),
                    templates[i]
                );
                start_with(&binary, &replica, &config)
            })
            .collect::<Result<_>>()?;
        let addresses: Vec<String> = servers.iter().map(|server| server.tcp.clone()).collect();
        let row = runtime.block_on(async {
            let mut list = load(&addresses, connections, seconds, move |_, _| {
                ("GET".into(), "/api/v1/vms".into(), None, secret.to_owned())
            })
            .await?;
            anyhow::ensure!(list.ok == list.requests, "{} of {} list requests failed", list.requests - list.ok, list.requests);
            let creators = Arc::new(accounts(&servers[0], "maker", 20, 100_000, 800_000).await?);
            let mut create = load(&addresses, connections, seconds, move |connection, n| {
                let token = creators[(connection + n * 7) % creators.len()].clone();
                ("POST".into(), "/api/v1/vms".into(), Some(json!({"name": format!("c{connection}-{n}"), "os": "ubuntu-24.04", "spec": "tiny"})), token)
            })
            .await?;
            anyhow::ensure!(create.ok == create.requests, "{} of {} creates were refused", create.requests - create.ok, create.requests);
            anyhow::Ok(json!({
                "store": store_kind, "replicas": count,
                "list_per_second": list.requests as f64 / list.elapsed.as_secs_f64(), "list_p50_ms": ms(list.percentile(0.5)), "list_p99_ms": ms(list.percentile(0.99)),
                "create_per_second": create.ok as f64 / create.elapsed.as_secs_f64(), "create_p50_ms": ms(create.percentile(0.5)), "create_p99_ms": ms(create.percentile(0.99)),
            }))
        })?;
        drop(servers);
        rows.push(row);
    }
    println!("api benchmark across stores: release servers on one vCenter simulator, {connections} keep-alive connections spread over the replicas, {} s per run, 2 cores shared", seconds.as_secs());
    println!(
        "{:<22} {:>12} {:>10} {:>10} {:>14} {:>10} {:>10}",
        "", "list req/s", "p50", "p99", "creates/s", "p50", "p99"
    );
    for row in &rows {
        let f = |key: &str| row[key].as_f64().unwrap_or(0.0);
        println!(
            "{:<22} {:>12.0} {:>8.2}ms {:>8.2}ms {:>14.0} {:>8.2}ms {:>8.2}ms",
            format!("{} x{}", row["store"].as_str().unwrap_or(""), row["replicas"]),
            f("list_per_second"),
            f("list_p50_ms"),
            f("list_p99_ms"),
            f("create_per_second"),
            f("create_p50_ms"),
            f("create_p99_ms")
        );
    }
    let rate = |i: usize, key: &str| rows[i][key].as_f64().unwrap_or(0.0);
    println!();
    println!(
        "ratios: creates postgres x1 / sqlite {:.2}, postgres x{replicas} / postgres x1 {:.2}; lists postgres x1 / sqlite {:.2}, postgres x{replicas} / postgres x1 {:.2}",
        rate(1, "create_per_second") / rate(0, "create_per_second"),
        rate(2, "create_per_second") / rate(1, "create_per_second"),
        rate(1, "list_per_second") / rate(0, "list_per_second"),
        rate(2, "list_per_second") / rate(1, "list_per_second"),
    );
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("api-stores.json"), serde_json::to_string_pretty(&rows)?)?;
    println!("figures written to target/bench/api-stores.json");
    Ok(())
}

/// Runs `wrk -t2 -c32 --latency` against `url` for `seconds`, when wrk is installed: requests per
/// second and the 50th and 99th percentile latencies in milliseconds.
fn wrk(url: &str, token: Option<&str>, seconds: u64) -> Result<Option<serde_json::Value>> {
    let mut command = std::process::Command::new("wrk");
    command.args(["-t2", "-c32", &format!("-d{seconds}s"), "--latency"]);
    if let Some(token) = token {
        command.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    let output = match command.arg(url).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    anyhow::ensure!(!text.contains("Non-2xx"), "wrk got errors from {url}: {text}");
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.split_whitespace().nth(1))
    };
    let rate: f64 =
        field("Requests/sec:").and_then(|v| v.parse().ok()).ok_or_else(|| anyhow::anyhow!("no rate in: {text}"))?;
    let latency =
        |prefix: &str| field(prefix).and_then(wrk_duration_ms).ok_or_else(|| anyhow::anyhow!("no {prefix} in: {text}"));
    Ok(Some(json!({"per_second": rate, "p50_ms": latency("50%")?, "p99_ms": latency("99%")?})))
}

/// wrk's durations (`850.00us`, `4.82ms`, `1.02s`) in milliseconds.
fn wrk_duration_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrk_durations_are_read_in_milliseconds() {
        assert_eq!(super::wrk_duration_ms("850.00us"), Some(0.85));
        assert_eq!(super::wrk_duration_ms("4.82ms"), Some(4.82));
        assert_eq!(super::wrk_duration_ms("1.50s"), Some(1500.0));
        assert_eq!(super::wrk_duration_ms("12"), None);
    }
}
