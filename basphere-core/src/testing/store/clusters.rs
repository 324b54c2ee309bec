//! Cluster records.

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::expect_kind;
use crate::model::*;
use crate::store::*;
use crate::testing::user;
use crate::validate::ResourceName;

pub fn check_clusters(store: &dyn Store) {
    let alice = user("alice", 1);
    store.transact(|tx| tx.insert_user(&alice)).unwrap();
    let at = now();
    let cluster = Cluster {
        id: Uuid::now_v7(),
        owner: alice.username.clone(),
        name: ResourceName::parse("dev").unwrap(),
        cluster_type: "dev".into(),
        kubernetes_version: "v1.31.4".into(),
        control_plane_count: 1,
        worker_count: 2,
        control_plane_spec: NodeSpec { key: "medium".into(), cpu: 4, memory_mb: 8192, disk_gb: 100 },
        worker_spec: NodeSpec { key: "large".into(), cpu: 8, memory_mb: 16384, disk_gb: 200 },
        control_plane_endpoint: Some(Ipv4Addr::new(10, 254, 0, 40)),
        state: ClusterState::Pending,
        reason: None,
        status: ClusterStatus::default(),
        created_at: at,
        updated_at: at,
    };
    store.transact(|tx| tx.insert_cluster(&cluster)).unwrap();
    assert_eq!(store.query(|tx| tx.get_cluster(cluster.id)).unwrap().unwrap(), cluster);
    assert_eq!(store.query(|tx| tx.cluster_by_name(&alice.username, &cluster.name)).unwrap().unwrap(), cluster);
    let mut twin = cluster.clone();
    twin.id = Uuid::now_v7();
    expect_kind(store.transact(|tx| tx.insert_cluster(&twin)), "already-exists", "cluster names are unique per owner");
    let mut ready = cluster.clone();
    ready.state = ClusterState::Ready;
    ready.reason = Some("scaling".into());
    ready.status = ClusterStatus {
        phase: Some("Provisioned".into()),
        conditions: vec![ClusterCondition {
            kind: "Available".into(),
            status: "True".into(),
            reason: None,
            message: Some("all \"good\"\n".into()),
            since: Some(at),
        }],
        control_plane_ready: 1,
        workers_ready: 2,
        observed_at: Some(at),
    };
    store.transact(|tx| tx.update_cluster(&ready)).unwrap();
    assert_eq!(store.query(|tx| tx.list_clusters(&ClusterFilter::default())).unwrap(), vec![ready.clone()]);
    // The nodes count with the VMs: 1 x medium + 2 x large.
    let usage = store.query(|tx| tx.usage(&alice.username)).unwrap();
    assert_eq!((usage.clusters, usage.vcpus, usage.memory_mb, usage.disk_gb), (1, 4 + 16, 8192 + 32768, 100 + 400));
    let mut clash = ready.clone();
    clash.id = Uuid::now_v7();
    clash.name = ResourceName::parse("other").unwrap();
    store.transact(|tx| tx.insert_cluster(&clash)).unwrap();
    clash.name = ready.name.clone();
    expect_kind(store.transact(|tx| tx.update_cluster(&clash)), "already-exists", "a rename onto a live name");
    clash.state = ClusterState::Deleted;
    store.transact(|tx| tx.update_cluster(&clash)).unwrap();
    let mut gone = ready;
    gone.state = ClusterState::Deleted;
    store.transact(|tx| tx.update_cluster(&gone)).unwrap();
    assert!(store.query(|tx| tx.list_clusters(&ClusterFilter::default())).unwrap().is_empty());
    let filter = ClusterFilter { include_deleted: true, ..ClusterFilter::default() };
    assert_eq!(store.query(|tx| tx.list_clusters(&filter)).unwrap().len(), 2, "deleted clusters stay as history");
    assert_eq!(store.query(|tx| tx.usage(&alice.username)).unwrap(), Usage::default());
}
