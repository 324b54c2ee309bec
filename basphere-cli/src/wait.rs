//! `--wait`: follows operations until they end, with a live progress display on a terminal and
//! plain state-change lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::client::Client;
use crate::exit::CliError;

fn label(op: &Value) -> String {
    format!(
        "{} {}",
        op["kind"].as_str().unwrap_or("operation").replace('_', " "),
        op["resource"]["name"].as_str().unwrap_or("")
    )
}

fn current_step(op: &Value) -> String {
    let steps = op["steps"].as_array().cloned().unwrap_or_default();
    let running =
        steps.iter().find(|s| s["state"] == "running").or_else(|| steps.iter().find(|s| s["state"] == "pending"));
    match running {
        Some(step) => format!("{} ({})", step["name"].as_str().unwrap_or(""), step["state"].as_str().unwrap_or("")),
        None => op["state"].as_str().unwrap_or("").to_owned(),
    }
}

fn finished(op: &Value) -> bool {
    matches!(op["state"].as_str(), Some("succeeded" | "failed"))
}

/// Waits for every operation; returns them in their final state.
pub async fn wait_all(client: &Client, operations: &[Value], timeout: Duration) -> Result<Vec<Value>, CliError> {
    let live = std::io::stderr().is_terminal();
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bars: Vec<Option<ProgressBar>> = operations
        .iter()
        .map(|op| {
            live.then(|| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(label(op));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            })
        })
        .collect();
    let mut states: Vec<Value> = operations.to_vec();
    let mut last_seen: Vec<String> = states.iter().map(current_step).collect();
    let deadline = Instant::now() + timeout;
    loop {
        for (index, op) in states.iter_mut().enumerate() {
            if finished(op) {
                continue;
            }
            let id = op["id"].as_str().unwrap_or_default().to_owned();
            *op = client.get(&format!("/api/v1/operations/{id}")).await?;
            let step = current_step(op);
            match &bars[index] {
                Some(bar) => {
                    bar.set_message(step.clone());
                    if finished(op) {
                        let mark = if op["state"] == "succeeded" { "✓" } else { "✗" };
                        bar.finish_with_message(format!(
                            "{mark} {}",
                            op["error"].as_str().unwrap_or(op["state"].as_str().unwrap_or(""))
                        ));
                    }
                }
                None if step != last_seen[index] => eprintln!("{}: {step}", label(op)),
                None => {}
            }
            last_seen[index] = step;
        }
        if states.iter().all(finished) {
            return Ok(states);
        }
        if Instant::now() >= deadline {
            for bar in bars.iter().flatten() {
                bar.abandon_with_message("still running");
            }
            return Err(CliError::timeout(format!(
                "gave up waiting after {timeout:?}; the operations go on: basphere op wait <id>"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
