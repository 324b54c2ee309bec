//! Kubernetes clusters through the platform over every store, on basphere-capi's simulated
//! management cluster reached through the real client (`CapiProvisioner`, over a kubeconfig, as
//! the server reaches its embedded one): create, follow to ready, kubeconfig, scale both ways,
//! delete, with the address accounting exact at each step and what Basphere asked for read back
//! from the objects the management cluster holds; failures, stuck deletions, quotas and
//! concurrent requests.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use basphere_capi::fake::{FakeManagementCluster, Fault, Key, Running, Write};
use basphere_capi::{CapiConfig, VsphereSite};
use basphere_core::cluster_provisioner::ClusterProvisioner;
use basphere_core::mock::{MockProvisioner, RecordingNotifier};
use basphere_core::model::*;
use basphere_core::platform::CreateCluster;
use basphere_core::testing::{user, username};
use basphere_core::{Actor, Config, Platform, Store, StoreExt};
use serde_json::Value;
use tests::{block_ipam, Backend, BACKENDS};

const WAIT: Duration = Duration::from_secs(60);
/// Each condition of a simulated cluster turns true one step after the one before.
const STEP: Duration = Duration::from_millis(60);
/// alice's namespace on the management cluster.
const NAMESPACE: &str = "user-alice";

/// A simulated management cluster on loopback, as the server runs it by default. It outlives a
/// Basphere process: each platform gets its own client of it.
struct Management {
    fake: Arc<FakeManagementCluster>,
    address: SocketAddr,
    dir: tempfile::TempDir,
    _running: Running,
}

/// What the management cluster holds of one cluster, read back from its objects: what Basphere
/// asked for.
#[derive(Debug)]
struct Held {
    /// The VSphereCluster's control-plane endpoint.
    endpoint: Ipv4Addr,
    /// The InClusterIPPool's addresses, prefix and gateway.
    pool: BTreeSet<Ipv4Addr>,
    prefix: u64,
    gateway: Ipv4Addr,
    /// The login keys of the control-plane nodes and of the workers.
    keys: (Vec<String>, Vec<String>),
    /// The MachineDeployment's replicas, and its machine template's CPUs, memory and disk.
    workers: u64,
    worker_size: (u64, u64, u64),
}

impl Management {
    async fn start() -> Arc<Management> {
        let fake = FakeManagementCluster::new(STEP);
        let (address, running) = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        Arc::new(Management { fake, address, dir: tempfile::tempdir().unwrap(), _running: running })
    }

    /// A client, made as a Basphere process on `config` makes it at its start: connected, and
    /// its preflight run (which starts the watches that wake the platform on each change).
    async fn client(&self, config: &Config) -> Arc<dyn ClusterProvisioner> {
        let settings = CapiConfig::from_config(config, &VsphereSite::default()).unwrap();
        self.fake.install_identity(&settings.layout.identity);
        let path = self.dir.path().join("kubeconfig");
        let client = self.fake.connect(self.address, &path, settings.layout, settings.choice).await.unwrap();
        client.preflight().await.unwrap();
        Arc::new(client)
    }

    fn object(&self, plural: &str, name: &str) -> Value {
        self.fake
            .objects(plural, Some(NAMESPACE))
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("the management cluster holds no {plural} {name}"))
    }

    /// The Cluster objects, whoever made them.
    fn clusters(&self) -> Vec<Value> {
        self.fake.objects("clusters", None)
    }

    /// Every object labelled with Basphere's id of a cluster.
    fn objects_of(&self, id: uuid::Uuid) -> Vec<String> {
        let plurals = [
            "clusters",
            "machines",
            "machinedeployments",
            "kubeadmcontrolplanes",
            "kubeadmconfigtemplates",
            "vspheremachinetemplates",
            "vsphereclusters",
            "clusterresourcesets",
            "inclusterippools",
            "secrets",
        ];
        plurals
            .iter()
            .flat_map(|plural| self.fake.objects(plural, None))
            .filter(|o| o["metadata"]["labels"]["basphere.dev/cluster-id"] == id.to_string().as_str())
            .map(|o| format!("{} {}", o["kind"], o["metadata"]["name"]))
            .collect()
    }

    fn held(&self, name: &str) -> Held {
        let address = |value: &Value| -> Ipv4Addr { value.as_str().and_then(|a| a.parse().ok()).expect("an address") };
        let keys = |users: &Value| -> Vec<String> {
            users[0]["sshAuthorizedKeys"].as_array().into_iter().flatten().map(|k| k.as_str().unwrap().into()).collect()
        };
        let pool = self.object("inclusterippools", &format!("{name}-nodes"));
        let deployment = self.object("machinedeployments", &format!("{name}-md"));
        let template_name = deployment["spec"]["template"]["spec"]["infrastructureRef"]["name"].as_str().unwrap();
        let template = &self.object("vspheremachinetemplates", template_name)["spec"]["template"]["spec"];
        Held {
            endpoint: address(&self.object("vsphereclusters", name)["spec"]["controlPlaneEndpoint"]["host"]),
            pool: pool["spec"]["addresses"].as_array().unwrap().iter().map(address).collect(),
            prefix: pool["spec"]["prefix"].as_u64().unwrap(),
            gateway: address(&pool["spec"]["gateway"]),
            keys: (
                keys(&self.object("kubeadmcontrolplanes", name)["spec"]["kubeadmConfigSpec"]["users"]),
                keys(
                    &self.object("kubeadmconfigtemplates", &format!("{name}-md"))["spec"]["template"]["spec"]["users"],
                ),
            ),
            workers: deployment["spec"]["replicas"].as_u64().unwrap(),
            worker_size: (
                template["numCPUs"].as_u64().unwrap(),
                template["memoryMiB"].as_u64().unwrap(),
                template["diskGiB"].as_u64().unwrap(),
            ),
        }
    }

    /// Where the client asked for `write` of alice's Cluster `name` among everything it wrote.
    fn asked(&self, write: fn(Key) -> Write, name: &str) -> Option<usize> {
        let key: Key = ("cluster.x-k8s.io".into(), "clusters".into(), NAMESPACE.into(), name.into());
        self.fake.writes().iter().position(|w| *w == write(key.clone()))
    }
}

struct Rig {
    platform: Arc<Platform>,
    store: Arc<dyn Store>,
    management: Arc<Management>,
    notifier: Arc<RecordingNotifier>,
    _background: basphere_core::platform::Background,
}

async fn rig_with(store: Arc<dyn Store>, yaml: &str) -> Rig {
    rig_on(store, Management::start().await, yaml).await
}

/// A platform on `store` and the management cluster `management` (which outlives a Basphere
/// process).
async fn rig_on(store: Arc<dyn Store>, management: Arc<Management>, yaml: &str) -> Rig {
    let config = Arc::new(Config::from_yaml(yaml).unwrap());
    let notifier = Arc::new(RecordingNotifier::new());
    let clusters = management.client(&config).await;
    let platform = Platform::builder(
        config.clone(),
        store.clone(),
        block_ipam(config.pools.clone()),
        Arc::new(MockProvisioner::with_default_catalog()),
        notifier.clone(),
    )
    .clusters(clusters)
    .build();
    let _background = platform.start_background();
    Rig { platform, store, management, notifier, _background }
}

async fn rig(backend: Backend, dir: &std::path::Path) -> Rig {
    rig_with(backend.open(dir), "work: {notification_retry_seconds: 1}\nkubernetes: {delete_timeout_minutes: 0.05}")
        .await
}

fn alice() -> Actor {
    Actor::user(&username("alice"), "test")
}

fn dev(name: &str) -> CreateCluster {
    CreateCluster { name: name.into(), cluster_type: "dev".into(), worker_spec: None, workers: None }
}

impl Rig {
    async fn account(&self, name: &str, seed: u64) {
        self.platform.accounts().provision(&basphere_core::Actor::system(), user(name, seed)).await.unwrap();
    }

    async fn create(&self, request: CreateCluster) -> (Cluster, Operation) {
        let (cluster, operation, replayed) =
            self.platform.clusters().create(&alice(), &username("alice"), request, None).await.unwrap();
        assert!(!replayed);
        (cluster, operation)
    }

    async fn wait(&self, operation: &Operation) -> Operation {
        self.platform.runtime().wait_operation(operation.id, WAIT).await.unwrap()
    }

    /// Waits until the cluster reaches `state`, following it as `basphere cluster watch` does.
    async fn until(&self, name: &str, state: ClusterState) -> Cluster {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut since = None;
        loop {
            let cluster = self
                .platform
                .clusters()
                .watch(&alice(), &username("alice"), name, since, Duration::from_secs(2))
                .await
                .unwrap();
            if cluster.state == state {
                return cluster;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} never became {state}: {cluster:?}");
            since = Some(cluster.updated_at);
        }
    }

    fn leases(&self, cluster: &Cluster) -> Vec<Lease> {
        self.store.query(|tx| tx.leases_of_resource(cluster.id)).unwrap()
    }

    /// Waits until a notification like `wanted` was delivered.
    async fn event(&self, wanted: impl Fn(&NotificationEvent) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.notifier.events().iter().any(&wanted) {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", self.notifier.events());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn all_leases(&self) -> usize {
        self.store.query(|tx| tx.list_leases(None)).unwrap().len()
    }
}

fn nodes(leases: &[Lease]) -> BTreeSet<Ipv4Addr> {
    leases.iter().filter(|l| l.resource.kind == ResourceKind::ClusterNode).map(|l| l.address).collect()
}

#[tokio::test]
async fn cluster_journey_on_every_store() {
    let dir = tempfile::tempdir().unwrap();
    for backend in BACKENDS {
        let rig = rig(backend, dir.path()).await;
        rig.account("alice", 1).await;
        let (cluster, operation) = rig.create(dev("dev")).await;
        assert_eq!(cluster.state, ClusterState::Pending);
        assert_eq!((cluster.control_plane_count, cluster.worker_count), (1, 2));
        let vip = cluster.control_plane_endpoint.expect("a VIP at once");
        let leases = rig.leases(&cluster);
        // The VIP, one address per node and two for the rollout surge.
        assert_eq!(leases.len(), 1 + 3 + 2, "{backend:?}: {leases:?}");
        assert!(!nodes(&leases).contains(&vip), "the VIP is never a node address");
        assert_eq!(leases.iter().filter(|l| l.resource.kind == ResourceKind::ClusterEndpoint).count(), 1);

        let done = rig.wait(&operation).await;
        assert_eq!(done.state, OperationState::Succeeded, "{backend:?}: {done:?}");
        let sent = rig.management.held("dev");
        assert_eq!(sent.endpoint, vip, "{sent:?}");
        assert_eq!(sent.pool, nodes(&leases), "the pool holds the node addresses Basphere leased");
        assert_eq!((sent.prefix, sent.gateway), (21, Ipv4Addr::new(10, 254, 0, 1)));
        let key = user("alice", 1).ssh_key.as_str().to_owned();
        assert_eq!(sent.keys, (vec![key.clone()], vec![key]), "the owner's key on the nodes");
        let medium = &Config::default().node_specs["medium"];
        assert_eq!(sent.worker_size, (4, medium.memory_mb, medium.disk_gb), "medium workers");
        assert_eq!(sent.workers, 2);

        let ready = rig.until("dev", ClusterState::Ready).await;
        assert_eq!((ready.status.control_plane_ready, ready.status.workers_ready), (1, 2));
        assert!(ready.status.conditions.iter().any(|c| c.kind == "Available" && c.is_true()), "{ready:?}");
        assert!(rig.leases(&ready).iter().all(|l| l.state == LeaseState::Active));
        let kubeconfig = rig.platform.clusters().kubeconfig(&alice(), &username("alice"), "dev").await.unwrap();
        assert!(kubeconfig.contains(&format!("server: https://{vip}:6443")), "{kubeconfig}");

        let report = rig.platform.accounts().quota(&alice(), &username("alice")).await.unwrap();
        assert_eq!((report.usage.clusters, report.usage.ips, report.usage.vcpus), (1, 6, 12), "{backend:?}");

        // Grow to 4 workers: two more addresses before the machines.
        let scale = rig.platform.clusters().scale(&alice(), &username("alice"), "dev", 4).await.unwrap();
        assert_eq!(rig.leases(&ready).len(), 1 + 5 + 2, "{backend:?}: leased in the request");
        assert_eq!(rig.wait(&scale).await.state, OperationState::Succeeded);
        let grown = rig.until("dev", ClusterState::Ready).await;
        let sent = rig.management.held("dev");
        assert_eq!((sent.pool.len(), sent.workers), (7, 4), "{sent:?}");
        assert_eq!(grown.worker_count, 4);

        // Shrink to 1: the pool shrinks only once the machines are gone, keeping theirs.
        let scale = rig.platform.clusters().scale(&alice(), &username("alice"), "dev", 1).await.unwrap();
        let done = rig.wait(&scale).await;
        assert_eq!(done.state, OperationState::Succeeded, "{backend:?}: {done:?}");
        let leases = rig.leases(&grown);
        assert_eq!(leases.len(), 1 + 2 + 2, "{backend:?}: {leases:?}");
        let sent = rig.management.held("dev");
        assert_eq!(sent.pool, nodes(&leases), "the pool is exactly what Basphere holds");
        assert_eq!(sent.workers, 1);
        let report = rig.platform.accounts().quota(&alice(), &username("alice")).await.unwrap();
        assert_eq!((report.usage.ips, report.usage.vcpus), (5, 8));

        let delete = rig.platform.clusters().delete(&alice(), &username("alice"), "dev").await.unwrap();
        let error = rig.platform.clusters().delete(&alice(), &username("alice"), "dev").await.unwrap_err();
        assert_eq!(error.kind(), "conflict");
        assert_eq!(rig.wait(&delete).await.state, OperationState::Succeeded);
        assert!(rig.management.clusters().is_empty(), "gone from the management cluster");
        let left = rig.management.objects_of(cluster.id);
        assert!(left.is_empty(), "{backend:?}: nothing of it is left on the management cluster: {left:?}");
        assert_eq!(rig.all_leases(), 0, "{backend:?}: every address freed after Cluster API finished");
        let error = rig.platform.clusters().get(&alice(), &username("alice"), "dev").await.unwrap_err();
        assert_eq!(error.kind(), "not-found");
        let writes = rig.management.fake.writes();
        assert!(matches!(writes.first(), Some(Write::Apply(_))), "the first write applies: {writes:?}");
        let (applied, deleted) =
            (rig.management.asked(Write::Apply, "dev"), rig.management.asked(Write::Delete, "dev"));
        assert!(applied.is_some() && applied < deleted, "the Cluster applied, then deleted: {writes:?}");
        rig.event(|e| matches!(e, NotificationEvent::ClusterReady { name, .. } if name.as_str() == "dev")).await;
    }
}

#[tokio::test]
async fn a_failed_or_stalled_cluster_shows_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(Backend::SqliteFile, dir.path()).await;
    rig.account("alice", 1).await;
    rig.management.fake.inject(
        "broken",
        Fault::Fail { reason: "CloningFailed".into(), message: "template ubuntu-k8s not found".into() },
    );
    let (cluster, operation) = rig.create(dev("broken")).await;
    rig.wait(&operation).await;
    let failed = rig.until("broken", ClusterState::Failed).await;
    let reason = failed.reason.clone().unwrap();
    assert!(reason.contains("CloningFailed") && reason.contains("template ubuntu-k8s not found"), "{reason}");
    rig.event(|e| matches!(e, NotificationEvent::ClusterFailed { reason, .. } if reason.contains("CloningFailed")))
        .await;
    assert_eq!(rig.leases(&cluster).len(), 6, "a failed cluster keeps its addresses until deleted");
    let error = rig.platform.clusters().kubeconfig(&alice(), &username("alice"), "broken").await.unwrap_err();
    assert_eq!(error.kind(), "conflict");
    assert!(error.to_string().contains("basphere cluster watch broken"), "{error}");
    let delete = rig.platform.clusters().delete(&alice(), &username("alice"), "broken").await.unwrap();
    assert_eq!(rig.wait(&delete).await.state, OperationState::Succeeded);
    assert_eq!(rig.all_leases(), 0);

    // A stalled cluster says what it waits for.
    rig.management.fake.inject(
        "stalled",
        Fault::Stall { reason: "WaitingForIPAddress".into(), message: "no free address in pool stalled".into() },
    );
    let (_, operation) = rig.create(dev("stalled")).await;
    rig.wait(&operation).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let cluster = rig.platform.clusters().get(&alice(), &username("alice"), "stalled").await.unwrap();
        if cluster.reason.as_deref().is_some_and(|r| r.contains("WaitingForIPAddress")) {
            assert_eq!(cluster.state, ClusterState::Provisioning);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{cluster:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stuck_deletion_is_reported_with_what_to_do_and_keeps_the_addresses() {
    let dir = tempfile::tempdir().unwrap();
    // A deletion may wait three seconds; the simulated finalizer never goes.
    let rig = rig(Backend::SqliteMemory, dir.path()).await;
    rig.account("alice", 1).await;
    rig.management.fake.inject(
        "vanished",
        Fault::StuckDelete { message: "VSphereVM vanished-x is gone from vCenter; remove its finalizer".into() },
    );
    let (cluster, operation) = rig.create(dev("vanished")).await;
    rig.wait(&operation).await;
    rig.until("vanished", ClusterState::Ready).await;
    let delete = rig.platform.clusters().delete(&alice(), &username("alice"), "vanished").await.unwrap();
    let done = rig.platform.runtime().wait_operation(delete.id, WAIT).await.unwrap();
    assert_eq!(done.state, OperationState::Failed, "{done:?}");
    let stuck = rig.platform.clusters().get(&alice(), &username("alice"), "vanished").await.unwrap();
    assert_eq!(stuck.state, ClusterState::Failed);
    let reason = stuck.reason.unwrap();
    assert!(reason.contains("deletion is stuck") && reason.contains("remove its finalizer"), "{reason}");
    assert_eq!(rig.leases(&cluster).len(), 6, "the addresses stay reserved while anything may remain");
}

#[tokio::test]
async fn cluster_quotas_hold_under_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "cluster_quotas: {default: {max_clusters: 2, max_nodes_per_cluster: 6}}";
    let rig = rig_with(Backend::SqliteFile.open(dir.path()), yaml).await;
    rig.account("alice", 1).await;

    let too_big = CreateCluster { workers: Some(6), ..dev("huge") };
    let error = rig.platform.clusters().create(&alice(), &username("alice"), too_big, None).await.unwrap_err();
    assert_eq!(error.kind(), "quota-exceeded");
    assert!(error.to_string().contains("nodes_per_cluster"), "{error}");

    let bad = CreateCluster { cluster_type: "huge".into(), ..dev("x") };
    let error = rig.platform.clusters().create(&alice(), &username("alice"), bad, None).await.unwrap_err();
    assert!(error.to_string().contains("dev, standard"), "{error}");
    let none = CreateCluster { workers: Some(0), ..dev("none") };
    let error = rig.platform.clusters().create(&alice(), &username("alice"), none, None).await.unwrap_err();
    assert_eq!(error.kind(), "invalid-input");
    assert!(error.to_string().contains("workers") && error.to_string().contains("1-100"), "{error}");
    let spec = CreateCluster { worker_spec: Some("giant".into()), ..dev("x") };
    let error = rig.platform.clusters().create(&alice(), &username("alice"), spec, None).await.unwrap_err();
    assert!(error.to_string().contains("worker_spec") && error.to_string().contains("large"), "{error}");
    assert_eq!(rig.all_leases(), 0, "a refused request leases nothing and records nothing");
    assert!(rig.store.query(|tx| tx.list_clusters(&Default::default())).unwrap().is_empty());
    let roadmap = CreateCluster { cluster_type: "production".into(), ..dev("prod") };
    let (prod, create_prod, _) =
        rig.platform.clusters().create(&alice(), &username("alice"), roadmap, None).await.unwrap();
    assert_eq!((prod.cluster_type.as_str(), prod.control_plane_count, prod.worker_count), ("standard", 3, 3));

    // Eight at once for one remaining slot: exactly one is accepted.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let platform = rig.platform.clone();
        tasks.push(tokio::spawn(async move {
            platform.clusters().create(&alice(), &username("alice"), dev(&format!("c{i}")), None).await
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(error) => assert_eq!(error.kind(), "quota-exceeded", "{error}"),
        }
    }
    assert_eq!(accepted, 1);
    let clusters = rig.store.query(|tx| tx.usage(&username("alice"))).unwrap().clusters;
    assert_eq!(clusters, 2);
    // standard: VIP + 6 nodes + 2; dev: VIP + 3 + 2.
    assert_eq!(rig.all_leases(), 9 + 6);

    let error = rig.platform.clusters().create(&alice(), &username("alice"), dev("prod"), None).await.unwrap_err();
    assert!(matches!(error.kind(), "already-exists" | "quota-exceeded"), "{error}");
    // Once prod's creation has run, its scale requests are judged on their own.
    assert_eq!(rig.wait(&create_prod).await.state, OperationState::Succeeded);
    let error = rig.platform.clusters().scale(&alice(), &username("alice"), "prod", 3).await.unwrap_err();
    assert_eq!(error.kind(), "conflict", "already that size: {error}");
    let error = rig.platform.clusters().scale(&alice(), &username("alice"), "nothing", 3).await.unwrap_err();
    assert_eq!(error.kind(), "not-found");
    assert_eq!(rig.all_leases(), 9 + 6, "nothing leased by the refusals");
    // Scaling is held to the quota too, and bob cannot touch alice's clusters.
    let error = rig.platform.clusters().scale(&alice(), &username("alice"), "prod", 4).await.unwrap_err();
    assert_eq!(error.kind(), "quota-exceeded", "{error}");
    let bob = Actor::user(&username("bob"), "test");
    rig.account("bob", 2).await;
    let error = rig.platform.clusters().delete(&bob, &username("alice"), "prod").await.unwrap_err();
    assert_eq!(error.kind(), "not-found");
    let error = rig.platform.clusters().kubeconfig(&bob, &username("alice"), "prod").await.unwrap_err();
    assert_eq!(error.kind(), "not-found");
}

#[tokio::test]
async fn a_cluster_operation_left_by_a_stopped_process_is_run_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = Backend::SqliteFile.open(dir.path());
    let management = Management::start().await;
    let yaml = "work: {lease_seconds: 1}";
    let first = rig_on(store.clone(), management.clone(), yaml).await;
    first.account("alice", 1).await;
    let (cluster, operation) = first.create(dev("dev")).await;
    first.wait(&operation).await;
    first.until("dev", ClusterState::Ready).await;
    // The process stops taking work; a deletion is recorded but nobody runs it here.
    first.platform.runtime().drain(Duration::from_millis(0)).await;
    let delete = first.platform.clusters().delete(&alice(), &username("alice"), "dev").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.query(|tx| tx.get_operation(delete.id)).unwrap().unwrap().state, OperationState::Queued);
    let held = management.clusters();
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(held[0]["metadata"]["deletionTimestamp"].is_null(), "nothing deleted yet: {:?}", held[0]["metadata"]);
    drop(first);

    let second = rig_on(store.clone(), management.clone(), yaml).await;
    let done = second.platform.runtime().wait_operation(delete.id, WAIT).await.unwrap();
    assert_eq!(done.state, OperationState::Succeeded, "{done:?}");
    assert_eq!(store.query(|tx| tx.get_cluster(cluster.id)).unwrap().unwrap().state, ClusterState::Deleted);
    assert!(management.clusters().is_empty(), "{:?}", management.clusters());
    assert!(
        management.asked(Write::Delete, "dev").is_some(),
        "deleted through its Cluster: {:?}",
        management.fake.writes()
    );
    assert_eq!(second.all_leases(), 0);
}

#[tokio::test]
async fn purging_an_account_deletes_its_clusters_through_cluster_api_first() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(Backend::SqliteFile, dir.path()).await;
    rig.account("alice", 1).await;
    let (_, operation) = rig.create(dev("dev")).await;
    rig.wait(&operation).await;
    rig.until("dev", ClusterState::Ready).await;
    let (_, operation) = rig.create(CreateCluster { cluster_type: "standard".into(), ..dev("prod") }).await;
    rig.wait(&operation).await;
    assert_eq!(rig.all_leases(), 6 + 9);

    let admin = Actor::admin("root", "test");
    let purge = rig.platform.accounts().purge(&admin, "alice").await.unwrap();
    let done = rig.wait(&purge).await;
    assert_eq!(done.state, OperationState::Succeeded, "{done:?}");
    assert!(done.log_tail.iter().any(|l| l.contains("deleted the cluster dev")), "{:?}", done.log_tail);
    assert!(rig.management.clusters().is_empty(), "both clusters are gone from the management cluster");
    assert_eq!(rig.all_leases(), 0);
    assert!(rig.store.query(|tx| tx.get_user(&username("alice"))).unwrap().is_none());
    let deleted = [rig.management.asked(Write::Delete, "dev"), rig.management.asked(Write::Delete, "prod")];
    assert!(deleted.iter().all(Option::is_some), "through Cluster API: {:?}", rig.management.fake.writes());
}
