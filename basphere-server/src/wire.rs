//! The API's wire types (`basphere-api`), and their conversions from core types. The types are
//! a promise to clients, so they are written out in their own crate (which the CLI shares) and
//! converted from core types by hand here: a change to a core type cannot change the API.
//!
//! The conversions are a local trait rather than `From`, which the orphan rule forbids between
//! core's types and `basphere-api`'s in this crate.

pub use basphere_api::*;
use basphere_core::model::*;
use basphere_core::platform::{NetworkReport, QuotaReport, ReconcileReport};

/// A wire view built from a core value: `VmView::from_core(&vm)`.
pub trait FromCore<T: ?Sized> {
    fn from_core(value: &T) -> Self;

    /// The view of a value the caller is done with (a listed page): a conversion may move its
    /// strings instead of copying them.
    fn from_owned(value: T) -> Self
    where
        T: Sized,
        Self: Sized,
    {
        Self::from_core(&value)
    }
}

/// A request body turned into the core value it asks for: `body.into_core()`.
pub trait IntoCore<T> {
    fn into_core(self) -> T;
}

impl FromCore<Vm> for VmView {
    fn from_core(vm: &Vm) -> Self {
        Self::from_owned(vm.clone())
    }

    fn from_owned(vm: Vm) -> Self {
        VmView {
            id: vm.id,
            name: vm.name.into(),
            owner: vm.owner.into(),
            os: vm.os,
            spec: vm.spec,
            cpu: vm.cpu,
            memory_mb: vm.memory_mb,
            disk_gb: vm.disk_gb,
            ip: vm.ip,
            state: vm.state.as_str().to_owned(),
            reason: vm.reason,
            created_at: vm.created_at,
            updated_at: vm.updated_at,
        }
    }
}

impl FromCore<Cluster> for ClusterView {
    /// The view without node addresses, which come from the leases.
    fn from_core(c: &Cluster) -> Self {
        ClusterView {
            id: c.id,
            name: c.name.to_string(),
            owner: c.owner.to_string(),
            cluster_type: c.cluster_type.clone(),
            kubernetes_version: c.kubernetes_version.clone(),
            control_plane_count: c.control_plane_count,
            control_plane_spec: c.control_plane_spec.key.clone(),
            worker_count: c.worker_count,
            worker_spec: c.worker_spec.key.clone(),
            control_plane_ip: c.control_plane_endpoint,
            state: c.state.as_str().to_owned(),
            reason: c.reason.clone(),
            phase: c.status.phase.clone(),
            conditions: c
                .status
                .conditions
                .iter()
                .map(|k| ClusterConditionView {
                    kind: k.kind.clone(),
                    status: k.status.clone(),
                    reason: k.reason.clone(),
                    message: k.message.clone(),
                    since: k.since,
                })
                .collect(),
            control_plane_ready: c.status.control_plane_ready,
            workers_ready: c.status.workers_ready,
            node_addresses: Vec::new(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

impl FromCore<Operation> for OperationView {
    fn from_core(op: &Operation) -> Self {
        OperationView {
            id: op.id,
            kind: op.kind.as_str().to_owned(),
            state: op.state.as_str().to_owned(),
            owner: op.owner.to_string(),
            resource: ResourceView {
                kind: op.resource.kind.as_str().to_owned(),
                id: op.resource.id,
                name: op.resource.name.clone(),
            },
            steps: op
                .steps
                .iter()
                .map(|step| StepView {
                    name: step.name.clone(),
                    state: step.state.as_str().to_owned(),
                    started_at: step.started_at,
                    finished_at: step.finished_at,
                })
                .collect(),
            error: op.error.clone(),
            log_tail: op.log_tail.clone(),
            requested_by: op.requested_by.clone(),
            created_at: op.created_at,
            updated_at: op.updated_at,
        }
    }
}

impl FromCore<QuotaReport> for QuotaView {
    fn from_core(report: &QuotaReport) -> Self {
        let (q, u) = (report.quota, report.usage);
        QuotaView {
            limits: QuotaNumbers {
                vms: q.max_vms,
                clusters: q.max_clusters,
                ips: q.max_ips,
                vcpus: q.max_vcpus,
                memory_mb: q.max_memory_mb,
                disk_gb: q.max_disk_gb,
                nodes_per_cluster: Some(q.max_nodes_per_cluster),
            },
            usage: QuotaNumbers {
                vms: u.vms,
                clusters: u.clusters,
                ips: u.ips,
                vcpus: u.vcpus,
                memory_mb: u.memory_mb,
                disk_gb: u.disk_gb,
                nodes_per_cluster: None,
            },
        }
    }
}

impl IntoCore<QuotaOverride> for QuotaOverrideRequest {
    fn into_core(self) -> QuotaOverride {
        QuotaOverride {
            max_vms: self.vms,
            max_clusters: self.clusters,
            max_nodes_per_cluster: self.nodes_per_cluster,
            max_ips: self.ips,
            max_vcpus: self.vcpus,
            max_memory_mb: self.memory_mb,
            max_disk_gb: self.disk_gb,
        }
    }
}

impl FromCore<User> for UserView {
    fn from_core(user: &User) -> Self {
        UserView {
            username: user.username.to_string(),
            email: user.email.to_string(),
            team: user.team.clone(),
            role: user.role.as_str().to_owned(),
            status: user.status.as_str().to_owned(),
            uid: user.uid,
            ssh_key_fingerprint: user.ssh_key.fingerprint().to_owned(),
            created_at: user.created_at,
        }
    }
}

impl FromCore<ApiToken> for TokenView {
    fn from_core(token: &ApiToken) -> Self {
        TokenView {
            id: token.id,
            owner: token.owner.to_string(),
            name: token.name.clone(),
            scope: token.scope.as_str().to_owned(),
            created_at: token.created_at,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
        }
    }
}

impl FromCore<OutboxMessage> for OutboxView {
    fn from_core(message: &OutboxMessage) -> Self {
        OutboxView {
            id: message.id,
            event: message.event.name().to_owned(),
            payload: serde_json::to_value(&message.event).unwrap_or_default(),
            state: message.state.as_str().to_owned(),
            attempts: message.attempts,
            next_attempt_at: message.next_attempt_at,
            last_error: message.last_error.clone(),
            created_at: message.created_at,
            delivered_at: message.delivered_at,
            channel: message.channel.clone(),
        }
    }
}

impl FromCore<AuditEvent> for AuditView {
    fn from_core(event: &AuditEvent) -> Self {
        AuditView {
            id: event.id,
            at: event.at,
            actor: event.actor.clone(),
            action: event.action.clone(),
            resource: event.resource.clone(),
            source: event.source.clone(),
            outcome: event.outcome.as_str().to_owned(),
            // Always an object, as documented (events recorded before this rule held null).
            details: if event.details.is_object() { event.details.clone() } else { serde_json::json!({}) },
        }
    }
}

impl FromCore<ReconcileReport> for ReconcileView {
    fn from_core(report: &ReconcileReport) -> Self {
        ReconcileView {
            at: report.at,
            lost: report.lost.clone(),
            found: report.found.clone(),
            adopted: report.adopted.clone(),
            power_changed: report
                .power_changed
                .iter()
                .map(|(vm, state)| PowerChangeView { vm: vm.clone(), state: state.as_str().to_owned() })
                .collect(),
            strays: report
                .strays
                .iter()
                .map(|vm| StrayView {
                    vsphere_name: vm.vsphere_name.clone(),
                    folder: vm.folder.clone(),
                    backend_id: vm.backend_id.clone(),
                })
                .collect(),
        }
    }
}

impl FromCore<RegistrationRequest> for RegistrationView {
    fn from_core(request: &RegistrationRequest) -> Self {
        RegistrationView {
            id: request.id,
            username: request.username.to_string(),
            email: request.email.to_string(),
            team: request.team.clone(),
            ssh_key: request.ssh_key.as_str().to_owned(),
            ssh_key_fingerprint: request.ssh_key.fingerprint().to_owned(),
            status: request.status.as_str().to_owned(),
            created_at: request.created_at,
            processed_by: request.processed_by.clone(),
            processed_at: request.processed_at,
            reject_reason: request.reject_reason.clone(),
        }
    }
}

impl FromCore<KeyChangeRequest> for KeyChangeView {
    fn from_core(request: &KeyChangeRequest) -> Self {
        KeyChangeView {
            id: request.id,
            username: request.username.to_string(),
            email: request.email.to_string(),
            ssh_key: request.new_ssh_key.as_str().to_owned(),
            ssh_key_fingerprint: request.new_ssh_key.fingerprint().to_owned(),
            reason: request.reason.clone(),
            status: request.status.as_str().to_owned(),
            created_at: request.created_at,
            processed_by: request.processed_by.clone(),
            processed_at: request.processed_at,
            reject_reason: request.reject_reason.clone(),
        }
    }
}

impl FromCore<Network> for NetworkView {
    /// The record alone: the WAN prefix (the configuration's) and what the router holds (asked
    /// of it) are added by whoever knows them.
    fn from_core(network: &Network) -> Self {
        NetworkView {
            id: network.id,
            owner: network.owner.to_string(),
            lans: network
                .lans
                .iter()
                .map(|lan| NetworkLanView {
                    name: lan.name.clone(),
                    vlan: lan.vlan,
                    cidr: lan.cidr.to_string(),
                    gateway: lan.gateway,
                })
                .collect(),
            mtu: network.mtu,
            wan_address: network.wan_address,
            wan_prefix: None,
            state: network.state.as_str().to_owned(),
            reason: network.reason.clone(),
            router: None,
            created_at: network.created_at,
            updated_at: network.updated_at,
        }
    }
}

impl FromCore<NetworkReport> for NetworkView {
    fn from_core(report: &NetworkReport) -> Self {
        NetworkView {
            wan_prefix: report.wan_prefix,
            router: Some(RouterView {
                backend: report.router_backend.to_owned(),
                state: report.router.as_str().to_owned(),
                detail: report.router.detail().map(str::to_owned),
            }),
            ..NetworkView::from_core(&report.network)
        }
    }
}
