//! `cargo xtask bench accounts`: the release `basphere-server` on loopback: registrations per
//! second and their latency with no request pending and with 10,000 pending, listing 10,000
//! pending requests a page at a time, approving 100 accounts in one go, and whether the answer
//! time tells a submission naming a taken username from a fresh one.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::bench_api::{build, call, connect, connect_unix, ms, start_with, Server};

/// The throughput runs answer each submission as soon as its work is done
/// (`answer_after_ms: 0`), so that they measure the work; the timing comparison runs on a
/// second server with the default answer time as well.
const CONFIG: &str = "backend:\n  simulated_delays: none\nnetwork:\n  cidr: 10.0.0.0/16\n  block_size: 32\nserver:\n  workers: 64\n\
recaptcha:\n  enabled: false\nregistration:\n  per_address_per_hour: 100000000\n  per_email_per_day: 100000000\n  per_day: 100000000\n  answer_after_ms: 0\n";

/// Rounds of the timing comparison, and submissions of each kind per round.
const TIMING_ROUNDS: usize = 3;
const TIMING_PER_ROUND: usize = 50;

/// Latencies of one run of registrations.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        self.latencies.get(((self.latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn json(&mut self) -> Value {
        json!({"requests": self.latencies.len(), "per_second": self.rate(), "p50_ms": ms(self.percentile(0.5)), "p99_ms": ms(self.percentile(0.99))})
    }
}

/// `count` registrations numbered from `first`, over `connections` keep-alive connections.
async fn register(server: &Server, first: usize, count: usize, connections: usize) -> Result<Run> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let address = server.tcp.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&address).await?;
            let mut latencies = Vec::new();
            let mut n = connection;
            while n < count {
                let index = first + n;
                let name = format!("applicant-{index}");
                let key = basphere_core::testing::ssh_key(5_000_000 + index as u64);
                let body = json!({"username": name, "email": format!("{name}@example.com"), "ssh_key": key.as_str()});
                let t0 = Instant::now();
                let (status, answer) = call(&mut sender, "POST", "/api/v1/register", None, Some(&body)).await?;
                latencies.push(t0.elapsed());
                anyhow::ensure!(status == 202, "registering {name}: {status} {}", String::from_utf8_lossy(&answer));
                n += connections;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Run { latencies, elapsed: started.elapsed() })
}

pub fn accounts(scale: f64, connections: usize) -> Result<()> {
    let root = super::tidy::workspace_root();
    let binary = build(&root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let server = start_with(&binary, dir.path(), CONFIG)?;
    let measured = ((1000.0 * scale) as usize).max(50);
    let pending_target = 10_000usize;

    let (report, unpadded) = runtime.block_on(async {
        // From an empty store.
        let mut empty = register(&server, 0, measured, connections).await?;
        // Up to 10,000 pending, then the same measurement again.
        let fill = pending_target.saturating_sub(measured);
        register(&server, measured, fill, connections).await?;
        let mut full = register(&server, pending_target, measured, connections).await?;

        // Listing 10,000+ pending requests, 100 a page, as an administrator on the socket.
        let mut admin = connect_unix(&server.socket).await?;
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        let mut listed = 0usize;
        let listing = Instant::now();
        loop {
            let path = match &after {
                Some(after) => format!("/api/v1/admin/registrations?limit=100&after={after}"),
                None => "/api/v1/admin/registrations?limit=100".to_owned(),
            };
            let t0 = Instant::now();
            let (status, body) = call(&mut admin, "GET", &path, None, None).await?;
            pages.push(t0.elapsed());
            anyhow::ensure!(status == 200, "listing: {status}");
            let page: Value = serde_json::from_slice(&body)?;
            listed += page["items"].as_array().context("items")?.len();
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => break,
            }
        }
        let listing_elapsed = listing.elapsed();
        let mut list = Run { latencies: pages, elapsed: listing_elapsed };

        // Approving 100 accounts: every approval asked for, then every operation finished.
        let approving = Instant::now();
        let mut operations = Vec::new();
        for index in 0..100 {
            let path = format!("/api/v1/admin/registrations/applicant-{index}/approve");
            let (status, body) = call(&mut admin, "POST", &path, None, None).await?;
            anyhow::ensure!(status == 202, "approving applicant-{index}: {}", String::from_utf8_lossy(&body));
            let operation: Value = serde_json::from_slice(&body)?;
            operations.push(operation["id"].as_str().context("operation id")?.to_owned());
        }
        for id in &operations {
            loop {
                let (_, body) = call(&mut admin, "GET", &format!("/api/v1/operations/{id}"), None, None).await?;
                let operation: Value = serde_json::from_slice(&body)?;
                match operation["state"].as_str() {
                    Some("succeeded") => break,
                    Some("failed") => anyhow::bail!("approval {id} failed: {}", operation["error"]),
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }
        let approved_in = approving.elapsed();

        // Enumeration by timing: submissions naming taken usernames (accounts and pending
        // requests) against fresh ones, interleaved on one connection so both see the same load.
        // Answered as soon as the work is done, the difference is the work's.
        let unpadded = timing_rounds(&server, "raw").await?;
        let (taken, fresh): (Vec<_>, Vec<_>) =
            unpadded.iter().map(|round| (round.taken.clone(), round.fresh.clone())).unzip();
        let mut taken = Run { latencies: taken.concat(), elapsed: Duration::from_secs(1) };
        let mut fresh = Run { latencies: fresh.concat(), elapsed: Duration::from_secs(1) };
        let report = json!({
            "register_empty": empty.json(),
            "register_10000_pending": full.json(),
            "list_pages": list.json(),
            "listed": listed,
            "approve_100_seconds": approved_in.as_secs_f64(),
            "taken_p50_ms": ms(taken.percentile(0.5)),
            "fresh_p50_ms": ms(fresh.percentile(0.5)),
            "taken_p90_ms": ms(taken.percentile(0.9)),
            "fresh_p90_ms": ms(fresh.percentile(0.9)),
            "timing_work_only": unpadded.iter().map(Round::json).collect::<Vec<_>>(),
        });
        anyhow::Ok((report, unpadded))
    })?;
    drop(server);

    // The same comparison on a server as deployed: every answer after the default answer time.
    let padded_dir = tempfile::tempdir()?;
    let padded_config = CONFIG.replace("  answer_after_ms: 0\n", "");
    let padded = start_with(&binary, padded_dir.path(), &padded_config)?;
    let padded_rounds = runtime.block_on(async {
        register(&padded, 0, 200, connections).await?;
        timing_rounds(&padded, "deployed").await
    })?;
    drop(padded);
    let mut report = report;
    report["timing_deployed"] = padded_rounds.iter().map(Round::json).collect();

    let f = |path: &[&str]| path.iter().fold(&report, |v, k| &v[*k]).as_f64().unwrap_or(0.0);
    println!(
        "accounts benchmark: release basphere-server, {connections} keep-alive connections on loopback, 2 cores shared"
    );
    println!(
        "  POST /api/v1/register, 0 pending: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({} requests)",
        f(&["register_empty", "per_second"]),
        f(&["register_empty", "p50_ms"]),
        f(&["register_empty", "p99_ms"]),
        report["register_empty"]["requests"]
    );
    println!(
        "  POST /api/v1/register, 10,000 pending: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
        f(&["register_10000_pending", "per_second"]),
        f(&["register_10000_pending", "p50_ms"]),
        f(&["register_10000_pending", "p99_ms"])
    );
    let slower = f(&["register_10000_pending", "p50_ms"]) / f(&["register_empty", "p50_ms"]).max(f64::MIN_POSITIVE);
    println!("  p50 with 10,000 pending / p50 with none: {slower:.2}x");
    println!(
        "  GET /api/v1/admin/registrations (100 a page, {} listed): p50 {:.2} ms, p99 {:.2} ms per page",
        report["listed"],
        f(&["list_pages", "p50_ms"]),
        f(&["list_pages", "p99_ms"])
    );
    println!("  approving 100 accounts (asked, then every operation done): {:.2} s", f(&["approve_100_seconds"]));
    let timing = f(&["taken_p50_ms"]) / f(&["fresh_p50_ms"]).max(f64::MIN_POSITIVE);
    println!(
        "  answers for taken names vs fresh ones: p50 {:.2} / {:.2} ms ({timing:.2}x), p90 {:.2} / {:.2} ms",
        f(&["taken_p50_ms"]),
        f(&["fresh_p50_ms"]),
        f(&["taken_p90_ms"]),
        f(&["fresh_p90_ms"])
    );
    for (label, rounds) in [("answered when done", &unpadded), ("as deployed", &padded_rounds)] {
        let figures: Vec<String> = rounds
            .iter()
            .map(|r| format!("{:.3} / {:.3} ms, z {:+.2}", ms(r.mean(&r.taken)), ms(r.mean(&r.fresh)), r.z()))
            .collect();
        println!("  taken vs fresh, {label}, {TIMING_ROUNDS} rounds of {TIMING_PER_ROUND}: {}", figures.join("; "));
    }
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!("target: registration latency flat within 1.5x from 0 to 10,000 pending: {}", verdict(slower <= 1.5));
    println!("target: listing p99 < 20 ms per page: {}", verdict(f(&["list_pages", "p99_ms"]) < 20.0));
    println!(
        "target: taken and fresh names answered in the same time class (within 1.5x): {}",
        verdict((1.0 / 1.5..=1.5).contains(&timing))
    );
    println!(
        "target: as deployed, no round tells taken from fresh (|z| < 3 in each of {TIMING_ROUNDS} rounds of {TIMING_PER_ROUND}): {}",
        verdict(padded_rounds.iter().all(|r| r.z().abs() < 3.0))
    );
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("accounts.json"), serde_json::to_string_pretty(&report)?)?;
    println!("figures written to target/bench/accounts.json");
    Ok(())
}

/// One round of the timing comparison: the answer times of submissions naming a taken
/// username and of fresh ones, taken in turn.
struct Round {
    taken: Vec<Duration>,
    fresh: Vec<Duration>,
}

impl Round {
    fn mean(&self, of: &[Duration]) -> Duration {
        of.iter().sum::<Duration>() / of.len().max(1) as u32
    }

    /// Welch's z of the two means: how many standard errors apart they are.
    fn z(&self) -> f64 {
        let stats = |of: &[Duration]| {
            let n = of.len() as f64;
            let mean = of.iter().map(Duration::as_secs_f64).sum::<f64>() / n;
            let variance = of.iter().map(|d| (d.as_secs_f64() - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
            (mean, variance / n)
        };
        let ((taken, taken_var), (fresh, fresh_var)) = (stats(&self.taken), stats(&self.fresh));
        (taken - fresh) / (taken_var + fresh_var).sqrt().max(f64::MIN_POSITIVE)
    }

    fn json(&self) -> Value {
        json!({"taken_mean_ms": ms(self.mean(&self.taken)), "fresh_mean_ms": ms(self.mean(&self.fresh)), "z": self.z()})
    }
}

/// [`TIMING_ROUNDS`] rounds of [`TIMING_PER_ROUND`] submissions naming a pending applicant's
/// username and as many fresh ones, in turn on one connection. The server must hold the pending
/// requests `applicant-0` to `applicant-199`.
async fn timing_rounds(server: &Server, tag: &str) -> Result<Vec<Round>> {
    let mut sender = connect(&server.tcp).await?;
    let mut rounds = Vec::new();
    for round in 0..TIMING_ROUNDS {
        let mut this = Round { taken: Vec::new(), fresh: Vec::new() };
        for i in 0..TIMING_PER_ROUND {
            let n = round * TIMING_PER_ROUND + i;
            for (is_taken, name) in [(true, format!("applicant-{}", n % 200)), (false, format!("newcomer-{tag}-{n}"))] {
                let key = basphere_core::testing::ssh_key(7_000_000 + 2 * n as u64 + u64::from(is_taken));
                let body =
                    json!({"username": name, "email": format!("{name}-{n}@example.org"), "ssh_key": key.as_str()});
                let t0 = Instant::now();
                let (status, _) = call(&mut sender, "POST", "/api/v1/register", None, Some(&body)).await?;
                let took = t0.elapsed();
                anyhow::ensure!(status == 202, "{name}: {status}");
                if is_taken {
                    this.taken.push(took)
                } else {
                    this.fresh.push(took)
                }
            }
        }
        rounds.push(this);
    }
    Ok(rounds)
}
