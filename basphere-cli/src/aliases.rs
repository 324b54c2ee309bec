//! The original Basphere's commands, when this binary is invoked under their names (a symlink
//! or hard link): `create-vm`, `list-vms`, `delete-vm`, `show-quota`, `list-resources`, with
//! their flags. They prompt only on a terminal; `--yes` (or `-f` for delete-vm) skips prompts.

use std::path::PathBuf;
use std::time::Duration;

use basphere_api::{CatalogView, CreateVmsRequest, CreateVmsResponse, MeView, OperationView, QuotaView, VmView};
use clap::Parser;
use hyper::Method;
use serde_json::json;

use crate::client::{self, Client, Doc};
use crate::exit::CliError;
use crate::output::{self, note};
use crate::{connection, prompt, wait};

pub const NAMES: &[&str] = &["create-vm", "list-vms", "delete-vm", "show-quota", "list-resources"];

/// Connection flags every alias accepts (the environment and the CLI config work too).
#[derive(clap::Args, Debug)]
struct Connect {
    #[arg(long, env = "BASPHERE_SOCKET")]
    socket: Option<PathBuf>,
    #[arg(long, env = "BASPHERE_SERVER")]
    server: Option<String>,
    #[arg(long, env = "BASPHERE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, env = "BASPHERE_CONTEXT")]
    context: Option<String>,
}

impl Connect {
    fn client(&self) -> Result<Client, CliError> {
        let requested = connection::Requested {
            socket: self.socket.clone(),
            server: self.server.clone(),
            token: self.token.clone(),
            context: self.context.clone(),
        };
        Ok(Client::new(connection::resolve(&requested)?))
    }
}

#[derive(Parser, Debug)]
#[command(name = "create-vm", about = "Create VMs (asks for what is missing on a terminal)", after_help = crate::commands::EXIT_CODES)]
struct CreateVm {
    #[arg(short = 'n', long)]
    name: Option<String>,
    #[arg(short = 'o', long)]
    os: Option<String>,
    #[arg(short = 's', long)]
    spec: Option<String>,
    #[arg(short = 'c', long)]
    count: Option<u32>,
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
    #[arg(short = 'j', long)]
    json: bool,
    #[command(flatten)]
    connect: Connect,
}

#[derive(Parser, Debug)]
#[command(name = "list-resources", about = "List your VMs and clusters")]
struct ListResources {
    #[arg(short = 'j', long)]
    json: bool,
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
    let catalog: CatalogView = client.get::<CatalogView>("/api/v1/catalog").await?.view;
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
    let request = client::body(&CreateVmsRequest { name, os, spec, count })?;
    let created: Doc<CreateVmsResponse> = client.fetch(Method::POST, "/api/v1/vms", Some(&request), &[]).await?;
    let finished = wait::wait_all(&client, &created.view.operations, Duration::from_secs(900)).await?;
    let me: MeView = client.get::<MeView>("/api/v1/me").await?.view;
    let finished: Vec<OperationView> = finished.into_iter().map(|op| op.view).collect();
    let ok = finished.iter().filter(|op| op.state == "succeeded").count();
    println!("==========");
    println!("Created: {ok} / {count}");
    if ok < finished.len() {
        println!("Failed: {}", finished.len() - ok);
    }
    for op in &finished {
        let vm = client.get::<VmView>(&format!("/api/v1/vms/{}", op.resource.name)).await.ok().map(|vm| vm.view);
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
    let vms: Doc<Vec<VmView>> = client.all_pages("/api/v1/vms").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&vms.raw).unwrap_or_default());
        return Ok(());
    }
    let me: MeView = client.get::<MeView>("/api/v1/me").await?.view;
    println!("=== VM list ({}) ===", me.name);
    if vms.view.is_empty() {
        println!("No VMs created.");
        println!("Create a VM: create-vm");
        return Ok(());
    }
    output::vm_table(&vms.view, false, args.all);
    let quota: QuotaView = client.get::<QuotaView>("/api/v1/quota").await?.view;
    println!("\nTotal {} VMs", vms.view.len());
    println!("Quota: {} / {}", quota.usage.vms, quota.limits.vms);
    Ok(())
}

async fn delete_vm(args: DeleteVm) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let vm: VmView = client.get::<VmView>(&format!("/api/v1/vms/{}", args.name)).await?.view;
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
    let operation: Doc<OperationView> =
        client.fetch(Method::DELETE, &format!("/api/v1/vms/{}", args.name), None, &[]).await?;
    let finished = wait::wait_all(&client, std::slice::from_ref(&operation.view), Duration::from_secs(900)).await?;
    let op = &finished[0].view;
    match op.state.as_str() {
        "succeeded" => {
            println!("VM deleted: {}", args.name);
            Ok(())
        }
        _ => Err(CliError::new(
            crate::exit::OPERATION_FAILED,
            format!("VM deletion failed: {}", op.error.as_deref().unwrap_or("unknown error")),
        )),
    }
}

async fn show_quota(args: ShowQuota) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let quota: Doc<QuotaView> = client.get("/api/v1/quota").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&quota.raw).unwrap_or_default());
        return Ok(());
    }
    let me: MeView = client.get::<MeView>("/api/v1/me").await?.view;
    println!("=== Quota ({}) ===", me.name);
    output::quota_table(&quota.view);
    Ok(())
}

async fn list_resources(args: ListResources) -> Result<(), CliError> {
    let client = args.connect.client()?;
    let vms: Doc<Vec<VmView>> = client.all_pages("/api/v1/vms").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"vms": vms.raw, "clusters": []})).unwrap_or_default());
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
    println!("(none)");
    println!("\nTotal resources: {} VMs, 0 clusters", vms.view.len());
    Ok(())
}
