//! Opening the store `store.url` names (SQLite by default, or PostgreSQL for several replicas),
//! and `migrate-store`, which moves an installation from one store to another.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use basphere_core::config::{StoreConfig, StoreUrl};
use basphere_core::Store;
use basphere_store::SqliteStore;
use basphere_store_postgres::{PostgresOptions, PostgresStore};

/// The environment variable that may hold the database password.
pub const PASSWORD_ENV: &str = "BASPHERE_STORE_PASSWORD";

/// Opens (creating or migrating as needed) the store `settings` name.
pub fn open(settings: &StoreConfig, data_dir: &Path) -> Result<Arc<dyn Store>> {
    match &settings.url {
        StoreUrl::Sqlite(path) => {
            let path = path.clone().unwrap_or_else(|| data_dir.join("basphere.db"));
            Ok(Arc::new(SqliteStore::open(&path).with_context(|| format!("store.url: opening {}", path.display()))?))
        }
        StoreUrl::Postgres(url) => {
            let (options, source) = postgres_options(settings, url, settings.pool_size)?;
            let store = PostgresStore::connect(&options).map_err(|error| connect_error(url, source.as_ref(), error))?;
            Ok(Arc::new(store))
        }
    }
}

/// The URL as it may be logged (it never holds a password: the configuration refuses one).
fn shown(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// How to reach the PostgreSQL store at `url`, and where its password came from.
fn postgres_options(
    settings: &StoreConfig,
    url: &str,
    pool_size: usize,
) -> Result<(PostgresOptions, Option<PasswordSource>)> {
    let mut options = PostgresOptions::new(url.to_owned());
    let (password, source) = password(settings)?.unzip();
    options.password = password;
    options.ca_file = settings.ca_file.clone();
    options.pool_size = pool_size;
    Ok((options, source))
}

/// Where the database password came from: what to fix when the database refuses it.
#[derive(Clone, Debug, PartialEq)]
enum PasswordSource {
    /// `store.password_file`, at this path.
    File(PathBuf),
    /// The environment variable [`PASSWORD_ENV`].
    Environment,
}

/// Why connecting to the database at `url` failed, naming what to fix: when the database refused
/// the login, where the password came from (the key `store.password_file` and its path, or the
/// environment variable), or that none was given; otherwise `store.url`.
fn connect_error(url: &str, password: Option<&PasswordSource>, error: basphere_core::Error) -> anyhow::Error {
    let url = shown(url);
    let context = match (basphere_store_postgres::login_refused(&error), password) {
        (true, Some(PasswordSource::File(path))) => {
            format!("store.password_file: PostgreSQL at {url} refused the password read from {}", path.display())
        }
        (true, Some(PasswordSource::Environment)) => {
            format!("{PASSWORD_ENV}: PostgreSQL at {url} refused the password this environment variable holds")
        }
        (true, None) => format!(
            "store.url: PostgreSQL at {url} refused the login, and no password was given \
             (store.password_file, or the environment variable {PASSWORD_ENV})"
        ),
        (false, _) => format!("store.url: connecting to PostgreSQL at {url}"),
    };
    anyhow::Error::new(error).context(context)
}

/// The password from `store.password_file` (readable by the server's account only) or from
/// the environment, with where it came from; none when neither is set (trust or peer
/// authentication).
fn password(settings: &StoreConfig) -> Result<Option<(String, PasswordSource)>> {
    if let Some(file) = &settings.password_file {
        let metadata =
            std::fs::metadata(file).with_context(|| format!("store.password_file: cannot read {}", file.display()))?;
        if metadata.mode() & 0o077 != 0 {
            bail!(
                "store.password_file: {} is readable by other accounts (mode {:o}); chmod 600 it",
                file.display(),
                metadata.mode() & 0o777
            );
        }
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("store.password_file: cannot read {}", file.display()))?;
        let password = text.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            bail!("store.password_file: {} is empty", file.display());
        }
        return Ok(Some((password, PasswordSource::File(file.clone()))));
    }
    Ok(std::env::var(PASSWORD_ENV)
        .ok()
        .filter(|password| !password.is_empty())
        .map(|password| (password, PasswordSource::Environment)))
}

/// Moves every record from the store `from` names into the empty store `to` names, then
/// compares both record by record; prints what was moved.
pub fn migrate(from: &str, to: &str, data_dir: &Path, password_file: Option<&Path>) -> Result<()> {
    let settings = |url: &str| -> Result<StoreConfig> {
        Ok(StoreConfig {
            url: StoreUrl::parse(url).map_err(|error| anyhow::anyhow!("{error}"))?,
            password_file: password_file.map(Path::to_path_buf),
            ..StoreConfig::default()
        })
    };
    let (from_settings, to_settings) = (settings(from)?, settings(to)?);
    if from_settings.url == to_settings.url {
        bail!("--from and --to name the same store");
    }
    let source = open(&from_settings, data_dir).context("--from")?;
    let target = open(&to_settings, data_dir).context("--to")?;
    let report = basphere_core::store::copy::move_store(&*source, &*target)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .context("moving the records")?;
    println!("moved from {} to {}, and checked record by record:", source.backend_name(), target.backend_name());
    for (kind, count) in report.counts {
        println!("  {kind:<16} {count}");
    }
    println!("not moved: browser sessions (people sign in again) and idempotency keys.");
    Ok(())
}

/// The SQLite file `settings` names, or an error saying what to use for PostgreSQL.
fn sqlite_path(settings: &StoreConfig, data_dir: &Path, verb: &str) -> Result<std::path::PathBuf> {
    match &settings.url {
        StoreUrl::Sqlite(path) => Ok(path.clone().unwrap_or_else(|| data_dir.join("basphere.db"))),
        StoreUrl::Postgres(_) => bail!(
            "store.url names PostgreSQL: {verb} it with PostgreSQL's own tools, e.g. `pg_dump --format=custom --file=basphere.dump DATABASE` \
             while the replicas serve, and `pg_restore --dbname=DATABASE basphere.dump` into an empty database with them stopped"
        ),
    }
}

/// Writes a consistent copy of the SQLite store to `file` while the server goes on serving.
pub fn backup(settings: &StoreConfig, data_dir: &Path, file: &Path) -> Result<()> {
    let path = sqlite_path(settings, data_dir, "back up")?;
    if !path.exists() {
        bail!("there is no database at {} to back up (store.url, --data-dir)", path.display());
    }
    let store = SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))?;
    store.backup(file).map_err(|error| anyhow::anyhow!("{error}")).context("writing the backup")?;
    let version = SqliteStore::verify(file).map_err(|error| anyhow::anyhow!("{error}"))?;
    let counts = basphere_core::store::copy::Snapshot::read(&SqliteStore::open(file)?)
        .map_err(|error| anyhow::anyhow!("{error}"))?
        .counts();
    println!("backed up {} to {} (schema {version}):", path.display(), file.display());
    for (kind, count) in counts {
        println!("  {kind:<16} {count}");
    }
    Ok(())
}

/// Replaces the SQLite store with the backup `file`, the server stopped: the backup is checked
/// first, the database it replaces is kept beside it, and the next start resumes the backup's
/// unfinished operations and reconciles with vSphere.
pub fn restore(settings: &StoreConfig, data_dir: &Path, socket: &Path, file: &Path) -> Result<()> {
    let path = sqlite_path(settings, data_dir, "restore")?;
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        bail!("the server is running (its socket {} answers); stop it before restoring", socket.display());
    }
    let version = SqliteStore::verify(file).map_err(|error| anyhow::anyhow!("{error}"))?;
    let parent = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let staged = path.with_extension("db.restoring");
    std::fs::copy(file, &staged).with_context(|| format!("copying {} to {}", file.display(), staged.display()))?;
    std::fs::File::open(&staged)?.sync_all()?;
    let kept = if path.exists() {
        let kept = path.with_extension(format!("db.before-restore-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")));
        // The old database's write-ahead log belongs to it: fold it in before it is set aside.
        drop(SqliteStore::open(&path)?);
        std::fs::rename(&path, &kept)?;
        Some(kept)
    } else {
        None
    };
    for stale in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(path.with_extension(stale));
    }
    std::fs::rename(&staged, &path)?;
    std::fs::File::open(parent)?.sync_all()?;
    println!("restored {} from {} (schema {version})", path.display(), file.display());
    if let Some(kept) = kept {
        println!("the database it replaced is kept as {}", kept.display());
    }
    println!("at the next start the server resumes the backup's unfinished operations and compares its records with vSphere (basphere admin reconcile shows the differences)");
    Ok(())
}

/// What the store `settings` name is like now, changing nothing (`check-config`): the SQLite file
/// and its schema, or the PostgreSQL server reached with the configured login and TLS.
pub fn check(settings: &StoreConfig, data_dir: &Path) -> Result<String> {
    match &settings.url {
        StoreUrl::Sqlite(path) => {
            let path = path.clone().unwrap_or_else(|| data_dir.join("basphere.db"));
            if !path.exists() {
                return Ok(format!("SQLite at {}: not there yet, made at the first start", path.display()));
            }
            let version = SqliteStore::verify(&path).map_err(|error| anyhow::anyhow!("{error}"))?;
            Ok(format!("SQLite at {} (schema {version} of {})", path.display(), basphere_store::migrations::LATEST))
        }
        StoreUrl::Postgres(url) => {
            let (options, source) = postgres_options(settings, url, 1)?;
            let store =
                PostgresStore::connect_only(&options).map_err(|error| connect_error(url, source.as_ref(), error))?;
            let version = store.schema_version().map_err(|error| anyhow::anyhow!("{error}"))?;
            let latest = basphere_store_postgres::migrations::LATEST;
            let tls = if store.uses_tls().unwrap_or(false) { "with TLS" } else { "without TLS" };
            Ok(match version {
                v if v > latest => {
                    bail!("store.url: the database has schema {v}, newer than this build reads ({latest})")
                }
                v if v < latest => {
                    format!("PostgreSQL at {} {tls} (schema {v}; migrated to {latest} at the next start)", shown(url))
                }
                v => format!("PostgreSQL at {} {tls} (schema {v})", shown(url)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use basphere_store_postgres::testing::PgCluster;

    use super::*;

    fn secret(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A store that cannot be opened, and why, all causes on one line.
    fn refused<T>(result: Result<T>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(error) => format!("{error:#}"),
        }
    }

    /// The error of a store the database refuses.
    fn refusal(options: &PostgresOptions) -> basphere_core::Error {
        match PostgresStore::connect_only(options) {
            Ok(_) => panic!("expected the database to refuse the login"),
            Err(error) => error,
        }
    }

    #[test]
    fn a_refused_password_is_blamed_on_where_it_came_from() {
        let cluster = PgCluster::start().unwrap_or_else(|error| panic!("cannot start PostgreSQL: {error}"));
        let url = cluster.require_password("replica", "right-password");
        let dir = tempfile::tempdir().unwrap();
        let settings = |file: &Path| StoreConfig {
            url: StoreUrl::Postgres(url.clone()),
            password_file: Some(file.to_path_buf()),
            pool_size: 2,
            ..StoreConfig::default()
        };
        let right = secret(dir.path(), "right", "right-password\n");
        let wrong = secret(dir.path(), "wrong", "wrong-password\n");
        open(&settings(&right), dir.path()).expect("the right password logs in and migrates");
        check(&settings(&right), dir.path()).expect("check-config logs in too");

        // The file's password refused, by the server or check-config: the key and its path.
        let expected = format!(
            "store.password_file: PostgreSQL at {} refused the password read from {}",
            shown(&url),
            wrong.display()
        );
        for error in [refused(open(&settings(&wrong), dir.path())), refused(check(&settings(&wrong), dir.path()))] {
            assert!(error.starts_with(&expected), "{error}");
            assert!(error.contains("password authentication failed for user \"replica\""), "{error}");
            assert!(!error.contains("wrong-password"), "the password is never shown: {error}");
        }

        // From the environment, and none at all: the same real refusals, named after their source.
        let mut options = PostgresOptions::new(url.clone());
        options.password = Some("from-the-environment".into());
        let error = refusal(&options);
        assert!(basphere_store_postgres::login_refused(&error), "{error}");
        let error = format!("{:#}", connect_error(&url, Some(&PasswordSource::Environment), error));
        assert!(
            error.starts_with(&format!(
                "BASPHERE_STORE_PASSWORD: PostgreSQL at {} refused the password this environment variable holds: ",
                shown(&url)
            )),
            "{error}"
        );
        assert!(!error.contains("from-the-environment"), "{error}");
        let error = refusal(&PostgresOptions::new(url.clone()));
        assert!(basphere_store_postgres::login_refused(&error), "no password where one is asked for: {error}");
        let error = format!("{:#}", connect_error(&url, None, error));
        assert!(error.starts_with("store.url: PostgreSQL at ") && error.contains("no password was given"), "{error}");

        // A database that is not there is no matter of passwords: store.url.
        cluster.stop();
        let error = refused(open(&settings(&right), dir.path()));
        assert!(error.starts_with(&format!("store.url: connecting to PostgreSQL at {}: ", shown(&url))), "{error}");
        assert!(!error.contains("password_file"), "{error}");
    }
}
