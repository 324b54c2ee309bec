//! The `basphere` command line: clap's definitions of every subcommand and flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::context::WaitArgs;
use crate::output::Format;

/// `basphere`: self-service VMs on vSphere.
#[derive(Parser)]
#[command(name = "basphere", version, about = "Self-service VMs on vSphere", after_help = EXIT_CODES)]
pub struct Cli {
    /// The server's Unix socket (default /run/basphere/basphere.sock, else .basphere/basphere.sock).
    #[arg(long, global = true, env = "BASPHERE_SOCKET")]
    pub socket: Option<PathBuf>,
    /// The server's URL (http://host:port or https://host:port), with a token; instead of the socket.
    #[arg(long, global = true, env = "BASPHERE_SERVER")]
    pub server: Option<String>,
    /// The API token for --server.
    #[arg(long, global = true, env = "BASPHERE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The certificate authority (PEM) to trust for an https:// --server; the system's otherwise.
    #[arg(long, global = true, env = "BASPHERE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// A context from ~/.config/basphere/config.yaml.
    #[arg(long, global = true, env = "BASPHERE_CONTEXT")]
    pub context: Option<String>,
    /// Output format: JSON and YAML are the server's documents, stable for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Answer yes to every confirmation (for scripts).
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    #[command(subcommand)]
    pub command: Command,
}

pub const EXIT_CODES: &str = "Exit codes: 0 ok, 1 error, 2 usage or invalid input, 3 not found, 4 conflict, 5 quota exceeded, 6 timeout, 7 server unreachable, 8 not allowed, 9 operation failed.";

#[derive(Subcommand)]
pub enum Command {
    /// Virtual machines.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Kubernetes clusters.
    #[command(subcommand)]
    Cluster(crate::cluster::ClusterCommand),
    /// Your tenant network (networks.mode: tenant): VLANs, subnets, gateways, router.
    #[command(subcommand)]
    Network(crate::network::NetworkCommand),
    /// Your limits and usage.
    Quota,
    /// Operations (background work).
    #[command(subcommand, name = "op")]
    Operation(OperationCommand),
    /// API tokens for using Basphere from elsewhere.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The OS images and VM sizes you can ask for.
    Catalog,
    /// Who the server believes you are.
    Whoami,
    /// Print a link that signs a browser in to the web pages as you (it works once, for five
    /// minutes). On the bastion, the socket says who you are.
    Web,
    /// Ask for an account (no account or token needed); an administrator decides.
    Register {
        /// The username you ask for (your bastion login once approved).
        username: String,
        /// Your email address: the decision and your welcome message go there.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        public_key: KeyArgs,
        /// Your team, for the administrators.
        #[arg(long, default_value = "")]
        team: String,
    },
    /// Ask for your account's SSH key to be replaced (no account or token needed); the email
    /// must be the account's, and an administrator decides.
    KeyChange {
        /// Your account's username.
        username: String,
        /// Your account's registered email address.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        public_key: KeyArgs,
        /// Why (lost key, rotation, ...).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Administration (as root on the bastion, or with an admin token).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Shell completion script: basphere completion bash > /etc/bash_completion.d/basphere
    Completion {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// The manual page (roff), as the Debian package installs it: basphere manpage > basphere.1
    #[command(hide = true)]
    Manpage,
    /// The original Basphere's command names this binary answers to, one a line (the package
    /// links each to it).
    #[command(hide = true)]
    OriginalNames,
    /// Start a server on embedded defaults (if none is running) and walk through the main job.
    Demo(crate::demo::DemoArgs),
}

#[derive(Subcommand)]
pub enum VmCommand {
    /// Create one VM, or a batch NAME-1..NAME-N with --count.
    Create {
        /// The VM's name (with --count, the batch's: NAME-1..NAME-N).
        name: String,
        /// The OS image (basphere catalog lists them).
        #[arg(long)]
        os: String,
        /// The size: CPUs, memory and disk (basphere catalog lists them).
        #[arg(long)]
        spec: String,
        /// How many VMs to create.
        #[arg(long, short = 'c', default_value_t = 1)]
        count: u32,
        /// Makes a retried create return the first answer.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Your VMs.
    List {
        /// Only VMs in this state.
        #[arg(long)]
        state: Option<String>,
        /// Add the creation time.
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// One VM.
    Show {
        /// The VM's name.
        name: String,
    },
    /// Delete a VM (asks first on a terminal).
    Delete {
        /// The VM's name.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Power a VM on.
    Start {
        /// The VM's name.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Power a VM off.
    Stop {
        /// The VM's name.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Restart a VM.
    Reboot {
        /// The VM's name.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Subcommand)]
pub enum OperationCommand {
    /// One operation: its state, steps and error.
    Show {
        /// The operation's id.
        id: String,
    },
    /// Wait for an operation to end.
    Wait {
        /// The operation's id.
        id: String,
        /// How long to wait, in seconds.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    /// Your operations.
    List,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        /// A name to tell the token by.
        name: String,
        /// What it may do: user, or admin (an administrator's own token).
        #[arg(long, default_value = "user")]
        scope: String,
        /// Expire it after this many days; never otherwise.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Your tokens (never their secrets).
    List,
    /// Revoke a token: it stops working at once.
    Revoke {
        /// The token's id.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Accounts and registration requests.
    #[command(subcommand)]
    User(AdminUserCommand),
    /// An account's limits.
    #[command(subcommand)]
    Quota(AdminQuotaCommand),
    /// SSH key change requests.
    #[command(subcommand)]
    Key(AdminKeyCommand),
    /// API tokens for any account.
    #[command(subcommand)]
    Token(AdminTokenCommand),
    /// Every account's VMs.
    #[command(subcommand)]
    Vm(AdminVmCommand),
    /// Every account's tenant network (networks.mode: tenant).
    #[command(subcommand)]
    Network(crate::network::AdminNetworkCommand),
    /// Every operation.
    Ops {
        /// Only this account's.
        #[arg(long)]
        owner: Option<String>,
    },
    /// The last comparison of the store with vSphere; --now runs one.
    Reconcile {
        /// Compare now, and show that comparison.
        #[arg(long)]
        now: bool,
    },
    /// The audit log; --jsonl exports JSON lines.
    Audit {
        /// Only what this account (or `root`, `system`) did.
        #[arg(long)]
        actor: Option<String>,
        /// Every event as one JSON object a line, for export.
        #[arg(long)]
        jsonl: bool,
    },
    /// Notifications: waiting, delivered or given up on (dead); `retry ID` sends a dead one again.
    Outbox(OutboxArgs),
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OutboxArgs {
    #[command(subcommand)]
    pub command: Option<OutboxCommand>,
    /// Only notifications in this state: pending, delivered or dead.
    #[arg(long)]
    pub state: Option<String>,
}

#[derive(Subcommand)]
pub enum OutboxCommand {
    /// Put a dead notification back in line, its attempts counted from zero again.
    Retry {
        /// The notification's id.
        id: String,
    },
}

/// An SSH public key, from a file or given as text (`register`, `key-change`, `admin user add`).
#[derive(Args)]
pub struct KeyArgs {
    /// A file with the public key (or - for stdin), e.g. ~/.ssh/id_ed25519.pub.
    #[arg(long, conflicts_with = "key")]
    pub key_file: Option<PathBuf>,
    /// The public key itself.
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Subcommand)]
pub enum AdminUserCommand {
    /// Create an account: record, IP block and vSphere folder.
    Add {
        /// The account's username (its bastion login).
        username: String,
        /// The user's email address, for notifications.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        public_key: KeyArgs,
        /// The user's team.
        #[arg(long, default_value = "")]
        team: String,
        /// The bastion login's uid (identifies the user on the Unix socket).
        #[arg(long)]
        uid: Option<u32>,
        /// An administrator account.
        #[arg(long)]
        admin: bool,
    },
    /// Every account.
    List,
    /// One account.
    Show {
        /// The account's username.
        username: String,
    },
    /// Registration requests waiting for a decision (one in full with NAME).
    Pending {
        /// The request's username: show that one in full.
        username: Option<String>,
    },
    /// Approve registrations: each account gets its IP block, vSphere folder and bastion login.
    /// Approving again finishes an approval that failed part-way.
    Approve {
        /// The usernames of the requests to approve.
        #[arg(required = true)]
        usernames: Vec<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Reject a registration; the applicant is told the reason.
    Reject {
        /// The request's username.
        username: String,
        /// Why, for the applicant.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Suspend an account: it can do nothing until resumed; its resources stay.
    Suspend {
        /// The account's username.
        username: String,
    },
    /// Resume a suspended account.
    Resume {
        /// The account's username.
        username: String,
    },
    /// Delete an account that owns no VM or cluster.
    Delete {
        /// The account's username.
        username: String,
    },
    /// Destroy every VM of an account, free its addresses, remove its login and the account.
    Purge {
        /// The account's username.
        username: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Subcommand)]
pub enum AdminKeyCommand {
    /// Key change requests waiting for a decision (one in full with NAME).
    Pending {
        /// The request's username: show that one in full.
        username: Option<String>,
    },
    /// Approve a key change: the new key replaces the old, on the bastion too.
    Approve {
        /// The username whose key change to approve.
        username: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Reject a key change; the user is told the reason.
    Reject {
        /// The username whose key change to reject.
        username: String,
        /// Why, for the user.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum AdminQuotaCommand {
    /// An account's limits and usage.
    Show {
        /// The account's username.
        username: String,
    },
    /// Override limits; unset ones keep the default.
    Set {
        /// The account's username.
        username: String,
        /// At most this many VMs.
        #[arg(long)]
        vms: Option<u64>,
        /// At most this many IP addresses.
        #[arg(long)]
        ips: Option<u64>,
        /// At most this many virtual CPUs in all.
        #[arg(long)]
        vcpus: Option<u64>,
        /// At most this much memory in all, in MB.
        #[arg(long)]
        memory_mb: Option<u64>,
        /// At most this much disk in all, in GB.
        #[arg(long)]
        disk_gb: Option<u64>,
        /// At most this many Kubernetes clusters.
        #[arg(long)]
        clusters: Option<u64>,
    },
    /// Back to the defaults.
    Reset {
        /// The account's username.
        username: String,
    },
}

#[derive(Subcommand)]
pub enum AdminTokenCommand {
    /// Create a token for a user (an admin token for an admin account with --scope admin).
    Create {
        /// The account the token acts as.
        #[arg(long)]
        user: String,
        /// A name to tell the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// What it may do: user, or admin (admin accounts only).
        #[arg(long, default_value = "user")]
        scope: String,
        /// Expire it after this many days; never otherwise.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

#[derive(Subcommand)]
pub enum AdminVmCommand {
    /// Every VM (or one owner's).
    List {
        /// Only this account's.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Delete any account's VM.
    Delete {
        /// The VM owner's username.
        owner: String,
        /// The VM's name.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}
