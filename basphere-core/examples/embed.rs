//! Basphere embedded as a library: the platform composed in a program of its own, with the
//! same use cases the server calls, and no server.
//!
//! An administrator creates an account; the account's developer creates a VM, waits for its
//! operation and lists their VMs. The store is in memory and the VM backend is the simulated
//! vCenter; a program of its own would use `basphere_store::SqliteStore` (or the PostgreSQL
//! store) and a real backend from `basphere-vsphere` in their place, unchanged otherwise.
//!
//! Run it with `cargo run -p basphere-core --example embed`; `cargo test` runs it too.

use std::sync::Arc;
use std::time::Duration;

use basphere_core::mock::MockProvisioner;
use basphere_core::model::OperationState;
use basphere_core::notifier::LogNotifier;
use basphere_core::platform::{CreateVms, NewAccount, VmQuery};
use basphere_core::{Actor, Config, MemoryStore, Platform};
use basphere_ipam::BlockIpam;

/// A developer's public key, as they would paste it.
const ALICE_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKe7DQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABC alice@laptop";

/// What the program saw: the VMs listed at the end, as `name address state` lines.
async fn run() -> Result<Vec<String>, Box<dyn std::error::Error>> {
    // The configuration a server would read from basphere.yaml; every key has a default.
    let config = Arc::new(Config::from_yaml("network: {cidr: 10.20.0.0/22, gateway: 10.20.0.1}")?);
    let platform = Platform::new(
        config.clone(),
        Arc::new(MemoryStore::new()),
        Arc::new(BlockIpam::new(config.pools.clone())?),
        Arc::new(MockProvisioner::with_default_catalog()),
        Arc::new(LogNotifier),
    );
    // The sweeper and the outbox dispatcher, as the server runs them; dropped at the end.
    let _duties = platform.start_background();

    // Identities are the embedding program's to establish, as the server does from the
    // kernel's peer credentials or a token: here an administrator, then the new account.
    let admin = Actor::admin("ops", "embed-example");
    let account = NewAccount {
        username: "alice".into(),
        email: "alice@example.com".into(),
        team: "platform".into(),
        ssh_key: ALICE_KEY.into(),
        ..NewAccount::default()
    };
    let alice = platform.accounts().create(&admin, account).await?;
    let developer = Actor::user(&alice.username, "embed-example");

    // Validated, checked against the quota, given an address and recorded in one transaction;
    // the simulated vCenter then builds it in the background.
    let request = CreateVms { name: "web".into(), os: "ubuntu-24.04".into(), spec: "small".into(), count: 1 };
    let created = platform.vms().create(&developer, &alice.username, request, None).await?;
    for accepted in &created.accepted {
        let done = platform.runtime().wait_operation(accepted.operation.id, Duration::from_secs(30)).await?;
        if done.state != OperationState::Succeeded {
            return Err(format!("creating {} ended {}: {:?}", accepted.vm.name, done.state, done.error).into());
        }
    }

    // Another developer's VMs are not theirs to list: the same authorization as the API's.
    let listed = platform.vms().list(&developer, Some(&alice.username), VmQuery::default()).await?;
    Ok(listed
        .items
        .iter()
        .map(|vm| format!("{} {} {}", vm.name, vm.ip.map_or("-".into(), |ip| ip.to_string()), vm.state))
        .collect())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    for line in run().await? {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_example_creates_and_lists_a_vm() {
        let listed = super::run().await.expect("the example runs");
        assert_eq!(listed.len(), 1, "{listed:?}");
        let fields: Vec<&str> = listed[0].split(' ').collect();
        assert_eq!(fields[0], "web");
        let address: std::net::Ipv4Addr = fields[1].parse().expect("an address from the pool");
        assert!(u32::from(address) >> 10 == u32::from(std::net::Ipv4Addr::new(10, 20, 0, 0)) >> 10, "{address}");
        assert_eq!(fields[2], basphere_core::model::VmState::Running.to_string());
    }
}
