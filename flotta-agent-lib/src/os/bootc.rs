//! [`BootcUpdater`]: bootable container images through `bootc`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use flotta_core::wire::OsInformation;
use serde::Deserialize;

use super::{OsError, OsHealth, OsUpdater, reboot, run, systemd_health};
use crate::command::{CommandRunner, HostCommands};

/// Updates an image-mode system through `bootc`.
///
/// - current commit: the booted image reference (`status.booted.image.image.image`
///   in `bootc status --json`), with `@DIGEST` when bootc reports the digest;
/// - stage: `bootc switch IMAGE` (pulls and stages the image for the next boot;
///   the running system is untouched);
/// - activate: `systemctl reboot` into the staged image, refused when
///   `bootc status --json` shows nothing staged;
/// - rollback: `bootc rollback` (makes the previous deployment the next boot), then
///   `systemctl reboot`;
/// - health: `systemctl is-system-running`.
#[derive(Debug, Clone)]
pub struct BootcUpdater {
    program: PathBuf,
    commands: Arc<dyn CommandRunner>,
}

impl Default for BootcUpdater {
    fn default() -> Self {
        Self::new()
    }
}

/// The part of `bootc status --json` read here.
#[derive(Debug, Default, Deserialize)]
struct Host {
    #[serde(default)]
    status: HostStatus,
}

#[derive(Debug, Default, Deserialize)]
struct HostStatus {
    #[serde(default)]
    staged: Option<BootEntry>,
    #[serde(default)]
    booted: Option<BootEntry>,
}

#[derive(Debug, Deserialize)]
struct BootEntry {
    #[serde(default)]
    image: Option<ImageStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageStatus {
    image: ImageReference,
    #[serde(default)]
    image_digest: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ImageReference {
    image: String,
}

impl BootcUpdater {
    /// Runs `bootc` from `PATH`.
    pub fn new() -> Self {
        Self::with_commands(Arc::new(HostCommands))
    }

    pub(crate) fn with_commands(commands: Arc<dyn CommandRunner>) -> Self {
        Self {
            program: PathBuf::from("bootc"),
            commands,
        }
    }

    async fn status(&self, operation: &'static str) -> Result<Host, OsError> {
        let output = run(
            &self.commands,
            operation,
            &self.program,
            &["status", "--json"],
        )
        .await?;
        serde_json::from_slice(&output.stdout).map_err(|e| OsError::Failed {
            operation,
            reason: format!("bootc status --json printed unexpected JSON: {e}"),
        })
    }
}

#[async_trait]
impl OsUpdater for BootcUpdater {
    async fn current_commit(&self) -> Result<Option<String>, OsError> {
        let host = self.status("current commit").await?;
        Ok(host
            .status
            .booted
            .and_then(|entry| entry.image)
            .map(|image| match image.image_digest {
                Some(digest) => format!("{}@{digest}", image.image.image),
                None => image.image.image,
            }))
    }

    async fn stage(&self, target: &OsInformation) -> Result<(), OsError> {
        let image = target.image.as_deref().ok_or(OsError::Failed {
            operation: "stage",
            reason: "bootc switches images: the target names no image".into(),
        })?;
        run(&self.commands, "stage", &self.program, &["switch", image])
            .await
            .map(|_| ())
    }

    async fn activate(&self) -> Result<(), OsError> {
        let host = self.status("activate").await?;
        if host.status.staged.is_none() {
            return Err(OsError::Failed {
                operation: "activate",
                reason: "bootc shows no staged image".into(),
            });
        }
        reboot(&self.commands, "activate").await
    }

    async fn rollback(&self) -> Result<(), OsError> {
        run(&self.commands, "rollback", &self.program, &["rollback"]).await?;
        reboot(&self.commands, "rollback").await
    }

    async fn health(&self) -> Result<OsHealth, OsError> {
        systemd_health(&self.commands).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandOutput, RecordedCommands};

    /// The shape `bootc status --json` prints (trimmed), written for this test: an
    /// image staged over the booted one.
    const STATUS: &str = r#"{
  "apiVersion": "org.containers.bootc/v1",
  "kind": "BootcHost",
  "metadata": {"name": "host"},
  "spec": {"image": {"image": "quay.io/acme/os:2", "transport": "registry"}, "bootOrder": "default"},
  "status": {
    "staged": {
      "image": {"image": {"image": "quay.io/acme/os:2", "transport": "registry"},
                "version": "2.0", "timestamp": "2026-11-01T10:00:00Z", "imageDigest": "sha256:2222"},
      "cachedUpdate": null, "incompatible": false, "pinned": false,
      "ostree": {"checksum": "c2c2", "deploySerial": 0}
    },
    "booted": {
      "image": {"image": {"image": "quay.io/acme/os:1", "transport": "registry"},
                "version": "1.0", "timestamp": "2026-10-01T10:00:00Z", "imageDigest": "sha256:1111"},
      "cachedUpdate": null, "incompatible": false, "pinned": false,
      "ostree": {"checksum": "c1c1", "deploySerial": 0}
    },
    "rollback": null,
    "rollbackQueued": false,
    "type": "bootcHost"
  }
}"#;

    fn updater(status: &str) -> (BootcUpdater, Arc<RecordedCommands>) {
        let commands = Arc::new(RecordedCommands::default());
        commands.reply_stdout(&["status", "--json"], status);
        (BootcUpdater::with_commands(commands.clone()), commands)
    }

    fn call(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[tokio::test]
    async fn the_current_commit_is_the_booted_image_with_its_digest() {
        let (updater, commands) = updater(STATUS);
        assert_eq!(
            updater.current_commit().await.expect("commit"),
            Some("quay.io/acme/os:1@sha256:1111".into())
        );
        assert_eq!(commands.calls(), vec![call(&["bootc", "status", "--json"])]);
        // A system not booted from an image (bootc installed on a package system).
        let (updater, _) = updater_with_no_image();
        assert_eq!(updater.current_commit().await.expect("commit"), None);
    }

    fn updater_with_no_image() -> (BootcUpdater, Arc<RecordedCommands>) {
        updater(
            r#"{"apiVersion": "org.containers.bootc/v1", "kind": "BootcHost", "status": {"staged": null, "booted": null, "rollback": null, "type": null}}"#,
        )
    }

    #[tokio::test]
    async fn stage_switches_activate_reboots_rollback_rolls_back_and_reboots() {
        let (updater, commands) = updater(STATUS);
        let target = OsInformation {
            image: Some("quay.io/acme/os:2".into()),
            ..Default::default()
        };
        updater.stage(&target).await.expect("stage");
        updater.activate().await.expect("activate");
        updater.rollback().await.expect("rollback");
        assert_eq!(
            commands.calls(),
            vec![
                call(&["bootc", "switch", "quay.io/acme/os:2"]),
                call(&["bootc", "status", "--json"]),
                call(&["systemctl", "reboot"]),
                call(&["bootc", "rollback"]),
                call(&["systemctl", "reboot"]),
            ]
        );
    }

    #[tokio::test]
    async fn nothing_staged_or_no_image_is_refused_before_any_change() {
        let (updater, commands) = updater_with_no_image();
        assert!(matches!(
            updater.activate().await,
            Err(OsError::Failed {
                operation: "activate",
                ..
            })
        ));
        let commit_only = OsInformation {
            commit_id: Some("abc".into()),
            ..Default::default()
        };
        assert!(matches!(
            updater.stage(&commit_only).await,
            Err(OsError::Failed {
                operation: "stage",
                ..
            })
        ));
        assert!(commands.calls().iter().all(|c| c[0] != "systemctl"));
    }

    #[tokio::test]
    async fn a_failed_rollback_does_not_reboot() {
        let (updater, commands) = updater(STATUS);
        commands.reply(
            &["rollback"],
            CommandOutput {
                success: false,
                code: Some(1),
                stdout: Vec::new(),
                stderr: b"error: No rollback available\n".to_vec(),
            },
        );
        let text = updater.rollback().await.expect_err("fails").to_string();
        assert!(text.contains("No rollback available"), "{text}");
        assert_eq!(commands.calls(), vec![call(&["bootc", "rollback"])]);
    }
}
