//! The administrators' console: pending registrations and key changes (approve one or several,
//! reject with a reason), accounts (search, show, suspend, resume, purge, quota overrides), every
//! VM, every tenant network, the outbox, reconciliation and the audit log. Each page asks the platform, which checks
//! the caller against its authorization table whatever the page shows.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use basphere_core::model::QuotaOverride;
use basphere_core::platform::{lookup_username, AuditQuery, OutboxQuery, PageRequest, RequestQuery, VmQuery};
use basphere_core::Error;
use minijinja::context;
use uuid::Uuid;

use super::dashboard::quota_bars;
use super::form::AdminForm;
use super::public::field_errors;
use super::session::Admin;
use crate::wire::*;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(requests))
        .route("/admin/{requests}/approve", post(approve))
        .route("/admin/{requests}/{username}/reject", post(reject))
        .route("/admin/users", get(users))
        .route("/admin/users/{username}", get(user))
        .route("/admin/users/{username}/suspend", post(suspend))
        .route("/admin/users/{username}/resume", post(resume))
        .route("/admin/users/{username}/quota", post(set_quota))
        .route("/admin/users/{username}/purge", get(purge_page).post(purge))
        .route("/admin/vms", get(vms))
        .route("/admin/networks", get(networks))
        .route("/admin/outbox", get(outbox))
        .route("/admin/outbox/{id}/retry", post(retry))
        .route("/admin/reconcile", get(reconcile_page).post(reconcile))
        .route("/admin/audit", get(audit))
}

fn after(query: &BTreeMap<String, String>) -> Option<Uuid> {
    query.get("after").and_then(|id| Uuid::parse_str(id).ok())
}

async fn requests(State(state): State<AppState>, Admin { visitor, actor }: Admin) -> Response {
    let pending = |limit| RequestQuery { status: None, page: PageRequest { limit: Some(limit), after: None } };
    let registrations = state.platform.accounts().registrations(&actor, pending(500)).await;
    let key_changes = state.platform.accounts().key_changes(&actor, pending(500)).await;
    match (registrations, key_changes) {
        (Ok(registrations), Ok(key_changes)) => {
            let values = context! {
                registrations_more => registrations.next.is_some(),
                registrations => registrations.items.iter().map(RegistrationView::from_core).collect::<Vec<_>>(),
                key_changes_more => key_changes.next.is_some(),
                key_changes => key_changes.items.iter().map(KeyChangeView::from_core).collect::<Vec<_>>(),
            };
            visitor.page(&state, StatusCode::OK, "admin_requests.html", "Pending requests", values)
        }
        (Err(error), _) | (_, Err(error)) => visitor.error(&state, error),
    }
}

/// Which pending requests a decision is about: `registrations` or `key-changes`, as in the
/// console's URLs.
#[derive(Clone, Copy)]
enum Requests {
    Registrations,
    KeyChanges,
}

impl Requests {
    fn parse(kind: &str) -> Option<Self> {
        match kind {
            "registrations" => Some(Requests::Registrations),
            "key-changes" => Some(Requests::KeyChanges),
            _ => None,
        }
    }
}

/// Approves every selected request of one kind; stops at the first refusal and says why.
async fn approve(State(state): State<AppState>, Path(kind): Path<String>, posted: AdminForm) -> Response {
    let AdminForm { visitor, actor, form } = posted;
    let Some(kind) = Requests::parse(&kind) else {
        return visitor.error(&state, Error::not_found("page", basphere_core::platform::bounded(&kind)));
    };
    let names = form.all("username");
    if names.is_empty() {
        let message = "Select at least one request to approve.";
        return visitor.message(&state, StatusCode::BAD_REQUEST, "Nothing approved", message, "error");
    }
    for name in names {
        let approved = match kind {
            Requests::Registrations => state.platform.accounts().approve_registration(&actor, name).await,
            Requests::KeyChanges => state.platform.accounts().approve_key_change(&actor, name).await,
        };
        if let Err(error) = approved {
            return visitor.error(&state, error);
        }
    }
    visitor.redirect("/admin?done=approved")
}

async fn reject(
    State(state): State<AppState>,
    Path((kind, name)): Path<(String, String)>,
    posted: AdminForm,
) -> Response {
    let AdminForm { visitor, actor, form } = posted;
    let rejected = match Requests::parse(&kind) {
        Some(Requests::Registrations) => {
            state.platform.accounts().reject_registration(&actor, &name, form.get("reason")).await.map(drop)
        }
        Some(Requests::KeyChanges) => {
            state.platform.accounts().reject_key_change(&actor, &name, form.get("reason")).await.map(drop)
        }
        None => Err(Error::not_found("page", basphere_core::platform::bounded(&kind))),
    };
    match rejected {
        Ok(()) => visitor.redirect("/admin?done=rejected"),
        Err(error) => visitor.error(&state, error),
    }
}

async fn users(
    State(state): State<AppState>,
    Admin { visitor, actor }: Admin,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let q = query.get("q").map(|q| q.trim().to_lowercase()).unwrap_or_default();
    match state.platform.accounts().list(&actor, Default::default()).await {
        Ok(users) => {
            let users: Vec<UserView> = users
                .iter()
                .map(UserView::from_core)
                .filter(|u| {
                    q.is_empty()
                        || u.username.contains(&q)
                        || u.email.to_lowercase().contains(&q)
                        || u.team.to_lowercase().contains(&q)
                })
                .collect();
            visitor.page(&state, StatusCode::OK, "admin_users.html", "Users", context! { users, q })
        }
        Err(error) => visitor.error(&state, error),
    }
}

const OVERRIDE_FIELDS: [(&str, &str); 7] = [
    ("vms", "VMs"),
    ("ips", "Addresses"),
    ("vcpus", "vCPUs"),
    ("memory_mb", "Memory (MB)"),
    ("disk_gb", "Disk (GB)"),
    ("clusters", "Clusters"),
    ("nodes_per_cluster", "Nodes per cluster"),
];

async fn user_page(
    state: &AppState,
    admin: &Admin,
    name: &str,
    status: StatusCode,
    errors: BTreeMap<String, String>,
) -> Response {
    let (visitor, actor) = (&admin.visitor, &admin.actor);
    let result = async {
        let user = state.platform.accounts().get(actor, name).await?;
        let report = state.platform.accounts().quota(actor, &user.username).await?;
        let query = VmQuery { state: None, page: PageRequest { limit: Some(1000), after: None } };
        let vms = state.platform.vms().list(actor, Some(&user.username), query).await?;
        Ok::<_, Error>((user, report, vms))
    }
    .await;
    match result {
        Ok((user, report, vms)) => {
            let quota = &report.quota;
            let current = [
                quota.max_vms,
                quota.max_ips,
                quota.max_vcpus,
                quota.max_memory_mb,
                quota.max_disk_gb,
                quota.max_clusters,
                quota.max_nodes_per_cluster,
            ];
            let override_fields: Vec<_> = OVERRIDE_FIELDS
                .iter()
                .zip(current)
                .map(
                    |((key, label), now)| context! { key => *key, label => format!("{label}, now {now}"), value => "" },
                )
                .collect();
            let values = context! {
                user => UserView::from_core(&user), quota_bars => quota_bars(&report), override_fields, errors,
                vms => vms.items.iter().map(VmView::from_core).collect::<Vec<_>>(),
            };
            visitor.page(state, status, "admin_user.html", user.username.as_ref(), values)
        }
        Err(error) => visitor.error(state, error),
    }
}

async fn user(State(state): State<AppState>, admin: Admin, Path(name): Path<String>) -> Response {
    user_page(&state, &admin, &name, StatusCode::OK, BTreeMap::new()).await
}

async fn suspend(State(state): State<AppState>, Path(name): Path<String>, posted: AdminForm) -> Response {
    suspended(state, name, posted, true).await
}

async fn resume(State(state): State<AppState>, Path(name): Path<String>, posted: AdminForm) -> Response {
    suspended(state, name, posted, false).await
}

async fn suspended(state: AppState, name: String, posted: AdminForm, suspend: bool) -> Response {
    let AdminForm { visitor, actor, .. } = posted;
    match state.platform.accounts().set_suspended(&actor, &name, suspend).await {
        Ok(user) => {
            let done = if suspend { "suspended" } else { "resumed" };
            visitor.redirect(&format!("/admin/users/{}?done={done}", user.username))
        }
        Err(error) => visitor.error(&state, error),
    }
}

async fn set_quota(State(state): State<AppState>, Path(name): Path<String>, posted: AdminForm) -> Response {
    let AdminForm { visitor, actor, form } = posted;
    let mut errors = BTreeMap::new();
    let mut value = |key: &str| -> Option<u64> {
        let text = form.get(key).trim();
        if text.is_empty() {
            return None;
        }
        match text.parse::<u64>() {
            Ok(number) => Some(number),
            Err(_) => {
                errors
                    .insert(key.to_owned(), format!("{text:?} is not a whole number; leave it empty for the default"));
                None
            }
        }
    };
    let quota = QuotaOverride {
        max_vms: value("vms"),
        max_ips: value("ips"),
        max_vcpus: value("vcpus"),
        max_memory_mb: value("memory_mb"),
        max_disk_gb: value("disk_gb"),
        max_clusters: value("clusters"),
        max_nodes_per_cluster: value("nodes_per_cluster"),
    };
    let admin = Admin { visitor: visitor.clone(), actor: actor.clone() };
    if !errors.is_empty() {
        return user_page(&state, &admin, &name, StatusCode::BAD_REQUEST, errors).await;
    }
    let owner = match lookup_username(&name) {
        Ok(owner) => owner,
        Err(error) => return visitor.error(&state, error),
    };
    let all_default = quota == QuotaOverride::default();
    match state.platform.accounts().set_quota_override(&actor, &owner, (!all_default).then_some(quota)).await {
        Ok(_) => visitor.redirect(&format!("/admin/users/{owner}?done=quota-saved")),
        Err(error) => match field_errors(error, "vms") {
            Ok((status, errors)) => user_page(&state, &admin, &name, status, errors).await,
            Err(error) => visitor.error(&state, error),
        },
    }
}

async fn purge_page(
    State(state): State<AppState>,
    Admin { visitor, actor }: Admin,
    Path(name): Path<String>,
) -> Response {
    purge_form(&state, &visitor, &actor, &name, StatusCode::OK, BTreeMap::new()).await
}

async fn purge_form(
    state: &AppState,
    visitor: &super::Visitor,
    actor: &basphere_core::Actor,
    name: &str,
    status: StatusCode,
    errors: BTreeMap<String, String>,
) -> Response {
    let result = async {
        let user = state.platform.accounts().get(actor, name).await?;
        let report = state.platform.accounts().quota(actor, &user.username).await?;
        Ok::<_, Error>((user, report))
    }
    .await;
    match result {
        Ok((user, report)) => {
            let values = context! { user => UserView::from_core(&user), vm_count => report.usage.vms, errors };
            visitor.page(state, status, "admin_purge.html", "Purge an account", values)
        }
        Err(error) => visitor.error(state, error),
    }
}

async fn purge(State(state): State<AppState>, Path(name): Path<String>, posted: AdminForm) -> Response {
    let AdminForm { visitor, actor, form } = posted;
    if form.get("confirm").trim() != name {
        let errors = BTreeMap::from([("confirm".to_owned(), format!("Type {name} exactly to purge it."))]);
        return purge_form(&state, &visitor, &actor, &name, StatusCode::BAD_REQUEST, errors).await;
    }
    match state.platform.accounts().purge(&actor, &name).await {
        Ok(_) => visitor.redirect("/admin/users?done=purging"),
        Err(error) => visitor.error(&state, error),
    }
}

async fn vms(
    State(state): State<AppState>,
    Admin { visitor, actor }: Admin,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let request = VmQuery { state: None, page: PageRequest { limit: Some(200), after: after(&query) } };
    match state.platform.vms().list(&actor, None, request).await {
        Ok(page) => {
            let values =
                context! { vms => page.items.iter().map(VmView::from_core).collect::<Vec<_>>(), next => page.next };
            visitor.page(&state, StatusCode::OK, "admin_vms.html", "Every VM", values)
        }
        Err(error) => visitor.error(&state, error),
    }
}

async fn networks(
    State(state): State<AppState>,
    Admin { visitor, actor }: Admin,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let wanted = query.get("state").cloned().filter(|s| !s.is_empty());
    let request = PageRequest { limit: Some(200), after: after(&query) };
    match state.platform.networks().list(&actor, wanted.as_deref(), request).await {
        Ok(page) => {
            let prefix = crate::networks::wan_prefix(state.platform.config());
            let networks: Vec<NetworkView> = page
                .items
                .iter()
                .map(|network| NetworkView { wan_prefix: prefix, ..NetworkView::from_core(network) })
                .collect();
            let values = context! {
                networks, next => page.next, state => wanted.unwrap_or_default(), tenant => prefix.is_some(),
            };
            visitor.page(&state, StatusCode::OK, "admin_networks.html", "Tenant networks", values)
        }
        Err(error) => visitor.error(&state, error),
    }
}

async fn outbox(
    State(state): State<AppState>,
    Admin { visitor, actor }: Admin,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let wanted = query.get("state").cloned().filter(|s| !s.is_empty());
    let request = OutboxQuery { state: wanted.clone(), page: PageRequest { limit: Some(200), after: after(&query) } };
    match state.platform.runtime().outbox(&actor, request).await {
        Ok(page) => {
            let values = context! {
                messages => page.items.iter().map(OutboxView::from_core).collect::<Vec<_>>(), next => page.next,
                state => wanted.unwrap_or_default(),
            };
            visitor.page(&state, StatusCode::OK, "admin_outbox.html", "Outbox", values)
        }
        Err(error) => visitor.error(&state, error),
    }
}

async fn retry(State(state): State<AppState>, Path(id): Path<String>, posted: AdminForm) -> Response {
    let AdminForm { visitor, actor, .. } = posted;
    match state.platform.runtime().retry_notification(&actor, &id).await {
        Ok(_) => visitor.redirect("/admin/outbox?done=retried"),
        Err(error) => visitor.error(&state, error),
    }
}

async fn reconcile_page(State(state): State<AppState>, Admin { visitor, actor }: Admin) -> Response {
    match state.platform.vms().last_reconcile_for(&actor) {
        Ok(report) => {
            let values = context! { report => report.as_ref().map(ReconcileView::from_core) };
            visitor.page(&state, StatusCode::OK, "admin_reconcile.html", "Reconciliation", values)
        }
        Err(error) => visitor.error(&state, error),
    }
}

async fn reconcile(State(state): State<AppState>, posted: AdminForm) -> Response {
    let AdminForm { visitor, actor, .. } = posted;
    match state.platform.vms().reconcile_now(&actor).await {
        Ok(_) => visitor.redirect("/admin/reconcile?done=reconciled"),
        Err(error) => visitor.error(&state, error),
    }
}

async fn audit(
    State(state): State<AppState>,
    Admin { visitor, actor }: Admin,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let who = query.get("actor").map(|a| a.trim().to_owned()).filter(|a| !a.is_empty());
    let action = query.get("action").map(|a| a.trim().to_owned()).filter(|a| !a.is_empty());
    let request = AuditQuery {
        actor: who.clone(),
        action: action.clone(),
        newest_first: true,
        page: PageRequest { limit: Some(200), after: after(&query) },
    };
    match state.platform.runtime().audit_log(&actor, request).await {
        Ok(page) => {
            let values = context! {
                events => page.items.iter().map(AuditView::from_core).collect::<Vec<_>>(), next => page.next,
                actor => who.unwrap_or_default(), action => action.unwrap_or_default(),
            };
            visitor.page(&state, StatusCode::OK, "admin_audit.html", "Audit log", values)
        }
        Err(error) => visitor.error(&state, error),
    }
}
