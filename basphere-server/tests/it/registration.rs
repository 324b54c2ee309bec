//! Public submissions through the HTTP API: JSON and form bodies, one answer whatever becomes of
//! a submission, the abuse limits (429 with `Retry-After`), and the reCAPTCHA check against a
//! siteverify stand-in on loopback that checks what it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::routing::post;
use basphere_core::config::{RecaptchaConfig, RecaptchaSettings, RegistrationLimits};
use basphere_core::Config;
use basphere_server::captcha::Recaptcha;
use basphere_server::config::ServerSettings;

use crate::fixture::{Api, Who, ROOT};

fn key(seed: u64) -> String {
    basphere_core::testing::ssh_key(seed).as_str().to_owned()
}

fn register_json(name: &str, email: &str, seed: u64) -> String {
    serde_json::json!({"username": name, "email": email, "ssh_key": key(seed)}).to_string()
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let value: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{k}={value}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn peer(last: u8) -> Who {
    Who::From(SocketAddr::from(([198, 51, 100, last], 50000)))
}

#[tokio::test]
async fn json_and_forms_get_one_answer_whatever_becomes_of_them() {
    let api = Api::new().await;
    api.account("taken", 9, false, None).await;
    let first = api
        .send(&Who::Anonymous, "POST", "/api/v1/register", Some(&register_json("alice", "alice@example.com", 1)))
        .await;
    assert_eq!(first.status, 202, "{}", first.body);
    // The original's form field names, form-encoded, as the web page posts them.
    let form = form_encode(&[
        ("username", "bob"),
        ("email", "bob@example.com"),
        ("team", "ops"),
        ("public_key", &key(2)),
        ("g-recaptcha-response", ""),
    ]);
    let by_form = api
        .call(
            &Who::Anonymous,
            "POST",
            "/api/v1/register",
            &[("content-type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
        .await;
    assert_eq!((by_form.status, &by_form.body), (202, &first.body), "the same answer");
    // A taken name, a pending name, a pending email, a key in use: the same answer again, byte for byte.
    for body in [
        register_json("taken", "t2@example.com", 3),
        register_json("alice", "a2@example.com", 4),
        register_json("carol", "BOB@example.com", 5),
        register_json("dave", "dave@example.com", 9),
    ] {
        let answer = api.send(&Who::Anonymous, "POST", "/api/v1/register", Some(&body)).await;
        assert_eq!((answer.status, &answer.body), (202, &first.body), "{body}");
    }
    let pending = api.get(&ROOT, "/api/v1/admin/registrations").await.json();
    let names: Vec<&str> =
        pending["items"].as_array().unwrap().iter().map(|r| r["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(pending["items"][1]["team"], "ops");

    // Invalid fields: 400 with every problem listed, in JSON and in forms alike.
    let bad = api
        .send(
            &Who::Anonymous,
            "POST",
            "/api/v1/register",
            Some(r#"{"username":"X","email":"no","ssh_key":"ssh-rsa AAAA"}"#),
        )
        .await;
    assert_eq!((bad.status, bad.problem()), (400, "invalid-input".to_owned()), "{}", bad.body);
    assert_eq!(bad.json()["errors"].as_array().unwrap().len(), 3, "{}", bad.body);
    let bad_form = api
        .call(
            &Who::Anonymous,
            "POST",
            "/api/v1/register",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"username=x%0Ay&email=&public_key=",
        )
        .await;
    assert_eq!(bad_form.status, 400, "{}", bad_form.body);
    let text = api.call(&Who::Anonymous, "POST", "/api/v1/register", &[("content-type", "text/plain")], b"hello").await;
    assert_eq!(text.status, 415, "{}", text.body);
    assert!(text.body.contains("x-www-form-urlencoded"), "{}", text.body);

    // A key change for alice's name with someone else's email: answered alike, nothing recorded.
    let change = serde_json::json!({"username": "taken", "email": "mallory@example.com", "ssh_key": key(20), "reason": "mine now"});
    let answer = api.send(&Who::Anonymous, "POST", "/api/v1/key-change", Some(&change.to_string())).await;
    assert_eq!((answer.status, &answer.body), (202, &first.body));
    let changes = api.get(&ROOT, "/api/v1/admin/key-changes").await.json();
    assert_eq!(changes["items"].as_array().unwrap().len(), 0, "{changes}");
}

#[tokio::test]
async fn too_many_submissions_are_answered_429_with_retry_after() {
    let limits = RegistrationLimits {
        per_address_per_hour: 2,
        per_email_per_day: 2,
        per_day: 100,
        ..RegistrationLimits::DEFAULT
    };
    let api = Api::with(Config { registration: limits, ..Config::default() }, None).await;
    for (i, name) in ["one", "two"].iter().enumerate() {
        let answer = api
            .send(
                &peer(1),
                "POST",
                "/api/v1/register",
                Some(&register_json(name, &format!("{name}@example.com"), i as u64 + 1)),
            )
            .await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    let third =
        api.send(&peer(1), "POST", "/api/v1/register", Some(&register_json("three", "three@example.com", 3))).await;
    assert_eq!((third.status, third.problem()), (429, "rate-limited".to_owned()), "{}", third.body);
    let wait: u64 = third.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=3600).contains(&wait), "{wait}");
    // Another address is not held back by the first; an email is, from anywhere.
    assert_eq!(
        api.send(&peer(2), "POST", "/api/v1/register", Some(&register_json("three", "three@example.com", 3)))
            .await
            .status,
        202
    );
    assert_eq!(
        api.send(&peer(3), "POST", "/api/v1/register", Some(&register_json("four", "three@example.com", 4)))
            .await
            .status,
        202
    );
    let same_email =
        api.send(&peer(4), "POST", "/api/v1/register", Some(&register_json("five", "Three@example.com", 5))).await;
    assert_eq!(same_email.status, 429, "{}", same_email.body);
}

/// What the siteverify stand-in received: each request's form fields.
#[derive(Default)]
struct Siteverify {
    received: Mutex<Vec<Vec<(String, String)>>>,
}

/// The secret the stand-in's site has.
const SITE_SECRET: &str = "s3cret";

/// The verdict of siteverify (reCAPTCHA's, as Turnstile's and hCaptcha's) on one request: a form
/// POST whose `secret` must be the site's, exactly, and whose `response` must be a token it
/// issued, exactly: `good` (solved on basphere.example) or `good-elsewhere` (on evil.example).
fn verdict(content_type: Option<&str>, fields: &[(String, String)]) -> serde_json::Value {
    let field = |name: &str| match fields.iter().filter(|(key, _)| key == name).collect::<Vec<_>>()[..] {
        [(_, value)] => Some(value.as_str()),
        _ => None,
    };
    let solved_on = match (field("secret"), field("response")) {
        _ if content_type != Some("application/x-www-form-urlencoded") => Err("bad-request"),
        (None, _) => Err("missing-input-secret"),
        (Some(secret), _) if secret != SITE_SECRET => Err("invalid-input-secret"),
        (_, None) => Err("missing-input-response"),
        (_, Some("good")) => Ok("basphere.example"),
        (_, Some("good-elsewhere")) => Ok("evil.example"),
        _ => Err("invalid-input-response"),
    };
    match solved_on {
        Ok(hostname) => serde_json::json!({"success": true, "hostname": hostname, "error-codes": []}),
        Err(code) => serde_json::json!({"success": false, "error-codes": [code]}),
    }
}

async fn siteverify(state: Arc<Siteverify>) -> SocketAddr {
    let app = axum::Router::new().route(
        "/siteverify",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let fields: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                state.received.lock().unwrap().push(fields.clone());
                let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
                axum::Json(verdict(content_type, &fields))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

#[tokio::test]
async fn the_bot_check_guards_json_and_forms_alike() {
    let stand_in = Arc::new(Siteverify::default());
    let address = siteverify(stand_in.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("recaptcha.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let settings = RecaptchaSettings {
        site_key: "site".into(),
        secret_file: secret.clone(),
        verify_url: format!("http://{address}/siteverify"),
        hostname: Some("basphere.example".into()),
        timeout_seconds: 2,
    };
    // The secret file must be private.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = Recaptcha::from_settings(&settings).err().expect("a readable secret is refused").to_string();
    assert!(error.contains("recaptcha.secret_file") && error.contains("0600"), "{error}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let check = Arc::new(Recaptcha::from_settings(&settings).unwrap());
    let config = Config { recaptcha: RecaptchaConfig::On(settings.clone()), ..Config::default() };
    let api = Api::with(config, Some(check)).await;

    // No token, in JSON (the original skipped the check there) and in a form: refused.
    let json =
        api.send(&peer(1), "POST", "/api/v1/register", Some(&register_json("alice", "alice@example.com", 1))).await;
    assert_eq!(json.status, 403, "{}", json.body);
    assert!(json.body.contains("robot"), "{}", json.body);
    let form = form_encode(&[("username", "alice"), ("email", "alice@example.com"), ("public_key", &key(1))]);
    let by_form = api
        .call(
            &peer(1),
            "POST",
            "/api/v1/register",
            &[("content-type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
        .await;
    assert_eq!(by_form.status, 403, "{}", by_form.body);
    // A wrong token, tokens that merely contain a good one, a token solved on another site: refused.
    for token in ["bad", "goodish", "not-good", "good-elsewhere"] {
        let body = serde_json::json!({"username": "alice", "email": "alice@example.com", "ssh_key": key(1), "recaptcha_response": token});
        let refused = api.send(&peer(1), "POST", "/api/v1/register", Some(&body.to_string())).await;
        assert_eq!(refused.status, 403, "{token}: {}", refused.body);
    }
    // A good token, in a form under the page's field name: accepted.
    let form = form_encode(&[
        ("username", "alice"),
        ("email", "alice@example.com"),
        ("public_key", &key(1)),
        ("g-recaptcha-response", "good"),
    ]);
    let accepted = api
        .call(
            &peer(1),
            "POST",
            "/api/v1/register",
            &[("content-type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    // siteverify got the secret, the token and the client's address, each time it was asked.
    let received = stand_in.received.lock().unwrap().clone();
    let tokens: Vec<&str> = received
        .iter()
        .map(|fields| {
            let value = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
            assert_eq!((value("secret"), value("remoteip")), (Some(SITE_SECRET), Some("198.51.100.1")), "{fields:?}");
            value("response").unwrap_or_default()
        })
        .collect();
    assert_eq!(tokens, ["bad", "goodish", "not-good", "good-elsewhere", "good"], "no call without a token");
    let pending = api.get(&ROOT, "/api/v1/admin/registrations").await.json();
    assert_eq!(pending["items"].as_array().unwrap().len(), 1);

    // A good token sent with a secret that is not the site's: siteverify refuses it.
    std::fs::write(&secret, "s3cret-of-another-site\n").unwrap();
    let check = Arc::new(Recaptcha::from_settings(&settings).unwrap());
    let api =
        Api::with(Config { recaptcha: RecaptchaConfig::On(settings.clone()), ..Config::default() }, Some(check)).await;
    let body = serde_json::json!({"username": "bob", "email": "bob@example.com", "ssh_key": key(2), "recaptcha_response": "good"});
    let refused = api.send(&peer(2), "POST", "/api/v1/register", Some(&body.to_string())).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let last = stand_in.received.lock().unwrap().last().cloned().unwrap();
    assert!(last.contains(&("secret".into(), "s3cret-of-another-site".into())), "{last:?}");
}

/// The stand-in's verdicts, against what siteverify answers: exact secret, exact token, a form.
#[test]
fn the_siteverify_stand_in_checks_the_secret_and_the_token_exactly() {
    let form = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    };
    let form_type = Some("application/x-www-form-urlencoded");
    let verdicts = [
        (form_type, form(&[("secret", SITE_SECRET), ("response", "good")]), Some("basphere.example")),
        (form_type, form(&[("secret", SITE_SECRET), ("response", "good-elsewhere")]), Some("evil.example")),
        (form_type, form(&[("secret", "s3cret-not"), ("response", "good")]), None),
        (form_type, form(&[("secret", "s3"), ("response", "good")]), None),
        (form_type, form(&[("response", "good")]), None),
        (form_type, form(&[("secret", SITE_SECRET), ("response", "goodish")]), None),
        (form_type, form(&[("secret", SITE_SECRET), ("response", "good"), ("response", "bad")]), None),
        (form_type, form(&[("secret", SITE_SECRET)]), None),
        (Some("application/json"), form(&[("secret", SITE_SECRET), ("response", "good")]), None),
    ];
    for (content_type, fields, solved_on) in verdicts {
        let answer = verdict(content_type, &fields);
        assert_eq!(answer["success"], solved_on.is_some(), "{content_type:?} {fields:?}: {answer}");
        assert_eq!(answer["hostname"].as_str(), solved_on, "{fields:?}: {answer}");
    }
}

/// A private secret file in `dir` and settings for the verifier at `verify_url`.
fn recaptcha_settings(
    dir: &std::path::Path,
    verify_url: String,
    hostname: Option<&str>,
    timeout: u64,
) -> RecaptchaSettings {
    use std::os::unix::fs::PermissionsExt;
    let secret = dir.join("recaptcha.secret");
    std::fs::write(&secret, SITE_SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    RecaptchaSettings {
        site_key: "site".into(),
        secret_file: secret,
        verify_url,
        hostname: hostname.map(str::to_owned),
        timeout_seconds: timeout,
    }
}

/// A listener that accepts connections and never answers them.
async fn silent_listener() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    address
}

/// The reCAPTCHA check passes the `HumanCheck` conformance suite against the siteverify
/// stand-in, and refuses in bounded time when siteverify is down or silent.
#[tokio::test]
async fn recaptcha_passes_the_bot_check_suite() {
    use basphere_core::testing::human;
    let stand_in = Arc::new(Siteverify::default());
    let address = siteverify(stand_in.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = recaptcha_settings(dir.path(), format!("http://{address}/siteverify"), Some("basphere.example"), 2);
    let check = Recaptcha::from_settings(&settings).unwrap();
    human::check_all(&check, "good", &["bad", "goodish", "not-good", "good-elsewhere"]).await;
    let asked: Vec<String> = stand_in
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|fields| fields.iter().find(|(key, _)| key == "response").map(|(_, token)| token.clone()).unwrap())
        .collect();
    assert!(!asked.iter().any(|token| token.trim().is_empty() || token.len() > 8 * 1024), "{asked:?}");
    assert!(asked.contains(&"good".to_owned()) && asked.contains(&"good-elsewhere".to_owned()), "{asked:?}");

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let down = recaptcha_settings(dir.path(), format!("http://{closed}/siteverify"), None, 2);
    human::check_out_of_reach(&Recaptcha::from_settings(&down).unwrap(), "good", std::time::Duration::from_secs(10))
        .await;
    let silent = recaptcha_settings(dir.path(), format!("http://{}/siteverify", silent_listener().await), None, 1);
    human::check_out_of_reach(&Recaptcha::from_settings(&silent).unwrap(), "good", std::time::Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn a_verifier_that_does_not_answer_refuses_in_bounded_time() {
    let address = silent_listener().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = recaptcha_settings(dir.path(), format!("http://{address}/siteverify"), None, 1);
    let check = Arc::new(Recaptcha::from_settings(&settings).unwrap());
    let api = Api::with(Config { recaptcha: RecaptchaConfig::On(settings), ..Config::default() }, Some(check)).await;
    let body = serde_json::json!({"username": "alice", "email": "alice@example.com", "ssh_key": key(1), "recaptcha_response": "good"});
    let started = std::time::Instant::now();
    let answer = api.send(&peer(1), "POST", "/api/v1/register", Some(&body.to_string())).await;
    assert_eq!((answer.status, answer.problem()), (504, "timeout".to_owned()), "{}", answer.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    let pending = api.get(&ROOT, "/api/v1/admin/registrations").await.json();
    assert!(pending["items"].as_array().unwrap().is_empty());
}

/// Hostile text in every field a submission carries: what is refused is refused with a 400
/// naming the field, and what is accepted comes back byte for byte, never interpreted.
#[tokio::test]
async fn hostile_fields_are_refused_or_kept_verbatim() {
    let api = Api::new().await;
    let refused: Vec<(serde_json::Value, &str)> = vec![
        (serde_json::json!({"username": "al\nice", "email": "a@example.com", "ssh_key": key(1)}), "username"),
        (serde_json::json!({"username": "alice:0:0", "email": "a@example.com", "ssh_key": key(1)}), "username"),
        (serde_json::json!({"username": "root", "email": "a@example.com", "ssh_key": key(1)}), "username"),
        (serde_json::json!({"username": "a".repeat(33), "email": "a@example.com", "ssh_key": key(1)}), "username"),
        (
            serde_json::json!({"username": "alice", "email": "a@example.com\r\nBcc: x@evil.example", "ssh_key": key(1)}),
            "email",
        ),
        (
            serde_json::json!({"username": "alice", "email": format!("{}@example.com", "a".repeat(300)), "ssh_key": key(1)}),
            "email",
        ),
        (
            serde_json::json!({"username": "alice", "email": "a@example.com", "team": "ops\u{0}", "ssh_key": key(1)}),
            "team",
        ),
        (serde_json::json!({"username": "alice", "email": "a@example.com", "team": "x\ny", "ssh_key": key(1)}), "team"),
        (
            serde_json::json!({"username": "alice", "email": "a@example.com", "team": "\u{FFFE}", "ssh_key": key(1)}),
            "team",
        ),
        (
            serde_json::json!({"username": "alice", "email": "a@example.com", "team": "t".repeat(65), "ssh_key": key(1)}),
            "team",
        ),
        (
            serde_json::json!({"username": "alice", "email": "a@example.com", "ssh_key": format!("command=\"sh\" {}", key(1))}),
            "key",
        ),
        (
            serde_json::json!({"username": "alice", "email": "a@example.com", "ssh_key": format!("{}\n{}", key(1), key(2))}),
            "key",
        ),
        (
            serde_json::json!({"username": "alice", "email": "a@example.com", "ssh_key": format!("{} x\u{0}y", key(1))}),
            "key",
        ),
    ];
    for (body, field) in refused {
        let answer = api.send(&Who::Anonymous, "POST", "/api/v1/register", Some(&body.to_string())).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert!(answer.body.to_lowercase().contains(field), "{body}: {}", answer.body);
    }
    let oversize = serde_json::json!({"username": "alice", "email": "a@example.com", "team": "x".repeat(70 * 1024), "ssh_key": key(1)});
    assert_eq!(api.send(&Who::Anonymous, "POST", "/api/v1/register", Some(&oversize.to_string())).await.status, 413);
    assert!(
        api.get(&ROOT, "/api/v1/admin/registrations").await.json()["items"].as_array().unwrap().is_empty(),
        "nothing recorded"
    );

    // Quotes, template and shell syntax are text: kept as given, shown as given.
    let team = r#"o"; DROP TABLE u;--{{7*7}}{%raw%}$(id)`id`${HOME}<b>'"#;
    let body = serde_json::json!({"username": "alice", "email": "alice@example.com", "team": team, "ssh_key": key(1)});
    assert_eq!(api.send(&Who::Anonymous, "POST", "/api/v1/register", Some(&body.to_string())).await.status, 202);
    let shown = api.get(&ROOT, "/api/v1/admin/registrations/alice").await.json();
    assert_eq!(shown["team"].as_str(), Some(team), "{shown}");
    let reason = "no \"team\" <script>alert(1)</script> {{ config }} $(reboot)";
    let rejected = api
        .send(
            &ROOT,
            "POST",
            "/api/v1/admin/registrations/alice/reject",
            Some(&serde_json::json!({"reason": reason}).to_string()),
        )
        .await;
    assert_eq!((rejected.status, rejected.json()["reject_reason"].as_str()), (200, Some(reason)), "{}", rejected.body);
    let bad_reason =
        api.send(&ROOT, "POST", "/api/v1/admin/registrations/alice/reject", Some(r#"{"reason":"a\nb"}"#)).await;
    assert_eq!(bad_reason.status, 400, "a line break in a reason: {}", bad_reason.body);
    assert!(bad_reason.body.contains("reason"), "{}", bad_reason.body);
}

/// Behind a trusted reverse proxy the limits count the client it names; anyone else's
/// `X-Forwarded-For` is ignored.
#[tokio::test]
async fn the_client_behind_a_trusted_proxy_is_the_one_limited() {
    let limits = RegistrationLimits {
        per_address_per_hour: 1,
        per_email_per_day: 100,
        per_day: 100,
        ..RegistrationLimits::DEFAULT
    };
    let config = Config { registration: limits, ..Config::default() };
    let server = ServerSettings { trusted_proxies: vec!["198.51.100.1".parse().unwrap()], ..ServerSettings::default() };
    let api = Api::with_server(config, server, None).await;
    let submit = |who: Who, forwarded: &'static str, name: &'static str, seed: u64| {
        let api = &api;
        async move {
            let body = register_json(name, &format!("{name}@example.com"), seed);
            let headers = [("content-type", "application/json"), ("x-forwarded-for", forwarded)];
            api.call(&who, "POST", "/api/v1/register", &headers, body.as_bytes()).await.status
        }
    };
    // Two clients through the proxy: one each.
    assert_eq!(submit(peer(1), "203.0.113.5", "one", 1).await, 202);
    assert_eq!(submit(peer(1), "203.0.113.6", "two", 2).await, 202);
    assert_eq!(submit(peer(1), "203.0.113.5", "three", 3).await, 429, "203.0.113.5 used its allowance");
    // A client that writes its own header in front gains nothing: the proxy's hop decides.
    assert_eq!(submit(peer(1), "192.0.2.99, 203.0.113.5", "four", 4).await, 429);
    // Not a trusted proxy: its header is ignored and its own address counts.
    assert_eq!(submit(peer(2), "203.0.113.7", "five", 5).await, 202);
    assert_eq!(submit(peer(2), "203.0.113.8", "six", 6).await, 429, "198.51.100.2 used its allowance");
}
