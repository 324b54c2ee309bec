//! What the API bench measures besides latency: CPU and memory of the server's process, the
//! simulated backends' memory, binary sizes, and instructions per request under callgrind.

use super::*;

/// The CPU time `pid` has used, user and system, in seconds (`/proc/<pid>/stat`, in the kernel's
/// fixed 100 ticks per second).
pub(super) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are the 14th and 15th fields: 12th and 13th after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The anonymous and file-backed parts of `pid`'s resident memory, in KiB.
pub(super) fn rss_parts(pid: u32) -> (u64, u64) {
    let [anonymous, file] = status_kib(pid, ["RssAnon:", "RssFile:"]);
    (anonymous, file)
}

/// Where `pid`'s resident memory is, from `/proc/<pid>/smaps`: per mapped file, `[heap]`,
/// `[stack]` or `[anonymous]` (every other private mapping: mimalloc's arenas, threads' stacks),
/// its resident and its anonymous KiB, largest first.
pub(super) fn resident_by_mapping(pid: u32) -> Vec<(String, u64, u64)> {
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
pub(super) async fn concurrent_creates(server: &Server, tokens: &[String], count: usize) -> Result<Value> {
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
pub(super) async fn simulation_memory(dir: &Path) -> Result<(u64, u64, Duration)> {
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
pub(super) fn stripped_size(binary: &Path) -> Option<u64> {
    let out = tempfile::NamedTempFile::new().ok()?;
    let status = Command::new("strip").arg("--strip-all").arg("-o").arg(out.path()).arg(binary).status().ok()?;
    status.success().then(|| std::fs::metadata(out.path()).map(|m| m.len()).ok()).flatten()
}

/// Requests sent one after another on one connection while callgrind counts; what each costs.
pub(super) const COUNTED_REQUESTS: usize = 200;

/// The server's instructions per list request (100 VMs of the 10,000 in `dir`'s store), per
/// `/healthz`, and per listed VM, counted by callgrind: unlike times, the counts repeat run
/// after run on a shared machine. `None` when valgrind is not installed.
pub(super) fn callgrind(
    binary: &Path,
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
    token: &str,
) -> Result<Option<Value>> {
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

pub(super) fn zeroed(pid: &str) -> Result<()> {
    let zeroed = Command::new("callgrind_control").arg("--zero").arg(pid).output()?;
    anyhow::ensure!(zeroed.status.success(), "callgrind_control --zero: {}", String::from_utf8_lossy(&zeroed.stderr));
    Ok(())
}

/// The instruction total of the dump whose trigger names `label`.
pub(super) fn dumped_total(dir: &Path, label: &str) -> Result<u64> {
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
