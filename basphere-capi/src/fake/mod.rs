//! A simulated management cluster: a Kubernetes API server good enough for Basphere's client
//! (discovery, namespaces, server-side apply with a field manager, get, list and watch with
//! resource versions, delete with finalizers), which answers only requests with the bearer
//! token of its kubeconfig and refuses what the API server, the CRD schemas and the providers'
//! webhooks refuse, and a simulated Cluster API controller that moves clusters through their
//! conditions (with Cluster API's reasons), hands out node addresses from the pools, writes the
//! kubeconfig Secret, honours deletion after a delay, and stalls or fails on request.
//!
//! The server runs it in-process as its default cluster backend (reached through a kubeconfig,
//! like a real one), tests drive it, and `cargo xtask bench clusters` counts its requests.

mod controller;
mod http;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::client::{CapiProvisioner, VersionChoice};
use crate::layout::Layout;
use crate::schema::Schemas;

pub use controller::Fault;

/// Where an object lives: `(group, plural, namespace, name)`; the core group is `""`.
pub type Key = (String, String, String, String);

/// One change, as a watch reports it.
#[derive(Clone, Debug)]
pub struct Event {
    pub resource_version: u64,
    pub kind: &'static str,
    pub group: String,
    pub plural: String,
    pub object: Value,
}

/// A kind the server knows.
#[derive(Clone, Debug)]
pub struct Resource {
    pub group: String,
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
}

/// What the server has served, for tests and the bench.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub discovery: u64,
    pub get: u64,
    pub list: u64,
    pub watch: u64,
    pub apply: u64,
    pub delete: u64,
    /// Applies that asked to force ownership of fields (Basphere never should).
    pub forced: u64,
}

impl Requests {
    /// Everything but the long-lived watches.
    pub fn calls(&self) -> u64 {
        self.discovery + self.get + self.list + self.apply + self.delete
    }
}

/// One write asked of the server, accepted or not, for tests: what a client did, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Apply(Key),
    Delete(Key),
}

pub(crate) struct State {
    pub objects: BTreeMap<Key, Value>,
    pub resource_version: u64,
    /// Recent changes, for watches that resume from a resource version.
    pub events: VecDeque<Event>,
    pub requests: Requests,
    /// The latest writes asked, oldest first.
    pub writes: VecDeque<Write>,
    /// Node addresses the simulated machines hold, by pool `(namespace, name)`.
    pub allocations: BTreeMap<(String, String), BTreeSet<Ipv4Addr>>,
    pub faults: BTreeMap<String, Fault>,
    /// Served versions per group (a test may hide v1beta2 to act like an older cluster).
    pub hidden: BTreeSet<(String, String)>,
    /// Whether the pools' CRD has `addressReuseGracePeriodSeconds` (an older provider has not).
    pub pool_reuse_grace: bool,
}

impl State {
    /// Notes a write asked of the server.
    pub(crate) fn asked(&mut self, write: Write) {
        self.writes.push_back(write);
        while self.writes.len() > WRITES_KEPT {
            self.writes.pop_front();
        }
    }
}

const EVENTS_KEPT: usize = 20_000;
const WRITES_KEPT: usize = 20_000;

/// The simulated management cluster.
pub struct FakeManagementCluster {
    pub(crate) state: Mutex<State>,
    pub(crate) changes: broadcast::Sender<Event>,
    pub(crate) schemas: Schemas,
    pub(crate) resources: Vec<Resource>,
    /// How long each step of a simulated cluster takes.
    pub(crate) step: Duration,
    journal: Option<PathBuf>,
    /// The bearer token every request must carry (its kubeconfig's), random per instance.
    token: String,
}

impl FakeManagementCluster {
    /// A management cluster whose simulated clusters take `step` per condition.
    pub fn new(step: Duration) -> Arc<Self> {
        Self::build(step, None)
    }

    /// Like [`new`](Self::new), keeping its objects in `path` across restarts.
    pub fn with_journal(step: Duration, path: PathBuf) -> std::io::Result<Arc<Self>> {
        let fake = Self::build(step, Some(path.clone()));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let saved: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
                })?;
                let mut state = fake.lock();
                state.resource_version = saved["resourceVersion"].as_u64().unwrap_or(1);
                for entry in saved["objects"].as_array().into_iter().flatten() {
                    let key: Key = serde_json::from_value(entry["key"].clone()).unwrap_or_default();
                    state.objects.insert(key, entry["object"].clone());
                }
                for entry in saved["allocations"].as_array().into_iter().flatten() {
                    let pool: (String, String) = serde_json::from_value(entry["pool"].clone()).unwrap_or_default();
                    let addresses: BTreeSet<Ipv4Addr> =
                        serde_json::from_value(entry["addresses"].clone()).unwrap_or_default();
                    state.allocations.insert(pool, addresses);
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        Ok(fake)
    }

    fn build(step: Duration, journal: Option<PathBuf>) -> Arc<Self> {
        let (schemas, crds) = Schemas::load_with_crds();
        let mut resources: Vec<Resource> = schemas
            .kinds
            .iter()
            .map(|k| Resource {
                group: k.group.clone(),
                versions: k.versions.clone(),
                kind: k.kind.clone(),
                plural: k.plural.clone(),
                namespaced: k.namespaced,
            })
            .collect();
        let core = |kind: &str, plural: &str, namespaced| Resource {
            group: String::new(),
            versions: vec!["v1".into()],
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
        };
        resources.push(core("Namespace", "namespaces", false));
        resources.push(core("Secret", "secrets", true));
        resources.push(Resource {
            group: "apiextensions.k8s.io".into(),
            versions: vec!["v1".into()],
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
            namespaced: false,
        });
        let (changes, _) = broadcast::channel(4096);
        let fake = Arc::new(FakeManagementCluster {
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                resource_version: 1,
                events: VecDeque::new(),
                requests: Requests::default(),
                writes: VecDeque::new(),
                allocations: BTreeMap::new(),
                faults: BTreeMap::new(),
                hidden: BTreeSet::new(),
                pool_reuse_grace: true,
            }),
            changes,
            schemas,
            resources,
            step,
            journal,
            // 244 random bits from the operating system's generator (UUID v4 uses getrandom).
            token: format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()),
        });
        // The CRDs themselves, as apiextensions serves them.
        {
            let mut state = fake.lock();
            for (kind, mut crd) in fake.schemas.kinds.iter().zip(crds) {
                crd["metadata"]["resourceVersion"] = json!("1");
                let name = format!("{}.{}", kind.plural, kind.group);
                state.objects.insert(
                    ("apiextensions.k8s.io".into(), "customresourcedefinitions".into(), String::new(), name),
                    crd,
                );
            }
        }
        fake
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serves the API on `address` (port 0: any free one) and runs the simulated controller.
    /// Returns the address it listens on; both stop when `stop` is dropped.
    pub async fn serve(self: &Arc<Self>, address: SocketAddr) -> std::io::Result<(SocketAddr, Running)> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let local = listener.local_addr()?;
        let app = http::router(self.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let controller = tokio::spawn(controller::run(self.clone()));
        Ok((local, Running { tasks: vec![server, controller] }))
    }

    /// A kubeconfig that reaches this server at `address` over plain HTTP, with its token: keep
    /// it where only its user can read it (the server writes it with mode 0600).
    pub fn kubeconfig(&self, address: SocketAddr) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: simulated\n  cluster:\n    server: http://{address}\n\
             contexts:\n- name: basphere@simulated\n  context:\n    cluster: simulated\n    user: basphere\n\
             current-context: basphere@simulated\nusers:\n- name: basphere\n  user:\n    token: {}\n",
            self.token
        )
    }

    /// A client of this management cluster served at `address`, as a Basphere process reaches
    /// it: through its kubeconfig, written to `path` readable by this user only.
    pub async fn connect(
        &self,
        address: SocketAddr,
        path: &Path,
        layout: Layout,
        choice: VersionChoice,
    ) -> basphere_core::Result<CapiProvisioner> {
        crate::write_private(path, &self.kubeconfig(address)).map_err(|error| {
            basphere_core::Error::backend("simulated management cluster", format!("writing its kubeconfig: {error}"))
        })?;
        CapiProvisioner::connect(path, layout, choice).await
    }

    /// Whether an `Authorization` header carries this server's token. Both sides are hashed
    /// first and compared without stopping at the first difference, so the time taken tells
    /// nothing about the token.
    pub(crate) fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        use sha2::{Digest, Sha256};
        let Some(presented) = authorization.and_then(|value| value.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let presented = Sha256::digest(presented);
        let expected = Sha256::digest(self.token.as_bytes());
        presented.iter().zip(expected.iter()).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
    }

    /// The VSphereClusterIdentity an administrator would create, allowing owners' namespaces.
    pub fn install_identity(&self, name: &str) {
        let mut state = self.lock();
        let key: Key =
            ("infrastructure.cluster.x-k8s.io".into(), "vsphereclusteridentities".into(), String::new(), name.into());
        if state.objects.contains_key(&key) {
            return;
        }
        let identity = json!({
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1",
            "kind": "VSphereClusterIdentity",
            "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string()},
            "spec": {
                "secretName": "basphere-vcenter",
                "allowedNamespaces": {"selector": {"matchExpressions": [{"key": crate::render::OWNER_LABEL, "operator": "Exists"}]}},
            },
        });
        self.record(&mut state, "ADDED", "infrastructure.cluster.x-k8s.io", "vsphereclusteridentities", identity);
    }

    /// Every change from now on, as the watches see them.
    pub fn changes(&self) -> broadcast::Receiver<Event> {
        self.changes.subscribe()
    }

    /// What has been served so far.
    pub fn requests(&self) -> Requests {
        self.lock().requests
    }

    /// The applies and deletes asked so far (the latest 20,000), oldest first, whether the server
    /// took them or not.
    pub fn writes(&self) -> Vec<Write> {
        self.lock().writes.iter().cloned().collect()
    }

    /// The next cluster named `name` suffers `fault`.
    pub fn inject(&self, name: &str, fault: Fault) {
        self.lock().faults.insert(name.to_owned(), fault);
    }

    /// Serves only v1beta1 of `group` (an older release), or stops serving a kind's group
    /// altogether with `""`.
    pub fn hide_version(&self, group: &str, version: &str) {
        self.lock().hidden.insert((group.to_owned(), version.to_owned()));
    }

    /// Acts like an in-cluster IPAM provider older than `addressReuseGracePeriodSeconds`.
    pub fn without_pool_reuse_grace(&self) {
        let mut state = self.lock();
        state.pool_reuse_grace = false;
        let key: Key = (
            "apiextensions.k8s.io".into(),
            "customresourcedefinitions".into(),
            String::new(),
            "inclusterippools.ipam.cluster.x-k8s.io".into(),
        );
        if let Some(crd) = state.objects.get_mut(&key) {
            for version in crd["spec"]["versions"].as_array_mut().into_iter().flatten() {
                if let Some(props) =
                    version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"].as_object_mut()
                {
                    props.remove("addressReuseGracePeriodSeconds");
                }
            }
        }
    }

    /// The objects of one kind (by plural), in one namespace or all (`None`), for tests.
    pub fn objects(&self, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((_, p, ns, _), _)| p == plural && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Node addresses the simulated machines hold in a pool.
    pub fn allocated(&self, namespace: &str, pool: &str) -> Vec<Ipv4Addr> {
        self.lock()
            .allocations
            .get(&(namespace.to_owned(), pool.to_owned()))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Removes an object as someone with cluster-admin rights would (finalizers and all), for
    /// tests of what happens behind Basphere's back.
    pub fn remove(&self, group: &str, plural: &str, namespace: &str, name: &str) -> bool {
        let key: Key = (group.into(), plural.into(), namespace.into(), name.into());
        let mut state = self.lock();
        match state.objects.remove(&key) {
            Some(object) => {
                self.record(&mut state, "DELETED", group, plural, object);
                true
            }
            None => false,
        }
    }

    /// Stamps a new resource version on `object` and tells the watches.
    pub(crate) fn record(
        &self,
        state: &mut State,
        kind: &'static str,
        group: &str,
        plural: &str,
        mut object: Value,
    ) -> Value {
        state.resource_version += 1;
        let version = state.resource_version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        if kind != "DELETED" {
            let key = key_of(group, plural, &object);
            state.objects.insert(key, object.clone());
        }
        let event = Event {
            resource_version: version,
            kind,
            group: group.into(),
            plural: plural.into(),
            object: object.clone(),
        };
        state.events.push_back(event.clone());
        while state.events.len() > EVENTS_KEPT {
            state.events.pop_front();
        }
        let _ = self.changes.send(event);
        self.save(state);
        object
    }

    fn save(&self, state: &State) {
        let Some(path) = &self.journal else { return };
        let objects: Vec<Value> = state
            .objects
            .iter()
            .filter(|((group, ..), _)| group != "apiextensions.k8s.io")
            .map(|(key, object)| json!({"key": key, "object": object}))
            .collect();
        let allocations: Vec<Value> =
            state.allocations.iter().map(|(pool, addresses)| json!({"pool": pool, "addresses": addresses})).collect();
        let saved = json!({"resourceVersion": state.resource_version, "objects": objects, "allocations": allocations});
        // It holds every cluster's kubeconfig Secret: readable by this user only.
        if let Err(error) = crate::write_private(path, &saved.to_string()) {
            tracing::warn!(path = %path.display(), %error, "saving the simulated management cluster failed");
        }
    }
}

pub(crate) fn key_of(group: &str, plural: &str, object: &Value) -> Key {
    (
        group.to_owned(),
        plural.to_owned(),
        object["metadata"]["namespace"].as_str().unwrap_or_default().to_owned(),
        object["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The running server and controller; dropping it stops both.
pub struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
