//! `basphere-server`: the HTTP API over two listeners (a Unix socket whose callers the kernel
//! identifies, and TCP with bearer tokens), with operations run by background workers.
//!
//! `run` is the composition root: it reads the configuration (or embedded defaults), raises the
//! open-file limit, lays out the data directory and the socket so that every local user can reach
//! the socket while the files stay private, opens the store, builds the IPAM, the VM backend and
//! the notifier, resumes interrupted operations, serves until SIGTERM or SIGINT (`listener`), and
//! then drains running operations.

pub mod api;
pub mod auth;
pub mod captcha;
pub mod clusters;
pub mod config;
pub mod extract;
pub mod import;
pub mod listener;
pub mod memory;
pub mod metrics;
pub mod networks;
pub mod problem;
pub mod requests;
pub mod respond;
pub mod routes;
pub mod service;
pub mod stores;
pub mod tls;
pub mod web;
pub mod wire;

/// The OpenAPI document under the name it has always had (`openapi::ApiDoc`).
pub use routes as openapi;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::{middleware, Router};
use basphere_core::{Config, Ipam, Platform, StoreExt};
use basphere_ipam::BlockIpam;
use basphere_vsphere::config::{BackendConfig, VmBackendKind};
use tokio::net::{TcpListener, UnixListener};
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::{ServerSettings, Settings};
use crate::listener::Limits;
use crate::metrics::Metrics;
use crate::problem::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub platform: Arc<Platform>,
    pub metrics: Arc<Metrics>,
    /// The server's own uid: a socket caller with this uid (or root) is an administrator.
    pub server_uid: u32,
    /// The web pages' templates.
    pub pages: Arc<web::Pages>,
    /// Where browsers reach the server (`server.public_url`, else the TCP listener's address),
    /// for the links `basphere web` prints.
    pub public_url: String,
    /// The server's own settings (`server.*`): trusted proxies, the public address.
    pub server: Arc<ServerSettings>,
}

impl AppState {
    /// The state of a server with the settings `server`, run by `server_uid` (the uid whose
    /// socket callers are administrators, besides root).
    pub fn new(platform: Arc<Platform>, server: ServerSettings, server_uid: u32) -> Self {
        let public_url =
            server.public_url.clone().unwrap_or_else(|| format!("http://{}:{}", browsable(&server.host), server.port));
        AppState {
            platform,
            metrics: Arc::new(Metrics::new()),
            server_uid,
            pages: Arc::new(web::Pages::new()),
            public_url,
            server: Arc::new(server),
        }
    }
}

/// A host a browser can open: a wildcard listen address becomes the loopback address.
fn browsable(host: &str) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(address) if address.is_unspecified() && address.is_ipv4() => "127.0.0.1".to_owned(),
        Ok(address) if address.is_unspecified() => "[::1]".to_owned(),
        Ok(std::net::IpAddr::V6(address)) => format!("[{address}]"),
        _ => host.to_owned(),
    }
}

/// Command-line overrides of the configuration file.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// `host:port` for the TCP listener (`127.0.0.1:0` picks a free port).
    pub listen: Option<String>,
    pub socket: Option<PathBuf>,
}

/// Reads the configuration file, or the embedded defaults when there is none: the platform's
/// configuration and the server's own settings, each section checked by its owner.
pub fn load_config(path: Option<&Path>) -> Result<Settings> {
    Settings::load(path)
}

/// Where the bastion helper listens unless `bastion.helper_socket` says otherwise.
pub const DEFAULT_HELPER_SOCKET: &str = "/run/basphere-helper/helper.sock";

/// Runs the bastion helper (as root): serves the logins of `bastion.*` to `allow_user` alone on
/// `bastion.helper_socket`, until stopped.
pub async fn bastion_helper(config: &Config, allow_user: &str) -> Result<()> {
    use basphere_core::config::BastionLogins;
    let helper_socket = match &config.bastion.logins {
        BastionLogins::Unix { helper_socket, .. } => helper_socket.clone(),
        BastionLogins::None => None,
    };
    let socket = helper_socket.unwrap_or_else(|| PathBuf::from(DEFAULT_HELPER_SOCKET));
    let bastion = basphere_bastion::unix_from_config(&config.bastion.logins).context("bastion-helper")?;
    let account = nix::unistd::User::from_name(allow_user)
        .with_context(|| format!("bastion-helper: looking up the account {allow_user}"))?
        .with_context(|| format!("bastion-helper --allow-user: there is no account {allow_user}"))?;
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("bastion-helper: making {}", dir.display()))?;
    }
    let listener = basphere_bastion::helper::bind(&socket, account.uid.as_raw())
        .with_context(|| format!("bastion.helper_socket: cannot listen on {}", socket.display()))?;
    tracing::info!(socket = %socket.display(), allow_user, "bastion helper ready");
    tokio::select! {
        served = basphere_bastion::helper::serve(listener, Arc::new(bastion), account.uid.as_raw()) => {
            served.context("bastion-helper: the socket failed")
        }
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => { term.recv().await; }
                Err(_) => std::future::pending::<()>().await,
            }
        } => Ok(()),
    }
}

/// Builds the HTTP application (shared by both listeners).
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(routes::router(state.clone()))
        .merge(web::routes(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(30)))
        .layer(middleware::map_response(problem::bodiless_errors_as_problems))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; the API is described at /api/v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this route does not accept that method; see /api/v1/openapi.json",
    )
}

/// Creates the data directory, private to the server's account: 0700, or 0711 when the socket
/// lives in it (others may pass through to the socket but not list the directory). Group and
/// other permissions are taken from everything else in it, in case an older version or another
/// umask left something readable: with the directory passable, only file modes protect it.
fn prepare_data_dir(dir: &Path, socket: &Path) -> Result<()> {
    create_dirs(dir)?;
    let inside = |dir: &Path| std::path::absolute(socket).is_ok_and(|socket| socket.starts_with(dir));
    let mode = if std::path::absolute(dir).is_ok_and(|dir| inside(&dir)) { 0o711 } else { 0o700 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of the data directory {}", dir.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let metadata = entry.metadata()?;
        let kind = metadata.file_type();
        if metadata.mode() & 0o077 == 0 || kind.is_socket() || kind.is_symlink() {
            continue;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(metadata.mode() & 0o7700))
            .with_context(|| format!("restricting {} to its owner", path.display()))?;
        tracing::warn!(path = %path.display(), "was readable by others; restricted to the server's account");
    }
    Ok(())
}

/// Creates `dir` and its missing parents. The directories made here are 0711: with the
/// server's umask of 077 they would be 0700, and a socket inside them would be out of reach of
/// every other user.
fn create_dirs(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at {
        if path.as_os_str().is_empty() || path.exists() {
            break;
        }
        missing.push(path);
        at = path.parent();
    }
    for path in missing.into_iter().rev() {
        match std::fs::create_dir(path) {
            Ok(()) => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711))
                .with_context(|| format!("setting the mode of {}", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error).with_context(|| format!("creating {}", path.display())),
        }
    }
    Ok(())
}

/// Directories on the way to the socket that other users cannot pass through, with their modes.
/// The server does not change directories it did not create; it says which ones are in the way.
fn unreachable_by_others(socket: &Path) -> Vec<(PathBuf, u32)> {
    let Ok(absolute) = std::path::absolute(socket) else {
        return Vec::new();
    };
    absolute
        .ancestors()
        .skip(1)
        .filter_map(|dir| std::fs::metadata(dir).ok().map(|metadata| (dir.to_path_buf(), metadata.mode() & 0o7777)))
        .filter(|(_, mode)| mode & 0o001 == 0)
        .collect()
}

/// Connections the kernel completes and queues while the listener is at its cap (or busy).
/// std's 128 would make clients beyond it retry their SYNs for seconds to minutes; the kernel
/// bounds this by `net.core.somaxconn`.
const TCP_BACKLOG: u32 = 1024;

/// Listens on `host:port`: the first of its addresses that can be bound.
async fn bind_tcp(listen: &str) -> Result<TcpListener> {
    let mut last = None;
    for address in tokio::net::lookup_host(listen).await.with_context(|| format!("resolving {listen}"))? {
        let socket =
            if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        // As std does: a restarted server binds its port while old connections linger.
        socket.set_reuseaddr(true)?;
        match socket.bind(address).and_then(|()| socket.listen(TCP_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(error) => last = Some(error),
        }
    }
    match last {
        Some(error) => Err(error).with_context(|| format!("listening on {listen}")),
        None => bail!("listening on {listen}: the name has no address"),
    }
}

fn bind_socket(path: &Path) -> Result<UnixListener> {
    if let Some(parent) = path.parent() {
        create_dirs(parent)?;
    }
    if path.exists() {
        // A socket left by a server that is gone; a live one refuses to be replaced.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another server is listening on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding the socket {}", path.display()))?;
    // Anyone may connect: the kernel tells the server who they are.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    for (dir, mode) in unreachable_by_others(path) {
        if mode & 0o010 != 0 {
            // The packaged layout: /run/basphere admits the bastion logins' group only.
            let group = std::fs::metadata(&dir)
                .ok()
                .and_then(|m| nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid())).ok().flatten())
                .map_or_else(|| "its group".to_owned(), |g| g.name);
            tracing::info!(
                directory = %dir.display(),
                mode = format!("{mode:04o}"),
                "only the server and members of {group} can reach the socket through this directory"
            );
            continue;
        }
        tracing::warn!(
            directory = %dir.display(),
            mode = format!("{mode:04o}"),
            "users other than the server's cannot reach the socket through this directory; \
             give it o+x (chmod o+x), or put the socket elsewhere (--socket, server.socket)"
        );
    }
    Ok(listener)
}

/// Raises the soft limit on open files to the hard limit, so that connections are bounded by the
/// server's own caps rather than by a default soft limit of 1024; returns the limit in force.
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit; assuming 1024");
            return 1024;
        }
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(error) => {
            tracing::warn!(%error, soft, hard, "cannot raise the open-file limit; keeping the soft limit");
            soft
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// The instance name when `work.instance` is not set: the host and the data directory, which
/// one running server owns.
fn default_instance(data_dir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{host}:{}", dir.display())
}

/// What the cluster backend takes from the VM backend's sections (`backend.vm` and the `vsphere`
/// placement keys), which basphere-vsphere parsed and checked: the cluster backend depends on no
/// other backend, so the composition hands it the values.
pub fn vsphere_site(backend: &BackendConfig) -> basphere_capi::VsphereSite {
    let placement = backend.placement.clone();
    basphere_capi::VsphereSite {
        simulated_vms: backend.vm == VmBackendKind::Simulated,
        server: placement.server,
        datacenter: placement.datacenter,
        cluster: placement.cluster,
        datastore: placement.datastore,
        resource_pool: placement.resource_pool,
        network: placement.network,
    }
}

/// `check-config`: reads the configuration and asks every part it names whether it is ready,
/// changing nothing: the store, the VM backend and its credentials, the cluster backend, the
/// notifiers' secrets, the bastion logins and the bot check. Prints one line per part and says
/// what to fix; whether everything passed.
/// The tenant router `networks.*` asks for: none in flat mode; in tenant mode the `linux`
/// router its section (`networks.linux`) describes, on this host or a router host over SSH,
/// checked now so a wrong setting stops the start with the key named.
fn tenant_router(config: &Config) -> Result<Option<Arc<dyn basphere_core::router::TenantRouter>>> {
    match &config.networks {
        basphere_core::config::NetworksConfig::Flat => Ok(None),
        basphere_core::config::NetworksConfig::Tenant(tenant) => {
            Ok(Some(basphere_router::router(&tenant.router_section)?))
        }
    }
}

/// `check-config`'s line on the networks: flat, or what tenant mode makes and whether its
/// router can make routers (asked, changing nothing).
async fn check_networks(config: &Config) -> Result<String> {
    match &config.networks {
        basphere_core::config::NetworksConfig::Flat => Ok("flat: one shared network".to_owned()),
        basphere_core::config::NetworksConfig::Tenant(tenant) => {
            tenant_router(config)?;
            let router = basphere_router::check(&tenant.router_section).await?;
            Ok(format!(
                "tenant: VLANs {}-{}, port groups on {}, {router}",
                tenant.vlans.start(),
                tenant.vlans.end(),
                tenant.distributed_switch,
            ))
        }
    }
}

pub async fn check_config(options: &Options) -> Result<bool> {
    let Settings { config, server } = match load_config(options.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            println!("FAIL configuration: {error:#}");
            return Ok(false);
        }
    };
    println!(
        "ok   configuration {}",
        options.config.as_deref().map_or("(embedded defaults)".into(), |p| p.display().to_string())
    );
    let data_dir = options.data_dir.clone().unwrap_or_else(|| server.data_dir.clone());
    // The simulated backends keep their inventory in the data directory: look at a scratch one.
    let scratch = tempfile::tempdir()?;
    let backend_dir = if data_dir.exists() { data_dir.clone() } else { scratch.path().to_path_buf() };
    let mut passed = true;
    let mut report = |part: &str, outcome: Result<String>| match outcome {
        Ok(detail) => println!("ok   {part}: {detail}"),
        Err(error) => {
            passed = false;
            println!("FAIL {part}: {error:#}");
        }
    };
    let store_settings = config.store.clone();
    let store_dir = data_dir.clone();
    report("store", tokio::task::spawn_blocking(move || stores::check(&store_settings, &store_dir)).await?);
    report(
        "network",
        BlockIpam::new(config.pools.clone()).map(|_| format!("{} pool(s)", config.pools.len())).map_err(Into::into),
    );
    report("networks", check_networks(&config).await);
    // The VM backend's sections, parsed once by their owner; the cluster backend gets its part.
    let backend = BackendConfig::from_config(&config);
    let site = backend.as_ref().map(vsphere_site).map_err(ToString::to_string);
    match backend.and_then(|backend| basphere_vsphere::open_vm_backend(backend, &config, &backend_dir)) {
        Ok(provisioner) => {
            let name = provisioner.backend_name();
            let checked = tokio::time::timeout(Duration::from_secs(30), provisioner.preflight()).await;
            report(
                "vm backend",
                match checked {
                    Ok(Ok(())) => Ok(format!("{name}: ready")),
                    Ok(Err(error)) => Err(anyhow::anyhow!("{name}: {error}")),
                    Err(_) => Err(anyhow::anyhow!("{name}: no answer within 30 s")),
                },
            );
        }
        Err(error) => report("vm backend", Err(error.into())),
    }
    let clusters = match &site {
        Ok(site) => basphere_capi::cluster_backend(&config, site, &backend_dir).await.map_err(anyhow::Error::from),
        Err(error) => Err(anyhow::anyhow!("the vSphere placement it shares with the VM backend is not valid: {error}")),
    };
    match clusters {
        Ok(clusters) => {
            let name = match (&clusters.simulated, clusters.provisioner.backend_name()) {
                (Some(_), _) => "simulated management cluster",
                (None, "none") => "none (clusters are off: management_cluster.backend)",
                (None, name) => name,
            };
            let checked = tokio::time::timeout(Duration::from_secs(30), clusters.provisioner.preflight()).await;
            report(
                "cluster backend",
                match checked {
                    Ok(Ok(())) => Ok(format!("{name}: ready")),
                    Ok(Err(error)) => Err(anyhow::anyhow!("{name}: {error}")),
                    Err(_) => Err(anyhow::anyhow!("{name}: no answer within 30 s")),
                },
            );
        }
        Err(error) => report("cluster backend", Err(error)),
    }
    report(
        "notifications",
        basphere_notify::from_config(&config)
            .map(|notifier| notifier.channels().join(", "))
            .map(|channels| if channels.is_empty() { "the log only".to_owned() } else { channels })
            .map_err(Into::into),
    );
    let bastion = match &config.bastion.logins {
        basphere_core::config::BastionLogins::Unix { helper_socket: Some(socket), .. } => {
            match basphere_bastion::helper::HelperBastion::new(socket).ping().await {
                Ok(()) => Ok(format!("made by the bastion helper at {}: answering", socket.display())),
                Err(error) => Err(anyhow::Error::from(error)),
            }
        }
        logins => {
            basphere_bastion::from_config(logins).map(|bastion| bastion.backend_name().to_owned()).map_err(Into::into)
        }
    };
    report("bastion logins", bastion);
    report(
        "recaptcha",
        match &config.recaptcha {
            basphere_core::config::RecaptchaConfig::On(settings) => {
                captcha::Recaptcha::from_settings(settings).map(|_| "on".to_owned())
            }
            basphere_core::config::RecaptchaConfig::Off => Ok("off".to_owned()),
            basphere_core::config::RecaptchaConfig::Undecided => Err(anyhow::anyhow!(
                "recaptcha.enabled is not set: public registration stays closed until it is true (with site_key and secret_file) or false"
            )),
        },
    );
    Ok(passed)
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(options: Options) -> Result<()> {
    let started = std::time::Instant::now();
    let Settings { config, server } = load_config(options.config.as_deref())?;
    let router = tenant_router(&config)?;
    let config = Arc::new(config);
    let open_files = raise_open_file_limit();
    let connections = &server.connections;
    let tcp_limits = Limits {
        max_connections: connections.tcp_limit(open_files)?,
        header_read_timeout: Duration::from_secs(connections.header_read_timeout_seconds),
        idle_timeout: Duration::from_secs(connections.idle_timeout_seconds),
    };
    let socket_limits = Limits { max_connections: connections.max_socket, ..tcp_limits };
    let data_dir = options.data_dir.clone().unwrap_or_else(|| server.data_dir.clone());
    let socket =
        options.socket.clone().or_else(|| server.socket.clone()).unwrap_or_else(|| data_dir.join("basphere.sock"));
    prepare_data_dir(&data_dir, &socket)?;
    let listen = options.listen.clone().unwrap_or_else(|| format!("{}:{}", server.host, server.port));

    // HTTPS: the certificate and key are read now, so a wrong file stops the start.
    let tls = match &server.tls {
        Some(files) => Some(Arc::new(tls::ServerTls::load(&files.cert_file, &files.key_file)?)),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let store = stores::open(&config.store, &data_dir)?;
    tracing::info!(store = store.backend_name(), "store open");
    let ipam: Arc<dyn Ipam> = Arc::new(BlockIpam::new(config.pools.clone())?);
    store
        .query(|tx| ipam.check_allocations(tx))
        .context("the network configuration conflicts with addresses already handed out")?;
    // The VM backend on a thread of its own (the simulated one reads its inventory's journal)
    // while the cluster backend connects: the two are a start's longest steps.
    // The VM backend's sections, parsed once by their owner; the cluster backend gets its part.
    let backend = BackendConfig::from_config(&config)?;
    let site = vsphere_site(&backend);
    let vm_backend = {
        let (config, data_dir) = (config.clone(), data_dir.clone());
        tokio::task::spawn_blocking(move || basphere_vsphere::open_vm_backend(backend, &config, &data_dir))
    };
    // Kubernetes clusters: Cluster API through a management cluster (a simulated one inside this
    // process when the VMs are simulated too).
    let clusters = basphere_capi::cluster_backend(&config, &site, &data_dir).await;
    let provisioner = vm_backend.await.context("opening the VM backend")??;
    let clusters = clusters?;
    // Said at start so a wrong setting shows in the log at once; /readyz keeps reporting it.
    let preflight = provisioner.clone();
    tokio::spawn(async move {
        if let Err(error) = preflight.preflight().await {
            tracing::warn!(backend = preflight.backend_name(), %error, "the VM backend is not ready");
        }
    });
    let cluster_preflight = clusters.provisioner.clone();
    tokio::spawn(async move {
        if let Err(error) = cluster_preflight.preflight().await {
            tracing::warn!(backend = cluster_preflight.backend_name(), %error, "the cluster backend is not ready");
        }
    });
    // This server among replicas sharing the database: a restart takes back its own
    // interrupted operations at once; another replica's wait for their claims to expire.
    let instance = config.work.instance.clone().unwrap_or_else(|| default_instance(&data_dir));
    // The log, plus the webhook and email notifiers the configuration names.
    let notifier = basphere_notify::from_config(&config)?;
    let mut builder = Platform::builder(config.clone(), store, ipam, provisioner, notifier)
        .instance(instance)
        .on_thread_idle(memory::collect_idle_thread)
        .clusters(clusters.provisioner.clone())
        .bastion(
            basphere_bastion::from_config(&config.bastion.logins)
                .context("bastion.logins: the bastion logins cannot be made")?,
        );
    if let Some(router) = router {
        builder = builder.router(router);
    }
    match &config.recaptcha {
        basphere_core::config::RecaptchaConfig::On(settings) => {
            builder = builder.human_check(Arc::new(captcha::Recaptcha::from_settings(settings)?));
        }
        basphere_core::config::RecaptchaConfig::Undecided => tracing::warn!(
            "public registration is closed until recaptcha.enabled is set (true with site_key and secret_file, or false)"
        ),
        basphere_core::config::RecaptchaConfig::Off => {}
    }
    let platform = builder.build();
    let resumed = platform.runtime().resume_unfinished().await?;
    if !resumed.is_empty() {
        tracing::info!(count = resumed.len(), "resuming interrupted operations");
    }
    let background = platform.start_background();
    let _give_back = memory::give_back_free_memory(Duration::from_secs(10));

    let tcp = bind_tcp(&listen).await?;
    let tcp_address = tcp.local_addr()?;
    let grace = Duration::from_secs(server.shutdown_grace_seconds);
    let browsed_at_listener = server.public_url.is_none();
    let mut state = AppState::new(platform.clone(), server, nix::unistd::geteuid().as_raw());
    if browsed_at_listener {
        state.public_url = format!("{scheme}://{}:{}", browsable(&tcp_address.ip().to_string()), tcp_address.port());
    }
    let app = app(state);

    let unix = bind_socket(&socket)?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let unix_app = app.clone().layer(middleware::from_fn(auth::unix_transport));
    let tcp_app = app.layer(middleware::from_fn(auth::tcp_transport));
    // Each listener has its own tasks and cap: a flood of TCP connections leaves the socket served.
    let unix_server = tokio::spawn(listener::serve(unix, unix_app, socket_limits, stop_rx.clone()));
    let tcp_server = match &tls {
        Some(tls) => {
            let tls = tls.clone();
            tokio::spawn(async move {
                let mut hangup =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("SIGHUP handler");
                let reloading = tls.clone();
                let reloads = async move {
                    while hangup.recv().await.is_some() {
                        match reloading.reload() {
                            Ok(()) => tracing::info!("SIGHUP: the TLS certificate and key were read again"),
                            Err(error) => {
                                tracing::error!(
                                    error = format!("{error:#}"),
                                    "SIGHUP: the TLS files could not be read; the previous certificate stays"
                                )
                            }
                        }
                    }
                };
                tokio::select! {
                    () = listener::serve(tls::TlsListener { tcp, tls }, tcp_app, tcp_limits, stop_rx) => {},
                    () = reloads => {},
                }
            })
        }
        None => tokio::spawn(listener::serve(tcp, tcp_app, tcp_limits, stop_rx)),
    };
    tracing::info!(
        open_files,
        tcp_connections = tcp_limits.max_connections,
        socket_connections = socket_limits.max_connections,
        "connection limits"
    );

    let uid = nix::unistd::geteuid().as_raw();
    println!(
        "basphere-server ready in {} ms: {scheme}://{tcp_address} and unix:{}",
        started.elapsed().as_millis(),
        socket.display()
    );
    eprintln!(
        "basphere-server: data in {}, VM backend {}, cluster backend {}, {} interrupted operation(s) resumed.\n\
         basphere-server: the first admin credential is your login: as root or uid {uid}, `basphere --socket {} admin ...` acts as administrator;\n\
         basphere-server: create accounts with `basphere admin user add`, and an admin API token with `basphere admin token create --user NAME --scope admin`.",
        data_dir.display(),
        platform.vms().provisioner().backend_name(),
        clusters.provisioner.backend_name(),
        resumed.len(),
        socket.display()
    );

    shutdown_signal().await;
    tracing::info!("stopping: no new requests; waiting for running operations");
    let _ = stop_tx.send(true);
    drop(background);
    let left = platform.runtime().drain(grace).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = unix_server.await;
        let _ = tcp_server.await;
    })
    .await;
    let _ = std::fs::remove_file(&socket);
    drop(clusters);
    eprintln!("basphere-server: stopped ({left} operation(s) left to resume at the next start)");
    Ok(())
}
