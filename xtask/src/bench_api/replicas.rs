//! `cargo xtask bench api --store postgres --replicas N`, and the runs under `wrk`.

use super::*;

/// `cargo xtask bench api --store postgres --replicas N`: in one run, the same API load against
/// SQLite with one server, PostgreSQL with one, and PostgreSQL with N replicas (a durable
/// private server). The replicas share one vCenter simulator, as they would share a vCenter (a
/// per-process simulated one cannot be shared), so every configuration runs on it. The 10,000
/// VMs the list runs against are records written into the store before the servers start
/// (provisioning 10,000 clones three times would be most of the run); creates go through the API.
pub fn replicas(scale: f64, connections: usize, replicas: usize) -> Result<()> {
    use basphere_core::{Store, StoreExt};
    let root = crate::tidy::workspace_root();
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
pub(super) fn wrk(url: &str, token: Option<&str>, seconds: u64) -> Result<Option<serde_json::Value>> {
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
pub(super) fn wrk_duration_ms(text: &str) -> Option<f64> {
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
