//! Operations, their claims, the audit event and idempotency records.

use super::*;

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
        CreateNetwork => "create_network",
        DeleteNetwork => "delete_network",
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
