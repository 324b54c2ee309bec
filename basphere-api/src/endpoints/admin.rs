//! What administrators do: accounts and their quotas, tokens and resources, every list, the
//! audit log, reconciliation, notifications, and the registration and key change requests.

use super::{IdPath, UserResourcePath, UserVmActionPath, UsernamePath};
use crate::endpoint::problems::{CHANGE, CHANGE_BODY, CREATE, LIST, LIST_OWNER, ONE, ONE_BODY, READ};
use crate::endpoint::ProblemResponse::*;
use crate::endpoint::{endpoint, BodyMedia, Content, Reply, LOCATION};
use crate::{
    AuditQuery, AuditView, ClusterView, CreateTokenRequest, CreateUserRequest, CreateVmsRequest, CreateVmsResponse,
    CreatedToken, KeyChangeView, ListQuery, NetworkListQuery, NetworkView, OperationView, OutboxQuery, OutboxView,
    Page, QuotaOverrideRequest, QuotaView, ReconcileView, RegistrationView, RejectRequest, RequestListQuery, UserView,
    VmView,
};

endpoint! {
    /// `GET /api/v1/admin/users`
    ListUsers = Get "/api/v1/admin/users", admin_list_users, tag "admin",
    types((), (), () => Vec<UserView>);
    SUMMARY = "Every account. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = READ;
}

endpoint! {
    /// `POST /api/v1/admin/users`
    CreateUser = Post "/api/v1/admin/users", admin_create_user, tag "admin",
    types((), (), CreateUserRequest => UserView);
    SUMMARY = "Create an account: the user record, an IP block and the vSphere folder. *admin*";
    BODY = BodyMedia::Json;
    REPLIES = &[Reply::CREATED];
    PROBLEMS = CREATE;
}

endpoint! {
    /// `GET /api/v1/admin/users/{username}`
    GetUser = Get "/api/v1/admin/users/{username}", admin_get_user, tag "admin",
    types(UsernamePath, (), () => UserView);
    SUMMARY = "One account. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}

endpoint! {
    /// `DELETE /api/v1/admin/users/{username}`
    DeleteUser = Delete "/api/v1/admin/users/{username}", admin_delete_user, tag "admin",
    types(UsernamePath, (), () => ());
    SUMMARY = "Deletes an account that owns no VM or cluster: frees its IP block, removes its bastion\nlogin and its tokens. *admin*";
    REPLIES = &[Reply { status: 204, description: "Deleted.", content: &[], headers: &[] }];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `POST /api/v1/admin/users/{username}/suspend`
    SuspendUser = Post "/api/v1/admin/users/{username}/suspend", admin_suspend_user, tag "admin",
    types(UsernamePath, (), () => UserView);
    SUMMARY = "Suspends an account: its tokens and socket identity are refused; its resources stay. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `POST /api/v1/admin/users/{username}/resume`
    ResumeUser = Post "/api/v1/admin/users/{username}/resume", admin_resume_user, tag "admin",
    types(UsernamePath, (), () => UserView);
    SUMMARY = "Resumes a suspended account. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}

endpoint! {
    /// `POST /api/v1/admin/users/{username}/purge`
    PurgeUser = Post "/api/v1/admin/users/{username}/purge", admin_purge_user, tag "admin",
    types(UsernamePath, (), () => OperationView);
    SUMMARY = "Purges an account: suspends it, then the operation destroys its VMs, frees its addresses\nand blocks, removes its bastion login and the account. *admin*";
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `GET /api/v1/admin/users/{username}/quota`
    GetQuota = Get "/api/v1/admin/users/{username}/quota", admin_get_quota, tag "admin",
    types(UsernamePath, (), () => QuotaView);
    SUMMARY = "One account's limits and usage. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}

endpoint! {
    /// `PUT /api/v1/admin/users/{username}/quota`
    SetQuota = Put "/api/v1/admin/users/{username}/quota", admin_set_quota, tag "admin",
    types(UsernamePath, (), QuotaOverrideRequest => QuotaView);
    SUMMARY = "Override one account's limits; absent fields keep the default. *admin*";
    BODY = BodyMedia::Json;
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE_BODY;
}

endpoint! {
    /// `DELETE /api/v1/admin/users/{username}/quota`
    ResetQuota = Delete "/api/v1/admin/users/{username}/quota", admin_reset_quota, tag "admin",
    types(UsernamePath, (), () => QuotaView);
    SUMMARY = "Back to the default limits. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}

endpoint! {
    /// `POST /api/v1/admin/users/{username}/tokens`
    CreateToken = Post "/api/v1/admin/users/{username}/tokens", admin_create_token, tag "admin",
    types(UsernamePath, (), CreateTokenRequest => CreatedToken);
    SUMMARY = "Create a token for an account (its first, say). *admin*";
    BODY = BodyMedia::Json;
    REPLIES = &[Reply::CREATED];
    PROBLEMS = ONE_BODY;
}

endpoint! {
    /// `GET /api/v1/admin/users/{username}/vms`
    UserVms = Get "/api/v1/admin/users/{username}/vms", admin_user_vms, tag "admin",
    types(UsernamePath, ListQuery, () => Page<VmView>);
    SUMMARY = "One account's VMs. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}

endpoint! {
    /// `POST /api/v1/admin/users/{username}/vms`
    CreateVms = Post "/api/v1/admin/users/{username}/vms", admin_create_vms, tag "admin",
    types(UsernamePath, (), CreateVmsRequest => CreateVmsResponse);
    SUMMARY = "Create VMs for an account. *admin*";
    BODY = BodyMedia::Json;
    REPLIES = &[super::vms::CREATED];
    PROBLEMS = CHANGE_BODY;
}

endpoint! {
    /// `GET /api/v1/admin/users/{username}/vms/{name}`
    GetVm = Get "/api/v1/admin/users/{username}/vms/{name}", admin_get_vm, tag "admin",
    types(UserResourcePath, (), () => VmView);
    SUMMARY = "One VM of an account. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}

endpoint! {
    /// `DELETE /api/v1/admin/users/{username}/vms/{name}`
    DeleteVm = Delete "/api/v1/admin/users/{username}/vms/{name}", admin_delete_vm, tag "admin",
    types(UserResourcePath, (), () => OperationView);
    SUMMARY = "Delete a VM of an account. *admin*";
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `POST /api/v1/admin/users/{username}/vms/{name}/{action}`
    PowerVm = Post "/api/v1/admin/users/{username}/vms/{name}/{action}", admin_vm_action, tag "admin",
    types(UserVmActionPath, (), () => OperationView);
    SUMMARY = "Start, stop or reboot a VM of an account. *admin*";
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `GET /api/v1/admin/vms`
    ListVms = Get "/api/v1/admin/vms", admin_list_vms, tag "admin",
    types((), ListQuery, () => Page<VmView>);
    SUMMARY = "Every VM, of every account (`?owner=` for one). *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = LIST_OWNER;
}

endpoint! {
    /// `GET /api/v1/admin/clusters`
    ListClusters = Get "/api/v1/admin/clusters", admin_list_clusters, tag "admin",
    types((), ListQuery, () => Page<ClusterView>);
    SUMMARY = "Every cluster (`?owner=` for one account). *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = LIST_OWNER;
}

endpoint! {
    /// `DELETE /api/v1/admin/users/{username}/clusters/{name}`
    DeleteCluster = Delete "/api/v1/admin/users/{username}/clusters/{name}", admin_delete_cluster, tag "admin",
    types(UserResourcePath, (), () => OperationView);
    SUMMARY = "Delete a cluster of an account. *admin*";
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `GET /api/v1/admin/networks`
    ListNetworks = Get "/api/v1/admin/networks", admin_list_networks, tag "admin",
    types((), NetworkListQuery, () => Page<NetworkView>);
    SUMMARY = "Every account's tenant network, oldest first, without asking the routers (`?state=deleted` for\nthe history of deleted ones). *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = LIST;
}

endpoint! {
    /// `GET /api/v1/admin/users/{username}/network`
    GetNetwork = Get "/api/v1/admin/users/{username}/network", admin_get_network, tag "admin",
    types(UsernamePath, (), () => NetworkView);
    SUMMARY = "One account's tenant network, with what its router holds now. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}

endpoint! {
    /// `POST /api/v1/admin/users/{username}/network`
    CreateNetwork = Post "/api/v1/admin/users/{username}/network", admin_create_network, tag "admin",
    types(UsernamePath, (), () => OperationView);
    SUMMARY = "Makes an account's tenant network (for an account approved before tenant mode), or makes\nagain one whose making failed: its VLAN ids and WAN address are recorded at once, the\noperation makes its router. *admin*";
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `DELETE /api/v1/admin/users/{username}/network`
    DeleteNetwork = Delete "/api/v1/admin/users/{username}/network", admin_delete_network, tag "admin",
    types(UsernamePath, (), () => OperationView);
    SUMMARY = "Deletes an account's tenant network: refused while the account has a VM or cluster or an\noperation runs; the operation removes its router, then frees its VLAN ids and WAN address. *admin*";
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `GET /api/v1/admin/operations`
    ListOperations = Get "/api/v1/admin/operations", admin_list_operations, tag "admin",
    types((), ListQuery, () => Page<OperationView>);
    SUMMARY = "Every operation (`?owner=` for one account). *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = LIST_OWNER;
}

endpoint! {
    /// `GET /api/v1/admin/audit`
    Audit = Get "/api/v1/admin/audit", admin_audit, tag "admin",
    types((), AuditQuery, () => Page<AuditView>);
    SUMMARY = "The audit log, oldest first. *admin*";
    REPLIES = &[Reply {
        status: 200,
        description: "A page of events, or JSON lines with `format=jsonl`",
        content: &[Content::Json, Content::Text("application/x-ndjson")],
        headers: &[],
    }];
    PROBLEMS = LIST;
}

endpoint! {
    /// `GET /api/v1/admin/reconcile`
    LastReconcile = Get "/api/v1/admin/reconcile", admin_last_reconcile, tag "admin",
    types((), (), () => ReconcileView);
    SUMMARY = "The last reconciliation of the store with vSphere (run every `reconcile.interval_seconds`). *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = READ;
}

endpoint! {
    /// `POST /api/v1/admin/reconcile`
    Reconcile = Post "/api/v1/admin/reconcile", admin_reconcile, tag "admin",
    types((), (), () => ReconcileView);
    SUMMARY = "Reconcile now. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = READ;
}

endpoint! {
    /// `GET /api/v1/admin/outbox`
    Outbox = Get "/api/v1/admin/outbox", admin_outbox, tag "admin",
    types((), OutboxQuery, () => Page<OutboxView>);
    SUMMARY = "Notifications waiting for delivery, delivered, or dead-lettered after every retry, oldest\nfirst. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = LIST;
}

endpoint! {
    /// `POST /api/v1/admin/outbox/{id}/retry`
    RetryNotification = Post "/api/v1/admin/outbox/{id}/retry", admin_retry_notification, tag "admin",
    types(IdPath, (), () => OutboxView);
    SUMMARY = "Put a dead-lettered notification back in line for delivery. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = &[Unauthenticated, Forbidden, NotFound, Conflict, ServerError];
}

endpoint! {
    /// `GET /api/v1/admin/registrations`
    Registrations = Get "/api/v1/admin/registrations", admin_registrations, tag "admin",
    types((), RequestListQuery, () => Page<RegistrationView>);
    SUMMARY = "Registration requests, oldest first (pending unless `?status=`). *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = LIST;
}

endpoint! {
    /// `GET /api/v1/admin/registrations/{username}`
    Registration = Get "/api/v1/admin/registrations/{username}", admin_registration, tag "admin",
    types(UsernamePath, (), () => RegistrationView);
    SUMMARY = "A username's latest registration request. *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}

endpoint! {
    /// `POST /api/v1/admin/registrations/{username}/approve`
    ApproveRegistration = Post "/api/v1/admin/registrations/{username}/approve", admin_approve_registration, tag "admin",
    types(UsernamePath, (), () => OperationView);
    SUMMARY = "Approves a registration: the account is active at once; the operation gives it its IP\nblock, vSphere folder and bastion login, then tells the user. Approving again finishes an\napproval that failed part-way, and answers an approval that succeeded with that operation\n(200), so an account is welcomed once. *admin*";
    REPLIES = &[
        Reply::ACCEPTED,
        Reply {
            status: 200,
            description: "The account's approval had succeeded already: that operation",
            content: &[Content::Json],
            headers: &[LOCATION],
        },
    ];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `POST /api/v1/admin/registrations/{username}/reject`
    RejectRegistration = Post "/api/v1/admin/registrations/{username}/reject", admin_reject_registration, tag "admin",
    types(UsernamePath, (), RejectRequest => RegistrationView);
    SUMMARY = "Rejects a pending registration; the applicant is told the reason. *admin*";
    BODY = BodyMedia::Json;
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE_BODY;
}

endpoint! {
    /// `GET /api/v1/admin/key-changes`
    KeyChanges = Get "/api/v1/admin/key-changes", admin_key_changes, tag "admin",
    types((), RequestListQuery, () => Page<KeyChangeView>);
    SUMMARY = "Key change requests, oldest first (pending unless `?status=`). *admin*";
    REPLIES = &[Reply::OK];
    PROBLEMS = LIST;
}

endpoint! {
    /// `POST /api/v1/admin/key-changes/{username}/approve`
    ApproveKeyChange = Post "/api/v1/admin/key-changes/{username}/approve", admin_approve_key_change, tag "admin",
    types(UsernamePath, (), () => OperationView);
    SUMMARY = "Approves a pending key change: the account's key is replaced at once, on the bastion by\nthe operation. *admin*";
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `POST /api/v1/admin/key-changes/{username}/reject`
    RejectKeyChange = Post "/api/v1/admin/key-changes/{username}/reject", admin_reject_key_change, tag "admin",
    types(UsernamePath, (), RejectRequest => KeyChangeView);
    SUMMARY = "Rejects a pending key change; the user is told the reason. *admin*";
    BODY = BodyMedia::Json;
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE_BODY;
}
