//! The JSON shapes of the HTTP API. They are a promise to clients, so they are written out here
//! and converted from core types by hand: a change to a core type cannot change the API.

use std::net::Ipv4Addr;

use basphere_core::model::*;
use basphere_core::platform::QuotaReport;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A virtual machine.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VmView {
    pub id: Uuid,
    pub name: String,
    pub owner: String,
    pub os: String,
    pub spec: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
    #[schema(value_type = Option<String>, example = "10.254.0.32")]
    pub ip: Option<Ipv4Addr>,
    /// pending, provisioning, running, stopped, failed, deleting, deleted or lost.
    pub state: String,
    /// Why the VM failed or was lost.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Vm> for VmView {
    fn from(vm: &Vm) -> Self {
        VmView {
            id: vm.id,
            name: vm.name.to_string(),
            owner: vm.owner.to_string(),
            os: vm.os.clone(),
            spec: vm.spec.clone(),
            cpu: vm.cpu,
            memory_mb: vm.memory_mb,
            disk_gb: vm.disk_gb,
            ip: vm.ip,
            state: vm.state.as_str().to_owned(),
            reason: vm.reason.clone(),
            created_at: vm.created_at,
            updated_at: vm.updated_at,
        }
    }
}

/// One step of an operation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    pub name: String,
    /// pending, running, done or failed.
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What an operation is about.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResourceView {
    pub kind: String,
    pub id: Uuid,
    pub name: String,
}

/// Background work on one resource.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OperationView {
    pub id: Uuid,
    /// create_vm, delete_vm, start_vm, stop_vm or reboot_vm.
    pub kind: String,
    /// queued, running, succeeded or failed.
    pub state: String,
    pub owner: String,
    pub resource: ResourceView,
    pub steps: Vec<StepView>,
    pub error: Option<String>,
    /// The last lines of the backend's log.
    pub log_tail: Vec<String>,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Operation> for OperationView {
    fn from(op: &Operation) -> Self {
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

/// A request to create one VM, or a batch named `<name>-1 .. <name>-N`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVmsRequest {
    #[schema(example = "web")]
    pub name: String,
    #[schema(example = "ubuntu-24.04")]
    pub os: String,
    #[schema(example = "small")]
    pub spec: String,
    /// 1-10; defaults to 1.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// The VMs accepted and the operations that provision them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateVmsResponse {
    pub vms: Vec<VmView>,
    pub operations: Vec<OperationView>,
}

/// A page of a list, ordered by creation; pass `next` as `after` for the following page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Limits and what is used of them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuotaView {
    pub limits: QuotaNumbers,
    pub usage: QuotaNumbers,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuotaNumbers {
    pub vms: u64,
    pub clusters: u64,
    pub ips: u64,
    pub vcpus: u64,
    pub memory_mb: u64,
    pub disk_gb: u64,
    /// Limits only: nodes per cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes_per_cluster: Option<u64>,
}

impl From<&QuotaReport> for QuotaView {
    fn from(report: &QuotaReport) -> Self {
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

/// An administrator's change to one account's limits; absent fields keep the default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrideRequest {
    pub vms: Option<u64>,
    pub clusters: Option<u64>,
    pub nodes_per_cluster: Option<u64>,
    pub ips: Option<u64>,
    pub vcpus: Option<u64>,
    pub memory_mb: Option<u64>,
    pub disk_gb: Option<u64>,
}

impl From<QuotaOverrideRequest> for QuotaOverride {
    fn from(r: QuotaOverrideRequest) -> Self {
        QuotaOverride {
            max_vms: r.vms,
            max_clusters: r.clusters,
            max_nodes_per_cluster: r.nodes_per_cluster,
            max_ips: r.ips,
            max_vcpus: r.vcpus,
            max_memory_mb: r.memory_mb,
            max_disk_gb: r.disk_gb,
        }
    }
}

/// An account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub username: String,
    pub email: String,
    pub team: String,
    /// user or admin.
    pub role: String,
    /// active or suspended.
    pub status: String,
    /// The bastion login's uid, which identifies the account on the Unix socket.
    pub uid: Option<u32>,
    pub ssh_key_fingerprint: String,
    pub created_at: DateTime<Utc>,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
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

/// The caller: who the server believes you are.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeView {
    /// The account name, or `root` / `uid-N` for the system administrator.
    pub name: String,
    /// user or admin.
    pub role: String,
    /// How the server identified you (`unix:uid=1001,pid=...` or `tcp:127.0.0.1:...`).
    pub source: String,
    pub account: Option<UserView>,
}

/// An account created by an administrator (the approval of a registration, done by hand).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub username: String,
    pub email: String,
    #[serde(default)]
    pub team: String,
    /// One OpenSSH public key line.
    pub ssh_key: String,
    /// The bastion login's uid, so the account is recognised on the Unix socket.
    pub uid: Option<u32>,
    #[serde(default)]
    pub admin: bool,
}

/// An API token (never its secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub owner: String,
    pub name: String,
    /// user or admin.
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiToken> for TokenView {
    fn from(token: &ApiToken) -> Self {
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

/// A request for a new token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    #[schema(example = "laptop")]
    pub name: String,
    /// user (default) or admin.
    #[serde(default)]
    pub scope: Option<String>,
    /// Days until it expires; no expiry when absent.
    pub expires_in_days: Option<u32>,
}

/// A new token: the secret is shown here once and never again.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub token: TokenView,
    pub secret: String,
}

/// A notification in the outbox.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OutboxView {
    pub id: Uuid,
    /// The event's name, e.g. `vm_ready`.
    pub event: String,
    /// The event as delivered.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// pending, delivered or dead.
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<&OutboxMessage> for OutboxView {
    fn from(message: &OutboxMessage) -> Self {
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
        }
    }
}

/// One audit event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub source: String,
    /// success, failure or denied.
    pub outcome: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<&AuditEvent> for AuditView {
    fn from(event: &AuditEvent) -> Self {
        AuditView {
            id: event.id,
            at: event.at,
            actor: event.actor.clone(),
            action: event.action.clone(),
            resource: event.resource.clone(),
            source: event.source.clone(),
            outcome: event.outcome.as_str().to_owned(),
            details: event.details.clone(),
        }
    }
}

/// The catalog: what may be asked for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogView {
    pub os: Vec<CatalogOs>,
    pub specs: Vec<CatalogSpec>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogOs {
    pub key: String,
    pub description: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CatalogSpec {
    pub key: String,
    pub description: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
}

/// The last reconciliation of the store with vSphere.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ReconcileView {
    pub at: Option<DateTime<Utc>>,
    /// `owner/name` of VMs that vanished from vSphere (now `lost`).
    pub lost: Vec<String>,
    /// `owner/name` of lost VMs that are back.
    pub found: Vec<String>,
    /// VMs whose power state was changed outside Basphere.
    pub power_changed: Vec<PowerChangeView>,
    /// VMs in Basphere's folders that Basphere does not know: reported, never deleted.
    pub strays: Vec<StrayView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PowerChangeView {
    pub vm: String,
    pub state: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StrayView {
    pub vsphere_name: String,
    pub folder: String,
    pub backend_id: String,
}

impl From<&basphere_core::platform::ReconcileReport> for ReconcileView {
    fn from(report: &basphere_core::platform::ReconcileReport) -> Self {
        ReconcileView {
            at: report.at,
            lost: report.lost.clone(),
            found: report.found.clone(),
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
