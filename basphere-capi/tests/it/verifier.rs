//! kube's mock pattern: the client on a mock service, and a verifier that takes each request
//! in turn, asserts what it is, and answers as the API server would.

use basphere_capi::client::{CapiProvisioner, VersionChoice};
use basphere_core::cluster_provisioner::ClusterProvisioner;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use tower_test::mock::{self, Handle};

use super::{layout, request};

type Verifier = Handle<Request<Body>, Response<Body>>;

fn respond(sender: mock::SendResponse<Response<Body>>, status: u16, body: Value) {
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    sender.send_response(response);
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

/// Takes the next request, asserting its method and path; returns its query and body.
async fn next(
    handle: &mut Verifier,
    method: Method,
    path: &str,
) -> (String, Value, mock::SendResponse<Response<Body>>) {
    let (request, sender) = handle.next_request().await.expect("a request");
    assert_eq!((request.method(), request.uri().path()), (&method, path));
    let query = request.uri().query().unwrap_or_default().to_owned();
    let content_type = request.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    if method == Method::PATCH {
        assert_eq!(content_type.as_deref(), Some("application/apply-patch+yaml"), "{path}: server-side apply");
    }
    (query, body, sender)
}

async fn discovery(handle: &mut Verifier) {
    let groups = [
        "cluster.x-k8s.io",
        "controlplane.cluster.x-k8s.io",
        "bootstrap.cluster.x-k8s.io",
        "addons.cluster.x-k8s.io",
        "infrastructure.cluster.x-k8s.io",
    ];
    let mut list: Vec<Value> = groups
        .iter()
        .map(|g| json!({"name": g, "versions": [{"groupVersion": format!("{g}/v1beta1"), "version": "v1beta1"}, {"groupVersion": format!("{g}/v1beta2"), "version": "v1beta2"}], "preferredVersion": {"groupVersion": format!("{g}/v1beta2"), "version": "v1beta2"}}))
        .collect();
    list.push(json!({"name": "ipam.cluster.x-k8s.io", "versions": [{"groupVersion": "ipam.cluster.x-k8s.io/v1alpha2", "version": "v1alpha2"}]}));
    let (_, _, sender) = next(handle, Method::GET, "/apis").await;
    respond(sender, 200, json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}));
    let kinds: [(&str, &[&str]); 6] = [
        ("cluster.x-k8s.io/v1beta2", &["Cluster:clusters", "MachineDeployment:machinedeployments", "Machine:machines"]),
        ("controlplane.cluster.x-k8s.io/v1beta2", &["KubeadmControlPlane:kubeadmcontrolplanes"]),
        ("bootstrap.cluster.x-k8s.io/v1beta2", &["KubeadmConfigTemplate:kubeadmconfigtemplates"]),
        ("addons.cluster.x-k8s.io/v1beta2", &["ClusterResourceSet:clusterresourcesets"]),
        (
            "infrastructure.cluster.x-k8s.io/v1beta2",
            &[
                "VSphereCluster:vsphereclusters",
                "VSphereMachineTemplate:vspheremachinetemplates",
                "VSphereClusterIdentity:vsphereclusteridentities",
            ],
        ),
        ("ipam.cluster.x-k8s.io/v1alpha2", &["InClusterIPPool:inclusterippools"]),
    ];
    for (group_version, resources) in kinds {
        let (_, _, sender) = next(handle, Method::GET, &format!("/apis/{group_version}")).await;
        let resources: Vec<Value> = resources
            .iter()
            .map(|r| {
                let (kind, plural) = r.split_once(':').unwrap();
                json!({"name": plural, "singularName": "", "namespaced": kind != "VSphereClusterIdentity", "kind": kind, "verbs": ["get", "list", "watch", "patch", "delete"]})
            })
            .collect();
        respond(
            sender,
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        );
    }
    let (_, _, sender) = next(
        handle,
        Method::GET,
        "/apis/infrastructure.cluster.x-k8s.io/v1beta2/vsphereclusteridentities/basphere-vsphere",
    )
    .await;
    respond(
        sender,
        200,
        json!({"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "VSphereClusterIdentity",
        "metadata": {"name": "basphere-vsphere"}, "spec": {"secretName": "s", "allowedNamespaces": {"selector": {}}}}),
    );
    let (_, _, sender) = next(
        handle,
        Method::GET,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/inclusterippools.ipam.cluster.x-k8s.io",
    )
    .await;
    // Not allowed to read CRDs: the grace period is left out rather than guessed.
    respond(
        sender,
        403,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403, "message": "forbidden"}),
    );
}

#[tokio::test]
async fn apply_discovers_then_applies_each_object_in_order_under_basphere_s_field_manager() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let mut layout = layout();
    layout.addons.retain(|name, _| name == "cpi");
    let capi = CapiProvisioner::with_client(client, layout, VersionChoice::Auto);
    let request = request(1, 2, "small");
    let verifier = tokio::spawn(async move {
        discovery(&mut handle).await;
        let (_, _, sender) =
            next(&mut handle, Method::GET, "/apis/cluster.x-k8s.io/v1beta2/namespaces/user-alice/clusters/dev").await;
        respond(sender, 404, not_found());
        let expected = [
            ("/api/v1/namespaces/user-alice", "Namespace"),
            (
                "/apis/ipam.cluster.x-k8s.io/v1alpha2/namespaces/user-alice/inclusterippools/dev-nodes",
                "InClusterIPPool",
            ),
            ("/api/v1/namespaces/user-alice/secrets/dev-addons-cpi", "Secret"),
            (
                "/apis/addons.cluster.x-k8s.io/v1beta2/namespaces/user-alice/clusterresourcesets/dev-addons",
                "ClusterResourceSet",
            ),
            (
                "/apis/infrastructure.cluster.x-k8s.io/v1beta2/namespaces/user-alice/vspheremachinetemplates/",
                "VSphereMachineTemplate",
            ),
            (
                "/apis/infrastructure.cluster.x-k8s.io/v1beta2/namespaces/user-alice/vspheremachinetemplates/",
                "VSphereMachineTemplate",
            ),
            (
                "/apis/infrastructure.cluster.x-k8s.io/v1beta2/namespaces/user-alice/vsphereclusters/dev",
                "VSphereCluster",
            ),
            (
                "/apis/controlplane.cluster.x-k8s.io/v1beta2/namespaces/user-alice/kubeadmcontrolplanes/dev",
                "KubeadmControlPlane",
            ),
            (
                "/apis/bootstrap.cluster.x-k8s.io/v1beta2/namespaces/user-alice/kubeadmconfigtemplates/dev-md",
                "KubeadmConfigTemplate",
            ),
            ("/apis/cluster.x-k8s.io/v1beta2/namespaces/user-alice/machinedeployments/dev-md", "MachineDeployment"),
            ("/apis/cluster.x-k8s.io/v1beta2/namespaces/user-alice/clusters/dev", "Cluster"),
        ];
        for (path, kind) in expected {
            let (request, sender) = handle.next_request().await.expect("a request");
            assert_eq!(request.method(), Method::PATCH);
            let actual = request.uri().path().to_owned();
            assert!(actual.starts_with(path), "{actual} is not {path}");
            let query = request.uri().query().unwrap_or_default().to_owned();
            assert!(query.contains("fieldManager=basphere"), "{query}");
            assert!(query.contains("fieldValidation=Strict"), "{query}");
            assert!(!query.contains("force"), "Basphere never forces: {query}");
            let body: Value = serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
            assert_eq!(body["kind"], kind, "{actual}");
            assert!(body["apiVersion"].is_string(), "server-side apply needs the apiVersion");
            if kind == "InClusterIPPool" {
                assert!(body["spec"].get("addressReuseGracePeriodSeconds").is_none(), "unknown support: left out");
            }
            respond(sender, 200, body);
        }
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), handle.next_request()).await.is_err(),
            "nothing more"
        );
    });
    capi.apply(&request).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn an_answer_the_server_refuses_reaches_the_caller_with_its_message() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let capi = CapiProvisioner::with_client(kube::Client::new(service, "default"), layout(), VersionChoice::Auto);
    let request = request(1, 2, "small");
    let verifier = tokio::spawn(async move {
        discovery(&mut handle).await;
        let (_, _, sender) =
            next(&mut handle, Method::GET, "/apis/cluster.x-k8s.io/v1beta2/namespaces/user-alice/clusters/dev").await;
        respond(sender, 404, not_found());
        let (_, _, sender) = next(&mut handle, Method::PATCH, "/api/v1/namespaces/user-alice").await;
        respond(
            sender,
            422,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422,
            "message": "namespaces \"user-alice\" is forbidden: exceeded quota"}),
        );
    });
    let error = capi.apply(&request).await.unwrap_err().to_string();
    assert!(
        error.contains("Namespace user-alice") && error.contains("exceeded quota") && error.contains("422"),
        "{error}"
    );
    verifier.await.unwrap();
}
