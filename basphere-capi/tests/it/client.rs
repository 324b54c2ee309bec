//! The kube client against the simulated management cluster, reached over HTTP through a
//! kubeconfig like a real one: preflight, apply, watch, kubeconfig, scale and delete.

use std::sync::Arc;
use std::time::Duration;

use basphere_capi::client::{identity, CapiProvisioner, VersionChoice};
use basphere_capi::fake::{FakeManagementCluster, Fault, Running};
use basphere_capi::render::{ApiVersion, ApiVersions};
use basphere_core::cluster_provisioner::{
    ClusterHealth, ClusterObservation, ClusterProvisioner, ClusterRequest, Removal,
};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};

use super::{layout, request};

const WAIT: Duration = Duration::from_secs(30);

struct Site {
    fake: Arc<FakeManagementCluster>,
    capi: CapiProvisioner,
    _running: Running,
    _dir: tempfile::TempDir,
}

async fn site_with(prepare: impl FnOnce(&FakeManagementCluster), choice: VersionChoice, with_identity: bool) -> Site {
    let fake = FakeManagementCluster::new(Duration::from_millis(60));
    prepare(&fake);
    let (address, running) = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, fake.kubeconfig(address)).unwrap();
    if with_identity {
        // What an administrator does once: the identity, applied as CAPV's CRD wants it.
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&path).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let gvk = GroupVersionKind::gvk("infrastructure.cluster.x-k8s.io", "v1beta1", "VSphereClusterIdentity");
        let api: Api<DynamicObject> =
            Api::all_with(client, &ApiResource::from_gvk_with_plural(&gvk, "vsphereclusteridentities"));
        let object = identity(&layout(), ApiVersion::V1beta1, "basphere-vcenter");
        api.patch("basphere-vsphere", &PatchParams::apply("admin"), &Patch::Apply(&object)).await.unwrap();
    }
    let capi = CapiProvisioner::connect(&path, layout(), choice).await.unwrap();
    Site { fake, capi, _running: running, _dir: dir }
}

async fn site() -> Site {
    site_with(|_| {}, VersionChoice::Auto, true).await
}

impl Site {
    /// Follows the cluster until `done` says so, as the platform does: woken by the watches.
    async fn until(&self, request: &ClusterRequest, done: impl Fn(&ClusterObservation) -> bool) -> ClusterObservation {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(seen) = self.capi.observe(&request.cluster_ref()).await.unwrap() {
                if done(&seen) {
                    return seen;
                }
                assert!(tokio::time::Instant::now() < deadline, "{seen:?}");
            }
            assert!(tokio::time::Instant::now() < deadline, "never observed");
            self.capi.changed(Duration::from_millis(500)).await;
        }
    }

    fn labelled(&self, request: &ClusterRequest) -> usize {
        let id = request.id.to_string();
        [
            "clusters",
            "inclusterippools",
            "clusterresourcesets",
            "vspheremachinetemplates",
            "kubeadmconfigtemplates",
            "kubeadmcontrolplanes",
            "machinedeployments",
            "vsphereclusters",
            "secrets",
            "machines",
        ]
        .iter()
        .flat_map(|plural| self.fake.objects(plural, Some("user-alice")))
        .filter(|o| o["metadata"]["labels"]["basphere.dev/cluster-id"] == id.as_str())
        .count()
    }
}

#[tokio::test]
async fn a_cluster_is_applied_followed_to_ready_scaled_and_deleted() {
    let site = site().await;
    site.capi.preflight().await.unwrap();
    assert_eq!(
        site.capi.versions().await.unwrap(),
        ApiVersions { cluster_api: ApiVersion::V1beta2, vsphere: ApiVersion::V1beta2, pool_reuse_grace: true }
    );
    let mut request = request(1, 2, "small");
    site.capi.apply(&request).await.unwrap();
    let namespace = &site.fake.objects("namespaces", None)[0];
    assert_eq!(namespace["metadata"]["labels"]["basphere.dev/owner"], "alice");
    let cluster = &site.fake.objects("clusters", Some("user-alice"))[0];
    assert_eq!(cluster["metadata"]["managedFields"][0]["manager"], "basphere");
    assert_eq!(site.fake.requests().forced, 0, "Basphere never forces ownership");

    let ready = site.until(&request, |o| o.health == ClusterHealth::Ready).await;
    assert_eq!((ready.control_plane_ready, ready.workers_ready, ready.worker_machines), (1, 2, 2));
    assert_eq!(ready.addresses_in_use.len(), 3);
    assert!(ready.addresses_in_use.iter().all(|a| request.node_addresses.contains(a)));
    assert!(!ready.addresses_in_use.contains(&request.endpoint));
    let kubeconfig = site.capi.kubeconfig(&request.cluster_ref()).await.unwrap().unwrap();
    assert!(kubeconfig.contains("server: https://10.254.0.40:6443"), "{kubeconfig}");

    // Observing is served from the watches' caches: no calls to the management cluster.
    let before = site.fake.requests();
    for _ in 0..100 {
        site.capi.observe(&request.cluster_ref()).await.unwrap().unwrap();
    }
    assert_eq!(site.fake.requests().calls(), before.calls());

    // Grow: the pool first, then the workers.
    request.worker_count = 4;
    request.node_addresses.extend([std::net::Ipv4Addr::new(10, 254, 0, 46), std::net::Ipv4Addr::new(10, 254, 0, 47)]);
    site.capi.apply(&request).await.unwrap();
    let grown = site.until(&request, |o| o.health == ClusterHealth::Ready && o.workers_ready == 4).await;
    assert_eq!(grown.addresses_in_use.len(), 5);

    // Shrink: the workers first; a pool that drops a held address is refused.
    request.worker_count = 1;
    site.capi.apply(&request).await.unwrap();
    let shrunk = site.until(&request, |o| o.worker_machines <= 1 && o.health == ClusterHealth::Ready).await;
    let held = shrunk.addresses_in_use.clone();
    assert_eq!(held.len(), 2);
    let mut wrong = request.clone();
    wrong.node_addresses = request.node_addresses.iter().filter(|a| !held.contains(a)).copied().collect();
    wrong.node_addresses.truncate(5);
    let error = site.capi.apply(&wrong).await.unwrap_err();
    assert!(error.to_string().contains("allocated"), "{error}");
    let mut keep: Vec<_> = held.clone();
    for address in &request.node_addresses {
        if keep.len() < 5 && !keep.contains(address) {
            keep.push(*address);
        }
    }
    request.node_addresses = keep;
    site.capi.apply(&request).await.unwrap();

    // Delete: through the Cluster, then what Cluster API does not own.
    let mut waited = 0;
    loop {
        match site.capi.delete(&request.cluster_ref()).await.unwrap() {
            Removal::Gone => break,
            Removal::Waiting(message) => {
                assert!(!message.is_empty());
                waited += 1;
                assert!(waited < 200, "{message}");
                site.capi.changed(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(waited > 0, "the deletion took Cluster API some time");
    assert_eq!(site.labelled(&request), 0, "nothing of the cluster is left");
    assert!(site.fake.allocated("user-alice", "dev-nodes").is_empty());
    assert!(site.capi.observe(&request.cluster_ref()).await.unwrap().is_none());
}

#[tokio::test]
async fn failures_and_stalls_reach_the_observation() {
    let site = site().await;
    site.fake.inject("dev", Fault::Fail { reason: "CloningFailed".into(), message: "template not found".into() });
    let request = request(1, 2, "small");
    site.capi.apply(&request).await.unwrap();
    let failed = site.until(&request, |o| o.health == ClusterHealth::Failed).await;
    assert!(failed.reason.as_deref().unwrap().contains("CloningFailed: template not found"), "{failed:?}");

    let site = site_with(|_| {}, VersionChoice::Fixed(ApiVersion::V1beta1), true).await;
    site.fake.inject("dev", Fault::Stall { reason: "WaitingForIPAddress".into(), message: "no address".into() });
    site.capi.apply(&request).await.unwrap();
    let stalled =
        site.until(&request, |o| o.reason.as_deref().is_some_and(|r| r.contains("WaitingForIPAddress"))).await;
    assert_eq!(stalled.health, ClusterHealth::Progressing);
    assert_eq!(site.fake.objects("clusters", Some("user-alice"))[0]["apiVersion"], "cluster.x-k8s.io/v1beta1");
}

#[tokio::test]
async fn the_preflight_chooses_versions_per_provider_and_names_what_is_missing() {
    // Cluster API at v1beta2 while CAPV still serves v1beta1 only.
    let site =
        site_with(|f| f.hide_version("infrastructure.cluster.x-k8s.io", "v1beta2"), VersionChoice::Auto, true).await;
    let versions = site.capi.versions().await.unwrap();
    assert_eq!((versions.cluster_api, versions.vsphere), (ApiVersion::V1beta2, ApiVersion::V1beta1));
    let request = request(1, 2, "medium");
    site.capi.apply(&request).await.unwrap();
    site.until(&request, |o| o.health == ClusterHealth::Ready).await;
    let template = &site.fake.objects("vspheremachinetemplates", Some("user-alice"))[0];
    assert_eq!(template["apiVersion"], "infrastructure.cluster.x-k8s.io/v1beta1");

    // An older in-cluster IPAM provider: the grace period is left out.
    let site = site_with(|f| f.without_pool_reuse_grace(), VersionChoice::Auto, true).await;
    assert!(!site.capi.versions().await.unwrap().pool_reuse_grace);
    site.capi.apply(&request).await.unwrap();

    let site = site_with(|f| f.hide_version("ipam.cluster.x-k8s.io", "v1alpha2"), VersionChoice::Auto, true).await;
    let error = site.capi.preflight().await.unwrap_err().to_string();
    assert!(error.contains("ipam.cluster.x-k8s.io/v1alpha2"), "{error}");

    let site = site_with(|_| {}, VersionChoice::Auto, false).await;
    let error = site.capi.preflight().await.unwrap_err().to_string();
    assert!(error.contains("management_cluster.identity") && error.contains("basphere-vsphere"), "{error}");

    let site = site_with(
        |f| {
            f.hide_version("cluster.x-k8s.io", "v1beta1");
            f.hide_version("controlplane.cluster.x-k8s.io", "v1beta1");
        },
        VersionChoice::Fixed(ApiVersion::V1beta1),
        true,
    )
    .await;
    let error = site.capi.preflight().await.unwrap_err().to_string();
    assert!(error.contains("v1beta1") && error.contains("controlplane.cluster.x-k8s.io"), "{error}");
}

#[tokio::test]
async fn a_cluster_of_the_same_name_made_by_someone_else_is_never_touched() {
    let site = site().await;
    let request = request(1, 2, "small");
    site.capi.apply(&request).await.unwrap();
    let mut other = request.clone();
    other.id = "0196f1a2-0000-7000-8000-0000000000ff".parse().unwrap();
    let error = site.capi.apply(&other).await.unwrap_err();
    assert_eq!(error.kind(), "already-exists");
    assert_eq!(site.capi.delete(&other.cluster_ref()).await.unwrap(), Removal::Gone, "nothing of its own to delete");
    assert_eq!(site.fake.objects("clusters", Some("user-alice")).len(), 1, "the other cluster stays");
}

#[tokio::test]
async fn callers_waiting_at_once_for_the_first_listing_all_get_their_answer() {
    let site = site().await;
    let request = request(1, 2, "small");
    site.capi.apply(&request).await.unwrap();
    // The first observers arrive together: none may be left waiting for a wake-up that went to
    // another.
    let capi = Arc::new(site.capi);
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let capi = capi.clone();
            let cluster = request.cluster_ref();
            tokio::spawn(async move { capi.kubeconfig(&cluster).await })
        })
        .collect();
    for waiter in waiters {
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("answered at once").unwrap().unwrap();
    }
}

#[tokio::test]
async fn names_cluster_api_refuses_are_refused_and_the_longest_accepted_name_comes_up() {
    use basphere_core::validate::{ResourceName, CLUSTER_NAME_MAX_LEN};
    let site = site().await;
    // A name Basphere no longer takes for a cluster: its MachineDeployment, `<name>-md`, has 64
    // characters, and Cluster API's webhook refuses names that are not label values.
    let mut refused = request(1, 1, "small");
    refused.name = ResourceName::parse(&"a".repeat(61)).unwrap();
    assert!(ResourceName::cluster(refused.name.as_str()).is_err());
    let error = site.capi.apply(&refused).await.unwrap_err().to_string();
    assert!(
        error.contains("MachineDeployment")
            && error.contains("must be a valid label value")
            && error.contains("no more than 63 characters"),
        "{error}"
    );
    assert!(site.fake.objects("machinedeployments", None).is_empty());

    let mut longest = request(1, 1, "small");
    longest.id = "0196f1a2-0000-7000-8000-0000000000aa".parse().unwrap();
    longest.name = ResourceName::cluster(&format!("dev-{}", "a".repeat(CLUSTER_NAME_MAX_LEN - 4))).unwrap();
    site.capi.apply(&longest).await.unwrap();
    let ready = site.until(&longest, |o| o.health == ClusterHealth::Ready).await;
    assert_eq!((ready.control_plane_ready, ready.workers_ready), (1, 1));
}

/// Every Cluster and Machine the simulated controller writes, status and all, checked against
/// the CRD of its version: what real Cluster API writes must be what the simulator writes.
fn check_written(schemas: &basphere_capi::schema::Schemas, event: &basphere_capi::fake::Event, seen: &mut Vec<String>) {
    if event.group != "cluster.x-k8s.io" || !matches!(event.plural.as_str(), "clusters" | "machines") {
        return;
    }
    let object = &event.object;
    let what = format!("{} {} {}", object["apiVersion"], object["kind"], object["metadata"]["name"]);
    let errors = schemas.errors(object).unwrap();
    assert!(errors.is_empty(), "{what}: {errors:#?}\n{object:#}");
    let status = &object["status"];
    let v1beta1 = object["apiVersion"].as_str().unwrap().ends_with("v1beta1");
    let newer = if v1beta1 { &status["v1beta2"]["conditions"] } else { &status["conditions"] };
    for condition in newer.as_array().into_iter().flatten() {
        // metav1.Condition: the reason and the message are always there.
        assert!(condition["reason"].as_str().is_some_and(|r| !r.is_empty()), "{what}: {condition}");
        assert!(condition["message"].is_string(), "{what}: {condition}");
        let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
        seen.push(format!(
            "{} {}={} {}",
            text(&object["kind"]),
            text(&condition["type"]),
            text(&condition["status"]),
            text(&condition["reason"])
        ));
    }
}

#[tokio::test]
async fn what_the_simulated_controller_writes_validates_against_the_crds_in_both_contracts() {
    let schemas = basphere_capi::schema::Schemas::load();
    for version in [ApiVersion::V1beta1, ApiVersion::V1beta2] {
        let site = site_with(|_| {}, VersionChoice::Fixed(version), true).await;
        let mut changes = site.fake.changes();
        let mut request = request(1, 2, "small");
        site.capi.apply(&request).await.unwrap();
        let progressing =
            site.until(&request, |o| o.health == ClusterHealth::Progressing && !o.conditions.is_empty()).await;
        for condition in &progressing.conditions {
            let needed = version == ApiVersion::V1beta2 || condition.status != "True";
            assert!(!needed || condition.reason.is_some(), "{version:?}: a condition without a reason: {condition:?}");
        }
        site.until(&request, |o| o.health == ClusterHealth::Ready).await;
        request.worker_count = 1;
        site.capi.apply(&request).await.unwrap();
        site.until(&request, |o| o.health == ClusterHealth::Ready && o.worker_machines == 1).await;
        // A failing one and a stalled one.
        site.fake.inject("broken", Fault::Fail { reason: "CloningFailed".into(), message: "no template".into() });
        let mut broken = request.clone();
        broken.id = "0196f1a2-0000-7000-8000-0000000000bb".parse().unwrap();
        broken.name = basphere_core::validate::ResourceName::cluster("broken").unwrap();
        site.capi.apply(&broken).await.unwrap();
        let failed = site.until(&broken, |o| o.health == ClusterHealth::Failed).await;
        assert!(failed.reason.as_deref().unwrap().contains("CloningFailed: no template"), "{failed:?}");
        let mut waits = 0;
        while let Removal::Waiting(message) = site.capi.delete(&request.cluster_ref()).await.unwrap() {
            waits += 1;
            assert!(waits < 200, "{message}");
            site.capi.changed(Duration::from_millis(100)).await;
        }

        let mut seen = Vec::new();
        let mut checked = 0;
        loop {
            match changes.try_recv() {
                Ok(event) => {
                    check_written(&schemas, &event, &mut seen);
                    checked += 1;
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(missed)) => panic!("{missed} changes missed"),
                Err(_) => break,
            }
        }
        assert!(checked > 10, "{checked} changes");
        for expected in [
            "Cluster Available=True Available",
            "Cluster Available=False NotAvailable",
            "Cluster InfrastructureReady=False NotReady",
            "Cluster ControlPlaneInitialized=True Initialized",
            "Cluster WorkersAvailable=True Available",
            "Cluster Deleting=False NotDeleting",
            "Cluster Deleting=True WaitingForWorkersDeletion",
            "Machine Ready=True Ready",
            "Machine Ready=False NotReady",
            "Machine InfrastructureReady=False CloningFailed",
        ] {
            assert!(seen.iter().any(|s| s == expected), "{version:?}: never wrote {expected}: {seen:#?}");
        }
    }
}

/// A simulated management cluster kept in `journal`, and a client of it.
async fn start_with_journal(
    step: Duration,
    journal: &std::path::Path,
) -> (Arc<FakeManagementCluster>, CapiProvisioner, Running) {
    let fake = FakeManagementCluster::with_journal(step, journal.to_path_buf()).unwrap();
    fake.install_identity("basphere-vsphere");
    let (address, running) = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let path = journal.with_file_name(format!("kubeconfig-{}", address.port()));
    std::fs::write(&path, fake.kubeconfig(address)).unwrap();
    let capi = CapiProvisioner::connect(&path, layout(), VersionChoice::Auto).await.unwrap();
    (fake, capi, running)
}

#[tokio::test]
async fn a_restarted_simulated_controller_does_not_set_a_ready_cluster_back() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.json");
    let step = Duration::from_millis(60);
    let request = request(1, 2, "small");
    let (fake, capi, running) = start_with_journal(step, &journal).await;
    capi.apply(&request).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while capi.observe(&request.cluster_ref()).await.unwrap().is_none_or(|o| o.health != ClusterHealth::Ready) {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        capi.changed(Duration::from_millis(200)).await;
    }
    drop((capi, running, fake));

    // The same objects, a new controller: for many steps, nothing goes back.
    let (fake, capi, _running) = start_with_journal(step, &journal).await;
    let mut changes = fake.changes();
    tokio::time::sleep(step * 10).await;
    loop {
        match changes.try_recv() {
            Ok(event) if event.plural == "machines" => {
                assert!(event.object["status"]["nodeRef"].is_object(), "a machine lost its node: {}", event.object)
            }
            Ok(event) if event.plural == "clusters" => {
                let conditions = event.object["status"]["conditions"].as_array().unwrap();
                assert!(conditions.iter().all(|c| c["status"] == "True" || c["type"] == "Deleting"), "{conditions:#?}");
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let seen = capi.observe(&request.cluster_ref()).await.unwrap();
    assert!(seen.as_ref().is_none_or(|o| o.health == ClusterHealth::Ready), "{seen:?}");
}
