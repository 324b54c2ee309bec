//! `PostgresStore`: Basphere's store on PostgreSQL, for several `basphere-server` replicas
//! sharing one database. The same records, constraints and contracts as the SQLite store, with
//! PostgreSQL doing the coordination.
//!
//! # The driver, and why no blocking call runs on a tokio worker
//!
//! Core's `Store` trait is synchronous: the platform calls it through `spawn_blocking`, and a
//! transaction is a closure making one call after another. The synchronous `postgres` crate
//! would fit that shape, but it drives each connection with a runtime of its own inside every
//! call and panics when that call is made on a thread that runs a tokio runtime. So this store
//! uses `tokio-postgres` with a `deadpool-postgres` pool instead, on a small tokio runtime of
//! its own (`basphere-postgres` threads): the connections' IO runs there, and a call of the
//! `Store` trait sends its statements and waits for their answers with `futures-executor`
//! (a request of tokio-postgres's client is a channel message, needing no runtime). Whatever
//! thread calls, nothing blocks on the store runtime's workers, and no runtime is entered twice.
//!
//! # Transactions
//!
//! Writers are serialised, across every replica, by one transaction-scoped advisory lock that a
//! write takes in the round trip that begins it (`READ COMMITTED`, so each statement sees every
//! commit made before the lock was granted). That is the `Store` contract's "writers are
//! serialised", as SQLite's `BEGIN IMMEDIATE` gives it on one machine. `SERIALIZABLE` without the
//! lock was measured too (`cargo xtask bench store`): with 16 concurrent writers every allocation
//! was run again more than once on average, the index pages a quota check or an occupancy scan
//! reads being the ones the others write, and throughput was no better than serial writers while
//! latency was less predictable; under the lock no transaction conflicts, so none runs twice. A
//! read is a `REPEATABLE READ READ ONLY` snapshot and takes no lock,
//! so reads on every replica go on while a write runs. Every statement that can violate a
//! constraint runs inside a savepoint (sent in the same round trip), so a violation is the
//! domain's error and leaves the transaction usable, as SQLite's statement-level rollback does.
//! Claims (operations, the outbox) select with `FOR UPDATE SKIP LOCKED`; under the writers' lock
//! that changes nothing, and it keeps a claim from ever waiting on a row should writes one day
//! run in parallel.

mod constraints;
pub mod migrations;
mod rows;
pub mod testing;
mod tx;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use basphere_core::store::{StoreRead, StoreTx};
use basphere_core::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use tx::{PgTx, TxState};

/// What can go wrong inside the PostgreSQL store, before it is mapped onto [`basphere_core::Error`].
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot reach the database: {0}")]
    Pool(String),
    /// The database refused the login: a wrong or missing password, or a role that may not log in
    /// (SQLSTATE class 28, or no password where the server asks for one).
    #[error("the database refused the login: {0}")]
    LoginRefused(String),
    #[error("corrupt value in {table}.{column}: {message}")]
    Corrupt { table: &'static str, column: &'static str, message: String },
    #[error("migration to schema version {version} failed: {source}")]
    Migration {
        version: usize,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the database has schema version {found}, newer than this build of Basphere supports ({supported}); upgrade Basphere")]
    NewerSchema { found: usize, supported: usize },
    #[error("store.url: {0}")]
    Url(String),
    #[error("store TLS: {0}")]
    Tls(String),
    #[error("a statement of the transaction failed and the transaction cannot commit")]
    Aborted,
}

impl From<PostgresError> for Error {
    fn from(error: PostgresError) -> Self {
        Error::backend("postgres", error)
    }
}

pub(crate) fn pg(error: tokio_postgres::Error) -> Error {
    PostgresError::Postgres(error).into()
}

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// A `postgres://` URL or a libpq key=value string (`host=/run/postgresql dbname=basphere`).
    pub url: String,
    /// The password, when not in the URL (read from a file or the environment by the caller).
    pub password: Option<String>,
    /// PEM certificates to trust for TLS to the database; the system's roots otherwise. TLS is
    /// used as the URL's `sslmode` says (`prefer` by default, `require`, `disable`).
    pub ca_file: Option<PathBuf>,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long to wait for a connection (and for connecting).
    pub connect_timeout: Duration,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            password: None,
            ca_file: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// How a write transaction begins, in one round trip: READ COMMITTED, then the writers' lock,
/// which every write of every replica takes and holds until it commits. Each statement then sees
/// every commit made before the lock was granted, and none is made until this one ends.
///
/// A writer that stops mid-transaction (its process frozen, its network gone) must not stop every
/// replica: the server ends a transaction idle for 30 s, which frees the lock, and a writer waits
/// for the lock 20 s at most, then fails with a backend error instead of hanging.
const BEGIN_WRITE: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; \
    SET LOCAL idle_in_transaction_session_timeout = '30s'; SET LOCAL lock_timeout = '20s'; \
    SELECT pg_advisory_xact_lock(7450753787098509426)";

/// The PostgreSQL store. `Send + Sync`; share it as `Arc<PostgresStore>`.
pub struct PostgresStore {
    pool: Pool,
    runtime: Option<tokio::runtime::Runtime>,
    connect_timeout: Duration,
    /// The pool's size: the calls that can be served at once.
    pool_size: usize,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which an async caller must not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PostgresStore {
    /// Connects, migrates the schema to the latest version and returns the store.
    pub fn connect(options: &PostgresOptions) -> Result<Self> {
        let store = Self::connect_only(options)?;
        store.migrate(migrations::LATEST)?;
        Ok(store)
    }

    /// Connects without touching the schema (for checks that change nothing); the first
    /// connection is made at once, so an unreachable database or a refused login is an error here.
    pub fn connect_only(options: &PostgresOptions) -> Result<Self> {
        let mut config: tokio_postgres::Config =
            options.url.parse().map_err(|error| PostgresError::Url(format!("{error}")))?;
        if let Some(password) = &options.password {
            config.password(password);
        }
        if config.get_application_name().is_none() {
            config.application_name("basphere");
        }
        config.connect_timeout(options.connect_timeout);
        let tls = tls_connector(options.ca_file.as_deref())?;
        let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("basphere-postgres")
            .enable_all()
            .build()
            .map_err(|error| PostgresError::Pool(format!("cannot start the store's runtime: {error}")))?;
        let pool = {
            let _guard = runtime.enter();
            Pool::builder(manager)
                .max_size(options.pool_size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(options.connect_timeout))
                .create_timeout(Some(options.connect_timeout))
                .build()
                .map_err(|error| PostgresError::Pool(error.to_string()))?
        };
        let store = PostgresStore {
            pool,
            runtime: Some(runtime),
            connect_timeout: options.connect_timeout,
            pool_size: options.pool_size.max(1),
        };
        store.ping()?;
        Ok(store)
    }

    /// Runs `future` on the store's runtime and waits for it. The answer comes back through a
    /// plain channel, not the task's JoinHandle: polling a JoinHandle from a thread that runs a
    /// tokio task spends that task's cooperative budget, and once it is spent the handle never
    /// answers a poll that cannot yield.
    fn on_runtime<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let runtime = self.runtime.as_ref().expect("the runtime lives as long as the store");
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = answer.send(future.await);
        });
        answered.recv().map_err(|_| PostgresError::Pool("the store's task ended without an answer".into()).into())
    }

    /// A connection of the pool.
    fn client(&self) -> Result<deadpool_postgres::Object> {
        let pool = self.pool.clone();
        let timeout = self.connect_timeout;
        self.on_runtime(async move {
            match tokio::time::timeout(timeout + Duration::from_secs(1), pool.get()).await {
                Ok(result) => result.map_err(|error| match &error {
                    deadpool_postgres::PoolError::Backend(backend) if refuses_login(backend) => {
                        PostgresError::LoginRefused(with_causes(&error))
                    }
                    _ => PostgresError::Pool(with_causes(&error)),
                }),
                Err(_) => Err(PostgresError::Pool(format!("no connection within {timeout:?}"))),
            }
        })?
        .map_err(Error::from)
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<usize> {
        let client = self.client()?;
        migrations::version(&client)
    }

    /// Applies migrations up to `target` (tests build older schemas with it).
    pub fn migrate(&self, target: usize) -> Result<()> {
        let client = self.client()?;
        migrations::migrate(&client, target)
    }

    /// Whether this store's connections to the database are encrypted.
    pub fn uses_tls(&self) -> Result<bool> {
        let client = self.client()?;
        let row =
            block_on(client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])).map_err(pg)?;
        Ok(row.get(0))
    }

    /// Whether the database answers now (for readiness).
    pub fn ping(&self) -> Result<()> {
        let client = self.client()?;
        block_on(client.simple_query("SELECT 1")).map_err(pg)?;
        Ok(())
    }
}

/// Whether connecting failed because the server refused the login: an error of SQLSTATE class 28
/// (`invalid_password`, `invalid_authorization_specification`), or no password to give a server
/// that asks for one.
fn refuses_login(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        Some(code) => code.code().starts_with("28"),
        // tokio-postgres's "invalid configuration", caused by "password missing".
        None => with_causes(error).contains("password missing"),
    }
}

/// Whether `error` is the database refusing the store's login (see [`PostgresError::LoginRefused`]):
/// the caller can then name where the password came from.
pub fn login_refused(error: &Error) -> bool {
    match error {
        Error::Backend { source, .. } => {
            matches!(source.downcast_ref::<PostgresError>(), Some(PostgresError::LoginRefused(_)))
        }
        _ => false,
    }
}

/// An error and every cause under it, on one line (the pool's own words say little: "error
/// connecting to server" hides "No such file or directory").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The names of the constraints whose violations are mapped onto domain errors (for tests that
/// compare them with the schema).
pub fn constraint_names() -> impl Iterator<Item = &'static str> {
    constraints::CONSTRAINTS.iter().map(|constraint| constraint.name)
}

/// Waits for a client request; it needs no runtime (the connection runs on the store's).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    futures_executor::block_on(future)
}

fn tls_connector(ca_file: Option<&std::path::Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let (path, required) = match ca_file {
        Some(path) => (path.to_path_buf(), true),
        None => (PathBuf::from("/etc/ssl/certs/ca-certificates.crt"), false),
    };
    match CertificateDer::pem_file_iter(&path) {
        Ok(certificates) => {
            for certificate in certificates {
                let certificate = certificate
                    .map_err(|error| PostgresError::Tls(format!("store.ca_file {}: {error}", path.display())))?;
                roots
                    .add(certificate)
                    .map_err(|error| PostgresError::Tls(format!("store.ca_file {}: {error}", path.display())))?;
            }
        }
        Err(error) if required => {
            return Err(PostgresError::Tls(format!("store.ca_file {}: {error}", path.display())).into())
        }
        Err(_) => {}
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| PostgresError::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl basphere_core::Store for PostgresStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    fn blocking_calls(&self) -> usize {
        self.pool_size
    }

    fn read(&self, f: &mut dyn FnMut(&dyn StoreRead) -> Result<()>) -> Result<()> {
        let client = self.client()?;
        block_on(client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")).map_err(pg)?;
        let state = TxState::default();
        let result = f(&PgTx { client: &client, state: &state });
        // Nothing to keep: a read ends with ROLLBACK either way.
        block_on(client.batch_execute("ROLLBACK")).map_err(pg)?;
        result
    }

    fn write(&self, f: &mut dyn FnMut(&mut dyn StoreTx) -> Result<()>) -> Result<()> {
        let client = self.client()?;
        block_on(client.batch_execute(BEGIN_WRITE)).map_err(pg)?;
        let state = TxState::default();
        match f(&mut PgTx { client: &client, state: &state }) {
            Ok(()) if state.aborted.get() => {
                let _ = block_on(client.batch_execute("ROLLBACK"));
                Err(PostgresError::Aborted.into())
            }
            Ok(()) => block_on(client.batch_execute("COMMIT")).map_err(pg),
            Err(error) => {
                block_on(client.batch_execute("ROLLBACK")).map_err(pg)?;
                Err(error)
            }
        }
    }
}
