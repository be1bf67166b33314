//! `flotta-agent`: the reference device agent, a thin wrapper around
//! `flotta-agent-lib`.
//!
//! ```text
//! flotta-agent --config /etc/flotta/agent.toml
//! ```

mod cli;
mod config;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use flotta_agent_lib::runtime::{PodmanOptions, PodmanRuntime, ProcessOptions, ProcessRuntime};
use flotta_agent_lib::{
    Agent, AgentTiming, BootcUpdater, HealthChecks, MemoryRuntime, NoOsUpdater, OsUpdater,
    RpmOstreeUpdater, WorkloadRuntime,
};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::Invocation;
use crate::config::{AgentFile, OsHealthSection, OsKind, RuntimeKind, read};

use flotta_core::error_chain::error_chain;

/// The workload runtime the configuration asks for; the process runtime is also
/// returned on its own so that shutdown can stop its processes.
async fn runtime(
    file: &AgentFile,
) -> Result<(Arc<dyn WorkloadRuntime>, Option<Arc<ProcessRuntime>>), Box<dyn std::error::Error>> {
    Ok(match file.runtime {
        RuntimeKind::Memory => (Arc::new(MemoryRuntime::new()), None),
        RuntimeKind::Process => {
            let section = file.process.clone().unwrap_or_default();
            let mut options = ProcessOptions::new(
                section
                    .log_dir
                    .unwrap_or_else(|| file.state_dir.join("workloads")),
            );
            if let Some(seconds) = section.initial_backoff_seconds {
                options.restart.initial = Duration::from_secs(seconds);
            }
            if let Some(seconds) = section.max_backoff_seconds {
                options.restart.max = Duration::from_secs(seconds);
            }
            if let Some(seconds) = section.stop_grace_seconds {
                options.stop_grace = Duration::from_secs(seconds);
            }
            let process = Arc::new(ProcessRuntime::open(options).await?);
            (process.clone(), Some(process))
        }
        RuntimeKind::Podman => {
            let section = file.podman.clone().unwrap_or_default();
            check_rootless(section.rootless)?;
            let mut options = PodmanOptions::new(
                section
                    .manifest_dir
                    .unwrap_or_else(|| file.state_dir.join("podman")),
            );
            if let Some(binary) = section.binary {
                options.program = binary;
            }
            options.global_args = section.global_args;
            options.authfile = section.authfile;
            (Arc::new(PodmanRuntime::open(options).await?), None)
        }
    })
}

/// Checks `podman.rootless` against the user the agent runs as.
fn check_rootless(rootless: Option<bool>) -> Result<(), String> {
    let root = rustix::process::getuid().is_root();
    match rootless {
        Some(true) if root => Err(
            "podman.rootless = true, but the agent runs as root: run it as the user whose rootless podman should run the workloads".into(),
        ),
        Some(false) if !root => Err(
            "podman.rootless = false, but the agent does not run as root: run it as root, or reach a rootful podman service with podman.global_args = [\"--remote\", \"--url\", \"unix:///run/podman/podman.sock\"] and leave rootless unset".into(),
        ),
        _ => Ok(()),
    }
}

fn os_updater(kind: OsKind, remotes_dir: Option<&std::path::Path>) -> Arc<dyn OsUpdater> {
    match kind {
        OsKind::None => Arc::new(NoOsUpdater),
        OsKind::RpmOstree => Arc::new(match remotes_dir {
            Some(dir) => RpmOstreeUpdater::new().with_remotes_dir(dir),
            None => RpmOstreeUpdater::new(),
        }),
        OsKind::Bootc => Arc::new(BootcUpdater::new()),
    }
}

fn health_checks(section: OsHealthSection) -> HealthChecks {
    let mut checks = HealthChecks::default();
    if let Some(dirs) = section.greenboot_dirs {
        checks.greenboot_dirs = dirs;
    }
    checks.commands = section.commands;
    checks.urls = section.urls;
    checks.units = section.units;
    if let Some(seconds) = section.interval_seconds {
        checks.interval = Duration::from_secs(seconds);
    }
    checks
}

async fn build(
    config: &Path,
) -> Result<(Agent, Option<Arc<ProcessRuntime>>), Box<dyn std::error::Error>> {
    let file = AgentFile::load(config)?;
    let (runtime, process) = runtime(&file).await?;
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
        .os_updater(os_updater(file.os, file.ostree_remotes_dir.as_deref()))
        .health_checks(health_checks(file.os_health.clone().unwrap_or_default()))
        .timing(timing);
    if let Some(mib) = file.prefetch_min_free_mib {
        builder =
            builder.prefetch_min_free(file.state_dir.clone(), mib.saturating_mul(1024 * 1024));
    }
    for (key, value) in &file.labels {
        builder = builder.label(key.clone(), value.clone());
    }
    if let Some(command) = &file.ansible_playbook {
        builder = builder.ansible_playbook(command.clone());
    }
    if let Some(roots) = &file.file_roots {
        builder = builder.file_roots(roots.iter().map(|r| r.display().to_string()));
    }
    Ok((builder.build()?, process))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            None
        }
    };
    let term = async {
        match terminate.as_mut() {
            Some(stream) => {
                stream.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(error) = result {
                tracing::error!(%error, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
        () = term => {}
    }
    tracing::info!("shutting down");
}

// One thread: the agent waits on timers and sockets almost all the time, and each
// worker thread would cost stack and wake-ups for nothing.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match cli::parse(
        std::env::args_os().skip(1),
        std::env::var_os(cli::CONFIG_VARIABLE),
    ) {
        Ok(Invocation::Run { config }) => config,
        Ok(Invocation::Help) => {
            print!("{}", cli::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            println!("flotta-agent {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("flotta-agent: {error}\n\n{}", cli::usage());
            return ExitCode::from(2);
        }
    };
    // `RUST_LOG` as a list of `target=level` and a bare default level (`info`,
    // `flotta_agent_lib=debug,warn`); the span and field filters of tracing's
    // `EnvFilter` would bring a regex engine into the binary for nothing here.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_ansi(false))
        .with(filter)
        .init();
    let (agent, process) = match build(&config).await {
        Ok(built) => built,
        Err(error) => {
            eprintln!("flotta-agent: {}", error_chain(error.as_ref()));
            return ExitCode::from(2);
        }
    };
    tracing::info!(device = agent.device_id(), "flotta-agent starting");
    let result = agent.run(shutdown_signal()).await;
    // Workload processes are the agent's children: they stop with it (a restarted
    // agent starts them again from its persisted configuration).
    if let Some(process) = process {
        process.shutdown().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flotta-agent: {}", error_chain(&error));
            ExitCode::FAILURE
        }
    }
}
