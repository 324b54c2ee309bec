//! A simulated Cluster API management cluster: clusters move through the conditions Cluster
//! API reports, on a clock, and it checks every request the way the real controllers and
//! webhooks would (the VIP outside the node pool, a pool large enough for every node plus the
//! surge, no pool shrink below the addresses machines hold).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cluster_provisioner::*;
use crate::error::{Error, Result};
use crate::model::{now, ClusterCondition, Timestamp, CLUSTER_SURGE};

/// What a test makes a simulated cluster do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterFault {
    /// Fails once its infrastructure is ready (a VM clone failing, say).
    Fail { reason: String, message: String },
    /// Never gets past waiting for its machines (an address never handed out, say).
    Stall { reason: String, message: String },
    /// Its deletion never finishes (the VMs vanished from vCenter first, say).
    StuckDelete { message: String },
}

/// One simulated cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCluster {
    pub request: ClusterRequest,
    pub created_at: Timestamp,
    /// Workers before the last change of the worker count, and when it changed.
    pub previous_workers: u32,
    pub workers_changed_at: Timestamp,
    pub deleting_since: Option<Timestamp>,
    pub fault: Option<ClusterFault>,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    clusters: BTreeMap<Uuid, SimCluster>,
    /// Faults waiting for the next cluster of that name.
    #[serde(default)]
    faults: BTreeMap<String, ClusterFault>,
    #[serde(skip)]
    calls: Vec<String>,
}

/// The simulated management cluster.
pub struct SimulatedClusters {
    step: Duration,
    state: Mutex<State>,
}

impl SimulatedClusters {
    /// Each condition turns true `step` after the one before; a scale or a deletion takes one
    /// step.
    pub fn new(step: Duration) -> Self {
        SimulatedClusters { step, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next cluster named `name` (created after this call) suffers `fault`.
    pub fn inject(&self, name: &str, fault: ClusterFault) {
        self.state().faults.insert(name.to_owned(), fault);
    }

    /// The clusters that exist, for tests.
    pub fn clusters(&self) -> Vec<SimCluster> {
        self.state().clusters.values().cloned().collect()
    }

    /// Every call in order, as `method name`, for tests.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// The whole simulation as JSON, for a journal that outlives the process.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(&*self.state()).unwrap_or_default()
    }

    /// Takes back a snapshot.
    pub fn restore(&self, snapshot: serde_json::Value) -> Result<()> {
        let state: State = serde_json::from_value(snapshot)
            .map_err(|error| Error::invalid("simulated clusters", format!("the snapshot is unreadable: {error}")))?;
        *self.state() = state;
        Ok(())
    }

    fn steps_since(&self, at: Timestamp) -> u32 {
        let elapsed = (now() - at).to_std().unwrap_or_default();
        (elapsed.as_millis() / self.step.as_millis().max(1)).min(u128::from(u32::MAX)) as u32
    }

    fn observation(&self, sim: &SimCluster) -> ClusterObservation {
        let request = &sim.request;
        let cp = request.control_plane_count;
        let since = Some(sim.created_at);
        let condition = |kind: &str, ok: bool, reason: Option<(&str, &str)>| ClusterCondition {
            kind: kind.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.map(|(r, _)| r.to_owned()),
            message: reason.map(|(_, m)| m.to_owned()),
            since,
        };
        if sim.deleting_since.is_some() {
            let message = match &sim.fault {
                Some(ClusterFault::StuckDelete { message }) => message.clone(),
                _ => format!("waiting for {} machines to be deleted", cp + request.worker_count),
            };
            return ClusterObservation {
                health: ClusterHealth::Deleting,
                phase: Some("Deleting".into()),
                conditions: vec![condition("Deleting", true, Some(("Deleting", &message)))],
                control_plane_ready: 0,
                workers_ready: 0,
                worker_machines: request.worker_count,
                addresses_in_use: request
                    .node_addresses
                    .iter()
                    .take((cp + request.worker_count) as usize)
                    .copied()
                    .collect(),
                reason: Some(message),
            };
        }
        let stage = self.steps_since(sim.created_at);
        let stalled = match &sim.fault {
            Some(ClusterFault::Stall { reason, message }) => Some((reason.as_str(), message.as_str())),
            _ => None,
        };
        let failed = match &sim.fault {
            Some(ClusterFault::Fail { reason, message }) if stage >= 1 => Some((reason.as_str(), message.as_str())),
            _ => None,
        };
        let infrastructure = stage >= 1;
        let initialized = stage >= 2 && stalled.is_none() && failed.is_none();
        let cp_available = stage >= 3 && initialized;
        // Workers follow a change of their count one step later.
        let settled = self.steps_since(sim.workers_changed_at) >= 1;
        let workers_target = request.worker_count;
        let worker_machines =
            if settled || !cp_available { workers_target } else { workers_target.max(sim.previous_workers) };
        let workers_ready = if stage >= 4 && cp_available {
            if settled {
                workers_target
            } else {
                workers_target.min(sim.previous_workers)
            }
        } else {
            0
        };
        let workers_available = cp_available && workers_ready == workers_target && settled && stage >= 4;
        let waiting = stalled.or(failed);
        let conditions = vec![
            condition(
                "InfrastructureReady",
                infrastructure,
                (!infrastructure).then_some(("Provisioning", "creating the load balancer and network")),
            ),
            condition(
                "ControlPlaneInitialized",
                initialized,
                (!initialized).then_some(
                    waiting.unwrap_or(("WaitingForControlPlane", "the first control-plane machine is being created")),
                ),
            ),
            condition(
                "ControlPlaneAvailable",
                cp_available,
                (!cp_available).then_some(("WaitingForControlPlane", "control-plane machines are joining")),
            ),
            condition(
                "WorkersAvailable",
                workers_available,
                (!workers_available).then_some(("WaitingForWorkers", "worker machines are being created")),
            ),
            condition("Available", cp_available && workers_available, None),
        ];
        let health = if failed.is_some() {
            ClusterHealth::Failed
        } else if cp_available && workers_available {
            ClusterHealth::Ready
        } else {
            ClusterHealth::Progressing
        };
        let phase = match health {
            ClusterHealth::Failed => "Failed",
            _ if infrastructure => "Provisioned",
            _ => "Provisioning",
        };
        let in_use = if initialized { cp + worker_machines } else { 0 };
        ClusterObservation {
            health,
            phase: Some(phase.into()),
            conditions,
            control_plane_ready: if cp_available { cp } else { 0 },
            workers_ready,
            worker_machines,
            addresses_in_use: request.node_addresses.iter().take(in_use as usize).copied().collect(),
            reason: waiting.map(|(reason, message)| format!("{reason}: {message}")),
        }
    }
}

use super::simulated_kubeconfig;

/// The checks the management cluster's webhooks and controllers make of a request.
fn check_request(request: &ClusterRequest) -> Result<()> {
    let refuse = |message: String| Err(Error::invalid("cluster request", message));
    if request.control_plane_count == 0 || request.control_plane_count.is_multiple_of(2) {
        return refuse(format!("{} control-plane nodes: etcd needs an odd number", request.control_plane_count));
    }
    let needed = (request.control_plane_count + request.worker_count + CLUSTER_SURGE) as usize;
    if request.node_addresses.len() < needed {
        return refuse(format!(
            "the node pool holds {} addresses; {needed} are needed for every node and the surge",
            request.node_addresses.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for address in &request.node_addresses {
        if !seen.insert(*address) {
            return refuse(format!("{address} is twice in the node pool"));
        }
    }
    if seen.contains(&request.endpoint) {
        return refuse(format!("the VIP {} is also in the node pool", request.endpoint));
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(request.prefix_len)).unwrap_or(0);
    let net = |a: Ipv4Addr| u32::from(a) & mask;
    for address in request.node_addresses.iter().chain([&request.endpoint, &request.gateway]) {
        if net(*address) != net(request.gateway) {
            return refuse(format!("{address} is outside {}/{}", request.gateway, request.prefix_len));
        }
    }
    Ok(())
}

#[async_trait]
impl ClusterProvisioner for SimulatedClusters {
    fn backend_name(&self) -> &'static str {
        "simulated"
    }

    async fn preflight(&self) -> Result<()> {
        Ok(())
    }

    async fn apply(&self, request: &ClusterRequest) -> Result<()> {
        check_request(request)?;
        let observation = {
            let state = self.state();
            state.clusters.get(&request.id).map(|sim| self.observation(sim))
        };
        let mut state = self.state();
        state.calls.push(format!("apply {}", request.name));
        if let Some(clash) = state
            .clusters
            .values()
            .find(|c| c.request.owner == request.owner && c.request.name == request.name && c.request.id != request.id)
        {
            return Err(Error::already_exists("cluster", &clash.request.name));
        }
        let fault = state.faults.remove(request.name.as_str());
        match state.clusters.get_mut(&request.id) {
            Some(sim) => {
                if sim.deleting_since.is_some() {
                    return Err(Error::Conflict(format!("cluster {} is being deleted", request.name)));
                }
                // The pool may not drop an address a machine holds (the IPAM webhook's rule).
                if let Some(observation) = observation {
                    if let Some(held) =
                        observation.addresses_in_use.iter().find(|a| !request.node_addresses.contains(a))
                    {
                        return Err(Error::backend(
                            "simulated clusters",
                            format!("the pool may not drop {held}: a machine holds it"),
                        ));
                    }
                }
                if sim.request.worker_count != request.worker_count {
                    sim.previous_workers = sim.request.worker_count;
                    sim.workers_changed_at = now();
                }
                sim.request = request.clone();
            }
            None => {
                let at = now();
                state.clusters.insert(
                    request.id,
                    SimCluster {
                        request: request.clone(),
                        created_at: at,
                        previous_workers: request.worker_count,
                        workers_changed_at: at - chrono::Duration::days(1),
                        deleting_since: None,
                        fault,
                    },
                );
            }
        }
        Ok(())
    }

    async fn observe(&self, cluster: &ClusterRef) -> Result<Option<ClusterObservation>> {
        let mut gone = false;
        let observation = {
            let state = self.state();
            match state.clusters.get(&cluster.id) {
                Some(sim) => {
                    if let Some(at) = sim.deleting_since {
                        let stuck = matches!(sim.fault, Some(ClusterFault::StuckDelete { .. }));
                        gone = !stuck && self.steps_since(at) >= 1;
                    }
                    (!gone).then(|| self.observation(sim))
                }
                None => None,
            }
        };
        if gone {
            self.state().clusters.remove(&cluster.id);
        }
        Ok(observation)
    }

    async fn kubeconfig(&self, cluster: &ClusterRef) -> Result<Option<String>> {
        let state = self.state();
        let Some(sim) = state.clusters.get(&cluster.id) else { return Ok(None) };
        let initialized =
            self.observation(sim).conditions.iter().any(|c| c.kind == "ControlPlaneInitialized" && c.is_true());
        if !initialized {
            return Ok(None);
        }
        let name = &sim.request.name;
        Ok(Some(simulated_kubeconfig(name.as_str(), &sim.request.endpoint.to_string())))
    }

    async fn delete(&self, cluster: &ClusterRef) -> Result<Removal> {
        let present = self.observe(cluster).await?;
        let mut state = self.state();
        state.calls.push(format!("delete {}", cluster.name));
        let Some(sim) = state.clusters.get_mut(&cluster.id) else { return Ok(Removal::Gone) };
        if sim.deleting_since.is_none() {
            sim.deleting_since = Some(now());
        }
        let message = present.and_then(|o| o.reason).unwrap_or_else(|| "machines are being deleted".into());
        Ok(Removal::Waiting(message))
    }

    async fn changed(&self, timeout: Duration) {
        tokio::time::sleep(timeout.min(self.step / 2).max(Duration::from_millis(10))).await;
    }
}
