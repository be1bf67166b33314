//! `flotta`: the command line for flotta fleets, in the manner of kubectl.

mod commands;
mod describe;
mod kind;
mod manifest;
mod output;

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
    Apply {
        /// A YAML or JSON file, a directory of them, or `-` for standard input.
        #[arg(
            short = 'f',
            long = "filename",
            required = true,
            value_name = "FILE|DIR|-"
        )]
        files: Vec<String>,
    },
    /// Delete objects.
    Delete {
        /// Kind: devices, sets, workloads or edsr (or KIND/NAME).
        kind: String,
        /// Names of the objects.
        names: Vec<String>,
    },
    /// Approve enrolment requests (EdgeDeviceSignedRequests).
    Approve {
        /// Requests to approve: edsr/NAME or NAME.
        names: Vec<String>,
        /// Approve every pending request (matching -l).
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
    },
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
    /// Print the CustomResourceDefinitions of the flotta resources as YAML.
    Crds,
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
    },
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: Shell,
    },
}

#[derive(Debug, Args)]
struct GetArgs {
    /// Kind: devices, sets, workloads or edsr (or KIND/NAME).
    kind: String,
    /// Name of one object.
    name: Option<String>,
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
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line.replace('\n', " ")
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
