//! The notifier sections: every error names its key and says what is accepted.

use basphere_notify::settings::{EmailSettings, TlsMode, WebhookSettings};
use basphere_notify::{from_config, Fanout};

use crate::common::{config, error_text, secret_file};

fn yaml(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).unwrap()
}

#[test]
fn unknown_keys_are_named_with_the_accepted_ones() {
    let error = error_text(WebhookSettings::from_yaml(&yaml("{urll: 'http://127.0.0.1:9/'}")));
    assert!(
        error.contains("notifications.webhook.urll")
            && error.contains("is not a key; accepted: url, secret_file, timeout_seconds"),
        "{error}"
    );
    let error = error_text(EmailSettings::from_yaml(&yaml("{host: mail, from: a@b.c, sender: x}")));
    assert!(
        error.contains("notifications.email.sender")
            && error.contains("accepted: host, port, tls, from, username, password_file, timeout_seconds"),
        "{error}"
    );
    // The same through the whole configuration.
    let config = config("notifications: {webhook: {urll: 'http://127.0.0.1:9/'}}");
    let error = error_text(from_config(&config));
    assert!(error.contains("notifications.webhook.urll is not a key"), "{error}");
}

#[test]
fn secret_files_must_exist_and_be_closed_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let error = error_text(WebhookSettings::from_yaml(&yaml(&format!(
        "{{url: 'http://127.0.0.1:9/', secret_file: {}}}",
        missing.display()
    ))));
    assert!(error.contains("notifications.webhook.secret_file") && error.contains("cannot read"), "{error}");

    for mode in [0o644, 0o640, 0o604, 0o660] {
        let open = secret_file(dir.path(), "open", "s3cret\n", mode);
        let error = error_text(WebhookSettings::from_yaml(&yaml(&format!(
            "{{url: 'http://127.0.0.1:9/', secret_file: {}}}",
            open.display()
        ))));
        assert!(
            error.contains("notifications.webhook.secret_file")
                && error.contains(&format!("mode {mode:04o}"))
                && error.contains("chmod 600"),
            "{error}"
        );
    }

    let password = secret_file(dir.path(), "password", "pw\n", 0o644);
    let error = error_text(EmailSettings::from_yaml(&yaml(&format!(
        "{{host: 127.0.0.1, from: basphere@corp.com, username: u, password_file: {}}}",
        password.display()
    ))));
    assert!(error.contains("notifications.email.password_file") && error.contains("open to other users"), "{error}");

    let empty = secret_file(dir.path(), "empty", "\n", 0o600);
    let error = error_text(WebhookSettings::from_yaml(&yaml(&format!(
        "{{url: 'http://127.0.0.1:9/', secret_file: {}}}",
        empty.display()
    ))));
    assert!(error.contains("notifications.webhook.secret_file") && error.contains("one line"), "{error}");

    let error = error_text(WebhookSettings::from_yaml(&yaml("{url: 'http://127.0.0.1:9/', secret_file: relative}")));
    assert!(error.contains("notifications.webhook.secret_file") && error.contains("absolute"), "{error}");
    let error = error_text(WebhookSettings::from_yaml(&yaml("{url: 'http://127.0.0.1:9/'}")));
    assert!(error.contains("notifications.webhook.secret_file") && error.contains("required"), "{error}");
}

#[test]
fn bad_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), "secret", "s3cret\n", 0o600);
    let webhook = |rest: &str| format!("{{secret_file: {}, {rest}}}", secret.display());
    let cases = [
        (webhook("url: 'not a url'"), "notifications.webhook.url", "not a URL"),
        (webhook("url: 'ftp://files.corp.com/x'"), "notifications.webhook.url", "http or https"),
        (webhook("url: 'http://127.0.0.1:9/', timeout_seconds: 0"), "notifications.webhook.timeout_seconds", "1-300"),
        (webhook("url: 'http://127.0.0.1:9/', timeout_seconds: ten"), "notifications.webhook.timeout_seconds", "1-300"),
        (webhook("url: [a]"), "notifications.webhook.url", "string"),
    ];
    for (section, key, accepted) in cases {
        let error = error_text(WebhookSettings::from_yaml(&yaml(&section)));
        assert!(error.contains(key) && error.contains(accepted), "{section}: {error}");
    }
    let error = error_text(WebhookSettings::from_yaml(&yaml("[url]")));
    assert!(error.contains("notifications.webhook") && error.contains("mapping"), "{error}");

    let cases = [
        ("{from: a@corp.com}", "notifications.email.host", "required"),
        ("{host: mail.corp.com}", "notifications.email.from", "required"),
        ("{host: mail.corp.com, from: 'not an address'}", "notifications.email.from", "not an address"),
        ("{host: mail.corp.com, from: a@corp.com, tls: ssl}", "notifications.email.tls", "starttls, tls or none"),
        ("{host: mail.corp.com, from: a@corp.com, port: 70000}", "notifications.email.port", "1-65535"),
        ("{host: mail.corp.com, from: a@corp.com, username: u}", "notifications.email.password_file", "required"),
        ("{host: 'mail corp', from: a@corp.com}", "notifications.email.host", "not a host"),
    ];
    for (section, key, accepted) in cases {
        let error = error_text(EmailSettings::from_yaml(&yaml(section)));
        assert!(error.contains(key) && error.contains(accepted), "{section}: {error}");
    }
    let password = secret_file(dir.path(), "password", "pw\n", 0o600);
    let clear = format!(
        "{{host: mail.corp.com, from: a@corp.com, tls: none, username: u, password_file: {}}}",
        password.display()
    );
    let error = error_text(EmailSettings::from_yaml(&yaml(&clear)));
    assert!(error.contains("notifications.email.tls") && error.contains("in clear"), "{error}");
}

#[test]
fn sections_are_read_with_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), "secret", "s3cret\n", 0o600);
    let password = secret_file(dir.path(), "password", "pw\r\n", 0o400);
    let webhook = WebhookSettings::from_yaml(&yaml(&format!(
        "{{url: 'https://hooks.corp.com/basphere?token=x', secret_file: {}}}",
        secret.display()
    )))
    .unwrap()
    .unwrap();
    assert_eq!(webhook.secret.expose(), "s3cret");
    assert_eq!(webhook.timeout.as_secs(), 10);
    assert!(!format!("{webhook:?}").contains("s3cret"), "secrets are never printed");

    let email = EmailSettings::from_yaml(&yaml(&format!(
        "{{host: mail.corp.com, from: 'Basphere <basphere@corp.com>', username: basphere, password_file: {}}}",
        password.display()
    )))
    .unwrap()
    .unwrap();
    assert_eq!((email.tls, email.port, email.timeout.as_secs()), (TlsMode::StartTls, 587, 10));
    assert_eq!(
        email.credentials.as_ref().map(|(user, password)| (user.as_str(), password.expose())),
        Some(("basphere", "pw"))
    );
    let tls = EmailSettings::from_yaml(&yaml("{host: mail.corp.com, from: a@corp.com, tls: tls, timeout_seconds: 3}"))
        .unwrap()
        .unwrap();
    assert_eq!((tls.tls, tls.port, tls.timeout.as_secs()), (TlsMode::Tls, 465, 3));
    assert_eq!(WebhookSettings::from_yaml(&serde_yaml::Value::Null).unwrap(), None);
    assert_eq!(EmailSettings::from_yaml(&serde_yaml::Value::Null).unwrap(), None);
}

#[test]
fn from_config_adds_what_is_configured_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), "secret", "s3cret\n", 0o600);
    let notifier = from_config(&config("")).unwrap();
    assert_eq!(notifier.backend_name(), "fanout");
    let yaml = format!(
        "notifications:\n  webhook: {{url: 'http://127.0.0.1:9/', secret_file: {}}}\n  email: {{host: 127.0.0.1, port: 2525, tls: none, from: basphere@corp.com}}\n",
        secret.display()
    );
    assert_eq!(Fanout::from_config(&config(&yaml)).unwrap().backends(), ["log", "webhook", "email"]);
    assert_eq!(Fanout::from_config(&config("")).unwrap().backends(), ["log"]);
    assert_eq!(from_config(&config(&yaml)).unwrap().backend_name(), "fanout");
    // Each backend is a channel of its own, retried on its own by the outbox.
    assert_eq!(from_config(&config(&yaml)).unwrap().channels(), ["log", "webhook", "email"]);
    let event = basphere_core::testing::notifier::sample_events().remove(0);
    let to = basphere_core::testing::notifier::sample_recipient(&event);
    let only_log = from_config(&config("")).unwrap();
    block_on(only_log.notify_on("log", uuid::Uuid::now_v7(), &event, &to)).unwrap();
    let gone = block_on(only_log.notify_on("webhook", uuid::Uuid::now_v7(), &event, &to)).unwrap_err();
    assert!(gone.to_string().contains("not configured"), "{gone}");
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}
