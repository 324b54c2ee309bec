//! `basphere demo`: the platform composed in-process, walking a newcomer through the main job.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use basphere_core::mock::{LogNotifier, MockDelays, MockProvisioner};
use basphere_core::model::{now, Role, User, UserStatus, Vm};
use basphere_core::platform::CreateVms;
use basphere_core::store::VmFilter;
use basphere_core::validate::{Email, ResourceName, SshPublicKey, Username};
use basphere_core::{Actor, Config, Platform, StoreExt};
use basphere_ipam::BlockIpam;
use basphere_store::SqliteStore;

/// A real ed25519 public key for the demo developer (its private half is not kept anywhere).
const DEMO_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINOsBuCWIqqi1bMQf0RdFALW/q6vpEatzSoEZgCYvLNu alice@laptop";

pub async fn run(data_dir: &Path, realistic: bool) -> Result<()> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let db = data_dir.join("basphere.db");
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_file(data_dir.join("basphere.db-wal"));
    let _ = std::fs::remove_file(data_dir.join("basphere.db-shm"));
    let config = Arc::new(Config::default());
    let store = Arc::new(SqliteStore::open(&db).context("opening the demo database")?);
    let ipam = Arc::new(BlockIpam::new(config.pools.clone())?);
    let templates: Vec<String> = config.os_images.values().map(|os| os.template.clone()).collect();
    let delays = if realistic { MockDelays::realistic() } else { MockDelays::default() };
    let vsphere = Arc::new(MockProvisioner::new(&config.vsphere.folder, templates).with_delays(delays));
    let platform = Platform::new(config.clone(), store.clone(), ipam, vsphere.clone(), Arc::new(LogNotifier));

    step("Basphere on embedded defaults");
    println!("  store      SQLite at {} (WAL, synchronous=FULL)", db.display());
    println!(
        "  backend    simulated vSphere (folder {}, templates {})",
        config.vsphere.folder,
        config.os_images.values().map(|o| o.template.as_str()).collect::<Vec<_>>().join(", ")
    );
    println!(
        "  network    pool {} (gateway {}), blocks of {}",
        config.pools[0].cidr, config.pools[0].gateway, config.pools[0].block_size
    );

    step("Accounts: an administrator approves a developer");
    let at = now();
    let admin = User {
        username: Username::parse("ops-admin")?,
        email: Email::parse("ops@example.com")?,
        team: "infrastructure".into(),
        ssh_key: SshPublicKey::parse(include_str!("../../basphere-core/testdata/ssh/ecdsa-256.pub"))?,
        role: Role::Admin,
        status: UserStatus::Active,
        uid: None,
        created_at: at,
        updated_at: at,
    };
    let alice = User {
        username: Username::parse("alice")?,
        email: Email::parse("alice@example.com")?,
        team: "payments".into(),
        ssh_key: SshPublicKey::parse(DEMO_KEY)?,
        role: Role::User,
        ..admin.clone()
    };
    platform.provision_account(admin.clone()).await?;
    let alice = platform.provision_account(alice).await?;
    let block = store.query(|tx| tx.blocks_of(&alice.username))?;
    println!("  {} (admin) and {} (developer, key {})", admin.username, alice.username, alice.ssh_key.fingerprint());
    println!(
        "  {}'s IP block: {} - {}; vSphere folder {}/{}",
        alice.username,
        block[0].start,
        block[0].end(),
        config.vsphere.folder,
        alice.username
    );

    step("alice creates 3 VMs: create-vm -n web -o ubuntu-24.04 -s small -c 3");
    let actor = Actor::user(&alice.username, "demo");
    let accepted = platform
        .create_vms(
            &actor,
            &alice.username,
            CreateVms { name: "web".into(), os: "ubuntu-24.04".into(), spec: "small".into(), count: 3 },
            None,
        )
        .await?
        .accepted;
    for item in &accepted {
        println!(
            "  accepted {} -> {} (operation {})",
            item.vm.name,
            item.vm.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            item.operation.id
        );
    }
    for item in &accepted {
        let done = platform.wait_operation(item.operation.id, Duration::from_secs(60)).await?;
        println!("  {} {}: {}", item.vm.name, done.state, done.log_tail.join("; "));
    }

    step("alice lists her VMs: list-vms");
    print_vms(
        &store.query(|tx| tx.list_vms(&VmFilter { owner: Some(alice.username.clone()), ..VmFilter::default() }))?,
    );

    step("alice checks her quota: show-quota");
    let report = platform.quota(&alice.username).await?;
    let (q, u) = (report.quota, report.usage);
    println!("  VMs     {:>3} / {}", u.vms, q.max_vms);
    println!("  IPs     {:>3} / {}", u.ips, q.max_ips);
    println!("  vCPUs   {:>3} / {}", u.vcpus, q.max_vcpus);
    println!("  memory  {:>3} / {} GB", u.memory_mb / 1024, q.max_memory_mb / 1024);

    step("alice tries to exceed her quota: create-vm -n big -s small -c 10");
    match platform
        .create_vms(
            &actor,
            &alice.username,
            CreateVms { name: "big".into(), os: "ubuntu-24.04".into(), spec: "small".into(), count: 10 },
            None,
        )
        .await
    {
        Err(error) => println!("  refused: {error}"),
        Ok(_) => anyhow::bail!("the quota should have refused this request"),
    }

    step("alice deletes web-2: delete-vm web-2");
    let operation = platform.delete_vm(&actor, &alice.username, &ResourceName::parse("web-2")?).await?;
    let done = platform.wait_operation(operation.id, Duration::from_secs(60)).await?;
    println!("  delete {}: the VM is gone from vSphere and its address is free again", done.state);
    print_vms(
        &store.query(|tx| tx.list_vms(&VmFilter { owner: Some(alice.username.clone()), ..VmFilter::default() }))?,
    );
    println!(
        "  simulated vSphere now holds: {}",
        vsphere.vms().iter().map(|vm| vm.vsphere_name.as_str()).collect::<Vec<_>>().join(", ")
    );

    step("Done");
    println!("  The database stays in {} for inspection (sqlite3 {}).", data_dir.display(), db.display());
    Ok(())
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn print_vms(vms: &[Vm]) {
    println!("  {:<12} {:<16} {:<14} {:<8} STATE", "NAME", "IP", "OS", "SPEC");
    for vm in vms {
        println!(
            "  {:<12} {:<16} {:<14} {:<8} {}",
            vm.name,
            vm.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into()),
            vm.os,
            vm.spec,
            vm.state
        );
    }
}
