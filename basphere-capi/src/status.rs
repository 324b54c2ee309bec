//! A cluster's state from its Cluster API objects: conditions decide, never the phase alone.
//! Reads both contract versions: v1beta1 (`Ready`, `ControlPlaneReady`, severities, failure
//! fields) and v1beta2 (`Available`, `ControlPlaneAvailable`, `WorkersAvailable`,
//! `status.initialization`). Reasons from the machines (an address never handed out, a clone
//! failing, a node without a provider ID) reach the owner's resource.

use std::net::Ipv4Addr;

use basphere_core::cluster_provisioner::{ClusterHealth, ClusterObservation};
use basphere_core::model::ClusterCondition;
use serde_json::Value;

/// The condition types shown to the owner, in this order, when the object has them.
const SHOWN: &[&str] = &[
    "InfrastructureReady",
    "ControlPlaneInitialized",
    "ControlPlaneReady",
    "ControlPlaneAvailable",
    "WorkersAvailable",
    "Available",
    "Ready",
];

/// Machine reasons that need someone's help: retrying will not fix them.
const FATAL_REASONS: &[&str] = &["CloningFailed", "PoweringOnFailed", "TaskFailure", "TaskFailed"];

pub const CONTROL_PLANE_LABEL: &str = "cluster.x-k8s.io/control-plane";

fn conditions_of(object: &Value) -> Vec<&Value> {
    let status = &object["status"];
    // A v1beta1 object of Cluster API >= 1.9 carries the new conditions beside the old.
    let mut found: Vec<&Value> = status["conditions"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
    if let Some(newer) = status["v1beta2"]["conditions"].as_array() {
        for condition in newer {
            if !found.iter().any(|c| c["type"] == condition["type"]) {
                found.push(condition);
            }
        }
    }
    found
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    conditions_of(object).into_iter().find(|c| c["type"] == kind)
}

fn is_true(object: &Value, kind: &str) -> bool {
    condition(object, kind).is_some_and(|c| c["status"] == "True")
}

fn text(value: &Value) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(|s| s.chars().take(1000).collect())
}

fn to_condition(value: &Value) -> ClusterCondition {
    ClusterCondition {
        kind: text(&value["type"]).unwrap_or_default(),
        status: text(&value["status"]).unwrap_or_else(|| "Unknown".into()),
        reason: text(&value["reason"]),
        message: text(&value["message"]),
        since: value["lastTransitionTime"].as_str().and_then(|t| t.parse().ok()),
    }
}

fn machine_ready(machine: &Value) -> bool {
    machine["status"]["nodeRef"].is_object() && (is_true(machine, "Ready") || is_true(machine, "Available"))
}

fn is_control_plane(machine: &Value) -> bool {
    machine["metadata"]["labels"].get(CONTROL_PLANE_LABEL).is_some()
}

/// Why a machine is not ready, in words, and whether it needs help.
fn machine_problem(machine: &Value) -> Option<(String, bool)> {
    let name = machine["metadata"]["name"].as_str().unwrap_or("a machine");
    if let Some(message) = text(&machine["status"]["failureMessage"]) {
        let reason = text(&machine["status"]["failureReason"]).unwrap_or_else(|| "Failed".into());
        return Some((format!("{name}: {reason}: {message}"), true));
    }
    for condition in conditions_of(machine) {
        if condition["status"] == "True" {
            continue;
        }
        let reason = condition["reason"].as_str().unwrap_or_default();
        let message = text(&condition["message"]);
        let fatal = FATAL_REASONS.contains(&reason) || condition["severity"] == "Error";
        let interesting = fatal
            || matches!(
                reason,
                "WaitingForIPAddress"
                    | "WaitingForIPAllocation"
                    | "WaitingForNodeRef"
                    | "NodeDoesNotExist"
                    | "WaitingForClone"
            )
            || condition["type"] == "IPAddressClaimsFulfilled";
        if interesting {
            let said = message.map(|m| format!(": {m}")).unwrap_or_default();
            let hint = match reason {
                "WaitingForNodeRef" | "NodeDoesNotExist" => {
                    " (the node has no provider ID yet: is the vSphere cloud provider installed and running?)"
                }
                _ => "",
            };
            return Some((format!("{name}: {reason}{said}{hint}"), fatal));
        }
    }
    let status = &machine["status"];
    let provisioned =
        status["infrastructureReady"] == true || status["initialization"]["infrastructureProvisioned"] == true;
    if status["nodeRef"].is_null() && provisioned {
        return Some((format!("{name}: waiting for its node to join"), false));
    }
    None
}

/// Everything Basphere reports of a cluster, from the Cluster object, its machines and the
/// addresses they hold, for a cluster meant to have `workers` workers.
pub fn observe(cluster: &Value, machines: &[Value], addresses: &[Ipv4Addr], workers: u32) -> ClusterObservation {
    let conditions: Vec<ClusterCondition> =
        SHOWN.iter().filter_map(|kind| condition(cluster, kind)).map(to_condition).collect();
    let control_plane_ready = machines.iter().filter(|m| is_control_plane(m) && machine_ready(m)).count() as u32;
    let worker_machines = machines.iter().filter(|m| !is_control_plane(m)).count() as u32;
    let workers_ready = machines.iter().filter(|m| !is_control_plane(m) && machine_ready(m)).count() as u32;
    let phase = text(&cluster["status"]["phase"]);
    let base = ClusterObservation {
        health: ClusterHealth::Progressing,
        phase: phase.clone(),
        conditions,
        control_plane_ready,
        workers_ready,
        worker_machines,
        addresses_in_use: addresses.to_vec(),
        reason: None,
    };
    if cluster["metadata"]["deletionTimestamp"].is_string() {
        let waiting = condition(cluster, "Deleting")
            .and_then(|c| text(&c["message"]))
            .unwrap_or_else(|| format!("{} machines are being deleted", machines.len()));
        return ClusterObservation { health: ClusterHealth::Deleting, reason: Some(waiting), ..base };
    }

    // The cluster's own failure (v1beta1), then the machines'.
    if let Some(message) = text(&cluster["status"]["failureMessage"]) {
        let reason = text(&cluster["status"]["failureReason"]).unwrap_or_else(|| "Failed".into());
        return ClusterObservation {
            health: ClusterHealth::Failed,
            reason: Some(format!("{reason}: {message}")),
            ..base
        };
    }
    let problems: Vec<(String, bool)> = machines.iter().filter_map(machine_problem).collect();
    if let Some((problem, _)) = problems.iter().find(|(_, fatal)| *fatal) {
        return ClusterObservation { health: ClusterHealth::Failed, reason: Some(problem.clone()), ..base };
    }
    if let Some(severe) =
        conditions_of(cluster).into_iter().find(|c| c["severity"] == "Error" && c["status"] == "False")
    {
        let reason = text(&severe["reason"]).unwrap_or_default();
        let message = text(&severe["message"]).unwrap_or_default();
        return ClusterObservation {
            health: ClusterHealth::Failed,
            reason: Some(format!("{reason}: {message}")),
            ..base
        };
    }

    let control_plane_up = if condition(cluster, "ControlPlaneAvailable").is_some() {
        is_true(cluster, "ControlPlaneAvailable")
    } else {
        is_true(cluster, "ControlPlaneReady")
    };
    let cluster_up = if condition(cluster, "Available").is_some() {
        is_true(cluster, "Available")
    } else {
        is_true(cluster, "Ready")
    };
    let workers_up = workers_ready >= workers && worker_machines == workers;
    if cluster_up && control_plane_up && workers_up {
        return ClusterObservation { health: ClusterHealth::Ready, ..base };
    }
    // What it waits for: a machine's own words first, then the first condition not yet true.
    let reason = problems.into_iter().map(|(p, _)| p).next().or_else(|| {
        SHOWN.iter().filter_map(|kind| condition(cluster, kind)).find(|c| c["status"] != "True").map(|c| {
            let kind = c["type"].as_str().unwrap_or_default();
            match (text(&c["reason"]), text(&c["message"])) {
                (Some(reason), Some(message)) => format!("{kind}: {reason}: {message}"),
                (Some(reason), None) => format!("{kind}: {reason}"),
                (None, Some(message)) => format!("{kind}: {message}"),
                (None, None) => format!("waiting for {kind}"),
            }
        })
    });
    let reason = reason.or_else(|| (!workers_up).then(|| format!("{workers_ready} of {workers} workers ready")));
    ClusterObservation { reason, ..base }
}
