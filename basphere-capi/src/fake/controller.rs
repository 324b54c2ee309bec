//! The simulated Cluster API controller: each cluster's infrastructure, control plane and
//! workers become ready one step after another; machines take the lowest free address of their
//! cluster's pool and give it back when they go; the kubeconfig Secret appears once the control
//! plane is initialised; a deleted cluster goes one step later, with its machines.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{FakeManagementCluster, Key, State};

/// What a test makes the next cluster of a name do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// Its machines' VMs fail to clone (a missing template, say).
    Fail { reason: String, message: String },
    /// Its machines wait forever (for an address, say).
    Stall { reason: String, message: String },
    /// Its deletion never finishes (VMs removed from vCenter behind CAPV's back, say).
    StuckDelete { message: String },
}

const CLUSTER_GROUP: &str = "cluster.x-k8s.io";
const CONTROL_PLANE_LABEL: &str = "cluster.x-k8s.io/control-plane";
const CLUSTER_NAME_LABEL: &str = "cluster.x-k8s.io/cluster-name";
const FINALIZER: &str = "cluster.cluster.x-k8s.io";

#[derive(Default)]
struct Memory {
    /// When each object (by uid) was first seen, or its deletion.
    seen: HashMap<String, Instant>,
    deleting: HashMap<String, Instant>,
    faults: HashMap<String, Fault>,
}

pub(super) async fn run(fake: Arc<FakeManagementCluster>) {
    let tick = (fake.step / 4).max(Duration::from_millis(10));
    let mut memory = Memory::default();
    loop {
        tokio::time::sleep(tick).await;
        let mut state = fake.lock();
        reconcile(&fake, &mut state, &mut memory);
    }
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap_or_default().to_owned()
}

fn list(state: &State, group: &str, plural: &str, namespace: &str) -> Vec<Value> {
    state
        .objects
        .iter()
        .filter(|((g, p, ns, _), _)| g == group && p == plural && ns == namespace)
        .map(|(_, v)| v.clone())
        .collect()
}

fn get(state: &State, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
    state.objects.get(&(group.to_owned(), plural.to_owned(), namespace.to_owned(), name.to_owned())).cloned()
}

fn put(fake: &FakeManagementCluster, state: &mut State, group: &str, plural: &str, object: Value) {
    let key: Key = super::key_of(group, plural, &object);
    let kind = if state.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
    if state.objects.get(&key) != Some(&object) {
        fake.record(state, kind, group, plural, object);
    }
}

fn remove(fake: &FakeManagementCluster, state: &mut State, group: &str, plural: &str, namespace: &str, name: &str) {
    let key: Key = (group.into(), plural.into(), namespace.into(), name.into());
    if let Some(object) = state.objects.remove(&key) {
        fake.record(state, "DELETED", group, plural, object);
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A condition, keeping its transition time while its status stays.
fn condition(previous: &Value, kind: &str, ok: bool, reason: &str, message: &str, v1beta1: bool) -> Value {
    let status = if ok { "True" } else { "False" };
    let since = previous["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind && c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned))
        .unwrap_or_else(now);
    let mut condition = json!({"type": kind, "status": status, "lastTransitionTime": since});
    if !reason.is_empty() {
        condition["reason"] = json!(reason);
    }
    if !message.is_empty() {
        condition["message"] = json!(message);
    }
    if v1beta1 && !ok {
        condition["severity"] = json!("Info");
    }
    condition
}

fn steps(fake: &FakeManagementCluster, since: Instant) -> u32 {
    (since.elapsed().as_millis() / fake.step.as_millis().max(1)).min(1000) as u32
}

fn reconcile(fake: &FakeManagementCluster, state: &mut State, memory: &mut Memory) {
    let clusters: Vec<Value> = state
        .objects
        .iter()
        .filter(|((g, p, _, _), _)| g == CLUSTER_GROUP && p == "clusters")
        .map(|(_, v)| v.clone())
        .collect();
    for cluster in clusters {
        let id = uid(&cluster);
        if !memory.seen.contains_key(&id) {
            memory.seen.insert(id.clone(), Instant::now());
            let name = cluster["metadata"]["name"].as_str().unwrap_or_default();
            if let Some(fault) = state.faults.remove(name) {
                memory.faults.insert(id.clone(), fault);
            }
        }
        if cluster["metadata"]["deletionTimestamp"].is_string() {
            delete_cluster(fake, state, memory, cluster);
        } else {
            build_cluster(fake, state, memory, cluster);
        }
    }
}

fn pool_of(state: &State, namespace: &str, cluster: &str) -> Option<(String, Vec<Ipv4Addr>)> {
    list(state, "ipam.cluster.x-k8s.io", "inclusterippools", namespace)
        .into_iter()
        .find(|p| p["metadata"]["labels"][CLUSTER_NAME_LABEL] == cluster)
        .map(|p| {
            let addresses = p["spec"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect();
            (p["metadata"]["name"].as_str().unwrap_or_default().to_owned(), addresses)
        })
}

fn machine_address(machine: &Value) -> Option<Ipv4Addr> {
    machine["status"]["addresses"][0]["address"].as_str().and_then(|a| a.parse().ok())
}

fn build_cluster(fake: &FakeManagementCluster, state: &mut State, memory: &mut Memory, mut cluster: Value) {
    let id = uid(&cluster);
    let namespace = cluster["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
    let name = cluster["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let version = cluster["apiVersion"].as_str().unwrap_or_default().to_owned();
    let v1beta1 = version.ends_with("v1beta1");
    let stage = steps(fake, memory.seen[&id]);
    let fault = memory.faults.get(&id).cloned();

    let finalizers = cluster["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        cluster["metadata"]["finalizers"] = json!([FINALIZER]);
    }
    let control_plane_name = cluster["spec"]["controlPlaneRef"]["name"].as_str().unwrap_or_default().to_owned();
    let control_plane =
        get(state, "controlplane.cluster.x-k8s.io", "kubeadmcontrolplanes", &namespace, &control_plane_name);
    let infrastructure = get(state, "infrastructure.cluster.x-k8s.io", "vsphereclusters", &namespace, &name);
    let deployments: Vec<Value> = list(state, CLUSTER_GROUP, "machinedeployments", &namespace)
        .into_iter()
        .filter(|d| d["spec"]["clusterName"] == name.as_str())
        .collect();
    let infrastructure_ready = stage >= 1 && infrastructure.is_some();
    let want_control_plane = if infrastructure_ready {
        control_plane.as_ref().and_then(|c| c["spec"]["replicas"].as_u64()).unwrap_or(0)
    } else {
        0
    };

    // Machines: create what is missing, remove what is too many.
    let machines: Vec<Value> = list(state, CLUSTER_GROUP, "machines", &namespace)
        .into_iter()
        .filter(|m| m["metadata"]["labels"][CLUSTER_NAME_LABEL] == name.as_str())
        .collect();
    let (cp_machines, worker_machines): (Vec<Value>, Vec<Value>) =
        machines.into_iter().partition(|m| m["metadata"]["labels"].get(CONTROL_PLANE_LABEL).is_some());
    let pool = pool_of(state, &namespace, &name);
    let make = |state: &mut State, memory: &mut Memory, labels: Value, prefix: &str| {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let machine_name = format!("{prefix}-{}", &suffix[..5]);
        let machine = json!({
            "apiVersion": version,
            "kind": "Machine",
            "metadata": {"name": machine_name, "namespace": namespace, "labels": labels, "uid": suffix, "creationTimestamp": now()},
            "spec": {"clusterName": name},
            "status": {},
        });
        memory.seen.insert(suffix, Instant::now());
        put(fake, state, CLUSTER_GROUP, "machines", machine);
    };
    if let Some(control_plane) = &control_plane {
        for _ in cp_machines.len() as u64..want_control_plane {
            let mut labels = control_plane["spec"]["machineTemplate"]["metadata"]["labels"].clone();
            labels[CLUSTER_NAME_LABEL] = json!(name);
            labels[CONTROL_PLANE_LABEL] = json!("");
            make(state, memory, labels, &control_plane_name);
        }
    }
    let cp_ready_count = cp_machines.iter().filter(|m| m["status"]["nodeRef"].is_object()).count() as u64;
    let control_plane_available = want_control_plane > 0 && cp_ready_count >= want_control_plane;
    let mut want_workers = 0;
    for deployment in &deployments {
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
        want_workers += replicas;
        let deployment_name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let mine: Vec<&Value> = worker_machines
            .iter()
            .filter(|m| m["metadata"]["labels"]["cluster.x-k8s.io/deployment-name"] == deployment_name)
            .collect();
        let live: Vec<&&Value> = mine.iter().filter(|m| m["metadata"]["deletionTimestamp"].is_null()).collect();
        if control_plane_available && stage >= 3 {
            for _ in live.len() as u64..replicas {
                let mut labels = deployment["spec"]["template"]["metadata"]["labels"].clone();
                labels[CLUSTER_NAME_LABEL] = json!(name);
                labels["cluster.x-k8s.io/deployment-name"] = json!(deployment_name);
                make(state, memory, labels, &format!("{deployment_name}-{}", &id[..id.len().min(6)]));
            }
        }
        // Scale down: the newest go first, one step after they are marked.
        let mut surplus: Vec<&&Value> = live.clone();
        surplus.sort_by_key(|m| {
            std::cmp::Reverse(m["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_owned())
        });
        for machine in surplus.into_iter().take(live.len().saturating_sub(replicas as usize)) {
            let mut marked = (**machine).clone();
            marked["metadata"]["deletionTimestamp"] = json!(now());
            memory.deleting.insert(uid(&marked), Instant::now());
            put(fake, state, CLUSTER_GROUP, "machines", marked);
        }
    }
    // Machines being removed go one step later, with their address.
    for machine in cp_machines.iter().chain(&worker_machines) {
        if machine["metadata"]["deletionTimestamp"].is_string() {
            let since = *memory.deleting.entry(uid(machine)).or_insert_with(Instant::now);
            if steps(fake, since) >= 1 {
                remove_machine(fake, state, &namespace, pool.as_ref().map(|p| p.0.as_str()), machine);
            }
        }
    }

    // Each live machine: an address, then (one step later) a node.
    let machines: Vec<Value> = list(state, CLUSTER_GROUP, "machines", &namespace)
        .into_iter()
        .filter(|m| {
            m["metadata"]["labels"][CLUSTER_NAME_LABEL] == name.as_str() && m["metadata"]["deletionTimestamp"].is_null()
        })
        .collect();
    for machine in &machines {
        let mut updated = machine.clone();
        let age = steps(fake, *memory.seen.entry(uid(machine)).or_insert_with(Instant::now));
        let problem: Option<(String, String, bool)> = match &fault {
            Some(Fault::Fail { reason, message }) => Some((reason.clone(), message.clone(), true)),
            Some(Fault::Stall { reason, message }) => Some((reason.clone(), message.clone(), false)),
            _ => None,
        };
        let mut address = machine_address(machine);
        if address.is_none() && problem.is_none() {
            if let Some((pool_name, addresses)) = &pool {
                let held = state.allocations.entry((namespace.clone(), pool_name.clone())).or_default();
                if let Some(free) = addresses.iter().find(|a| !held.contains(a)) {
                    held.insert(*free);
                    address = Some(*free);
                }
            }
        }
        let ready = problem.is_none() && address.is_some() && age >= 1;
        let mut conditions = Vec::new();
        match (&problem, address) {
            (Some((reason, message, fatal)), _) => {
                let mut c = condition(machine, "InfrastructureReady", false, reason, message, v1beta1);
                if *fatal && v1beta1 {
                    c["severity"] = json!("Error");
                }
                conditions.push(c);
            }
            (None, None) => conditions.push(condition(
                machine,
                "InfrastructureReady",
                false,
                "WaitingForIPAddress",
                "no free address in the pool",
                v1beta1,
            )),
            (None, Some(_)) => conditions.push(condition(machine, "InfrastructureReady", true, "", "", v1beta1)),
        }
        conditions.push(condition(machine, "Ready", ready, if ready { "" } else { "WaitingForNode" }, "", v1beta1));
        if !v1beta1 {
            conditions.push(condition(machine, "Available", ready, if ready { "" } else { "NotReady" }, "", false));
        }
        let mut status =
            json!({"conditions": conditions, "infrastructureReady": address.is_some() && problem.is_none()});
        if let Some(address) = address {
            status["addresses"] = json!([{"type": "InternalIP", "address": address.to_string()}]);
        }
        if ready {
            status["nodeRef"] = json!({"kind": "Node", "name": machine["metadata"]["name"]});
            status["phase"] = json!("Running");
        } else {
            status["phase"] = json!("Provisioning");
        }
        updated["status"] = status;
        put(fake, state, CLUSTER_GROUP, "machines", updated);
    }

    let count = |control: bool| {
        machines
            .iter()
            .filter(|m| {
                (m["metadata"]["labels"].get(CONTROL_PLANE_LABEL).is_some()) == control
                    && m["status"]["nodeRef"].is_object()
            })
            .count() as u64
    };
    let (cp_ready, workers_ready) = (count(true), count(false));
    let all_workers =
        machines.iter().filter(|m| m["metadata"]["labels"].get(CONTROL_PLANE_LABEL).is_none()).count() as u64;
    let initialized = cp_ready > 0;
    let cp_available = initialized && cp_ready >= want_control_plane && stage >= 2;
    let workers_available = cp_available && workers_ready >= want_workers && all_workers == want_workers;
    let available = infrastructure_ready && cp_available && workers_available;

    if initialized {
        let host = infrastructure
            .as_ref()
            .and_then(|i| i["spec"]["controlPlaneEndpoint"]["host"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let kubeconfig = basphere_core::mock::simulated_kubeconfig(&name, &host);
        let secret_name = format!("{name}-kubeconfig");
        if get(state, "", "secrets", &namespace, &secret_name).is_none() {
            let secret = json!({
                "apiVersion": "v1", "kind": "Secret", "type": "cluster.x-k8s.io/secret",
                "metadata": {"name": secret_name, "namespace": namespace, "labels": {CLUSTER_NAME_LABEL: name}, "uid": uuid::Uuid::new_v4().to_string()},
                "data": {"value": base64::engine::general_purpose::STANDARD.encode(kubeconfig)},
            });
            put(fake, state, "", "secrets", secret);
        }
        if let Some(host) = infrastructure.as_ref().map(|i| i["spec"]["controlPlaneEndpoint"].clone()) {
            cluster["spec"]["controlPlaneEndpoint"] = host;
        }
    }

    fn waiting(ok: bool, reason: &'static str) -> &'static str {
        if ok {
            ""
        } else {
            reason
        }
    }
    let status = if v1beta1 {
        json!({
            "phase": if infrastructure_ready { "Provisioned" } else { "Provisioning" },
            "infrastructureReady": infrastructure_ready,
            "controlPlaneReady": cp_available,
            "conditions": [
                condition(&cluster, "Ready", available, waiting(available, "WaitingForControlPlane"), "", true),
                condition(&cluster, "ControlPlaneInitialized", initialized, waiting(initialized, "WaitingForControlPlaneProviderInitialized"), "", true),
                condition(&cluster, "ControlPlaneReady", cp_available, waiting(cp_available, "WaitingForControlPlane"), "", true),
                condition(&cluster, "InfrastructureReady", infrastructure_ready, waiting(infrastructure_ready, "WaitingForInfrastructure"), "", true),
            ],
        })
    } else {
        json!({
            "phase": if infrastructure_ready { "Provisioned" } else { "Provisioning" },
            "initialization": {"infrastructureProvisioned": infrastructure_ready, "controlPlaneInitialized": initialized},
            "controlPlane": {"desiredReplicas": want_control_plane, "readyReplicas": cp_ready},
            "workers": {"desiredReplicas": want_workers, "readyReplicas": workers_ready},
            "conditions": [
                condition(&cluster, "Available", available, waiting(available, "NotAvailable"), "", false),
                condition(&cluster, "InfrastructureReady", infrastructure_ready, waiting(infrastructure_ready, "NotReady"), "", false),
                condition(&cluster, "ControlPlaneInitialized", initialized, waiting(initialized, "NotInitialized"), "", false),
                condition(&cluster, "ControlPlaneAvailable", cp_available, waiting(cp_available, "NotAvailable"), "", false),
                condition(&cluster, "WorkersAvailable", workers_available, waiting(workers_available, "NotAvailable"), "", false),
            ],
        })
    };
    cluster["status"] = status;
    put(fake, state, CLUSTER_GROUP, "clusters", cluster);
}

/// Removes a machine and gives its address back to its pool.
fn remove_machine(
    fake: &FakeManagementCluster,
    state: &mut State,
    namespace: &str,
    pool: Option<&str>,
    machine: &Value,
) {
    if let (Some(pool), Some(address)) = (pool, machine_address(machine)) {
        if let Some(held) = state.allocations.get_mut(&(namespace.to_owned(), pool.to_owned())) {
            held.remove(&address);
        }
    }
    remove(fake, state, CLUSTER_GROUP, "machines", namespace, machine["metadata"]["name"].as_str().unwrap_or_default());
}

fn delete_cluster(fake: &FakeManagementCluster, state: &mut State, memory: &mut Memory, cluster: Value) {
    let id = uid(&cluster);
    let namespace = cluster["metadata"]["namespace"].as_str().unwrap_or_default().to_owned();
    let name = cluster["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let since = *memory.deleting.entry(id.clone()).or_insert_with(Instant::now);
    let machines: Vec<Value> = list(state, CLUSTER_GROUP, "machines", &namespace)
        .into_iter()
        .filter(|m| m["metadata"]["labels"][CLUSTER_NAME_LABEL] == name.as_str())
        .collect();
    let stuck = match memory.faults.get(&id) {
        Some(Fault::StuckDelete { message }) => Some(message.clone()),
        _ => None,
    };
    let message = stuck.clone().unwrap_or_else(|| format!("waiting for {} machines to be deleted", machines.len()));
    let v1beta1 = cluster["apiVersion"].as_str().unwrap_or_default().ends_with("v1beta1");
    let mut updated = cluster.clone();
    updated["status"]["phase"] = json!("Deleting");
    let mut conditions: Vec<Value> = cluster["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.retain(|c| c["type"] != "Deleting");
    conditions.push(condition(&cluster, "Deleting", true, "WaitingForMachinesDeletion", &message, v1beta1));
    if v1beta1 {
        // v1beta1 has no Deleting condition: it goes with the newer conditions.
        conditions.pop();
        updated["status"]["v1beta2"]["conditions"] =
            json!([condition(&cluster, "Deleting", true, "WaitingForMachinesDeletion", &message, false)]);
    }
    updated["status"]["conditions"] = json!(conditions);
    put(fake, state, CLUSTER_GROUP, "clusters", updated);
    if stuck.is_some() || steps(fake, since) < 1 {
        return;
    }
    // Cluster API removes the machines and what the cluster owns, then the cluster.
    let pool = pool_of(state, &namespace, &name).map(|p| p.0);
    for machine in &machines {
        remove_machine(fake, state, &namespace, pool.as_deref(), machine);
    }
    let owned: Vec<(String, String, String)> = state
        .objects
        .iter()
        .filter(|((g, p, ns, _), object)| {
            ns == &namespace
                && object["metadata"]["labels"][CLUSTER_NAME_LABEL] == name.as_str()
                && matches!(
                    (g.as_str(), p.as_str()),
                    ("controlplane.cluster.x-k8s.io", "kubeadmcontrolplanes")
                        | (CLUSTER_GROUP, "machinedeployments")
                        | ("infrastructure.cluster.x-k8s.io", "vsphereclusters")
                        | ("", "secrets")
                )
                && !(p == "secrets" && object["type"] == "addons.cluster.x-k8s.io/resource-set")
        })
        .map(|((g, p, _, n), _)| (g.clone(), p.clone(), n.clone()))
        .collect();
    for (group, plural, object_name) in owned {
        remove(fake, state, &group, &plural, &namespace, &object_name);
    }
    remove(fake, state, CLUSTER_GROUP, "clusters", &namespace, &name);
    memory.deleting.remove(&id);
    memory.faults.remove(&id);
}
