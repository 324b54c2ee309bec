//! The web pages without a browser: the headers every page carries, the CSRF and origin checks
//! on forms, sign-in links used once and not after they expire, idle sessions, and a developer's
//! session against the console. The journey in a real browser is in the `tests` crate
//! (`tests/web/journey.mjs`).

use basphere_core::Config;
use basphere_server::config::ServerSettings;

use crate::fixture::{Api, Reply, Who, ROOT};

const ORIGIN: &str = "http://basphere.test";
const HOST: &str = "basphere.test";

/// A browser: its cookies, sent back with every request.
struct Browser<'a> {
    api: &'a Api,
    who: Who,
    cookies: Vec<(String, String)>,
}

impl<'a> Browser<'a> {
    fn new(api: &'a Api) -> Self {
        Browser { api, who: Who::Anonymous, cookies: Vec::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ")
    }

    fn keep(&mut self, reply: &Reply) {
        for value in reply.headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() && !text.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    async fn get(&mut self, path: &str) -> Reply {
        let cookies = self.cookie_header();
        let reply = self.api.call(&self.who, "GET", path, &[("cookie", &cookies), ("host", HOST)], b"").await;
        self.keep(&reply);
        reply
    }

    async fn post(&mut self, path: &str, form: &str, origin: Option<&str>) -> Reply {
        let cookies = self.cookie_header();
        let mut headers =
            vec![("cookie", cookies.as_str()), ("host", HOST), ("content-type", "application/x-www-form-urlencoded")];
        if let Some(origin) = origin {
            headers.push(("origin", origin));
        }
        let reply = self.api.call(&self.who, "POST", path, &headers, form.as_bytes()).await;
        self.keep(&reply);
        reply
    }
}

/// The CSRF token in a page's forms.
fn csrf(page: &Reply) -> String {
    let at = page.body.find("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("no form in:\n{}", page.body));
    let rest = &page.body[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn location(reply: &Reply) -> &str {
    reply.header("location").unwrap_or_else(|| panic!("no redirect ({}): {}", reply.status, reply.body))
}

#[tokio::test]
async fn every_page_forbids_inline_script_framing_and_sniffing() {
    let api = Api::new().await;
    let mut browser = Browser::new(&api);
    for path in ["/register", "/ssh-guide", "/key-change", "/sign-in", "/success?username=alice", "/key-change-success"]
    {
        let page = browser.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("referrer-policy"), Some("same-origin"));
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert!(page.header("content-type").unwrap().starts_with("text/html"));
        let html = page.body.to_lowercase();
        assert!(!html.contains("<script>") && !html.contains(" style=") && !html.contains("<style"), "{path}");
        assert!(!html.contains("http://") || html.contains("http://localhost:8080"), "{path}: nothing external");
    }
    let css = browser.get("/static/basphere.css").await;
    assert_eq!((css.status, css.header("content-type")), (200, Some("text/css; charset=utf-8")));
    assert_eq!(browser.get("/static/../Cargo.toml").await.status, 404);
}

#[tokio::test]
async fn a_form_is_acted_on_only_with_its_token_and_from_this_site() {
    let api = Api::new().await;
    let mut browser = Browser::new(&api);
    let page = browser.get("/register").await;
    let token = csrf(&page);
    let cookie = page.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains("Secure"),
        "{cookie}"
    );
    let key = basphere_core::testing::ssh_key(1);
    let form = |csrf: &str| {
        format!(
            "csrf={csrf}&username=alice&email=alice%40example.com&team=&public_key={}",
            key.as_str().replace(' ', "+")
        )
    };
    let forged = browser.post("/register", &form("0".repeat(64).as_str()), Some(ORIGIN)).await;
    assert_eq!(forged.status, 403, "a wrong token: {}", forged.body);
    let missing = browser.post("/register", "username=alice", Some(ORIGIN)).await;
    assert_eq!(missing.status, 403);
    let elsewhere = browser.post("/register", &form(&token), Some("http://evil.test")).await;
    assert_eq!(elsewhere.status, 403, "another origin, even with the token");
    let null = browser.post("/register", &form(&token), Some("null")).await;
    assert_eq!(null.status, 403);
    let pending = api.get(&ROOT, "/api/v1/admin/registrations").await.json();
    assert_eq!(pending["items"].as_array().unwrap().len(), 0, "nothing refused was recorded: {pending}");
    let sent = browser.post("/register", &form(&token), Some(ORIGIN)).await;
    assert_eq!((sent.status, location(&sent)), (303, "/success?username=alice"), "{}", sent.body);
    let pending = api.get(&ROOT, "/api/v1/admin/registrations").await.json();
    assert_eq!(pending["items"][0]["username"], "alice");
}

#[tokio::test]
async fn a_sign_in_link_signs_in_once_and_not_after_five_minutes() {
    let api = Api::new().await;
    api.account("alice", 1, false, Some(61001)).await;
    let link = api.send(&Who::Uid(61001), "POST", "/api/v1/web/sign-in-link", None).await;
    assert_eq!(link.status, 201, "{}", link.body);
    assert_eq!(link.header("cache-control"), Some("no-store"));
    let url = link.json()["url"].as_str().unwrap().to_owned();
    let code = url.rsplit('/').next().unwrap().to_owned();
    assert!(code.starts_with("bsl_") && url.starts_with("http://127.0.0.1:8080/sign-in/"), "{url}");

    let mut browser = Browser::new(&api);
    let page = browser.get(&format!("/sign-in/{code}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("signs this browser in as <strong>alice</strong>"), "{}", page.body);
    let token = csrf(&page);
    // Opening the page does not use the link (previews and prefetches cannot).
    browser.get(&format!("/sign-in/{code}")).await;
    let signed_in = browser.post("/sign-in/link", &format!("csrf={token}&code={code}"), Some(ORIGIN)).await;
    assert_eq!((signed_in.status, location(&signed_in)), (303, "/dashboard"), "{}", signed_in.body);
    let cookie = signed_in.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("basphere_session=bss_")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
    );
    let dashboard = browser.get("/dashboard").await;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("Signed in as <strong>alice</strong>"));

    let mut other = Browser::new(&api);
    let token = csrf(&other.get("/sign-in").await);
    let again = other.post("/sign-in/link", &format!("csrf={token}&code={code}"), Some(ORIGIN)).await;
    assert_eq!(again.status, 401, "a link works once");
    assert!(again.body.contains("used already"), "{}", again.body);
    let opened = other.get(&format!("/sign-in/{code}")).await;
    assert_eq!(opened.status, 401, "a used link's page says so at once");

    let late = api.send(&Who::Uid(61001), "POST", "/api/v1/web/sign-in-link", None).await.json();
    let late = late["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    api.age_web_session(&late, 6);
    let expired = other.post("/sign-in/link", &format!("csrf={token}&code={late}"), Some(ORIGIN)).await;
    assert_eq!(expired.status, 401, "a link lives five minutes");
    let anonymous = api.send(&Who::Anonymous, "POST", "/api/v1/web/sign-in-link", None).await;
    assert_eq!(anonymous.status, 401, "a link is made for someone the server identified");
}

/// Signs `name` in with an API token and returns the browser.
async fn signed_in<'a>(api: &'a Api, token: &str) -> Browser<'a> {
    let mut browser = Browser::new(api);
    let csrf = csrf(&browser.get("/sign-in").await);
    let reply = browser.post("/sign-in", &format!("csrf={csrf}&token={token}"), Some(ORIGIN)).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    browser
}

#[tokio::test]
async fn a_developer_cannot_use_the_console_and_is_signed_out_by_suspension_or_idleness() {
    let api = Api::new().await;
    let token = api.account("alice", 1, false, None).await;
    let mut browser = signed_in(&api, &token).await;
    let dashboard = browser.get("/dashboard").await;
    assert_eq!(dashboard.status, 200);
    let csrf = csrf(&dashboard);
    for path in ["/admin", "/admin/users", "/admin/users/alice", "/admin/vms", "/admin/outbox", "/admin/audit"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 403, "{path}");
        assert!(page.body.contains("administrator"), "{path}: {}", page.body);
    }
    let suspend = browser.post("/admin/users/alice/suspend", &format!("csrf={csrf}"), Some(ORIGIN)).await;
    assert_eq!(suspend.status, 403, "her own valid form cannot reach an admin action");
    let me = api.get(&ROOT, "/api/v1/admin/users/alice").await.json();
    assert_eq!(me["status"], "active");

    // A bad token signs nobody in, and says so next to the field.
    let mut stranger = Browser::new(&api);
    let token_csrf = self::csrf(&stranger.get("/sign-in").await);
    let wrong = stranger.post("/sign-in", &format!("csrf={token_csrf}&token=bsp_nope"), Some(ORIGIN)).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("id=\"f-token-error\""), "{}", wrong.body);

    // Suspension ends the session at once, and resuming does not bring it back.
    assert_eq!(api.send(&ROOT, "POST", "/api/v1/admin/users/alice/suspend", None).await.status, 200);
    // A form from a page of the ended session says the session ended (and clears the cookie).
    let posted = browser.post("/sign-out", &format!("csrf={csrf}"), Some(ORIGIN)).await;
    assert_eq!((posted.status, location(&posted)), (303, "/sign-in?done=session-ended"));
    assert_eq!(api.send(&ROOT, "POST", "/api/v1/admin/users/alice/resume", None).await.status, 200);
    assert_eq!(browser.get("/dashboard").await.status, 303, "the cookie was cleared");

    // An hour without a request ends a session (web.session_idle_minutes).
    let mut idle = signed_in(&api, &token).await;
    assert_eq!(idle.get("/dashboard").await.status, 200);
    let secret = idle.cookies.iter().find(|(name, _)| name == "basphere_session").unwrap().1.clone();
    api.age_web_session(&secret, 61);
    assert_eq!(location(&idle.get("/dashboard").await), "/sign-in?done=session-ended");
}

#[tokio::test]
async fn a_session_signed_in_with_a_token_ends_with_the_token() {
    let api = Api::new().await;
    let other = api.account("alice", 1, false, None).await;
    let body = r#"{"name": "browser", "scope": "user"}"#;
    let created = api.send(&ROOT, "POST", "/api/v1/admin/users/alice/tokens", Some(body)).await.json();
    let (token, id) =
        (created["secret"].as_str().unwrap().to_owned(), created["token"]["id"].as_str().unwrap().to_owned());
    let mut browser = signed_in(&api, &token).await;
    let mut beside = signed_in(&api, &other).await;
    assert_eq!(browser.get("/dashboard").await.status, 200);
    assert_eq!(beside.get("/dashboard").await.status, 200);

    // Revoking the token ends the sessions made from it, and only those.
    let revoked = api.send(&Who::Bearer(other.clone()), "DELETE", &format!("/api/v1/tokens/{id}"), None).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(location(&browser.get("/dashboard").await), "/sign-in?done=session-ended");
    assert_eq!(beside.get("/dashboard").await.status, 200, "a session of another token goes on");
}

#[tokio::test]
async fn sessions_are_secure_cookies_behind_https() {
    let server =
        ServerSettings { public_url: Some("https://basphere.example.com".into()), ..ServerSettings::default() };
    let api = Api::with_server(Config::default(), server, None).await;
    let page = Browser::new(&api).get("/sign-in").await;
    assert!(page.header("set-cookie").unwrap().contains("Secure"));
    api.account("alice", 1, false, Some(61001)).await;
    let link = api.send(&Who::Uid(61001), "POST", "/api/v1/web/sign-in-link", None).await.json();
    assert!(link["url"].as_str().unwrap().starts_with("https://basphere.example.com/sign-in/bsl_"), "{link}");
}

#[tokio::test]
async fn what_users_type_is_shown_as_text() {
    let api = Api::new().await;
    let mut browser = Browser::new(&api);
    let token = csrf(&browser.get("/register").await);
    let inject = "%22%27%3E%3Cimg+src%3Dx+onerror%3Dalert(1)%3E%3Cscript%3Ealert(2)%3C%2Fscript%3E";
    let reply = browser
        .post(
            "/register",
            &format!("csrf={token}&username={inject}&email={inject}&team={inject}&public_key={inject}"),
            Some(ORIGIN),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(!reply.body.contains("<img") && !reply.body.contains("<script>alert"), "{}", reply.body);
    assert!(reply.body.contains("&lt;img src=x onerror=alert(1)&gt;"), "the team is kept, escaped: {}", reply.body);
    assert!(reply.body.contains("id=\"f-username-error\"") && reply.body.contains("id=\"f-public_key-error\""));
}

#[tokio::test]
async fn the_console_shows_what_each_request_asks_for() {
    let api = Api::new().await;
    api.account("alice", 1, true, None).await;
    let admin = api.token("alice", "admin").await;
    let key = basphere_core::testing::ssh_key(2);
    let body = serde_json::json!({"username": "bob", "email": "bob@example.com", "ssh_key": key.as_str()});
    assert_eq!(api.send(&Who::Anonymous, "POST", "/api/v1/register", Some(&body.to_string())).await.status, 202);
    let new_key = basphere_core::testing::ssh_key(3);
    let body = serde_json::json!({"username": "alice", "email": "alice@example.com", "new_public_key": new_key.as_str(), "reason": "rotation"});
    assert_eq!(api.send(&Who::Anonymous, "POST", "/api/v1/key-change", Some(&body.to_string())).await.status, 202);
    let mut browser = signed_in(&api, &admin).await;
    let page = browser.get("/admin").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for (name, key) in [("bob", &key), ("alice", &new_key)] {
        let fingerprint = key.fingerprint().replace('/', "&#x2f;");
        assert!(page.body.contains(&fingerprint), "{name}'s key {fingerprint} in:\n{}", page.body);
    }
    assert!(page.body.contains("rotation"));

    // Deciding from the console: several approved at once, one rejected with its reason.
    let csrf = csrf(&page);
    let none = browser.post("/admin/registrations/approve", &format!("csrf={csrf}"), Some(ORIGIN)).await;
    assert_eq!(none.status, 400, "nothing selected");
    let approved =
        browser.post("/admin/registrations/approve", &format!("csrf={csrf}&username=bob"), Some(ORIGIN)).await;
    assert_eq!(location(&approved), "/admin?done=approved");
    let rejected =
        browser.post("/admin/key-changes/alice/reject", &format!("csrf={csrf}&reason=not+you"), Some(ORIGIN)).await;
    assert_eq!(location(&rejected), "/admin?done=rejected");
    let unknown = browser.post("/admin/nothing/approve", &format!("csrf={csrf}&username=bob"), Some(ORIGIN)).await;
    assert_eq!(unknown.status, 404);
    let registrations = api.get(&ROOT, "/api/v1/admin/registrations?status=approved").await.json();
    assert_eq!(registrations["items"][0]["username"], "bob", "{registrations}");
    let key_changes = api.get(&ROOT, "/api/v1/admin/key-changes?status=rejected").await.json();
    assert_eq!(key_changes["items"][0]["reject_reason"], "not you", "{key_changes}");
}

#[tokio::test]
async fn the_dashboard_shows_the_developer_s_clusters_and_follows_them_while_they_come_up() {
    let api = Api::new().await;
    let token = api.account("alice", 1, false, None).await;
    let bob = api.account("bob", 2, false, None).await;
    let created = api
        .send(&Who::Bearer(token.clone()), "POST", "/api/v1/clusters", Some(r#"{"name":"kube","type":"dev"}"#))
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    api.wait_idle().await;
    let mut browser = signed_in(&api, &token).await;
    let live = browser.get("/dashboard/live").await;
    assert_eq!(live.status, 200);
    assert!(live.body.contains("id=\"cluster-kube\"") && live.body.contains("workers 0/2"), "{}", live.body);
    assert!(live.body.contains("data-busy=\"true\""), "a cluster coming up keeps the page following it");
    let dashboard = browser.get("/dashboard").await;
    assert!(dashboard.body.contains("Clusters"), "the quota shows clusters too");
    let mut other = signed_in(&api, &bob).await;
    let theirs = other.get("/dashboard/live").await;
    assert!(!theirs.body.contains("cluster-kube") && theirs.body.contains("You have no clusters"), "{}", theirs.body);
}

#[tokio::test]
async fn the_dashboard_shows_the_account_s_network_and_the_console_every_one() {
    let api = Api::tenant().await;
    let alice = api.account("alice", 1, false, None).await;
    let bob = api.account("bob", 2, false, None).await;
    api.account("ops", 3, true, None).await;
    let admin = api.token("ops", "admin").await;
    // Every account is given its network; bob's is taken away.
    api.drop_network("bob").await;

    let mut browser = signed_in(&api, &alice).await;
    let dashboard = browser.get("/dashboard").await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    let html = &dashboard.body;
    assert!(html.contains("id=\"network-h\""), "her network is shown: {html}");
    for shown in [
        "<td>lan1</td><td class=\"num\">2001</td><td>10.0.1.0&#x2f;24</td><td>10.0.1.1</td>",
        "<code>192.0.2.2/24</code>",
        "state-in-place",
    ] {
        assert!(html.contains(shown), "{shown} in:\n{html}");
    }
    let theirs = signed_in(&api, &bob).await.get("/dashboard").await;
    assert_eq!(theirs.status, 200);
    assert!(!theirs.body.contains("network-h") && !theirs.body.contains("192.0.2.2"), "bob has none: {}", theirs.body);
    assert_eq!(browser.get("/admin/networks").await.status, 403, "the console is for administrators");

    // The console lists every network; an unreachable router's reason reaches an administrator,
    // as text.
    let mut console = signed_in(&api, &admin).await;
    let page = console.get("/admin/networks").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for shown in
        ["href=\"/admin/users/alice\"", "href=\"/admin/users/ops\"", "2001 (lan1), 2002 (lan2)", "192.0.2.4/24"]
    {
        assert!(page.body.contains(shown), "{shown} in:\n{}", page.body);
    }
    assert!(!page.body.contains("networks.mode: flat"), "tenant networks are on");
    let refused = console.get("/admin/networks?state=melted").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    api.router.set_unreachable(Some("<script>alert(1)</script>"));
    let own = console.get("/dashboard").await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert!(own.body.contains("state-unreachable") && own.body.contains("&lt;script&gt;alert(1)"), "{}", own.body);
    assert!(!own.body.contains("<script>alert"), "{}", own.body);
    let hers = browser.get("/dashboard").await.body;
    assert!(hers.contains(basphere_server::networks::UNREACHABLE_FOR_USERS) && !hers.contains("alert(1)"), "{hers}");
}

#[tokio::test]
async fn with_tenant_networks_off_the_dashboard_shows_no_network_and_the_console_says_why() {
    let api = Api::new().await;
    let alice = api.account("alice", 1, false, None).await;
    api.account("ops", 3, true, None).await;
    let admin = api.token("ops", "admin").await;
    let dashboard = signed_in(&api, &alice).await.get("/dashboard").await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    assert!(!dashboard.body.contains("network-h"), "{}", dashboard.body);
    let page = signed_in(&api, &admin).await.get("/admin/networks").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<code>networks.mode: flat</code>") && page.body.contains("No tenant networks."));
}
