//! `CapiProvisioner`: Basphere's clusters on a management cluster through its Kubernetes API.
//!
//! Objects are written with server-side apply under Basphere's own field manager (never
//! forcing fields another manager owns) and strict field validation. Clusters and their
//! machines are followed by two watches across every owner's namespace (selected by Basphere's
//! owner label), kept in caches, so observing a cluster costs the management cluster nothing and
//! a change reaches Basphere as it happens.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use basphere_core::cluster_provisioner::*;
use basphere_core::{Error, Result};
use futures_util::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, ValidationDirective};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::{Notify, OnceCell};

use crate::render::{self, ApiVersion, ApiVersions, Layout, Names, CLUSTER_ID_LABEL, OWNER_LABEL};
use crate::status;

/// The field manager of everything Basphere applies.
pub const FIELD_MANAGER: &str = "basphere";

/// Which contract version to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionChoice {
    /// The newest each provider serves (Cluster API and CAPV are chosen apart).
    Auto,
    Fixed(ApiVersion),
}

/// How long a deletion may last before its message says what an administrator can do.
const STUCK_AFTER: chrono::Duration = chrono::Duration::minutes(10);

struct Watches {
    clusters: Store<DynamicObject>,
    machines: Store<DynamicObject>,
    /// The tasks feeding the two stores, stopped with them.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Watches {
    /// A dropped client stops watching: nothing keeps its connections to the management
    /// cluster open.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Clusters through Cluster API and CAPV.
pub struct CapiProvisioner {
    client: Client,
    layout: Layout,
    choice: VersionChoice,
    versions: OnceCell<ApiVersions>,
    watches: OnceCell<Watches>,
    /// Set once the watches' caches have listed everything.
    synced: OnceCell<()>,
    /// Wakes every waiter on each change.
    changed: Arc<Notify>,
    /// Keeps one wake-up for a waiter that was busy when the change came.
    pending: Arc<Notify>,
}

fn backend(message: impl Into<String>) -> Error {
    Error::backend("cluster-api", message.into())
}

/// What the management cluster said, in a sentence.
fn said(error: kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The plural of each kind Basphere writes or reads.
fn plural(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Namespace" => "namespaces",
        "Secret" => "secrets",
        "Cluster" => "clusters",
        "Machine" => "machines",
        "MachineDeployment" => "machinedeployments",
        "KubeadmControlPlane" => "kubeadmcontrolplanes",
        "KubeadmConfigTemplate" => "kubeadmconfigtemplates",
        "ClusterResourceSet" => "clusterresourcesets",
        "VSphereCluster" => "vsphereclusters",
        "VSphereMachineTemplate" => "vspheremachinetemplates",
        "VSphereClusterIdentity" => "vsphereclusteridentities",
        "InClusterIPPool" => "inclusterippools",
        _ => return None,
    })
}

fn resource_of(object: &Value) -> Result<ApiResource> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let plural = plural(kind).ok_or_else(|| backend(format!("no plural known for {kind}")))?;
    Ok(resource(group, version, kind, plural))
}

impl CapiProvisioner {
    /// Connects with the kubeconfig at `path` (its current context).
    pub async fn connect(path: &std::path::Path, layout: Layout, choice: VersionChoice) -> Result<Self> {
        let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|error| {
            Error::invalid("management_cluster.kubeconfig", format!("{} cannot be read: {error}", path.display()))
        })?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|error| Error::invalid("management_cluster.kubeconfig", format!("{}: {error}", path.display())))?;
        let client = Client::try_from(config)
            .map_err(|error| backend(format!("connecting to the management cluster: {error}")))?;
        Ok(Self::with_client(client, layout, choice))
    }

    /// Uses `client` (any tower service: tests hand in a mock).
    pub fn with_client(client: Client, layout: Layout, choice: VersionChoice) -> Self {
        CapiProvisioner {
            client,
            layout,
            choice,
            versions: OnceCell::new(),
            watches: OnceCell::new(),
            synced: OnceCell::new(),
            changed: Arc::new(Notify::new()),
            pending: Arc::new(Notify::new()),
        }
    }

    /// The versions chosen by the preflight (run once, on first use).
    pub async fn versions(&self) -> Result<ApiVersions> {
        self.versions.get_or_try_init(|| self.discover()).await.copied()
    }

    async fn discover(&self) -> Result<ApiVersions> {
        let groups =
            self.client.list_api_groups().await.map_err(|e| backend(format!("listing the API groups: {}", said(e))))?;
        let served = |group: &str| -> Vec<String> {
            groups
                .groups
                .iter()
                .filter(|g| g.name == group)
                .flat_map(|g| g.versions.iter().map(|v| v.version.clone()))
                .collect()
        };
        let mut missing = Vec::new();
        let choose = |groups: &[&str], missing: &mut Vec<String>| -> Option<ApiVersion> {
            let all = |v: ApiVersion| groups.iter().all(|g| served(g).iter().any(|s| s == v.as_str()));
            let wanted = match self.choice {
                VersionChoice::Fixed(v) => vec![v],
                VersionChoice::Auto => vec![ApiVersion::V1beta2, ApiVersion::V1beta1],
            };
            match wanted.into_iter().find(|v| all(*v)) {
                Some(v) => Some(v),
                None => {
                    for group in groups {
                        missing.push(format!("{group} (serves {:?})", served(group)));
                    }
                    None
                }
            }
        };
        let cluster_api = choose(
            &[
                "cluster.x-k8s.io",
                "controlplane.cluster.x-k8s.io",
                "bootstrap.cluster.x-k8s.io",
                "addons.cluster.x-k8s.io",
            ],
            &mut missing,
        );
        let vsphere = choose(&["infrastructure.cluster.x-k8s.io"], &mut missing);
        if !served("ipam.cluster.x-k8s.io").iter().any(|v| v == "v1alpha2") {
            missing.push("ipam.cluster.x-k8s.io/v1alpha2 (the in-cluster IPAM provider)".into());
        }
        let (Some(cluster_api), Some(vsphere)) = (cluster_api, vsphere) else {
            let wanted = match self.choice {
                VersionChoice::Auto => "v1beta1 or v1beta2".to_owned(),
                VersionChoice::Fixed(v) => v.as_str().to_owned(),
            };
            return Err(backend(format!(
                "the management cluster does not serve {wanted} of: {}. Install Cluster API, CAPV, the kubeadm providers and \
                 the in-cluster IPAM provider (clusterctl init --infrastructure vsphere --ipam in-cluster), or set \
                 management_cluster.api_version",
                missing.join(", ")
            )));
        };
        let kinds: [(&str, ApiVersion, &[&str]); 6] = [
            ("cluster.x-k8s.io", cluster_api, &["Cluster", "MachineDeployment", "Machine"]),
            ("controlplane.cluster.x-k8s.io", cluster_api, &["KubeadmControlPlane"]),
            ("bootstrap.cluster.x-k8s.io", cluster_api, &["KubeadmConfigTemplate"]),
            ("addons.cluster.x-k8s.io", cluster_api, &["ClusterResourceSet"]),
            (
                "infrastructure.cluster.x-k8s.io",
                vsphere,
                &["VSphereCluster", "VSphereMachineTemplate", "VSphereClusterIdentity"],
            ),
            ("ipam.cluster.x-k8s.io", ApiVersion::V1beta2, &["InClusterIPPool"]),
        ];
        for (group, version, wanted) in kinds {
            let version = if group.starts_with("ipam.") { "v1alpha2" } else { version.as_str() };
            let list = self
                .client
                .list_api_group_resources(&format!("{group}/{version}"))
                .await
                .map_err(|e| backend(format!("listing {group}/{version}: {}", said(e))))?;
            for kind in wanted {
                if !list.resources.iter().any(|r| r.kind == *kind) {
                    missing.push(format!("{kind} in {group}/{version}"));
                }
            }
        }
        if !missing.is_empty() {
            return Err(backend(format!("the management cluster lacks: {}", missing.join(", "))));
        }
        let identities: Api<DynamicObject> = Api::all_with(
            self.client.clone(),
            &resource(
                "infrastructure.cluster.x-k8s.io",
                vsphere.as_str(),
                "VSphereClusterIdentity",
                "vsphereclusteridentities",
            ),
        );
        match identities.get_opt(&self.layout.identity).await.map_err(|e| backend(said(e)))? {
            None => {
                return Err(backend(format!(
                    "the VSphereClusterIdentity {:?} (management_cluster.identity) does not exist: create it with its Secret in \
                     CAPV's namespace, allowing namespaces labelled {OWNER_LABEL}",
                    self.layout.identity
                )))
            }
            Some(identity) if identity.data["spec"]["allowedNamespaces"]["selector"].is_null() => {
                return Err(backend(format!(
                    "the VSphereClusterIdentity {:?} allows no namespace: set spec.allowedNamespaces.selector to match the label {OWNER_LABEL}",
                    self.layout.identity
                )))
            }
            Some(_) => {}
        }
        // An in-cluster IPAM provider older than the reuse grace period refuses the field.
        let crds: Api<DynamicObject> = Api::all_with(
            self.client.clone(),
            &resource("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions"),
        );
        let pool_reuse_grace = match crds.get_opt("inclusterippools.ipam.cluster.x-k8s.io").await {
            Ok(Some(crd)) => crd.data["spec"]["versions"].as_array().into_iter().flatten().any(|v| {
                v["name"] == "v1alpha2"
                    && v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
                        ["addressReuseGracePeriodSeconds"]
                        .is_object()
            }),
            _ => false,
        };
        let versions = ApiVersions { cluster_api, vsphere, pool_reuse_grace };
        tracing::info!(
            cluster_api = cluster_api.as_str(),
            vsphere = vsphere.as_str(),
            pool_reuse_grace,
            "the management cluster serves what Basphere needs"
        );
        Ok(versions)
    }

    async fn watches(&self) -> Result<&Watches> {
        let versions = self.versions().await?;
        let watches = self
            .watches
            .get_or_init(|| async {
                let cluster_api = versions.cluster_api.as_str();
                let clusters = self.watch(resource("cluster.x-k8s.io", cluster_api, "Cluster", "clusters"));
                let machines = self.watch(resource("cluster.x-k8s.io", cluster_api, "Machine", "machines"));
                Watches { clusters: clusters.0, machines: machines.0, tasks: vec![clusters.1, machines.1] }
            })
            .await;
        // The first answer waits for the caches' first listing, within reason. One caller at a
        // time waits on the stores (their readiness wakes a single waiter); the others wait on
        // the cell.
        self.synced
            .get_or_try_init(|| async {
                let ready = async {
                    let _ = watches.clusters.wait_until_ready().await;
                    let _ = watches.machines.wait_until_ready().await;
                };
                tokio::time::timeout(Duration::from_secs(30), ready).await.map_err(|_| {
                    Error::Timeout("the management cluster's watches have not listed the clusters yet".into())
                })
            })
            .await?;
        Ok(watches)
    }

    /// One watch of a kind across every namespace, limited to Basphere's objects.
    fn watch(&self, resource: ApiResource) -> (Store<DynamicObject>, tokio::task::JoinHandle<()>) {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let writer = reflector::store::Writer::new(resource.clone());
        let reader = writer.as_reader();
        let (changed, pending) = (self.changed.clone(), self.pending.clone());
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default().labels(OWNER_LABEL)))
            .default_backoff();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(_) => {
                        changed.notify_waiters();
                        pending.notify_one();
                    }
                    Err(error) => {
                        tracing::warn!(kind = %resource.kind, %error, "watching the management cluster failed; retrying")
                    }
                }
            }
        });
        (reader, task)
    }

    fn names(&self, cluster: &ClusterRef) -> Names {
        Names::new(&self.layout.namespace_prefix, cluster.owner.as_str(), cluster.name.as_str())
    }

    fn cached_cluster(watches: &Watches, cluster: &ClusterRef) -> Option<Value> {
        let id = cluster.id.to_string();
        watches
            .clusters
            .state()
            .into_iter()
            .find(|c| c.metadata.labels.as_ref().and_then(|l| l.get(CLUSTER_ID_LABEL)) == Some(&id))
            .map(|c| serde_json::to_value(&*c).unwrap_or_default())
    }

    fn cached_machines(watches: &Watches, cluster: &ClusterRef) -> Vec<Value> {
        let id = cluster.id.to_string();
        watches
            .machines
            .state()
            .into_iter()
            .filter(|m| m.metadata.labels.as_ref().and_then(|l| l.get(CLUSTER_ID_LABEL)) == Some(&id))
            .map(|m| serde_json::to_value(&*m).unwrap_or_default())
            .collect()
    }

    async fn apply_object(&self, namespace: Option<&str>, object: &Value) -> Result<()> {
        let resource = resource_of(object)?;
        let api: Api<DynamicObject> = match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let name = render::name_of(object);
        let params = PatchParams::apply(FIELD_MANAGER).validation(ValidationDirective::Strict);
        api.patch(&name, &params, &Patch::Apply(object))
            .await
            .map(|_| ())
            .map_err(|e| backend(format!("applying {} {name}: {}", resource.kind, said(e))))
    }
}

#[async_trait]
impl ClusterProvisioner for CapiProvisioner {
    fn backend_name(&self) -> &'static str {
        "cluster-api"
    }

    /// Also starts the watches, so that changes reach the platform from the start.
    async fn preflight(&self) -> Result<()> {
        self.watches().await.map(|_| ())
    }

    async fn apply(&self, request: &ClusterRequest) -> Result<()> {
        let versions = self.versions().await?;
        let names = Names::of(&self.layout, request);
        // A Cluster of that name made by anyone else is never touched.
        let clusters: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &names.namespace,
            &resource("cluster.x-k8s.io", versions.cluster_api.as_str(), "Cluster", "clusters"),
        );
        if let Ok(Some(existing)) = clusters.get_opt(&names.cluster).await {
            let id = existing.metadata.labels.as_ref().and_then(|l| l.get(CLUSTER_ID_LABEL)).cloned();
            if id != Some(request.id.to_string()) {
                return Err(Error::already_exists("cluster", &request.name));
            }
        }
        self.apply_object(None, &render::namespace(&self.layout, request.owner.as_str())).await?;
        for object in render::cluster_objects(&self.layout, versions, request) {
            self.apply_object(Some(&names.namespace), &object).await?;
        }
        // The preflight started the watches that follow it (the server runs it at start).
        Ok(())
    }

    async fn observe(&self, cluster: &ClusterRef) -> Result<Option<ClusterObservation>> {
        let watches = self.watches().await?;
        let Some(object) = Self::cached_cluster(watches, cluster) else { return Ok(None) };
        let machines = Self::cached_machines(watches, cluster);
        let workers = object["metadata"]["annotations"][render::WORKERS_ANNOTATION]
            .as_str()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        let mut addresses: Vec<std::net::Ipv4Addr> = machines
            .iter()
            .flat_map(|m| m["status"]["addresses"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["type"] == "InternalIP")
            .filter_map(|a| a["address"].as_str()?.parse().ok())
            .collect();
        addresses.sort();
        addresses.dedup();
        let mut observation = status::observe(&object, &machines, &addresses, workers);
        if observation.health == ClusterHealth::Deleting {
            let since = object["metadata"]["deletionTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
            if since.is_some_and(|since| chrono::Utc::now() - since > STUCK_AFTER) {
                let names = self.names(cluster);
                observation.reason = Some(format!(
                    "{}. If its VMs were removed from vCenter by hand, CAPV waits for them forever: an administrator removes the \
                     finalizers of its VSphereVM objects (kubectl -n {} patch vspherevm NAME --type merge -p \
                     '{{\"metadata\":{{\"finalizers\":null}}}}')",
                    observation.reason.unwrap_or_default(),
                    names.namespace
                ));
            }
        }
        Ok(Some(observation))
    }

    async fn kubeconfig(&self, cluster: &ClusterRef) -> Result<Option<String>> {
        let watches = self.watches().await?;
        if Self::cached_cluster(watches, cluster).is_none() {
            return Ok(None);
        }
        let names = self.names(cluster);
        let secrets: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &names.namespace, &resource("", "v1", "Secret", "secrets"));
        let Some(secret) =
            secrets.get_opt(&format!("{}-kubeconfig", names.cluster)).await.map_err(|e| backend(said(e)))?
        else {
            return Ok(None);
        };
        let encoded = secret.data["data"]["value"].as_str().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|error| backend(format!("the kubeconfig Secret of {} is not base64: {error}", names.cluster)))?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| backend(format!("the kubeconfig of {} is not text", names.cluster)))
    }

    async fn delete(&self, cluster: &ClusterRef) -> Result<Removal> {
        let versions = self.versions().await?;
        let watches = self.watches().await?;
        let names = self.names(cluster);
        let cluster_api = versions.cluster_api.as_str();
        if let Some(object) = Self::cached_cluster(watches, cluster) {
            if object["metadata"]["deletionTimestamp"].is_null() {
                let clusters: Api<DynamicObject> = Api::namespaced_with(
                    self.client.clone(),
                    &names.namespace,
                    &resource("cluster.x-k8s.io", cluster_api, "Cluster", "clusters"),
                );
                match clusters.delete(&names.cluster, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(error) => return Err(backend(format!("deleting Cluster {}: {}", names.cluster, said(error)))),
                }
            }
            let reason = self.observe(cluster).await?.and_then(|o| o.reason);
            return Ok(Removal::Waiting(reason.unwrap_or_else(|| "Cluster API is deleting the cluster".into())));
        }
        // The Cluster is gone: remove what Cluster API does not own (the pool last, once no
        // machine holds an address).
        let selector = format!("{CLUSTER_ID_LABEL}={}", cluster.id);
        let vsphere = versions.vsphere.as_str();
        let leftovers = [
            resource("addons.cluster.x-k8s.io", cluster_api, "ClusterResourceSet", "clusterresourcesets"),
            resource("", "v1", "Secret", "secrets"),
            resource("bootstrap.cluster.x-k8s.io", cluster_api, "KubeadmConfigTemplate", "kubeadmconfigtemplates"),
            resource("infrastructure.cluster.x-k8s.io", vsphere, "VSphereMachineTemplate", "vspheremachinetemplates"),
            resource("ipam.cluster.x-k8s.io", "v1alpha2", "InClusterIPPool", "inclusterippools"),
        ];
        // Objects without finalizers go at once: a second look tells.
        let mut remaining = Vec::new();
        for pass in 0..2 {
            remaining.clear();
            for resource in &leftovers {
                let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &names.namespace, resource);
                let found = match api.list(&ListParams::default().labels(&selector)).await {
                    Ok(list) => list.items,
                    Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
                    Err(error) => return Err(backend(format!("listing {}: {}", resource.kind, said(error)))),
                };
                for object in found {
                    let name = object.metadata.name.clone().unwrap_or_default();
                    remaining.push(format!("{} {name}", resource.kind));
                    if pass == 0 {
                        match api.delete(&name, &DeleteParams::default()).await {
                            Ok(_) => {}
                            Err(kube::Error::Api(status)) if status.code == 404 => {}
                            Err(error) => {
                                return Err(backend(format!("deleting {} {name}: {}", resource.kind, said(error))))
                            }
                        }
                    }
                }
            }
            if remaining.is_empty() {
                return Ok(Removal::Gone);
            }
        }
        Ok(Removal::Waiting(format!("removing {}", remaining.join(", "))))
    }

    async fn changed(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = self.pending.notified() => {}
            }
        })
        .await;
    }
}

/// The VSphereClusterIdentity an administrator creates once, allowing every owner's namespace.
pub fn identity(layout: &Layout, version: ApiVersion, secret: &str) -> Value {
    json!({
        "apiVersion": format!("infrastructure.cluster.x-k8s.io/{}", version.as_str()),
        "kind": "VSphereClusterIdentity",
        "metadata": {"name": layout.identity},
        "spec": {
            "secretName": secret,
            "allowedNamespaces": {"selector": {"matchExpressions": [{"key": OWNER_LABEL, "operator": "Exists"}]}},
        },
    })
}
