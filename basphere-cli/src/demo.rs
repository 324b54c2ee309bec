//! `basphere demo`: starts `basphere-server` on embedded defaults when none is running, then
//! walks through the main job over the real API, and leaves the server running to try the CLI.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use basphere_api::endpoint::Endpoint as _;
use basphere_api::endpoints::{admin, service, vms, UsernamePath};
use basphere_api::{CreateTokenRequest, CreateUserRequest, CreateVmsRequest, ListQuery, Page, VmView};

use crate::client::{Client, Endpoint};
use crate::exit::CliError;
use crate::{flows, output, wait};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// The server's data directory (database, simulated vSphere inventory, socket, log).
    #[arg(long, default_value = ".basphere")]
    pub data_dir: PathBuf,
    /// The TCP address the server listens on, if the demo starts it.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
}

/// A real ed25519 public key for the demo developer (its private half is kept nowhere).
const DEMO_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINOsBuCWIqqi1bMQf0RdFALW/q6vpEatzSoEZgCYvLNu alice@laptop";

fn step(title: &str) {
    println!("\n== {title}");
}

fn server_binary() -> PathBuf {
    let sibling = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join("basphere-server")));
    match sibling {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("basphere-server"),
    }
}

/// The TCP address from the server's "ready" line in its log.
fn tcp_address(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|line| line.starts_with("basphere-server ready"))?;
    let start = line.find("http://")?;
    Some(line[start..].split_whitespace().next()?.to_owned())
}

async fn ensure_server(args: &DemoArgs) -> Result<(Client, String, Option<u32>), CliError> {
    let socket = args.data_dir.join("basphere.sock");
    let admin = Client::new(Endpoint::Socket(socket.clone()));
    let log = args.data_dir.join("server.log");
    if admin.call::<service::Healthz>(&(), &(), &()).await.is_ok() {
        let tcp = tcp_address(&log).unwrap_or_else(|| format!("http://{}", args.listen));
        println!("  a server is already running on {} and {tcp}", socket.display());
        return Ok((admin, tcp, None));
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let log_file = std::fs::File::create(&log)?;
    let child = std::process::Command::new(server_binary())
        .arg("--data-dir")
        .arg(&args.data_dir)
        .arg("--listen")
        .arg(&args.listen)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .map_err(|error| {
            CliError::other(format!("cannot start basphere-server ({error}); build it with: cargo build --release"))
        })?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if admin.call::<service::Healthz>(&(), &(), &()).await.is_ok() {
            let tcp = tcp_address(&log).unwrap_or_else(|| format!("http://{}", args.listen));
            println!(
                "  started basphere-server (pid {}) in {} ms: {} and {tcp}",
                child.id(),
                started.elapsed().as_millis(),
                socket.display()
            );
            println!(
                "  store: SQLite in {}; VM backend: simulated vSphere (inventory in {})",
                args.data_dir.join("basphere.db").display(),
                args.data_dir.join("simulated-vsphere.jsonl").display()
            );
            return Ok((admin, tcp, Some(child.id())));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(CliError::unreachable(format!("basphere-server did not come up; see {}", log.display())))
}

pub async fn run(args: DemoArgs) -> Result<(), CliError> {
    step("1. The platform on embedded defaults");
    let (admin, tcp, pid) = ensure_server(&args).await?;
    let me = flows::me(&admin).await?.view;
    println!("  you are {} ({}) on the socket: the kernel's peer credentials say so", me.name, me.role);

    step("2. An administrator approves a developer: basphere admin user add alice ...");
    let request = CreateUserRequest {
        username: "alice".into(),
        email: "alice@example.com".into(),
        team: "payments".into(),
        ssh_key: DEMO_KEY.into(),
        uid: None,
        admin: false,
    };
    match admin.call::<admin::CreateUser>(&(), &(), &request).await {
        Ok(user) => println!(
            "  account alice created: an IP block and the vSphere folder basphere-vms/alice ({})",
            user.view.ssh_key_fingerprint
        ),
        Err(error) if error.code == crate::exit::CONFLICT => println!("  account alice exists already"),
        Err(error) => return Err(error),
    }
    let request = CreateTokenRequest { name: "demo".into(), scope: None, expires_in_days: None };
    let alice_account = UsernamePath { username: "alice".into() };
    let token = admin.call::<admin::CreateToken>(&alice_account, &(), &request).await?.view;
    let secret = token.secret;
    println!("  an API token for alice (shown once): {secret}");
    let alice = Client::new(Endpoint::Tcp { base: tcp.clone(), token: Some(secret.clone()), ca_file: None });

    let first_thousand = ListQuery { limit: Some(1000), ..Default::default() };
    let leftovers: Page<VmView> = alice.call::<vms::List>(&(), &first_thousand, &()).await?.view;
    let leftovers: Vec<String> = leftovers.items.into_iter().map(|vm| vm.name).collect();
    if !leftovers.is_empty() {
        println!("  removing alice's VMs from an earlier demo: {}", leftovers.join(", "));
        let mut operations = Vec::new();
        for name in leftovers {
            if let Ok(op) = flows::delete_vm(&alice, &name).await {
                operations.push(op.view);
            }
        }
        wait::wait_all(&alice, &operations, Duration::from_secs(120)).await?;
    }

    step("3. alice creates 3 VMs over HTTP: basphere vm create web --os ubuntu-24.04 --spec small --count 3 --wait");
    let request = CreateVmsRequest { name: "web".into(), os: "ubuntu-24.04".into(), spec: "small".into(), count: 3 };
    let created = flows::create_vms(&alice, &request, None).await?.view;
    for vm in &created.vms {
        println!("  accepted {} with address {}", vm.name, vm.ip.map(|ip| ip.to_string()).unwrap_or_default());
    }
    wait::wait_all(&alice, &created.operations, Duration::from_secs(120)).await?;

    step("4. alice lists her VMs: basphere vm list");
    let vms: Page<VmView> = alice.call::<vms::List>(&(), &ListQuery::default(), &()).await?.view;
    output::vm_table(&vms.items, false, false);

    step("5. alice checks her quota: basphere quota");
    output::quota_table(&flows::quota(&alice).await?.view);

    step("6. alice asks for more than her quota: basphere vm create big --os ubuntu-24.04 --spec large --count 10");
    let request = CreateVmsRequest { name: "big".into(), os: "ubuntu-24.04".into(), spec: "large".into(), count: 10 };
    match flows::create_vms(&alice, &request, None).await {
        Err(error) => println!("  refused (exit code {}): {}", error.code, error.message),
        Ok(_) => return Err(CliError::other("the quota should have refused this request")),
    }

    step("7. alice deletes web-2: basphere vm delete web-2 --wait");
    let operation = flows::delete_vm(&alice, "web-2").await?;
    let done = wait::wait_all(&alice, std::slice::from_ref(&operation.view), Duration::from_secs(120)).await?;
    println!("  {}: the VM is gone from vSphere, then its address was released", done[0].view.state);
    let vms: Page<VmView> = alice.call::<vms::List>(&(), &ListQuery::default(), &()).await?.view;
    output::vm_table(&vms.items, false, false);

    let me = std::env::args().next().unwrap_or_else(|| "basphere".into());
    step("Your turn");
    match pid {
        Some(pid) => println!(
            "  basphere-server keeps running (pid {pid}; log {}). Stop it with: kill {pid}",
            args.data_dir.join("server.log").display()
        ),
        None => println!("  basphere-server keeps running."),
    }
    println!("  As the administrator, over the socket:");
    println!("    {me} --socket {} admin vm list", args.data_dir.join("basphere.sock").display());
    println!("  As alice, over HTTP:");
    println!("    export BASPHERE_SERVER={tcp} BASPHERE_TOKEN={secret}");
    println!("    {me} vm list");
    println!("    {me} vm create db --os rocky-10.1 --spec medium --wait");
    println!("    {me} cluster create dev1 --type dev --wait   # Kubernetes on the simulated management cluster");
    println!("    {me} cluster kubeconfig dev1 -f dev1.yaml");
    println!("    ln -s {me} create-vm && ./create-vm    # the original command names work too");
    println!("  In a browser:");
    println!("    {tcp}/sign-in    paste alice's token above to see her dashboard");
    println!(
        "    {me} --socket {} web    prints a sign-in link to the admin console",
        args.data_dir.join("basphere.sock").display()
    );
    println!("    {tcp}/register    where newcomers ask for an account");
    println!("  The API is described at {tcp}{}", service::OpenApi::PATH);
    Ok(())
}
