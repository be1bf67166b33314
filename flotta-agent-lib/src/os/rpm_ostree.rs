//! [`RpmOstreeUpdater`]: OSTree deployments through `rpm-ostree`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use flotta_core::wire::OsInformation;
use serde::Deserialize;

use super::{OsError, OsHealth, OsUpdater, run, systemd_health};
use crate::command::{CommandRunner, HostCommands};

/// Updates an rpm-ostree system (Fedora IoT, RHEL for Edge, CoreOS).
///
/// - current commit: the `checksum` of the booted deployment in
///   `rpm-ostree status --json`;
/// - stage: `rpm-ostree deploy --lock-finalization COMMIT` for a target commit, or
///   `rpm-ostree rebase --lock-finalization ostree-unverified-registry:IMAGE` for a
///   target image (the commit must be reachable from the deployment's remote);
///   a locked staged deployment is not finalized by an unrelated reboot;
/// - activate: `rpm-ostree finalize-deployment CHECKSUM` of the staged deployment,
///   which reboots into it;
/// - rollback: `rpm-ostree rollback --reboot`;
/// - health: `systemctl is-system-running`.
#[derive(Debug, Clone)]
pub struct RpmOstreeUpdater {
    program: PathBuf,
    commands: Arc<dyn CommandRunner>,
}

impl Default for RpmOstreeUpdater {
    fn default() -> Self {
        Self::new()
    }
}

/// The part of `rpm-ostree status --json` read here.
#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    deployments: Vec<Deployment>,
}

#[derive(Debug, Deserialize)]
struct Deployment {
    #[serde(default)]
    checksum: Option<String>,
    #[serde(default)]
    booted: bool,
    #[serde(default)]
    staged: bool,
}

impl RpmOstreeUpdater {
    /// Runs `rpm-ostree` from `PATH`.
    pub fn new() -> Self {
        Self::with_commands(Arc::new(HostCommands))
    }

    pub(crate) fn with_commands(commands: Arc<dyn CommandRunner>) -> Self {
        Self {
            program: PathBuf::from("rpm-ostree"),
            commands,
        }
    }

    async fn status(&self, operation: &'static str) -> Result<Status, OsError> {
        let output = run(
            &self.commands,
            operation,
            &self.program,
            &["status", "--json"],
        )
        .await?;
        parse_status(&output.stdout).map_err(|reason| OsError::Failed { operation, reason })
    }
}

fn parse_status(stdout: &[u8]) -> Result<Status, String> {
    serde_json::from_slice(stdout)
        .map_err(|e| format!("rpm-ostree status --json printed unexpected JSON: {e}"))
}

#[async_trait]
impl OsUpdater for RpmOstreeUpdater {
    async fn current_commit(&self) -> Result<Option<String>, OsError> {
        let status = self.status("current commit").await?;
        Ok(status
            .deployments
            .into_iter()
            .find(|d| d.booted)
            .and_then(|d| d.checksum))
    }

    async fn stage(&self, target: &OsInformation) -> Result<(), OsError> {
        let image;
        let args: Vec<&str> = match (&target.commit_id, &target.image) {
            (Some(commit), _) => vec!["deploy", "--lock-finalization", commit.as_str()],
            (None, Some(reference)) => {
                image = format!("ostree-unverified-registry:{reference}");
                vec!["rebase", "--lock-finalization", image.as_str()]
            }
            (None, None) => {
                return Err(OsError::Failed {
                    operation: "stage",
                    reason: "the target names neither a commit nor an image".into(),
                });
            }
        };
        run(&self.commands, "stage", &self.program, &args)
            .await
            .map(|_| ())
    }

    async fn activate(&self) -> Result<(), OsError> {
        let status = self.status("activate").await?;
        let staged = status
            .deployments
            .into_iter()
            .find(|d| d.staged)
            .and_then(|d| d.checksum)
            .ok_or(OsError::Failed {
                operation: "activate",
                reason: "no staged deployment".into(),
            })?;
        run(
            &self.commands,
            "activate",
            &self.program,
            &["finalize-deployment", staged.as_str()],
        )
        .await
        .map(|_| ())
    }

    async fn rollback(&self) -> Result<(), OsError> {
        run(
            &self.commands,
            "rollback",
            &self.program,
            &["rollback", "--reboot"],
        )
        .await
        .map(|_| ())
    }

    async fn health(&self) -> Result<OsHealth, OsError> {
        systemd_health(&self.commands).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandOutput, RecordedCommands};

    /// The shape `rpm-ostree status --json` prints (trimmed), written for this test:
    /// a staged deployment above the booted one and the rollback deployment.
    const STATUS: &str = r#"{
  "deployments": [
    {"id": "fedora-iot-3c1d.0", "osname": "fedora-iot", "origin": "fedora-iot:fedora/stable/x86_64/iot",
     "checksum": "3c1d0e5f7a", "version": "40.20240801.0", "timestamp": 1722500000,
     "booted": false, "staged": true, "pinned": false},
    {"id": "fedora-iot-9ab2.0", "osname": "fedora-iot", "origin": "fedora-iot:fedora/stable/x86_64/iot",
     "checksum": "9ab2c4d6e8", "version": "40.20240715.0", "timestamp": 1721000000,
     "booted": true, "staged": false, "pinned": false},
    {"id": "fedora-iot-1f00.0", "osname": "fedora-iot", "checksum": "1f00aa11bb",
     "booted": false, "staged": false, "pinned": false}
  ],
  "transaction": null,
  "cached-update": null,
  "update-driver": null
}"#;

    fn updater() -> (RpmOstreeUpdater, Arc<RecordedCommands>) {
        let commands = Arc::new(RecordedCommands::default());
        commands.reply_stdout(&["status", "--json"], STATUS);
        (RpmOstreeUpdater::with_commands(commands.clone()), commands)
    }

    fn call(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[tokio::test]
    async fn the_current_commit_is_the_booted_deployment() {
        let (updater, commands) = updater();
        assert_eq!(
            updater.current_commit().await.expect("commit"),
            Some("9ab2c4d6e8".into())
        );
        assert_eq!(
            commands.calls(),
            vec![call(&["rpm-ostree", "status", "--json"])]
        );
    }

    #[tokio::test]
    async fn stage_deploys_a_commit_or_rebases_to_an_image_locked() {
        let (updater, commands) = updater();
        let commit = OsInformation {
            commit_id: Some("3c1d0e5f7a".into()),
            ..Default::default()
        };
        updater.stage(&commit).await.expect("stage commit");
        let image = OsInformation {
            image: Some("quay.io/acme/os:2".into()),
            ..Default::default()
        };
        updater.stage(&image).await.expect("stage image");
        assert_eq!(
            commands.calls(),
            vec![
                call(&["rpm-ostree", "deploy", "--lock-finalization", "3c1d0e5f7a"]),
                call(&[
                    "rpm-ostree",
                    "rebase",
                    "--lock-finalization",
                    "ostree-unverified-registry:quay.io/acme/os:2"
                ]),
            ]
        );
        assert!(matches!(
            updater.stage(&OsInformation::default()).await,
            Err(OsError::Failed {
                operation: "stage",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn activate_finalizes_the_staged_deployment_and_rollback_reboots() {
        let (updater, commands) = updater();
        updater.activate().await.expect("activate");
        updater.rollback().await.expect("rollback");
        assert_eq!(
            commands.calls(),
            vec![
                call(&["rpm-ostree", "status", "--json"]),
                call(&["rpm-ostree", "finalize-deployment", "3c1d0e5f7a"]),
                call(&["rpm-ostree", "rollback", "--reboot"]),
            ]
        );
    }

    #[tokio::test]
    async fn failures_carry_the_command_and_its_stderr() {
        let (updater, commands) = updater();
        commands.reply(
            &["deploy"],
            CommandOutput {
                success: false,
                code: Some(1),
                stdout: Vec::new(),
                stderr: b"error: Commit 3c1d not found\n".to_vec(),
            },
        );
        let commit = OsInformation {
            commit_id: Some("3c1d".into()),
            ..Default::default()
        };
        let text = updater.stage(&commit).await.expect_err("fails").to_string();
        assert!(
            text.contains("rpm-ostree deploy --lock-finalization 3c1d: exit status 1: error: Commit 3c1d not found"),
            "{text}"
        );
        commands.reply_stdout(&["status", "--json"], "not json");
        assert!(updater.current_commit().await.is_err());
        commands.reply_stdout(
            &["status", "--json"],
            r#"{"deployments": [{"checksum": "a", "booted": false, "staged": false}]}"#,
        );
        assert!(matches!(
            updater.activate().await,
            Err(OsError::Failed {
                operation: "activate",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn health_follows_systemd() {
        let (updater, commands) = updater();
        for (state, health) in [
            ("running", OsHealth::Healthy),
            ("starting", OsHealth::Healthy),
            ("degraded", OsHealth::Unhealthy),
        ] {
            commands.reply(
                &["is-system-running"],
                CommandOutput {
                    success: state == "running",
                    code: Some(i32::from(state != "running")),
                    stdout: format!("{state}\n").into_bytes(),
                    stderr: Vec::new(),
                },
            );
            assert_eq!(updater.health().await.expect("health"), health, "{state}");
        }
        assert_eq!(
            commands.calls().last().cloned(),
            Some(call(&["systemctl", "is-system-running"]))
        );
    }
}
