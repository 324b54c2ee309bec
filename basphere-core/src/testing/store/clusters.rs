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
        worker_spec: "medium".into(),
        control_plane_endpoint: Some(Ipv4Addr::new(10, 254, 0, 40)),
        state: ClusterState::Pending,
        reason: None,
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
    store.transact(|tx| tx.update_cluster(&ready)).unwrap();
    assert_eq!(store.query(|tx| tx.list_clusters(&ClusterFilter::default())).unwrap(), vec![ready.clone()]);
    assert_eq!(store.query(|tx| tx.usage(&alice.username)).unwrap().clusters, 1);
    let mut gone = ready;
    gone.state = ClusterState::Deleted;
    store.transact(|tx| tx.update_cluster(&gone)).unwrap();
    assert!(store.query(|tx| tx.list_clusters(&ClusterFilter::default())).unwrap().is_empty());
    assert_eq!(store.query(|tx| tx.usage(&alice.username)).unwrap().clusters, 0);
}
