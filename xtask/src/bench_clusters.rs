//! `cargo xtask bench clusters`: the release `basphere-server` with 100 clusters on a simulated
//! management cluster (run here, on loopback, so its requests can be counted), each followed by a
//! client through the API's long-poll watch until ready: requests per minute to the management
//! API while the clusters come up and once they are idle, the server's memory, and the time from
//! a cluster's `Available` condition turning true in the management cluster to its watcher seeing
//! it ready.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use basphere_capi::fake::FakeManagementCluster;
use serde_json::{json, Value};

use super::bench_api::{accounts, build, call, connect, memory, ms, start_with};

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort_unstable();
    values.get(((values.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

pub fn clusters(scale: f64) -> Result<()> {
    let root = super::tidy::workspace_root();
    let binary = build(&root)?;
    let count = ((100.0 * scale).round() as usize).clamp(4, 400);
    let users = count.div_ceil(4);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        // One condition per second: a cluster is ready about five seconds after it is applied.
        let fake = FakeManagementCluster::new(Duration::from_secs(1));
        fake.install_identity("basphere-vsphere");
        let (address, _running) = fake.serve("127.0.0.1:0".parse()?).await?;
        let kubeconfig = dir.path().join("management-kubeconfig");
        std::fs::write(&kubeconfig, fake.kubeconfig(address))?;
        let config = format!(
            "backend:\n  simulated_delays: none\nmanagement_cluster:\n  backend: cluster-api\n  kubeconfig: {}\n\
             cluster_quotas:\n  default: {{max_clusters: 10, max_nodes_per_cluster: 10}}\n",
            kubeconfig.display()
        );
        let server = start_with(&binary, dir.path(), &config)?;
        let tokens = accounts(&server, "k", users, 64, 7000).await?;

        // When each cluster's Available condition turned true in the management cluster.
        let available: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let mut changes = fake.changes();
        let seen = available.clone();
        tokio::spawn(async move {
            while let Ok(event) = changes.recv().await {
                if event.plural != "clusters" {
                    continue;
                }
                let object = &event.object;
                let up = object["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Available" && c["status"] == "True");
                if up {
                    let key = format!(
                        "{}/{}",
                        object["metadata"]["namespace"].as_str().unwrap_or_default(),
                        object["metadata"]["name"].as_str().unwrap_or_default()
                    );
                    seen.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_insert_with(Instant::now);
                }
            }
        });

        let before = fake.requests();
        let started = Instant::now();
        let mut watchers = Vec::new();
        for index in 0..count {
            let token = tokens[index / 4].clone();
            let owner = format!("k-{}", index / 4);
            let name = format!("c{index}");
            let mut sender = connect(&server.tcp).await?;
            let (status, body) = call(
                &mut sender,
                "POST",
                "/api/v1/clusters",
                Some(&token),
                Some(&json!({"name": name, "type": "dev"})),
            )
            .await?;
            anyhow::ensure!(status == 202, "creating {name}: {}", String::from_utf8_lossy(&body));
            // Its owner follows it, as `basphere cluster watch` does.
            watchers.push(tokio::spawn(async move {
                let mut since: Option<String> = None;
                loop {
                    let path = match &since {
                        Some(since) => {
                            format!("/api/v1/clusters/{name}/watch?timeout=25&since={}", since.replace('+', "%2B"))
                        }
                        None => format!("/api/v1/clusters/{name}"),
                    };
                    let (status, body) = call(&mut sender, "GET", &path, Some(&token), None).await?;
                    anyhow::ensure!(status == 200, "watching {name}: {}", String::from_utf8_lossy(&body));
                    let cluster: Value = serde_json::from_slice(&body)?;
                    match cluster["state"].as_str() {
                        Some("ready") => return Ok((format!("user-{owner}/{name}"), Instant::now())),
                        Some("failed") => anyhow::bail!("{name} failed: {}", cluster["reason"]),
                        _ => since = cluster["updated_at"].as_str().map(str::to_owned),
                    }
                }
            }));
        }
        let created = started.elapsed();
        let mut seen_ready = Vec::new();
        for watcher in watchers {
            seen_ready.push(
                tokio::time::timeout(Duration::from_secs(600), watcher)
                    .await
                    .context("a cluster never became ready")???,
            );
        }
        let all_ready = started.elapsed();
        let during = fake.requests();
        let (rss_ready, peak) = memory(server.child.id());

        // Idle: every cluster ready and followed by its owner; what does watching cost?
        let idle_for = Duration::from_secs(30);
        let idle_start = fake.requests();
        let mut idle_watchers = Vec::new();
        for index in 0..count {
            let token = tokens[index / 4].clone();
            let name = format!("c{index}");
            let mut sender = connect(&server.tcp).await?;
            idle_watchers.push(tokio::spawn(async move {
                let deadline = Instant::now() + idle_for;
                let mut polls = 0u32;
                while Instant::now() < deadline {
                    let (_, body) =
                        call(&mut sender, "GET", &format!("/api/v1/clusters/{name}"), Some(&token), None).await?;
                    let cluster: Value = serde_json::from_slice(&body)?;
                    let since = cluster["updated_at"].as_str().unwrap_or_default().replace('+', "%2B");
                    call(
                        &mut sender,
                        "GET",
                        &format!("/api/v1/clusters/{name}/watch?timeout=10&since={since}"),
                        Some(&token),
                        None,
                    )
                    .await?;
                    polls += 1;
                }
                anyhow::Ok(polls)
            }));
        }
        let mut idle_polls = 0;
        for watcher in idle_watchers {
            idle_polls += watcher.await??;
        }
        let idle_end = fake.requests();
        let (rss_idle, _) = memory(server.child.id());

        let mut latencies: Vec<Duration> = {
            let available = available.lock().unwrap_or_else(|p| p.into_inner());
            seen_ready
                .iter()
                .filter_map(|(key, seen)| available.get(key).map(|at| seen.saturating_duration_since(*at)))
                .collect()
        };
        anyhow::ensure!(latencies.len() == count, "{} of {count} clusters had an Available time", latencies.len());
        let per_minute = |calls: u64, over: Duration| calls as f64 * 60.0 / over.as_secs_f64().max(0.001);
        let coming_up = during.calls() - before.calls();
        let idle_calls = idle_end.calls() - idle_start.calls();
        let figures = json!({
            "clusters": count,
            "owners": users,
            "created_in_ms": ms(created),
            "all_ready_after_s": all_ready.as_secs_f64(),
            "management_calls_while_coming_up": coming_up,
            "management_calls_per_cluster_coming_up": coming_up as f64 / count as f64,
            "management_calls_per_minute_coming_up": per_minute(coming_up, all_ready),
            // Since the server started (it opens its watches at start), re-watches included.
            "management_watches_opened": idle_end.watch,
            "management_calls_per_minute_idle": per_minute(idle_calls, idle_for),
            "api_watch_polls_idle": idle_polls,
            "visible_after_available_ms": {
                "p50": ms(percentile(&mut latencies, 0.5)),
                "p99": ms(percentile(&mut latencies, 0.99)),
                "max": ms(percentile(&mut latencies, 1.0)),
            },
            "server_rss_kib": {"all_ready": rss_ready, "idle_watched": rss_idle, "peak": peak},
        });
        println!("{}", serde_json::to_string_pretty(&figures)?);
        let out = root.join("target/bench");
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join("clusters.json"), serde_json::to_string_pretty(&figures)?)?;
        println!("figures written to target/bench/clusters.json");
        let mut server = server;
        let _ = server.child.kill();
        let _ = server.child.wait();
        Ok(())
    })
}
