//! Who is calling. Over the Unix socket the kernel says (peer credentials); over TCP a bearer
//! token does. Nothing a client writes in a header or body can claim an identity.

use std::net::SocketAddr;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use basphere_core::model::{Role, TokenScope, User, UserStatus};
use basphere_core::{Actor, StoreExt};
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

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub actor: Actor,
    /// The caller's account; `None` for the system administrator (root or the server's own
    /// user on the socket), who has no account of its own.
    pub account: Option<User>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.actor.role == Role::Admin
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs an administrator"))
        }
    }

    /// The caller's own account, for routes that act on "my" resources.
    pub fn account(&self) -> ApiResult<&User> {
        self.account.as_ref().ok_or_else(|| {
            ApiError::forbidden("you are connected as the system administrator, which owns no resources; use the admin routes (basphere admin ...) to act for a user")
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let transport = parts
            .extensions
            .get::<Transport>()
            .cloned()
            .ok_or_else(|| ApiError::unauthenticated("unknown transport"))?;
        let source = transport.source();
        match transport {
            Transport::Unix { uid, .. } => {
                if uid == 0 || uid == state.server_uid {
                    let name = if uid == 0 { "root".to_owned() } else { format!("uid-{uid}") };
                    return Ok(Caller { actor: Actor::admin(&name, &source), account: None });
                }
                let store = state.platform.store().clone();
                let user = tokio::task::spawn_blocking(move || store.query(|tx| tx.user_by_uid(uid)))
                    .await
                    .map_err(|_| ApiError::unauthenticated("the account lookup failed"))??;
                let Some(user) = user else {
                    return Err(ApiError::unauthenticated(format!(
                        "uid {uid} is not a Basphere account; register first, or ask an administrator"
                    )));
                };
                if user.status != UserStatus::Active {
                    return Err(ApiError::forbidden(format!("the account {} is suspended", user.username)));
                }
                let actor = Actor { name: user.username.to_string(), role: user.role, source };
                Ok(Caller { actor, account: Some(user) })
            }
            Transport::Tcp { .. } => {
                let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|value| value.to_str().ok());
                let Some(secret) = header.and_then(|value| value.strip_prefix("Bearer ")).map(str::trim) else {
                    return Err(ApiError::unauthenticated("this needs a bearer token: Authorization: Bearer bsp_..."));
                };
                let (user, token) = state.platform.authenticate_token(secret).await?;
                // A token never carries more than its scope, nor more than its account.
                let role =
                    if token.scope == TokenScope::Admin && user.role == Role::Admin { Role::Admin } else { Role::User };
                let actor = Actor { name: user.username.to_string(), role, source };
                Ok(Caller { actor, account: Some(user) })
            }
        }
    }
}
