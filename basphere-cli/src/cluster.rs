//! `basphere cluster ...`: Kubernetes clusters, and the watch that follows one to ready.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use basphere_api::endpoints::{clusters, NamePath};
use basphere_api::{ClusterView, CreateClusterRequest, ScaleClusterRequest, WatchQuery};
use clap::Subcommand;

use crate::client::{Client, Doc};
use crate::context::{started, Ctx, WaitArgs};
use crate::exit::{self, CliError};
use crate::output::{self, emit, note, or_dash, Format};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Create a cluster (types: basphere catalog; development and production work too).
    Create {
        /// The cluster's name.
        name: String,
        /// The cluster type, e.g. dev (1 control plane) or standard (3, highly available).
        #[arg(long = "type", short = 't', default_value = "dev")]
        cluster_type: String,
        /// The workers' node spec (small, medium, large); the type's default otherwise.
        #[arg(long, short = 'w')]
        worker_spec: Option<String>,
        /// How many workers; the type's count otherwise.
        #[arg(long)]
        workers: Option<u32>,
        /// Makes a retried create return the first answer.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Follow the cluster until it is ready or failed (like `basphere cluster watch`).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// Your clusters.
    List,
    /// One cluster, with its conditions.
    Show {
        /// The cluster's name.
        name: String,
    },
    /// Follow a cluster until it is ready (exit 0) or failed (exit 9).
    Watch {
        /// The cluster's name.
        name: String,
        /// Give up after this many seconds (exit 6).
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// The cluster's admin kubeconfig: printed, or written to a file with mode 600.
    Kubeconfig {
        /// The cluster's name.
        name: String,
        /// Write it here (mode 600) instead of printing it.
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
    },
    /// Change the number of workers.
    Scale {
        /// The cluster's name.
        name: String,
        /// The number of workers wanted.
        #[arg(long)]
        workers: u32,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete a cluster; its addresses are freed once everything is gone.
    Delete {
        /// The cluster's name.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

pub async fn run(command: ClusterCommand, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        ClusterCommand::Create { name, cluster_type, worker_spec, workers, idempotency_key, wait, timeout } => {
            let request = CreateClusterRequest { name: name.clone(), cluster_type, worker_spec, workers };
            let created = crate::flows::create_cluster(&ctx.client, &request, idempotency_key.as_deref()).await?;
            let cluster = &created.view.cluster;
            if wait {
                if ctx.format == Format::Table {
                    print_created(cluster);
                }
                return follow(&ctx.client, &name, Duration::from_secs(timeout), ctx.format).await;
            }
            emit(ctx.format, &created.raw, || {
                print_created(cluster);
                note(format!("follow it: basphere cluster watch {name}"));
            });
            Ok(())
        }
        ClusterCommand::List => {
            let clusters = crate::flows::clusters(&ctx.client).await?;
            emit(ctx.format, &clusters.raw, || {
                if clusters.view.is_empty() {
                    note("No clusters yet. Create one: basphere cluster create NAME --type dev");
                } else {
                    table(&clusters.view);
                }
            });
            Ok(())
        }
        ClusterCommand::Show { name } => {
            let cluster = crate::flows::cluster(&ctx.client, &name).await?;
            emit(ctx.format, &cluster.raw, || detail(&cluster.view));
            Ok(())
        }
        ClusterCommand::Watch { name, timeout } => {
            follow(&ctx.client, &name, Duration::from_secs(timeout), ctx.format).await
        }
        ClusterCommand::Kubeconfig { name, file } => {
            let kubeconfig =
                ctx.client.call::<clusters::Kubeconfig>(&NamePath { name: name.clone() }, &(), &()).await?;
            match file {
                Some(path) => {
                    write_private(&path, &kubeconfig.view.kubeconfig)?;
                    emit(ctx.format, &serde_json::json!({"cluster": name, "file": path}), || {
                        println!("kubeconfig saved: {}", path.display());
                        note(format!("use it: export KUBECONFIG={}; kubectl get nodes", path.display()));
                    });
                }
                None => emit(ctx.format, &kubeconfig.raw, || print!("{}", kubeconfig.view.kubeconfig)),
            }
            Ok(())
        }
        ClusterCommand::Scale { name, workers, wait } => {
            let body = ScaleClusterRequest { workers };
            let operation = ctx.client.call::<clusters::Scale>(&NamePath { name }, &(), &body).await?;
            started(ctx, std::slice::from_ref(&operation.view), &wait, &operation.raw).await
        }
        ClusterCommand::Delete { name, wait } => {
            if !ctx.confirm(&format!("Delete cluster {name}? Its nodes and all data on them are destroyed"))? {
                note("Cancelled.");
                return Ok(());
            }
            let operation = crate::flows::delete_cluster(&ctx.client, &name).await?;
            started(ctx, std::slice::from_ref(&operation.view), &wait, &operation.raw).await
        }
    }
}

fn print_created(cluster: &ClusterView) {
    println!(
        "Cluster {} accepted: {} ({} control plane + {} workers of {}), Kubernetes {}, control plane at {}",
        cluster.name,
        cluster.cluster_type,
        cluster.control_plane_count,
        cluster.worker_count,
        cluster.worker_spec,
        cluster.kubernetes_version,
        or_dash(cluster.control_plane_ip)
    );
}

pub fn rows(clusters: &[ClusterView]) -> Vec<Vec<String>> {
    clusters
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.cluster_type.clone(),
                c.state.clone(),
                format!("{}/{}", c.control_plane_ready, c.control_plane_count),
                format!("{}/{}", c.workers_ready, c.worker_count),
                or_dash(c.control_plane_ip),
                output::time(&c.created_at),
            ]
        })
        .collect()
}

pub fn table(clusters: &[ClusterView]) {
    output::table(
        &["NAME", "TYPE", "STATE", "CONTROL PLANE", "WORKERS", "CONTROL_PLANE_IP", "CREATED"],
        &rows(clusters),
    );
}

fn detail(c: &ClusterView) {
    output::fields(&[
        ("Name", c.name.clone()),
        ("Type", c.cluster_type.clone()),
        ("State", c.state.clone()),
        ("Reason", c.reason.clone().unwrap_or_else(|| "-".into())),
        ("Phase", c.phase.clone().unwrap_or_else(|| "-".into())),
        ("Kubernetes", c.kubernetes_version.clone()),
        (
            "Control plane",
            format!("{}/{} ready ({})", c.control_plane_ready, c.control_plane_count, c.control_plane_spec),
        ),
        ("Workers", format!("{}/{} ready ({})", c.workers_ready, c.worker_count, c.worker_spec)),
        ("Control plane IP", or_dash(c.control_plane_ip)),
        ("Node addresses", c.node_addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
        ("Created", output::time(&c.created_at)),
    ]);
    if !c.conditions.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = c
            .conditions
            .iter()
            .map(|k| {
                vec![
                    k.kind.clone(),
                    k.status.clone(),
                    k.reason.clone().unwrap_or_default(),
                    k.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        output::table(&["CONDITION", "STATUS", "REASON", "MESSAGE"], &rows);
    }
}

/// One line of progress: the time, the state and what it waits for.
fn progress_line(c: &ClusterView) -> String {
    let marks: Vec<String> =
        c.conditions.iter().map(|k| format!("{}{}", k.kind, if k.status == "True" { " ✓" } else { " …" })).collect();
    let mut line = format!(
        "{}  {:<12} control plane {}/{}, workers {}/{}",
        c.updated_at.format("%H:%M:%S"),
        c.state,
        c.control_plane_ready,
        c.control_plane_count,
        c.workers_ready,
        c.worker_count
    );
    if !marks.is_empty() {
        line.push_str(&format!("  [{}]", marks.join(", ")));
    }
    if let Some(reason) = &c.reason {
        line.push_str(&format!("\n          {reason}"));
    }
    line
}

/// Follows a cluster with the server's long poll until it is ready or failed.
pub async fn follow(client: &Client, name: &str, timeout: Duration, format: Format) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut since = None;
    let mut last_line = String::new();
    let mut first = true;
    loop {
        let path = NamePath { name: name.to_owned() };
        let cluster: Doc<ClusterView> = match since {
            Some(since) => {
                let query = WatchQuery { since: Some(since), timeout: Some(25) };
                client.call::<clusters::Watch>(&path, &query, &()).await?
            }
            None => client.call::<clusters::Get>(&path, &(), &()).await?,
        };
        let c = &cluster.view;
        if first && format == Format::Table {
            println!(
                "Following cluster {} ({}, {} control plane + {} workers, control plane at {}). Ctrl+C stops watching, not the cluster.",
                c.name,
                c.cluster_type,
                c.control_plane_count,
                c.worker_count,
                or_dash(c.control_plane_ip)
            );
            first = false;
        }
        let line = progress_line(c);
        // The time changes with every update; print when anything else did.
        let shown = line.split_once("  ").map(|(_, rest)| rest.to_owned()).unwrap_or_default();
        if shown != last_line {
            match format {
                Format::Table => println!("{line}"),
                _ => println!("{}", serde_json::to_string(&cluster.raw).unwrap_or_default()),
            }
            std::io::stdout().flush().ok();
            last_line = shown;
        }
        match c.state.as_str() {
            "ready" => {
                if format == Format::Table {
                    println!("The cluster is ready.");
                    note(format!("get its kubeconfig: basphere cluster kubeconfig {name} -f ~/.kube/{name}.yaml"));
                }
                return Ok(());
            }
            "failed" => {
                return Err(CliError::new(
                    exit::OPERATION_FAILED,
                    format!("cluster {name} failed: {}", c.reason.as_deref().unwrap_or("no reason given")),
                ))
            }
            "deleted" => return Err(CliError::new(exit::NOT_FOUND, format!("cluster {name} was deleted"))),
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::new(
                exit::TIMEOUT,
                format!(
                    "cluster {name} is still {} after {} s; it goes on in the background",
                    c.state,
                    timeout.as_secs()
                ),
            ));
        }
        // To the microsecond, as the server has always been asked.
        since = Some(chrono::SubsecRound::trunc_subsecs(c.updated_at, 6));
    }
}

/// Writes `text` to `path`, readable by its owner only, whatever the file was before.
pub fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed = |error: std::io::Error| CliError::new(1, format!("{}: {error}", path.display()));
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(failed)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    Ok(())
}
