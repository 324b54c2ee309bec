//! The `ClusterProvisioner` conformance suite, for backends that build clusters (not
//! `NoClusters`, which refuses every call).

use std::net::Ipv4Addr;
use std::time::Duration;

use uuid::Uuid;

use super::{ssh_key, username};
use crate::cluster_provisioner::*;
use crate::config::Config;
use crate::error::Error;
use crate::model::CLUSTER_SURGE;
use crate::validate::ResourceName;

/// What the suite sees of the management cluster from outside, and what it makes it do.
pub struct Probes<'a> {
    /// How many clusters the management cluster holds now, whoever made them.
    pub clusters: &'a dyn Fn() -> usize,
    /// Makes the next cluster named `name` fail for good (its VMs cannot be cloned, say).
    pub fail_next: &'a dyn Fn(&ResourceName),
}

/// A request like the platform makes for cluster `name` of `owner`: one control-plane node and
/// `workers` workers of the default catalog's specs, the VIP at `10.254.<subnet>.10` and the
/// node addresses right after it, every node plus the surge.
pub fn request(owner: &str, name: &str, subnet: u8, workers: u32) -> ClusterRequest {
    let config = Config::default();
    let pool = 1 + workers + CLUSTER_SURGE;
    ClusterRequest {
        id: Uuid::now_v7(),
        owner: username(owner),
        name: ResourceName::cluster(name).expect("a valid cluster name"),
        kubernetes_version: config.kubernetes.version.clone(),
        node_template: config.kubernetes.node_template.clone(),
        control_plane_count: 1,
        control_plane_spec: config.node_specs["medium"].clone(),
        worker_count: workers,
        worker_spec: config.node_specs["small"].clone(),
        endpoint: Ipv4Addr::new(10, 254, subnet, 10),
        node_addresses: (0..pool).map(|i| Ipv4Addr::new(10, 254, subnet, 11 + i as u8)).collect(),
        prefix_len: 16,
        gateway: Ipv4Addr::new(10, 254, 0, 1),
        dns: vec![Ipv4Addr::new(10, 254, 0, 2)],
        lan: None,
        ssh_key: ssh_key(11),
    }
}

/// Runs the whole contract against `clusters`, waiting at most `patience` for each change a
/// management cluster makes on its own (a cluster becoming ready, its deletion). The suite makes
/// and deletes the clusters `conformance`, `conformance-failing` and `conformance-missing` of
/// the user `suite`.
pub async fn check_all(clusters: &dyn ClusterProvisioner, probes: Probes<'_>, patience: Duration) {
    assert!(!clusters.backend_name().is_empty(), "the backend names itself");
    clusters.preflight().await.expect("the preflight passes on a working management cluster");
    check_missing(clusters, &probes).await;
    check_lifecycle(clusters, &probes, patience).await;
    check_failure(clusters, &probes, patience).await;
    check_changed(clusters, patience).await;
}

/// Follows `cluster` until `done`, as the platform does: woken by `changed`.
async fn until(
    clusters: &dyn ClusterProvisioner,
    cluster: &ClusterRef,
    patience: Duration,
    what: &str,
    done: impl Fn(&ClusterObservation) -> bool,
) -> ClusterObservation {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let seen = clusters.observe(cluster).await.expect("observe");
        match &seen {
            Some(observation) if done(observation) => return observation.clone(),
            _ => assert!(tokio::time::Instant::now() < deadline, "{} never {what}: {seen:?}", cluster.name),
        }
        clusters.changed(Duration::from_millis(200)).await;
    }
}

/// Deletes `cluster` until the backend answers `Gone`, checking what it says on the way.
async fn delete_until_gone(clusters: &dyn ClusterProvisioner, cluster: &ClusterRef, patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match clusters.delete(cluster).await.expect("delete") {
            Removal::Gone => return,
            Removal::Waiting(message) => {
                assert!(!message.is_empty(), "a deletion under way says what it waits for");
                if let Some(seen) = clusters.observe(cluster).await.expect("observe while deleting") {
                    assert_eq!(seen.health, ClusterHealth::Deleting, "a cluster being deleted is Deleting: {seen:?}");
                }
                assert!(tokio::time::Instant::now() < deadline, "{} never went: {message}", cluster.name);
            }
        }
        clusters.changed(Duration::from_millis(200)).await;
    }
}

/// What a backend says of a cluster it never had.
pub async fn check_missing(clusters: &dyn ClusterProvisioner, probes: &Probes<'_>) {
    let held = (probes.clusters)();
    let missing = request("suite", "conformance-missing", 9, 1).cluster_ref();
    assert_eq!(clusters.observe(&missing).await.expect("observe"), None, "a cluster never made is not observed");
    assert_eq!(clusters.kubeconfig(&missing).await.expect("kubeconfig"), None, "nor has it a kubeconfig");
    assert_eq!(
        clusters.delete(&missing).await.expect("delete"),
        Removal::Gone,
        "deleting it finds nothing to wait for"
    );
    assert_eq!(clusters.delete(&missing).await.expect("delete again"), Removal::Gone, "and again");
    assert_eq!((probes.clusters)(), held, "nothing was made");
}

/// Create, repeat, ready, kubeconfig, grow, shrink, a clashing name, delete.
pub async fn check_lifecycle(clusters: &dyn ClusterProvisioner, probes: &Probes<'_>, patience: Duration) {
    let held = (probes.clusters)();
    let mut request = request("suite", "conformance", 7, 2);
    let cluster = request.cluster_ref();
    clusters.apply(&request).await.expect("apply creates the cluster");
    clusters.apply(&request).await.expect("apply is idempotent");
    assert_eq!((probes.clusters)(), held + 1, "a repeated apply makes no second cluster");
    let first = until(clusters, &cluster, patience, "observed", |_| true).await;
    assert!(
        matches!(first.health, ClusterHealth::Progressing | ClusterHealth::Ready),
        "a new cluster is being built: {first:?}"
    );

    let ready = until(clusters, &cluster, patience, "ready", |o| o.health == ClusterHealth::Ready).await;
    assert_eq!((ready.control_plane_ready, ready.workers_ready, ready.worker_machines), (1, 2, 2), "{ready:?}");
    check_addresses(&request, &ready, 3);
    assert!(!ready.conditions.is_empty(), "a ready cluster shows its conditions");
    let kubeconfig = clusters.kubeconfig(&cluster).await.expect("kubeconfig").expect("a ready cluster's kubeconfig");
    assert!(kubeconfig.contains(&request.endpoint.to_string()), "the kubeconfig reaches the VIP: {kubeconfig}");

    // Repeated after a crash, an apply of the same request sets nothing back.
    clusters.apply(&request).await.expect("apply again");
    assert_eq!((probes.clusters)(), held + 1, "still one cluster");
    let again = clusters.observe(&cluster).await.expect("observe").expect("still there");
    assert_eq!(again.health, ClusterHealth::Ready, "a repeated apply leaves a ready cluster ready: {again:?}");

    // Grow: the pool and the workers together.
    request.worker_count = 4;
    let next = u8::try_from(11 + request.node_addresses.len()).expect("a small pool");
    request.node_addresses.extend([Ipv4Addr::new(10, 254, 7, next), Ipv4Addr::new(10, 254, 7, next + 1)]);
    clusters.apply(&request).await.expect("apply grows the cluster");
    let grown = until(clusters, &cluster, patience, "grew to 4 workers", |o| {
        o.health == ClusterHealth::Ready && o.workers_ready == 4 && o.worker_machines == 4
    })
    .await;
    check_addresses(&request, &grown, 5);

    // Shrink: the workers first, the pool once their machines are gone.
    request.worker_count = 1;
    clusters.apply(&request).await.expect("apply shrinks the workers");
    let shrunk = until(clusters, &cluster, patience, "shrank to 1 worker", |o| {
        o.health == ClusterHealth::Ready && o.worker_machines == 1 && o.addresses_in_use.len() == 2
    })
    .await;
    check_addresses(&request, &shrunk, 2);
    let held_addresses = shrunk.addresses_in_use.clone();
    let pool = (1 + 1 + CLUSTER_SURGE) as usize;
    let mut wrong = request.clone();
    wrong.node_addresses = request.node_addresses.iter().filter(|a| !held_addresses.contains(a)).copied().collect();
    wrong.node_addresses.truncate(pool);
    match clusters.apply(&wrong).await {
        Err(Error::Backend { .. }) => {}
        other => panic!("a pool that drops an address a machine holds must be refused as a Backend error: {other:?}"),
    }
    let mut kept = held_addresses.clone();
    kept.extend(request.node_addresses.iter().filter(|a| !held_addresses.contains(a)).take(pool - kept.len()));
    request.node_addresses = kept;
    clusters.apply(&request).await.expect("a pool that keeps the held addresses shrinks");
    let after = clusters.observe(&cluster).await.expect("observe").expect("still there");
    assert_eq!(after.health, ClusterHealth::Ready, "shrinking the pool leaves the cluster ready: {after:?}");
    check_addresses(&request, &after, 2);

    // The same owner and name under another id: refused, and never touched.
    let mut other = request.clone();
    other.id = Uuid::now_v7();
    match clusters.apply(&other).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("a cluster of the same name made by someone else must be AlreadyExists: {other:?}"),
    }
    assert_eq!(clusters.observe(&other.cluster_ref()).await.expect("observe"), None, "the other id holds nothing");
    assert_eq!(clusters.delete(&other.cluster_ref()).await.expect("delete"), Removal::Gone, "nothing of its own");
    let untouched = clusters.observe(&cluster).await.expect("observe").expect("the cluster stays");
    assert_eq!(untouched.health, ClusterHealth::Ready, "deleting the other id left the cluster alone");
    assert_eq!((probes.clusters)(), held + 1);

    delete_until_gone(clusters, &cluster, patience).await;
    assert_eq!(clusters.delete(&cluster).await.expect("delete again"), Removal::Gone, "deleting again is harmless");
    assert_eq!(clusters.observe(&cluster).await.expect("observe"), None, "a deleted cluster is not observed");
    assert_eq!(clusters.kubeconfig(&cluster).await.expect("kubeconfig"), None, "nor has it a kubeconfig");
    assert_eq!((probes.clusters)(), held, "nothing of it is left");
}

/// The addresses in use: `count` of them, every one from the pool, never the VIP.
fn check_addresses(request: &ClusterRequest, seen: &ClusterObservation, count: usize) {
    let in_use = &seen.addresses_in_use;
    assert_eq!(in_use.len(), count, "one address per machine: {seen:?}");
    assert!(in_use.iter().all(|a| request.node_addresses.contains(a)), "only pool addresses: {in_use:?}");
    assert!(!in_use.contains(&request.endpoint), "the VIP is never a node's: {in_use:?}");
}

/// A cluster that cannot come up is Failed, and says why.
pub async fn check_failure(clusters: &dyn ClusterProvisioner, probes: &Probes<'_>, patience: Duration) {
    let held = (probes.clusters)();
    let request = request("suite", "conformance-failing", 8, 1);
    let cluster = request.cluster_ref();
    (probes.fail_next)(&request.name);
    clusters.apply(&request).await.expect("apply");
    let failed = until(clusters, &cluster, patience, "failed", |o| o.health == ClusterHealth::Failed).await;
    assert!(failed.reason.as_ref().is_some_and(|r| !r.trim().is_empty()), "a failed cluster says why: {failed:?}");
    delete_until_gone(clusters, &cluster, patience).await;
    assert_eq!(clusters.observe(&cluster).await.expect("observe"), None);
    assert_eq!((probes.clusters)(), held, "a failed cluster is deleted like any other");
}

/// `changed` returns by its timeout, whether or not anything changed.
pub async fn check_changed(clusters: &dyn ClusterProvisioner, patience: Duration) {
    let timeout = Duration::from_millis(50);
    let returned = tokio::time::timeout(timeout + patience, clusters.changed(timeout)).await;
    assert!(returned.is_ok(), "changed({timeout:?}) was still waiting after {:?}", timeout + patience);
}
