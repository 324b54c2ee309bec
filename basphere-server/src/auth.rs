//! Who is calling. Over the Unix socket the kernel says (peer credentials); over TCP a bearer
//! token does. Nothing a client writes in a header or body can claim an identity.

use std::net::SocketAddr;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use basphere_core::platform::Action;
use basphere_core::validate::Username;
use basphere_core::Actor;
use tokio::net::UnixListener;

use crate::problem::{ApiError, ApiResult};
use crate::AppState;

/// How a request arrived, set by the listener it came through.
#[derive(Clone, Debug)]
pub enum Transport {
    Unix { uid: u32, pid: Option<i32> },
    Tcp { peer: SocketAddr },
}

impl Transport {
    pub fn source(&self) -> String {
        match self {
            Transport::Unix { uid, pid } => match pid {
                Some(pid) => format!("unix:uid={uid},pid={pid}"),
                None => format!("unix:uid={uid}"),
            },
            Transport::Tcp { peer } => format!("tcp:{peer}"),
        }
    }
}

/// Peer credentials of a Unix socket connection.
#[derive(Clone, Debug)]
pub struct PeerCredentials {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerCredentials {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(credentials) => PeerCredentials { uid: Some(credentials.uid()), pid: credentials.pid() },
            Err(error) => {
                tracing::warn!(%error, "no peer credentials on a socket connection");
                PeerCredentials { uid: None, pid: None }
            }
        }
    }
}

/// Middleware for the Unix listener: turns the connection's peer credentials into a `Transport`.
pub async fn unix_transport(
    ConnectInfo(peer): ConnectInfo<PeerCredentials>,
    mut request: Request,
    next: Next,
) -> Response {
    match peer.uid {
        Some(uid) => {
            request.extensions_mut().insert(Transport::Unix { uid, pid: peer.pid });
            next.run(request).await
        }
        None => axum::response::IntoResponse::into_response(ApiError::unauthenticated(
            "the kernel gave no credentials for this connection",
        )),
    }
}

/// Middleware for the TCP listener.
pub async fn tcp_transport(ConnectInfo(peer): ConnectInfo<SocketAddr>, mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Transport::Tcp { peer });
    next.run(request).await
}

/// The authenticated caller of a request, as the platform identified it.
#[derive(Clone, Debug)]
pub struct Caller {
    pub actor: Actor,
}

impl Caller {
    /// The caller's own account, for routes that act on "my" resources.
    pub fn own(&self) -> ApiResult<&Username> {
        Ok(self.actor.own_account()?)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let transport = parts
            .extensions
            .get::<Transport>()
            .cloned()
            .ok_or_else(|| ApiError::unauthenticated("unknown transport"))?;
        let source = transport.source();
        let actor = match transport {
            Transport::Unix { uid, .. } => {
                state.platform.accounts().identify_uid(uid, state.server_uid, &source).await?
            }
            Transport::Tcp { .. } => {
                let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|value| value.to_str().ok());
                let Some(secret) = header.and_then(|value| value.strip_prefix("Bearer ")).map(str::trim) else {
                    return Err(ApiError::unauthenticated("this needs a bearer token: Authorization: Bearer bsp_..."));
                };
                state.platform.credentials().identify_token(secret, &source).await?
            }
        };
        Ok(Caller { actor })
    }
}

/// Middleware for the admin routes: the admin API is for administrators, whatever the route.
pub async fn require_admin(
    State(state): State<AppState>,
    caller: Caller,
    mut request: Request,
    next: Next,
) -> Response {
    match state.platform.authorize(&caller.actor, Action::Administer) {
        Ok(()) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => axum::response::IntoResponse::into_response(ApiError::from(error)),
    }
}
