//! `flotta-server`: the reference flotta server binary.
//!
//! Without a subcommand it runs the server; `flotta-server token create --role
//! viewer|operator|admin` prints a new management API token. Failures end with a
//! one-line `error: ...` message and exit code 1.

use std::process::ExitCode;

use clap::Parser;
use flotta_server::api::error_chain;
use flotta_server::app::{self, StartError};
use flotta_server::config::{CaCommand, Cli, Command, ServerConfig, TokenCommand};
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc: with thousands of connections served from a
/// few worker threads, glibc's per-thread arenas keep freed memory and the resident
/// size creeps up under steady load; jemalloc's decay purging hands it back. The
/// `jemalloc` feature (on by default) selects it.
#[cfg(all(feature = "jemalloc", unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FLOTTA_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let config = match ServerConfig::resolve(&cli.options) {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    match cli.command {
        None => match app::start(config).await {
            Ok(server) => {
                server.run_until_signal().await;
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        },
        Some(Command::Token { action }) => {
            let store = match open_for_cli(&config).await {
                Ok(store) => store,
                Err(error) => return fail(&error),
            };
            match action {
                TokenCommand::Create {
                    role,
                    name,
                    groups,
                    expires_in,
                    description,
                } => {
                    create_token(store.as_ref(), role, name, groups, expires_in, description).await
                }
                TokenCommand::List => match store.list_tokens().await {
                    Ok(tokens) => {
                        print!("{}", flotta_server::tokens::token_table(&tokens));
                        ExitCode::SUCCESS
                    }
                    Err(error) => fail(&error),
                },
                _ => fail(&std::io::Error::other("unsupported token command")),
            }
        }
        Some(Command::Ca { action }) => {
            let dir = config.pki_dir();
            let report = match action {
                CaCommand::Status => app::ca_status(&dir),
                CaCommand::Rotate => app::rotate_ca(&dir, time::OffsetDateTime::now_utc()).await,
                CaCommand::Retire => app::retire_ca(&dir),
                _ => return fail(&std::io::Error::other("unsupported ca command")),
            };
            match report {
                Ok(report) => {
                    println!("active CA:   {}", report.active);
                    match &report.previous {
                        Some(previous) => println!("retiring CA: {previous}"),
                        None => println!("retiring CA: none"),
                    }
                    if !matches!(action, CaCommand::Status) {
                        println!("restart the server for this to take effect");
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            }
        }
        Some(_) => fail(&std::io::Error::other("unsupported command")),
    }
}

async fn create_token(
    store: &dyn flotta_server::store::Store,
    role: Option<flotta_server::store::TokenRole>,
    name: Option<String>,
    groups: Vec<String>,
    expires_in: Option<String>,
    description: String,
) -> ExitCode {
    let name = name.unwrap_or_default();
    if (!name.is_empty() || !groups.is_empty())
        && let Err(problem) = flotta_core::rbac::check_token_subject(
            if name.is_empty() { "token" } else { &name },
            &groups,
        )
    {
        eprintln!("error: {}: {}", problem.path, problem.message);
        return ExitCode::FAILURE;
    }
    let expires_at = match expires_in.as_deref().map(flotta_core::rbac::parse_lifetime) {
        None => None,
        Some(Ok(lifetime)) => Some(time::OffsetDateTime::now_utc() + lifetime),
        Some(Err(problem)) => {
            eprintln!("error: --expires-in {problem}");
            return ExitCode::FAILURE;
        }
    };
    let spec = flotta_server::store::TokenSpec {
        name,
        role,
        groups,
        description,
        expires_at,
    };
    match store.issue_token(&spec).await {
        Ok(issued) => {
            println!("{}", issued.secret);
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

async fn open_for_cli(
    config: &ServerConfig,
) -> Result<std::sync::Arc<dyn flotta_server::store::Store>, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    app::open_store(&config.database).await
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {}", error_chain(error));
    ExitCode::FAILURE
}
