//! A small HTTP/1.1 client for the Basphere API, over the Unix socket or TCP. Every request is
//! one of the endpoints `basphere_api::endpoints` defines ([`Client::call`]): its method, path,
//! query and body come from the definition, and the answer comes back as a [`Doc`]: the
//! server's document as it came, and parsed into the endpoint's `Response` type.

use std::path::PathBuf;
use std::time::Duration;

use basphere_api::endpoint::{self as api, BodyMedia, Paged};
use basphere_api::Page;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::exit::CliError;

/// Where the server is.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Socket(PathBuf),
    /// `http://` or `https://`; `ca_file` names the certificates to trust for HTTPS (the
    /// system's otherwise).
    Tcp {
        base: String,
        token: Option<String>,
        ca_file: Option<PathBuf>,
    },
}

impl Endpoint {
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Socket(path) => format!("unix:{}", path.display()),
            Endpoint::Tcp { base, .. } => base.clone(),
        }
    }
}

/// A response: status and the JSON body (or text).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

/// A document from the server: as it came, which is what `-o json` and `-o yaml` print (the
/// CLI's output contract: every field the server sent, whatever this CLI's version knows), and
/// parsed into its wire type, which is what tables and the CLI's own decisions read (so a field
/// renamed in `basphere-api` is a compile error here, not an empty cell).
#[derive(Clone, Debug)]
pub struct Doc<T> {
    pub raw: Value,
    pub view: T,
}

impl<T: DeserializeOwned> Doc<T> {
    /// Parses `raw`, the server's answer to `what` (`GET /api/v1/vms`, for the error message).
    pub fn parse(raw: Value, what: &str) -> Result<Self, CliError> {
        match T::deserialize(&raw) {
            Ok(view) => Ok(Doc { raw, view }),
            Err(error) => Err(CliError::other(format!(
                "the server's answer to {what} is not what this basphere ({}) expects: {error}; is the server another version?",
                env!("CARGO_PKG_VERSION")
            ))),
        }
    }
}

/// A request body as JSON.
pub fn body(request: &impl Serialize) -> Result<Value, CliError> {
    serde_json::to_value(request).map_err(|error| CliError::other(format!("encoding the request: {error}")))
}

#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    timeout: Duration,
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Self {
        Client { endpoint, timeout: Duration::from_secs(60) }
    }

    /// Calls `E` and parses its answer.
    pub async fn call<E: api::Endpoint>(
        &self,
        path: &E::Path,
        query: &E::Query,
        body: &E::Body,
    ) -> Result<Doc<E::Response>, CliError> {
        self.call_with::<E>(path, query, body, &[]).await
    }

    /// Calls `E` with extra request headers (`Idempotency-Key`) and parses its answer.
    pub async fn call_with<E: api::Endpoint>(
        &self,
        path: &E::Path,
        query: &E::Query,
        body: &E::Body,
        headers: &[(&str, &str)],
    ) -> Result<Doc<E::Response>, CliError> {
        let what = format!("{} {}", E::METHOD.as_str(), E::url(path, query));
        Doc::parse(self.reply::<E>(path, query, body, headers).await?.body, &what)
    }

    /// Calls `E`; its answer as it came (for answers that are not JSON).
    pub async fn reply<E: api::Endpoint>(
        &self,
        path: &E::Path,
        query: &E::Query,
        body: &E::Body,
        headers: &[(&str, &str)],
    ) -> Result<Reply, CliError> {
        let body = match E::BODY {
            BodyMedia::None => None,
            BodyMedia::Json | BodyMedia::JsonOrForm => Some(self::body(body)?),
        };
        self.request(method(E::METHOD), &E::url(path, query), body.as_ref(), headers).await
    }

    /// The items of one page of the list `E` (`{"items": [...], "next": ...}`).
    pub async fn items<E, T>(&self, path: &E::Path, query: &E::Query) -> Result<Doc<Vec<T>>, CliError>
    where
        E: api::Endpoint<Response = Page<T>, Body = ()>,
        T: DeserializeOwned,
    {
        // The items are kept as they came (for -o json), then parsed.
        let url = E::url(path, query);
        let page: Doc<Page<Value>> =
            Doc::parse(self.reply::<E>(path, query, &(), &[]).await?.body, &format!("GET {url}"))?;
        Doc::parse(Value::Array(page.view.items), &format!("GET {url}"))
    }

    /// Every page of the list `E`, its items as one array.
    pub async fn all_pages<E, T>(&self, path: &E::Path, query: &E::Query) -> Result<Doc<Vec<T>>, CliError>
    where
        E: api::Endpoint<Response = Page<T>, Body = ()>,
        E::Query: Paged + Clone,
        T: DeserializeOwned,
    {
        let what = format!("GET {}", E::url(path, query));
        let mut items = Vec::new();
        let mut page_query = query.clone();
        page_query.page(1000, None);
        loop {
            let url = E::url(path, &page_query);
            let page: Doc<Page<Value>> =
                Doc::parse(self.reply::<E>(path, &page_query, &(), &[]).await?.body, &format!("GET {url}"))?;
            items.extend(page.view.items);
            match page.view.next {
                Some(next) => {
                    let after = next.parse().map_err(|_| {
                        CliError::other(format!(
                            "the server's answer to {what} has a next page {next:?} that is not an id"
                        ))
                    })?;
                    page_query.page(1000, Some(after));
                }
                None => return Doc::parse(Value::Array(items), &what),
            }
        }
    }

    /// Sends a request and turns problem documents into `CliError`s.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, CliError> {
        let reply =
            tokio::time::timeout(self.timeout, self.send(method, path, body, headers)).await.map_err(|_| {
                CliError::timeout(format!(
                    "the server at {} did not answer within {:?}",
                    self.endpoint.describe(),
                    self.timeout
                ))
            })??;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(CliError::from_problem(reply.status, &reply.body, &reply.text))
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, CliError> {
        let unreachable = |error: std::io::Error| {
            CliError::unreachable(format!("cannot reach the Basphere server at {}: {error}", self.endpoint.describe()))
        };
        let (io_sender, host, token) = match &self.endpoint {
            Endpoint::Socket(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(unreachable)?;
                (handshake(stream).await?, "localhost".to_owned(), None)
            }
            Endpoint::Tcp { base, token, ca_file } => {
                let (secure, authority) = match (base.strip_prefix("https://"), base.strip_prefix("http://")) {
                    (Some(authority), _) => (true, authority),
                    (None, Some(authority)) => (false, authority),
                    (None, None) => {
                        return Err(CliError::usage(format!(
                            "{base} is not a server URL: use http://host:port or https://host:port"
                        )))
                    }
                };
                let authority = authority.trim_end_matches('/');
                let stream = tokio::net::TcpStream::connect(authority).await.map_err(unreachable)?;
                stream.set_nodelay(true).ok();
                let sender = if secure {
                    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                        .map_err(|_| CliError::usage(format!("{host:?} in {base} is not a host name")))?;
                    let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config(ca_file.as_deref())?);
                    let tls = connector.connect(name, stream).await.map_err(|error| {
                        CliError::unreachable(format!(
                            "no TLS connection to {base}: {error} (--ca-file names the authority to trust)"
                        ))
                    })?;
                    handshake(tls).await?
                } else {
                    handshake(stream).await?
                };
                (sender, authority.to_owned(), token.clone())
            }
        };
        let mut sender = io_sender;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("accept", "application/json")
            .header("user-agent", concat!("basphere/", env!("CARGO_PKG_VERSION")));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let payload = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(body).map_err(|error| CliError::other(error.to_string()))?)
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(payload)).map_err(|error| CliError::other(error.to_string()))?;
        let response = sender.send_request(request).await.map_err(|error| {
            CliError::unreachable(format!("the server at {} closed the connection: {error}", self.endpoint.describe()))
        })?;
        let status = response.status();
        let bytes =
            response.into_body().collect().await.map_err(|error| CliError::unreachable(error.to_string()))?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { status, body, text })
    }
}

fn method(method: api::Method) -> Method {
    match method {
        api::Method::Get => Method::GET,
        api::Method::Post => Method::POST,
        api::Method::Put => Method::PUT,
        api::Method::Delete => Method::DELETE,
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn handshake<S>(stream: S) -> Result<Sender, CliError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| CliError::unreachable(format!("HTTP handshake failed: {error}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use basphere_api::VmView;

    use super::*;

    #[test]
    fn a_document_keeps_what_came_and_parses_what_the_cli_reads() {
        let raw = serde_json::json!({"status": "ok", "since": "a newer server's field"});
        let doc: Doc<basphere_api::Health> = Doc::parse(raw.clone(), "GET /healthz").unwrap();
        assert_eq!((doc.raw, doc.view.status.as_str()), (raw, "ok"));
    }

    #[test]
    fn a_document_of_another_shape_is_a_clear_error() {
        let error = Doc::<VmView>::parse(serde_json::json!({"name": "web"}), "GET /api/v1/vms/web").unwrap_err();
        assert_eq!(error.code, 1);
        assert!(
            error.message.starts_with("the server's answer to GET /api/v1/vms/web is not what this basphere"),
            "{}",
            error.message
        );
        assert!(error.message.contains("missing field"), "{}", error.message);
    }
}
