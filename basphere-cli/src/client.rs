//! A small HTTP/1.1 client for the Basphere API, over the Unix socket or TCP.

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::exit::CliError;

/// Where the server is.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Socket(PathBuf),
    Tcp { base: String, token: Option<String> },
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

#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    timeout: Duration,
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Self {
        Client { endpoint, timeout: Duration::from_secs(60) }
    }

    /// Sends a request and turns problem documents into `CliError`s.
    pub async fn call(
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

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.call(Method::GET, path, None, &[]).await?.body)
    }

    /// Gets every page of a paginated list (`{"items": [...], "next": ...}`).
    pub async fn all_pages(&self, path: &str) -> Result<Vec<Value>, CliError> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let url = match &after {
                Some(after) => format!("{path}{separator}limit=1000&after={after}"),
                None => format!("{path}{separator}limit=1000"),
            };
            let page = self.get(&url).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => return Ok(items),
            }
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
            Endpoint::Tcp { base, token } => {
                let authority = base.strip_prefix("http://").ok_or_else(|| {
                    CliError::usage(format!(
                        "{base} is not an http:// URL (put TLS in front with a reverse proxy, see the README)"
                    ))
                })?;
                let authority = authority.trim_end_matches('/');
                let stream = tokio::net::TcpStream::connect(authority).await.map_err(unreachable)?;
                stream.set_nodelay(true).ok();
                (handshake(stream).await?, authority.to_owned(), token.clone())
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
