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
