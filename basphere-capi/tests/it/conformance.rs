//! The `ClusterProvisioner` conformance suite against `CapiProvisioner` on the simulated
//! management cluster, in both contract versions, reached over HTTP through a kubeconfig as the
//! server reaches it.

use std::time::Duration;

use basphere_capi::client::VersionChoice;
use basphere_capi::fake::{FakeManagementCluster, Fault};
use basphere_capi::render::ApiVersion;
use basphere_core::testing::clusters::{check_all, Probes};
use basphere_core::validate::ResourceName;

use super::layout;

async fn conforms(choice: VersionChoice) {
    let fake = FakeManagementCluster::new(Duration::from_millis(60));
    fake.install_identity(&layout().identity);
    let (address, _running) = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let capi = fake.connect(address, &dir.path().join("kubeconfig"), layout(), choice).await.unwrap();
    let clusters = || fake.objects("clusters", None).len();
    let fail_next = |name: &ResourceName| {
        fake.inject(
            name.as_str(),
            Fault::Fail { reason: "CloningFailed".into(), message: "the template is not in vCenter".into() },
        )
    };
    check_all(&capi, Probes { clusters: &clusters, fail_next: &fail_next }, Duration::from_secs(30)).await;
    let objects: Vec<String> = ["clusters", "machines", "inclusterippools", "secrets", "vsphereclusters"]
        .iter()
        .flat_map(|plural| fake.objects(plural, None))
        .map(|o| format!("{} {}", o["kind"], o["metadata"]["name"]))
        .collect();
    assert!(objects.is_empty(), "the suite leaves nothing behind: {objects:?}");
}

#[tokio::test]
async fn capi_provisioner_conforms_in_v1beta2() {
    conforms(VersionChoice::Fixed(ApiVersion::V1beta2)).await;
}

#[tokio::test]
async fn capi_provisioner_conforms_in_v1beta1() {
    conforms(VersionChoice::Fixed(ApiVersion::V1beta1)).await;
}
