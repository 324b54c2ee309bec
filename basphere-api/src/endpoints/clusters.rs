//! The caller's Kubernetes clusters.

use super::NamePath;
use crate::endpoint::problems::{CHANGE, CHANGE_BODY, CREATE, LIST, ONE};
use crate::endpoint::{endpoint, BodyMedia, HeaderParam, Reply};
use crate::{
    ClusterView, CreateClusterRequest, CreateClusterResponse, KubeconfigView, ListQuery, OperationView, Page,
    ScaleClusterRequest, WatchQuery,
};

/// `Idempotency-Key` of a cluster create.
pub const IDEMPOTENCY_KEY: HeaderParam = HeaderParam {
    name: "Idempotency-Key",
    description: "Repeat a create safely: the same key returns the first answer",
};

endpoint! {
    /// `GET /api/v1/clusters`
    List = Get "/api/v1/clusters", list_clusters, tag "clusters",
    types((), ListQuery, () => Page<ClusterView>);
    SUMMARY = "Your clusters, oldest first. *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = LIST;
}

endpoint! {
    /// `POST /api/v1/clusters`
    Create = Post "/api/v1/clusters", create_cluster, tag "clusters",
    types((), (), CreateClusterRequest => CreateClusterResponse);
    SUMMARY = "Create a cluster: its VIP and node addresses are leased at once, Cluster API builds it in\nthe background. `Idempotency-Key` makes a retry safe. *user*";
    BODY = BodyMedia::Json;
    HEADERS = &[IDEMPOTENCY_KEY];
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CREATE;
}

endpoint! {
    /// `GET /api/v1/clusters/{name}`
    Get = Get "/api/v1/clusters/{name}", get_cluster, tag "clusters",
    types(NamePath, (), () => ClusterView);
    SUMMARY = "One of your clusters, with its conditions. *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}

endpoint! {
    /// `GET /api/v1/clusters/{name}/watch`
    Watch = Get "/api/v1/clusters/{name}/watch", watch_cluster, tag "clusters",
    types(NamePath, WatchQuery, () => ClusterView);
    SUMMARY = "Waits for one of your clusters to change (a long poll): the answer is the cluster once its\n`updated_at` is after `since`, or as it is when `timeout` passes. *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}

endpoint! {
    /// `GET /api/v1/clusters/{name}/kubeconfig`
    Kubeconfig = Get "/api/v1/clusters/{name}/kubeconfig", cluster_kubeconfig, tag "clusters",
    types(NamePath, (), () => KubeconfigView);
    SUMMARY = "The admin kubeconfig of one of your clusters, once its control plane is up. *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `POST /api/v1/clusters/{name}/scale`
    Scale = Post "/api/v1/clusters/{name}/scale", scale_cluster, tag "clusters",
    types(NamePath, (), ScaleClusterRequest => OperationView);
    SUMMARY = "Change the number of workers of one of your clusters. *user*";
    BODY = BodyMedia::Json;
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CHANGE_BODY;
}

endpoint! {
    /// `DELETE /api/v1/clusters/{name}`
    Delete = Delete "/api/v1/clusters/{name}", delete_cluster, tag "clusters",
    types(NamePath, (), () => OperationView);
    SUMMARY = "Delete one of your clusters; its addresses are freed once Cluster API removed everything. *user*";
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CHANGE;
}
