//! The developer's dashboard: own VMs (create, start, stop, reboot, delete), the operations that
//! change them (followed live by the page's script, or by reloading), the quota, the tenant
//! network when the account has one, API tokens, and the way to a key change. Every action is the same `Platform` use case the API calls.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use basphere_core::model::TokenScope;
use basphere_core::platform::{token_expiry, ClusterQuery, CreateVms, PageRequest, QuotaReport, VmQuery, MAX_BATCH};
use basphere_core::provisioner::PowerAction;
use basphere_core::validate::Username;
use basphere_core::{Actor, Error};
use minijinja::{context, Value};

use super::form::SignedInForm;
use super::public::field_errors;
use super::session::{SignedIn, Visitor};
use crate::wire::*;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/dashboard/live", get(live))
        .route("/vms/new", get(new_vm_page))
        .route("/vms", post(create_vm))
        .route("/vms/{name}/power", post(power))
        .route("/vms/{name}/delete", get(delete_page).post(delete))
        .route("/tokens", post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
}

/// The quota as bars: what is used of each limit.
pub fn quota_bars(report: &QuotaReport) -> Vec<Value> {
    let (quota, usage) = (&report.quota, &report.usage);
    [
        ("vms", "VMs", usage.vms, quota.max_vms, ""),
        ("clusters", "Clusters", usage.clusters, quota.max_clusters, ""),
        ("ips", "Addresses", usage.ips, quota.max_ips, ""),
        ("vcpus", "vCPUs", usage.vcpus, quota.max_vcpus, ""),
        ("memory", "Memory", usage.memory_mb / 1024, quota.max_memory_mb / 1024, " GB"),
        ("disk", "Disk", usage.disk_gb, quota.max_disk_gb, " GB"),
    ]
    .into_iter()
    .map(|(key, label, used, max, unit)| context! { key, label, used, max, unit })
    .collect()
}

/// The signed-in account, or the administrators' console for the system administrator.
fn own(signed_in: &SignedIn) -> Option<Username> {
    signed_in.actor.account.clone()
}

/// The VMs and recent operations of `owner`, and whether something is still running.
async fn live_values(state: &AppState, actor: &Actor, owner: &Username) -> Result<Value, Error> {
    let query = VmQuery { state: None, page: PageRequest { limit: Some(1000), after: None } };
    let vms = state.platform.vms().list(actor, Some(owner), query).await?;
    let operations = state.platform.runtime().recent_operations(actor, owner, 10).await?;
    let clusters = state
        .platform
        .clusters()
        .list(actor, Some(owner), ClusterQuery { state: None, page: PageRequest { limit: Some(1000), after: None } })
        .await?;
    // Clusters come up over minutes, with no operation running meanwhile: follow them too.
    let busy = operations.iter().any(|op| !op.state.is_finished())
        || clusters.items.iter().any(|c| matches!(c.state.as_str(), "pending" | "provisioning" | "deleting"));
    let vms: Vec<VmView> = vms.items.iter().map(VmView::from_core).collect();
    let clusters: Vec<ClusterView> = clusters.items.iter().map(ClusterView::from_core).collect();
    let operations: Vec<OperationView> = operations.iter().map(OperationView::from_core).collect();
    Ok(context! { vms, clusters, operations, busy })
}

async fn dashboard(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    let Some(owner) = own(&signed_in) else {
        return signed_in.visitor.redirect("/admin");
    };
    let (visitor, actor) = (&signed_in.visitor, &signed_in.actor);
    match dashboard_values(&state, actor, &owner).await {
        Ok(values) => visitor.page(&state, StatusCode::OK, "dashboard.html", "Dashboard", values),
        Err(error) => visitor.error(&state, error),
    }
}

async fn dashboard_values(state: &AppState, actor: &Actor, owner: &Username) -> Result<Value, Error> {
    let live = live_values(state, actor, owner).await?;
    let report = state.platform.accounts().quota(actor, owner).await?;
    let tokens = state.platform.credentials().list_tokens(actor, owner).await?;
    let mut tokens: Vec<TokenView> = tokens.iter().map(TokenView::from_core).collect();
    tokens.sort_by_key(|token| token.revoked_at.is_some());
    let account = state.platform.accounts().whoami(actor).await?.map(|user| UserView::from_core(&user));
    let network = network(state, actor, owner).await?;
    Ok(context! {
        ..live,
        ..context! { quota_bars => quota_bars(&report), tokens, account, network, errors => context! {} }
    })
}

/// The account's tenant network, if it has one: none when tenant networks are off
/// (`networks.mode: flat`) or it was given none.
async fn network(state: &AppState, actor: &Actor, owner: &Username) -> Result<Option<NetworkView>, Error> {
    match state.platform.networks().show(actor, owner).await {
        Ok(report) => Ok(Some(crate::networks::network_view(&report, actor))),
        Err(Error::NotSupported(_) | Error::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The live region alone, which the page's script fetches while operations run.
async fn live(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    let Some(owner) = own(&signed_in) else {
        return signed_in.visitor.redirect("/admin");
    };
    let visitor = &signed_in.visitor;
    match live_values(&state, &signed_in.actor, &owner).await {
        Ok(values) => visitor.fragment(&state, "live.html", values),
        Err(error) => visitor.error(&state, error),
    }
}

async fn new_vm_page(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    let Some(owner) = own(&signed_in) else {
        return signed_in.visitor.redirect("/admin");
    };
    let catalog = crate::api::catalog_view(state.platform.config());
    let form = context! {
        name => "", count => "1",
        os => catalog.os.first().map(|os| os.key.clone()), spec => catalog.specs.first().map(|s| s.key.clone()),
    };
    new_vm_form(&state, &signed_in.visitor, &signed_in.actor, &owner, StatusCode::OK, form, Default::default()).await
}

async fn new_vm_form(
    state: &AppState,
    visitor: &Visitor,
    actor: &Actor,
    owner: &Username,
    status: StatusCode,
    form: Value,
    errors: std::collections::BTreeMap<String, String>,
) -> Response {
    let report = match state.platform.accounts().quota(actor, owner).await {
        Ok(report) => report,
        Err(error) => return visitor.error(state, error),
    };
    let catalog = crate::api::catalog_view(state.platform.config());
    let values = context! {
        form, errors, catalog, quota_bars => quota_bars(&report), max_batch => MAX_BATCH,
        name_rule => basphere_core::validate::RESOURCE_NAME_RULE,
    };
    visitor.page(state, status, "vm_new.html", "Create a VM", values)
}

async fn create_vm(State(state): State<AppState>, posted: SignedInForm) -> Response {
    let SignedInForm { visitor, actor, form } = posted;
    let Some(owner) = actor.account.clone() else {
        return visitor.redirect("/admin");
    };
    let count = form.get("count").trim();
    let request = CreateVms {
        name: form.get("name").trim().to_owned(),
        os: form.get("os").to_owned(),
        spec: form.get("spec").to_owned(),
        count: if count.is_empty() { 1 } else { count.parse().unwrap_or(0) },
    };
    match state.platform.vms().create(&actor, &owner, request, None).await {
        Ok(_) => visitor.redirect("/dashboard?done=vm-created"),
        Err(error) => {
            let error = match error {
                // The quota and the count belong next to the count field.
                Error::QuotaExceeded { .. } => Error::invalid("count", error.to_string()),
                other => other,
            };
            match field_errors(error, "name") {
                Ok((status, errors)) => {
                    let values = context! {
                        name => form.get("name"), count => form.get("count"), os => form.get("os"), spec => form.get("spec"),
                    };
                    new_vm_form(&state, &visitor, &actor, &owner, status, values, errors).await
                }
                Err(error) => visitor.error(&state, error),
            }
        }
    }
}

async fn power(State(state): State<AppState>, Path(name): Path<String>, posted: SignedInForm) -> Response {
    let SignedInForm { visitor, actor, form } = posted;
    let Some(owner) = actor.account.clone() else {
        return visitor.redirect("/admin");
    };
    let (action, done) = match form.get("action") {
        "start" => (PowerAction::Start, "vm-start"),
        "stop" => (PowerAction::Stop, "vm-stop"),
        "reboot" => (PowerAction::Reboot, "vm-reboot"),
        _ => {
            return visitor.message(
                &state,
                StatusCode::BAD_REQUEST,
                "Not accepted",
                "Use start, stop or reboot.",
                "error",
            )
        }
    };
    let result = match basphere_core::platform::lookup_vm_name(&name) {
        Ok(name) => state.platform.vms().power(&actor, &owner, &name, action).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => visitor.redirect(&format!("/dashboard?done={done}")),
        Err(error) => visitor.error(&state, error),
    }
}

async fn delete_page(State(state): State<AppState>, Path(name): Path<String>, signed_in: SignedIn) -> Response {
    let Some(owner) = own(&signed_in) else {
        return signed_in.visitor.redirect("/admin");
    };
    let visitor = &signed_in.visitor;
    match state.platform.vms().get(&signed_in.actor, &owner, &name).await {
        Ok(vm) => {
            let values = context! { vm => VmView::from_core(&vm) };
            visitor.page(&state, StatusCode::OK, "vm_delete.html", "Delete a VM", values)
        }
        Err(error) => visitor.error(&state, error),
    }
}

async fn delete(State(state): State<AppState>, Path(name): Path<String>, posted: SignedInForm) -> Response {
    let SignedInForm { visitor, actor, .. } = posted;
    let Some(owner) = actor.account.clone() else {
        return visitor.redirect("/admin");
    };
    let result = match basphere_core::platform::lookup_vm_name(&name) {
        Ok(name) => state.platform.vms().delete(&actor, &owner, &name).await,
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => visitor.redirect("/dashboard?done=vm-deleting"),
        Err(error) => visitor.error(&state, error),
    }
}

async fn create_token(State(state): State<AppState>, posted: SignedInForm) -> Response {
    let SignedInForm { visitor, actor, form } = posted;
    let Some(owner) = actor.account.clone() else {
        return visitor.redirect("/admin");
    };
    let days = form.get("expires_in_days").trim();
    let expiry = if days.is_empty() {
        Ok(None)
    } else {
        days.parse::<i64>()
            .map_err(|_| Error::invalid("expires_in_days", format!("{days:?} is not a number of days (1-3650)")))
            .and_then(|days| token_expiry(Some(days)))
    };
    let result = match expiry {
        Ok(expires_at) => {
            state
                .platform
                .credentials()
                .create_token(&actor, &owner, form.get("name").trim(), TokenScope::User, expires_at)
                .await
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(new) => {
            let server = state.public_url.clone();
            let values = context! { token => TokenView::from_core(&new.token), secret => new.secret, server };
            visitor.page(&state, StatusCode::CREATED, "token_created.html", "Token created", values)
        }
        Err(error) => match field_errors(error, "name") {
            Ok((_, errors)) => {
                let first =
                    errors.into_iter().next().map(|(field, message)| format!("{field}: {message}")).unwrap_or_default();
                visitor.message(&state, StatusCode::BAD_REQUEST, "Token not created", &first, "error")
            }
            Err(error) => visitor.error(&state, error),
        },
    }
}

async fn revoke_token(State(state): State<AppState>, Path(id): Path<String>, posted: SignedInForm) -> Response {
    let SignedInForm { visitor, actor, .. } = posted;
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return visitor.error(&state, Error::not_found("token", basphere_core::platform::bounded(&id)));
    };
    match state.platform.credentials().revoke_token(&actor, id).await {
        Ok(_) => visitor.redirect("/dashboard?done=token-revoked"),
        Err(error) => visitor.error(&state, error),
    }
}
