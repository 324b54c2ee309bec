//! The accept loop on in-memory connections, on tokio's paused clock: every deadline is reached
//! by the clock jumping to it when nothing else can run, so these tests wait for conditions and
//! take no real time.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::{middleware, Extension, Router};
use basphere_server::auth::{self, Transport};
use basphere_server::listener::{serve, Limits, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const HEADER_READ: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(5);
const BIG: usize = 1024 * 1024;

/// A listener whose connections are in-memory pipes handed over by the test.
struct Memory {
    incoming: Mutex<mpsc::UnboundedReceiver<DuplexStream>>,
}

impl Listener for Memory {
    type Raw = DuplexStream;
    type Io = DuplexStream;
    type Peer = SocketAddr;
    const NAME: &'static str = "memory";

    async fn accept(&self) -> io::Result<(DuplexStream, SocketAddr)> {
        match self.incoming.lock().await.recv().await {
            Some(stream) => Ok((stream, "192.0.2.1:1234".parse().expect("address"))),
            None => std::future::pending().await,
        }
    }

    fn open(&self, raw: DuplexStream) -> impl std::future::Future<Output = io::Result<DuplexStream>> + Send + 'static {
        std::future::ready(Ok(raw))
    }
}

/// A running accept loop with a small app behind the TCP listener's middleware.
struct Loop {
    connect: mpsc::UnboundedSender<DuplexStream>,
    stop: watch::Sender<bool>,
    served: JoinHandle<()>,
}

impl Loop {
    fn start(max_connections: usize) -> Loop {
        let app = Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route("/who", get(|Extension(transport): Extension<Transport>| async move { transport.source() }))
            .route("/big", get(|| async { "x".repeat(BIG) }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(IDLE * 3).await;
                    "done"
                }),
            )
            .layer(middleware::from_fn(auth::tcp_transport));
        let (connect, incoming) = mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let limits = Limits { max_connections, header_read_timeout: HEADER_READ, idle_timeout: IDLE };
        let served = tokio::spawn(serve(Memory { incoming: Mutex::new(incoming) }, app, limits, stopped));
        Loop { connect, stop, served }
    }

    /// A new connection whose pipe holds at most `buffer` bytes each way.
    fn connect(&self, buffer: usize) -> DuplexStream {
        let (client, server) = tokio::io::duplex(buffer);
        self.connect.send(server).expect("the loop is running");
        client
    }
}

async fn request(stream: &mut DuplexStream, path: &str) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("sending a request");
}

/// Reads one answer with a `content-length`; returns its status line and body.
async fn answer(stream: &mut DuplexStream) -> (String, String) {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .expect("a content-length");
            if raw.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into_owned();
                return (head.lines().next().unwrap_or_default().to_owned(), body);
            }
        }
        let read = stream.read(&mut buffer).await.expect("reading an answer");
        assert!(read > 0, "the connection closed before a whole answer: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buffer[..read]);
    }
}

/// Reads until the server closes the connection; returns how many bytes came.
async fn until_closed(stream: &mut DuplexStream) -> usize {
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink).await.map(|_| sink.len()).unwrap_or(sink.len())
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = Loop::start(8);
    let started = Instant::now();
    let mut silent = server.connect(1024);
    assert_eq!(until_closed(&mut silent).await, 0);
    let waited = started.elapsed();
    assert!(waited >= HEADER_READ && waited < HEADER_READ + Duration::from_secs(1), "closed after {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_is_closed_after_the_header_timeout_between_requests() {
    let server = Loop::start(8);
    let mut client = server.connect(1024);
    request(&mut client, "/hello").await;
    assert_eq!(answer(&mut client).await, ("HTTP/1.1 200 OK".to_owned(), "hello".to_owned()));
    // Kept alive: a second request on the same connection is answered.
    request(&mut client, "/who").await;
    assert_eq!(answer(&mut client).await.1, "tcp:192.0.2.1:1234", "the peer reaches the middleware");
    let answered = Instant::now();
    assert_eq!(until_closed(&mut client).await, 0);
    let waited = answered.elapsed();
    assert!(waited >= HEADER_READ && waited < HEADER_READ + Duration::from_secs(1), "closed after {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_head_sent_byte_by_byte_is_cut_off_at_the_header_timeout() {
    let server = Loop::start(8);
    let mut client = server.connect(1024);
    let started = Instant::now();
    // A byte every half second keeps the connection from being idle, not from the deadline.
    for byte in b"GET /hello HTTP/1.1\r\nHost: test\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa" {
        if client.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    until_closed(&mut client).await;
    let waited = started.elapsed();
    assert!(waited < HEADER_READ + Duration::from_secs(1), "closed after {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_closed_after_the_idle_timeout_and_frees_its_slot() {
    let server = Loop::start(1);
    let mut stalled = server.connect(4096);
    request(&mut stalled, "/big").await;
    let started = Instant::now();
    // The only slot is taken: the next client is served once the stalled one has been closed.
    let mut next = server.connect(1024);
    request(&mut next, "/hello").await;
    assert_eq!(answer(&mut next).await.1, "hello");
    let waited = started.elapsed();
    assert!(waited >= IDLE && waited < IDLE + Duration::from_secs(1), "served after {waited:?}");
    let received = until_closed(&mut stalled).await;
    assert!(received < BIG, "the stalled answer was cut off ({received} bytes)");
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_is_not_idleness() {
    let server = Loop::start(8);
    let mut client = server.connect(1024);
    let started = Instant::now();
    request(&mut client, "/slow").await;
    assert_eq!(answer(&mut client).await.1, "done");
    assert!(started.elapsed() >= IDLE * 3);
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_new_connections_wait_for_a_free_slot() {
    let server = Loop::start(2);
    let started = Instant::now();
    let _first = server.connect(1024);
    let _second = server.connect(1024);
    let mut third = server.connect(1024);
    request(&mut third, "/hello").await;
    assert_eq!(answer(&mut third).await.1, "hello");
    let waited = started.elapsed();
    assert!(waited >= HEADER_READ, "the third connection was served before a slot was free ({waited:?})");
    assert!(waited < HEADER_READ + Duration::from_secs(1), "served after {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn stopping_closes_idle_connections_and_finishes_requests_in_progress() {
    let server = Loop::start(8);
    let mut idle = server.connect(1024);
    request(&mut idle, "/hello").await;
    assert_eq!(answer(&mut idle).await.1, "hello");
    let mut busy = server.connect(1024);
    request(&mut busy, "/slow").await;
    // Both connections are open (one request answered, one being handled) before the stop.
    let mut probe = server.connect(1024);
    request(&mut probe, "/hello").await;
    assert_eq!(answer(&mut probe).await.1, "hello");
    let stopped = Instant::now();
    server.stop.send(true).expect("the loop listens");
    assert_eq!(until_closed(&mut idle).await, 0, "an idle connection closes at the stop");
    assert!(stopped.elapsed() < HEADER_READ, "without waiting for its deadline");
    assert_eq!(answer(&mut busy).await.1, "done", "a request in progress is finished");
    server.served.await.expect("the loop ends once every connection is closed");
}
