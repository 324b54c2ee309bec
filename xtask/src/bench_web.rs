//! `cargo xtask bench web`: the release `basphere-server` rendering the developer's dashboard
//! with 100 VMs (and their operations), signed in with a session cookie as a browser is: render
//! latency and page weight, against the JSON list of the same VMs in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::json;

use super::bench_api::{accounts, build, call, connect, ms, start_with, wait_idle, Sender};

const CONFIG: &str = "backend:\n  simulated_delays: none\nrecaptcha:\n  enabled: false\n";

/// A browser's request: a form body or none, with cookies; the status, the `Set-Cookie` values
/// and the body.
async fn browse(
    sender: &mut Sender,
    method: &str,
    path: &str,
    cookie: &str,
    form: Option<String>,
) -> Result<(u16, Vec<String>, Bytes)> {
    sender.ready().await?;
    let mut request =
        hyper::Request::builder().method(method).uri(path).header("host", "localhost").header("cookie", cookie);
    if form.is_some() {
        request = request.header("content-type", "application/x-www-form-urlencoded");
    }
    let response = sender.send_request(request.body(Full::new(Bytes::from(form.unwrap_or_default())))?).await?;
    let status = response.status().as_u16();
    let cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .collect();
    Ok((status, cookies, response.into_body().collect().await?.to_bytes()))
}

/// The dashboard's body as sent to a client that accepts gzip.
async fn gzip_size(sender: &mut Sender, cookie: &str) -> Result<usize> {
    sender.ready().await?;
    let request = hyper::Request::builder()
        .uri("/dashboard")
        .header("host", "localhost")
        .header("cookie", cookie)
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    anyhow::ensure!(response.headers().get("content-encoding").is_some_and(|v| v == "gzip"), "gzip was not used");
    Ok(response.into_body().collect().await?.to_bytes().len())
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort_unstable();
    latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

pub fn web(scale: f64) -> Result<()> {
    let root = super::tidy::workspace_root();
    let binary = build(&root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let server = start_with(&binary, dir.path(), CONFIG)?;
    let renders = ((500.0 * scale) as usize).max(50);

    let report = runtime.block_on(async {
        let token = accounts(&server, "dev", 1, 100, 9_000_000).await?.remove(0);
        let mut api = connect(&server.tcp).await?;
        for batch in 0..10 {
            let body = json!({"name": format!("web{batch}"), "os": "ubuntu-24.04", "spec": "tiny", "count": 10});
            let (status, answer) = call(&mut api, "POST", "/api/v1/vms", Some(&token), Some(&body)).await?;
            anyhow::ensure!(status == 202, "creating VMs: {status} {}", String::from_utf8_lossy(&answer));
        }
        wait_idle(&server).await?;

        // Signing in as a browser does: the sign-in page's CSRF cookie, then the token form.
        let mut browser = connect(&server.tcp).await?;
        let (_, cookies, page) = browse(&mut browser, "GET", "/sign-in", "", None).await?;
        let csrf_cookie = cookies.into_iter().find(|c| c.starts_with("basphere_csrf=")).context("csrf cookie")?;
        let page = String::from_utf8_lossy(&page).into_owned();
        let at = page.find("name=\"csrf\" value=\"").context("csrf field")? + "name=\"csrf\" value=\"".len();
        let csrf = &page[at..at + 64];
        let form = format!("csrf={csrf}&token={token}");
        let (status, cookies, _) = browse(&mut browser, "POST", "/sign-in", &csrf_cookie, Some(form)).await?;
        anyhow::ensure!(status == 303, "signing in: {status}");
        let session = cookies.into_iter().find(|c| c.starts_with("basphere_session=")).context("session cookie")?;

        let (mut dashboard, mut listing) = (Vec::new(), Vec::new());
        let mut bytes = 0;
        for _ in 0..renders {
            let t0 = Instant::now();
            let (status, _, body) = browse(&mut browser, "GET", "/dashboard", &session, None).await?;
            dashboard.push(t0.elapsed());
            anyhow::ensure!(status == 200, "dashboard: {status}");
            bytes = body.len();
            anyhow::ensure!(body.windows(7).filter(|w| w == b"id=\"vm-").count() == 100, "the dashboard shows 100 VMs");
            let t0 = Instant::now();
            let (status, _) = call(&mut api, "GET", "/api/v1/vms?limit=1000", Some(&token), None).await?;
            listing.push(t0.elapsed());
            anyhow::ensure!(status == 200, "list: {status}");
        }
        // What travels: the server compresses for browsers that accept gzip (every browser).
        let compressed = gzip_size(&mut browser, &session).await?;
        let css = browse(&mut browser, "GET", "/static/basphere.css", "", None).await?.2.len();
        let js = browse(&mut browser, "GET", "/static/basphere.js", "", None).await?.2.len();
        anyhow::Ok(json!({
            "renders": renders,
            "dashboard_p50_ms": ms(percentile(&mut dashboard, 0.5)),
            "dashboard_p99_ms": ms(percentile(&mut dashboard, 0.99)),
            "api_list_p50_ms": ms(percentile(&mut listing, 0.5)),
            "api_list_p99_ms": ms(percentile(&mut listing, 0.99)),
            "dashboard_bytes": bytes,
            "dashboard_gzip_bytes": compressed,
            "css_bytes": css,
            "js_bytes": js,
        }))
    })?;
    drop(server);

    let f = |key: &str| report[key].as_f64().unwrap_or(0.0);
    println!("web benchmark: release basphere-server on loopback, 2 cores shared, one signed-in browser session");
    println!(
        "  GET /dashboard with 100 VMs ({} renders): p50 {:.2} ms, p99 {:.2} ms",
        report["renders"],
        f("dashboard_p50_ms"),
        f("dashboard_p99_ms")
    );
    println!(
        "  GET /api/v1/vms (the same 100 VMs as JSON), same run: p50 {:.2} ms, p99 {:.2} ms; dashboard / list p50: {:.2}x",
        f("api_list_p50_ms"),
        f("api_list_p99_ms"),
        f("dashboard_p50_ms") / f("api_list_p50_ms").max(f64::MIN_POSITIVE)
    );
    let weight = f("dashboard_bytes") + f("css_bytes") + f("js_bytes");
    println!(
        "  page weight: {:.1} KB (HTML {:.1} KB, CSS {:.1} KB, JS {:.1} KB; uncompressed, no images)",
        weight / 1024.0,
        f("dashboard_bytes") / 1024.0,
        f("css_bytes") / 1024.0,
        f("js_bytes") / 1024.0
    );
    println!("  sent gzip-compressed (as to any browser): HTML {:.1} KB", f("dashboard_gzip_bytes") / 1024.0);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!("target: dashboard render p99 < 20 ms with 100 VMs: {}", verdict(f("dashboard_p99_ms") < 20.0));
    println!("target: page weight without images < 100 KB: {}", verdict(weight < 100.0 * 1024.0));
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("web.json"), serde_json::to_string_pretty(&report)?)?;
    println!("figures written to target/bench/web.json");
    Ok(())
}
