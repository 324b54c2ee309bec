//! The simulated vCenter: the provisioner contract, and an inventory that survives reopening.

use std::io::Write;

use basphere_core::mock::MockDelays;
use basphere_core::provisioner::{PowerAction, PowerState, Provisioner};
use basphere_core::testing::{self, provisioner::request};
use basphere_core::Config;
use basphere_vsphere::simulated;

#[tokio::test]
async fn simulated_vsphere_passes_the_provisioner_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let vsphere =
        simulated::open(&dir.path().join("inventory.jsonl"), &Config::default(), MockDelays::default()).unwrap();
    testing::provisioner::check_all(&*vsphere).await;
}

#[tokio::test]
async fn simulated_vsphere_keeps_tenant_port_groups_on_the_configured_switch_across_reopening() {
    use basphere_core::provisioner::{PortGroupSpec, TenantPortGroups};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.jsonl");
    let config = Config::from_yaml(
        "networks: {mode: tenant, vlan_range: 2001-2999, distributed_switch: dvs-lab, wan_port_group: wan, \
         wan: {cidr: 192.0.2.0/24}}",
    )
    .unwrap();
    let vsphere = simulated::open(&path, &config, MockDelays::default()).unwrap();
    testing::provisioner::check_port_groups(&*vsphere, "dvs-lab").await;
    let spec = TenantPortGroups {
        tenant: testing::username("alice"),
        switch: "dvs-lab".into(),
        port_groups: vec![PortGroupSpec { name: "basphere-alice-lan1".into(), vlan: 2001 }],
    };
    vsphere.ensure_port_groups(&spec).await.unwrap();
    drop(vsphere);
    // A torn last line makes reopening rewrite the journal: the port group is written again.
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"change\":\"port_gr").unwrap();
    let reopened = simulated::open(&path, &config, MockDelays::default()).unwrap();
    let kept: Vec<(String, String, u16)> =
        reopened.port_groups().into_iter().map(|group| (group.name, group.switch, group.vlan)).collect();
    assert_eq!(kept, [("basphere-alice-lan1".into(), "dvs-lab".into(), 2001)]);
    // Without tenant mode there is no switch to make port groups on.
    let flat = simulated::open(&dir.path().join("flat.jsonl"), &Config::default(), MockDelays::default()).unwrap();
    assert_eq!(flat.ensure_port_groups(&spec).await.unwrap_err().kind(), "not-found");
}

#[tokio::test]
async fn the_inventory_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.jsonl");
    let config = Config::default();
    let web = request("alice", "web", [10, 254, 0, 33]);
    let db = request("alice", "db", [10, 254, 0, 34]);
    {
        let vsphere = simulated::open(&path, &config, MockDelays::default()).unwrap();
        vsphere.ensure_folder(&web.owner).await.unwrap();
        vsphere.create_vm(&web).await.unwrap();
        vsphere.create_vm(&db).await.unwrap();
        vsphere.power(&web.vm_ref(), PowerAction::Stop).await.unwrap();
        vsphere.destroy_vm(&db.vm_ref()).await.unwrap();
    }
    // A torn line at the end (a crash mid-write) is ignored.
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"change\":\"ups").unwrap();
    let reopened = simulated::open(&path, &config, MockDelays::default()).unwrap();
    assert_eq!(reopened.folders(), ["basphere-vms/alice"]);
    let vms = reopened.vms();
    assert_eq!(vms.len(), 1);
    assert_eq!(
        (vms[0].vsphere_name.as_str(), vms[0].power, vms[0].basphere_id),
        ("alice-web", PowerState::Off, Some(web.id))
    );
    // A retried create after the restart adopts the VM instead of duplicating it.
    let handle = reopened.create_vm(&web).await.unwrap();
    assert_eq!(handle.backend_id, vms[0].backend_id);
    // New VMs get fresh ids.
    let cache = request("alice", "cache", [10, 254, 0, 35]);
    let created = reopened.create_vm(&cache).await.unwrap();
    assert_ne!(created.backend_id, vms[0].backend_id);
}

/// A journal written when each VM kept Basphere's whole request opens with the VMs as they
/// were, and is rewritten once in the current form (the key and the catalog's names dropped),
/// also when its first VM is one Basphere did not clone.
#[test]
fn a_journal_of_the_earlier_form_is_read_and_rewritten_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.jsonl");
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKe7DQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABC test-900007";
    let earlier = format!(
        "{{\"change\":\"folder\",\"path\":\"basphere-vms/alice\"}}\n\
         {{\"change\":\"upsert\",\"vm\":{{\"backend_id\":\"vm-6\",\"vsphere_name\":\"alice-stray\",\"folder\":\"basphere-vms/alice\",\"basphere_id\":null,\"power\":\"on\",\"request\":null}}}}\n\
         {{\"change\":\"upsert\",\"vm\":{{\"backend_id\":\"vm-7\",\"vsphere_name\":\"alice-web\",\"folder\":\"basphere-vms/alice\",\"basphere_id\":\"01a23367-9726-77c8-82ff-73e88505a5ab\",\"power\":\"off\",\"request\":{{\"id\":\"01a23367-9726-77c8-82ff-73e88505a5ab\",\"owner\":\"alice\",\"name\":\"web\",\"os\":{{\"key\":\"ubuntu-24.04\",\"template\":\"ubuntu-noble-24.04-cloudimg\",\"description\":\"Ubuntu 24.04 LTS (Noble)\",\"interface\":\"ens192\"}},\"spec\":{{\"key\":\"tiny\",\"description\":\"tiny\",\"cpu\":2,\"memory_mb\":4096,\"disk_gb\":50}},\"network\":{{\"interface\":\"ens192\",\"address\":\"10.254.0.33\",\"prefix_len\":21,\"gateway\":\"10.254.0.1\",\"dns\":[\"8.8.8.8\"],\"mtu\":1500}},\"ssh_key\":\"{key}\"}}}}}}\n"
    );
    std::fs::write(&path, &earlier).unwrap();
    let opened = simulated::open(&path, &Config::default(), MockDelays::default()).unwrap();
    let vms = opened.vms();
    assert_eq!(vms.len(), 2);
    assert_eq!((vms[0].vsphere_name.as_str(), vms[0].clone.as_ref()), ("alice-stray", None));
    let clone = vms[1].clone.as_ref().expect("the clone read out of the request");
    assert_eq!((clone.template.as_str(), clone.cpu, clone.memory_mb), ("ubuntu-noble-24.04-cloudimg", 2, 4096));
    assert_eq!((clone.network.address, clone.ssh_key.as_str()), ([10, 254, 0, 33].into(), key));
    assert_eq!((vms[1].vsphere_name.as_str(), vms[1].power), ("alice-web", PowerState::Off));
    drop(opened);
    let rewritten = std::fs::read_to_string(&path).unwrap();
    assert!(!rewritten.contains("\"request\"") && !rewritten.contains("Noble"), "{rewritten}");
    assert!(rewritten.len() < earlier.len(), "{rewritten}");
    let reopened = simulated::open(&path, &Config::default(), MockDelays::default()).unwrap();
    assert_eq!(reopened.vms(), vms, "the rewritten journal reads back the same VMs");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), rewritten, "and is not rewritten again");
}

#[test]
fn a_corrupt_journal_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.jsonl");
    std::fs::write(&path, "not json\n{\"change\":\"folder\",\"path\":\"basphere-vms/a\"}\n").unwrap();
    let error = simulated::open(&path, &Config::default(), MockDelays::default()).err().unwrap().to_string();
    assert!(error.contains("line 1"), "{error}");
}

/// A process killed between writing a change and its line end left the change whole but
/// unterminated: it is kept, and what is appended after the restart starts on a line of its own.
#[tokio::test]
async fn a_change_without_its_line_end_is_kept_and_the_next_start_still_reads_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.jsonl");
    let config = Config::default();
    let web = request("alice", "web", [10, 254, 0, 33]);
    {
        let vsphere = simulated::open(&path, &config, MockDelays::default()).unwrap();
        vsphere.ensure_folder(&web.owner).await.unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.trim_end_matches('\n')).unwrap();
    {
        let reopened = simulated::open(&path, &config, MockDelays::default()).unwrap();
        assert_eq!(reopened.folders(), ["basphere-vms/alice"], "the unterminated change is kept");
        reopened.create_vm(&web).await.unwrap();
    }
    let again = simulated::open(&path, &config, MockDelays::default()).unwrap();
    assert_eq!(again.vms().len(), 1, "the change appended after the restart reads back");
}
