//! The Cluster API objects of one cluster, rendered as JSON values from Basphere's request and
//! the site's layout. Every value goes in as a JSON value (never spliced into text), so nothing
//! a user chose can add a field or an object; the tests validate each object against the CRD
//! schema of its kind and version.

use basphere_core::cluster_provisioner::ClusterRequest;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::kubevip;
pub use crate::layout::{Layout, API_SERVER_PORT};

/// Basphere's labels: the owner of every object, and the cluster's id.
pub const OWNER_LABEL: &str = "basphere.dev/owner";
pub const CLUSTER_ID_LABEL: &str = "basphere.dev/cluster-id";
/// The worker count Basphere asked for, on the Cluster (what "every worker ready" means).
pub const WORKERS_ANNOTATION: &str = "basphere.dev/workers";
/// Cluster API's label naming a cluster's objects.
pub const CLUSTER_NAME_LABEL: &str = "cluster.x-k8s.io/cluster-name";

pub const CLUSTER_GROUP: &str = "cluster.x-k8s.io";
pub const CONTROL_PLANE_GROUP: &str = "controlplane.cluster.x-k8s.io";
pub const BOOTSTRAP_GROUP: &str = "bootstrap.cluster.x-k8s.io";
pub const INFRASTRUCTURE_GROUP: &str = "infrastructure.cluster.x-k8s.io";
pub const IPAM_GROUP: &str = "ipam.cluster.x-k8s.io";
pub const ADDONS_GROUP: &str = "addons.cluster.x-k8s.io";

/// A Cluster API contract version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiVersion {
    V1beta1,
    V1beta2,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1beta1 => "v1beta1",
            ApiVersion::V1beta2 => "v1beta2",
        }
    }
}

/// The versions Basphere speaks: Cluster API's own groups (cluster, control plane, bootstrap,
/// add-ons) and CAPV's (infrastructure) are released apart, so each is chosen on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ApiVersions {
    pub cluster_api: ApiVersion,
    pub vsphere: ApiVersion,
    /// Whether the in-cluster IPAM provider's pools know `addressReuseGracePeriodSeconds`.
    pub pool_reuse_grace: bool,
}

const CRI_SOCKET: &str = "/var/run/containerd/containerd.sock";

/// The names of one cluster's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub namespace: String,
    pub cluster: String,
    pub pool: String,
    pub workers: String,
    pub addons: String,
}

impl Names {
    pub fn of(layout: &Layout, request: &ClusterRequest) -> Names {
        Names::new(&layout.namespace_prefix, request.owner.as_str(), request.name.as_str())
    }

    pub fn new(prefix: &str, owner: &str, cluster: &str) -> Names {
        Names {
            namespace: format!("{prefix}{owner}"),
            cluster: cluster.to_owned(),
            pool: format!("{cluster}-nodes"),
            workers: format!("{cluster}-md"),
            addons: format!("{cluster}-addons"),
        }
    }
}

/// The owner's namespace, labelled with the owner.
pub fn namespace(layout: &Layout, owner: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": format!("{}{owner}", layout.namespace_prefix), "labels": {OWNER_LABEL: owner}},
    })
}

fn api_version(group: &str, version: ApiVersion) -> String {
    format!("{group}/{}", version.as_str())
}

/// A reference to another object of the cluster, in the shape `version` wants: the full
/// `apiVersion` in v1beta1, the group alone in v1beta2 (Cluster API resolves the version).
fn reference(version: ApiVersion, group: &str, group_version: ApiVersion, kind: &str, name: &str) -> Value {
    match version {
        ApiVersion::V1beta1 => json!({"apiVersion": api_version(group, group_version), "kind": kind, "name": name}),
        ApiVersion::V1beta2 => json!({"apiGroup": group, "kind": kind, "name": name}),
    }
}

/// Extra arguments: a map in v1beta1, a list of `{name, value}` in v1beta2.
fn extra_args(version: ApiVersion, args: &[(&str, &str)]) -> Value {
    match version {
        ApiVersion::V1beta1 => Value::Object(args.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect()),
        ApiVersion::V1beta2 => Value::Array(args.iter().map(|(k, v)| json!({"name": k, "value": v})).collect()),
    }
}

fn metadata(names: &Names, request: &ClusterRequest, name: &str) -> Value {
    json!({
        "name": name,
        "namespace": names.namespace,
        "labels": labels(names, request),
    })
}

fn labels(names: &Names, request: &ClusterRequest) -> Value {
    json!({
        CLUSTER_NAME_LABEL: names.cluster,
        OWNER_LABEL: request.owner.as_str(),
        CLUSTER_ID_LABEL: request.id.to_string(),
    })
}

/// Every object of the cluster, in the order they are applied: the pool before the machines
/// that take addresses from it, the templates before what refers to them, the Cluster last.
pub fn cluster_objects(layout: &Layout, versions: ApiVersions, request: &ClusterRequest) -> Vec<Value> {
    let names = Names::of(layout, request);
    let mut objects = vec![pool(layout, versions, &names, request)];
    objects.extend(addons(layout, versions, &names, request));
    let control_plane_template = machine_template(layout, versions, &names, request, "cp", &request.control_plane_spec);
    let worker_template = machine_template(layout, versions, &names, request, "md", &request.worker_spec);
    let control_plane_template_name = name_of(&control_plane_template);
    let worker_template_name = name_of(&worker_template);
    objects.push(control_plane_template);
    objects.push(worker_template);
    objects.push(vsphere_cluster(layout, versions, &names, request));
    objects.push(control_plane(layout, versions, &names, request, &control_plane_template_name));
    objects.push(worker_bootstrap(versions, &names, request));
    objects.push(machine_deployment(versions, &names, request, &worker_template_name));
    objects.push(cluster(layout, versions, &names, request));
    objects
}

pub fn name_of(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or_default().to_owned()
}

/// The node addresses Basphere leased, and nothing else: never the VIP.
pub fn pool(layout: &Layout, versions: ApiVersions, names: &Names, request: &ClusterRequest) -> Value {
    let mut spec = json!({
        "addresses": request.node_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "prefix": request.prefix_len,
        "gateway": request.gateway.to_string(),
    });
    if versions.pool_reuse_grace {
        spec["addressReuseGracePeriodSeconds"] = json!(layout.address_reuse_grace_seconds);
    }
    json!({
        "apiVersion": format!("{IPAM_GROUP}/v1alpha2"),
        "kind": "InClusterIPPool",
        "metadata": metadata(names, request, &names.pool),
        "spec": spec,
    })
}

/// The add-on manifests as resource-set Secrets, and the ClusterResourceSet that installs them
/// in this cluster. Nothing when no add-on is configured.
fn addons(layout: &Layout, versions: ApiVersions, names: &Names, request: &ClusterRequest) -> Vec<Value> {
    if layout.addons.is_empty() {
        return Vec::new();
    }
    let mut objects = Vec::new();
    let mut resources = Vec::new();
    for (addon, manifest) in &layout.addons {
        let name = format!("{}-{addon}", names.addons);
        let mut data = serde_json::Map::new();
        data.insert(format!("{addon}.yaml"), json!(manifest));
        objects.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(names, request, &name),
            "type": "addons.cluster.x-k8s.io/resource-set",
            "stringData": data,
        }));
        resources.push(json!({"kind": "Secret", "name": name}));
    }
    objects.push(json!({
        "apiVersion": api_version(ADDONS_GROUP, versions.cluster_api),
        "kind": "ClusterResourceSet",
        "metadata": metadata(names, request, &names.addons),
        "spec": {
            "clusterSelector": {"matchLabels": {CLUSTER_NAME_LABEL: names.cluster, CLUSTER_ID_LABEL: request.id.to_string()}},
            "resources": resources,
            "strategy": "ApplyOnce",
        },
    }));
    objects
}

/// A machine template. Its spec is immutable, so its name carries a hash of the spec: a new
/// size makes a new template, and the control plane or deployment moves to it.
pub fn machine_template(
    layout: &Layout,
    versions: ApiVersions,
    names: &Names,
    request: &ClusterRequest,
    role: &str,
    spec: &basphere_core::model::NodeSpec,
) -> Value {
    // A tenant's nodes are on its LAN's port group, with the LAN's MTU.
    let network = request.lan.as_ref().map_or(layout.network.as_str(), |lan| lan.port_group.as_str());
    let mut device = json!({
        "networkName": network,
        "dhcp4": false,
        "dhcp6": false,
        "addressesFromPools": [{"apiGroup": IPAM_GROUP, "kind": "InClusterIPPool", "name": names.pool}],
    });
    if let Some(lan) = &request.lan {
        device["mtu"] = json!(lan.mtu);
    }
    if !request.dns.is_empty() {
        device["nameservers"] = json!(request.dns.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    let mut machine = json!({
        "template": request.node_template,
        "cloneMode": "linkedClone",
        "server": layout.server,
        "datacenter": layout.datacenter,
        "datastore": layout.datastore,
        "folder": layout.folder,
        "resourcePool": layout.resource_pool,
        "numCPUs": spec.cpu,
        "memoryMiB": spec.memory_mb,
        "diskGiB": spec.disk_gb,
        "os": "Linux",
        "powerOffMode": "trySoft",
        "network": {"devices": [device]},
    });
    if let Some(thumbprint) = &layout.thumbprint {
        machine["thumbprint"] = json!(thumbprint);
    }
    if let Some(policy) = &layout.storage_policy {
        machine["storagePolicyName"] = json!(policy);
    }
    let spec = json!({"template": {"spec": machine}});
    let name = format!("{}-{role}-{}", names.cluster, short_hash(&spec));
    json!({
        "apiVersion": api_version(INFRASTRUCTURE_GROUP, versions.vsphere),
        "kind": "VSphereMachineTemplate",
        "metadata": metadata(names, request, &name),
        "spec": spec,
    })
}

fn short_hash(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

fn vsphere_cluster(layout: &Layout, versions: ApiVersions, names: &Names, request: &ClusterRequest) -> Value {
    let mut spec = json!({
        "server": layout.server,
        "controlPlaneEndpoint": {"host": request.endpoint.to_string(), "port": API_SERVER_PORT},
        "identityRef": {"kind": "VSphereClusterIdentity", "name": layout.identity},
    });
    if let Some(thumbprint) = &layout.thumbprint {
        spec["thumbprint"] = json!(thumbprint);
    }
    json!({
        "apiVersion": api_version(INFRASTRUCTURE_GROUP, versions.vsphere),
        "kind": "VSphereCluster",
        "metadata": metadata(names, request, &names.cluster),
        "spec": spec,
    })
}

/// The node's login: the owner, with the owner's key.
fn users(request: &ClusterRequest) -> Value {
    json!([{
        "name": request.owner.as_str(),
        "sshAuthorizedKeys": [request.ssh_key.as_str()],
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
    }])
}

fn node_registration(version: ApiVersion) -> Value {
    json!({
        "criSocket": CRI_SOCKET,
        "kubeletExtraArgs": extra_args(version, &[("cloud-provider", "external")]),
        "name": "{{ local_hostname }}",
    })
}

/// Names the node after its VM and runs the scripts in `/etc/pre-kubeadm-commands`.
fn pre_kubeadm_commands() -> Value {
    json!([
        "hostnamectl set-hostname \"{{ ds.meta_data.hostname }}\"",
        "echo \"::1         ipv6-localhost ipv6-loopback localhost6 localhost6.localdomain6\" >/etc/hosts",
        "echo \"127.0.0.1   {{ ds.meta_data.hostname }} {{ local_hostname }} localhost localhost.localdomain localhost4 localhost4.localdomain4\" >>/etc/hosts",
        "mkdir -p /etc/pre-kubeadm-commands",
        "for script in $(find /etc/pre-kubeadm-commands/ -name '*.sh' -type f | sort); do echo \"running $script\"; \"$script\"; done",
    ])
}

fn control_plane(
    layout: &Layout,
    versions: ApiVersions,
    names: &Names,
    request: &ClusterRequest,
    template: &str,
) -> Value {
    let version = versions.cluster_api;
    let infrastructure = reference(version, INFRASTRUCTURE_GROUP, versions.vsphere, "VSphereMachineTemplate", template);
    let config = json!({
        "clusterConfiguration": {
            "controllerManager": {"extraArgs": extra_args(version, &[("cloud-provider", "external")])},
        },
        "initConfiguration": {"nodeRegistration": node_registration(version)},
        "joinConfiguration": {"nodeRegistration": node_registration(version)},
        "files": kubevip::files(layout, request.endpoint),
        "preKubeadmCommands": pre_kubeadm_commands(),
        "users": users(request),
    });
    let machine_labels = labels(names, request);
    let spec = match version {
        ApiVersion::V1beta1 => json!({
            "replicas": request.control_plane_count,
            "version": request.kubernetes_version,
            "machineTemplate": {"metadata": {"labels": machine_labels}, "infrastructureRef": infrastructure},
            "kubeadmConfigSpec": config,
            "rolloutStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        }),
        ApiVersion::V1beta2 => json!({
            "replicas": request.control_plane_count,
            "version": request.kubernetes_version,
            "machineTemplate": {"metadata": {"labels": machine_labels}, "spec": {"infrastructureRef": infrastructure}},
            "kubeadmConfigSpec": config,
            "rollout": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
        }),
    };
    json!({
        "apiVersion": api_version(CONTROL_PLANE_GROUP, version),
        "kind": "KubeadmControlPlane",
        "metadata": metadata(names, request, &names.cluster),
        "spec": spec,
    })
}

fn worker_bootstrap(versions: ApiVersions, names: &Names, request: &ClusterRequest) -> Value {
    let version = versions.cluster_api;
    json!({
        "apiVersion": api_version(BOOTSTRAP_GROUP, version),
        "kind": "KubeadmConfigTemplate",
        "metadata": metadata(names, request, &names.workers),
        "spec": {"template": {"spec": {
            "joinConfiguration": {"nodeRegistration": node_registration(version)},
            "preKubeadmCommands": pre_kubeadm_commands(),
            "users": users(request),
        }}},
    })
}

fn machine_deployment(versions: ApiVersions, names: &Names, request: &ClusterRequest, template: &str) -> Value {
    let version = versions.cluster_api;
    let bootstrap = reference(version, BOOTSTRAP_GROUP, version, "KubeadmConfigTemplate", &names.workers);
    let infrastructure = reference(version, INFRASTRUCTURE_GROUP, versions.vsphere, "VSphereMachineTemplate", template);
    let selector =
        json!({"matchLabels": {CLUSTER_NAME_LABEL: names.cluster, CLUSTER_ID_LABEL: request.id.to_string()}});
    let template = json!({
        "metadata": {"labels": labels(names, request)},
        "spec": {
            "clusterName": names.cluster,
            "version": request.kubernetes_version,
            "bootstrap": {"configRef": bootstrap},
            "infrastructureRef": infrastructure,
        },
    });
    let spec = match version {
        ApiVersion::V1beta1 => json!({
            "clusterName": names.cluster,
            "replicas": request.worker_count,
            "selector": selector,
            "template": template,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        }),
        ApiVersion::V1beta2 => json!({
            "clusterName": names.cluster,
            "replicas": request.worker_count,
            "selector": selector,
            "template": template,
            "rollout": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}},
        }),
    };
    json!({
        "apiVersion": api_version(CLUSTER_GROUP, version),
        "kind": "MachineDeployment",
        "metadata": metadata(names, request, &names.workers),
        "spec": spec,
    })
}

fn cluster(layout: &Layout, versions: ApiVersions, names: &Names, request: &ClusterRequest) -> Value {
    let version = versions.cluster_api;
    let mut metadata = metadata(names, request, &names.cluster);
    metadata["annotations"] = json!({WORKERS_ANNOTATION: request.worker_count.to_string()});
    json!({
        "apiVersion": api_version(CLUSTER_GROUP, version),
        "kind": "Cluster",
        "metadata": metadata,
        "spec": {
            "clusterNetwork": {
                "pods": {"cidrBlocks": [layout.pod_cidr]},
                "services": {"cidrBlocks": [layout.service_cidr]},
            },
            "controlPlaneRef": reference(version, CONTROL_PLANE_GROUP, version, "KubeadmControlPlane", &names.cluster),
            "infrastructureRef": reference(version, INFRASTRUCTURE_GROUP, versions.vsphere, "VSphereCluster", &names.cluster),
        },
    })
}
