//! The email notifier against a real SMTP server on 127.0.0.1: aiosmtpd, started by the test,
//! keeps every message, parsed by Python's email package, for the test to check.
//!
//! Needs `pip install aiosmtpd`. Without it the tests are skipped with a note, except under CI
//! (`CI` set), where they fail.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use basphere_core::config::Config;
use basphere_core::error::Error;
use basphere_core::model::NotificationEvent;
use basphere_core::notifier::{Notifier, Recipient};
use basphere_notify::text::{render, TextSettings};
use basphere_notify::{EmailNotifier, EmailSettings};
use serde::Deserialize;

use crate::common::{alice, email, secret_file, username, vm_failed};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/smtp_server.py");

/// A message as the server received and parsed it.
#[derive(Debug, Deserialize)]
struct Received {
    mail_from: String,
    rcpt_tos: Vec<String>,
    login: Option<String>,
    raw: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Received {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str()).collect()
    }

    fn body(&self) -> String {
        self.body.clone().unwrap_or_default().replace("\r\n", "\n")
    }
}

/// aiosmtpd on a free port of 127.0.0.1, stopped when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// `None` (with a note) when aiosmtpd is not installed and this is not CI.
    fn start(login: Option<&str>) -> Option<SmtpServer> {
        let installed = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            basphere_core::testing::skip_unless_ci(
                "aiosmtpd is not installed for python3 (the email tests need it): pip install aiosmtpd==1.4.6",
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // Its log (warnings, the bytes of refused TLS handshakes) stays out of the test output.
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new("python3");
        command.arg(SCRIPT).arg(dir.path()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(log);
        if let Some(login) = login {
            command.arg(login);
        }
        let mut child = command.spawn().expect("python3 starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("the SMTP server did not start (printed {line:?}):\n{log}")
        });
        Some(SmtpServer { child, port, dir })
    }

    /// Every message received so far, in order.
    fn messages(&self) -> Vec<Received> {
        let mut paths: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        paths.sort();
        paths.iter().map(|path| serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()).collect()
    }
}

fn texts() -> TextSettings {
    TextSettings::from_config(&Config::default())
}

/// An email notifier for the SMTP server on `port`, configured as an operator would.
fn notifier(port: u16, extra: &str) -> EmailNotifier {
    let timeout = if extra.contains("timeout_seconds") { "" } else { ", timeout_seconds: 5" };
    let tls = if extra.contains("tls:") { "" } else { ", tls: none" };
    let section = serde_yaml::from_str(&format!(
        "{{host: 127.0.0.1, port: {port}, from: 'Basphere <basphere@corp.com>'{tls}{timeout}{extra}}}"
    ))
    .unwrap();
    EmailNotifier::new(EmailSettings::from_yaml(&section).unwrap().unwrap(), texts()).unwrap()
}

fn approved() -> NotificationEvent {
    NotificationEvent::RegistrationApproved { username: username("alice"), email: email("alice@example.com") }
}

#[tokio::test]
async fn a_person_gets_the_text_of_the_event() {
    let Some(server) = SmtpServer::start(None) else { return };
    notifier(server.port, "").notify(&approved(), &alice()).await.unwrap();

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.mail_from, "basphere@corp.com");
    assert_eq!(message.rcpt_tos, ["alice@example.com"]);
    assert_eq!(message.header("To"), ["alice <alice@example.com>"]);
    assert_eq!(message.header("From"), ["Basphere <basphere@corp.com>"]);
    assert_eq!(message.header("Auto-Submitted"), ["auto-generated"]);
    assert_eq!(message.header("X-Basphere-Event"), ["registration_approved"]);
    let text = render(&approved(), &alice(), &texts());
    assert_eq!(message.header("Subject"), [text.subject.as_str()]);
    assert_eq!(message.body().trim_end(), text.body.trim_end());
    assert!(message.body().contains("    ssh alice@bastion-server\n"), "{}", message.body());
}

/// The outbox delivers a message at least once: a retry (after a crash between the SMTP server's
/// acceptance and the outbox's record of it) carries the same `Message-ID`, so the recipient can
/// tell it is the same message; another outbox message has another.
#[tokio::test]
async fn an_outbox_message_keeps_its_message_id_on_every_retry() {
    let Some(server) = SmtpServer::start(None) else { return };
    // Through the fan-out, as the outbox dispatcher delivers on the email channel.
    let fanout = basphere_notify::Fanout::new(vec![std::sync::Arc::new(notifier(server.port, ""))]);
    let first = uuid::Uuid::new_v4();
    let second = uuid::Uuid::new_v4();
    fanout.notify_on("email", first, &approved(), &alice()).await.unwrap();
    fanout.notify_on("email", first, &approved(), &alice()).await.unwrap();
    fanout.notify_on("email", second, &approved(), &alice()).await.unwrap();

    let messages = server.messages();
    assert_eq!(messages.len(), 3);
    let ids: Vec<&str> = messages
        .iter()
        .map(|message| match message.header("Message-ID")[..] {
            [id] => id,
            ref ids => panic!("one Message-ID: {ids:?}\n{}", message.raw),
        })
        .collect();
    for (id, outbox) in ids.iter().zip([first, first, second]) {
        let (local, domain) = id
            .strip_prefix('<')
            .and_then(|id| id.strip_suffix('>'))
            .and_then(|id| id.split_once('@'))
            .unwrap_or_else(|| panic!("{id:?} is not <local@domain>"));
        assert_eq!(local, outbox.to_string(), "the outbox message's id: {id}");
        assert_eq!(domain, "corp.com", "the domain of the from address: {id}");
        assert!(!id.contains(char::is_whitespace), "{id:?}");
    }
    assert_eq!(ids[0], ids[1], "a retried delivery is the same message");
    assert_ne!(ids[0], ids[2], "another outbox message is another message");

    // Without an outbox message (a direct notify), each message still gets an id, its own.
    let direct = notifier(server.port, "");
    direct.notify(&approved(), &alice()).await.unwrap();
    direct.notify(&approved(), &alice()).await.unwrap();
    let messages = server.messages();
    let (a, b) = (messages[3].header("Message-ID"), messages[4].header("Message-ID"));
    assert!(a.len() == 1 && b.len() == 1 && a != b, "{a:?} {b:?}");
}

#[tokio::test]
async fn a_reason_or_a_resource_cannot_add_headers() {
    let Some(server) = SmtpServer::start(None) else { return };
    let notifier = notifier(server.port, "");
    let rejected = NotificationEvent::RegistrationRejected {
        username: username("alice"),
        email: email("alice@example.com"),
        reason: "looks like spam\r\nBcc: x@evil\r\n\r\nplease go away".into(),
    };
    notifier.notify(&rejected, &alice()).await.unwrap();
    let quota = NotificationEvent::QuotaNearlyUsed {
        owner: username("alice"),
        resource: "vms\r\nBcc: x@evil".into(),
        used: 4,
        limit: 5,
    };
    notifier.notify(&quota, &alice()).await.unwrap();

    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    for message in &messages {
        assert_eq!(message.rcpt_tos, ["alice@example.com"], "nobody else got it");
        assert!(message.header("Bcc").is_empty(), "{:?}", message.headers);
        assert!(!message.raw.contains("\nBcc:") && !message.raw.contains("\nbcc:"), "{}", message.raw);
        assert_eq!(message.header("Subject").len(), 1);
    }
    assert!(
        messages[0].body().contains("Reason:\n    looks like spam\n    Bcc: x@evil\n\n    please go away\n"),
        "{}",
        messages[0].body()
    );
    assert_eq!(messages[1].header("Subject"), ["[Basphere] You have used 4 of 5 vms Bcc: x@evil"]);
}

#[tokio::test]
async fn administrators_get_one_message_and_nobody_gets_nothing() {
    let Some(server) = SmtpServer::start(None) else { return };
    let notifier = notifier(server.port, "");
    let submitted =
        NotificationEvent::RegistrationSubmitted { username: username("bob"), email: email("bob@example.com") };
    let admins = Recipient::Administrators { emails: vec![email("ops@corp.com"), email("lead@corp.com")] };
    notifier.notify(&submitted, &admins).await.unwrap();
    notifier.notify(&submitted, &Recipient::Administrators { emails: Vec::new() }).await.unwrap();
    notifier.notify(&vm_failed("x"), &Recipient::Gone { username: username("carol") }).await.unwrap();

    let messages = server.messages();
    assert_eq!(messages.len(), 1, "no admin address and a gone account send nothing");
    assert_eq!(messages[0].rcpt_tos, ["ops@corp.com", "lead@corp.com"]);
    assert_eq!(messages[0].header("To"), ["ops@corp.com, lead@corp.com"]);
    assert!(messages[0].body().contains("basphere admin user approve bob --wait"), "{}", messages[0].body());
}

#[tokio::test]
async fn it_logs_in_with_the_password_from_its_file() {
    let Some(server) = SmtpServer::start(Some("basphere:pw-from-file")) else { return };
    let dir = tempfile::tempdir().unwrap();
    let right = secret_file(dir.path(), "right", "pw-from-file\n", 0o600);
    let wrong = secret_file(dir.path(), "wrong", "guess\n", 0o600);
    let with = |path: &std::path::Path| format!(", username: basphere, password_file: {}", path.display());

    notifier(server.port, &with(&right)).notify(&vm_failed("x"), &alice()).await.unwrap();
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].login.as_deref(), Some("basphere"));

    let error = notifier(server.port, &with(&wrong)).notify(&vm_failed("x"), &alice()).await.unwrap_err();
    assert!(matches!(error, Error::Backend { backend: "email", .. }), "{error:?}");
    assert!(error.to_string().contains("535"), "{error}");
    assert!(!error.to_string().contains("guess"), "{error}");
    assert_eq!(server.messages().len(), 1);

    // Without logging in, the server refuses the message.
    let error = notifier(server.port, "").notify(&vm_failed("x"), &alice()).await.unwrap_err();
    assert!(error.to_string().contains("530"), "{error}");
}

#[tokio::test]
async fn tls_is_required_when_configured() {
    // The test server speaks plain SMTP only: STARTTLS is not offered, and a TLS handshake fails.
    let Some(server) = SmtpServer::start(None) else { return };
    for tls in ["starttls", "tls"] {
        let error =
            notifier(server.port, &format!(", tls: {tls}")).notify(&vm_failed("x"), &alice()).await.unwrap_err();
        assert!(error.is_transient(), "{tls}: {error:?}");
        assert!(error.to_string().contains(&format!("127.0.0.1:{}", server.port)), "{tls}: {error}");
    }
    assert!(server.messages().is_empty(), "nothing went out in clear");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and never sends its greeting (needs no aiosmtpd).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let notifier = notifier(port, ", timeout_seconds: 1");
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), notifier.notify(&vm_failed("x"), &alice()))
        .await
        .expect("notify returns by itself");
    let elapsed = started.elapsed();
    silent.abort();
    let error = result.unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn a_refused_connection_is_a_backend_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let error = notifier(port, "").notify(&vm_failed("x"), &alice()).await.unwrap_err();
    assert!(matches!(error, Error::Backend { backend: "email", .. }), "{error:?}");
    assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
}
