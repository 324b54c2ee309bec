//! The simulated management cluster's HTTP API: the subset of the Kubernetes API Basphere's
//! client uses, with the answers and errors a real API server gives.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State as AxumState};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use super::{Event, FakeManagementCluster, Key, Resource, Write};

pub(super) fn router(fake: Arc<FakeManagementCluster>) -> Router {
    Router::new().fallback(handle).with_state(fake)
}

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code.as_u16(),
    });
    (code, [("content-type", "application/json")], body.to_string()).into_response()
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/json")], value.to_string()).into_response()
}

/// What a path names.
enum Target<'a> {
    Discovery,
    Collection { namespace: Option<&'a str>, plural: &'a str },
    Item { namespace: Option<&'a str>, plural: &'a str, name: &'a str },
}

async fn handle(
    AxumState(fake): AxumState<Arc<FakeManagementCluster>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    // Every request needs the token of the kubeconfig, as an API server needs credentials: the
    // server listens on loopback, which every user of the machine reaches.
    if !fake.authorized(headers.get(AUTHORIZATION).map(|value| value.as_bytes())) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let path = uri.path().trim_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => {
            fake.lock().requests.discovery += 1;
            return ok(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}));
        }
        ["apis"] => {
            fake.lock().requests.discovery += 1;
            return ok(group_list(&fake));
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return status(StatusCode::NOT_FOUND, "NotFound", format!("the server could not find {path}")),
    };
    if fake.lock().hidden.contains(&(group.to_owned(), version.to_owned())) {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("{group}/{version} is not served"));
    }
    let target = match (group, rest) {
        (_, []) => Target::Discovery,
        ("", ["namespaces"]) => Target::Collection { namespace: None, plural: "namespaces" },
        ("", ["namespaces", name]) => Target::Item { namespace: None, plural: "namespaces", name },
        (_, ["namespaces", namespace, plural]) => Target::Collection { namespace: Some(namespace), plural },
        (_, ["namespaces", namespace, plural, name]) => Target::Item { namespace: Some(namespace), plural, name },
        (_, [plural]) => Target::Collection { namespace: None, plural },
        (_, [plural, name]) => Target::Item { namespace: None, plural, name },
        _ => return status(StatusCode::NOT_FOUND, "NotFound", format!("no such path {path}")),
    };
    let resources: Vec<&Resource> =
        fake.resources.iter().filter(|r| r.group == group && r.versions.iter().any(|v| v == version)).collect();
    if resources.is_empty() {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("{group}/{version} is not served"));
    }
    match target {
        Target::Discovery => {
            fake.lock().requests.discovery += 1;
            ok(resource_list(group, version, &resources))
        }
        Target::Collection { namespace, plural } => {
            let Some(resource) = resources.iter().find(|r| r.plural == plural) else {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("the server could not find the requested resource {plural}"),
                );
            };
            if method != Method::GET {
                return status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{method} on a collection"));
            }
            let selector = query.get("labelSelector").map(String::as_str).unwrap_or_default().to_owned();
            if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
                watch(fake.clone(), resource, version, namespace.map(str::to_owned), selector, &query)
            } else {
                list(&fake, resource, version, namespace, &selector)
            }
        }
        Target::Item { namespace, plural, name } => {
            let Some(resource) = resources.iter().find(|r| r.plural == plural) else {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("the server could not find the requested resource {plural}"),
                );
            };
            if resource.namespaced != namespace.is_some() {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{plural} is {}namespaced", if resource.namespaced { "" } else { "not " }),
                );
            }
            let key: Key = (group.into(), plural.into(), namespace.unwrap_or_default().into(), name.into());
            match method {
                Method::GET => get(&fake, resource, &key),
                Method::PATCH => apply(&fake, resource, version, key, &query, &body),
                Method::DELETE => delete(&fake, resource, &key),
                other => {
                    status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("{other} is not served here"))
                }
            }
        }
    }
}

fn group_list(fake: &FakeManagementCluster) -> Value {
    let hidden = fake.lock().hidden.clone();
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for resource in fake.resources.iter().filter(|r| !r.group.is_empty()) {
        for version in &resource.versions {
            if hidden.contains(&(resource.group.clone(), version.clone())) {
                continue;
            }
            let versions = groups.entry(&resource.group).or_default();
            if !versions.contains(&version.as_str()) {
                versions.push(version);
            }
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .filter(|(_, versions)| !versions.is_empty())
        .map(|(name, mut versions)| {
            versions.sort();
            let entry = |v: &str| json!({"groupVersion": format!("{name}/{v}"), "version": v});
            let preferred = entry(versions.last().copied().unwrap_or_default());
            json!({"name": name, "versions": versions.iter().map(|v| entry(v)).collect::<Vec<_>>(), "preferredVersion": preferred})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn resource_list(group: &str, version: &str, resources: &[&Resource]) -> Value {
    let entries: Vec<Value> = resources
        .iter()
        .map(|r| {
            json!({
                "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced, "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            })
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(group, version), "resources": entries})
}

/// A label selector's terms: `key`, `!key`, `key=value`, `key==value`, `key!=value`.
fn selects(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector.split(',').map(str::trim).filter(|t| !t.is_empty()).all(|term| {
        if let Some((key, value)) = term.split_once("!=") {
            labels[key.trim()].as_str() != Some(value.trim())
        } else if let Some((key, value)) = term.split_once('=') {
            labels[key.trim()].as_str() == Some(value.trim_start_matches('=').trim())
        } else if let Some(key) = term.strip_prefix('!') {
            labels.get(key.trim()).is_none()
        } else {
            labels.get(term).is_some()
        }
    })
}

fn list(
    fake: &FakeManagementCluster,
    resource: &Resource,
    version: &str,
    namespace: Option<&str>,
    selector: &str,
) -> Response {
    let mut state = fake.lock();
    state.requests.list += 1;
    let items: Vec<Value> = state
        .objects
        .iter()
        .filter(|((g, p, ns, _), object)| {
            *g == resource.group
                && *p == resource.plural
                && namespace.is_none_or(|n| n == ns)
                && selects(selector, object)
        })
        .map(|(_, object)| object.clone())
        .collect();
    ok(json!({
        "apiVersion": group_version(&resource.group, version),
        "kind": format!("{}List", resource.kind),
        "metadata": {"resourceVersion": state.resource_version.to_string()},
        "items": items,
    }))
}

fn watch(
    fake: Arc<FakeManagementCluster>,
    resource: &Resource,
    version: &str,
    namespace: Option<String>,
    selector: String,
    query: &BTreeMap<String, String>,
) -> Response {
    let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let timeout =
        Duration::from_secs(query.get("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(300).min(1800));
    let (group, plural) = (resource.group.clone(), resource.plural.clone());
    let matches = {
        let (group, plural, namespace, selector) = (group.clone(), plural.clone(), namespace.clone(), selector.clone());
        move |event: &Event| {
            event.group == group
                && event.plural == plural
                && namespace.as_deref().is_none_or(|n| event.object["metadata"]["namespace"] == n)
                && selects(&selector, &event.object)
        }
    };
    let mut receiver = fake.changes.subscribe();
    let (backlog, expired) = {
        let mut state = fake.lock();
        state.requests.watch += 1;
        let oldest = state.events.front().map_or(state.resource_version + 1, |e| e.resource_version);
        if from == 0 {
            // No version: the current objects first, as ADDED.
            let current: Vec<Event> = state
                .objects
                .iter()
                .filter(|((g, p, ..), _)| *g == group && *p == plural)
                .map(|(_, object)| Event {
                    resource_version: state.resource_version,
                    kind: "ADDED",
                    group: group.clone(),
                    plural: plural.clone(),
                    object: object.clone(),
                })
                .filter(|e| matches(e))
                .collect();
            (current, false)
        } else if from + 1 < oldest && from < state.resource_version {
            (Vec::new(), true)
        } else {
            (state.events.iter().filter(|e| e.resource_version > from && matches(e)).cloned().collect(), false)
        }
    };
    let _ = version;
    let line = |kind: &str, object: &Value| {
        Ok::<Bytes, Infallible>(Bytes::from(format!("{}\n", json!({"type": kind, "object": object}))))
    };
    let stream = async_stream(move |sender| async move {
        if expired {
            let gone = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
                "message": format!("too old resource version: {from}")});
            let _ = sender.send(line("ERROR", &gone)).await;
            return;
        }
        let mut last = from;
        for event in backlog {
            last = last.max(event.resource_version);
            if sender.send(line(event.kind, &event.object)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Ok(event)) => {
                    if event.resource_version > last && matches(&event) {
                        last = event.resource_version;
                        if sender.send(line(event.kind, &event.object)).await.is_err() {
                            return;
                        }
                    }
                }
                // Fell behind: end the watch; the client lists again.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => return,
                Ok(Err(_)) | Err(_) => return,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "watch"))
}

/// A stream fed by a task through a bounded channel (the watch's lines).
fn async_stream<F, Fut>(producer: F) -> tokio_stream::wrappers::ReceiverStream<Result<Bytes, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(producer(sender));
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

fn get(fake: &FakeManagementCluster, resource: &Resource, key: &Key) -> Response {
    let mut state = fake.lock();
    state.requests.get += 1;
    match state.objects.get(key) {
        Some(object) => ok(object.clone()),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{}.{} \"{}\" not found", resource.plural, resource.group, key.3),
        ),
    }
}

/// Maps merge key by key; anything else is replaced.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => merge(existing, value),
                    _ => {
                        into.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (into, from) => *into = from.clone(),
    }
}

fn apply(
    fake: &FakeManagementCluster,
    resource: &Resource,
    version: &str,
    key: Key,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Response {
    {
        let mut state = fake.lock();
        state.requests.apply += 1;
        state.asked(Write::Apply(key.clone()));
        if query.get("force").is_some_and(|f| f == "true") {
            state.requests.forced += 1;
        }
    }
    let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "PATCH with apply-patch requires a fieldManager");
    };
    let applied: Value = match serde_json::from_slice(body).or_else(|_| serde_yaml::from_slice(body)) {
        Ok(value) => value,
        Err(error) => {
            return status(StatusCode::BAD_REQUEST, "BadRequest", format!("the body is not an object: {error}"))
        }
    };
    let want_version = group_version(&resource.group, version);
    if applied["apiVersion"] != want_version.as_str() || applied["kind"] != resource.kind.as_str() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "apiVersion/kind {}/{} do not match {want_version} {}",
                applied["apiVersion"], applied["kind"], resource.kind
            ),
        );
    }
    let (_, _, namespace, name) = &key;
    if applied["metadata"]["name"] != name.as_str() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name of the object does not match the name on the URL",
        );
    }
    if !namespace.is_empty() && applied["metadata"]["namespace"].as_str().is_some_and(|n| n != namespace) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the namespace of the object does not match the namespace on the URL",
        );
    }
    if !dns_subdomain(name) {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain"),
        );
    }
    // The API server's own checks of object metadata: a namespace's name is a DNS label, and
    // every label value is a valid label value.
    if resource.kind == "Namespace" && !dns_label(name) {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "Namespace {name:?} is invalid: metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 label \
                 must consist of lower case alphanumeric characters or '-', and must start and end with an \
                 alphanumeric character, at most 63 characters"
            ),
        );
    }
    for (key, value) in applied["metadata"]["labels"].as_object().into_iter().flatten() {
        let value = value.as_str().unwrap_or("\u{0}");
        if let Some(why) = label_value_error(value) {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!(
                    "{} {name:?} is invalid: metadata.labels: Invalid value: {value:?}: {why} (label {key})",
                    resource.kind
                ),
            );
        }
    }
    // Cluster API's webhooks: a Cluster's and a MachineDeployment's names are used as label
    // values, so names that are not valid label values are refused.
    if resource.group == "cluster.x-k8s.io" && matches!(resource.kind.as_str(), "Cluster" | "MachineDeployment") {
        if let Some(why) = label_value_error(name) {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!(
                    "admission webhook \"validation.{}.cluster.x-k8s.io\" denied the request: {}.cluster.x-k8s.io {name:?} \
                     is invalid: metadata.name: Invalid value: {name:?}: must be a valid label value: {why}",
                    resource.kind.to_lowercase(),
                    resource.kind
                ),
            );
        }
    }
    if resource.group.contains("x-k8s.io") {
        match fake.schemas.errors(&applied) {
            Ok(errors) if errors.is_empty() => {}
            Ok(errors) => {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("{} {name:?} is invalid: {}", resource.kind, errors.join("; ")),
                )
            }
            Err(error) => return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", error),
        }
    }
    let mut state = fake.lock();
    if !namespace.is_empty() {
        let ns_key: Key = (String::new(), "namespaces".into(), String::new(), namespace.clone());
        if !state.objects.contains_key(&ns_key) {
            return status(StatusCode::NOT_FOUND, "NotFound", format!("namespaces \"{namespace}\" not found"));
        }
    }
    if resource.kind == "InClusterIPPool"
        && !state.pool_reuse_grace
        && applied["spec"].get("addressReuseGracePeriodSeconds").is_some()
    {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            ".spec.addressReuseGracePeriodSeconds: field not declared in schema (strict decoding error: unknown field)",
        );
    }
    let existing = state.objects.get(&key).cloned();
    // The providers' webhooks.
    if let Some(existing) = &existing {
        if resource.kind == "VSphereMachineTemplate" && existing["spec"] != applied["spec"] {
            return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("VSphereMachineTemplate {name:?} is invalid: spec: Forbidden: VSphereMachineTemplate spec.template.spec field is immutable"));
        }
    }
    if resource.kind == "InClusterIPPool" {
        let held = state.allocations.get(&(namespace.clone(), name.clone())).cloned().unwrap_or_default();
        let offered: Vec<String> = serde_json::from_value(applied["spec"]["addresses"].clone()).unwrap_or_default();
        if let Some(missing) = held.iter().find(|a| !offered.contains(&a.to_string())) {
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("admission webhook \"validation.inclusterippool.ipam.cluster.x-k8s.io\" denied the request: pool addresses do not contain allocated address {missing}"),
            );
        }
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut object = match existing.clone() {
        Some(mut current) => {
            let mut update = applied.clone();
            if let Some(map) = update.as_object_mut() {
                map.remove("status");
            }
            let generation = current["metadata"]["generation"].as_u64().unwrap_or(1);
            let spec_before = current["spec"].clone();
            merge(&mut current, &update);
            if current["spec"] != spec_before {
                current["metadata"]["generation"] = json!(generation + 1);
            }
            current
        }
        None => {
            let mut created = applied.clone();
            created["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
            created["metadata"]["creationTimestamp"] = json!(now);
            created["metadata"]["generation"] = json!(1);
            if !namespace.is_empty() {
                created["metadata"]["namespace"] = json!(namespace);
            }
            created
        }
    };
    object["metadata"]["managedFields"] =
        json!([{"manager": manager, "operation": "Apply", "apiVersion": want_version, "time": now}]);
    if resource.kind == "Secret" {
        if let Some(data) = object.as_object_mut().and_then(|o| o.remove("stringData")) {
            use base64::Engine;
            for (k, v) in data.as_object().into_iter().flatten() {
                let encoded = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
                object["data"][k] = json!(encoded);
            }
        }
    }
    let kind = if existing.is_some() { "MODIFIED" } else { "ADDED" };
    if existing.as_ref() == Some(&object) {
        return ok(object);
    }
    let saved = fake.record(&mut state, kind, &resource.group, &resource.plural, object);
    let code = if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    (code, [("content-type", "application/json")], saved.to_string()).into_response()
}

fn dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
}

/// An RFC 1123 label, as a namespace's name must be.
fn dns_label(name: &str) -> bool {
    !name.contains('.') && name.len() <= 63 && dns_subdomain(name)
}

/// Why `value` is not a valid label value (Kubernetes' `IsValidLabelValue`), if it is not:
/// empty, or at most 63 alphanumerics, `-`, `_` and `.`, beginning and ending alphanumeric.
pub(crate) fn label_value_error(value: &str) -> Option<&'static str> {
    if value.len() > 63 {
        return Some("must be no more than 63 characters");
    }
    let alphanumeric = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    let bytes = value.as_bytes();
    let shaped = bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
        && (bytes.is_empty() || (alphanumeric(bytes.first()) && alphanumeric(bytes.last())));
    (!shaped).then_some(
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', \
         and must start and end with an alphanumeric character",
    )
}

fn delete(fake: &FakeManagementCluster, resource: &Resource, key: &Key) -> Response {
    let mut state = fake.lock();
    state.requests.delete += 1;
    state.asked(Write::Delete(key.clone()));
    let Some(mut object) = state.objects.get(key).cloned() else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{}.{} \"{}\" not found", resource.plural, resource.group, key.3),
        );
    };
    if resource.kind == "InClusterIPPool"
        && state.allocations.get(&(key.2.clone(), key.3.clone())).is_some_and(|held| !held.is_empty())
    {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "pool has IPAddresses allocated. Cannot delete Pool until all IPAddresses have been removed",
        );
    }
    let finalizers = object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    if finalizers {
        if object["metadata"]["deletionTimestamp"].is_null() {
            object["metadata"]["deletionTimestamp"] =
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            object = fake.record(&mut state, "MODIFIED", &resource.group, &resource.plural, object);
        }
        return ok(object);
    }
    state.objects.remove(key);
    let object = fake.record(&mut state, "DELETED", &resource.group, &resource.plural, object);
    ok(object)
}
