//! `cargo xtask bench store`: committed allocations per second on SQLite and on PostgreSQL, on
//! this machine in one run: one writer after another (latency), then 16 writers at once through
//! one store and through three stores on one database (three replicas). Both durable: SQLite in
//! WAL with `synchronous=FULL`, PostgreSQL with fsync and synchronous commit (its defaults).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use basphere_core::model::{ResourceKind, ResourceRef, Uuid};
use basphere_core::testing::{ipam::pool, user};
use basphere_core::{Ipam, Store, StoreExt};
use basphere_ipam::BlockIpam;
use basphere_store::SqliteStore;
use basphere_store_postgres::testing::PgCluster;
use basphere_store_postgres::{PostgresOptions, PostgresStore};
use serde_json::json;

const WRITERS: usize = 16;

fn users(store: &dyn Store, ipam: &dyn Ipam) -> Result<Vec<basphere_core::validate::Username>> {
    (0..WRITERS as u64)
        .map(|i| {
            let account = user(&format!("writer-{i}"), 60_000 + i);
            let owner = account.username.clone();
            store.transact(|tx| {
                tx.insert_user(&account)?;
                ipam.assign_block(tx, &owner)
            })?;
            Ok(owner)
        })
        .collect()
}

fn resource() -> ResourceRef {
    ResourceRef { kind: ResourceKind::Vm, id: Uuid::now_v7(), name: "bench".into() }
}

/// One writer: `n` allocations, each its own transaction; allocations per second and p50/p99.
fn sequential(store: &dyn Store, ipam: &dyn Ipam, n: usize) -> Result<(f64, f64, f64)> {
    let owners = users(store, ipam)?;
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        let lease = store.transact(|tx| ipam.lease(tx, &owners[i % owners.len()], &resource(), 256))?;
        samples.push(t0.elapsed());
        store.transact(|tx| ipam.release(tx, None, lease.address))?;
    }
    let per_second = n as f64 / started.elapsed().as_secs_f64() * 2.0;
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0;
    Ok((per_second, at(0.5), at(0.99)))
}

/// `WRITERS` threads at once, each allocating `n` addresses for its own user through the stores
/// in turn; committed allocations per second, and checks that every address was handed out once.
fn concurrent(stores: &[Arc<dyn Store>], ipam: &Arc<dyn Ipam>, n: usize) -> Result<f64> {
    let owners = users(&*stores[0], &**ipam)?;
    let started = Instant::now();
    let threads: Vec<_> = owners
        .into_iter()
        .enumerate()
        .map(|(i, owner)| {
            let (store, ipam) = (stores[i % stores.len()].clone(), ipam.clone());
            std::thread::spawn(move || -> Result<Vec<std::net::Ipv4Addr>> {
                (0..n).map(|_| Ok(store.transact(|tx| ipam.lease(tx, &owner, &resource(), 256))?.address)).collect()
            })
        })
        .collect();
    let mut all = Vec::new();
    for thread in threads {
        all.extend(thread.join().expect("writer")?);
    }
    let per_second = all.len() as f64 / started.elapsed().as_secs_f64();
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    anyhow::ensure!(distinct.len() == all.len(), "an address was handed out twice");
    Ok(per_second)
}

pub fn store(scale: f64) -> Result<()> {
    let n = ((1000.0 * scale) as usize).max(50);
    let per_writer = ((100.0 * scale) as usize).clamp(10, 200);
    let pools = vec![pool("default", "10.0.0.0/16", 256, &[])];
    let ipam: Arc<dyn Ipam> = Arc::new(BlockIpam::new(pools)?);
    let dir = tempfile::tempdir()?;
    let cluster = PgCluster::start_durable().map_err(anyhow::Error::msg)?;
    let sqlite = |name: &str| -> Result<Arc<dyn Store>> { Ok(Arc::new(SqliteStore::open(dir.path().join(name))?)) };
    let postgres =
        |url: &str| -> Result<Arc<dyn Store>> { Ok(Arc::new(PostgresStore::connect(&PostgresOptions::new(url))?)) };

    let (sqlite_rate, sqlite_p50, sqlite_p99) = sequential(&*sqlite("sequential.db")?, &*ipam, n)?;
    let (pg_rate, pg_p50, pg_p99) = sequential(&*postgres(&cluster.fresh_database())?, &*ipam, n)?;
    let sqlite_concurrent = concurrent(&[sqlite("concurrent.db")?], &ipam, per_writer)?;
    let url = cluster.fresh_database();
    let pg_one = concurrent(&[postgres(&url)?], &ipam, per_writer)?;
    let url = cluster.fresh_database();
    let replicas = [postgres(&url)?, postgres(&url)?, postgres(&url)?];
    let pg_three = concurrent(&replicas, &ipam, per_writer)?;

    println!("store benchmark: committed allocations per second, both durable, on this machine in one run");
    println!("{:<34} {:>12} {:>10} {:>10}", "", "per second", "p50", "p99");
    println!("{:<34} {:>12.0} {:>8.2}ms {:>8.2}ms", "sqlite, one writer", sqlite_rate, sqlite_p50, sqlite_p99);
    println!("{:<34} {:>12.0} {:>8.2}ms {:>8.2}ms", "postgres, one writer", pg_rate, pg_p50, pg_p99);
    println!("{:<34} {:>12.0}", format!("sqlite, {WRITERS} writers"), sqlite_concurrent);
    println!("{:<34} {:>12.0}", format!("postgres, {WRITERS} writers, 1 store"), pg_one);
    println!("{:<34} {:>12.0}", format!("postgres, {WRITERS} writers, 3 stores"), pg_three);
    println!();
    println!(
        "ratios: postgres/sqlite one writer {:.2}, {WRITERS} writers {:.2}; postgres 3 stores / 1 store {:.2}",
        pg_rate / sqlite_rate,
        pg_one / sqlite_concurrent,
        pg_three / pg_one
    );
    let out = super::tidy::workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("store.json"),
        serde_json::to_string_pretty(&json!({
            "sqlite_one_writer_per_second": sqlite_rate, "sqlite_p50_ms": sqlite_p50, "sqlite_p99_ms": sqlite_p99,
            "postgres_one_writer_per_second": pg_rate, "postgres_p50_ms": pg_p50, "postgres_p99_ms": pg_p99,
            "sqlite_concurrent_per_second": sqlite_concurrent, "postgres_concurrent_one_store_per_second": pg_one,
            "postgres_concurrent_three_stores_per_second": pg_three, "writers": WRITERS,
        }))?,
    )?;
    println!("figures written to target/bench/store.json");
    Ok(())
}
