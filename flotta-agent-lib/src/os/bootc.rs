//! [`BootcUpdater`]: bootable container images through `bootc`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use flotta_core::wire::OsInformation;
use serde::Deserialize;

use super::{BootedOs, Deployment, OsError, OsHealth, OsUpdater, reboot, run, systemd_health};
use crate::command::{CommandRunner, HostCommands};

/// Updates an image-mode system through `bootc`.
///
/// - booted: `status.booted`, `status.staged` and `status.rollback` of
///   `bootc status --json`, each known by its image reference with `@DIGEST` when
///   bootc reports the digest (the OSTree checksum for an entry without an image);
/// - stage: `bootc switch IMAGE` (pulls and stages the image for the next boot;
///   the running system is untouched);
/// - activate: `systemctl reboot` into the staged image, refused when
///   `bootc status --json` shows nothing staged;
/// - rollback: with an image staged (the update never booted), `bootc switch` back
///   to the booted image, which replaces the staged one; otherwise
///   `bootc rollback` (the previous deployment becomes the next boot), unless
///   `status.rollbackQueued` says it already is (a second `bootc rollback` would
///   swap the order back); no reboot;
/// - reboot: `systemctl reboot`;
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
    #[serde(default, rename = "rollbackQueued")]
    rollback_queued: bool,
    #[serde(default)]
    staged: Option<BootEntry>,
    #[serde(default)]
    booted: Option<BootEntry>,
    #[serde(default)]
    rollback: Option<BootEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct BootEntry {
    #[serde(default)]
    image: Option<ImageStatus>,
    #[serde(default)]
    ostree: Option<OstreeStatus>,
}

#[derive(Debug, Deserialize)]
struct OstreeStatus {
    checksum: String,
}

impl BootEntry {
    /// The entry as a deployment; `None` when it names neither an image nor a
    /// commit.
    fn deployment(self) -> Option<Deployment> {
        match (self.image, self.ostree) {
            (Some(image), _) => Some(Deployment {
                id: match &image.image_digest {
                    Some(digest) => format!("{}@{digest}", image.image.image),
                    None => image.image.image.clone(),
                },
                image: Some(image.image.image),
            }),
            (None, Some(ostree)) => Some(Deployment::commit(ostree.checksum)),
            (None, None) => None,
        }
    }
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

    async fn status(&self, operation: &'static str) -> Result<BootedOs, OsError> {
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

/// The deployments in `bootc status --json`.
fn parse_status(stdout: &[u8]) -> Result<BootedOs, String> {
    let host: Host = serde_json::from_slice(stdout)
        .map_err(|e| format!("bootc status --json printed unexpected JSON: {e}"))?;
    Ok(BootedOs {
        booted: host.status.booted.and_then(BootEntry::deployment),
        staged: host.status.staged.and_then(BootEntry::deployment),
        rollback: host.status.rollback.and_then(BootEntry::deployment),
    })
}

#[async_trait]
impl OsUpdater for BootcUpdater {
    async fn booted(&self) -> Result<BootedOs, OsError> {
        self.status("status").await
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
        if self.status("activate").await?.staged.is_none() {
            return Err(OsError::Failed {
                operation: "activate",
                reason: "bootc shows no staged image".into(),
            });
        }
        reboot(&self.commands, "activate").await
    }

    async fn rollback(&self) -> Result<(), OsError> {
        let output = run(
            &self.commands,
            "rollback",
            &self.program,
            &["status", "--json"],
        )
        .await?;
        // `bootc rollback` swaps the boot order: a second call (an agent killed
        // after the first) would undo the first.
        if serde_json::from_slice::<Host>(&output.stdout).is_ok_and(|h| h.status.rollback_queued) {
            return Ok(());
        }
        let status = parse_status(&output.stdout).map_err(|reason| OsError::Failed {
            operation: "rollback",
            reason,
        })?;
        match (status.staged, status.booted.and_then(|b| b.image)) {
            (Some(_), Some(booted)) => {
                run(
                    &self.commands,
                    "rollback",
                    &self.program,
                    &["switch", &booted],
                )
                .await?;
            }
            _ => {
                run(&self.commands, "rollback", &self.program, &["rollback"]).await?;
            }
        }
        Ok(())
    }

    async fn reboot(&self) -> Result<(), OsError> {
        reboot(&self.commands, "reboot").await
    }

    async fn health(&self) -> Result<OsHealth, OsError> {
        systemd_health(&self.commands).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandOutput, RecordedCommands};

    /// `bootc status --json` of an image-mode host with an update staged over the
    /// booted image and an older rollback image.
    const STAGED: &str = include_str!("fixtures/bootc-staged.json");
    /// `bootc status --json` on a package-mode system (bootc installed, not booted
    /// from an image).
    const PACKAGE_MODE: &str = include_str!("fixtures/bootc-package-mode.json");

    fn updater(status: &str) -> (BootcUpdater, Arc<RecordedCommands>) {
        let commands = Arc::new(RecordedCommands::default());
        commands.reply_stdout(&["status", "--json"], status);
        (BootcUpdater::with_commands(commands.clone()), commands)
    }

    fn call(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn the_recorded_outputs_parse() {
        let status = parse_status(STAGED.as_bytes()).expect("parses");
        let booted = status.booted.expect("booted");
        assert_eq!(booted.id, "quay.io/acme/os:1@sha256:1111aaaa");
        let target = OsInformation {
            image: Some("quay.io/acme/os:2".into()),
            ..Default::default()
        };
        assert!(!booted.runs(&target));
        assert!(status.staged.expect("staged").runs(&target));
        assert_eq!(
            status.rollback.expect("rollback").image.as_deref(),
            Some("quay.io/acme/os:0")
        );
        assert_eq!(
            parse_status(PACKAGE_MODE.as_bytes()).expect("parses"),
            BootedOs::default()
        );
        for (input, expected) in [
            ("7", "invalid type"),
            (
                r#"{"status": {"booted": {"image": {"image": {}}}}}"#,
                "missing field `image`",
            ),
            ("", "EOF"),
        ] {
            let error = parse_status(input.as_bytes()).expect_err(input);
            assert!(error.contains(expected), "{input}: {error}");
        }
    }

    #[tokio::test]
    async fn the_current_commit_is_the_booted_image_with_its_digest() {
        let (updater, commands) = updater(STAGED);
        assert_eq!(
            updater.current_commit().await.expect("commit"),
            Some("quay.io/acme/os:1@sha256:1111aaaa".into())
        );
        assert_eq!(commands.calls(), vec![call(&["bootc", "status", "--json"])]);
        let (updater, _) = updater_in(PACKAGE_MODE);
        assert_eq!(updater.current_commit().await.expect("commit"), None);
    }

    fn updater_in(status: &str) -> (BootcUpdater, Arc<RecordedCommands>) {
        updater(status)
    }

    #[tokio::test]
    async fn stage_switches_activate_reboots_and_rollback_drops_the_staged_image() {
        let (updater, commands) = updater(STAGED);
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
                call(&["bootc", "status", "--json"]),
                call(&["bootc", "switch", "quay.io/acme/os:1"]),
            ]
        );
    }

    #[tokio::test]
    async fn nothing_staged_or_no_image_is_refused_before_any_change() {
        let (updater, commands) = updater(PACKAGE_MODE);
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
    async fn a_failed_rollback_is_reported_with_its_stderr() {
        let (updater, commands) = updater(PACKAGE_MODE);
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
        assert_eq!(
            commands.calls().last().cloned(),
            Some(call(&["bootc", "rollback"]))
        );
    }
}
