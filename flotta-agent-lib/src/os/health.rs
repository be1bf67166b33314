//! [`HealthChecks`]: what decides whether a new deployment stays. Greenboot's
//! check scripts, plus the user's commands, HTTP URLs and systemd units.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command::{CommandRunner, HostCommands};

/// Greenboot's check directories: scripts shipped with the OS, then the
/// administrator's.
pub const GREENBOOT_DIRS: [&str; 2] = ["/usr/lib/greenboot/check", "/etc/greenboot/check"];

/// The checks run in the health window after a boot into a new deployment.
///
/// - greenboot: in each directory of [`greenboot_dirs`](Self::greenboot_dirs),
///   every `*.sh` file of `required.d` must exit 0 (a failure fails the round with
///   the script's output), and those of `wanted.d` are run and a failure is only a
///   warning, as greenboot does; scripts run with `bash`, in name order;
/// - `commands`: each runs with `sh -c` and must exit 0;
/// - `urls`: each (`http://` only) must answer a GET with a 2xx status within
///   10 s;
/// - `units`: `systemctl is-active UNIT` must exit 0 for each.
///
/// A round passes when all pass; the agent repeats rounds until one passes or
/// `rollbackAfterSeconds` has passed.
#[derive(Debug, Clone)]
pub struct HealthChecks {
    /// Greenboot check roots (each holding `required.d` and `wanted.d`); missing
    /// directories are skipped.
    pub greenboot_dirs: Vec<PathBuf>,
    /// Shell commands that must succeed.
    pub commands: Vec<String>,
    /// `http://` URLs that must answer 2xx.
    pub urls: Vec<String>,
    /// systemd units that must be active.
    pub units: Vec<String>,
    /// Wait between rounds.
    pub interval: Duration,
}

impl Default for HealthChecks {
    fn default() -> Self {
        Self {
            greenboot_dirs: GREENBOOT_DIRS.iter().map(PathBuf::from).collect(),
            commands: Vec::new(),
            urls: Vec::new(),
            units: Vec::new(),
            interval: Duration::from_secs(5),
        }
    }
}

/// A check that did not pass, and what it printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("health check {check} failed: {output}")]
pub struct CheckFailure {
    /// The check: a script path, `command: ...`, `url: ...`, `unit: ...`.
    pub check: String,
    /// Its exit status and output, or the error.
    pub output: String,
}

impl HealthChecks {
    /// One round of every check; `Ok` with the warnings of `wanted.d` scripts, or
    /// the first failure.
    pub async fn run_round(&self) -> Result<Vec<CheckFailure>, CheckFailure> {
        let mut warnings = Vec::new();
        for dir in &self.greenboot_dirs {
            for script in scripts(&dir.join("required.d"))? {
                self.run_script(&script).await?;
            }
            for script in scripts(&dir.join("wanted.d"))? {
                if let Err(failure) = self.run_script(&script).await {
                    warnings.push(failure);
                }
            }
        }
        for command in &self.commands {
            let args = ["-c".to_owned(), command.clone()];
            self.run(Path::new("sh"), &args, format!("command: {command}"))
                .await?;
        }
        for url in &self.urls {
            check_url(url).await?;
        }
        for unit in &self.units {
            let args = ["is-active".to_owned(), unit.clone()];
            self.run(Path::new("systemctl"), &args, format!("unit: {unit}"))
                .await?;
        }
        Ok(warnings)
    }

    async fn run_script(&self, script: &Path) -> Result<(), CheckFailure> {
        let args = [script.display().to_string()];
        self.run(Path::new("bash"), &args, script.display().to_string())
            .await
    }

    async fn run(
        &self,
        program: &Path,
        args: &[String],
        check: String,
    ) -> Result<(), CheckFailure> {
        match HostCommands.run(program, args).await {
            Ok(output) if output.success => Ok(()),
            Ok(output) => {
                let mut text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                let stderr = output.stderr_text();
                if !stderr.is_empty() {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&stderr);
                }
                let status = match output.code {
                    Some(code) => format!("exit status {code}"),
                    None => "killed by a signal".to_owned(),
                };
                Err(CheckFailure {
                    check,
                    output: if text.is_empty() {
                        status
                    } else {
                        format!("{status}: {text}")
                    },
                })
            }
            Err(error) => Err(CheckFailure {
                check,
                output: format!("cannot run {}: {error}", program.display()),
            }),
        }
    }
}

/// The `*.sh` files of `dir`, by name; none when it does not exist.
fn scripts(dir: &Path) -> Result<Vec<PathBuf>, CheckFailure> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(CheckFailure {
                check: dir.display().to_string(),
                output: format!("cannot list the check scripts: {error}"),
            });
        }
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh") && p.is_file())
        .collect();
    found.sort();
    Ok(found)
}

async fn check_url(url: &str) -> Result<(), CheckFailure> {
    let failure = |output: String| CheckFailure {
        check: format!("url: {url}"),
        output,
    };
    if !url.starts_with("http://") {
        return Err(failure(
            "only http:// URLs are checked (the agent holds no trust store for https)".into(),
        ));
    }
    // A TLS configuration reqwest requires even for plain HTTP; it trusts nothing.
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| failure(format!("cannot configure TLS: {e}")))?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| failure(format!("cannot build an HTTP client: {e}")))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| failure(flotta_core::error_chain::error_chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(512).collect();
        Err(failure(format!("HTTP {status}: {}", body.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_script(dir: &Path, name: &str, body: &str) {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join(name), format!("#!/bin/bash\n{body}\n")).expect("script");
    }

    fn checks(root: &Path) -> HealthChecks {
        HealthChecks {
            greenboot_dirs: vec![root.to_owned()],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn greenboot_required_scripts_fail_the_round_wanted_ones_warn() {
        let root = tempfile::tempdir().expect("dir");
        let checks = checks(root.path());
        assert_eq!(checks.run_round().await, Ok(Vec::new()));
        write_script(&root.path().join("required.d"), "10-ok.sh", "exit 0");
        write_script(
            &root.path().join("wanted.d"),
            "20-warn.sh",
            "echo optional broke; exit 3",
        );
        write_script(&root.path().join("required.d"), "not-a-check.txt", "exit 1");
        let warnings = checks.run_round().await.expect("passes");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].output.contains("exit status 3: optional broke"));
        write_script(
            &root.path().join("required.d"),
            "30-net.sh",
            "echo gateway unreachable >&2; exit 1",
        );
        let failure = checks.run_round().await.expect_err("fails");
        assert!(failure.check.ends_with("required.d/30-net.sh"), "{failure}");
        assert_eq!(failure.output, "exit status 1: gateway unreachable");
    }

    #[tokio::test]
    async fn user_commands_and_urls_are_checked() {
        let root = tempfile::tempdir().expect("dir");
        let mut checks = checks(root.path());
        checks.commands = vec!["true".into(), "echo no database; false".into()];
        let failure = checks.run_round().await.expect_err("fails");
        assert_eq!(failure.check, "command: echo no database; false");
        assert_eq!(failure.output, "exit status 1: no database");
        checks.commands.clear();
        // Nothing listens on port 1 of loopback.
        checks.urls = vec!["http://127.0.0.1:1/healthz".into()];
        let failure = checks.run_round().await.expect_err("fails");
        assert_eq!(failure.check, "url: http://127.0.0.1:1/healthz");
        assert!(failure.output.contains("onnect"), "{failure}");
        checks.urls = vec!["https://127.0.0.1:1/healthz".into()];
        let failure = checks.run_round().await.expect_err("fails");
        assert!(failure.output.contains("only http://"), "{failure}");
    }
}
