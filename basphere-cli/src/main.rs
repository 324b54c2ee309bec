//! `basphere`: the command-line tool. It talks to `basphere-server` over the Unix socket (the
//! kernel tells the server who you are) or over HTTP with a token. Invoked as `create-vm`,
//! `list-vms`, `delete-vm`, `show-quota`, `list-resources`, `create-cluster`, `list-clusters`,
//! `delete-cluster`, `get-kubeconfig` or `watch-cluster` (a symlink or hard link), it
//! behaves like the original Basphere's command of that name; as `basphere-admin`, it is
//! `basphere admin` (`basphere-admin user approve alice`).

mod aliases;
mod args;
mod client;
mod cluster;
mod commands;
mod connection;
mod context;
mod demo;
mod exit;
mod flows;
mod network;
mod output;
mod prompt;
mod tls;
mod wait;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::client::Client;
use crate::context::Ctx;
use crate::exit::CliError;

fn invoked_as() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| std::path::Path::new(&arg0).file_name().map(|name| name.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// An empty `BASPHERE_SOCKET=` (and the like) means unset, as a shell user expects, rather than
/// a flag given no value.
fn forget_empty_environment() {
    for name in ["BASPHERE_SOCKET", "BASPHERE_SERVER", "BASPHERE_TOKEN", "BASPHERE_CONTEXT", "BASPHERE_CA_FILE"] {
        if std::env::var_os(name).is_some_and(|value| value.is_empty()) {
            // Before any thread starts: the runtime is single-threaded and not yet polling.
            std::env::remove_var(name);
        }
    }
}

async fn run() -> Result<(), CliError> {
    forget_empty_environment();
    let name = invoked_as();
    if aliases::NAMES.contains(&name.as_str()) {
        return aliases::run(&name, std::env::args().collect()).await;
    }
    let cli = if name == "basphere-admin" {
        // The original's admin command: `basphere-admin user approve alice` is
        // `basphere admin user approve alice`.
        let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if matches!(args.get(1).and_then(|a| a.to_str()), Some("-v" | "--version")) {
            println!("basphere-admin version {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        args[0] = "basphere".into();
        args.insert(1, "admin".into());
        Cli::parse_from(args)
    } else {
        Cli::parse()
    };
    let command = match cli.command {
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "basphere", &mut std::io::stdout());
            return Ok(());
        }
        Command::OriginalNames => {
            for name in aliases::NAMES.iter().chain(&["basphere-admin"]) {
                println!("{name}");
            }
            return Ok(());
        }
        Command::Manpage => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map_err(CliError::from)?;
            return Ok(());
        }
        Command::Demo(args) => return demo::run(args).await,
        command => command,
    };
    let requested = connection::Requested {
        socket: cli.socket,
        server: cli.server,
        token: cli.token,
        context: cli.context,
        ca_file: cli.ca_file,
    };
    let ctx = Ctx { client: Client::new(connection::resolve(&requested)?), format: cli.output, yes: cli.yes };
    commands::run(command, &ctx).await
}

fn main() {
    // A reader that stops early (`list-vms | head -1`) closes the pipe: end as the shell's tools
    // do (the status of SIGPIPE), not with a panic from printing.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.starts_with("failed printing to stdout") && m.contains("Broken pipe")) {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start: {error}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(run()) {
        if !error.message.is_empty() {
            if error.code == 0 {
                eprintln!("{}", error.message);
            } else {
                eprintln!("error: {}", error.message);
            }
        }
        std::process::exit(error.code);
    }
}
