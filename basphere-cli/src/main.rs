//! `basphere`: the command-line tool.
//!
//! `basphere demo` composes the platform in-process on embedded defaults (a SQLite database in
//! a data directory, the simulated vSphere backend) and walks through the main job. The client
//! commands that talk to a running server come with `basphere-server`.

mod demo;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "basphere", version, about = "Self-service VMs and Kubernetes clusters on vSphere")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Basphere in-process on embedded defaults and show the main job: an admin and a
    /// developer, VMs created with static addresses, quota, and a delete.
    Demo {
        /// Where the demo keeps its SQLite database.
        #[arg(long, default_value = ".basphere/demo")]
        data_dir: PathBuf,
        /// Simulate vSphere's task times (clone, power, destroy); off gives instant tasks.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        realistic: bool,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BASPHERE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Demo { data_dir, realistic } => runtime.block_on(demo::run(&data_dir, realistic)),
    }
}
