//! `cargo xtask`: Basphere's development automation.
//!
//! - `cargo xtask tidy`: the repository rules (layering, codemap, lints) that `cargo test` also
//!   runs as a plain test.
//! - `cargo xtask bench vsphere`: concurrent creates, measured per VM and per batch, on the vSphere
//!   API backend (against the vCenter simulator with and without delays) and on the Terraform
//!   backend (with an instant fake `terraform`).
//! - `cargo xtask vcsim`: builds and runs the govmomi vCenter simulator.
//! - `cargo xtask bench ipam`: IPAM throughput and latency, in memory and on SQLite.
//! - `cargo xtask bench api`: the release server under load: list and create throughput and
//!   latency, start-up time, memory.
//! - `cargo xtask bench accounts`: registrations, pending-request listing and approvals.
//! - `cargo xtask bench web`: the dashboard with 100 VMs rendered for a signed-in session.
//! - `cargo xtask dist`: the Debian package (`target/dist/basphere_VERSION_ARCH.deb`).

mod bench;
mod bench_accounts;
mod bench_api;
mod bench_clusters;
mod bench_networks;
mod bench_store;
mod bench_vsphere;
mod bench_web;
mod dist;
mod tidy;
mod vcsim;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Basphere development automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the Debian package into target/dist (binaries of the `dist` profile, unless --debug).
    Dist {
        /// Package the debug binaries of the test build instead of building optimised ones.
        #[arg(long)]
        debug: bool,
        /// The package's version (default: the workspace's).
        #[arg(long)]
        version: Option<String>,
        /// Where to write the package (default: target/dist).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Check the repository rules: dependency layering, ARCHITECTURE.md codemap, lints.
    Tidy,
    /// Build the vCenter simulator (from Debian's govmomi sources) and run it; it prints its URL.
    Vcsim {
        /// Only build it and print the binary's path.
        #[arg(long)]
        build_only: bool,
    },
    /// Run a benchmark and print its figures (also written to target/bench/NAME.json).
    Bench {
        /// What to measure.
        #[arg(value_parser = ["ipam", "store", "api", "vsphere", "accounts", "web", "clusters", "networks"])]
        name: String,
        /// Scale the number of measured operations (1.0 = the reported runs).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Concurrent keep-alive connections of the API load generator.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// `api` only: the store of the servers (`postgres` compares SQLite, one PostgreSQL
        /// server and `--replicas` PostgreSQL servers in one run).
        #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
        store: String,
        /// `api --store postgres` only: how many replicas share the database.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=8))]
        replicas: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dist { debug, version, out } => {
            let deb = dist::build(&dist::DistOptions { debug, version, out })?;
            println!("{}", deb.display());
            Ok(())
        }
        Command::Tidy => {
            let problems = tidy::check(&tidy::workspace_root())?;
            if problems.is_empty() {
                println!("tidy: ok");
                Ok(())
            } else {
                for problem in &problems {
                    eprintln!("tidy: {problem}");
                }
                anyhow::bail!("{} tidy problem(s)", problems.len())
            }
        }
        Command::Vcsim { build_only } => vcsim::run(build_only),
        Command::Bench { name, scale, connections, store, replicas } => match name.as_str() {
            "api" if store == "postgres" => bench_api::replicas(scale, connections, replicas as usize),
            "ipam" => bench::ipam(scale),
            "store" => bench_store::store(scale),
            "api" => bench_api::api(scale, connections),
            "vsphere" => bench_vsphere::vsphere(scale),
            "accounts" => bench_accounts::accounts(scale, connections),
            "web" => bench_web::web(scale),
            "clusters" => bench_clusters::clusters(scale),
            "networks" => bench_networks::networks(scale),
            other => {
                anyhow::bail!(
                    "unknown benchmark {other:?}; available: ipam, store, api, vsphere, accounts, web, clusters, networks"
                )
            }
        },
    }
}
