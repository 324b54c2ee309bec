//! `basphere-server`: see the library's documentation. Started with no arguments it runs on
//! embedded defaults: SQLite in `./.basphere`, the simulated vSphere, loopback only.

use std::path::PathBuf;

use clap::Parser;

/// mimalloc instead of glibc's malloc for Rust's allocations: a listed page of VMs allocates
/// and frees a few hundred small strings, and glibc's malloc and free were a sixth of a list
/// request's instructions. (SQLite's own allocations stay with glibc, tuned in `memory`.)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocators' settings, from the executable's pre-initialisation array: the loader runs it
/// before any library's start-up, so before mimalloc makes its first arena (see `memory`).
#[allow(unsafe_code)] // a section attribute: the only other unsafe code besides `memory`'s calls
#[used]
#[link_section = ".preinit_array"]
static SET_UP_ALLOCATORS: extern "C" fn() = basphere_server::memory::before_anything_else;

#[derive(Parser)]
#[command(
    name = "basphere-server",
    version,
    about = "The Basphere server: HTTP API, Unix socket and background workers"
)]
struct Args {
    /// The configuration file (YAML). Without it, embedded defaults are used.
    #[arg(long, short = 'c', env = "BASPHERE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the database and the simulated vSphere inventory live (overrides server.data_dir).
    #[arg(long, env = "BASPHERE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// host:port of the TCP listener (overrides server.host and server.port; port 0 picks one).
    #[arg(long)]
    listen: Option<String>,
    /// The Unix socket (overrides server.socket; default <data dir>/basphere.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Moves an installation to another store (stop the servers first): every account, request,
    /// token, address, VM, cluster, operation, audit event and notification is copied into the
    /// empty target in one transaction, then both are compared record by record.
    MigrateStore {
        /// The store to read: sqlite:PATH or postgres://USER@HOST/DATABASE.
        #[arg(long)]
        from: String,
        /// The empty store to fill: sqlite:PATH or postgres://USER@HOST/DATABASE.
        #[arg(long)]
        to: String,
        /// A file holding the PostgreSQL password (else BASPHERE_STORE_PASSWORD, if set).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Checks the configuration and every part it names (store, VM and cluster backends,
    /// credentials, notifiers, bastion logins, bot check) without changing anything; exits 1
    /// when something needs fixing.
    CheckConfig,
    /// Writes a consistent copy of the SQLite store to FILE while the server keeps serving.
    Backup {
        /// The new file to write.
        file: PathBuf,
    },
    /// Replaces the SQLite store with a backup (stop the server first); the replaced database is
    /// kept beside it, and the next start resumes and reconciles.
    Restore {
        /// A file `backup` wrote.
        file: PathBuf,
    },
    /// The bastion helper (run as root, beside an unprivileged server): makes, rekeys and
    /// removes the bastion logins the server asks for over its socket (bastion.helper_socket),
    /// with the settings of bastion.*; nothing else, and for the server's account only.
    BastionHelper {
        /// The account the server runs as: the only one whose requests are served.
        #[arg(long, default_value = "basphere")]
        allow_user: String,
    },
    /// The manual page (roff): basphere-server manpage > basphere-server.1
    #[command(hide = true)]
    Manpage,
    /// Shell completion script: basphere-server completion bash
    #[command(hide = true)]
    Completion { shell: clap_complete::Shell },
    /// Imports an installation of the original Basphere: its users (with their keys and uids),
    /// pending registrations and key changes, IP blocks and leases, VMs and clusters. All or
    /// nothing, and a second run changes nothing; --dry-run only prints the report.
    ImportOriginal {
        /// The original's filesystem root: `/` on its own host, or a copy holding its
        /// etc/basphere, var/lib/basphere, etc/passwd, etc/group and the logins' ~/.ssh.
        dir: PathBuf,
        /// Print what would be imported, what conflicts and what is broken; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also write the original's config.yaml, specs.yaml and api.yaml as one Basphere
        /// configuration to this new file.
        #[arg(long, value_name = "FILE")]
        write_config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Everything the server and its children (terraform) write is private to its account.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("BASPHERE_LOG").unwrap_or_else(|_| "info,tower_http=warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // BASPHERE_LOG_FORMAT=json gives one JSON object per line, for log collectors.
    if std::env::var("BASPHERE_LOG_FORMAT").is_ok_and(|format| format == "json") {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
    match &args.command {
        Some(Command::Manpage) => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Args::command()).render(&mut std::io::stdout())?;
            return Ok(());
        }
        Some(Command::Completion { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Args::command(), "basphere-server", &mut std::io::stdout());
            return Ok(());
        }
        Some(Command::MigrateStore { from, to, password_file }) => {
            let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(".basphere"));
            return basphere_server::stores::migrate(from, to, &data_dir, password_file.as_deref());
        }
        Some(Command::Backup { file }) => {
            let settings = basphere_server::load_config(args.config.as_deref())?;
            let data_dir = args.data_dir.clone().unwrap_or_else(|| settings.server.data_dir.clone());
            return basphere_server::stores::backup(&settings.config.store, &data_dir, file);
        }
        Some(Command::Restore { file }) => {
            let settings = basphere_server::load_config(args.config.as_deref())?;
            let data_dir = args.data_dir.clone().unwrap_or_else(|| settings.server.data_dir.clone());
            let socket = args
                .socket
                .clone()
                .or_else(|| settings.server.socket.clone())
                .unwrap_or_else(|| data_dir.join("basphere.sock"));
            return basphere_server::stores::restore(&settings.config.store, &data_dir, &socket, file);
        }
        Some(Command::ImportOriginal { dir, dry_run, write_config }) => {
            let settings = basphere_server::load_config(args.config.as_deref())?;
            let data_dir = args.data_dir.clone().unwrap_or_else(|| settings.server.data_dir.clone());
            let options = basphere_server::import::ImportOptions {
                root: dir,
                dry_run: *dry_run,
                write_config: write_config.as_deref(),
            };
            let imported = basphere_server::import::import_original(&settings.config, &data_dir, &options)?;
            std::process::exit(if imported { 0 } else { 1 });
        }
        Some(Command::BastionHelper { allow_user }) => {
            let settings = basphere_server::load_config(args.config.as_deref())?;
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
            return runtime.block_on(basphere_server::bastion_helper(&settings.config, allow_user));
        }
        Some(Command::CheckConfig) => {
            let options = basphere_server::Options {
                config: args.config.clone(),
                data_dir: args.data_dir.clone(),
                listen: None,
                socket: None,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let passed = runtime.block_on(basphere_server::check_config(&options))?;
            runtime.shutdown_background();
            std::process::exit(if passed { 0 } else { 1 });
        }
        None => {}
    }
    // Store calls run on the platform's own threads; the blocking pool serves the few other
    // blocking calls and stays bounded. A worker out of work gives its free allocator
    // memory back before it parks (see `memory`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(32)
        .on_thread_park(basphere_server::memory::collect_idle_thread)
        .enable_all()
        .build()?;
    runtime.block_on(basphere_server::run(basphere_server::Options {
        config: args.config,
        data_dir: args.data_dir,
        listen: args.listen,
        socket: args.socket,
    }))
}
