//! What the `basphere` subcommands do (their definitions are `args`; clusters are `cluster`,
//! tenant networks `network`).

use basphere_api::endpoint::Endpoint;
use basphere_api::endpoints::{
    account, admin, operations, registration, tokens, vms, IdPath, UserResourcePath, UsernamePath, VmActionPath,
};
use basphere_api::{
    AuditQuery, AuditView, CreateTokenRequest, CreateUserRequest, CreateVmsRequest, CreatedToken, KeyChangeRequestBody,
    KeyChangeView, ListQuery, OperationView, OutboxQuery, OutboxView, QuotaOverrideRequest, QuotaView, ReconcileView,
    RegisterRequest, RegistrationView, RejectRequest, RequestListQuery, SubmittedView, TokenView, UserView, VmView,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::args::*;
use crate::client::Doc;
use crate::context::{started, Ctx, WaitArgs};
use crate::exit::CliError;
use crate::output::{self, emit, note, or_dash, time, Format};

fn user(username: &str) -> UsernamePath {
    UsernamePath { username: username.to_owned() }
}

fn id(id: &str) -> IdPath {
    IdPath { id: id.to_owned() }
}

/// Rejects `username`'s pending `what` (a registration, a key change) with `E`, after asking on
/// a terminal.
async fn reject<E>(ctx: &Ctx, what: &str, username: &str, reason: String) -> Result<(), CliError>
where
    E: Endpoint<Path = UsernamePath, Query = (), Body = RejectRequest>,
    E::Response: DeserializeOwned,
{
    if !ctx.confirm(&format!("Reject the {what} of {username}?"))? {
        note("Cancelled.");
        return Ok(());
    }
    let rejected = ctx.client.call::<E>(&user(username), &(), &RejectRequest { reason: reason.clone() }).await?;
    emit(ctx.format, &rejected.raw, || {
        println!(
            "The {what} of {username} is rejected. Reason: {}",
            if reason.is_empty() { "-" } else { reason.as_str() }
        )
    });
    Ok(())
}

async fn suspend(ctx: &Ctx, username: &str, suspended: bool) -> Result<(), CliError> {
    let user: Doc<UserView> = if suspended {
        ctx.client.call::<admin::SuspendUser>(&user(username), &(), &()).await?
    } else {
        ctx.client.call::<admin::ResumeUser>(&user(username), &(), &()).await?
    };
    emit(ctx.format, &user.raw, || println!("Account {} is {}.", user.view.username, user.view.status));
    Ok(())
}

pub async fn run(command: Command, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        command @ (Command::Register { .. } | Command::KeyChange { .. }) => public(command, ctx).await,
        Command::Vm(command) => vm(command, ctx).await,
        Command::Cluster(command) => crate::cluster::run(command, ctx).await,
        Command::Network(command) => crate::network::run(command, ctx).await,
        Command::Quota => {
            let quota = crate::flows::quota(&ctx.client).await?;
            emit(ctx.format, &quota.raw, || output::quota_table(&quota.view));
            Ok(())
        }
        Command::Operation(command) => operation(command, ctx).await,
        Command::Token(command) => token(command, ctx).await,
        Command::Catalog => {
            let catalog = crate::flows::catalog(&ctx.client).await?;
            emit(ctx.format, &catalog.raw, || {
                let os = catalog.view.os.iter().map(|os| vec!["os".into(), os.key.clone(), os.description.clone()]);
                let specs = catalog.view.specs.iter().map(|s| {
                    vec![
                        "spec".into(),
                        s.key.clone(),
                        format!("{} vCPU, {} GB RAM, {} GB disk", s.cpu, s.memory_mb / 1024, s.disk_gb),
                    ]
                });
                let types = catalog.view.cluster_types.iter().map(|t| {
                    vec![
                        "cluster type".into(),
                        t.key.clone(),
                        format!(
                            "{}: {} control plane ({}) + {} workers ({})",
                            t.description, t.control_plane_count, t.control_plane_spec, t.worker_count, t.worker_spec
                        ),
                    ]
                });
                let nodes = catalog.view.node_specs.iter().map(|s| {
                    vec![
                        "node spec".into(),
                        s.key.clone(),
                        format!("{} vCPU, {} GB RAM, {} GB disk", s.cpu, s.memory_mb / 1024, s.disk_gb),
                    ]
                });
                let rows: Vec<Vec<String>> = os.chain(specs).chain(types).chain(nodes).collect();
                output::table(&["KIND", "KEY", "DESCRIPTION"], &rows);
            });
            Ok(())
        }
        Command::Whoami => {
            let me = crate::flows::me(&ctx.client).await?;
            emit(ctx.format, &me.raw, || println!("{} ({}) via {}", me.view.name, me.view.role, me.view.source));
            Ok(())
        }
        Command::Web => {
            let link = ctx.client.call::<account::SignInLink>(&(), &(), &()).await?;
            emit(ctx.format, &link.raw, || {
                println!(
                    "Open this link in your browser to sign in (it works once, until {}):",
                    link.view.expires_at.format("%H:%M:%S UTC")
                );
                println!("{}", link.view.url);
            });
            Ok(())
        }
        Command::Admin(command) => admin(command, ctx).await,
        Command::Completion { .. } | Command::Manpage | Command::OriginalNames | Command::Demo(_) => {
            unreachable!("handled before connecting")
        }
    }
}

async fn vm(command: VmCommand, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        VmCommand::Create { name, os, spec, count, idempotency_key, wait } => {
            let request = CreateVmsRequest { name, os, spec, count };
            let created = crate::flows::create_vms(&ctx.client, &request, idempotency_key.as_deref()).await?;
            if !wait.wait && ctx.format == Format::Table {
                for vm in &created.view.vms {
                    println!("{}  {}  {}", vm.name, or_dash(vm.ip), vm.state);
                }
            }
            started(ctx, &created.view.operations, &wait, &created.raw).await
        }
        VmCommand::List { state, all } => {
            let vms = crate::flows::vms(&ctx.client, state).await?;
            emit(ctx.format, &vms.raw, || {
                if vms.view.is_empty() {
                    note("No VMs yet. Create one: basphere vm create NAME --os ubuntu-24.04 --spec small");
                } else {
                    output::vm_table(&vms.view, false, all);
                }
            });
            Ok(())
        }
        VmCommand::Show { name } => {
            let vm = crate::flows::vm(&ctx.client, &name).await?;
            emit(ctx.format, &vm.raw, || output::vm_detail(&vm.view));
            Ok(())
        }
        VmCommand::Delete { name, wait } => {
            if !ctx.confirm(&format!("Delete VM {name}? Its disks are destroyed"))? {
                note("Cancelled.");
                return Ok(());
            }
            let operation = crate::flows::delete_vm(&ctx.client, &name).await?;
            started(ctx, std::slice::from_ref(&operation.view), &wait, &operation.raw).await
        }
        VmCommand::Start { name, wait } => power(ctx, &name, "start", &wait).await,
        VmCommand::Stop { name, wait } => power(ctx, &name, "stop", &wait).await,
        VmCommand::Reboot { name, wait } => power(ctx, &name, "reboot", &wait).await,
    }
}

async fn power(ctx: &Ctx, name: &str, action: &str, wait: &WaitArgs) -> Result<(), CliError> {
    let path = VmActionPath { name: name.to_owned(), action: action.to_owned() };
    let operation = ctx.client.call::<vms::Power>(&path, &(), &()).await?;
    started(ctx, std::slice::from_ref(&operation.view), wait, &operation.raw).await
}

async fn operation(command: OperationCommand, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        OperationCommand::Show { id } => {
            let op = ctx.client.call::<operations::Get>(&self::id(&id), &(), &()).await?;
            emit(ctx.format, &op.raw, || output::operation_detail(&op.view));
            Ok(())
        }
        OperationCommand::Wait { id, timeout } => {
            let op = ctx.client.call::<operations::Get>(&self::id(&id), &(), &()).await?;
            started(ctx, std::slice::from_ref(&op.view), &WaitArgs { wait: true, timeout }, &op.raw).await
        }
        OperationCommand::List => {
            let ops = ctx.client.all_pages::<operations::List, OperationView>(&(), &ListQuery::default()).await?;
            emit(ctx.format, &ops.raw, || {
                let rows: Vec<Vec<String>> = ops
                    .view
                    .iter()
                    .map(|op| vec![op.id.to_string(), op.kind.clone(), op.state.clone(), op.resource.name.clone()])
                    .collect();
                output::table(&["ID", "KIND", "STATE", "RESOURCE"], &rows);
            });
            Ok(())
        }
    }
}

fn print_created_token(ctx: &Ctx, created: &Doc<CreatedToken>) {
    emit(ctx.format, &created.raw, || {
        let CreatedToken { token, secret } = &created.view;
        println!("{secret}");
        note(format!(
            "token {} ({}) created; the secret above is shown once: keep it, e.g. export BASPHERE_TOKEN=...",
            token.name, token.scope
        ));
    });
}

async fn token(command: TokenCommand, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        TokenCommand::Create { name, scope, expires_in_days } => {
            let request = CreateTokenRequest { name, scope: Some(scope), expires_in_days };
            let created = ctx.client.call::<tokens::Create>(&(), &(), &request).await?;
            print_created_token(ctx, &created);
            Ok(())
        }
        TokenCommand::List => {
            let tokens: Doc<Vec<TokenView>> = ctx.client.call::<tokens::List>(&(), &(), &()).await?;
            emit(ctx.format, &tokens.raw, || {
                let rows: Vec<Vec<String>> = tokens
                    .view
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.name.clone(),
                            t.scope.clone(),
                            time(&t.created_at),
                            or_dash(t.expires_at.as_ref().map(time)),
                            or_dash(t.revoked_at.as_ref().map(time)),
                        ]
                    })
                    .collect();
                output::table(&["ID", "NAME", "SCOPE", "CREATED", "EXPIRES", "REVOKED"], &rows);
            });
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            let token = ctx.client.call::<tokens::Revoke>(&self::id(&id), &(), &()).await?;
            emit(ctx.format, &token.raw, || note(format!("token {} revoked", token.view.name)));
            Ok(())
        }
    }
}

/// A public key from `--key` or `--key-file` (`-` for stdin).
fn public_key(KeyArgs { key, key_file }: KeyArgs, whose: &str) -> Result<String, CliError> {
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
            return Err(CliError::usage(format!(
                "give {whose} public key with --key-file FILE (e.g. ~/.ssh/id_ed25519.pub) or --key 'ssh-ed25519 ...'"
            )))
        }
    };
    Ok(key.trim().to_owned())
}

async fn public(command: Command, ctx: &Ctx) -> Result<(), CliError> {
    let answer: Doc<SubmittedView> = match command {
        Command::Register { username, email, public_key: given, team } => {
            let ssh_key = public_key(given, "your")?;
            let request = RegisterRequest { username, email, team, ssh_key, recaptcha_response: None };
            ctx.client.call::<registration::Register>(&(), &(), &request).await?
        }
        Command::KeyChange { username, email, public_key: given, reason } => {
            let ssh_key = public_key(given, "the new")?;
            let request = KeyChangeRequestBody { username, email, ssh_key, reason, recaptcha_response: None };
            ctx.client.call::<registration::KeyChange>(&(), &(), &request).await?
        }
        _ => unreachable!("only public submissions"),
    };
    emit(ctx.format, &answer.raw, || println!("{}", answer.view.message));
    Ok(())
}

async fn admin(command: AdminCommand, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        AdminCommand::Network(command) => crate::network::admin(command, ctx).await,
        AdminCommand::User(AdminUserCommand::Pending { username: Some(username) }) => {
            let request = ctx.client.call::<admin::Registration>(&user(&username), &(), &()).await?;
            emit(ctx.format, &request.raw, || {
                let r = &request.view;
                output::fields(&[
                    ("request", r.id.to_string()),
                    ("username", r.username.clone()),
                    ("email", r.email.clone()),
                    ("team", r.team.clone()),
                    ("status", r.status.clone()),
                    ("requested", time(&r.created_at)),
                    ("key", r.ssh_key.clone()),
                    ("key_fingerprint", r.ssh_key_fingerprint.clone()),
                    ("decided_by", or_dash(r.processed_by.as_deref())),
                    ("reason", or_dash(r.reject_reason.as_deref())),
                ]);
            });
            Ok(())
        }
        AdminCommand::User(AdminUserCommand::Pending { username: None }) => {
            let requests: Doc<Vec<RegistrationView>> =
                ctx.client.all_pages::<admin::Registrations, _>(&(), &RequestListQuery::default()).await?;
            emit(ctx.format, &requests.raw, || {
                let rows: Vec<Vec<String>> = requests
                    .view
                    .iter()
                    .map(|r| vec![r.username.clone(), r.email.clone(), r.team.clone(), time(&r.created_at)])
                    .collect();
                output::table_or("No pending registration requests", &["USERNAME", "EMAIL", "TEAM", "CREATED"], &rows);
            });
            Ok(())
        }
        AdminCommand::User(AdminUserCommand::Approve { usernames, wait }) => {
            let mut operations = Vec::new();
            let mut documents = Vec::new();
            let mut refused = Vec::new();
            for username in &usernames {
                match ctx.client.call::<admin::ApproveRegistration>(&user(username), &(), &()).await {
                    Ok(operation) => {
                        documents.push(operation.raw);
                        operations.push(operation.view);
                    }
                    Err(error) => refused.push((username.clone(), error)),
                }
            }
            for (username, error) in &refused {
                eprintln!("basphere: {username}: {}", error.message);
            }
            if !operations.is_empty() {
                started(ctx, &operations, &wait, &Value::Array(documents)).await?;
            }
            match refused.into_iter().next() {
                Some((_, error)) => Err(error),
                None => Ok(()),
            }
        }
        AdminCommand::User(AdminUserCommand::Reject { username, reason }) => {
            reject::<admin::RejectRegistration>(ctx, "registration", &username, reason).await
        }
        AdminCommand::User(AdminUserCommand::Suspend { username }) => suspend(ctx, &username, true).await,
        AdminCommand::User(AdminUserCommand::Resume { username }) => suspend(ctx, &username, false).await,
        AdminCommand::User(AdminUserCommand::Delete { username }) => {
            if !ctx.confirm(&format!("Delete the account {username}?"))? {
                note("Cancelled.");
                return Ok(());
            }
            ctx.client.call::<admin::DeleteUser>(&user(&username), &(), &()).await?;
            emit(ctx.format, &serde_json::json!({"deleted": username}), || println!("Account {username} deleted."));
            Ok(())
        }
        AdminCommand::User(AdminUserCommand::Purge { username, wait }) => {
            if !ctx.yes {
                if !output::is_terminal() {
                    return Err(CliError::usage(format!(
                        "purging {username} destroys every VM of it and cannot be undone: add --yes when not on a terminal"
                    )));
                }
                eprintln!("PURGE {username}: every VM of the account is destroyed, its addresses freed, its login and the account removed. This cannot be undone.");
                if !crate::prompt::confirm(&format!("Purge {username}?"), false) {
                    note("Cancelled.");
                    return Ok(());
                }
                let typed =
                    crate::prompt::input(&format!("Type the username '{username}' to confirm"), None, |_| Ok(()));
                if typed.as_deref().map(str::trim) != Some(username.as_str()) {
                    return Err(CliError::usage("the name did not match; nothing was purged"));
                }
            }
            let operation = ctx.client.call::<admin::PurgeUser>(&user(&username), &(), &()).await?;
            started(ctx, std::slice::from_ref(&operation.view), &wait, &operation.raw).await
        }
        AdminCommand::Key(AdminKeyCommand::Pending { username }) => {
            let requests: Doc<Vec<KeyChangeView>> =
                ctx.client.all_pages::<admin::KeyChanges, _>(&(), &RequestListQuery::default()).await?;
            match username {
                Some(username) => {
                    let Some(index) = requests.view.iter().position(|r| r.username == username) else {
                        return Err(CliError::new(
                            crate::exit::NOT_FOUND,
                            format!("no pending key change for {username}"),
                        ));
                    };
                    let r = &requests.view[index];
                    emit(ctx.format, &requests.raw[index], || {
                        output::fields(&[
                            ("request", r.id.to_string()),
                            ("username", r.username.clone()),
                            ("email", r.email.clone()),
                            ("reason", r.reason.clone()),
                            ("requested", time(&r.created_at)),
                            ("new_key", r.ssh_key.clone()),
                            ("key_fingerprint", r.ssh_key_fingerprint.clone()),
                        ]);
                    });
                }
                None => emit(ctx.format, &requests.raw, || {
                    let rows: Vec<Vec<String>> = requests
                        .view
                        .iter()
                        .map(|r| vec![r.username.clone(), r.email.clone(), r.reason.clone(), time(&r.created_at)])
                        .collect();
                    output::table_or(
                        "No pending key change requests",
                        &["USERNAME", "EMAIL", "REASON", "CREATED"],
                        &rows,
                    );
                }),
            }
            Ok(())
        }
        AdminCommand::Key(AdminKeyCommand::Approve { username, wait }) => {
            let operation = ctx.client.call::<admin::ApproveKeyChange>(&user(&username), &(), &()).await?;
            started(ctx, std::slice::from_ref(&operation.view), &wait, &operation.raw).await
        }
        AdminCommand::Key(AdminKeyCommand::Reject { username, reason }) => {
            reject::<admin::RejectKeyChange>(ctx, "key change", &username, reason).await
        }
        AdminCommand::User(AdminUserCommand::Add { username, email, public_key: given, team, uid, admin }) => {
            let key = public_key(given, "the user's")?;
            let request = CreateUserRequest { username, email, team, ssh_key: key, uid, admin };
            let user = ctx.client.call::<admin::CreateUser>(&(), &(), &request).await?;
            emit(ctx.format, &user.raw, || {
                let u = &user.view;
                note(format!("account {} created ({}), key {}", u.username, u.role, u.ssh_key_fingerprint))
            });
            Ok(())
        }
        AdminCommand::User(AdminUserCommand::List) => {
            let users = ctx.client.call::<admin::ListUsers>(&(), &(), &()).await?;
            emit(ctx.format, &users.raw, || {
                let rows: Vec<Vec<String>> = users
                    .view
                    .iter()
                    .map(|u| {
                        vec![
                            u.username.clone(),
                            u.email.clone(),
                            u.team.clone(),
                            u.role.clone(),
                            u.status.clone(),
                            or_dash(u.uid),
                        ]
                    })
                    .collect();
                output::table(&["USERNAME", "EMAIL", "TEAM", "ROLE", "STATUS", "UID"], &rows);
            });
            Ok(())
        }
        AdminCommand::User(AdminUserCommand::Show { username }) => {
            let user = ctx.client.call::<admin::GetUser>(&user(&username), &(), &()).await?;
            emit(ctx.format, &user.raw, || {
                let u = &user.view;
                output::fields(&[
                    ("username", u.username.clone()),
                    ("email", u.email.clone()),
                    ("team", u.team.clone()),
                    ("role", u.role.clone()),
                    ("status", u.status.clone()),
                    ("uid", or_dash(u.uid)),
                    ("ssh_key_fingerprint", u.ssh_key_fingerprint.clone()),
                    ("created_at", time(&u.created_at)),
                ]);
            });
            Ok(())
        }
        AdminCommand::Quota(AdminQuotaCommand::Show { username }) => {
            let quota = ctx.client.call::<admin::GetQuota>(&user(&username), &(), &()).await?;
            emit(ctx.format, &quota.raw, || output::quota_table(&quota.view));
            Ok(())
        }
        AdminCommand::Quota(AdminQuotaCommand::Set { username, vms, ips, vcpus, memory_mb, disk_gb, clusters }) => {
            let request =
                QuotaOverrideRequest { vms, clusters, nodes_per_cluster: None, ips, vcpus, memory_mb, disk_gb };
            let quota: Doc<QuotaView> = ctx.client.call::<admin::SetQuota>(&user(&username), &(), &request).await?;
            emit(ctx.format, &quota.raw, || output::quota_table(&quota.view));
            Ok(())
        }
        AdminCommand::Quota(AdminQuotaCommand::Reset { username }) => {
            let quota = ctx.client.call::<admin::ResetQuota>(&user(&username), &(), &()).await?;
            emit(ctx.format, &quota.raw, || output::quota_table(&quota.view));
            Ok(())
        }
        AdminCommand::Token(AdminTokenCommand::Create { user, name, scope, expires_in_days }) => {
            let request = CreateTokenRequest { name, scope: Some(scope), expires_in_days };
            let created = ctx.client.call::<admin::CreateToken>(&self::user(&user), &(), &request).await?;
            print_created_token(ctx, &created);
            Ok(())
        }
        AdminCommand::Vm(AdminVmCommand::List { owner }) => {
            let query = ListQuery { owner, ..Default::default() };
            let vms: Doc<Vec<VmView>> = ctx.client.all_pages::<admin::ListVms, _>(&(), &query).await?;
            emit(ctx.format, &vms.raw, || output::vm_table(&vms.view, true, true));
            Ok(())
        }
        AdminCommand::Vm(AdminVmCommand::Delete { owner, name, wait }) => {
            if !ctx.confirm(&format!("Delete VM {name} of {owner}?"))? {
                note("Cancelled.");
                return Ok(());
            }
            let path = UserResourcePath { username: owner, name };
            let operation = ctx.client.call::<admin::DeleteVm>(&path, &(), &()).await?;
            started(ctx, std::slice::from_ref(&operation.view), &wait, &operation.raw).await
        }
        AdminCommand::Ops { owner } => {
            let query = ListQuery { owner, ..Default::default() };
            let ops: Doc<Vec<OperationView>> = ctx.client.all_pages::<admin::ListOperations, _>(&(), &query).await?;
            emit(ctx.format, &ops.raw, || {
                let rows: Vec<Vec<String>> = ops
                    .view
                    .iter()
                    .map(|op| {
                        vec![
                            op.id.to_string(),
                            op.owner.clone(),
                            op.kind.clone(),
                            op.state.clone(),
                            op.resource.name.clone(),
                        ]
                    })
                    .collect();
                output::table(&["ID", "OWNER", "KIND", "STATE", "RESOURCE"], &rows);
            });
            Ok(())
        }
        AdminCommand::Reconcile { now } => {
            let report: Doc<ReconcileView> = if now {
                ctx.client.call::<admin::Reconcile>(&(), &(), &()).await?
            } else {
                ctx.client.call::<admin::LastReconcile>(&(), &(), &()).await?
            };
            emit(ctx.format, &report.raw, || {
                let r = &report.view;
                println!("reconciled at {}", r.at.as_ref().map_or_else(|| "(not yet)".to_owned(), time));
                for (label, vms) in
                    [("lost", &r.lost), ("found again", &r.found), ("adopted (imported, now Basphere's)", &r.adopted)]
                {
                    for vm in vms {
                        println!("  {label}: {vm}");
                    }
                }
                for change in &r.power_changed {
                    println!("  now {}: {}", change.state, change.vm);
                }
                for stray in &r.strays {
                    println!("  stray (not Basphere's, left alone): {} in {}", stray.vsphere_name, stray.folder);
                }
            });
            Ok(())
        }
        AdminCommand::Outbox(OutboxArgs { command: Some(OutboxCommand::Retry { id }), .. }) => {
            let message = ctx.client.call::<admin::RetryNotification>(&self::id(&id), &(), &()).await?;
            emit(ctx.format, &message.raw, || {
                println!("Notification {} ({}) is pending again.", message.view.id, message.view.event);
            });
            Ok(())
        }
        AdminCommand::Outbox(OutboxArgs { command: None, state }) => {
            let query = OutboxQuery { state, ..Default::default() };
            let messages: Doc<Vec<OutboxView>> = ctx.client.all_pages::<admin::Outbox, _>(&(), &query).await?;
            emit(ctx.format, &messages.raw, || {
                let rows: Vec<Vec<String>> = messages
                    .view
                    .iter()
                    .map(|m| {
                        let when = match m.state.as_str() {
                            "delivered" => m.delivered_at.as_ref().map_or_else(|| "-".to_owned(), time),
                            "pending" => format!("next {}", time(&m.next_attempt_at)),
                            _ => "-".to_owned(),
                        };
                        vec![
                            m.id.to_string(),
                            m.event.clone(),
                            if m.channel.is_empty() { "all".to_owned() } else { m.channel.clone() },
                            m.state.clone(),
                            m.attempts.to_string(),
                            when,
                            or_dash(m.last_error.as_deref()),
                        ]
                    })
                    .collect();
                output::table(&["ID", "EVENT", "CHANNEL", "STATE", "ATTEMPTS", "WHEN", "LAST ERROR"], &rows);
            });
            Ok(())
        }
        AdminCommand::Audit { actor, jsonl } => {
            let mut query = AuditQuery { actor, limit: Some(100000), ..Default::default() };
            if jsonl {
                query.format = Some("jsonl".to_owned());
                let reply = ctx.client.reply::<admin::Audit>(&(), &query, &(), &[]).await?;
                print!("{}", reply.text);
                return Ok(());
            }
            let events: Doc<Vec<AuditView>> = ctx.client.items::<admin::Audit, _>(&(), &query).await?;
            emit(ctx.format, &events.raw, || {
                let rows: Vec<Vec<String>> = events
                    .view
                    .iter()
                    .map(|e| {
                        vec![
                            time(&e.at),
                            e.actor.clone(),
                            e.action.clone(),
                            e.resource.clone(),
                            e.outcome.clone(),
                            e.source.clone(),
                        ]
                    })
                    .collect();
                output::table(&["AT", "ACTOR", "ACTION", "RESOURCE", "OUTCOME", "SOURCE"], &rows);
            });
            Ok(())
        }
    }
}

/// Every command under `command` (itself included) with no description, and every argument with
/// no help text, each named by its command path (`basphere vm start`) and flag or `<VALUE>`.
#[cfg(test)]
pub(crate) fn undocumented(command: &clap::Command, parent: &str) -> Vec<String> {
    let blank = |text: Option<&clap::builder::StyledStr>| text.is_none_or(|text| text.to_string().trim().is_empty());
    let path = match parent {
        "" => command.get_name().to_owned(),
        parent => format!("{parent} {}", command.get_name()),
    };
    let mut found = Vec::new();
    if blank(command.get_about()) {
        found.push(format!("`{path}` has no description"));
    }
    for arg in command.get_arguments() {
        if blank(arg.get_help()) {
            let name = match arg.get_long() {
                Some(long) => format!("--{long}"),
                None => format!("<{}>", arg.get_id().as_str().to_uppercase()),
            };
            found.push(format!("`{path}` {name} has no help"));
        }
    }
    for subcommand in command.get_subcommands() {
        found.extend(undocumented(subcommand, &path));
    }
    found
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_command_and_argument_has_help_text() {
        let mut command = Cli::command();
        command.build();
        let found = undocumented(&command, "");
        assert!(found.is_empty(), "{} without help text:\n{}", found.len(), found.join("\n"));
    }

    #[test]
    fn a_command_or_argument_without_help_text_is_named_by_its_path() {
        let command = clap::Command::new("basphere").about("top").subcommand(
            clap::Command::new("vm")
                .about("VMs")
                .subcommand(clap::Command::new("start").arg(clap::Arg::new("name").help("The VM.")))
                .subcommand(clap::Command::new("stop").about("Stop a VM").arg(clap::Arg::new("name")))
                .subcommand(clap::Command::new("list").about("Your VMs").arg(clap::Arg::new("all").long("all"))),
        );
        assert_eq!(
            undocumented(&command, ""),
            [
                "`basphere vm start` has no description",
                "`basphere vm stop` <NAME> has no help",
                "`basphere vm list` --all has no help"
            ]
        );
    }
}
