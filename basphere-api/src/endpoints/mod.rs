//! The API's endpoints, a module per resource. Each is a zero-sized type implementing
//! [`Endpoint`]; [`all`] lists them, which the server's tests compare with what it routes.

use crate::endpoint::{path_params, Endpoint, Method, PathParam};

pub mod account;
pub mod admin;
pub mod clusters;
pub mod networks;
pub mod operations;
pub mod registration;
pub mod service;
pub mod tokens;
pub mod vms;

path_params! {
    /// `{name}`: one of the caller's VMs or clusters.
    NamePath { name: String }
}

path_params! {
    /// `{name}/{action}`: a power action on one of the caller's VMs.
    VmActionPath { name: String, action: String = "start, stop or reboot" }
}

path_params! {
    /// `{id}`: an operation, a token or a notification.
    IdPath { id: Uuid }
}

path_params! {
    /// `{username}`: an account.
    UsernamePath { username: String }
}

path_params! {
    /// `{username}/.../{name}`: a VM or cluster of an account.
    UserResourcePath { username: String, name: String }
}

path_params! {
    /// `{username}/vms/{name}/{action}`: a power action on a VM of an account.
    UserVmActionPath { username: String, name: String, action: String }
}

/// What the list of endpoints says of one: enough to compare it with a router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    pub operation_id: &'static str,
    pub method: Method,
    pub path: &'static str,
    pub params: &'static [PathParam],
}

impl Info {
    pub fn of<E: Endpoint>() -> Info {
        Info {
            operation_id: E::OPERATION_ID,
            method: E::METHOD,
            path: E::PATH,
            params: <E::Path as crate::endpoint::PathParams>::PARAMS,
        }
    }
}

/// Every endpoint of the API.
pub fn all() -> Vec<Info> {
    macro_rules! infos {
        ($($endpoint:ty),* $(,)?) => { vec![$(Info::of::<$endpoint>()),*] };
    }
    infos![
        service::Healthz,
        service::Readyz,
        service::Metrics,
        service::OpenApi,
        account::Me,
        account::Catalog,
        account::Quota,
        account::SignInLink,
        vms::List,
        vms::Create,
        vms::Get,
        vms::Delete,
        vms::Power,
        clusters::List,
        clusters::Create,
        clusters::Get,
        clusters::Watch,
        clusters::Kubeconfig,
        clusters::Scale,
        clusters::Delete,
        networks::Get,
        operations::List,
        operations::Get,
        tokens::List,
        tokens::Create,
        tokens::Revoke,
        registration::Register,
        registration::KeyChange,
        admin::ListUsers,
        admin::CreateUser,
        admin::GetUser,
        admin::DeleteUser,
        admin::SuspendUser,
        admin::ResumeUser,
        admin::PurgeUser,
        admin::GetQuota,
        admin::SetQuota,
        admin::ResetQuota,
        admin::CreateToken,
        admin::UserVms,
        admin::CreateVms,
        admin::GetVm,
        admin::DeleteVm,
        admin::PowerVm,
        admin::ListVms,
        admin::ListClusters,
        admin::DeleteCluster,
        admin::ListNetworks,
        admin::GetNetwork,
        admin::CreateNetwork,
        admin::DeleteNetwork,
        admin::ListOperations,
        admin::Audit,
        admin::LastReconcile,
        admin::Reconcile,
        admin::Outbox,
        admin::RetryNotification,
        admin::Registrations,
        admin::Registration,
        admin::ApproveRegistration,
        admin::RejectRegistration,
        admin::KeyChanges,
        admin::ApproveKeyChange,
        admin::RejectKeyChange,
    ]
}
