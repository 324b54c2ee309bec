//! The webhook notifier against a real HTTP receiver on 127.0.0.1 that checks every signature.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use basphere_core::config::Config;
use basphere_core::error::Error;
use basphere_core::model::NotificationEvent;
use basphere_core::notifier::Notifier;
use basphere_core::testing::notifier::check_all;
use basphere_notify::text::{render, TextSettings};
use basphere_notify::webhook::verify;
use basphere_notify::{WebhookNotifier, WebhookSettings};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::common::{alice, secret_file, username, vm_failed};

const SECRET: &str = "c2VjcmV0IGZvciB0ZXN0cw";

/// What the receiver got, and what it made of it.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
    /// The signature matched the receiver's own HMAC of `<timestamp>.<body>`.
    signed: bool,
}

#[derive(Clone)]
struct Inbox {
    secret: Vec<u8>,
    /// The answer to correctly signed requests (wrongly signed ones get 401).
    status: StatusCode,
    received: Arc<Mutex<Vec<Received>>>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    // The receiver's own check, as a webhook consumer would write it.
    let mut mac = Hmac::<Sha256>::new_from_slice(&inbox.secret).unwrap();
    mac.update(header(&headers, "x-basphere-timestamp").as_bytes());
    mac.update(b".");
    mac.update(&body);
    let expected: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
    let signed = header(&headers, "x-basphere-signature") == format!("sha256={expected}");
    inbox.received.lock().unwrap().push(Received { headers, body: body.to_vec(), signed });
    if signed {
        inbox.status
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// An HTTP server on 127.0.0.1 for as long as it lives.
struct Receiver {
    url: String,
    inbox: Inbox,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    async fn start(status: StatusCode) -> Receiver {
        let inbox = Inbox { secret: SECRET.as_bytes().to_vec(), status, received: Arc::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new().route("/hooks/basphere", post(receive)).with_state(inbox.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url: format!("http://{address}/hooks/basphere?token=path-secret"), inbox, server }
    }

    fn received(&self) -> Vec<Received> {
        self.inbox.received.lock().unwrap().clone()
    }
}

fn texts() -> TextSettings {
    TextSettings::from_config(&Config::default())
}

/// A webhook notifier for `url`, signing with `secret`, configured as an operator would.
fn notifier(url: &str, secret: &str, timeout_seconds: u64) -> WebhookNotifier {
    let dir = tempfile::tempdir().unwrap();
    let path = secret_file(dir.path(), "webhook.secret", &format!("{secret}\n"), 0o600);
    let section = serde_yaml::from_str(&format!(
        "{{url: '{url}', secret_file: {}, timeout_seconds: {timeout_seconds}}}",
        path.display()
    ))
    .unwrap();
    let settings = WebhookSettings::from_yaml(&section).unwrap().unwrap();
    WebhookNotifier::new(settings, texts()).unwrap()
}

#[tokio::test]
async fn a_delivery_is_a_signed_json_post_of_the_event() {
    let receiver = Receiver::start(StatusCode::NO_CONTENT).await;
    let event = vm_failed("template not found\r\nX-Injected: yes");
    let before = chrono::Utc::now().timestamp();
    notifier(&receiver.url, SECRET, 5).notify(&event, &alice()).await.unwrap();
    let after = chrono::Utc::now().timestamp();

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert!(request.signed, "the receiver's HMAC matches");
    assert_eq!(header(&request.headers, "content-type"), "application/json");
    assert_eq!(header(&request.headers, "x-basphere-event"), "vm_failed");
    assert!(request.headers.get("x-injected").is_none());
    let timestamp: i64 = header(&request.headers, "x-basphere-timestamp").parse().unwrap();
    assert!((before..=after).contains(&timestamp), "{timestamp} outside {before}..={after}");
    assert!(verify(SECRET.as_bytes(), timestamp, &request.body, header(&request.headers, "x-basphere-signature")));

    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["event"], "vm_failed");
    assert!(body["id"].is_null(), "sent outside the outbox: no message id");
    assert_eq!(
        body["recipient"],
        serde_json::json!({"kind": "person", "username": "alice", "email": "alice@example.com"})
    );
    let data: NotificationEvent = serde_json::from_value(body["data"].clone()).unwrap();
    assert_eq!(data, event);
    let text = render(&event, &alice(), &texts());
    assert_eq!(body["text"]["subject"], text.subject.as_str());
    assert_eq!(body["text"]["body"], text.body.as_str());
    let sent_at = chrono::DateTime::parse_from_rfc3339(body["sent_at"].as_str().unwrap()).unwrap();
    assert_eq!(sent_at.timestamp(), timestamp, "sent_at and the signed timestamp agree");
}

#[tokio::test]
async fn a_wrong_secret_is_detected_by_the_receiver() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let error =
        notifier(&receiver.url, "not-the-shared-secret", 5).notify(&vm_failed("x"), &alice()).await.unwrap_err();
    assert!(!receiver.received()[0].signed);
    assert!(error.to_string().contains("401 Unauthorized"), "{error}");
}

#[tokio::test]
async fn a_non_2xx_answer_fails_naming_the_status() {
    let receiver = Receiver::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let error = notifier(&receiver.url, SECRET, 5).notify(&vm_failed("x"), &alice()).await.unwrap_err();
    assert!(matches!(error, Error::Backend { backend: "webhook", .. }), "{error:?}");
    assert!(error.is_transient());
    let text = error.to_string();
    assert!(text.contains("answered 500 Internal Server Error"), "{text}");
    assert!(!text.contains("path-secret"), "the URL's path and query stay out of errors: {text}");
    assert!(receiver.received()[0].signed);
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    // Accepts connections and reads nothing, answers nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let notifier = notifier(&format!("http://{address}/hook"), SECRET, 1);
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), notifier.notify(&vm_failed("x"), &alice()))
        .await
        .expect("notify returns by itself");
    let elapsed = started.elapsed();
    silent.abort();
    let error = result.unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    assert!(error.to_string().contains("no answer within 1 s"), "{error}");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn a_refused_connection_is_a_backend_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let error =
        notifier(&format!("http://{address}/hook"), SECRET, 2).notify(&vm_failed("x"), &alice()).await.unwrap_err();
    assert!(matches!(error, Error::Backend { backend: "webhook", .. }), "{error:?}");
    assert!(error.to_string().contains(&format!("http://{address}")), "{error}");
}

#[tokio::test]
async fn the_webhook_passes_the_notifier_conformance_suite() {
    let receiver = Receiver::start(StatusCode::OK).await;
    let notifier = notifier(&receiver.url, SECRET, 5);
    let delivered = || {
        receiver
            .received()
            .iter()
            .map(|request| {
                assert!(request.signed);
                let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
                serde_json::from_value(body["data"].clone()).unwrap()
            })
            .collect::<Vec<NotificationEvent>>()
    };
    check_all(&notifier, &delivered).await;
    // Administrators and gone accounts are told apart in the body.
    let gone = basphere_core::notifier::Recipient::Gone { username: username("bob") };
    notifier.notify(&vm_failed("x"), &gone).await.unwrap();
    let last = receiver.received().pop().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(body["recipient"], serde_json::json!({"kind": "gone", "username": "bob"}));
    let first: serde_json::Value = serde_json::from_slice(&receiver.received()[0].body).unwrap();
    assert_eq!(first["recipient"], serde_json::json!({"kind": "administrators", "emails": ["ops@example.com"]}));
}

#[tokio::test]
async fn an_outbox_message_carries_its_id_the_same_on_every_retry() {
    let receiver = Receiver::start(StatusCode::NO_CONTENT).await;
    let notifier = notifier(&receiver.url, SECRET, 5);
    let id = uuid::Uuid::now_v7();
    notifier.deliver(id, &vm_failed("x"), &alice()).await.unwrap();
    notifier.deliver(id, &vm_failed("x"), &alice()).await.unwrap();
    let ids: Vec<String> = receiver
        .received()
        .iter()
        .map(|request| {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids, [id.to_string(), id.to_string()], "a receiver drops the second by its id");
}
