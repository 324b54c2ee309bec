//! The caller's VMs.

use super::{NamePath, VmActionPath};
use crate::endpoint::problems::{CHANGE, CREATE, LIST, ONE};
use crate::endpoint::{endpoint, BodyMedia, HeaderParam, Reply, IDEMPOTENT_REPLAYED, LOCATION_FIRST};
use crate::{CreateVmsRequest, CreateVmsResponse, ListQuery, OperationView, Page, VmView};

/// `Idempotency-Key` of a VM create.
pub const IDEMPOTENCY_KEY: HeaderParam =
    HeaderParam { name: "Idempotency-Key", description: "Makes a retried create return the first answer" };

/// 202 with the VMs, their operations, the first one's `Location` and `Idempotent-Replayed`.
pub(crate) const CREATED: Reply = Reply {
    status: 202,
    description: "",
    content: &[crate::endpoint::Content::Json],
    headers: &[LOCATION_FIRST, IDEMPOTENT_REPLAYED],
};

endpoint! {
    /// `GET /api/v1/vms`
    List = Get "/api/v1/vms", list_vms, tag "vms",
    types((), ListQuery, () => Page<VmView>);
    SUMMARY = "Your VMs. *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = LIST;
}

endpoint! {
    /// `POST /api/v1/vms`
    Create = Post "/api/v1/vms", create_vms, tag "vms",
    types((), (), CreateVmsRequest => CreateVmsResponse);
    SUMMARY = "Create one VM or a batch of up to 10. Returns 202 with the operations; `Idempotency-Key`\nmakes a retry return the first answer. *user*";
    BODY = BodyMedia::Json;
    HEADERS = &[IDEMPOTENCY_KEY];
    REPLIES = &[CREATED];
    PROBLEMS = CREATE;
}

endpoint! {
    /// `GET /api/v1/vms/{name}`
    Get = Get "/api/v1/vms/{name}", get_vm, tag "vms",
    types(NamePath, (), () => VmView);
    SUMMARY = "One of your VMs. *user*";
    REPLIES = &[Reply::OK];
    PROBLEMS = ONE;
}

endpoint! {
    /// `DELETE /api/v1/vms/{name}`
    Delete = Delete "/api/v1/vms/{name}", delete_vm, tag "vms",
    types(NamePath, (), () => OperationView);
    SUMMARY = "Delete one of your VMs; its address is freed once vSphere confirms it is gone. *user*";
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CHANGE;
}

endpoint! {
    /// `POST /api/v1/vms/{name}/{action}`
    Power = Post "/api/v1/vms/{name}/{action}", vm_action, tag "vms",
    types(VmActionPath, (), () => OperationView);
    SUMMARY = "Start, stop or reboot one of your VMs. *user*";
    REPLIES = &[Reply::ACCEPTED];
    PROBLEMS = CHANGE;
}
