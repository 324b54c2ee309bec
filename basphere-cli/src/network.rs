//! `basphere network show` (the caller's tenant network) and `basphere admin network ...` (every
//! account's: list, show, create, delete).

use basphere_api::endpoints::{admin, networks, UsernamePath};
use basphere_api::{NetworkListQuery, NetworkView};
use clap::Subcommand;

use crate::client::Doc;
use crate::context::{started, Ctx, WaitArgs};
use crate::exit::CliError;
use crate::output::{self, emit, note, or_dash, time};

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Your tenant network: its LANs' VLAN ids, subnets and gateways, its MTU, the router's WAN
    /// address and what the router holds now.
    Show,
}

#[derive(Subcommand)]
pub enum AdminNetworkCommand {
    /// Every account's tenant network (without asking the routers).
    List {
        /// Only networks in this state: pending, ready, failed or deleting; deleted lists the
        /// deleted ones.
        #[arg(long)]
        state: Option<String>,
    },
    /// One account's tenant network, with what its router holds now.
    Show {
        /// The account's username.
        username: String,
    },
    /// Make an account's tenant network (an account approved before tenant mode), or make again
    /// one whose making failed.
    Create {
        /// The account's username.
        username: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete an account's tenant network: its router is removed, its VLAN ids and WAN address
    /// freed. Refused while the account has VMs or clusters.
    Delete {
        /// The account's username.
        username: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

fn user(username: &str) -> UsernamePath {
    UsernamePath { username: username.to_owned() }
}

pub async fn run(command: NetworkCommand, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        NetworkCommand::Show => {
            let network = ctx.client.call::<networks::Get>(&(), &(), &()).await?;
            emit(ctx.format, &network.raw, || detail(&network.view));
            Ok(())
        }
    }
}

pub async fn admin(command: AdminNetworkCommand, ctx: &Ctx) -> Result<(), CliError> {
    match command {
        AdminNetworkCommand::List { state } => {
            let query = NetworkListQuery { state, ..Default::default() };
            let networks: Doc<Vec<NetworkView>> = ctx.client.all_pages::<admin::ListNetworks, _>(&(), &query).await?;
            emit(ctx.format, &networks.raw, || table(&networks.view));
            Ok(())
        }
        AdminNetworkCommand::Show { username } => {
            let network = ctx.client.call::<admin::GetNetwork>(&user(&username), &(), &()).await?;
            emit(ctx.format, &network.raw, || detail(&network.view));
            Ok(())
        }
        AdminNetworkCommand::Create { username, wait } => {
            let operation = ctx.client.call::<admin::CreateNetwork>(&user(&username), &(), &()).await?;
            started(ctx, std::slice::from_ref(&operation.view), &wait, &operation.raw).await
        }
        AdminNetworkCommand::Delete { username, wait } => {
            let question = format!("Delete the tenant network of {username}? Its router is removed");
            if !ctx.confirm(&question)? {
                note("Cancelled.");
                return Ok(());
            }
            let operation = ctx.client.call::<admin::DeleteNetwork>(&user(&username), &(), &()).await?;
            started(ctx, std::slice::from_ref(&operation.view), &wait, &operation.raw).await
        }
    }
}

/// The router's WAN address with the WAN's prefix when known: `192.0.2.2/24`.
fn wan(network: &NetworkView) -> String {
    match network.wan_prefix {
        Some(prefix) => format!("{}/{prefix}", network.wan_address),
        None => network.wan_address.to_string(),
    }
}

/// The VLAN ids, in the LANs' order: `2001, 2002`.
fn vlans(network: &NetworkView) -> String {
    network.lans.iter().map(|lan| lan.vlan.to_string()).collect::<Vec<_>>().join(", ")
}

pub fn rows(networks: &[NetworkView]) -> Vec<Vec<String>> {
    networks
        .iter()
        .map(|n| vec![n.owner.clone(), n.state.clone(), vlans(n), wan(n), n.mtu.to_string(), time(&n.created_at)])
        .collect()
}

fn table(networks: &[NetworkView]) {
    output::table_or(
        "No tenant networks.",
        &["OWNER", "STATE", "VLANS", "WAN ADDRESS", "MTU", "CREATED"],
        &rows(networks),
    );
}

fn detail(n: &NetworkView) {
    let router = match &n.router {
        Some(router) => format!("{} ({})", router.state, router.backend),
        None => "-".to_owned(),
    };
    let mut fields = vec![
        ("Owner", n.owner.clone()),
        ("State", n.state.clone()),
        ("Reason", or_dash(n.reason.as_deref())),
        ("VLANs", vlans(n)),
        ("MTU", n.mtu.to_string()),
        ("WAN address", wan(n)),
        ("Router", router),
    ];
    if let Some(detail) = n.router.as_ref().and_then(|router| router.detail.clone()) {
        fields.push(("Router detail", detail));
    }
    fields.push(("Created", time(&n.created_at)));
    output::fields(&fields);
    println!();
    let lans: Vec<Vec<String>> = n
        .lans
        .iter()
        .map(|lan| vec![lan.name.clone(), lan.vlan.to_string(), lan.cidr.clone(), lan.gateway.to_string()])
        .collect();
    output::table(&["LAN", "VLAN", "SUBNET", "GATEWAY"], &lans);
}
