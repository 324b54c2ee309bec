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
