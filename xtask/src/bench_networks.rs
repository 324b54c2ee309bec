//! `cargo xtask bench networks`: the `linux` tenant router's figures, as root, in network
//! namespaces of its own (all named `bxn-...`, removed at the end): the time to make one tenant's
//! network, the time to apply one tenant's change with 1 and with 500 tenants loaded (the goal:
//! no more than 2x), and packets per second between two hosts of one tenant through the router
//! against two hosts on one plain bridge, measured with iperf3 in the same run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use basphere_core::router::{TenantLan, TenantRouter, TenantRouterSpec};
use basphere_core::validate::Username;
use basphere_router::{LinuxRouter, LinuxRouterSettings};
use serde_json::json;

/// Every namespace of the bench starts with this.
const PREFIX: &str = "bxn-";
/// How many times each timed change is made; the median is reported.
const ROUNDS: usize = 7;

fn run(words: &[&str]) -> Result<String> {
    let output = Command::new(words[0]).args(&words[1..]).output().with_context(|| format!("{words:?}"))?;
    ensure!(output.status.success(), "{words:?}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn remove_namespaces() {
    let listed = run(&["ip", "netns", "list"]).unwrap_or_default();
    for name in listed.lines().filter_map(|line| line.split_whitespace().next()).filter(|n| n.starts_with(PREFIX)) {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
    }
}

/// Removes every namespace of the bench, however it ends.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_namespaces();
    }
}

/// Tenant `n`'s spec: two LANs (the same subnets for everyone), VLAN ids of its own, a WAN
/// address in 10.64.0.0/16 (`wan_host` picks it).
fn spec(n: usize, wan_host: usize) -> Result<TenantRouterSpec> {
    let lan = |name: &str, vlan: usize, gateway: &str| -> Result<TenantLan> {
        Ok(TenantLan { name: name.into(), vlan: u16::try_from(vlan)?, gateway: gateway.parse()? })
    };
    Ok(TenantRouterSpec {
        tenant: Username::parse(&format!("tenant{n}"))?,
        lans: vec![lan("lan1", 2 + 2 * n, "10.0.1.1/24")?, lan("lan2", 3 + 2 * n, "10.0.2.1/24")?],
        mtu: 1450,
        wan_address: format!("10.64.{}.{}/16", wan_host / 250, 2 + wan_host % 250).parse()?,
        wan_gateway: None,
    })
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The median time of `ROUNDS` changes of tenant 0's WAN address, back and forth.
async fn change_time(router: &LinuxRouter, tenants: usize) -> Result<Duration> {
    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        // Addresses past every loaded tenant's.
        let changed = spec(0, tenants + round % 2)?;
        let started = Instant::now();
        let status = router.ensure(&changed).await?;
        samples.push(started.elapsed());
        ensure!(status.matches(&changed), "the change was not made: {status:?}");
    }
    Ok(median(samples))
}

/// A host namespace `name` with `eth0` on bridge `bridge` of namespace `at`, at `address`/24.
fn host(at: &str, bridge: &str, name: &str, port: &str, address: &str, gateway: Option<&str>) -> Result<()> {
    run(&["ip", "netns", "add", name])?;
    run(&["ip", "-n", at, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name])?;
    run(&["ip", "-n", at, "link", "set", port, "mtu", "1450", "master", bridge, "up"])?;
    run(&["ip", "-n", name, "link", "set", "lo", "up"])?;
    run(&["ip", "-n", name, "link", "set", "eth0", "mtu", "1450", "up"])?;
    run(&["ip", "-n", name, "addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
    if let Some(gateway) = gateway {
        run(&["ip", "-n", name, "route", "add", "default", "via", gateway])?;
    }
    Ok(())
}

/// Packets per second from `client` to `server` (at `address`): iperf3 over UDP with 64-byte
/// datagrams for 3 s, as the receiver counted them.
fn packets_per_second(client: &str, server: &str, address: &str) -> Result<f64> {
    let mut listener = Command::new("ip")
        .args(["netns", "exec", server, "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("iperf3 (apt-get install iperf3)")?;
    std::thread::sleep(Duration::from_millis(500));
    let output =
        run(&["ip", "netns", "exec", client, "iperf3", "-c", address, "-u", "-b", "0", "-l", "64", "-t", "3", "-J"]);
    let _ = listener.kill();
    let _ = listener.wait();
    let report: serde_json::Value = serde_json::from_str(&output?)?;
    let sum = &report["end"]["sum"];
    let (packets, lost, seconds) =
        (sum["packets"].as_f64(), sum["lost_packets"].as_f64().unwrap_or(0.0), sum["seconds"].as_f64());
    match (packets, seconds) {
        (Some(packets), Some(seconds)) if seconds > 0.0 => Ok((packets - lost) / seconds),
        _ => bail!("iperf3 gave no packet count: {sum}"),
    }
}

pub fn networks(scale: f64) -> Result<()> {
    let uid = run(&["id", "-u"])?;
    ensure!(uid.trim() == "0", "the networks bench makes network namespaces: run it as root");
    for tool in ["ip", "nft", "iperf3"] {
        ensure!(
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).output()?.status.success(),
            "{tool} is needed"
        );
    }
    let tenants = ((500.0 * scale).round() as usize).max(2);
    remove_namespaces();
    let _cleanup = Cleanup;
    let wan_host = format!("{PREFIX}host");
    run(&["ip", "netns", "add", &wan_host])?;
    run(&["ip", "-n", &wan_host, "link", "add", "wan", "type", "bridge"])?;
    run(&["ip", "-n", &wan_host, "link", "set", "wan", "up"])?;
    let router = LinuxRouter::new(LinuxRouterSettings {
        namespace_prefix: format!("{PREFIX}r-"),
        host_namespace: Some(wan_host.clone()),
        trunk: None,
        wan_bridge: "wan".into(),
        timeout: Duration::from_secs(30),
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        // Making a network: a namespace, two LAN bridges, the WAN port, forwarding, the table.
        let mut makes = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            router.ensure(&spec(0, 0)?).await?;
            makes.push(started.elapsed());
            router.remove(&spec(0, 0)?.tenant).await?;
        }
        router.ensure(&spec(0, 0)?).await?;
        let with_one = change_time(&router, tenants).await?;

        let loading = Instant::now();
        for n in 1..tenants {
            router.ensure(&spec(n, n)?).await?;
        }
        let loaded_in = loading.elapsed();
        let with_all = change_time(&router, tenants).await?;

        // Two hosts of tenant 0, one on each LAN, through its router; two on one plain bridge.
        let tenant_ns = router.namespace(&spec(0, 0)?.tenant);
        host(&tenant_ns, "lan1", &format!("{PREFIX}a"), "pa", "10.0.1.10", Some("10.0.1.1"))?;
        host(&tenant_ns, "lan2", &format!("{PREFIX}b"), "pb", "10.0.2.10", Some("10.0.2.1"))?;
        let bridge_ns = format!("{PREFIX}bridge");
        run(&["ip", "netns", "add", &bridge_ns])?;
        run(&["ip", "-n", &bridge_ns, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &bridge_ns, "link", "set", "br0", "up"])?;
        host(&bridge_ns, "br0", &format!("{PREFIX}c"), "pc", "10.9.0.10", None)?;
        host(&bridge_ns, "br0", &format!("{PREFIX}d"), "pd", "10.9.0.11", None)?;
        let routed = packets_per_second(&format!("{PREFIX}a"), &format!("{PREFIX}b"), "10.0.2.10")?;
        let bridged = packets_per_second(&format!("{PREFIX}c"), &format!("{PREFIX}d"), "10.9.0.11")?;

        for n in 0..tenants {
            router.remove(&spec(n, n)?.tenant).await?;
        }
        let figures = json!({
            "tenants": tenants,
            "make_network_ms_median": ms(median(makes)),
            "change_ms_median_with_1_tenant": ms(with_one),
            "change_ms_median_with_all_tenants": ms(with_all),
            "change_ratio_all_to_1": with_all.as_secs_f64() / with_one.as_secs_f64(),
            "load_all_tenants_s": loaded_in.as_secs_f64(),
            "udp64_pps_through_router": routed.round(),
            "udp64_pps_on_a_plain_bridge": bridged.round(),
            "pps_ratio_router_to_bridge": routed / bridged,
        });
        println!("{}", serde_json::to_string_pretty(&figures)?);
        let out = crate::tidy::workspace_root().join("target/bench");
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join("networks.json"), serde_json::to_string_pretty(&figures)?)?;
        println!("figures written to target/bench/networks.json");
        Ok(())
    })
}
