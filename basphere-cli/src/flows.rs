//! The requests and flows that several commands share (`basphere vm delete`, the original
//! `delete-vm`, the demo...): each written once, on the typed client.

use std::time::Duration;

use basphere_api::endpoints::{account, clusters, vms, NamePath};
use basphere_api::{
    CatalogView, ClusterView, CreateClusterRequest, CreateClusterResponse, CreateVmsRequest, CreateVmsResponse,
    ListQuery, MeView, OperationView, QuotaView, VmView,
};

use crate::client::{Client, Doc};
use crate::exit::{self, CliError};
use crate::wait;

fn named(name: &str) -> NamePath {
    NamePath { name: name.to_owned() }
}

/// The `Idempotency-Key` header, when there is a key.
fn idempotency(key: Option<&str>) -> Vec<(&str, &str)> {
    key.map(|key| vec![("idempotency-key", key)]).unwrap_or_default()
}

/// Who the server believes the caller is.
pub async fn me(client: &Client) -> Result<Doc<MeView>, CliError> {
    client.call::<account::Me>(&(), &(), &()).await
}

/// The caller's limits and usage.
pub async fn quota(client: &Client) -> Result<Doc<QuotaView>, CliError> {
    client.call::<account::Quota>(&(), &(), &()).await
}

/// What may be asked for.
pub async fn catalog(client: &Client) -> Result<Doc<CatalogView>, CliError> {
    client.call::<account::Catalog>(&(), &(), &()).await
}

/// Asks for VMs (with an `Idempotency-Key`, a retry gets the first answer).
pub async fn create_vms(
    client: &Client,
    request: &CreateVmsRequest,
    key: Option<&str>,
) -> Result<Doc<CreateVmsResponse>, CliError> {
    client.call_with::<vms::Create>(&(), &(), request, &idempotency(key)).await
}

/// Every VM of the caller, in `state` if given.
pub async fn vms(client: &Client, state: Option<String>) -> Result<Doc<Vec<VmView>>, CliError> {
    client.all_pages::<vms::List, _>(&(), &ListQuery { state, ..Default::default() }).await
}

/// One of the caller's VMs.
pub async fn vm(client: &Client, name: &str) -> Result<Doc<VmView>, CliError> {
    client.call::<vms::Get>(&named(name), &(), &()).await
}

/// Asks for one of the caller's VMs to be deleted: the operation that does it.
pub async fn delete_vm(client: &Client, name: &str) -> Result<Doc<OperationView>, CliError> {
    client.call::<vms::Delete>(&named(name), &(), &()).await
}

/// Asks for a cluster (with an `Idempotency-Key`, a retry gets the first answer).
pub async fn create_cluster(
    client: &Client,
    request: &CreateClusterRequest,
    key: Option<&str>,
) -> Result<Doc<CreateClusterResponse>, CliError> {
    client.call_with::<clusters::Create>(&(), &(), request, &idempotency(key)).await
}

/// Every cluster of the caller.
pub async fn clusters(client: &Client) -> Result<Doc<Vec<ClusterView>>, CliError> {
    client.all_pages::<clusters::List, _>(&(), &ListQuery::default()).await
}

/// One of the caller's clusters.
pub async fn cluster(client: &Client, name: &str) -> Result<Doc<ClusterView>, CliError> {
    client.call::<clusters::Get>(&named(name), &(), &()).await
}

/// Asks for one of the caller's clusters to be deleted: the operation that does it.
pub async fn delete_cluster(client: &Client, name: &str) -> Result<Doc<OperationView>, CliError> {
    client.call::<clusters::Delete>(&named(name), &(), &()).await
}

/// Follows one accepted operation until it ends; its final document, and the error to exit
/// with (`OPERATION_FAILED`, `what failed: why`) when it did not succeed.
pub async fn until_done(
    client: &Client,
    operation: &OperationView,
    timeout: Duration,
    what: &str,
) -> Result<Doc<OperationView>, CliError> {
    let finished = wait::wait_all(client, std::slice::from_ref(operation), timeout).await?.remove(0);
    match finished.view.state.as_str() {
        "succeeded" => Ok(finished),
        _ => Err(CliError::new(
            exit::OPERATION_FAILED,
            format!("{what} failed: {}", finished.view.error.as_deref().unwrap_or("unknown error")),
        )),
    }
}
