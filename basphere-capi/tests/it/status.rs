//! The state of a cluster from its conditions, in both contract versions.

use std::net::Ipv4Addr;

use basphere_capi::status::observe;
use basphere_core::cluster_provisioner::ClusterHealth;
use serde_json::{json, Value};

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": "2026-11-30T10:00:00Z"})
}

fn machine(name: &str, control_plane: bool, ready: bool, conditions: Vec<Value>) -> Value {
    let mut labels = json!({"cluster.x-k8s.io/cluster-name": "dev"});
    if control_plane {
        labels["cluster.x-k8s.io/control-plane"] = json!("");
    }
    let mut status = json!({"conditions": conditions});
    if ready {
        status["nodeRef"] = json!({"name": name});
        status["conditions"].as_array_mut().unwrap().push(condition("Ready", "True", "", ""));
    }
    json!({"metadata": {"name": name, "labels": labels}, "status": status})
}

fn ready_machines() -> Vec<Value> {
    vec![
        machine("dev-abc", true, true, vec![]),
        machine("dev-md-1", false, true, vec![]),
        machine("dev-md-2", false, true, vec![]),
    ]
}

#[test]
fn v1beta2_available_with_every_worker_is_ready() {
    let cluster = json!({"status": {
        "phase": "Provisioned",
        "initialization": {"infrastructureProvisioned": true, "controlPlaneInitialized": true},
        "conditions": [
            condition("Available", "True", "Available", ""),
            condition("ControlPlaneAvailable", "True", "Available", ""),
            condition("WorkersAvailable", "True", "Available", ""),
            condition("RollingOut", "False", "NotRollingOut", ""),
        ],
    }});
    let seen = observe(&cluster, &ready_machines(), &[Ipv4Addr::new(10, 0, 0, 5)], 2);
    assert_eq!(seen.health, ClusterHealth::Ready);
    assert_eq!((seen.control_plane_ready, seen.workers_ready, seen.worker_machines), (1, 2, 2));
    let kinds: Vec<&str> = seen.conditions.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["ControlPlaneAvailable", "WorkersAvailable", "Available"],
        "only the conditions shown to owners"
    );
    assert_eq!(seen.addresses_in_use, [Ipv4Addr::new(10, 0, 0, 5)]);
    // One worker still missing: not ready, and it says so.
    let seen = observe(&cluster, &ready_machines()[..2], &[], 2);
    assert_eq!(seen.health, ClusterHealth::Progressing);
    assert_eq!(seen.reason.as_deref(), Some("1 of 2 workers ready"));
}

#[test]
fn v1beta1_ready_needs_the_ready_conditions_not_the_phase() {
    // "Provisioned" while the control plane is not ready: the original called this ready.
    let cluster = json!({"status": {
        "phase": "Provisioned",
        "infrastructureReady": true,
        "conditions": [
            condition("Ready", "False", "WaitingForControlPlane", "1 of 2 completed"),
            condition("ControlPlaneReady", "False", "WaitingForControlPlane", "Scaling up control plane to 1 replicas"),
            condition("InfrastructureReady", "True", "", ""),
        ],
    }});
    let seen = observe(&cluster, &[], &[], 2);
    assert_eq!(seen.health, ClusterHealth::Progressing);
    assert_eq!(seen.phase.as_deref(), Some("Provisioned"));
    assert_eq!(
        seen.reason.as_deref(),
        Some("ControlPlaneReady: WaitingForControlPlane: Scaling up control plane to 1 replicas")
    );
    let cluster = json!({"status": {"phase": "Provisioned", "conditions": [
        condition("Ready", "True", "", ""), condition("ControlPlaneReady", "True", "", ""),
    ]}});
    assert_eq!(observe(&cluster, &ready_machines(), &[], 2).health, ClusterHealth::Ready);
}

#[test]
fn machine_reasons_reach_the_owner() {
    let cluster = json!({"status": {"phase": "Provisioning", "conditions": [condition("Available", "False", "NotAvailable", "")]}});
    let waiting = machine(
        "dev-md-x",
        false,
        false,
        vec![condition("InfrastructureReady", "False", "WaitingForIPAddress", "no free address in pool dev-nodes")],
    );
    let seen = observe(&cluster, &[waiting], &[], 1);
    assert_eq!(seen.health, ClusterHealth::Progressing);
    assert_eq!(seen.reason.as_deref(), Some("dev-md-x: WaitingForIPAddress: no free address in pool dev-nodes"));

    let mut failing = machine("dev-cp-y", true, false, vec![]);
    failing["status"]["conditions"] = json!([{"type": "InfrastructureReady", "status": "False", "severity": "Error",
        "reason": "CloningFailed", "message": "template ubuntu-2204-kube-v1.31.4 not found"}]);
    let seen = observe(&cluster, &[failing], &[], 1);
    assert_eq!(seen.health, ClusterHealth::Failed);
    assert_eq!(seen.reason.as_deref(), Some("dev-cp-y: CloningFailed: template ubuntu-2204-kube-v1.31.4 not found"));

    let no_provider =
        machine("dev-md-z", false, false, vec![condition("NodeHealthy", "False", "WaitingForNodeRef", "")]);
    let seen = observe(&cluster, &[no_provider], &[], 1);
    assert!(seen.reason.unwrap().contains("cloud provider"), "a hint on what to check");
}

#[test]
fn a_deleting_cluster_says_what_it_waits_for() {
    let cluster = json!({
        "metadata": {"deletionTimestamp": "2026-11-30T10:00:00Z"},
        "status": {"conditions": [condition("Deleting", "True", "WaitingForWorkersDeletion", "Machines dev-md-1 are in deletion")]},
    });
    let seen = observe(&cluster, &ready_machines(), &[], 2);
    assert_eq!(seen.health, ClusterHealth::Deleting);
    assert_eq!(seen.reason.as_deref(), Some("Machines dev-md-1 are in deletion"));
}
