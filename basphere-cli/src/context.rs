//! What every command runs with: the client, the output format and `--yes` ([`Ctx`]), and
//! `--wait` ([`WaitArgs`]) with what it does to the operations a request started.

use std::time::Duration;

use basphere_api::OperationView;
use clap::Args;
use serde_json::Value;

use crate::client::Client;
use crate::exit::CliError;
use crate::output::{self, emit, note, Format};
use crate::wait;

/// The context every command runs with.
pub struct Ctx {
    pub client: Client,
    pub format: Format,
    pub yes: bool,
}

impl Ctx {
    /// Asks for confirmation on a terminal; without one, `--yes` is required.
    pub fn confirm(&self, question: &str) -> Result<bool, CliError> {
        if self.yes {
            return Ok(true);
        }
        if !output::is_terminal() {
            return Err(CliError::usage(format!("{question} needs confirmation: add --yes when not on a terminal")));
        }
        Ok(crate::prompt::confirm(question, false))
    }
}

#[derive(Args, Clone, Debug)]
pub struct WaitArgs {
    /// Wait until the operation ends, showing progress.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

/// Reports operations the server accepted (`document` is its answer), or follows them with
/// `--wait` and reports how each ended.
pub async fn started(
    ctx: &Ctx,
    operations: &[OperationView],
    wait: &WaitArgs,
    document: &Value,
) -> Result<(), CliError> {
    if wait.wait {
        let finished = wait::wait_all(&ctx.client, operations, Duration::from_secs(wait.timeout)).await?;
        let failed = finished.iter().filter(|op| op.view.state == "failed").count();
        let documents = Value::Array(finished.iter().map(|op| op.raw.clone()).collect());
        emit(ctx.format, &documents, || {
            for op in finished.iter().map(|op| &op.view) {
                println!("{} {}: {}", op.kind, op.resource.name, op.state);
                if let Some(error) = &op.error {
                    println!("  {error}");
                }
            }
        });
        if failed > 0 {
            return Err(CliError::new(
                crate::exit::OPERATION_FAILED,
                format!("{failed} of {} operation(s) failed", finished.len()),
            ));
        }
        return Ok(());
    }
    emit(ctx.format, document, || {
        for op in operations {
            println!("{} {} accepted: operation {}", op.kind, op.resource.name, op.id);
        }
        note("follow with: basphere op wait <operation>");
    });
    Ok(())
}
