//! `--wait`: follows operations until they end, with a live progress display on a terminal and
//! plain state-change lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use basphere_api::endpoints::{operations, IdPath};
use basphere_api::OperationView;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::client::{Client, Doc};
use crate::exit::CliError;

fn label(op: &OperationView) -> String {
    format!("{} {}", op.kind.replace('_', " "), op.resource.name)
}

fn current_step(op: &OperationView) -> String {
    match op.current_step() {
        Some(step) => format!("{} ({})", step.name, step.state),
        None => op.state.clone(),
    }
}

/// Waits for every operation; returns each as the server last sent it, in its final state.
/// Each is read at least once, so what is returned is always the server's current document.
pub async fn wait_all(
    client: &Client,
    operations: &[OperationView],
    timeout: Duration,
) -> Result<Vec<Doc<OperationView>>, CliError> {
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
    let mut states: Vec<Option<Doc<OperationView>>> = vec![None; operations.len()];
    let mut last_seen: Vec<String> = operations.iter().map(current_step).collect();
    let deadline = Instant::now() + timeout;
    loop {
        for (index, state) in states.iter_mut().enumerate() {
            if state.as_ref().is_some_and(|op| op.view.is_finished()) {
                continue;
            }
            let path = IdPath { id: operations[index].id.to_string() };
            let op: Doc<OperationView> = client.call::<operations::Get>(&path, &(), &()).await?;
            let step = current_step(&op.view);
            match &bars[index] {
                Some(bar) => {
                    bar.set_message(step.clone());
                    if op.view.is_finished() {
                        let mark = if op.view.state == "succeeded" { "✓" } else { "✗" };
                        bar.finish_with_message(format!(
                            "{mark} {}",
                            op.view.error.as_deref().unwrap_or(&op.view.state)
                        ));
                    }
                }
                None if step != last_seen[index] => eprintln!("{}: {step}", label(&op.view)),
                None => {}
            }
            last_seen[index] = step;
            *state = Some(op);
        }
        if states.iter().all(|op| op.as_ref().is_some_and(|op| op.view.is_finished())) {
            return Ok(states.into_iter().flatten().collect());
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
