//! `flotta`: the command line for flotta fleets, in the manner of kubectl.

mod access;
mod commands;
mod describe;
mod kind;
mod login;
mod manifest;
mod output;
mod rollout;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;
use flotta_client::ClientError;

use crate::output::Format;

/// Default configuration file, relative to the working directory.
const DEFAULT_CONFIG: &str = "flotta-data/admin.yaml";

/// The `flotta` command line.
#[derive(Debug, Parser)]
#[command(
    name = "flotta",
    version,
    about = "Manage a flotta fleet: devices, device sets, workloads and enrolment requests."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Client configuration (server URL, CA, token) [default: ./flotta-data/admin.yaml].
    #[arg(long, env = "FLOTTA_CONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Namespace to work in.
    #[arg(
        short = 'n',
        long,
        global = true,
        default_value = "default",
        value_name = "NS"
    )]
    namespace: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List objects of a kind, or show one.
    Get(GetArgs),
    /// Show one object in detail.
    Describe {
        /// Kind: device, set, workload or edsr (or KIND/NAME).
        kind: String,
        /// Name of the object.
        name: Option<String>,
    },
    /// Create or update objects from manifests.
    Apply(ApplyArgs),
    /// Delete objects.
    Delete {
        /// Kind: devices, sets, workloads or edsr (or KIND/NAME).
        kind: String,
        /// Names of the objects.
        names: Vec<String>,
    },
    /// Approve enrolment requests (EdgeDeviceSignedRequests).
    Approve(EnrolmentRequests),
    /// Deny enrolment requests: the devices are refused (403 EnrolmentDenied) until
    /// approved.
    Deny(EnrolmentRequests),
    /// Add, change or remove labels of an object: `k=v` sets, `k-` removes.
    Label {
        /// The object: KIND/NAME.
        object: String,
        /// Label changes.
        #[arg(required = true)]
        changes: Vec<String>,
        /// Allow changing the value of an existing label.
        #[arg(long)]
        overwrite: bool,
    },
    /// Follow and steer the staged rollout of a workload.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Create a secret or a config map from literals and files.
    #[command(subcommand)]
    Create(CreateCommand),
    /// Print the CustomResourceDefinitions of the flotta resources as YAML.
    Crds,
    /// Write a kubeconfig for kubectl: the server and CA of the client
    /// configuration, its token (or --token), working in --namespace.
    Kubeconfig {
        /// Bearer token to put in the kubeconfig instead of the configuration's.
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// File to write (mode 0600) instead of standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check manifests offline and list every problem.
    Validate {
        /// A YAML or JSON file, a directory of them, or `-` for standard input.
        #[arg(
            short = 'f',
            long = "filename",
            required = true,
            value_name = "FILE|DIR|-"
        )]
        files: Vec<String>,
        /// Read the directories of -f and every directory below them.
        #[arg(short = 'R', long)]
        recursive: bool,
    },
    /// Create, list and delete API tokens (needs an admin token).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Ask what this client's token may do.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Sign in with the OIDC issuer the server trusts (in a browser, or with
    /// --device on a machine without one) and keep the token in the client
    /// configuration; later commands renew it before it expires.
    Login(crate::login::LoginArgs),
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: Shell,
    },
}

/// What `apply` applies, and how.
#[derive(Debug, Args)]
struct ApplyArgs {
    /// A YAML or JSON file, a directory of them, or `-` for standard input.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR|-"
    )]
    files: Vec<String>,
    /// Read the directories of -f and every directory below them.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Apply only the objects of the input this label selector selects; with
    /// --prune, also the objects that may be deleted.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    selector: Option<String>,
    /// After applying, delete the objects selected by -l, of the kinds of the input
    /// and in its namespaces, that the input does not hold.
    #[arg(long)]
    prune: bool,
    /// Send each object as a server-side apply: the server records who owns each
    /// field it sets (--field-manager) and refuses to change fields another
    /// manager owns, naming them, unless --force-conflicts.
    #[arg(long)]
    server_side: bool,
    /// The field manager of --server-side.
    #[arg(long, value_name = "NAME", default_value = "flotta")]
    field_manager: String,
    /// With --server-side, take over the fields other managers own.
    #[arg(long)]
    force_conflicts: bool,
    /// `client`: print what would be done and change nothing; `server`: send every
    /// write as a server-side dry run (`dryRun=All`), which stores nothing.
    #[arg(
        long,
        value_enum,
        default_value = "none",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client",
        value_name = "MODE"
    )]
    dry_run: DryRunMode,
}

/// The values of `--dry-run`, as kubectl's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DryRunMode {
    /// Apply for real.
    None,
    /// Change nothing: read the objects and say what would be done.
    Client,
    /// Send the writes with `dryRun=All`: checked by the server, stored nowhere.
    Server,
}

/// `flotta token ...`.
#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret (shown only once).
    Create {
        /// The token's name: the user name RoleBindings name.
        #[arg(long)]
        name: String,
        /// A built-in role: admin, operator, viewer or metrics; without one the
        /// token may do what RBAC bindings of its name and groups grant.
        #[arg(long)]
        role: Option<String>,
        /// A group the token's user is in (repeatable), e.g. `team-a`.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// Lifetime, e.g. `30d` or `12h`; refused (401) afterwards.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// Who or what the token is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens: id, name, role, groups, expiry.
    List,
    /// Delete a token by id.
    Delete {
        /// The token's id (from `token list`).
        id: String,
    },
}

/// `flotta auth ...`.
#[derive(Debug, Subcommand)]
enum AuthCommand {
    /// Whether this token may do something: `auth can-i list edgeworkloads -n team-a`.
    CanI(CanIArgs),
}

/// The question of `auth can-i`.
#[derive(Debug, Args)]
struct CanIArgs {
    /// The verb: get, list, watch, create, update, patch, delete, deletecollection.
    verb: String,
    /// The resource (any of its names, `workloads/status` for a subresource), or a
    /// path such as `/metrics`.
    resource: String,
    /// One object's name.
    name: Option<String>,
    /// Across every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

/// What `rollout` does to a workload's or device set's rollout.
#[derive(Debug, Subcommand)]
enum RolloutCommand {
    /// Show the rollout: revisions, batches and why it is paused.
    Status(RolloutObject),
    /// Pause it: no further device gets the new revision until `resume`.
    Pause(RolloutObject),
    /// Resume a rollout paused with `pause`.
    Resume(RolloutObject),
    /// Approve the next batch (for a policy with `manualApproval: true`).
    Approve(RolloutObject),
    /// Roll back to the previous revision, itself as a rollout.
    Undo(RolloutObject),
    /// List the revisions the server keeps.
    History(RolloutObject),
}

/// The workload or device set a `rollout` command acts on.
#[derive(Debug, Args)]
struct RolloutObject {
    /// The object: workload/NAME or set/NAME (or `workload NAME`, `set NAME`).
    object: String,
    /// Its name, when the first argument is only the kind.
    name: Option<String>,
}

/// What `create` makes.
#[derive(Debug, Subcommand)]
enum CreateCommand {
    /// A secret: `create secret generic NAME --from-literal KEY=VALUE --from-file [KEY=]PATH`.
    Secret {
        /// The secret type; only `generic` (an `Opaque` secret) is offered.
        #[command(subcommand)]
        kind: SecretKind,
    },
    /// A config map: `create configmap NAME --from-literal KEY=VALUE --from-file [KEY=]PATH`.
    #[command(alias = "cm")]
    Configmap(DataSource),
}

/// The kinds of secret `create secret` makes.
#[derive(Debug, Subcommand)]
enum SecretKind {
    /// An `Opaque` secret.
    Generic(DataSource),
}

/// A name and the keys of a secret or config map.
#[derive(Debug, Args)]
struct DataSource {
    /// Name of the object.
    name: String,
    /// A key and its value (repeatable); the value is not echoed anywhere.
    #[arg(long = "from-literal", value_name = "KEY=VALUE")]
    from_literal: Vec<String>,
    /// A file, its name as the key unless `KEY=` is given (repeatable).
    #[arg(long = "from-file", value_name = "[KEY=]PATH")]
    from_file: Vec<String>,
}

/// The enrolment requests `approve` and `deny` act on.
#[derive(Debug, clap::Args)]
struct EnrolmentRequests {
    /// Requests: edsr/NAME or NAME.
    names: Vec<String>,
    /// Every pending request, neither approved nor denied (matching -l).
    #[arg(long, conflicts_with = "names")]
    all: bool,
    /// Label selector for --all.
    #[arg(
        short = 'l',
        long = "selector",
        requires = "all",
        value_name = "SELECTOR"
    )]
    selector: Option<String>,
}

#[derive(Debug, Args)]
struct GetArgs {
    /// Kind: devices, sets, workloads, edsr or events (or KIND/NAME).
    kind: String,
    /// Name of one object.
    name: Option<String>,
    /// With `events`: only those about one object, KIND/NAME (e.g. device/edge-01;
    /// a bare NAME is a device).
    #[arg(long = "for", value_name = "KIND/NAME", conflicts_with = "name")]
    for_object: Option<String>,
    /// List across every namespace.
    #[arg(short = 'A', long, conflicts_with = "name")]
    all_namespaces: bool,
    /// Label selector, e.g. `site=lab,tier!=db`.
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    selector: Option<String>,
    /// Field selector, e.g. `metadata.name=edge-01`.
    #[arg(long, value_name = "SELECTOR")]
    field_selector: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Format,
    /// After listing, stream changes.
    #[arg(short = 'w', long)]
    watch: bool,
    /// Ask the server for pages of this many objects.
    #[arg(long, default_value_t = 500)]
    chunk_size: u32,
}

/// Why a command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The server or the connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// The command failed after reporting the details.
    #[error("{0}")]
    Failed(String),
    /// Standard output could not be written.
    #[error("cannot write output")]
    Output(#[from] std::io::Error),
}

/// The error and its causes on one line, without repeating a cause that the
/// message above it already includes.
fn one_line(error: &dyn std::error::Error) -> String {
    flotta_core::error_chain::error_chain(error).replace('\n', " ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}
