//! An example device agent built on `flotta-agent-lib`, for agent authors: the
//! builder, a custom [`WorkloadRuntime`](flotta_agent_lib::WorkloadRuntime)
//! ([`units::UnitRuntime`]), and the agent's events.
//!
//! ```text
//! custom-agent --server https://127.0.0.1:8043 --ca ca.crt \
//!     --registration-cert register.crt --registration-key register.key \
//!     --device-id vendor-7 --state-dir ./state --units-dir ./units
//! ```

mod units;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use flotta_agent_lib::{Agent, AgentEvent, AgentTiming};

/// A device agent that runs workloads as unit files and host processes.
#[derive(Debug, Parser)]
struct Args {
    /// Edge API URL of the flotta server.
    #[arg(long)]
    server: String,
    /// PEM file of the CA that signs the server's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// The fleet-wide registration certificate (PEM).
    #[arg(long)]
    registration_cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    registration_key: PathBuf,
    /// This device's id.
    #[arg(long)]
    device_id: String,
    /// Where the agent keeps its key, certificate and configurations.
    #[arg(long)]
    state_dir: PathBuf,
    /// Where workload units and their logs go.
    #[arg(long)]
    units_dir: PathBuf,
    /// Heartbeat period, seconds, until the server's configuration sets one.
    #[arg(long, default_value_t = 5)]
    heartbeat_seconds: u64,
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A line per agent event: what an integrator would forward to its own logging,
/// LEDs or watchdog.
fn describe(event: &AgentEvent) -> String {
    match event {
        AgentEvent::Registered => "registered: the device has its certificate".into(),
        AgentEvent::Resumed => "resumed with the persisted certificate".into(),
        AgentEvent::ConfigApplied { version } => format!("configuration {version} applied"),
        AgentEvent::ApplyFailed { version, reason } => {
            format!("configuration {version} failed: {reason}")
        }
        AgentEvent::RolledBack { to_version, .. } => format!("rolled back to {to_version:?}"),
        AgentEvent::CertificateRenewed { not_after, .. } => {
            format!("certificate renewed, valid until {not_after}")
        }
        AgentEvent::Disconnected { .. } => "disconnected by the server".into(),
        other => format!("{other:?}"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("custom-agent: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let runtime = Arc::new(units::UnitRuntime::new(&args.units_dir));
    let agent = Agent::builder()
        .server(&args.server)
        .ca_pem(read(&args.ca)?)
        .registration_identity(
            read(&args.registration_cert)?,
            read(&args.registration_key)?,
        )
        .device_id(&args.device_id)
        .label("vendor", "example")
        .state_dir(&args.state_dir)
        .runtime(runtime)
        .timing(
            AgentTiming::default()
                .with_heartbeat_period(Duration::from_secs(args.heartbeat_seconds.max(1)))
                .with_config_wait(Duration::from_secs(30)),
        )
        .build()
        .map_err(|e| format!("invalid settings: {e}"))?;

    let handle = agent.handle();
    let mut events = handle.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            println!("event: {}", describe(&event));
        }
    });

    let shutdown = async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async {
                match terminate.as_mut() {
                    Some(signal) => { signal.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    };
    agent
        .run(shutdown)
        .await
        .map_err(|e| format!("the agent stopped: {e}"))?;
    println!("stopped: {:?}", handle.status());
    // Dropping the runtime stops the processes it started (kill on drop).
    Ok(())
}
