//! The route table, and the OpenAPI document the server serves at `/api/v1/openapi.json`: both
//! built from one list (`table`) of the endpoints' definitions in `basphere_api::endpoints`,
//! each with its handler, so a route and its description cannot drift apart. The handlers'
//! modules do not know this one.
//!
//! Every answer the server can give is in the document, so that a client generated from it
//! handles them all: the error responses are the problems each endpoint's definition lists
//! (`application/problem+json`), and the `bearer` scheme says how a TCP caller is identified.
//! The tests crate checks every answer it provokes against this document.

use axum::handler::Handler;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{Json, Router};
use basphere_api::endpoint::{
    BodyMedia, Content as Media, Endpoint, Header, Method, PathParams, ProblemResponse, ValueType,
};
use basphere_api::endpoints::{account, admin, clusters, networks, operations, registration, service, tokens, vms};
use utoipa::openapi::content::Content;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    ArrayBuilder, ArrayItems, KnownFormat, ObjectBuilder, Ref, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Required, Schema};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use crate::wire::*;
use crate::{api, clusters as cluster_handlers, metrics, networks as network_handlers, requests, AppState};

/// Every endpoint and its handler: what is routed and what is documented.
fn table(t: &mut impl Table) {
    t.add(service::Healthz, crate::service::healthz);
    t.add(service::Readyz, crate::service::readyz);
    t.add(service::Metrics, metrics::render);
    t.add(service::OpenApi, document);
    t.add(account::Me, api::me);
    t.add(account::Catalog, api::catalog);
    t.add(account::Quota, api::quota);
    t.add(account::SignInLink, api::create_sign_in_link);
    t.add(vms::List, api::list_vms);
    t.add(vms::Create, api::create_vms);
    t.add(vms::Get, api::get_vm);
    t.add(vms::Delete, api::delete_vm);
    t.add(vms::Power, api::vm_action);
    t.add(clusters::List, cluster_handlers::list_clusters);
    t.add(clusters::Create, cluster_handlers::create_cluster);
    t.add(clusters::Get, cluster_handlers::get_cluster);
    t.add(clusters::Watch, cluster_handlers::watch_cluster);
    t.add(clusters::Kubeconfig, cluster_handlers::cluster_kubeconfig);
    t.add(clusters::Scale, cluster_handlers::scale_cluster);
    t.add(clusters::Delete, cluster_handlers::delete_cluster);
    t.add(networks::Get, network_handlers::network);
    t.add(operations::List, api::list_operations);
    t.add(operations::Get, api::get_operation);
    t.add(tokens::List, api::list_tokens);
    t.add(tokens::Create, api::create_token);
    t.add(tokens::Revoke, api::revoke_token);
    t.add(registration::Register, requests::register);
    t.add(registration::KeyChange, requests::key_change);
    t.add(admin::ListUsers, api::admin_list_users);
    t.add(admin::CreateUser, api::admin_create_user);
    t.add(admin::GetUser, api::admin_get_user);
    t.add(admin::DeleteUser, requests::admin_delete_user);
    t.add(admin::SuspendUser, requests::admin_suspend_user);
    t.add(admin::ResumeUser, requests::admin_resume_user);
    t.add(admin::PurgeUser, requests::admin_purge_user);
    t.add(admin::GetQuota, api::admin_get_quota);
    t.add(admin::SetQuota, api::admin_set_quota);
    t.add(admin::ResetQuota, api::admin_reset_quota);
    t.add(admin::CreateToken, api::admin_create_token);
    t.add(admin::UserVms, api::admin_user_vms);
    t.add(admin::CreateVms, api::admin_create_vms);
    t.add(admin::GetVm, api::admin_get_vm);
    t.add(admin::DeleteVm, api::admin_delete_vm);
    t.add(admin::PowerVm, api::admin_vm_action);
    t.add(admin::ListVms, api::admin_list_vms);
    t.add(admin::ListClusters, cluster_handlers::admin_list_clusters);
    t.add(admin::DeleteCluster, cluster_handlers::admin_delete_cluster);
    t.add(admin::ListNetworks, network_handlers::admin_list_networks);
    t.add(admin::GetNetwork, network_handlers::admin_get_network);
    t.add(admin::CreateNetwork, network_handlers::admin_create_network);
    t.add(admin::DeleteNetwork, network_handlers::admin_delete_network);
    t.add(admin::ListOperations, api::admin_list_operations);
    t.add(admin::Audit, api::admin_audit);
    t.add(admin::LastReconcile, api::admin_last_reconcile);
    t.add(admin::Reconcile, api::admin_reconcile);
    t.add(admin::Outbox, api::admin_outbox);
    t.add(admin::RetryNotification, api::admin_retry_notification);
    t.add(admin::Registrations, requests::admin_registrations);
    t.add(admin::Registration, requests::admin_registration);
    t.add(admin::ApproveRegistration, requests::admin_approve_registration);
    t.add(admin::RejectRegistration, requests::admin_reject_registration);
    t.add(admin::KeyChanges, requests::admin_key_changes);
    t.add(admin::ApproveKeyChange, requests::admin_approve_key_change);
    t.add(admin::RejectKeyChange, requests::admin_reject_key_change);
}

/// What `table` fills: a router, a document, a list.
trait Table {
    fn add<E, H, T>(&mut self, endpoint: E, handler: H)
    where
        E: Endpoint,
        E::Query: QuerySchema,
        E::Body: BodySchema,
        E::Response: BodySchema,
        H: Handler<T, AppState>,
        T: 'static;
}

/// Where administrators' endpoints start: each is behind `auth::require_admin`.
const ADMIN_PREFIX: &str = "/api/v1/admin/";

#[derive(Default)]
struct Routes {
    /// Everything but the administrators' endpoints.
    open: Router<AppState>,
    admin: Router<AppState>,
    served: Vec<(Method, &'static str)>,
}

impl Table for Routes {
    fn add<E, H, T>(&mut self, _: E, handler: H)
    where
        E: Endpoint,
        H: Handler<T, AppState>,
        T: 'static,
    {
        let route: MethodRouter<AppState> = match E::METHOD {
            Method::Get => get(handler),
            Method::Post => post(handler),
            Method::Put => put(handler),
            Method::Delete => delete(handler),
        };
        let router = if E::PATH.starts_with(ADMIN_PREFIX) { &mut self.admin } else { &mut self.open };
        *router = std::mem::take(router).route(E::PATH, route);
        self.served.push((E::METHOD, E::PATH));
    }
}

/// Every endpoint's route: the API, the service endpoints and this document.
pub fn router(state: AppState) -> Router<AppState> {
    let mut routes = Routes::default();
    table(&mut routes);
    // The admin API is for administrators, whatever the route: decided by the platform.
    let admin = routes.admin.route_layer(axum::middleware::from_fn_with_state(state, crate::auth::require_admin));
    routes.open.merge(admin)
}

/// The method and path of every route `router` serves, in the table's order.
pub fn served() -> Vec<(Method, &'static str)> {
    let mut routes = Routes::default();
    table(&mut routes);
    routes.served
}

/// `GET /api/v1/openapi.json`. Public.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The document: what `Base` says of the API as a whole, and an operation per endpoint.
pub struct ApiDoc;

impl OpenApi for ApiDoc {
    fn openapi() -> utoipa::openapi::OpenApi {
        let mut document = Base::openapi();
        let mut paths = Paths { paths: utoipa::openapi::Paths::new(), schemas: Vec::new() };
        table(&mut paths);
        document.paths = paths.paths;
        document.components.get_or_insert_with(Default::default).schemas.extend(paths.schemas);
        document
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Basphere API", description = "Self-service VMs on vSphere. Over the Unix socket the caller is identified by the kernel; over TCP by `Authorization: Bearer <token>`. Errors are RFC 9457 problem documents.\n\n\
On the Unix socket the kernel's peer credentials say who connected: root or the server's own user is the administrator, \
a registered `uid` is that account, and no header is needed. Over TCP the `bearer` security scheme applies.\n\n\
Every error, on every route, is a problem document (`application/problem+json`) whose `type` is \
`urn:basphere:problem:<kind>`. An unknown path is answered 404, a method a path does not list 405, and a request \
that takes longer than 30 seconds 504, all as problem documents."),
    components(schemas(Problem, ClusterView, ClusterConditionView, CreateClusterRequest, CreateClusterResponse, ScaleClusterRequest, KubeconfigView, CatalogClusterType, CatalogNodeSpec, VmView, OperationView, StepView, ResourceView, CreateVmsRequest, CreateVmsResponse, QuotaView, QuotaNumbers,
        QuotaOverrideRequest, UserView, MeView, CreateUserRequest, TokenView, CreateTokenRequest, CreatedToken, SignInLinkView, AuditView, OutboxView, CatalogView, CatalogOs, CatalogSpec, ReconcileView, PowerChangeView, StrayView,
        Health, Readiness, RegisterRequest, KeyChangeRequestBody, SubmittedView, RegistrationView, KeyChangeView, RejectRequest,
        NetworkView, NetworkLanView, RouterView)),
    tags((name = "registration", description = "Public: asking for an account or a new SSH key. Limited per client address, per email address and per day; protected by the bot check when the server has one."),
        (name = "vms"), (name = "clusters"), (name = "networks", description = "Tenant networks (`networks.mode: tenant`): each account's own LANs on VLAN ids of its own, behind a router of its own."), (name = "operations"), (name = "account"), (name = "tokens"), (name = "admin"),
        (name = "service", description = "Liveness, readiness, metrics and this document: public, on both listeners.")),
    security(("bearer" = [])),
    modifiers(&Security),
)]
struct Base;

/// The `bearer` security scheme.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("bsp_...".to_owned());
        bearer.description = Some(
            "An API token over TCP (`basphere token create`). Over the Unix socket the server uses the kernel's \
             peer credentials instead, and this header is ignored."
                .to_owned(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(bearer));
    }
}

/// The document's paths, an operation per endpoint, and the schemas they need besides the
/// named wire types (`Page_VmView`).
struct Paths {
    paths: utoipa::openapi::Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Table for Paths {
    fn add<E, H, T>(&mut self, _: E, _: H)
    where
        E: Endpoint,
        E::Query: QuerySchema,
        E::Body: BodySchema,
        E::Response: BodySchema,
        H: Handler<T, AppState>,
        T: 'static,
    {
        let method = match E::METHOD {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
            Method::Put => HttpMethod::Put,
            Method::Delete => HttpMethod::Delete,
        };
        self.paths.add_path_operation(E::PATH, vec![method], operation::<E>());
        E::Body::components(&mut self.schemas);
        E::Response::components(&mut self.schemas);
    }
}

/// The document's operation of `E`.
fn operation<E>() -> utoipa::openapi::path::Operation
where
    E: Endpoint,
    E::Query: QuerySchema,
    E::Body: BodySchema,
    E::Response: BodySchema,
{
    let mut operation = OperationBuilder::new()
        .tag(E::TAG)
        .summary(Some(E::SUMMARY))
        .description(E::DESCRIPTION)
        .operation_id(Some(E::OPERATION_ID));
    for param in <E::Path as PathParams>::PARAMS {
        operation = operation.parameter(
            ParameterBuilder::new()
                .name(param.name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(param.description)
                .schema(Some(value_schema(param.value))),
        );
    }
    for param in E::Query::params() {
        operation = operation.parameter(param);
    }
    for header in E::HEADERS {
        operation = operation.parameter(
            ParameterBuilder::new()
                .name(header.name)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(header.description))
                .schema(Some(ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])))),
        );
    }
    let media: &[&str] = match E::BODY {
        BodyMedia::None => &[],
        BodyMedia::Json => &["application/json"],
        BodyMedia::JsonOrForm => &["application/json", "application/x-www-form-urlencoded"],
    };
    if !media.is_empty() {
        let mut body = RequestBodyBuilder::new().required(Some(Required::True));
        for media in media {
            body = body.content(*media, Content::new(Some(E::Body::schema())));
        }
        operation = operation.request_body(Some(body.build()));
    }
    for reply in E::REPLIES {
        let mut response = ResponseBuilder::new().description(reply.description);
        for content in reply.content {
            response = match content {
                Media::Json => response.content("application/json", Content::new(Some(E::Response::schema()))),
                Media::Text(media) => response.content(*media, Content::new(Some(<String as PartialSchema>::schema()))),
            };
        }
        for header in reply.headers {
            response = response.header(header.name, header_of(header));
        }
        operation = operation.response(reply.status.to_string(), response.build());
    }
    for problem in E::PROBLEMS {
        operation = operation.response(problem.status(), problem_response(*problem));
    }
    if E::PUBLIC {
        operation = operation.security(SecurityRequirement::default());
    }
    operation.build()
}

/// A problem answer: a problem document, with the headers of its kind.
fn problem_response(problem: ProblemResponse) -> utoipa::openapi::response::Response {
    let mut response = ResponseBuilder::new().description(problem.description()).content(
        basphere_api::PROBLEM_CONTENT_TYPE,
        Content::new(Some(RefOr::Ref(Ref::from_schema_name(Problem::name())))),
    );
    for header in problem.headers() {
        response = response.header(header.name, header_of(header));
    }
    response.build()
}

fn header_of(header: &Header) -> utoipa::openapi::header::Header {
    let mut documented = utoipa::openapi::header::Header::new(value_schema(header.value));
    documented.description = Some(header.description.to_owned());
    documented
}

fn value_schema(value: ValueType) -> RefOr<Schema> {
    match value {
        ValueType::String => <String as PartialSchema>::schema(),
        ValueType::Uuid => ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .into(),
        ValueType::Integer => <u64 as PartialSchema>::schema(),
    }
}

/// The schema of a body or an answer: a reference to a named wire type, or the schema of a
/// list or page of them.
trait BodySchema {
    fn schema() -> RefOr<Schema>;

    /// The schemas it refers to that are not among the named wire types.
    fn components(_schemas: &mut Vec<(String, RefOr<Schema>)>) {}
}

macro_rules! named {
    ($($type:ty),* $(,)?) => {$(
        impl BodySchema for $type {
            fn schema() -> RefOr<Schema> {
                RefOr::Ref(Ref::from_schema_name(<$type as ToSchema>::name()))
            }
        }
    )*};
}

named!(
    MeView,
    CatalogView,
    QuotaView,
    SignInLinkView,
    VmView,
    CreateVmsRequest,
    CreateVmsResponse,
    OperationView,
    ClusterView,
    CreateClusterRequest,
    CreateClusterResponse,
    ScaleClusterRequest,
    KubeconfigView,
    NetworkView,
    TokenView,
    CreateTokenRequest,
    CreatedToken,
    RegisterRequest,
    KeyChangeRequestBody,
    SubmittedView,
    UserView,
    CreateUserRequest,
    QuotaOverrideRequest,
    ReconcileView,
    OutboxView,
    RegistrationView,
    KeyChangeView,
    RejectRequest,
    Health,
    Readiness,
);

impl<T: BodySchema> BodySchema for Vec<T> {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new().items(T::schema()).into()
    }
}

/// A page is a component of its own, named after its items' type: `Page_VmView`.
impl<T: ToSchema> BodySchema for Page<T> {
    fn schema() -> RefOr<Schema> {
        RefOr::Ref(Ref::from_schema_name(format!("Page_{}", T::name())))
    }

    /// Its items' schema written out in it, as utoipa writes a generic type's component.
    fn components(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let mut page = <Page<T> as PartialSchema>::schema();
        if let RefOr::T(Schema::Object(page)) = &mut page {
            if let Some(RefOr::T(Schema::Array(items))) = page.properties.get_mut("items") {
                items.items = ArrayItems::RefOrSchema(Box::new(<T as PartialSchema>::schema()));
            }
        }
        schemas.push((format!("Page_{}", T::name()), page));
    }
}

impl BodySchema for String {
    fn schema() -> RefOr<Schema> {
        <String as PartialSchema>::schema()
    }
}

impl BodySchema for serde_json::Value {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().into()
    }
}

/// No body.
impl BodySchema for () {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().into()
    }
}

/// The query parameters of a query type.
trait QuerySchema {
    fn params() -> Vec<utoipa::openapi::path::Parameter>;
}

impl QuerySchema for () {
    fn params() -> Vec<utoipa::openapi::path::Parameter> {
        Vec::new()
    }
}

macro_rules! queries {
    ($($type:ty),* $(,)?) => {$(
        impl QuerySchema for $type {
            fn params() -> Vec<utoipa::openapi::path::Parameter> {
                <$type as IntoParams>::into_params(|| Some(ParameterIn::Query))
            }
        }
    )*};
}

queries!(ListQuery, WatchQuery, AuditQuery, OutboxQuery, RequestListQuery, NetworkListQuery);

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every endpoint `basphere_api` defines is routed, and nothing else is.
    #[test]
    fn the_router_serves_every_defined_endpoint_and_no_other() {
        let served: Vec<(Method, &str)> = served();
        let defined: Vec<(Method, &str)> =
            basphere_api::endpoints::all().iter().map(|info| (info.method, info.path)).collect();
        let served_set: BTreeSet<_> = served.iter().copied().collect();
        let defined_set: BTreeSet<_> = defined.iter().copied().collect();
        assert_eq!(served_set.len(), served.len(), "an endpoint is routed twice");
        assert_eq!(defined_set.len(), defined.len(), "an endpoint is defined twice");
        let unrouted: Vec<_> = defined_set.difference(&served_set).collect();
        let undefined: Vec<_> = served_set.difference(&defined_set).collect();
        assert!(unrouted.is_empty(), "defined but not routed: {unrouted:?}");
        assert!(undefined.is_empty(), "routed but not in basphere_api::endpoints::all: {undefined:?}");
    }

    /// The document lists exactly the routes the router serves.
    #[test]
    fn the_document_lists_exactly_the_routes() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        let served: BTreeSet<(String, String)> =
            served().into_iter().map(|(method, path)| (method.as_str().to_owned(), path.to_owned())).collect();
        assert_eq!(documented, served);
    }

    /// Every schema the document refers to is in its components.
    #[test]
    fn every_reference_resolves() {
        fn refs(value: &serde_json::Value, found: &mut BTreeSet<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                        found.insert(target.clone());
                    }
                    map.values().for_each(|v| refs(v, found));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
                _ => {}
            }
        }
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut found = BTreeSet::new();
        refs(&document, &mut found);
        for target in found {
            let name = target.strip_prefix("#/components/schemas/").expect("a schema reference");
            assert!(document["components"]["schemas"].get(name).is_some(), "{target} is not in the components");
        }
    }
}
