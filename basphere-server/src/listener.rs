//! The accept loops of the two listeners: HTTP/1.1 with hyper, a cap on the connections each
//! listener holds, a deadline for request heads and for idle connections, and graceful shutdown.
//!
//! Every open connection holds a file descriptor. Without bounds, clients that connect and send
//! nothing exhaust the process's descriptors and then nobody, the administrator on the socket
//! included, can connect ("Too many open files"). So each listener has its own cap (a semaphore:
//! at the cap it stops accepting and new clients wait in the kernel's backlog), hyper closes a
//! connection whose request head does not arrive in time (which also bounds kept-alive
//! connections between requests), and [`IdleIo`] closes a connection on which nothing moves while
//! no request is being handled (a client that stopped reading its answer).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::auth::PeerCredentials;

/// The bounds of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once; at the cap the listener stops accepting until one closes.
    pub max_connections: usize,
    /// A request head must arrive whole within this time of the server waiting for it.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress on which no byte moves for this long is closed.
    pub idle_timeout: Duration,
}

/// A listener the accept loop can serve: what a connection is, and who is at its other end (the
/// `ConnectInfo` the listener's middleware reads).
pub trait Listener: Send + 'static {
    /// A connection as accepted.
    type Raw: Send + 'static;
    /// A connection ready for HTTP (after a TLS handshake, for one).
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    type Peer: Clone + Send + Sync + 'static;
    /// Which listener this is, for the log.
    const NAME: &'static str;

    fn accept(&self) -> impl Future<Output = io::Result<(Self::Raw, Self::Peer)>> + Send;

    /// Makes an accepted connection ready for HTTP; run in the connection's own task, within
    /// the header-read deadline.
    fn open(&self, raw: Self::Raw) -> impl Future<Output = io::Result<Self::Io>> + Send + 'static;
}

impl Listener for TcpListener {
    type Raw = TcpStream;
    type Io = TcpStream;
    type Peer = SocketAddr;
    const NAME: &'static str = "tcp";

    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }

    fn open(&self, raw: TcpStream) -> impl Future<Output = io::Result<TcpStream>> + Send + 'static {
        std::future::ready(Ok(raw))
    }
}

impl Listener for UnixListener {
    type Raw = UnixStream;
    type Io = UnixStream;
    type Peer = PeerCredentials;
    const NAME: &'static str = "unix";

    async fn accept(&self) -> io::Result<(UnixStream, PeerCredentials)> {
        let (stream, _) = UnixListener::accept(self).await?;
        let peer = match stream.peer_cred() {
            Ok(credentials) => PeerCredentials { uid: Some(credentials.uid()), pid: credentials.pid() },
            Err(error) => {
                // The middleware refuses such a connection; say why here.
                tracing::warn!(%error, "no peer credentials on a socket connection");
                PeerCredentials { uid: None, pid: None }
            }
        };
        Ok((stream, peer))
    }

    fn open(&self, raw: UnixStream) -> impl Future<Output = io::Result<UnixStream>> + Send + 'static {
        std::future::ready(Ok(raw))
    }
}

/// Serves `app` on `listener` until `stop` turns true, then stops accepting, lets every open
/// connection finish the request it is handling (idle ones close at once), and returns when the
/// last one has closed.
pub async fn serve<L: Listener>(listener: L, app: Router, limits: Limits, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut accept_errors = ErrorLog::default();
    let mut full = false;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                full = false;
                permit
            }
            Err(_) => {
                if !full {
                    tracing::warn!(
                        listener = L::NAME,
                        max = limits.max_connections,
                        "the listener holds its maximum of connections; new ones wait until one closes"
                    );
                    full = true;
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    _ = stopped(&mut stop) => break,
                }
            }
        };
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_errors.record(L::NAME, &error);
                    if !is_per_connection(&error) {
                        // Out of descriptors or memory: retrying at once would spin. The caps keep
                        // this rare; other listeners are not affected.
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {},
                            _ = stopped(&mut stop) => break,
                        }
                    }
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let opening = listener.open(io);
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            // A handshake that does not finish within the header deadline ends the connection.
            match tokio::time::timeout(limits.header_read_timeout, opening).await {
                Ok(Ok(io)) => connection(io, peer, app, limits, stop, permit).await,
                Ok(Err(error)) => tracing::debug!(listener = L::NAME, %error, "connection not opened"),
                Err(_) => tracing::debug!(listener = L::NAME, "handshake not finished in time"),
            }
        });
    }
    // No new connections from here on; wait for the open ones to end.
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Resolves once the server is stopping (or whoever could stop it is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Errors that concern one connection only (it went away before it was accepted).
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

/// Accept errors are logged once per ten seconds at most, with how many there were.
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl ErrorLog {
    fn record(&mut self, listener: &str, error: &io::Error) {
        self.unlogged += 1;
        if self.last.is_none_or(|last| last.elapsed() >= Duration::from_secs(10)) {
            tracing::error!(listener, %error, count = self.unlogged, "accepting connections failed");
            self.last = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}

/// One connection, from its first byte to its close. `_slot` is its place under the cap.
pub(crate) async fn connection<I, P>(
    io: I,
    peer: P,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    P: Clone + Send + Sync + 'static,
{
    let busy = Arc::new(AtomicUsize::new(0));
    let io = TokioIo::new(IdleIo::new(io, limits.idle_timeout, busy.clone()));
    // The peer as `ConnectInfo`, which the listener's middleware turns into the caller's
    // transport; requests in progress are counted so that a slow handler is not idleness.
    let service = app
        .map_request(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer.clone()));
            request
        })
        .map_future(move |response| {
            let guard = Busy::enter(&busy);
            async move {
                let response = response.await;
                drop(guard);
                response
            }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection closed");
            }
            return;
        }
        _ = stopped(&mut stop) => connection.as_mut().graceful_shutdown(),
    }
    if let Err(error) = connection.await {
        tracing::debug!(%error, "connection closed while stopping");
    }
}

/// Counts a request in progress for as long as it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(count: &Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection that fails with `TimedOut` once no byte has moved either way for `timeout`,
/// while no request is in progress (`busy` is zero) or while a write is blocked. Handlers have
/// their own deadline; this one catches clients that hold a connection open doing nothing, such
/// as one that stopped reading its answer.
pub struct IdleIo<T> {
    inner: T,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    busy: Arc<AtomicUsize>,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, timeout: Duration, busy: Arc<AtomicUsize>) -> Self {
        IdleIo { inner, timeout, deadline: Box::pin(tokio::time::sleep(timeout)), busy }
    }

    fn moved(&mut self) {
        let at = Instant::now() + self.timeout;
        self.deadline.as_mut().reset(at);
    }

    fn expired<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing moved on the connection for {} s", self.timeout.as_secs_f32()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.moved();
                Poll::Ready(result)
            }
            Poll::Pending if this.busy.load(Ordering::SeqCst) == 0 => this.expired(cx),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.moved();
                Poll::Ready(result)
            }
            Poll::Pending => this.expired(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                this.moved();
                Poll::Ready(result)
            }
            Poll::Pending => this.expired(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.expired(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.expired(cx),
            ready => ready,
        }
    }
}
