//! `basphere-router-helper [--config /etc/basphere/router.yaml]`: the router host's side of
//! `networks.linux.ssh`, the forced command of the server's key in root's `authorized_keys`.
//! Reads one JSON request on standard input, writes one JSON answer on standard output, exits
//! 0 when the request succeeded and 1 when it was answered with an error
//! (`basphere_router::helper`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("basphere-router-helper: cannot start: {error}");
            return ExitCode::from(2);
        }
    };
    let ok = runtime.block_on(basphere_router::helper::run(&args, tokio::io::stdin(), tokio::io::stdout()));
    // A client that sent its request without closing its side leaves a read of standard input
    // pending in the blocking pool: the answer is written, so nothing waits for it.
    runtime.shutdown_background();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
