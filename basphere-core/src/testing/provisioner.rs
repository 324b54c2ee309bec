//! The `Provisioner` conformance suite.

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::{ssh_key, username};
use crate::config::Config;
use crate::provisioner::*;
use crate::validate::ResourceName;

/// A request for VM `name` of `owner`, with the default catalog's first OS and smallest spec.
pub fn request(owner: &str, name: &str, address: [u8; 4]) -> VmRequest {
    let config = Config::default();
    let os = config.os_images["ubuntu-24.04"].clone();
    VmRequest {
        id: Uuid::now_v7(),
        owner: username(owner),
        name: ResourceName::parse(name).expect("valid"),
        network: GuestNetwork {
            interface: os.interface.clone(),
            address: Ipv4Addr::from(address),
            prefix_len: 21,
            gateway: Ipv4Addr::new(10, 254, 0, 1),
            dns: vec![Ipv4Addr::new(8, 8, 8, 8)],
            mtu: 1500,
        },
        os,
        spec: config.vm_specs["tiny"].clone(),
        ssh_key: ssh_key(7),
    }
}

/// Runs every check. The provisioner must start with an empty inventory under its base folder.
pub async fn check_all(provisioner: &dyn Provisioner) {
    check_lifecycle(provisioner).await;
    check_idempotent_create_and_destroy(provisioner).await;
    check_missing_vm(provisioner).await;
}

fn find<'a>(inventory: &'a [InventoryVm], name: &str) -> Option<&'a InventoryVm> {
    inventory.iter().find(|vm| vm.vsphere_name == name)
}

pub async fn check_lifecycle(provisioner: &dyn Provisioner) {
    provisioner.preflight().await.expect("preflight");
    let request = request("alice", "web", [10, 254, 0, 33]);
    provisioner.ensure_folder(&request.owner).await.expect("folder");
    provisioner.ensure_folder(&request.owner).await.expect("ensure_folder is idempotent");
    let handle = provisioner.create_vm(&request).await.expect("create");
    assert_eq!(handle.power, PowerState::On, "a created VM is powered on");
    let inventory = provisioner.inventory().await.unwrap();
    let seen = find(&inventory, "alice-web").expect("named <owner>-<name>");
    assert_eq!(seen.basphere_id, Some(request.id), "carries Basphere's marker");
    assert_eq!(seen.backend_id, handle.backend_id);
    assert!(seen.folder.ends_with("/alice"), "in the owner's folder: {}", seen.folder);

    let vm = VmRef { backend_id: Some(handle.backend_id.clone()), ..request.vm_ref() };
    assert_eq!(provisioner.power(&vm, PowerAction::Stop).await.unwrap(), PowerState::Off);
    assert_eq!(
        provisioner.power(&vm, PowerAction::Stop).await.unwrap(),
        PowerState::Off,
        "stopping a stopped VM succeeds"
    );
    match provisioner.power(&vm, PowerAction::Reboot).await {
        Err(error) => assert_eq!(error.kind(), "conflict", "{error}"),
        Ok(state) => panic!("rebooting a stopped VM must be refused, got {state:?}"),
    }
    assert_eq!(provisioner.power(&vm, PowerAction::Start).await.unwrap(), PowerState::On);
    assert_eq!(provisioner.power(&vm, PowerAction::Reboot).await.unwrap(), PowerState::On);
    assert_eq!(find(&provisioner.inventory().await.unwrap(), "alice-web").unwrap().power, PowerState::On);

    provisioner.destroy_vm(&vm).await.expect("destroy");
    assert!(find(&provisioner.inventory().await.unwrap(), "alice-web").is_none(), "a destroyed VM is gone");
}

pub async fn check_idempotent_create_and_destroy(provisioner: &dyn Provisioner) {
    let request = request("bob", "db", [10, 254, 0, 65]);
    provisioner.ensure_folder(&request.owner).await.unwrap();
    let first = provisioner.create_vm(&request).await.unwrap();
    let retried = provisioner.create_vm(&request).await.expect("a retried create adopts the VM");
    assert_eq!(retried.backend_id, first.backend_id);
    let copies = provisioner.inventory().await.unwrap().into_iter().filter(|vm| vm.vsphere_name == "bob-db").count();
    assert_eq!(copies, 1, "no duplicate VM");

    let mut other = request.clone();
    other.id = Uuid::now_v7();
    match provisioner.create_vm(&other).await {
        Err(error) => assert_eq!(error.kind(), "already-exists", "{error}"),
        Ok(handle) => {
            panic!("a VM of the same name without our marker must not be adopted: {handle:?}")
        }
    }
    provisioner.destroy_vm(&request.vm_ref()).await.unwrap();
    provisioner.destroy_vm(&request.vm_ref()).await.expect("destroying a VM that is gone succeeds");
}

pub async fn check_missing_vm(provisioner: &dyn Provisioner) {
    let ghost = request("carol", "ghost", [10, 254, 0, 97]).vm_ref();
    match provisioner.power(&ghost, PowerAction::Start).await {
        Err(error) => assert_eq!(error.kind(), "not-found", "{error}"),
        Ok(state) => panic!("power on a missing VM must be NotFound, got {state:?}"),
    }
}
