//! `flotta login`: signs in with an OIDC issuer the server trusts and keeps the ID
//! token (and how to renew it) in the client configuration; every later command
//! renews it shortly before it expires ([`renew_if_due`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use flotta_client::oidc::{Issuer, LoopbackRedirect, Tokens, fetch_auth_config, random_token};
use flotta_core::client_config::{ClientConfig, OidcLogin};
use time::OffsetDateTime;

use crate::{CliError, DEFAULT_CONFIG, GlobalArgs};

/// How long before its expiry a token is renewed.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// `flotta login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The management API's URL [default: the client configuration's server].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// PEM file of the CA of the server's certificate [default: the client
    /// configuration's].
    #[arg(long, value_name = "FILE")]
    certificate_authority: Option<PathBuf>,
    /// The issuer to sign in with, when the server trusts several.
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// PEM file of the CA of the issuer's certificate [default: the system's trust
    /// store].
    #[arg(long, value_name = "FILE")]
    issuer_certificate_authority: Option<PathBuf>,
    /// Sign in with the device-authorization grant: a code to enter on any device
    /// with a browser (for machines without one).
    #[arg(long)]
    device: bool,
    /// Port of the loopback address the browser returns to [default: any free one].
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    port: u16,
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn config_path(global: &GlobalArgs) -> PathBuf {
    global
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// Signs in and writes the client configuration (mode 0600).
pub async fn login(global: &GlobalArgs, args: LoginArgs) -> Result<(), CliError> {
    let path = config_path(global);
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => Some(
            ClientConfig::from_yaml(&text, &path).map_err(|e| CliError::Usage(e.to_string()))?,
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(CliError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let server = match (&args.server, &existing) {
        (Some(server), _) => server.clone(),
        (None, Some(config)) => config.server.clone(),
        (None, None) => {
            return Err(CliError::Usage(format!(
                "{} does not exist: name the server with --server URL and its CA with --certificate-authority FILE",
                path.display()
            )));
        }
    };
    let server_ca = match (&args.certificate_authority, &existing) {
        (Some(file), _) => read(file)?,
        (None, Some(config)) => config.certificate_authority.clone(),
        (None, None) => {
            return Err(CliError::Usage(
                "name the server's CA with --certificate-authority FILE".into(),
            ));
        }
    };
    let auth = fetch_auth_config(&server, &server_ca)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let provider = match &args.issuer {
        Some(issuer) => auth
            .providers
            .iter()
            .find(|p| &p.issuer == issuer)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "the server does not trust the issuer {issuer}; it trusts: {}",
                    issuers(&auth)
                ))
            })?,
        None => match auth.providers.as_slice() {
            [] => {
                return Err(CliError::Usage(format!(
                    "the server {server} trusts no OIDC issuer: sign in with a token (flotta token create) instead"
                )));
            }
            [only] => only,
            _ => {
                return Err(CliError::Usage(format!(
                    "the server trusts several issuers; choose one with --issuer: {}",
                    issuers(&auth)
                )));
            }
        },
    };
    let issuer_ca = match &args.issuer_certificate_authority {
        Some(file) => read(file)?,
        None => existing
            .as_ref()
            .and_then(|c| c.oidc.as_ref())
            .filter(|o| o.issuer == provider.issuer)
            .map(|o| o.issuer_certificate_authority.clone())
            .unwrap_or_default(),
    };
    let issuer = Issuer::discover(&provider.issuer, &provider.client_id, &issuer_ca)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let tokens = if args.device {
        device_flow(&issuer, &provider.scopes).await?
    } else {
        browser_flow(&issuer, &provider.scopes, args.port).await?
    };
    let config = ClientConfig {
        kind: flotta_core::client_config::CLIENT_CONFIG_KIND.to_owned(),
        server,
        edge_server: existing
            .as_ref()
            .map(|c| c.edge_server.clone())
            .unwrap_or_default(),
        certificate_authority: server_ca,
        token: tokens.id_token.clone(),
        oidc: Some(OidcLogin {
            issuer: provider.issuer.clone(),
            client_id: provider.client_id.clone(),
            refresh_token: tokens.refresh_token.clone(),
            issuer_certificate_authority: issuer_ca,
        }),
    };
    save(&config, &path)?;
    let who = flotta_core::oidc::unverified_claims(&tokens.id_token)
        .ok()
        .and_then(|c| {
            ["preferred_username", "email", "sub"]
                .iter()
                .find_map(|k| c.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
        })
        .unwrap_or_else(|| "?".into());
    eprintln!(
        "Signed in as {who} with {}; the token is in {}.",
        provider.issuer,
        path.display()
    );
    Ok(())
}

fn issuers(auth: &flotta_core::oidc::AuthConfig) -> String {
    auth.providers
        .iter()
        .map(|p| p.issuer.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The authorization-code flow with PKCE through the user's browser.
async fn browser_flow(issuer: &Issuer, scopes: &[String], port: u16) -> Result<Tokens, CliError> {
    let redirect = LoopbackRedirect::bind(port)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let verifier = random_token(48);
    let state = random_token(16);
    let url = issuer
        .authorization_url(redirect.redirect_uri(), scopes, &state, &verifier)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    eprintln!("Open this address in a browser to sign in:\n\n    {url}\n");
    // $BROWSER, as many command-line tools honour it; a failure to start it is only
    // a note: the address is printed above.
    if let Some(browser) = std::env::var_os("BROWSER").filter(|b| !b.is_empty())
        && let Err(error) = std::process::Command::new(&browser)
            .arg(&url)
            .stdin(std::process::Stdio::null())
            .spawn()
    {
        eprintln!("(could not start $BROWSER {browser:?}: {error})");
    }
    let code = redirect
        .wait(&state)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    issuer
        .exchange_code(&code, redirect.redirect_uri(), &verifier)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))
}

/// The device-authorization grant.
async fn device_flow(issuer: &Issuer, scopes: &[String]) -> Result<Tokens, CliError> {
    let verifier = random_token(48);
    let authorization = issuer
        .start_device(scopes, &verifier)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    match &authorization.verification_uri_complete {
        Some(complete) => eprintln!(
            "Open {complete} on any device to sign in\n(or open {} and enter the code {}).",
            authorization.verification_uri, authorization.user_code
        ),
        None => eprintln!(
            "Open {} on any device and enter the code {} to sign in.",
            authorization.verification_uri, authorization.user_code
        ),
    }
    issuer
        .poll_device(&authorization, &verifier)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))
}

fn save(config: &ClientConfig, path: &Path) -> Result<(), CliError> {
    let text = config.to_yaml().map_err(std::io::Error::other)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    crate::commands::write_private(path, text.as_bytes())?;
    Ok(())
}

/// Renews the configuration's OIDC token when it expires within a minute and a
/// refresh token is at hand, and writes the configuration back. Nothing happens for
/// a configuration without OIDC or without a file; a failed renewal is reported on
/// standard error and the command goes on (the server then says the token expired).
pub async fn renew_if_due(global: &GlobalArgs) {
    let path = config_path(global);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let Ok(mut config) = ClientConfig::from_yaml(&text, &path) else {
        return;
    };
    let Some(login) = config.oidc.clone() else {
        return;
    };
    let Some(refresh_token) = login.refresh_token.clone() else {
        return;
    };
    let expires = flotta_core::oidc::unverified_claims(&config.token)
        .ok()
        .and_then(|c| c.get("exp").and_then(|v| v.as_i64()));
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if expires.is_some_and(|exp| exp - now > RENEW_BEFORE.as_secs() as i64) {
        return;
    }
    let renewed = async {
        let issuer = Issuer::discover(
            &login.issuer,
            &login.client_id,
            &login.issuer_certificate_authority,
        )
        .await?;
        issuer.refresh(&refresh_token).await
    }
    .await;
    match renewed {
        Ok(tokens) => {
            config.token = tokens.id_token;
            if let Some(oidc) = config.oidc.as_mut()
                && tokens.refresh_token.is_some()
            {
                oidc.refresh_token = tokens.refresh_token;
            }
            if let Err(error) = save(&config, &path) {
                eprintln!("warning: cannot save the renewed token: {error}");
            }
        }
        Err(error) => eprintln!(
            "warning: cannot renew the token from {} ({error}); run `flotta login` again",
            login.issuer
        ),
    }
}
