//! The `basphere` subcommands and what they do.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use crate::client::Client;
use crate::exit::CliError;
use crate::output::{self, emit, note, Format};
use crate::wait;

/// `basphere`: self-service VMs on vSphere.
#[derive(Parser)]
#[command(name = "basphere", version, about = "Self-service VMs on vSphere", after_help = EXIT_CODES)]
pub struct Cli {
    /// The server's Unix socket (default /run/basphere/basphere.sock, else .basphere/basphere.sock).
    #[arg(long, global = true, env = "BASPHERE_SOCKET")]
    pub socket: Option<PathBuf>,
    /// The server's URL (http://host:port), with a token; instead of the socket.
    #[arg(long, global = true, env = "BASPHERE_SERVER")]
    pub server: Option<String>,
    /// The API token for --server.
    #[arg(long, global = true, env = "BASPHERE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A context from ~/.config/basphere/config.yaml.
    #[arg(long, global = true, env = "BASPHERE_CONTEXT")]
    pub context: Option<String>,
    /// Output format: JSON and YAML are the server's documents, stable for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Answer yes to every confirmation (for scripts).
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    #[command(subcommand)]
    pub command: Command,
}

pub const EXIT_CODES: &str = "Exit codes: 0 ok, 1 error, 2 usage or invalid input, 3 not found, 4 conflict, 5 quota exceeded, 6 timeout, 7 server unreachable, 8 not allowed, 9 operation failed.";

#[derive(Subcommand)]
pub enum Command {
    /// Virtual machines.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Your limits and usage.
    Quota,
    /// Operations (background work).
    #[command(subcommand, name = "op")]
    Operation(OperationCommand),
    /// API tokens for using Basphere from elsewhere.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The OS images and VM sizes you can ask for.
    Catalog,
    /// Who the server believes you are.
    Whoami,
    /// Administration (as root on the bastion, or with an admin token).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Shell completion script: basphere completion bash > /etc/bash_completion.d/basphere
    Completion { shell: clap_complete::Shell },
    /// Start a server on embedded defaults (if none is running) and walk through the main job.
    Demo(crate::demo::DemoArgs),
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

#[derive(Subcommand)]
pub enum VmCommand {
    /// Create one VM, or a batch NAME-1..NAME-N with --count.
    Create {
        name: String,
        #[arg(long)]
        os: String,
        #[arg(long)]
        spec: String,
        #[arg(long, short = 'c', default_value_t = 1)]
        count: u32,
        /// Makes a retried create return the first answer.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Your VMs.
    List {
        /// Only VMs in this state.
        #[arg(long)]
        state: Option<String>,
        /// Add the creation time.
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// One VM.
    Show { name: String },
    /// Delete a VM (asks first on a terminal).
    Delete {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    Start {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    Stop {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    Reboot {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Subcommand)]
pub enum OperationCommand {
    Show {
        id: String,
    },
    /// Wait for an operation to end.
    Wait {
        id: String,
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    List,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        name: String,
        #[arg(long, default_value = "user")]
        scope: String,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    List,
    Revoke {
        id: String,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    #[command(subcommand)]
    User(AdminUserCommand),
    #[command(subcommand)]
    Quota(AdminQuotaCommand),
    #[command(subcommand)]
    Token(AdminTokenCommand),
    #[command(subcommand)]
    Vm(AdminVmCommand),
    /// Every operation.
    Ops {
        #[arg(long)]
        owner: Option<String>,
    },
    /// The last comparison of the store with vSphere; --now runs one.
    Reconcile {
        #[arg(long)]
        now: bool,
    },
    /// The audit log; --jsonl exports JSON lines.
    Audit {
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        jsonl: bool,
    },
}

#[derive(Subcommand)]
pub enum AdminUserCommand {
    /// Create an account: record, IP block and vSphere folder.
    Add {
        username: String,
        #[arg(long)]
        email: String,
        /// A file with the user's public key (or - for stdin).
        #[arg(long, conflicts_with = "key")]
        key_file: Option<PathBuf>,
        /// The public key itself.
        #[arg(long)]
        key: Option<String>,
        #[arg(long, default_value = "")]
        team: String,
        /// The bastion login's uid (identifies the user on the Unix socket).
        #[arg(long)]
        uid: Option<u32>,
        /// An administrator account.
        #[arg(long)]
        admin: bool,
    },
    List,
    Show {
        username: String,
    },
}

#[derive(Subcommand)]
pub enum AdminQuotaCommand {
    Show {
        username: String,
    },
    /// Override limits; unset ones keep the default.
    Set {
        username: String,
        #[arg(long)]
        vms: Option<u64>,
        #[arg(long)]
        ips: Option<u64>,
        #[arg(long)]
        vcpus: Option<u64>,
        #[arg(long)]
        memory_mb: Option<u64>,
        #[arg(long)]
        disk_gb: Option<u64>,
        #[arg(long)]
        clusters: Option<u64>,
    },
    /// Back to the defaults.
    Reset {
        username: String,
    },
}

#[derive(Subcommand)]
pub enum AdminTokenCommand {
    /// Create a token for a user (an admin token for an admin account with --scope admin).
    Create {
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "cli")]
        name: String,
        #[arg(long, default_value = "user")]
        scope: String,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

#[derive(Subcommand)]
pub enum AdminVmCommand {
    /// Every VM (or one owner's).
    List {
        #[arg(long)]
        owner: Option<String>,
    },
    Delete {
        owner: String,
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// The context every command runs with.
pub struct Ctx {
    pub client: Client,
    pub format: Format,
    pub yes: bool,
}

impl Ctx {
    async fn post(&self, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Result<Value, CliError> {
        Ok(self.client.call(Method::POST, path, body.as_ref(), headers).await?.body)
    }

    async fn delete(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.client.call(Method::DELETE, path, None, &[]).await?.body)
    }

    async fn put(&self, path: &str, body: Value) -> Result<Value, CliError> {
        Ok(self.client.call(Method::PUT, path, Some(&body), &[]).await?.body)
    }

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

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn run(command: Command, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        Command::Vm(command) => vm(command, ctx).await,
        Command::Quota => {
            let quota = ctx.client.get("/api/v1/quota").await?;
            emit(ctx.format, &quota, output::quota_table);
            Ok(())
        }
        Command::Operation(command) => operation(command, ctx).await,
        Command::Token(command) => token(command, ctx).await,
        Command::Catalog => {
            let catalog = ctx.client.get("/api/v1/catalog").await?;
            emit(ctx.format, &catalog, |c| {
                let rows: Vec<Vec<String>> = c["os"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|os| {
                        vec![
                            "os".into(),
                            os["key"].as_str().unwrap_or("").into(),
                            os["description"].as_str().unwrap_or("").into(),
                        ]
                    })
                    .collect();
                let specs: Vec<Vec<String>> = c["specs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        vec![
                            "spec".into(),
                            s["key"].as_str().unwrap_or("").into(),
                            format!(
                                "{} vCPU, {} GB RAM, {} GB disk",
                                s["cpu"],
                                s["memory_mb"].as_u64().unwrap_or(0) / 1024,
                                s["disk_gb"]
                            ),
                        ]
                    })
                    .collect();
                output::table(&["KIND", "KEY", "DESCRIPTION"], &[rows, specs].concat());
            });
            Ok(())
        }
        Command::Whoami => {
            let me = ctx.client.get("/api/v1/me").await?;
            emit(ctx.format, &me, |me| {
                println!(
                    "{} ({}) via {}",
                    me["name"].as_str().unwrap_or(""),
                    me["role"].as_str().unwrap_or(""),
                    me["source"].as_str().unwrap_or("")
                )
            });
            Ok(())
        }
        Command::Admin(command) => admin(command, ctx).await,
        Command::Completion { .. } | Command::Demo(_) => unreachable!("handled before connecting"),
    }
}

async fn started(ctx: &Ctx, operations: Vec<Value>, wait: &WaitArgs, body: &Value) -> Result<(), CliError> {
    if wait.wait {
        let finished = wait::wait_all(&ctx.client, &operations, Duration::from_secs(wait.timeout)).await?;
        let failed: Vec<&Value> = finished.iter().filter(|op| op["state"] == "failed").collect();
        emit(ctx.format, &Value::Array(finished.clone()), |ops| {
            for op in ops.as_array().into_iter().flatten() {
                println!(
                    "{} {}: {}",
                    op["kind"].as_str().unwrap_or(""),
                    op["resource"]["name"].as_str().unwrap_or(""),
                    op["state"].as_str().unwrap_or("")
                );
                if let Some(error) = op["error"].as_str() {
                    println!("  {error}");
                }
            }
        });
        if !failed.is_empty() {
            return Err(CliError::new(
                crate::exit::OPERATION_FAILED,
                format!("{} of {} operation(s) failed", failed.len(), finished.len()),
            ));
        }
        return Ok(());
    }
    emit(ctx.format, body, |_| {
        for op in &operations {
            println!(
                "{} {} accepted: operation {}",
                op["kind"].as_str().unwrap_or(""),
                op["resource"]["name"].as_str().unwrap_or(""),
                op["id"].as_str().unwrap_or("")
            );
        }
        note("follow with: basphere op wait <operation>");
    });
    Ok(())
}

async fn vm(command: VmCommand, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        VmCommand::Create { name, os, spec, count, idempotency_key, wait } => {
            let body = json!({"name": name, "os": os, "spec": spec, "count": count});
            let headers: Vec<(&str, &str)> =
                idempotency_key.as_deref().map(|key| vec![("idempotency-key", key)]).unwrap_or_default();
            let created = ctx.post("/api/v1/vms", Some(body), &headers).await?;
            if !wait.wait && ctx.format == Format::Table {
                for vm in created["vms"].as_array().into_iter().flatten() {
                    println!(
                        "{}  {}  {}",
                        vm["name"].as_str().unwrap_or(""),
                        vm["ip"].as_str().unwrap_or("-"),
                        vm["state"].as_str().unwrap_or("")
                    );
                }
            }
            let operations = created["operations"].as_array().cloned().unwrap_or_default();
            started(ctx, operations, &wait, &created).await
        }
        VmCommand::List { state, all } => {
            let path = match state {
                Some(state) => format!("/api/v1/vms?state={}", encode(&state)),
                None => "/api/v1/vms".into(),
            };
            let vms = Value::Array(ctx.client.all_pages(&path).await?);
            emit(ctx.format, &vms, |vms| {
                let vms = vms.as_array().cloned().unwrap_or_default();
                if vms.is_empty() {
                    note("No VMs yet. Create one: basphere vm create NAME --os ubuntu-24.04 --spec small");
                } else {
                    output::vm_table(&vms, false, all);
                }
            });
            Ok(())
        }
        VmCommand::Show { name } => {
            let vm = ctx.client.get(&format!("/api/v1/vms/{}", encode(&name))).await?;
            emit(ctx.format, &vm, output::vm_detail);
            Ok(())
        }
        VmCommand::Delete { name, wait } => {
            if !ctx.confirm(&format!("Delete VM {name}? Its disks are destroyed"))? {
                note("Cancelled.");
                return Ok(());
            }
            let operation = ctx.delete(&format!("/api/v1/vms/{}", encode(&name))).await?;
            started(ctx, vec![operation.clone()], &wait, &operation).await
        }
        VmCommand::Start { name, wait } => power(ctx, &name, "start", &wait).await,
        VmCommand::Stop { name, wait } => power(ctx, &name, "stop", &wait).await,
        VmCommand::Reboot { name, wait } => power(ctx, &name, "reboot", &wait).await,
    }
}

async fn power(ctx: &Ctx, name: &str, action: &str, wait: &WaitArgs) -> Result<(), CliError> {
    let operation = ctx.post(&format!("/api/v1/vms/{}/{action}", encode(name)), None, &[]).await?;
    started(ctx, vec![operation.clone()], wait, &operation).await
}

async fn operation(command: OperationCommand, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        OperationCommand::Show { id } => {
            let op = ctx.client.get(&format!("/api/v1/operations/{}", encode(&id))).await?;
            emit(ctx.format, &op, output::operation_detail);
            Ok(())
        }
        OperationCommand::Wait { id, timeout } => {
            let op = ctx.client.get(&format!("/api/v1/operations/{}", encode(&id))).await?;
            started(ctx, vec![op.clone()], &WaitArgs { wait: true, timeout }, &op).await
        }
        OperationCommand::List => {
            let ops = Value::Array(ctx.client.all_pages("/api/v1/operations").await?);
            emit(ctx.format, &ops, |ops| {
                let rows: Vec<Vec<String>> = ops
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|op| {
                        ["id", "kind", "state"]
                            .iter()
                            .map(|k| op[*k].as_str().unwrap_or("").to_owned())
                            .chain([op["resource"]["name"].as_str().unwrap_or("").to_owned()])
                            .collect()
                    })
                    .collect();
                output::table(&["ID", "KIND", "STATE", "RESOURCE"], &rows);
            });
            Ok(())
        }
    }
}

fn print_created_token(ctx: &Ctx, created: &Value) {
    emit(ctx.format, created, |created| {
        println!("{}", created["secret"].as_str().unwrap_or(""));
        note(format!(
            "token {} ({}) created; the secret above is shown once: keep it, e.g. export BASPHERE_TOKEN=...",
            created["token"]["name"].as_str().unwrap_or(""),
            created["token"]["scope"].as_str().unwrap_or("")
        ));
    });
}

async fn token(command: TokenCommand, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        TokenCommand::Create { name, scope, expires_in_days } => {
            let created = ctx
                .post(
                    "/api/v1/tokens",
                    Some(json!({"name": name, "scope": scope, "expires_in_days": expires_in_days})),
                    &[],
                )
                .await?;
            print_created_token(ctx, &created);
            Ok(())
        }
        TokenCommand::List => {
            let tokens = ctx.client.get("/api/v1/tokens").await?;
            emit(ctx.format, &tokens, |tokens| {
                let rows: Vec<Vec<String>> = tokens
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        ["id", "name", "scope", "created_at", "expires_at", "revoked_at"]
                            .iter()
                            .map(|k| t[*k].as_str().unwrap_or("-").to_owned())
                            .collect()
                    })
                    .collect();
                output::table(&["ID", "NAME", "SCOPE", "CREATED", "EXPIRES", "REVOKED"], &rows);
            });
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            let token = ctx.delete(&format!("/api/v1/tokens/{}", encode(&id))).await?;
            emit(ctx.format, &token, |t| note(format!("token {} revoked", t["name"].as_str().unwrap_or(""))));
            Ok(())
        }
    }
}

async fn admin(command: AdminCommand, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        AdminCommand::User(AdminUserCommand::Add { username, email, key_file, key, team, uid, admin }) => {
            let key = match (key, key_file) {
                (Some(key), _) => key,
                (None, Some(path)) if path.as_os_str() == "-" => {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
                    text
                }
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .map_err(|error| CliError::usage(format!("reading {}: {error}", path.display())))?,
                (None, None) => {
                    return Err(CliError::usage(
                        "give the user's public key with --key-file FILE or --key 'ssh-ed25519 ...'",
                    ))
                }
            };
            let user = ctx.post("/api/v1/admin/users", Some(json!({"username": username, "email": email, "ssh_key": key.trim(), "team": team, "uid": uid, "admin": admin})), &[]).await?;
            emit(ctx.format, &user, |u| {
                note(format!(
                    "account {} created ({}), key {}",
                    u["username"].as_str().unwrap_or(""),
                    u["role"].as_str().unwrap_or(""),
                    u["ssh_key_fingerprint"].as_str().unwrap_or("")
                ))
            });
            Ok(())
        }
        AdminCommand::User(AdminUserCommand::List) => {
            let users = ctx.client.get("/api/v1/admin/users").await?;
            emit(ctx.format, &users, |users| {
                let rows: Vec<Vec<String>> = users
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| {
                        vec![
                            u["username"].as_str().unwrap_or("").into(),
                            u["email"].as_str().unwrap_or("").into(),
                            u["team"].as_str().unwrap_or("").into(),
                            u["role"].as_str().unwrap_or("").into(),
                            u["status"].as_str().unwrap_or("").into(),
                            u["uid"].as_u64().map_or("-".into(), |u| u.to_string()),
                        ]
                    })
                    .collect();
                output::table(&["USERNAME", "EMAIL", "TEAM", "ROLE", "STATUS", "UID"], &rows);
            });
            Ok(())
        }
        AdminCommand::User(AdminUserCommand::Show { username }) => {
            let user = ctx.client.get(&format!("/api/v1/admin/users/{}", encode(&username))).await?;
            emit(ctx.format, &user, |u| {
                for (key, value) in u.as_object().into_iter().flatten() {
                    println!(
                        "{:<20} {}",
                        format!("{key}:"),
                        value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())
                    );
                }
            });
            Ok(())
        }
        AdminCommand::Quota(AdminQuotaCommand::Show { username }) => {
            let quota = ctx.client.get(&format!("/api/v1/admin/users/{}/quota", encode(&username))).await?;
            emit(ctx.format, &quota, output::quota_table);
            Ok(())
        }
        AdminCommand::Quota(AdminQuotaCommand::Set { username, vms, ips, vcpus, memory_mb, disk_gb, clusters }) => {
            let body = json!({"vms": vms, "ips": ips, "vcpus": vcpus, "memory_mb": memory_mb, "disk_gb": disk_gb, "clusters": clusters});
            let quota = ctx.put(&format!("/api/v1/admin/users/{}/quota", encode(&username)), body).await?;
            emit(ctx.format, &quota, output::quota_table);
            Ok(())
        }
        AdminCommand::Quota(AdminQuotaCommand::Reset { username }) => {
            let quota = ctx.delete(&format!("/api/v1/admin/users/{}/quota", encode(&username))).await?;
            emit(ctx.format, &quota, output::quota_table);
            Ok(())
        }
        AdminCommand::Token(AdminTokenCommand::Create { user, name, scope, expires_in_days }) => {
            let created = ctx
                .post(
                    &format!("/api/v1/admin/users/{}/tokens", encode(&user)),
                    Some(json!({"name": name, "scope": scope, "expires_in_days": expires_in_days})),
                    &[],
                )
                .await?;
            print_created_token(ctx, &created);
            Ok(())
        }
        AdminCommand::Vm(AdminVmCommand::List { owner }) => {
            let path = match owner {
                Some(owner) => format!("/api/v1/admin/vms?owner={}", encode(&owner)),
                None => "/api/v1/admin/vms".into(),
            };
            let vms = Value::Array(ctx.client.all_pages(&path).await?);
            emit(ctx.format, &vms, |vms| {
                output::vm_table(vms.as_array().map(Vec::as_slice).unwrap_or(&[]), true, true)
            });
            Ok(())
        }
        AdminCommand::Vm(AdminVmCommand::Delete { owner, name, wait }) => {
            if !ctx.confirm(&format!("Delete VM {name} of {owner}?"))? {
                note("Cancelled.");
                return Ok(());
            }
            let operation =
                ctx.delete(&format!("/api/v1/admin/users/{}/vms/{}", encode(&owner), encode(&name))).await?;
            started(ctx, vec![operation.clone()], &wait, &operation).await
        }
        AdminCommand::Ops { owner } => {
            let path = match owner {
                Some(owner) => format!("/api/v1/admin/operations?owner={}", encode(&owner)),
                None => "/api/v1/admin/operations".into(),
            };
            let ops = Value::Array(ctx.client.all_pages(&path).await?);
            emit(ctx.format, &ops, |ops| {
                let rows: Vec<Vec<String>> = ops
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|op| {
                        vec![
                            op["id"].as_str().unwrap_or("").into(),
                            op["owner"].as_str().unwrap_or("").into(),
                            op["kind"].as_str().unwrap_or("").into(),
                            op["state"].as_str().unwrap_or("").into(),
                            op["resource"]["name"].as_str().unwrap_or("").into(),
                        ]
                    })
                    .collect();
                output::table(&["ID", "OWNER", "KIND", "STATE", "RESOURCE"], &rows);
            });
            Ok(())
        }
        AdminCommand::Reconcile { now } => {
            let report = if now {
                ctx.post("/api/v1/admin/reconcile", None, &[]).await?
            } else {
                ctx.client.get("/api/v1/admin/reconcile").await?
            };
            emit(ctx.format, &report, |r| {
                println!("reconciled at {}", r["at"].as_str().unwrap_or("(not yet)"));
                for (label, key) in [("lost", "lost"), ("found again", "found")] {
                    for vm in r[key].as_array().into_iter().flatten() {
                        println!("  {label}: {}", vm.as_str().unwrap_or(""));
                    }
                }
                for change in r["power_changed"].as_array().into_iter().flatten() {
                    println!(
                        "  now {}: {}",
                        change["state"].as_str().unwrap_or(""),
                        change["vm"].as_str().unwrap_or("")
                    );
                }
                for stray in r["strays"].as_array().into_iter().flatten() {
                    println!(
                        "  stray (not Basphere's, left alone): {} in {}",
                        stray["vsphere_name"].as_str().unwrap_or(""),
                        stray["folder"].as_str().unwrap_or("")
                    );
                }
            });
            Ok(())
        }
        AdminCommand::Audit { actor, jsonl } => {
            let mut path = "/api/v1/admin/audit?limit=100000".to_owned();
            if let Some(actor) = actor {
                path.push_str(&format!("&actor={}", encode(&actor)));
            }
            if jsonl {
                path.push_str("&format=jsonl");
                let reply = ctx.client.call(Method::GET, &path, None, &[]).await?;
                print!("{}", reply.text);
                return Ok(());
            }
            let page = ctx.client.get(&path).await?;
            let events = page["items"].clone();
            emit(ctx.format, &events, |events| {
                let rows: Vec<Vec<String>> = events
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        ["at", "actor", "action", "resource", "outcome", "source"]
                            .iter()
                            .map(|k| e[*k].as_str().unwrap_or("").to_owned())
                            .collect()
                    })
                    .collect();
                output::table(&["AT", "ACTOR", "ACTION", "RESOURCE", "OUTCOME", "SOURCE"], &rows);
            });
            Ok(())
        }
    }
}
