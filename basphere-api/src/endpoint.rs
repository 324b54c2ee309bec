//! Every endpoint of the API, described once: its method and path template, its typed path and
//! query parameters, its request body and its answer, the problems it may answer with, and how
//! the document describes it (tag, summary, security). The server routes and documents each
//! endpoint from its definition; the CLI calls it through the same definition, so a path, a
//! parameter or a body cannot differ between them.
//!
//! An endpoint is a zero-sized type implementing [`Endpoint`], in the module of its resource
//! (`endpoints::vms::Get`). [`Endpoint::url`] fills the path template from the typed path
//! parameters (each segment percent-encoded) and appends the typed query.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// An HTTP method the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    /// `GET`, `POST`, ...
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// How a request body is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyMedia {
    /// No body.
    None,
    /// `application/json`.
    Json,
    /// `application/json` or `application/x-www-form-urlencoded` (the public submissions, which
    /// web pages post too).
    JsonOrForm,
}

/// The type of a parameter or header value, as the document states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    String,
    Uuid,
    Integer,
}

/// One path parameter: `{name}` in the template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathParam {
    pub name: &'static str,
    pub value: ValueType,
    pub description: Option<&'static str>,
}

/// The path parameters of an endpoint, in the order of the template: `()` for none, otherwise
/// a struct made by `path_params!`, whose fields are the parameters.
pub trait PathParams {
    /// The parameters, in the template's order.
    const PARAMS: &'static [PathParam];

    /// Their values, in the same order.
    fn values(&self) -> Vec<&str>;
}

impl PathParams for () {
    const PARAMS: &'static [PathParam] = &[];

    fn values(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// A request header an endpoint reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderParam {
    pub name: &'static str,
    pub description: &'static str,
}

/// A header of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: &'static str,
    pub value: ValueType,
    pub description: &'static str,
}

/// `Location` of an accepted operation.
pub const LOCATION: Header =
    Header { name: "Location", value: ValueType::String, description: "The operation: /api/v1/operations/{id}" };

/// `Location` of the first of several accepted operations.
pub const LOCATION_FIRST: Header =
    Header { name: "Location", value: ValueType::String, description: "The first operation: /api/v1/operations/{id}" };

/// `Idempotent-Replayed` of a create answered again.
pub const IDEMPOTENT_REPLAYED: Header = Header {
    name: "Idempotent-Replayed",
    value: ValueType::String,
    description: "`true` when this is the first answer to the same Idempotency-Key, replayed",
};

/// What an answer's body holds, in one media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// The endpoint's `Response` type as `application/json`.
    Json,
    /// Text in this media type.
    Text(&'static str),
}

/// One successful (or documented non-problem) answer of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub description: &'static str,
    /// Empty for an answer without a body.
    pub content: &'static [Content],
    pub headers: &'static [Header],
}

impl Reply {
    /// `status` with the endpoint's `Response` as JSON.
    pub const fn json(status: u16) -> Reply {
        Reply { status, description: "", content: &[Content::Json], headers: &[] }
    }

    /// 202 with an operation and its `Location`.
    pub const ACCEPTED: Reply = Reply { status: 202, description: "", content: &[Content::Json], headers: &[LOCATION] };

    /// 200 with the endpoint's `Response` as JSON.
    pub const OK: Reply = Reply::json(200);

    /// 201 with the endpoint's `Response` as JSON.
    pub const CREATED: Reply = Reply::json(201);
}

/// A problem an endpoint may answer with (`application/problem+json`), named by what went
/// wrong; the description says when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemResponse {
    InvalidInput,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    ServerError,
}

impl ProblemResponse {
    /// The status (`5XX` for every server error).
    pub const fn status(self) -> &'static str {
        match self {
            ProblemResponse::InvalidInput => "400",
            ProblemResponse::Unauthenticated => "401",
            ProblemResponse::Forbidden => "403",
            ProblemResponse::NotFound => "404",
            ProblemResponse::Conflict => "409",
            ProblemResponse::PayloadTooLarge => "413",
            ProblemResponse::UnsupportedMediaType => "415",
            ProblemResponse::TooManyRequests => "429",
            ProblemResponse::ServerError => "5XX",
        }
    }

    /// When it is answered.
    pub const fn description(self) -> &'static str {
        match self {
            ProblemResponse::InvalidInput => "The request is not valid (a field, the query string, a path segment or the JSON itself); the detail says what is accepted.",
            ProblemResponse::Unauthenticated => "No credential, or one the server does not accept (unknown, revoked or expired token; a socket uid with no account).",
            ProblemResponse::Forbidden => "The caller may not do this (not an administrator, a suspended account, a token scope or a quota that does not allow it).",
            ProblemResponse::NotFound => "No such resource, or none the caller may see.",
            ProblemResponse::Conflict => "The resource's state does not allow this now (a name taken, an operation running, an Idempotency-Key used for another request, no address left).",
            ProblemResponse::PayloadTooLarge => "The body is larger than the 64 KiB accepted.",
            ProblemResponse::UnsupportedMediaType => "The body is not sent as `Content-Type: application/json`.",
            ProblemResponse::TooManyRequests => "Too many submissions from this address, for this email address or today; `Retry-After` says when to try again.",
            ProblemResponse::ServerError => "The server or a backend failed (500), a feature is not available (501), a backend is unavailable (503) or a step timed out (504); the detail never carries internals.",
        }
    }

    /// The headers it comes with.
    pub const fn headers(self) -> &'static [Header] {
        match self {
            ProblemResponse::Unauthenticated => &[Header {
                name: "WWW-Authenticate",
                value: ValueType::String,
                description: "`Bearer realm=\"basphere\"`",
            }],
            ProblemResponse::TooManyRequests => {
                &[Header { name: "Retry-After", value: ValueType::Integer, description: "Seconds to wait." }]
            }
            _ => &[],
        }
    }
}

/// The problems of a request without body or path parameters, by a signed-in caller.
pub(crate) mod problems {
    use super::ProblemResponse;
    use super::ProblemResponse::*;

    /// A read of the caller's own things.
    pub const READ: &[ProblemResponse] = &[Unauthenticated, Forbidden, ServerError];
    /// A list with a query.
    pub const LIST: &[ProblemResponse] = &[InvalidInput, Unauthenticated, Forbidden, ServerError];
    /// An administrator's list that may name an owner.
    pub const LIST_OWNER: &[ProblemResponse] = &[InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError];
    /// One named resource.
    pub const ONE: &[ProblemResponse] = &[InvalidInput, Unauthenticated, Forbidden, NotFound, ServerError];
    /// A change to a named resource that its state may refuse.
    pub const CHANGE: &[ProblemResponse] = &[InvalidInput, Unauthenticated, Forbidden, NotFound, Conflict, ServerError];
    /// A change with a JSON body to a named resource.
    pub const CHANGE_BODY: &[ProblemResponse] = &[
        InvalidInput,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unauthenticated,
        Forbidden,
        NotFound,
        Conflict,
        ServerError,
    ];
    /// A JSON body to a named resource, without conflicts.
    pub const ONE_BODY: &[ProblemResponse] =
        &[InvalidInput, PayloadTooLarge, UnsupportedMediaType, Unauthenticated, Forbidden, NotFound, ServerError];
    /// A create with a JSON body in the caller's own collection.
    pub const CREATE: &[ProblemResponse] =
        &[InvalidInput, PayloadTooLarge, UnsupportedMediaType, Unauthenticated, Forbidden, Conflict, ServerError];
}

/// One endpoint of the API.
pub trait Endpoint {
    /// The utoipa operation id (the server's handler name, kept for generated clients).
    const OPERATION_ID: &'static str;
    const METHOD: Method;
    /// The path template, `{name}` for each path parameter: `/api/v1/vms/{name}`.
    const PATH: &'static str;
    const TAG: &'static str;
    /// The document's summary: the first line of what the endpoint does.
    const SUMMARY: &'static str;
    /// The rest of the description, if any.
    const DESCRIPTION: Option<&'static str> = None;
    /// Public endpoints need no identity (`security(())` in the document).
    const PUBLIC: bool = false;
    /// How the request body is sent.
    const BODY: BodyMedia = BodyMedia::None;
    /// Request headers the endpoint reads.
    const HEADERS: &'static [HeaderParam] = &[];
    /// The answers besides problems.
    const REPLIES: &'static [Reply];
    /// The problems it may answer with.
    const PROBLEMS: &'static [ProblemResponse];

    type Path: PathParams;
    /// The query parameters: `()` for none, else a struct whose `None` fields are left out.
    type Query: Serialize;
    /// The request body: `()` for none.
    type Body: Serialize;
    /// What a successful answer holds (`()` for none).
    type Response: DeserializeOwned;

    /// The path and query of a request: `/api/v1/vms/web%201?state=running`.
    fn url(path: &Self::Path, query: &Self::Query) -> String {
        let mut url = fill(Self::PATH, &path.values());
        let query = query_string(query);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        url
    }
}

/// The names of a template's parameters, in order: `["username", "name"]`.
pub fn template_params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')))
        .collect()
}

/// `template` with its parameters replaced by `values` in order, each percent-encoded.
pub fn fill(template: &str, values: &[&str]) -> String {
    let mut values = values.iter();
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                values.next().map_or_else(String::new, |value| encode(value))
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A path segment or a query value, percent-encoded: everything but RFC 3986's unreserved
/// characters.
pub fn encode(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The query string of a typed query: each field that is not `None`, ordered by name.
pub fn query_string(query: &impl Serialize) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(query) else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = fields
        .iter()
        .filter_map(|(name, value)| {
            let text = match value {
                serde_json::Value::Null => return None,
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Some((encode(name), encode(&text)))
        })
        .collect();
    pairs.sort();
    pairs.into_iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("&")
}

/// A list whose pages can be asked for: `?limit=&after=`.
pub trait Paged {
    /// This query for the page of at most `limit` items after `after`.
    fn page(&mut self, limit: usize, after: Option<uuid::Uuid>);
}

/// Defines a struct of path parameters and its [`PathParams`]: one `String` field a parameter,
/// with the type the document states (`String` or `Uuid`) and an optional description.
macro_rules! path_params {
    ($(#[$meta:meta])* $name:ident { $($field:ident : $value:ident $(= $description:literal)?),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $(pub $field: String,)+
        }

        impl $crate::endpoint::PathParams for $name {
            const PARAMS: &'static [$crate::endpoint::PathParam] = &[$($crate::endpoint::PathParam {
                name: stringify!($field),
                value: $crate::endpoint::ValueType::$value,
                description: $crate::endpoint::path_params!(@description $($description)?),
            }),+];

            fn values(&self) -> Vec<&str> {
                vec![$(self.$field.as_str()),+]
            }
        }
    };
    (@description) => { None };
    (@description $description:literal) => { Some($description) };
}
pub(crate) use path_params;

/// Defines an endpoint: a zero-sized type and its [`Endpoint`] implementation.
macro_rules! endpoint {
    (
        $(#[$meta:meta])*
        $name:ident = $method:ident $path:literal, $operation_id:ident, tag $tag:literal,
        types($path_type:ty, $query:ty, $body:ty => $response:ty);
        $($const:ident = $value:expr;)*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name;

        impl $crate::endpoint::Endpoint for $name {
            const OPERATION_ID: &'static str = stringify!($operation_id);
            const METHOD: $crate::endpoint::Method = $crate::endpoint::Method::$method;
            const PATH: &'static str = $path;
            const TAG: &'static str = $tag;
            $($crate::endpoint::endpoint_const!($const $value);)*
            type Path = $path_type;
            type Query = $query;
            type Body = $body;
            type Response = $response;
        }
    };
}
pub(crate) use endpoint;

/// One optional constant of an [`Endpoint`], typed by its name.
macro_rules! endpoint_const {
    (SUMMARY $value:expr) => {
        const SUMMARY: &'static str = $value;
    };
    (DESCRIPTION $value:expr) => {
        const DESCRIPTION: Option<&'static str> = Some($value);
    };
    (PUBLIC $value:expr) => {
        const PUBLIC: bool = $value;
    };
    (BODY $value:expr) => {
        const BODY: $crate::endpoint::BodyMedia = $value;
    };
    (HEADERS $value:expr) => {
        const HEADERS: &'static [$crate::endpoint::HeaderParam] = $value;
    };
    (REPLIES $value:expr) => {
        const REPLIES: &'static [$crate::endpoint::Reply] = $value;
    };
    (PROBLEMS $value:expr) => {
        const PROBLEMS: &'static [$crate::endpoint::ProblemResponse] = $value;
    };
}
pub(crate) use endpoint_const;
