//! Domain types: accounts, requests, tokens, VMs, clusters, quotas, IPAM records, operations and
//! their claims, audit and notification events, outbox messages. These are the store's records;
//! wire formats live elsewhere.

use std::fmt;
use std::net::Ipv4Addr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
pub use uuid::Uuid;

use crate::error::{Error, Result};
use crate::validate::{Email, ResourceName, SshPublicKey, Username};

/// Timestamps are kept to the microsecond, the precision every store keeps.
pub type Timestamp = DateTime<Utc>;

/// The current time at store precision.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

/// Declares a `snake_case` string enum with `as_str` / `parse` used by stores and wire types.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(value: &str) -> Result<Self> {
                match value {
                    $($text => Ok($name::$variant),)+
                    other => Err(Error::invalid(
                        stringify!($name),
                        format!("{other:?} is not one of: {}", [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Whether an account may act.
    UserStatus { Active => "active", Suspended => "suspended" }
);

string_enum!(
    /// Whether an account is an ordinary developer or an administrator.
    Role { User => "user", Admin => "admin" }
);

/// An approved account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub username: Username,
    pub email: Email,
    pub team: String,
    pub ssh_key: SshPublicKey,
    pub role: Role,
    pub status: UserStatus,
    /// The Unix uid of the bastion login, once it exists (used to map peer credentials).
    pub uid: Option<u32>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

string_enum!(
    /// Lifecycle of a registration or key-change request.
    RequestStatus { Pending => "pending", Approved => "approved", Rejected => "rejected" }
);

/// A registration submitted through the public page or JSON endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRequest {
    pub id: Uuid,
    pub username: Username,
    pub email: Email,
    pub team: String,
    pub ssh_key: SshPublicKey,
    pub status: RequestStatus,
    pub created_at: Timestamp,
    /// The administrator who decided (an account, or `root` / `uid-N`).
    pub processed_by: Option<String>,
    pub processed_at: Option<Timestamp>,
    pub reject_reason: Option<String>,
}

/// A request to replace an account's SSH key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChangeRequest {
    pub id: Uuid,
    pub username: Username,
    pub email: Email,
    pub new_ssh_key: SshPublicKey,
    pub reason: String,
    pub status: RequestStatus,
    pub created_at: Timestamp,
    /// The administrator who decided (an account, or `root` / `uid-N`).
    pub processed_by: Option<String>,
    pub processed_at: Option<Timestamp>,
    pub reject_reason: Option<String>,
}

string_enum!(
    /// What an API token may do: act as its owner, or as an administrator.
    TokenScope { User => "user", Admin => "admin" }
);

/// A personal API token. Only the SHA-256 of the secret is kept.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub owner: Username,
    pub name: String,
    pub scope: TokenScope,
    /// Hex SHA-256 of the secret part; the secret itself is shown once and never stored.
    pub secret_hash: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("secret_hash", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

impl ApiToken {
    /// Hex SHA-256 of a token secret, the only form in which secrets are stored or compared.
    pub fn hash_secret(secret: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(secret.as_bytes());
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Usable now: neither revoked nor expired.
    pub fn is_valid_at(&self, at: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expiry| at < expiry)
    }
}

string_enum!(
    /// A browser's credential: a single-use sign-in link, or the session a link or a token
    /// turned into.
    WebSessionKind { Link => "link", Session => "session" }
);

/// A browser's sign-in. A link (`basphere web` on the bastion) lives five minutes and is used
/// once; it becomes a session, which ends after an idle time, at an absolute expiry, at sign-out,
/// or when its account is suspended. Only the SHA-256 of the secret is kept.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSession {
    pub id: Uuid,
    pub kind: WebSessionKind,
    /// The account signed in; `None` for the system administrator (root or the server's user on
    /// the socket), who owns no account.
    pub owner: Option<Username>,
    /// Who is signed in, as audited: the account, or `root` / `uid-N`.
    pub actor_name: String,
    /// The rights the sign-in carried. An account's session never has more than its account has
    /// at the time of each request.
    pub role: Role,
    pub secret_hash: String,
    pub created_at: Timestamp,
    /// The absolute end, whatever the activity.
    pub expires_at: Timestamp,
    /// The last request seen (recorded at most once a minute); the idle time counts from here.
    pub last_seen_at: Timestamp,
    /// When a link was used, or a session signed out or revoked.
    pub ended_at: Option<Timestamp>,
    /// The API token a session was signed in with: the session lasts no longer than the token
    /// (revoked, expired or gone, it ends the session at the next request).
    pub token_id: Option<Uuid>,
}

impl fmt::Debug for WebSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSession")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("owner", &self.owner)
            .field("actor_name", &self.actor_name)
            .field("role", &self.role)
            .field("secret_hash", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("ended_at", &self.ended_at)
            .finish()
    }
}

impl WebSession {
    /// Usable at `at`: not ended, not past its absolute expiry, and (for a session) not idle for
    /// `idle` or longer.
    pub fn is_valid_at(&self, at: Timestamp, idle: chrono::Duration) -> bool {
        self.ended_at.is_none()
            && at < self.expires_at
            && (self.kind == WebSessionKind::Link || at < self.last_seen_at + idle)
    }
}

/// An OS image from the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsImage {
    pub key: String,
    pub template: String,
    pub description: String,
    /// The guest's network interface for cloud-init (`ens192`, `ens33`).
    pub interface: String,
}

/// A VM size from the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub key: String,
    pub description: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
}

/// A node size for cluster nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub key: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
}

/// A cluster shape from the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterType {
    pub key: String,
    pub description: String,
    pub control_plane_count: u32,
    pub worker_count: u32,
    pub control_plane_spec: String,
    pub worker_spec_default: String,
}

string_enum!(
    /// Lifecycle of a VM. `Deleted` records are kept for history and free their name.
    VmState {
        Pending => "pending",
        Provisioning => "provisioning",
        Running => "running",
        Stopped => "stopped",
        Failed => "failed",
        Deleting => "deleting",
        Deleted => "deleted",
        Lost => "lost",
    }
);

/// A virtual machine owned by a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    pub id: Uuid,
    pub owner: Username,
    pub name: ResourceName,
    pub os: String,
    pub spec: String,
    pub cpu: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
    pub ip: Option<Ipv4Addr>,
    pub state: VmState,
    /// Human-readable reason when `state` is `failed` or `lost`.
    pub reason: Option<String>,
    /// The backend's identifier (a vSphere managed object id, a Terraform directory...).
    pub backend_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Vm {
    /// The `backend_id` of a VM imported from the original Basphere until reconciliation has
    /// marked its vSphere VM as Basphere's (`Provisioner::adopt`).
    pub const IMPORTED: &'static str = "imported-from-original";

    /// Imported, and not yet marked as Basphere's in vSphere: nothing may change it there yet.
    pub fn awaits_adoption(&self) -> bool {
        self.backend_id.as_deref() == Some(Self::IMPORTED)
    }

    /// The VM's name in vSphere: `<owner>-<name>`.
    pub fn vsphere_name(&self) -> String {
        format!("{}-{}", self.owner, self.name)
    }

    /// Whether the record still holds resources (counted in usage, holds its name).
    pub fn is_live(&self) -> bool {
        self.state != VmState::Deleted
    }
}

string_enum!(
    /// Lifecycle of a Kubernetes cluster.
    ClusterState {
        Pending => "pending",
        Provisioning => "provisioning",
        Ready => "ready",
        Failed => "failed",
        Deleting => "deleting",
        Deleted => "deleted",
    }
);

/// A Kubernetes cluster owned by a user.
///
/// Its addresses are leases of the cluster's id: one `ClusterEndpoint` (the control-plane VIP,
/// never a node's address) and `ClusterNode` leases for the node pool (every node plus
/// [`CLUSTER_SURGE`] for rolling updates).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: Uuid,
    pub owner: Username,
    pub name: ResourceName,
    pub cluster_type: String,
    pub kubernetes_version: String,
    pub control_plane_count: u32,
    pub worker_count: u32,
    /// The node size of the control-plane nodes.
    pub control_plane_spec: NodeSpec,
    /// The node size of the workers.
    pub worker_spec: NodeSpec,
    /// The control-plane VIP.
    pub control_plane_endpoint: Option<Ipv4Addr>,
    pub state: ClusterState,
    /// Human-readable reason when `state` is `failed`, or what a deletion waits for.
    pub reason: Option<String>,
    /// What the backend last reported.
    pub status: ClusterStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Spare node addresses a cluster's pool holds for rolling updates: one for the control plane's
/// and one for the workers' surge machine.
pub const CLUSTER_SURGE: u32 = 2;

impl Cluster {
    pub fn is_live(&self) -> bool {
        self.state != ClusterState::Deleted
    }

    pub fn nodes(&self) -> u32 {
        self.control_plane_count + self.worker_count
    }

    /// How many node addresses the cluster's pool holds with `workers` workers.
    pub fn pool_size(&self, workers: u32) -> u32 {
        self.control_plane_count + workers + CLUSTER_SURGE
    }

    /// What the cluster's nodes take from the owner's quota (addresses are counted as leases).
    pub fn usage(&self) -> Usage {
        let (cp, workers) = (u64::from(self.control_plane_count), u64::from(self.worker_count));
        let (a, b) = (&self.control_plane_spec, &self.worker_spec);
        Usage {
            vms: 0,
            clusters: 1,
            ips: 0,
            vcpus: cp * u64::from(a.cpu) + workers * u64::from(b.cpu),
            memory_mb: cp * a.memory_mb + workers * b.memory_mb,
            disk_gb: cp * a.disk_gb + workers * b.disk_gb,
        }
    }
}

/// A Kubernetes-style condition of a cluster, as the backend reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCondition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}

impl ClusterCondition {
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// What the backend last reported about a cluster: the conditions, how many nodes are ready,
/// and the backend's phase (shown, never used alone to decide).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default)]
    pub conditions: Vec<ClusterCondition>,
    #[serde(default)]
    pub control_plane_ready: u32,
    #[serde(default)]
    pub workers_ready: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Timestamp>,
}

/// Per-user limits. `None` in an override means "use the default".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub max_vms: u64,
    pub max_clusters: u64,
    pub max_nodes_per_cluster: u64,
    pub max_ips: u64,
    pub max_vcpus: u64,
    pub max_memory_mb: u64,
    pub max_disk_gb: u64,
}

/// An administrator's per-user change to the default quota; unset fields keep the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaOverride {
    pub max_vms: Option<u64>,
    pub max_clusters: Option<u64>,
    pub max_nodes_per_cluster: Option<u64>,
    pub max_ips: Option<u64>,
    pub max_vcpus: Option<u64>,
    pub max_memory_mb: Option<u64>,
    pub max_disk_gb: Option<u64>,
}

impl Quota {
    pub fn with_override(self, o: &QuotaOverride) -> Quota {
        Quota {
            max_vms: o.max_vms.unwrap_or(self.max_vms),
            max_clusters: o.max_clusters.unwrap_or(self.max_clusters),
            max_nodes_per_cluster: o.max_nodes_per_cluster.unwrap_or(self.max_nodes_per_cluster),
            max_ips: o.max_ips.unwrap_or(self.max_ips),
            max_vcpus: o.max_vcpus.unwrap_or(self.max_vcpus),
            max_memory_mb: o.max_memory_mb.unwrap_or(self.max_memory_mb),
            max_disk_gb: o.max_disk_gb.unwrap_or(self.max_disk_gb),
        }
    }

    /// Checks that `usage + extra` fits; names the first limit that would be exceeded.
    pub fn check(&self, usage: &Usage, extra: &Usage) -> Result<()> {
        let checks: [(&'static str, u64, u64, u64); 6] = [
            ("vms", usage.vms, extra.vms, self.max_vms),
            ("clusters", usage.clusters, extra.clusters, self.max_clusters),
            ("ips", usage.ips, extra.ips, self.max_ips),
            ("vcpus", usage.vcpus, extra.vcpus, self.max_vcpus),
            ("memory_mb", usage.memory_mb, extra.memory_mb, self.max_memory_mb),
            ("disk_gb", usage.disk_gb, extra.disk_gb, self.max_disk_gb),
        ];
        for (resource, used, more, limit) in checks {
            if more > 0 && used + more > limit {
                return Err(Error::QuotaExceeded { resource, used, requested: used + more, limit });
            }
        }
        Ok(())
    }
}

/// What a user holds now. Computed by the store from live records and leases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub vms: u64,
    pub clusters: u64,
    pub ips: u64,
    pub vcpus: u64,
    pub memory_mb: u64,
    pub disk_gb: u64,
}

/// A range of addresses assigned to one user, aligned to the pool's block size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpBlock {
    pub pool: String,
    pub start: Ipv4Addr,
    pub size: u32,
    pub owner: Username,
    pub allocated_at: Timestamp,
}

impl IpBlock {
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        let (start, address) = (u32::from(self.start), u32::from(address));
        address >= start && address - start < self.size
    }

    /// The last address of the block.
    pub fn end(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.start) + (self.size - 1))
    }
}

string_enum!(
    /// What a lease is for.
    ResourceKind {
        Vm => "vm",
        ClusterEndpoint => "cluster-endpoint",
        ClusterNode => "cluster-node",
        Cluster => "cluster",
        Account => "account",
    }
);

string_enum!(
    /// `Reserved` from the moment of allocation; `Active` once the backend confirmed its use.
    LeaseState { Reserved => "reserved", Active => "active" }
);

/// What a lease (or an operation) is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    pub kind: ResourceKind,
    /// The resource's id (a VM or cluster id).
    pub id: Uuid,
    /// A readable name: the VM name, or `<cluster>-node-3`.
    pub name: String,
}

/// One leased address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub pool: String,
    pub owner: Username,
    pub resource: ResourceRef,
    pub state: LeaseState,
    pub created_at: Timestamp,
}

string_enum!(
    /// What an operation does.
    OperationKind {
        CreateVm => "create_vm",
        DeleteVm => "delete_vm",
        StartVm => "start_vm",
        StopVm => "stop_vm",
        RebootVm => "reboot_vm",
        CreateCluster => "create_cluster",
        DeleteCluster => "delete_cluster",
        ScaleCluster => "scale_cluster",
        ApproveAccount => "approve_account",
        ChangeKey => "change_key",
        PurgeAccount => "purge_account",
    }
);

string_enum!(
    /// Lifecycle of an operation.
    OperationState {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
    }
);

impl OperationState {
    pub fn is_finished(self) -> bool {
        matches!(self, OperationState::Succeeded | OperationState::Failed)
    }
}

string_enum!(
    /// Progress of one step of an operation.
    StepState { Pending => "pending", Running => "running", Done => "done", Failed => "failed" }
);

/// One step of an operation, e.g. "lease address" or "clone from template".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub state: StepState,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

/// Background work on one resource, observable while it runs and after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub id: Uuid,
    pub kind: OperationKind,
    pub owner: Username,
    pub resource: ResourceRef,
    pub state: OperationState,
    pub steps: Vec<Step>,
    pub error: Option<String>,
    /// The last lines of the backend's log (bounded by [`Operation::LOG_TAIL_LINES`]).
    pub log_tail: Vec<String>,
    /// Who asked for it (the account, or `system` for reconciliation).
    pub requested_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Operation {
    pub const LOG_TAIL_LINES: usize = 50;

    pub fn new(
        kind: OperationKind,
        owner: Username,
        resource: ResourceRef,
        requested_by: &str,
        steps: &[&str],
    ) -> Self {
        let at = now();
        Operation {
            id: Uuid::now_v7(),
            kind,
            owner,
            resource,
            state: OperationState::Queued,
            steps: steps
                .iter()
                .map(|name| Step {
                    name: (*name).to_owned(),
                    state: StepState::Pending,
                    started_at: None,
                    finished_at: None,
                })
                .collect(),
            error: None,
            log_tail: Vec::new(),
            requested_by: requested_by.to_owned(),
            created_at: at,
            updated_at: at,
        }
    }

    /// Marks step `name` running (and the operation running).
    pub fn start_step(&mut self, name: &str) {
        let at = now();
        self.state = OperationState::Running;
        self.updated_at = at;
        if let Some(step) = self.steps.iter_mut().find(|step| step.name == name) {
            step.state = StepState::Running;
            step.started_at = Some(at);
        }
    }

    pub fn finish_step(&mut self, name: &str, ok: bool) {
        let at = now();
        self.updated_at = at;
        if let Some(step) = self.steps.iter_mut().find(|step| step.name == name) {
            step.state = if ok { StepState::Done } else { StepState::Failed };
            step.started_at.get_or_insert(at);
            step.finished_at = Some(at);
        }
    }

    pub fn succeed(&mut self) {
        self.state = OperationState::Succeeded;
        self.updated_at = now();
    }

    pub fn fail(&mut self, error: impl Into<String>) {
        self.state = OperationState::Failed;
        self.error = Some(error.into());
        self.updated_at = now();
    }

    /// Appends log lines, keeping only the last [`Operation::LOG_TAIL_LINES`].
    pub fn append_log<I: IntoIterator<Item = String>>(&mut self, lines: I) {
        self.log_tail.extend(lines);
        let excess = self.log_tail.len().saturating_sub(Self::LOG_TAIL_LINES);
        self.log_tail.drain(..excess);
    }
}

string_enum!(
    /// Whether an audited action succeeded.
    Outcome { Success => "success", Failure => "failure", Denied => "denied" }
);

/// Who did what to which resource, when, from where, with what outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: Uuid,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub resource: String,
    /// Where the request came from (`unix:uid=1001`, `tcp:127.0.0.1:53422`, `system`).
    pub source: String,
    pub outcome: Outcome,
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(
        actor: &str,
        action: &str,
        resource: &str,
        source: &str,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Self {
        AuditEvent {
            id: Uuid::now_v7(),
            at: now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            source: source.to_owned(),
            outcome,
            details,
        }
    }
}

/// Something a notifier tells people about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotificationEvent {
    RegistrationSubmitted { username: Username, email: Email },
    RegistrationApproved { username: Username, email: Email },
    RegistrationRejected { username: Username, email: Email, reason: String },
    KeyChangeRequested { username: Username },
    // Told to the account's own address (whatever address the request gave) when a key change
    // is asked for, so that a request its holder did not make does not go unnoticed.
    KeyChangeRequestReceived { username: Username },
    KeyChangeApproved { username: Username, email: Email },
    KeyChangeRejected { username: Username, email: Email, reason: String },
    VmReady { owner: Username, name: ResourceName, ip: Option<Ipv4Addr> },
    VmFailed { owner: Username, name: ResourceName, reason: String },
    ClusterReady { owner: Username, name: ResourceName },
    ClusterFailed { owner: Username, name: ResourceName, reason: String },
    QuotaNearlyUsed { owner: Username, resource: String, used: u64, limit: u64 },
}

impl NotificationEvent {
    /// The event's name as it appears in webhooks and logs.
    pub fn name(&self) -> &'static str {
        match self {
            NotificationEvent::RegistrationSubmitted { .. } => "registration_submitted",
            NotificationEvent::RegistrationApproved { .. } => "registration_approved",
            NotificationEvent::RegistrationRejected { .. } => "registration_rejected",
            NotificationEvent::KeyChangeRequested { .. } => "key_change_requested",
            NotificationEvent::KeyChangeRequestReceived { .. } => "key_change_request_received",
            NotificationEvent::KeyChangeApproved { .. } => "key_change_approved",
            NotificationEvent::KeyChangeRejected { .. } => "key_change_rejected",
            NotificationEvent::VmReady { .. } => "vm_ready",
            NotificationEvent::VmFailed { .. } => "vm_failed",
            NotificationEvent::ClusterReady { .. } => "cluster_ready",
            NotificationEvent::ClusterFailed { .. } => "cluster_failed",
            NotificationEvent::QuotaNearlyUsed { .. } => "quota_nearly_used",
        }
    }
}

/// Who runs an operation now: a worker's claim with a fencing value.
///
/// The fence grows by one with every claim of the operation and is never reused, so a worker
/// that lost its claim (it expired and someone took it over) finds out by checking its fence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationClaim {
    pub worker: String,
    pub fence: u64,
    pub expires_at: Timestamp,
}

string_enum!(
    /// Where an outbox message is in its delivery.
    OutboxState { Pending => "pending", Delivered => "delivered", Dead => "dead" }
);

/// A notification waiting for delivery, written in the same transaction as the change that
/// caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub event: NotificationEvent,
    pub state: OutboxState,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When a dispatcher may (next) try to deliver it.
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    /// The dispatcher (worker, `<instance>/<boot id>`) that claimed it until `next_attempt_at`;
    /// `None` when nobody holds it. A restarted instance takes back what an earlier boot of it
    /// held at once, instead of waiting for the claim to run out.
    pub claimed_by: Option<String>,
    /// The notifier's channel it is for (`webhook`, `email`, ...), so that one channel's failures
    /// are retried without sending again on the others; empty: every channel at once.
    pub channel: String,
}

impl OutboxMessage {
    /// A pending message, due now.
    pub fn new(event: NotificationEvent) -> Self {
        let at = now();
        OutboxMessage {
            id: Uuid::now_v7(),
            event,
            state: OutboxState::Pending,
            attempts: 0,
            next_attempt_at: at,
            last_error: None,
            created_at: at,
            delivered_at: None,
            claimed_by: None,
            channel: String::new(),
        }
    }

    /// One pending message per channel, due now (one for every channel at once when none is named).
    pub fn per_channel(event: NotificationEvent, channels: &[String]) -> Vec<Self> {
        if channels.is_empty() {
            return vec![OutboxMessage::new(event)];
        }
        channels
            .iter()
            .map(|channel| OutboxMessage { channel: channel.clone(), ..OutboxMessage::new(event.clone()) })
            .collect()
    }
}

/// The first answer to a create request that carried an `Idempotency-Key`, kept so a retry
/// gets the same answer instead of creating again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub owner: Username,
    pub key: String,
    /// A digest of the request, so reusing a key for a different request is detected.
    pub request_hash: String,
    /// The operations the first request started, in order.
    pub operations: Vec<Uuid>,
    pub created_at: Timestamp,
}

/// A fixed-size set of offsets inside an IP block: which addresses are taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occupancy {
    words: Vec<u64>,
    len: u32,
}

impl Occupancy {
    pub fn new(len: u32) -> Self {
        Occupancy { words: vec![0; len.div_ceil(64) as usize], len }
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn set(&mut self, offset: u32) {
        assert!(offset < self.len, "offset {offset} outside a block of {}", self.len);
        self.words[(offset / 64) as usize] |= 1 << (offset % 64);
    }

    pub fn clear(&mut self, offset: u32) {
        assert!(offset < self.len, "offset {offset} outside a block of {}", self.len);
        self.words[(offset / 64) as usize] &= !(1 << (offset % 64));
    }

    pub fn contains(&self, offset: u32) -> bool {
        offset < self.len && self.words[(offset / 64) as usize] & (1 << (offset % 64)) != 0
    }

    pub fn count(&self) -> u32 {
        self.words.iter().map(|word| word.count_ones()).sum()
    }

    /// Adds every offset of `other` (same length).
    pub fn union_with(&mut self, other: &Occupancy) {
        for (word, other) in self.words.iter_mut().zip(&other.words) {
            *word |= other;
        }
    }

    /// The lowest offset not in the set, in constant time per 64 offsets.
    pub fn first_free(&self) -> Option<u32> {
        for (index, word) in self.words.iter().enumerate() {
            if *word != u64::MAX {
                let offset = index as u32 * 64 + word.trailing_ones();
                return (offset < self.len).then_some(offset);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occupancy_first_free_skips_taken_offsets() {
        let mut set = Occupancy::new(130);
        assert_eq!(set.first_free(), Some(0));
        for offset in 0..70 {
            set.set(offset);
        }
        assert_eq!(set.first_free(), Some(70));
        set.clear(3);
        assert_eq!(set.first_free(), Some(3));
        for offset in 0..130 {
            set.set(offset);
        }
        assert_eq!(set.first_free(), None);
        assert_eq!(set.count(), 130);
    }

    #[test]
    fn quota_check_names_the_exceeded_limit() {
        let quota = Quota {
            max_vms: 10,
            max_clusters: 3,
            max_nodes_per_cluster: 10,
            max_ips: 32,
            max_vcpus: 40,
            max_memory_mb: 1 << 20,
            max_disk_gb: 4000,
        };
        let usage = Usage { vms: 9, vcpus: 18, ..Usage::default() };
        assert!(quota.check(&usage, &Usage { vms: 1, vcpus: 2, ..Usage::default() }).is_ok());
        match quota.check(&usage, &Usage { vms: 2, vcpus: 4, ..Usage::default() }) {
            Err(Error::QuotaExceeded { resource: "vms", used: 9, requested: 11, limit: 10 }) => {}
            other => panic!("unexpected {other:?}"),
        }
        let overridden = quota.with_override(&QuotaOverride { max_vms: Some(20), ..QuotaOverride::default() });
        assert_eq!(overridden.max_vms, 20);
        assert_eq!(overridden.max_ips, 32);
    }

    #[test]
    fn token_validity_and_redaction() {
        let at = now();
        let token = ApiToken {
            id: Uuid::now_v7(),
            owner: Username::parse("alice").unwrap(),
            name: "ci".into(),
            scope: TokenScope::User,
            secret_hash: ApiToken::hash_secret("bsp_secret"),
            created_at: at,
            expires_at: Some(at + chrono::Duration::hours(1)),
            revoked_at: None,
            last_used_at: None,
        };
        assert!(token.is_valid_at(at));
        assert!(!token.is_valid_at(at + chrono::Duration::hours(2)));
        assert!(!format!("{token:?}").contains(&token.secret_hash));
        assert_eq!(ApiToken::hash_secret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn operation_log_tail_is_bounded() {
        let mut op = Operation::new(
            OperationKind::CreateVm,
            Username::parse("alice").unwrap(),
            ResourceRef { kind: ResourceKind::Vm, id: Uuid::now_v7(), name: "web".into() },
            "alice",
            &["provision"],
        );
        op.append_log((0..120).map(|line| line.to_string()));
        assert_eq!(op.log_tail.len(), Operation::LOG_TAIL_LINES);
        assert_eq!(op.log_tail.last().unwrap(), "119");
        assert_eq!(VmState::parse("running").unwrap(), VmState::Running);
        assert!(VmState::parse("bogus").unwrap_err().to_string().contains("running"));
    }
}
