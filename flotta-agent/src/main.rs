//! `flotta-agent`: the reference device agent, a thin wrapper around
//! `flotta-agent-lib`.
//!
//! ```text
//! flotta-agent --config /etc/flotta/agent.toml
//! ```

mod config;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use flotta_agent_lib::{Agent, AgentTiming, MemoryRuntime, WorkloadRuntime};

use crate::config::{AgentFile, RuntimeKind, read};

/// The flotta device agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Agent configuration file (TOML).
    #[arg(
        long,
        short,
        env = "FLOTTA_AGENT_CONFIG",
        default_value = "/etc/flotta/agent.toml"
    )]
    config: PathBuf,
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn build(cli: &Cli) -> Result<Agent, Box<dyn std::error::Error>> {
    let file = AgentFile::load(&cli.config)?;
    let runtime: Arc<dyn WorkloadRuntime> = match file.runtime {
        RuntimeKind::Memory => Arc::new(MemoryRuntime::new()),
    };
    let mut timing = AgentTiming::default();
    if let Some(seconds) = file.heartbeat_period_seconds.filter(|s| *s > 0) {
        timing = timing.with_heartbeat_period(Duration::from_secs(seconds));
    }
    let mut builder = Agent::builder()
        .server(file.server.clone())
        .ca_pem(read(&file.ca, "ca")?)
        .registration_identity(
            read(&file.registration_certificate, "registration_certificate")?,
            read(&file.registration_key, "registration_key")?,
        )
        .device_id(file.device_id()?)
        .namespace(file.namespace.clone())
        .state_dir(file.state_dir.clone())
        .runtime(runtime)
        .timing(timing);
    for (key, value) in &file.labels {
        builder = builder.label(key.clone(), value.clone());
    }
    Ok(builder.build()?)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let agent = match build(&cli) {
        Ok(agent) => agent,
        Err(error) => {
            eprintln!("flotta-agent: {}", error_chain(error.as_ref()));
            return ExitCode::from(2);
        }
    };
    tracing::info!(device = agent.device_id(), "flotta-agent starting");
    let shutdown = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down");
    };
    match agent.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flotta-agent: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}
