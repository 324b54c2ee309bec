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
            port_group: None,
        },
        os,
        spec: config.vm_specs["tiny"].clone(),
        ssh_key: ssh_key(7),
    }
}

/// What a backend can do beyond creating and destroying. A backend without a capability must
/// answer `NotSupported`, which the suite checks instead of skipping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub power: bool,
    pub inventory: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities { power: true, inventory: true };
}

/// Runs every check. The provisioner must start with an empty inventory under its base folder.
pub async fn check_all(provisioner: &dyn Provisioner) {
    check_all_with(provisioner, Capabilities::ALL).await;
}

/// Runs every check for a backend with the given capabilities.
pub async fn check_all_with(provisioner: &dyn Provisioner, capabilities: Capabilities) {
    check_lifecycle(provisioner, capabilities).await;
    check_idempotent_create_and_destroy(provisioner, capabilities).await;
    check_missing_vm(provisioner, capabilities).await;
}

fn assert_not_supported<T: std::fmt::Debug>(result: crate::Result<T>, what: &str) {
    match result {
        Err(error) => assert_eq!(error.kind(), "not-supported", "{what}: {error}"),
        Ok(value) => panic!("{what}: a backend without this capability must say NotSupported, got {value:?}"),
    }
}

fn find<'a>(inventory: &'a [InventoryVm], name: &str) -> Option<&'a InventoryVm> {
    inventory.iter().find(|vm| vm.vsphere_name == name)
}

pub async fn check_lifecycle(provisioner: &dyn Provisioner, capabilities: Capabilities) {
    provisioner.preflight().await.expect("preflight");
    let request = request("alice", "web", [10, 254, 0, 33]);
    provisioner.ensure_folder(&request.owner).await.expect("folder");
    provisioner.ensure_folder(&request.owner).await.expect("ensure_folder is idempotent");
    let handle = provisioner.create_vm(&request).await.expect("create");
    assert_eq!(handle.power, PowerState::On, "a created VM is powered on");
    assert!(!handle.backend_id.is_empty(), "the backend names its VM");
    if capabilities.inventory {
        let inventory = provisioner.inventory().await.unwrap();
        let seen = find(&inventory, "alice-web").expect("named <owner>-<name>");
        assert_eq!(seen.basphere_id, Some(request.id), "carries Basphere's marker");
        assert_eq!(seen.backend_id, handle.backend_id);
        assert!(seen.folder.ends_with("/alice"), "in the owner's folder: {}", seen.folder);
    } else {
        assert_not_supported(provisioner.inventory().await, "inventory");
    }

    let vm = VmRef { backend_id: Some(handle.backend_id.clone()), ..request.vm_ref() };
    if !capabilities.power {
        assert_not_supported(provisioner.power(&vm, PowerAction::Stop).await, "power");
        provisioner.destroy_vm(&vm).await.expect("destroy");
        return;
    }
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
    if capabilities.inventory {
        assert!(find(&provisioner.inventory().await.unwrap(), "alice-web").is_none(), "a destroyed VM is gone");
    }
}

pub async fn check_idempotent_create_and_destroy(provisioner: &dyn Provisioner, capabilities: Capabilities) {
    let request = request("bob", "db", [10, 254, 0, 65]);
    provisioner.ensure_folder(&request.owner).await.unwrap();
    let first = provisioner.create_vm(&request).await.unwrap();
    let retried = provisioner.create_vm(&request).await.expect("a retried create adopts the VM");
    assert_eq!(retried.backend_id, first.backend_id);
    if capabilities.inventory {
        let copies =
            provisioner.inventory().await.unwrap().into_iter().filter(|vm| vm.vsphere_name == "bob-db").count();
        assert_eq!(copies, 1, "no duplicate VM");
    }

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

pub async fn check_missing_vm(provisioner: &dyn Provisioner, capabilities: Capabilities) {
    let ghost = request("carol", "ghost", [10, 254, 0, 97]).vm_ref();
    provisioner.destroy_vm(&ghost).await.expect("destroying a VM that never existed succeeds");
    if !capabilities.power {
        assert_not_supported(provisioner.power(&ghost, PowerAction::Start).await, "power");
        return;
    }
    match provisioner.power(&ghost, PowerAction::Start).await {
        Err(error) => assert_eq!(error.kind(), "not-found", "{error}"),
        Ok(state) => panic!("power on a missing VM must be NotFound, got {state:?}"),
    }
}

/// The tenant port groups' contract, for a backend that makes them, on its distributed switch
/// `switch`: made twice with one result, a VM cloned onto one, a clone onto a missing one
/// refused as `NotFound`, a missing switch `NotFound`, removal repeatable. The caller then
/// checks in the backend itself that nothing of `tenant`'s is left.
pub async fn check_port_groups(provisioner: &dyn Provisioner, switch: &str) {
    let spec = TenantPortGroups {
        tenant: username("dave"),
        switch: switch.to_owned(),
        port_groups: vec![
            PortGroupSpec { name: "basphere-dave-lan1".into(), vlan: 2001 },
            PortGroupSpec { name: "basphere-dave-lan2".into(), vlan: 2002 },
        ],
    };
    provisioner.ensure_port_groups(&spec).await.expect("port groups");
    provisioner.ensure_port_groups(&spec).await.expect("ensure_port_groups is idempotent");

    let mut request = request("dave", "app", [10, 0, 1, 10]);
    request.network.port_group = Some("basphere-dave-lan1".into());
    request.network.gateway = Ipv4Addr::new(10, 0, 1, 1);
    request.network.prefix_len = 24;
    request.network.mtu = 1450;
    provisioner.ensure_folder(&request.owner).await.unwrap();
    provisioner.create_vm(&request).await.expect("a VM on a tenant LAN's port group");
    provisioner.destroy_vm(&request.vm_ref()).await.unwrap();

    let mut astray = self::request("dave", "astray", [10, 0, 1, 11]);
    astray.network.port_group = Some("basphere-nobody-lan1".into());
    match provisioner.create_vm(&astray).await {
        Err(error) => assert_eq!(error.kind(), "not-found", "{error}"),
        Ok(handle) => panic!("a clone onto a missing port group must be NotFound, got {handle:?}"),
    }
    let elsewhere = TenantPortGroups { switch: "no-such-switch".into(), ..spec.clone() };
    match provisioner.ensure_port_groups(&elsewhere).await {
        Err(error) => assert_eq!(error.kind(), "not-found", "{error}"),
        Ok(()) => panic!("port groups on a missing switch must be NotFound"),
    }

    provisioner.remove_port_groups(&spec).await.expect("remove");
    provisioner.remove_port_groups(&spec).await.expect("removing port groups that are gone succeeds");
}
