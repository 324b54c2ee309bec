//! Benchmarks with their own small harness: every operation is timed, so the report gives
//! throughput and p50/p99 latency from one run. Figures are written to `target/bench/`.

use std::time::{Duration, Instant};

use anyhow::Result;
use basphere_core::model::{ResourceKind, ResourceRef};
use basphere_core::testing::{ipam::pool, user};
use basphere_core::validate::Username;
use basphere_core::{Ipam, MemoryStore, Store, StoreExt};
use basphere_ipam::BlockIpam;
use basphere_store::SqliteStore;
use serde_json::json;

/// Latency samples of one kind of operation.
struct Samples(Vec<Duration>);

impl Samples {
    fn percentile(&mut self, p: f64) -> Duration {
        self.0.sort_unstable();
        let index = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[index]
    }
}

fn uuid_v7() -> basphere_core::model::Uuid {
    basphere_core::model::Uuid::now_v7()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

const BLOCK: u32 = 256;

/// A /16 in blocks of 256 (255 assignable), one user per block, each block filled to `fill`.
fn setup(store: &dyn Store, ipam: &dyn Ipam, fill: f64) -> Result<Vec<(Username, ResourceRef)>> {
    let per_block = ((f64::from(BLOCK) - 1.0) * fill).round() as usize;
    let mut users = Vec::new();
    for index in 0..255u64 {
        let account = user(&format!("user-{index}"), 50_000 + index);
        let owner = account.username.clone();
        store.transact(|tx| {
            tx.insert_user(&account)?;
            ipam.assign_block(tx, &owner)?;
            for n in 0..per_block {
                let resource = ResourceRef { kind: ResourceKind::Vm, id: uuid_v7(), name: format!("fill-{n}") };
                ipam.lease(tx, &owner, &resource, u64::from(BLOCK))?;
            }
            Ok(())
        })?;
        users.push((owner, ResourceRef { kind: ResourceKind::Vm, id: uuid_v7(), name: "bench".into() }));
    }
    Ok(users)
}

struct Run {
    backend: &'static str,
    fill: f64,
    operations: usize,
    per_second: f64,
    alloc: Samples,
    release: Samples,
}

fn measure(backend: &'static str, store: &dyn Store, ipam: &dyn Ipam, fill: f64, operations: usize) -> Result<Run> {
    let users = setup(store, ipam, fill)?;
    let leased = store.query(|tx| Ok(tx.list_leases(None)?.len()))?;
    // Throughput, without per-operation timing.
    let started = Instant::now();
    for index in 0..operations {
        let (owner, resource) = &users[index % users.len()];
        let lease = store.transact(|tx| ipam.lease(tx, owner, resource, u64::from(BLOCK)))?;
        store.transact(|tx| ipam.release(tx, None, lease.address))?;
    }
    let elapsed = started.elapsed();
    // Latency, every operation timed.
    let mut alloc = Vec::with_capacity(operations);
    let mut release = Vec::with_capacity(operations);
    for index in 0..operations {
        let (owner, resource) = &users[index % users.len()];
        let t0 = Instant::now();
        let lease = store.transact(|tx| ipam.lease(tx, owner, resource, u64::from(BLOCK)))?;
        let t1 = Instant::now();
        store.transact(|tx| ipam.release(tx, None, lease.address))?;
        let t2 = Instant::now();
        alloc.push(t1 - t0);
        release.push(t2 - t1);
    }
    let after = store.query(|tx| Ok(tx.list_leases(None)?.len()))?;
    anyhow::ensure!(after == leased, "the benchmark must leave the pool as it found it ({leased} -> {after})");
    let per_second = match backend {
        // Pairs per second in memory; committed allocations per second on SQLite.
        "memory" => operations as f64 / elapsed.as_secs_f64(),
        // Each pair is two commits; count the allocations.
        _ => operations as f64 / (elapsed.as_secs_f64() / 2.0),
    };
    Ok(Run {
        backend,
        fill: leased as f64 / 65536.0,
        operations,
        per_second,
        alloc: Samples(alloc),
        release: Samples(release),
    })
}

pub fn ipam(scale: f64) -> Result<()> {
    let pairs = ((400_000.0 * scale) as usize).max(1000);
    let commits = ((2_000.0 * scale) as usize).max(100);
    let pools = vec![pool("default", "10.0.0.0/16", BLOCK, &[])];
    let dir = tempfile::tempdir()?;
    let mut runs = Vec::new();
    for fill in [0.01, 0.90] {
        let store = MemoryStore::new();
        let ipam = BlockIpam::new(pools.clone())?;
        runs.push(measure("memory", &store, &ipam, fill, pairs)?);
        let store = SqliteStore::open(dir.path().join(format!("bench-{fill}.db")))?;
        runs.push(measure("sqlite", &store, &ipam, fill, commits)?);
    }
    println!("ipam benchmark: pool 10.0.0.0/16, blocks of {BLOCK}, 255 users; sqlite with WAL and synchronous=FULL");
    println!(
        "{:<8} {:>6} {:>9} {:>16} {:>11} {:>11} {:>13} {:>13}",
        "backend", "full", "ops", "per second", "alloc p50", "alloc p99", "release p50", "release p99"
    );
    let mut report = Vec::new();
    for run in &mut runs {
        let (a50, a99, r50, r99) = (
            run.alloc.percentile(0.5),
            run.alloc.percentile(0.99),
            run.release.percentile(0.5),
            run.release.percentile(0.99),
        );
        let unit = if run.backend == "memory" { "pairs/s" } else { "commits/s" };
        println!(
            "{:<8} {:>5.1}% {:>9} {:>9.0} {:<6} {:>9.2}us {:>9.2}us {:>11.2}us {:>11.2}us",
            run.backend,
            run.fill * 100.0,
            run.operations,
            run.per_second,
            unit,
            micros(a50),
            micros(a99),
            micros(r50),
            micros(r99)
        );
        report.push(json!({
            "backend": run.backend, "fill": run.fill, "operations": run.operations, "per_second": run.per_second, "unit": unit,
            "alloc_p50_us": micros(a50), "alloc_p99_us": micros(a99), "release_p50_us": micros(r50), "release_p99_us": micros(r99),
        }));
    }
    let p99 = |backend: &str, index: usize| {
        report
            .iter()
            .filter(|r| r["backend"] == backend)
            .nth(index)
            .map(|r| r["alloc_p99_us"].as_f64().unwrap_or(0.0) + r["release_p99_us"].as_f64().unwrap_or(0.0))
            .unwrap_or(0.0)
    };
    let ratio = p99("memory", 1) / p99("memory", 0);
    let memory_rate =
        report[2]["per_second"].as_f64().unwrap_or(0.0).min(report[0]["per_second"].as_f64().unwrap_or(0.0));
    let sqlite_rate =
        report[3]["per_second"].as_f64().unwrap_or(0.0).min(report[1]["per_second"].as_f64().unwrap_or(0.0));
    let sqlite_p99_90 = report[3]["alloc_p99_us"].as_f64().unwrap_or(f64::MAX);
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "target: memory >= 1,000,000 pairs/s at both fills: {memory_rate:.0} ({})",
        verdict(memory_rate >= 1_000_000.0)
    );
    println!("target: memory p99 (alloc+release) at 90% within 2x of 1%: ratio {ratio:.2} ({})", verdict(ratio <= 2.0));
    println!("target: sqlite >= 2,000 committed allocations/s: {sqlite_rate:.0} ({})", verdict(sqlite_rate >= 2_000.0));
    println!(
        "target: sqlite alloc p99 at 90% under 5 ms: {:.2} ms ({})",
        sqlite_p99_90 / 1000.0,
        verdict(sqlite_p99_90 < 5_000.0)
    );

    let out = super::tidy::workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("ipam.json"),
        serde_json::to_string_pretty(&json!({"runs": report, "memory_p99_ratio_90_vs_1": ratio}))?,
    )?;
    println!("figures written to target/bench/ipam.json");
    Ok(())
}
