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

/// A condition, keeping its transition time while its status stays in `previous` (the
/// object's list of conditions of the same contract). As Cluster API writes them: a v1beta1
/// condition carries a reason, a message and a severity only when it is not true; a v1beta2
/// one (`metav1.Condition`) always has a reason, the one Cluster API uses, and a message,
/// which may be empty.
fn condition(previous: &Value, kind: &str, ok: bool, reason: &str, message: &str, v1beta1: bool) -> Value {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind && c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned))
        .unwrap_or_else(now);
    let mut condition = json!({"type": kind, "status": status, "lastTransitionTime": since});
    if v1beta1 {
        if !reason.is_empty() {
            condition["reason"] = json!(reason);
        }
        if !message.is_empty() {
            condition["message"] = json!(message);
        }
        if !ok {
            condition["severity"] = json!("Info");
        }
    } else {
        debug_assert!(!reason.is_empty(), "a v1beta2 condition has a reason: {kind}");
        condition["reason"] = json!(reason);
        condition["message"] = json!(message);
    }
    condition
}

/// The v1beta2 condition: `reason` when true, `not` with `message` when not.
fn v1beta2(previous: &Value, kind: &str, ok: bool, (reason, not): (&str, &str), message: &str) -> Value {
    if ok {
        condition(previous, kind, true, reason, "", false)
    } else {
        condition(previous, kind, false, not, message, false)
    }
}

/// The conditions of one contract an object has now (`status.conditions`), and its v1beta2
/// ones when it is read as v1beta1 (`status.v1beta2.conditions`).
fn conditions(object: &Value, v1beta1: bool) -> (Value, Value) {
    let status = &object["status"];
    if v1beta1 {
        (status["conditions"].clone(), status["v1beta2"]["conditions"].clone())
    } else {
        (Value::Null, status["conditions"].clone())
    }
}

/// When an object met for the first time was first seen: now, or long ago when it has a status
/// already, from before a restart (read back from the journal). A controller that restarts
/// does not set its clusters back: their machines keep their nodes.
fn first_seen(fake: &FakeManagementCluster, object: &Value) -> Instant {
    let now = Instant::now();
    if object["status"]["phase"].is_string() {
        now.checked_sub(fake.step * 1000).unwrap_or(now)
    } else {
        now
    }
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
            memory.seen.insert(id.clone(), first_seen(fake, &cluster));
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
        // What a real Machine refers to: its bootstrap config and its VSphereMachine, named
        // after it, in the reference shape of its contract.
        let reference = |group: &str, kind: &str| {
            if v1beta1 {
                json!({"apiVersion": format!("{group}/v1beta1"), "kind": kind, "name": machine_name})
            } else {
                json!({"apiGroup": group, "kind": kind, "name": machine_name})
            }
        };
        let machine = json!({
            "apiVersion": version,
            "kind": "Machine",
            "metadata": {"name": machine_name, "namespace": namespace, "labels": labels, "uid": suffix, "creationTimestamp": now()},
            "spec": {
                "clusterName": name,
                "bootstrap": {
                    "configRef": reference("bootstrap.cluster.x-k8s.io", "KubeadmConfig"),
                    "dataSecretName": machine_name,
                },
                "infrastructureRef": reference("infrastructure.cluster.x-k8s.io", "VSphereMachine"),
            },
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
        let age = steps(fake, *memory.seen.entry(uid(machine)).or_insert_with(|| first_seen(fake, machine)));
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
        let infrastructure_ready = address.is_some() && problem.is_none();
        // Why the infrastructure is not ready: the fault's words, or the address it waits for.
        let (infra_reason, infra_message, fatal) = match (&problem, address) {
            (Some((reason, message, fatal)), _) => (reason.clone(), message.clone(), *fatal),
            (None, None) => ("WaitingForIPAddress".to_owned(), "no free address in the pool".to_owned(), false),
            (None, Some(_)) => (String::new(), String::new(), false),
        };
        let (old, new) = conditions(machine, v1beta1);
        let mut v1beta2_conditions = vec![
            v1beta2(&new, "BootstrapConfigReady", true, ("Ready", "NotReady"), ""),
            if infrastructure_ready {
                condition(&new, "InfrastructureReady", true, "Ready", "", false)
            } else {
                condition(&new, "InfrastructureReady", false, &infra_reason, &infra_message, false)
            },
        ];
        let not_ready = if infrastructure_ready {
            "* NodeHealthy: Waiting for a Node with spec.providerID to exist".to_owned()
        } else {
            format!("* InfrastructureReady: {infra_message}")
        };
        v1beta2_conditions.push(v1beta2(&new, "Ready", ready, ("Ready", "NotReady"), &not_ready));
        v1beta2_conditions.push(v1beta2(
            &new,
            "Available",
            ready,
            ("Available", "NotReady"),
            "* Ready: Machine is not Ready",
        ));
        v1beta2_conditions.push(v1beta2(&new, "Deleting", false, ("", "NotDeleting"), ""));
        let mut status = if v1beta1 {
            // v1beta1's Ready sums up the bootstrap and the infrastructure, and carries the
            // reason and severity of the one that is not ready.
            let severity = if fatal { "Error" } else { "Info" };
            let mut infrastructure =
                condition(&old, "InfrastructureReady", infrastructure_ready, &infra_reason, &infra_message, true);
            let mut summary = condition(&old, "Ready", infrastructure_ready, &infra_reason, &infra_message, true);
            if !infrastructure_ready {
                infrastructure["severity"] = json!(severity);
                summary["severity"] = json!(severity);
            }
            let bootstrap = condition(&old, "BootstrapReady", true, "", "", true);
            json!({
                "conditions": [summary, bootstrap, infrastructure],
                "bootstrapReady": true,
                "infrastructureReady": infrastructure_ready,
                "v1beta2": {"conditions": v1beta2_conditions},
            })
        } else {
            json!({
                "conditions": v1beta2_conditions,
                "initialization": {"bootstrapDataSecretCreated": true, "infrastructureProvisioned": infrastructure_ready},
            })
        };
        if let Some(address) = address {
            status["addresses"] = json!([{"type": "InternalIP", "address": address.to_string()}]);
        }
        if ready {
            status["nodeRef"] = if v1beta1 {
                json!({"kind": "Node", "apiVersion": "v1", "name": machine["metadata"]["name"]})
            } else {
                json!({"name": machine["metadata"]["name"]})
            };
            status["phase"] = json!("Running");
        } else {
            status["phase"] = json!(if infrastructure_ready { "Provisioned" } else { "Provisioning" });
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

    // The v1beta2 conditions, with the reasons and messages Cluster API gives them.
    let (old, new) = conditions(&cluster, v1beta1);
    let infrastructure_message = "VSphereCluster status.initialization.provisioned is false".to_owned();
    let control_plane_message = if initialized {
        format!("* {cp_ready} of {want_control_plane} control plane machines are ready")
    } else {
        "KubeadmControlPlane status.initialization.controlPlaneInitialized is false".to_owned()
    };
    let workers_message = deployments
        .iter()
        .map(|d| {
            let desired = d["spec"]["replicas"].as_u64().unwrap_or(1);
            format!(
                "* MachineDeployment {}: {workers_ready} of {desired} replicas available",
                d["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let available_message = [
        (infrastructure_ready, "InfrastructureReady", &infrastructure_message),
        (cp_available, "ControlPlaneAvailable", &control_plane_message),
        (workers_available, "WorkersAvailable", &workers_message),
    ]
    .into_iter()
    .filter(|(ok, ..)| !ok)
    .map(|(_, kind, message)| format!("* {kind}: {message}"))
    .collect::<Vec<_>>()
    .join("\n");
    let workers_condition = if deployments.is_empty() {
        condition(&new, "WorkersAvailable", true, "NoWorkers", "", false)
    } else {
        v1beta2(&new, "WorkersAvailable", workers_available, ("Available", "NotAvailable"), &workers_message)
    };
    let v1beta2_conditions = json!([
        v1beta2(&new, "Available", available, ("Available", "NotAvailable"), &available_message),
        v1beta2(&new, "InfrastructureReady", infrastructure_ready, ("Ready", "NotReady"), &infrastructure_message),
        v1beta2(
            &new,
            "ControlPlaneInitialized",
            initialized,
            ("Initialized", "NotInitialized"),
            "Control plane not yet initialized"
        ),
        v1beta2(&new, "ControlPlaneAvailable", cp_available, ("Available", "NotAvailable"), &control_plane_message),
        workers_condition,
        v1beta2(&new, "Deleting", false, ("", "NotDeleting"), ""),
    ]);
    let status = if v1beta1 {
        // v1beta1 reasons only when not true (with a severity); the v1beta2 conditions beside.
        let waiting = if infrastructure_ready { "WaitingForControlPlane" } else { "WaitingForInfrastructure" };
        let reason = |ok: bool, reason: &'static str| if ok { "" } else { reason };
        json!({
            "phase": if infrastructure_ready { "Provisioned" } else { "Provisioning" },
            "infrastructureReady": infrastructure_ready,
            "controlPlaneReady": cp_available,
            "conditions": [
                condition(&old, "Ready", available, reason(available, waiting), "", true),
                condition(&old, "ControlPlaneInitialized", initialized, reason(initialized, "WaitingForControlPlaneProviderInitialized"), "", true),
                condition(&old, "ControlPlaneReady", cp_available, reason(cp_available, "WaitingForControlPlane"), "", true),
                condition(&old, "InfrastructureReady", infrastructure_ready, reason(infrastructure_ready, "WaitingForInfrastructure"), "", true),
            ],
            "v1beta2": {"conditions": v1beta2_conditions},
        })
    } else {
        json!({
            "phase": if infrastructure_ready { "Provisioned" } else { "Provisioning" },
            "initialization": {"infrastructureProvisioned": infrastructure_ready, "controlPlaneInitialized": initialized},
            "controlPlane": {"desiredReplicas": want_control_plane, "readyReplicas": cp_ready},
            "workers": {"desiredReplicas": want_workers, "readyReplicas": workers_ready},
            "conditions": v1beta2_conditions,
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
    // Deleting is a v1beta2 condition: in `status.conditions` of a v1beta2 Cluster, in
    // `status.v1beta2.conditions` of a v1beta1 one.
    let (_, new) = conditions(&cluster, v1beta1);
    let workers = machines.iter().any(|m| m["metadata"]["labels"].get(CONTROL_PLANE_LABEL).is_none());
    let reason = if workers { "WaitingForWorkersDeletion" } else { "WaitingForControlPlaneDeletion" };
    let mut listed: Vec<Value> = new.as_array().cloned().unwrap_or_default();
    listed.retain(|c| c["type"] != "Deleting");
    listed.push(condition(&new, "Deleting", true, reason, &message, false));
    if v1beta1 {
        updated["status"]["v1beta2"]["conditions"] = json!(listed);
    } else {
        updated["status"]["conditions"] = json!(listed);
    }
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
