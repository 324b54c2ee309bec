//! `basphere-vsphere-api`: the vSphere API backend's agent. `basphere-server` starts it (with
//! `backend.vm: vsphere-api`) and talks to it over its standard input and output; it is not a
//! program for people to run. See `basphere_vsphere::agent`.

use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().nth(1).is_some_and(|arg| arg == "--version") {
        println!("basphere-vsphere-api {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if std::io::stdin().is_terminal() {
        eprintln!(
            "basphere-vsphere-api is the vSphere API backend's agent: basphere-server starts it when \
             `backend.vm` is `vsphere-api`; it is not run by hand"
        );
        return ExitCode::from(2);
    }
    // The server's log settings, so that the agent's lines read like the server's own.
    let filter = tracing_subscriber::EnvFilter::try_from_env("BASPHERE_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("BASPHERE_LOG_FORMAT").is_ok_and(|format| format == "json") {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("basphere-vsphere-api: cannot start its runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // SIGTERM (systemd stopping the service signals every process of it) and SIGINT (Ctrl-C on a
    // server run in a terminal reaches the agent too) end it as a closed input does.
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    };
    let served = runtime
        .block_on(async { basphere_vsphere::agent::serve(tokio::io::stdin(), tokio::io::stdout(), shutdown).await });
    // Not waited for: the thread blocked reading standard input, which only a closed pipe ends.
    runtime.shutdown_background();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the vSphere API agent stops");
            ExitCode::FAILURE
        }
    }
}
