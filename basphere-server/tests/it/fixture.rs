//! An in-process server and the callers the tests act as.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use basphere_capi::fake::{FakeManagementCluster, Running};
use basphere_capi::{CapiConfig, VsphereSite};
use basphere_core::cluster_provisioner::ClusterProvisioner;
use basphere_core::mock::{MockProvisioner, RecordingNotifier, RecordingRouter};
use basphere_core::router::{RouterStatus, TenantRouter, TenantRouterSpec};
use basphere_core::validate::Username;
use basphere_core::{Config, MemoryStore, Platform, Store};
use basphere_ipam::BlockIpam;
use basphere_server::auth::Transport;
use basphere_server::config::ServerSettings;
use basphere_server::AppState;
use serde_json::Value;
use tower::ServiceExt;

/// Who a request comes from, as a listener would tell the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// A TCP connection with no `Authorization` header.
    Anonymous,
    /// A TCP connection with this bearer token.
    Bearer(String),
    /// A Unix socket connection from this uid (0 is root).
    Uid(u32),
    /// A request that came through no listener at all (no transport): nothing may trust it.
    Nowhere,
    /// A TCP connection from this address, with no `Authorization` header.
    From(SocketAddr),
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The short kind of a problem document (`quota-exceeded`).
    pub fn problem(&self) -> String {
        self.json()["type"].as_str().unwrap_or("").trim_start_matches("urn:basphere:problem:").to_owned()
    }
}

/// The application of one server, on a fresh memory store with the default configuration, a
/// simulated vSphere without delays and a simulated management cluster whose clusters come up in
/// a few tens of milliseconds (basphere-capi's, reached over loopback as the server reaches it).
pub struct Api {
    app: Router,
    store: Arc<MemoryStore>,
    /// The tenant networks' router (`Api::tenant`); not the platform's in flat mode.
    pub router: Arc<TestRouter>,
    /// The management cluster's server and controller, and the directory of its kubeconfig.
    _clusters: (Running, tempfile::TempDir),
}

/// Tenant mode, with the routers' WAN on 192.0.2.0/24 and two LANs per tenant (the defaults), and
/// public submissions open without a bot check, as in the embedded defaults.
const TENANT: &str = "recaptcha: {enabled: false}\nnetworks: {mode: tenant, vlan_range: \"2001-2999\", distributed_switch: dvs-tenants, \
                      wan_port_group: pg-wan, wan: {cidr: 192.0.2.0/24, gateway: 192.0.2.1}}\n";

/// Public submissions are limited per address and per email; the matrix sends many.
fn generous() -> basphere_core::config::RegistrationLimits {
    basphere_core::config::RegistrationLimits {
        per_address_per_hour: 10_000,
        per_email_per_day: 10_000,
        per_day: 100_000,
        ..basphere_core::config::RegistrationLimits::DEFAULT
    }
}

/// Core's `RecordingRouter`, whose status can also be made to fail, as a router host that does
/// not answer.
#[derive(Default)]
pub struct TestRouter {
    pub recording: RecordingRouter,
    unreachable: std::sync::Mutex<Option<String>>,
}

impl TestRouter {
    /// Makes every later `status` fail with `reason` (or, with `None`, answer again).
    pub fn set_unreachable(&self, reason: Option<&str>) {
        *self.unreachable.lock().expect("not poisoned") = reason.map(str::to_owned);
    }
}

#[async_trait::async_trait]
impl TenantRouter for TestRouter {
    fn backend_name(&self) -> &'static str {
        self.recording.backend_name()
    }

    async fn ensure(&self, spec: &TenantRouterSpec) -> basphere_core::Result<RouterStatus> {
        self.recording.ensure(spec).await
    }

    async fn status(&self, tenant: &Username) -> basphere_core::Result<Option<RouterStatus>> {
        let unreachable = self.unreachable.lock().expect("not poisoned").clone();
        match unreachable {
            Some(reason) => Err(basphere_core::Error::backend("recording", format!("{reason} ({tenant})"))),
            None => self.recording.status(tenant).await,
        }
    }

    async fn remove(&self, tenant: &Username) -> basphere_core::Result<()> {
        self.recording.remove(tenant).await
    }
}

/// root on the socket: the system administrator.
pub const ROOT: Who = Who::Uid(0);
/// The uid the server runs as in these tests; its socket callers are administrators too.
pub const SERVER_UID: u32 = 999;

impl Api {
    pub async fn new() -> Api {
        Api::with(Config { registration: generous(), ..Config::default() }, None).await
    }

    /// The application in tenant mode (`networks.mode: tenant`, VLAN ids from 2001, WAN
    /// 192.0.2.0/24), its routers made by a [`TestRouter`].
    pub async fn tenant() -> Api {
        let config = Config::from_yaml(TENANT).expect("the tenant configuration is valid");
        Api::with(Config { registration: generous(), ..config }, None).await
    }

    /// The application on `config`, with the bot check `human` when given.
    pub async fn with(config: Config, human: Option<Arc<dyn basphere_core::human::HumanCheck>>) -> Api {
        Api::with_server(config, ServerSettings::default(), human).await
    }

    /// The application on `config` and the server's own settings `server`, with the bot check
    /// `human` when given.
    pub async fn with_server(
        config: Config,
        server: ServerSettings,
        human: Option<Arc<dyn basphere_core::human::HumanCheck>>,
    ) -> Api {
        let store = Arc::new(MemoryStore::new());
        let settings =
            CapiConfig::from_config(&config, &VsphereSite::default()).expect("the cluster backend's settings");
        let fake = FakeManagementCluster::new(Duration::from_millis(10));
        fake.install_identity(&settings.layout.identity);
        let (address, running) = fake.serve("127.0.0.1:0".parse().expect("an address")).await.expect("listening");
        let dir = tempfile::tempdir().expect("a directory");
        let clusters = fake
            .connect(address, &dir.path().join("kubeconfig"), settings.layout, settings.choice)
            .await
            .expect("a client of the management cluster");
        // As the server does at its start: the preflight starts the watches that follow clusters.
        clusters.preflight().await.expect("the management cluster's preflight");
        let config = Arc::new(config);
        let ipam = Arc::new(BlockIpam::new(config.pools.clone()).expect("the default pools are valid"));
        let shared: Arc<dyn Store> = store.clone();
        let router = Arc::new(TestRouter::default());
        let tenant = matches!(config.networks, basphere_core::config::NetworksConfig::Tenant(_));
        let mut builder = Platform::builder(
            config,
            shared,
            ipam,
            Arc::new(MockProvisioner::with_default_catalog()),
            Arc::new(RecordingNotifier::new()),
        )
        .clusters(Arc::new(clusters));
        // In flat mode the platform keeps its own `NoRouter`, as the server's does.
        if tenant {
            builder = builder.router(router.clone());
        }
        if let Some(human) = human {
            builder = builder.human_check(human);
        }
        Api {
            app: basphere_server::app(AppState::new(builder.build(), server, SERVER_UID)),
            store,
            router,
            _clusters: (running, dir),
        }
    }

    /// One request; `headers` are sent as given (no content type is added).
    pub async fn call(&self, who: &Who, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let peer: SocketAddr = "192.0.2.7:40000".parse().expect("address");
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request = match who {
            Who::Anonymous => request.extension(Transport::Tcp { peer }),
            Who::Bearer(secret) => {
                request.header("authorization", format!("Bearer {secret}")).extension(Transport::Tcp { peer })
            }
            Who::Uid(uid) => request.extension(Transport::Unix { uid: *uid, pid: Some(4242) }),
            Who::Nowhere => request,
            Who::From(peer) => request.extension(Transport::Tcp { peer: *peer }),
        };
        let request = request.body(Body::from(body.to_vec())).expect("a valid request");
        let response = self.app.clone().oneshot(request).await.expect("the router never fails");
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("a body");
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// A request with an optional JSON body.
    pub async fn send(&self, who: &Who, method: &str, path: &str, body: Option<&str>) -> Reply {
        match body {
            Some(body) => self.call(who, method, path, &[("content-type", "application/json")], body.as_bytes()).await,
            None => self.call(who, method, path, &[], b"").await,
        }
    }

    pub async fn get(&self, who: &Who, path: &str) -> Reply {
        self.send(who, "GET", path, None).await
    }

    /// Creates an account as root (with a bastion uid when given) and returns a user token.
    pub async fn account(&self, name: &str, seed: u64, admin: bool, uid: Option<u32>) -> String {
        let key = basphere_core::testing::ssh_key(seed);
        let body = serde_json::json!({
            "username": name, "email": format!("{name}@example.com"), "ssh_key": key.as_str(), "admin": admin, "uid": uid,
        });
        let created = self.send(&ROOT, "POST", "/api/v1/admin/users", Some(&body.to_string())).await;
        assert_eq!(created.status, 201, "{}", created.body);
        // In tenant mode the account's network is being made: its VMs and clusters wait for it.
        self.wait_idle().await;
        self.token(name, "user").await
    }

    /// Deletes `owner`'s network (in tenant mode every account is given one when it is made),
    /// waiting for the operations on either side.
    pub async fn drop_network(&self, owner: &str) {
        self.wait_idle().await;
        let deleted = self.send(&ROOT, "DELETE", &format!("/api/v1/admin/users/{owner}/network"), None).await;
        assert_eq!(deleted.status, 202, "{}", deleted.body);
        self.wait_idle().await;
    }

    /// A token of `scope` for `name`, made by root.
    pub async fn token(&self, name: &str, scope: &str) -> String {
        let body = serde_json::json!({"name": format!("{scope}-token"), "scope": scope}).to_string();
        let token = self.send(&ROOT, "POST", &format!("/api/v1/admin/users/{name}/tokens"), Some(&body)).await;
        assert_eq!(token.status, 201, "{}", token.body);
        token.json()["secret"].as_str().expect("a secret").to_owned()
    }

    /// Waits until no operation is queued or running (the simulated vSphere has no delays).
    pub async fn wait_idle(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let operations = self.get(&ROOT, "/api/v1/admin/operations?limit=1000").await.json();
            let busy = operations["items"]
                .as_array()
                .expect("a page of operations")
                .iter()
                .any(|op| op["state"] == "queued" || op["state"] == "running");
            if !busy {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "operations still running: {operations}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Makes a token expired. The API only makes tokens that expire in the future, so this is
    /// the one place the tests reach past HTTP, into the store.
    pub fn expire(&self, secret: &str) {
        use basphere_core::StoreExt;
        let hash = basphere_core::model::ApiToken::hash_secret(secret);
        self.store
            .transact(|tx| {
                let mut token = tx.token_by_hash(&hash)?.expect("the token exists");
                token.expires_at = Some(basphere_core::model::now() - chrono::Duration::seconds(1));
                tx.update_token(&token)
            })
            .expect("expiring the token");
    }

    /// Moves a browser session's or sign-in link's clock back by `minutes` (its creation, last
    /// activity and absolute expiry), as time passing would.
    pub fn age_web_session(&self, secret: &str, minutes: i64) {
        use basphere_core::StoreExt;
        let hash = basphere_core::model::ApiToken::hash_secret(secret);
        let back = chrono::Duration::minutes(minutes);
        self.store
            .transact(|tx| {
                let mut session = tx.web_session_by_hash(&hash)?.expect("the session exists");
                session.created_at -= back;
                session.last_seen_at -= back;
                session.expires_at -= back;
                tx.update_web_session(&session)
            })
            .expect("ageing the session");
    }
}
