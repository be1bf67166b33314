//! `flotta-sim`: runs a fleet of simulated devices against a real flotta server
//! over mutual TLS and reports throughput, latency percentiles, errors, the
//! server's CPU time and memory, and the bytes each device puts on the wire.
//!
//! ```text
//! flotta-sim enrol       --devices 1000                 # enrolment storm
//! flotta-sim steady      --devices 1000 --duration 30   # heartbeat ingest
//! flotta-sim propagate   --devices 10000 --model light  # one change to every device
//! flotta-sim reconnect   --devices 1000                 # server restarted under load
//! flotta-sim flotta-poll --devices 1000 --duration 60   # Flotta's 5 s polling vs ours
//! flotta-sim rollout     --devices 10000                # a change in 3 enforced batches
//! flotta-sim replicas    --devices 2000 --spawn-server postgres --database URL
//!                                                       # two replicas vs one, one killed
//! flotta-sim baseline-mtls  --devices 1000              # bare axum handler, same TLS
//! flotta-sim baseline-ecdsa                             # raw P-256 rates
//! ```
//!
//! Without `--server` the simulator starts `flotta-server` itself (`--spawn-server
//! sqlite|postgres`) as a separate process, so its CPU time and memory come from
//! `/proc` apart from the simulator's own. See `docs/simulator.md`.

mod baseline;
mod fleet;
mod limits;
mod report;
mod scenario;
mod server;
mod stats;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::fleet::FleetTarget;
use crate::limits::raise_open_files_limit;
use crate::report::Report;
use crate::scenario::{Run, Settings};
use crate::server::{Backend, ServerProcess};

/// What went wrong in a simulator run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A file or socket operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server under test could not be started, restarted or used.
    #[error("server: {0}")]
    Server(String),
    /// The fleet did not reach the state a scenario starts from.
    #[error("setup: {0}")]
    Setup(String),
    /// One simulated device failed.
    #[error("device {device}: {reason}")]
    Device {
        /// Its id.
        device: String,
        /// What failed.
        reason: String,
    },
}

/// How devices are simulated where a scenario can do both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Model {
    /// Real `flotta-agent-lib` agents (two connections each: heartbeat, long-poll).
    Agent,
    /// Enrolled identities with one Edge API connection each.
    Light,
}

/// Which server `flotta-sim` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SpawnServer {
    /// `flotta-server` with embedded SQLite.
    Sqlite,
    /// `flotta-server` with PostgreSQL at `--database`.
    Postgres,
}

#[derive(Debug, Parser)]
#[command(
    name = "flotta-sim",
    version,
    about = "Fleet simulator and baselines for flotta-rs."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A storm of N enrolments by real agents.
    Enrol(RunArgs),
    /// Heartbeats: back to back (--period 0, the ingest rate) or every period.
    Steady(RunArgs),
    /// One workload change (three times) to N long-polling devices.
    Propagate(RunArgs),
    /// The server restarted under load; time until every device is back.
    Reconnect(RunArgs),
    /// Flotta's polling (full config every 5 s) against our long-poll, per device-hour.
    FlottaPoll(RunArgs),
    /// One workload change rolled out in three enforced batches (10 %, 40 %, the
    /// rest), then the next change with no policy (all at once) as the baseline;
    /// fails if a device received the change outside a released batch.
    #[command(mut_arg("devices", |arg| arg.default_value("10000")))]
    Rollout(RunArgs),
    /// Two replicas on one PostgreSQL database beside one, in the same run:
    /// heartbeats/s and CPU per heartbeat, propagation across replicas, then one
    /// replica killed under load (time until B serves every device of A). Needs
    /// `--spawn-server postgres --database URL`.
    #[command(mut_arg("devices", |arg| arg.default_value("2000")))]
    Replicas(RunArgs),
    /// The `steady` load against a bare axum handler behind the same mTLS set-up.
    BaselineMtls(RunArgs),
    /// Raw ECDSA P-256 key generation, signing and verification rates.
    BaselineEcdsa {
        /// Seconds per operation measured.
        #[arg(long, default_value_t = 2.0)]
        duration: f64,
        /// Where to write the JSON report.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Serves the bare baseline handler (started by `baseline-mtls`).
    #[command(hide = true)]
    BareServer {
        /// Directory for its PKI.
        #[arg(long)]
        dir: PathBuf,
        /// Listen address.
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Edge API of a running server (`https://host:port`); without it a server is started.
    #[arg(long, requires_all = ["ca", "registration_cert", "registration_key"])]
    server: Option<String>,
    /// CA certificate of the running server (PEM).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Registration certificate of the running server (PEM).
    #[arg(long)]
    registration_cert: Option<PathBuf>,
    /// Registration key of the running server (PEM).
    #[arg(long)]
    registration_key: Option<PathBuf>,
    /// Management client configuration (admin.yaml) of the running server.
    #[arg(long)]
    admin_config: Option<PathBuf>,
    /// Store of the server the simulator starts.
    #[arg(long, value_enum, default_value_t = SpawnServer::Sqlite)]
    spawn_server: SpawnServer,
    /// PostgreSQL URL for `--spawn-server postgres`.
    #[arg(long, env = "FLOTTA_SIM_DATABASE")]
    database: Option<String>,
    /// The `flotta-server` binary (default: next to this one).
    #[arg(long, env = "FLOTTA_SERVER_BIN")]
    server_bin: Option<PathBuf>,
    /// Real agents or light devices (propagate: agents up to 2,000 devices; steady:
    /// light unless asked); enrol always runs agents, reconnect and flotta-poll light.
    #[arg(long, value_enum)]
    model: Option<Model>,
    /// Loopback source addresses the devices' connections are spread over (device
    /// i connects from 127.0.0.(2 + i % N)); 0 lets the OS choose. Default: enough
    /// for at most 20,000 connections per address against a loopback server, 0
    /// against another host.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=253))]
    source_addresses: Option<u8>,
    /// Devices speak HTTP/1.1 only (default: HTTP/2, negotiated by ALPN), for a
    /// comparison in the same sitting; Flotta's model in flotta-poll always does.
    #[arg(long)]
    http1: bool,
    /// Seconds measured (steady, flotta-poll: per model).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Heartbeat period in seconds; 0 sends heartbeats back to back.
    #[arg(long, default_value_t = 0.0)]
    period: f64,
    /// Long-poll wait in seconds (propagate, agents).
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Between heartbeats, wait in a configuration long-poll (steady).
    #[arg(long)]
    long_poll: bool,
    /// Enrolments in flight at most.
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
    /// Seconds between samples of the server's memory.
    #[arg(long, default_value_t = 5.0)]
    sample_every: f64,
    /// Where to write the JSON report (default `flotta-sim-<scenario>.json`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Exit 0 even when operations failed.
    #[arg(long)]
    allow_errors: bool,
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::ZERO)
}

fn read(path: &Path) -> Result<String, SimError> {
    std::fs::read_to_string(path).map_err(|source| SimError::Io {
        what: format!("reading {}", path.display()),
        source,
    })
}

fn random_prefix() -> String {
    format!("sim-{:08x}", getrandom::u32().unwrap_or(0))
}

fn server_binary(args: &RunArgs) -> Result<PathBuf, SimError> {
    if let Some(path) = &args.server_bin {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe().map_err(|source| SimError::Io {
        what: "locating flotta-sim".into(),
        source,
    })?;
    Ok(exe.with_file_name("flotta-server"))
}

fn target_from_dir(server: &ServerProcess) -> Result<FleetTarget, SimError> {
    let pki = server.data_dir.join("pki");
    Ok(FleetTarget {
        source_addresses: 0,
        http1: false,
        server_url: format!("https://{}", server.edge_addr),
        ca_pem: read(&pki.join("ca.crt"))?,
        registration: (
            read(&pki.join("register.crt"))?,
            read(&pki.join("register.key"))?,
        ),
        prefix: random_prefix(),
    })
}

/// Whether `url`'s host is a loopback address, from which 127.0.0.x sources reach.
fn is_loopback_url(url: &str) -> bool {
    let authority = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default();
    if let Ok(address) = authority.parse::<SocketAddr>() {
        return address.ip().is_loopback();
    }
    authority.split(':').next() == Some("localhost")
}

/// The model a scenario runs when `--model` is not given.
fn default_model(name: &str, devices: usize) -> Model {
    if name == "propagate" && devices <= 2000 {
        Model::Agent
    } else {
        Model::Light
    }
}

async fn run_scenario(name: &str, args: RunArgs) -> Result<Report, SimError> {
    let model = args
        .model
        .unwrap_or_else(|| default_model(name, args.devices));
    let settings = Settings {
        devices: args.devices,
        model,
        duration: seconds(args.duration),
        period: seconds(args.period),
        wait: Duration::from_secs(args.wait.max(1)),
        long_poll: args.long_poll,
        concurrency: args.concurrency,
        progress: !args.no_progress,
        sample_every: seconds(args.sample_every.max(0.1)),
    };
    // Declared before `run` so the server stops before its directory goes.
    let data_dir = tempfile::Builder::new()
        .prefix("flotta-sim-")
        .tempdir()
        .map_err(|source| SimError::Io {
            what: "creating a data directory".into(),
            source,
        })?;
    if name == "replicas" && (args.server.is_some() || args.spawn_server != SpawnServer::Postgres) {
        return Err(SimError::Setup(
            "replicas starts two servers on one database: use --spawn-server postgres \
             --database URL (not --server)"
                .into(),
        ));
    }
    let mut spawned = None;
    let mut run = if let Some(url) = &args.server {
        let file = |path: &Option<PathBuf>| path.as_deref().map(read).transpose();
        Run {
            target: FleetTarget {
                server_url: url.clone(),
                ca_pem: file(&args.ca)?.unwrap_or_default(),
                registration: (
                    file(&args.registration_cert)?.unwrap_or_default(),
                    file(&args.registration_key)?.unwrap_or_default(),
                ),
                prefix: random_prefix(),
                source_addresses: 0,
                http1: false,
            },
            server: None,
            server_pid: Arc::new(AtomicU32::new(0)),
            admin_config: args.admin_config.clone(),
            backend: "external".into(),
            settings,
            preset_devices: None,
        }
    } else if name == "baseline-mtls" {
        let exe = std::env::current_exe().map_err(|source| SimError::Io {
            what: "locating flotta-sim".into(),
            source,
        })?;
        let server = ServerProcess::start_bare(&exe, data_dir.path())?;
        let devices = baseline::bare_devices(data_dir.path(), settings.devices)?;
        Run {
            target: target_from_dir(&server)?,
            server_pid: Arc::new(AtomicU32::new(server.pid())),
            server: Some(server),
            admin_config: None,
            backend: "bare".into(),
            settings,
            preset_devices: Some(devices),
        }
    } else {
        let backend = match args.spawn_server {
            SpawnServer::Sqlite => Backend::Sqlite,
            SpawnServer::Postgres => Backend::Postgres(args.database.clone().ok_or_else(|| {
                SimError::Setup("--spawn-server postgres needs --database URL".into())
            })?),
        };
        let server =
            ServerProcess::start_flotta(&server_binary(&args)?, data_dir.path(), &backend)?;
        spawned = Some(backend.clone());
        Run {
            target: target_from_dir(&server)?,
            server_pid: Arc::new(AtomicU32::new(server.pid())),
            admin_config: Some(server.data_dir.join("admin.yaml")),
            server: Some(server),
            backend: match backend {
                Backend::Sqlite => "sqlite".into(),
                Backend::Postgres(_) => "postgres".into(),
            },
            settings,
            preset_devices: None,
        }
    };
    run.target.http1 = args.http1;
    run.target.source_addresses = if is_loopback_url(&run.target.server_url) {
        // Agents over HTTP/1.1 hold two connections each (heartbeat, configuration
        // long-poll); over HTTP/2 one. A device of `replicas` has a client for
        // each replica.
        let per_device =
            if ((model == Model::Agent || name == "enrol") && args.http1) || name == "replicas" {
                2
            } else {
                1
            };
        args.source_addresses
            .unwrap_or_else(|| fleet::source_addresses_for(args.devices, per_device))
    } else {
        args.source_addresses.unwrap_or(0)
    };
    let report = match name {
        "enrol" => scenario::enrol(&run).await,
        "steady" | "baseline-mtls" => scenario::steady(&run, name).await,
        "propagate" => scenario::propagate(&run).await,
        "reconnect" => scenario::reconnect(&mut run).await,
        "rollout" => scenario::rollout(&run).await,
        "replicas" => match &spawned {
            Some(backend) => scenario::replicas(&mut run, backend).await,
            None => Err(SimError::Setup("replicas needs a spawned server".into())),
        },
        _ => scenario::flotta_poll(&run).await,
    };
    drop(run);
    report
}

fn finish(report: &Report, json: Option<PathBuf>, allow_errors: bool) -> ExitCode {
    print!("{}", report.table());
    let path =
        json.unwrap_or_else(|| PathBuf::from(format!("flotta-sim-{}.json", report.scenario)));
    if let Err(error) = report.write_json(&path) {
        return fail(&error);
    }
    println!("report written to {}", path.display());
    if !report.violations.is_empty() {
        for violation in report.violations.iter().take(20) {
            eprintln!("violation: {violation}");
        }
        eprintln!(
            "error: {} violation(s) of the scenario's guarantees",
            report.violations.len()
        );
        return ExitCode::FAILURE;
    }
    if report.errors > 0 && !allow_errors {
        eprintln!("error: {} operations failed", report.errors);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {}", flotta_core::error_chain::error_chain(error));
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every simulated connection is a descriptor, here and in the server this
    // process starts (which inherits the limit).
    match raise_open_files_limit() {
        Ok(limit) => {
            if limit < 4096 {
                eprintln!("note: open files are limited to {limit}; large fleets will fail");
            }
        }
        Err(error) => eprintln!("note: could not raise the open-files limit: {error}"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    let (name, args) = match cli.command {
        Command::BareServer { dir, listen } => {
            return match runtime.block_on(baseline::serve_bare(&dir, listen)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            };
        }
        Command::BaselineEcdsa { duration, json } => {
            return match baseline::ecdsa(seconds(duration)) {
                Ok(report) => finish(&report, json, false),
                Err(error) => fail(&error),
            };
        }
        Command::Enrol(args) => ("enrol", args),
        Command::Steady(args) => ("steady", args),
        Command::Propagate(args) => ("propagate", args),
        Command::Reconnect(args) => ("reconnect", args),
        Command::FlottaPoll(args) => ("flotta-poll", args),
        Command::Rollout(args) => ("rollout", args),
        Command::Replicas(args) => ("replicas", args),
        Command::BaselineMtls(args) => ("baseline-mtls", args),
    };
    let (json, allow_errors) = (args.json.clone(), args.allow_errors);
    match runtime.block_on(run_scenario(name, args)) {
        Ok(report) => finish(&report, json, allow_errors),
        Err(error) => fail(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_servers_are_recognised() {
        assert!(is_loopback_url("https://127.0.0.1:8043"));
        assert!(is_loopback_url("https://127.3.0.1:8043/"));
        assert!(is_loopback_url("https://[::1]:8043"));
        assert!(is_loopback_url("https://localhost:8043"));
        assert!(!is_loopback_url("https://10.0.0.5:8043"));
        assert!(!is_loopback_url("https://flotta.example:8043"));
    }

    #[test]
    fn command_line_parses_every_scenario() {
        for scenario in [
            "enrol",
            "steady",
            "propagate",
            "reconnect",
            "flotta-poll",
            "rollout",
            "replicas",
            "baseline-mtls",
        ] {
            let cli =
                Cli::try_parse_from(["flotta-sim", scenario, "--devices", "7", "--period", "0.5"])
                    .expect("parses");
            let args = match cli.command {
                Command::Enrol(a)
                | Command::Steady(a)
                | Command::Propagate(a)
                | Command::Reconnect(a)
                | Command::FlottaPoll(a)
                | Command::Rollout(a)
                | Command::Replicas(a)
                | Command::BaselineMtls(a) => a,
                other => panic!("{other:?}"),
            };
            assert_eq!(args.devices, 7);
            assert_eq!(seconds(args.period), Duration::from_millis(500));
        }
        assert!(
            Cli::try_parse_from(["flotta-sim", "steady", "--source-addresses", "254"]).is_err()
        );
        assert_eq!(default_model("propagate", 2000), Model::Agent);
        assert_eq!(default_model("propagate", 2001), Model::Light);
        assert_eq!(default_model("steady", 10), Model::Light);
        assert_eq!(default_model("rollout", 100), Model::Light);
        // The rollout scenario's fleet is 10,000 devices unless told.
        let Command::Rollout(args) = Cli::try_parse_from(["flotta-sim", "rollout"])
            .expect("parses")
            .command
        else {
            panic!("not the rollout scenario");
        };
        assert_eq!(args.devices, 10_000);
        // A running server needs its CA and registration identity.
        assert!(Cli::try_parse_from(["flotta-sim", "steady", "--server", "https://h:1"]).is_err());
    }
}
