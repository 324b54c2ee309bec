//! The original Basphere's commands, when this binary is invoked under their names (a symlink
//! or hard link): `create-vm`, `list-vms`, `delete-vm`, `show-quota`, `list-resources`,
//! `create-cluster`, `list-clusters`, `delete-cluster`, `get-kubeconfig`, `watch-cluster`, with
//! their flags. They prompt only on a terminal; `--yes` (or `-f` for delete-vm) skips prompts.

use std::path::PathBuf;
use std::time::Duration;

use basphere_api::endpoints::{clusters, NamePath};
use basphere_api::{ClusterView, CreateClusterRequest, CreateVmsRequest, KubeconfigView, OperationView};
use clap::Parser;
use serde_json::json;

use crate::client::Client;
use crate::exit::CliError;
use crate::flows;
use crate::output::{self, note};
use crate::{connection, prompt, wait};

pub const NAMES: &[&str] = &[
    "create-vm",
    "list-vms",
    "delete-vm",
    "show-quota",
    "list-resources",
    "create-cluster",
    "list-clusters",
    "delete-cluster",
    "get-kubeconfig",
    "watch-cluster",
];

/// Connection flags every alias accepts (the environment and the CLI config work too).
#[derive(clap::Args, Debug)]
struct Connect {
    /// The server's Unix socket (default /run/basphere/basphere.sock, else .basphere/basphere.sock).
    #[arg(long, env = "BASPHERE_SOCKET")]
    socket: Option<PathBuf>,
    /// The server's URL (http://host:port or https://host:port), with a token; instead of the socket.
    #[arg(long, env = "BASPHERE_SERVER")]
    server: Option<String>,
    /// The API token for --server.
    #[arg(long, env = "BASPHERE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A context from ~/.config/basphere/config.yaml.
    #[arg(long, env = "BASPHERE_CONTEXT")]
    context: Option<String>,
    /// The certificate authority (PEM) to trust for an https:// --server; the system's otherwise.
    #[arg(long, env = "BASPHERE_CA_FILE")]
    ca_file: Option<PathBuf>,
}

impl Connect {
    fn client(&self) -> Result<Client, CliError> {
        let requested = connection::Requested {
            socket: self.socket.clone(),
            server: self.server.clone(),
            token: self.token.clone(),
            context: self.context.clone(),
            ca_file: self.ca_file.clone(),
        };
        Ok(Client::new(connection::resolve(&requested)?))
    }
}

#[derive(Parser, Debug)]
#[command(name = "create-vm", about = "Create VMs (asks for what is missing on a terminal)", after_help = crate::args::EXIT_CODES)]
struct CreateVm {
    /// The VM's name (with --count, the batch's: NAME-1..NAME-N); asked for on a terminal.
    #[arg(short = 'n', long)]
    name: Option<String>,
    /// The OS image; chosen from a list on a terminal.
    #[arg(short = 'o', long)]
    os: Option<String>,
    /// The size (CPUs, memory, disk); chosen from a list on a terminal.
    #[arg(short = 's', long)]
    spec: Option<String>,
    /// How many VMs to create.
    #[arg(short = 'c', long)]
    count: Option<u32>,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    yes: bool,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Parser, Debug)]
#[command(name = "list-vms", about = "List your VMs")]
struct ListVms {
    /// Add the creation time.
    #[arg(short = 'a', long)]
    all: bool,
    /// JSON: an array of VMs.
    #[arg(short = 'j', long)]
    json: bool,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Parser, Debug)]
#[command(name = "delete-vm", about = "Delete a VM")]
struct DeleteVm {
    /// The VM's name.
    name: String,
    /// Do not ask.
    #[arg(short = 'f', long, alias = "yes", short_alias = 'y')]
    force: bool,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Parser, Debug)]
#[command(name = "show-quota", about = "Show your quota")]
struct ShowQuota {
    /// JSON: the quota and usage.
    #[arg(short = 'j', long)]
    json: bool,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Parser, Debug)]
#[command(name = "list-resources", about = "List your VMs and clusters")]
struct ListResources {
    /// JSON: your VMs and clusters.
    #[arg(short = 'j', long)]
    json: bool,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Parser, Debug)]
#[command(name = "create-cluster", about = "Create a Kubernetes cluster (asks for what is missing on a terminal)", after_help = crate::args::EXIT_CODES)]
struct CreateCluster {
    /// The cluster's name; asked for on a terminal.
    #[arg(short = 'n', long)]
    name: Option<String>,
    /// dev or standard (development and production work too).
    #[arg(short = 't', long = "type")]
    cluster_type: Option<String>,
    /// small, medium or large.
    #[arg(short = 'w', long)]
    worker_spec: Option<String>,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    yes: bool,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Parser, Debug)]
#[command(name = "list-clusters", about = "List your clusters")]
struct ListClusters {
    /// JSON: an array of clusters.
    #[arg(short = 'j', long)]
    json: bool,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Parser, Debug)]
#[command(name = "delete-cluster", about = "Delete a cluster")]
struct DeleteCluster {
    /// The cluster's name.
    name: String,
    /// Do not ask.
    #[arg(short = 'f', long, alias = "yes", short_alias = 'y')]
    force: bool,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Parser, Debug)]
#[command(name = "get-kubeconfig", about = "Print a cluster's kubeconfig, or save it (mode 600)")]
struct GetKubeconfig {
    /// The cluster's name.
    name: String,
    /// Save it to this file (mode 600) instead of printing it.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Accepted for the original's scripts: the kubeconfig is always read afresh.
    #[arg(long)]
    refresh: bool,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Parser, Debug)]
#[command(name = "watch-cluster", about = "Show a cluster's progress; with -w until it is ready or failed", after_help = crate::args::EXIT_CODES)]
struct WatchCluster {
    /// The cluster's name.
    name: String,
    /// Wait until the cluster is ready (exit 0) or failed (exit 9).
    #[arg(short = 'w', long)]
    wait: bool,
    /// Accepted for the original's scripts: the server tells of each change as it happens.
    #[arg(short = 'i', long, default_value_t = 5)]
    interval: u64,
    /// Accepted for the original's scripts: the output has no colours anyway.
    #[arg(long)]
    no_color: bool,
    #[command(flatten)]
    connect: Connect,
}

/// Runs the alias `name` with the process arguments.
pub async fn run(name: &str, args: Vec<String>) -> Result<(), CliError> {
    let parse_error = |error: clap::Error| -> CliError {
        if matches!(error.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) {
            print!("{error}");
            return CliError::new(0, String::new());
        }
        CliError::usage(error.to_string().trim_end().to_owned())
    };
    match name {
        "create-vm" => create_vm(CreateVm::try_parse_from(args).map_err(parse_error)?).await,
        "list-vms" => list_vms(ListVms::try_parse_from(args).map_err(parse_error)?).await,
        "delete-vm" => delete_vm(DeleteVm::try_parse_from(args).map_err(parse_error)?).await,
        "show-quota" => show_quota(ShowQuota::try_parse_from(args).map_err(parse_error)?).await,
        "list-resources" => list_resources(ListResources::try_parse_from(args).map_err(parse_error)?).await,
        "create-cluster" => create_cluster(CreateCluster::try_parse_from(args).map_err(parse_error)?).await,
        "list-clusters" => list_clusters(ListClusters::try_parse_from(args).map_err(parse_error)?).await,
        "delete-cluster" => delete_cluster(DeleteCluster::try_parse_from(args).map_err(parse_error)?).await,
        "get-kubeconfig" => get_kubeconfig(GetKubeconfig::try_parse_from(args).map_err(parse_error)?).await,
        "watch-cluster" => watch_cluster(WatchCluster::try_parse_from(args).map_err(parse_error)?).await,
        other => Err(CliError::usage(format!("{other} is not a Basphere command"))),
    }
}

async fn create_vm(args: CreateVm) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let terminal = output::is_terminal();
    let missing: Vec<&str> =
        [("-n NAME", args.name.is_none()), ("-o OS", args.os.is_none()), ("-s SPEC", args.spec.is_none())]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(f, _)| *f)
            .collect();
    if !missing.is_empty() && !terminal {
        return Err(CliError::usage(format!("create-vm needs {} when not on a terminal", missing.join(", "))));
    }
    let catalog = flows::catalog(&client).await?.view;
    let cancelled = || CliError::new(0, "Cancelled.");
    let name = match args.name {
        Some(name) => name,
        None => {
            prompt::input("VM name", None, |n| if n.is_empty() { Err("a name is required".into()) } else { Ok(()) })
                .ok_or_else(cancelled)?
        }
    };
    let os = match args.os {
        Some(os) => os,
        None => {
            let labels: Vec<String> = catalog.os.iter().map(|o| format!("{} - {}", o.key, o.description)).collect();
            let index = prompt::select("Select OS", &labels).ok_or_else(cancelled)?;
            catalog.os[index].key.clone()
        }
    };
    let spec = match args.spec {
        Some(spec) => spec,
        None => {
            let labels: Vec<String> = catalog
                .specs
                .iter()
                .map(|s| format!("{} - {} vCPU, {}GB RAM, {}GB Disk", s.key, s.cpu, s.memory_mb / 1024, s.disk_gb))
                .collect();
            let index = prompt::select("Select spec", &labels).ok_or_else(cancelled)?;
            catalog.specs[index].key.clone()
        }
    };
    let count = match args.count {
        Some(count) => count,
        None if terminal => prompt::input("Number of VMs to create", Some("1"), |c| match c.parse::<u32>() {
            Ok(1..=10) => Ok(()),
            _ => Err("enter a number (1 ~ 10)".into()),
        })
        .ok_or_else(cancelled)?
        .parse()
        .unwrap_or(1),
        None => 1,
    };
    if terminal && !args.yes {
        eprintln!(
            "VMs to create:\n  name:  {name}{}\n  OS:    {os}\n  spec:  {spec}\n  count: {count}",
            if count > 1 { format!(" ({name}-1 .. {name}-{count})") } else { String::new() }
        );
        if !prompt::confirm("Create the VM(s)?", true) {
            return Err(cancelled());
        }
    }
    let created = flows::create_vms(&client, &CreateVmsRequest { name, os, spec, count }, None).await?;
    let finished = wait::wait_all(&client, &created.view.operations, Duration::from_secs(900)).await?;
    let me = flows::me(&client).await?.view;
    let finished: Vec<OperationView> = finished.into_iter().map(|op| op.view).collect();
    let ok = finished.iter().filter(|op| op.state == "succeeded").count();
    println!("==========");
    println!("Created: {ok} / {count}");
    if ok < finished.len() {
        println!("Failed: {}", finished.len() - ok);
    }
    for op in &finished {
        let vm = flows::vm(&client, &op.resource.name).await.ok().map(|vm| vm.view);
        let detail = op.error.as_ref().map(|e| format!(" - {e}")).unwrap_or_default();
        println!(
            "  - {}: {} ({}){detail}",
            op.resource.name,
            vm.as_ref().and_then(|vm| vm.ip).map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
            vm.as_ref().map_or(op.state.as_str(), |vm| vm.state.as_str())
        );
    }
    println!("VM access: ssh {}@<IP_ADDRESS>", me.name);
    println!("VM list: list-vms");
    if ok < finished.len() {
        return Err(CliError::new(crate::exit::OPERATION_FAILED, format!("{} VM(s) failed", finished.len() - ok)));
    }
    Ok(())
}

async fn list_vms(args: ListVms) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let vms = flows::vms(&client, None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&vms.raw).unwrap_or_default());
        return Ok(());
    }
    let me = flows::me(&client).await?.view;
    println!("=== VM list ({}) ===", me.name);
    if vms.view.is_empty() {
        println!("No VMs created.");
        println!("Create a VM: create-vm");
        return Ok(());
    }
    output::vm_table(&vms.view, false, args.all);
    let quota = flows::quota(&client).await?.view;
    println!("\nTotal {} VMs", vms.view.len());
    println!("Quota: {} / {}", quota.usage.vms, quota.limits.vms);
    Ok(())
}

async fn delete_vm(args: DeleteVm) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let vm = flows::vm(&client, &args.name).await?.view;
    if !args.force {
        if !output::is_terminal() {
            return Err(CliError::usage("delete-vm asks for confirmation: add -f (or --yes) when not on a terminal"));
        }
        eprintln!(
            "VM to delete:\n  name:  {}\n  IP:    {}\n  OS:    {}\n  spec:  {}\n  state: {}",
            args.name,
            output::or_dash(vm.ip),
            vm.os,
            vm.spec,
            vm.state
        );
        if !prompt::confirm(&format!("Really delete VM '{}'?", args.name), false) {
            note("Cancelled.");
            return Ok(());
        }
    }
    let operation = flows::delete_vm(&client, &args.name).await?;
    flows::until_done(&client, &operation.view, Duration::from_secs(900), "VM deletion").await?;
    println!("VM deleted: {}", args.name);
    Ok(())
}

async fn show_quota(args: ShowQuota) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let quota = flows::quota(&client).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&quota.raw).unwrap_or_default());
        return Ok(());
    }
    let me = flows::me(&client).await?.view;
    println!("=== Quota ({}) ===", me.name);
    output::quota_table(&quota.view);
    Ok(())
}

async fn list_resources(args: ListResources) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let vms = flows::vms(&client, None).await?;
    let clusters = flows::clusters(&client).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"vms": vms.raw, "clusters": clusters.raw})).unwrap_or_default()
        );
        return Ok(());
    }
    println!("--- VMs ---");
    let rows: Vec<Vec<String>> = vms
        .view
        .iter()
        .map(|vm| vec![vm.name.clone(), output::or_dash(vm.ip), vm.spec.clone(), vm.state.clone()])
        .collect();
    output::table(&["NAME", "IP", "SPEC", "STATE"], &rows);
    println!("\n--- Kubernetes Clusters ---");
    if clusters.view.is_empty() {
        println!("(none)");
    } else {
        crate::cluster::table(&clusters.view);
    }
    println!("\nTotal resources: {} VMs, {} clusters", vms.view.len(), clusters.view.len());
    Ok(())
}

async fn create_cluster(args: CreateCluster) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let terminal = output::is_terminal();
    let missing: Vec<&str> = [("-n NAME", args.name.is_none()), ("-t TYPE", args.cluster_type.is_none())]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(f, _)| *f)
        .collect();
    if !missing.is_empty() && !terminal {
        return Err(CliError::usage(format!("create-cluster needs {} when not on a terminal", missing.join(", "))));
    }
    let catalog = flows::catalog(&client).await?.view;
    let cancelled = || CliError::new(0, "Cancelled.");
    if terminal {
        eprintln!("=== Create a Kubernetes cluster ===");
    }
    let name = match args.name {
        Some(name) => name,
        None => {
            prompt::input(
                "Cluster name",
                None,
                |n| if n.is_empty() { Err("a name is required".into()) } else { Ok(()) },
            )
            .ok_or_else(cancelled)?
        }
    };
    let cluster_type = match args.cluster_type {
        Some(t) => t,
        None => {
            let labels: Vec<String> = catalog
                .cluster_types
                .iter()
                .map(|t| {
                    format!(
                        "{} - {} (CP: {}, Workers: {})",
                        t.key, t.description, t.control_plane_count, t.worker_count
                    )
                })
                .collect();
            let index = prompt::select("Cluster type", &labels).ok_or_else(cancelled)?;
            catalog.cluster_types[index].key.clone()
        }
    };
    let worker_spec = match args.worker_spec {
        Some(spec) => Some(spec),
        None if terminal => {
            let labels: Vec<String> = catalog
                .node_specs
                .iter()
                .map(|s| format!("{} - {} vCPU, {}GB RAM, {}GB Disk", s.key, s.cpu, s.memory_mb / 1024, s.disk_gb))
                .collect();
            let index = prompt::select("Worker node spec", &labels).ok_or_else(cancelled)?;
            Some(catalog.node_specs[index].key.clone())
        }
        None => None,
    };
    if terminal && !args.yes {
        let chosen = catalog.cluster_types.iter().find(|t| t.key == cluster_type);
        eprintln!(
            "Cluster to create:\n  name:          {name}\n  type:          {cluster_type}{}\n  control plane: {} node(s)\n  workers:       {} node(s) (spec: {})",
            chosen.map(|t| format!(" ({})", t.description)).unwrap_or_default(),
            chosen.map_or_else(|| "-".to_owned(), |t| t.control_plane_count.to_string()),
            chosen.map_or_else(|| "-".to_owned(), |t| t.worker_count.to_string()),
            worker_spec.clone().or_else(|| chosen.map(|t| t.worker_spec.clone())).unwrap_or_default(),
        );
        if !prompt::confirm("Create the cluster?", true) {
            return Err(cancelled());
        }
    }
    let request = CreateClusterRequest { name: name.clone(), cluster_type, worker_spec, workers: None };
    let created = flows::create_cluster(&client, &request, None).await?;
    let cluster = &created.view.cluster;
    println!("Cluster creation request completed");
    println!("  name:             {}", cluster.name);
    println!("  type:             {}", cluster.cluster_type);
    println!("  state:            {}", cluster.state);
    println!("  control plane IP: {}", output::or_dash(cluster.control_plane_ip));
    println!("Check progress: watch-cluster {name} -w");
    println!("Cluster list: list-clusters");
    Ok(())
}

async fn list_clusters(args: ListClusters) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let clusters = flows::clusters(&client).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&clusters.raw).unwrap_or_default());
        return Ok(());
    }
    if clusters.view.is_empty() {
        println!("No clusters created.");
        println!("Create a cluster: create-cluster");
        return Ok(());
    }
    crate::cluster::table(&clusters.view);
    println!("\nTotal: {} cluster(s)", clusters.view.len());
    Ok(())
}

async fn delete_cluster(args: DeleteCluster) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let cluster: ClusterView = flows::cluster(&client, &args.name).await?.view;
    if !args.force {
        if !output::is_terminal() {
            return Err(CliError::usage(
                "delete-cluster asks for confirmation: add -f (or --yes) when not on a terminal",
            ));
        }
        eprintln!(
            "Cluster to delete:\n  name:  {}\n  type:  {}\n  state: {}\n  control plane IP: {}",
            cluster.name,
            cluster.cluster_type,
            cluster.state,
            output::or_dash(cluster.control_plane_ip)
        );
        eprintln!("Deleting the cluster permanently deletes all data on it!");
        if !prompt::confirm("Really delete?", false) {
            note("Cancelled.");
            return Ok(());
        }
    }
    eprintln!("Deleting cluster... (removing its VMs may take a while)");
    let operation = flows::delete_cluster(&client, &args.name).await?;
    flows::until_done(&client, &operation.view, Duration::from_secs(3600), "Cluster deletion").await?;
    println!("Cluster deleted: {}", args.name);
    Ok(())
}

async fn get_kubeconfig(args: GetKubeconfig) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let _ = args.refresh;
    let path = NamePath { name: args.name.clone() };
    let kubeconfig: KubeconfigView = match client.call::<clusters::Kubeconfig>(&path, &(), &()).await {
        Ok(doc) => doc.view,
        Err(error) if error.code == crate::exit::CONFLICT => {
            return Err(CliError::new(
                error.code,
                format!(
                    "Cannot get kubeconfig: the cluster may not be ready yet ({}).\nCheck status: watch-cluster {}",
                    error.message, args.name
                ),
            ))
        }
        Err(error) => return Err(error),
    };
    match args.output {
        Some(path) => {
            crate::cluster::write_private(&path, &kubeconfig.kubeconfig)?;
            println!("kubeconfig saved: {}", path.display());
            println!("  export KUBECONFIG={}", path.display());
            println!("  kubectl get nodes");
        }
        None => print!("{}", kubeconfig.kubeconfig),
    }
    Ok(())
}

async fn watch_cluster(args: WatchCluster) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let _ = (args.interval, args.no_color);
    if args.wait {
        return crate::cluster::follow(&client, &args.name, Duration::from_secs(3600), output::Format::Table).await;
    }
    let cluster: ClusterView = flows::cluster(&client, &args.name).await?.view;
    println!("Cluster status: {}", cluster.name);
    crate::cluster::table(std::slice::from_ref(&cluster));
    for condition in &cluster.conditions {
        println!(
            "  {}: {}{}",
            condition.kind,
            condition.status,
            condition.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
        );
    }
    if let Some(reason) = &cluster.reason {
        println!("  {reason}");
    }
    if cluster.state == "ready" {
        println!("The cluster is ready! get-kubeconfig {} -o ~/.kube/{}.yaml", cluster.name, cluster.name);
    } else {
        println!("Follow it until ready: watch-cluster {} -w", cluster.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_original_command_and_its_arguments_have_help_text() {
        let commands = [
            CreateVm::command(),
            ListVms::command(),
            DeleteVm::command(),
            ShowQuota::command(),
            ListResources::command(),
            CreateCluster::command(),
            ListClusters::command(),
            DeleteCluster::command(),
            GetKubeconfig::command(),
            WatchCluster::command(),
        ];
        let names: Vec<&str> = commands.iter().map(|command| command.get_name()).collect();
        assert_eq!(names, NAMES, "every name the binary answers to is checked");
        let mut found = Vec::new();
        for mut command in commands {
            command.build();
            found.extend(crate::commands::undocumented(&command, ""));
        }
        assert!(found.is_empty(), "{} without help text:\n{}", found.len(), found.join("\n"));
    }
}
