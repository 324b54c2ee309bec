//! `cargo xtask bench vsphere`: 50 VMs created concurrently through the release server, on the
//! vSphere API backend against the vCenter simulator, twice in the same run: with delays on the
//! clone, reconfigure and power-on calls (as a vCenter takes time), and with none (what is left
//! is Basphere's own work plus the simulator's, measured, not derived); and on the Terraform
//! backend with an instant fake `terraform`. Every figure is measured: each VM's time (accepted to
//! finished, from the operation records) and each batch's (first accepted to last finished).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use basphere_core::Config;
use basphere_vsphere::vcsim::{Vcsim, VcsimOptions};
use serde_json::{json, Value};

use crate::bench_api::{accounts, build, call, connect, ms, start_with, Server};

/// The simulator's answer times on a create's path (clone, reconfigure to the spec, power on), in
/// the first vSphere API run; the second has none.
const DELAYS: [(&str, u64); 3] = [("CloneVM_Task", 300), ("ReconfigVM_Task", 100), ("PowerOnVM_Task", 100)];

/// An instant `terraform`: it does only what Basphere reads back.
const INSTANT_TERRAFORM: &str = r#"#!/bin/sh
case "$1" in
  version) echo "Terraform v1.0.3 (instant fake)" ;;
  init) mkdir -p .terraform && : > .terraform.lock.hcl ;;
  apply) : > terraform.tfstate ;;
  output) printf '{"vm_moid":{"value":"vm-%s"}}\n' "$(basename "$PWD")" ;;
  destroy) rm -f terraform.tfstate ;;
  *) echo "unexpected arguments: $*" >&2; exit 2 ;;
esac
"#;

struct Batch {
    vms: usize,
    /// First accepted to last finished.
    wall: Duration,
    /// Each VM's time from accepted to finished.
    latencies: Vec<Duration>,
}

impl Batch {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
    }

    fn mean(&self) -> Duration {
        self.latencies.iter().sum::<Duration>() / self.latencies.len().max(1) as u32
    }
}

fn timestamp(value: &Value) -> Result<chrono::DateTime<chrono::Utc>> {
    Ok(value.as_str().context("a timestamp")?.parse()?)
}

/// `vms` creates of one VM each, all at once, by one developer; waits for every operation.
async fn batch(server: &Server, vms: usize) -> Result<Batch> {
    let token = accounts(server, "bench", 1, vms as u64, 700_000).await?.remove(0);
    let mut creates = Vec::new();
    for index in 0..vms {
        let (address, token) = (server.tcp.clone(), token.clone());
        creates.push(tokio::spawn(async move {
            let mut sender = connect(&address).await?;
            let body = json!({"name": format!("vm{index}"), "os": format!("os{index}"), "spec": "tiny"});
            let (status, body) = call(&mut sender, "POST", "/api/v1/vms", Some(&token), Some(&body)).await?;
            ensure!(status == 202, "create {index}: {}", String::from_utf8_lossy(&body));
            let accepted: Value = serde_json::from_slice(&body)?;
            Ok(accepted["operations"][0]["id"].as_str().context("operation id")?.to_owned())
        }));
    }
    let mut operations = Vec::new();
    for create in creates {
        operations.push(create.await??);
    }
    let mut sender = connect(&server.tcp).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut finished = Vec::new();
    for id in &operations {
        loop {
            let (status, body) =
                call(&mut sender, "GET", &format!("/api/v1/operations/{id}"), Some(&token), None).await?;
            ensure!(status == 200, "operation {id}: {}", String::from_utf8_lossy(&body));
            let op: Value = serde_json::from_slice(&body)?;
            match op["state"].as_str() {
                Some("succeeded") => {
                    finished.push((timestamp(&op["created_at"])?, timestamp(&op["updated_at"])?));
                    break;
                }
                Some("failed") => anyhow::bail!("operation {id} failed: {}", op["error"]),
                _ => {
                    ensure!(Instant::now() < deadline, "operation {id} did not finish in 10 minutes");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    let first = finished.iter().map(|(created, _)| *created).min().context("no operations")?;
    let last = finished.iter().map(|(_, done)| *done).max().context("no operations")?;
    Ok(Batch {
        vms,
        wall: (last - first).to_std()?,
        latencies: finished.iter().map(|(created, done)| (*done - *created).to_std()).collect::<Result<_, _>>()?,
    })
}

fn credentials(dir: &Path, user: &str, password: &str) -> Result<std::path::PathBuf> {
    let path = dir.join("vsphere.env");
    std::fs::write(&path, format!("VSPHERE_USER={user}\nVSPHERE_PASSWORD={password}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

/// Settings both runs share: the simulator's inventory names, enough workers and addresses, and
/// one OS (template) per VM: the simulator shares device objects between a template and its
/// clones, and concurrent clones of one template race inside it.
fn common(credentials: &Path, vcenter: &str, vms: usize) -> String {
    let mut os = String::from("templates:\n  os:\n");
    for index in 0..vms {
        os.push_str(&format!("    os{index}:\n      template: template-{index}\n      interface: ens192\n"));
    }
    os + &format!(
        "server:\n  workers: 64\nnetwork:\n  cidr: 10.0.0.0/16\n  block_size: 512\nvsphere:\n  server: \"{vcenter}\"\n  \
         datacenter: DC0\n  cluster: DC0_C0\n  datastore: LocalDS_0\n  network: \"VM Network\"\n  \
         credentials_file: {}\n  allow_unverified_ssl: true\n",
        credentials.display()
    )
}

pub fn vsphere(scale: f64) -> Result<()> {
    let root = super::tidy::workspace_root();
    let binary = build(&root)?;
    let vms = ((50.0 * scale).round() as usize).clamp(1, 500);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    // The vSphere API backend against the simulator: with delays, then with none.
    let config = Config::default();
    let api_run = |delays: &[(&str, u64)]| -> Result<(Batch, Duration)> {
        let simulator = Vcsim::start(&VcsimOptions {
            folder: config.vsphere.folder.clone(),
            templates: (0..vms).map(|index| format!("template-{index}")).collect(),
            method_delays: delays.iter().map(|(method, ms)| ((*method).to_owned(), *ms)).collect(),
        })?;
        let dir = tempfile::tempdir()?;
        let secrets = credentials(dir.path(), &simulator.user, &simulator.password)?;
        let api_config = format!("backend:\n  vm: vsphere-api\n{}", common(&secrets, &simulator.server, vms));
        let server = start_with(&binary, dir.path(), &api_config)?;
        let started = Instant::now();
        let batch = runtime.block_on(batch(&server, vms))?;
        Ok((batch, started.elapsed()))
    };
    let (api, api_total) = api_run(&DELAYS)?;
    let (instant, instant_total) = api_run(&[])?;

    // The Terraform backend with an instant fake terraform.
    let dir = tempfile::tempdir()?;
    let fake = dir.path().join("terraform");
    std::fs::write(&fake, INSTANT_TERRAFORM)?;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
    let secrets = credentials(dir.path(), "bench", "bench")?;
    let tf_config = format!(
        "backend:\n  vm: terraform\n{}terraform:\n  binary: {}\n  parallelism: 64\n",
        common(&secrets, "vcenter.example.local", vms),
        fake.display()
    );
    let server = start_with(&binary, dir.path(), &tf_config)?;
    let tf = runtime.block_on(batch(&server, vms))?;
    drop(server);

    let api_per_vm = api.wall / api.vms as u32;
    let instant_per_vm = instant.wall / instant.vms as u32;
    let tf_per_vm = tf.wall / tf.vms as u32;
    let report = json!({
        "vms": vms,
        "vsphere_api": {
            "simulator_delays_ms": DELAYS.iter().map(|(method, ms)| json!({"method": method, "ms": ms})).collect::<Vec<_>>(),
            "wall_ms": ms(api.wall),
            "client_total_ms": ms(api_total),
            "latency_p50_ms": ms(api.percentile(0.5)),
            "latency_p99_ms": ms(api.percentile(0.99)),
            "latency_mean_ms": ms(api.mean()),
            "wall_per_vm_ms": ms(api_per_vm),
        },
        "vsphere_api_no_simulator_delay": {
            "wall_ms": ms(instant.wall),
            "client_total_ms": ms(instant_total),
            "latency_p50_ms": ms(instant.percentile(0.5)),
            "latency_p99_ms": ms(instant.percentile(0.99)),
            "latency_mean_ms": ms(instant.mean()),
            "wall_per_vm_ms": ms(instant_per_vm),
        },
        "terraform_instant_fake": {
            "wall_ms": ms(tf.wall),
            "latency_p50_ms": ms(tf.percentile(0.5)),
            "latency_p99_ms": ms(tf.percentile(0.99)),
            "wall_per_vm_ms": ms(tf_per_vm),
        },
    });
    std::fs::create_dir_all(root.join("target/bench"))?;
    std::fs::write(root.join("target/bench/vsphere.json"), serde_json::to_string_pretty(&report)?)?;

    println!(
        "vsphere benchmark: {vms} VMs created at once through the release server (one request each), 2 cores shared;"
    );
    println!("  every figure measured: per VM accepted to finished, batch first accepted to last finished");
    let line = |batch: &Batch, per_vm: Duration| {
        println!(
            "    batch {:.0} ms ({:.1} ms per VM); per VM p50 {:.0} ms, mean {:.0} ms, p99 {:.0} ms",
            ms(batch.wall),
            ms(per_vm),
            ms(batch.percentile(0.5)),
            ms(batch.mean()),
            ms(batch.percentile(0.99))
        )
    };
    println!(
        "  vsphere-api, the simulator answering with delays ({}):",
        DELAYS.iter().map(|(method, ms)| format!("{method} {ms} ms")).collect::<Vec<_>>().join(", ")
    );
    line(&api, api_per_vm);
    println!("  vsphere-api, the simulator answering with no delay (Basphere's work and the simulator's):");
    line(&instant, instant_per_vm);
    println!("  terraform with an instant fake terraform (init, apply, output: 3 processes per VM):");
    line(&tf, tf_per_vm);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!(
        "target: < 20 ms per VM with instant backends (batch / VMs, measured): vsphere-api {} ({:.1} ms), terraform {} ({:.1} ms)",
        verdict(instant_per_vm < Duration::from_millis(20)),
        ms(instant_per_vm),
        verdict(tf_per_vm < Duration::from_millis(20)),
        ms(tf_per_vm)
    );
    Ok(())
}
