//! [`RpmOstreeUpdater`]: OSTree deployments through `rpm-ostree`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use flotta_core::wire::OsInformation;
use serde::Deserialize;

use super::{BootedOs, Deployment, OsError, OsHealth, OsUpdater, reboot, run, systemd_health};
use crate::command::{CommandRunner, HostCommands};

/// Updates an rpm-ostree system (Fedora IoT, RHEL for Edge, CoreOS).
///
/// - booted: the deployments of `rpm-ostree status --json` (`booted`, `staged`,
///   and the first other one as the rollback), each known by its `checksum` and,
///   for container-image deployments, its `container-image-reference` without the
///   transport;
/// - stage: `rpm-ostree deploy --lock-finalization COMMIT` for a target commit, or
///   `rpm-ostree rebase --lock-finalization ostree-unverified-registry:IMAGE` for a
///   target image; a locked staged deployment is not finalized by an unrelated
///   reboot. A commit with a `hosted_objects_url` (Flotta's `hostedObjectsURL`, an
///   OSTree repository over HTTP) is pulled from there: the agent writes the
///   remote [`HOSTED_REMOTE`] (`REMOTES_DIR/flotta.conf`, `url=` that URL) and runs
///   `rpm-ostree rebase --lock-finalization flotta: COMMIT`, which keeps the
///   deployment's branch, moves it to that remote and pins the commit. The remote
///   does not check GPG signatures: the commit is named by its checksum (sent by the
///   server over mTLS), which OSTree verifies for every object it pulls;
/// - activate: `rpm-ostree finalize-deployment CHECKSUM` of the staged deployment,
///   which reboots into it;
/// - rollback: `rpm-ostree cleanup -p` when a deployment is staged (the update
///   never booted), otherwise `rpm-ostree rollback` (the previous deployment
///   becomes the default; no reboot), unless the default deployment already is
///   another than the booted one: `rpm-ostree rollback` swaps the two, so a second
///   call (an agent killed after the first) would undo the first;
/// - reboot: `systemctl reboot`;
/// - health: `systemctl is-system-running`.
#[derive(Debug, Clone)]
pub struct RpmOstreeUpdater {
    program: PathBuf,
    commands: Arc<dyn CommandRunner>,
    remotes_dir: PathBuf,
}

/// Name of the OSTree remote the agent writes for a target's `hosted_objects_url`.
pub const HOSTED_REMOTE: &str = "flotta";

/// Where OSTree reads remote definitions on a host.
pub const DEFAULT_REMOTES_DIR: &str = "/etc/ostree/remotes.d";

impl Default for RpmOstreeUpdater {
    fn default() -> Self {
        Self::new()
    }
}

/// The part of `rpm-ostree status --json` read here.
#[derive(Debug, Deserialize)]
struct Status {
    deployments: Vec<StatusDeployment>,
}

#[derive(Debug, Deserialize)]
struct StatusDeployment {
    checksum: String,
    #[serde(default)]
    booted: bool,
    #[serde(default)]
    staged: bool,
    #[serde(default, rename = "container-image-reference")]
    container_image_reference: Option<String>,
}

impl StatusDeployment {
    fn deployment(&self) -> Deployment {
        Deployment {
            id: self.checksum.clone(),
            image: self.container_image_reference.as_deref().map(image_of),
        }
    }
}

/// The image of an ostree container reference (`ostree-unverified-registry:IMAGE`,
/// `ostree-image-signed:registry:IMAGE`, `ostree-remote-image:REMOTE:docker://IMAGE`).
fn image_of(reference: &str) -> String {
    let image = reference
        .split_once("docker://")
        .map(|(_, image)| image)
        .or_else(|| {
            [
                "ostree-unverified-registry:",
                "ostree-unverified-image:registry:",
                "ostree-image-signed:registry:",
            ]
            .iter()
            .find_map(|prefix| reference.strip_prefix(prefix))
        })
        .unwrap_or(reference);
    image.to_owned()
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
            remotes_dir: PathBuf::from(DEFAULT_REMOTES_DIR),
        }
    }

    /// Writes the [`HOSTED_REMOTE`] remote into `dir` instead of
    /// [`DEFAULT_REMOTES_DIR`].
    pub fn with_remotes_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.remotes_dir = dir.into();
        self
    }

    /// Writes the remote serving hosted objects at `url` (atomically: a kill
    /// leaves the old definition or the new one).
    async fn write_hosted_remote(&self, url: &str) -> Result<(), OsError> {
        let failed = |reason: String| OsError::Failed {
            operation: "stage",
            reason,
        };
        flotta_core::validation::hosted_objects_url(url)
            .map_err(|e| failed(format!("hostedObjectsURL: {e}")))?;
        let text = format!("[remote \"{HOSTED_REMOTE}\"]\nurl={url}\ngpg-verify=false\n");
        let file = self.remotes_dir.join(format!("{HOSTED_REMOTE}.conf"));
        let temp = self.remotes_dir.join(format!(".{HOSTED_REMOTE}.conf.tmp"));
        tokio::fs::create_dir_all(&self.remotes_dir)
            .await
            .map_err(|e| failed(format!("cannot create {}: {e}", self.remotes_dir.display())))?;
        tokio::fs::write(&temp, text)
            .await
            .map_err(|e| failed(format!("cannot write {}: {e}", temp.display())))?;
        tokio::fs::rename(&temp, &file)
            .await
            .map_err(|e| failed(format!("cannot write {}: {e}", file.display())))
    }

    async fn status(&self, operation: &'static str) -> Result<BootedOs, OsError> {
        Ok(self.status_and_default(operation).await?.0)
    }

    /// The deployments, and whether the default (next boot) one is not the booted
    /// one (a rollback is queued).
    async fn status_and_default(
        &self,
        operation: &'static str,
    ) -> Result<(BootedOs, bool), OsError> {
        let output = run(
            &self.commands,
            operation,
            &self.program,
            &["status", "--json"],
        )
        .await?;
        let booted =
            parse_status(&output.stdout).map_err(|reason| OsError::Failed { operation, reason })?;
        Ok((booted, rollback_queued(&output.stdout)))
    }
}

/// Whether the first deployment after the staged one (the bootloader's default)
/// is not the booted one.
fn rollback_queued(stdout: &[u8]) -> bool {
    serde_json::from_slice::<Status>(stdout)
        .ok()
        .and_then(|s| s.deployments.into_iter().find(|d| !d.staged))
        .is_some_and(|d| !d.booted)
}

/// The deployments in `rpm-ostree status --json`.
fn parse_status(stdout: &[u8]) -> Result<BootedOs, String> {
    let status: Status = serde_json::from_slice(stdout)
        .map_err(|e| format!("rpm-ostree status --json printed unexpected JSON: {e}"))?;
    Ok(BootedOs {
        booted: status
            .deployments
            .iter()
            .find(|d| d.booted)
            .map(StatusDeployment::deployment),
        staged: status
            .deployments
            .iter()
            .find(|d| d.staged)
            .map(StatusDeployment::deployment),
        rollback: status
            .deployments
            .iter()
            .find(|d| !d.booted && !d.staged)
            .map(StatusDeployment::deployment),
    })
}

#[async_trait]
impl OsUpdater for RpmOstreeUpdater {
    async fn booted(&self) -> Result<BootedOs, OsError> {
        self.status("status").await
    }

    async fn stage(&self, target: &OsInformation) -> Result<(), OsError> {
        let image;
        let remote = format!("{HOSTED_REMOTE}:");
        let args: Vec<&str> = match (&target.commit_id, &target.image) {
            (Some(commit), _) if target.hosted_objects_url.is_some() => {
                let url = target.hosted_objects_url.as_deref().unwrap_or_default();
                self.write_hosted_remote(url).await?;
                vec![
                    "rebase",
                    "--lock-finalization",
                    remote.as_str(),
                    commit.as_str(),
                ]
            }
            (Some(commit), _) => vec!["deploy", "--lock-finalization", commit.as_str()],
            (None, Some(_)) if target.hosted_objects_url.is_some() => {
                return Err(OsError::Failed {
                    operation: "stage",
                    reason: "hostedObjectsURL serves OSTree commits; the target names an image"
                        .into(),
                });
            }
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
        let staged = self
            .status("activate")
            .await?
            .staged
            .ok_or(OsError::Failed {
                operation: "activate",
                reason: "no staged deployment".into(),
            })?;
        run(
            &self.commands,
            "activate",
            &self.program,
            &["finalize-deployment", staged.id.as_str()],
        )
        .await
        .map(|_| ())
    }

    async fn rollback(&self) -> Result<(), OsError> {
        let (status, queued) = self.status_and_default("rollback").await?;
        let args: &[&str] = if status.staged.is_some() {
            &["cleanup", "-p"]
        } else if queued {
            return Ok(());
        } else {
            &["rollback"]
        };
        run(&self.commands, "rollback", &self.program, args)
            .await
            .map(|_| ())
    }

    async fn reboot(&self) -> Result<(), OsError> {
        reboot(&self.commands, "reboot").await
    }

    async fn health(&self) -> Result<OsHealth, OsError> {
        systemd_health(&self.commands).await
    }

    fn pulls_hosted_objects(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandOutput, RecordedCommands};

    /// `rpm-ostree status --json` of a Fedora IoT host with an update staged
    /// (locked) above the booted deployment and an older rollback deployment.
    const STAGED: &str = include_str!("fixtures/rpm-ostree-staged.json");
    /// `rpm-ostree status --json` of a host booted from a container image.
    const CONTAINER: &str = include_str!("fixtures/rpm-ostree-container.json");

    fn updater(status: &str) -> (RpmOstreeUpdater, Arc<RecordedCommands>) {
        let commands = Arc::new(RecordedCommands::default());
        commands.reply_stdout(&["status", "--json"], status);
        (RpmOstreeUpdater::with_commands(commands.clone()), commands)
    }

    fn call(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn the_recorded_outputs_parse_into_booted_staged_and_rollback() {
        let staged = parse_status(STAGED.as_bytes()).expect("parses");
        assert!(
            staged
                .booted
                .as_ref()
                .is_some_and(|d| d.id.starts_with("9ab2c4d6"))
        );
        assert!(
            staged
                .staged
                .as_ref()
                .is_some_and(|d| d.id.starts_with("3c1d0e5f"))
        );
        assert!(
            staged
                .rollback
                .as_ref()
                .is_some_and(|d| d.id.starts_with("1f00aa11"))
        );
        let container = parse_status(CONTAINER.as_bytes()).expect("parses");
        let booted = container.booted.expect("booted");
        assert_eq!(booted.image.as_deref(), Some("quay.io/acme/edge-os:2"));
        let target = OsInformation {
            image: Some("quay.io/acme/edge-os:2".into()),
            ..Default::default()
        };
        assert!(booted.runs(&target));
        assert!(container.staged.is_none());
    }

    #[test]
    fn bad_status_output_is_a_clear_error() {
        for (input, expected) in [
            ("not json", "unexpected JSON"),
            ("{}", "missing field `deployments`"),
            (
                r#"{"deployments": [{"booted": true}]}"#,
                "missing field `checksum`",
            ),
            (r#"{"deployments": [{"checksum": 7}]}"#, "invalid type"),
        ] {
            let error = parse_status(input.as_bytes()).expect_err(input);
            assert!(error.contains(expected), "{input}: {error}");
        }
    }

    #[tokio::test]
    async fn the_current_commit_is_the_booted_deployment() {
        let (updater, commands) = updater(STAGED);
        assert_eq!(
            updater.current_commit().await.expect("commit"),
            Some("9ab2c4d6e8f0a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b2".into())
        );
        assert_eq!(
            commands.calls(),
            vec![call(&["rpm-ostree", "status", "--json"])]
        );
    }

    #[tokio::test]
    async fn stage_deploys_a_commit_or_rebases_to_an_image_locked() {
        let (updater, commands) = updater(STAGED);
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
    async fn activate_finalizes_and_rollback_drops_the_staged_deployment() {
        let (updater, commands) = updater(STAGED);
        updater.activate().await.expect("activate");
        updater.rollback().await.expect("rollback");
        updater.reboot().await.expect("reboot");
        let staged = "3c1d0e5f7a9b2c4d6e8f0a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d";
        assert_eq!(
            commands.calls(),
            vec![
                call(&["rpm-ostree", "status", "--json"]),
                call(&["rpm-ostree", "finalize-deployment", staged]),
                call(&["rpm-ostree", "status", "--json"]),
                call(&["rpm-ostree", "cleanup", "-p"]),
                call(&["systemctl", "reboot"]),
            ]
        );
    }

    #[tokio::test]
    async fn rollback_after_the_boot_makes_the_previous_deployment_the_default() {
        let (updater, commands) = updater(CONTAINER);
        updater.rollback().await.expect("rollback");
        assert_eq!(
            commands.calls().last().cloned(),
            Some(call(&["rpm-ostree", "rollback"]))
        );
    }

    #[tokio::test]
    async fn a_commit_with_hosted_objects_is_pulled_from_the_flotta_remote() {
        let (updater, commands) = updater(CONTAINER);
        let dir = tempfile::tempdir().expect("dir");
        let updater = updater.with_remotes_dir(dir.path().join("remotes.d"));
        let target = OsInformation {
            commit_id: Some("c2".into()),
            hosted_objects_url: Some("https://os.example.com/repo".into()),
            ..Default::default()
        };
        updater.stage(&target).await.expect("stage");
        assert_eq!(
            commands.calls().last().cloned(),
            Some(call(&[
                "rpm-ostree",
                "rebase",
                "--lock-finalization",
                "flotta:",
                "c2"
            ]))
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("remotes.d/flotta.conf")).expect("remote"),
            "[remote \"flotta\"]\nurl=https://os.example.com/repo\ngpg-verify=false\n"
        );
        let bad = OsInformation {
            hosted_objects_url: Some("https://x/\n[remote \"y\"]".into()),
            ..target
        };
        let error = updater.stage(&bad).await.expect_err("refused").to_string();
        assert!(error.contains("control characters"), "{error}");
    }

    #[tokio::test]
    async fn a_rollback_already_queued_is_not_swapped_back() {
        let (updater, commands) = updater(CONTAINER);
        // After `rpm-ostree rollback` the previous deployment is listed first (the
        // default) ahead of the booted one.
        commands.reply_stdout(
            &["status", "--json"],
            r#"{"deployments": [{"checksum": "old", "booted": false}, {"checksum": "new", "booted": true}]}"#,
        );
        updater.rollback().await.expect("rollback");
        assert_eq!(
            commands.calls(),
            vec![call(&["rpm-ostree", "status", "--json"])],
            "no second `rpm-ostree rollback`"
        );
    }

    #[tokio::test]
    async fn failures_carry_the_command_and_its_stderr() {
        let (updater, commands) = updater(STAGED);
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
        let (updater, commands) = updater(STAGED);
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
