//! Kubernetes clusters through the platform over every store, on the simulated management
//! cluster: create, follow to ready, kubeconfig, scale both ways, delete, with the address
//! accounting exact at each step; failures, stuck deletions, quotas and concurrent requests.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use basphere_core::mock::{ClusterFault, MockProvisioner, RecordingNotifier, SimulatedClusters};
use basphere_core::model::*;
use basphere_core::platform::CreateCluster;
use basphere_core::testing::{user, username};
use basphere_core::{Actor, Config, Platform, Store, StoreExt};
use tests::{block_ipam, Backend, BACKENDS};

const WAIT: Duration = Duration::from_secs(60);

struct Rig {
    platform: Arc<Platform>,
    store: Arc<dyn Store>,
    sim: Arc<SimulatedClusters>,
    notifier: Arc<RecordingNotifier>,
    _background: basphere_core::platform::Background,
}

fn rig_with(store: Arc<dyn Store>, yaml: &str) -> Rig {
    rig_on(store, Arc::new(SimulatedClusters::new(Duration::from_millis(60))), yaml)
}

/// A platform on `store` and the management cluster `sim` (which outlives a Basphere process).
fn rig_on(store: Arc<dyn Store>, sim: Arc<SimulatedClusters>, yaml: &str) -> Rig {
    let config = Arc::new(Config::from_yaml(yaml).unwrap());
    let notifier = Arc::new(RecordingNotifier::new());
    let platform = Platform::builder(
        config.clone(),
        store.clone(),
        block_ipam(config.pools.clone()),
        Arc::new(MockProvisioner::with_default_catalog()),
        notifier.clone(),
    )
    .clusters(sim.clone())
    .build();
    let _background = platform.start_background();
    Rig { platform, store, sim, notifier, _background }
}

fn rig(backend: Backend, dir: &std::path::Path) -> Rig {
    rig_with(backend.open(dir), "work: {notification_retry_seconds: 1}\nkubernetes: {delete_timeout_minutes: 0.05}")
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
        let rig = rig(backend, dir.path());
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
        let sent = &rig.sim.clusters()[0].request;
        assert_eq!(sent.endpoint, vip);
        assert_eq!(sent.node_addresses.iter().copied().collect::<BTreeSet<_>>(), nodes(&leases));
        assert_eq!((sent.prefix_len, sent.gateway), (21, Ipv4Addr::new(10, 254, 0, 1)));
        assert_eq!(sent.ssh_key, user("alice", 1).ssh_key, "the owner's key on the nodes");
        assert_eq!((sent.worker_spec.key.as_str(), sent.worker_spec.cpu), ("medium", 4));

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
        assert_eq!(rig.sim.clusters()[0].request.node_addresses.len(), 7);
        assert_eq!(grown.worker_count, 4);

        // Shrink to 1: the pool shrinks only once the machines are gone, keeping theirs.
        let scale = rig.platform.clusters().scale(&alice(), &username("alice"), "dev", 1).await.unwrap();
        let done = rig.wait(&scale).await;
        assert_eq!(done.state, OperationState::Succeeded, "{backend:?}: {done:?}");
        let leases = rig.leases(&grown);
        assert_eq!(leases.len(), 1 + 2 + 2, "{backend:?}: {leases:?}");
        let pool: BTreeSet<Ipv4Addr> = rig.sim.clusters()[0].request.node_addresses.iter().copied().collect();
        assert_eq!(pool, nodes(&leases), "the pool is exactly what Basphere holds");
        let report = rig.platform.accounts().quota(&alice(), &username("alice")).await.unwrap();
        assert_eq!((report.usage.ips, report.usage.vcpus), (5, 8));

        let delete = rig.platform.clusters().delete(&alice(), &username("alice"), "dev").await.unwrap();
        let error = rig.platform.clusters().delete(&alice(), &username("alice"), "dev").await.unwrap_err();
        assert_eq!(error.kind(), "conflict");
        assert_eq!(rig.wait(&delete).await.state, OperationState::Succeeded);
        assert!(rig.sim.clusters().is_empty(), "gone from the management cluster");
        assert_eq!(rig.all_leases(), 0, "{backend:?}: every address freed after Cluster API finished");
        let error = rig.platform.clusters().get(&alice(), &username("alice"), "dev").await.unwrap_err();
        assert_eq!(error.kind(), "not-found");
        let calls = rig.sim.calls();
        assert_eq!(calls.first().map(String::as_str), Some("apply dev"));
        assert!(calls.iter().any(|c| c == "delete dev"));
        rig.event(|e| matches!(e, NotificationEvent::ClusterReady { name, .. } if name.as_str() == "dev")).await;
    }
}

#[tokio::test]
async fn a_failed_or_stalled_cluster_shows_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(Backend::SqliteFile, dir.path());
    rig.account("alice", 1).await;
    rig.sim.inject(
        "broken",
        ClusterFault::Fail { reason: "CloningFailed".into(), message: "template ubuntu-k8s not found".into() },
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
    rig.sim.inject(
        "stalled",
        ClusterFault::Stall { reason: "WaitingForIPAddress".into(), message: "no free address in pool stalled".into() },
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
    let rig = rig(Backend::SqliteMemory, dir.path());
    rig.account("alice", 1).await;
    rig.sim.inject(
        "vanished",
        ClusterFault::StuckDelete { message: "VSphereVM vanished-x is gone from vCenter; remove its finalizer".into() },
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
    let rig = rig_with(Backend::SqliteFile.open(dir.path()), yaml);
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
    let (prod, _, _) = rig.platform.clusters().create(&alice(), &username("alice"), roadmap, None).await.unwrap();
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
    let sim = Arc::new(SimulatedClusters::new(Duration::from_millis(60)));
    let yaml = "work: {lease_seconds: 1}";
    let first = rig_on(store.clone(), sim.clone(), yaml);
    first.account("alice", 1).await;
    let (cluster, operation) = first.create(dev("dev")).await;
    first.wait(&operation).await;
    first.until("dev", ClusterState::Ready).await;
    // The process stops taking work; a deletion is recorded but nobody runs it here.
    first.platform.runtime().drain(Duration::from_millis(0)).await;
    let delete = first.platform.clusters().delete(&alice(), &username("alice"), "dev").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.query(|tx| tx.get_operation(delete.id)).unwrap().unwrap().state, OperationState::Queued);
    assert_eq!(sim.clusters().len(), 1, "nothing deleted yet");
    drop(first);

    let second = rig_on(store.clone(), sim.clone(), yaml);
    let done = second.platform.runtime().wait_operation(delete.id, WAIT).await.unwrap();
    assert_eq!(done.state, OperationState::Succeeded, "{done:?}");
    assert_eq!(store.query(|tx| tx.get_cluster(cluster.id)).unwrap().unwrap().state, ClusterState::Deleted);
    assert!(sim.clusters().is_empty());
    assert_eq!(second.all_leases(), 0);
}

#[tokio::test]
async fn purging_an_account_deletes_its_clusters_through_cluster_api_first() {
    let dir = tempfile::tempdir().unwrap();
    let rig = rig(Backend::SqliteFile, dir.path());
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
    assert!(rig.sim.clusters().is_empty(), "both clusters are gone from the management cluster");
    assert_eq!(rig.all_leases(), 0);
    assert!(rig.store.query(|tx| tx.get_user(&username("alice"))).unwrap().is_none());
    let calls = rig.sim.calls();
    assert!(calls.iter().any(|c| c == "delete dev") && calls.iter().any(|c| c == "delete prod"), "{calls:?}");
}
