//! `basphere-server`: the HTTP API over two listeners (a Unix socket whose callers the kernel
//! identifies, and TCP with bearer tokens), with operations run by background workers.
//!
//! `run` is the composition root: it reads the configuration (or embedded defaults), opens the
//! store, builds the IPAM, the VM backend and the notifier, resumes interrupted operations,
//! serves until SIGTERM or SIGINT, and then drains running operations.

pub mod api;
pub mod auth;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod wire;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use basphere_core::config::{SimulatedDelays, VmBackendKind};
use basphere_core::mock::{LogNotifier, MockDelays};
use basphere_core::{Config, Ipam, Platform, Provisioner, Store, StoreExt};
use basphere_ipam::BlockIpam;
use basphere_store::SqliteStore;
use tokio::net::{TcpListener, UnixListener};
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::PeerCredentials;
use crate::metrics::Metrics;
use crate::problem::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub platform: Arc<Platform>,
    pub metrics: Arc<Metrics>,
    /// The server's own uid: a socket caller with this uid (or root) is an administrator.
    pub server_uid: u32,
    /// The latest reconciliation report.
    pub last_reconcile: Arc<std::sync::Mutex<Option<basphere_core::platform::ReconcileReport>>>,
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

/// Reads the configuration file, or the embedded defaults when there is none.
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        None => Ok(Config::default()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the configuration {}", path.display()))?;
            Config::from_yaml(&text).with_context(|| format!("the configuration {} is not valid", path.display()))
        }
    }
}

/// Builds the HTTP application (shared by both listeners).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .route("/api/v1/openapi.json", get(openapi::document))
        .nest("/api/v1", api::routes())
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

/// Liveness: the process serves requests. Public.
#[utoipa::path(get, path = "/healthz", tag = "service", security(()),
    responses((status = 200, description = "The process serves requests.", body = basphere_api::Health)))]
async fn healthz() -> Json<basphere_api::Health> {
    Json(basphere_api::Health { status: "ok".to_owned() })
}

/// Readiness: the store answers and the VM backend passes its preflight. Public.
#[utoipa::path(get, path = "/readyz", tag = "service", security(()), responses(
    (status = 200, description = "Ready.", body = basphere_api::Readiness),
    (status = 503, description = "Not ready: the fields say which part and why.", body = basphere_api::Readiness),
    crate::openapi::ServerError))]
async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.platform.store().clone();
    let store_ok = tokio::task::spawn_blocking(move || store.query(|tx| tx.list_blocks(Some("")).map(|_| ())))
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    let backend = state.platform.provisioner().preflight().await;
    let body = basphere_api::Readiness {
        backend: match &backend {
            Ok(()) => "ok".to_owned(),
            Err(error) => error.to_string(),
        },
        store: if store_ok { "ok" } else { "unavailable" }.to_owned(),
        vm_backend: state.platform.provisioner().backend_name().to_owned(),
    };
    let status = if store_ok && backend.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

fn provisioner(config: &Config, data_dir: &Path) -> Result<Arc<dyn Provisioner>> {
    match config.vm_backend {
        VmBackendKind::Simulated => {
            let delays = match config.simulated_delays {
                SimulatedDelays::Realistic => MockDelays::realistic(),
                SimulatedDelays::None => MockDelays::default(),
            };
            Ok(basphere_vsphere::simulated::open(&data_dir.join("simulated-vsphere.jsonl"), config, delays)?)
        }
        VmBackendKind::Terraform => {
            use basphere_vsphere::terraform::{Credentials, TerraformProvisioner, TerraformSettings};
            let credentials_file = config.vsphere.credentials_file.as_deref().context("vsphere.credentials_file is required for the terraform backend")?;
            let settings = TerraformSettings {
                binary: config.terraform.binary.clone(),
                work_dir: data_dir.join("terraform"),
                vsphere: config.vsphere.clone(),
                credentials: Credentials::from_file(credentials_file)?,
                plugin_cache_dir: config.terraform.plugin_cache_dir.clone(),
                cli_config_file: config.terraform.cli_config_file.clone(),
                init_timeout: Duration::from_secs(config.terraform.init_timeout_seconds),
                apply_timeout: Duration::from_secs(config.terraform.apply_timeout_seconds),
                parallelism: config.terraform.parallelism,
            };
            Ok(Arc::new(TerraformProvisioner::new(settings)?))
        }
        #[cfg(feature = "vsphere-api")]
        VmBackendKind::VsphereApi => {
            use basphere_vsphere::api::{VsphereApiProvisioner, VsphereApiSettings};
            use basphere_vsphere::terraform::Credentials;
            let credentials_file = config
                .vsphere
                .credentials_file
                .as_deref()
                .context("vsphere.credentials_file is required for the vsphere-api backend")?;
            let settings = VsphereApiSettings {
                server: config.vsphere.server.clone(),
                credentials: Credentials::from_file(credentials_file)?,
                vsphere: config.vsphere.clone(),
                os_images: config.os_images.clone(),
                accept_invalid_certs: config.vsphere.allow_unverified_ssl,
            };
            Ok(Arc::new(VsphereApiProvisioner::new(settings)))
        }
        #[cfg(not(feature = "vsphere-api"))]
        VmBackendKind::VsphereApi => bail!(
            "backend.vm: vsphere-api is not in this build (built without the `vsphere-api` feature); \
             use `simulated` or `terraform`, or rebuild with the default features"
        ),
    }
}

fn prepare_data_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {} to its owner", dir.display()))?;
    Ok(())
}

fn bind_socket(path: &Path) -> Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
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
    Ok(listener)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Compares the store with the VM backend every `interval` seconds (0 turns it off).
async fn reconcile_periodically(
    platform: Arc<Platform>,
    last: Arc<std::sync::Mutex<Option<basphere_core::platform::ReconcileReport>>>,
    interval: u64,
) {
    if interval == 0 {
        return;
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match platform.reconcile().await {
            Ok(report) => {
                if !report.lost.is_empty() || !report.power_changed.is_empty() || !report.found.is_empty() {
                    tracing::info!(
                        lost = report.lost.len(),
                        power_changed = report.power_changed.len(),
                        found = report.found.len(),
                        strays = report.strays.len(),
                        "reconciled with the VM backend"
                    );
                }
                *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
            }
            Err(error) => tracing::warn!(%error, "reconciliation failed; trying again at the next interval"),
        }
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(options: Options) -> Result<()> {
    let started = std::time::Instant::now();
    let config = Arc::new(load_config(options.config.as_deref())?);
    let data_dir = options.data_dir.clone().unwrap_or_else(|| config.server.data_dir.clone());
    prepare_data_dir(&data_dir)?;
    let socket = options
        .socket
        .clone()
        .or_else(|| config.server.socket.clone())
        .unwrap_or_else(|| data_dir.join("basphere.sock"));
    let listen = options.listen.clone().unwrap_or_else(|| format!("{}:{}", config.server.host, config.server.port));

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(data_dir.join("basphere.db"))?);
    let ipam: Arc<dyn Ipam> = Arc::new(BlockIpam::new(config.pools.clone())?);
    store
        .query(|tx| ipam.check_allocations(tx))
        .context("the network configuration conflicts with addresses already handed out")?;
    let provisioner = provisioner(&config, &data_dir)?;
    // Said at start so a wrong setting shows in the log at once; /readyz keeps reporting it.
    let preflight = provisioner.clone();
    tokio::spawn(async move {
        if let Err(error) = preflight.preflight().await {
            tracing::warn!(backend = preflight.backend_name(), %error, "the VM backend is not ready");
        }
    });
    let platform = Platform::new(config.clone(), store, ipam, provisioner, Arc::new(LogNotifier));
    let resumed = platform.resume_unfinished().await?;
    if !resumed.is_empty() {
        tracing::info!(count = resumed.len(), "resuming interrupted operations");
    }

    let state = AppState {
        platform: platform.clone(),
        metrics: Arc::new(Metrics::new()),
        server_uid: nix::unistd::geteuid().as_raw(),
        last_reconcile: Arc::new(std::sync::Mutex::new(None)),
    };
    let reconciler = tokio::spawn(reconcile_periodically(
        platform.clone(),
        state.last_reconcile.clone(),
        config.reconcile_interval_seconds,
    ));
    let app = app(state);

    let tcp = TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
    let tcp_address = tcp.local_addr()?;
    let unix = bind_socket(&socket)?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let unix_app = app.clone().layer(middleware::from_fn(auth::unix_transport));
    let tcp_app = app.layer(middleware::from_fn(auth::tcp_transport));
    let mut unix_stop = stop_rx.clone();
    let unix_server = tokio::spawn(async move {
        axum::serve(unix, unix_app.into_make_service_with_connect_info::<PeerCredentials>())
            .with_graceful_shutdown(async move {
                let _ = unix_stop.wait_for(|stop| *stop).await;
            })
            .await
    });
    let mut tcp_stop = stop_rx.clone();
    let tcp_server = tokio::spawn(async move {
        axum::serve(tcp, tcp_app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = tcp_stop.wait_for(|stop| *stop).await;
            })
            .await
    });

    let uid = nix::unistd::geteuid().as_raw();
    println!(
        "basphere-server ready in {} ms: http://{tcp_address} and unix:{}",
        started.elapsed().as_millis(),
        socket.display()
    );
    eprintln!(
        "basphere-server: data in {}, VM backend {}, {} interrupted operation(s) resumed.\n\
         basphere-server: the first admin credential is your login: as root or uid {uid}, `basphere --socket {} admin ...` acts as administrator;\n\
         basphere-server: create accounts with `basphere admin user add`, and an admin API token with `basphere admin token create --user NAME --scope admin`.",
        data_dir.display(),
        platform.provisioner().backend_name(),
        resumed.len(),
        socket.display()
    );

    shutdown_signal().await;
    tracing::info!("stopping: no new requests; waiting for running operations");
    let _ = stop_tx.send(true);
    reconciler.abort();
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let left = platform.drain(grace).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = unix_server.await;
        let _ = tcp_server.await;
    })
    .await;
    let _ = std::fs::remove_file(&socket);
    eprintln!("basphere-server: stopped ({left} operation(s) left to resume at the next start)");
    Ok(())
}
