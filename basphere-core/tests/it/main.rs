//! basphere-core's integration tests: the conformance suites against the reference backends.

mod mock;

use std::sync::Arc;

use basphere_core::mock::{FaultInjectingProvisioner, MockProvisioner, RecordingNotifier};
use basphere_core::{testing, MemoryStore, Store};

#[test]
fn memory_store_passes_the_store_conformance_suite() {
    testing::store::check_all(&|| Arc::new(MemoryStore::new()) as Arc<dyn Store>);
}

#[tokio::test]
async fn mock_provisioner_passes_the_provisioner_conformance_suite() {
    testing::provisioner::check_all(&MockProvisioner::with_default_catalog()).await;
}

#[tokio::test]
async fn mock_provisioner_makes_tenant_port_groups_and_leaves_others_alone() {
    use basphere_core::mock::MockPortGroup;
    use basphere_core::provisioner::{PortGroupSpec, Provisioner, TenantPortGroups};
    let vsphere = MockProvisioner::with_default_catalog();
    testing::provisioner::check_port_groups(&vsphere, "dvs-tenants").await;
    assert!(vsphere.port_groups().is_empty(), "nothing left: {:?}", vsphere.port_groups());

    let spec = TenantPortGroups {
        tenant: testing::username("erin"),
        switch: "dvs-tenants".into(),
        port_groups: vec![
            PortGroupSpec { name: "basphere-erin-lan1".into(), vlan: 2101 },
            PortGroupSpec { name: "basphere-erin-lan2".into(), vlan: 2102 },
        ],
    };
    vsphere.ensure_port_groups(&spec).await.unwrap();
    let made: Vec<(String, u16, Option<String>)> =
        vsphere.port_groups().into_iter().map(|group| (group.name, group.vlan, group.description)).collect();
    let marker = Some("Basphere tenant network of erin".to_owned());
    assert_eq!(
        made,
        [("basphere-erin-lan1".into(), 2101, marker.clone()), ("basphere-erin-lan2".into(), 2102, marker.clone())]
    );
    // A port group of Basphere's with another VLAN id is put right; one of someone else's is
    // refused and left as it is, and so is everything else of the spec.
    let moved = TenantPortGroups {
        port_groups: vec![PortGroupSpec { name: "basphere-erin-lan1".into(), vlan: 2201 }],
        ..spec.clone()
    };
    vsphere.ensure_port_groups(&moved).await.unwrap();
    assert_eq!(vsphere.port_groups()[0].vlan, 2201);
    let foreign = MockPortGroup {
        name: "basphere-frank-lan1".into(),
        switch: "dvs-tenants".into(),
        vlan: 7,
        description: Some("the storage team's".into()),
    };
    vsphere.plant_port_group(foreign.clone());
    let frank = TenantPortGroups {
        tenant: testing::username("frank"),
        switch: "dvs-tenants".into(),
        port_groups: vec![
            PortGroupSpec { name: "basphere-frank-lan1".into(), vlan: 2301 },
            PortGroupSpec { name: "basphere-frank-lan2".into(), vlan: 2302 },
        ],
    };
    let refused = vsphere.ensure_port_groups(&frank).await.unwrap_err();
    assert_eq!(refused.kind(), "already-exists", "{refused}");
    assert!(refused.to_string().contains("basphere-frank-lan1"), "{refused}");
    vsphere.remove_port_groups(&frank).await.unwrap();
    let names: Vec<String> = vsphere.port_groups().into_iter().map(|group| group.name).collect();
    assert_eq!(names, ["basphere-erin-lan1", "basphere-erin-lan2", "basphere-frank-lan1"]);
    assert_eq!(vsphere.port_groups()[2], foreign, "someone else's port group is untouched");
    vsphere.remove_port_groups(&spec).await.unwrap();
    assert_eq!(vsphere.port_groups(), [foreign]);
}

#[tokio::test]
async fn fault_injecting_decorator_without_faults_passes_the_suite() {
    let inner = Arc::new(MockProvisioner::with_default_catalog());
    testing::provisioner::check_all(&FaultInjectingProvisioner::new(inner)).await;
}

#[tokio::test]
async fn recording_notifier_passes_the_notifier_conformance_suite() {
    let notifier = RecordingNotifier::new();
    testing::notifier::check_all(&notifier, &|| notifier.events()).await;
}

#[tokio::test]
async fn recording_router_passes_the_router_conformance_suite_and_refuses_what_no_router_could_make() {
    use basphere_core::mock::RecordingRouter;
    use basphere_core::router::TenantRouter;
    let router = RecordingRouter::new();
    testing::router::check_all(&router, ["192.0.2.11/24", "192.0.2.12/24", "192.0.2.13/24"]).await;

    let good = testing::router::spec("alpha", [3001, 3002], "192.0.2.21/24");
    router.ensure(&good).await.unwrap();
    let mut bad = testing::router::spec("beta", [3003, 3003], "192.0.2.22/24");
    assert_eq!(router.ensure(&bad).await.unwrap_err().kind(), "invalid-input", "a VLAN id used twice");
    bad = testing::router::spec("beta", [3003, 3004], "192.0.2.21/24");
    assert!(router.ensure(&bad).await.unwrap_err().to_string().contains("alpha"), "a WAN address in use");
    bad = testing::router::spec("beta", [3003, 3004], "192.0.2.22/24");
    bad.mtu = 100;
    assert!(router.ensure(&bad).await.unwrap_err().to_string().contains("MTU"));
    bad = testing::router::spec("beta", [3003, 3004], "192.0.2.22/24");
    bad.lans[1].gateway = "10.0.1.129/25".parse().unwrap();
    assert!(router.ensure(&bad).await.unwrap_err().to_string().contains("overlaps"));
    assert_eq!(router.tenants().len(), 1, "nothing refused was kept");
}
